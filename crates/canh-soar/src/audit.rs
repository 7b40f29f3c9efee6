//! The append-only, hash-chained audit log: who did what, when, from where, before and after.
//!
//! `hash = SHA-256(prev_hash ‖ canonical JSON of the row)`, with the previous row's hash as hex
//! and the genesis `prev_hash` all zeros. Triggers refuse UPDATE and DELETE; `verify` recomputes
//! the chain and names the first row that does not match.

use crate::clock::{from_ms, to_ms};
use crate::error::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Row, SqliteConnection, SqlitePool};

/// The `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who acts, for the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// The user's id (none for the system itself).
    pub user_id: Option<i64>,
    /// The user's name, or `system`.
    pub name: String,
    /// Where from: client address, `cli`, `pipeline`.
    pub source: String,
}

impl Actor {
    /// The node itself (pipeline, timers).
    pub fn system(source: &str) -> Self {
        Self {
            user_id: None,
            name: "system".into(),
            source: source.into(),
        }
    }

    /// A user.
    pub fn user(id: i64, name: &str, source: &str) -> Self {
        Self {
            user_id: Some(id),
            name: name.into(),
            source: source.into(),
        }
    }
}

/// One audit row.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (user name or `system`).
    pub actor: String,
    /// From where.
    pub source: String,
    /// What (`incident.transition`, `alert.triage`, …).
    pub action: String,
    /// Object type.
    pub object_type: String,
    /// Object id.
    pub object_id: String,
    /// JSON before the change.
    pub before: Option<String>,
    /// JSON after the change.
    pub after: Option<String>,
    /// Hash of the previous row.
    pub prev_hash: String,
    /// This row's hash.
    pub hash: String,
}

#[derive(Serialize)]
struct Canonical<'a> {
    seq: i64,
    at: i64,
    actor: &'a str,
    source: &'a str,
    action: &'a str,
    object_type: &'a str,
    object_id: &'a str,
    before: Option<&'a str>,
    after: Option<&'a str>,
}

fn row_hash(prev: &str, c: &Canonical<'_>) -> String {
    // Serialising a struct of strings and integers cannot fail.
    let canonical = serde_json::to_string(c).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

/// A change to record.
pub(crate) struct Change<'a> {
    pub(crate) action: &'a str,
    pub(crate) object_type: &'a str,
    pub(crate) object_id: String,
    pub(crate) before: Option<serde_json::Value>,
    pub(crate) after: Option<serde_json::Value>,
}

/// Appends one row inside the caller's transaction (start it with `BEGIN IMMEDIATE`, so that two
/// writers never chain onto the same previous row).
pub(crate) async fn append(
    conn: &mut SqliteConnection,
    at: DateTime<Utc>,
    actor: &Actor,
    change: Change<'_>,
) -> Result<i64> {
    let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let (prev_seq, prev_hash) = match last {
        Some(r) => (r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?),
        None => (0, GENESIS.to_owned()),
    };
    let seq = prev_seq + 1;
    let before = change.before.map(|v| v.to_string());
    let after = change.after.map(|v| v.to_string());
    let at_ms = to_ms(at);
    let hash = row_hash(
        &prev_hash,
        &Canonical {
            seq,
            at: at_ms,
            actor: &actor.name,
            source: &actor.source,
            action: change.action,
            object_type: change.object_type,
            object_id: &change.object_id,
            before: before.as_deref(),
            after: after.as_deref(),
        },
    );
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, source, action, object_type, object_id, before, \
         after, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(seq)
    .bind(at_ms)
    .bind(&actor.name)
    .bind(&actor.source)
    .bind(change.action)
    .bind(change.object_type)
    .bind(&change.object_id)
    .bind(before)
    .bind(after)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    Ok(seq)
}

/// The outcome of `verify`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AuditReport {
    /// Rows checked.
    pub rows: i64,
    /// Hash of the last row (keep it elsewhere to detect truncation of the tail).
    pub head: String,
    /// The first broken row and why; `None` when the chain is intact.
    pub broken: Option<(i64, String)>,
}

impl AuditReport {
    /// Whether the chain is intact.
    pub fn ok(&self) -> bool {
        self.broken.is_none()
    }
}

fn entry_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.try_get("seq")?,
        at: from_ms(r.try_get("at")?),
        actor: r.try_get("actor")?,
        source: r.try_get("source")?,
        action: r.try_get("action")?,
        object_type: r.try_get("object_type")?,
        object_id: r.try_get("object_id")?,
        before: r.try_get("before")?,
        after: r.try_get("after")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

const COLUMNS: &str =
    "seq, at, actor, source, action, object_type, object_id, before, after, prev_hash, hash";

/// Recomputes the whole chain.
pub async fn verify(pool: &SqlitePool) -> Result<AuditReport> {
    let mut prev = GENESIS.to_owned();
    let mut expected_seq = 1;
    let mut rows = 0;
    let mut after_seq = 0;
    loop {
        // Pages keep memory flat on long chains.
        let page = sqlx::query(&format!(
            "SELECT {COLUMNS}, at AS at_ms FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 1000"
        ))
        .bind(after_seq)
        .fetch_all(pool)
        .await?;
        if page.is_empty() {
            return Ok(AuditReport {
                rows,
                head: prev,
                broken: None,
            });
        }
        for r in &page {
            let e = entry_from_row(r)?;
            let at_ms: i64 = r.try_get("at_ms")?;
            rows += 1;
            after_seq = e.seq;
            let broken = |why: String| {
                Ok(AuditReport {
                    rows,
                    head: prev.clone(),
                    broken: Some((e.seq, why)),
                })
            };
            if e.seq != expected_seq {
                return broken(format!(
                    "row {expected_seq} is missing (next row is {})",
                    e.seq
                ));
            }
            if e.prev_hash != prev {
                return broken(format!(
                    "row {} does not chain onto row {}",
                    e.seq,
                    e.seq - 1
                ));
            }
            let computed = row_hash(
                &prev,
                &Canonical {
                    seq: e.seq,
                    at: at_ms,
                    actor: &e.actor,
                    source: &e.source,
                    action: &e.action,
                    object_type: &e.object_type,
                    object_id: &e.object_id,
                    before: e.before.as_deref(),
                    after: e.after.as_deref(),
                },
            );
            if computed != e.hash {
                return broken(format!(
                    "row {} was altered: its hash does not match",
                    e.seq
                ));
            }
            prev = e.hash;
            expected_seq += 1;
        }
    }
}

/// Filters for listing the audit log.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct AuditFilter {
    /// Only this object type.
    pub object_type: Option<String>,
    /// Only this object id.
    pub object_id: Option<String>,
    /// Only rows with a smaller `seq` (paging backwards).
    pub before_seq: Option<i64>,
    /// At most this many rows (default 100, max 1000).
    pub limit: Option<i64>,
}

/// Newest rows first.
pub async fn list(pool: &SqlitePool, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
    let limit = f.limit.unwrap_or(100).clamp(1, 1000);
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM audit_log WHERE ($1 IS NULL OR object_type = $1) \
         AND ($2 IS NULL OR object_id = $2) AND ($3 IS NULL OR seq < $3) \
         ORDER BY seq DESC LIMIT $4"
    ))
    .bind(&f.object_type)
    .bind(&f.object_id)
    .bind(f.before_seq)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(entry_from_row).collect()
}
