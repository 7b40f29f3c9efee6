//! canh-ingest (under construction)
