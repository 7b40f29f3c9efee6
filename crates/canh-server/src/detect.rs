//! Live detection: every stored event is evaluated against the Sigma rules as it arrives.
//!
//! A match becomes an alert event in the event store (`event.kind: alert`, `rule.*`, the
//! regulation's severity in `canh.alert.severity`, the matching event under `canh.alert.event`)
//! and, when SOAR is running, an alert in the triage queue. Repeats of one rule on one host
//! within the suppression window are counted, not stored again. Correlation state is saved to
//! `state/correlation.json` after each batch that changes it and reloaded at start; when it
//! cannot be reloaded, the loss is itself raised as an alert.

use crate::pipeline::EventObserver;
use crate::soar::SoarState;
use canh_core::{Event, Severity, fields};
use canh_detect::{
    CorrelationAlert, Correlator, Engine, Indicator, IndicatorMatch, IndicatorSet, Match,
};
use canh_store::Store;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing::{info, warn};

/// The live detector.
pub struct Detector {
    /// The rule catalogue (state, versions) and the live set it swaps.
    catalogue: Arc<crate::rules::RuleCatalogue>,
    live: Arc<crate::rules::LiveRules>,
    /// Correlation state and the rule set it was built against.
    correlator: Mutex<(Correlator, Arc<crate::rules::LiveSet>)>,
    state_path: PathBuf,
    store: Arc<Store>,
    soar: Option<SoarState>,
    suppress: Duration,
    last_alert: Mutex<HashMap<(String, String), DateTime<Utc>>>,
    metrics: Arc<crate::metrics::Metrics>,
    /// A loss of correlation state found at start, raised with the first batch.
    pending_loss: Mutex<Option<String>>,
}

