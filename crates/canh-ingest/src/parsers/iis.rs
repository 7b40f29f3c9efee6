//! Microsoft IIS logs in W3C Extended format. The `#Fields:` directive says which columns a
//! file has; [`W3cReader`] follows it line by line. A single line parsed on its own uses the
//! fields given in [`ParseCtx::with_w3c_fields`], else IIS's default field set.

use canh_core::{Event, fields as f};

use super::{Confidence, LogParser, ParseCtx, ParseError};
use crate::clf;
use crate::norm::{self, ocsf};

/// Parser for IIS W3C Extended log lines.
pub struct IisParser;

const ID: &str = "iis";

/// The fields IIS writes when none were chosen (IIS 7–10 defaults).
pub const DEFAULT_FIELDS: &[&str] = &[
    "date",
    "time",
    "s-ip",
    "cs-method",
    "cs-uri-stem",
    "cs-uri-query",
    "s-port",
    "cs-username",
    "c-ip",
    "cs(User-Agent)",
    "cs(Referer)",
    "sc-status",
    "sc-substatus",
    "sc-win32-status",
    "time-taken",
];

/// Reads a W3C log line by line, following `#Fields:` directives.
#[derive(Debug, Default, Clone)]
pub struct W3cReader {
    fields: Option<Vec<String>>,
}

impl W3cReader {
    /// A reader that uses IIS's default fields until a `#Fields:` line is seen.
    pub fn new() -> Self {
        Self::default()
    }

    /// The field list in effect, if a `#Fields:` line was read.
    pub fn fields(&self) -> Option<&[String]> {
        self.fields.as_deref()
    }

    /// Reads one line: a directive updates the state and yields `None`; a data line yields
    /// its event.
    pub fn read_line(&mut self, raw: &[u8], cx: &ParseCtx) -> Result<Option<Event>, ParseError> {
        let text = norm::decode(raw);
        let line = text.s.trim_start();
        if let Some(directive) = line.strip_prefix('#') {
            if let Some(list) = directive.strip_prefix("Fields:") {
                self.fields = Some(list.split_whitespace().map(str::to_owned).collect());
            }
            return Ok(None);
        }
        if line.is_empty() {
            return Ok(None);
        }
        match &self.fields {
            Some(names) => parse_with(names, &text, cx).map(Some),
            None => parse_with(DEFAULT_FIELDS, &text, cx).map(Some),
        }
    }
}

fn plus_to_space(v: &str) -> String {
    v.replace('+', " ")
}

