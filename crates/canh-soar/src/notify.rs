//! E-mail notifications to the on-duty roster: new high/emergency incidents, overdue reports,
//! overdue agency tasks (R-14 contact updates) and initial-report drafts. Messages go through an
//! outbox table (written in the same transaction as the change that causes them), a background
//! sender delivers them over SMTP with STARTTLS (lettre, rustls) and retries with back-off, and
//! every attempt is recorded with the server's reply or the reason it failed, so that a failed
//! delivery is never silent.

use crate::Soar;
use crate::audit::Actor;
use crate::clock::{from_ms, opt_from_ms, to_ms};
use crate::error::{Result, SoarError};
use crate::incident::{Incident, OverdueItem, ReportKind, Step};
use chrono::{DateTime, FixedOffset, Utc};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::path::PathBuf;
use std::sync::Arc;

/// `[soar.smtp]`: how notifications leave the node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSettings {
    /// SMTP server host name or IP address (also the name checked in its certificate).
    pub host: String,
    /// Port (587 = submission with STARTTLS).
    pub port: u16,
    /// Sender, e.g. `"Canh SOC <soc@example.gov.vn>"`.
    pub from: String,
    /// Refuse to send when the server does not offer STARTTLS (default). When false, STARTTLS is
    /// still used whenever offered.
    pub starttls_required: bool,
    /// User for SMTP AUTH (only sent over TLS).
    pub user: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// PEM file of an extra CA to trust (a private CA of the mail server); the system store is
    /// used as well.
    pub ca_file: Option<PathBuf>,
    /// Network timeout per SMTP command, seconds.
    pub timeout_secs: u64,
    /// Attempts per message before it is marked failed.
    pub max_attempts: u32,
    /// Wait before the first retry, seconds; doubled after each failure (at most one hour).
    pub retry_secs: u64,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 587,
            from: "Canh SOC <canh@localhost>".into(),
            starttls_required: true,
            user: None,
            password: None,
            ca_file: None,
            timeout_secs: 30,
            max_attempts: 5,
            retry_secs: 60,
        }
    }
}

/// Someone on the duty roster.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RosterEntry {
    /// Id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Currently on duty (receives notifications).
    pub on_duty: bool,
}

/// Delivery state of a notification.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NotificationStatus {
    /// Waiting for (another) attempt.
    Pending,
    /// Accepted by the SMTP server.
    Sent,
    /// Given up; `last_error` says why.
    Failed,
}

impl NotificationStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(Self::Pending),
            "sent" => Ok(Self::Sent),
            "failed" => Ok(Self::Failed),
            _ => Err(SoarError::Internal(format!(
                "unknown notification status {s:?}"
            ))),
        }
    }
}

/// One message to one recipient.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Notification {
    /// Id.
    pub id: i64,
    /// `incident`, `overdue` or `initial_report`.
    pub kind: String,
    /// The incident it is about.
    pub incident_id: Option<i64>,
    /// Recipient address.
    pub recipient: String,
    /// Subject (plain text; encoded on the wire).
    pub subject: String,
    /// File name of the attachment, if any.
    pub attachment_name: Option<String>,
    /// Delivery state.
    pub status: NotificationStatus,
    /// Attempts so far.
    pub attempts: i64,
    /// Next attempt (pending only).
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The server's reply when accepted.
    pub server_reply: Option<String>,
    /// Queued at.
    pub created_at: DateTime<Utc>,
    /// Accepted at.
    pub sent_at: Option<DateTime<Utc>>,
}

/// One delivery attempt.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Attempt {
    /// When.
    pub at: DateTime<Utc>,
    /// Accepted by the server.
    pub ok: bool,
    /// Server reply or error.
    pub detail: String,
}

/// Outcome of one pass of the sender.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Accepted by the server.
    pub sent: usize,
    /// Failed, will be retried.
    pub retrying: usize,
    /// Failed for good.
    pub failed: usize,
}

/// A rendered message, before it is addressed.
#[derive(Clone, Debug)]
pub(crate) struct Outgoing {
    pub(crate) dedup_key: String,
    pub(crate) kind: &'static str,
    pub(crate) incident_id: Option<i64>,
    pub(crate) subject: String,
    pub(crate) body: String,
    /// (file name, MIME type, content)
    pub(crate) attachment: Option<(String, String, String)>,
}

const VN: i32 = 7 * 3600;

