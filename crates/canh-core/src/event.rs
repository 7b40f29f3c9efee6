//! The normalised event: `@timestamp` plus flat ECS-named fields.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Map;

/// A field value (JSON): strings, numbers, booleans, arrays and, rarely, objects.
pub type Value = serde_json::Value;

/// One normalised event.
///
/// Fields are flat, with ECS dotted names as keys (`"source.ip"`, not nested objects), so that
/// they map one to one onto columns and index fields. The raw input is kept in
/// `event.original`.
///
/// ```
/// use canh_core::Event;
/// let mut ev = Event::new(chrono::Utc::now());
/// ev.set("host.name", "web-01");
/// assert_eq!(ev.get_str("host.name"), Some("web-01"));
/// let line = ev.to_json_line();
/// assert!(line.contains("\"host.name\":\"web-01\""));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When the event happened (UTC); the receipt time when the source gives none.
    #[serde(rename = "@timestamp")]
    pub timestamp: DateTime<Utc>,
    /// Every other field, by flat ECS name.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Event {
    /// An event at `timestamp` with no fields.
    pub fn new(timestamp: DateTime<Utc>) -> Self {
        Self {
            timestamp,
            fields: Map::new(),
        }
    }

    /// Gives back the spare room the field map grew while the event was built (a map of 33
    /// fields has room for 64): a parsed syslog line drops from about 10 KB to about 4 KB.
    /// For events that are held in memory for a while.
    pub fn compact(&mut self) {
        if self.fields.len() > 4 {
            self.fields = std::mem::take(&mut self.fields).into_iter().collect();
        }
    }

    /// Sets `name` to `value`, replacing what was there.
    pub fn set(&mut self, name: &str, value: impl Into<Value>) {
        self.fields.insert(name.to_owned(), value.into());
    }

    /// Sets `name` only when `value` is `Some` and not an empty string.
    pub fn set_opt<V: Into<Value>>(&mut self, name: &str, value: Option<V>) {
        if let Some(v) = value {
            let v = v.into();
            if v.as_str().is_some_and(str::is_empty) {
                return;
            }
            self.fields.insert(name.to_owned(), v);
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    /// The value of `name` when it is a string.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// Removes `name` and returns its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.fields.remove(name)
    }

    /// The raw message (`event.original`), if kept.
    pub fn original(&self) -> Option<&str> {
        self.get_str(crate::fields::EVENT_ORIGINAL)
    }

    /// The agency the event belongs to (`organization.id`), if resolved.
    pub fn agency(&self) -> Option<&str> {
        self.get_str(crate::fields::ORGANIZATION_ID)
    }

    /// Serialises the event as one line of JSON (no trailing newline).
    pub fn to_json_line(&self) -> String {
        // Serialising a map of JSON values to a string cannot fail: keys are strings and
        // values are already JSON.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads back a line written by [`Event::to_json_line`]: the same event, fields in the
    /// same order. Unlike [`Event::from_json_object`], nested objects stay as they are.
    pub fn from_json_line(line: &[u8]) -> Result<Self, EventError> {
        use serde::Deserializer as _;
        let mut de = serde_json::Deserializer::from_slice(line);
        let (time, fields) = de
            .deserialize_map(LineVisitor)
            .and_then(|v| de.end().map(|()| v))
            .map_err(|e| EventError::Json(e.to_string()))?;
        let timestamp = time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .ok_or(EventError::BadTimestamp)?
            .with_timezone(&Utc);
        Ok(Event { timestamp, fields })
    }

    /// Parses one JSON object with flat or nested fields into an event.
    ///
    /// Nested objects are flattened to dotted names (`{"host":{"name":"a"}}` becomes
    /// `host.name`), as ECS shippers send them nested. `@timestamp` is read when present and
    /// valid; otherwise `default_time` is used.
    pub fn from_json_object(
        obj: Map<String, Value>,
        default_time: DateTime<Utc>,
    ) -> Result<Self, EventError> {
        let mut ev = Event::new(default_time);
        for (k, v) in obj {
            flatten_into(&mut ev.fields, k, v, 0)?;
        }
        if let Some(ts) = ev.fields.remove("@timestamp") {
            match ts.as_str().and_then(crate::time::parse_timestamp) {
                Some(t) => ev.timestamp = t,
                None => match ts.as_i64() {
                    // Numbers are epoch milliseconds, as Elasticsearch reads them.
                    Some(ms) => {
                        ev.timestamp =
                            DateTime::from_timestamp_millis(ms).ok_or(EventError::BadTimestamp)?;
                    }
                    None => return Err(EventError::BadTimestamp),
                },
            }
        }
        Ok(ev)
    }
}

/// Reads a line's fields in order, `@timestamp` apart.
struct LineVisitor;

impl<'de> serde::de::Visitor<'de> for LineVisitor {
    type Value = (Option<String>, Map<String, Value>);

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut time = None;
        // Collected first so that the map is made at its final size: events decoded for a
        // flush are many at once, and a map grown one field at a time keeps up to twice the
        // room it needs.
        let mut pairs: Vec<(String, Value)> = Vec::with_capacity(32);
        while let Some(key) = map.next_key::<String>()? {
            if key == "@timestamp" {
                time = map.next_value::<Value>()?.as_str().map(str::to_owned);
            } else {
                let value = map.next_value::<Value>()?;
                pairs.push((key, value));
            }
        }
        let mut fields = Map::with_capacity(pairs.len());
        fields.extend(pairs);
        Ok((time, fields))
    }
}