fn parse_with<S: AsRef<str>>(
    names: &[S],
    text: &norm::Text<'_>,
    cx: &ParseCtx,
) -> Result<Event, ParseError> {
    let values: Vec<&str> = text.s.split_whitespace().collect();
    if values.len() != names.len() {
        return Err(ParseError::invalid(
            ID,
            format!("{} values for {} fields", values.len(), names.len()),
        ));
    }
    let mut ev = norm::new_event(cx.received(), text, cx);
    let (mut date, mut time) = ("", "");
    let mut status = None;
    for (name, v) in names.iter().zip(values.iter().copied()) {
        let name = name.as_ref();
        if v == "-" {
            continue;
        }
        match name {
            "date" => date = v,
            "time" => time = v,
            "s-ip" => norm::set_ip(&mut ev, f::DESTINATION_IP, v),
            "s-port" => norm::set_port(&mut ev, f::DESTINATION_PORT, v),
            "c-ip" => norm::set_ip(&mut ev, f::SOURCE_IP, v),
            "cs-method" => ev.set("http.request.method", v),
            "cs-uri-stem" => ev.set("url.path", v),
            "cs-uri-query" => ev.set("url.query", v),
            "cs-username" => ev.set(f::USER_NAME, v),
            "cs(User-Agent)" => ev.set("user_agent.original", plus_to_space(v)),
            "cs(Referer)" => ev.set("http.request.referrer", v),
            "cs-host" => ev.set("url.domain", v),
            "cs-version" => ev.set("http.version", v.trim_start_matches("HTTP/")),
            "sc-status" => {
                status = v.parse::<u16>().ok();
                norm::set_int(&mut ev, "http.response.status_code", v);
            }
            "sc-substatus" => norm::set_int(&mut ev, "iis.access.sub_status", v),
            "sc-win32-status" => norm::set_int(&mut ev, "iis.access.win32_status", v),
            "sc-bytes" => norm::set_int(&mut ev, "http.response.bytes", v),
            "cs-bytes" => norm::set_int(&mut ev, "http.request.bytes", v),
            "time-taken" => {
                // Milliseconds; ECS event.duration is in nanoseconds.
                if let Ok(ms) = v.parse::<i64>() {
                    ev.set("event.duration", ms.saturating_mul(1_000_000));
                }
            }
            "s-sitename" => ev.set("iis.access.site_name", v),
            "s-computername" => ev.set(f::HOST_NAME, v),
            "OriginalIP" | "X-Forwarded-For" => norm::set_ip(&mut ev, "client.ip", v),
            other => {
                let key = format!("iis.access.{}", other.to_ascii_lowercase());
                ev.set(&key, v);
            }
        }
    }
    if !date.is_empty() && !time.is_empty() {
        let stamp = format!("{date}T{time}Z");
        match crate::timefmt::parse_iso(stamp.as_bytes(), cx.timezone()) {
            Some((t, _)) => ev.timestamp = t,
            None => norm::add_parse_error(&mut ev, "invalid date/time"),
        }
    }
    if let Some(path) = ev.get_str("url.path").map(str::to_owned) {
        let original = match ev.get_str("url.query") {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        ev.set("url.original", original);
    }
    clf::web_access(&mut ev, status);
    norm::tag(&mut ev, ID, "iis.access", ocsf::HTTP_ACTIVITY);
    Ok(ev)
}

impl LogParser for IisParser {
    fn id(&self) -> &'static str {
        ID
    }

    fn describe(&self) -> &'static str {
        "Microsoft IIS W3C Extended logs (honours #Fields: directives)"
    }

    fn probe(&self, raw: &[u8]) -> Confidence {
        if raw.starts_with(b"#Software: Microsoft Internet Information")
            || raw.starts_with(b"#Fields: ")
        {
            return Confidence::Certain;
        }
        // `2024-01-05 10:00:00 <ip> ` with no `[`: W3C date and time columns.
        let iso_date = raw.len() > 20
            && raw[4] == b'-'
            && raw[7] == b'-'
            && raw[10] == b' '
            && raw[13] == b':'
            && raw[19] == b' '
            && raw[..4].iter().all(u8::is_ascii_digit);
        if iso_date {
            Confidence::Medium
        } else {
            Confidence::No
        }
    }

    fn parse(&self, raw: &[u8], cx: &ParseCtx) -> Result<Event, ParseError> {
        let text = norm::decode(raw);
        if text.s.starts_with('#') {
            return Err(ParseError::invalid(ID, "directive line, not a record"));
        }
        match cx.w3c_fields() {
            Some(names) => parse_with(names, &text, cx),
            None => parse_with(DEFAULT_FIELDS, &text, cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_follows_fields_directive() {
        let cx = ParseCtx::default();
        let mut r = W3cReader::new();
        assert!(
            r.read_line(
                b"#Fields: date time c-ip cs-method cs-uri-stem sc-status",
                &cx
            )
            .unwrap()
            .is_none()
        );
        let ev = r
            .read_line(b"2024-01-05 10:00:00 203.0.113.9 GET /login.aspx 401", &cx)
            .unwrap()
            .unwrap();
        assert_eq!(ev.get_str("source.ip"), Some("203.0.113.9"));
        assert_eq!(ev.get("http.response.status_code"), Some(&401.into()));
        assert_eq!(ev.timestamp.to_rfc3339(), "2024-01-05T10:00:00+00:00");
        assert!(r.read_line(b"2024-01-05 10:00:00 only three", &cx).is_err());
    }
}
