//! Pieces shared by the two syslog header parsers: PRI, facility and severity names.

use canh_core::{Event, fields as f};

/// Reads `<PRI>` at the start; returns the value (0–191) and the bytes used.
pub(crate) fn parse_pri(b: &[u8]) -> Option<(u8, usize)> {
    if b.first() != Some(&b'<') {
        return None;
    }
    let mut v: u16 = 0;
    let mut i = 1;
    while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
        v = v * 10 + u16::from(c - b'0');
        i += 1;
        if i > 4 {
            return None;
        }
    }
    if i == 1 || b.get(i) != Some(&b'>') || v > 191 {
        return None;
    }
    Some((u8::try_from(v).ok()?, i + 1))
}

const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

const SEVERITIES: [&str; 8] = [
    "emergency",
    "alert",
    "critical",
    "error",
    "warning",
    "notice",
    "informational",
    "debug",
];

/// Severity name (RFC 5424 table) for a code 0–7.
pub(crate) fn severity_name(code: u8) -> Option<&'static str> {
    SEVERITIES.get(usize::from(code)).copied()
}

/// Sets `log.syslog.priority`, `.facility.*` and `.severity.*` from a PRI value.
pub(crate) fn set_pri(ev: &mut Event, pri: u8) {
    let facility = pri >> 3;
    let severity = pri & 7;
    ev.set("log.syslog.priority", pri);
    ev.set(f::LOG_SYSLOG_FACILITY_CODE, facility);
    if let Some(name) = FACILITIES.get(usize::from(facility)) {
        ev.set("log.syslog.facility.name", *name);
    }
    ev.set(f::LOG_SYSLOG_SEVERITY_CODE, severity);
    if let Some(name) = severity_name(severity) {
        ev.set("log.syslog.severity.name", name);
        ev.set(crate::norm::LOG_LEVEL, name);
    }
}

/// Sets the host, program and pid fields shared by both syslog formats.
pub(crate) fn set_origin(
    ev: &mut Event,
    hostname: Option<&str>,
    app: Option<&str>,
    procid: Option<&str>,
) {
    if let Some(h) = hostname {
        ev.set("log.syslog.hostname", h);
        ev.set(f::HOST_NAME, h);
    }
    if let Some(a) = app {
        ev.set(f::LOG_SYSLOG_APPNAME, a);
        ev.set(f::PROCESS_NAME, a);
    }
    if let Some(p) = procid {
        ev.set("log.syslog.procid", p);
        if let Ok(pid) = p.parse::<u32>() {
            ev.set(f::PROCESS_PID, pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pri_bounds() {
        assert_eq!(parse_pri(b"<34>x"), Some((34, 4)));
        assert_eq!(parse_pri(b"<0>"), Some((0, 3)));
        assert_eq!(parse_pri(b"<191>"), Some((191, 5)));
        assert_eq!(parse_pri(b"<192>"), None);
        assert_eq!(parse_pri(b"<>"), None);
        assert_eq!(parse_pri(b"<0034>"), None);
    }

    #[test]
    fn pri_splits_into_facility_and_severity() {
        let mut ev = Event::new(chrono::Utc::now());
        set_pri(&mut ev, 165);
        assert_eq!(ev.get("log.syslog.facility.code"), Some(&20.into()));
        assert_eq!(ev.get_str("log.syslog.facility.name"), Some("local4"));
        assert_eq!(ev.get_str("log.syslog.severity.name"), Some("notice"));
    }
}
