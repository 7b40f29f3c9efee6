//! `canh.toml`: one file, documented defaults, every key overridable by `CANH_<SECTION>__<KEY>`.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole configuration of a Canh node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listeners and limits.
    pub server: ServerConfig,
    /// Parsing and enrichment.
    pub ingest: IngestConfig,
    /// Detection.
    pub detect: DetectConfig,
    /// Event storage: WAL, Parquet, index, retention.
    pub store: canh_store::StoreConfig,
    /// Incident handling, users, evidence.
    pub soar: crate::soar::SoarConfig,
    /// Endpoint agent enrolment and event stream.
    pub agents: crate::agents::AgentsConfig,
}

/// `[server]`: where Canh listens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// HTTP address for the API, the console and every HTTP ingest API.
    pub http: SocketAddr,
    /// Syslog address, listened on for both UDP and TCP (LF framing or RFC 6587 octet counting).
    /// Empty disables syslog.
    pub syslog: Option<SocketAddr>,
    /// Syslog over TLS (RFC 5425), with `tls_cert`/`tls_key` or the generated certificate.
    pub syslog_tls: Option<SocketAddr>,
    /// GELF over UDP (chunked, zlib/gzip).
    pub gelf_udp: Option<SocketAddr>,
    /// GELF over TCP (NUL-delimited).
    pub gelf_tcp: Option<SocketAddr>,
    /// PEM certificate chain for TLS listeners.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS listeners.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) for client certificates on TLS listeners. When set, clients are
    /// asked for a certificate; one that is presented must chain to this CA, and its name can
    /// give the agency (`ingest.agency_clients`). Clients without a certificate are accepted.
    pub tls_client_ca: Option<PathBuf>,
    /// Largest accepted message (syslog line, NDJSON line, GELF message), in bytes; larger ones
    /// go to the dead-letter store.
    pub max_message_bytes: usize,
    /// Largest accepted HTTP request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest batch written to the WAL at once.
    pub batch_max_events: usize,
    /// Serve HTTP over TLS. With no `tls_cert`/`tls_key`, a self-signed certificate is made
    /// once and kept under `<data-dir>/tls/`.
    pub http_tls: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http: SocketAddr::from(([127, 0, 0, 1], 8514)),
            syslog: Some(SocketAddr::from(([127, 0, 0, 1], 5514))),
            syslog_tls: None,
            gelf_udp: None,
            gelf_tcp: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            max_message_bytes: 64 * 1024,
            max_body_bytes: 64 * 1024 * 1024,
            batch_max_events: 4096,
            http_tls: true,
        }
    }
}

/// `[ingest]`: how events are attributed and normalised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Keep the raw message in `event.original`.
    pub keep_original: bool,
    /// Agencies by sender address: the first range that holds the peer's address gives
    /// `organization.id` when the event does not carry one.
    pub agency_ranges: Vec<AgencyRange>,
    /// Agencies by TLS client certificate: a verified certificate whose subject common name or
    /// DNS name equals `identity` gives `organization.id`. An authenticated sender cannot speak
    /// for another agency, so this wins over a value the event carries.
    pub agency_clients: Vec<AgencyClient>,
    /// Agency for events whose sender matches no range and that carry none.
    pub default_agency: Option<String>,
    /// Log files to follow (`[[ingest.files]]`), with checkpoints and rotation.
    pub files: Vec<crate::tail::TailConfig>,
    /// How often followed files are checked for new lines, in milliseconds.
    pub file_poll_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            keep_original: true,
            agency_ranges: Vec::new(),
            agency_clients: Vec::new(),
            default_agency: None,
            files: Vec::new(),
            file_poll_ms: 250,
        }
    }
}

/// One `[[ingest.agency_ranges]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyRange {
    /// CIDR, e.g. `10.20.0.0/16`.
    pub cidr: String,
    /// Agency id, e.g. `so-tt` (Sở Thông tin và Truyền thông).
    pub agency: String,
}

/// One `[[ingest.agency_clients]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyClient {
    /// Certificate subject common name or DNS name, e.g. `syslog.so-tt.example.vn`.
    pub identity: String,
    /// Agency id, e.g. `so-tt`.
    pub agency: String,
}

