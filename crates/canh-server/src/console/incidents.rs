//! Incidents: the list, a new-incident form, and one incident with the seven-step stepper and
//! its sign-offs, tasks per step, timeline, evidence upload (SHA-256 shown), observables and
//! deadline countdowns.

use super::{
    Chrome, ConsoleState, PageError, PageResult, Viewer, chrome, fmt_time, render, soar_fail,
};
use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use canh_soar::incident::{IncidentPatch, Observable, ReportKind};
use canh_soar::{Incident, IncidentFilter, NewIncident, Severity, Step};
use http_body_util::BodyExt;
use serde::Deserialize;
use std::collections::HashMap;

pub(super) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/console/incidents", get(list).post(create))
        .route("/console/incidents/{id}", get(detail))
        .route("/console/incidents/{id}/step", post(step))
        .route("/console/incidents/{id}/close", post(close))
        .route("/console/incidents/{id}/tasks", post(add_task))
        .route("/console/incidents/{id}/tasks/{task}", post(task_done))
        .route("/console/incidents/{id}/observables", post(add_observable))
        .route("/console/incidents/{id}/notes", post(add_note))
        .route("/console/incidents/{id}/reports", post(report_sent))
        .route("/console/incidents/{id}/capacity", post(beyond_capacity))
        .route("/console/incidents/{id}/evidence", post(upload))
}

struct ListRow {
    id: i64,
    title: String,
    sev: &'static str,
    sev_name: String,
    step: String,
    agency: String,
    opened: String,
    closed: bool,
    next_due: String,
    next_due_iso: String,
    overdue: bool,
}

struct Opt {
    value: String,
    label: String,
}

