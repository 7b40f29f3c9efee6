//! Normalisation helpers shared by the parsers: decoding, the common fields every event gets,
//! and typed setters that only write values of the right shape.

use std::borrow::Cow;
use std::net::IpAddr;

use canh_core::{Event, Value, fields as f};
use chrono::{DateTime, Utc};

use crate::parsers::ParseCtx;

/// OCSF class ids used by the parsers (documented in `docs/schema.md`).
pub mod ocsf {
    /// No class applies.
    pub const UNKNOWN: u32 = 0;
    /// Process Activity.
    pub const PROCESS_ACTIVITY: u32 = 1007;
    /// Detection Finding (IDS alerts).
    pub const DETECTION_FINDING: u32 = 2004;
    /// Account Change.
    pub const ACCOUNT_CHANGE: u32 = 3001;
    /// Authentication.
    pub const AUTHENTICATION: u32 = 3002;
    /// Network Activity.
    pub const NETWORK_ACTIVITY: u32 = 4001;
    /// HTTP Activity.
    pub const HTTP_ACTIVITY: u32 = 4002;
    /// DNS Activity.
    pub const DNS_ACTIVITY: u32 = 4003;
    /// File Hosting Activity (files seen on the wire).
    pub const FILE_ACTIVITY: u32 = 4010;
    /// SSH Activity.
    pub const SSH_ACTIVITY: u32 = 4007;
}

/// Field names this crate sets that are not in `canh_core::fields`.
pub(crate) const EVENT_SEVERITY: &str = "event.severity";
pub(crate) const NETWORK_TRANSPORT: &str = "network.transport";
pub(crate) const NETWORK_PROTOCOL: &str = "network.protocol";
pub(crate) const NETWORK_DIRECTION: &str = "network.direction";
pub(crate) const LOG_LEVEL: &str = "log.level";

/// The record as text, with a note on whether bytes had to be replaced.
pub(crate) struct Text<'a> {
    pub(crate) s: Cow<'a, str>,
    pub(crate) lossy: bool,
}

/// Decodes bytes as UTF-8, replacing invalid sequences, and trims a trailing line end and NULs.
pub(crate) fn decode(raw: &[u8]) -> Text<'_> {
    let mut end = raw.len();
    while end > 0 && matches!(raw[end - 1], b'\n' | b'\r' | 0) {
        end -= 1;
    }
    let bytes = &raw[..end];
    match std::str::from_utf8(bytes) {
        Ok(s) => Text {
            s: Cow::Borrowed(s),
            lossy: false,
        },
        Err(_) => Text {
            s: String::from_utf8_lossy(bytes),
            lossy: true,
        },
    }
}

/// A new event with the fields every parser sets: `event.original` (when kept),
/// `event.ingested`, `canh.source.*`, and `canh.parse_error` for replaced bytes.
pub(crate) fn new_event(ts: DateTime<Utc>, text: &Text<'_>, cx: &ParseCtx) -> Event {
    let mut ev = Event::new(ts);
    add_common(&mut ev, text, cx);
    ev
}

/// Adds the common fields to an existing event; a shipper's own `event.original` is kept.
pub(crate) fn add_common(ev: &mut Event, text: &Text<'_>, cx: &ParseCtx) {
    if cx.keep_original() && ev.get(f::EVENT_ORIGINAL).is_none() {
        ev.set(f::EVENT_ORIGINAL, text.s.as_ref());
    }
    ev.set(f::EVENT_INGESTED, cx.received_text());
    if let Some(peer) = cx.peer() {
        ev.set(f::OBSERVER_INGRESS_ADDRESS, peer.ip().to_string());
    }
    if let Some(id) = cx.source_id() {
        ev.set(f::CANH_SOURCE, id);
    }
    if text.lossy {
        add_parse_error(ev, "invalid UTF-8 replaced with U+FFFD");
    }
}

/// Records a parse anomaly; several are joined with `; `.
pub(crate) fn add_parse_error(ev: &mut Event, note: &str) {
    let joined = match ev.get_str(f::CANH_PARSE_ERROR) {
        Some(prev) => format!("{prev}; {note}"),
        None => note.to_owned(),
    };
    ev.set(f::CANH_PARSE_ERROR, joined);
}

