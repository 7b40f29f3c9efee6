//! Integration tests of canh-nsm on real captures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

mod alerts;
mod conformance;
mod ddos;
#[cfg(target_os = "linux")]
mod live;
mod mail_ftp_dhcp;
mod pcaps;
mod robustness;
mod rules;
