//! Integration tests of canh-store: the embedded store end to end (features `lake` + `search`).

#![allow(clippy::unwrap_used)] // helpers shared by tests stop on the first failure

#[cfg(all(feature = "lake", feature = "search"))]
mod common;
#[cfg(all(feature = "lake", feature = "search"))]
mod durability;
#[cfg(all(feature = "lake", feature = "search"))]
mod store;
mod wal;