impl Detector {
    /// Loads the rule catalogue (the rules under `rules_dir` with their saved state, see
    /// [`crate::rules`]) and the saved correlation state.
    pub fn load(
        rules_dir: &Path,
        data_dir: &Path,
        store: Arc<Store>,
        soar: Option<SoarState>,
        suppress_secs: u64,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Detector {
        metrics.describe(
            "canh_detect_alerts_total",
            "counter",
            "alerts raised by live detection, by severity",
        );
        metrics.describe(
            "canh_detect_suppressed_total",
            "counter",
            "matches suppressed as repeats",
        );
        let catalogue = Arc::new(crate::rules::RuleCatalogue::open(
            Some(rules_dir),
            data_dir,
            Some(Arc::clone(&metrics)),
        ));
        let live = catalogue.live();
        let state_path = data_dir.join("state").join("correlation.json");
        let (correlator, lost) = load_state(&state_path);
        let det = Detector {
            correlator: Mutex::new((correlator, live.current())),
            catalogue,
            live,
            state_path,
            store,
            soar,
            suppress: Duration::seconds(i64::try_from(suppress_secs).unwrap_or(i64::MAX / 1000)),
            last_alert: Mutex::new(HashMap::new()),
            metrics,
            pending_loss: Mutex::new(lost.clone()),
        };
        if let Some(reason) = lost {
            warn!(reason = %reason, "correlation state lost");
        }
        det
    }

    /// The engine in use (indicator sets set on it apply to every later engine too).
    pub fn engine(&self) -> Engine {
        self.live.current().engine.clone()
    }

    /// The rule catalogue, for the `/api/v1/rules` routes.
    pub fn catalogue(&self) -> Arc<crate::rules::RuleCatalogue> {
        Arc::clone(&self.catalogue)
    }

    /// Loads the indicator sets saved through the API (`<data-dir>/state/indicators/*.csv`)
    /// and, when given, every `.csv`/`.txt`/`.list` file of `dir` (one set per file, named
    /// after the file).
    pub fn load_indicator_files(&self, data_dir: &Path, dir: Option<&Path>) {
        let mut dirs = vec![data_dir.join("state").join("indicators")];
        dirs.extend(dir.map(Path::to_path_buf));
        for d in dirs {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            let mut files: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| e == "csv" || e == "txt" || e == "list")
                })
                .collect();
            files.sort();
            for f in files {
                match IndicatorSet::load_file(&f) {
                    Ok((set, load)) => {
                        info!(set = set.name(), loaded = load.loaded, refused = load.refused.len(), file = %f.display(), "indicator set loaded");
                        self.live.current().engine.set_indicators(set);
                    }
                    Err(e) => warn!(error = %e, "indicator file skipped"),
                }
            }
        }
    }

    async fn process(&self, events: Vec<Event>) {
        let mut alerts = Vec::new();
        if let Ok(mut pending) = self.pending_loss.lock()
            && let Some(reason) = pending.take()
        {
            alerts.push(state_loss_alert(&reason));
        }
        let mut correlation_changed = false;
        // One rule set for the whole batch; a change made meanwhile applies from the next.
        let live = self.live.current();
        let engine = &live.engine;
        if let Ok(mut c) = self.correlator.lock()
            && !Arc::ptr_eq(&c.1, &live)
        {
            let (state, built_for) = &mut *c;
            state.carry_over(built_for.engine.ruleset(), engine.ruleset());
            *built_for = Arc::clone(&live);
        }
        for ev in &events {
            let mut matches = Vec::new();
            let mut iocs = Vec::new();
            engine.evaluate(ev, |m| matches.push(m), |i| iocs.push(i));
            for i in &iocs {
                alerts.push(indicator_alert(i, ev));
            }
            let agency = ev.get_str(fields::ORGANIZATION_ID);
            for m in matches {
                // A rule scoped to other agencies neither alerts nor feeds correlations here.
                if !live.allows(&crate::rules::match_key(&m), agency) {
                    continue;
                }
                if !engine.ruleset().correlations().is_empty() {
                    // A batch still on the previous rule set (evaluated while the set was
                    // swapped) does not feed windows now laid out for the new one.
                    if let Ok(mut c) = self.correlator.lock()
                        && Arc::ptr_eq(&c.1, &live)
                    {
                        for ca in c.0.process(engine.ruleset(), &m, ev) {
                            let key = crate::rules::key_of(ca.rule_id.as_deref(), &ca.title);
                            if live.allows(&key, agency) {
                                alerts.push(correlation_alert(&ca));
                            }
                        }
                    }
                    correlation_changed = true;
                }
                if m.generate && !self.suppressed(&m, ev) {
                    alerts.push(match_alert(&m, ev));
                }
            }
        }
        if correlation_changed {
            self.save_state();
        }
        raise(alerts, self.soar.as_ref(), &self.store, &self.metrics).await;
    }

    fn suppressed(&self, m: &Match, ev: &Event) -> bool {
        if self.suppress <= Duration::zero() {
            return false;
        }
        let host = ev.get_str(fields::HOST_NAME).unwrap_or("").to_owned();
        let Ok(mut last) = self.last_alert.lock() else {
            return false;
        };
        let key = (crate::rules::match_key(m), host);
        let repeat = is_repeat(&mut last, key, ev.timestamp, self.suppress);
        if repeat {
            self.metrics.add("canh_detect_suppressed_total", &[], 1);
        }
        repeat
    }

    fn save_state(&self) {
        let Ok(c) = self.correlator.lock() else {
            return;
        };
        let text = match serde_json::to_vec(&c.0) {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "correlation state not serialisable");
                return;
            }
        };
        drop(c);
        let tmp = self.state_path.with_extension("json.tmp");
        let res = std::fs::create_dir_all(self.state_path.parent().unwrap_or(Path::new(".")))
            .and_then(|()| std::fs::write(&tmp, &text))
            .and_then(|()| std::fs::rename(&tmp, &self.state_path));
        if let Err(e) = res {
            warn!(error = %e, path = %self.state_path.display(), "correlation state not saved");
        }
    }
}

/// Reads saved state; a file that exists but cannot be read is a loss to report.
fn load_state(path: &Path) -> (Correlator, Option<String>) {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(c) => (c, None),
            Err(e) => (
                Correlator::new(),
                Some(format!("{} is unreadable: {e}", path.display())),
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Correlator::new(), None),
        Err(e) => (
            Correlator::new(),
            Some(format!("{} cannot be read: {e}", path.display())),
        ),
    }
}

