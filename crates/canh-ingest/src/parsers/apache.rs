//! Apache httpd access logs (`combined`, `common`) and error logs (2.2 and 2.4 formats:
//! `[Fri Jan 05 10:00:00.123456 2024] [core:error] [pid 1:tid 2] [client 1.2.3.4:5] AH00126: …`).

use canh_core::{Event, fields as f};
use chrono::NaiveDate;

use super::{Confidence, LogParser, ParseCtx, ParseError};
use crate::clf;
use crate::norm;

/// Parser for Apache httpd access and error logs.
pub struct ApacheParser;

const ID: &str = "apache";

fn looks_like_error(raw: &[u8]) -> bool {
    raw.first() == Some(&b'[')
        && raw.get(4) == Some(&b' ')
        && crate::timefmt::month_abbr(raw.get(5..).unwrap_or(&[])).is_some()
}

/// `Fri Jan 05 10:00:00.123456 2024` (fraction optional).
fn error_time(s: &str, cx: &ParseCtx) -> Option<chrono::DateTime<chrono::Utc>> {
    let mut parts = s.split_whitespace();
    let _weekday = parts.next()?;
    let month = crate::timefmt::month_abbr(parts.next()?.as_bytes())?;
    let day: u32 = parts.next()?.parse().ok()?;
    let clock = parts.next()?;
    let year: i32 = parts.next()?.parse().ok()?;
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    let text = format!("{date}T{clock}");
    crate::timefmt::parse_iso(text.as_bytes(), cx.timezone()).map(|(t, _)| t)
}

fn error_line(s: &str, ev: &mut Event, cx: &ParseCtx) -> Result<(), &'static str> {
    let mut rest = s;
    let mut first = true;
    // Leading `[…]` groups: time, [module:]level, pid/tid, client.
    while let Some(inner_start) = rest.strip_prefix('[') {
        let Some(close) = inner_start.find(']') else {
            break;
        };
        let inner = &inner_start[..close];
        rest = inner_start[close + 1..].trim_start();
        if first {
            ev.timestamp = error_time(inner, cx).ok_or("invalid time")?;
            first = false;
        } else if let Some(pid) = inner.strip_prefix("pid ") {
            let (pid, tid) = pid.split_once(":tid ").unwrap_or((pid, ""));
            norm::set_int(ev, f::PROCESS_PID, pid);
            norm::set_int(ev, "process.thread.id", tid);
        } else if let Some(client) = inner.strip_prefix("client ") {
            match client.rsplit_once(':') {
                _ if client.parse::<std::net::IpAddr>().is_ok() => {
                    norm::set_ip(ev, f::SOURCE_IP, client);
                }
                Some((ip, port)) if port.bytes().all(|c| c.is_ascii_digit()) => {
                    norm::set_ip(ev, f::SOURCE_IP, ip.trim_matches(['[', ']']));
                    norm::set_port(ev, f::SOURCE_PORT, port);
                }
                _ => norm::set_ip(ev, f::SOURCE_IP, client),
            }
        } else if let Some((module, level)) = inner.split_once(':') {
            ev.set("apache.error.module", module);
            ev.set(norm::LOG_LEVEL, level);
        } else {
            ev.set(norm::LOG_LEVEL, inner);
        }
    }
    if first {
        return Err("missing [time]");
    }
    if let Some((code, msg)) = rest.split_once(": ")
        && code.starts_with("AH")
        && code.len() == 7
    {
        ev.set(f::EVENT_CODE, code);
        rest = msg;
    }
    ev.set(f::MESSAGE, rest);
    norm::set_list(ev, f::EVENT_CATEGORY, &["web"]);
    norm::set_list(ev, f::EVENT_TYPE, &["error"]);
    Ok(())
}

/// The error-log shape of this server.
const ERRORS: clf::ErrorLog = clf::ErrorLog {
    looks_like: looks_like_error,
    parse: error_line,
};

impl LogParser for ApacheParser {
    fn id(&self) -> &'static str {
        ID
    }

    fn describe(&self) -> &'static str {
        "Apache httpd access logs (combined, common) and error logs"
    }

    fn probe(&self, raw: &[u8]) -> Confidence {
        clf::probe_web(raw, &ERRORS)
    }

    fn parse(&self, raw: &[u8], cx: &ParseCtx) -> Result<Event, ParseError> {
        clf::parse_web(raw, cx, ID, &ERRORS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_24_with_module_pid_client_and_code() {
        let raw = b"[Fri Jan 05 10:00:00.123456 2024] [core:error] [pid 1234:tid 140] [client 203.0.113.9:51234] AH00126: Invalid URI in request GET /%% HTTP/1.1";
        let ev = ApacheParser.parse(raw, &ParseCtx::default()).unwrap();
        assert_eq!(ev.get_str("log.level"), Some("error"));
        assert_eq!(ev.get_str("apache.error.module"), Some("core"));
        assert_eq!(ev.get("source.port"), Some(&51234.into()));
        assert_eq!(ev.get_str("event.code"), Some("AH00126"));
        assert_eq!(
            ev.timestamp.to_rfc3339(),
            "2024-01-05T10:00:00.123456+00:00"
        );
    }

    #[test]
    fn error_22_format() {
        let raw = b"[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied by server configuration: /export/home/live/ap/htdocs/test";
        let ev = ApacheParser.parse(raw, &ParseCtx::default()).unwrap();
        assert_eq!(ev.get_str("source.ip"), Some("127.0.0.1"));
        assert!(ev.get_str("message").unwrap().starts_with("client denied"));
    }
}