/// How deep nested objects may go before an input is refused.
pub const MAX_NESTING: usize = 32;

fn flatten_into(
    out: &mut Map<String, Value>,
    key: String,
    value: Value,
    depth: usize,
) -> Result<(), EventError> {
    if depth > MAX_NESTING {
        return Err(EventError::TooDeep);
    }
    match value {
        Value::Object(inner) if !inner.is_empty() => {
            for (k, v) in inner {
                flatten_into(out, format!("{key}.{k}"), v, depth + 1)?;
            }
            Ok(())
        }
        other => {
            out.insert(key, other);
            Ok(())
        }
    }
}

/// Why a JSON object could not become an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    /// `@timestamp` is neither an RFC 3339 string nor epoch milliseconds.
    #[error("@timestamp is not a valid time")]
    BadTimestamp,
    /// Objects nested deeper than [`MAX_NESTING`].
    #[error("object nested deeper than {MAX_NESTING} levels")]
    TooDeep,
    /// Not a JSON object.
    #[error("not a JSON object: {0}")]
    Json(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compacting_keeps_every_field_in_order() {
        let mut ev = Event::new(Utc::now());
        for i in 0..33 {
            ev.set(&format!("f.{}", 33 - i), i);
        }
        let before = serde_json::to_string(&ev).unwrap();
        ev.compact();
        assert_eq!(serde_json::to_string(&ev).unwrap(), before);
        assert_eq!(ev.get("f.1"), Some(&json!(32)));
        ev.set("f.new", "x");
        assert_eq!(ev.fields.len(), 34);
    }

    #[test]
    fn nested_objects_are_flattened_to_dotted_names() {
        let obj = json!({"@timestamp":"2024-05-01T10:00:00Z","host":{"name":"a","ip":["10.0.0.1"]},"message":"x"});
        let Value::Object(map) = obj else {
            unreachable!()
        };
        let ev = Event::from_json_object(map, Utc::now()).unwrap();
        assert_eq!(ev.get_str("host.name"), Some("a"));
        assert_eq!(ev.get("host.ip"), Some(&json!(["10.0.0.1"])));
        assert_eq!(ev.timestamp.to_rfc3339(), "2024-05-01T10:00:00+00:00");
    }

    #[test]
    fn numeric_timestamp_is_epoch_millis() {
        let Value::Object(map) = json!({"@timestamp": 1_700_000_000_000i64}) else {
            unreachable!()
        };
        let ev = Event::from_json_object(map, Utc::now()).unwrap();
        assert_eq!(ev.timestamp.timestamp_millis(), 1_700_000_000_000);
    }

    #[test]
    fn bad_timestamp_is_an_error() {
        let Value::Object(map) = json!({"@timestamp": "yesterday-ish"}) else {
            unreachable!()
        };
        assert_eq!(
            Event::from_json_object(map, Utc::now()),
            Err(EventError::BadTimestamp)
        );
    }

    #[test]
    fn json_line_round_trips() {
        let mut ev = Event::new(Utc::now());
        ev.set("source.ip", "192.0.2.1");
        ev.set("destination.port", 443);
        let back: Event = serde_json::from_str(&ev.to_json_line()).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn json_line_reads_back_exactly_what_serde_reads() {
        let mut ev = Event::new(Utc::now());
        ev.set("z.last", "first in the map");
        ev.set("process.pid", 42);
        ev.set("big", u64::MAX);
        ev.set("neg", -7);
        ev.set("ratio", 0.1);
        ev.set("flag", true);
        ev.set("nothing", Value::Null);
        ev.set("list", json!(["a", 1, {"k": "v"}]));
        ev.set("nested.kept", json!({"inner": {"deep": [1, 2]}}));
        ev.set("text", "quote \" backslash \\ tab \t é 漢字");
        let line = ev.to_json_line();
        let fast = Event::from_json_line(line.as_bytes()).unwrap();
        let serde: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(fast, serde);
        assert_eq!(fast, ev);
        assert_eq!(fast.to_json_line(), line, "field order kept");
        assert!(matches!(
            Event::from_json_line(b"{\"a\":1}"),
            Err(EventError::BadTimestamp)
        ));
        assert!(matches!(
            Event::from_json_line(b"[1]"),
            Err(EventError::Json(_))
        ));
    }
}
