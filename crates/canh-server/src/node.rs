//! Starting and stopping a node: open the store, bind every listener, serve HTTP.

use crate::http::{AppState, router};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::{Config, sources};
use anyhow::Context as _;
use canh_store::Store;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tracing::info;

/// A running node and the addresses it actually bound (ports given as 0 are chosen by the OS).
pub struct Node {
    /// HTTP address.
    pub http: SocketAddr,
    /// Base URL of the HTTP port (`https://…` when `server.http_tls` is on).
    pub url: String,
    /// Syslog address (UDP and TCP share the port).
    pub syslog: Option<SocketAddr>,
    /// Syslog over TLS.
    pub syslog_tls: Option<SocketAddr>,
    /// GELF UDP.
    pub gelf_udp: Option<SocketAddr>,
    /// GELF TCP.
    pub gelf_tcp: Option<SocketAddr>,
    /// Shared state (pipeline, store, metrics).
    pub state: Arc<AppState>,
    /// Incident handling.
    pub soar: crate::soar::SoarState,
    /// The agent endpoints, when enabled.
    pub agents: Option<crate::agents::AgentService>,
    tasks: Vec<JoinHandle<()>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    http_task: Option<JoinHandle<()>>,
}

/// Where the event store lives inside the data directory.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("events")
}

impl Node {
    /// Opens the store in `data_dir` and starts every configured listener.
    pub async fn start(cfg: Config, data_dir: &Path) -> anyhow::Result<Node> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
        let store = Store::open(&store_dir(data_dir), cfg.store.clone())
            .await
            .with_context(|| format!("opening event store in {}", store_dir(data_dir).display()))?;
        let store = Arc::new(store);
        let metrics = Arc::new(Metrics::default());
        let pipeline = Arc::new(Pipeline::new(
            store,
            Arc::clone(&metrics),
            &cfg.ingest,
            cfg.server.max_message_bytes,
        ));
        let mut tasks = Vec::new();
        let soar = crate::soar::SoarState::open(data_dir, &cfg.soar)
            .await
            .context("opening the incident database")?;
        soar.set_event_store(Arc::clone(pipeline.store()));
        let mut live_engine = None;
        let mut rule_catalogue = None;
        if let Some(rules) = &cfg.detect.rules_dir {
            let detector = crate::detect::Detector::load(
                rules,
                data_dir,
                Arc::clone(pipeline.store()),
                Some(soar.clone()),
                cfg.detect.suppress_secs,
                Arc::clone(&metrics),
            );
            detector.load_indicator_files(data_dir, cfg.detect.indicators_dir.as_deref());
            live_engine = Some(detector.engine());
            rule_catalogue = Some(detector.catalogue());
            pipeline.add_observer(Arc::new(detector));
        }
        let agents = if cfg.agents.enabled {
            let service = crate::agents::AgentService::open(data_dir, cfg.agents.clone())
                .context("opening the agent endpoints")?;
            let listener = service
                .bind()
                .await
                .context("binding the agent endpoints")?;
            let sink: Arc<dyn crate::agents::AgentEventSink> = Arc::new(PipelineSink {
                pipeline: Arc::clone(&pipeline),
                alerts: crate::detect::AgentAlerts::new(
                    Arc::clone(pipeline.store()),
                    Some(soar.clone()),
                    Arc::clone(&metrics),
                ),
            });
            tasks.push(tokio::spawn(async move {
                if let Err(e) = listener.serve(sink).await {
                    tracing::error!(error = %e, "agent endpoints stopped");
                }
            }));
            Some(service)
        } else {
            None
        };
        tasks.push(tokio::spawn(watch(
            soar.clone(),
            agents.clone(),
            Arc::clone(&pipeline),
        )));
        let max_len = cfg.server.max_message_bytes;
        let batch = cfg.server.batch_max_events;

