//! `canh server`: run a node with embedded storage.

use crate::datadir::{self, Locked};
use anyhow::Context as _;
use canh_server::{Config, Node};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Arguments of `canh server`.
#[derive(clap::Args, Debug)]
pub(crate) struct ServerArgs {
    /// Configuration file (TOML). Without it, the defaults (see `canh config defaults`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// HTTP address: API, web console and HTTP ingest APIs (overrides server.http).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Syslog address for UDP and TCP (overrides server.syslog).
    #[arg(long)]
    syslog: Option<SocketAddr>,
    /// Load sample events (a small set of real-looking syslog, web and firewall logs) at start.
    #[arg(long)]
    demo: bool,
}

pub(crate) fn run(args: ServerArgs, data_dir: &Path) -> anyhow::Result<i32> {
    let mut cfg = Config::load(args.config.as_deref(), canh_server::config::env_overrides())
        .context("loading configuration")?;
    if let Some(h) = args.http {
        cfg.server.http = h;
    }
    if let Some(s) = args.syslog {
        cfg.server.syslog = Some(s);
    }
    let _lock = match datadir::lock(data_dir)? {
        Locked::Mine(l) => l,
        Locked::Busy => anyhow::bail!(
            "the data directory {} is used by another Canh process; stop it or pass another --data-dir",
            data_dir.display()
        ),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let node = Node::start(cfg, data_dir).await?;
        datadir::write_server_address(data_dir, node.http, node.url.starts_with("https"))?;
        if args.demo {
            let n = crate::demo::load(&node).await?;
            tracing::info!(events = n, "demo events loaded");
        }
        eprintln!("canh {} listening: {}", env!("CARGO_PKG_VERSION"), node.url);
        if let Some(s) = node.syslog {
            eprintln!("  syslog udp+tcp {s}");
        }
        wait_for_signal().await;
        tracing::info!("shutting down");
        node.shutdown().await
    })?;
    Ok(0)
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
