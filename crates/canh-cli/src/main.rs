//! `canh`: the Canh command line — server, ingest, search, hunt, rules, sensor, config.

mod agency;
mod agent;
mod audit;
mod config_cmd;
mod datadir;
mod demo;
mod evidence;
mod hunt;
mod ingest_cmd;
mod rules;
mod search_cmd;
mod sensor;
mod sensor_ship;
mod server_cmd;
mod user;
mod vuln;

use clap::{Parser, Subcommand};

// Parsing builds many small strings per event; mimalloc makes that markedly faster than the
// system allocator (BENCHMARKS.md, "parse").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;

/// Canh — an open-source Security Operations Center (SIEM, EDR, NSM, SOAR).
#[derive(Parser, Debug)]
#[command(name = "canh", version, about)]
pub(crate) struct Cli {
    /// Where Canh keeps its data (WAL, event store, state).
    #[arg(long, global = true, env = "CANH_DATA_DIR", default_value = "./data")]
    pub(crate) data_dir: PathBuf,
    /// Log format on stderr: text or json.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a Canh node: HTTP API and console, ingest APIs, syslog, embedded storage.
    Server(server_cmd::ServerArgs),
    /// Read log files (syslog, web, firewall, EVTX, EVE, NDJSON…) into the event store.
    Ingest(ingest_cmd::IngestArgs),
    /// Search stored events or dead letters.
    Search(search_cmd::SearchArgs),
    /// Validate or print the configuration.
    Config(config_cmd::ConfigArgs),
    /// Hunt with Sigma rules over EVTX, JSONL/NDJSON and Suricata EVE files, or the store.
    Hunt(hunt::HuntArgs),
    /// Check rule files; list, turn on/off, scope and test the server's live rules.
    Rules(rules::RulesArgs),
    /// Network sensor: read a capture or a live interface, write EVE JSON.
    Sensor(sensor::SensorArgs),
    /// Manage users (console and API accounts).
    User(user::UserArgs),
    /// Verify the hash-chained audit log.
    Audit(audit::AuditArgs),
    /// Verify and export evidence.
    Evidence(evidence::EvidenceArgs),
    /// Import agencies, contacts, information systems and domains from CSV.
    Agency(agency::AgencyArgs),
    /// Vulnerability data (OSV) for endpoint hosts.
    Vuln(vuln::VulnArgs),
    /// Endpoint agent releases: publish, list, roll out.
    Agent(agent::AgentArgs),
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CANH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,evtx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let data_dir = cli.data_dir;
    let code = match cli.command {
        Command::Server(args) => server_cmd::run(args, &data_dir)?,
        Command::Ingest(args) => ingest_cmd::run(args, &data_dir)?,
        Command::Search(args) => search_cmd::run(args, &data_dir)?,
        Command::Config(args) => config_cmd::run(args)?,
        Command::Hunt(args) => hunt::run(args, &data_dir)?,
        Command::Rules(args) => rules::run(args, &data_dir)?,
        Command::Sensor(args) => sensor::run(args)?,
        Command::User(args) => user::run(args, &data_dir)?,
        Command::Audit(args) => audit::run(args, &data_dir)?,
        Command::Evidence(args) => evidence::run(args, &data_dir)?,
        Command::Agency(args) => agency::run(args, &data_dir)?,
        Command::Vuln(args) => vuln::run(args, &data_dir)?,
        Command::Agent(args) => agent::run(args, &data_dir)?,
    };
    std::process::exit(code);
}
