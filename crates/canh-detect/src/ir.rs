//! The compiled form of a detection: a tree of field matchers, evaluated on a prepared event.

use chrono::{DateTime, Datelike, Timelike, Utc};
use ipnet::IpNet;
use regex::Regex;

use crate::event::{PreparedEvent, PreparedField, is_keyword_field};

/// How a string value is compared with a field's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StrOp {
    Exact,
    Contains,
    StartsWith,
    EndsWith,
}

/// A numeric comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NumOp {
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
}

impl NumOp {
    fn test(self, left: f64, right: f64) -> bool {
        match self {
            NumOp::Eq => left == right,
            NumOp::Lt => left < right,
            NumOp::Lte => left <= right,
            NumOp::Gt => left > right,
            NumOp::Gte => left >= right,
        }
    }
}

/// A part of a date taken by the time modifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimePart {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// One value test.
#[derive(Clone, Debug)]
pub(crate) enum ValueMatcher {
    /// `value` is lower-cased unless `cased`.
    Str {
        op: StrOp,
        value: String,
        cased: bool,
    },
    /// A pattern with inner wildcards, compiled to an anchored regex; `literal` is its longest
    /// wildcard-free run (lower-cased), used by the prefilter.
    Glob {
        re: Regex,
        cased: bool,
        literal: String,
    },
    /// `literals`: lower-cased strings one of which occurs in every text the regex matches
    /// (see [`regex_literals`]); `None` when no such set is known.
    Regex {
        re: Regex,
        facts: RegexFacts,
    },
    Cidr(IpNet),
    Num {
        op: NumOp,
        value: f64,
    },
    Time {
        part: TimePart,
        op: NumOp,
        value: f64,
    },
    /// The field is absent, `null` or empty.
    Null,
    /// The field is present (`true`) or absent (`false`).
    Exists(bool),
    /// The value equals (or contains, …) the value of another field.
    FieldRef {
        other: String,
        op: StrOp,
        cased: bool,
    },
}

/// A node of the compiled detection.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    True,
    False,
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    /// `field` is the stored (mapped) field name; values are OR-ed, or AND-ed with `all`.
    Field {
        field: String,
        matchers: Vec<ValueMatcher>,
        all: bool,
    },
    /// A field-less search over the keyword fields.
    Keyword {
        matchers: Vec<ValueMatcher>,
        all: bool,
    },
}

pub(crate) fn str_test(op: StrOp, hay: &str, needle: &str) -> bool {
    match op {
        StrOp::Exact => hay == needle,
        StrOp::Contains => hay.contains(needle),
        StrOp::StartsWith => hay.starts_with(needle),
        StrOp::EndsWith => hay.ends_with(needle),
    }
}

fn parse_num(s: &str) -> Option<f64> {
    let t = s.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|n| n as f64);
    }
    t.parse::<f64>().ok()
}

fn time_part(s: &str, part: TimePart) -> Option<f64> {
    let t: DateTime<Utc> = canh_core::time::parse_timestamp(s)
        .or_else(|| canh_core::time::parse_timestamp(&s.replacen(' ', "T", 1)))?;
    let n = match part {
        TimePart::Minute => t.minute(),
        TimePart::Hour => t.hour(),
        TimePart::Day => t.day(),
        TimePart::Week => t.iso_week().week(),
        TimePart::Month => t.month(),
        TimePart::Year => u32::try_from(t.year()).unwrap_or(0),
    };
    Some(f64::from(n))
}

impl ValueMatcher {
    /// Tests one text of a field (`orig` as stored, `lower` lower-cased).
    fn test_text(&self, orig: &str, lower: &str, ev: &PreparedEvent<'_>) -> bool {
        match self {
            ValueMatcher::FieldRef { other, op, cased } => ev
                .field(other)
                .or_else(|| user_data_fallback(ev, other))
                .is_some_and(|f| {
                    if *cased {
                        f.orig.iter().any(|o| str_test(*op, orig, o))
                    } else {
                        f.lower.iter().any(|o| str_test(*op, lower, o))
                    }
                }),
            _ => self.test_plain(orig, lower),
        }
    }

