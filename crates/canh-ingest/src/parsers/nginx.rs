//! nginx access logs (`combined`, `common`, and `combined` plus `$http_x_forwarded_for`) and
//! error logs (`2024/01/05 10:00:00 [error] 12#12: *5 message, client: …, server: …`).

use canh_core::{Event, fields as f};

use super::{Confidence, LogParser, ParseCtx, ParseError};
use crate::norm;
use crate::{clf, timefmt};

/// Parser for nginx access and error logs.
pub struct NginxParser;

const ID: &str = "nginx";

fn looks_like_error(raw: &[u8]) -> bool {
    raw.len() > 21
        && raw[4] == b'/'
        && raw[7] == b'/'
        && raw[10] == b' '
        && raw[..4].iter().all(u8::is_ascii_digit)
        && raw[20] == b'['
}

fn error_line(s: &str, ev: &mut Event, cx: &ParseCtx) -> Result<(), &'static str> {
    // `YYYY/MM/DD HH:MM:SS` in the server's local zone.
    let stamp = s.get(..19).ok_or("truncated time")?.replace('/', "-");
    let (t, _) = timefmt::parse_iso(stamp.as_bytes(), cx.timezone()).ok_or("invalid time")?;
    ev.timestamp = t;
    let rest = &s[20..];
    let close = rest.find(']').ok_or("missing [level]")?;
    ev.set(norm::LOG_LEVEL, &rest[1..close]);
    let mut rest = rest[close + 1..].trim_start();
    if let Some((pid_tid, after)) = rest.split_once(": ")
        && let Some((pid, tid)) = pid_tid.split_once('#')
    {
        norm::set_int(ev, f::PROCESS_PID, pid);
        norm::set_int(ev, "process.thread.id", tid);
        rest = after;
    }
    if let Some(after_star) = rest.strip_prefix('*')
        && let Some((cid, after)) = after_star.split_once(' ')
    {
        norm::set_int(ev, "nginx.error.connection_id", cid);
        rest = after;
    }
    // Context pairs are appended as `, client: a, server: b, request: "…", host: "…"`.
    let (message, context) = match rest.find(", client: ") {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (rest, ""),
    };
    ev.set(f::MESSAGE, message);
    for part in context.split(", ") {
        let Some((k, v)) = part.split_once(": ") else {
            continue;
        };
        let v = v.trim_matches('"');
        match k {
            "client" => norm::set_ip(ev, f::SOURCE_IP, v),
            "server" => norm::set_text(ev, "nginx.error.server", v),
            "request" => clf::request_line(ev, v),
            "host" => norm::set_text(ev, "url.domain", v),
            "upstream" => norm::set_text(ev, "nginx.error.upstream", v),
            "referrer" => norm::set_text(ev, "http.request.referrer", v),
            _ => {}
        }
    }
    norm::set_list(ev, f::EVENT_CATEGORY, &["web"]);
    norm::set_list(ev, f::EVENT_TYPE, &["error"]);
    Ok(())
}

/// The error-log shape of this server.
const ERRORS: clf::ErrorLog = clf::ErrorLog {
    looks_like: looks_like_error,
    parse: error_line,
};

impl LogParser for NginxParser {
    fn id(&self) -> &'static str {
        ID
    }

    fn describe(&self) -> &'static str {
        "nginx access logs (combined, common) and error logs"
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
    fn error_line_with_context() {
        let raw = br#"2024/01/05 10:00:00 [error] 1234#1234: *5 open() "/srv/x" failed (2: No such file or directory), client: 203.0.113.9, server: example.org, request: "GET /x HTTP/1.1", host: "example.org""#;
        let ev = NginxParser.parse(raw, &ParseCtx::default()).unwrap();
        assert_eq!(ev.get_str("log.level"), Some("error"));
        assert_eq!(ev.get_str("source.ip"), Some("203.0.113.9"));
        assert_eq!(ev.get_str("url.path"), Some("/x"));
        assert_eq!(ev.get_str("event.dataset"), Some("nginx.error"));
        assert!(ev.get_str("message").unwrap().starts_with("open()"));
    }
}
