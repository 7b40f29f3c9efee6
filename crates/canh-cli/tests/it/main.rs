//! Integration tests of the `canh` binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

mod agency;
mod agent;
mod hunt;
mod hunt_store;
mod sensor;
mod sensor_ship;
mod server;
