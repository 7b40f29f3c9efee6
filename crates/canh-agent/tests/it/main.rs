//! Integration tests of the agent.
#![allow(clippy::unwrap_used)] // test helpers fail the test on any error

mod fim;
mod isolation;
mod packaging;
mod process;
mod spool;
#[cfg(feature = "yara")]
mod yara;

/// Whether we run as root (sensor tests need it; they skip, loudly, otherwise).
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Uid:")
                    .map(|v| v.split_whitespace().next() == Some("0"))
            })
        })
        .unwrap_or(false)
}
