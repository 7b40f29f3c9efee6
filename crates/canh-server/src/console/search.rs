//! Search: query bar (filter language or SQL), time presets, a histogram drawn server-side as
//! inline SVG, a field sidebar with top values, the results table with a column chooser, and
//! CSV/JSON export. Users limited to some agencies search only events whose `organization.id`
//! is one of their agencies' codes, and cannot run SQL (it cannot be scoped).
//!
//! Long queries: the store work of a search runs in a task of its own, registered under a query
//! id. It is aborted when the browser goes away (the handler is dropped with its connection) or
//! when the user presses Cancel (`POST /console/search/cancel`); an aborted DataFusion query
//! stops at its next batch, and the remaining steps (histogram, top values) never start.
//! Saved searches (name, query, time range) are kept per user in the incident-handling store.

use super::i18n::fmt_time_secs;
use super::{
    Chrome, ConsoleState, PageError, PageResult, Tr, Viewer, chrome, render, soar_fail, url_encode,
};
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use canh_core::Event;
use canh_core::query::Expr;
use canh_soar::SavedSearch;
use canh_store::SearchRequest;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Fields offered in the sidebar and the column chooser.
const SIDEBAR_FIELDS: [&str; 6] = [
    "host.name",
    "event.module",
    "event.dataset",
    "source.ip",
    "user.name",
    "rule.name",
];
const PAGE_ROWS: usize = 100;
const EXPORT_ROWS: usize = 10_000;
const PRESETS: [&str; 5] = ["15m", "1h", "24h", "7d", "30d"];

pub(super) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/console/search", get(search))
        .route("/console/search/export", get(export))
        .route("/console/search/cancel", post(cancel))
        .route("/console/search/running", get(running))
        .route("/console/search/saved", post(save))
        .route("/console/search/saved/{id}/delete", post(delete_saved))
}

/// Status of a search the user cancelled (as nginx's "client closed request").
const CANCELLED: u16 = 499;

/// Searches whose store work is running, by query id.
#[derive(Default)]
pub struct Running {
    tasks: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    user: i64,
    /// Tells this run apart from a later one that reuses the id.
    token: u64,
    handle: tokio::task::AbortHandle,
}

impl Running {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Aborts the user's search `qid`; false when there is none. The entry goes away when the
    /// task has really stopped.
    fn cancel(&self, user: i64, qid: &str) -> bool {
        match self.lock().get(qid) {
            Some(e) if e.user == user => {
                e.handle.abort();
                true
            }
            _ => false,
        }
    }

    /// The user's running query ids.
    fn of(&self, user: i64) -> Vec<String> {
        let mut ids: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.user == user)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }
}

/// Lives inside the task: when the work ends, or is dropped because the task was aborted, the
/// search is no longer listed as running.
struct Finished {
    running: Arc<Running>,
    qid: String,
    token: u64,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let mut map = self.running.lock();
        if map.get(&self.qid).is_some_and(|e| e.token == self.token) {
            map.remove(&self.qid);
        }
    }
}

/// Aborts the task when the handler ends, also when it is dropped because the client went away.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A query id from the page (letters, digits, `-`), or a fresh one.
fn query_id(given: &str) -> String {
    let ok = !given.is_empty()
        && given.len() <= 64
        && given
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        return given.to_owned();
    }
    let mut raw = [0u8; 12];
    if getrandom::fill(&mut raw).is_err() {
        // No randomness: a counter still keeps ids apart within this process.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        return format!(
            "s-{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
    }
    hex::encode(raw)
}

/// Runs `work` as a task registered under `qid` for this user; `None` when it was cancelled.
async fn run_registered<T: Send + 'static>(
    st: &ConsoleState,
    user: i64,
    qid: &str,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> Option<T> {
    static TOKENS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let token = TOKENS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let finished = Finished {
        running: st.searches.clone(),
        qid: qid.to_owned(),
        token,
    };
    let task = {
        // Held while spawning, so that a task ending at once finds its entry to remove.
        let mut map = st.searches.lock();
        let task = tokio::spawn(async move {
            let _finished = finished;
            work.await
        });
        let entry = Entry {
            user,
            token,
            handle: task.abort_handle(),
        };
        if let Some(old) = map.insert(qid.to_owned(), entry) {
            // A reused id: the older search is superseded.
            old.handle.abort();
        }
        task
    };
    let _abort = AbortOnDrop(task.abort_handle());
    match task.await {
        Ok(v) => Some(v),
        Err(e) if e.is_cancelled() => None,
        Err(e) => {
            tracing::error!(error = %e, "search task failed");
            None
        }
    }
}

