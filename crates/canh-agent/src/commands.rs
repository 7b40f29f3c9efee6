//! Response commands: verified against the server's Ed25519 key, then carried out.
//!
//! A command is refused unless its signature verifies over the exact body bytes, it names this
//! agent, it has not expired and its id has not been run before (ids are persisted, so a
//! replayed command is refused after a restart too).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use canh_core::wire::{CommandBody, CommandResult, ResponseAction, SignedCommand};
use chrono::Utc;
use ed25519_dalek::{Signature, VerifyingKey};
use tracing::{info, warn};

use crate::client::Identity;
use crate::isolation::Isolation;
use crate::quarantine::Quarantine;
use crate::response;

/// Why a command was refused before running.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    /// The signature or key is malformed or does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The body is not a command.
    #[error("malformed command body")]
    Malformed,
    /// The command names another agent.
    #[error("command is for another agent")]
    WrongAgent,
    /// The command expired.
    #[error("command expired")]
    Expired,
    /// The command id was already run.
    #[error("command already run")]
    Replayed,
}

/// Checks a signed command and returns its body.
pub fn verify(
    key_hex: &str,
    agent_id: &str,
    cmd: &SignedCommand,
) -> Result<CommandBody, CommandError> {
    let key_bytes: [u8; 32] = hex::decode(key_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(CommandError::BadSignature)?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| CommandError::BadSignature)?;
    let sig_bytes = hex::decode(&cmd.signature).map_err(|_| CommandError::BadSignature)?;
    let sig = Signature::from_slice(&sig_bytes).map_err(|_| CommandError::BadSignature)?;
    key.verify_strict(cmd.body.as_bytes(), &sig)
        .map_err(|_| CommandError::BadSignature)?;
    let body: CommandBody = serde_json::from_str(&cmd.body).map_err(|_| CommandError::Malformed)?;
    if body.agent_id != agent_id {
        return Err(CommandError::WrongAgent);
    }
    if body.expires_at < Utc::now() {
        return Err(CommandError::Expired);
    }
    Ok(body)
}

/// Runs verified commands.
#[derive(Debug)]
pub struct CommandRunner {
    seen_path: PathBuf,
    seen: Mutex<HashSet<String>>,
    quarantine: Quarantine,
    isolation: Isolation,
    /// When set, every verified command is refused with this reason (a node that only
    /// forwards telemetry, such as a network sensor, takes no response actions).
    refuse: Option<String>,
}

impl CommandRunner {
    /// A runner keeping its state under `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        let seen_path = state_dir.join("commands.seen");
        let seen = std::fs::read_to_string(&seen_path)
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default();
        Self {
            seen_path,
            seen: Mutex::new(seen),
            quarantine: Quarantine::new(&state_dir.join("quarantine")),
            isolation: Isolation::new(state_dir, None),
            refuse: None,
        }
    }

    /// A runner that verifies commands, records them as seen and refuses each one with
    /// `reason`: for nodes that ship telemetry but must not act on the host they run on.
    pub fn refusing(state_dir: &Path, reason: impl Into<String>) -> Self {
        Self {
            refuse: Some(reason.into()),
            ..Self::new(state_dir)
        }
    }

    /// The host isolation controller.
    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    /// Verifies and runs `cmd`; never panics, always returns a result for the server.
    pub async fn run(&self, identity: &Identity, cmd: &SignedCommand) -> CommandResult {
        let body = match verify(&identity.command_key, &identity.agent_id, cmd) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "refusing command");
                return CommandResult {
                    id: String::new(),
                    ok: false,
                    message: e.to_string(),
                };
            }
        };
        if !self.mark_seen(&body.id) {
            return CommandResult {
                id: body.id,
                ok: false,
                message: CommandError::Replayed.to_string(),
            };
        }
        if let Some(reason) = &self.refuse {
            warn!(id = %body.id, action = ?body.action, "response command refused on this node");
            return CommandResult {
                id: body.id,
                ok: false,
                message: reason.clone(),
            };
        }
        info!(id = %body.id, action = ?body.action, "running response command");
        let outcome = match &body.action {
            ResponseAction::KillProcess { pid, start_time } => {
                response::kill_process(*pid, *start_time).map(|()| format!("killed {pid}"))
            }
            ResponseAction::QuarantineFile { path } => self
                .quarantine
                .quarantine(Path::new(path))
                .map(|e| format!("quarantined as {}", e.id)),
            ResponseAction::RestoreFile { entry } => self
                .quarantine
                .restore(entry)
                .map(|p| format!("restored {}", p.display())),
            ResponseAction::IsolateHost { allow } => management_addresses(identity, allow)
                .and_then(|ips| {
                    self.isolation
                        .isolate(&ips)
                        .map(|()| format!("host isolated, allowed {ips:?}"))
                }),
            ResponseAction::ReleaseHost => self
                .isolation
                .release()
                .map(|()| "isolation removed".to_owned()),
            // The session handles rollouts itself (it must stop to run the trial).
            ResponseAction::UpgradeAgent { .. } => {
                Err("agent upgrades are carried out by the session".to_owned())
            }
        };
        match outcome {
            Ok(message) => CommandResult {
                id: body.id,
                ok: true,
                message,
            },
            Err(message) => CommandResult {
                id: body.id,
                ok: false,
                message,
            },
        }
    }

    /// Records `id` as run (persisted); false when it already was.
    pub fn mark_seen(&self, id: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.insert(id.to_owned()) {
            return false;
        }
        use std::io::Write;
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.seen_path)
            .and_then(|mut f| writeln!(f, "{id}").and_then(|()| f.sync_data()));
        if let Err(e) = appended {
            warn!(error = %e, "could not persist command id");
        }
        true
    }
}

