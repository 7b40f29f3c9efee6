//! NCSA Common and Combined Log Format, shared by the nginx and Apache access-log parsers:
//! `client ident user [time] "request" status bytes ["referer" "user-agent" …]`.

use canh_core::{Event, fields as f};
use chrono::{DateTime, Utc};

use crate::norm::{self, ocsf};
use crate::parsers::{Confidence, ParseCtx, ParseError};

/// A web server's own error-log line: tells it apart, and parses it into the event.
pub(crate) struct ErrorLog {
    /// Whether a raw record is in the server's error-log shape.
    pub(crate) looks_like: fn(&[u8]) -> bool,
    /// Fills the event from an error-log line.
    pub(crate) parse: fn(&str, &mut Event, &ParseCtx) -> Result<(), &'static str>,
}

/// Probe shared by web servers: their error-log shape, else the access-log format.
pub(crate) fn probe_web(raw: &[u8], errors: &ErrorLog) -> Confidence {
    if (errors.looks_like)(raw) {
        Confidence::High
    } else if looks_like_access(raw) {
        Confidence::Medium
    } else {
        Confidence::No
    }
}

/// Parse shared by web servers: an error-log line (`<id>.error`) or an access-log line
/// (`<id>.access`).
pub(crate) fn parse_web(
    raw: &[u8],
    cx: &ParseCtx,
    id: &'static str,
    errors: &ErrorLog,
) -> Result<Event, ParseError> {
    let text = norm::decode(raw);
    let mut ev = norm::new_event(cx.received(), &text, cx);
    if (errors.looks_like)(text.s.as_bytes()) {
        (errors.parse)(&text.s, &mut ev, cx).map_err(|r| ParseError::invalid(id, r))?;
        norm::tag(&mut ev, id, &format!("{id}.error"), ocsf::HTTP_ACTIVITY);
    } else {
        let (t, _) = access(&text.s, &mut ev).map_err(|r| ParseError::invalid(id, r))?;
        ev.timestamp = t;
        norm::tag(&mut ev, id, &format!("{id}.access"), ocsf::HTTP_ACTIVITY);
    }
    Ok(ev)
}

/// A cursor over one line.
struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn skip_spaces(&mut self) {
        while self.s.as_bytes().get(self.i) == Some(&b' ') {
            self.i += 1;
        }
    }

    fn word(&mut self) -> Option<&'a str> {
        self.skip_spaces();
        let rest = self.s.get(self.i..)?;
        if rest.is_empty() {
            return None;
        }
        let end = memchr::memchr(b' ', rest.as_bytes()).unwrap_or(rest.len());
        self.i += end;
        Some(&rest[..end])
    }

    fn bracketed(&mut self) -> Option<&'a str> {
        self.skip_spaces();
        let rest = self.s.get(self.i..)?;
        let inner = rest.strip_prefix('[')?;
        let end = memchr::memchr(b']', inner.as_bytes())?;
        self.i += end + 2;
        Some(&inner[..end])
    }

    /// A double-quoted field; `\"` inside does not end it. Returns the raw inner text.
    fn quoted(&mut self) -> Option<&'a str> {
        self.skip_spaces();
        let rest = self.s.get(self.i..)?;
        let inner = rest.strip_prefix('"')?;
        let b = inner.as_bytes();
        let mut j = 0;
        while j < b.len() {
            match b[j] {
                b'\\' => j += 2,
                b'"' => {
                    self.i += j + 2;
                    return Some(&inner[..j]);
                }
                _ => j += 1,
            }
        }
        None
    }
}

/// Sets method, URL and version from a request line (`GET /a?b=c HTTP/1.1`).
pub(crate) fn request_line(ev: &mut Event, req: &str) {
    if req.is_empty() || req == "-" {
        return;
    }
    let mut parts = req.splitn(3, ' ');
    let method = parts.next().unwrap_or("");
    let (Some(target), version) = (parts.next(), parts.next()) else {
        ev.set("http.request.raw", req);
        return;
    };
    if method.bytes().all(|c| c.is_ascii_uppercase()) && !method.is_empty() {
        ev.set("http.request.method", method);
    }
    ev.set("url.original", target);
    match target.split_once('?') {
        Some((path, query)) => {
            ev.set("url.path", path);
            ev.set("url.query", query);
        }
        None => ev.set("url.path", target),
    }
    if let Some(v) = version.and_then(|v| v.strip_prefix("HTTP/")) {
        ev.set("http.version", v);
    }
}

/// Sets the web access category and outcome from a status code.
pub(crate) fn web_access(ev: &mut Event, status: Option<u16>) {
    norm::set_list(ev, f::EVENT_CATEGORY, &["web"]);
    norm::set_list(ev, f::EVENT_TYPE, &["access"]);
    if let Some(s) = status {
        ev.set(
            f::EVENT_OUTCOME,
            if s < 400 { "success" } else { "failure" },
        );
    }
}