/// The viewer's query limited to their agencies; `Ok(None)` when they see no agency.
pub(super) async fn scope_query(
    st: &ConsoleState,
    v: &Viewer,
    q: &str,
) -> Result<Option<Expr>, String> {
    let expr = canh_core::query::parse(q).map_err(|e| e.to_string())?;
    let Some(ids) = &v.auth.scope else {
        return Ok(Some(expr));
    };
    let mut terms = Vec::new();
    for id in ids {
        match st.soar.soar.agency(*id).await {
            Ok(a) => terms.push(Expr::Term {
                field: Some("organization.id".into()),
                value: a.code,
            }),
            Err(e) => tracing::warn!(agency = id, error = %e, "agency in scope not found"),
        }
    }
    if terms.is_empty() {
        return Ok(None);
    }
    Ok(Some(Expr::And(vec![Expr::Or(terms), expr])))
}

/// Up to 10 events around an alert.
pub(super) async fn related_events(
    st: &ConsoleState,
    query: Expr,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Event>, ()> {
    let req = SearchRequest {
        query,
        from,
        to,
        limit: 10,
        cursor: None,
    };
    match st.app.pipeline.store().search(req).await {
        Ok(p) => Ok(p.hits.into_iter().map(|h| h.event).collect()),
        Err(e) => {
            tracing::warn!(error = %e, "related events search failed");
            Err(())
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SearchQuery {
    q: String,
    from: String,
    to: String,
    /// `sql` for the SQL tab.
    mode: String,
    sql: String,
    /// Extra columns, comma separated.
    cols: String,
    /// `csv` or `json` (export only).
    format: String,
    /// Query id given by the page, for Cancel.
    qid: String,
}

impl SearchQuery {
    fn start_or_default(&self) -> &str {
        let f = self.from.trim();
        if f.is_empty() { "now-24h" } else { f }
    }

    fn columns(&self) -> Vec<String> {
        self.cols
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty() && c.len() < 100)
            .take(8)
            .map(str::to_owned)
            .collect()
    }

    fn range(&self) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
        let now = Utc::now();
        let from = canh_core::time::parse_time_expr(self.start_or_default(), now)
            .map_err(|e| e.to_string())?;
        let to = match self.to.trim() {
            "" | "now" => now + chrono::Duration::seconds(1),
            t => canh_core::time::parse_time_expr(t, now).map_err(|e| e.to_string())?,
        };
        if from >= to {
            return Err("the start of the range must be before its end".into());
        }
        Ok((from, to))
    }
}

struct Bar {
    x: String,
    y: String,
    h: String,
    w: String,
    label: String,
}

struct FieldTop {
    field: String,
    values: Vec<(String, u64, String)>,
}

struct Preset {
    label: String,
    href: String,
    active: bool,
}

struct ColChoice {
    field: String,
    checked: bool,
}

struct SavedRow {
    id: i64,
    name: String,
    href: String,
    detail: String,
}

fn saved_href(s: &SavedSearch) -> String {
    if s.mode == "sql" {
        format!("/console/search?mode=sql&sql={}", url_encode(&s.query))
    } else {
        format!(
            "/console/search?q={}&from={}&to={}",
            url_encode(&s.query),
            url_encode(&s.range_from),
            url_encode(&s.range_to)
        )
    }
}

/// What the store answered for a filter search.
struct FilterResults {
    page: Result<canh_store::Page, canh_store::StoreError>,
    buckets: Option<Vec<canh_store::Bucket>>,
    tops: Vec<(&'static str, Vec<(String, u64)>)>,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    c: Chrome,
    q: String,
    from: String,
    to: String,
    sql_mode: bool,
    sql: String,
    can_sql: bool,
    error: String,
    total: u64,
    shown: usize,
    bars: Vec<Bar>,
    hist_start: String,
    hist_end: String,
    hist_max: u64,
    fields: Vec<FieldTop>,
    presets: Vec<Preset>,
    cols: Vec<String>,
    col_choices: Vec<ColChoice>,
    cols_value: String,
    rows: Vec<(String, Vec<String>)>,
    sql_cols: Vec<String>,
    sql_rows: Vec<Vec<String>>,
    export_csv: String,
    export_json: String,
    ran: bool,
    cancelled: bool,
    saved: Vec<SavedRow>,
    saved_ok: bool,
}

fn cell(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn histogram_bars(buckets: &[canh_store::Bucket], tr: Tr) -> (Vec<Bar>, u64) {
    let w = 1000.0;
    let h = 120.0;
    let max = buckets.iter().map(|b| b.count).max().unwrap_or(0);
    if buckets.is_empty() {
        return (Vec::new(), 0);
    }
    let bw = w / buckets.len() as f64;
    let bars = buckets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let bh = if max == 0 {
                0.0
            } else {
                (b.count as f64 / max as f64) * (h - 4.0)
            };
            Bar {
                x: format!("{:.2}", i as f64 * bw),
                y: format!("{:.2}", h - bh),
                h: format!("{bh:.2}"),
                w: format!("{:.2}", (bw - 1.0).max(0.5)),
                label: format!(
                    "{} — {} {}",
                    super::fmt_time(b.start),
                    b.count,
                    tr.t("console-search-events")
                ),
            }
        })
        .collect();
    (bars, max)
}

async fn search(
    State(st): State<ConsoleState>,
    v: Viewer,
    Query(q): Query<SearchQuery>,
    Query(flags): Query<SavedFlag>,
) -> PageResult {
    let tr = v.tr;
    let saved = st
        .soar
        .soar
        .saved_searches(v.auth.user.id)
        .await
        .map_err(soar_fail(&v))?
        .iter()
        .map(|s| SavedRow {
            id: s.id,
            name: s.name.clone(),
            href: saved_href(s),
            detail: if s.mode == "sql" {
                format!("SQL · {}", s.query)
            } else {
                format!("{} · {} → {}", s.query, s.range_from, s.range_to)
            },
        })
        .collect();
    let qid = query_id(&q.qid);
    let sql_mode = q.mode == "sql";
    let cols = q.columns();
    let base = |from: &str| {
        format!(
            "/console/search?q={}&from={}&cols={}",
            url_encode(&q.q),
            url_encode(from),
            url_encode(&q.cols)
        )
    };
    let presets = PRESETS
        .iter()
        .map(|p| Preset {
            label: tr.t(&format!("console-search-preset-{p}")),
            href: base(&format!("now-{p}")),
            active: q.start_or_default() == format!("now-{p}") && q.to.trim().is_empty(),
        })
        .collect();
    let export = |fmt: &str| {
        format!(
            "/console/search/export?format={fmt}&q={}&from={}&to={}&cols={}",
            url_encode(&q.q),
            url_encode(q.start_or_default()),
            url_encode(&q.to),
            url_encode(&q.cols)
        )
    };
    let mut page = SearchPage {
        c: chrome(&v, "search", "/console/search"),
        q: q.q.clone(),
        from: q.start_or_default().to_owned(),
        to: q.to.clone(),
        sql_mode,
        sql: q.sql.clone(),
        can_sql: v.unscoped(),
        error: String::new(),
        total: 0,
        shown: 0,
        bars: Vec::new(),
        hist_start: String::new(),
        hist_end: String::new(),
        hist_max: 0,
        fields: Vec::new(),
        presets,
        col_choices: SIDEBAR_FIELDS
            .iter()
            .map(|f| ColChoice {
                field: (*f).to_owned(),
                checked: cols.iter().any(|c| c == f),
            })
            .collect(),
        cols_value: q.cols.clone(),
        cols,
        rows: Vec::new(),
        sql_cols: Vec::new(),
        sql_rows: Vec::new(),
        export_csv: export("csv"),
        export_json: export("json"),
        ran: false,
        cancelled: false,
        saved,
        saved_ok: flags.saved == "1",
    };
    if sql_mode {
        if !v.unscoped() {
            page.error = tr.t("console-search-sql-denied");
            return Ok((StatusCode::FORBIDDEN, render(&page)).into_response());
        }
        if q.sql.trim().is_empty() {
            return Ok(render(&page));
        }
        page.ran = true;
        let store = st.app.pipeline.store().clone();
        let sql = q.sql.clone();
        let Some(res) = run_registered(
            &st,
            v.auth.user.id,
            &qid,
            async move { store.sql(&sql).await },
        )
        .await
        else {
            return Ok(cancelled_page(page));
        };
        match res {
            Ok(rows) => {
                page.sql_cols = rows.columns;
                page.sql_rows = rows
                    .rows
                    .iter()
                    .take(1000)
                    .map(|r| r.iter().map(|c| cell(Some(c))).collect())
                    .collect();
            }
            Err(e) => page.error = crate::pipeline::error_chain(&e),
        }
        return Ok(render(&page));
    }
    let (from, to) = match q.range() {
        Ok(r) => r,
        Err(m) => {
            page.error = m;
            return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
        }
    };
    let expr = match scope_query(&st, &v, &q.q).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            page.ran = true;
            return Ok(render(&page));
        }
        Err(m) => {
            page.error = m;
            return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
        }
    };
    page.ran = true;
    let store = st.app.pipeline.store().clone();
    let interval = chrono::Duration::seconds(((to - from).num_seconds() / 60).max(1));
    let work_expr = expr.clone();
    let work = async move {
        let expr = work_expr;
        let page = store
            .search(SearchRequest {
                query: expr.clone(),
                from,
                to,
                limit: PAGE_ROWS,
                cursor: None,
            })
            .await;
        if page.is_err() {
            return FilterResults {
                page,
                buckets: None,
                tops: Vec::new(),
            };
        }
        let buckets = match store.histogram(&expr, from, to, interval).await {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!(error = %e, "histogram failed");
                None
            }
        };
        let mut tops = Vec::new();
        for field in SIDEBAR_FIELDS {
            match store.count_by(field, &expr, from, to, 5).await {
                Ok(values) if !values.is_empty() => tops.push((field, values)),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, field, "top values failed"),
            }
        }
        FilterResults {
            page,
            buckets,
            tops,
        }
    };
    let Some(results) = run_registered(&st, v.auth.user.id, &qid, work).await else {
        return Ok(cancelled_page(page));
    };
    match results.page {
        Ok(p) => {
            page.total = p.total;
            page.shown = p.hits.len();
            page.rows = p
                .hits
                .iter()
                .map(|h| {
                    let e = &h.event;
                    let mut cells = vec![
                        cell(e.get("host.name")),
                        cell(e.get("message").or_else(|| e.get("event.original"))),
                    ];
                    for c in &page.cols {
                        cells.push(cell(e.get(c)));
                    }
                    (fmt_time_secs(e.timestamp), cells)
                })
                .collect();
        }
        Err(e) => {
            page.error = crate::pipeline::error_chain(&e);
            return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
        }
    }
    if let Some(b) = results.buckets {
        let (bars, max) = histogram_bars(&b, tr);
        page.bars = bars;
        page.hist_max = max;
        page.hist_start = super::fmt_time(from);
        page.hist_end = super::fmt_time(to);
    }
    for (field, values) in results.tops {
        let values = values
            .into_iter()
            .map(|(val, n)| {
                let quoted = val.replace('\\', "\\\\").replace('"', "\\\"");
                let extra = format!("{field}:\"{quoted}\"");
                let nq = if q.q.trim().is_empty() {
                    extra
                } else {
                    format!("({}) AND {extra}", q.q.trim())
                };
                let href = format!(
                    "/console/search?q={}&from={}&to={}&cols={}",
                    url_encode(&nq),
                    url_encode(q.start_or_default()),
                    url_encode(&q.to),
                    url_encode(&q.cols)
                );
                (val, n, href)
            })
            .collect();
        page.fields.push(FieldTop {
            field: field.to_owned(),
            values,
        });
    }
    Ok(render(&page))
}

