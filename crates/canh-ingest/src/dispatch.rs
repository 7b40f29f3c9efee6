//! Hands a syslog message body to the program parsers, and runs a program parser on a record
//! given to it directly (with or without a syslog header).

use canh_core::{Event, fields as f};

use crate::norm;
use crate::parsers::{
    ParseCtx, ParseError, cisco_asa, fortigate, iptables, linux_auth, pfsense, syslog_rfc3164,
    syslog_rfc5424,
};

/// What a program parser recognised.
pub(crate) struct Matched {
    pub(crate) module: &'static str,
    pub(crate) dataset: &'static str,
    pub(crate) class_uid: u32,
}

/// A program parser: `(program name, message body, event)`; returns `None` and leaves the event
/// alone when the message is not one of its own.
pub(crate) type Apply = fn(Option<&str>, &str, &mut Event) -> Option<Matched>;

const PROGRAMS: &[Apply] = &[
    linux_auth::apply,
    iptables::apply,
    pfsense::apply,
    cisco_asa::apply,
    fortigate::apply,
];

/// Runs the program parsers on a syslog body; when none matches, tags the event as plain
/// syslog from `syslog_id`.
pub(crate) fn dispatch_or_tag(
    program: Option<&str>,
    msg: &str,
    ev: &mut Event,
    syslog_id: &'static str,
) {
    for apply in PROGRAMS {
        if let Some(m) = apply(program, msg, ev) {
            norm::tag(ev, m.module, m.dataset, m.class_uid);
            return;
        }
    }
    norm::tag(ev, syslog_id, "syslog", norm::ocsf::UNKNOWN);
}

/// Parses a record for one program parser: a syslog header is read when present, then the
/// body must be the program's, or the record is refused.
pub(crate) fn parse_standalone(
    id: &'static str,
    raw: &[u8],
    cx: &ParseCtx,
    apply: Apply,
) -> Result<Event, ParseError> {
    let text = norm::decode(raw);
    let s: &str = &text.s;
    if s.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let mut ev;
    let matched = if syslog_rfc5424::looks_like(raw) {
        let h = syslog_rfc5424::header(s, cx.timezone()).map_err(|r| ParseError::invalid(id, r))?;
        ev = norm::new_event(h.timestamp.unwrap_or(cx.received()), &text, cx);
        syslog_rfc5424::fill(&h, &mut ev);
        apply(h.app, h.msg, &mut ev)
    } else {
        let h = syslog_rfc3164::header(s, cx);
        ev = norm::new_event(h.timestamp.unwrap_or(cx.received()), &text, cx);
        syslog_rfc3164::fill(&h, &mut ev);
        apply(h.tag, h.msg, &mut ev)
    };
    let Some(m) = matched else {
        return Err(ParseError::invalid(id, "message is not from this program"));
    };
    if ev.get(f::MESSAGE).is_none() {
        ev.set(f::MESSAGE, s);
    }
    norm::tag(&mut ev, m.module, m.dataset, m.class_uid);
    Ok(ev)
}
