//! `canh-agent.toml`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::spool::SpoolConfig;

/// The agent's configuration file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Where identity, keys, certificates, spool and quarantine live.
    pub state_dir: PathBuf,
    /// Seconds between heartbeats.
    pub heartbeat_secs: u64,
    /// Most events per batch sent to the server.
    pub batch_events: usize,
    /// On-disk spool limits.
    pub spool: SpoolConfig,
    /// Sensors.
    pub sensors: SensorsConfig,
    /// Inventory and configuration checks.
    pub inventory: InventoryConfig,
    /// Upgrades pushed by the server.
    pub upgrade: crate::upgrade::UpgradeConfig,
    /// YARA scanning of new executables (builds with the `yara` feature).
    pub yara: YaraConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/canh-agent"),
            heartbeat_secs: 30,
            batch_events: 500,
            spool: SpoolConfig::default(),
            sensors: SensorsConfig::default(),
            inventory: InventoryConfig::default(),
            upgrade: crate::upgrade::UpgradeConfig::default(),
            yara: YaraConfig::default(),
        }
    }
}

/// Which sensors run (`[sensors]`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SensorsConfig {
    /// Process start/exit via the netlink process connector.
    pub process: bool,
    /// Paths watched for file integrity (inotify, SHA-256 baseline).
    pub fim_paths: Vec<PathBuf>,
    /// Seconds between scans of `/proc/net/tcp{,6}`, `udp{,6}` (0 = off).
    pub network_poll_secs: u64,
    /// Seconds between scans of `/proc/modules` (0 = off).
    pub modules_poll_secs: u64,
    /// Logins and logouts (`wtmp`, `btmp`) and sshd/sudo messages.
    pub logins: bool,
    /// sshd/sudo messages are read from this file when it exists, else from the journal.
    pub auth_log: PathBuf,
    /// USB/block device attach and module loads from kernel uevents.
    pub devices: bool,
}

impl Default for SensorsConfig {
    fn default() -> Self {
        Self {
            process: true,
            fim_paths: vec![
                PathBuf::from("/etc/passwd"),
                PathBuf::from("/etc/shadow"),
                PathBuf::from("/etc/sudoers"),
                PathBuf::from("/etc/ssh/sshd_config"),
                PathBuf::from("/etc/crontab"),
            ],
            network_poll_secs: 10,
            modules_poll_secs: 30,
            logins: true,
            auth_log: PathBuf::from("/var/log/auth.log"),
            devices: true,
        }
    }
}

/// Inventory (`[inventory]`): packages, host facts and configuration checks, sent at start
/// and then periodically.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    /// Seconds between inventories (0 = off).
    pub interval_secs: u64,
    /// The dpkg database.
    pub dpkg_status: PathBuf,
    /// Configuration-check policy file (TOML); the built-in baseline when absent.
    pub policy: Option<PathBuf>,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self {
            interval_secs: 6 * 3600,
            dpkg_status: PathBuf::from("/var/lib/dpkg/status"),
            policy: None,
        }
    }
}

/// `[yara]` in `canh-agent.toml`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct YaraConfig {
    /// Rule files or directories of `.yar`/`.yara` files (searched recursively); empty = off.
    pub rules: Vec<PathBuf>,
    /// Files larger than this are not scanned (counted as skipped).
    pub max_file_bytes: u64,
    /// Longest time one scan may take.
    pub timeout_secs: u64,
    /// Scans waiting at most; beyond this new executables are counted as skipped.
    pub queue: usize,
    /// Also scan files that the file-integrity sensor reports created or changed with an
    /// execute bit.
    pub scan_file_events: bool,
    /// Interpreters whose first script argument is scanned as well as the interpreter.
    pub interpreters: Vec<String>,
}

impl Default for YaraConfig {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            max_file_bytes: 64 * 1024 * 1024,
            timeout_secs: 10,
            queue: 1024,
            scan_file_events: true,
            interpreters: [
                "sh", "bash", "dash", "zsh", "ksh", "busybox", "python", "python2", "python3",
                "perl", "ruby", "php", "node", "lua",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        }
    }
}

/// Config loading failures.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown keys.
    #[error("invalid config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key path.
        message: String,
    },
}

impl AgentConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let cfg: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        if cfg.heartbeat_secs == 0 || cfg.batch_events == 0 || cfg.upgrade.trial_secs == 0 {
            return Err(
                "heartbeat_secs, batch_events and upgrade.trial_secs must be positive".into(),
            );
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults_and_unknown_keys_are_refused() {
        assert_eq!(AgentConfig::parse("").unwrap(), AgentConfig::default());
        let err = AgentConfig::parse("[spool]\nmax_byte = 3\n").unwrap_err();
        assert!(err.contains("max_byte"), "{err}");
    }

    #[test]
    fn packaged_example_parses() {
        let text = include_str!("../packaging/canh-agent.toml");
        let cfg = AgentConfig::parse(text).unwrap();
        assert_eq!(cfg.heartbeat_secs, 30);
        // The example spells out the defaults.
        assert_eq!(cfg.yara, YaraConfig::default());
    }
}
