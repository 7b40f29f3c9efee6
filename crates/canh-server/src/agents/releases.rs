//! Agent releases: an administrator publishes a binary, the server stores it and signs its
//! manifest, a rollout sends the signed manifest to agents as a signed command, agents
//! download the binary over their mutual-TLS endpoint, and their upgrade reports are recorded.
//!
//! Signing key: the command key ([`AgentService::command_public_key`]) that every agent pinned
//! at enrolment, over [`RELEASE_SIGNING_CONTEXT`] followed by the manifest bytes (domain
//! separation from command signatures). The agent side, with the trial run and rollback, is
//! described in the `canh_agent::upgrade` module.
//!
//! Layout: `<data-dir>/agents/releases/<target>/<version>/{canh-agent,manifest.json}`;
//! releases are immutable (publishing the same target and version twice is refused). Upgrade
//! reports: `<data-dir>/agents/upgrades.json`, the last [`MAX_HISTORY`] per agent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use canh_core::wire::{
    RELEASE_SIGNING_CONTEXT, ReleaseManifest, ResponseAction, SignedManifest, UpgradeOutcome,
    UpgradeReport,
};
use chrono::{DateTime, Utc};
use ed25519_dalek::Signer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::{AgentService, AgentsError, Inner, io, lock, write_atomic};

/// File name of a release binary in its directory.
pub const BINARY_FILE: &str = "canh-agent";
const MANIFEST_FILE: &str = "manifest.json";
/// Upgrade reports kept per agent.
pub const MAX_HISTORY: usize = 20;
/// Largest release accepted (the agent refuses larger manifests too).
pub const MAX_RELEASE_BYTES: usize = 512 * 1024 * 1024;

/// A published release.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PublishedRelease {
    /// What was signed.
    pub manifest: ReleaseManifest,
    /// The manifest as sent to agents.
    pub signed: SignedManifest,
}

/// Which agents a rollout goes to.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutTargets {
    /// Every enrolled agent that is not revoked.
    All,
    /// These agents.
    Agents(Vec<String>),
    /// Every agent (not revoked) of these agencies (codes).
    Agencies(Vec<String>),
}

/// One command queued by a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RolloutCommand {
    /// The agent.
    pub agent_id: String,
    /// The signed command's id (its result arrives as a command result).
    pub command_id: String,
}

/// An upgrade report as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeRecord {
    /// When the server received it.
    pub at: DateTime<Utc>,
    /// What the agent reported.
    #[serde(flatten)]
    pub report: UpgradeReport,
}

/// A failed upgrade, handed to the hook set with [`AgentService::on_upgrade_failure`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpgradeFailure {
    /// The agent.
    pub agent_id: String,
    /// Its host name.
    pub hostname: String,
    /// The release it failed to install.
    pub version: String,
    /// The version that runs again.
    pub previous_version: String,
    /// Why.
    pub reason: String,
}

/// Called for each failed upgrade report (after it is stored).
pub type UpgradeHook = Arc<dyn Fn(UpgradeFailure) + Send + Sync>;

pub(crate) type UpgradeBook = BTreeMap<String, Vec<UpgradeRecord>>;

/// `MAJOR.MINOR.PATCH[-PRE][+BUILD]` as semantic versioning defines it.
pub fn valid_version(v: &str) -> bool {
    let ident =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let (rest, build) = match v.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let nums: Vec<&str> = core.split('.').collect();
    let num_ok = |n: &str| {
        !n.is_empty()
            && n.len() <= 9
            && n.bytes().all(|b| b.is_ascii_digit())
            && (n == "0" || !n.starts_with('0'))
    };
    v.len() <= 64
        && nums.len() == 3
        && nums.iter().all(|n| num_ok(n))
        && pre.is_none_or(|p| {
            p.split('.')
                .all(|i| ident(i) && (!i.bytes().all(|b| b.is_ascii_digit()) || num_ok(i)))
        })
        && build.is_none_or(|b| b.split('.').all(ident))
}