/// `dd/mm/yyyy HH:MM` in Vietnam time (UTC+7).
pub fn vn_time(t: DateTime<Utc>) -> String {
    let local = match FixedOffset::east_opt(VN) {
        Some(off) => t.with_timezone(&off).naive_local(),
        None => t.naive_utc(),
    };
    local.format("%d/%m/%Y %H:%M").to_string()
}

pub(crate) fn step_names(s: Step) -> (&'static str, &'static str) {
    match s {
        Step::Record => ("Ghi nhận", "Record"),
        Step::Analyse => ("Phân tích", "Analyse"),
        Step::Contain => ("Ngăn chặn", "Contain"),
        Step::CollectEvidence => (
            "Thu thập bằng chứng, truy tìm thủ phạm",
            "Collect evidence and trace the culprit",
        ),
        Step::RemoveCause => ("Xử lý nguyên nhân", "Remove the cause"),
        Step::Recover => ("Khôi phục", "Recover"),
        Step::PostIncident => ("Hoạt động sau sự cố", "Post-incident review"),
    }
}

fn report_names(k: ReportKind) -> (&'static str, &'static str) {
    match k {
        ReportKind::Notice => ("Thông báo sự cố", "incident notice"),
        ReportKind::InitialReport => ("Báo cáo ban đầu (Mẫu 03)", "initial report (form 03)"),
        ReportKind::ClosingReport => (
            "Báo cáo kết thúc ứng phó (Mẫu 04)",
            "closing report (form 04)",
        ),
    }
}

fn severity_en(s: canh_core::Severity) -> &'static str {
    match s {
        canh_core::Severity::Low => "Low",
        canh_core::Severity::Medium => "Medium",
        canh_core::Severity::High => "High",
        canh_core::Severity::Emergency => "Emergency",
    }
}

/// The message for a new (or newly raised) high or emergency incident.
pub(crate) fn incident_message(inc: &Incident) -> Outgoing {
    let sev_vi = inc.severity.name_vi();
    let sev_en = severity_en(inc.severity);
    let (step_vi, step_en) = step_names(inc.step);
    let notice_due = vn_time(inc.detected_at + chrono::Duration::hours(inc.notice_hours));
    let subject = format!(
        "[{}] Sự cố #{}: {} / [{}] Incident #{}",
        sev_vi.to_uppercase(),
        inc.id,
        inc.title,
        sev_en.to_uppercase(),
        inc.id
    );
    let body = format!(
        "Sự cố mức độ {sev_vi} cần xử lý.\n\n\
         Mã sự cố: {id}\nTiêu đề: {title}\nĐơn vị: {agency}\n\
         Thời điểm phát hiện: {detected} (giờ Việt Nam)\n\
         Hạn gửi thông báo sự cố: {due}\nBước hiện tại: {step_vi}\n\n\
         Tệp đính kèm: tóm tắt sự cố.\n\n\
         --- English ---\n\
         A {sev_en_l}-severity incident needs handling.\n\n\
         Incident: {id}\nTitle: {title}\nAgency: {agency}\n\
         Detected: {detected} (Vietnam time)\nIncident notice due: {due}\n\
         Current step: {step_en}\n",
        id = inc.id,
        title = inc.title,
        agency = inc.agency_name,
        detected = vn_time(inc.detected_at),
        due = notice_due,
        sev_en_l = sev_en.to_lowercase(),
    );
    let summary = format!(
        "TÓM TẮT SỰ CỐ / INCIDENT SUMMARY\n\n\
         Mã sự cố / Incident: {}\nTiêu đề / Title: {}\nMức độ / Severity: {} / {}\n\
         Đơn vị / Agency: {}\nPhát hiện / Detected: {}\n\
         Hồ sơ quy định / Regulation profile: {} v{}\n\nMô tả / Description:\n{}\n",
        inc.id,
        inc.title,
        sev_vi,
        sev_en,
        inc.agency_name,
        vn_time(inc.detected_at),
        inc.profile_id,
        inc.profile_version,
        if inc.description.trim().is_empty() {
            "(chưa có / none yet)"
        } else {
            inc.description.as_str()
        }
    );
    Outgoing {
        dedup_key: format!("incident|{}|{}", inc.id, inc.severity.as_str()),
        kind: "incident",
        incident_id: Some(inc.id),
        subject,
        body,
        attachment: Some((
            format!("tóm-tắt-sự-cố-{}.txt", inc.id),
            "text/plain; charset=utf-8".into(),
            summary,
        )),
    }
}