/// Sets `event.module`, `event.dataset` and `canh.ocsf.class_uid`.
pub(crate) fn tag(ev: &mut Event, module: &str, dataset: &str, class_uid: u32) {
    ev.set(f::EVENT_MODULE, module);
    ev.set(f::EVENT_DATASET, dataset);
    ev.set(f::OCSF_CLASS_UID, class_uid);
}

/// Sets an ECS list field (`event.category`, `event.type`).
pub(crate) fn set_list(ev: &mut Event, name: &str, items: &[&str]) {
    let v: Vec<Value> = items.iter().map(|s| Value::from(*s)).collect();
    ev.set(name, Value::Array(v));
}

/// Sets an IP field when `s` is an IP address; otherwise keeps it in the matching
/// `.address` field (a host name in a source position).
pub(crate) fn set_ip(ev: &mut Event, ip_field: &str, s: &str) {
    let s = s.trim();
    if s.is_empty() || s == "-" {
        return;
    }
    if s.parse::<IpAddr>().is_ok() {
        ev.set(ip_field, s);
    } else if let Some(prefix) = ip_field.strip_suffix(".ip") {
        ev.set(&format!("{prefix}.address"), s);
    }
}

/// Sets a port field when `s` is a port number.
pub(crate) fn set_port(ev: &mut Event, name: &str, s: &str) {
    if let Ok(p) = s.trim().parse::<u16>() {
        ev.set(name, p);
    }
}

/// Sets an integer field when `s` is an integer.
pub(crate) fn set_int(ev: &mut Event, name: &str, s: &str) {
    if let Ok(n) = s.trim().parse::<i64>() {
        ev.set(name, n);
    }
}

/// Sets a string field unless it is empty or `-`.
pub(crate) fn set_text(ev: &mut Event, name: &str, s: &str) {
    if !s.is_empty() && s != "-" {
        ev.set(name, s);
    }
}

/// ECS `network.transport` from an IANA protocol number.
pub(crate) fn transport_name(number: u8) -> Option<&'static str> {
    Some(match number {
        1 => "icmp",
        2 => "igmp",
        6 => "tcp",
        17 => "udp",
        41 => "ipv6",
        47 => "gre",
        50 => "esp",
        51 => "ah",
        58 => "ipv6-icmp",
        132 => "sctp",
        _ => return None,
    })
}

/// Flattens a JSON value under `prefix` into dotted fields (objects only; arrays stay).
pub(crate) fn flatten_under(ev: &mut Event, prefix: &str, v: &Value, depth: usize) {
    match v {
        Value::Object(map) if depth < canh_core::event::MAX_NESTING => {
            for (k, inner) in map {
                flatten_under(ev, &format!("{prefix}.{k}"), inner, depth + 1);
            }
        }
        Value::Null => {}
        other => ev.set(prefix, other.clone()),
    }
}

/// Reads a JSON object from bytes for a JSON-based parser.
pub(crate) fn json_object(
    format: &'static str,
    text: &str,
) -> Result<serde_json::Map<String, Value>, crate::parsers::ParseError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(crate::parsers::ParseError::invalid(
            format,
            "not a JSON object",
        )),
        Err(source) => Err(crate::parsers::ParseError::Json { format, source }),
    }
}

/// The first non-whitespace byte.
pub(crate) fn first_non_ws(raw: &[u8]) -> Option<u8> {
    raw.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// Whether `needle` occurs in the first `limit` bytes of `raw`.
pub(crate) fn head_contains(raw: &[u8], limit: usize, needle: &[u8]) -> bool {
    let head = &raw[..raw.len().min(limit)];
    memchr::memmem::find(head, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_flags_invalid_utf8_and_trims_line_end() {
        let t = decode(b"abc\xff\r\n");
        assert!(t.lossy);
        assert_eq!(t.s, "abc\u{fffd}");
        let t = decode(b"plain\n");
        assert!(!t.lossy);
        assert_eq!(t.s, "plain");
    }

    #[test]
    fn set_ip_keeps_host_names_as_address() {
        let mut ev = Event::new(Utc::now());
        set_ip(&mut ev, "source.ip", "gw.example.org");
        set_ip(&mut ev, "destination.ip", "2001:db8::1");
        assert_eq!(ev.get_str("source.address"), Some("gw.example.org"));
        assert_eq!(ev.get("source.ip"), None);
        assert_eq!(ev.get_str("destination.ip"), Some("2001:db8::1"));
    }
}
