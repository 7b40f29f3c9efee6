//! Self-upgrade: signed release manifests, a trial run of the new binary, an atomic swap, and
//! rollback when the new binary does not reach the server.
//!
//! # Trust
//!
//! An administrator publishes a release on the server, which stores the binary and signs a
//! [`ReleaseManifest`] (version, target, SHA-256, size, time) with its Ed25519 **command key**,
//! the key every agent pinned at enrolment. The signature covers
//! [`RELEASE_SIGNING_CONTEXT`] followed by the manifest bytes, so a command signature can never
//! pass for a release signature or the reverse. Reusing the pinned key means enrolled agents
//! need nothing new (no second key to distribute, no change to the enrolment answer), and the
//! key that may already isolate a host or kill processes is the one that may replace the agent.
//! A dedicated offline release key (TUF-style, signing away from the server) would limit what
//! a compromised server can do; that is a later step.
//!
//! The rollout is a [`SignedCommand`](canh_core::wire::SignedCommand) whose action is
//! [`ResponseAction::UpgradeAgent`](canh_core::wire::ResponseAction::UpgradeAgent): it names
//! the agent, expires, and runs once (command ids are persisted), and carries the signed
//! manifest plus `allow_downgrade`. Downgrade permission sits in the command, not the manifest:
//! a manifest is long-lived and could be replayed, a command is bound to one agent and expires.
//!
//! # Steps
//!
//! 1. **Verify** ([`verify_manifest`], [`check_applicable`]): signature, then target, then
//!    version (newer, or `allow_downgrade`), size limits. Nothing is written before this.
//! 2. **Download** ([`download`]) over a second mutual-TLS connection to the agent endpoint
//!    ([`AgentMessage::FetchRelease`]); the server answers a header and the raw bytes. The
//!    bytes go to a temporary file next to the installed binary while being hashed; size and
//!    SHA-256 must match the manifest, then the file is fsynced and renamed to `<binary>.new`.
//! 3. **Trial**: the marker `upgrade.json` in the state directory is written (phase
//!    [`Phase::Trial`], version, deadline). The running agent stops its session and sensors and
//!    starts `<binary>.new` as a child with `CANH_AGENT_UPGRADE_TRIAL=<version>`. The child
//!    connects, sends a heartbeat and an [`UpgradeOutcome::TrialPassed`] report; when the
//!    server acknowledges it ([`ServerMessage::UpgradeAck`](canh_core::wire::ServerMessage)),
//!    the child sets the marker to [`Phase::Committed`] and exits 0.
//! 4. **Swap**: the parent copies the installed binary to `<binary>.prev` (fsync), renames
//!    `<binary>.new` over `<binary>` (atomic), fsyncs the directory, sets the marker to
//!    [`Phase::Installed`], records the manifest as `release.json` and `exec`s the new binary
//!    with the same arguments: same PID, so a systemd `Type=simple` unit sees no restart. The
//!    binary's directory must be writable (`[upgrade] binary`; the package installs it in
//!    `/usr/lib/canh-agent`, the one directory the unit's `ReadWritePaths` adds for this); when it is not, staging fails and nothing
//!    changes.
//! 5. The new process reports [`UpgradeOutcome::Installed`] and removes the marker once the
//!    server acknowledges the report. Each start of the installed release before that is
//!    counted in the marker; at start number [`MAX_INSTALLED_STARTS`] + 1 (a binary that passed
//!    its trial but crashes afterwards, restarted by systemd) `<binary>.prev` is renamed back
//!    and `exec`ed, and it reports the failure.
//!
//! **Rollback**: if the child exits before committing, crashes, or has no acknowledgement by
//! the deadline (it is killed then), the staged file is deleted, the marker becomes
//! [`Phase::Failed`] with the reason, and the parent — still the old code — resumes; its next
//! session reports the failure, which the server records and raises as an alert. The old
//! binary never leaves its path before the new one has proven it can start, reach the server
//! and have a heartbeat acknowledged, so a power cut during the trial leaves the old binary in
//! place: at the next start a marker still in [`Phase::Trial`] is turned into a failure. A
//! marker in [`Phase::Committed`] (cut between commit and swap) finishes the swap. If `exec`
//! fails after the swap, `<binary>.prev` is renamed back. The trial needs no systemd, so the
//! same path runs in tests and on hosts.
//!
//! What is not covered: an installed release that passed its trial but then hangs without
//! crashing is not rolled back (nothing supervises it after the `exec`); rolling out the
//! previous release with `allow_downgrade` is the remedy.
//!
//! The running version is the build's version unless `release.json` records a release whose
//! SHA-256 is that of the running executable: then it is the release's version.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use canh_core::wire::{
    self, AgentMessage, FetchRelease, RELEASE_SIGNING_CONTEXT, ReleaseManifest, ServerMessage,
    SignedManifest, UpgradeAck, UpgradeOutcome, UpgradeReport,
};
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{info, warn};

/// Marker of an upgrade in progress, in the state directory.
pub const MARKER_FILE: &str = "upgrade.json";
/// Manifest of the installed release, in the state directory.
pub const RELEASE_FILE: &str = "release.json";
/// Manifest of the release installed before, while an upgrade is not settled.
pub const PREVIOUS_RELEASE_FILE: &str = "release.prev.json";
/// Environment variable that makes `canh-agent run` a trial of a staged release.
pub const TRIAL_ENV: &str = "CANH_AGENT_UPGRADE_TRIAL";
/// Largest release binary accepted.
pub const MAX_RELEASE_BYTES: u64 = 512 * 1024 * 1024;
/// A download that receives nothing for this long is abandoned.
const DOWNLOAD_IDLE: Duration = Duration::from_secs(60);

