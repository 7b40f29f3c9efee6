//! Sigma value modifiers: `Field|mod1|mod2: values` → value matchers.

use std::collections::HashMap;

use regex::{Regex, RegexBuilder};
use serde_yaml::Value as Yaml;

use crate::error::RuleError;
use crate::ir::{NumOp, StrOp, TimePart, ValueMatcher};
use crate::value::{self, Piece, Utf16};

/// The modifiers of one detection item, parsed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Modifiers {
    pub(crate) op: Option<StrOp>,
    pub(crate) all: bool,
    pub(crate) cased: bool,
    pub(crate) neq: bool,
    re: Option<(bool, bool, bool)>,
    cidr: bool,
    num: Option<NumOp>,
    time: Option<TimePart>,
    exists: bool,
    fieldref: bool,
    expand: bool,
    windash: bool,
    /// Encodings in the order written: utf16 variants, then base64 / base64offset.
    utf16: Option<Utf16>,
    base64: bool,
    base64offset: bool,
}

impl Modifiers {
    pub(crate) fn parse(mods: &[&str]) -> Result<Self, RuleError> {
        let mut m = Modifiers::default();
        for raw in mods {
            match *raw {
                "contains" => m.op = Some(StrOp::Contains),
                "startswith" => m.op = Some(StrOp::StartsWith),
                "endswith" => m.op = Some(StrOp::EndsWith),
                "all" => m.all = true,
                "cased" => m.cased = true,
                "neq" => m.neq = true,
                "re" => m.re = Some((false, false, false)),
                "i" | "m" | "s" => {
                    let Some((i, ml, s)) = m.re.as_mut() else {
                        return Err(RuleError::invalid(format!("modifier '{raw}' needs 're'")));
                    };
                    match *raw {
                        "i" => *i = true,
                        "m" => *ml = true,
                        _ => *s = true,
                    }
                }
                "cidr" => m.cidr = true,
                "lt" => m.num = Some(NumOp::Lt),
                "lte" => m.num = Some(NumOp::Lte),
                "gt" => m.num = Some(NumOp::Gt),
                "gte" => m.num = Some(NumOp::Gte),
                "minute" => m.time = Some(TimePart::Minute),
                "hour" => m.time = Some(TimePart::Hour),
                "day" => m.time = Some(TimePart::Day),
                "week" => m.time = Some(TimePart::Week),
                "month" => m.time = Some(TimePart::Month),
                "year" => m.time = Some(TimePart::Year),
                "exists" => m.exists = true,
                "fieldref" => m.fieldref = true,
                "expand" => m.expand = true,
                "windash" => m.windash = true,
                "wide" | "utf16le" => m.utf16 = Some(Utf16::Le),
                "utf16be" => m.utf16 = Some(Utf16::Be),
                "utf16" => m.utf16 = Some(Utf16::Bom),
                "base64" => m.base64 = true,
                "base64offset" => m.base64offset = true,
                other => return Err(RuleError::invalid(format!("unknown modifier '{other}'"))),
            }
        }
        if m.utf16.is_some() && !(m.base64 || m.base64offset) {
            return Err(RuleError::invalid(
                "utf16 modifiers must be followed by base64",
            ));
        }
        Ok(m)
    }
}

/// Context for building matchers: placeholders for `expand`, and the field mapper for
/// `fieldref` targets.
pub(crate) struct ValueCx<'a> {
    pub(crate) placeholders: &'a HashMap<String, Vec<String>>,
    pub(crate) map_field: &'a dyn Fn(&str) -> Result<String, RuleError>,
}

fn scalar_text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn expand(s: &str, cx: &ValueCx<'_>) -> Result<Vec<String>, RuleError> {
    let mut out = vec![String::new()];
    let mut rest = s;
    while let Some(start) = rest.find('%') {
        let Some(len) = rest[start + 1..].find('%') else {
            break;
        };
        let name = &rest[start + 1..start + 1 + len];
        let Some(values) = cx.placeholders.get(name) else {
            return Err(RuleError::unsupported(format!(
                "placeholder %{name}% is not configured"
            )));
        };
        let prefix = &rest[..start];
        let mut next = Vec::with_capacity(out.len() * values.len());
        for o in &out {
            for v in values {
                next.push(format!("{o}{prefix}{v}"));
            }
        }
        out = next;
        rest = &rest[start + len + 2..];
    }
    for o in &mut out {
        o.push_str(rest);
    }
    Ok(out)
}

