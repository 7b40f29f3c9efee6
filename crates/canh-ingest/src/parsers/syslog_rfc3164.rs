//! BSD syslog (RFC 3164) and the variants devices really send: with or without `<PRI>`,
//! host or year; ISO timestamps (rsyslog file format); Cisco IOS sequence numbers, `*`-marked
//! unsynchronised clocks and `%FAC-SEV-MNEMONIC` messages without a tag; records with no
//! header at all (FortiGate). The message goes to the program parsers.

use canh_core::{Event, fields as f};
use chrono::{DateTime, Datelike, Utc};

use super::{Confidence, LogParser, ParseCtx, ParseError};
use crate::{dispatch, norm, syslog, timefmt};

/// Parser for BSD syslog records.
pub struct SyslogRfc3164Parser;

const ID: &str = "syslog_rfc3164";

/// The parsed header of a record, borrowing from the text.
pub(crate) struct Header<'a> {
    pub(crate) pri: Option<u8>,
    pub(crate) sequence: Option<u64>,
    pub(crate) timestamp: Option<DateTime<Utc>>,
    pub(crate) hostname: Option<&'a str>,
    pub(crate) tag: Option<&'a str>,
    pub(crate) pid: Option<&'a str>,
    pub(crate) msg: &'a str,
}

fn is_tag_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'/' | b'(' | b')' | b'@')
}

/// Reads a tag (`prog:`, `prog[pid]:`) at the start of `s`.
fn tag(s: &str) -> Option<(&str, Option<&str>, &str)> {
    let b = s.as_bytes();
    let n = b.iter().take_while(|&&c| is_tag_byte(c)).count();
    if n == 0 || n > 64 {
        return None;
    }
    let name = &s[..n];
    let mut i = n;
    let mut pid = None;
    if b.get(i) == Some(&b'[') {
        let close = memchr::memchr(b']', &b[i..])? + i;
        pid = Some(&s[i + 1..close]);
        i = close + 1;
    }
    match b.get(i) {
        Some(b':') => {
            let rest = &s[i + 1..];
            Some((name, pid, rest.strip_prefix(' ').unwrap_or(rest)))
        }
        // `prog[pid]` without a colon is still clearly a tag.
        Some(b' ') if pid.is_some() => Some((name, pid, &s[i + 1..])),
        None if pid.is_some() => Some((name, pid, "")),
        _ => None,
    }
}

/// Parses a BSD syslog header. Never fails: what is not recognised stays in the message.
pub(crate) fn header<'a>(s: &'a str, cx: &ParseCtx) -> Header<'a> {
    let b = s.as_bytes();
    let (pri, mut pos) = match syslog::parse_pri(b) {
        Some((p, n)) => (Some(p), n),
        None => (None, 0),
    };
    // Cisco IOS: `<189>123: Oct 11 …` (sequence number before the time).
    let mut sequence = None;
    let digits = b[pos..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits > 0 && digits < 12 && b.get(pos + digits) == Some(&b':') {
        sequence = s[pos..pos + digits].parse().ok();
        pos += digits + 1;
    }
    while b.get(pos) == Some(&b' ') {
        pos += 1;
    }
    let time = timestamp(b, &mut pos, cx);
    let rest = &s[pos..];
    let mut hostname = None;
    let mut body = rest;
    if time.is_some() && !rest.starts_with('%') {
        let end = memchr::memchr(b' ', rest.as_bytes()).unwrap_or(rest.len());
        let word = &rest[..end];
        // A word ending in `:` or holding `[` is the tag of a record without a host.
        if !word.ends_with(':') && !word.contains('[') {
            hostname = Some(word).filter(|w| !w.is_empty());
            body = rest.get(end + 1..).unwrap_or("");
        }
    }
    // `fw01 : %ASA-…` leaves a bare colon.
    body = body.trim_start_matches([' ', ':']).trim_start();
    // Cisco IOS after a relay's header: `45: *Jan  5 10:00:02.1: %LINK-3-UPDOWN: …`.
    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && digits < 12 && body.as_bytes().get(digits..digits + 2) == Some(b": ") {
        let after = &body[digits + 2..];
        let mut inner = 0;
        if timestamp(after.as_bytes(), &mut inner, cx).is_some() || after.starts_with('%') {
            sequence = sequence.or(body[..digits].parse().ok());
            body = &after[inner..];
        }
    }
    let (tag_name, pid, msg) = match tag(body) {
        Some((t, p, m)) if !body.starts_with('%') => (Some(t), p, m),
        _ => (None, None, body),
    };
    Header {
        pri,
        sequence,
        timestamp: time,
        hostname,
        tag: tag_name,
        pid,
        msg,
    }
}