/// One read of the download, abandoned after [`DOWNLOAD_IDLE`] without data.
async fn idle_limited<T>(
    read: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, UpgradeError> {
    match tokio::time::timeout(DOWNLOAD_IDLE, read).await {
        Ok(r) => r.map_err(|e| UpgradeError::Download(e.to_string())),
        Err(_) => Err(UpgradeError::Download(format!(
            "no data for {} s",
            DOWNLOAD_IDLE.as_secs()
        ))),
    }
}

/// Upgrade failures.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The manifest signature or key is malformed or does not verify.
    #[error("release manifest signature does not verify")]
    BadSignature,
    /// The manifest is not valid.
    #[error("invalid release manifest: {0}")]
    InvalidManifest(String),
    /// The release is for another platform.
    #[error("release is for {found}, this agent runs on {expected}")]
    WrongTarget {
        /// This agent's target.
        expected: String,
        /// The manifest's target.
        found: String,
    },
    /// The release is not newer and downgrades were not allowed.
    #[error("release {found} is not newer than the running {running} (downgrade not allowed)")]
    NotNewer {
        /// Running version.
        running: String,
        /// The manifest's version.
        found: String,
    },
    /// The downloaded bytes do not match the manifest.
    #[error("downloaded binary does not match the manifest: {0}")]
    Mismatch(String),
    /// The server refused or broke the download.
    #[error("download: {0}")]
    Download(String),
    /// The marker is not in a state that allows this step.
    #[error("upgrade marker: {0}")]
    State(String),
    /// File I/O.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> UpgradeError {
    let context = context.into();
    move |source| UpgradeError::Io { context, source }
}

/// This build's platform, `<os>-<arch>` (e.g. `linux-x86_64`).
pub fn current_target() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// Checks a signed manifest against the server's key (hex) and returns it.
pub fn verify_manifest(
    key_hex: &str,
    signed: &SignedManifest,
) -> Result<ReleaseManifest, UpgradeError> {
    let key_bytes: [u8; 32] = hex::decode(key_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(UpgradeError::BadSignature)?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| UpgradeError::BadSignature)?;
    let sig_bytes = hex::decode(&signed.signature).map_err(|_| UpgradeError::BadSignature)?;
    let sig = Signature::from_slice(&sig_bytes).map_err(|_| UpgradeError::BadSignature)?;
    let mut msg = Vec::with_capacity(RELEASE_SIGNING_CONTEXT.len() + signed.body.len());
    msg.extend_from_slice(RELEASE_SIGNING_CONTEXT);
    msg.extend_from_slice(signed.body.as_bytes());
    key.verify_strict(&msg, &sig)
        .map_err(|_| UpgradeError::BadSignature)?;
    let m: ReleaseManifest = serde_json::from_str(&signed.body)
        .map_err(|e| UpgradeError::InvalidManifest(e.to_string()))?;
    semver::Version::parse(&m.version)
        .map_err(|e| UpgradeError::InvalidManifest(format!("version {:?}: {e}", m.version)))?;
    if m.sha256.len() != 64 || !m.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(UpgradeError::InvalidManifest(
            "sha256 is not 64 hex digits".into(),
        ));
    }
    if m.size == 0 || m.size > MAX_RELEASE_BYTES {
        return Err(UpgradeError::InvalidManifest(format!(
            "size {} out of range",
            m.size
        )));
    }
    Ok(m)
}

/// Whether `m` may replace the running version on this platform.
pub fn check_applicable(
    m: &ReleaseManifest,
    target: &str,
    running: &str,
    allow_downgrade: bool,
) -> Result<(), UpgradeError> {
    if m.target != target {
        return Err(UpgradeError::WrongTarget {
            expected: target.to_owned(),
            found: m.target.clone(),
        });
    }
    let new = semver::Version::parse(&m.version)
        .map_err(|e| UpgradeError::InvalidManifest(e.to_string()))?;
    let newer = match semver::Version::parse(running) {
        Ok(cur) => new > cur,
        // An unparsable running version: only an explicit downgrade permission installs.
        Err(_) => false,
    };
    if !newer && !allow_downgrade {
        return Err(UpgradeError::NotNewer {
            running: running.to_owned(),
            found: m.version.clone(),
        });
    }
    Ok(())
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, UpgradeError> {
    let mut f = std::fs::File::open(path).map_err(io(format!("reading {}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)
            .map_err(io(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn fsync_dir(dir: &Path) -> Result<(), UpgradeError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("syncing {}", dir.display())))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `<binary>.<suffix>` beside the binary.
pub fn sibling(binary: &Path, suffix: &str) -> PathBuf {
    let mut name = binary.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    binary.with_file_name(name)
}

/// Downloads the release described by `m` over `stream` (a fresh mutual-TLS connection to the
/// agent endpoint) into `dest`: hashed while written, checked against the manifest, fsynced,
/// made executable, renamed into place. Nothing is left at `dest` on failure.
pub async fn download<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    m: &ReleaseManifest,
    dest: &Path,
) -> Result<(), UpgradeError> {
    let d = |e: std::io::Error| UpgradeError::Download(e.to_string());
    let frame = wire::encode_frame(&AgentMessage::FetchRelease(FetchRelease {
        sha256: m.sha256.clone(),
    }))
    .map_err(|e| UpgradeError::Download(e.to_string()))?;
    stream.write_all(&frame).await.map_err(d)?;
    stream.flush().await.map_err(d)?;
    let mut header = [0u8; 4];
    idle_limited(stream.read_exact(&mut header)).await?;
    let len = wire::decode_frame_len(header).map_err(|e| UpgradeError::Download(e.to_string()))?;
    let mut body = vec![0u8; len];
    idle_limited(stream.read_exact(&mut body)).await?;
    let head = match wire::decode_body::<ServerMessage>(&body) {
        Ok(ServerMessage::ReleaseData(h)) => h,
        Ok(ServerMessage::Error(e)) => {
            return Err(UpgradeError::Download(format!("{}: {}", e.code, e.message)));
        }
        Ok(_) => return Err(UpgradeError::Download("unexpected answer".into())),
        Err(e) => return Err(UpgradeError::Download(e.to_string())),
    };
    if head.size != m.size || head.sha256 != m.sha256 {
        return Err(UpgradeError::Mismatch(format!(
            "server offers {} bytes with SHA-256 {}, manifest says {} bytes with {}",
            head.size, head.sha256, m.size, m.sha256
        )));
    }
    let tmp = sibling(dest, "download");
    let result = receive(stream, m, &tmp).await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, dest).map_err(io(format!("installing {}", dest.display())))?;
    fsync_dir(parent_of(dest))
}

async fn receive<S: AsyncRead + Unpin>(
    stream: &mut S,
    m: &ReleaseManifest,
    tmp: &Path,
) -> Result<(), UpgradeError> {
    use std::os::unix::fs::OpenOptionsExt;
    let ctx = || format!("writing {}", tmp.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o700)
        .open(tmp)
        .map_err(io(ctx()))?;
    let mut h = Sha256::new();
    let mut left = m.size;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = idle_limited(stream.read(&mut buf[..want])).await?;
        if n == 0 {
            return Err(UpgradeError::Download(format!(
                "connection closed with {left} bytes missing"
            )));
        }
        h.update(&buf[..n]);
        f.write_all(&buf[..n]).map_err(io(ctx()))?;
        left -= n as u64;
    }
    let got = hex::encode(h.finalize());
    if got != m.sha256 {
        return Err(UpgradeError::Mismatch(format!(
            "SHA-256 is {got}, manifest says {}",
            m.sha256
        )));
    }
    f.sync_all().map_err(io(ctx()))?;
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o755))
        .map_err(io(ctx()))
}