/// The server's addresses plus the extra `allow` ones.
fn management_addresses(
    identity: &Identity,
    allow: &[String],
) -> Result<Vec<std::net::IpAddr>, String> {
    use std::net::ToSocketAddrs;
    let mut ips: Vec<std::net::IpAddr> = (identity.server_host.as_str(), identity.agent_port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {}: {e}", identity.server_host))?
        .map(|a| a.ip())
        .collect();
    for a in allow {
        ips.push(a.parse().map_err(|_| format!("invalid address {a}"))?);
    }
    ips.sort();
    ips.dedup();
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn signed(key: &SigningKey, body: &CommandBody) -> SignedCommand {
        let text = serde_json::to_string(body).unwrap();
        let sig = key.sign(text.as_bytes());
        SignedCommand {
            body: text,
            signature: hex::encode(sig.to_bytes()),
        }
    }

    /// An agent identity whose server signs commands with `key`.
    fn identity(agent: &str, key: &SigningKey) -> Identity {
        Identity {
            agent_id: agent.into(),
            server_host: "h".into(),
            agent_port: 1,
            ca_pin: String::new(),
            not_before: Utc::now(),
            not_after: Utc::now(),
            command_key: hex::encode(key.verifying_key().to_bytes()),
        }
    }

    fn body(agent: &str, ttl: i64) -> CommandBody {
        CommandBody {
            id: "c1".into(),
            agent_id: agent.into(),
            issued_at: Utc::now(),
            expires_at: Utc::now() + chrono::Duration::seconds(ttl),
            action: ResponseAction::RestoreFile {
                entry: "none".into(),
            },
        }
    }

    #[test]
    fn only_correctly_signed_fresh_commands_for_this_agent_verify() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let pubhex = hex::encode(key.verifying_key().to_bytes());
        let good = signed(&key, &body("a1", 60));
        assert!(verify(&pubhex, "a1", &good).is_ok());
        assert_eq!(verify(&pubhex, "a2", &good), Err(CommandError::WrongAgent));
        let old = signed(&key, &body("a1", -1));
        assert_eq!(verify(&pubhex, "a1", &old), Err(CommandError::Expired));
        let mut tampered = good;
        tampered.body = tampered.body.replace("\"none\"", "\"other\"");
        assert_eq!(
            verify(&pubhex, "a1", &tampered),
            Err(CommandError::BadSignature)
        );
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let forged = signed(&other, &body("a1", 60));
        assert_eq!(
            verify(&pubhex, "a1", &forged),
            Err(CommandError::BadSignature)
        );
    }

    #[tokio::test]
    async fn a_command_id_runs_once_even_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let identity = identity("a1", &key);
        let cmd = signed(&key, &body("a1", 60));
        let runner = CommandRunner::new(dir.path());
        let first = runner.run(&identity, &cmd).await;
        assert_eq!(first.id, "c1");
        let again = CommandRunner::new(dir.path()).run(&identity, &cmd).await;
        assert!(!again.ok);
        assert_eq!(again.message, "command already run");
    }

    #[tokio::test]
    async fn a_refusing_runner_verifies_and_refuses_without_acting() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let identity = identity("s1", &key);
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, b"keep me").unwrap();
        let mut b = body("s1", 60);
        b.action = ResponseAction::QuarantineFile {
            path: victim.display().to_string(),
        };
        let runner = CommandRunner::refusing(dir.path(), "a network sensor takes no actions");
        let res = runner.run(&identity, &signed(&key, &b)).await;
        assert!(!res.ok);
        assert_eq!(res.id, "c1");
        assert_eq!(res.message, "a network sensor takes no actions");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        // A forged command is still reported as such, not as refused.
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let forged = runner
            .run(&identity, &signed(&other, &body("s1", 60)))
            .await;
        assert!(!forged.ok);
        assert_ne!(forged.message, "a network sensor takes no actions");
    }
}
