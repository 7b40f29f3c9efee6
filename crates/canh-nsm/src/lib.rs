#![doc = include_str!("../README.md")]

pub mod blocklist;
pub mod capture;
pub mod community_id;
pub mod ddos;
pub mod decode;
pub mod defrag;
pub mod eve;
pub mod flow;
#[cfg(target_os = "linux")]
pub mod live;
#[cfg(target_os = "linux")]
pub mod pcap_filter;
pub mod proto;
pub mod rules;
pub mod sensor;
pub mod stream;

pub use capture::run_capture_file;
#[cfg(target_os = "linux")]
pub use live::{LiveCaptureError, LiveConfig, LiveStats, run_live};
pub use sensor::{Sensor, SensorConfig, SensorStats};

/// Errors of the network sensor.
#[derive(Debug, thiserror::Error)]
pub enum NsmError {
    /// The capture file could not be opened or read.
    #[error("failed to read capture {path}")]
    Io {
        /// The capture path.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The capture is not a pcap or pcapng file, or it is corrupt.
    #[error("invalid capture {path}: {reason}")]
    InvalidCapture {
        /// The capture path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing events failed.
    #[error("failed to write events")]
    Output(#[source] std::io::Error),
}
