//! Incidents: four severities, the seven steps as a state machine with sign-offs,
//! deadlines from the regulation profile, tasks, timeline, observables,
//! linked alerts and optimistic concurrency (`version`).

use crate::alert::AlertState;
use crate::audit::Actor;
use crate::clock::{from_ms, opt_from_ms, to_ms};
use crate::error::{Result, SoarError};
use crate::{Page, Soar};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// The four severities of the regulation (definitions live in the profile).
pub use canh_core::Severity;

/// Reads a stored severity name.
pub(crate) fn parse_severity(s: &str) -> Result<Severity> {
    s.parse()
        .map_err(|e: canh_core::severity::SeverityError| SoarError::Invalid(e.to_string()))
}

/// The seven steps (QĐ 33 mapped onto TT20 Đ11).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// 1 Ghi nhận.
    Record,
    /// 2 Phân tích.
    Analyse,
    /// 3 Ngăn chặn.
    Contain,
    /// 4 Thu thập bằng chứng, truy tìm thủ phạm.
    CollectEvidence,
    /// 5 Xử lý nguyên nhân.
    RemoveCause,
    /// 6 Khôi phục.
    Recover,
    /// 7 Hoạt động sau sự cố.
    PostIncident,
}

impl Step {
    /// All steps in order.
    pub const ALL: [Step; 7] = [
        Self::Record,
        Self::Analyse,
        Self::Contain,
        Self::CollectEvidence,
        Self::RemoveCause,
        Self::Recover,
        Self::PostIncident,
    ];

    /// Stored name (= the profile's step id).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Record => "record",
            Self::Analyse => "analyse",
            Self::Contain => "contain",
            Self::CollectEvidence => "collect_evidence",
            Self::RemoveCause => "remove_cause",
            Self::Recover => "recover",
            Self::PostIncident => "post_incident",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| SoarError::Invalid(format!("unknown step {s:?}")))
    }

    /// Whether `self → to` is legal: the next step, or recover → contain when the check after
    /// recovery fails (TT20 Đ11.3.c).
    pub fn can_go(self, to: Step) -> bool {
        let i = self as usize;
        let j = to as usize;
        j == i + 1 || (self == Self::Recover && to == Self::Contain)
    }
}

/// Title of the task opened when the response of an incident notified while unresolved ends
/// (R-03, TT20 Đ9.2.a): the same recipients get the updated information.
pub const UPDATE_NOTICE_TASK: &str = "Cập nhật thông tin sự cố cho các nơi đã nhận thông báo \
     (R-03) / send the updated incident information to the notice's recipients";

/// The three report deadlines.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// Thông báo sự cố.
    Notice,
    /// Báo cáo ban đầu.
    InitialReport,
    /// Báo cáo kết thúc ứng phó.
    ClosingReport,
}

impl ReportKind {
    fn column(self) -> &'static str {
        match self {
            Self::Notice => "notice_sent_at",
            Self::InitialReport => "initial_report_sent_at",
            Self::ClosingReport => "closing_report_sent_at",
        }
    }
}

/// State of one deadline of an incident.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DeadlineState {
    /// Which report.
    pub kind: ReportKind,
    /// Due time; `None` while its clock has not started.
    pub due: Option<DateTime<Utc>>,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
    /// Due, unsent and past.
    pub overdue: bool,
}

/// One incident.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Incident {
    /// Id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Severity.
    pub severity: Severity,
    /// Agency.
    pub agency_id: i64,
    /// The agency's name when the incident was opened (kept after renames and merges).
    pub agency_name: String,
    /// Current step.
    pub step: Step,
    /// Closed after the post-incident step.
    pub closed: bool,
    /// Regulation profile it was opened under.
    pub profile_id: String,
    /// Its version.
    pub profile_version: i64,
    /// Hours for the notice, copied from the profile at opening.
    pub notice_hours: i64,
    /// Hours for the initial report.
    pub initial_report_hours: i64,
    /// Hours for the closing report.
    pub closing_report_hours: i64,
    /// Detection time.
    pub detected_at: DateTime<Utc>,
    /// Opening time.
    pub opened_at: DateTime<Utc>,
    /// Flagged beyond the operator's capacity.
    pub beyond_capacity_at: Option<DateTime<Utc>>,
    /// End of the response (left the recover step).
    pub response_ended_at: Option<DateTime<Utc>>,
    /// Notice sent.
    pub notice_sent_at: Option<DateTime<Utc>>,
    /// Initial report sent.
    pub initial_report_sent_at: Option<DateTime<Utc>>,
    /// Closing report sent.
    pub closing_report_sent_at: Option<DateTime<Utc>>,
    /// Reason for closing without a closing report.
    pub closing_waiver: Option<String>,
    /// Assignee.
    pub assignee_id: Option<i64>,
    /// Raised on every change; send it back to change the incident.
    pub version: i64,
    /// The affected information system, when known.
    #[serde(default)]
    pub system_id: Option<i64>,
    /// The serious-incident checklist, once filled in.
    #[serde(default)]
    pub serious: Option<SeriousAssessment>,
}

impl Incident {
    /// The three deadlines at `now`.
    pub fn deadlines(&self, now: DateTime<Utc>) -> Vec<DeadlineState> {
        let mk = |kind, start: Option<DateTime<Utc>>, hours: i64, sent: Option<DateTime<Utc>>| {
            let due = start.map(|s| s + Duration::hours(hours));
            let overdue = sent.is_none() && due.is_some_and(|d| now > d);
            DeadlineState {
                kind,
                due,
                sent_at: sent,
                overdue,
            }
        };
        vec![
            mk(
                ReportKind::Notice,
                Some(self.detected_at),
                self.notice_hours,
                self.notice_sent_at,
            ),
            mk(
                ReportKind::InitialReport,
                self.beyond_capacity_at,
                self.initial_report_hours,
                self.initial_report_sent_at,
            ),
            mk(
                ReportKind::ClosingReport,
                self.response_ended_at,
                self.closing_report_hours,
                self.closing_report_sent_at,
            ),
        ]
    }
}

