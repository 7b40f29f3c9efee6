//! HTTP ingest APIs on the main port: Elasticsearch `_bulk` (with the probes Beats, Logstash and
//! Fluent Bit send first), NDJSON, OTLP logs over HTTP, Splunk HEC and GELF over HTTP.
//!
//! Every handler answers only after the batch's good events are in the WAL (fsync'd); a store
//! failure answers 503 so the shipper retries.

use crate::http::AppState;
use crate::pipeline::{Frame, ItemOutcome, PipelineError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The Elasticsearch version Canh answers as. Beats and the official clients refuse to talk
/// to a server that does not claim a compatible major version.
pub const ES_COMPAT_VERSION: &str = "8.11.0";

/// Routes of the ingest APIs.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(es_root).head(es_head))
        .route("/_bulk", post(es_bulk).put(es_bulk))
        .route("/{index}/_bulk", post(es_bulk_index).put(es_bulk_index))
        .route("/_license", get(es_license))
        .route("/_xpack", get(es_xpack))
        .route("/_cluster/health", get(es_cluster_health))
        .route("/_nodes", get(es_nodes))
        .route("/_nodes/{*rest}", get(es_nodes))
        .route(
            "/_index_template/{name}",
            put(es_ack).get(es_template_get).head(es_not_found),
        )
        .route(
            "/_template/{name}",
            put(es_ack).get(es_template_get).head(es_not_found),
        )
        .route(
            "/_ilm/policy/{name}",
            put(es_ack).get(es_empty).head(es_not_found),
        )
        .route("/_ingest/pipeline/{name}", put(es_ack).get(es_empty))
        .route("/_data_stream/{name}", put(es_ack).get(es_empty))
        .route("/api/v1/ingest/ndjson", post(ndjson))
        .route("/v1/logs", post(otlp_logs))
        .route("/services/collector", post(hec_event))
        .route("/services/collector/event", post(hec_event))
        .route("/services/collector/event/1.0", post(hec_event))
        .route("/services/collector/raw", post(hec_raw))
        .route("/services/collector/health", get(hec_health))
        .route("/gelf", post(gelf_http))
}

fn es_json(status: StatusCode, body: Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut().insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    r
}

