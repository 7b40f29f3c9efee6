//! Alert intake from the detection pipeline and triage: new → acknowledged → escalated /
//! false_positive / closed (with a reason), assignment, comments, bulk actions, grouping of
//! related alerts (same host and rule within the window).

use crate::audit::Actor;
use crate::clock::{from_ms, to_ms};
use crate::error::{Result, SoarError};
use crate::incident::Severity;
use crate::{Page, Soar};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// Alert id.
pub type AlertId = i64;

/// Triage state.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Not looked at yet.
    New,
    /// An analyst has it.
    Acknowledged,
    /// Raised into an incident.
    Escalated,
    /// Not an attack.
    FalsePositive,
    /// Handled without an incident.
    Closed,
}

impl AlertState {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Acknowledged => "acknowledged",
            Self::Escalated => "escalated",
            Self::FalsePositive => "false_positive",
            Self::Closed => "closed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "new" => Self::New,
            "acknowledged" => Self::Acknowledged,
            "escalated" => Self::Escalated,
            "false_positive" => Self::FalsePositive,
            "closed" => Self::Closed,
            other => return Err(SoarError::Invalid(format!("unknown alert state {other:?}"))),
        })
    }

    /// Whether the triage graph allows `self → to`. Terminal states may be reopened to
    /// `acknowledged` (a wrong false-positive call must be fixable, and it is audited).
    pub fn can_go(self, to: AlertState) -> bool {
        use AlertState::*;
        matches!(
            (self, to),
            (New, Acknowledged | Escalated | FalsePositive | Closed)
                | (Acknowledged, Escalated | FalsePositive | Closed)
                | (Escalated | FalsePositive | Closed, Acknowledged)
        )
    }

    /// Whether leaving to this state needs a reason.
    pub fn needs_reason(self) -> bool {
        matches!(self, Self::FalsePositive | Self::Closed)
    }
}

/// What the detection pipeline hands over.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAlert {
    /// Rule id.
    pub rule_id: String,
    /// Rule title.
    pub rule_title: String,
    /// Rule level as written by the rule (`low`, `medium`, `high`, `critical`, `informational`).
    pub rule_level: String,
    /// Severity on the incident scale.
    pub severity: Severity,
    /// Owning agency, when known.
    #[serde(default)]
    pub agency_id: Option<i64>,
    /// Host name or address.
    #[serde(default)]
    pub host: String,
    /// The matching event (ECS JSON).
    pub event: serde_json::Value,
    /// Event time.
    pub time: DateTime<Utc>,
    /// Alerts with the same key within the group window are counted on one row. Defaults to
    /// `rule_id|host`.
    #[serde(default)]
    pub dedup_key: Option<String>,
}

/// A stored alert.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Alert {
    /// Id.
    pub id: AlertId,
    /// Dedup key.
    pub dedup_key: String,
    /// Rule id.
    pub rule_id: String,
    /// Rule title.
    pub rule_title: String,
    /// Rule level.
    pub rule_level: String,
    /// Severity.
    pub severity: Severity,
    /// Agency.
    pub agency_id: Option<i64>,
    /// Host.
    pub host: String,
    /// First matching event.
    pub event: serde_json::Value,
    /// First seen.
    pub first_seen: DateTime<Utc>,
    /// Last seen.
    pub last_seen: DateTime<Utc>,
    /// Occurrences folded into this row.
    pub count: i64,
    /// Triage state.
    pub state: AlertState,
    /// Reason of the last state change, if any.
    pub reason: Option<String>,
    /// Assignee.
    pub assignee_id: Option<i64>,
    /// Group: the id of the first alert with the same host and rule in the window.
    pub group_id: i64,
    /// Linked incident.
    pub incident_id: Option<i64>,
    /// Incident type (regulation.md §2.5), once classified.
    #[serde(default)]
    pub incident_type: Option<String>,
    /// Team the alert is assigned to.
    #[serde(default)]
    pub team: Option<String>,
    /// Suppression rule that closed it on intake.
    #[serde(default)]
    pub suppression_id: Option<i64>,
}

