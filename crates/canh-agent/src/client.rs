//! Enrolment and the mutual-TLS session with the server.
//!
//! Framing: one long-lived TLS 1.3 stream carrying length-prefixed JSON frames
//! ([`canh_core::wire`]). A single bidirectional stream fits the traffic (batches up, acks and
//! signed commands down, no request/response pairing needed), keeps the agent free of an HTTP
//! stack, and makes the ack window and replay explicit in one place.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canh_core::wire::{
    self, AgentMessage, EnrolRequest, EventBatch, Heartbeat, Hello, RenewRequest, ServerMessage,
    WireError,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

use crate::commands::CommandRunner;
use crate::pki::{self, PkiError};
use crate::spool::{SpoolError, SpoolHandle};
use crate::upgrade::{AckEffect, Upgrades};

const IDENTITY_FILE: &str = "identity.json";
const KEY_FILE: &str = "agent.key";
const CERT_FILE: &str = "agent.crt";
const CA_FILE: &str = "ca.crt";

/// Transport failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Network or file I/O.
    #[error("i/o: {context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Keys, certificates or TLS configuration.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// A frame could not be encoded or decoded.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server refused us (bad token, revoked, …).
    #[error("refused by server: {} ({})", .0.code, .0.message)]
    Refused(WireError),
    /// The agent has not enrolled yet.
    #[error("not enrolled: run `canh-agent enrol` first")]
    NotEnrolled,
    /// The connection closed.
    #[error("connection closed by server")]
    Closed,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClientError {
    let context = context.into();
    move |source| ClientError::Io { context, source }
}

/// What enrolment leaves in the state directory (`identity.json`; key and certs beside it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// Id the server gave us.
    pub agent_id: String,
    /// Host of the server (from the enrolment address).
    pub server_host: String,
    /// Port of the mutual-TLS endpoint.
    pub agent_port: u16,
    /// SHA-256 of the CA certificate, hex.
    pub ca_pin: String,
    /// Validity start of the client certificate.
    pub not_before: DateTime<Utc>,
    /// Validity end of the client certificate.
    pub not_after: DateTime<Utc>,
    /// Ed25519 public key (hex) that signs response commands.
    pub command_key: String,
}

impl Identity {
    /// Loads the identity from `state_dir`.
    pub fn load(state_dir: &Path) -> Result<Self, ClientError> {
        let path = state_dir.join(IDENTITY_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ClientError::NotEnrolled);
            }
            Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
        };
        serde_json::from_str(&text).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Renewal is due once two thirds of the certificate lifetime have passed.
    pub fn needs_renewal(&self, now: DateTime<Utc>) -> bool {
        let life = self.not_after - self.not_before;
        now >= self.not_before + life * 2 / 3
    }
}

/// Writes `data` to `path` atomically (temp file, fsync, rename) with the given mode.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), ClientError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let ctx = || format!("writing {}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(ctx()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io(ctx()))?;
    std::fs::rename(&tmp, path).map_err(io(ctx()))
}

async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &AgentMessage,
) -> Result<(), ClientError> {
    let frame = wire::encode_frame(msg).map_err(|e| ClientError::Protocol(e.to_string()))?;
    w.write_all(&frame).await.map_err(io("sending frame"))?;
    w.flush().await.map_err(io("sending frame"))
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<ServerMessage>, ClientError> {
    let mut header = [0u8; 4];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io("reading frame")(e)),
    }
    let len = wire::decode_frame_len(header).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(io("reading frame"))?;
    wire::decode_body(&body)
        .map(Some)
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

