#![doc = include_str!("../README.md")]

pub mod agency;
pub mod alert;
pub mod audit;
pub mod clock;
mod db;
pub mod error;
pub mod evidence;
pub mod incident;
pub mod profile;
pub mod user;

pub use agency::{Agency, Contact, NewAgency};
pub use alert::{Alert, AlertFilter, AlertId, AlertState, NewAlert};
pub use audit::{Actor, AuditEntry, AuditFilter, AuditReport};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::SoarError;
pub use incident::{Incident, IncidentFilter, NewIncident, Severity, Step};
pub use profile::{ProfileSet, RegulationProfile};
pub use user::{Role, User};

use crate::error::Result;
use chrono::{DateTime, Utc};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Tunables of the SOAR core (the server fills them from `[soar]`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Alerts with the same host and rule within this window join one group, and alerts with the
    /// same dedup key within it are counted on one row.
    pub group_window: chrono::Duration,
    /// Failed logins before the account is locked.
    pub max_failed_logins: i64,
    /// How long a lock-out lasts.
    pub lockout: chrono::Duration,
    /// Session lifetime.
    pub session_ttl: chrono::Duration,
    /// Longest lifetime of an API token.
    pub max_token_ttl: chrono::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            group_window: chrono::Duration::hours(1),
            max_failed_logins: 5,
            lockout: chrono::Duration::minutes(15),
            session_ttl: chrono::Duration::hours(12),
            max_token_ttl: chrono::Duration::days(365),
        }
    }
}

/// The SOAR state: one SQLite database plus the evidence vault.
pub struct Soar {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
    profiles: RwLock<ProfileSet>,
    evidence_dir: PathBuf,
    settings: Settings,
}

impl std::fmt::Debug for Soar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Soar")
            .field("evidence_dir", &self.evidence_dir)
            .finish_non_exhaustive()
    }
}

impl Soar {
    /// Opens `<data_dir>/state/canh.db` (created and migrated if needed) and the evidence vault
    /// at `<data_dir>/evidence/`.
    pub async fn open(
        data_dir: &Path,
        profiles: ProfileSet,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Result<Self> {
        let pool = db::open(&data_dir.join("state").join("canh.db")).await?;
        let evidence_dir = data_dir.join("evidence");
        tokio::fs::create_dir_all(&evidence_dir)
            .await
            .map_err(|e| SoarError::io(&evidence_dir, e))?;
        Ok(Self {
            pool,
            clock,
            profiles: RwLock::new(profiles),
            evidence_dir,
            settings,
        })
    }

    /// The database pool (read-only helpers, benchmarks).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The current time of the injected clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The tunables.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The loaded profiles.
    pub fn profiles(&self) -> ProfileSet {
        self.profiles
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Switches the profile used for new incidents; open incidents keep theirs.
    pub async fn set_active_profile(&self, actor: &Actor, id: &str) -> Result<()> {
        let current = self.profiles();
        let next = ProfileSet::new(current.all().iter().map(|p| (**p).clone()).collect(), id)?;
        let before =
            serde_json::json!({"id": current.active().id, "version": current.active().version});
        let after = serde_json::json!({"id": next.active().id, "version": next.active().version});
        let mut tx = self.begin().await?;
        self.audit(
            &mut tx,
            actor,
            "profile.activate",
            "profile",
            id,
            Some(before),
            Some(after),
        )
        .await?;
        tx.commit().await?;
        *self
            .profiles
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        Ok(())
    }

    /// Checks the audit chain.
    pub async fn verify_audit(&self) -> Result<AuditReport> {
        audit::verify(&self.pool).await
    }

    /// Lists audit rows, newest first.
    pub async fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        audit::list(&self.pool, filter).await
    }

    /// A write transaction that takes the write lock at once (`BEGIN IMMEDIATE`).
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn audit(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        actor: &Actor,
        action: &str,
        object_type: &str,
        object_id: impl ToString,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Result<i64> {
        audit::append(
            tx,
            self.clock.now(),
            actor,
            audit::Change {
                action,
                object_type,
                object_id: object_id.to_string(),
                before,
                after,
            },
        )
        .await
    }
}

/// A page of results plus the cursor for the next one.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next: Option<i64>,
}
