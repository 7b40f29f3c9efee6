//! Message catalogues (Fluent, `locales/{vi,en}/console.ftl`), embedded at build time.
//!
//! Vietnamese is the default; English is chosen per user with the `canh_lang` cookie. Fluent's
//! Unicode isolation marks are turned off so that text in the page, in CSV cells and in
//! browser assertions is exactly what the catalogue says.

use chrono::{DateTime, FixedOffset, Utc};
use fluent_templates::{LanguageIdentifier, Loader, langid};

fluent_templates::static_loader! {
    static LOCALES = {
        locales: "./locales",
        fallback_language: "vi",
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

static VI: LanguageIdentifier = langid!("vi");
static EN: LanguageIdentifier = langid!("en");

/// The console's languages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// Tiếng Việt (default).
    Vi,
    /// English.
    En,
}

impl Lang {
    /// Parses a cookie or query value; anything unknown is Vietnamese.
    pub fn parse(s: &str) -> Self {
        if s.trim().eq_ignore_ascii_case("en") {
            Self::En
        } else {
            Self::Vi
        }
    }

    /// The code (`vi`, `en`).
    pub fn code(self) -> &'static str {
        match self {
            Self::Vi => "vi",
            Self::En => "en",
        }
    }

    fn id(self) -> &'static LanguageIdentifier {
        match self {
            Self::Vi => &VI,
            Self::En => &EN,
        }
    }
}

/// A translator for one language, handed to every template.
#[derive(Clone, Copy, Debug)]
pub struct Tr {
    /// The language.
    pub lang: Lang,
}

impl Tr {
    /// The message `id`; the id itself when it is missing (a unit test keeps that from
    /// happening).
    pub fn t(&self, id: &str) -> String {
        LOCALES
            .try_lookup(self.lang.id(), id)
            .unwrap_or_else(|| id.to_owned())
    }

    /// The message `prefix-key` (e.g. a severity or step name).
    pub fn k(&self, prefix: &str, key: &str) -> String {
        self.t(&format!("{prefix}-{}", key.replace('_', "-")))
    }
}

/// Vietnam's offset; the country has no daylight saving time.
pub(super) fn vn_offset() -> FixedOffset {
    // 7 h is a valid offset (|offset| < 24 h), so `east_opt` cannot fail; fall back to UTC
    // rather than panic anyway.
    FixedOffset::east_opt(7 * 3600).unwrap_or_else(|| Utc.fix())
}

use chrono::Offset as _;
use chrono::TimeZone as _;

/// `dd/mm/yyyy HH:mm` in Asia/Ho_Chi_Minh.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&vn_offset())
        .format("%d/%m/%Y %H:%M")
        .to_string()
}

/// `dd/mm/yyyy HH:mm:ss` in Asia/Ho_Chi_Minh (event lists).
pub(super) fn fmt_time_secs(t: DateTime<Utc>) -> String {
    t.with_timezone(&vn_offset())
        .format("%d/%m/%Y %H:%M:%S")
        .to_string()
}

/// Parses a `datetime-local` form value (Vietnam time) to UTC.
pub(super) fn parse_local(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .ok()?;
    vn_offset()
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn ids(text: &str) -> BTreeSet<String> {
        text.lines()
            .filter(|l| !l.starts_with(' ') && !l.starts_with('#'))
            .filter_map(|l| l.split_once(" ="))
            .map(|(k, _)| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect()
    }

    #[test]
    fn both_catalogues_have_the_same_ids() {
        let vi = ids(include_str!("../../locales/vi/console.ftl"));
        let en = ids(include_str!("../../locales/en/console.ftl"));
        assert!(vi.len() > 50, "{}", vi.len());
        let only_vi: Vec<_> = vi.difference(&en).collect();
        let only_en: Vec<_> = en.difference(&vi).collect();
        assert!(only_vi.is_empty(), "missing in en: {only_vi:?}");
        assert!(only_en.is_empty(), "missing in vi: {only_en:?}");
    }

    #[test]
    fn lookups_have_no_isolation_marks_and_differ_by_language() {
        let vi = Tr { lang: Lang::Vi }.t("console-nav-wall");
        let en = Tr { lang: Lang::En }.t("console-nav-wall");
        assert_eq!(vi, "Màn hình trực");
        assert_eq!(en, "Watch wall");
        assert!(!vi.contains('\u{2068}') && !vi.contains('\u{2069}'));
        assert_eq!(
            Tr { lang: Lang::En }.k("console-sev", "emergency"),
            "Emergency"
        );
        assert_eq!(
            Tr { lang: Lang::Vi }.k("console-step", "collect_evidence"),
            "Thu thập bằng chứng, truy tìm thủ phạm"
        );
    }

    #[test]
    fn dates_are_vietnamese_local_time() {
        let t = DateTime::parse_from_rfc3339("2026-11-27T18:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(fmt_time(t), "28/11/2026 01:05");
        assert_eq!(parse_local("2026-11-28T01:05"), Some(t));
        assert_eq!(parse_local("garbage"), None);
        assert_eq!(Lang::parse("EN"), Lang::En);
        assert_eq!(Lang::parse("fr"), Lang::Vi);
    }
}