/// Splits `host:port` (IPv6 as `[::1]:port`) into its host part.
fn host_of(addr: &str) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Enrols with the server at `server` (`host:port` of its enrolment endpoint) and stores the
/// identity, key and certificates in `state_dir`.
pub async fn enrol(
    state_dir: &Path,
    server: &str,
    token: &str,
    ca_pin: &str,
) -> Result<Identity, ClientError> {
    let pin = pki::parse_pin(ca_pin)?;
    let host = hostname();
    let kc = pki::generate_key_and_csr(&host)?;
    let cfg = pki::enrol_config(pin)?;
    let tcp = TcpStream::connect(server)
        .await
        .map_err(io(format!("connecting to {server}")))?;
    let mut tls = TlsConnector::from(Arc::new(cfg))
        .connect(pki::server_name(), tcp)
        .await
        .map_err(io("TLS handshake with the enrolment endpoint"))?;
    let req = EnrolRequest {
        protocol: wire::PROTOCOL_VERSION,
        token: token.to_owned(),
        csr_pem: kc.csr_pem,
        hostname: host,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        os: crate::os_name(),
    };
    write_frame(&mut tls, &AgentMessage::Enrol(req)).await?;
    let resp = match read_frame(&mut tls).await? {
        Some(ServerMessage::Enrolled(r)) => r,
        Some(ServerMessage::Error(e)) => return Err(ClientError::Refused(e)),
        Some(_) => return Err(ClientError::Protocol("unexpected answer to enrol".into())),
        None => return Err(ClientError::Closed),
    };
    let ca = pki::certs_from_pem(&resp.ca_pem)?.remove(0);
    if pki::fingerprint(ca.as_ref()) != hex::encode(pin) {
        return Err(PkiError::PinMismatch.into());
    }
    std::fs::create_dir_all(state_dir).map_err(io(format!("creating {}", state_dir.display())))?;
    write_atomic(&state_dir.join(KEY_FILE), kc.key_pem.as_bytes(), 0o600)?;
    write_atomic(&state_dir.join(CERT_FILE), resp.cert_pem.as_bytes(), 0o644)?;
    write_atomic(&state_dir.join(CA_FILE), resp.ca_pem.as_bytes(), 0o644)?;
    let identity = Identity {
        agent_id: resp.agent_id,
        server_host: host_of(server),
        agent_port: resp.agent_port,
        ca_pin: hex::encode(pin),
        not_before: resp.not_before,
        not_after: resp.not_after,
        command_key: resp.command_key,
    };
    save_identity(state_dir, &identity)?;
    info!(agent_id = %identity.agent_id, "enrolled");
    Ok(identity)
}

fn save_identity(state_dir: &Path, identity: &Identity) -> Result<(), ClientError> {
    let json =
        serde_json::to_vec_pretty(identity).map_err(|e| ClientError::Protocol(e.to_string()))?;
    write_atomic(&state_dir.join(IDENTITY_FILE), &json, 0o644)
}

/// Self-health shared between sensors, the response module and the heartbeat.
#[derive(Debug, Default)]
pub struct AgentStatus {
    /// Sensors that started successfully.
    pub active_sensors: Mutex<Vec<String>>,
    /// Whether the host is isolated.
    pub isolated: AtomicBool,
}

impl AgentStatus {
    /// Records that `sensor` is running.
    pub fn sensor_started(&self, sensor: &str) {
        let mut s = self
            .active_sensors
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !s.iter().any(|x| x == sensor) {
            s.push(sensor.to_owned());
        }
    }
}

/// Session settings.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Interval between heartbeats.
    pub heartbeat: Duration,
    /// Most events per batch.
    pub batch_events: usize,
    /// Most unacknowledged batches in flight.
    pub window_batches: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(30),
            batch_events: 500,
            window_batches: 4,
        }
    }
}

/// The agent's connection to its server.
pub struct Client {
    state_dir: PathBuf,
    spool: SpoolHandle,
    status: Arc<AgentStatus>,
    options: ClientOptions,
    commands: Arc<CommandRunner>,
    upgrades: Option<Arc<Upgrades>>,
}

