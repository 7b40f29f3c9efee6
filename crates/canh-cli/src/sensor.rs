//! `canh sensor`: read a capture, write EVE JSON (`eve.json`) into a log directory;
//! `canh sensor rules check FILE...`: report which signatures Canh can run.

use anyhow::Context as _;
use canh_nsm::rules::{CheckSummary, RuleProblem, Vars};
use canh_nsm::{Sensor, SensorConfig};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Arguments of `canh sensor`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct SensorArgs {
    #[command(subcommand)]
    command: Option<SensorCommand>,
    /// Capture file to read (pcap or pcapng).
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    read: Option<PathBuf>,
    /// Directory for `eve.json` (created if missing).
    #[arg(short = 'l', long = "log-dir", value_name = "DIR", default_value = ".")]
    log_dir: PathBuf,
    /// Signature file(s) to match (Suricata syntax); repeatable.
    #[arg(short = 'S', long = "rules", value_name = "FILE")]
    rules: Vec<PathBuf>,
    /// Parse TCP sessions whose handshake is not in the capture.
    #[arg(long)]
    midstream: bool,
    /// Flow table memory budget in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 128)]
    flow_memcap_mib: usize,
    /// Do not write the final `stats` record.
    #[arg(long)]
    no_stats: bool,
    /// Turn off scan and flood detection.
    #[arg(long)]
    no_ddos: bool,
}

#[derive(clap::Subcommand, Debug)]
enum SensorCommand {
    /// Signature files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(clap::Subcommand, Debug)]
enum RulesCommand {
    /// Report each rule as supported or not (naming the keyword), then a summary.
    Check {
        /// Rule files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print only the summary.
        #[arg(long)]
        summary_only: bool,
    },
}

pub(crate) fn run(args: SensorArgs) -> anyhow::Result<i32> {
    if let Some(SensorCommand::Rules {
        command: RulesCommand::Check {
            files,
            summary_only,
        },
    }) = &args.command
    {
        return check(files, *summary_only);
    }
    let Some(read) = &args.read else {
        anyhow::bail!("give a capture with -r FILE (or a subcommand, see --help)");
    };
    std::fs::create_dir_all(&args.log_dir)
        .with_context(|| format!("creating log directory {}", args.log_dir.display()))?;
    let rules = if args.rules.is_empty() {
        None
    } else {
        let paths: Vec<&Path> = args.rules.iter().map(PathBuf::as_path).collect();
        let (set, checks) =
            canh_nsm::rules::load_files(&paths, &Vars::default()).context("loading signatures")?;
        eprintln!(
            "{} of {} rules loaded / đã nạp {} trên {} luật",
            set.engine.len(),
            checks.len(),
            set.engine.len(),
            checks.len()
        );
        Some(Arc::new(set))
    };
    let eve_path = args.log_dir.join("eve.json");
    let file =
        File::create(&eve_path).with_context(|| format!("creating {}", eve_path.display()))?;
    let cfg = SensorConfig {
        midstream: args.midstream,
        flow_memcap: args.flow_memcap_mib.saturating_mul(1 << 20),
        stats_record: !args.no_stats,
        ..SensorConfig::default()
    };
    let cfg = SensorConfig {
        ddos: if args.no_ddos { None } else { cfg.ddos.clone() },
        ..cfg
    };
    let mut sensor = Sensor::new(cfg, BufWriter::with_capacity(1 << 16, file));
    if let Some(r) = rules {
        sensor = sensor.with_rules(r);
    }
    let stats = canh_nsm::run_capture_file(read, sensor)
        .with_context(|| format!("reading capture {}", read.display()))?;
    if !stats.blocklist.is_empty() {
        // Block list for firewalls: an nftables set file and a JSON feed.
        // Timeouts count from the capture's own clock (the latest listing).
        let now = stats
            .blocklist
            .entries()
            .map(|(_, e)| e.last_seen)
            .max()
            .unwrap_or(0);
        let nft = args.log_dir.join("blocklist.nft");
        std::fs::write(&nft, stats.blocklist.to_nft("canh", "blocklist", now))
            .with_context(|| format!("writing {}", nft.display()))?;
        let feed = args.log_dir.join("blocklist.json");
        std::fs::write(&feed, stats.blocklist.to_json(now).to_string())
            .with_context(|| format!("writing {}", feed.display()))?;
        eprintln!(
            "{} addresses -> {} / {} địa chỉ chặn",
            stats.blocklist.len(),
            nft.display(),
            stats.blocklist.len()
        );
    }
    let events: u64 = stats.events.values().sum();
    eprintln!(
        "{} packets, {} flows, {} events -> {} / {} gói tin, {} luồng, {} sự kiện",
        stats.packets,
        stats.flows.created,
        events,
        eve_path.display(),
        stats.packets,
        stats.flows.created,
        events
    );
    Ok(0)
}

fn check(files: &[PathBuf], summary_only: bool) -> anyhow::Result<i32> {
    let vars = Vars::default();
    let mut summary = CheckSummary::default();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let (_, checks) = canh_nsm::rules::compile_text(&text, &f.display().to_string(), &vars);
        for c in &checks {
            summary.add(c);
            if summary_only {
                continue;
            }
            let sid = c.sid.map_or_else(|| "-".to_string(), |s| s.to_string());
            let verdict = match &c.problem {
                None => "supported".to_string(),
                Some(RuleProblem::Unsupported(k)) => format!("unsupported ({k})"),
                Some(RuleProblem::Invalid(r)) => format!("invalid ({r})"),
            };
            println!("{}:{} sid {sid}: {verdict}", c.file, c.line);
        }
    }
    println!(
        "{} rules: {} supported ({:.1} %), {} unsupported, {} invalid",
        summary.total,
        summary.supported,
        summary.supported_percent(),
        summary.unsupported,
        summary.invalid
    );
    println!(
        "{} luật: {} hỗ trợ ({:.1} %), {} chưa hỗ trợ, {} không hợp lệ",
        summary.total,
        summary.supported,
        summary.supported_percent(),
        summary.unsupported,
        summary.invalid
    );
    let mut reasons: Vec<(&String, &usize)> = summary.reasons.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (reason, n) in reasons {
        println!("  {n:7}  {reason}");
    }
    Ok(if summary.invalid > 0 { 1 } else { 0 })
}
