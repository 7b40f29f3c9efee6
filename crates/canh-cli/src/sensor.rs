//! `canh sensor`: read a capture, write EVE JSON (`eve.json`) into a log directory.

use anyhow::Context as _;
use canh_nsm::{Sensor, SensorConfig};
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

/// Arguments of `canh sensor`.
#[derive(clap::Args, Debug)]
pub(crate) struct SensorArgs {
    /// Capture file to read (pcap or pcapng).
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    read: PathBuf,
    /// Directory for `eve.json` (created if missing).
    #[arg(short = 'l', long = "log-dir", value_name = "DIR", default_value = ".")]
    log_dir: PathBuf,
    /// Parse TCP sessions whose handshake is not in the capture.
    #[arg(long)]
    midstream: bool,
    /// Flow table memory budget in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 128)]
    flow_memcap_mib: usize,
    /// Do not write the final `stats` record.
    #[arg(long)]
    no_stats: bool,
}

pub(crate) fn run(args: SensorArgs) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&args.log_dir)
        .with_context(|| format!("creating log directory {}", args.log_dir.display()))?;
    let eve_path = args.log_dir.join("eve.json");
    let file =
        File::create(&eve_path).with_context(|| format!("creating {}", eve_path.display()))?;
    let cfg = SensorConfig {
        midstream: args.midstream,
        flow_memcap: args.flow_memcap_mib.saturating_mul(1 << 20),
        stats_record: !args.no_stats,
        ..SensorConfig::default()
    };
    let sensor = Sensor::new(cfg, BufWriter::with_capacity(1 << 16, file));
    let stats = canh_nsm::run_capture_file(&args.read, sensor)
        .with_context(|| format!("reading capture {}", args.read.display()))?;
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
