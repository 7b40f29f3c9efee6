//! Triage: the alert queue with filters, keyboard actions (in `static/console.js`), bulk
//! actions, escalation into an incident, and the detail panel (raw event, rule, related alerts
//! and events, pivot to search).

use super::search::{related_events, scope_query};
use super::{
    Chrome, ConsoleState, PageError, PageResult, Tr, Viewer, chrome, fail, fmt_time, render,
    soar_fail, url_encode,
};
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderValue;
use axum::response::Response;
use axum::routing::{get, post};
use canh_soar::alert::Triage;
use canh_soar::{Alert, AlertFilter, AlertState, NewIncident, Severity};
use serde::Deserialize;

pub(super) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/console/alerts", get(queue))
        .route("/console/alerts/triage", post(triage))
        .route("/console/alerts/escalate", post(escalate))
        .route("/console/alerts/{id}", get(detail))
}

/// Query-string filters of the queue (empty strings mean "any").
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct QueueQuery {
    agency: String,
    severity: String,
    state: String,
    rule: String,
    host: String,
    from: String,
    to: String,
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// One row of the queue.
pub(super) struct Row {
    id: i64,
    sev: &'static str,
    sev_name: String,
    state: &'static str,
    state_name: String,
    title: String,
    rule_id: String,
    host: String,
    agency: String,
    agency_id: String,
    first: String,
    last: String,
    count: i64,
    incident: Option<i64>,
}

impl Row {
    fn new(a: &Alert, tr: Tr, agencies: &[canh_soar::Agency]) -> Self {
        let agency = a
            .agency_id
            .and_then(|id| agencies.iter().find(|g| g.id == id))
            .map(|g| g.name.clone())
            .unwrap_or_default();
        Self {
            id: a.id,
            sev: a.severity.as_str(),
            sev_name: tr.k("console-sev", a.severity.as_str()),
            state: a.state.as_str(),
            state_name: tr.k("console-state", a.state.as_str()),
            title: a.rule_title.clone(),
            rule_id: a.rule_id.clone(),
            host: a.host.clone(),
            agency,
            agency_id: a.agency_id.map(|i| i.to_string()).unwrap_or_default(),
            first: fmt_time(a.first_seen),
            last: fmt_time(a.last_seen),
            count: a.count,
            incident: a.incident_id,
        }
    }
}

#[derive(Template)]
#[template(path = "alert_rows.html")]
struct Rows {
    tr: Tr,
    rows: Vec<Row>,
    can_write: bool,
}

impl Rows {
    fn t(&self, id: &str) -> String {
        self.tr.t(id)
    }
}

struct Opt {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct QueuePage {
    c: Chrome,
    q: QueueQuery,
    rows: String,
    count: usize,
    more: bool,
    can_write: bool,
    severities: Vec<Opt>,
    states: Vec<Opt>,
    agencies: Vec<Opt>,
    escalate_agencies: Vec<Opt>,
    escalate_severities: Vec<Opt>,
}

async fn visible_agencies(
    st: &ConsoleState,
    v: &Viewer,
) -> Result<Vec<canh_soar::Agency>, canh_soar::SoarError> {
    Ok(st
        .soar
        .soar
        .agencies()
        .await?
        .into_iter()
        .filter(|a| a.merged_into.is_none() && v.auth.can_see(Some(a.id)))
        .collect())
}

async fn queue(
    State(st): State<ConsoleState>,
    v: Viewer,
    Query(q): Query<QueueQuery>,
) -> PageResult {
    let agencies = visible_agencies(&st, &v).await.map_err(soar_fail(&v))?;
    let severity = non_empty(&q.severity)
        .map(|s| s.parse::<Severity>())
        .transpose()
        .map_err(|e| PageError::bad(e.to_string()).page(&v))?;
    let state = non_empty(&q.state)
        .map(|s| AlertState::parse(&s))
        .transpose()
        .map_err(soar_fail(&v))?;
    let agency = non_empty(&q.agency)
        .map(|s| s.parse::<i64>())
        .transpose()
        .map_err(|_| PageError::bad("agency").page(&v))?;
    let from = super::i18n::parse_local(&q.from);
    let to = super::i18n::parse_local(&q.to);
    let f = AlertFilter {
        state,
        severity,
        rule_id: non_empty(&q.rule),
        host: non_empty(&q.host),
        agency_id: agency,
        limit: Some(500),
        ..AlertFilter::default()
    };
    let page = st
        .soar
        .soar
        .alerts(&f, v.auth.scope.as_deref())
        .await
        .map_err(soar_fail(&v))?;
    let items: Vec<&Alert> = page
        .items
        .iter()
        .filter(|a| from.is_none_or(|t| a.last_seen >= t) && to.is_none_or(|t| a.first_seen <= t))
        .collect();
    let tr = v.tr;
    let rows = Rows {
        tr,
        rows: items.iter().map(|a| Row::new(a, tr, &agencies)).collect(),
        can_write: v.can_write(),
    };
    let opts = |pairs: Vec<(String, String)>, cur: &str| -> Vec<Opt> {
        pairs
            .into_iter()
            .map(|(value, label)| Opt {
                selected: value == cur,
                value,
                label,
            })
            .collect()
    };
    let sev_pairs: Vec<(String, String)> = Severity::ALL
        .iter()
        .rev()
        .map(|s| (s.as_str().to_owned(), tr.k("console-sev", s.as_str())))
        .collect();
    let state_pairs = [
        AlertState::New,
        AlertState::Acknowledged,
        AlertState::Escalated,
        AlertState::FalsePositive,
        AlertState::Closed,
    ]
    .iter()
    .map(|s| (s.as_str().to_owned(), tr.k("console-state", s.as_str())))
    .collect();
    let agency_pairs: Vec<(String, String)> = super::wall::agency_tree(&agencies)
        .into_iter()
        .map(|(a, depth)| {
            (
                a.id.to_string(),
                format!("{}{}", "· ".repeat(depth), a.name),
            )
        })
        .collect();
    let pagev = QueuePage {
        c: chrome(&v, "alerts", "/console/alerts"),
        count: rows.rows.len(),
        more: page.next.is_some(),
        rows: rows.render().unwrap_or_default(),
        can_write: v.can_write(),
        severities: opts(sev_pairs.clone(), q.severity.trim()),
        states: opts(state_pairs, q.state.trim()),
        agencies: opts(agency_pairs.clone(), q.agency.trim()),
        escalate_agencies: opts(agency_pairs, ""),
        escalate_severities: opts(sev_pairs, ""),
        q,
    };
    Ok(render(&pagev))
}

/// `ids=1,2,3` from a form.
fn parse_ids(s: &str) -> Result<Vec<i64>, PageError> {
    let mut ids = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        ids.push(part.parse().map_err(|_| PageError::bad("ids"))?);
    }
    if ids.is_empty() || ids.len() > 500 {
        return Err(PageError::bad("select 1 to 500 alerts"));
    }
    Ok(ids)
}

async fn alerts_in_scope(st: &ConsoleState, v: &Viewer, ids: &[i64]) -> Result<(), PageError> {
    for id in ids {
        let a = st.soar.soar.alert(*id).await?;
        if !v.auth.can_see(a.agency_id) {
            return Err(PageError::forbidden());
        }
    }
    Ok(())
}

/// The updated rows, for the page to swap in by id.
async fn rows_for(st: &ConsoleState, v: &Viewer, ids: &[i64]) -> Result<Response, PageError> {
    let agencies = visible_agencies(st, v).await?;
    let mut rows = Vec::new();
    for id in ids {
        rows.push(Row::new(&st.soar.soar.alert(*id).await?, v.tr, &agencies));
    }
    Ok(render(&Rows {
        tr: v.tr,
        rows,
        can_write: v.can_write(),
    }))
}

#[derive(Deserialize)]
struct TriageForm {
    ids: String,
    state: String,
    #[serde(default)]
    reason: String,
}

async fn triage(
    State(st): State<ConsoleState>,
    v: Viewer,
    axum::Form(f): axum::Form<TriageForm>,
) -> PageResult {
    if !v.can_write() {
        return Err(PageError::forbidden().page(&v));
    }
    let ids = parse_ids(&f.ids).map_err(fail(&v))?;
    alerts_in_scope(&st, &v, &ids).await.map_err(fail(&v))?;
    let t = Triage {
        state: AlertState::parse(&f.state).map_err(soar_fail(&v))?,
        reason: non_empty(&f.reason),
    };
    st.soar
        .soar
        .triage_alerts(&v.auth.actor(), &ids, &t)
        .await
        .map_err(soar_fail(&v))?;
    rows_for(&st, &v, &ids).await.map_err(fail(&v))
}

#[derive(Deserialize)]
struct EscalateForm {
    ids: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    agency: String,
}

/// Escalates alerts: into a new incident of the chosen agency, or (when no agency is given)
/// only the triage state.
async fn escalate(
    State(st): State<ConsoleState>,
    v: Viewer,
    axum::Form(f): axum::Form<EscalateForm>,
) -> PageResult {
    if !v.can_write() {
        return Err(PageError::forbidden().page(&v));
    }
    let ids = parse_ids(&f.ids).map_err(fail(&v))?;
    alerts_in_scope(&st, &v, &ids).await.map_err(fail(&v))?;
    let agency = non_empty(&f.agency)
        .map(|s| s.parse::<i64>())
        .transpose()
        .map_err(|_| PageError::bad("agency").page(&v))?;
    let mut incident = None;
    if let Some(agency_id) = agency {
        if !v.auth.can_see(Some(agency_id)) {
            return Err(PageError::forbidden().page(&v));
        }
        let first = st.soar.soar.alert(ids[0]).await.map_err(soar_fail(&v))?;
        let severity = non_empty(&f.severity)
            .and_then(|s| s.parse::<Severity>().ok())
            .unwrap_or(first.severity);
        let title = non_empty(&f.title).unwrap_or(first.rule_title);
        let new = NewIncident {
            title,
            description: String::new(),
            severity,
            agency_id,
            detected_at: None,
            alert_ids: ids.clone(),
        };
        let inc = st
            .soar
            .soar
            .create_incident(&v.auth.actor(), new)
            .await
            .map_err(soar_fail(&v))?;
        incident = Some(inc.id);
    } else {
        let t = Triage {
            state: AlertState::Escalated,
            reason: None,
        };
        st.soar
            .soar
            .triage_alerts(&v.auth.actor(), &ids, &t)
            .await
            .map_err(soar_fail(&v))?;
    }
    let mut resp = rows_for(&st, &v, &ids).await.map_err(fail(&v))?;
    if let Some(id) = incident
        && let Ok(h) = HeaderValue::from_str(&id.to_string())
    {
        resp.headers_mut().insert("x-canh-incident", h);
    }
    Ok(resp)
}

struct RelatedEvent {
    time: String,
    host: String,
    text: String,
}

#[derive(Template)]
#[template(path = "alert_detail.html")]
struct Detail {
    tr: Tr,
    a: Row,
    level: String,
    raw: String,
    related: Vec<Row>,
    events: Vec<RelatedEvent>,
    events_error: bool,
    pivot: String,
}

impl Detail {
    fn t(&self, id: &str) -> String {
        self.tr.t(id)
    }
}

async fn detail(State(st): State<ConsoleState>, v: Viewer, Path(id): Path<i64>) -> PageResult {
    let a = st.soar.soar.alert(id).await.map_err(soar_fail(&v))?;
    if !v.auth.can_see(a.agency_id) {
        return Err(PageError::forbidden().page(&v));
    }
    let agencies = visible_agencies(&st, &v).await.map_err(soar_fail(&v))?;
    let f = AlertFilter {
        group_id: Some(a.group_id),
        limit: Some(11),
        ..AlertFilter::default()
    };
    let group = st
        .soar
        .soar
        .alerts(&f, v.auth.scope.as_deref())
        .await
        .map_err(soar_fail(&v))?;
    let related = group
        .items
        .iter()
        .filter(|o| o.id != a.id)
        .take(10)
        .map(|o| Row::new(o, v.tr, &agencies))
        .collect();
    let from = a.first_seen - chrono::Duration::hours(1);
    let to = a.last_seen + chrono::Duration::hours(1);
    let q = if a.host.is_empty() {
        String::new()
    } else {
        format!(
            "host.name:\"{}\"",
            a.host.replace('\\', "\\\\").replace('"', "\\\"")
        )
    };
    let (events, events_error) = match scope_query(&st, &v, &q).await {
        Ok(Some(expr)) if !a.host.is_empty() => match related_events(&st, expr, from, to).await {
            Ok(evs) => (evs, false),
            Err(()) => (Vec::new(), true),
        },
        _ => (Vec::new(), false),
    };
    let events = events
        .into_iter()
        .map(|e| RelatedEvent {
            time: super::i18n::fmt_time_secs(e.timestamp),
            host: e.get_str("host.name").unwrap_or("").to_owned(),
            text: e
                .get_str("message")
                .or_else(|| e.get_str("event.original"))
                .unwrap_or("")
                .chars()
                .take(200)
                .collect(),
        })
        .collect();
    let pivot = format!(
        "/console/search?q={}&from={}&to={}",
        url_encode(&q),
        url_encode(&from.to_rfc3339()),
        url_encode(&to.to_rfc3339())
    );
    let d = Detail {
        tr: v.tr,
        level: a.rule_level.clone(),
        raw: serde_json::to_string_pretty(&a.event).unwrap_or_default(),
        a: Row::new(&a, v.tr, &agencies),
        related,
        events,
        events_error,
        pivot,
    };
    Ok(render(&d))
}
