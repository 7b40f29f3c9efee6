//! RFC 5424 syslog: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD…] MSG`.
//!
//! Parsed by hand on bytes (no regex): this is the hot path of a syslog listener.
//! Structured data is kept as `log.syslog.structured_data.<sd-id>.<param>`; a parameter named
//! `agency` or `organization` sets `organization.id`. The message goes to the program parsers.

use std::borrow::Cow;

use canh_core::{Event, Value, fields as f};
use chrono::{DateTime, FixedOffset, Utc};

use super::{Confidence, LogParser, ParseCtx, ParseError};
use crate::{dispatch, norm, syslog, timefmt};

/// Parser for RFC 5424 syslog records.
pub struct SyslogRfc5424Parser;

const ID: &str = "syslog_rfc5424";

/// One structured-data element.
pub(crate) struct SdElement<'a> {
    pub(crate) id: &'a str,
    pub(crate) params: Vec<(&'a str, Cow<'a, str>)>,
}

/// The parsed header of a record, borrowing from the text.
pub(crate) struct Header<'a> {
    pub(crate) pri: u8,
    pub(crate) version: u8,
    pub(crate) timestamp: Option<DateTime<Utc>>,
    pub(crate) hostname: Option<&'a str>,
    pub(crate) app: Option<&'a str>,
    pub(crate) procid: Option<&'a str>,
    pub(crate) msgid: Option<&'a str>,
    pub(crate) sd: Vec<SdElement<'a>>,
    pub(crate) msg: &'a str,
}

fn nil(s: &str) -> Option<&str> {
    if s == "-" { None } else { Some(s) }
}

/// Splits the next space-terminated field off `s` (the last field may end the input).
fn field<'a>(s: &'a str, pos: &mut usize) -> Result<&'a str, &'static str> {
    let rest = s.get(*pos..).ok_or("truncated header")?;
    if rest.is_empty() {
        return Err("truncated header");
    }
    let end = memchr::memchr(b' ', rest.as_bytes()).unwrap_or(rest.len());
    if end == 0 {
        return Err("empty header field");
    }
    *pos += (end + 1).min(rest.len());
    Ok(&rest[..end])
}

/// Parses the header of an RFC 5424 record.
pub(crate) fn header(s: &str, tz: FixedOffset) -> Result<Header<'_>, &'static str> {
    let b = s.as_bytes();
    let (pri, mut pos) = syslog::parse_pri(b).ok_or("missing or invalid <PRI>")?;
    let version_text = field(s, &mut pos)?;
    let version: u8 = version_text.parse().map_err(|_| "invalid VERSION")?;
    if version == 0 {
        return Err("invalid VERSION");
    }
    let ts_text = field(s, &mut pos)?;
    let timestamp = if ts_text == "-" {
        None
    } else {
        match timefmt::parse_iso(ts_text.as_bytes(), tz) {
            Some((t, used)) if used == ts_text.len() => Some(t),
            _ => return Err("invalid TIMESTAMP"),
        }
    };
    let hostname = nil(field(s, &mut pos)?);
    let app = nil(field(s, &mut pos)?);
    let procid = nil(field(s, &mut pos)?);
    let msgid = nil(field(s, &mut pos)?);
    let (sd, after_sd) = structured_data(s, pos)?;
    let mut msg = s.get(after_sd..).unwrap_or("");
    msg = msg.strip_prefix(' ').unwrap_or(msg);
    msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    Ok(Header {
        pri,
        version,
        timestamp,
        hostname,
        app,
        procid,
        msgid,
        sd,
        msg,
    })
}

/// Reads `-` or one or more `[id param="value" …]` at `pos`; returns the index after it.
fn structured_data(s: &str, mut pos: usize) -> Result<(Vec<SdElement<'_>>, usize), &'static str> {
    let b = s.as_bytes();
    match b.get(pos) {
        None => return Ok((Vec::new(), pos)),
        Some(b'-') => return Ok((Vec::new(), pos + 1)),
        Some(b'[') => {}
        Some(_) => return Err("invalid STRUCTURED-DATA"),
    }
    let mut out = Vec::new();
    while b.get(pos) == Some(&b'[') {
        pos += 1;
        let id_end = pos + name_len(&b[pos..]);
        if id_end == pos {
            return Err("empty SD-ID");
        }
        let id = &s[pos..id_end];
        pos = id_end;
        let mut params = Vec::new();
        loop {
            match b.get(pos) {
                Some(b']') => {
                    pos += 1;
                    break;
                }
                Some(b' ') => pos += 1,
                None => return Err("unterminated SD-ELEMENT"),
                Some(_) => {
                    let name_end = pos + name_len(&b[pos..]);
                    if name_end == pos || b.get(name_end) != Some(&b'=') {
                        return Err("invalid SD-PARAM");
                    }
                    let name = &s[pos..name_end];
                    if b.get(name_end + 1) != Some(&b'"') {
                        return Err("SD-PARAM value not quoted");
                    }
                    let (value, end) = quoted(s, name_end + 2)?;
                    params.push((name, value));
                    pos = end;
                }
            }
        }
        out.push(SdElement { id, params });
    }
    Ok((out, pos))
}

fn name_len(b: &[u8]) -> usize {
    b.iter()
        .take_while(|&&c| c > b' ' && c < 127 && !matches!(c, b'=' | b']' | b'"'))
        .count()
}

/// Reads a PARAM-VALUE starting after its opening quote; `\"`, `\\` and `\]` are unescaped.
fn quoted(s: &str, start: usize) -> Result<(Cow<'_, str>, usize), &'static str> {
    let b = s.as_bytes();
    let mut i = start;
    let mut owned: Option<String> = None;
    let mut seg = start;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                let value = match owned {
                    Some(mut o) => {
                        o.push_str(&s[seg..i]);
                        Cow::Owned(o)
                    }
                    None => Cow::Borrowed(&s[start..i]),
                };
                return Ok((value, i + 1));
            }
            b'\\' if matches!(b.get(i + 1), Some(b'"' | b'\\' | b']')) => {
                let o = owned.get_or_insert_with(String::new);
                o.push_str(&s[seg..i]);
                seg = i + 1;
                i += 2;
            }
            _ => i += 1,
        }
    }
    Err("unterminated PARAM-VALUE")
}

