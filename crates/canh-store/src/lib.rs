#![doc = include_str!("../README.md")]

pub mod config;
pub mod deadletter;
pub mod wal;

#[cfg(feature = "search")]
pub mod index;
#[cfg(feature = "lake")]
pub mod lake;
#[cfg(all(feature = "lake", feature = "search"))]
mod store;

pub use config::StoreConfig;
pub use deadletter::{DeadLetter, DeadLetterCounts, DeadLetterStore};
pub use wal::{AppendAck, Wal, WalOptions};

#[cfg(all(feature = "lake", feature = "search"))]
pub use store::{
    BoxFuture, Bucket, Cursor, EventStore, FlushStats, Hit, MAX_BUCKETS, MAX_SQL_ROWS,
    MaintenanceReport, Page, SearchRequest, SqlRows, Store,
};

/// Errors of the storage layer, grouped by who is to blame.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The caller's input (query, config, batch) is not acceptable.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A query string did not parse.
    #[error(transparent)]
    Query(#[from] canh_core::query::QueryError),
    /// The disk said no.
    #[error("{what}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Stored data failed a check (checksum, format).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The store refuses writes after an earlier failure (e.g. a failed fsync).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store was closed.
    #[error("store is closed")]
    Closed,
    /// A bug or an unexpected state of a dependency.
    #[error("internal error: {0}")]
    Internal(String),
}
