//! Integration tests of canh-ingest: golden files, never-panics properties, framing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

mod framing;
mod golden;
mod props;