/// Records alert events: counted by severity, put in the triage queue (when SOAR runs, under
/// the agency their `organization.id` names) and stored as events.
async fn raise(
    alerts: Vec<Event>,
    soar: Option<&SoarState>,
    store: &Store,
    metrics: &crate::metrics::Metrics,
) {
    if alerts.is_empty() {
        return;
    }
    for a in &alerts {
        let sev = a.get_str("canh.alert.severity").unwrap_or("low").to_owned();
        metrics.add("canh_detect_alerts_total", &[("severity", &sev)], 1);
    }
    if let Some(soar) = soar {
        let mut agencies: HashMap<String, Option<i64>> = HashMap::new();
        let mut batch = Vec::with_capacity(alerts.len());
        for a in &alerts {
            let mut alert = to_new_alert(a);
            // The event's agency code names the agency in the triage queue, so that the
            // agency's own viewers see it.
            if let Some(code) = a.get_str(fields::ORGANIZATION_ID) {
                if !agencies.contains_key(code) {
                    let id = soar.soar.agency_by_code(code).await.ok().map(|ag| ag.id);
                    agencies.insert(code.to_owned(), id);
                }
                alert.agency_id = agencies.get(code).copied().flatten();
            }
            batch.push(alert);
        }
        // One transaction for the batch's alerts (same folding and grouping as one by one).
        if let Err(e) = soar.record_alerts(batch).await {
            warn!(error = %e, "alerts not recorded in the triage queue");
        }
    }
    if let Err(e) = store.append(alerts).await {
        warn!(error = %e, "alerts not stored");
    }
}

/// Alerts that endpoint agents raise themselves (YARA matches of new executables), taken from
/// the agent channel whether or not Sigma rules are loaded.
pub struct AgentAlerts {
    store: Arc<Store>,
    soar: Option<SoarState>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl AgentAlerts {
    /// Alerts go to `store` and, when given, to the triage queue of `soar`.
    pub fn new(
        store: Arc<Store>,
        soar: Option<SoarState>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            store,
            soar,
            metrics,
        }
    }

    /// The alerts an agent's batch carries (none for most batches).
    pub fn alerts_for(events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|e| is_agent_yara_match(e))
            .map(yara_alert)
            .collect()
    }

    /// Records `alerts` (from [`AgentAlerts::alerts_for`], once their batch is stored).
    pub async fn raise(&self, alerts: Vec<Event>) {
        raise(alerts, self.soar.as_ref(), &self.store, &self.metrics).await;
    }
}

fn base_alert(
    time: DateTime<Utc>,
    rule_id: Option<&str>,
    title: &str,
    level: Option<&str>,
    severity: Severity,
) -> Event {
    let mut a = Event::new(time);
    a.set(fields::EVENT_KIND, "alert");
    a.set(fields::EVENT_MODULE, "canh_detect");
    a.set_opt("rule.id", rule_id);
    a.set("rule.name", title);
    a.set_opt("rule.level", level);
    a.set("canh.alert.severity", severity.as_str());
    a.set(fields::CANH_SOURCE, "detect");
    a
}

/// Copies the named fields of `ev` that are set onto the alert `a`.
fn copy_fields(a: &mut Event, ev: &Event, names: &[&str]) {
    for f in names {
        if let Some(v) = ev.get(f) {
            a.set(f, v.clone());
        }
    }
}

fn indicator_alert(i: &IndicatorMatch, ev: &Event) -> Event {
    let title = format!("Indicator match: {} ({})", i.set, i.field);
    let mut a = base_alert(ev.timestamp, None, &title, Some("high"), Severity::High);
    a.set("rule.ruleset", "indicators");
    a.set("threat.indicator.name", i.indicator.clone());
    a.set(
        "threat.indicator.type",
        serde_json::to_value(i.kind).unwrap_or_default(),
    );
    a.set("threat.feed.name", i.set.clone());
    a.set("threat.indicator.matched.field", i.field.clone());
    copy_fields(
        &mut a,
        ev,
        &[
            fields::HOST_NAME,
            fields::ORGANIZATION_ID,
            fields::USER_NAME,
        ],
    );
    if let Ok(v) = serde_json::to_value(ev) {
        a.set("canh.alert.event", v);
    }
    a
}