#[derive(Template)]
#[template(path = "incidents.html")]
struct ListPage {
    c: Chrome,
    rows: Vec<ListRow>,
    show_closed: bool,
    can_write: bool,
    agencies: Vec<Opt>,
    severities: Vec<Opt>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ListQuery {
    closed: String,
}

async fn list(State(st): State<ConsoleState>, v: Viewer, Query(q): Query<ListQuery>) -> PageResult {
    let tr = v.tr;
    let show_closed = q.closed == "1";
    let f = IncidentFilter {
        closed: Some(show_closed),
        limit: Some(500),
        ..IncidentFilter::default()
    };
    let now = st.soar.soar.now();
    let items = st
        .soar
        .soar
        .incidents(&f, v.auth.scope.as_deref())
        .await
        .map_err(soar_fail(&v))?
        .items;
    let rows = items
        .iter()
        .map(|i| {
            let next = i
                .deadlines(now)
                .into_iter()
                .filter(|d| d.sent_at.is_none())
                .filter_map(|d| d.due.map(|due| (due, d.overdue)))
                .min_by_key(|(due, _)| *due);
            ListRow {
                id: i.id,
                title: i.title.clone(),
                sev: i.severity.as_str(),
                sev_name: tr.k("console-sev", i.severity.as_str()),
                step: tr.k("console-step", i.step.as_str()),
                agency: i.agency_name.clone(),
                opened: fmt_time(i.opened_at),
                closed: i.closed,
                next_due: next.map(|(d, _)| fmt_time(d)).unwrap_or_default(),
                next_due_iso: next.map(|(d, _)| d.to_rfc3339()).unwrap_or_default(),
                overdue: next.is_some_and(|(_, o)| o),
            }
        })
        .collect();
    let agencies = st.soar.soar.agencies().await.map_err(soar_fail(&v))?;
    let visible: Vec<_> = agencies
        .into_iter()
        .filter(|a| a.merged_into.is_none() && v.auth.can_see(Some(a.id)))
        .collect();
    let agencies = super::wall::agency_tree(&visible)
        .into_iter()
        .map(|(a, depth)| Opt {
            value: a.id.to_string(),
            label: format!("{}{}", "· ".repeat(depth), a.name),
        })
        .collect();
    let severities = Severity::ALL
        .iter()
        .map(|s| Opt {
            value: s.as_str().to_owned(),
            label: tr.k("console-sev", s.as_str()),
        })
        .collect();
    Ok(render(&ListPage {
        c: chrome(&v, "incidents", "/console/incidents"),
        rows,
        show_closed,
        can_write: v.can_write(),
        agencies,
        severities,
    }))
}

#[derive(Deserialize)]
struct CreateForm {
    title: String,
    #[serde(default)]
    description: String,
    severity: String,
    agency: i64,
}

async fn create(
    State(st): State<ConsoleState>,
    v: Viewer,
    axum::Form(f): axum::Form<CreateForm>,
) -> PageResult {
    if !v.can_write() || !v.auth.can_see(Some(f.agency)) {
        return Err(PageError::forbidden().page(&v));
    }
    let severity = f
        .severity
        .parse::<Severity>()
        .map_err(|e| PageError::bad(e.to_string()).page(&v))?;
    let new = NewIncident {
        title: f.title,
        description: f.description,
        severity,
        agency_id: f.agency,
        detected_at: None,
        alert_ids: Vec::new(),
    };
    let inc = st
        .soar
        .soar
        .create_incident(&v.auth.actor(), new)
        .await
        .map_err(soar_fail(&v))?;
    Ok(Redirect::to(&format!("/console/incidents/{}", inc.id)).into_response())
}

// ---- one incident ----

struct StepView {
    id: &'static str,
    n: usize,
    name: String,
    /// `done`, `current` or `todo`.
    status: &'static str,
    signoff: Option<String>,
    tasks: Vec<TaskView>,
}

struct TaskView {
    id: i64,
    title: String,
    done: bool,
}

struct DeadlineView {
    kind: &'static str,
    name: String,
    due: String,
    due_iso: String,
    sent: String,
    overdue: bool,
    started: bool,
}

struct EvidenceView {
    filename: String,
    sha256: String,
    size: i64,
    at: String,
    by: String,
}

struct TimelineView {
    at: String,
    kind: String,
    who: String,
    text: String,
}

#[derive(Template)]
#[template(path = "incident.html")]
struct DetailPage {
    c: Chrome,
    i: Incident,
    sev: &'static str,
    sev_name: String,
    sev_definition: String,
    agency: String,
    detected: String,
    opened: String,
    steps: Vec<StepView>,
    next_step: Option<(&'static str, String)>,
    can_loop: bool,
    can_close: bool,
    can_write: bool,
    deadlines: Vec<DeadlineView>,
    evidence: Vec<EvidenceView>,
    observables: Vec<Observable>,
    timeline: Vec<TimelineView>,
    alerts: Vec<i64>,
    step_options: Vec<(&'static str, String)>,
}

async fn incident_in_scope(st: &ConsoleState, v: &Viewer, id: i64) -> Result<Incident, Response> {
    let inc = st.soar.soar.incident(id).await.map_err(soar_fail(v))?;
    if !v.auth.can_see(Some(inc.agency_id)) {
        // The same answer as for an unknown id: a viewer learns nothing about other agencies.
        return Err(PageError::not_found().page(v));
    }
    Ok(inc)
}

fn report_id(k: ReportKind) -> &'static str {
    match k {
        ReportKind::Notice => "notice",
        ReportKind::InitialReport => "initial_report",
        ReportKind::ClosingReport => "closing_report",
    }
}

async fn detail(State(st): State<ConsoleState>, v: Viewer, Path(id): Path<i64>) -> PageResult {
    let tr = v.tr;
    let inc = incident_in_scope(&st, &v, id).await?;
    let soar = &st.soar.soar;
    let names: HashMap<i64, String> = soar
        .users()
        .await
        .map_err(soar_fail(&v))?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect();
    let who = |uid: Option<i64>| {
        uid.and_then(|u| names.get(&u).cloned())
            .unwrap_or_else(|| tr.t("console-system"))
    };
    let signoffs = soar.signoffs(id).await.map_err(soar_fail(&v))?;
    let tasks = soar.tasks(id).await.map_err(soar_fail(&v))?;
    let cur = inc.step as usize;
    let steps = Step::ALL
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let status = if inc.closed || n < cur {
                "done"
            } else if n == cur {
                "current"
            } else {
                "todo"
            };
            // The latest sign-off that left this step.
            let signoff = signoffs
                .iter()
                .rev()
                .find(|so| so.from_step == s.as_str())
                .map(|so| {
                    format!(
                        "{} · {} · {}",
                        who(Some(so.signed_by)),
                        fmt_time(so.signed_at),
                        so.summary
                    )
                });
            StepView {
                id: s.as_str(),
                n: n + 1,
                name: tr.k("console-step", s.as_str()),
                status,
                signoff,
                tasks: tasks
                    .iter()
                    .filter(|t| t.step == *s)
                    .map(|t| TaskView {
                        id: t.id,
                        title: t.title.clone(),
                        done: t.done,
                    })
                    .collect(),
            }
        })
        .collect();
    let next_step = if inc.closed {
        None
    } else {
        Step::ALL
            .get(cur + 1)
            .map(|s| (s.as_str(), tr.k("console-step", s.as_str())))
    };
    let now = soar.now();
    let deadlines = inc
        .deadlines(now)
        .into_iter()
        .map(|d| DeadlineView {
            kind: report_id(d.kind),
            name: tr.k("console-report", report_id(d.kind)),
            due: d.due.map(fmt_time).unwrap_or_default(),
            due_iso: d.due.map(|t| t.to_rfc3339()).unwrap_or_default(),
            sent: d.sent_at.map(fmt_time).unwrap_or_default(),
            overdue: d.overdue,
            started: d.due.is_some(),
        })
        .collect();
    let evidence = soar
        .incident_evidence(id)
        .await
        .map_err(soar_fail(&v))?
        .into_iter()
        .map(|e| EvidenceView {
            filename: e.filename,
            sha256: e.sha256,
            size: e.size,
            at: fmt_time(e.uploaded_at),
            by: who(e.uploaded_by),
        })
        .collect();
    let timeline = soar
        .timeline(id)
        .await
        .map_err(soar_fail(&v))?
        .into_iter()
        .map(|t| TimelineView {
            at: fmt_time(t.at),
            kind: t.kind,
            who: who(t.actor_id),
            text: t.text,
        })
        .collect();
    let profile = soar.profiles();
    let sev_definition = profile
        .get(&inc.profile_id, inc.profile_version)
        .and_then(|p| p.severities.iter().find(|s| s.id == inc.severity.as_str()))
        .map(|s| match tr.lang {
            super::Lang::Vi => s.description_vi.clone(),
            super::Lang::En => s.description_en.clone(),
        })
        .unwrap_or_default();
    let page = DetailPage {
        c: chrome(&v, "incidents", format!("/console/incidents/{id}")),
        sev: inc.severity.as_str(),
        sev_name: tr.k("console-sev", inc.severity.as_str()),
        sev_definition,
        agency: inc.agency_name.clone(),
        detected: fmt_time(inc.detected_at),
        opened: fmt_time(inc.opened_at),
        steps,
        next_step,
        can_loop: !inc.closed && inc.step == Step::Recover,
        can_close: !inc.closed && inc.step == Step::PostIncident,
        can_write: v.can_write() && !inc.closed,
        deadlines,
        evidence,
        observables: soar.observables(id).await.map_err(soar_fail(&v))?,
        timeline,
        alerts: soar.incident_alerts(id).await.map_err(soar_fail(&v))?,
        step_options: Step::ALL
            .iter()
            .map(|s| (s.as_str(), tr.k("console-step", s.as_str())))
            .collect(),
        i: inc,
    };
    Ok(render(&page))
}

