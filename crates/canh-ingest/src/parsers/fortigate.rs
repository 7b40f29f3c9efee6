//! FortiGate (FortiOS) logs: `key=value` pairs, values optionally double-quoted, sent with or
//! without a syslog header. Every pair is kept under `fortigate.<key>`; the common ones are
//! mapped to ECS.

use canh_core::{Event, fields as f};
use chrono::{DateTime, Utc};

use super::{Confidence, LogParser, ParseCtx, ParseError};
use crate::dispatch::{self, Matched};
use crate::norm::{self, ocsf};

/// Parser for FortiGate key=value logs.
pub struct FortigateParser;

const ID: &str = "fortigate";

/// Splits `k=v k="v w" …` into pairs; a backslash escapes a quote inside quotes.
pub(crate) fn kv_pairs(s: &str) -> Vec<(&str, String)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        let key = &s[key_start..i];
        i += 1;
        let mut value = String::new();
        if b.get(i) == Some(&b'"') {
            i += 1;
            let mut seg = i;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    value.push_str(&s[seg..i]);
                    seg = i + 1;
                    i += 1;
                }
                i += 1;
            }
            value.push_str(&s[seg..i.min(b.len())]);
            i += 1;
        } else {
            let start = i;
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            value.push_str(&s[start..i]);
        }
        if !key.is_empty() {
            out.push((key, value));
        }
    }
    out
}

fn is_fortigate(msg: &str) -> bool {
    let b = msg.as_bytes();
    let head = &b[..b.len().min(400)];
    (b.starts_with(b"date=") || b.starts_with(b"logver=") || b.starts_with(b"timestamp="))
        && (memchr::memmem::find(head, b" devid=").is_some()
            || memchr::memmem::find(head, b" logid=").is_some())
}

fn event_time(pairs: &[(&str, String)]) -> Option<DateTime<Utc>> {
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.as_str())
    };
    if let Some(n) = get("eventtime").and_then(|v| v.parse::<i64>().ok()) {
        return match n {
            n if n > 1_000_000_000_000_000_000 / 10 => Some(DateTime::from_timestamp_nanos(n)),
            n if n > 100_000_000_000_000 => DateTime::from_timestamp_micros(n),
            n if n > 100_000_000_000 => DateTime::from_timestamp_millis(n),
            n => DateTime::from_timestamp(n, 0),
        };
    }
    let date = get("date")?;
    let time = get("time")?;
    let tz = get("tz").unwrap_or("+0000");
    let text = format!("{date}T{time}{tz}");
    let zero = chrono::FixedOffset::east_opt(0)?;
    crate::timefmt::parse_iso(text.as_bytes(), zero).map(|(t, _)| t)
}

