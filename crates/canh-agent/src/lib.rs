//! Canh's Linux EDR agent.
//!
//! Sensors turn host activity into ECS-named [`canh_core::Event`]s and append them to the
//! [`spool`], an on-disk log with sequence numbers; the [`client`] streams the spool to the
//! server over mutual TLS and deletes what the server acknowledges. Response [`commands`] come
//! back down the same stream, signed by the server, and so do [`upgrade`]s.

pub mod client;
pub mod commands;
pub mod config;
pub mod inventory;
pub mod isolation;
pub mod pki;
pub mod quarantine;
pub mod response;
pub mod sca;
pub mod sensors;
pub mod spool;
pub mod upgrade;
#[cfg(feature = "yara")]
pub mod yara;

/// `PRETTY_NAME` from `/etc/os-release`, or `Linux`.
pub fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
        })
        .unwrap_or_else(|| "Linux".to_owned())
}
