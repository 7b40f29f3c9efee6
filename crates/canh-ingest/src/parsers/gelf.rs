//! GELF 1.1 payloads (Graylog Extended Log Format): one JSON object with `version`, `host`,
//! `short_message`, optional `full_message`, `timestamp` (epoch seconds), `level` (syslog
//! severity) and `_additional` fields, kept under `gelf.*`. Transport framing (chunks,
//! compression) is in [`crate::framing::gelf`].

use canh_core::{Event, Value, fields as f};

use super::{Confidence, LogParser, ParseCtx, ParseError};
use crate::norm::{self, ocsf};

/// Parser for GELF payloads.
pub struct GelfParser;

const ID: &str = "gelf";

impl LogParser for GelfParser {
    fn id(&self) -> &'static str {
        ID
    }

    fn describe(&self) -> &'static str {
        "GELF 1.1 JSON payloads (Graylog, Docker gelf log driver)"
    }

    fn probe(&self, raw: &[u8]) -> Confidence {
        if norm::first_non_ws(raw) == Some(b'{')
            && norm::head_contains(raw, 4096, b"\"short_message\"")
        {
            Confidence::High
        } else {
            Confidence::No
        }
    }

    fn parse(&self, raw: &[u8], cx: &ParseCtx) -> Result<Event, ParseError> {
        let text = norm::decode(raw);
        let obj = norm::json_object(ID, &text.s)?;
        let mut ev = norm::new_event(cx.received(), &text, cx);
        let mut has_short = false;
        for (k, v) in obj {
            match (k.as_str(), &v) {
                ("version", Value::String(s)) => ev.set("gelf.version", s.as_str()),
                ("host", Value::String(s)) => ev.set(f::HOST_NAME, s.as_str()),
                ("short_message", Value::String(s)) => {
                    has_short = true;
                    ev.set(f::MESSAGE, s.as_str());
                }
                ("full_message", Value::String(s)) => ev.set("gelf.full_message", s.as_str()),
                ("timestamp", t) => match crate::timefmt::from_json_epoch(t) {
                    Some(t) => ev.timestamp = t,
                    None => norm::add_parse_error(&mut ev, "invalid timestamp"),
                },
                ("level", Value::Number(n)) => {
                    if let Some(code) = n.as_u64().filter(|c| *c <= 7) {
                        ev.set(f::LOG_SYSLOG_SEVERITY_CODE, code);
                        let name = u8::try_from(code)
                            .ok()
                            .and_then(crate::syslog::severity_name);
                        if let Some(name) = name {
                            ev.set("log.syslog.severity.name", name);
                            ev.set(norm::LOG_LEVEL, name);
                        }
                    }
                }
                ("facility", Value::String(s)) => ev.set("gelf.facility", s.as_str()),
                ("file", Value::String(s)) => ev.set("log.origin.file.name", s.as_str()),
                ("line", Value::Number(n)) => ev.set("log.origin.file.line", n.clone()),
                (name, _) if name.starts_with('_') && name.len() > 1 => {
                    let field = &name[1..];
                    // The Docker gelf driver's fields have ECS homes.
                    let ecs = match field {
                        "container_id" => Some("container.id"),
                        "container_name" => Some("container.name"),
                        "image_name" => Some("container.image.name"),
                        "image_id" => Some("container.image.hash.all"),
                        "command" => Some(f::PROCESS_COMMAND_LINE),
                        _ => None,
                    };
                    if let Some(target) = ecs {
                        ev.set(target, v.clone());
                    }
                    norm::flatten_under(&mut ev, &format!("gelf.{field}"), &v, 0);
                }
                (name, _) => {
                    let key = format!("gelf.{name}");
                    norm::flatten_under(&mut ev, &key, &v, 0);
                }
            }
        }
        if !has_short {
            norm::add_parse_error(&mut ev, "missing short_message");
        }
        norm::tag(&mut ev, ID, "gelf", ocsf::UNKNOWN);
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_maps_host_level_and_additional_fields() {
        let raw = br#"{"version":"1.1","host":"example.org","short_message":"A short message that helps you identify what is going on","full_message":"Backtrace here\n\nmore stuff","timestamp":1385053862.3072,"level":1,"_user_id":9001,"_some_info":"foo","_some_env_var":"bar"}"#;
        let ev = GelfParser.parse(raw, &ParseCtx::default()).unwrap();
        assert_eq!(ev.get_str("host.name"), Some("example.org"));
        assert_eq!(ev.get_str("log.syslog.severity.name"), Some("alert"));
        assert_eq!(ev.get("gelf.user_id"), Some(&9001.into()));
        assert_eq!(ev.timestamp.timestamp_millis(), 1_385_053_862_307);
    }
}