/// A YARA match reported by an endpoint agent (its `yara` feature).
fn is_agent_yara_match(ev: &Event) -> bool {
    ev.get_str(fields::EVENT_MODULE) == Some("canh_agent")
        && ev.get_str(fields::EVENT_KIND) == Some("alert")
        && ev.get_str("event.action") == Some("yara_match")
}

/// The alert for an agent's YARA match: severity high, one rule id per YARA rule.
fn yara_alert(ev: &Event) -> Event {
    let rule = ev.get_str("rule.name").unwrap_or("unknown");
    let title = format!("YARA: {rule}");
    let id = format!("yara:{rule}");
    let mut a = base_alert(
        ev.timestamp,
        Some(&id),
        &title,
        Some("high"),
        Severity::High,
    );
    a.set("rule.ruleset", "yara");
    copy_fields(
        &mut a,
        ev,
        &[
            fields::HOST_NAME,
            fields::ORGANIZATION_ID,
            fields::USER_NAME,
            "agent.id",
            "file.path",
            "file.hash.sha256",
            "process.pid",
            "process.executable",
            "tags",
        ],
    );
    a.set(
        "message",
        ev.get_str(fields::MESSAGE)
            .map_or_else(|| title.clone(), str::to_owned),
    );
    a.set(
        "canh.alert.event",
        serde_json::to_value(ev).unwrap_or_default(),
    );
    a
}

fn match_alert(m: &Match, ev: &Event) -> Event {
    let mut a = base_alert(
        ev.timestamp,
        m.rule_id.as_deref(),
        &m.title,
        m.level.as_deref(),
        m.severity,
    );
    a.set("rule.ruleset", "sigma");
    a.set_opt("rule.author", m.author.clone());
    a.set_opt(
        "rule.reference",
        m.rule_path.as_ref().map(|p| p.display().to_string()),
    );
    if !m.tags.is_empty() {
        a.set("tags", m.tags.clone());
    }
    copy_fields(
        &mut a,
        ev,
        &[
            fields::HOST_NAME,
            fields::ORGANIZATION_ID,
            fields::USER_NAME,
            fields::SOURCE_IP,
            fields::DESTINATION_IP,
        ],
    );
    a.set(
        "message",
        format!(
            "{} — {}",
            m.title,
            ev.get_str(fields::MESSAGE).unwrap_or("")
        ),
    );
    a.set(
        "canh.alert.event",
        serde_json::to_value(ev).unwrap_or_default(),
    );
    a
}

fn correlation_alert(c: &CorrelationAlert) -> Event {
    let mut a = base_alert(
        c.last_seen,
        c.rule_id.as_deref(),
        &c.title,
        c.level.as_deref(),
        c.severity,
    );
    a.set("rule.ruleset", "sigma_correlation");
    if !c.tags.is_empty() {
        a.set("tags", c.tags.clone());
    }
    for (k, v) in &c.group {
        a.set(&format!("canh.correlation.group.{k}"), v.as_str());
    }
    a.set("canh.correlation.value", c.value);
    a.set("canh.correlation.event_count", c.event_count);
    a.set("canh.correlation.first_seen", c.first_seen.to_rfc3339());
    a.set("message", format!("{} ({} events)", c.title, c.event_count));
    a
}

fn state_loss_alert(reason: &str) -> Event {
    let mut a = base_alert(
        Utc::now(),
        Some("canh.detect.correlation_state_lost"),
        "Correlation state lost at restart",
        Some("high"),
        Severity::High,
    );
    a.set(
        "message",
        format!("correlation windows restarted empty: {reason}"),
    );
    a
}

fn to_new_alert(a: &Event) -> canh_soar::NewAlert {
    let severity = a
        .get_str("canh.alert.severity")
        .and_then(|s| s.parse().ok())
        .unwrap_or(Severity::Low);
    canh_soar::NewAlert {
        rule_id: a.get_str("rule.id").unwrap_or("").to_owned(),
        rule_title: a.get_str("rule.name").unwrap_or("").to_owned(),
        rule_level: a.get_str("rule.level").unwrap_or("").to_owned(),
        severity,
        agency_id: None,
        host: a.get_str(fields::HOST_NAME).unwrap_or("").to_owned(),
        event: serde_json::to_value(a).unwrap_or_default(),
        time: a.timestamp,
        dedup_key: None,
    }
}

