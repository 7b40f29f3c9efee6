#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod event;
pub mod fields;
pub mod query;
pub mod severity;
pub mod time;
pub mod wire;

pub use event::{Event, Value};
pub use severity::Severity;