async fn es_root() -> Response {
    es_json(
        StatusCode::OK,
        json!({
            "name": "canh",
            "cluster_name": "canh",
            "cluster_uuid": "canh-embedded-0000000000",
            "version": {
                "number": ES_COMPAT_VERSION,
                "build_flavor": "default",
                "build_type": "canh",
                "lucene_version": "9.8.0",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "You Know, for Search"
        }),
    )
}

async fn es_head() -> Response {
    let mut r = StatusCode::OK.into_response();
    r.headers_mut().insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    r
}

async fn es_license() -> Response {
    es_json(
        StatusCode::OK,
        json!({"license": {"status": "active", "type": "basic", "uid": "canh", "mode": "basic"}}),
    )
}

async fn es_xpack() -> Response {
    es_json(
        StatusCode::OK,
        json!({"build": {}, "license": {"status": "active", "type": "basic", "mode": "basic"}, "features": {}}),
    )
}

async fn es_cluster_health() -> Response {
    es_json(
        StatusCode::OK,
        json!({"cluster_name": "canh", "status": "green", "number_of_nodes": 1}),
    )
}

async fn es_nodes() -> Response {
    es_json(
        StatusCode::OK,
        json!({"_nodes": {"total": 1, "successful": 1, "failed": 0}, "cluster_name": "canh",
               "nodes": {"canh": {"name": "canh", "version": ES_COMPAT_VERSION, "roles": ["ingest", "data"]}}}),
    )
}

/// Template, policy and pipeline installs are accepted and ignored: Canh's schema is fixed.
async fn es_ack() -> Response {
    es_json(StatusCode::OK, json!({"acknowledged": true}))
}

async fn es_empty() -> Response {
    es_json(StatusCode::OK, json!({}))
}

async fn es_template_get(Path(name): Path<String>) -> Response {
    es_json(
        StatusCode::NOT_FOUND,
        json!({"error": {"type": "resource_not_found_exception", "reason": format!("index template matching [{name}] not found")}, "status": 404}),
    )
}

/// `HEAD` of a template: "not found" makes shippers install theirs (accepted by `es_ack`).
async fn es_not_found() -> Response {
    let mut r = StatusCode::NOT_FOUND.into_response();
    r.headers_mut().insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    r
}

async fn es_bulk(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    bulk(st, peer, None, &headers, body).await
}

async fn es_bulk_index(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(index): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    bulk(st, peer, Some(index), &headers, body).await
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn new_doc_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let t = chrono::Utc::now().timestamp_micros();
    format!("{t:x}{n:06x}")
}

/// One `_bulk` operation as parsed from its action line.
struct BulkOp {
    action: String,
    index: String,
    id: String,
    /// Position of this op's frame among the frames sent to the pipeline, if any.
    frame: Option<usize>,
    error: Option<(u16, &'static str, String)>,
}

async fn bulk(
    st: Arc<AppState>,
    peer: SocketAddr,
    default_index: Option<String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let body = match decode_body(headers, &body, st.config.server.max_body_bytes) {
        Ok(b) => b,
        Err(reason) => return es_error(StatusCode::BAD_REQUEST, "parse_exception", &reason),
    };
    let parser = canh_ingest::parser_by_id("ecs_json");
    let mut ops: Vec<BulkOp> = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    let mut lines = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    while let Some(action_line) = lines.next() {
        let default = default_index.clone().unwrap_or_else(|| "logs".to_owned());
        let Ok(Value::Object(action)) = serde_json::from_slice::<Value>(action_line) else {
            // Elasticsearch refuses the whole request when an action line is broken.
            let reason = "Malformed action/metadata line, expected an object with one action";
            st.pipeline
                .dead_letter("http_bulk", Some(peer), reason, action_line.to_vec());
            return es_error(
                StatusCode::BAD_REQUEST,
                "illegal_argument_exception",
                reason,
            );
        };
        let Some((name, meta)) = action.into_iter().next() else {
            return es_error(
                StatusCode::BAD_REQUEST,
                "illegal_argument_exception",
                "empty action",
            );
        };
        let index = meta
            .get("_index")
            .and_then(Value::as_str)
            .map_or(default, str::to_owned);
        let id = meta
            .get("_id")
            .and_then(Value::as_str)
            .map_or_else(new_doc_id, str::to_owned);
        match name.as_str() {
            "index" | "create" => {
                let Some(doc) = lines.next() else {
                    let reason = "action is missing its document line";
                    return es_error(
                        StatusCode::BAD_REQUEST,
                        "illegal_argument_exception",
                        reason,
                    );
                };
                ops.push(BulkOp {
                    action: name,
                    index,
                    id,
                    frame: Some(frames.len()),
                    error: None,
                });
                frames.push(Frame {
                    source: "http_bulk",
                    peer: Some(peer),
                    bytes: Ok(doc.to_vec()),
                    parser,
                    many: false,
                    agency: None,
                });
            }
            "update" => {
                let _doc = lines.next();
                let err = (
                    400,
                    "action_request_validation_exception",
                    "update is not supported: events are immutable".to_owned(),
                );
                ops.push(BulkOp {
                    action: name,
                    index,
                    id,
                    frame: None,
                    error: Some(err),
                });
            }
            "delete" => {
                let err = (
                    400,
                    "action_request_validation_exception",
                    "delete is not supported: events are immutable".to_owned(),
                );
                ops.push(BulkOp {
                    action: name,
                    index,
                    id,
                    frame: None,
                    error: Some(err),
                });
            }
            other => {
                let reason = format!(
                    "Malformed action/metadata line, expected one of [create, delete, index, update] but found [{other}]"
                );
                return es_error(
                    StatusCode::BAD_REQUEST,
                    "illegal_argument_exception",
                    &reason,
                );
            }
        }
    }
    let outcomes = match st.pipeline.ingest(frames).await {
        Ok(o) => o,
        Err(e) => return store_unavailable(&e),
    };
    let mut errors = false;
    let items: Vec<Value> = ops
        .into_iter()
        .map(|op| {
            let err = op
                .error
                .or_else(|| match op.frame.and_then(|i| outcomes.get(i)) {
                    Some(ItemOutcome::Refused(reason)) => {
                        Some((400, "document_parsing_exception", reason.clone()))
                    }
                    _ => None,
                });
            let body = match err {
                Some((status, kind, reason)) => {
                    errors = true;
                    json!({"_index": op.index, "_id": op.id, "status": status,
                           "error": {"type": kind, "reason": reason}})
                }
                None => json!({"_index": op.index, "_id": op.id, "_version": 1,
                               "result": "created", "status": 201,
                               "_shards": {"total": 1, "successful": 1, "failed": 0},
                               "_seq_no": 0, "_primary_term": 1}),
            };
            json!({ op.action: body })
        })
        .collect();
    let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    es_json(
        StatusCode::OK,
        json!({"took": took, "errors": errors, "items": items}),
    )
}

fn es_error(status: StatusCode, kind: &str, reason: &str) -> Response {
    es_json(
        status,
        json!({"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason}, "status": status.as_u16()}),
    )
}

fn store_unavailable(e: &PipelineError) -> Response {
    tracing::error!(error = %crate::pipeline::error_chain(e), "batch refused: store unavailable");
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(
            json!({"code": "store_unavailable", "message": "event store unavailable, retry later"}),
        ),
    )
        .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// Undoes `Content-Encoding: gzip|deflate` with a size cap.
fn decode_body(headers: &HeaderMap, body: &Bytes, max: usize) -> Result<Vec<u8>, String> {
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match enc.trim() {
        "" | "identity" => Ok(body.to_vec()),
        "gzip" | "deflate" | "x-gzip" => canh_ingest::framing::gelf::decompress(body, max)
            .map(std::borrow::Cow::into_owned)
            .map_err(|e| e.to_string()),
        other => Err(format!("unsupported content encoding {other:?}")),
    }
}

#[derive(Deserialize)]
struct NdjsonParams {
    /// Parser id; `auto` (default) picks by content.
    format: Option<String>,
}

/// `POST /api/v1/ingest/ndjson`: one record per line (JSON or any text format Canh parses).
async fn ndjson(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(params): Query<NdjsonParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parser = match params.format.as_deref() {
        None | Some("auto") => None,
        Some(id) => match canh_ingest::parser_by_id(id) {
            Some(p) => Some(p),
            None => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "unknown_format",
                    &format!("unknown format {id:?}"),
                );
            }
        },
    };
    let body = match decode_body(&headers, &body, st.config.server.max_body_bytes) {
        Ok(b) => b,
        Err(reason) => return api_error(StatusCode::BAD_REQUEST, "bad_encoding", &reason),
    };
    let frames = line_frames(&body, "http_ndjson", peer, parser);
    match st.pipeline.ingest(frames).await {
        Ok(outcomes) => {
            let mut accepted = 0usize;
            let mut errors = Vec::new();
            for (i, o) in outcomes.iter().enumerate() {
                match o {
                    ItemOutcome::Stored(n) => accepted += n,
                    ItemOutcome::Refused(r) => errors.push(json!({"line": i + 1, "reason": r})),
                }
            }
            let rejected = errors.len();
            axum::Json(json!({"accepted": accepted, "rejected": rejected, "errors": errors}))
                .into_response()
        }
        Err(e) => store_unavailable(&e),
    }
}

/// `POST /v1/logs`: OTLP logs over HTTP (JSON encoding; protobuf where built in).
async fn otlp_logs(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let is_proto = ctype.starts_with("application/x-protobuf");
    let parser = canh_ingest::parser_by_id("otlp_json");
    let body = match decode_body(&headers, &body, st.config.server.max_body_bytes) {
        Ok(b) => b,
        Err(reason) => return api_error(StatusCode::BAD_REQUEST, "bad_encoding", &reason),
    };
    let body = if is_proto {
        match crate::otlp::protobuf_to_json(&body) {
            Ok(json) => json,
            Err(e) => {
                let reason = format!("invalid OTLP protobuf: {e}");
                st.pipeline
                    .dead_letter("otlp_http", Some(peer), &reason, body);
                return api_error(StatusCode::BAD_REQUEST, "invalid_otlp", &reason);
            }
        }
    } else {
        body
    };
    let frame = Frame {
        source: "otlp_http",
        peer: Some(peer),
        bytes: Ok(body),
        parser,
        many: true,
        agency: None,
    };
    match st.pipeline.ingest(vec![frame]).await {
        Ok(outcomes) => match outcomes.first() {
            Some(ItemOutcome::Refused(reason)) => {
                api_error(StatusCode::BAD_REQUEST, "invalid_otlp", reason)
            }
            _ if is_proto => {
                // An empty ExportLogsServiceResponse encodes as zero bytes.
                (
                    [(header::CONTENT_TYPE, "application/x-protobuf")],
                    Vec::new(),
                )
                    .into_response()
            }
            _ => axum::Json(json!({})).into_response(),
        },
        Err(e) => store_unavailable(&e),
    }
}

/// `POST /services/collector/event`: Splunk HEC event envelopes, one or many per body.
async fn hec_event(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(body) = decode_body(&headers, &body, st.config.server.max_body_bytes) else {
        return hec_reply(StatusCode::BAD_REQUEST, 6, "Invalid data format");
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return hec_reply(StatusCode::BAD_REQUEST, 5, "No data");
    }
    let parser = canh_ingest::parser_by_id("splunk_hec");
    let frame = Frame {
        source: "splunk_hec",
        peer: Some(peer),
        bytes: Ok(body),
        parser,
        many: true,
        agency: None,
    };
    match st.pipeline.ingest(vec![frame]).await {
        Ok(outcomes) => match outcomes.first() {
            Some(ItemOutcome::Refused(_)) => {
                hec_reply(StatusCode::BAD_REQUEST, 6, "Invalid data format")
            }
            _ => hec_reply(StatusCode::OK, 0, "Success"),
        },
        Err(e) => store_unavailable(&e),
    }
}

/// `POST /services/collector/raw`: raw lines, parsed by content.
async fn hec_raw(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(body) = decode_body(&headers, &body, st.config.server.max_body_bytes) else {
        return hec_reply(StatusCode::BAD_REQUEST, 6, "Invalid data format");
    };
    let frames = line_frames(&body, "splunk_hec_raw", peer, None);
    match st.pipeline.ingest(frames).await {
        Ok(_) => hec_reply(StatusCode::OK, 0, "Success"),
        Err(e) => store_unavailable(&e),
    }
}

/// One frame per non-blank line (CRLF or LF), for line-oriented bodies.
fn line_frames(
    body: &[u8],
    source: &'static str,
    peer: SocketAddr,
    parser: Option<&'static dyn canh_ingest::LogParser>,
) -> Vec<Frame> {
    body.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| Frame {
            source,
            peer: Some(peer),
            bytes: Ok(l.to_vec()),
            parser,
            many: false,
            agency: None,
        })
        .collect()
}

async fn hec_health() -> Response {
    hec_reply(StatusCode::OK, 17, "HEC is healthy")
}

fn hec_reply(status: StatusCode, code: u32, text: &str) -> Response {
    (status, axum::Json(json!({"text": text, "code": code}))).into_response()
}

/// `POST /gelf`: one GELF message per request (plain, gzip or zlib).
async fn gelf_http(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let bytes = canh_ingest::framing::gelf::decompress(&body, st.config.server.max_message_bytes)
        .map(std::borrow::Cow::into_owned)
        .map_err(|e| e.to_string());
    let parser = canh_ingest::parser_by_id("gelf");
    let frame = Frame {
        source: "gelf_http",
        peer: Some(peer),
        bytes,
        parser,
        many: false,
        agency: None,
    };
    match st.pipeline.ingest(vec![frame]).await {
        Ok(outcomes) => match outcomes.first() {
            Some(ItemOutcome::Refused(reason)) => {
                api_error(StatusCode::BAD_REQUEST, "invalid_gelf", reason)
            }
            _ => StatusCode::ACCEPTED.into_response(),
        },
        Err(e) => store_unavailable(&e),
    }
}

/// The API's error body: a stable code and a message.
pub fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}