/// Where an upgrade stands (the marker's `phase`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Staged and verified; the new binary runs (or is about to run) as a trial child.
    Trial,
    /// The trial reached the server and was acknowledged; the swap may happen.
    Committed,
    /// Swapped in; waiting for the new process to have its report acknowledged.
    Installed,
    /// Abandoned; waiting for the failure report to be acknowledged.
    Failed,
}

/// The upgrade marker (`upgrade.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The release being installed.
    pub version: String,
    /// The version that ran before.
    pub previous_version: String,
    /// SHA-256 of the new binary.
    pub sha256: String,
    /// The installed binary (the service's path).
    pub binary: PathBuf,
    /// Where the new binary waits during the trial (`<binary>.new`).
    pub staged: PathBuf,
    /// Copy of the binary that ran before (`<binary>.prev`), made at the swap.
    pub previous: PathBuf,
    /// The trial must be acknowledged before this time.
    pub deadline: DateTime<Utc>,
    /// Stage reached.
    pub phase: Phase,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The signed manifest (kept as `release.json` once installed).
    pub manifest: SignedManifest,
    /// Starts of the installed release so far (phase Installed).
    #[serde(default)]
    pub starts: u32,
}

impl Marker {
    /// Reads the marker of `state_dir`, if any.
    pub fn load(state_dir: &Path) -> Result<Option<Self>, UpgradeError> {
        let path = state_dir.join(MARKER_FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| UpgradeError::State(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("reading {}", path.display()))(e)),
        }
    }

    /// Writes it atomically (temporary file, fsync, rename).
    pub fn save(&self, state_dir: &Path) -> Result<(), UpgradeError> {
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| UpgradeError::State(e.to_string()))?;
        crate::client::write_atomic(&state_dir.join(MARKER_FILE), &json, 0o600)
            .map_err(|e| UpgradeError::State(e.to_string()))
    }

    /// Removes the marker of `state_dir`.
    pub fn clear(state_dir: &Path) -> Result<(), UpgradeError> {
        match std::fs::remove_file(state_dir.join(MARKER_FILE)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("removing the upgrade marker")(e)),
        }
    }

    /// Trial → Committed (the trial child had its report acknowledged).
    pub fn commit(&mut self) -> Result<(), UpgradeError> {
        self.step(Phase::Trial, Phase::Committed)
    }

    /// Committed → Installed (the swap is done).
    pub fn installed(&mut self) -> Result<(), UpgradeError> {
        self.step(Phase::Committed, Phase::Installed)
    }

    /// Trial, Committed or Installed → Failed, with the reason.
    pub fn fail(&mut self, reason: impl Into<String>) -> Result<(), UpgradeError> {
        if self.phase == Phase::Failed {
            return Err(UpgradeError::State("upgrade already failed".into()));
        }
        self.phase = Phase::Failed;
        self.reason = Some(reason.into());
        Ok(())
    }

    fn step(&mut self, from: Phase, to: Phase) -> Result<(), UpgradeError> {
        if self.phase != from {
            return Err(UpgradeError::State(format!(
                "cannot go from {:?} to {to:?}",
                self.phase
            )));
        }
        self.phase = to;
        Ok(())
    }

    /// The report the server must acknowledge before the marker goes, for a process in
    /// `role`.
    pub fn report(&self, role: &Role) -> Option<UpgradeReport> {
        let outcome = match (self.phase, role) {
            (Phase::Trial, Role::Trial(v)) if *v == self.version => UpgradeOutcome::TrialPassed,
            (Phase::Installed, Role::Main) => UpgradeOutcome::Installed,
            (Phase::Failed, Role::Main) => UpgradeOutcome::Failed,
            _ => return None,
        };
        Some(UpgradeReport {
            version: self.version.clone(),
            previous_version: self.previous_version.clone(),
            outcome,
            reason: self.reason.clone(),
        })
    }
}

/// Which process this is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The agent.
    Main,
    /// A trial of the staged release with this version, started by the agent.
    Trial(String),
}

impl Role {
    /// From the environment ([`TRIAL_ENV`]).
    pub fn from_env() -> Self {
        match std::env::var(TRIAL_ENV) {
            Ok(v) if !v.is_empty() => Role::Trial(v),
            _ => Role::Main,
        }
    }
}

/// What a starting process must do about a marker it finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartAction {
    /// Nothing pending: run.
    Run,
    /// Run and send this report after connecting.
    Report(UpgradeReport),
    /// A trial was interrupted (the supervising agent stopped): record the failure, then run.
    FailInterrupted,
    /// The trial passed but the swap did not happen: finish it and `exec`.
    FinishInstall,
    /// The marker belongs to another binary (reinstalled by hand): drop it and run.
    Discard,
    /// A trial process with no matching marker: refuse to run.
    RefuseTrial,
}

/// Decides what a process in `role`, running a binary with SHA-256 `running_sha`, does with
/// the marker it found.
pub fn on_start(marker: Option<&Marker>, role: &Role, running_sha: &str) -> StartAction {
    match (marker, role) {
        (None, Role::Main) => StartAction::Run,
        (None, Role::Trial(_)) => StartAction::RefuseTrial,
        (Some(m), Role::Trial(v)) => match m.report(role) {
            Some(r) if m.sha256 == running_sha && *v == m.version => StartAction::Report(r),
            _ => StartAction::RefuseTrial,
        },
        (Some(m), Role::Main) => match m.phase {
            Phase::Trial => StartAction::FailInterrupted,
            Phase::Committed => StartAction::FinishInstall,
            Phase::Installed if m.sha256 != running_sha => StartAction::Discard,
            Phase::Installed | Phase::Failed => match m.report(role) {
                Some(r) => StartAction::Report(r),
                None => StartAction::Discard,
            },
        },
    }
}