/// The message for an overdue report.
pub(crate) fn overdue_message(item: &OverdueItem, title: &str) -> Outgoing {
    let (vi, en) = report_names(item.kind);
    let kind = serde_json::to_value(item.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Outgoing {
        dedup_key: format!("overdue|{}|{kind}", item.incident_id),
        kind: "overdue",
        incident_id: Some(item.incident_id),
        subject: format!(
            "[QUÁ HẠN] Sự cố #{}: {vi} / [OVERDUE] Incident #{}: {en}",
            item.incident_id, item.incident_id
        ),
        body: format!(
            "{vi} của sự cố #{id} ({title}) đã quá hạn từ {due} (giờ Việt Nam).\n\n\
             --- English ---\n\
             The {en} of incident #{id} ({title}) has been overdue since {due} (Vietnam time).\n",
            id = item.incident_id,
            due = vn_time(item.due),
        ),
        attachment: None,
    }
}

/// The message for an agency task past its due time (the R-14 contact update).
pub(crate) fn agency_task_message(task: &crate::system::AgencyTask, agency: &str) -> Outgoing {
    Outgoing {
        dedup_key: format!("agency_task|{}", task.id),
        kind: "agency_task",
        incident_id: None,
        subject: format!(
            "[QUÁ HẠN] {agency}: {title} / [OVERDUE] {agency}: {title}",
            title = task.title
        ),
        body: format!(
            "Việc \"{title}\" của đơn vị {agency} đã quá hạn từ {due} (giờ Việt Nam).\n\n\
             --- English ---\n\
             The task \"{title}\" of {agency} has been overdue since {due} (Vietnam time).\n",
            title = task.title,
            due = vn_time(task.due_at),
        ),
        attachment: None,
    }
}

const NCOLS: &str = "id, kind, incident_id, recipient, subject, attachment_name, status, \
    attempts, next_attempt_at, last_error, server_reply, created_at, sent_at";

fn notification_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Notification> {
    Ok(Notification {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        incident_id: r.try_get("incident_id")?,
        recipient: r.try_get("recipient")?,
        subject: r.try_get("subject")?,
        attachment_name: r.try_get("attachment_name")?,
        status: NotificationStatus::parse(&r.try_get::<String, _>("status")?)?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: from_ms(r.try_get("next_attempt_at")?),
        last_error: r.try_get("last_error")?,
        server_reply: r.try_get("server_reply")?,
        created_at: from_ms(r.try_get("created_at")?),
        sent_at: opt_from_ms(r.try_get("sent_at")?),
    })
}

fn roster_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<RosterEntry> {
    Ok(RosterEntry {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        on_duty: r.try_get("on_duty")?,
    })
}

fn check_email(email: &str) -> Result<String> {
    let email = email.trim();
    email
        .parse::<lettre::Address>()
        .map_err(|e| SoarError::Invalid(format!("e-mail address {email:?}: {e}")))?;
    Ok(email.to_owned())
}

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

impl Soar {
    /// The duty roster.
    pub async fn roster(&self) -> Result<Vec<RosterEntry>> {
        let rows = sqlx::query("SELECT id, name, email, on_duty FROM roster ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(roster_from_row).collect()
    }

    /// Adds someone to the roster.
    pub async fn add_roster(
        &self,
        actor: &Actor,
        name: &str,
        email: &str,
        on_duty: bool,
    ) -> Result<RosterEntry> {
        let name = name.trim();
        if name.is_empty() {
            return Err(SoarError::Invalid("roster name is required".into()));
        }
        let email = check_email(email)?;
        let mut tx = self.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM roster WHERE email = $1")
            .bind(&email)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(SoarError::Conflict(format!(
                "{email} is already on the roster"
            )));
        }
        let id: i64 = sqlx::query(
            "INSERT INTO roster (name, email, on_duty, updated_at) VALUES ($1, $2, $3, $4) \
             RETURNING id",
        )
        .bind(name)
        .bind(&email)
        .bind(on_duty)
        .bind(to_ms(self.now()))
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let entry = RosterEntry {
            id,
            name: name.into(),
            email,
            on_duty,
        };
        self.audit(
            &mut tx,
            actor,
            "roster.add",
            "roster",
            id,
            None,
            serde_json::to_value(&entry).ok(),
        )
        .await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Puts someone on or off duty.
    pub async fn set_on_duty(&self, actor: &Actor, id: i64, on_duty: bool) -> Result<RosterEntry> {
        let mut tx = self.begin().await?;
        let before = roster_entry(&mut tx, id).await?;
        sqlx::query("UPDATE roster SET on_duty = $1, updated_at = $2 WHERE id = $3")
            .bind(on_duty)
            .bind(to_ms(self.now()))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let after = roster_entry(&mut tx, id).await?;
        self.audit(
            &mut tx,
            actor,
            "roster.duty",
            "roster",
            id,
            serde_json::to_value(&before).ok(),
            serde_json::to_value(&after).ok(),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Removes someone from the roster.
    pub async fn remove_roster(&self, actor: &Actor, id: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        let before = roster_entry(&mut tx, id).await?;
        sqlx::query("DELETE FROM roster WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        self.audit(
            &mut tx,
            actor,
            "roster.remove",
            "roster",
            id,
            serde_json::to_value(&before).ok(),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Notifications, newest first, optionally of one incident or in one state.
    pub async fn notifications(
        &self,
        incident_id: Option<i64>,
        status: Option<NotificationStatus>,
        limit: i64,
    ) -> Result<Vec<Notification>> {
        let mut w = crate::Where::default();
        w.eq("incident_id", incident_id.map(Into::into));
        w.eq("status", status.map(|s| s.as_str().to_owned().into()));
        let sql = format!(
            "SELECT {NCOLS} FROM notifications{} ORDER BY id DESC LIMIT {}",
            w.sql(),
            limit.clamp(1, 500)
        );
        let rows = w.bind_all(sqlx::query(&sql)).fetch_all(self.pool()).await?;
        rows.iter().map(notification_from_row).collect()
    }

    /// Delivery attempts of one notification, oldest first.
    pub async fn notification_attempts(&self, id: i64) -> Result<Vec<Attempt>> {
        let rows = sqlx::query(
            "SELECT at, ok, detail FROM notification_attempts WHERE notification_id = $1 \
             ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Attempt {
                    at: from_ms(r.try_get(0)?),
                    ok: r.try_get(1)?,
                    detail: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Queues a message for everyone on duty (once per dedup key and recipient). Returns how
    /// many rows were queued; call `wake_sender` after the commit.
    pub(crate) async fn enqueue(&self, tx: &mut Tx, msg: &Outgoing) -> Result<u64> {
        let now = to_ms(self.now());
        let (name, ctype, content) = match &msg.attachment {
            Some((n, t, c)) => (Some(n.as_str()), Some(t.as_str()), Some(c.as_str())),
            None => (None, None, None),
        };
        let done = sqlx::query(
            "INSERT INTO notifications (dedup_key, kind, incident_id, recipient, subject, body, \
             attachment_name, attachment_type, attachment, status, next_attempt_at, created_at) \
             SELECT $1, $2, $3, email, $4, $5, $6, $7, $8, 'pending', $9, $9 \
             FROM roster WHERE on_duty = TRUE \
             ON CONFLICT (dedup_key, recipient) DO NOTHING",
        )
        .bind(&msg.dedup_key)
        .bind(msg.kind)
        .bind(msg.incident_id)
        .bind(&msg.subject)
        .bind(&msg.body)
        .bind(name)
        .bind(ctype)
        .bind(content)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected())
    }

    /// Queues one e-mail per overdue report (once per incident and report) and per overdue
    /// agency task (once per task). Returns how many rows were queued.
    pub async fn notify_overdue(&self, now: DateTime<Utc>) -> Result<u64> {
        let mut n = 0;
        for item in self.overdue(now).await? {
            let title = self.incident(item.incident_id).await?.title;
            let mut tx = self.begin().await?;
            n += self
                .enqueue(&mut tx, &overdue_message(&item, &title))
                .await?;
            tx.commit().await?;
        }
        // Agency tasks past due (R-14: the incident-response contact list not updated in 24 h).
        for task in self.overdue_agency_tasks(now).await? {
            let agency = self.agency(task.agency_id).await?.name;
            let mut tx = self.begin().await?;
            n += self
                .enqueue(&mut tx, &agency_task_message(&task, &agency))
                .await?;
            tx.commit().await?;
        }
        if n > 0 {
            self.wake_sender();
        }
        Ok(n)
    }

    /// Delivers every due notification once through `mailer` and records the outcome.
    pub async fn deliver_due(&self, mailer: &Mailer) -> Result<DeliveryReport> {
        let now = self.now();
        let rows = sqlx::query(
            "SELECT id, recipient, subject, body, attachment_name, attachment_type, attachment, \
             attempts FROM notifications WHERE status = 'pending' AND next_attempt_at <= $1 \
             ORDER BY id LIMIT 100",
        )
        .bind(to_ms(now))
        .fetch_all(self.pool())
        .await?;
        let mut report = DeliveryReport::default();
        for r in &rows {
            let id: i64 = r.try_get(0)?;
            let recipient: String = r.try_get(1)?;
            let attempts: i64 = r.try_get::<i64, _>(7)? + 1;
            let attachment = match (
                r.try_get::<Option<String>, _>(4)?,
                r.try_get::<Option<String>, _>(5)?,
                r.try_get::<Option<String>, _>(6)?,
            ) {
                (Some(n), Some(t), Some(c)) => Some((n, t, c)),
                _ => None,
            };
            let outcome = match mailer.build(
                &recipient,
                &r.try_get::<String, _>(2)?,
                &r.try_get::<String, _>(3)?,
                attachment,
            ) {
                Ok(msg) => mailer.send(msg).await,
                Err(e) => Err((e, true)),
            };
            let at = self.now();
            let mut tx = self.begin().await?;
            match outcome {
                Ok(reply) => {
                    sqlx::query(
                        "UPDATE notifications SET status = 'sent', attempts = $1, sent_at = $2, \
                         server_reply = $3, last_error = NULL WHERE id = $4",
                    )
                    .bind(attempts)
                    .bind(to_ms(at))
                    .bind(&reply)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    attempt(&mut tx, id, at, true, &reply).await?;
                    report.sent += 1;
                    tracing::info!(notification = id, %recipient, "notification sent");
                }
                Err((reason, permanent)) => {
                    let give_up = permanent || attempts >= i64::from(mailer.max_attempts.max(1));
                    let wait = mailer
                        .retry_secs
                        .saturating_mul(1 << (attempts - 1).clamp(0, 12))
                        .min(3600);
                    let next = at + chrono::Duration::seconds(i64::try_from(wait).unwrap_or(3600));
                    let status = if give_up { "failed" } else { "pending" };
                    sqlx::query(
                        "UPDATE notifications SET status = $1, attempts = $2, last_error = $3, \
                         next_attempt_at = $4 WHERE id = $5",
                    )
                    .bind(status)
                    .bind(attempts)
                    .bind(&reason)
                    .bind(to_ms(next))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    attempt(&mut tx, id, at, false, &reason).await?;
                    tracing::warn!(notification = id, %recipient, attempts, give_up,
                        error = %reason, "notification not delivered");
                    if give_up {
                        report.failed += 1;
                    } else {
                        report.retrying += 1;
                    }
                }
            }
            tx.commit().await?;
        }
        if report.failed > 0 {
            let alert = crate::NewAlert {
                rule_id: "canh.soar.mail_failed".into(),
                rule_title: "Không gửi được e-mail thông báo / Notification e-mail failed".into(),
                rule_level: "high".into(),
                severity: canh_core::Severity::High,
                agency_id: None,
                host: String::new(),
                event: serde_json::json!({"failed": report.failed}),
                time: now,
                dedup_key: Some("mail_failed".into()),
            };
            self.record_alert(alert).await?;
        }
        Ok(report)
    }

    /// Tells the sender that committed notifications are waiting.
    pub(crate) fn wake_sender(&self) {
        self.outbox_wake.notify_one();
    }

    /// Waits until a notification is queued (or `max` passes).
    pub async fn wait_for_outbox(&self, max: std::time::Duration) {
        let _ = tokio::time::timeout(max, self.outbox_wake.notified()).await;
    }
}

async fn attempt(tx: &mut Tx, id: i64, at: DateTime<Utc>, ok: bool, detail: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO notification_attempts (notification_id, at, ok, detail) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(to_ms(at))
    .bind(ok)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn roster_entry(tx: &mut Tx, id: i64) -> Result<RosterEntry> {
    let row = sqlx::query("SELECT id, name, email, on_duty FROM roster WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| SoarError::not_found("roster entry", id))?;
    roster_from_row(&row)
}

/// The SMTP client.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    max_attempts: u32,
    retry_secs: u64,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Builds the client (reads the CA file; no connection is made yet).
    pub fn new(s: &SmtpSettings) -> Result<Self> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            SoarError::Invalid(format!("soar.smtp: {what}: {e}"))
        };
        let from: Mailbox = s.from.parse().map_err(|e| bad("from", &e))?;
        let mut tls = TlsParameters::builder(s.host.clone());
        if let Some(path) = &s.ca_file {
            let pem = std::fs::read(path).map_err(|e| SoarError::io(path, e))?;
            let cert = Certificate::from_pem(&pem).map_err(|e| bad("ca_file", &e))?;
            tls = tls.add_root_certificate(cert);
        } else {
            tls = tls.certificate_store(CertificateStore::Default);
        }
        let tls = tls.build_rustls().map_err(|e| bad("tls", &e))?;
        let tls = if s.starttls_required {
            Tls::Required(tls)
        } else {
            Tls::Opportunistic(tls)
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
            .port(s.port)
            .tls(tls)
            .timeout(Some(std::time::Duration::from_secs(s.timeout_secs.max(1))));
        if let Some(user) = &s.user {
            b = b.credentials(Credentials::new(
                user.clone(),
                s.password.clone().unwrap_or_default(),
            ));
        }
        Ok(Self {
            transport: b.build(),
            from,
            max_attempts: s.max_attempts,
            retry_secs: s.retry_secs.max(1),
        })
    }

    /// A `multipart/mixed` message: UTF-8 text body plus the attachment. Subject and
    /// attachment name are encoded (RFC 2047 / RFC 2231) by the builder.
    fn build(
        &self,
        to: &str,
        subject: &str,
        body: &str,
        attachment: Option<(String, String, String)>,
    ) -> std::result::Result<Message, String> {
        let to: Mailbox = to.parse().map_err(|e| format!("recipient {to:?}: {e}"))?;
        let b = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .date_now();
        let text = SinglePart::plain(body.to_owned());
        let msg = match attachment {
            Some((name, ctype, content)) => {
                let ct = ContentType::parse(&ctype).map_err(|e| format!("content type: {e}"))?;
                b.multipart(
                    MultiPart::mixed()
                        .singlepart(text)
                        .singlepart(Attachment::new(name).body(content.into_bytes(), ct)),
                )
            }
            None => b.singlepart(text),
        };
        msg.map_err(|e| format!("message: {e}"))
    }

    /// Sends; `Err((reason, permanent))` on failure.
    async fn send(&self, msg: Message) -> std::result::Result<String, (String, bool)> {
        match self.transport.send(msg).await {
            Ok(resp) => Ok(format!(
                "{} {}",
                resp.code(),
                resp.message().collect::<Vec<_>>().join(" ")
            )),
            Err(e) => {
                let mut reason = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    reason.push_str(": ");
                    reason.push_str(&s.to_string());
                    src = s.source();
                }
                Err((reason, e.is_permanent()))
            }
        }
    }
}

/// Runs the sender until the runtime stops: delivers what is due, then sleeps until something
/// is queued or `poll` passes (retries become due with time).
pub fn spawn_sender(
    soar: Arc<Soar>,
    mailer: Mailer,
    poll: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = soar.deliver_due(&mailer).await {
                tracing::warn!(error = %e, "notification sender failed");
            }
            soar.wait_for_outbox(poll).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vietnam_time_is_utc_plus_seven() {
        let t = DateTime::parse_from_rfc3339("2026-03-05T01:07:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(vn_time(t), "05/03/2026 08:07");
    }

    #[test]
    fn message_encodes_vietnamese_subject_and_file_name() {
        let m = Mailer::new(&SmtpSettings::default()).unwrap();
        let msg = m
            .build(
                "Trực ban <truc-ban@example.org>",
                "[CAO] Sự cố #1: Web shell",
                "Nội dung",
                Some((
                    "tóm-tắt-sự-cố-1.txt".into(),
                    "text/plain; charset=utf-8".into(),
                    "Tóm tắt".into(),
                )),
            )
            .unwrap();
        let raw = String::from_utf8(msg.formatted()).unwrap();
        let head = raw.split("\r\n\r\n").next().unwrap();
        assert!(head.is_ascii(), "{head}");
        assert!(
            head.lines()
                .any(|l| l.starts_with("Subject: ") && l.contains("=?utf-8?")),
            "{head}"
        );
        assert!(raw.contains("filename*"), "{raw}");
        assert!(!raw.contains("tóm-tắt"), "raw non-ASCII file name in {raw}");
    }

    #[test]
    fn bad_settings_are_refused() {
        let s = SmtpSettings {
            from: "not an address".into(),
            ..SmtpSettings::default()
        };
        assert!(matches!(Mailer::new(&s), Err(SoarError::Invalid(_))));
        assert!(check_email("x@y.vn").is_ok());
        assert!(check_email("x").is_err());
    }
}
