//! Detection rules: the live rule catalogue (see [`crate::rules`]) with its state. Every
//! logged-in user reads the list and tests a rule against the stored events of the agencies
//! they see; administrators and SOC leads turn rules on or off and set their agency scope.
//! Forms are plain same-origin POSTs that lead back to the list.

use super::{Chrome, ConsoleState, PageError, PageResult, Viewer, chrome, render};
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

pub(super) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/console/rules", get(page))
        .route("/console/rules/{id}/state", post(set_state))
        .route("/console/rules/{id}/scope", post(set_scope))
}

/// Sample hits shown by a test.
const SAMPLE: usize = 10;

struct Row {
    id: String,
    /// The id, percent-encoded for a URL path or query.
    url_id: String,
    title: String,
    level: String,
    check: String,
    reason: String,
    enabled: bool,
    scope: String,
    version: u32,
    source: String,
}

struct HitRow {
    time: String,
    host: String,
    agency: String,
    message: String,
}

struct TestResult {
    id: String,
    from: String,
    count: u64,
    scanned: u64,
    hits: Vec<HitRow>,
    error: String,
}

#[derive(Template)]
#[template(path = "rules.html")]
struct RulesPage {
    c: Chrome,
    ok: String,
    detection_on: bool,
    can_edit: bool,
    rules: Vec<Row>,
    test: Option<TestResult>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PageQuery {
    ok: String,
    /// Rule to test.
    test: String,
    /// Start of the test range.
    from: String,
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn may_edit(v: &Viewer) -> bool {
    v.auth.role().can_administer()
}

/// Agency codes the viewer sees; `None` = all.
async fn viewer_agencies(st: &ConsoleState, v: &Viewer) -> Option<Vec<String>> {
    let ids = v.auth.scope.as_ref()?;
    let mut codes = Vec::with_capacity(ids.len());
    for id in ids {
        if let Ok(a) = st.soar.soar.agency(*id).await {
            codes.push(a.code);
        }
    }
    Some(codes)
}

async fn run_test(st: &ConsoleState, v: &Viewer, id: &str, from: &str) -> TestResult {
    let mut out = TestResult {
        id: id.to_owned(),
        from: from.to_owned(),
        count: 0,
        scanned: 0,
        hits: Vec::new(),
        error: String::new(),
    };
    let Some(cat) = st.app.rules.as_ref() else {
        return out;
    };
    let Some(text) = cat.text(id).await else {
        out.error = v.tr.t("console-error-not-found");
        return out;
    };
    let (query, from_t, to_t) = match crate::api::range_and_query(None, Some(from), None) {
        Ok(r) => r,
        Err(m) => {
            out.error = m;
            return out;
        }
    };
    let reader = crate::api::Reader {
        agencies: viewer_agencies(st, v).await,
    };
    let Some(query) = reader.scoped(query) else {
        return out;
    };
    let compiled =
        tokio::task::spawn_blocking(move || crate::rules::compile_for_test(&[text])).await;
    let set = match compiled {
        Ok(Ok((set, _))) => set,
        Ok(Err(m)) => {
            out.error = m;
            return out;
        }
        Err(e) => {
            out.error = e.to_string();
            return out;
        }
    };
    let engine = canh_detect::Engine::new(set);
    let store = st.app.pipeline.store();
    match crate::rules::hunt_store(store, &engine, query, from_t, to_t, SAMPLE, |_, _| {}).await {
        Ok(found) => {
            out.count = found.count;
            out.scanned = found.scanned;
            out.hits = found
                .hits
                .iter()
                .map(|h| HitRow {
                    time: super::fmt_time(h.event.timestamp),
                    host: h.event.get_str("host.name").unwrap_or("").to_owned(),
                    agency: h.event.get_str("organization.id").unwrap_or("").to_owned(),
                    message: h
                        .event
                        .get_str("message")
                        .unwrap_or("")
                        .chars()
                        .take(300)
                        .collect(),
                })
                .collect();
        }
        Err(e) => out.error = e.to_string(),
    }
    out
}

async fn page(State(st): State<ConsoleState>, v: Viewer, Query(q): Query<PageQuery>) -> PageResult {
    let tr = v.tr;
    let mut rules = Vec::new();
    if let Some(cat) = st.app.rules.as_ref() {
        for r in cat.list().await {
            rules.push(Row {
                check: tr.k("console-rules-check", &r.described.check),
                reason: r.described.reason.clone().unwrap_or_default(),
                title: r.described.title.clone(),
                level: r.described.level.clone().unwrap_or_default(),
                enabled: r.enabled,
                scope: r.scope.join(", "),
                version: r.version,
                source: r
                    .source
                    .as_deref()
                    .and_then(|s| std::path::Path::new(s).file_name())
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "API".to_owned()),
                url_id: url_encode(&r.id),
                id: r.id,
            });
        }
    }
    let test = if q.test.is_empty() {
        None
    } else {
        let from = if q.from.trim().is_empty() {
            "now-24h".to_owned()
        } else {
            q.from.trim().to_owned()
        };
        Some(run_test(&st, &v, &q.test, &from).await)
    };
    let ok = match q.ok.as_str() {
        "enabled" | "disabled" | "scoped" => tr.t(&format!("console-rules-ok-{}", q.ok)),
        _ => String::new(),
    };
    let page = RulesPage {
        c: chrome(&v, "rules", "/console/rules"),
        ok,
        detection_on: st.app.rules.is_some(),
        can_edit: may_edit(&v),
        rules,
        test,
    };
    Ok(render(&page))
}

#[derive(Deserialize)]
struct StateForm {
    action: String,
}

/// The refusal page unless the caller may change rules (administrator or SOC lead, on a
/// same-origin request).
fn refuse_change(v: &Viewer, headers: &HeaderMap) -> Option<Response> {
    (!may_edit(v) || !super::admin::same_origin(headers)).then(|| PageError::forbidden().page(v))
}

fn change_error(v: &Viewer, e: &crate::rules::RulesError) -> Response {
    match e {
        crate::rules::RulesError::NotFound(_) => PageError::not_found().page(v),
        other => PageError::bad(other.to_string()).page(v),
    }
}

async fn set_state(
    State(st): State<ConsoleState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<StateForm>,
) -> PageResult {
    if let Some(refused) = refuse_change(&v, &headers) {
        return Err(refused);
    }
    let Some(cat) = st.app.rules.as_ref() else {
        return Err(PageError::not_found().page(&v));
    };
    let on = match f.action.as_str() {
        "enable" => true,
        "disable" => false,
        _ => return Err(PageError::bad("action").page(&v)),
    };
    let before = crate::rules::audit_state(cat, &id).await;
    cat.set_enabled(&id, on, &v.auth.user.name)
        .await
        .map_err(|e| change_error(&v, &e))?;
    let action = if on { "rule.enable" } else { "rule.disable" };
    crate::rules::audit_change(&st.app, &v.auth.actor(), action, &id, before).await;
    let ok = if on { "enabled" } else { "disabled" };
    Ok(Redirect::to(&format!("/console/rules?ok={ok}")).into_response())
}

#[derive(Deserialize)]
struct ScopeForm {
    agencies: String,
}

async fn set_scope(
    State(st): State<ConsoleState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<ScopeForm>,
) -> PageResult {
    if let Some(refused) = refuse_change(&v, &headers) {
        return Err(refused);
    }
    let Some(cat) = st.app.rules.as_ref() else {
        return Err(PageError::not_found().page(&v));
    };
    let agencies = f
        .agencies
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    let before = crate::rules::audit_state(cat, &id).await;
    cat.set_scope(&id, agencies, &v.auth.user.name)
        .await
        .map_err(|e| change_error(&v, &e))?;
    crate::rules::audit_change(&st.app, &v.auth.actor(), "rule.scope", &id, before).await;
    Ok(Redirect::to("/console/rules?ok=scoped").into_response())
}