/// `[upgrade]` in `canh-agent.toml`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpgradeConfig {
    /// Accept upgrades from the server.
    pub enabled: bool,
    /// The installed binary that upgrades replace (default: the running executable). Its
    /// directory must be writable by the agent.
    pub binary: Option<PathBuf>,
    /// Seconds the new binary has to reach the server and have a heartbeat acknowledged.
    pub trial_secs: u64,
}

impl Default for UpgradeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            binary: None,
            trial_secs: 120,
        }
    }
}

/// The upgrade state of a running agent, shared with the client.
#[derive(Debug)]
pub struct Upgrades {
    state_dir: PathBuf,
    binary: PathBuf,
    role: Role,
    running_version: String,
    running_sha: String,
    target: String,
    cfg: UpgradeConfig,
    /// Report to send once connected (cleared when acknowledged).
    pending: Mutex<Option<UpgradeReport>>,
}

/// What a starting process does after [`Upgrades::start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Startup {
    /// Run.
    Run,
    /// `exec` the installed binary ([`Upgrades::exec`]).
    Exec,
}

/// Starts of an installed release allowed before its report is acknowledged; one more and
/// the previous binary is restored.
pub const MAX_INSTALLED_STARTS: u32 = 3;

/// What the session does after an upgrade acknowledgement.
#[derive(Debug, PartialEq, Eq)]
pub enum AckEffect {
    /// Nothing more.
    None,
    /// The trial passed: the trial process ends (exit 0).
    TrialDone,
}

