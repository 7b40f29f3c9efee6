//! `canh`: the Canh command line — server, ingest, search, hunt, rules, sensor, config.

mod hunt;
mod rules;
mod sensor;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Canh — an open-source Security Operations Center (SIEM, EDR, NSM, SOAR).
#[derive(Parser, Debug)]
#[command(name = "canh", version, about)]
pub(crate) struct Cli {
    /// Where Canh keeps its data (WAL, event store, state).
    #[arg(long, global = true, env = "CANH_DATA_DIR", default_value = "./data")]
    pub(crate) data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Hunt with Sigma rules over EVTX, JSONL/NDJSON and Suricata EVE files.
    Hunt(hunt::HuntArgs),
    /// Check and list detection rules.
    Rules(rules::RulesArgs),
    /// Network sensor: read a capture or a live interface, write EVE JSON.
    Sensor(sensor::SensorArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Hunt(args) => hunt::run(args)?,
        Command::Rules(args) => rules::run(args)?,
        Command::Sensor(args) => sensor::run(args)?,
    };
    std::process::exit(code);
}