fn back(id: i64) -> Response {
    Redirect::to(&format!("/console/incidents/{id}")).into_response()
}

async fn writable(st: &ConsoleState, v: &Viewer, id: i64) -> Result<Incident, Response> {
    if !v.can_write() {
        return Err(PageError::forbidden().page(v));
    }
    incident_in_scope(st, v, id).await
}

#[derive(Deserialize)]
struct StepForm {
    version: i64,
    to: String,
    summary: String,
}

async fn step(
    State(st): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<StepForm>,
) -> PageResult {
    writable(&st, &v, id).await?;
    let to = Step::parse(&f.to).map_err(soar_fail(&v))?;
    st.soar
        .soar
        .transition_incident(&v.auth.actor(), id, f.version, to, &f.summary)
        .await
        .map_err(soar_fail(&v))?;
    Ok(back(id))
}

#[derive(Deserialize)]
struct CloseForm {
    version: i64,
    summary: String,
    #[serde(default)]
    waiver: String,
}

async fn close(
    State(st): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<CloseForm>,
) -> PageResult {
    writable(&st, &v, id).await?;
    let waiver = Some(f.waiver.as_str()).filter(|w| !w.trim().is_empty());
    st.soar
        .soar
        .close_incident(&v.auth.actor(), id, f.version, &f.summary, waiver)
        .await
        .map_err(soar_fail(&v))?;
    Ok(back(id))
}

#[derive(Deserialize)]
struct TaskForm {
    step: String,
    title: String,
}

