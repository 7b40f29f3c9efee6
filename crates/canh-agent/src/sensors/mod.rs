//! Sensors: each turns one kind of host activity into ECS-named events.
//!
//! A sensor runs on its own thread and hands batches to an [`Emit`] callback (in the agent,
//! an append to the spool). Field names follow ECS so that SigmaHQ's Linux rules
//! (`process_creation`, `network_connection`, `file_event`) run unchanged.

pub mod devices;
pub mod fim;
pub mod logins;
pub mod modules;
pub mod network;
pub mod process;
pub mod procinfo;

use std::sync::Arc;

use canh_core::Event;
use chrono::Utc;
use serde_json::json;

/// Where a sensor sends its events.
pub type Emit = Arc<dyn Fn(Vec<Event>) + Send + Sync>;

/// Sensor failures.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    /// A system call or file read failed.
    #[error("sensor i/o")]
    Io(#[from] std::io::Error),
}

/// An event with the fields every sensor sets.
pub fn base_event(host: &str, dataset: &str, category: &str, kind_type: &str) -> Event {
    let mut ev = Event::new(Utc::now());
    ev.set("event.kind", "event");
    ev.set("event.module", "canh_agent");
    ev.set("event.dataset", dataset);
    ev.set("event.category", json!([category]));
    ev.set("event.type", json!([kind_type]));
    ev.set("host.name", host);
    ev.set("host.os.type", "linux");
    ev.set("agent.type", "canh-agent");
    ev.set("agent.version", env!("CARGO_PKG_VERSION"));
    ev
}