/// Why [`Client::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// Shutdown was requested.
    Shutdown,
    /// A release was verified and staged: stop everything and run the trial
    /// ([`Upgrades::supervise_trial`]).
    Upgrade,
    /// This process was a trial and the server acknowledged it: exit 0.
    TrialDone,
}

impl Client {
    /// A client for the identity stored in `state_dir`.
    pub fn new(
        state_dir: &Path,
        spool: SpoolHandle,
        status: Arc<AgentStatus>,
        options: ClientOptions,
        commands: Arc<CommandRunner>,
    ) -> Self {
        Self {
            state_dir: state_dir.to_path_buf(),
            spool,
            status,
            options,
            commands,
            upgrades: None,
        }
    }

    /// Enables upgrades (see [`crate::upgrade`]): reports, rollouts and the running version.
    pub fn with_upgrades(mut self, upgrades: Arc<Upgrades>) -> Self {
        self.upgrades = Some(upgrades);
        self
    }

    /// The version this agent reports.
    pub fn version(&self) -> String {
        self.upgrades.as_ref().map_or_else(
            || env!("CARGO_PKG_VERSION").to_owned(),
            |u| u.running_version().to_owned(),
        )
    }

    /// A mutual-TLS connection to the agent endpoint.
    async fn connect(
        &self,
        identity: &Identity,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
        let pin = pki::parse_pin(&identity.ca_pin)?;
        let read = |name: &str| {
            let p = self.state_dir.join(name);
            std::fs::read_to_string(&p).map_err(io(format!("reading {}", p.display())))
        };
        let cfg = pki::session_config(pin, &read(CA_FILE)?, &read(CERT_FILE)?, &read(KEY_FILE)?)?;
        let addr = (identity.server_host.as_str(), identity.agent_port);
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(io("connecting to server"))?;
        TlsConnector::from(Arc::new(cfg))
            .connect(pki::server_name(), tcp)
            .await
            .map_err(io("TLS handshake"))
    }

    /// Runs a rollout command. `None` when `cmd` is not a valid upgrade command (the command
    /// runner answers it then); otherwise the result for the server and whether a release is
    /// staged (the session must end for the trial).
    async fn upgrade_command(
        &self,
        identity: &Identity,
        cmd: &wire::SignedCommand,
    ) -> Option<(wire::CommandResult, bool)> {
        let body = crate::commands::verify(&identity.command_key, &identity.agent_id, cmd).ok()?;
        let wire::ResponseAction::UpgradeAgent {
            manifest,
            allow_downgrade,
        } = &body.action
        else {
            return None;
        };
        let result = |ok: bool, message: String| wire::CommandResult {
            id: body.id.clone(),
            ok,
            message,
        };
        if !self.commands.mark_seen(&body.id) {
            return Some((result(false, "command already run".into()), false));
        }
        let Some(upgrades) = &self.upgrades else {
            return Some((result(false, "upgrades are not enabled".into()), false));
        };
        let connect = || async { self.connect(identity).await.map_err(|e| e.to_string()) };
        match upgrades
            .stage(&identity.command_key, manifest, *allow_downgrade, connect)
            .await
        {
            Ok(m) => Some((
                result(
                    true,
                    format!("release {} verified and staged; trial starting", m.version),
                ),
                true,
            )),
            Err(e) => {
                warn!(error = %e, "upgrade refused");
                Some((result(false, format!("upgrade refused: {e}")), false))
            }
        }
    }

