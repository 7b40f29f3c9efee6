//! Search API: `/api/v1/search`, `/api/v1/search/count`, `/api/v1/search/histogram`,
//! `/api/v1/sql` and `/api/v1/deadletters`.

use crate::http::AppState;
use crate::ingest_http::api_error;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use canh_store::{Cursor, SearchRequest, StoreError};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Most hits one search page returns.
pub const MAX_LIMIT: usize = 10_000;

/// Who is searching: the local command line (every event) or a logged-in user, whose agency
/// scope limits the events to those of their agencies.
pub struct Reader {
    /// `organization.id` values the caller may see; `None` = all.
    pub agencies: Option<Vec<String>>,
}

impl Reader {
    /// The caller's query restricted to their agencies; `None` when they see no agency at all.
    pub fn scoped(&self, query: canh_core::query::Expr) -> Option<canh_core::query::Expr> {
        use canh_core::query::Expr;
        match &self.agencies {
            None => Some(query),
            Some(codes) if codes.is_empty() => None,
            Some(codes) => {
                let allowed = Expr::Or(
                    codes
                        .iter()
                        .map(|c| Expr::Term {
                            field: Some("organization.id".into()),
                            value: c.clone(),
                        })
                        .collect(),
                );
                Some(Expr::And(vec![allowed, query]))
            }
        }
    }

    /// A 403 answer unless the caller sees every agency (SQL and dead letters cannot be
    /// scoped).
    fn refuse_scoped(&self) -> Option<Response> {
        self.agencies.is_some().then(|| {
            api_error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this endpoint needs access to every agency",
            )
        })
    }
}

impl axum::extract::FromRequestParts<Arc<AppState>> for Reader {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if let Some(t) = bearer
            && constant_time_eq(t.as_bytes(), st.local_token.as_bytes())
        {
            return Ok(Reader { agencies: None });
        }
        let user = crate::soar::auth::AuthUser::from_request_parts(parts, st)
            .await
            .map_err(IntoResponse::into_response)?;
        let Some(ids) = user.scope else {
            return Ok(Reader { agencies: None });
        };
        let mut codes = Vec::with_capacity(ids.len());
        for id in ids {
            match st.soar.soar.agency(id).await {
                Ok(a) => codes.push(a.code),
                Err(e) => tracing::warn!(agency = id, error = %e, "agency in scope not found"),
            }
        }
        Ok(Reader {
            agencies: Some(codes),
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn empty_scope(kind: &str) -> Response {
    match kind {
        "count" => axum::Json(json!({"buckets": []})).into_response(),
        "histogram" => axum::Json(json!({"buckets": []})).into_response(),
        _ => axum::Json(json!({"total": 0, "hits": [], "next_cursor": null})).into_response(),
    }
}

/// The request's query limited to the caller's agencies and its time range, or the answer to
/// give at once (a bad query, or an empty result for a caller who sees no agency).
fn scoped_range(
    reader: &Reader,
    p: &SearchParams,
    kind: &str,
) -> Result<(canh_core::query::Expr, DateTime<Utc>, DateTime<Utc>), Box<Response>> {
    let (query, from, to) = range_and_query(p.q.as_deref(), p.from.as_deref(), p.to.as_deref())
        .map_err(|m| Box::new(api_error(StatusCode::BAD_REQUEST, "invalid_query", &m)))?;
    let query = reader
        .scoped(query)
        .ok_or_else(|| Box::new(empty_scope(kind)))?;
    Ok((query, from, to))
}

/// Routes of the search API.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/search", get(search))
        .route("/api/v1/search/count", get(count))
        .route("/api/v1/search/histogram", get(histogram))
        .route("/api/v1/sql", post(sql))
        .route("/api/v1/deadletters", get(dead_letters))
}

#[derive(Deserialize)]
struct SearchParams {
    /// Query in the filter language; empty matches everything.
    q: Option<String>,
    /// Start of the range (RFC 3339, date, epoch seconds or `now-24h`); default `now-24h`.
    from: Option<String>,
    /// End of the range; default `now`.
    to: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    /// Field for `/search/count`.
    field: Option<String>,
    /// Bucket width for `/search/histogram`, e.g. `1h`, `5m`.
    interval: Option<String>,
}

fn store_error(e: &StoreError) -> Response {
    match e {
        StoreError::Invalid(_) | StoreError::Query(_) => api_error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            &crate::pipeline::error_chain(e),
        ),
        _ => {
            tracing::error!(error = %crate::pipeline::error_chain(e), "search failed");
            api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "event store unavailable",
            )
        }
    }
}

