//! End-to-end tests of the server through real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

mod agents;
mod console;
mod detect;
mod ingest;
mod rsyslog;
mod rules;
mod tail;
mod tls;
mod upgrades;
