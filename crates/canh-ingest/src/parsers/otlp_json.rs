//! OpenTelemetry OTLP logs in the JSON encoding (`ExportLogsServiceRequest`, as sent to
//! `/v1/logs`): `resourceLogs[].scopeLogs[].logRecords[]`, one event per log record. Attribute
//! values of every type (string, bool, int, double, bytes, array, kvlist) are converted.

use canh_core::{Event, Value, fields as f};
use serde_json::Map;

use super::{Confidence, LogParser, ParseCtx, ParseError};
use crate::norm::{self, ocsf};

/// Parser for OTLP/JSON log export requests.
pub struct OtlpJsonParser;

const ID: &str = "otlp_json";

/// Prefixes of semantic-convention attributes that have the same meaning in ECS, copied to
/// top-level fields as well as kept under `otel.*`.
const ECS_PREFIXES: &[&str] = &[
    "service.",
    "host.",
    "container.",
    "cloud.",
    "user.",
    "source.",
    "destination.",
    "url.",
];

/// Converts an OTLP `AnyValue` to JSON.
pub(crate) fn any_value(v: &Value, depth: usize) -> Value {
    let Some(o) = v.as_object() else {
        return Value::Null;
    };
    if depth > canh_core::event::MAX_NESTING {
        return Value::Null;
    }
    if let Some(s) = o.get("stringValue") {
        return s.clone();
    }
    if let Some(b) = o.get("boolValue") {
        return b.clone();
    }
    if let Some(i) = o.get("intValue") {
        // int64 is a JSON string in OTLP/JSON (proto3 mapping); numbers are accepted too.
        return match i {
            Value::String(s) => s.parse::<i64>().map_or_else(|_| i.clone(), Value::from),
            other => other.clone(),
        };
    }
    if let Some(d) = o.get("doubleValue") {
        return d.clone();
    }
    if let Some(b) = o.get("bytesValue") {
        return b.clone();
    }
    if let Some(a) = o.get("arrayValue") {
        let items = a.get("values").and_then(Value::as_array);
        let list = items.map(|l| l.iter().map(|x| any_value(x, depth + 1)).collect());
        return Value::Array(list.unwrap_or_default());
    }
    if let Some(kv) = o.get("kvlistValue") {
        let mut map = Map::new();
        if let Some(values) = kv.get("values").and_then(Value::as_array) {
            attributes_into(values, &mut map, depth + 1);
        }
        return Value::Object(map);
    }
    Value::Null
}

fn attributes_into(list: &[Value], out: &mut Map<String, Value>, depth: usize) {
    for kv in list {
        let Some(key) = kv.get("key").and_then(Value::as_str) else {
            continue;
        };
        let value = kv.get("value").map_or(Value::Null, |v| any_value(v, depth));
        out.insert(key.to_owned(), value);
    }
}

fn attrs(obj: Option<&Value>) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(list) = obj
        .and_then(|o| o.get("attributes"))
        .and_then(Value::as_array)
    {
        attributes_into(list, &mut out, 0);
    }
    out
}

