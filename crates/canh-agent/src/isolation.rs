//! Host isolation with nftables: a dedicated `inet canh_isolation` table whose chains drop
//! everything except loopback and the management addresses (the server). Undone by deleting
//! the table; nothing else in the ruleset is touched. The state is persisted, so an agent
//! restarted (or a host rebooted, which loses the ruleset) re-applies it.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// Name of the table the agent owns.
pub const TABLE: &str = "canh_isolation";

/// Persisted isolation state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IsolationState {
    /// Whether the host is isolated.
    pub isolated: bool,
    /// Addresses kept reachable.
    pub allow: Vec<IpAddr>,
}

/// Applies and removes isolation.
#[derive(Clone, Debug)]
pub struct Isolation {
    state_path: PathBuf,
    /// Run `nft` inside this network namespace (`ip netns exec`), for tests.
    netns: Option<String>,
}

/// The nftables script for `allow`.
pub fn ruleset(allow: &[IpAddr]) -> String {
    let mut input = String::new();
    let mut output = String::new();
    for ip in allow {
        let fam = if ip.is_ipv4() { "ip" } else { "ip6" };
        input.push_str(&format!("    {fam} saddr {ip} accept\n"));
        output.push_str(&format!("    {fam} daddr {ip} accept\n"));
    }
    // `add` then `delete` makes the script work whether or not the table exists; the whole
    // file is applied atomically by nft.
    format!(
        "add table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n  chain input {{\n    type filter hook input priority -300; policy drop;\n    iif \"lo\" accept\n{input}  }}\n  chain output {{\n    type filter hook output priority -300; policy drop;\n    oif \"lo\" accept\n{output}  }}\n  chain forward {{\n    type filter hook forward priority -300; policy drop;\n  }}\n}}\n"
    )
}

impl Isolation {
    /// Isolation state kept under `state_dir`.
    pub fn new(state_dir: &Path, netns: Option<String>) -> Self {
        Self {
            state_path: state_dir.join("isolation.json"),
            netns,
        }
    }

    fn nft(&self) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nft"]);
                c
            }
            None => Command::new("nft"),
        }
    }

    /// The persisted state.
    pub fn state(&self) -> IsolationState {
        std::fs::read_to_string(&self.state_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Isolates the host, keeping `allow` (must include the server) reachable.
    pub fn isolate(&self, allow: &[IpAddr]) -> Result<(), String> {
        if allow.is_empty() {
            return Err("refusing to isolate without a management address".into());
        }
        let state = IsolationState {
            isolated: true,
            allow: allow.to_vec(),
        };
        // State first: if we crash after applying, the restart re-applies instead of forgetting.
        let json = serde_json::to_vec(&state).map_err(|e| e.to_string())?;
        crate::client::write_atomic(&self.state_path, &json, 0o600).map_err(|e| e.to_string())?;
        self.apply(allow)?;
        self.verify()
    }

    fn apply(&self, allow: &[IpAddr]) -> Result<(), String> {
        let mut child = self
            .nft()
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running nft: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(ruleset(allow).as_bytes())
                .map_err(|e| format!("writing to nft: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("running nft: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "nft failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// Reads the table back: fails unless it is present with drop policies.
    pub fn verify(&self) -> Result<(), String> {
        let out = self
            .nft()
            .args(["list", "table", "inet", TABLE])
            .output()
            .map_err(|e| format!("running nft: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && text.matches("policy drop").count() == 3 {
            Ok(())
        } else {
            Err("isolation table missing or incomplete after apply".into())
        }
    }

    /// Removes isolation (idempotent).
    pub fn release(&self) -> Result<(), String> {
        let out = self
            .nft()
            .args(["delete", "table", "inet", TABLE])
            .output()
            .map_err(|e| format!("running nft: {e}"))?;
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !err.contains("No such file") {
            return Err(format!("nft failed: {}", err.trim()));
        }
        match std::fs::remove_file(&self.state_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("removing isolation state: {e}")),
        }
    }

    /// At agent start: re-applies a persisted isolation. Returns whether the host is isolated.
    pub fn restore(&self) -> Result<bool, String> {
        let st = self.state();
        if st.isolated {
            self.apply(&st.allow)?;
            self.verify()?;
        }
        Ok(st.isolated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_keeps_loopback_and_management_only() {
        let r = ruleset(&["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()]);
        assert!(r.contains("ip saddr 10.0.0.5 accept"));
        assert!(r.contains("ip6 daddr fd00::5 accept"));
        assert_eq!(r.matches("policy drop").count(), 3);
        assert!(r.contains("iif \"lo\" accept"));
        assert!(r.starts_with("add table inet canh_isolation\ndelete table inet canh_isolation\n"));
    }

    #[test]
    fn isolation_without_management_address_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let iso = Isolation::new(dir.path(), Some("canh-test-none".into()));
        assert!(iso.isolate(&[]).is_err());
        assert!(!iso.state().isolated);
    }
}