        if !cfg.ingest.files.is_empty() {
            tasks.push(tokio::spawn(crate::tail::tail_files(
                cfg.ingest.files.clone(),
                data_dir.join("state"),
                Arc::clone(&pipeline),
                std::time::Duration::from_millis(cfg.ingest.file_poll_ms.max(10)),
                max_len,
            )));
        }
        let mut syslog = None;
        if let Some(addr) = cfg.server.syslog {
            let tcp = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding syslog tcp {addr}"))?;
            let bound = tcp.local_addr()?;
            // UDP takes the port TCP got, so that `--syslog 127.0.0.1:0` gives one port for both.
            let udp = UdpSocket::bind(bound)
                .await
                .with_context(|| format!("binding syslog udp {bound}"))?;
            tasks.push(tokio::spawn(sources::syslog_udp(
                udp,
                Arc::clone(&pipeline),
                batch,
            )));
            tasks.push(tokio::spawn(sources::syslog_tcp(
                tcp,
                Arc::clone(&pipeline),
                max_len,
                batch,
            )));
            info!(address = %bound, "syslog listening on udp and tcp");
            syslog = Some(bound);
        }
        let tls_files = if cfg.server.syslog_tls.is_some() || cfg.server.http_tls {
            Some(crate::tls::cert_and_key(
                data_dir,
                cfg.server.tls_cert.as_deref(),
                cfg.server.tls_key.as_deref(),
                Some(cfg.server.http.ip()),
            )?)
        } else {
            None
        };
        let mut syslog_tls = None;
        if let (Some(addr), Some((cert, key))) = (cfg.server.syslog_tls, &tls_files) {
            let acceptor =
                crate::tls::acceptor(cert, key, cfg.server.tls_client_ca.as_deref(), &[])?;
            let clients: std::collections::HashMap<String, Arc<str>> = cfg
                .ingest
                .agency_clients
                .iter()
                .map(|c| (c.identity.clone(), Arc::from(c.agency.as_str())))
                .collect();
            let tcp = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding syslog tls {addr}"))?;
            syslog_tls = Some(tcp.local_addr()?);
            info!(address = %tcp.local_addr()?, "syslog tls listening");
            tasks.push(tokio::spawn(sources::syslog_tls(
                tcp,
                acceptor,
                Arc::clone(&pipeline),
                max_len,
                batch,
                Arc::new(clients),
            )));
        }
        let mut gelf_udp = None;
        if let Some(addr) = cfg.server.gelf_udp {
            let udp = UdpSocket::bind(addr)
                .await
                .with_context(|| format!("binding gelf udp {addr}"))?;
            gelf_udp = Some(udp.local_addr()?);
            tasks.push(tokio::spawn(sources::gelf_udp(
                udp,
                Arc::clone(&pipeline),
                max_len,
            )));
        }
        let mut gelf_tcp = None;
        if let Some(addr) = cfg.server.gelf_tcp {
            let tcp = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding gelf tcp {addr}"))?;
            gelf_tcp = Some(tcp.local_addr()?);
            tasks.push(tokio::spawn(sources::gelf_tcp(
                tcp,
                Arc::clone(&pipeline),
                max_len,
                batch,
            )));
        }

        let http_listener = TcpListener::bind(cfg.server.http)
            .await
            .with_context(|| format!("binding http {}", cfg.server.http))?;
        let http = http_listener.local_addr()?;
        let local_token = write_local_token(data_dir)?;
        let state = Arc::new(AppState {
            metrics,
            config: cfg,
            pipeline,
            soar: soar.clone(),
            local_token,
            rules: rule_catalogue,
        });
        let mut app = router(Arc::clone(&state))
            .merge(crate::soar::router(soar.clone()))
            .merge(crate::console::router(Arc::clone(&state), soar.clone()))
            .merge(crate::detect::indicators_router(
                soar.clone(),
                live_engine,
                data_dir,
            ));
        if let Some(a) = &agents {
            app = app.merge(crate::agents::api::router(
                a.clone(),
                soar.clone(),
                Some(state.local_token.clone()),
            ));
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let https = match (&tls_files, state.config.server.http_tls) {
            (Some((cert, key)), true) => Some(crate::tls::acceptor(
                cert,
                key,
                state.config.server.tls_client_ca.as_deref(),
                &[b"http/1.1"],
            )?),
            _ => None,
        };
        let scheme = if https.is_some() { "https" } else { "http" };
        let http_task = tokio::spawn(async move {
            let stop = async {
                let _ = rx.await;
            };
            if let Some(acceptor) = https {
                crate::tls::serve_https(http_listener, acceptor, app, stop).await;
                return;
            }
            let serve = axum::serve(
                http_listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stop);
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "http server failed");
            }
        });
        info!(address = %http, scheme, "http listening (api, console, ingest apis)");
        Ok(Node {
            http,
            url: format!("{scheme}://{http}"),
            syslog,
            syslog_tls,
            gelf_udp,
            gelf_tcp,
            state,
            soar,
            agents,
            tasks,
            shutdown: Some(tx),
            http_task: Some(http_task),
        })
    }

    /// Stops the listeners and flushes the store.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.http_task.take() {
            let _ = h.await;
        }
        self.state
            .pipeline
            .store()
            .flush()
            .await
            .context("flushing the event store")?;
        Ok(())
    }
}