    /// Tests one text of a field with every matcher but `FieldRef` (which needs the event and
    /// is always false here).
    pub(crate) fn test_plain(&self, orig: &str, lower: &str) -> bool {
        match self {
            ValueMatcher::Str { op, value, cased } => {
                str_test(*op, if *cased { orig } else { lower }, value)
            }
            ValueMatcher::Glob { re, cased, .. } => re.is_match(if *cased { orig } else { lower }),
            ValueMatcher::Regex { re, facts } => match facts.run {
                Some(run) => run.test(orig),
                None => re.is_match(orig),
            },
            ValueMatcher::Cidr(net) => orig
                .trim()
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| net.contains(&ip)),
            ValueMatcher::Num { op, value } => parse_num(orig).is_some_and(|n| op.test(n, *value)),
            ValueMatcher::Time { part, op, value } => {
                time_part(orig, *part).is_some_and(|n| op.test(n, *value))
            }
            ValueMatcher::FieldRef { .. } => false,
            ValueMatcher::Null => orig.is_empty(),
            ValueMatcher::Exists(want) => *want,
        }
    }

    fn test_field(&self, f: Option<&PreparedField<'_>>, ev: &PreparedEvent<'_>) -> bool {
        match self {
            ValueMatcher::Null => {
                f.is_none_or(|f| f.is_null || f.orig.iter().all(|s| s.is_empty()))
            }
            ValueMatcher::Exists(want) => f.is_some() == *want,
            _ => f.is_some_and(|f| {
                f.orig
                    .iter()
                    .zip(&f.lower)
                    .any(|(o, l)| self.test_text(o, l, ev))
            }),
        }
    }

    /// Lower-cased literals one of which must occur in the event for this matcher to hold.
    pub(crate) fn literals(&self) -> Option<Vec<String>> {
        match self {
            ValueMatcher::Regex { facts, .. } => facts.literals.clone(),
            m => m.literal().map(|l| vec![l]),
        }
    }

    /// The lower-cased literal that must occur in the event for this matcher to hold.
    pub(crate) fn literal(&self) -> Option<String> {
        match self {
            ValueMatcher::Str { value, cased, .. } if !value.is_empty() => Some(if *cased {
                value.to_lowercase()
            } else {
                value.clone()
            }),
            ValueMatcher::Glob { literal, .. } if !literal.is_empty() => Some(literal.clone()),
            _ => None,
        }
    }
}

/// Most literals kept for one regex: a longer list is a weak prefilter.
const MAX_REGEX_LITERALS: usize = 32;

/// What the prefilter and the matcher can know of a regex before running it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RegexFacts {
    /// Lower-cased literals of which every match holds one; `None` when no such set is known.
    pub(crate) literals: Option<Vec<String>>,
    /// The regex is only `.{N,}` (or `.{N,M}`), unanchored: it matches a text whose longest
    /// line (whole text when `.` crosses lines) holds at least N characters. Without this,
    /// `.{1000,}` costs the regex engines about half a millisecond a text.
    pub(crate) run: Option<CharRun>,
}

/// See [`RegexFacts::run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CharRun {
    pub(crate) min: usize,
    pub(crate) across_lines: bool,
}

impl CharRun {
    pub(crate) fn test(self, text: &str) -> bool {
        if text.len() < self.min {
            return false;
        }
        if self.across_lines {
            text.chars().count() >= self.min
        } else {
            text.split('\n').any(|l| l.chars().count() >= self.min)
        }
    }
}