/// Parses an access line into `ev`; returns the time and whether the line was combined.
///
/// The client part may be a list (`10.0.0.2, 10.0.0.1, 127.0.0.1` when a proxy chain is
/// logged, or a quoted list before the peer): all addresses go to `source.address_list` and the
/// first IP is `source.ip`.
pub(crate) fn access(s: &str, ev: &mut Event) -> Result<(DateTime<Utc>, bool), &'static str> {
    let open = find_time(s.as_bytes()).ok_or("missing [time]")?;
    let prefix: Vec<&str> = s[..open].split_whitespace().collect();
    let [clients @ .., _ident, user] = prefix.as_slice() else {
        return Err("missing client, ident or user");
    };
    if clients.is_empty() {
        return Err("missing client");
    }
    let mut c = Cursor { s, i: open };
    let time_text = c.bracketed().ok_or("missing [time]")?;
    let time = crate::timefmt::parse_clf(time_text).ok_or("invalid [time]")?;
    let request = c.quoted().ok_or("missing \"request\"")?;
    let status_text = c.word().ok_or("missing status")?;
    let status: u16 = status_text.parse().map_err(|_| "invalid status")?;
    let bytes = c.word().unwrap_or("-");
    let list: Vec<&str> = clients
        .iter()
        .map(|w| w.trim_matches(|ch| ch == '"' || ch == ','))
        .filter(|w| !w.is_empty())
        .collect();
    if list.len() > 1 {
        let values: Vec<canh_core::Value> = list.iter().map(|w| (*w).into()).collect();
        ev.set("source.address_list", values);
    }
    match list.iter().find(|w| w.parse::<std::net::IpAddr>().is_ok()) {
        Some(ip) => {
            ev.set(f::SOURCE_IP, *ip);
            ev.set("source.address", *ip);
        }
        None => norm::set_text(ev, "source.address", list.first().copied().unwrap_or("")),
    }
    norm::set_text(ev, f::USER_NAME, user);
    request_line(ev, request);
    ev.set("http.response.status_code", status);
    norm::set_int(ev, "http.response.body.bytes", bytes);
    let mut combined = false;
    if let Some(referrer) = c.quoted() {
        combined = true;
        norm::set_text(ev, "http.request.referrer", referrer);
        if let Some(ua) = c.quoted() {
            norm::set_text(ev, "user_agent.original", ua);
        }
        if let Some(xff) = c.quoted() {
            norm::set_text(ev, "http.request.x_forwarded_for", xff);
        }
    }
    web_access(ev, Some(status));
    Ok((time, combined))
}

/// Index of the `[` that opens a CLF time (`[dd/Mon/yyyy:`).
fn find_time(b: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(rel) = memchr::memchr(b'[', &b[from..]) {
        let at = from + rel;
        let t = &b[at + 1..];
        if t.len() > 12 && t[2] == b'/' && t[6] == b'/' && t[11] == b':' {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Whether the line looks like an access line: a CLF `[time]` early, then a quote.
pub(crate) fn looks_like_access(raw: &[u8]) -> bool {
    let head = &raw[..raw.len().min(300)];
    if head
        .first()
        .is_some_and(|c| matches!(c, b'<' | b'{' | b'[' | b'#'))
    {
        return false;
    }
    match find_time(head) {
        Some(at) => memchr::memchr(b'"', &head[at..]).is_some(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_line() {
        let mut ev = Event::new(Utc::now());
        let line = r#"203.0.113.9 - alice [10/Oct/2000:13:55:36 -0700] "GET /a.gif?x=1 HTTP/1.0" 200 2326 "http://example.com/" "Mozilla/4.08 [en] (Win98; I ;Nav)""#;
        let (t, combined) = access(line, &mut ev).unwrap();
        assert!(combined);
        assert_eq!(t.to_rfc3339(), "2000-10-10T20:55:36+00:00");
        assert_eq!(ev.get_str("url.query"), Some("x=1"));
        assert_eq!(ev.get_str("user.name"), Some("alice"));
        assert_eq!(
            ev.get_str("user_agent.original"),
            Some("Mozilla/4.08 [en] (Win98; I ;Nav)")
        );
    }

    #[test]
    fn garbage_request_is_kept_raw() {
        let mut ev = Event::new(Utc::now());
        let line = r#"198.51.100.1 - - [10/Oct/2000:13:55:36 +0000] "\x16\x03\x01" 400 157"#;
        let (_, combined) = access(line, &mut ev).unwrap();
        assert!(!combined);
        assert_eq!(ev.get_str("http.request.raw"), Some("\\x16\\x03\\x01"));
        assert_eq!(ev.get_str("event.outcome"), Some("failure"));
    }

    #[test]
    fn access_prefix_check() {
        assert!(looks_like_access(
            br#"1.2.3.4 - - [05/Jan/2024:10:00:00 +0000] "GET / HTTP/1.1" 200 1"#
        ));
        assert!(!looks_like_access(b"<13>Jan  1 00:00:00 host x"));
    }
}