impl Upgrades {
    /// The state for a process in `role` whose executable is `exe`.
    pub fn open(
        state_dir: &Path,
        exe: &Path,
        role: Role,
        cfg: UpgradeConfig,
    ) -> Result<Self, UpgradeError> {
        let running_sha = sha256_file(exe)?;
        let binary = match (&role, &cfg.binary) {
            (_, Some(b)) => b.clone(),
            (Role::Main, None) => exe.to_path_buf(),
            // A trial runs from `<binary>.new`.
            (Role::Trial(_), None) => {
                let name = exe.file_name().unwrap_or_default().to_string_lossy();
                exe.with_file_name(name.strip_suffix(".new").unwrap_or(&name))
            }
        };
        let build = env!("CARGO_PKG_VERSION").to_owned();
        let recorded = match &role {
            Role::Main => std::fs::read(state_dir.join(RELEASE_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice::<SignedManifest>(&b).ok()),
            Role::Trial(_) => Marker::load(state_dir).ok().flatten().map(|m| m.manifest),
        };
        let running_version = recorded
            .and_then(|s| serde_json::from_str::<ReleaseManifest>(&s.body).ok())
            .filter(|m| m.sha256 == running_sha)
            .map_or(build, |m| m.version);
        Ok(Self {
            state_dir: state_dir.to_path_buf(),
            binary,
            role,
            running_version,
            running_sha,
            target: current_target(),
            cfg,
            pending: Mutex::new(None),
        })
    }

    /// The version this process runs (a release's version when its binary is installed).
    pub fn running_version(&self) -> &str {
        &self.running_version
    }

    /// This process's role.
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// The installed binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Handles the marker at start (see [`on_start`]). [`Startup::Exec`]: the binary at the
    /// installed path changed (a committed swap finished, or the previous binary restored
    /// after the new one kept restarting): call [`Upgrades::exec`].
    pub fn start(&self) -> Result<Startup, UpgradeError> {
        let marker = Marker::load(&self.state_dir)?;
        match on_start(marker.as_ref(), &self.role, &self.running_sha) {
            StartAction::Run => {}
            StartAction::Report(r) => {
                if let (Some(mut m), UpgradeOutcome::Installed) = (marker, r.outcome) {
                    // Counted so that a new binary that crashes before its report is
                    // acknowledged (and is restarted by systemd) is rolled back.
                    m.starts += 1;
                    if m.starts > MAX_INSTALLED_STARTS {
                        let reason = format!(
                            "the new agent started {} times without a heartbeat acknowledged",
                            m.starts - 1
                        );
                        warn!(version = %m.version, %reason, "restoring the previous agent");
                        let r = self.rollback(m, reason)?;
                        *self.pending_lock() = Some(r);
                        return Ok(Startup::Exec);
                    }
                    m.save(&self.state_dir)?;
                }
                info!(version = %r.version, outcome = ?r.outcome, "upgrade report pending");
                *self.pending_lock() = Some(r);
            }
            StartAction::FailInterrupted => {
                if let Some(m) = marker {
                    warn!(version = %m.version, "upgrade trial was interrupted; keeping this binary");
                    let r = self.rollback(m, "the agent stopped during the trial")?;
                    *self.pending_lock() = Some(r);
                }
            }
            StartAction::FinishInstall => {
                // The trial passed before the last stop but the swap did not happen.
                return match self.install() {
                    Ok(_) => Ok(Startup::Exec),
                    Err(e) => {
                        warn!(error = %e, "cannot finish the upgrade; keeping this binary");
                        Ok(Startup::Run)
                    }
                };
            }
            StartAction::Discard => {
                warn!("upgrade marker does not match the running binary; dropped");
                Marker::clear(&self.state_dir)?;
            }
            StartAction::RefuseTrial => {
                return Err(UpgradeError::State(
                    "trial started without a matching staged release".into(),
                ));
            }
        }
        Ok(Startup::Run)
    }

    fn pending_lock(&self) -> std::sync::MutexGuard<'_, Option<UpgradeReport>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The report to send after connecting, if one waits for an acknowledgement.
    pub fn pending_report(&self) -> Option<UpgradeReport> {
        self.pending_lock().clone()
    }

    /// The server recorded a report.
    pub fn acknowledged(&self, ack: &UpgradeAck) -> Result<AckEffect, UpgradeError> {
        let mut pending = self.pending_lock();
        let Some(r) = pending.as_ref() else {
            return Ok(AckEffect::None);
        };
        if r.version != ack.version || r.outcome != ack.outcome {
            return Ok(AckEffect::None);
        }
        let outcome = r.outcome;
        match outcome {
            UpgradeOutcome::TrialPassed => {
                let mut m = Marker::load(&self.state_dir)?.ok_or_else(|| {
                    UpgradeError::State("marker vanished during the trial".into())
                })?;
                m.commit()?;
                m.save(&self.state_dir)?;
                info!(version = %m.version, "trial acknowledged by the server; committed");
            }
            UpgradeOutcome::Installed | UpgradeOutcome::Failed => {
                Marker::clear(&self.state_dir)?;
                info!(version = %ack.version, outcome = ?outcome, "upgrade report recorded by the server");
            }
        }
        *pending = None;
        Ok(if outcome == UpgradeOutcome::TrialPassed {
            AckEffect::TrialDone
        } else {
            AckEffect::None
        })
    }

    /// Verifies a rollout, downloads the release over `connect` and stages it; after `Ok` the
    /// caller stops the agent and runs [`Upgrades::supervise_trial`].
    pub async fn stage<S, F, Fut>(
        &self,
        command_key: &str,
        manifest: &SignedManifest,
        allow_downgrade: bool,
        connect: F,
    ) -> Result<ReleaseManifest, UpgradeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<S, String>>,
    {
        if !self.cfg.enabled {
            return Err(UpgradeError::State(
                "upgrades are disabled on this agent".into(),
            ));
        }
        if self.role != Role::Main {
            return Err(UpgradeError::State("an upgrade trial is running".into()));
        }
        if self.pending_lock().is_some() || Marker::load(&self.state_dir)?.is_some() {
            return Err(UpgradeError::State(
                "the previous upgrade is not settled yet".into(),
            ));
        }
        let m = verify_manifest(command_key, manifest)?;
        check_applicable(&m, &self.target, &self.running_version, allow_downgrade)?;
        info!(version = %m.version, size = m.size, "release verified; downloading");
        let staged = sibling(&self.binary, "new");
        let mut stream = connect().await.map_err(UpgradeError::Download)?;
        download(&mut stream, &m, &staged).await?;
        // A second look at what is on disk, not at what went through the hasher.
        if sha256_file(&staged)? != m.sha256 {
            let _ = std::fs::remove_file(&staged);
            return Err(UpgradeError::Mismatch("staged file changed on disk".into()));
        }
        let marker = Marker {
            version: m.version.clone(),
            previous_version: self.running_version.clone(),
            sha256: m.sha256.clone(),
            binary: self.binary.clone(),
            staged,
            previous: sibling(&self.binary, "prev"),
            deadline: Utc::now() + chrono::Duration::seconds(self.trial_secs_i64()),
            phase: Phase::Trial,
            reason: None,
            manifest: manifest.clone(),
            starts: 0,
        };
        marker.save(&self.state_dir)?;
        info!(version = %m.version, "release staged; starting the trial");
        Ok(m)
    }

    fn trial_secs_i64(&self) -> i64 {
        i64::try_from(self.cfg.trial_secs).unwrap_or(i64::MAX / 1000)
    }

    /// Runs the staged binary as a trial child with `args` until it commits, fails, passes
    /// the deadline or `shutdown` turns true. `Ok(true)`: committed, swap next.
    /// `Ok(false)`: rolled back (the failure report is pending). `Err`: shutdown during the
    /// trial (rolled back too).
    pub async fn supervise_trial(
        &self,
        args: &[std::ffi::OsString],
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<bool, UpgradeError> {
        let mut m = Marker::load(&self.state_dir)?
            .ok_or_else(|| UpgradeError::State("no staged upgrade".into()))?;
        let limit = Duration::from_secs(self.cfg.trial_secs);
        m.deadline = Utc::now() + chrono::Duration::seconds(self.trial_secs_i64());
        m.save(&self.state_dir)?;
        let mut child = match std::process::Command::new(&m.staged)
            .args(args)
            .env(TRIAL_ENV, &m.version)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                let r = self.rollback(m, format!("the new binary cannot start: {e}"))?;
                *self.pending_lock() = Some(r);
                return Ok(false);
            }
        };
        info!(version = %m.version, pid = child.id(), "trial of the new agent started");
        let started = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let outcome: Result<std::process::ExitStatus, String> = loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => {}
            }
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(e) => break Err(format!("cannot watch the new agent: {e}")),
            }
            if *shutdown.borrow() {
                kill(&mut child);
                let r = self.rollback(m, "the agent was stopped during the trial")?;
                *self.pending_lock() = Some(r);
                return Err(UpgradeError::State("stopped during the trial".into()));
            }
            if started.elapsed() >= limit {
                kill(&mut child);
                break Err(format!(
                    "the new agent had no heartbeat acknowledged within {} s",
                    limit.as_secs()
                ));
            }
        };
        let committed = Marker::load(&self.state_dir)?.is_some_and(|m| m.phase == Phase::Committed);
        let reason = match outcome {
            Ok(status) if status.success() && committed => return Ok(true),
            Ok(status) => {
                format!("the new agent exited ({status}) before a heartbeat was acknowledged")
            }
            Err(reason) => reason,
        };
        // The marker may say Committed if the child crashed right after writing it: the
        // exit status decides.
        let m = Marker::load(&self.state_dir)?.unwrap_or(m);
        warn!(version = %m.version, %reason, "upgrade trial failed; rolling back");
        let r = self.rollback(m, reason)?;
        *self.pending_lock() = Some(r);
        Ok(false)
    }

    /// Abandons the staged release: deletes it, restores `<binary>.prev` if the swap had
    /// happened, and records the failure.
    fn rollback(
        &self,
        mut m: Marker,
        reason: impl Into<String>,
    ) -> Result<UpgradeReport, UpgradeError> {
        let _ = std::fs::remove_file(&m.staged);
        if m.phase == Phase::Installed && m.previous.try_exists().unwrap_or(false) {
            std::fs::rename(&m.previous, &m.binary)
                .map_err(io(format!("restoring {}", m.binary.display())))?;
            fsync_dir(parent_of(&m.binary))?;
            let (cur, prev) = (
                self.state_dir.join(RELEASE_FILE),
                self.state_dir.join(PREVIOUS_RELEASE_FILE),
            );
            match std::fs::rename(&prev, &cur) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let _ = std::fs::remove_file(&cur);
                }
                Err(e) => return Err(io("restoring release.json")(e)),
            }
        }
        m.fail(reason)?;
        m.save(&self.state_dir)?;
        m.report(&Role::Main)
            .ok_or_else(|| UpgradeError::State("failed marker has no report".into()))
    }

    /// Swaps the committed release in: `<binary>` → `<binary>.prev` (a copy, fsynced), then
    /// `<binary>.new` → `<binary>` (rename), then the marker (Installed), then `release.json`.
    /// On any failure the upgrade is rolled back (the previous binary put back if the swap
    /// had happened) and the failure report is pending.
    pub fn install(&self) -> Result<Marker, UpgradeError> {
        let mut m = Marker::load(&self.state_dir)?
            .ok_or_else(|| UpgradeError::State("no committed upgrade".into()))?;
        if m.phase != Phase::Committed {
            return Err(UpgradeError::State(format!(
                "cannot install from {:?}",
                m.phase
            )));
        }
        match self.swap(&mut m) {
            Ok(()) => {
                info!(version = %m.version, binary = %m.binary.display(), "new agent installed");
                Ok(m)
            }
            Err(e) => {
                warn!(error = %e, "swap failed; rolling back");
                let r = self.rollback(m, format!("the swap failed: {e}"))?;
                *self.pending_lock() = Some(r);
                Err(e)
            }
        }
    }

    fn swap(&self, m: &mut Marker) -> Result<(), UpgradeError> {
        let staged = m
            .staged
            .try_exists()
            .map_err(io(format!("reading {}", m.staged.display())))?;
        if staged {
            if sha256_file(&m.staged)? != m.sha256 {
                return Err(UpgradeError::Mismatch(
                    "the staged binary changed before the swap".into(),
                ));
            }
            let tmp = sibling(&m.previous, "tmp");
            std::fs::copy(&m.binary, &tmp)
                .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &m.previous))
                .map_err(io(format!("keeping {}", m.previous.display())))?;
            std::fs::rename(&m.staged, &m.binary)
                .map_err(io(format!("installing {}", m.binary.display())))?;
            fsync_dir(parent_of(&m.binary))?;
        } else if sha256_file(&m.binary)? != m.sha256 {
            // Not staged and not swapped in either (a stop between the rename and the
            // marker write leaves the new binary in place, which is fine).
            return Err(UpgradeError::State("the staged binary is gone".into()));
        }
        // From here a failure puts `<binary>.prev` back.
        m.installed()?;
        m.save(&self.state_dir)?;
        let cur = self.state_dir.join(RELEASE_FILE);
        match std::fs::copy(&cur, self.state_dir.join(PREVIOUS_RELEASE_FILE)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _ = std::fs::remove_file(self.state_dir.join(PREVIOUS_RELEASE_FILE));
            }
            Err(e) => return Err(io("keeping release.json")(e)),
        }
        let manifest = serde_json::to_vec_pretty(&m.manifest)
            .map_err(|e| UpgradeError::State(e.to_string()))?;
        crate::client::write_atomic(&self.state_dir.join(RELEASE_FILE), &manifest, 0o644)
            .map_err(|e| UpgradeError::State(e.to_string()))
    }

    /// Replaces this process with the installed binary (same PID, same arguments). Returns
    /// only on failure, after putting the previous binary back.
    pub fn exec(&self, args: &[std::ffi::OsString]) -> UpgradeError {
        use std::os::unix::process::CommandExt;
        let err = std::process::Command::new(&self.binary).args(args).exec();
        warn!(error = %err, "cannot exec the new agent; restoring the previous one");
        match Marker::load(&self.state_dir) {
            Ok(Some(m)) => match self.rollback(m, format!("exec failed: {err}")) {
                Ok(r) => *self.pending_lock() = Some(r),
                Err(e) => return e,
            },
            Ok(None) => {}
            Err(e) => return e,
        }
        io("exec of the new agent")(err)
    }
}

