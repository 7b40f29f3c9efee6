//! Incident handling over HTTP: the `[soar]` configuration, the state shared by the handlers,
//! the `/api/v1` routes for alerts, incidents, steps, tasks, agencies, evidence, users and the
//! audit log, and the authentication extractor (`auth::AuthUser`).

pub mod api;
pub mod auth;
mod extra;

#[cfg(test)]
mod mail_tests;
#[cfg(test)]
mod matrix_tests;
#[cfg(test)]
mod tests;

use canh_soar::{AlertId, NewAlert, ProfileSet, Severity, Soar, SoarError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `[soar]`: incident handling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SoarConfig {
    /// Regulation profile for new incidents (`vn-tt20-2017` or `vn-2025`, or one from
    /// `profiles_dir`). Open incidents keep the profile they were opened under.
    pub profile: String,
    /// Extra regulation profiles (`*.toml`), added to the bundled ones. Empty: bundled only.
    pub profiles_dir: Option<PathBuf>,
    /// Alerts with the same host and rule within this many seconds form one group; the same
    /// dedup key within it is counted on one row.
    pub group_window_secs: u64,
    /// Failed logins before an account is locked.
    pub max_failed_logins: u32,
    /// Lock-out duration in seconds.
    pub lockout_secs: u64,
    /// Session lifetime in seconds.
    pub session_ttl_secs: u64,
    /// Longest API token lifetime in days.
    pub max_token_days: u32,
    /// Largest evidence upload, in bytes.
    pub max_evidence_bytes: u64,
    /// Set the `Secure` attribute on the session cookie (turn off only for plain-HTTP tests on
    /// loopback).
    pub secure_cookie: bool,
    /// `[soar.smtp]`: e-mail notifications to the on-duty roster (new high/emergency incidents,
    /// overdue reports, initial-report drafts). Absent: messages stay queued as `pending`.
    pub smtp: Option<canh_soar::SmtpSettings>,
}

impl Default for SoarConfig {
    fn default() -> Self {
        Self {
            profile: canh_soar::profile::DEFAULT_PROFILE.into(),
            profiles_dir: None,
            group_window_secs: 3600,
            max_failed_logins: 5,
            lockout_secs: 900,
            session_ttl_secs: 12 * 3600,
            max_token_days: 365,
            max_evidence_bytes: 2 * 1024 * 1024 * 1024,
            secure_cookie: true,
            smtp: None,
        }
    }
}

/// What the SOAR handlers share; cheap to clone.
#[derive(Clone, Debug)]
pub struct SoarState {
    /// The SOAR core.
    pub soar: Arc<Soar>,
    /// Its configuration.
    pub config: Arc<SoarConfig>,
    /// Ids of alerts recorded through `record_alert` (new rows and repeats), for live views.
    pub alert_feed: tokio::sync::broadcast::Sender<AlertId>,
    /// The node's event store, for evidence made of captured event sets (set once by the node;
    /// absent, that endpoint answers 503).
    pub events: EventStore,
}

/// The event store shared with the SOAR handlers, set once after the pipeline is built.
#[derive(Clone, Default)]
pub struct EventStore(Arc<std::sync::OnceLock<Arc<canh_store::Store>>>);

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore")
            .field("set", &self.0.get().is_some())
            .finish()
    }
}

impl EventStore {
    /// The store, once set.
    pub fn get(&self) -> Option<&Arc<canh_store::Store>> {
        self.0.get()
    }
}

impl SoarState {
    /// Opens the database under `<data_dir>/state/canh.db` and the vault under
    /// `<data_dir>/evidence/`.
    pub async fn open(data_dir: &Path, config: &SoarConfig) -> Result<Self, SoarError> {
        Self::open_with_clock(data_dir, config, Arc::new(canh_soar::SystemClock)).await
    }

