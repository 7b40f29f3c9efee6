//! The server side of the EDR agent channel.
//!
//! * Enrolment: an administrator creates a short-lived, single-use token
//!   ([`AgentService::create_enrolment_token`]); the agent sends it with a CSR over
//!   server-authenticated TLS 1.3 to the enrolment endpoint and gets back a client certificate
//!   signed by the agent CA, which this module creates on first start. Agents pin that CA by
//!   its SHA-256 ([`AgentService::ca_pin`]).
//! * Session: the agent endpoint requires a client certificate chained to the CA (TLS 1.3,
//!   rustls). The certificate's SHA-256 identifies the agent; revoked agents are refused.
//! * Framing: length-prefixed JSON frames ([`canh_core::wire`]) over one long-lived TLS stream:
//!   batches up, acks and signed commands down, no request/response pairing to manage, and
//!   the agent needs no HTTP stack.
//! * No loss, no duplicates: each batch is delivered to the [`AgentEventSink`]; only when the
//!   sink's future resolves (events durable) is the per-agent cursor advanced, persisted and
//!   the batch acknowledged. Events at or below the cursor are dropped as replays, so a
//!   sequence number reaches the sink once, provided the server does not crash between the
//!   sink's durability point and the cursor write (a window of one file rename). Every event
//!   carries `agent.id` and `canh.agent.seq`, so the pipeline can dedup that window too.
//! * Upgrades ([`releases`]): signed release manifests, rollouts as signed commands, downloads
//!   over the agent endpoint, and the agents' upgrade reports (failures raise an alert).

pub mod api;
mod conn;
pub mod hosts;
mod pki;
pub mod releases;
pub mod vuln;

pub use hosts::{HostInventory, HostVulnerabilities, import_offline, vulndb_path};
pub use releases::{
    PublishedRelease, RolloutCommand, RolloutTargets, UpgradeFailure, UpgradeHook, UpgradeRecord,
};
pub use vuln::{ImportReport, PatchStatus, PatchTask, VulnDb, VulnerablePackage};

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use canh_core::Event;
use canh_core::wire::{CommandBody, CommandResult, Heartbeat, ResponseAction, SignedCommand};
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tracing::info;

/// `[agents]` in `canh.toml`: the EDR agent endpoints.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// Run the agent endpoints.
    pub enabled: bool,
    /// Mutual-TLS endpoint for enrolled agents.
    pub listen: String,
    /// Enrolment endpoint (server-authenticated TLS; the token authenticates the agent).
    pub enrol_listen: String,
    /// Extra names/addresses for the server certificate (`canh-server` is always included).
    pub server_names: Vec<String>,
    /// Validity of agent certificates in days (agents renew at two thirds).
    pub cert_days: u32,
    /// Heartbeat interval agents are told to use, in seconds.
    pub heartbeat_secs: u64,
    /// An agent is reported silent after this many missed heartbeats.
    pub missed_heartbeats: u32,
    /// Most events accepted in one batch.
    pub max_batch_events: usize,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "0.0.0.0:8445".into(),
            enrol_listen: "0.0.0.0:8444".into(),
            server_names: vec!["localhost".into()],
            cert_days: 90,
            heartbeat_secs: 30,
            missed_heartbeats: 3,
            max_batch_events: 10_000,
        }
    }
}

/// Agent endpoint failures.
#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    /// File or socket I/O.
    #[error("agents: {context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Certificate or key handling.
    #[error("agents pki: {0}")]
    Pki(String),
    /// TLS configuration.
    #[error("agents tls")]
    Tls(#[from] rustls::Error),
    /// Invalid input or configuration.
    #[error("agents: {0}")]
    Invalid(String),
    /// No such agent.
    #[error("unknown agent {0}")]
    NotFound(String),
    /// The thing exists already (a release version).
    #[error("agents: {0}")]
    Conflict(String),
}

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentsError {
    let context = context.into();
    move |source| AgentsError::Io { context, source }
}

/// Error type a sink returns.
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;
/// Future a sink returns.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// Where agent events go. The future must resolve only once the events are durable: the
/// agent deletes them from its spool when it receives the acknowledgement that follows.
pub trait AgentEventSink: Send + Sync + 'static {
    /// Delivers events of `agent_id` (already stamped with `agent.id` and `canh.agent.seq`).
    fn deliver<'a>(&'a self, agent_id: &'a str, events: Vec<Event>) -> SinkFuture<'a>;
}

