//! A running Canh node: listeners, the ingest pipeline, the HTTP API and ingest APIs.
//!
//! Network listeners live here rather than in `canh-ingest`, so that `canh-ingest` stays pure
//! (bytes → events, fuzzable, no runtime) while everything that owns a socket, a TLS config or
//! an acknowledgement lives with the runtime that acknowledges.

pub mod agents;
pub mod api;
pub mod config;
pub mod console;
pub mod detect;
pub mod http;
pub mod ingest_http;
pub mod metrics;
pub mod node;
pub mod otlp;
pub mod pipeline;
pub mod rules;
pub mod soar;
pub mod sources;
pub mod tail;
pub mod tls;

pub use config::Config;
pub use node::Node;
