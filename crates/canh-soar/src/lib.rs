#![doc = include_str!("../README.md")]

pub mod agency;
pub mod alert;
pub mod audit;
pub mod clock;
mod db;
pub mod error;
pub mod evidence;
pub mod incident;
pub mod notify;
pub mod profile;
pub mod report;
pub mod system;
pub mod user;

pub use agency::{Agency, Contact, NewAgency};
pub use alert::{Alert, AlertFilter, AlertId, AlertState, NewAlert};
pub use audit::{Actor, AuditEntry, AuditFilter, AuditReport};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::SoarError;
pub use incident::{Incident, IncidentFilter, NewIncident, Severity, Step};
pub use notify::{Mailer, Notification, NotificationStatus, RosterEntry, SmtpSettings};
pub use profile::{ProfileSet, RegulationProfile};
pub use system::{AgencyTask, CsvKind, InfoSystem, NewSystem, Uplink};
pub use user::{Role, SavedSearch, User};

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
    /// Failed logins from one client address (any user names) before that address is refused
    /// for `lockout`; slows down password spraying across accounts.
    pub max_failed_per_source: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            group_window: chrono::Duration::hours(1),
            max_failed_logins: 5,
            lockout: chrono::Duration::minutes(15),
            session_ttl: chrono::Duration::hours(12),
            max_token_ttl: chrono::Duration::days(365),
            max_failed_per_source: 20,
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
    /// Woken when a notification is queued.
    outbox_wake: tokio::sync::Notify,
    /// Failed logins per client address: (count, start of the window).
    failed_by_source: std::sync::Mutex<std::collections::HashMap<String, (i64, DateTime<Utc>)>>,
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
            outbox_wake: tokio::sync::Notify::new(),
            failed_by_source: std::sync::Mutex::default(),
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

    /// Appends one entry to the audit chain for a change kept outside the SOAR tables (the
    /// detection rule catalogue, for one).
    pub async fn record_audit(
        &self,
        actor: &Actor,
        action: &str,
        object_type: &str,
        object_id: &str,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Result<i64> {
        let mut tx = self.begin().await?;
        let id = self
            .audit(
                &mut tx,
                actor,
                action,
                object_type,
                object_id,
                before,
                after,
            )
            .await?;
        tx.commit().await?;
        Ok(id)
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

/// A bound value of a list filter.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Int(i64),
    Text(String),
    Bool(bool),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<String> for Val {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

/// A WHERE clause built from the filters actually given, with numbered binds (`$1`, `$2`, …)
/// so that the same SQL runs on PostgreSQL. Column expressions are constants of this crate,
/// never caller input.
#[derive(Debug, Default)]
pub(crate) struct Where {
    conds: Vec<String>,
    vals: Vec<Val>,
}

impl Where {
    pub(crate) fn eq(&mut self, col: &'static str, v: Option<Val>) {
        if let Some(v) = v {
            self.vals.push(v);
            self.conds.push(format!("{col} = ${}", self.vals.len()));
        }
    }

    pub(crate) fn lt(&mut self, col: &'static str, v: Option<i64>) {
        if let Some(v) = v {
            self.vals.push(Val::Int(v));
            self.conds.push(format!("{col} < ${}", self.vals.len()));
        }
    }

    /// `col IN (…)` over an agency scope; an empty scope matches nothing.
    pub(crate) fn scope(&mut self, col: &'static str, ids: Option<&[i64]>) {
        let Some(ids) = ids else { return };
        if ids.is_empty() {
            self.conds.push("1 = 0".into());
            return;
        }
        let mut marks = Vec::with_capacity(ids.len());
        for id in ids {
            self.vals.push(Val::Int(*id));
            marks.push(format!("${}", self.vals.len()));
        }
        self.conds.push(format!("{col} IN ({})", marks.join(", ")));
    }

    pub(crate) fn sql(&self) -> String {
        if self.conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conds.join(" AND "))
        }
    }

    pub(crate) fn bind_all<'q>(
        &self,
        mut q: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
        for v in &self.vals {
            q = match v {
                Val::Int(i) => q.bind(*i),
                Val::Text(t) => q.bind(t.clone()),
                Val::Bool(b) => q.bind(*b),
            };
        }
        q
    }
}