fn str_matcher(text: &str, op: StrOp, cased: bool) -> Result<ValueMatcher, RuleError> {
    let mut pieces = value::parse_wildcards(text);
    let lead = matches!(pieces.first(), Some(Piece::Star))
        || op == StrOp::Contains
        || op == StrOp::EndsWith;
    let trail = matches!(pieces.last(), Some(Piece::Star))
        || op == StrOp::Contains
        || op == StrOp::StartsWith;
    while pieces.first() == Some(&Piece::Star) {
        pieces.remove(0);
    }
    while pieces.last() == Some(&Piece::Star) {
        pieces.pop();
    }
    let norm = |s: &str| {
        if cased {
            s.to_owned()
        } else {
            s.to_lowercase()
        }
    };
    let op = match (lead, trail) {
        (true, true) => StrOp::Contains,
        (true, false) => StrOp::EndsWith,
        (false, true) => StrOp::StartsWith,
        (false, false) => StrOp::Exact,
    };
    match pieces.as_slice() {
        [] if op == StrOp::Exact => {
            return Ok(ValueMatcher::Str {
                op,
                value: String::new(),
                cased,
            });
        }
        // `*` alone matches any present value.
        [] => {
            return Ok(ValueMatcher::Str {
                op: StrOp::StartsWith,
                value: String::new(),
                cased,
            });
        }
        [Piece::Lit(l)] => {
            return Ok(ValueMatcher::Str {
                op,
                value: norm(l),
                cased,
            });
        }
        _ => {}
    }
    let mut pattern = String::from("(?s)");
    if !lead {
        pattern.push('^');
    }
    let mut literal = String::new();
    for p in &pieces {
        match p {
            Piece::Lit(l) => {
                let l = norm(l);
                pattern.push_str(&regex::escape(&l));
                if l.len() > literal.len() {
                    literal = l.to_lowercase();
                }
            }
            Piece::Star => pattern.push_str(".*"),
            Piece::One => pattern.push('.'),
        }
    }
    if !trail {
        pattern.push('$');
    }
    let re = Regex::new(&pattern)
        .map_err(|e| RuleError::invalid(format!("bad wildcard pattern {text:?}: {e}")))?;
    Ok(ValueMatcher::Glob { re, cased, literal })
}

fn num_value(v: &Yaml) -> Result<f64, RuleError> {
    match v {
        Yaml::Number(n) => n.as_f64().ok_or_else(|| RuleError::invalid("bad number")),
        Yaml::String(s) => s
            .trim()
            .parse()
            .map_err(|_| RuleError::invalid(format!("{s:?} is not a number"))),
        _ => Err(RuleError::invalid("numeric modifier needs a number")),
    }
}

/// Builds the matchers of one detection item's values.
pub(crate) fn build(
    m: &Modifiers,
    values: &[Yaml],
    cx: &ValueCx<'_>,
) -> Result<Vec<ValueMatcher>, RuleError> {
    let mut out = Vec::new();
    for v in values {
        if m.exists {
            match v {
                Yaml::Bool(b) => out.push(ValueMatcher::Exists(*b)),
                Yaml::String(s) if s.eq_ignore_ascii_case("true") => {
                    out.push(ValueMatcher::Exists(true));
                }
                Yaml::String(s) if s.eq_ignore_ascii_case("false") => {
                    out.push(ValueMatcher::Exists(false));
                }
                _ => return Err(RuleError::invalid("'exists' needs true or false")),
            }
            continue;
        }
        if v.is_null() {
            out.push(ValueMatcher::Null);
            continue;
        }
        if let Some(part) = m.time {
            let op = m.num.unwrap_or(NumOp::Eq);
            out.push(ValueMatcher::Time {
                part,
                op,
                value: num_value(v)?,
            });
            continue;
        }
        if let Some(op) = m.num {
            out.push(ValueMatcher::Num {
                op,
                value: num_value(v)?,
            });
            continue;
        }
        let Some(text) = scalar_text(v) else {
            return Err(RuleError::invalid(format!("unsupported value {v:?}")));
        };
        if m.fieldref {
            let other = (cx.map_field)(&text)?;
            let op = m.op.unwrap_or(StrOp::Exact);
            out.push(ValueMatcher::FieldRef {
                other,
                op,
                cased: m.cased,
            });
            continue;
        }
        if let Some((i, ml, s)) = m.re {
            let re = RegexBuilder::new(&text)
                .case_insensitive(i)
                .multi_line(ml)
                .dot_matches_new_line(s)
                .size_limit(1 << 22)
                .build()
                .map_err(|e| RuleError::unsupported(format!("regex {text:?}: {e}")))?;
            let facts = crate::ir::regex_facts(&text, i, ml, s);
            out.push(ValueMatcher::Regex { re, facts });
            continue;
        }
        if m.cidr {
            let net = text
                .trim()
                .parse::<ipnet::IpNet>()
                .or_else(|_| {
                    text.trim()
                        .parse::<std::net::IpAddr>()
                        .map(ipnet::IpNet::from)
                })
                .map_err(|_| RuleError::invalid(format!("{text:?} is not a CIDR range")))?;
            out.push(ValueMatcher::Cidr(net));
            continue;
        }
        let texts = if m.expand {
            expand(&text, cx)?
        } else {
            vec![text]
        };
        for t in texts {
            let variants = if m.windash {
                value::windash(&t)
            } else {
                vec![t]
            };
            for var in variants {
                push_encoded(m, &var, &mut out)?;
            }
        }
    }
    Ok(out)
}

fn push_encoded(m: &Modifiers, text: &str, out: &mut Vec<ValueMatcher>) -> Result<(), RuleError> {
    if !(m.base64 || m.base64offset) {
        out.push(str_matcher(text, m.op.unwrap_or(StrOp::Exact), m.cased)?);
        return Ok(());
    }
    let plain = value::unescape(text);
    let bytes = match m.utf16 {
        Some(kind) => value::utf16(plain.as_bytes(), kind),
        None => plain.into_bytes(),
    };
    // Base64 text is case-sensitive: encoded values are always matched cased.
    let encoded = if m.base64offset {
        value::base64_offsets(&bytes)
    } else {
        vec![value::base64(&bytes)]
    };
    let op = m.op.unwrap_or(StrOp::Exact);
    for e in encoded {
        out.push(str_matcher(&value::escape(&e), op, true)?);
    }
    Ok(())
}
