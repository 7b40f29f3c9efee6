//! Hand-written timestamp readers for the hot path (no format strings, no allocation).

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// `2024-01-05T10:00:00.123Z`: the form of `event.ingested`.
pub(crate) fn rfc3339_millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn digits(b: &[u8], start: usize, n: usize) -> Option<u32> {
    let part = b.get(start..start + n)?;
    let mut v = 0u32;
    for &c in part {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Reads an RFC 3339 / ISO 8601 timestamp at the start of `b`: `YYYY-MM-DD`, `T` or a space,
/// `HH:MM:SS`, optional fraction (any number of digits, kept to nanoseconds), then `Z`,
/// `±HH:MM`, `±HHMM` or nothing (then `tz` applies). Returns the time and the bytes used.
pub(crate) fn parse_iso(b: &[u8], tz: FixedOffset) -> Option<(DateTime<Utc>, usize)> {
    let year = digits(b, 0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (h, m, s, mut i) = hms(b, 11)?;
    let mut nanos = 0u32;
    if matches!(b.get(i), Some(b'.' | b',')) {
        i += 1;
        let mut scale = 100_000_000u32;
        let start = i;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            nanos += u32::from(c - b'0') * scale;
            scale /= 10;
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    let naive = date.and_hms_nano_opt(h, m, s.min(59), nanos)?;
    let (offset, used) = match b.get(i) {
        Some(b'Z' | b'z') => (Some(0i32), 1),
        Some(sign @ (b'+' | b'-')) => {
            let oh = digits(b, i + 1, 2)?;
            let (om, used) = if b.get(i + 3) == Some(&b':') {
                (digits(b, i + 4, 2)?, 6)
            } else if let Some(om) = digits(b, i + 3, 2) {
                (om, 5)
            } else {
                (0, 3)
            };
            let secs = i32::try_from(oh * 3600 + om * 60).ok()?;
            (Some(if *sign == b'-' { -secs } else { secs }), used)
        }
        _ => (None, 0),
    };
    let utc = match offset {
        Some(secs) => FixedOffset::east_opt(secs)?
            .from_local_datetime(&naive)
            .single()?,
        None => tz.from_local_datetime(&naive).single()?,
    };
    Some((utc.with_timezone(&Utc), i + used))
}

/// `HH:MM:SS` at `at`; returns the parts and the index after the seconds.
fn hms(b: &[u8], at: usize) -> Option<(u32, u32, u32, usize)> {
    let h = digits(b, at, 2)?;
    if b.get(at + 2) != Some(&b':') || b.get(at + 5) != Some(&b':') {
        return None;
    }
    let m = digits(b, at + 3, 2)?;
    let s = digits(b, at + 6, 2)?;
    Some((h, m, s, at + 8))
}

/// Month number from a three-letter English abbreviation (any case).
pub(crate) fn month_abbr(b: &[u8]) -> Option<u32> {
    let m = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let head = b.get(..3)?;
    m.iter()
        .position(|x| x.eq_ignore_ascii_case(head))
        .and_then(|p| u32::try_from(p + 1).ok())
}

/// Reads a BSD syslog time at the start of `b`: `Mmm dd hh:mm:ss` (day space-padded or not),
/// optionally with `.fraction`, and optionally a year before or after the time
/// (`Mmm dd yyyy hh:mm:ss`, `Mmm dd hh:mm:ss yyyy`). Without a year, `year` is used.
/// Returns the local time and the bytes used.
pub(crate) fn parse_bsd(b: &[u8], year: i32) -> Option<(NaiveDateTime, usize, bool)> {
    let month = month_abbr(b)?;
    if b.get(3) != Some(&b' ') {
        return None;
    }
    let mut i = 4;
    if b.get(i) == Some(&b' ') {
        i += 1;
    }
    let mut day = 0u32;
    let start = i;
    while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
        day = day * 10 + u32::from(c - b'0');
        i += 1;
    }
    if i == start || i - start > 2 || b.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    let mut the_year = year;
    let mut has_year = false;
    if let Some(y) = digits(b, i, 4).filter(|_| b.get(i + 4) == Some(&b' ')) {
        the_year = i32::try_from(y).ok()?;
        has_year = true;
        i += 5;
    }
    let (h, m, s, mut end) = hms(b, i)?;
    let mut nanos = 0;
    if b.get(end) == Some(&b'.') {
        let mut scale = 100_000_000u32;
        end += 1;
        while let Some(c) = b.get(end).filter(|c| c.is_ascii_digit()) {
            nanos += u32::from(c - b'0') * scale;
            scale /= 10;
            end += 1;
        }
    }
    if !has_year
        && b.get(end) == Some(&b' ')
        && let Some(y) = digits(b, end + 1, 4)
        && !b.get(end + 5).is_some_and(u8::is_ascii_alphanumeric)
    {
        the_year = i32::try_from(y).ok()?;
        has_year = true;
        end += 5;
    }
    let date = NaiveDate::from_ymd_opt(the_year, month, day)?;
    Some((
        date.and_hms_nano_opt(h, m, s.min(59), nanos)?,
        end,
        has_year,
    ))
}

/// Turns a local time without a year into UTC: the year is `year` if given, else the receipt
/// year, moved back one when that would put the event more than a day in the future (a
/// December record received in January).
pub(crate) fn bsd_to_utc(
    local: NaiveDateTime,
    has_year: bool,
    year: Option<i32>,
    received: DateTime<Utc>,
    tz: FixedOffset,
) -> Option<DateTime<Utc>> {
    let mut naive = local;
    if !has_year && year.is_none() {
        let t = tz.from_local_datetime(&naive).single()?.with_timezone(&Utc);
        if t > received + chrono::Duration::days(1) {
            naive = naive.with_year(naive.year() - 1)?;
        }
    }
    Some(tz.from_local_datetime(&naive).single()?.with_timezone(&Utc))
}

/// Common Log Format time: `05/Jan/2024:10:00:00 +0700`.
pub(crate) fn parse_clf(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    let day = digits(b, 0, 2)?;
    let month = month_abbr(b.get(3..)?)?;
    let year = digits(b, 7, 4)?;
    if b.get(2) != Some(&b'/') || b.get(6) != Some(&b'/') || b.get(11) != Some(&b':') {
        return None;
    }
    let (h, m, sec, i) = hms(b, 12)?;
    let naive = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?.and_hms_opt(
        h,
        m,
        sec.min(59),
    )?;
    let tz = match (b.get(i), b.get(i + 1)) {
        (Some(b' '), Some(sign @ (b'+' | b'-'))) => {
            let oh = digits(b, i + 2, 2)?;
            let om = digits(b, i + 4, 2)?;
            let secs = i32::try_from(oh * 3600 + om * 60).ok()?;
            FixedOffset::east_opt(if *sign == b'-' { -secs } else { secs })?
        }
        _ => FixedOffset::east_opt(0)?,
    };
    Some(tz.from_local_datetime(&naive).single()?.with_timezone(&Utc))
}

/// Epoch seconds with an optional fraction (`1385053862.3072`) as a time.
pub(crate) fn from_epoch_secs_f64(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() || !(0.0..1.0e11).contains(&secs) {
        return None;
    }
    let whole = secs.trunc();
    let nanos = ((secs - whole) * 1e9).round().clamp(0.0, 999_999_999.0);
    // Both values are range-checked above, so the casts cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    DateTime::from_timestamp(whole as i64, nanos as u32)
}

/// A JSON number or numeric string of epoch seconds (HEC, GELF).
pub(crate) fn from_json_epoch(v: &serde_json::Value) -> Option<DateTime<Utc>> {
    match v {
        serde_json::Value::Number(n) => from_epoch_secs_f64(n.as_f64()?),
        serde_json::Value::String(s) => from_epoch_secs_f64(s.trim().parse().ok()?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> FixedOffset {
        FixedOffset::east_opt(0).unwrap()
    }

    #[test]
    fn iso_reads_offsets_and_fractions() {
        let (t, n) = parse_iso(b"2003-10-11T22:14:15.003Z rest", utc()).unwrap();
        assert_eq!(t.to_rfc3339(), "2003-10-11T22:14:15.003+00:00");
        assert_eq!(n, 24);
        let (t, _) = parse_iso(b"2003-08-24T05:14:15.000003-07:00", utc()).unwrap();
        assert_eq!(t.to_rfc3339(), "2003-08-24T12:14:15.000003+00:00");
        let (t, _) = parse_iso(b"2024-01-05T10:00:00.123456+0700", utc()).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-01-05T03:00:00.123456+00:00");
        assert!(parse_iso(b"2024-13-05T10:00:00Z", utc()).is_none());
    }

    #[test]
    fn bsd_reads_padded_day_and_years() {
        let (t, n, y) = parse_bsd(b"Oct  1 22:14:15 host", 2024).unwrap();
        assert_eq!(t.to_string(), "2024-10-01 22:14:15");
        assert_eq!((n, y), (15, false));
        let (t, _, y) = parse_bsd(b"Jan 05 2023 10:00:00 fw", 2024).unwrap();
        assert_eq!(t.to_string(), "2023-01-05 10:00:00");
        assert!(y);
        let (t, n, _) = parse_bsd(b"Mar  1 18:46:11.123 2022 rest", 2024).unwrap();
        assert_eq!(t.to_string(), "2022-03-01 18:46:11.123");
        assert_eq!(n, 24);
    }

    #[test]
    fn december_record_received_in_january_is_last_year() {
        let local = NaiveDate::from_ymd_opt(2025, 12, 31)
            .unwrap()
            .and_hms_opt(23, 59, 0)
            .unwrap();
        let received = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 5).unwrap();
        let t = bsd_to_utc(local, false, None, received, utc()).unwrap();
        assert_eq!(t.year(), 2024);
    }

    #[test]
    fn clf_time_with_offset() {
        let t = parse_clf("05/Jan/2024:10:00:00 +0700").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-01-05T03:00:00+00:00");
    }
}
