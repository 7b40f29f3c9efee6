//! `canh sensor`: read a capture, write EVE JSON (`eve.json`) into a log directory;
//! `canh sensor rules check FILE...`: report which signatures Canh can run.

use anyhow::Context as _;
use canh_nsm::rules::{CheckSummary, RuleProblem, Vars};
use canh_nsm::{Sensor, SensorConfig};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `canh sensor`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct SensorArgs {
    #[command(subcommand)]
    command: Option<SensorCommand>,
    /// Capture file to read (pcap or pcapng).
    #[arg(
        short = 'r',
        long = "read",
        value_name = "FILE",
        conflicts_with = "interface"
    )]
    read: Option<PathBuf>,
    /// Capture live on this interface (Linux AF_PACKET; needs root or CAP_NET_RAW) until
    /// SIGINT/SIGTERM.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    interface: Option<String>,
    /// Live capture: worker threads, each with its own socket in one fanout group (flows are
    /// hashed symmetrically, so both directions of a flow reach the same worker).
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with = "read",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,
    /// Live capture: put the interface into promiscuous mode.
    #[arg(long, requires = "interface")]
    promisc: bool,
    /// Live capture: size of each worker's memory-mapped TPACKET_V3 ring in MiB; 0 reads
    /// packets one by one with recvmsg instead.
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = 32,
        conflicts_with = "read"
    )]
    ring_mib: usize,
    /// Live capture: compiled BPF filter, the output of `tcpdump -ddd EXPR` (or `-dd`).
    #[arg(long, value_name = "FILE", requires = "interface")]
    bpf_file: Option<PathBuf>,
    /// Live capture: filter expression in tcpdump syntax, e.g. `not port 22` (compiled with
    /// the system's libpcap).
    #[arg(
        long,
        value_name = "EXPR",
        requires = "interface",
        conflicts_with = "bpf_file"
    )]
    bpf: Option<String>,
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
    /// Keep matching content rules against the packets of TLS and SSH sessions after their
    /// handshake (Suricata's `encryption-handling: full`). By default an encrypted session's
    /// packets are checked by header rules and its handshake by `tls.*`/`ja3`/`ja4` rules only.
    #[arg(long)]
    inspect_encrypted: bool,
    /// Also ship every EVE record to the Canh server this state directory is enrolled with
    /// (`canh sensor enrol`), on the endpoint agent's no-loss path: records wait in
    /// DIR/spool until the server acknowledges them.
    #[arg(long, value_name = "DIR")]
    ship: Option<PathBuf>,
    /// With --ship: after the capture ends, wait at most this long for the acknowledgement
    /// (default: -r waits until everything is acknowledged, -i 10 s); the rest stays spooled
    /// and is sent first next time.
    #[arg(long, value_name = "SECS", requires = "ship")]
    ship_wait: Option<u64>,
}