/// `[detect]`: rules evaluated on every event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Directory of Sigma rules (searched recursively). Empty: no live detection.
    pub rules_dir: Option<PathBuf>,
    /// Repeats of one rule on one host within this many seconds are counted, not stored again
    /// (0 keeps every match).
    pub suppress_secs: u64,
    /// Directory of indicator files (plain lists or `.csv`, one set per file) matched with the
    /// rules. Sets saved through `/api/v1/indicators` are kept under `<data-dir>/state`.
    pub indicators_dir: Option<PathBuf>,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            rules_dir: None,
            suppress_secs: 60,
            indicators_dir: None,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, an unknown key or a value of the wrong type.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// An environment override that names no key.
    #[error("invalid environment override {var}: {reason}")]
    Env {
        /// The variable.
        var: String,
        /// Why.
        reason: String,
    },
}

/// The commented default file printed by `canh config defaults`.
pub const DEFAULT_TOML: &str = include_str!("../canh.default.toml");

impl Config {
    /// Loads `path` (or the defaults when `None`), then applies `CANH_<SECTION>__<KEY>` overrides
    /// from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        Self::from_toml_with_env(&text, env)
    }

    /// Parses TOML text and applies environment overrides.
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        for (var, value) in env {
            apply_env(&mut table, &var, &value)?;
        }
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.store
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for r in &self.ingest.agency_ranges {
            crate::pipeline::parse_range(&r.cidr).ok_or_else(|| {
                ConfigError::Invalid(format!("ingest.agency_ranges: bad CIDR {:?}", r.cidr))
            })?;
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "server.tls_cert and server.tls_key go together: set both or neither".into(),
            ));
        }
        for c in &self.ingest.agency_clients {
            if c.identity.trim().is_empty() || c.agency.trim().is_empty() {
                return Err(ConfigError::Invalid(
                    "ingest.agency_clients: identity and agency must not be empty".into(),
                ));
            }
        }
        if !self.ingest.agency_clients.is_empty() && self.server.tls_client_ca.is_none() {
            return Err(ConfigError::Invalid(
                "ingest.agency_clients needs server.tls_client_ca to verify client certificates"
                    .into(),
            ));
        }
        if self.server.max_message_bytes == 0 || self.server.batch_max_events == 0 {
            return Err(ConfigError::Invalid(
                "server.max_message_bytes and server.batch_max_events must be > 0".into(),
            ));
        }
        Ok(())
    }
}

/// The environment variables that override keys: every `CANH_<SECTION>__<KEY>`.
pub fn env_overrides() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("CANH_") && k.contains("__"))
        .collect()
}

fn apply_env(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let Some(path) = var.strip_prefix("CANH_") else {
        return Ok(());
    };
    if !path.contains("__") {
        return Ok(());
    }
    let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    if keys.iter().any(String::is_empty) {
        return Err(ConfigError::Env {
            var: var.into(),
            reason: "empty key".into(),
        });
    }
    // A value that reads as TOML (number, bool, array, quoted string) keeps its type; anything
    // else is a string, so `CANH_SERVER__HTTP=0.0.0.0:8514` needs no quotes.
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let mut cur = table;
    for (i, key) in keys.iter().enumerate() {
        if i + 1 == keys.len() {
            cur.insert(key.clone(), parsed);
            return Ok(());
        }
        let next = cur
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = next.as_table_mut().ok_or_else(|| ConfigError::Env {
            var: var.into(),
            reason: format!("{key} is not a section"),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_matches_the_built_in_defaults() {
        let cfg = Config::from_toml_with_env(DEFAULT_TOML, []).unwrap();
        assert_eq!(cfg, Config::default());
    }

    #[test]
    fn env_overrides_keys_with_types() {
        let env = [
            ("CANH_SERVER__HTTP".to_string(), "0.0.0.0:9000".to_string()),
            (
                "CANH_SERVER__MAX_MESSAGE_BYTES".to_string(),
                "1024".to_string(),
            ),
            (
                "CANH_INGEST__KEEP_ORIGINAL".to_string(),
                "false".to_string(),
            ),
        ];
        let cfg = Config::from_toml_with_env("", env).unwrap();
        assert_eq!(cfg.server.http.port(), 9000);
        assert_eq!(cfg.server.max_message_bytes, 1024);
        assert!(!cfg.ingest.keep_original);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = Config::from_toml_with_env("[server]\nhttpp = \"x\"", []).unwrap_err();
        assert!(err.to_string().contains("httpp"), "{err}");
        let err =
            Config::from_toml_with_env("", [("CANH_SERVR__HTTP".into(), "x".into())]).unwrap_err();
        assert!(err.to_string().contains("servr"), "{err}");
    }

    #[test]
    fn bad_cidr_is_refused() {
        let text = "[[ingest.agency_ranges]]\ncidr = \"10.0.0.0/33\"\nagency = \"a\"";
        assert!(Config::from_toml_with_env(text, []).is_err());
    }
}