/// `<os>-<arch>`, lower-case letters, digits and `_`.
pub fn valid_target(t: &str) -> bool {
    let part = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    t.len() <= 64 && t.split_once('-').is_some_and(|(a, b)| part(a) && part(b))
}

impl Inner {
    fn releases_dir(&self) -> PathBuf {
        self.dir.join("releases")
    }

    fn upgrades_path(&self) -> PathBuf {
        self.dir.join("upgrades.json")
    }

    pub(crate) fn load_upgrades(dir: &Path) -> Result<UpgradeBook, AgentsError> {
        let path = dir.join("upgrades.json");
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| AgentsError::Invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UpgradeBook::default()),
            Err(e) => Err(io(format!("reading {}", path.display()))(e)),
        }
    }

    /// Every published release, newest first within a target.
    fn list_releases(&self) -> Vec<(PathBuf, PublishedRelease)> {
        let mut out = Vec::new();
        let Ok(targets) = std::fs::read_dir(self.releases_dir()) else {
            return out;
        };
        for t in targets.flatten() {
            let Ok(versions) = std::fs::read_dir(t.path()) else {
                continue;
            };
            for v in versions.flatten() {
                let dir = v.path();
                let Ok(bytes) = std::fs::read(dir.join(MANIFEST_FILE)) else {
                    continue;
                };
                let Ok(signed) = serde_json::from_slice::<SignedManifest>(&bytes) else {
                    warn!(dir = %dir.display(), "unreadable release manifest skipped");
                    continue;
                };
                let Ok(manifest) = serde_json::from_str::<ReleaseManifest>(&signed.body) else {
                    continue;
                };
                out.push((dir, PublishedRelease { manifest, signed }));
            }
        }
        out.sort_by(|a, b| {
            (&a.1.manifest.target, b.1.manifest.created)
                .cmp(&(&b.1.manifest.target, a.1.manifest.created))
        });
        out
    }

    /// The binary and manifest of the published release with this SHA-256.
    pub(crate) fn release_by_sha(&self, sha256: &str) -> Option<(PathBuf, ReleaseManifest)> {
        self.list_releases()
            .into_iter()
            .find(|(_, r)| r.manifest.sha256 == sha256)
            .map(|(dir, r)| (dir.join(BINARY_FILE), r.manifest))
    }

    /// Stores an upgrade report (durably) and calls the failure hook for failures.
    pub(crate) fn record_upgrade(
        &self,
        agent_id: &str,
        report: UpgradeReport,
    ) -> Result<(), AgentsError> {
        {
            let mut book = lock(&self.upgrades);
            let list = book.entry(agent_id.to_owned()).or_default();
            list.push(UpgradeRecord {
                at: Utc::now(),
                report: report.clone(),
            });
            if list.len() > MAX_HISTORY {
                let extra = list.len() - MAX_HISTORY;
                list.drain(..extra);
            }
            let json = serde_json::to_vec_pretty(&*book)
                .map_err(|e| AgentsError::Invalid(e.to_string()))?;
            write_atomic(&self.upgrades_path(), &json, 0o600)?;
        }
        match report.outcome {
            UpgradeOutcome::Failed => {
                let reason = report.reason.clone().unwrap_or_default();
                warn!(%agent_id, version = %report.version, %reason, "agent upgrade failed and was rolled back");
                let hostname = lock(&self.registry)
                    .agents
                    .get(agent_id)
                    .map(|r| r.hostname.clone())
                    .unwrap_or_default();
                let hook = lock(&self.upgrade_hook).clone();
                if let Some(hook) = hook {
                    hook(UpgradeFailure {
                        agent_id: agent_id.to_owned(),
                        hostname,
                        version: report.version,
                        previous_version: report.previous_version,
                        reason,
                    });
                }
            }
            outcome => {
                info!(%agent_id, version = %report.version, ?outcome, "agent upgrade progressed");
            }
        }
        Ok(())
    }
}

