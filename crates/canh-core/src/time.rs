//! Time expressions accepted by the CLI and API, and timestamp parsing for parsers.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// Parses an absolute timestamp: RFC 3339 (`2024-05-01T10:00:00Z`, with any offset), the same
/// without an offset (taken as UTC), with a space instead of `T`, or a bare date.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f %z") {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| Utc.from_utc_datetime(&t));
    }
    None
}

/// Why a time expression was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid time {0:?}: expected RFC 3339, a date, epoch seconds or now-<n><s|m|h|d|w>")]
pub struct TimeError(pub String);

/// Parses a time expression relative to `now`: `now`, `now-15m`, `now-24h`, `now-7d`, `now-2w`,
/// epoch seconds, or any absolute form that [`parse_timestamp`] reads.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// let now = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
/// let t = canh_core::time::parse_time_expr("now-1d", now).unwrap();
/// assert_eq!(t, Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
/// ```
pub fn parse_time_expr(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, TimeError> {
    let err = || TimeError(s.to_owned());
    let t = s.trim();
    if t == "now" {
        return Ok(now);
    }
    if let Some(rest) = t.strip_prefix("now-").or_else(|| t.strip_prefix("now+")) {
        let sign = if t.as_bytes().get(3) == Some(&b'-') {
            -1
        } else {
            1
        };
        let (num, unit) = rest.split_at(rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?);
        let n: i64 = num.parse().map_err(|_| err())?;
        let d = match unit {
            "s" => Duration::try_seconds(n),
            "m" => Duration::try_minutes(n),
            "h" => Duration::try_hours(n),
            "d" => Duration::try_days(n),
            "w" => Duration::try_weeks(n),
            _ => None,
        }
        .ok_or_else(err)?;
        return now.checked_add_signed(d * sign).ok_or_else(err);
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = t.parse().map_err(|_| err())?;
        return DateTime::from_timestamp(secs, 0).ok_or_else(err);
    }
    parse_timestamp(t).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_forms_are_read() {
        let want = Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap();
        assert_eq!(parse_timestamp("2024-05-01T10:00:00Z"), Some(want));
        assert_eq!(parse_timestamp("2024-05-01T17:00:00+07:00"), Some(want));
        assert_eq!(parse_timestamp("2024-05-01 10:00:00"), Some(want));
        assert_eq!(parse_timestamp("not a time"), None);
    }

    #[test]
    fn relative_forms_are_read() {
        let now = Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap();
        assert_eq!(
            parse_time_expr("now-2h", now).unwrap(),
            now - Duration::hours(2)
        );
        assert_eq!(parse_time_expr("now", now).unwrap(), now);
        assert!(parse_time_expr("now-2y", now).is_err());
        assert!(parse_time_expr("now-", now).is_err());
    }
}