/// One comment.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Comment {
    /// Author.
    pub user_id: Option<i64>,
    /// Text.
    pub body: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// List filters.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertFilter {
    /// Only this state.
    pub state: Option<AlertState>,
    /// Only this severity.
    pub severity: Option<Severity>,
    /// Only this rule.
    pub rule_id: Option<String>,
    /// Only this host.
    pub host: Option<String>,
    /// Only this group.
    pub group_id: Option<i64>,
    /// Only this assignee.
    pub assignee_id: Option<i64>,
    /// Only this agency.
    pub agency_id: Option<i64>,
    /// Only this team.
    pub team: Option<String>,
    /// Only this incident type.
    pub incident_type: Option<String>,
    /// Paging: ids smaller than this (newest first).
    pub after: Option<i64>,
    /// Page size (default 50, max 500).
    pub limit: Option<i64>,
}

const COLS: &str = "id, dedup_key, rule_id, rule_title, rule_level, severity, agency_id, host, \
                    event, first_seen, last_seen, count, state, reason, assignee_id, group_id, \
                    incident_id, incident_type, team, suppression_id";

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Alert> {
    let event: String = r.try_get("event")?;
    let id: i64 = r.try_get("id")?;
    Ok(Alert {
        id,
        dedup_key: r.try_get("dedup_key")?,
        rule_id: r.try_get("rule_id")?,
        rule_title: r.try_get("rule_title")?,
        rule_level: r.try_get("rule_level")?,
        severity: crate::incident::parse_severity(&r.try_get::<String, _>("severity")?)?,
        agency_id: r.try_get("agency_id")?,
        host: r.try_get("host")?,
        event: serde_json::from_str(&event).unwrap_or(serde_json::Value::Null),
        first_seen: from_ms(r.try_get("first_seen")?),
        last_seen: from_ms(r.try_get("last_seen")?),
        count: r.try_get("count")?,
        state: AlertState::parse(&r.try_get::<String, _>("state")?)?,
        reason: r.try_get("reason")?,
        assignee_id: r.try_get("assignee_id")?,
        group_id: r.try_get::<Option<i64>, _>("group_id")?.unwrap_or(id),
        incident_id: r.try_get("incident_id")?,
        incident_type: r.try_get("incident_type")?,
        team: r.try_get("team")?,
        suppression_id: r.try_get("suppression_id")?,
    })
}

/// The triage action of a (bulk) request.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Triage {
    /// Target state.
    pub state: AlertState,
    /// Reason (required for false_positive and closed).
    #[serde(default)]
    pub reason: Option<String>,
}