impl EventObserver for Detector {
    fn observe(&self, events: Vec<Event>) -> crate::pipeline::BoxFuture<'_, ()> {
        Box::pin(self.process(events))
    }
}

/// State of the `/api/v1/indicators` routes.
#[derive(Clone)]
pub struct IndicatorApi {
    soar: SoarState,
    /// The live engine; `None` when live detection is off.
    engine: Option<Engine>,
    /// Where sets saved through the API are kept.
    dir: PathBuf,
}

impl axum::extract::FromRef<IndicatorApi> for SoarState {
    fn from_ref(s: &IndicatorApi) -> SoarState {
        s.soar.clone()
    }
}

/// Body of `PUT /api/v1/indicators/{name}`.
#[derive(serde::Deserialize)]
struct PutSet {
    indicators: Vec<Indicator>,
}

/// `GET /api/v1/indicators` (sets and their counts), `PUT /api/v1/indicators/{name}` (replace
/// a set; JSON `{"indicators": [{"value", "type"?, "expires"?}]}`; saved under
/// `<data-dir>/state/indicators/` and reloaded at start), `DELETE /api/v1/indicators/{name}`.
pub fn indicators_router(soar: SoarState, engine: Option<Engine>, data_dir: &Path) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/api/v1/indicators", get(list_sets))
        .route(
            "/api/v1/indicators/{name}",
            axum::routing::put(put_set).delete(delete_set),
        )
        .with_state(IndicatorApi {
            soar,
            engine,
            dir: data_dir.join("state").join("indicators"),
        })
}

type ApiResult = Result<axum::response::Response, axum::response::Response>;

fn api_err(code: axum::http::StatusCode, msg: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    (code, axum::Json(serde_json::json!({ "error": msg }))).into_response()
}

fn detection_off() -> axum::response::Response {
    api_err(
        axum::http::StatusCode::CONFLICT,
        "live detection is off (set detect.rules_dir)",
    )
}