impl AgentService {
    /// Stores `binary` as release `version` for `target`, signs its manifest and returns it.
    pub fn publish_release(
        &self,
        version: &str,
        target: &str,
        binary: &[u8],
    ) -> Result<PublishedRelease, AgentsError> {
        if !valid_version(version) {
            return Err(AgentsError::Invalid(format!(
                "version {version:?} is not MAJOR.MINOR.PATCH[-PRE][+BUILD]"
            )));
        }
        if !valid_target(target) {
            return Err(AgentsError::Invalid(format!(
                "target {target:?} is not <os>-<arch>, e.g. linux-x86_64"
            )));
        }
        if binary.is_empty() || binary.len() > MAX_RELEASE_BYTES {
            return Err(AgentsError::Invalid(format!(
                "a release binary must hold 1 to {MAX_RELEASE_BYTES} bytes"
            )));
        }
        let inner = &self.inner;
        let dir = inner.releases_dir().join(target).join(version);
        if dir
            .join(MANIFEST_FILE)
            .try_exists()
            .map_err(io(format!("reading {}", dir.display())))?
        {
            return Err(AgentsError::Conflict(format!(
                "release {version} for {target} already exists"
            )));
        }
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let manifest = ReleaseManifest {
            version: version.to_owned(),
            target: target.to_owned(),
            sha256: hex::encode(Sha256::digest(binary)),
            size: binary.len() as u64,
            created: Utc::now(),
        };
        let body =
            serde_json::to_string(&manifest).map_err(|e| AgentsError::Invalid(e.to_string()))?;
        let mut msg = RELEASE_SIGNING_CONTEXT.to_vec();
        msg.extend_from_slice(body.as_bytes());
        let signed = SignedManifest {
            body,
            signature: hex::encode(inner.command_key.sign(&msg).to_bytes()),
        };
        // Binary first, manifest last: a release without a manifest is not listed.
        write_atomic(&dir.join(BINARY_FILE), binary, 0o644)?;
        let json =
            serde_json::to_vec_pretty(&signed).map_err(|e| AgentsError::Invalid(e.to_string()))?;
        write_atomic(&dir.join(MANIFEST_FILE), &json, 0o644)?;
        info!(%version, %target, sha256 = %manifest.sha256, size = manifest.size, "agent release published");
        Ok(PublishedRelease { manifest, signed })
    }

