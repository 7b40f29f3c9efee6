//! Search: query bar (filter language or SQL), time presets, a histogram drawn server-side as
//! inline SVG, a field sidebar with top values, the results table with a column chooser, and
//! CSV/JSON export. Users limited to some agencies search only events whose `organization.id`
//! is one of their agencies' codes, and cannot run SQL (it cannot be scoped).

use super::i18n::fmt_time_secs;
use super::{Chrome, ConsoleState, PageResult, Tr, Viewer, chrome, render, url_encode};
use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use canh_core::Event;
use canh_core::query::Expr;
use canh_store::SearchRequest;
use chrono::{DateTime, Utc};
use serde::Deserialize;

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
) -> PageResult {
    let tr = v.tr;
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
        match st.app.pipeline.store().sql(&q.sql).await {
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
    let store = st.app.pipeline.store();
    let interval = chrono::Duration::seconds(((to - from).num_seconds() / 60).max(1));
    let res = store
        .search(SearchRequest {
            query: expr.clone(),
            from,
            to,
            limit: PAGE_ROWS,
            cursor: None,
        })
        .await;
    match res {
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
    match store.histogram(&expr, from, to, interval).await {
        Ok(b) => {
            let (bars, max) = histogram_bars(&b, tr);
            page.bars = bars;
            page.hist_max = max;
            page.hist_start = super::fmt_time(from);
            page.hist_end = super::fmt_time(to);
        }
        Err(e) => tracing::warn!(error = %e, "histogram failed"),
    }
    for field in SIDEBAR_FIELDS {
        match store.count_by(field, &expr, from, to, 5).await {
            Ok(values) if !values.is_empty() => {
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
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, field, "top values failed"),
        }
    }
    Ok(render(&page))
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