#[derive(clap::Subcommand, Debug)]
enum SensorCommand {
    /// Signature files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Enrol this sensor with a server (a one-time token from `canh agent token`), for --ship.
    Enrol {
        /// The server's agent enrolment endpoint, `HOST:PORT`.
        #[arg(long)]
        server: String,
        /// Enrolment token.
        #[arg(long, env = "CANH_SENSOR_TOKEN")]
        token: String,
        /// SHA-256 of the server's agent CA certificate (64 hex digits).
        #[arg(long)]
        ca_pin: String,
        /// Where the identity and the spool are kept.
        #[arg(long, value_name = "DIR", default_value = "/var/lib/canh-sensor")]
        state_dir: PathBuf,
    },
    /// Send what the spool holds to the server and wait for its acknowledgement.
    Ship {
        /// The enrolled state directory.
        #[arg(long, value_name = "DIR", default_value = "/var/lib/canh-sensor")]
        state_dir: PathBuf,
        /// Give up after this many seconds (exit status 3; the events stay spooled).
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
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
    match &args.command {
        Some(SensorCommand::Enrol {
            server,
            token,
            ca_pin,
            state_dir,
        }) => return crate::sensor_ship::enrol(state_dir, server, token, ca_pin),
        Some(SensorCommand::Ship { state_dir, wait }) => {
            return crate::sensor_ship::ship(state_dir, wait.map(Duration::from_secs));
        }
        _ => {}
    }
    if args.read.is_none() && args.interface.is_none() {
        anyhow::bail!(
            "give a capture with -r FILE or an interface with -i IFACE (or a subcommand, see \
             --help) / cần -r TỆP hoặc -i GIAO_DIỆN"
        );
    }
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
    let cfg = SensorConfig {
        midstream: args.midstream,
        flow_memcap: args.flow_memcap_mib.saturating_mul(1 << 20),
        stats_record: !args.no_stats,
        inspect_encrypted: args.inspect_encrypted,
        ..SensorConfig::default()
    };
    let cfg = SensorConfig {
        ddos: if args.no_ddos { None } else { cfg.ddos.clone() },
        ..cfg
    };
    let mut shipper = match &args.ship {
        Some(dir) => Some(crate::sensor_ship::Shipper::start(dir)?),
        None => None,
    };
    let Some(read) = &args.read else {
        let tee = shipper.as_ref().map(crate::sensor_ship::Shipper::sink);
        let res = live(&args, cfg, rules, eve_path, tee);
        let wait = Duration::from_secs(args.ship_wait.unwrap_or(10));
        let shipped = finish_shipping(shipper, Some(wait))?;
        return Ok(res?.max(shipped));
    };
    let file =
        File::create(&eve_path).with_context(|| format!("creating {}", eve_path.display()))?;
    let out: Box<dyn std::io::Write + Send> = match &shipper {
        Some(s) => Box::new(canh_nsm::eve::TeeLines::new(
            BufWriter::with_capacity(1 << 16, file),
            s.sink(),
        )),
        None => Box::new(BufWriter::with_capacity(1 << 16, file)),
    };
    let mut sensor = Sensor::new(cfg, out);
    if let Some(r) = rules {
        sensor = sensor.with_rules(r);
    }
    let stats = canh_nsm::run_capture_file(read, sensor)
        .with_context(|| format!("reading capture {}", read.display()));
    let stats = match stats {
        Ok(s) => s,
        Err(e) => {
            if let Some(s) = shipper.take() {
                // What was read before the error is shipped too.
                finish_shipping(Some(s), args.ship_wait.map(Duration::from_secs))?;
            }
            return Err(e);
        }
    };
    write_blocklist(&stats, &args.log_dir)?;
    report(&stats, &eve_path);
    finish_shipping(shipper, args.ship_wait.map(Duration::from_secs))
}

/// Spools the last lines, waits for the server's acknowledgement (at most `wait`), stops.
fn finish_shipping(
    shipper: Option<crate::sensor_ship::Shipper>,
    wait: Option<Duration>,
) -> anyhow::Result<i32> {
    let Some(mut shipper) = shipper else {
        return Ok(0);
    };
    let counts = shipper.finish_input();
    eprintln!(
        "{} events spooled for the server ({} unparsed, {} lost); waiting for its acknowledgement / đã đưa {} sự kiện vào hàng đợi gửi máy chủ",
        counts.spooled, counts.unparsed, counts.lost, counts.spooled
    );
    let done = shipper.wait_acked(wait);
    let left = shipper.pending();
    shipper.stop();
    if done {
        eprintln!("shipped: everything acknowledged / đã gửi: máy chủ đã xác nhận tất cả");
        Ok(0)
    } else {
        eprintln!(
            "{left} events still wait for the server; they stay spooled (`canh sensor ship`) /              còn {left} sự kiện chờ máy chủ, vẫn giữ trong hàng đợi"
        );
        Ok(3)
    }
}

/// `canh sensor -i IFACE`: live capture until SIGINT/SIGTERM.
#[cfg(target_os = "linux")]
fn live(
    args: &SensorArgs,
    cfg: SensorConfig,
    rules: Option<Arc<canh_nsm::rules::RuleSet>>,
    eve_path: PathBuf,
    tee: Option<canh_nsm::eve::LineSink>,
) -> anyhow::Result<i32> {
    let iface = args.interface.clone().unwrap_or_default();
    let mut live = canh_nsm::LiveConfig::new(iface.clone(), eve_path.clone());
    live.tee = tee;
    live.workers = usize::from(args.workers);
    live.promisc = args.promisc;
    live.ring_bytes = args.ring_mib.saturating_mul(1 << 20);
    live.sensor = cfg;
    live.rules = rules;
    live.filter_expr = args.bpf.clone();
    if let Some(f) = &args.bpf_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        live.filter = Some(
            canh_nsm::live::BpfProgram::parse(&text)
                .with_context(|| format!("reading BPF filter {}", f.display()))?,
        );
    }
    eprintln!(
        "capturing on {iface} with {} worker(s), Ctrl-C to stop / đang bắt gói trên {iface}",
        live.workers
    );
    let stats = canh_nsm::run_live(live).with_context(|| format!("capturing on {iface}"))?;
    write_blocklist(&stats.total, &args.log_dir)?;
    eprintln!(
        "kernel: {} packets, {} dropped / nhân: {} gói, {} gói bị bỏ",
        stats.kernel_packets, stats.kernel_drops, stats.kernel_packets, stats.kernel_drops
    );
    report(&stats.total, &eve_path);
    Ok(0)
}

#[cfg(not(target_os = "linux"))]
fn live(
    _args: &SensorArgs,
    _cfg: SensorConfig,
    _rules: Option<Arc<canh_nsm::rules::RuleSet>>,
    _eve_path: PathBuf,
    _tee: Option<canh_nsm::eve::LineSink>,
) -> anyhow::Result<i32> {
    anyhow::bail!("live capture (-i) is only available on Linux; use -r FILE")
}

/// Writes the block list for firewalls (an nftables set file and a JSON feed), if any.
fn write_blocklist(stats: &canh_nsm::SensorStats, log_dir: &Path) -> anyhow::Result<()> {
    if !stats.blocklist.is_empty() {
        // Block list for firewalls: an nftables set file and a JSON feed.
        // Timeouts count from the capture's own clock (the latest listing).
        let now = stats
            .blocklist
            .entries()
            .map(|(_, e)| e.last_seen)
            .max()
            .unwrap_or(0);
        let nft = log_dir.join("blocklist.nft");
        std::fs::write(&nft, stats.blocklist.to_nft("canh", "blocklist", now))
            .with_context(|| format!("writing {}", nft.display()))?;
        let feed = log_dir.join("blocklist.json");
        std::fs::write(&feed, stats.blocklist.to_json(now).to_string())
            .with_context(|| format!("writing {}", feed.display()))?;
        eprintln!(
            "{} addresses -> {} / {} địa chỉ chặn",
            stats.blocklist.len(),
            nft.display(),
            stats.blocklist.len()
        );
    }
    Ok(())
}

fn report(stats: &canh_nsm::SensorStats, eve_path: &Path) {
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