    /// Published releases (newest first within a target).
    pub fn releases(&self) -> Vec<PublishedRelease> {
        self.inner
            .list_releases()
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    /// Sends release `version` for `target` to agents as signed upgrade commands valid for
    /// `ttl`. Unknown or revoked agents named explicitly are an error; nothing is queued then.
    pub fn rollout(
        &self,
        version: &str,
        target: &str,
        to: &RolloutTargets,
        allow_downgrade: bool,
        ttl: std::time::Duration,
    ) -> Result<Vec<RolloutCommand>, AgentsError> {
        let release = self
            .releases()
            .into_iter()
            .find(|r| r.manifest.version == version && r.manifest.target == target)
            .ok_or_else(|| AgentsError::NotFound(format!("release {version} for {target}")))?;
        let ids: Vec<String> = {
            let reg = lock(&self.inner.registry);
            match to {
                RolloutTargets::All => reg
                    .agents
                    .iter()
                    .filter(|(_, r)| r.revoked_at.is_none())
                    .map(|(id, _)| id.clone())
                    .collect(),
                RolloutTargets::Agencies(codes) => reg
                    .agents
                    .iter()
                    .filter(|(_, r)| {
                        r.revoked_at.is_none()
                            && r.agency.as_ref().is_some_and(|a| codes.contains(a))
                    })
                    .map(|(id, _)| id.clone())
                    .collect(),
                RolloutTargets::Agents(list) => {
                    for id in list {
                        match reg.agents.get(id) {
                            Some(r) if r.revoked_at.is_none() => {}
                            _ => return Err(AgentsError::NotFound(format!("agent {id}"))),
                        }
                    }
                    let mut l = list.clone();
                    l.sort();
                    l.dedup();
                    l
                }
            }
        };
        let mut out = Vec::with_capacity(ids.len());
        for agent_id in ids {
            let action = ResponseAction::UpgradeAgent {
                manifest: release.signed.clone(),
                allow_downgrade,
            };
            let command_id = self.send_command(&agent_id, action, ttl)?;
            out.push(RolloutCommand {
                agent_id,
                command_id,
            });
        }
        info!(%version, %target, agents = out.len(), allow_downgrade, "agent release rolled out");
        Ok(out)
    }

    /// Upgrade reports of `agent_id`, oldest first.
    pub fn upgrade_history(&self, agent_id: &str) -> Vec<UpgradeRecord> {
        lock(&self.inner.upgrades)
            .get(agent_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Sets the function called for each failed upgrade (alerts, audit).
    pub fn on_upgrade_failure(&self, hook: UpgradeHook) {
        *lock(&self.inner.upgrade_hook) = Some(hook);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_targets_are_checked() {
        for ok in ["0.1.0", "1.2.3-rc.1", "10.0.0+build.5", "1.0.0-alpha-1"] {
            assert!(valid_version(ok), "{ok}");
        }
        for bad in [
            "1.0", "01.0.0", "1.0.0-", "1.0.0-01", "v1.0.0", "1.0.0/..", "", "1..0",
        ] {
            assert!(!valid_version(bad), "{bad}");
        }
        assert!(valid_target("linux-x86_64"));
        assert!(valid_target("linux-aarch64"));
        for bad in ["linux", "Linux-x86_64", "../x-y", "linux-x86/64", "-x"] {
            assert!(!valid_target(bad), "{bad}");
        }
    }

    #[test]
    fn published_release_is_signed_immutable_and_findable() {
        use ed25519_dalek::{Signature, VerifyingKey};
        let dir = tempfile::tempdir().unwrap();
        let svc = AgentService::open(dir.path(), super::super::AgentsConfig::default()).unwrap();
        let r = svc
            .publish_release("0.2.0", "linux-x86_64", b"\x7fELF...")
            .unwrap();
        assert_eq!(r.manifest.size, 7);
        assert_eq!(
            r.manifest.sha256,
            hex::encode(Sha256::digest(b"\x7fELF..."))
        );
        let key: [u8; 32] = hex::decode(svc.command_public_key())
            .unwrap()
            .try_into()
            .unwrap();
        let key = VerifyingKey::from_bytes(&key).unwrap();
        let sig: [u8; 64] = hex::decode(&r.signed.signature)
            .unwrap()
            .try_into()
            .unwrap();
        let mut msg = RELEASE_SIGNING_CONTEXT.to_vec();
        msg.extend_from_slice(r.signed.body.as_bytes());
        key.verify_strict(&msg, &Signature::from_bytes(&sig))
            .unwrap();
        assert!(matches!(
            svc.publish_release("0.2.0", "linux-x86_64", b"other"),
            Err(AgentsError::Conflict(_))
        ));
        assert!(matches!(
            svc.publish_release("latest", "linux-x86_64", b"x"),
            Err(AgentsError::Invalid(_))
        ));
        assert_eq!(svc.releases(), vec![r.clone()]);
        let (path, m) = svc.inner.release_by_sha(&r.manifest.sha256).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"\x7fELF...");
        assert_eq!(m, r.manifest);
        assert!(svc.inner.release_by_sha(&"0".repeat(64)).is_none());
        // No agents: a rollout to all queues nothing, to an unknown agent fails.
        let all = svc
            .rollout(
                "0.2.0",
                "linux-x86_64",
                &RolloutTargets::All,
                false,
                std::time::Duration::from_secs(60),
            )
            .unwrap();
        assert!(all.is_empty());
        assert!(
            svc.rollout(
                "0.2.0",
                "linux-x86_64",
                &RolloutTargets::Agents(vec!["nope".into()]),
                false,
                std::time::Duration::from_secs(60),
            )
            .is_err()
        );
        assert!(
            svc.rollout(
                "0.3.0",
                "linux-x86_64",
                &RolloutTargets::All,
                false,
                std::time::Duration::from_secs(60),
            )
            .is_err()
        );
        // Survives a restart.
        drop(svc);
        let svc = AgentService::open(dir.path(), super::super::AgentsConfig::default()).unwrap();
        assert_eq!(svc.releases().len(), 1);
    }
}