/// An agent that missed its heartbeats.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SilentAgent {
    /// Agent id.
    pub agent_id: String,
    /// Host name given at enrolment.
    pub hostname: String,
    /// Last heartbeat (or enrolment / server start when none arrived since).
    pub last_seen: DateTime<Utc>,
    /// Its agency (code), if it has one.
    pub agency: Option<String>,
}

/// What the server knows about an agent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentInfo {
    /// Agent id.
    pub agent_id: String,
    /// Host name given at enrolment.
    pub hostname: String,
    /// OS given at enrolment.
    pub os: String,
    /// When it enrolled.
    pub enrolled_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Its agency (code), from its enrolment token.
    pub agency: Option<String>,
    /// Last heartbeat received since the server started.
    pub last_heartbeat: Option<(DateTime<Utc>, Heartbeat)>,
    /// Highest event sequence number held for it.
    pub acked_seq: u64,
    /// Its last upgrade report (trial passed, installed, failed), if any.
    pub upgrade: Option<UpgradeRecord>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Registry {
    agents: BTreeMap<String, AgentRecord>,
    tokens: Vec<TokenRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct AgentRecord {
    hostname: String,
    os: String,
    version: String,
    enrolled_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    /// SHA-256 of every client certificate issued to it.
    cert_fingerprints: Vec<String>,
    /// The agency (code) its enrolment token was made for; its events carry it as
    /// `organization.id`.
    #[serde(default)]
    agency: Option<String>,
}

/// A command waiting for its agent's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct QueuedCommand {
    pub(crate) id: String,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) command: SignedCommand,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TokenRecord {
    sha256: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    /// The agency (code) that agents enrolled with this token belong to.
    #[serde(default)]
    agency: Option<String>,
}

/// The command queue's file under the agents directory.
const COMMANDS_FILE: &str = "commands.json";

pub(crate) struct Inner {
    dir: PathBuf,
    cfg: AgentsConfig,
    ca: pki::Ca,
    command_key: SigningKey,
    registry: Mutex<Registry>,
    cursors: Mutex<HashMap<String, Arc<tokio::sync::Mutex<u64>>>>,
    heartbeats: Mutex<HashMap<String, (DateTime<Utc>, Heartbeat)>>,
    /// Signed commands not yet answered by their agent, by agent; kept in `commands.json`
    /// so that a restart of the server loses none.
    commands: Mutex<HashMap<String, Vec<QueuedCommand>>>,
    command_wake: tokio::sync::Notify,
    results: Mutex<HashMap<String, Vec<CommandResult>>>,
    opened_at: DateTime<Utc>,
    vulndb: std::sync::RwLock<vuln::VulnDb>,
    patches: Mutex<vuln::PatchBook>,
    upgrades: Mutex<releases::UpgradeBook>,
    upgrade_hook: Mutex<Option<UpgradeHook>>,
    bound: Mutex<Option<(SocketAddr, SocketAddr)>>,
}

/// The agent registry, CA and endpoints. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct AgentService {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), AgentsError> {
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

pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<(), AgentsError> {
    write_atomic(path, data, 0o600)
}

fn random_hex(bytes: usize) -> Result<String, AgentsError> {
    let mut buf = vec![0u8; bytes];
    pki::random(&mut buf)?;
    Ok(hex::encode(buf))
}