    /// As `open`, with an injected clock (tests, simulations).
    pub async fn open_with_clock(
        data_dir: &Path,
        config: &SoarConfig,
        clock: Arc<dyn canh_soar::Clock>,
    ) -> Result<Self, SoarError> {
        let profiles = match &config.profiles_dir {
            Some(dir) => ProfileSet::with_dir(dir, &config.profile)?,
            None => ProfileSet::bundled(&config.profile)?,
        };
        let secs = |s: u64| chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000));
        let settings = canh_soar::Settings {
            group_window: secs(config.group_window_secs),
            max_failed_logins: i64::from(config.max_failed_logins.max(1)),
            lockout: secs(config.lockout_secs),
            session_ttl: secs(config.session_ttl_secs),
            max_token_ttl: chrono::Duration::days(i64::from(config.max_token_days.max(1))),
            ..canh_soar::Settings::default()
        };
        let soar = Arc::new(Soar::open(data_dir, profiles, clock, settings).await?);
        if let Some(smtp) = &config.smtp {
            let mailer = canh_soar::Mailer::new(smtp)?;
            canh_soar::notify::spawn_sender(
                Arc::clone(&soar),
                mailer,
                std::time::Duration::from_secs(5),
            );
        }
        Ok(Self {
            soar,
            config: Arc::new(config.clone()),
            alert_feed: tokio::sync::broadcast::channel(1024).0,
            events: EventStore::default(),
        })
    }

    /// Gives the SOAR handlers the node's event store (captured event sets as evidence). Only
    /// the first call counts.
    pub fn set_event_store(&self, store: Arc<canh_store::Store>) {
        let _ = self.events.0.set(store);
    }

    /// Alert intake for the detection pipeline.
    pub async fn record_alert(&self, alert: NewAlert) -> Result<AlertId, SoarError> {
        let id = self.soar.record_alert(alert).await?;
        // No live view listening is not an error.
        let _ = self.alert_feed.send(id);
        Ok(id)
    }

    /// Batch intake for the detection pipeline: the whole batch in one transaction (one commit
    /// instead of one per alert), with the same folding, grouping and suppression as
    /// `record_alert`. Every id is sent to the live feed.
    pub async fn record_alerts(&self, alerts: Vec<NewAlert>) -> Result<Vec<AlertId>, SoarError> {
        let ids = self.soar.record_alerts(alerts).await?;
        for &id in &ids {
            let _ = self.alert_feed.send(id);
        }
        Ok(ids)
    }

    /// Turns every overdue report into an alert (rule `canh.soar.overdue`, one row per incident
    /// and report, counted on repeats) and returns their ids. Call it from a timer.
    pub async fn raise_overdue_alerts(&self) -> Result<Vec<AlertId>, SoarError> {
        let now = self.soar.now();
        let mut ids = Vec::new();
        for item in self.soar.overdue(now).await? {
            let kind = serde_json::to_value(item.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let alert = NewAlert {
                rule_id: "canh.soar.overdue".into(),
                rule_title: format!("Quá hạn báo cáo / report overdue: {kind}"),
                rule_level: "high".into(),
                severity: Severity::High,
                agency_id: Some(item.agency_id),
                host: String::new(),
                event: serde_json::to_value(&item).unwrap_or_default(),
                time: now,
                dedup_key: Some(format!("overdue|{}|{kind}", item.incident_id)),
            };
            ids.push(self.soar.record_alert(alert).await?);
        }
        // a changed incident-response contact not reported within 24 h.
        for task in self.soar.overdue_agency_tasks(now).await? {
            let alert = NewAlert {
                rule_id: "canh.soar.agency_task_overdue".into(),
                rule_title: format!("Quá hạn / overdue: {}", task.title),
                rule_level: "medium".into(),
                severity: Severity::Medium,
                agency_id: Some(task.agency_id),
                host: String::new(),
                event: serde_json::to_value(&task).unwrap_or_default(),
                time: now,
                dedup_key: Some(format!("agency_task|{}", task.id)),
            };
            ids.push(self.soar.record_alert(alert).await?);
        }
        // One e-mail per overdue report to the on-duty roster.
        self.soar.notify_overdue(now).await?;
        Ok(ids)
    }
}

/// The SOAR routes, all under `/api/v1`.
pub fn router(state: SoarState) -> axum::Router {
    api::routes().with_state(state)
}