    /// Keeps a session up until `shutdown` turns true (or an upgrade ends it), reconnecting
    /// with backoff.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> RunEnd {
        let mut backoff = Duration::from_millis(200);
        loop {
            if *shutdown.borrow() {
                return RunEnd::Shutdown;
            }
            let started = std::time::Instant::now();
            match self.session(&mut shutdown).await {
                Ok(end) => return end,
                Err(e) => warn!(error = %e, "session ended"),
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(200);
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return RunEnd::Shutdown,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// One session: connect, replay from the server's ack, stream, heartbeat, renew.
    /// Returns `Ok` only on shutdown or when an upgrade ends the session.
    pub async fn session(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<RunEnd, ClientError> {
        let identity = Identity::load(&self.state_dir)?;
        let tls = self.connect(&identity).await?;
        let (mut rd, mut wr) = tokio::io::split(tls);
        let (tx, mut rx) = mpsc::channel::<Result<Option<ServerMessage>, ClientError>>(64);
        let reader = AbortOnDrop(tokio::spawn(async move {
            loop {
                let msg = read_frame(&mut rd).await;
                let stop = !matches!(msg, Ok(Some(_)));
                if tx.send(msg).await.is_err() || stop {
                    return;
                }
            }
        }));
        let hello = Hello {
            protocol: wire::PROTOCOL_VERSION,
            agent_id: identity.agent_id.clone(),
            version: self.version(),
        };
        write_frame(&mut wr, &AgentMessage::Hello(hello)).await?;
        let welcome = match rx.recv().await {
            Some(Ok(Some(ServerMessage::Welcome(w)))) => w,
            Some(Ok(Some(ServerMessage::Error(e)))) => return Err(ClientError::Refused(e)),
            Some(Err(e)) => return Err(e),
            Some(Ok(Some(_))) => return Err(ClientError::Protocol("expected welcome".into())),
            Some(Ok(None)) | None => return Err(ClientError::Closed),
        };
        let mut last_sent = self.spool.with(|s| {
            s.resync(welcome.acked_seq)?;
            s.rewind();
            Ok::<_, SpoolError>(s.acked())
        })?;
        info!(agent_id = %identity.agent_id, acked = last_sent, "session established");
        if let Some(report) = self.upgrades.as_ref().and_then(|u| u.pending_report()) {
            // A heartbeat first, so the server has one from this binary, then the report.
            write_frame(&mut wr, &AgentMessage::Heartbeat(self.heartbeat())).await?;
            write_frame(&mut wr, &AgentMessage::UpgradeReport(report)).await?;
        }
        let window = self.options.window_batches * self.options.batch_events as u64;
        let mut heartbeat = tokio::time::interval(self.options.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending_key: Option<String> = None;
        loop {
            loop {
                let batch = self.spool.with(|s| {
                    if last_sent.saturating_sub(s.acked()) >= window {
                        return Ok(Vec::new());
                    }
                    s.read(self.options.batch_events)
                })?;
                let Some(last) = batch.last() else { break };
                last_sent = last.seq;
                debug!(events = batch.len(), last_seq = last_sent, "sending batch");
                write_frame(&mut wr, &AgentMessage::Events(EventBatch { events: batch })).await?;
            }
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Ok(Some(ServerMessage::Ack(a)))) => {
                        self.spool.with(|s| s.ack(a.up_to))?;
                    }
                    Some(Ok(Some(ServerMessage::Command(cmd)))) => {
                        if let Some((result, staged)) = self.upgrade_command(&identity, &cmd).await {
                            write_frame(&mut wr, &AgentMessage::CommandResult(result)).await?;
                            if staged {
                                let _ = wr.shutdown().await;
                                return Ok(RunEnd::Upgrade);
                            }
                            continue;
                        }
                        let result = self.commands.run(&identity, &cmd).await;
                        write_frame(&mut wr, &AgentMessage::CommandResult(result)).await?;
                    }
                    Some(Ok(Some(ServerMessage::UpgradeAck(ack)))) => {
                        let Some(upgrades) = &self.upgrades else { continue };
                        match upgrades.acknowledged(&ack) {
                            Ok(AckEffect::TrialDone) => {
                                let _ = wr.shutdown().await;
                                return Ok(RunEnd::TrialDone);
                            }
                            Ok(AckEffect::None) => {}
                            Err(e) => warn!(error = %e, "cannot record the upgrade acknowledgement"),
                        }
                    }
                    Some(Ok(Some(ServerMessage::Renewed(r)))) => {
                        let Some(key) = pending_key.take() else {
                            return Err(ClientError::Protocol("unrequested renewal".into()));
                        };
                        self.store_renewal(&identity, &key, &r)?;
                    }
                    Some(Ok(Some(ServerMessage::Error(e)))) => return Err(ClientError::Refused(e)),
                    Some(Ok(Some(_))) => return Err(ClientError::Protocol("unexpected message".into())),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(None)) | None => return Err(ClientError::Closed),
                },
                () = self.spool.notified() => {}
                _ = heartbeat.tick() => {
                    let hb = self.heartbeat();
                    write_frame(&mut wr, &AgentMessage::Heartbeat(hb)).await?;
                    let current = Identity::load(&self.state_dir)?;
                    if pending_key.is_none() && current.needs_renewal(Utc::now()) {
                        let kc = pki::generate_key_and_csr(&hostname())?;
                        pending_key = Some(kc.key_pem);
                        info!("renewing client certificate");
                        write_frame(&mut wr, &AgentMessage::Renew(RenewRequest { csr_pem: kc.csr_pem })).await?;
                    }
                }
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        drop(reader);
                        return Ok(RunEnd::Shutdown);
                    }
                }
            }
        }
    }

    fn store_renewal(
        &self,
        identity: &Identity,
        key_pem: &str,
        r: &wire::RenewResponse,
    ) -> Result<(), ClientError> {
        pki::certs_from_pem(&r.cert_pem)?;
        // Key first, then certificate, then identity: a crash in between leaves a key that
        // matches no certificate only until the next renewal attempt, which rewrites both.
        write_atomic(
            &self.state_dir.join("agent.key.new"),
            key_pem.as_bytes(),
            0o600,
        )?;
        write_atomic(
            &self.state_dir.join("agent.crt.new"),
            r.cert_pem.as_bytes(),
            0o644,
        )?;
        let rename = |from: &str, to: &str| {
            std::fs::rename(self.state_dir.join(from), self.state_dir.join(to))
                .map_err(io("installing renewed certificate"))
        };
        rename("agent.key.new", KEY_FILE)?;
        rename("agent.crt.new", CERT_FILE)?;
        let mut updated = identity.clone();
        updated.not_before = r.not_before;
        updated.not_after = r.not_after;
        save_identity(&self.state_dir, &updated)?;
        info!(not_after = %r.not_after, "client certificate renewed");
        Ok(())
    }

    /// The heartbeat as it would be sent now.
    pub fn heartbeat(&self) -> Heartbeat {
        let (queue_depth, spool_bytes, dropped_events) = self
            .spool
            .with(|s| (s.pending(), s.disk_bytes(), s.dropped()));
        Heartbeat {
            version: self.version(),
            sent_at: Some(Utc::now()),
            queue_depth,
            spool_bytes,
            dropped_events,
            active_sensors: self
                .status
                .active_sensors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            isolated: self.status.isolated.load(Ordering::Relaxed)
                || self.commands.isolation().state().isolated,
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn renewal_is_due_after_two_thirds_of_the_lifetime() {
        let nb = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let id = Identity {
            agent_id: "a".into(),
            server_host: "h".into(),
            agent_port: 1,
            ca_pin: String::new(),
            not_before: nb,
            not_after: nb + chrono::Duration::days(90),
            command_key: String::new(),
        };
        assert!(!id.needs_renewal(nb + chrono::Duration::days(59)));
        assert!(id.needs_renewal(nb + chrono::Duration::days(61)));
    }

    #[test]
    fn host_is_taken_from_the_enrolment_address() {
        assert_eq!(host_of("10.0.0.1:8444"), "10.0.0.1");
        assert_eq!(host_of("[::1]:8444"), "::1");
        assert_eq!(host_of("soc.example:8444"), "soc.example");
    }
}
