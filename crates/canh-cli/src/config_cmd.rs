//! `canh config check FILE`, `canh config defaults`, `canh config env`.

use canh_server::Config;
use std::path::PathBuf;

/// Arguments of `canh config`.
#[derive(clap::Args, Debug)]
pub(crate) struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a configuration file (with CANH_* environment overrides applied).
    Check {
        /// The TOML file.
        file: PathBuf,
    },
    /// Print the full default configuration, with comments.
    #[command(alias = "default")]
    Defaults,
    /// List the CANH_<SECTION>__<KEY> variables set in this environment.
    Env,
}

pub(crate) fn run(args: ConfigArgs) -> anyhow::Result<i32> {
    match args.command {
        ConfigCommand::Check { file } => {
            match Config::load(Some(&file), canh_server::config::env_overrides()) {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    Ok(0)
                }
                Err(e) => {
                    eprintln!(
                        "{}: {}",
                        file.display(),
                        canh_server::pipeline::error_chain(&e)
                    );
                    Ok(1)
                }
            }
        }
        ConfigCommand::Defaults => {
            print!("{}", canh_server::config::DEFAULT_TOML);
            Ok(0)
        }
        ConfigCommand::Env => {
            for (k, v) in canh_server::config::env_overrides() {
                println!("{k}={v}");
            }
            Ok(0)
        }
    }
}