impl AgentService {
    /// Opens the registry and CA under `<data_dir>/agents`, creating them on first use.
    pub fn open(data_dir: &Path, cfg: AgentsConfig) -> Result<Self, AgentsError> {
        if cfg.heartbeat_secs == 0 || cfg.missed_heartbeats == 0 || cfg.cert_days == 0 {
            return Err(AgentsError::Invalid(
                "heartbeat_secs, missed_heartbeats and cert_days must be positive".into(),
            ));
        }
        let dir = data_dir.join("agents");
        for sub in ["cursors", "inventory"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(io(format!("creating {}", dir.display())))?;
        }
        let vulndb = vuln::VulnDb::load(&dir.join("vulndb.json"))?;
        let patches_path = dir.join("patch_tasks.json");
        let patches: vuln::PatchBook = match std::fs::read(&patches_path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| AgentsError::Invalid(format!("{}: {e}", patches_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vuln::PatchBook::default(),
            Err(e) => return Err(io(format!("reading {}", patches_path.display()))(e)),
        };
        let upgrades = Inner::load_upgrades(&dir)?;
        let commands_path = dir.join(COMMANDS_FILE);
        let commands: HashMap<String, Vec<QueuedCommand>> = match std::fs::read(&commands_path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| AgentsError::Invalid(format!("{}: {e}", commands_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(io(format!("reading {}", commands_path.display()))(e)),
        };
        let ca = pki::Ca::load_or_create(&dir)?;
        let key_path = dir.join("command.key");
        let command_key = match std::fs::read_to_string(&key_path) {
            Ok(text) => {
                let seed: [u8; 32] = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| AgentsError::Pki("command.key is not 32 hex bytes".into()))?;
                SigningKey::from_bytes(&seed)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                pki::random(&mut seed)?;
                write_private(&key_path, hex::encode(seed).as_bytes())?;
                SigningKey::from_bytes(&seed)
            }
            Err(e) => return Err(io(format!("reading {}", key_path.display()))(e)),
        };
        let reg_path = dir.join("registry.json");
        let registry = match std::fs::read_to_string(&reg_path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| AgentsError::Invalid(format!("{}: {e}", reg_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Registry::default(),
            Err(e) => return Err(io(format!("reading {}", reg_path.display()))(e)),
        };
        let service = Self {
            inner: Arc::new(Inner {
                dir,
                cfg,
                ca,
                command_key,
                registry: Mutex::new(registry),
                cursors: Mutex::new(HashMap::new()),
                heartbeats: Mutex::new(HashMap::new()),
                commands: Mutex::new(commands),
                command_wake: tokio::sync::Notify::new(),
                results: Mutex::new(HashMap::new()),
                opened_at: Utc::now(),
                vulndb: std::sync::RwLock::new(vulndb),
                patches: Mutex::new(patches),
                upgrades: Mutex::new(upgrades),
                upgrade_hook: Mutex::new(None),
                bound: Mutex::new(None),
            }),
        };
        // Advisories may have been imported offline since the last start.
        service.inner.reconcile_all()?;
        Ok(service)
    }

    /// SHA-256 of the CA certificate, hex: give it to agents as `--ca-pin`.
    pub fn ca_pin(&self) -> String {
        self.inner.ca.pin()
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.inner.ca.pem
    }

    /// Ed25519 public key (hex) that signs response commands.
    pub fn command_public_key(&self) -> String {
        hex::encode(self.inner.command_key.verifying_key().to_bytes())
    }

    /// Creates a single-use enrolment token valid for `ttl`. Only its hash is stored.
    pub fn create_enrolment_token(&self, ttl: std::time::Duration) -> Result<String, AgentsError> {
        self.create_enrolment_token_for(ttl, None)
    }

    /// Like [`Self::create_enrolment_token`], for agents of `agency` (its code): their events
    /// carry it as `organization.id`, users scoped to it see them, rollouts can target it.
    pub fn create_enrolment_token_for(
        &self,
        ttl: std::time::Duration,
        agency: Option<&str>,
    ) -> Result<String, AgentsError> {
        let ttl = Duration::from_std(ttl).map_err(|e| AgentsError::Invalid(e.to_string()))?;
        let token = random_hex(32)?;
        let now = Utc::now();
        let mut reg = lock(&self.inner.registry);
        reg.tokens
            .retain(|t| t.expires_at > now && t.used_at.is_none());
        reg.tokens.push(TokenRecord {
            sha256: hex::encode(Sha256::digest(token.as_bytes())),
            created_at: now,
            expires_at: now + ttl,
            used_at: None,
            agency: agency.map(str::to_owned),
        });
        self.inner.save(&reg)?;
        info!(expires_at = %(now + ttl), agency, "enrolment token created");
        Ok(token)
    }

    /// Revokes an agent: its sessions are refused from now on.
    pub fn revoke(&self, agent_id: &str) -> Result<(), AgentsError> {
        let mut reg = lock(&self.inner.registry);
        let rec = reg
            .agents
            .get_mut(agent_id)
            .ok_or_else(|| AgentsError::NotFound(agent_id.to_owned()))?;
        if rec.revoked_at.is_none() {
            rec.revoked_at = Some(Utc::now());
        }
        self.inner.save(&reg)?;
        info!(agent_id, "agent revoked");
        Ok(())
    }

    /// Agents (not revoked) whose last sign of life is older than `missed_heartbeats`
    /// intervals at `now`.
    pub fn silent_agents(&self, now: DateTime<Utc>) -> Vec<SilentAgent> {
        let limit = Duration::seconds(
            (self.inner.cfg.heartbeat_secs * u64::from(self.inner.cfg.missed_heartbeats)) as i64,
        );
        let reg = lock(&self.inner.registry);
        let hbs = lock(&self.inner.heartbeats);
        let mut out = Vec::new();
        for (id, rec) in &reg.agents {
            if rec.revoked_at.is_some() {
                continue;
            }
            let last_seen = match hbs.get(id) {
                Some((t, _)) => *t,
                None => rec.enrolled_at.max(self.inner.opened_at),
            };
            if now - last_seen > limit {
                out.push(SilentAgent {
                    agent_id: id.clone(),
                    hostname: rec.hostname.clone(),
                    last_seen,
                    agency: rec.agency.clone(),
                });
            }
        }
        out
    }

    /// Every enrolled agent.
    pub fn agents(&self) -> Vec<AgentInfo> {
        let reg = lock(&self.inner.registry);
        let hbs = lock(&self.inner.heartbeats);
        let ups = lock(&self.inner.upgrades);
        reg.agents
            .iter()
            .map(|(id, rec)| AgentInfo {
                agent_id: id.clone(),
                hostname: rec.hostname.clone(),
                os: rec.os.clone(),
                enrolled_at: rec.enrolled_at,
                revoked_at: rec.revoked_at,
                agency: rec.agency.clone(),
                last_heartbeat: hbs.get(id).cloned(),
                acked_seq: self.inner.read_cursor(id),
                upgrade: ups.get(id).and_then(|l| l.last()).cloned(),
            })
            .collect()
    }

    /// Signs `action` for `agent_id` and queues it; it is sent when the agent is connected.
    /// Returns the command id.
    pub fn send_command(
        &self,
        agent_id: &str,
        action: ResponseAction,
        ttl: std::time::Duration,
    ) -> Result<String, AgentsError> {
        if !lock(&self.inner.registry).agents.contains_key(agent_id) {
            return Err(AgentsError::NotFound(agent_id.to_owned()));
        }
        let now = Utc::now();
        let ttl = Duration::from_std(ttl).map_err(|e| AgentsError::Invalid(e.to_string()))?;
        let body = CommandBody {
            id: random_hex(16)?,
            agent_id: agent_id.to_owned(),
            issued_at: now,
            expires_at: now + ttl,
            action,
        };
        let text = serde_json::to_string(&body).map_err(|e| AgentsError::Invalid(e.to_string()))?;
        let signature = hex::encode(self.inner.command_key.sign(text.as_bytes()).to_bytes());
        {
            let mut queue = lock(&self.inner.commands);
            queue
                .entry(agent_id.to_owned())
                .or_default()
                .push(QueuedCommand {
                    id: body.id.clone(),
                    expires_at: body.expires_at,
                    command: SignedCommand {
                        body: text,
                        signature,
                    },
                });
            // Queued means kept: the command is on disk before its id is returned.
            if let Err(e) = self.inner.save_commands(&queue) {
                if let Some(list) = queue.get_mut(agent_id) {
                    list.retain(|c| c.id != body.id);
                }
                return Err(e);
            }
        }
        self.inner.command_wake.notify_waiters();
        Ok(body.id)
    }

    /// The agency (code) of an agent, if it has one.
    pub fn agent_agency(&self, agent_id: &str) -> Option<String> {
        lock(&self.inner.registry)
            .agents
            .get(agent_id)
            .and_then(|r| r.agency.clone())
    }

    /// Ids of the commands queued for `agent_id` and not yet answered (oldest first).
    pub fn queued_commands(&self, agent_id: &str) -> Vec<String> {
        lock(&self.inner.commands)
            .get(agent_id)
            .map(|l| l.iter().map(|c| c.id.clone()).collect())
            .unwrap_or_default()
    }

    /// Results the agent reported for commands (oldest first).
    pub fn command_results(&self, agent_id: &str) -> Vec<CommandResult> {
        lock(&self.inner.results)
            .get(agent_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Binds both endpoints (see [`AgentListener::serve`]).
    pub async fn bind(&self) -> Result<AgentListener, AgentsError> {
        let cfg = &self.inner.cfg;
        let enrol = TcpListener::bind(&cfg.enrol_listen)
            .await
            .map_err(io(format!("binding {}", cfg.enrol_listen)))?;
        let agent = TcpListener::bind(&cfg.listen)
            .await
            .map_err(io(format!("binding {}", cfg.listen)))?;
        if let (Ok(e), Ok(a)) = (enrol.local_addr(), agent.local_addr()) {
            *lock(&self.inner.bound) = Some((e, a));
        }
        Ok(AgentListener {
            service: self.clone(),
            enrol,
            agent,
        })
    }

    /// Addresses of the enrolment and agent endpoints once bound (the last [`Self::bind`]).
    pub fn bound_addrs(&self) -> Option<(SocketAddr, SocketAddr)> {
        *lock(&self.inner.bound)
    }

    /// Binds and serves until the future is dropped or a listener fails.
    pub async fn serve(self, sink: Arc<dyn AgentEventSink>) -> Result<(), AgentsError> {
        self.bind().await?.serve(sink).await
    }
}

impl Inner {
    fn save_commands(
        &self,
        queue: &HashMap<String, Vec<QueuedCommand>>,
    ) -> Result<(), AgentsError> {
        let json = serde_json::to_vec(queue).map_err(|e| AgentsError::Invalid(e.to_string()))?;
        write_private(&self.dir.join(COMMANDS_FILE), &json)
    }

    /// Commands for `agent_id` that are still valid and not in `sent`; expired ones leave the
    /// queue with a failed result, so that the operator sees they never ran.
    pub(crate) fn pending_commands(
        &self,
        agent_id: &str,
        sent: &std::collections::HashSet<String>,
    ) -> Vec<(String, SignedCommand)> {
        let now = Utc::now();
        let mut queue = lock(&self.commands);
        let Some(list) = queue.get_mut(agent_id) else {
            return Vec::new();
        };
        let expired: Vec<String> = list
            .iter()
            .filter(|c| c.expires_at < now)
            .map(|c| c.id.clone())
            .collect();
        let out = list
            .iter()
            .filter(|c| c.expires_at >= now && !sent.contains(&c.id))
            .map(|c| (c.id.clone(), c.command.clone()))
            .collect();
        if !expired.is_empty() {
            list.retain(|c| c.expires_at >= now);
            if list.is_empty() {
                queue.remove(agent_id);
            }
            if let Err(e) = self.save_commands(&queue) {
                tracing::warn!(error = %e, "command queue not saved");
            }
            drop(queue);
            let mut results = lock(&self.results);
            let entry = results.entry(agent_id.to_owned()).or_default();
            for id in expired {
                tracing::warn!(%agent_id, %id, "command expired before its agent took it");
                entry.push(CommandResult {
                    id,
                    ok: false,
                    message: "expired before the agent was reached / hết hạn trước khi tới được \
                              máy trạm"
                        .to_owned(),
                });
            }
        }
        out
    }

    /// Records an agent's result and takes the command off the queue.
    pub(crate) fn command_answered(&self, agent_id: &str, result: CommandResult) {
        {
            let mut queue = lock(&self.commands);
            if let Some(list) = queue.get_mut(agent_id) {
                let before = list.len();
                list.retain(|c| c.id != result.id);
                if list.len() != before {
                    if list.is_empty() {
                        queue.remove(agent_id);
                    }
                    if let Err(e) = self.save_commands(&queue) {
                        tracing::warn!(error = %e, "command queue not saved");
                    }
                }
            }
        }
        lock(&self.results)
            .entry(agent_id.to_owned())
            .or_default()
            .push(result);
    }

    fn save(&self, reg: &Registry) -> Result<(), AgentsError> {
        let json =
            serde_json::to_vec_pretty(reg).map_err(|e| AgentsError::Invalid(e.to_string()))?;
        write_private(&self.dir.join("registry.json"), &json)
    }

    fn cursor_path(&self, agent_id: &str) -> PathBuf {
        self.dir.join("cursors").join(agent_id)
    }

    fn read_cursor(&self, agent_id: &str) -> u64 {
        std::fs::read_to_string(self.cursor_path(agent_id))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn cursor(&self, agent_id: &str) -> Arc<tokio::sync::Mutex<u64>> {
        lock(&self.cursors)
            .entry(agent_id.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(self.read_cursor(agent_id))))
            .clone()
    }
}

/// Both endpoints, bound.
pub struct AgentListener {
    service: AgentService,
    enrol: TcpListener,
    agent: TcpListener,
}

impl AgentListener {
    /// Address of the enrolment endpoint.
    pub fn enrol_addr(&self) -> Result<SocketAddr, AgentsError> {
        self.enrol
            .local_addr()
            .map_err(io("enrolment endpoint address"))
    }

    /// Address of the mutual-TLS agent endpoint.
    pub fn agent_addr(&self) -> Result<SocketAddr, AgentsError> {
        self.agent
            .local_addr()
            .map_err(io("agent endpoint address"))
    }

    /// Accepts connections until the future is dropped (which also closes every session).
    pub async fn serve(self, sink: Arc<dyn AgentEventSink>) -> Result<(), AgentsError> {
        conn::serve(self.service.inner.clone(), self.enrol, self.agent, sink).await
    }
}