/// A new incident.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewIncident {
    /// Title.
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Severity.
    pub severity: Severity,
    /// Agency.
    pub agency_id: i64,
    /// Detection time; defaults to the earliest linked alert, else now.
    #[serde(default)]
    pub detected_at: Option<DateTime<Utc>>,
    /// Alerts to link (they become `escalated`).
    #[serde(default)]
    pub alert_ids: Vec<i64>,
}

/// Editable fields; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentPatch {
    /// Title.
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Severity.
    pub severity: Option<Severity>,
    /// Assignee (use `Some(None)` in code, `null` in JSON cannot unassign: use 0).
    pub assignee_id: Option<i64>,
    /// Flag as beyond the operator's capacity (starts the initial-report clock).
    pub beyond_capacity: Option<bool>,
    /// The affected information system (of the incident's agency); 0 clears it.
    pub system_id: Option<i64>,
}

/// List filters.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentFilter {
    /// Only this step.
    pub step: Option<Step>,
    /// Only this severity.
    pub severity: Option<Severity>,
    /// Only this agency.
    pub agency_id: Option<i64>,
    /// Only open (false) or closed (true).
    pub closed: Option<bool>,
    /// Paging: ids smaller than this (newest first).
    pub after: Option<i64>,
    /// Page size (default 50, max 500).
    pub limit: Option<i64>,
}

/// A sign-off of a step transition.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SignOff {
    /// From step.
    pub from_step: String,
    /// To step, or `closed`.
    pub to_step: String,
    /// Who signed.
    pub signed_by: i64,
    /// When.
    pub signed_at: DateTime<Utc>,
    /// What was done.
    pub summary: String,
}

/// A task of an incident.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Task {
    /// Id.
    pub id: i64,
    /// Incident.
    pub incident_id: i64,
    /// Step it belongs to.
    pub step: Step,
    /// Title.
    pub title: String,
    /// Done.
    pub done: bool,
    /// Assignee.
    pub assignee_id: Option<i64>,
    /// Unit leading the task (đơn vị chủ trì).
    pub lead_unit: String,
    /// Supporting units (đơn vị phối hợp).
    pub supporting_units: Vec<String>,
}

/// A new task of an incident step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// Step it belongs to.
    pub step: Step,
    /// Title.
    pub title: String,
    /// Unit leading the task.
    #[serde(default)]
    pub lead_unit: String,
    /// Supporting units.
    #[serde(default)]
    pub supporting_units: Vec<String>,
}

/// The answers of the serious-incident checklist (R-11, TT20 Đ10.1.c, QĐ05 Đ9).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SeriousChecklist {
    /// The system is on the national critical list.
    pub national_critical: bool,
    /// Security level of the system when no information system is linked to the incident.
    pub system_level: Option<i64>,
    /// Service interruption.
    pub service_interruption: bool,
    /// State-secret data may leak.
    pub state_secret_leak: bool,
    /// Important data lost its integrity and cannot be restored.
    pub data_integrity_lost: bool,
    /// Loss of control over the system.
    pub loss_of_control: bool,
    /// Wide or cascading spread to other level-4/5 systems.
    pub wide_spread: bool,
    /// The owner cannot handle it alone.
    pub cannot_handle: bool,
}

/// The checklist with its result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SeriousAssessment {
    /// The answers.
    pub checklist: SeriousChecklist,
    /// The security level used (from the linked system, else the answer).
    pub level: Option<i64>,
    /// All criteria of a serious incident hold (sự cố nghiêm trọng).
    pub serious: bool,
    /// The lowest severity the profile's mapping suggests (regulation.md §4): emergency when
    /// serious; high for a level-4/5 system with a service interruption handled in house.
    pub suggested_min_severity: Option<Severity>,
}

impl SeriousChecklist {
    /// Applies the criteria: (level 4/5 or national critical) and one of the five impacts and
    /// the owner cannot handle it.
    pub fn assess(&self, linked_level: Option<i64>) -> SeriousAssessment {
        let level = linked_level.or(self.system_level);
        let important = self.national_critical || level.is_some_and(|l| l >= 4);
        let impact = self.service_interruption
            || self.state_secret_leak
            || self.data_integrity_lost
            || self.loss_of_control
            || self.wide_spread;
        let serious = important && impact && self.cannot_handle;
        let suggested_min_severity = if serious {
            Some(Severity::Emergency)
        } else if important && self.service_interruption {
            Some(Severity::High)
        } else {
            None
        };
        SeriousAssessment {
            checklist: self.clone(),
            level,
            serious,
            suggested_min_severity,
        }
    }
}

/// A case template: an incident type and the task checklist to add to an incident.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CaseTemplate {
    /// Id.
    pub id: i64,
    /// Name, unique.
    pub name: String,
    /// Incident type (`alert::INCIDENT_TYPES`), empty for any.
    pub incident_type: String,
    /// Severity to suggest.
    pub severity: Option<Severity>,
    /// Tasks in order.
    pub tasks: Vec<NewTask>,
}

/// A new case template.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NewCaseTemplate {
    /// Name, unique.
    pub name: String,
    /// Incident type, empty for any.
    #[serde(default)]
    pub incident_type: String,
    /// Severity to suggest.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Tasks in order (at least one).
    pub tasks: Vec<NewTask>,
}

/// A timeline entry.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TimelineEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Kind (`opened`, `step`, `loop`, `note`, `report`, `alert`, `evidence`, …).
    pub kind: String,
    /// Who.
    pub actor_id: Option<i64>,
    /// Text.
    pub text: String,
}

/// An observable.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Observable {
    /// Kind (`ip`, `domain`, `url`, `sha256`, `email`, `hostname`, …).
    pub kind: String,
    /// Value.
    pub value: String,
    /// Marked as an indicator of compromise.
    #[serde(default)]
    pub ioc: bool,
}

