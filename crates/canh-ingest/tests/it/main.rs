//! Integration tests of canh-ingest: golden files, never-panics properties, framing.

mod framing;
mod golden;
mod props;