/// Program parser entry point (see [`crate::dispatch`]).
pub(crate) fn apply(_program: Option<&str>, msg: &str, ev: &mut Event) -> Option<Matched> {
    if !is_fortigate(msg) {
        return None;
    }
    let pairs = kv_pairs(msg);
    if let Some(t) = event_time(&pairs) {
        ev.timestamp = t;
    }
    let mut kind = String::new();
    let mut subtype = String::new();
    let mut logdesc = String::new();
    for (k, v) in &pairs {
        match *k {
            "srcip" => norm::set_ip(ev, f::SOURCE_IP, v),
            "srcport" => norm::set_port(ev, f::SOURCE_PORT, v),
            "dstip" => norm::set_ip(ev, f::DESTINATION_IP, v),
            "dstport" => norm::set_port(ev, f::DESTINATION_PORT, v),
            "srcintf" => norm::set_text(ev, "observer.ingress.interface.name", v),
            "dstintf" => norm::set_text(ev, "observer.egress.interface.name", v),
            "devname" => norm::set_text(ev, "observer.name", v),
            "devid" => norm::set_text(ev, "observer.serial_number", v),
            "logid" => norm::set_text(ev, f::EVENT_CODE, v),
            "level" => norm::set_text(ev, norm::LOG_LEVEL, v),
            "action" => norm::set_text(ev, f::EVENT_ACTION, v),
            "policyid" => norm::set_text(ev, "rule.id", v),
            "policyname" => norm::set_text(ev, "rule.name", v),
            "user" | "srcuser" => norm::set_text(ev, f::USER_NAME, v),
            "msg" => norm::set_text(ev, f::MESSAGE, v),
            "sentbyte" => norm::set_int(ev, "source.bytes", v),
            "rcvdbyte" => norm::set_int(ev, "destination.bytes", v),
            "sentpkt" => norm::set_int(ev, "source.packets", v),
            "rcvdpkt" => norm::set_int(ev, "destination.packets", v),
            "proto" => {
                if let Some(t) = v.parse::<u8>().ok().and_then(norm::transport_name) {
                    ev.set(norm::NETWORK_TRANSPORT, t);
                }
            }
            "service" => norm::set_text(ev, norm::NETWORK_PROTOCOL, &v.to_ascii_lowercase()),
            "hostname" => norm::set_text(ev, "url.domain", v),
            "url" => norm::set_text(ev, "url.original", v),
            "srccountry" => norm::set_text(ev, "source.geo.country_name", v),
            "dstcountry" => norm::set_text(ev, "destination.geo.country_name", v),
            "srcmac" => norm::set_text(ev, "source.mac", v),
            "attack" => norm::set_text(ev, "rule.name", v),
            "type" => kind.clone_from(v),
            "subtype" => subtype.clone_from(v),
            "logdesc" => logdesc.clone_from(v),
            _ => {}
        }
        let key = format!("fortigate.{k}");
        ev.set(&key, v.as_str());
    }
    let action = ev
        .get_str(f::EVENT_ACTION)
        .unwrap_or("")
        .to_ascii_lowercase();
    let denied = matches!(
        action.as_str(),
        "deny" | "blocked" | "block" | "dropped" | "reset"
    );
    let desc = logdesc.to_ascii_lowercase();
    let (dataset, class_uid) = match kind.as_str() {
        "traffic" => {
            norm::set_list(ev, f::EVENT_CATEGORY, &["network"]);
            let t = if denied { "denied" } else { "allowed" };
            norm::set_list(ev, f::EVENT_TYPE, &["connection", t]);
            ("fortigate.traffic", ocsf::NETWORK_ACTIVITY)
        }
        "utm" => {
            norm::set_list(ev, f::EVENT_CATEGORY, &["network", "intrusion_detection"]);
            norm::set_list(ev, f::EVENT_TYPE, &[if denied { "denied" } else { "info" }]);
            let uid = if subtype == "webfilter" {
                ocsf::HTTP_ACTIVITY
            } else {
                ocsf::NETWORK_ACTIVITY
            };
            ("fortigate.utm", uid)
        }
        "event"
            if desc.contains("login") || desc.contains("authentication") || subtype == "user" =>
        {
            let failed = desc.contains("fail") || ev.get_str("fortigate.status") == Some("failed");
            norm::set_list(ev, f::EVENT_CATEGORY, &["authentication"]);
            norm::set_list(ev, f::EVENT_TYPE, &["start"]);
            ev.set(f::EVENT_OUTCOME, if failed { "failure" } else { "success" });
            ("fortigate.event", ocsf::AUTHENTICATION)
        }
        "event" => ("fortigate.event", ocsf::UNKNOWN),
        _ => ("fortigate.log", ocsf::UNKNOWN),
    };
    if ev.get(f::MESSAGE).is_none_or(|m| m.as_str() == Some(msg)) && !logdesc.is_empty() {
        ev.set(f::MESSAGE, logdesc.as_str());
    }
    Some(Matched {
        module: ID,
        dataset,
        class_uid,
    })
}

impl LogParser for FortigateParser {
    fn id(&self) -> &'static str {
        ID
    }

    fn describe(&self) -> &'static str {
        "Fortinet FortiGate key=value logs (traffic, UTM, event)"
    }

    fn probe(&self, raw: &[u8]) -> Confidence {
        match std::str::from_utf8(&raw[..raw.len().min(400)]) {
            Ok(s) if is_fortigate(s) => Confidence::High,
            _ => Confidence::No,
        }
    }

    fn parse(&self, raw: &[u8], cx: &ParseCtx) -> Result<Event, ParseError> {
        dispatch::parse_standalone(ID, raw, cx, apply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_handles_quotes_and_escapes() {
        let p = kv_pairs(r#"a=1 b="two words" c="say \"x\"" d= e=5"#);
        assert_eq!(p[0], ("a", "1".to_owned()));
        assert_eq!(p[1], ("b", "two words".to_owned()));
        assert_eq!(p[2], ("c", "say \"x\"".to_owned()));
        assert_eq!(p[3], ("d", String::new()));
        assert_eq!(p[4], ("e", "5".to_owned()));
    }

    #[test]
    fn kv_survives_unterminated_quote() {
        let p = kv_pairs(r#"a="open b=2"#);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].1, "open b=2");
    }
}