fn cancelled_page(mut page: SearchPage) -> Response {
    page.cancelled = true;
    page.ran = false;
    let status = StatusCode::from_u16(CANCELLED).unwrap_or(StatusCode::OK);
    (status, render(&page)).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SavedFlag {
    saved: String,
}

#[derive(Deserialize)]
struct CancelForm {
    qid: String,
}

/// Cancels one of the caller's running searches.
async fn cancel(
    State(st): State<ConsoleState>,
    v: Viewer,
    headers: HeaderMap,
    axum::Form(f): axum::Form<CancelForm>,
) -> Response {
    if !super::admin::same_origin(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    if st.searches.cancel(v.auth.user.id, &f.qid) {
        (StatusCode::OK, "cancelled").into_response()
    } else {
        (StatusCode::NOT_FOUND, "no such running search").into_response()
    }
}

/// The caller's running searches, one query id a line.
async fn running(State(st): State<ConsoleState>, v: Viewer) -> Response {
    let mut out = st.searches.of(v.auth.user.id).join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        out,
    )
        .into_response()
}

#[derive(Deserialize)]
struct SaveForm {
    name: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    sql: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// Saves the search shown on the page under a name, then shows it again.
async fn save(
    State(st): State<ConsoleState>,
    v: Viewer,
    headers: HeaderMap,
    axum::Form(f): axum::Form<SaveForm>,
) -> PageResult {
    if !super::admin::same_origin(&headers) {
        return Err(PageError::forbidden().page(&v));
    }
    let sql = f.mode == "sql";
    if sql && !v.unscoped() {
        return Err(PageError::forbidden().page(&v));
    }
    let search = SavedSearch {
        id: 0,
        name: f.name,
        mode: if sql { "sql" } else { "filter" }.to_owned(),
        query: if sql { f.sql } else { f.q },
        range_from: if sql { String::new() } else { f.from },
        range_to: if sql { String::new() } else { f.to },
        created_at: chrono::Utc::now(),
    };
    let saved = st
        .soar
        .soar
        .save_search(&v.auth.actor(), v.auth.user.id, &search)
        .await
        .map_err(soar_fail(&v))?;
    Ok(Redirect::to(&format!("{}&saved=1", saved_href(&saved))).into_response())
}

async fn delete_saved(
    State(st): State<ConsoleState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> PageResult {
    if !super::admin::same_origin(&headers) {
        return Err(PageError::forbidden().page(&v));
    }
    st.soar
        .soar
        .delete_saved_search(&v.auth.actor(), v.auth.user.id, id)
        .await
        .map_err(soar_fail(&v))?;
    Ok(Redirect::to("/console/search").into_response())
}

/// CSV (with a BOM, so that Excel reads the Vietnamese text as UTF-8) or JSON lines.
async fn export(
    State(st): State<ConsoleState>,
    v: Viewer,
    Query(q): Query<SearchQuery>,
) -> Response {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m).into_response();
    let (from, to) = match q.range() {
        Ok(r) => r,
        Err(m) => return bad(m),
    };
    let expr = match scope_query(&st, &v, &q.q).await {
        Ok(Some(e)) => e,
        Ok(None) => return StatusCode::FORBIDDEN.into_response(),
        Err(m) => return bad(m),
    };
    let req = SearchRequest {
        query: expr,
        from,
        to,
        limit: EXPORT_ROWS,
        cursor: None,
    };
    let hits = match st.app.pipeline.store().search(req).await {
        Ok(p) => p.hits,
        Err(e) => return bad(crate::pipeline::error_chain(&e)),
    };
    if q.format == "json" {
        let mut out = String::new();
        for h in &hits {
            out.push_str(&h.event.to_json_line());
            out.push('\n');
        }
        return (
            [
                (header::CONTENT_TYPE, "application/x-ndjson; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"canh-search.ndjson\"",
                ),
            ],
            out,
        )
            .into_response();
    }
    let mut cols = vec![
        "@timestamp".to_owned(),
        "host.name".to_owned(),
        "message".to_owned(),
    ];
    cols.extend(q.columns());
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut rows = vec![cols.clone()];
    for h in &hits {
        let e = &h.event;
        let mut r = vec![e.timestamp.to_rfc3339()];
        for c in cols.iter().skip(1) {
            r.push(cell(e.get(c)));
        }
        rows.push(r);
    }
    for r in &rows {
        if let Err(e) = w.write_record(r) {
            tracing::warn!(error = %e, "csv export failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    let mut body = "\u{FEFF}".as_bytes().to_vec();
    body.extend(w.into_inner().unwrap_or_default());
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"canh-search.csv\"",
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::Lang;

    #[test]
    fn histogram_bars_scale_to_the_tallest_bucket() {
        let t = Utc::now();
        let b = vec![
            canh_store::Bucket { start: t, count: 2 },
            canh_store::Bucket { start: t, count: 4 },
            canh_store::Bucket { start: t, count: 0 },
        ];
        let (bars, max) = histogram_bars(&b, Tr { lang: Lang::En });
        assert_eq!(max, 4);
        assert_eq!(bars.len(), 3);
        assert_eq!(bars[1].h, "116.00");
        assert_eq!(bars[2].h, "0.00");
        assert!(bars[0].label.ends_with("2 events"), "{}", bars[0].label);
    }

    #[test]
    fn ranges_are_checked() {
        let q = SearchQuery {
            from: "now-1h".into(),
            to: "now-2h".into(),
            ..SearchQuery::default()
        };
        assert!(q.range().is_err());
        let q = SearchQuery::default();
        assert!(q.range().is_ok());
        let q = SearchQuery {
            cols: "a, ,b".into(),
            ..SearchQuery::default()
        };
        assert_eq!(q.columns(), vec!["a", "b"]);
    }
}
