//! Splunk HTTP Event Collector envelopes: `{"time","host","source","sourcetype","index",
//! "fields","event"}`. A request body may hold several envelopes back to back
//! ([`LogParser::parse_many`]). A string `event` becomes `message`; an object `event` is read
//! as an ECS-style JSON object.

use canh_core::{Event, Value, fields as f};
use serde_json::Map;

use super::{Confidence, LogParser, ParseCtx, ParseError};
use crate::norm::{self, ocsf};

/// Parser for Splunk HEC event envelopes.
pub struct SplunkHecParser;

const ID: &str = "splunk_hec";

fn envelope(
    obj: Map<String, Value>,
    text: &norm::Text<'_>,
    cx: &ParseCtx,
) -> Result<Event, ParseError> {
    let mut ev = norm::new_event(cx.received(), text, cx);
    let mut seen_event = false;
    for (k, v) in obj {
        match (k.as_str(), v) {
            ("time", t) => match crate::timefmt::from_json_epoch(&t) {
                Some(t) => ev.timestamp = t,
                None => norm::add_parse_error(&mut ev, "invalid time"),
            },
            ("host", Value::String(s)) => ev.set(f::HOST_NAME, s),
            ("source", Value::String(s)) => ev.set("splunk.source", s),
            ("sourcetype", Value::String(s)) => ev.set("splunk.sourcetype", s),
            ("index", Value::String(s)) => ev.set("splunk.index", s),
            ("fields", Value::Object(m)) => {
                norm::flatten_under(&mut ev, "splunk.fields", &Value::Object(m), 0);
            }
            ("event", Value::String(s)) => {
                seen_event = true;
                ev.set(f::MESSAGE, s);
            }
            ("event", Value::Object(m)) => {
                seen_event = true;
                let inner = Event::from_json_object(m, ev.timestamp)?;
                let time_given = ev.timestamp;
                for (name, value) in inner.fields {
                    ev.fields.insert(name, value);
                }
                if inner.timestamp != time_given {
                    ev.timestamp = inner.timestamp;
                }
            }
            ("event", other) => {
                seen_event = true;
                ev.set(f::MESSAGE, other.to_string());
            }
            (name, other) => {
                let key = format!("splunk.{name}");
                norm::flatten_under(&mut ev, &key, &other, 0);
            }
        }
    }
    if !seen_event {
        return Err(ParseError::invalid(ID, "envelope has no \"event\""));
    }
    if ev.get(f::EVENT_MODULE).is_none() {
        norm::tag(&mut ev, ID, "splunk_hec", ocsf::UNKNOWN);
    } else if ev.get(f::OCSF_CLASS_UID).is_none() {
        ev.set(f::OCSF_CLASS_UID, ocsf::UNKNOWN);
    }
    Ok(ev)
}

impl LogParser for SplunkHecParser {
    fn id(&self) -> &'static str {
        ID
    }

    fn describe(&self) -> &'static str {
        "Splunk HTTP Event Collector event envelopes (one or several per body)"
    }

    fn probe(&self, raw: &[u8]) -> Confidence {
        if norm::first_non_ws(raw) == Some(b'{')
            && norm::head_contains(raw, 4096, b"\"event\"")
            && (norm::head_contains(raw, 4096, b"\"sourcetype\"")
                || norm::head_contains(raw, 4096, b"\"time\""))
        {
            Confidence::Medium
        } else {
            Confidence::No
        }
    }

    fn parse(&self, raw: &[u8], cx: &ParseCtx) -> Result<Event, ParseError> {
        let text = norm::decode(raw);
        let obj = norm::json_object(ID, &text.s)?;
        envelope(obj, &text, cx)
    }

    fn parse_many(&self, raw: &[u8], cx: &ParseCtx) -> Vec<Result<Event, ParseError>> {
        let text = norm::decode(raw);
        let mut out = Vec::new();
        let stream = serde_json::Deserializer::from_str(&text.s).into_iter::<Value>();
        let mut offset = 0;
        let mut stream = stream;
        while let Some(item) = stream.next() {
            let end = stream.byte_offset();
            let piece = text.s.get(offset..end).unwrap_or("").trim();
            offset = end;
            let one = norm::Text {
                s: piece.into(),
                lossy: text.lossy,
            };
            match item {
                Ok(Value::Object(obj)) => out.push(envelope(obj, &one, cx)),
                Ok(_) => out.push(Err(ParseError::invalid(ID, "not a JSON object"))),
                Err(source) => {
                    out.push(Err(ParseError::Json { format: ID, source }));
                    break;
                }
            }
        }
        if out.is_empty() {
            out.push(Err(ParseError::Empty));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_of_two_envelopes() {
        let raw = br#"{"time":1426279439,"host":"web01","sourcetype":"access","event":"hello"}
{"time":"1426279440.5","event":{"user":{"name":"bob"},"message":"x"},"fields":{"env":"prod"}}"#;
        let evs = SplunkHecParser.parse_many(raw, &ParseCtx::default());
        assert_eq!(evs.len(), 2);
        let a = evs[0].as_ref().unwrap();
        assert_eq!(a.get_str("message"), Some("hello"));
        assert_eq!(a.get_str("host.name"), Some("web01"));
        let b = evs[1].as_ref().unwrap();
        assert_eq!(b.get_str("user.name"), Some("bob"));
        assert_eq!(b.get_str("splunk.fields.env"), Some("prod"));
        assert_eq!(b.timestamp.timestamp_millis(), 1_426_279_440_500);
        assert!(
            b.original()
                .unwrap()
                .starts_with("{\"time\":\"1426279440.5\"")
        );
    }
}