/// Time range and query shared by the search endpoints.
pub fn range_and_query(
    q: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(canh_core::query::Expr, DateTime<Utc>, DateTime<Utc>), String> {
    let now = Utc::now();
    let from = canh_core::time::parse_time_expr(from.unwrap_or("now-24h"), now)
        .map_err(|e| e.to_string())?;
    let to = match to {
        // The end is exclusive: `now` must include what arrived this very second.
        None => now + chrono::Duration::seconds(1),
        Some(t) => canh_core::time::parse_time_expr(t, now).map_err(|e| e.to_string())?,
    };
    let expr = canh_core::query::parse(q.unwrap_or("")).map_err(|e| e.to_string())?;
    Ok((expr, from, to))
}

async fn search(
    State(st): State<Arc<AppState>>,
    reader: Reader,
    Query(p): Query<SearchParams>,
) -> Response {
    let (query, from, to) = match scoped_range(&reader, &p, "search") {
        Ok(r) => r,
        Err(answer) => return *answer,
    };
    let cursor = match p.cursor.as_deref().map(str::parse::<Cursor>).transpose() {
        Ok(c) => c,
        Err(e) => return store_error(&e),
    };
    let limit = p.limit.unwrap_or(100).min(MAX_LIMIT);
    let started = std::time::Instant::now();
    let res = st
        .pipeline
        .store()
        .search(SearchRequest {
            query,
            from,
            to,
            limit,
            cursor,
        })
        .await;
    st.metrics.set(
        "canh_store_query_seconds",
        &[("kind", "search")],
        started.elapsed().as_secs_f64(),
    );
    match res {
        Ok(page) => {
            let hits: Vec<serde_json::Value> = page
                .hits
                .into_iter()
                .map(|h| {
                    let mut v = serde_json::to_value(&h.event).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("_id".into(), json!(h.id.to_string()));
                    }
                    v
                })
                .collect();
            axum::Json(json!({"total": page.total, "hits": hits, "next_cursor": page.next_cursor.map(|c| c.to_string())}))
                .into_response()
        }
        Err(e) => store_error(&e),
    }
}

async fn count(
    State(st): State<Arc<AppState>>,
    reader: Reader,
    Query(p): Query<SearchParams>,
) -> Response {
    let (query, from, to) = match scoped_range(&reader, &p, "count") {
        Ok(r) => r,
        Err(answer) => return *answer,
    };
    let Some(field) = p.field else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "missing_field",
            "field is required",
        );
    };
    let limit = p.limit.unwrap_or(10).min(MAX_LIMIT);
    match st
        .pipeline
        .store()
        .count_by(&field, &query, from, to, limit)
        .await
    {
        Ok(rows) => {
            let buckets: Vec<_> = rows
                .into_iter()
                .map(|(k, n)| json!({"value": k, "count": n}))
                .collect();
            axum::Json(json!({"field": field, "buckets": buckets})).into_response()
        }
        Err(e) => store_error(&e),
    }
}

/// Parses `30s`, `5m`, `1h`, `1d`.
pub fn parse_interval(s: &str) -> Option<chrono::Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().ok()?;
    match unit {
        "s" => chrono::Duration::try_seconds(n),
        "m" => chrono::Duration::try_minutes(n),
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        _ => None,
    }
    .filter(|d| *d > chrono::Duration::zero())
}

async fn histogram(
    State(st): State<Arc<AppState>>,
    reader: Reader,
    Query(p): Query<SearchParams>,
) -> Response {
    let (query, from, to) = match scoped_range(&reader, &p, "histogram") {
        Ok(r) => r,
        Err(answer) => return *answer,
    };
    let interval = match p.interval.as_deref() {
        None => {
            // About 60 buckets over the range, at least one second each.
            let secs = ((to - from).num_seconds() / 60).max(1);
            chrono::Duration::seconds(secs)
        }
        Some(s) => match parse_interval(s) {
            Some(d) => d,
            None => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_interval",
                    "interval is like 30s, 5m, 1h or 1d",
                );
            }
        },
    };
    match st
        .pipeline
        .store()
        .histogram(&query, from, to, interval)
        .await
    {
        Ok(b) => axum::Json(json!({"interval_seconds": interval.num_seconds(), "buckets": b}))
            .into_response(),
        Err(e) => store_error(&e),
    }
}

#[derive(Deserialize)]
struct SqlBody {
    query: String,
}

async fn sql(
    State(st): State<Arc<AppState>>,
    reader: Reader,
    axum::Json(body): axum::Json<SqlBody>,
) -> Response {
    if let Some(r) = reader.refuse_scoped() {
        return r;
    }
    let started = std::time::Instant::now();
    let res = st.pipeline.store().sql(&body.query).await;
    st.metrics.set(
        "canh_store_query_seconds",
        &[("kind", "sql")],
        started.elapsed().as_secs_f64(),
    );
    match res {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(e) => match e {
            StoreError::Invalid(_) | StoreError::Query(_) => api_error(
                StatusCode::BAD_REQUEST,
                "invalid_sql",
                &crate::pipeline::error_chain(&e),
            ),
            other => store_error(&other),
        },
    }
}

async fn dead_letters(
    State(st): State<Arc<AppState>>,
    reader: Reader,
    Query(p): Query<SearchParams>,
) -> Response {
    if let Some(r) = reader.refuse_scoped() {
        return r;
    }
    let (query, from, to) =
        match range_and_query(p.q.as_deref(), p.from.as_deref(), p.to.as_deref()) {
            Ok(r) => r,
            Err(m) => return api_error(StatusCode::BAD_REQUEST, "invalid_query", &m),
        };
    let limit = p.limit.unwrap_or(100).min(MAX_LIMIT);
    let store = Arc::clone(st.pipeline.store());
    let res =
        tokio::task::spawn_blocking(move || store.dead_letters().search(&query, from, to, limit))
            .await;
    match res {
        Ok(Ok(letters)) => {
            let items: Vec<_> = letters
                .iter()
                .map(|l| {
                    json!({"time": l.time, "source": l.source, "reason": l.reason, "peer": l.peer,
                           "raw": String::from_utf8_lossy(&l.raw)})
                })
                .collect();
            axum::Json(json!({"dead_letters": items})).into_response()
        }
        Ok(Err(e)) => store_error(&e),
        Err(_) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "search task failed",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse() {
        assert_eq!(parse_interval("5m"), Some(chrono::Duration::minutes(5)));
        assert_eq!(parse_interval("0s"), None);
        assert_eq!(parse_interval("h"), None);
        assert_eq!(parse_interval("3y"), None);
    }
}