/// Length of a zone word at the start of `b`: `UTC`, `CST`, `TZ-6`, `GMT+7`.
fn zone_len(b: &[u8]) -> usize {
    let letters = b.iter().take_while(|c| c.is_ascii_uppercase()).count();
    if !(2..=5).contains(&letters) {
        return 0;
    }
    let mut n = letters;
    if matches!(b.get(n), Some(b'+' | b'-')) {
        let digits = b[n + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if (1..=4).contains(&digits) {
            n += 1 + digits;
        }
    }
    if matches!(b.get(n), Some(b':' | b' ')) {
        n
    } else {
        0
    }
}

fn four_digit_year(b: &[u8]) -> Option<i32> {
    let d = b.get(..4)?;
    if d.iter().all(u8::is_ascii_digit) && b.get(4) == Some(&b' ') {
        std::str::from_utf8(d).ok()?.parse().ok()
    } else {
        None
    }
}

/// Reads an ISO or BSD time and the separator after it. BSD times may carry a year before
/// (`1990 Oct 22 …`) or after them (`Aug 24 05:34:00 CST 1987`), a Cisco `*`/`.` clock mark
/// and a zone word; zones by name are ambiguous, so the configured zone stays in force.
fn timestamp(b: &[u8], pos: &mut usize, cx: &ParseCtx) -> Option<DateTime<Utc>> {
    let mut i = *pos;
    if matches!(b.get(i), Some(b'*' | b'.')) {
        i += 1;
    }
    if let Some((t, used)) = timefmt::parse_iso(b.get(i..)?, cx.timezone()) {
        *pos = skip_separator(b, i + used);
        return Some(t);
    }
    let mut year = cx.default_year();
    if let Some(y) = four_digit_year(b.get(i..)?) {
        year = Some(y);
        i += 5;
    }
    let guess = year.unwrap_or(cx.received().year());
    let (mut local, used, mut has_year) = timefmt::parse_bsd(b.get(i..)?, guess)?;
    has_year |= year.is_some() && cx.default_year().is_none();
    i += used;
    if b.get(i) == Some(&b' ') {
        let z = zone_len(&b[i + 1..]);
        if z > 0 {
            i += 1 + z;
            if !has_year
                && b.get(i) == Some(&b' ')
                && let Some(y) = four_digit_year(&b[i + 1..])
                && let Some(with_year) = local.with_year(y)
            {
                local = with_year;
                has_year = true;
                i += 5;
            }
        }
    }
    let t = timefmt::bsd_to_utc(local, has_year, year, cx.received(), cx.timezone())?;
    *pos = skip_separator(b, i);
    Some(t)
}

fn skip_separator(b: &[u8], mut i: usize) -> usize {
    if b.get(i) == Some(&b':') {
        i += 1;
    }
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// Writes the header's fields into `ev` (everything but module/dataset).
pub(crate) fn fill(h: &Header<'_>, ev: &mut Event) {
    if let Some(p) = h.pri {
        syslog::set_pri(ev, p);
    }
    if let Some(n) = h.sequence {
        ev.set("event.sequence", n);
    }
    syslog::set_origin(ev, h.hostname, h.tag, h.pid);
    ev.set(f::MESSAGE, h.msg);
}

/// Whether `raw` starts with a BSD time (`Mmm dd hh:mm:ss`), optionally after `<PRI>`.
fn bsd_time_at(raw: &[u8]) -> bool {
    timefmt::parse_bsd(raw, 2000).is_some()
}

impl LogParser for SyslogRfc3164Parser {
    fn id(&self) -> &'static str {
        ID
    }

    fn describe(&self) -> &'static str {
        "BSD syslog (RFC 3164) and common device variants; the message goes to the program parsers"
    }

    fn probe(&self, raw: &[u8]) -> Confidence {
        match syslog::parse_pri(raw) {
            Some(_) if super::syslog_rfc5424::looks_like(raw) => Confidence::Low,
            Some(_) => Confidence::High,
            None if bsd_time_at(raw) => Confidence::Medium,
            None => Confidence::No,
        }
    }

    fn parse(&self, raw: &[u8], cx: &ParseCtx) -> Result<Event, ParseError> {
        let text = norm::decode(raw);
        if text.s.trim().is_empty() {
            return Err(ParseError::Empty);
        }
        let h = header(&text.s, cx);
        let mut ev = norm::new_event(h.timestamp.unwrap_or(cx.received()), &text, cx);
        fill(&h, &mut ev);
        dispatch::dispatch_or_tag(h.tag, h.msg, &mut ev, ID);
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn cx() -> ParseCtx {
        ParseCtx::new(Utc.with_ymd_and_hms(2024, 6, 1, 0, 0, 0).unwrap())
    }

    #[test]
    fn classic_record_with_host_and_pid() {
        let h = header(
            "<38>Jan  5 10:00:00 web01 sshd[812]: Accepted password",
            &cx(),
        );
        assert_eq!(h.pri, Some(38));
        assert_eq!(h.hostname, Some("web01"));
        assert_eq!((h.tag, h.pid), (Some("sshd"), Some("812")));
        assert_eq!(h.msg, "Accepted password");
        assert_eq!(
            h.timestamp.unwrap().to_rfc3339(),
            "2024-01-05T10:00:00+00:00"
        );
    }

    #[test]
    fn record_without_host() {
        let h = header("<134>Jan  5 10:00:00 filterlog[99]: 5,,,1000", &cx());
        assert_eq!(h.hostname, None);
        assert_eq!(h.tag, Some("filterlog"));
        assert_eq!(h.msg, "5,,,1000");
    }

    #[test]
    fn cisco_asa_with_year_and_colon() {
        let h = header(
            "<166>Jan 05 2023 10:00:00 fw01 : %ASA-6-302013: Built",
            &cx(),
        );
        assert_eq!(h.hostname, Some("fw01"));
        assert_eq!(h.tag, None);
        assert_eq!(h.msg, "%ASA-6-302013: Built");
        assert_eq!(
            h.timestamp.unwrap().to_rfc3339(),
            "2023-01-05T10:00:00+00:00"
        );
    }

    #[test]
    fn cisco_ios_sequence_and_zone() {
        let h = header(
            "<189>123: *Mar  1 18:46:11.123 UTC: %SYS-5-CONFIG_I: Configured",
            &cx(),
        );
        assert_eq!(h.sequence, Some(123));
        assert_eq!(h.msg, "%SYS-5-CONFIG_I: Configured");
        assert!(h.timestamp.is_some());
    }

    #[test]
    fn no_header_keeps_everything_as_message() {
        let h = header("<189>date=2024-01-05 time=10:00:00 devname=\"fg\"", &cx());
        assert!(h.timestamp.is_none());
        assert_eq!(h.tag, None);
        assert!(h.msg.starts_with("date="));
    }

    #[test]
    fn iso_timestamp_rsyslog_file_format() {
        let h = header("2024-01-05T10:00:00.5+07:00 db01 su: pam_unix", &cx());
        assert_eq!(h.hostname, Some("db01"));
        assert_eq!(h.tag, Some("su"));
        assert_eq!(
            h.timestamp.unwrap().to_rfc3339(),
            "2024-01-05T03:00:00.500+00:00"
        );
    }
}