async fn add_task(
    State(st): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<TaskForm>,
) -> PageResult {
    writable(&st, &v, id).await?;
    let s = Step::parse(&f.step).map_err(soar_fail(&v))?;
    st.soar
        .soar
        .add_task(&v.auth.actor(), id, s, &f.title)
        .await
        .map_err(soar_fail(&v))?;
    Ok(back(id))
}

#[derive(Deserialize)]
struct DoneForm {
    #[serde(default)]
    done: String,
}

async fn task_done(
    State(st): State<ConsoleState>,
    v: Viewer,
    Path((id, task)): Path<(i64, i64)>,
    axum::Form(f): axum::Form<DoneForm>,
) -> PageResult {
    writable(&st, &v, id).await?;
    let t = st.soar.soar.task(task).await.map_err(soar_fail(&v))?;
    if t.incident_id != id {
        return Err(PageError::bad("task").page(&v));
    }
    st.soar
        .soar
        .update_task(&v.auth.actor(), task, f.done == "1", None)
        .await
        .map_err(soar_fail(&v))?;
    Ok(back(id))
}

#[derive(Deserialize)]
struct ObservableForm {
    kind: String,
    value: String,
    #[serde(default)]
    ioc: String,
}

async fn add_observable(
    State(st): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<ObservableForm>,
) -> PageResult {
    writable(&st, &v, id).await?;
    let o = Observable {
        kind: f.kind,
        value: f.value,
        ioc: !f.ioc.is_empty(),
    };
    st.soar
        .soar
        .add_observable(&v.auth.actor(), id, o)
        .await
        .map_err(soar_fail(&v))?;
    Ok(back(id))
}

#[derive(Deserialize)]
struct NoteForm {
    text: String,
}

async fn add_note(
    State(st): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<NoteForm>,
) -> PageResult {
    writable(&st, &v, id).await?;
    st.soar
        .soar
        .add_note(&v.auth.actor(), id, &f.text)
        .await
        .map_err(soar_fail(&v))?;
    Ok(back(id))
}

#[derive(Deserialize)]
struct ReportForm {
    version: i64,
    kind: String,
}

async fn report_sent(
    State(st): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<ReportForm>,
) -> PageResult {
    writable(&st, &v, id).await?;
    let kind = match f.kind.as_str() {
        "notice" => ReportKind::Notice,
        "initial_report" => ReportKind::InitialReport,
        "closing_report" => ReportKind::ClosingReport,
        _ => return Err(PageError::bad("kind").page(&v)),
    };
    st.soar
        .soar
        .mark_report_sent(&v.auth.actor(), id, f.version, kind, None)
        .await
        .map_err(soar_fail(&v))?;
    Ok(back(id))
}

#[derive(Deserialize)]
struct CapacityForm {
    version: i64,
}

async fn beyond_capacity(
    State(st): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<CapacityForm>,
) -> PageResult {
    writable(&st, &v, id).await?;
    let patch = IncidentPatch {
        beyond_capacity: Some(true),
        ..IncidentPatch::default()
    };
    st.soar
        .soar
        .update_incident(&v.auth.actor(), id, f.version, patch)
        .await
        .map_err(soar_fail(&v))?;
    Ok(back(id))
}

#[derive(Deserialize)]
struct UploadQuery {
    filename: String,
    #[serde(default)]
    description: String,
}

/// Streams the request body into the evidence vault; answers with the stored item's hash as a
/// small HTML fragment (the page reloads to show the list).
async fn upload(
    State(st): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<i64>,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> PageResult {
    writable(&st, &v, id).await?;
    let soar = &st.soar.soar;
    let mut w = soar
        .evidence_writer(st.soar.config.max_evidence_bytes)
        .await
        .map_err(soar_fail(&v))?;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| PageError::bad(format!("upload interrupted: {e}")).page(&v))?;
        if let Ok(data) = frame.into_data() {
            w.write(&data).await.map_err(soar_fail(&v))?;
        }
    }
    let ev = soar
        .finish_evidence(&v.auth.actor(), id, &q.filename, &q.description, w)
        .await
        .map_err(soar_fail(&v))?;
    let html = format!(
        "<p class=\"ok\" role=\"status\">{} <code class=\"sha\">{}</code></p>",
        v.tr.t("console-incident-evidence-stored"),
        ev.sha256
    );
    Ok((StatusCode::CREATED, axum::response::Html(html)).into_response())
}
