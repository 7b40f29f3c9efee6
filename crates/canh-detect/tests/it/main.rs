//! Integration tests of canh-detect on real data: the SigmaHQ corpus, its regression logs,
//! and correlation rules over shared EVTX files.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod correlation;
mod regression;
mod sigmahq;

use std::path::PathBuf;

pub(crate) fn datasets() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/datasets"
    ))
}