/// The facts of `pattern` compiled with these flags (see [`RegexFacts`]).
///
/// The literals come from `regex-syntax`'s extractor: the pattern's prefixes, its suffixes,
/// or the prefixes of one of its tails (every match holds a match of each tail),
/// whichever set's shortest literal is longest. Case-insensitive patterns reach the
/// extractor with every case variant spelled out (`s` also as U+017F, `k` as U+212A), and a
/// text holding one variant holds, once lower-cased, that variant lower-cased: lower-casing
/// maps each character on its own, except the Greek sigma, whose lower case depends on its
/// neighbours. A set is refused (and the rule stays a candidate for every event of its
/// logsource) when it is infinite, holds a literal shorter than 2 bytes or one with a
/// sigma, or is longer than [`MAX_REGEX_LITERALS`].
pub(crate) fn regex_facts(
    pattern: &str,
    case_insensitive: bool,
    multi_line: bool,
    dot_all: bool,
) -> RegexFacts {
    use regex_syntax::hir::literal::ExtractKind;
    use regex_syntax::hir::{Dot, Hir, HirKind};
    let Ok(hir) = regex_syntax::ParserBuilder::new()
        .case_insensitive(case_insensitive)
        .multi_line(multi_line)
        .dot_matches_new_line(dot_all)
        .build()
        .parse(pattern)
    else {
        return RegexFacts::default();
    };
    let run = match hir.kind() {
        HirKind::Repetition(rep) if rep.min > 0 => {
            let across_lines = *rep.sub == Hir::dot(Dot::AnyChar);
            (across_lines || *rep.sub == Hir::dot(Dot::AnyCharExceptLF)).then(|| CharRun {
                min: usize::try_from(rep.min).unwrap_or(usize::MAX),
                across_lines,
            })
        }
        _ => None,
    };
    let mut sets = vec![
        literal_set(&hir, ExtractKind::Prefix),
        literal_set(&hir, ExtractKind::Suffix),
    ];
    let mut top = &hir;
    while let HirKind::Capture(c) = top.kind() {
        top = &c.sub;
    }
    if let HirKind::Concat(parts) = top.kind() {
        // Every match holds a match of each tail of the sequence (case-insensitive letters
        // are one part each, so a word starts a tail rather than being a part).
        sets.extend(
            (1..parts.len())
                .map(|i| literal_set(&Hir::concat(parts[i..].to_vec()), ExtractKind::Prefix)),
        );
    }
    let literals = sets
        .into_iter()
        .flatten()
        .max_by_key(|ls| ls.iter().map(String::len).min().unwrap_or(0));
    RegexFacts { literals, run }
}

/// The lower-cased literal set `kind` extraction gives for `hir`, if usable (see
/// [`regex_facts`]).
fn literal_set(
    hir: &regex_syntax::hir::Hir,
    kind: regex_syntax::hir::literal::ExtractKind,
) -> Option<Vec<String>> {
    let mut ex = regex_syntax::hir::literal::Extractor::new();
    ex.kind(kind);
    let seq = ex.extract(hir);
    let lits = seq.literals()?;
    let mut out = Vec::with_capacity(lits.len());
    for l in lits {
        let s = std::str::from_utf8(l.as_bytes()).ok()?;
        if s.len() < 2 || s.contains(['\u{3a3}', '\u{3c3}', '\u{3c2}']) {
            return None;
        }
        out.push(s.to_lowercase());
    }
    out.sort();
    out.dedup();
    (!out.is_empty() && out.len() <= MAX_REGEX_LITERALS).then_some(out)
}

/// Windows events carry their inserts either in EventData or in UserData; Sigma names both
/// alike, so a missing `winlog.event_data.X` is looked up as `winlog.user_data.X`.
fn user_data_fallback<'e, 'a>(
    ev: &'e PreparedEvent<'a>,
    field: &str,
) -> Option<&'e PreparedField<'a>> {
    let name = field.strip_prefix("winlog.event_data.")?;
    ev.field(&format!("winlog.user_data.{name}"))
}

impl Node {
    pub(crate) fn eval(&self, ev: &PreparedEvent<'_>) -> bool {
        match self {
            Node::True => true,
            Node::False => false,
            Node::And(children) => children.iter().all(|c| c.eval(ev)),
            Node::Or(children) => children.iter().any(|c| c.eval(ev)),
            Node::Not(inner) => !inner.eval(ev),
            Node::Field {
                field,
                matchers,
                all,
            } => {
                let f = ev.field(field).or_else(|| user_data_fallback(ev, field));
                if *all {
                    matchers.iter().all(|m| m.test_field(f, ev))
                } else {
                    matchers.iter().any(|m| m.test_field(f, ev))
                }
            }
            Node::Keyword { matchers, all } => {
                let test = |m: &ValueMatcher| {
                    ev.fields
                        .iter()
                        .filter(|f| is_keyword_field(f.name))
                        .any(|f| {
                            f.orig
                                .iter()
                                .zip(&f.lower)
                                .any(|(o, l)| m.test_text(o, l, ev))
                        })
                };
                if *all {
                    matchers.iter().all(test)
                } else {
                    matchers.iter().any(test)
                }
            }
        }
    }
}