/// Where the local command line finds its bearer token.
pub fn local_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server.token")
}

/// A fresh random token for the local command line, readable by the owner only.
fn write_local_token(data_dir: &Path) -> anyhow::Result<String> {
    use std::io::Write as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let token = hex::encode(bytes);
    let path = local_token_path(data_dir);
    // Written aside and renamed, so that a reader never sees the file empty.
    let tmp = data_dir.join("server.token.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(token.as_bytes())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(token)
}

/// Agent events enter the same pipeline as every other source; the agent's acknowledgement
/// waits for the WAL. Alerts the agents raise themselves (YARA matches) are recorded once their
/// batch is stored (a replayed batch is deduplicated before it gets here).
struct PipelineSink {
    pipeline: Arc<Pipeline>,
    alerts: crate::detect::AgentAlerts,
}

impl crate::agents::AgentEventSink for PipelineSink {
    fn deliver<'a>(
        &'a self,
        _agent_id: &'a str,
        events: Vec<canh_core::Event>,
    ) -> crate::agents::SinkFuture<'a> {
        Box::pin(async move {
            let alerts = crate::detect::AgentAlerts::alerts_for(&events);
            let items = events.into_iter().map(Ok).collect();
            self.pipeline.ingest_parsed("agent", items).await?;
            self.alerts.raise(alerts).await;
            Ok(())
        })
    }
}

/// Periodic checks: overdue incident reports and silent agents become alerts.
async fn watch(
    soar: crate::soar::SoarState,
    agents: Option<crate::agents::AgentService>,
    pipeline: Arc<Pipeline>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
    let mut reported: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        tick.tick().await;
        if let Err(e) = soar.raise_overdue_alerts().await {
            tracing::warn!(error = %e, "overdue check failed");
        }
        let Some(agents) = &agents else { continue };
        let silent = agents.silent_agents(chrono::Utc::now());
        let now_silent: std::collections::HashSet<String> =
            silent.iter().map(|a| a.agent_id.clone()).collect();
        for a in silent.iter().filter(|a| !reported.contains(&a.agent_id)) {
            let mut ev = canh_core::Event::new(chrono::Utc::now());
            ev.set("event.kind", "alert");
            ev.set("event.module", "canh_agents");
            ev.set("rule.id", "canh.agents.silent_endpoint");
            ev.set("rule.name", "Silent endpoint");
            ev.set("canh.alert.severity", "high");
            ev.set("agent.id", a.agent_id.as_str());
            ev.set("host.name", a.hostname.as_str());
            if let Some(code) = &a.agency {
                ev.set("organization.id", code.as_str());
            }
            ev.set(
                "message",
                format!(
                    "endpoint {} ({}) missed its heartbeats",
                    a.hostname, a.agent_id
                ),
            );
            let alert = canh_soar::NewAlert {
                rule_id: "canh.agents.silent_endpoint".into(),
                rule_title: "Thiết bị đầu cuối im lặng / Silent endpoint".into(),
                rule_level: "high".into(),
                severity: canh_soar::Severity::High,
                agency_id: match &a.agency {
                    Some(code) => soar.soar.agency_by_code(code).await.ok().map(|x| x.id),
                    None => None,
                },
                host: a.hostname.clone(),
                event: serde_json::to_value(&ev).unwrap_or_default(),
                time: ev.timestamp,
                dedup_key: Some(format!("silent|{}", a.agent_id)),
            };
            if let Err(e) = soar.record_alert(alert).await {
                tracing::warn!(error = %e, "silent-endpoint alert not recorded");
            }
            if let Err(e) = pipeline.store().append(vec![ev]).await {
                tracing::warn!(error = %e, "silent-endpoint alert not stored");
            }
        }
        reported = now_silent;
    }
}
