//! Integration tests of the `canh` binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

mod hunt;
mod sensor;
mod server;