fn kill(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn sign(key: &SigningKey, m: &ReleaseManifest) -> SignedManifest {
        let body = serde_json::to_string(m).unwrap();
        let mut msg = RELEASE_SIGNING_CONTEXT.to_vec();
        msg.extend_from_slice(body.as_bytes());
        SignedManifest {
            body,
            signature: hex::encode(key.sign(&msg).to_bytes()),
        }
    }

    fn manifest(version: &str, bytes: &[u8]) -> ReleaseManifest {
        ReleaseManifest {
            version: version.into(),
            target: current_target(),
            sha256: hex::encode(Sha256::digest(bytes)),
            size: bytes.len() as u64,
            created: Utc::now(),
        }
    }

    #[test]
    fn only_a_correctly_signed_manifest_verifies() {
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let pubhex = hex::encode(key.verifying_key().to_bytes());
        let m = manifest("0.2.0", b"binary");
        let good = sign(&key, &m);
        assert_eq!(verify_manifest(&pubhex, &good).unwrap(), m);

        let mut tampered = good.clone();
        tampered.body = tampered.body.replace("0.2.0", "0.9.0");
        assert!(matches!(
            verify_manifest(&pubhex, &tampered),
            Err(UpgradeError::BadSignature)
        ));
        let other = SigningKey::from_bytes(&[4u8; 32]);
        assert!(matches!(
            verify_manifest(&pubhex, &sign(&other, &m)),
            Err(UpgradeError::BadSignature)
        ));
        // A signature over the bare body (as a command is signed) is not a release signature.
        let bare = SignedManifest {
            body: good.body.clone(),
            signature: hex::encode(key.sign(good.body.as_bytes()).to_bytes()),
        };
        assert!(matches!(
            verify_manifest(&pubhex, &bare),
            Err(UpgradeError::BadSignature)
        ));
        assert!(matches!(
            verify_manifest("zz", &good),
            Err(UpgradeError::BadSignature)
        ));
        let mut bad = m.clone();
        bad.version = "latest".into();
        assert!(matches!(
            verify_manifest(&pubhex, &sign(&key, &bad)),
            Err(UpgradeError::InvalidManifest(_))
        ));
        let mut bad = m;
        bad.size = MAX_RELEASE_BYTES + 1;
        assert!(matches!(
            verify_manifest(&pubhex, &sign(&key, &bad)),
            Err(UpgradeError::InvalidManifest(_))
        ));
    }

    #[test]
    fn target_and_version_decide_applicability() {
        let t = current_target();
        let m = manifest("0.2.0", b"x");
        assert!(check_applicable(&m, &t, "0.1.0", false).is_ok());
        assert!(matches!(
            check_applicable(&m, &t, "0.2.0", false),
            Err(UpgradeError::NotNewer { .. })
        ));
        assert!(matches!(
            check_applicable(&m, &t, "0.10.0", false),
            Err(UpgradeError::NotNewer { .. })
        ));
        assert!(check_applicable(&m, &t, "0.10.0", true).is_ok());
        assert!(matches!(
            check_applicable(&m, "windows-aarch64", "0.1.0", true),
            Err(UpgradeError::WrongTarget { .. })
        ));
        let pre = manifest("0.2.0-rc.1", b"x");
        assert!(check_applicable(&pre, &t, "0.2.0", false).is_err());
    }

    fn marker(phase: Phase) -> Marker {
        Marker {
            version: "0.2.0".into(),
            previous_version: "0.1.0".into(),
            sha256: "aa".repeat(32),
            binary: "/x/canh-agent".into(),
            staged: "/x/canh-agent.new".into(),
            previous: "/x/canh-agent.prev".into(),
            deadline: Utc::now(),
            phase,
            reason: None,
            manifest: SignedManifest {
                body: "{}".into(),
                signature: String::new(),
            },
            starts: 0,
        }
    }

    #[test]
    fn marker_moves_only_forward() {
        let mut m = marker(Phase::Trial);
        assert!(m.installed().is_err(), "no swap before the trial commits");
        m.commit().unwrap();
        assert!(m.commit().is_err());
        m.installed().unwrap();
        assert_eq!(m.phase, Phase::Installed);
        m.fail("crashed").unwrap();
        assert_eq!(m.reason.as_deref(), Some("crashed"));
        assert!(m.fail("again").is_err());
        assert!(m.commit().is_err());
    }

    #[test]
    fn start_actions_follow_the_marker() {
        let sha = "aa".repeat(32);
        let trial = Role::Trial("0.2.0".into());
        assert_eq!(on_start(None, &Role::Main, &sha), StartAction::Run);
        assert_eq!(on_start(None, &trial, &sha), StartAction::RefuseTrial);
        let m = marker(Phase::Trial);
        match on_start(Some(&m), &trial, &sha) {
            StartAction::Report(r) => assert_eq!(r.outcome, UpgradeOutcome::TrialPassed),
            other => panic!("{other:?}"),
        }
        // A trial of another binary or version is refused.
        assert_eq!(on_start(Some(&m), &trial, "bb"), StartAction::RefuseTrial);
        assert_eq!(
            on_start(Some(&m), &Role::Trial("0.3.0".into()), &sha),
            StartAction::RefuseTrial
        );
        // The agent restarted while a trial ran: the trial failed.
        assert_eq!(
            on_start(Some(&m), &Role::Main, "cc"),
            StartAction::FailInterrupted
        );
        assert_eq!(
            on_start(Some(&marker(Phase::Committed)), &Role::Main, "cc"),
            StartAction::FinishInstall
        );
        match on_start(Some(&marker(Phase::Installed)), &Role::Main, &sha) {
            StartAction::Report(r) => assert_eq!(r.outcome, UpgradeOutcome::Installed),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            on_start(Some(&marker(Phase::Installed)), &Role::Main, "cc"),
            StartAction::Discard
        );
        let mut failed = marker(Phase::Trial);
        failed.fail("exit 1").unwrap();
        match on_start(Some(&failed), &Role::Main, "cc") {
            StartAction::Report(r) => {
                assert_eq!(r.outcome, UpgradeOutcome::Failed);
                assert_eq!(r.reason.as_deref(), Some("exit 1"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_swapped_in_release_that_keeps_restarting_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let binary = dir.path().join("canh-agent");
        std::fs::write(&binary, b"new").unwrap();
        std::fs::write(sibling(&binary, "prev"), b"old").unwrap();
        let mut m = marker(Phase::Installed);
        m.sha256 = hex::encode(Sha256::digest(b"new"));
        m.binary = binary.clone();
        m.staged = sibling(&binary, "new");
        m.previous = sibling(&binary, "prev");
        m.save(&state).unwrap();
        // Each start of the new binary (as systemd restarts it after a crash) is counted.
        for n in 1..=MAX_INSTALLED_STARTS {
            let ups =
                Upgrades::open(&state, &binary, Role::Main, UpgradeConfig::default()).unwrap();
            assert_eq!(ups.start().unwrap(), Startup::Run);
            assert_eq!(Marker::load(&state).unwrap().unwrap().starts, n);
        }
        let ups = Upgrades::open(&state, &binary, Role::Main, UpgradeConfig::default()).unwrap();
        assert_eq!(ups.start().unwrap(), Startup::Exec);
        assert_eq!(
            std::fs::read(&binary).unwrap(),
            b"old",
            "previous binary restored"
        );
        let m = Marker::load(&state).unwrap().unwrap();
        assert_eq!(m.phase, Phase::Failed);
        assert!(m.reason.unwrap().contains("started 3 times"));
        // The restored binary reports the failure.
        let ups = Upgrades::open(&state, &binary, Role::Main, UpgradeConfig::default()).unwrap();
        assert_eq!(ups.start().unwrap(), Startup::Run);
        assert_eq!(
            ups.pending_report().unwrap().outcome,
            UpgradeOutcome::Failed
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Manifests come from the network: any body, signature or key is an error, never a
        /// panic, and a valid signature over a random body is refused unless it is a manifest.
        #[test]
        fn manifest_checks_never_panic(
            body in ".{0,200}",
            sig in "[0-9a-f]{0,140}",
            key in "[0-9a-f]{0,70}",
            running in "[0-9.a-z-]{0,12}",
        ) {
            let signed = SignedManifest { body: body.clone(), signature: sig };
            proptest::prop_assert!(verify_manifest(&key, &signed).is_err());
            let k = SigningKey::from_bytes(&[5u8; 32]);
            let mut msg = RELEASE_SIGNING_CONTEXT.to_vec();
            msg.extend_from_slice(body.as_bytes());
            let signed = SignedManifest { body, signature: hex::encode(k.sign(&msg).to_bytes()) };
            let pubhex = hex::encode(k.verifying_key().to_bytes());
            if let Ok(m) = verify_manifest(&pubhex, &signed) {
                let _ = check_applicable(&m, &current_target(), &running, false);
            }
        }
    }

    #[test]
    fn sibling_names() {
        assert_eq!(
            sibling(Path::new("/usr/sbin/canh-agent"), "prev"),
            Path::new("/usr/sbin/canh-agent.prev")
        );
    }

    /// A server half that answers one fetch with `size`/`sha` in the header and `bytes`.
    async fn serve_once(mut s: tokio::io::DuplexStream, size: u64, sha: String, bytes: Vec<u8>) {
        let mut h = [0u8; 4];
        s.read_exact(&mut h).await.unwrap();
        let mut b = vec![0u8; wire::decode_frame_len(h).unwrap()];
        s.read_exact(&mut b).await.unwrap();
        let req: AgentMessage = wire::decode_body(&b).unwrap();
        assert!(matches!(req, AgentMessage::FetchRelease(_)));
        let head = ServerMessage::ReleaseData(wire::ReleaseData { sha256: sha, size });
        s.write_all(&wire::encode_frame(&head).unwrap())
            .await
            .unwrap();
        let _ = s.write_all(&bytes).await;
        let _ = s.shutdown().await;
    }

    #[tokio::test]
    async fn download_checks_size_and_hash_and_leaves_nothing_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("canh-agent.new");
        let bytes = b"#!/bin/sh\nexit 0\n".to_vec();
        let m = manifest("0.2.0", &bytes);

        let (mut a, b) = tokio::io::duplex(1 << 16);
        let srv = tokio::spawn(serve_once(b, m.size, m.sha256.clone(), bytes.clone()));
        download(&mut a, &m, &dest).await.unwrap();
        srv.await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), bytes);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o755
        );
        std::fs::remove_file(&dest).unwrap();

        // Same length, one byte changed: the hash refuses it.
        let mut evil = bytes.clone();
        evil[12] ^= 1;
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let srv = tokio::spawn(serve_once(b, m.size, m.sha256.clone(), evil));
        let err = download(&mut a, &m, &dest).await.unwrap_err();
        srv.await.unwrap();
        assert!(matches!(err, UpgradeError::Mismatch(_)), "{err}");
        assert!(!dest.try_exists().unwrap());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no temporary left"
        );

        // A header that disagrees with the manifest: refused before any byte is written.
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let srv = tokio::spawn(serve_once(b, m.size + 1, m.sha256.clone(), bytes.clone()));
        assert!(matches!(
            download(&mut a, &m, &dest).await,
            Err(UpgradeError::Mismatch(_))
        ));
        srv.await.unwrap();
        // A short stream.
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let srv = tokio::spawn(serve_once(b, m.size, m.sha256.clone(), bytes[..5].to_vec()));
        assert!(matches!(
            download(&mut a, &m, &dest).await,
            Err(UpgradeError::Download(_))
        ));
        srv.await.unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn install_swaps_keeps_prev_and_records_the_release() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let binary = dir.path().join("canh-agent");
        std::fs::write(&binary, b"old").unwrap();
        let staged = sibling(&binary, "new");
        std::fs::write(&staged, b"new").unwrap();
        let ups = Upgrades::open(&state, &binary, Role::Main, UpgradeConfig::default()).unwrap();
        assert_eq!(ups.running_version(), env!("CARGO_PKG_VERSION"));
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let man = manifest("9.0.0", b"new");
        let mut m = marker(Phase::Trial);
        m.version = man.version.clone();
        m.sha256 = man.sha256.clone();
        m.binary = binary.clone();
        m.staged = staged.clone();
        m.previous = sibling(&binary, "prev");
        m.manifest = sign(&key, &man);
        m.save(&state).unwrap();
        // Install refuses a marker that has not committed, and changes nothing.
        assert!(matches!(ups.install(), Err(UpgradeError::State(_))));
        assert_eq!(std::fs::read(&binary).unwrap(), b"old");
        assert!(staged.try_exists().unwrap());
        let mut m = Marker::load(&state).unwrap().unwrap();
        assert_eq!(m.phase, Phase::Trial);
        m.commit().unwrap();
        m.save(&state).unwrap();
        let done = ups.install().unwrap();
        assert_eq!(done.phase, Phase::Installed);
        assert_eq!(std::fs::read(&binary).unwrap(), b"new");
        assert_eq!(std::fs::read(sibling(&binary, "prev")).unwrap(), b"old");
        assert!(!staged.try_exists().unwrap());
        // An installed binary that cannot be executed (no execute bit): `exec` fails and the
        // previous binary is renamed back, with the failure pending for the server.
        let err = ups.exec(&[]);
        assert!(matches!(err, UpgradeError::Io { .. }), "{err}");
        assert_eq!(std::fs::read(&binary).unwrap(), b"old");
        assert!(!sibling(&binary, "prev").try_exists().unwrap());
        assert!(!state.join(RELEASE_FILE).try_exists().unwrap());
        let failed = Marker::load(&state).unwrap().unwrap();
        assert_eq!(failed.phase, Phase::Failed);
        assert!(failed.reason.as_deref().unwrap().starts_with("exec failed"));
        assert_eq!(
            ups.pending_report().unwrap().outcome,
            UpgradeOutcome::Failed
        );

        // Again, this time letting the new process start.
        std::fs::write(&staged, b"new").unwrap();
        let mut m = failed;
        m.phase = Phase::Committed;
        m.reason = None;
        m.save(&state).unwrap();
        ups.install().unwrap();
        // A new process of the installed binary reports the release's version.
        let ups2 = Upgrades::open(&state, &binary, Role::Main, UpgradeConfig::default()).unwrap();
        assert_eq!(ups2.running_version(), "9.0.0");
        assert_eq!(ups2.start().unwrap(), Startup::Run);
        let r = ups2.pending_report().unwrap();
        assert_eq!(r.outcome, UpgradeOutcome::Installed);
        let ack = UpgradeAck {
            version: "9.0.0".into(),
            outcome: UpgradeOutcome::Installed,
        };
        assert_eq!(ups2.acknowledged(&ack).unwrap(), AckEffect::None);
        assert!(
            Marker::load(&state).unwrap().is_none(),
            "marker cleared after the ack"
        );
        assert!(ups2.pending_report().is_none());
    }
}