impl Soar {
    /// Records an alert from the pipeline. An open alert with the same dedup key seen within the
    /// group window absorbs it (count + 1, last_seen moves); otherwise a new row is created and
    /// joins the group of the first alert with the same host and rule in the window. An alert
    /// matching an active suppression rule is stored closed, with the rule's reason, and never
    /// reaches the triage queue.
    pub async fn record_alert(&self, alert: NewAlert) -> Result<AlertId> {
        let mut tx = self.begin().await?;
        let rules = active_suppressions(&mut tx, to_ms(self.now())).await?;
        let id = self.record_in_tx(&mut tx, &rules, &alert).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Records a batch of alerts in one transaction (one commit, one WAL sync), with the same
    /// folding, grouping and suppression as `record_alert`, in order. All or nothing. Returns
    /// the ids in the order given (a repeat folded into an earlier row returns that row's id).
    pub async fn record_alerts(&self, alerts: Vec<NewAlert>) -> Result<Vec<AlertId>> {
        let mut ids = Vec::with_capacity(alerts.len());
        if alerts.is_empty() {
            return Ok(ids);
        }
        let mut tx = self.begin().await?;
        let rules = active_suppressions(&mut tx, to_ms(self.now())).await?;
        for alert in &alerts {
            ids.push(self.record_in_tx(&mut tx, &rules, alert).await?);
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn record_in_tx(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        rules: &[ActiveSuppression],
        alert: &NewAlert,
    ) -> Result<AlertId> {
        let key = alert
            .dedup_key
            .clone()
            .unwrap_or_else(|| format!("{}|{}", alert.rule_id, alert.host));
        let t = to_ms(alert.time);
        let now = to_ms(self.now());
        let window = self.settings().group_window.num_milliseconds();
        let suppression: Option<(i64, String)> = rules
            .iter()
            .find(|r| r.rule_id == alert.rule_id && (r.host.is_empty() || r.host == alert.host))
            .map(|r| (r.id, r.reason.clone()));
        if let Some((sid, _)) = &suppression {
            sqlx::query("UPDATE alert_suppressions SET hits = hits + 1 WHERE id = $1")
                .bind(sid)
                .execute(&mut **tx)
                .await?;
        }
        // One round trip for both lookups: the open row this alert folds into (same dedup
        // key in the window), and the group of the latest alert of the same host and rule.
        let lookup = match &suppression {
            None => sqlx::query(
                "SELECT (SELECT id FROM alerts WHERE dedup_key = $1 AND last_seen >= $2 \
                 AND state IN ('new', 'acknowledged') ORDER BY id DESC LIMIT 1), \
                 (SELECT COALESCE(group_id, id) FROM alerts WHERE host = $3 AND rule_id = $4 \
                 AND last_seen >= $2 ORDER BY id DESC LIMIT 1)",
            ),
            Some(_) => sqlx::query(
                "SELECT (SELECT id FROM alerts WHERE dedup_key = $1 AND last_seen >= $2 \
                 AND suppression_id = $5 ORDER BY id DESC LIMIT 1), \
                 (SELECT COALESCE(group_id, id) FROM alerts WHERE host = $3 AND rule_id = $4 \
                 AND last_seen >= $2 ORDER BY id DESC LIMIT 1)",
            ),
        };
        let mut lookup = lookup
            .bind(&key)
            .bind(t - window)
            .bind(&alert.host)
            .bind(&alert.rule_id);
        if let Some((sid, _)) = &suppression {
            lookup = lookup.bind(*sid);
        }
        let row = lookup.fetch_one(&mut **tx).await?;
        let existing: Option<i64> = row.try_get(0)?;
        let group: Option<i64> = row.try_get(1)?;
        if let Some(id) = existing {
            sqlx::query(
                "UPDATE alerts SET count = count + 1, last_seen = MAX(last_seen, $1), \
                 updated_at = $2 WHERE id = $3",
            )
            .bind(t)
            .bind(now)
            .bind(id)
            .execute(&mut **tx)
            .await?;
            return Ok(id);
        }
        let (state, reason, sid) = match &suppression {
            None => ("new", None, None),
            Some((sid, reason)) => (
                "closed",
                Some(format!("suppressed by rule {sid}: {reason}")),
                Some(*sid),
            ),
        };
        let id: i64 = sqlx::query(
            "INSERT INTO alerts (dedup_key, rule_id, rule_title, rule_level, severity, agency_id, \
             host, event, first_seen, last_seen, state, reason, group_id, suppression_id, \
             updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(&key)
        .bind(&alert.rule_id)
        .bind(&alert.rule_title)
        .bind(&alert.rule_level)
        .bind(alert.severity.as_str())
        .bind(alert.agency_id)
        .bind(&alert.host)
        .bind(alert.event.to_string())
        .bind(t)
        .bind(state)
        .bind(reason)
        .bind(group)
        .bind(sid)
        .bind(now)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        Ok(id)
    }

    /// One alert.
    pub async fn alert(&self, id: AlertId) -> Result<Alert> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM alerts WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| SoarError::not_found("alert", id))?;
        from_row(&row)
    }

    /// Alerts newest first. `scope` limits to these agencies (none = all).
    pub async fn alerts(&self, f: &AlertFilter, scope: Option<&[i64]>) -> Result<Page<Alert>> {
        let limit = f.limit.unwrap_or(50).clamp(1, 500);
        // Only the filters given go into the SQL, so that SQLite can use the matching index
        // (a generic `($n IS NULL OR col = $n)` form forces a scan).
        let mut w = crate::Where::default();
        w.eq("state", f.state.map(|s| s.as_str().to_owned().into()));
        w.eq("severity", f.severity.map(|s| s.as_str().to_owned().into()));
        w.eq("rule_id", f.rule_id.clone().map(Into::into));
        w.eq("host", f.host.clone().map(Into::into));
        w.eq("COALESCE(group_id, id)", f.group_id.map(Into::into));
        w.eq("assignee_id", f.assignee_id.map(Into::into));
        w.eq("agency_id", f.agency_id.map(Into::into));
        w.eq("team", f.team.clone().map(Into::into));
        w.eq("incident_type", f.incident_type.clone().map(Into::into));
        w.lt("id", f.after);
        w.scope("agency_id", scope);
        let sql = format!(
            "SELECT {COLS} FROM alerts{} ORDER BY id DESC LIMIT {}",
            w.sql(),
            limit + 1
        );
        let rows = w.bind_all(sqlx::query(&sql)).fetch_all(self.pool()).await?;
        let mut items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        let next = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|a| a.id)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Moves alerts through triage, all or nothing. Returns the updated alerts.
    pub async fn triage_alerts(
        &self,
        actor: &Actor,
        ids: &[AlertId],
        triage: &Triage,
    ) -> Result<Vec<Alert>> {
        let reason = triage
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        if triage.state.needs_reason() && reason.is_none() {
            return Err(SoarError::Invalid(format!(
                "a reason is required to mark an alert {}",
                triage.state.as_str()
            )));
        }
        if ids.is_empty() || ids.len() > 1000 {
            return Err(SoarError::Invalid("give 1 to 1000 alert ids".into()));
        }
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let row = sqlx::query(&format!("SELECT {COLS} FROM alerts WHERE id = $1"))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| SoarError::not_found("alert", id))?;
            let before = from_row(&row)?;
            if !before.state.can_go(triage.state) {
                return Err(SoarError::Invalid(format!(
                    "alert {id}: cannot go from {} to {}",
                    before.state.as_str(),
                    triage.state.as_str()
                )));
            }
            sqlx::query("UPDATE alerts SET state = $1, reason = $2, updated_at = $3 WHERE id = $4")
                .bind(triage.state.as_str())
                .bind(reason)
                .bind(to_ms(self.now()))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let after = Alert {
                state: triage.state,
                reason: reason.map(str::to_owned),
                ..before.clone()
            };
            self.audit(
                &mut tx,
                actor,
                "alert.triage",
                "alert",
                id,
                Some(serde_json::json!({"state": before.state, "reason": before.reason})),
                Some(serde_json::json!({"state": after.state, "reason": after.reason})),
            )
            .await?;
            out.push(after);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Assigns alerts to a user (or unassigns with `None`).
    pub async fn assign_alerts(
        &self,
        actor: &Actor,
        ids: &[AlertId],
        assignee: Option<i64>,
    ) -> Result<()> {
        if let Some(uid) = assignee {
            self.user(uid).await?;
        }
        let mut tx = self.begin().await?;
        for &id in ids {
            let before: Option<i64> = sqlx::query("SELECT assignee_id FROM alerts WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| SoarError::not_found("alert", id))?
                .try_get(0)?;
            sqlx::query("UPDATE alerts SET assignee_id = $1, updated_at = $2 WHERE id = $3")
                .bind(assignee)
                .bind(to_ms(self.now()))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            self.audit(
                &mut tx,
                actor,
                "alert.assign",
                "alert",
                id,
                Some(serde_json::json!({"assignee_id": before})),
                Some(serde_json::json!({"assignee_id": assignee})),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Adds a comment.
    pub async fn comment_alert(&self, actor: &Actor, id: AlertId, body: &str) -> Result<()> {
        let body = body.trim();
        if body.is_empty() {
            return Err(SoarError::Invalid("empty comment".into()));
        }
        self.alert(id).await?;
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO alert_comments (alert_id, user_id, body, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(actor.user_id)
        .bind(body)
        .bind(to_ms(self.now()))
        .execute(&mut *tx)
        .await?;
        self.audit(
            &mut tx,
            actor,
            "alert.comment",
            "alert",
            id,
            None,
            Some(body.into()),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Comments, oldest first.
    pub async fn alert_comments(&self, id: AlertId) -> Result<Vec<Comment>> {
        let rows = sqlx::query(
            "SELECT user_id, body, created_at FROM alert_comments WHERE alert_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Comment {
                    user_id: r.try_get(0)?,
                    body: r.try_get(1)?,
                    created_at: from_ms(r.try_get(2)?),
                })
            })
            .collect()
    }
}

/// A suppression rule in force, as matched at intake.
pub(crate) struct ActiveSuppression {
    id: i64,
    rule_id: String,
    host: String,
    reason: String,
}

/// The suppression rules in force at `now` (few: read once per intake transaction), oldest
/// first so that the first match is the oldest rule.
async fn active_suppressions(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    now: i64,
) -> Result<Vec<ActiveSuppression>> {
    let rows = sqlx::query(
        "SELECT id, rule_id, host, reason FROM alert_suppressions WHERE removed_at IS NULL \
         AND (expires_at IS NULL OR expires_at > $1) ORDER BY id",
    )
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ActiveSuppression {
                id: r.try_get(0)?,
                rule_id: r.try_get(1)?,
                host: r.try_get(2)?,
                reason: r.try_get(3)?,
            })
        })
        .collect()
}

/// The incident types of the national reporting forms (regulation.md §2.5, TT20 Mẫu 05 rows):
/// id, Vietnamese name, English name.
pub const INCIDENT_TYPES: [(&str, &str, &str); 10] = [
    ("dos", "Từ chối dịch vụ", "Denial of service"),
    ("spoofing", "Tấn công giả mạo", "Spoofing or phishing"),
    ("malware", "Tấn công sử dụng mã độc", "Malware"),
    (
        "unauthorised_access",
        "Truy cập trái phép, chiếm quyền điều khiển",
        "Unauthorised access, takeover",
    ),
    ("defacement", "Thay đổi giao diện", "Defacement"),
    (
        "encryption",
        "Mã hóa phần mềm, dữ liệu, thiết bị",
        "Encryption of software, data or devices (ransomware)",
    ),
    (
        "destruction",
        "Phá hoại thông tin, dữ liệu, phần mềm",
        "Destruction of information, data or software",
    ),
    (
        "espionage",
        "Nghe trộm, gián điệp, lấy cắp thông tin, dữ liệu",
        "Eavesdropping, espionage, data theft",
    ),
    (
        "combined",
        "Tấn công tổng hợp sử dụng kết hợp nhiều hình thức",
        "Combined attack",
    ),
    ("other", "Các hình thức tấn công khác", "Other attacks"),
];

/// Checks an incident type id against `INCIDENT_TYPES`.
pub fn check_incident_type(t: &str) -> Result<()> {
    if INCIDENT_TYPES.iter().any(|(id, _, _)| *id == t) {
        Ok(())
    } else {
        Err(SoarError::Invalid(format!(
            "unknown incident type {t:?}; one of: {}",
            INCIDENT_TYPES
                .iter()
                .map(|(id, _, _)| *id)
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// A suppression rule: alerts of this rule (on this host, or any host when empty) are stored
/// closed with the stated reason instead of entering the triage queue.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Suppression {
    /// Id.
    pub id: i64,
    /// Rule id.
    pub rule_id: String,
    /// Host; empty = every host.
    pub host: String,
    /// Why (required).
    pub reason: String,
    /// Who created it.
    pub created_by: Option<i64>,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Ends at (none = until removed).
    pub expires_at: Option<DateTime<Utc>>,
    /// Alerts it has suppressed.
    pub hits: i64,
    /// Removed at.
    pub removed_at: Option<DateTime<Utc>>,
}

/// A new suppression rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSuppression {
    /// Rule id.
    pub rule_id: String,
    /// Host; empty or absent = every host.
    #[serde(default)]
    pub host: String,
    /// Why (required).
    pub reason: String,
    /// Ends at (none = until removed).
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

const SUP_COLS: &str =
    "id, rule_id, host, reason, created_by, created_at, expires_at, hits, removed_at";

fn suppression_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Suppression> {
    Ok(Suppression {
        id: r.try_get("id")?,
        rule_id: r.try_get("rule_id")?,
        host: r.try_get("host")?,
        reason: r.try_get("reason")?,
        created_by: r.try_get("created_by")?,
        created_at: from_ms(r.try_get("created_at")?),
        expires_at: crate::clock::opt_from_ms(r.try_get("expires_at")?),
        hits: r.try_get("hits")?,
        removed_at: crate::clock::opt_from_ms(r.try_get("removed_at")?),
    })
}

impl Soar {
    /// Classifies alerts by incident type (`INCIDENT_TYPES`), all or nothing.
    pub async fn classify_alerts(
        &self,
        actor: &Actor,
        ids: &[AlertId],
        incident_type: &str,
    ) -> Result<()> {
        check_incident_type(incident_type)?;
        self.bulk_set(
            actor,
            ids,
            "incident_type",
            Some(incident_type),
            "alert.classify",
        )
        .await
    }

    /// Assigns alerts to a team (or clears it with `None`), all or nothing.
    pub async fn assign_alerts_to_team(
        &self,
        actor: &Actor,
        ids: &[AlertId],
        team: Option<&str>,
    ) -> Result<()> {
        let team = team.map(str::trim).filter(|t| !t.is_empty());
        if team.is_some_and(|t| t.chars().count() > 64) {
            return Err(SoarError::Invalid("team name longer than 64".into()));
        }
        self.bulk_set(actor, ids, "team", team, "alert.assign_team")
            .await
    }

    async fn bulk_set(
        &self,
        actor: &Actor,
        ids: &[AlertId],
        col: &'static str,
        value: Option<&str>,
        action: &str,
    ) -> Result<()> {
        if ids.is_empty() || ids.len() > 1000 {
            return Err(SoarError::Invalid("give 1 to 1000 alert ids".into()));
        }
        let mut tx = self.begin().await?;
        for &id in ids {
            let before: Option<String> =
                sqlx::query(&format!("SELECT {col} FROM alerts WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| SoarError::not_found("alert", id))?
                    .try_get(0)?;
            sqlx::query(&format!(
                "UPDATE alerts SET {col} = $1, updated_at = $2 WHERE id = $3"
            ))
            .bind(value)
            .bind(to_ms(self.now()))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            self.audit(
                &mut tx,
                actor,
                action,
                "alert",
                id,
                Some(serde_json::json!({ col: before })),
                Some(serde_json::json!({ col: value })),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Adds a suppression rule; a reason is required. Audited.
    pub async fn add_suppression(&self, actor: &Actor, new: NewSuppression) -> Result<Suppression> {
        let rule = new.rule_id.trim();
        let reason = new.reason.trim();
        if rule.is_empty() {
            return Err(SoarError::Invalid("a suppression needs a rule id".into()));
        }
        if reason.is_empty() {
            return Err(SoarError::Invalid(
                "a suppression needs a stated reason".into(),
            ));
        }
        let now = self.now();
        if new.expires_at.is_some_and(|e| e <= now) {
            return Err(SoarError::Invalid("expires_at is in the past".into()));
        }
        let mut tx = self.begin().await?;
        let row = sqlx::query(&format!(
            "INSERT INTO alert_suppressions (rule_id, host, reason, created_by, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {SUP_COLS}"
        ))
        .bind(rule)
        .bind(new.host.trim())
        .bind(reason)
        .bind(actor.user_id)
        .bind(to_ms(now))
        .bind(new.expires_at.map(to_ms))
        .fetch_one(&mut *tx)
        .await?;
        let sup = suppression_from_row(&row)?;
        self.audit(
            &mut tx,
            actor,
            "suppression.create",
            "suppression",
            sup.id,
            None,
            serde_json::to_value(&sup).ok(),
        )
        .await?;
        tx.commit().await?;
        Ok(sup)
    }

    /// Removes (ends) a suppression rule; it stays listed with `removed_at`. Audited.
    pub async fn remove_suppression(&self, actor: &Actor, id: i64) -> Result<Suppression> {
        let mut tx = self.begin().await?;
        let before = sqlx::query(&format!(
            "SELECT {SUP_COLS} FROM alert_suppressions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| SoarError::not_found("suppression", id))?;
        let before = suppression_from_row(&before)?;
        if before.removed_at.is_some() {
            return Ok(before);
        }
        let row = sqlx::query(&format!(
            "UPDATE alert_suppressions SET removed_at = $1 WHERE id = $2 RETURNING {SUP_COLS}"
        ))
        .bind(to_ms(self.now()))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let after = suppression_from_row(&row)?;
        self.audit(
            &mut tx,
            actor,
            "suppression.remove",
            "suppression",
            id,
            serde_json::to_value(&before).ok(),
            serde_json::to_value(&after).ok(),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Every suppression rule, newest first.
    pub async fn suppressions(&self) -> Result<Vec<Suppression>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUP_COLS} FROM alert_suppressions ORDER BY id DESC"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(suppression_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triage_graph() {
        use AlertState::*;
        assert!(New.can_go(Acknowledged));
        assert!(Acknowledged.can_go(FalsePositive));
        assert!(FalsePositive.can_go(Acknowledged));
        assert!(!FalsePositive.can_go(Closed));
        assert!(!Acknowledged.can_go(New));
        assert!(!New.can_go(New));
        for s in [New, Acknowledged, Escalated, FalsePositive, Closed] {
            assert_eq!(AlertState::parse(s.as_str()).unwrap(), s);
        }
    }

    #[test]
    fn incident_types_are_the_ten_of_the_form() {
        assert_eq!(INCIDENT_TYPES.len(), 10);
        assert!(check_incident_type("malware").is_ok());
        assert!(check_incident_type("Malware").is_err());
        let mut ids: Vec<_> = INCIDENT_TYPES.iter().map(|t| t.0).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 10);
    }
}