async fn list_sets(
    axum::extract::State(st): axum::extract::State<IndicatorApi>,
    user: crate::soar::auth::AuthUser,
) -> ApiResult {
    use axum::response::IntoResponse;
    user.require_agency(None)
        .map_err(IntoResponse::into_response)?;
    let sets: Vec<serde_json::Value> = st
        .engine
        .as_ref()
        .map(Engine::indicator_sets)
        .unwrap_or_default()
        .iter()
        .map(|s| serde_json::json!({ "name": s.name(), "counts": s.counts() }))
        .collect();
    Ok(axum::Json(serde_json::json!({ "sets": sets })).into_response())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

async fn put_set(
    axum::extract::State(st): axum::extract::State<IndicatorApi>,
    axum::extract::Path(name): axum::extract::Path<String>,
    user: crate::soar::auth::AuthUser,
    axum::Json(body): axum::Json<PutSet>,
) -> ApiResult {
    use axum::response::IntoResponse;
    user.require_write().map_err(IntoResponse::into_response)?;
    let engine = st.engine.as_ref().ok_or_else(detection_off)?;
    if !valid_name(&name) {
        return Err(api_err(
            axum::http::StatusCode::BAD_REQUEST,
            "a set name is 1-64 letters, digits, '-', '_' or '.'",
        ));
    }
    let mut set = IndicatorSet::new(name.clone());
    let mut csv = String::from("indicator,type,expires\n");
    let mut refused = Vec::new();
    let mut loaded = 0usize;
    for (i, ind) in body.indicators.iter().enumerate() {
        match set.insert(ind) {
            Ok(()) => {
                loaded += 1;
                let kind = ind
                    .kind
                    .or_else(|| canh_detect::IndicatorKind::guess(&ind.value))
                    .and_then(|k| serde_json::to_value(k).ok())
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let expires = ind.expires.map(|t| t.to_rfc3339()).unwrap_or_default();
                csv.push_str(&format!(
                    "\"{}\",{kind},{expires}\n",
                    ind.value.trim().replace('"', "\"\"")
                ));
            }
            Err(e) => refused.push(serde_json::json!({ "index": i, "reason": e })),
        }
    }
    let path = st.dir.join(format!("{name}.csv"));
    let saved = std::fs::create_dir_all(&st.dir).and_then(|()| std::fs::write(&path, csv));
    if let Err(e) = saved {
        warn!(error = %e, path = %path.display(), "indicator set not saved");
        return Err(api_err(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "the set could not be saved",
        ));
    }
    engine.set_indicators(set);
    info!(set = %name, loaded, by = %user.user.name, "indicator set replaced");
    Ok(
        axum::Json(serde_json::json!({ "name": name, "loaded": loaded, "refused": refused }))
            .into_response(),
    )
}

async fn delete_set(
    axum::extract::State(st): axum::extract::State<IndicatorApi>,
    axum::extract::Path(name): axum::extract::Path<String>,
    user: crate::soar::auth::AuthUser,
) -> ApiResult {
    use axum::response::IntoResponse;
    user.require_write().map_err(IntoResponse::into_response)?;
    let engine = st.engine.as_ref().ok_or_else(detection_off)?;
    if !valid_name(&name) || !engine.remove_indicators(&name) {
        return Err(api_err(axum::http::StatusCode::NOT_FOUND, "no such set"));
    }
    let _ = std::fs::remove_file(st.dir.join(format!("{name}.csv")));
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// Whether a match of `key` at `now` repeats an alert raised within `window` of it; if not,
/// `now` becomes the key's last alert. Events of one host can reach the detector out of order
/// (one connection each, batches evaluated side by side), so the window counts on both sides.
fn is_repeat<K: Eq + std::hash::Hash>(
    last: &mut HashMap<K, DateTime<Utc>>,
    key: K,
    now: DateTime<Utc>,
    window: Duration,
) -> bool {
    if let Some(t) = last.get(&key)
        && (now - *t).abs() < window
    {
        return true;
    }
    last.insert(key, now);
    if last.len() > 100_000 {
        let cutoff = now - window;
        last.retain(|_, t| *t >= cutoff);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indicator_hits_become_high_alerts_naming_set_and_field() {
        let mut ev = Event::new(Utc::now());
        ev.set(fields::HOST_NAME, "ws01");
        ev.set("winlog.event_data.DestinationIp", "203.0.113.9");
        let hit = IndicatorMatch {
            set: "feed-a".into(),
            kind: canh_detect::IndicatorKind::Ip,
            field: "winlog.event_data.DestinationIp".into(),
            indicator: "203.0.113.0/24".into(),
        };
        let a = indicator_alert(&hit, &ev);
        assert_eq!(a.get_str("canh.alert.severity"), Some("high"));
        assert_eq!(a.get_str("threat.feed.name"), Some("feed-a"));
        assert_eq!(a.get_str("threat.indicator.type"), Some("ip"));
        assert_eq!(
            a.get_str("threat.indicator.matched.field"),
            Some("winlog.event_data.DestinationIp")
        );
        assert_eq!(a.get_str(fields::HOST_NAME), Some("ws01"));
    }

    #[test]
    fn repeats_are_found_whichever_order_the_events_arrive_in() {
        let mut last = HashMap::new();
        let t0 = Utc::now();
        let w = Duration::seconds(600);
        let key = || (3, "ws01".to_owned());
        // The later event is evaluated first.
        assert!(!is_repeat(
            &mut last,
            key(),
            t0 + Duration::milliseconds(4),
            w
        ));
        assert!(is_repeat(&mut last, key(), t0, w));
        assert!(is_repeat(&mut last, key(), t0 + Duration::seconds(599), w));
        // Another host or another rule is not a repeat.
        assert!(!is_repeat(&mut last, (3, "ws02".to_owned()), t0, w));
        assert!(!is_repeat(&mut last, (4, "ws01".to_owned()), t0, w));
        // Past the window it alerts again.
        assert!(!is_repeat(&mut last, key(), t0 + Duration::seconds(700), w));
    }

    #[test]
    fn set_names_cannot_escape_the_state_directory() {
        assert!(valid_name("feed-a_1.v2"));
        for bad in ["", "../x", "a/b", ".hidden", "a b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