fn nanos_time(v: Option<&Value>) -> Option<chrono::DateTime<chrono::Utc>> {
    let n: i64 = match v? {
        Value::String(s) => s.parse().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    (n > 0).then(|| chrono::DateTime::from_timestamp_nanos(n))
}

fn set_attrs(ev: &mut Event, prefix: &str, map: &Map<String, Value>) {
    for (k, v) in map {
        if ECS_PREFIXES.iter().any(|p| k.starts_with(p)) && !v.is_object() {
            ev.set(k, v.clone());
        }
        norm::flatten_under(ev, &format!("{prefix}.{k}"), v, 0);
    }
}

fn record(
    rec: &Value,
    resource: &Map<String, Value>,
    scope: Option<&Value>,
    text: &norm::Text<'_>,
    cx: &ParseCtx,
) -> Event {
    let time = nanos_time(rec.get("timeUnixNano"))
        .or_else(|| nanos_time(rec.get("observedTimeUnixNano")))
        .unwrap_or(cx.received());
    let mut ev = norm::new_event(time, text, cx);
    set_attrs(&mut ev, "otel.resource.attributes", resource);
    if let Some(s) = scope {
        if let Some(name) = s.get("name").and_then(Value::as_str) {
            ev.set("otel.scope.name", name);
        }
        if let Some(v) = s.get("version").and_then(Value::as_str) {
            ev.set("otel.scope.version", v);
        }
    }
    set_attrs(&mut ev, "otel.attributes", &attrs(Some(rec)));
    if let Some(n) = rec.get("severityNumber").and_then(Value::as_u64) {
        ev.set(norm::EVENT_SEVERITY, n);
    }
    if let Some(t) = rec.get("severityText").and_then(Value::as_str) {
        ev.set(norm::LOG_LEVEL, t);
    }
    if let Some(t) = rec
        .get("traceId")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        ev.set("trace.id", t.to_ascii_lowercase());
    }
    if let Some(s) = rec
        .get("spanId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        ev.set("span.id", s.to_ascii_lowercase());
    }
    if let Some(body) = rec.get("body") {
        match any_value(body, 0) {
            Value::String(s) => ev.set(f::MESSAGE, s),
            Value::Null => {}
            other @ Value::Object(_) => norm::flatten_under(&mut ev, "otel.body", &other, 0),
            other => ev.set(f::MESSAGE, other.to_string()),
        }
    }
    if let Some(n) = rec.get("eventName").and_then(Value::as_str) {
        ev.set(f::EVENT_ACTION, n);
    }
    norm::tag(&mut ev, ID, "otlp_json.logs", ocsf::UNKNOWN);
    ev
}

fn export(raw: &[u8], cx: &ParseCtx) -> Result<Vec<Event>, ParseError> {
    let text = norm::decode(raw);
    let obj = norm::json_object(ID, &text.s)?;
    let resource_logs = obj
        .get("resourceLogs")
        .and_then(Value::as_array)
        .ok_or_else(|| ParseError::invalid(ID, "missing resourceLogs"))?;
    let mut out = Vec::new();
    for rl in resource_logs {
        let resource = attrs(rl.get("resource"));
        let Some(scopes) = rl.get("scopeLogs").and_then(Value::as_array) else {
            continue;
        };
        for sl in scopes {
            let Some(records) = sl.get("logRecords").and_then(Value::as_array) else {
                continue;
            };
            for rec in records {
                // Each event keeps its own record as `event.original`, not the whole request.
                let one = serde_json::to_string(rec).unwrap_or_default();
                let rec_text = norm::Text {
                    s: one.into(),
                    lossy: text.lossy,
                };
                out.push(record(rec, &resource, sl.get("scope"), &rec_text, cx));
            }
        }
    }
    Ok(out)
}

impl LogParser for OtlpJsonParser {
    fn id(&self) -> &'static str {
        ID
    }

    fn describe(&self) -> &'static str {
        "OpenTelemetry OTLP/JSON log export requests (one event per log record)"
    }

    fn probe(&self, raw: &[u8]) -> Confidence {
        if norm::first_non_ws(raw) == Some(b'{')
            && norm::head_contains(raw, 64, b"\"resourceLogs\"")
        {
            Confidence::Certain
        } else {
            Confidence::No
        }
    }

    /// The first record of the request; use `parse_many` for all of them.
    fn parse(&self, raw: &[u8], cx: &ParseCtx) -> Result<Event, ParseError> {
        let mut all = export(raw, cx)?;
        match all.len() {
            0 => Err(ParseError::invalid(ID, "request holds no log record")),
            1 => Ok(all.remove(0)),
            n => Err(ParseError::invalid(
                ID,
                format!("request holds {n} records; use parse_many"),
            )),
        }
    }

    fn parse_many(&self, raw: &[u8], cx: &ParseCtx) -> Vec<Result<Event, ParseError>> {
        match export(raw, cx) {
            Ok(events) => events.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        }
    }
}
