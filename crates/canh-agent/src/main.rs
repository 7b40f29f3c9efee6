//! `canh-agent`: the Canh endpoint agent.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use canh_agent::client::{self, AgentStatus, Client, ClientOptions, Identity, RunEnd};
use canh_agent::commands::CommandRunner;
use canh_agent::config::AgentConfig;
use canh_agent::sensors::{self, Emit};
use canh_agent::spool::{Spool, SpoolHandle};
use canh_agent::upgrade::{self, Upgrades};
use clap::{Parser, Subcommand};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "canh-agent", version, about = "Canh endpoint agent (EDR)")]
struct Cli {
    /// Log format: `text` or `json`.
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sensors and stream events to the server.
    Run {
        /// Configuration file.
        #[arg(long, default_value = "/etc/canh/canh-agent.toml")]
        config: PathBuf,
    },
    /// Enrol with a server using a one-time token.
    Enrol {
        /// Enrolment endpoint, `HOST:PORT`.
        #[arg(long)]
        server: String,
        /// Enrolment token from the server's administrator.
        #[arg(long, env = "CANH_AGENT_TOKEN")]
        token: String,
        /// SHA-256 of the server's agent CA certificate (64 hex digits).
        #[arg(long)]
        ca_pin: String,
        /// Configuration file (for `state_dir`).
        #[arg(long, default_value = "/etc/canh/canh-agent.toml")]
        config: PathBuf,
    },
    /// Print the identity and spool state.
    Status {
        /// Configuration file.
        #[arg(long, default_value = "/etc/canh/canh-agent.toml")]
        config: PathBuf,
    },
}

