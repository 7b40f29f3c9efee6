//! The `[store]` section of `canh.toml`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Event store settings. Every key is optional; the defaults are shown on each field.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Start a new write-ahead-log segment after this many bytes. Default 64 MiB.
    pub wal_segment_bytes: u64,
    /// Sync the write-ahead log before acknowledging a batch. Turning this off loses the
    /// last batches on power loss. Default true.
    pub wal_fsync: bool,
    /// How often the background task moves acknowledged events into Parquet and the index,
    /// in milliseconds. Events are searchable before that (from memory). Default 2000.
    pub flush_interval_ms: u64,
    /// Flush early once this many events wait in memory; a flush also moves at most this many
    /// events at a time (decoding them), so its working memory stays bounded. Default 10000.
    pub flush_max_events: usize,
    /// Backpressure: while this many acknowledged events wait in memory for the background
    /// flush, new appends wait (a TCP sender is slowed down, nothing is dropped). At least
    /// `flush_max_events`. They wait as their log encoding, about 1 KB each. Default 40000.
    pub max_pending_events: usize,
    /// Days kept in the full-text index (the hot window); older days are searched by
    /// scanning Parquet. Default 30.
    pub hot_days: u32,
    /// Days of events kept; older day partitions are deleted by maintenance. Default 30.
    pub retention_days: u32,
    /// Per-agency retention overrides in days, keyed by `organization.id`.
    pub retention_days_by_agency: BTreeMap<String, u32>,
    /// Days of dead letters kept. Default 30.
    pub dead_letter_retention_days: u32,
    /// Memory for the index writer, in MiB (at least 15). Default 64.
    pub index_heap_mb: usize,
    /// zstd level of Parquet files (1–22). Default 3.
    pub parquet_zstd_level: i32,
    /// Rows per Parquet row group. Default 131072.
    pub parquet_row_group_rows: usize,
    /// Largest Parquet data page, in KiB. Smaller pages make a search read less around the rows
    /// it shows; larger ones compress better. Default 1024.
    pub parquet_page_kb: usize,
    /// Compact a day's partition once it holds at least this many Parquet files. Default 8.
    pub compact_min_files: usize,
    /// Run retention and compaction every this many seconds (0 = only when asked). Default 3600.
    pub maintenance_interval_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            wal_segment_bytes: 64 * 1024 * 1024,
            wal_fsync: true,
            flush_interval_ms: 2000,
            flush_max_events: 10_000,
            max_pending_events: 40_000,
            hot_days: 30,
            retention_days: 30,
            retention_days_by_agency: BTreeMap::new(),
            dead_letter_retention_days: 30,
            index_heap_mb: 64,
            parquet_zstd_level: 3,
            parquet_row_group_rows: 128 * 1024,
            parquet_page_kb: 1024,
            compact_min_files: 8,
            maintenance_interval_secs: 3600,
        }
    }
}

impl StoreConfig {
    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<(), crate::StoreError> {
        let bad = |m: &str| Err(crate::StoreError::Invalid(format!("store.{m}")));
        if !(1..=22).contains(&self.parquet_zstd_level) {
            return bad("parquet_zstd_level must be between 1 and 22");
        }
        if self.index_heap_mb < 15 {
            return bad("index_heap_mb must be at least 15");
        }
        if self.parquet_row_group_rows == 0
            || self.flush_max_events == 0
            || self.parquet_page_kb == 0
        {
            return bad(
                "parquet_row_group_rows, parquet_page_kb and flush_max_events must be positive",
            );
        }
        if self.max_pending_events < self.flush_max_events {
            return bad("max_pending_events must be at least flush_max_events");
        }
        if self.retention_days == 0 {
            return bad("retention_days must be positive");
        }
        if self.wal_segment_bytes < 4096 {
            return bad("wal_segment_bytes must be at least 4096");
        }
        Ok(())
    }

    /// Retention in days for an agency.
    pub fn retention_for(&self, agency: &str) -> u32 {
        self.retention_days_by_agency
            .get(agency)
            .copied()
            .unwrap_or(self.retention_days)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_section_gives_defaults_and_unknown_keys_are_refused() {
        let cfg: StoreConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, StoreConfig::default());
        assert!(cfg.validate().is_ok());
        let err = serde_json::from_str::<StoreConfig>(r#"{"retention": 3}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"));
    }

    #[test]
    fn agency_override_wins() {
        let cfg: StoreConfig =
            serde_json::from_str(r#"{"retention_days_by_agency": {"so-tt": 90}}"#).unwrap();
        assert_eq!(cfg.retention_for("so-tt"), 90);
        assert_eq!(cfg.retention_for("other"), 30);
        let bad = StoreConfig {
            parquet_zstd_level: 0,
            ..StoreConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
