//! Any JSON object, flat or nested (ECS documents from Beats, Elastic Agent, Vector, Fluent
//! Bit, an NDJSON file): nested objects become dotted names. Fields the shipper set are kept,
//! including its own `event.module`; the parser only fills what is missing.

use canh_core::{Event, Value, fields as f};

use super::{Confidence, LogParser, ParseCtx, ParseError};
use crate::norm::{self, ocsf};

/// Parser for JSON objects (ECS or any shape).
pub struct EcsJsonParser;

const ID: &str = "ecs_json";

/// Keys read as the event time when `@timestamp` is absent, in order.
const TIME_KEYS: &[&str] = &["timestamp", "time", "ts", "date"];

impl LogParser for EcsJsonParser {
    fn id(&self) -> &'static str {
        ID
    }

    fn describe(&self) -> &'static str {
        "JSON objects (ECS or any shape, one per line); nested objects become dotted names"
    }

    fn probe(&self, raw: &[u8]) -> Confidence {
        if norm::first_non_ws(raw) == Some(b'{') {
            Confidence::Low
        } else {
            Confidence::No
        }
    }

    fn parse(&self, raw: &[u8], cx: &ParseCtx) -> Result<Event, ParseError> {
        let text = norm::decode(raw);
        let mut obj = norm::json_object(ID, &text.s)?;
        let mut note = None;
        let ts = obj.get("@timestamp").cloned();
        if let Some(ts) = ts {
            let valid = match &ts {
                Value::String(s) => canh_core::time::parse_timestamp(s).is_some(),
                Value::Number(n) => n.as_i64().is_some(),
                _ => false,
            };
            if !valid {
                obj.remove("@timestamp");
                obj.insert("canh.invalid_timestamp".to_owned(), ts);
                note = Some("invalid @timestamp");
            }
        } else if let Some(t) = TIME_KEYS.iter().find_map(|k| {
            obj.get(*k)
                .and_then(Value::as_str)
                .and_then(canh_core::time::parse_timestamp)
        }) {
            obj.insert("@timestamp".to_owned(), Value::from(t.to_rfc3339()));
        }
        let mut ev = Event::from_json_object(obj, cx.received())?;
        norm::add_common(&mut ev, &text, cx);
        if let Some(n) = note {
            norm::add_parse_error(&mut ev, n);
        }
        if ev.get(f::MESSAGE).is_none()
            && let Some(m) = ["msg", "log"]
                .iter()
                .find_map(|k| ev.get_str(k).map(str::to_owned))
        {
            ev.set(f::MESSAGE, m);
        }
        if ev.get(f::EVENT_MODULE).is_none() {
            ev.set(f::EVENT_MODULE, ID);
        }
        if ev.get(f::EVENT_DATASET).is_none() {
            ev.set(f::EVENT_DATASET, "ecs_json");
        }
        if ev.get(f::OCSF_CLASS_UID).is_none() {
            ev.set(f::OCSF_CLASS_UID, ocsf::UNKNOWN);
        }
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_shipper_module_and_flattens() {
        let raw = br#"{"@timestamp":"2024-05-01T10:00:00Z","event":{"module":"system","dataset":"system.auth"},"host":{"name":"a"}}"#;
        let ev = EcsJsonParser.parse(raw, &ParseCtx::default()).unwrap();
        assert_eq!(ev.get_str("event.module"), Some("system"));
        assert_eq!(ev.get_str("host.name"), Some("a"));
        assert!(ev.get_str("event.ingested").is_some());
    }

    #[test]
    fn bad_timestamp_is_kept_and_flagged() {
        let ev = EcsJsonParser
            .parse(br#"{"@timestamp":"soon","a":1}"#, &ParseCtx::default())
            .unwrap();
        assert_eq!(ev.get_str("canh.invalid_timestamp"), Some("soon"));
        assert_eq!(ev.get_str("canh.parse_error"), Some("invalid @timestamp"));
    }
}