/// Writes the header's fields into `ev` (everything but module/dataset).
pub(crate) fn fill(h: &Header<'_>, ev: &mut Event) {
    syslog::set_pri(ev, h.pri);
    ev.set("log.syslog.version", h.version);
    syslog::set_origin(ev, h.hostname, h.app, h.procid);
    if let Some(m) = h.msgid {
        ev.set("log.syslog.msgid", m);
    }
    for el in &h.sd {
        for (name, value) in &el.params {
            let key = format!("log.syslog.structured_data.{}.{}", el.id, name);
            // A parameter may repeat (RFC 5424 §6.3.3): keep all values as a list.
            let merged = match ev.remove(&key) {
                None => Value::from(value.as_ref()),
                Some(Value::Array(mut items)) => {
                    items.push(Value::from(value.as_ref()));
                    Value::Array(items)
                }
                Some(prev) => Value::Array(vec![prev, Value::from(value.as_ref())]),
            };
            ev.set(&key, merged);
            if matches!(*name, "agency" | "organization") && !value.is_empty() {
                ev.set(f::ORGANIZATION_ID, value.as_ref());
            }
        }
    }
    ev.set(f::MESSAGE, h.msg);
}

/// Whether `raw` starts like an RFC 5424 record (`<PRI>` then a version digit and a space).
pub(crate) fn looks_like(raw: &[u8]) -> bool {
    match syslog::parse_pri(raw) {
        Some((_, n)) => {
            let rest = &raw[n..];
            rest.first().is_some_and(|c| matches!(c, b'1'..=b'9'))
                && rest.get(1) == Some(&b' ')
                && rest
                    .get(2)
                    .is_some_and(|c| c.is_ascii_digit() || *c == b'-')
        }
        None => false,
    }
}

impl LogParser for SyslogRfc5424Parser {
    fn id(&self) -> &'static str {
        ID
    }

    fn describe(&self) -> &'static str {
        "Syslog as in RFC 5424, with structured data; the message goes to the program parsers"
    }

    fn probe(&self, raw: &[u8]) -> Confidence {
        if looks_like(raw) {
            Confidence::Certain
        } else {
            Confidence::No
        }
    }

    fn parse(&self, raw: &[u8], cx: &ParseCtx) -> Result<Event, ParseError> {
        let text = norm::decode(raw);
        let h = header(&text.s, cx.timezone()).map_err(|r| ParseError::invalid(ID, r))?;
        let mut ev = norm::new_event(h.timestamp.unwrap_or(cx.received()), &text, cx);
        fill(&h, &mut ev);
        dispatch::dispatch_or_tag(h.app, h.msg, &mut ev, ID);
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> FixedOffset {
        FixedOffset::east_opt(0).unwrap()
    }

    #[test]
    fn rfc_example_with_structured_data_and_bom() {
        let s = "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 \
                 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"]\
                 [examplePriority@32473 class=\"high\"] \u{feff}An application event log entry";
        let h = header(s, utc()).unwrap();
        assert_eq!(h.pri, 165);
        assert_eq!(h.hostname, Some("mymachine.example.com"));
        assert_eq!(h.procid, None);
        assert_eq!(h.msgid, Some("ID47"));
        assert_eq!(h.sd.len(), 2);
        assert_eq!(
            h.sd[0].params[1],
            ("eventSource", Cow::Borrowed("Application"))
        );
        assert_eq!(h.msg, "An application event log entry");
    }

    #[test]
    fn escaped_param_values_are_unescaped() {
        let s = r#"<14>1 - - - - - [a@1 q="say \"hi\" \] \\ ok"]"#;
        let h = header(s, utc()).unwrap();
        assert_eq!(h.sd[0].params[0].1, r#"say "hi" ] \ ok"#);
        assert_eq!(h.msg, "");
        assert!(h.timestamp.is_none());
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        for s in [
            "<14>1",
            "<14>1 2003-10-11T22:14:15Z",
            "<14>1 x - - - - -",
            "<14>1 - - - - - [a",
        ] {
            assert!(header(s, utc()).is_err(), "{s}");
        }
    }

    #[test]
    fn agency_param_sets_organization() {
        let raw =
            br#"<13>1 2024-05-01T10:00:00+07:00 web01 app 42 - [canh@32473 agency="so-tt"] hi"#;
        let ev = SyslogRfc5424Parser
            .parse(raw, &ParseCtx::default())
            .unwrap();
        assert_eq!(ev.get_str("organization.id"), Some("so-tt"));
        assert_eq!(
            ev.get_str("log.syslog.structured_data.canh@32473.agency"),
            Some("so-tt")
        );
        assert_eq!(ev.get("process.pid"), Some(&42.into()));
        assert_eq!(ev.timestamp.to_rfc3339(), "2024-05-01T03:00:00+00:00");
    }
}
