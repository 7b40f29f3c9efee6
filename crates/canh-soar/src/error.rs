//! One error type for the crate, grouped by who is to blame.

/// Why a SOAR operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SoarError {
    /// The caller's input is wrong (bad value, illegal transition, invalid profile).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The object does not exist.
    #[error("{kind} {id} not found")]
    NotFound {
        /// Object type (`incident`, `alert`, …).
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// The caller may not do this (bad credentials, locked account, out of scope).
    #[error("denied: {0}")]
    Denied(String),
    /// The object changed since the caller read it (optimistic concurrency).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database failed.
    #[error("database error")]
    Db(#[from] sqlx::Error),
    /// A schema migration failed.
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A file of the evidence vault could not be read or written.
    #[error("evidence I/O failed on {path}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Stored data contradicts itself (a bug or tampering).
    #[error("internal error: {0}")]
    Internal(String),
}

impl SoarError {
    pub(crate) fn not_found(kind: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Shorthand.
pub type Result<T, E = SoarError> = std::result::Result<T, E>;