/// One overdue report.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OverdueItem {
    /// Incident.
    pub incident_id: i64,
    /// Its agency.
    pub agency_id: i64,
    /// Which report.
    pub kind: ReportKind,
    /// When it was due.
    pub due: DateTime<Utc>,
}

const COLS: &str = "id, title, description, severity, agency_id, agency_name, step, closed, \
    profile_id, profile_version, notice_hours, initial_report_hours, closing_report_hours, \
    detected_at, opened_at, beyond_capacity_at, response_ended_at, notice_sent_at, \
    initial_report_sent_at, closing_report_sent_at, closing_waiver, assignee_id, version, \
    system_id, serious_checklist";

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Incident> {
    Ok(Incident {
        id: r.try_get("id")?,
        title: r.try_get("title")?,
        description: r.try_get("description")?,
        severity: parse_severity(&r.try_get::<String, _>("severity")?)?,
        agency_id: r.try_get("agency_id")?,
        agency_name: r.try_get("agency_name")?,
        step: Step::parse(&r.try_get::<String, _>("step")?)?,
        closed: r.try_get("closed")?,
        profile_id: r.try_get("profile_id")?,
        profile_version: r.try_get("profile_version")?,
        notice_hours: r.try_get("notice_hours")?,
        initial_report_hours: r.try_get("initial_report_hours")?,
        closing_report_hours: r.try_get("closing_report_hours")?,
        detected_at: from_ms(r.try_get("detected_at")?),
        opened_at: from_ms(r.try_get("opened_at")?),
        beyond_capacity_at: opt_from_ms(r.try_get("beyond_capacity_at")?),
        response_ended_at: opt_from_ms(r.try_get("response_ended_at")?),
        notice_sent_at: opt_from_ms(r.try_get("notice_sent_at")?),
        initial_report_sent_at: opt_from_ms(r.try_get("initial_report_sent_at")?),
        closing_report_sent_at: opt_from_ms(r.try_get("closing_report_sent_at")?),
        closing_waiver: r.try_get("closing_waiver")?,
        assignee_id: r.try_get("assignee_id")?,
        version: r.try_get("version")?,
        system_id: r.try_get("system_id")?,
        serious: r
            .try_get::<Option<String>, _>("serious_checklist")?
            .and_then(|j| serde_json::from_str(&j).ok()),
    })
}

fn json<T: Serialize>(v: &T) -> Option<serde_json::Value> {
    serde_json::to_value(v).ok()
}

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

impl Soar {
    /// Opens an incident under the active profile, links the given alerts.
    pub async fn create_incident(&self, actor: &Actor, new: NewIncident) -> Result<Incident> {
        let title = new.title.trim();
        if title.is_empty() {
            return Err(SoarError::Invalid("incident title is required".into()));
        }
        let agency = self.agency(new.agency_id).await?;
        let profile = self.profiles().active().clone();
        let now = self.now();
        let mut detected = new.detected_at;
        for &aid in &new.alert_ids {
            let a = self.alert(aid).await?;
            if new.detected_at.is_none() && detected.is_none_or(|d| a.first_seen < d) {
                detected = Some(a.first_seen);
            }
        }
        let detected = detected.unwrap_or(now);
        if detected > now + Duration::minutes(5) {
            return Err(SoarError::Invalid("detected_at is in the future".into()));
        }
        let d = &profile.deadlines;
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO incidents (title, description, severity, agency_id, agency_name, step, \
             profile_id, profile_version, notice_hours, initial_report_hours, \
             closing_report_hours, detected_at, opened_at, created_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'record', $6, $7, $8, $9, $10, $11, $12, $13, $12) \
             RETURNING id",
        )
        .bind(title)
        .bind(&new.description)
        .bind(new.severity.as_str())
        .bind(agency.id)
        .bind(&agency.name)
        .bind(&profile.id)
        .bind(profile.version)
        .bind(d.notice.hours)
        .bind(d.initial_report.hours)
        .bind(d.closing_report.hours)
        .bind(to_ms(detected))
        .bind(to_ms(now))
        .bind(actor.user_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        timeline(
            &mut tx,
            id,
            now,
            "opened",
            actor,
            &format!("opened: {title}"),
        )
        .await?;
        let inc = fetch(&mut tx, id).await?;
        self.audit(
            &mut tx,
            actor,
            "incident.create",
            "incident",
            id,
            None,
            json(&inc),
        )
        .await?;
        self.link_in_tx(&mut tx, actor, id, &new.alert_ids).await?;
        let queued = if inc.severity >= Severity::High {
            self.enqueue(&mut tx, &crate::notify::incident_message(&inc))
                .await?
        } else {
            0
        };
        tx.commit().await?;
        if queued > 0 {
            self.wake_sender();
        }
        Ok(inc)
    }

