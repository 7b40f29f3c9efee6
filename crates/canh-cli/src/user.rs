//! `canh user`: manage SOAR users offline (the first administrator is created this way).

use anyhow::{Context, bail};
use std::io::BufRead;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub(crate) struct UserArgs {
    #[command(subcommand)]
    cmd: UserCmd,
}

#[derive(clap::Subcommand, Debug)]
enum UserCmd {
    /// Add a user. The password is read from standard input (one line).
    Add {
        /// Login name.
        name: String,
        /// administrator, soc_lead, analyst, agency_viewer or auditor.
        #[arg(long)]
        role: String,
        /// Agency id (required for agency_viewer: the user sees that agency's subtree only).
        #[arg(long)]
        agency: Option<i64>,
        /// Read the password from standard input (required: never on the command line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
}

pub(crate) fn cli_actor() -> canh_soar::Actor {
    let who = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    canh_soar::Actor {
        user_id: None,
        name: format!("cli:{who}"),
        source: "cli".into(),
    }
}

pub(crate) fn open_soar(
    rt: &tokio::runtime::Runtime,
    data_dir: &Path,
) -> anyhow::Result<canh_soar::Soar> {
    let profiles = canh_soar::ProfileSet::bundled(canh_soar::profile::DEFAULT_PROFILE)?;
    rt.block_on(canh_soar::Soar::open(
        data_dir,
        profiles,
        std::sync::Arc::new(canh_soar::SystemClock),
        canh_soar::Settings::default(),
    ))
    .with_context(|| format!("opening the SOAR database under {}", data_dir.display()))
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

pub(crate) fn run(args: UserArgs, data_dir: &Path) -> anyhow::Result<i32> {
    let rt = runtime()?;
    let soar = open_soar(&rt, data_dir)?;
    match args.cmd {
        UserCmd::Add {
            name,
            role,
            agency,
            password_stdin,
        } => {
            if !password_stdin {
                bail!("pass the password on standard input with --password-stdin");
            }
            let role = canh_soar::Role::parse(&role)?;
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .context("reading the password")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let user =
                rt.block_on(soar.create_user(&cli_actor(), &name, role, agency, password))?;
            println!(
                "created user {} (id {}, role {})",
                user.name,
                user.id,
                user.role.as_str()
            );
        }
        UserCmd::List => {
            for u in rt.block_on(soar.users())? {
                let agency = u
                    .agency_id
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "-".into());
                println!("{}\t{}\t{}\t{}", u.id, u.name, u.role.as_str(), agency);
            }
        }
    }
    Ok(0)
}
