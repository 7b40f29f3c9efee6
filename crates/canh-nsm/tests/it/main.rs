//! Integration tests of canh-nsm on real captures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

mod conformance;
mod pcaps;
mod robustness;