fn load_config(path: &PathBuf) -> Result<AgentConfig, String> {
    match std::fs::metadata(path) {
        Ok(_) => AgentConfig::load(path).map_err(|e| format!("{e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentConfig::default()),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_env("CANH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => run(load_config(&config)?).await,
            Command::Enrol { server, token, ca_pin, config } => {
                let cfg = load_config(&config)?;
                let id = client::enrol(&cfg.state_dir, &server, &token, &ca_pin)
                    .await
                    .map_err(|e| format!("enrolment failed: {e}"))?;
                println!("enrolled as agent {} (certificate valid until {})", id.agent_id, id.not_after);
                Ok(())
            }
            Command::Status { config } => {
                let cfg = load_config(&config)?;
                let id = Identity::load(&cfg.state_dir).map_err(|e| e.to_string())?;
                let spool = Spool::open(&cfg.state_dir.join("spool"), cfg.spool.clone())
                    .map_err(|e| e.to_string())?;
                println!(
                    "agent {}\nserver {}:{}\ncertificate valid until {}\nspool: {} pending, {} bytes, acked up to {}",
                    id.agent_id,
                    id.server_host,
                    id.agent_port,
                    id.not_after,
                    spool.pending(),
                    spool.disk_bytes(),
                    spool.acked()
                );
                if let Ok(exe) = std::env::current_exe()
                    && let Ok(u) = Upgrades::open(
                        &cfg.state_dir,
                        &exe,
                        upgrade::Role::Main,
                        cfg.upgrade.clone(),
                    )
                {
                    println!("version {}", u.running_version());
                }
                match upgrade::Marker::load(&cfg.state_dir) {
                    Ok(Some(m)) => println!(
                        "upgrade to {}: {:?}{}",
                        m.version,
                        m.phase,
                        m.reason.map(|r| format!(" ({r})")).unwrap_or_default()
                    ),
                    Ok(None) => {}
                    Err(e) => println!("upgrade marker unreadable: {e}"),
                }
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "canh-agent failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: AgentConfig) -> Result<(), String> {
    Identity::load(&cfg.state_dir).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("locating the agent binary: {e}"))?;
    let role = upgrade::Role::from_env();
    let upgrades = Arc::new(
        Upgrades::open(&cfg.state_dir, &exe, role.clone(), cfg.upgrade.clone())
            .map_err(|e| format!("upgrade state: {e}"))?,
    );
    // The arguments this process got, for the trial child and for `exec`.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if upgrades.start().map_err(|e| e.to_string())? == upgrade::Startup::Exec {
        let err = upgrades.exec(&args);
        error!(error = %err, "exec at start failed; running this binary");
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutting down");
        let _ = tx.send(true);
    });
    loop {
        match run_agent(&cfg, &upgrades, rx.clone()).await? {
            RunEnd::Shutdown => return Ok(()),
            RunEnd::TrialDone => {
                info!("trial passed; handing over to the supervising agent");
                return Ok(());
            }
            RunEnd::Upgrade => {
                let mut rx = rx.clone();
                match upgrades.supervise_trial(&args, &mut rx).await {
                    Ok(true) => match upgrades.install() {
                        Ok(_) => {
                            let err = upgrades.exec(&args);
                            error!(error = %err, "previous agent kept");
                        }
                        Err(e) => error!(error = %e, "cannot install the new agent"),
                    },
                    Ok(false) => info!(
                        version = upgrades.running_version(),
                        "previous agent resumes"
                    ),
                    Err(e) => {
                        warn!(error = %e, "upgrade abandoned");
                        if *rx.borrow() {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

/// Runs sensors and the client until shutdown or an upgrade; everything is stopped (threads
/// joined, spool closed) when it returns.
async fn run_agent(
    cfg: &AgentConfig,
    upgrades: &Arc<Upgrades>,
    rx: tokio::sync::watch::Receiver<bool>,
) -> Result<RunEnd, String> {
    let spool = Spool::open(&cfg.state_dir.join("spool"), cfg.spool.clone())
        .map_err(|e| format!("opening spool: {e}"))?;
    if spool.recovery().truncated_bytes > 0 {
        warn!(
            bytes = spool.recovery().truncated_bytes,
            "spool tail repaired after a crash"
        );
    }
    let spool = SpoolHandle::new(spool);
    let status = Arc::new(AgentStatus::default());
    let stop = Arc::new(AtomicBool::new(false));
    let host = client::hostname();
    let emit: Emit = {
        let spool = spool.clone();
        Arc::new(move |events| {
            let n = events.len();
            if let Err(e) = spool.append_owned(events) {
                error!(error = %e, dropped = n, "cannot spool events");
            }
        })
    };
    let threads = start_sensors(cfg, &host, &emit, &status, &stop);
    let commands = Arc::new(CommandRunner::new(&cfg.state_dir));
    match commands.isolation().restore() {
        Ok(true) => info!("host isolation re-applied from saved state"),
        Ok(false) => {}
        Err(e) => error!(error = %e, "cannot re-apply saved host isolation"),
    }
    let options = ClientOptions {
        heartbeat: Duration::from_secs(cfg.heartbeat_secs),
        batch_events: cfg.batch_events,
        ..ClientOptions::default()
    };
    let client = Client::new(&cfg.state_dir, spool, status, options, commands)
        .with_upgrades(upgrades.clone());
    info!(version = upgrades.running_version(), "canh-agent running");
    let end = client.run(rx).await;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    Ok(end)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Puts the YARA scanner between the sensors and the spool when rules are configured.
#[cfg(feature = "yara")]
fn yara_stage(
    cfg: &AgentConfig,
    host: &str,
    emit: &Emit,
    status: &Arc<AgentStatus>,
    stop: &Arc<AtomicBool>,
    threads: &mut Vec<std::thread::JoinHandle<()>>,
) -> Emit {
    use canh_agent::yara;
    if cfg.yara.rules.is_empty() {
        return emit.clone();
    }
    match yara::RuleSet::load(&cfg.yara.rules) {
        Ok(rules) => {
            for r in &rules.rejected {
                warn!(file = %r.path.display(), error = %r.message, "YARA rule file left out");
            }
            status.sensor_started("yara");
            let (tap, handle) = yara::start(
                rules,
                cfg.yara.clone(),
                host.to_owned(),
                emit.clone(),
                stop.clone(),
            );
            threads.push(handle);
            tap
        }
        Err(e) => {
            if let yara::YaraError::NoRules { rejected } = &e {
                for r in rejected {
                    warn!(file = %r.path.display(), error = %r.message, "YARA rule file left out");
                }
            }
            error!(error = %e, "YARA scanning off");
            emit.clone()
        }
    }
}

#[cfg(not(feature = "yara"))]
fn yara_stage(
    cfg: &AgentConfig,
    _host: &str,
    emit: &Emit,
    _status: &Arc<AgentStatus>,
    _stop: &Arc<AtomicBool>,
    _threads: &mut Vec<std::thread::JoinHandle<()>>,
) -> Emit {
    if !cfg.yara.rules.is_empty() {
        warn!("[yara] rules are configured but this agent was built without the `yara` feature");
    }
    emit.clone()
}

fn start_sensors(
    cfg: &AgentConfig,
    host: &str,
    emit: &Emit,
    status: &Arc<AgentStatus>,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    let emit = &yara_stage(cfg, host, emit, status, stop, &mut threads);
    let proc_root = PathBuf::from("/proc");
    if cfg.sensors.process {
        match sensors::process::ProcConnector::open() {
            Ok(conn) => {
                status.sensor_started("process");
                let (host, emit, stop, root) = (
                    host.to_owned(),
                    emit.clone(),
                    stop.clone(),
                    proc_root.clone(),
                );
                threads.push(std::thread::spawn(move || {
                    if let Err(e) = sensors::process::run(conn, host, root, emit, stop) {
                        error!(error = %e, "process sensor stopped");
                    }
                }));
            }
            Err(e) => warn!(error = %e, "process sensor unavailable"),
        }
    }
    if !cfg.sensors.fim_paths.is_empty() {
        match sensors::fim::Fim::new(&cfg.sensors.fim_paths) {
            Ok(mut fim) => {
                status.sensor_started("file");
                info!(files = fim.baseline_len(), "file integrity baseline taken");
                let (host, emit, stop) = (host.to_owned(), emit.clone(), stop.clone());
                threads.push(std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match fim.poll(&host) {
                            Ok(evs) if !evs.is_empty() => emit(evs),
                            Ok(_) => {}
                            Err(e) => {
                                error!(error = %e, "file sensor stopped");
                                return;
                            }
                        }
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }));
            }
            Err(e) => warn!(error = %e, "file sensor unavailable"),
        }
    }
    if cfg.sensors.network_poll_secs > 0 {
        status.sensor_started("network");
        let every = Duration::from_secs(cfg.sensors.network_poll_secs);
        let (host, emit, stop, root) = (host.to_owned(), emit.clone(), stop.clone(), proc_root);
        threads.push(std::thread::spawn(move || {
            let enricher = sensors::procinfo::Enricher::default();
            let mut tracker = sensors::network::ConnectionTracker::default();
            // The first poll only learns what is already open.
            tracker.poll(&host, &root, &enricher);
            while sleep_unless_stopped(&stop, every) {
                let evs = tracker.poll(&host, &root, &enricher);
                if !evs.is_empty() {
                    emit(evs);
                }
            }
        }));
    }
    if cfg.sensors.logins {
        status.sensor_started("login");
        let (host, emit, stop, auth_log) = (
            host.to_owned(),
            emit.clone(),
            stop.clone(),
            cfg.sensors.auth_log.clone(),
        );
        threads.push(std::thread::spawn(move || {
            sensors::logins::run(
                host,
                std::path::Path::new("/var/log"),
                &auth_log,
                emit,
                stop,
            );
        }));
    }
    if cfg.sensors.devices {
        match sensors::devices::UeventSocket::open() {
            Ok(sock) => {
                status.sensor_started("device");
                let (host, emit, stop) = (host.to_owned(), emit.clone(), stop.clone());
                threads.push(std::thread::spawn(move || {
                    if let Err(e) = sensors::devices::run(sock, host, emit, stop) {
                        error!(error = %e, "device sensor stopped");
                    }
                }));
            }
            Err(e) => warn!(error = %e, "device sensor unavailable"),
        }
    }
    if cfg.inventory.interval_secs > 0 {
        let policy = match &cfg.inventory.policy {
            Some(p) => canh_agent::sca::Policy::load(p),
            None => canh_agent::sca::Policy::builtin(),
        };
        match policy {
            Ok(policy) => {
                status.sensor_started("inventory");
                let every = Duration::from_secs(cfg.inventory.interval_secs);
                let dpkg = cfg.inventory.dpkg_status.clone();
                let (host, emit, stop) = (host.to_owned(), emit.clone(), stop.clone());
                threads.push(std::thread::spawn(move || {
                    loop {
                        let mut evs = vec![canh_agent::inventory::host_event(&host)];
                        match canh_agent::inventory::local_package_inventory(&host, &dpkg) {
                            Ok(ev) => evs.push(ev),
                            Err(e) => warn!(error = %e, "package inventory unavailable"),
                        }
                        let assessment = policy.evaluate(std::path::Path::new("/"));
                        evs.push(canh_agent::sca::assessment_event(&host, &assessment));
                        emit(evs);
                        if !sleep_unless_stopped(&stop, every) {
                            break;
                        }
                    }
                }));
            }
            Err(e) => error!(error = %e, "configuration-check policy invalid; inventory off"),
        }
    }
    if cfg.sensors.modules_poll_secs > 0 {
        status.sensor_started("kernel_module");
        let every = Duration::from_secs(cfg.sensors.modules_poll_secs);
        let (host, emit, stop) = (host.to_owned(), emit.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let read = || {
                sensors::modules::parse_modules(
                    &std::fs::read_to_string("/proc/modules").unwrap_or_default(),
                )
            };
            let mut before = read();
            while sleep_unless_stopped(&stop, every) {
                let after = read();
                let evs = sensors::modules::diff(&host, &before, &after);
                if !evs.is_empty() {
                    emit(evs);
                }
                before = after;
            }
        }));
    }
    threads
}

/// Sleeps `total` in short steps; false once `stop` is set.
fn sleep_unless_stopped(stop: &AtomicBool, total: Duration) -> bool {
    let step = Duration::from_millis(250);
    let mut slept = Duration::ZERO;
    while slept < total {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(step);
        slept += step;
    }
    !stop.load(Ordering::Relaxed)
}