    /// One incident.
    pub async fn incident(&self, id: i64) -> Result<Incident> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM incidents WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| SoarError::not_found("incident", id))?;
        from_row(&row)
    }

    /// Incidents newest first; `scope` limits to these agencies (none = all).
    pub async fn incidents(
        &self,
        f: &IncidentFilter,
        scope: Option<&[i64]>,
    ) -> Result<Page<Incident>> {
        let limit = f.limit.unwrap_or(50).clamp(1, 500);
        let mut w = crate::Where::default();
        w.eq("step", f.step.map(|s| s.as_str().to_owned().into()));
        w.eq("severity", f.severity.map(|s| s.as_str().to_owned().into()));
        w.eq("agency_id", f.agency_id.map(Into::into));
        w.eq("closed", f.closed.map(Into::into));
        w.lt("id", f.after);
        w.scope("agency_id", scope);
        let sql = format!(
            "SELECT {COLS} FROM incidents{} ORDER BY id DESC LIMIT {}",
            w.sql(),
            limit + 1
        );
        let rows = w.bind_all(sqlx::query(&sql)).fetch_all(self.pool()).await?;
        let mut items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        let next = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|i| i.id)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Changes editable fields; refused with `Conflict` when `version` is stale.
    pub async fn update_incident(
        &self,
        actor: &Actor,
        id: i64,
        version: i64,
        patch: IncidentPatch,
    ) -> Result<Incident> {
        if let Some(uid) = patch.assignee_id.filter(|u| *u != 0) {
            self.user(uid).await?;
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        let before = fetch_versioned(&mut tx, id, version).await?;
        if before.closed {
            return Err(SoarError::Invalid(format!("incident {id} is closed")));
        }
        let title = patch
            .title
            .as_deref()
            .map(str::trim)
            .unwrap_or(&before.title);
        if title.is_empty() {
            return Err(SoarError::Invalid("incident title is required".into()));
        }
        let assignee = match patch.assignee_id {
            Some(0) => None,
            Some(u) => Some(u),
            None => before.assignee_id,
        };
        let system_id = match patch.system_id {
            Some(0) => None,
            Some(sid) => {
                let sys = self.system(sid).await?;
                if sys.agency_id != before.agency_id {
                    return Err(SoarError::Invalid(format!(
                        "system {sid} belongs to agency {}, not to the incident's agency {}",
                        sys.agency_id, before.agency_id
                    )));
                }
                Some(sid)
            }
            None => before.system_id,
        };
        let beyond = match patch.beyond_capacity {
            Some(true) => before.beyond_capacity_at.or(Some(now)),
            Some(false) => None,
            None => before.beyond_capacity_at,
        };
        sqlx::query(
            "UPDATE incidents SET title = $1, description = $2, severity = $3, assignee_id = $4, \
             beyond_capacity_at = $5, system_id = $8, version = version + 1, updated_at = $6 \
             WHERE id = $7",
        )
        .bind(title)
        .bind(patch.description.as_deref().unwrap_or(&before.description))
        .bind(patch.severity.unwrap_or(before.severity).as_str())
        .bind(assignee)
        .bind(beyond.map(to_ms))
        .bind(to_ms(now))
        .bind(id)
        .bind(system_id)
        .execute(&mut *tx)
        .await?;
        if patch.severity.is_some_and(|s| s != before.severity) {
            let text = format!(
                "severity {} → {}",
                before.severity.as_str(),
                patch.severity.unwrap_or(before.severity).as_str()
            );
            timeline(&mut tx, id, now, "severity", actor, &text).await?;
        }
        if beyond.is_some() && before.beyond_capacity_at.is_none() {
            timeline(
                &mut tx,
                id,
                now,
                "beyond_capacity",
                actor,
                "flagged beyond capacity",
            )
            .await?;
        }
        let after = fetch(&mut tx, id).await?;
        self.audit(
            &mut tx,
            actor,
            "incident.update",
            "incident",
            id,
            json(&before),
            json(&after),
        )
        .await?;
        let mut queued = if after.severity >= Severity::High && after.severity != before.severity {
            self.enqueue(&mut tx, &crate::notify::incident_message(&after))
                .await?
        } else {
            0
        };
        tx.commit().await?;
        if after.beyond_capacity_at.is_some() && before.beyond_capacity_at.is_none() {
            // the initial-report draft goes to the roster at once.
            let draft = self.initial_report_draft(id).await?;
            let mut tx = self.begin().await?;
            queued += self.enqueue(&mut tx, &draft.outgoing(&after)).await?;
            tx.commit().await?;
        }
        if queued > 0 {
            self.wake_sender();
        }
        Ok(after)
    }

    /// Moves an incident to `to`, signed off by the actor with a summary of what was done.
    /// Illegal transitions and stale versions are refused. Leaving `recover` for
    /// `post_incident` ends the response (starts the closing-report clock); going back from
    /// `recover` to `contain` is the failed post-recovery check and is logged as a loop.
    pub async fn transition_incident(
        &self,
        actor: &Actor,
        id: i64,
        version: i64,
        to: Step,
        summary: &str,
    ) -> Result<Incident> {
        let summary = summary.trim();
        let user = actor
            .user_id
            .ok_or_else(|| SoarError::Denied("a step sign-off needs a user".into()))?;
        if summary.is_empty() {
            return Err(SoarError::Invalid(
                "a sign-off needs a summary of what was done".into(),
            ));
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        let before = fetch_versioned(&mut tx, id, version).await?;
        if before.closed {
            return Err(SoarError::Invalid(format!("incident {id} is closed")));
        }
        if !before.step.can_go(to) {
            return Err(SoarError::Invalid(format!(
                "illegal transition {} → {}",
                before.step.as_str(),
                to.as_str()
            )));
        }
        let ended = if before.step == Step::Recover && to == Step::PostIncident {
            Some(to_ms(now))
        } else {
            before.response_ended_at.map(to_ms)
        };
        sqlx::query(
            "UPDATE incidents SET step = $1, response_ended_at = $2, version = version + 1, \
             updated_at = $3 WHERE id = $4",
        )
        .bind(to.as_str())
        .bind(ended)
        .bind(to_ms(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        signoff(
            &mut tx,
            id,
            before.step.as_str(),
            to.as_str(),
            user,
            now,
            summary,
        )
        .await?;
        let looped = before.step == Step::Recover && to == Step::Contain;
        let kind = if looped { "loop" } else { "step" };
        let text = if looped {
            format!("post-recovery check failed, back to contain: {summary}")
        } else {
            format!("{} → {}: {summary}", before.step.as_str(), to.as_str())
        };
        timeline(&mut tx, id, now, kind, actor, &text).await?;
        // notified while still unresolved → send the updated information to the same
        // recipients as soon as handling ends (once, when the response first ends).
        if before.response_ended_at.is_none() && ended.is_some() && before.notice_sent_at.is_some()
        {
            let t = NewTask {
                step: Step::PostIncident,
                title: UPDATE_NOTICE_TASK.into(),
                lead_unit: String::new(),
                supporting_units: Vec::new(),
            };
            self.insert_task(&mut tx, actor, id, t).await?;
        }
        let after = fetch(&mut tx, id).await?;
        let action = if looped {
            "incident.loop"
        } else {
            "incident.transition"
        };
        self.audit(
            &mut tx,
            actor,
            action,
            "incident",
            id,
            json(&before),
            json(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Closes an incident at the post-incident step. The closing report must have been sent,
    /// or a waiver reason given.
    pub async fn close_incident(
        &self,
        actor: &Actor,
        id: i64,
        version: i64,
        summary: &str,
        waiver: Option<&str>,
    ) -> Result<Incident> {
        let summary = summary.trim();
        let user = actor
            .user_id
            .ok_or_else(|| SoarError::Denied("a step sign-off needs a user".into()))?;
        if summary.is_empty() {
            return Err(SoarError::Invalid(
                "a sign-off needs a summary of what was done".into(),
            ));
        }
        let waiver = waiver.map(str::trim).filter(|w| !w.is_empty());
        let now = self.now();
        let mut tx = self.begin().await?;
        let before = fetch_versioned(&mut tx, id, version).await?;
        if before.closed || before.step != Step::PostIncident {
            return Err(SoarError::Invalid(format!(
                "illegal transition {} → closed",
                if before.closed {
                    "closed"
                } else {
                    before.step.as_str()
                }
            )));
        }
        if before.closing_report_sent_at.is_none() && waiver.is_none() {
            return Err(SoarError::Invalid(
                "closing needs the closing report sent, or a waiver with a reason".into(),
            ));
        }
        sqlx::query(
            "UPDATE incidents SET closed = TRUE, closing_waiver = $1, version = version + 1, \
             updated_at = $2 WHERE id = $3",
        )
        .bind(waiver)
        .bind(to_ms(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        signoff(&mut tx, id, "post_incident", "closed", user, now, summary).await?;
        timeline(&mut tx, id, now, "closed", actor, summary).await?;
        let after = fetch(&mut tx, id).await?;
        self.audit(
            &mut tx,
            actor,
            "incident.close",
            "incident",
            id,
            json(&before),
            json(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Records that a report was sent at `at` (default now).
    pub async fn mark_report_sent(
        &self,
        actor: &Actor,
        id: i64,
        version: i64,
        kind: ReportKind,
        at: Option<DateTime<Utc>>,
    ) -> Result<Incident> {
        let now = self.now();
        let at = at.unwrap_or(now);
        if at > now + Duration::minutes(5) {
            return Err(SoarError::Invalid("sent time is in the future".into()));
        }
        let mut tx = self.begin().await?;
        let before = fetch_versioned(&mut tx, id, version).await?;
        if kind == ReportKind::ClosingReport && before.response_ended_at.is_none() {
            return Err(SoarError::Invalid("the response has not ended yet".into()));
        }
        sqlx::query(&format!(
            "UPDATE incidents SET {} = $1, version = version + 1, updated_at = $2 WHERE id = $3",
            kind.column()
        ))
        .bind(to_ms(at))
        .bind(to_ms(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let text = format!("{} sent", kind.column().trim_end_matches("_sent_at"));
        timeline(&mut tx, id, now, "report", actor, &text).await?;
        let after = fetch(&mut tx, id).await?;
        self.audit(
            &mut tx,
            actor,
            "incident.report_sent",
            "incident",
            id,
            json(&before),
            json(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Every unsent report past its due time, over open incidents and closed ones (a closed
    /// incident can still owe its closing report when closed with a waiver it is not listed).
    pub async fn overdue(&self, now: DateTime<Utc>) -> Result<Vec<OverdueItem>> {
        let now_ms = to_ms(now);
        let rows = sqlx::query(
            "SELECT id, agency_id, 'notice' AS kind, detected_at + notice_hours * 3600000 AS due \
             FROM incidents WHERE notice_sent_at IS NULL \
             AND detected_at + notice_hours * 3600000 < $1 \
             UNION ALL SELECT id, agency_id, 'initial_report', \
             beyond_capacity_at + initial_report_hours * 3600000 FROM incidents \
             WHERE beyond_capacity_at IS NOT NULL AND initial_report_sent_at IS NULL \
             AND beyond_capacity_at + initial_report_hours * 3600000 < $1 \
             UNION ALL SELECT id, agency_id, 'closing_report', \
             response_ended_at + closing_report_hours * 3600000 FROM incidents \
             WHERE response_ended_at IS NOT NULL AND closing_report_sent_at IS NULL \
             AND closing_waiver IS NULL \
             AND response_ended_at + closing_report_hours * 3600000 < $1 \
             ORDER BY 4, 1",
        )
        .bind(now_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let kind = match r.try_get::<String, _>(2)?.as_str() {
                    "notice" => ReportKind::Notice,
                    "initial_report" => ReportKind::InitialReport,
                    _ => ReportKind::ClosingReport,
                };
                Ok(OverdueItem {
                    incident_id: r.try_get(0)?,
                    agency_id: r.try_get(1)?,
                    kind,
                    due: from_ms(r.try_get(3)?),
                })
            })
            .collect()
    }

    /// Links alerts to an incident (they become `escalated`).
    pub async fn link_alerts(&self, actor: &Actor, id: i64, alert_ids: &[i64]) -> Result<()> {
        let mut tx = self.begin().await?;
        fetch(&mut tx, id).await?;
        self.link_in_tx(&mut tx, actor, id, alert_ids).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn link_in_tx(
        &self,
        tx: &mut Tx,
        actor: &Actor,
        id: i64,
        alert_ids: &[i64],
    ) -> Result<()> {
        let now = self.now();
        for &aid in alert_ids {
            let row = sqlx::query("SELECT state, incident_id FROM alerts WHERE id = $1")
                .bind(aid)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| SoarError::not_found("alert", aid))?;
            let state = AlertState::parse(&row.try_get::<String, _>(0)?)?;
            let old: Option<i64> = row.try_get(1)?;
            let new_state = if state == AlertState::Escalated || state.can_go(AlertState::Escalated)
            {
                AlertState::Escalated
            } else {
                state
            };
            sqlx::query(
                "UPDATE alerts SET incident_id = $1, state = $2, updated_at = $3 WHERE id = $4",
            )
            .bind(id)
            .bind(new_state.as_str())
            .bind(to_ms(now))
            .bind(aid)
            .execute(&mut **tx)
            .await?;
            timeline(tx, id, now, "alert", actor, &format!("alert {aid} linked")).await?;
            self.audit(
                tx,
                actor,
                "alert.link",
                "alert",
                aid,
                Some(serde_json::json!({"incident_id": old, "state": state})),
                Some(serde_json::json!({"incident_id": id, "state": new_state})),
            )
            .await?;
        }
        Ok(())
    }

    /// Ids of the alerts linked to an incident.
    pub async fn incident_alerts(&self, id: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query("SELECT id FROM alerts WHERE incident_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map_err(SoarError::from))
            .collect()
    }

    /// Sign-offs, oldest first.
    pub async fn signoffs(&self, id: i64) -> Result<Vec<SignOff>> {
        let rows = sqlx::query(
            "SELECT from_step, to_step, signed_by, signed_at, summary FROM incident_signoffs \
             WHERE incident_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SignOff {
                    from_step: r.try_get(0)?,
                    to_step: r.try_get(1)?,
                    signed_by: r.try_get(2)?,
                    signed_at: from_ms(r.try_get(3)?),
                    summary: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Timeline, oldest first.
    pub async fn timeline(&self, id: i64) -> Result<Vec<TimelineEntry>> {
        let rows = sqlx::query(
            "SELECT at, kind, actor_id, text FROM incident_timeline WHERE incident_id = $1 \
             ORDER BY at, id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TimelineEntry {
                    at: from_ms(r.try_get(0)?),
                    kind: r.try_get(1)?,
                    actor_id: r.try_get(2)?,
                    text: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Adds a note to the timeline.
    pub async fn add_note(&self, actor: &Actor, id: i64, text: &str) -> Result<()> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SoarError::Invalid("empty note".into()));
        }
        let mut tx = self.begin().await?;
        fetch(&mut tx, id).await?;
        timeline(&mut tx, id, self.now(), "note", actor, text).await?;
        self.audit(
            &mut tx,
            actor,
            "incident.note",
            "incident",
            id,
            None,
            Some(text.into()),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds a task to a step.
    pub async fn add_task(&self, actor: &Actor, id: i64, step: Step, title: &str) -> Result<Task> {
        let t = NewTask {
            step,
            title: title.into(),
            lead_unit: String::new(),
            supporting_units: Vec::new(),
        };
        self.add_step_task(actor, id, t).await
    }

    /// Adds a task to a step with its lead unit and supporting units.
    pub async fn add_step_task(&self, actor: &Actor, id: i64, t: NewTask) -> Result<Task> {
        let mut tx = self.begin().await?;
        fetch(&mut tx, id).await?;
        let task = self.insert_task(&mut tx, actor, id, t).await?;
        tx.commit().await?;
        Ok(task)
    }

    async fn insert_task(&self, tx: &mut Tx, actor: &Actor, id: i64, t: NewTask) -> Result<Task> {
        let title = t.title.trim();
        if title.is_empty() {
            return Err(SoarError::Invalid("task title is required".into()));
        }
        let lead = t.lead_unit.trim().to_owned();
        let supporting: Vec<String> = t
            .supporting_units
            .iter()
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if !supporting.is_empty() && lead.is_empty() {
            return Err(SoarError::Invalid(
                "supporting units need a lead unit".into(),
            ));
        }
        let units = serde_json::to_string(&supporting)
            .map_err(|e| SoarError::Internal(format!("units: {e}")))?;
        let tid: i64 = sqlx::query(
            "INSERT INTO incident_tasks (incident_id, step, title, created_at, lead_unit, \
             supporting_units) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(id)
        .bind(t.step.as_str())
        .bind(title)
        .bind(to_ms(self.now()))
        .bind(&lead)
        .bind(&units)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        let task = Task {
            id: tid,
            incident_id: id,
            step: t.step,
            title: title.into(),
            done: false,
            assignee_id: None,
            lead_unit: lead,
            supporting_units: supporting,
        };
        self.audit(tx, actor, "task.create", "task", tid, None, json(&task))
            .await?;
        Ok(task)
    }

    /// Fills in the serious-incident checklist. The level comes from the linked
    /// information system when there is one. When the incident becomes serious, an
    /// emergency-report task is opened in the current step and the timeline says so; the
    /// severity is not changed (the assessment suggests the minimum). Stale versions conflict.
    pub async fn set_serious_checklist(
        &self,
        actor: &Actor,
        id: i64,
        version: i64,
        checklist: SeriousChecklist,
    ) -> Result<Incident> {
        if checklist
            .system_level
            .is_some_and(|l| !(1..=5).contains(&l))
        {
            return Err(SoarError::Invalid("system_level must be 1 to 5".into()));
        }
        let linked_level = match self.incident(id).await?.system_id {
            Some(sid) => Some(self.system(sid).await?.level),
            None => None,
        };
        let assessment = checklist.assess(linked_level);
        let now = self.now();
        let mut tx = self.begin().await?;
        let before = fetch_versioned(&mut tx, id, version).await?;
        if before.closed {
            return Err(SoarError::Invalid(format!("incident {id} is closed")));
        }
        let text = serde_json::to_string(&assessment)
            .map_err(|e| SoarError::Internal(format!("checklist: {e}")))?;
        sqlx::query(
            "UPDATE incidents SET serious_checklist = $1, version = version + 1, updated_at = $2 \
             WHERE id = $3",
        )
        .bind(&text)
        .bind(to_ms(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let was_serious = before.serious.as_ref().is_some_and(|a| a.serious);
        if assessment.serious && !was_serious {
            timeline(
                &mut tx,
                id,
                now,
                "serious",
                actor,
                "R-11: sự cố nghiêm trọng / serious incident — báo cáo ngay chủ quản, đơn vị \
                 chuyên trách và cơ quan điều phối quốc gia",
            )
            .await?;
            let t = NewTask {
                step: before.step,
                title: "Báo cáo khẩn cấp sự cố nghiêm trọng (đề xuất nâng mức khẩn cấp) / \
                        emergency report of a serious incident"
                    .into(),
                lead_unit: String::new(),
                supporting_units: Vec::new(),
            };
            self.insert_task(&mut tx, actor, id, t).await?;
        }
        let after = fetch(&mut tx, id).await?;
        self.audit(
            &mut tx,
            actor,
            "incident.serious_checklist",
            "incident",
            id,
            json(&before.serious),
            json(&after.serious),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Adds a case template (name unique, at least one task).
    pub async fn create_template(
        &self,
        actor: &Actor,
        new: NewCaseTemplate,
    ) -> Result<CaseTemplate> {
        let name = new.name.trim();
        if name.is_empty() || new.tasks.is_empty() {
            return Err(SoarError::Invalid(
                "a template needs a name and at least one task".into(),
            ));
        }
        if !new.incident_type.is_empty() {
            crate::alert::check_incident_type(&new.incident_type)?;
        }
        if new.tasks.iter().any(|t| t.title.trim().is_empty()) {
            return Err(SoarError::Invalid("every task needs a title".into()));
        }
        let tasks = serde_json::to_string(&new.tasks)
            .map_err(|e| SoarError::Internal(format!("template tasks: {e}")))?;
        let mut tx = self.begin().await?;
        if sqlx::query("SELECT 1 FROM case_templates WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some()
        {
            return Err(SoarError::Conflict(format!("template {name:?} exists")));
        }
        let tid: i64 = sqlx::query(
            "INSERT INTO case_templates (name, incident_type, severity, tasks, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(name)
        .bind(&new.incident_type)
        .bind(new.severity.map(|s| s.as_str()))
        .bind(&tasks)
        .bind(to_ms(self.now()))
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let tpl = CaseTemplate {
            id: tid,
            name: name.into(),
            incident_type: new.incident_type,
            severity: new.severity,
            tasks: new.tasks,
        };
        self.audit(
            &mut tx,
            actor,
            "template.create",
            "template",
            tid,
            None,
            json(&tpl),
        )
        .await?;
        tx.commit().await?;
        Ok(tpl)
    }

    /// Every case template, by name.
    pub async fn templates(&self) -> Result<Vec<CaseTemplate>> {
        let rows = sqlx::query(
            "SELECT id, name, incident_type, severity, tasks FROM case_templates ORDER BY name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let tasks: String = r.try_get(4)?;
                Ok(CaseTemplate {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    incident_type: r.try_get(2)?,
                    severity: r
                        .try_get::<Option<String>, _>(3)?
                        .map(|s| parse_severity(&s))
                        .transpose()?,
                    tasks: serde_json::from_str(&tasks)
                        .map_err(|e| SoarError::Internal(format!("template tasks: {e}")))?,
                })
            })
            .collect()
    }

    /// Adds the template's task checklist to an incident, in one transaction.
    pub async fn apply_template(
        &self,
        actor: &Actor,
        id: i64,
        template_id: i64,
    ) -> Result<Vec<Task>> {
        let tpl = self
            .templates()
            .await?
            .into_iter()
            .find(|t| t.id == template_id)
            .ok_or_else(|| SoarError::not_found("template", template_id))?;
        let mut tx = self.begin().await?;
        let inc = fetch(&mut tx, id).await?;
        if inc.closed {
            return Err(SoarError::Invalid(format!("incident {id} is closed")));
        }
        let mut out = Vec::with_capacity(tpl.tasks.len());
        for t in tpl.tasks {
            out.push(self.insert_task(&mut tx, actor, id, t).await?);
        }
        timeline(
            &mut tx,
            id,
            self.now(),
            "template",
            actor,
            &format!("template applied: {}", tpl.name),
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Marks a task done or not done, optionally assigning it.
    pub async fn update_task(
        &self,
        actor: &Actor,
        task_id: i64,
        done: bool,
        assignee_id: Option<i64>,
    ) -> Result<Task> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let before = fetch_task(&mut tx, task_id).await?;
        sqlx::query(
            "UPDATE incident_tasks SET done = $1, done_at = $2, assignee_id = $3 WHERE id = $4",
        )
        .bind(done)
        .bind(done.then(|| to_ms(now)))
        .bind(assignee_id.or(before.assignee_id))
        .bind(task_id)
        .execute(&mut *tx)
        .await?;
        let after = fetch_task(&mut tx, task_id).await?;
        if done && !before.done {
            let text = format!("task done: {}", after.title);
            timeline(&mut tx, after.incident_id, now, "task", actor, &text).await?;
        }
        self.audit(
            &mut tx,
            actor,
            "task.update",
            "task",
            task_id,
            json(&before),
            json(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// The tasks of an incident.
    pub async fn tasks(&self, id: i64) -> Result<Vec<Task>> {
        let rows = sqlx::query(
            "SELECT id, incident_id, step, title, done, assignee_id, lead_unit, supporting_units \
             FROM incident_tasks WHERE incident_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// The task with this id.
    pub async fn task(&self, task_id: i64) -> Result<Task> {
        let row = sqlx::query(
            "SELECT id, incident_id, step, title, done, assignee_id, lead_unit, supporting_units \
             FROM incident_tasks WHERE id = $1",
        )
        .bind(task_id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| SoarError::not_found("task", task_id))?;
        task_from_row(&row)
    }

    /// Adds an observable (idempotent per kind and value).
    pub async fn add_observable(&self, actor: &Actor, id: i64, o: Observable) -> Result<()> {
        let kind = o.kind.trim().to_ascii_lowercase();
        let value = o.value.trim();
        if kind.is_empty() || value.is_empty() {
            return Err(SoarError::Invalid(
                "observable kind and value are required".into(),
            ));
        }
        let mut tx = self.begin().await?;
        fetch(&mut tx, id).await?;
        sqlx::query(
            "INSERT INTO incident_observables (incident_id, kind, value, ioc) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (incident_id, kind, value) DO UPDATE SET ioc = excluded.ioc",
        )
        .bind(id)
        .bind(&kind)
        .bind(value)
        .bind(o.ioc)
        .execute(&mut *tx)
        .await?;
        self.audit(
            &mut tx,
            actor,
            "incident.observable",
            "incident",
            id,
            None,
            json(&o),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Observables of an incident.
    pub async fn observables(&self, id: i64) -> Result<Vec<Observable>> {
        let rows = sqlx::query(
            "SELECT kind, value, ioc FROM incident_observables WHERE incident_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Observable {
                    kind: r.try_get(0)?,
                    value: r.try_get(1)?,
                    ioc: r.try_get(2)?,
                })
            })
            .collect()
    }
}

fn task_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Task> {
    Ok(Task {
        id: r.try_get(0)?,
        incident_id: r.try_get(1)?,
        step: Step::parse(&r.try_get::<String, _>(2)?)?,
        title: r.try_get(3)?,
        done: r.try_get(4)?,
        assignee_id: r.try_get(5)?,
        lead_unit: r.try_get(6)?,
        supporting_units: serde_json::from_str(&r.try_get::<String, _>(7)?).unwrap_or_default(),
    })
}

async fn fetch_task(tx: &mut Tx, task_id: i64) -> Result<Task> {
    let row = sqlx::query(
        "SELECT id, incident_id, step, title, done, assignee_id, lead_unit, supporting_units \
         FROM incident_tasks WHERE id = $1",
    )
    .bind(task_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| SoarError::not_found("task", task_id))?;
    task_from_row(&row)
}

async fn fetch(tx: &mut Tx, id: i64) -> Result<Incident> {
    let row = sqlx::query(&format!("SELECT {COLS} FROM incidents WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| SoarError::not_found("incident", id))?;
    from_row(&row)
}

async fn fetch_versioned(tx: &mut Tx, id: i64, version: i64) -> Result<Incident> {
    let inc = fetch(tx, id).await?;
    if inc.version != version {
        return Err(SoarError::Conflict(format!(
            "incident {id} is at version {}, not {version}",
            inc.version
        )));
    }
    Ok(inc)
}

async fn timeline(
    tx: &mut Tx,
    id: i64,
    at: DateTime<Utc>,
    kind: &str,
    actor: &Actor,
    text: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO incident_timeline (incident_id, at, kind, actor_id, text) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(to_ms(at))
    .bind(kind)
    .bind(actor.user_id)
    .bind(text)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn signoff(
    tx: &mut Tx,
    id: i64,
    from: &str,
    to: &str,
    user: i64,
    at: DateTime<Utc>,
    summary: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO incident_signoffs (incident_id, from_step, to_step, signed_by, signed_at, \
         summary) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(user)
    .bind(to_ms(at))
    .bind(summary)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// R-11 truth table over level × the five impacts × capacity: only (level 4/5 or
    /// national critical) ∧ (an impact) ∧ (cannot handle) is serious.
    #[test]
    fn serious_checklist_truth_table() {
        let mut serious_count = 0;
        for level in 1..=5 {
            for critical in [false, true] {
                for impacts in 0u8..32 {
                    for cannot in [false, true] {
                        let c = SeriousChecklist {
                            national_critical: critical,
                            system_level: Some(level),
                            service_interruption: impacts & 1 != 0,
                            state_secret_leak: impacts & 2 != 0,
                            data_integrity_lost: impacts & 4 != 0,
                            loss_of_control: impacts & 8 != 0,
                            wide_spread: impacts & 16 != 0,
                            cannot_handle: cannot,
                        };
                        let a = c.assess(None);
                        let expect = (level >= 4 || critical) && impacts != 0 && cannot;
                        assert_eq!(a.serious, expect, "{c:?}");
                        serious_count += usize::from(a.serious);
                        if a.serious {
                            assert_eq!(a.suggested_min_severity, Some(Severity::Emergency));
                        } else if (level >= 4 || critical) && impacts & 1 != 0 {
                            assert_eq!(a.suggested_min_severity, Some(Severity::High));
                        } else {
                            assert_eq!(a.suggested_min_severity, None);
                        }
                    }
                }
            }
        }
        // Levels 4–5 (both critical flags) plus levels 1–3 when critical: 7 of 10 level ×
        // critical cells, 31 impact sets each, capacity must be exceeded.
        assert_eq!(serious_count, 7 * 31);
        // The linked system's level wins over the answer.
        let c = SeriousChecklist {
            system_level: Some(2),
            service_interruption: true,
            cannot_handle: true,
            ..SeriousChecklist::default()
        };
        assert!(!c.assess(None).serious);
        assert!(c.assess(Some(4)).serious);
        assert_eq!(c.assess(Some(4)).level, Some(4));
    }

    #[test]
    fn step_graph_is_linear_plus_the_recovery_loop() {
        for (i, a) in Step::ALL.iter().enumerate() {
            for (j, b) in Step::ALL.iter().enumerate() {
                let legal = j == i + 1 || (*a == Step::Recover && *b == Step::Contain);
                assert_eq!(a.can_go(*b), legal, "{a:?} → {b:?}");
            }
        }
        assert_eq!(Step::ALL.map(Step::as_str), crate::profile::STEP_IDS);
    }
}
