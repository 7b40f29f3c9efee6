//! `pcre` on the `regex` crate: the common PCRE subset, refusing PCRE-only features by name.

use super::buffers::Buf;
use super::compile::RuleProblem;
use super::matcher::Pcre;
use super::parse::unquote;
use regex::bytes::{Regex, RegexBuilder};
use std::sync::OnceLock;

/// Compiled program size allowed per expression.
const SIZE_LIMIT: usize = 4 << 20;

/// PCRE constructs the `regex` crate lacks, with the name reported to the user.
const PCRE_ONLY: &[(&str, &str)] = &[
    ("(?=", "pcre lookahead"),
    ("(?!", "pcre negative lookahead"),
    ("(?<=", "pcre lookbehind"),
    ("(?<!", "pcre negative lookbehind"),
    ("(?>", "pcre atomic group"),
    ("(?|", "pcre branch reset"),
    ("(?(", "pcre conditional"),
    ("(?R", "pcre recursion"),
    ("(?P=", "pcre backreference"),
    ("\\K", "pcre \\K"),
    ("\\G", "pcre \\G"),
];

/// Compiles a `pcre` option value (`"/re/flags"` or `!"/re/flags"`).
pub fn compile(value: &str) -> Result<(Pcre, Option<Buf>), RuleProblem> {
    let v = value.trim();
    let (negated, v) = match v.strip_prefix('!') {
        Some(r) => (true, r.trim()),
        None => (false, v),
    };
    let v = unquote(v);
    let body = v
        .strip_prefix('/')
        .ok_or_else(|| RuleProblem::Invalid("pcre must start with /".into()))?;
    let end = body
        .rfind('/')
        .ok_or_else(|| RuleProblem::Invalid("pcre has no closing /".into()))?;
    let (pattern, flags) = (&body[..end], &body[end + 1..]);
    let pattern = pattern.replace("\\;", ";").replace("\\\"", "\"");
    for (needle, what) in PCRE_ONLY {
        if pattern.contains(needle) {
            return Err(RuleProblem::Unsupported((*what).into()));
        }
    }
    if has_backreference(&pattern) {
        return Err(RuleProblem::Unsupported("pcre backreference".into()));
    }
    if has_possessive(&pattern) {
        return Err(RuleProblem::Unsupported(
            "pcre possessive quantifier".into(),
        ));
    }
    let mut relative = false;
    let anchored = flags.contains('A');
    let mut buf = None;
    let translated = translate(&pattern);
    let source = if anchored {
        format!("\\A(?:{translated})")
    } else {
        translated
    };
    let mut options = RegexOptions::default();
    for f in flags.chars() {
        match f {
            'i' => options.case_insensitive = true,
            's' => options.dot_matches_new_line = true,
            'm' => options.multi_line = true,
            'x' => options.ignore_whitespace = true,
            'R' => relative = true,
            // Anchoring at the buffer end, greediness and match-limit tuning.
            'E' | 'O' | 'B' => {}
            'G' => options.swap_greed = true,
            'A' => {}
            other => {
                // Buffer flags (/U /H /P ...) predate sticky buffers.
                let b = buffer_flag(other)
                    .ok_or_else(|| RuleProblem::Unsupported(format!("pcre flag /{other}")))?;
                buf = Some(b);
            }
        }
    }
    let re = LazyRegex::new(source.into_boxed_str(), options)?;
    Ok((
        Pcre {
            re: std::sync::Arc::new(re),
            relative,
            negated,
        },
        buf,
    ))
}

/// Options of a `pcre` that change what its regex matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct RegexOptions {
    case_insensitive: bool,
    dot_matches_new_line: bool,
    multi_line: bool,
    ignore_whitespace: bool,
    swap_greed: bool,
}

/// A `pcre` program, checked when its rule is loaded and compiled again on first use.
///
/// A compiled expression takes kilobytes (forward and reverse automata, literal
/// prefilters), and most of a large rule set's expressions are never reached: a rule gets to
/// its `pcre` only after its fast pattern and the contents before it matched. Loading
/// compiles each expression once, with the same options, so that a rule is accepted or
/// refused exactly as before, and keeps only its source.
#[derive(Debug)]
pub struct LazyRegex {
    source: Box<str>,
    options: RegexOptions,
    /// `None` only if a second compilation failed where the first succeeded.
    re: OnceLock<Option<Regex>>,
}

impl LazyRegex {
    /// Checks that `source` compiles with `options`.
    fn new(source: Box<str>, options: RegexOptions) -> Result<Self, RuleProblem> {
        let lazy = Self {
            source,
            options,
            re: OnceLock::new(),
        };
        lazy.build().map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => RuleProblem::Unsupported("pcre too large".into()),
            _ => RuleProblem::Unsupported("pcre syntax not supported by the regex engine".into()),
        })?;
        Ok(lazy)
    }

    fn build(&self) -> Result<Regex, regex::Error> {
        let o = self.options;
        RegexBuilder::new(&self.source)
            .unicode(false)
            .size_limit(SIZE_LIMIT)
            .case_insensitive(o.case_insensitive)
            .dot_matches_new_line(o.dot_matches_new_line)
            .multi_line(o.multi_line)
            .ignore_whitespace(o.ignore_whitespace)
            .swap_greed(o.swap_greed)
            .build()
    }

    /// The compiled regex (compiled on the first call).
    pub fn get(&self) -> Option<&Regex> {
        self.re
            .get_or_init(|| match self.build() {
                Ok(re) => Some(re),
                Err(e) => {
                    tracing::warn!(pcre = %self.source, error = %e, "pcre no longer compiles");
                    None
                }
            })
            .as_ref()
    }

    /// The expression as given to the regex engine.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the expression matches somewhere in `hay`.
    pub fn is_match(&self, hay: &[u8]) -> bool {
        self.get().is_some_and(|re| re.is_match(hay))
    }
}

/// The buffer a legacy pcre flag selects.
fn buffer_flag(f: char) -> Option<Buf> {
    let kw = match f {
        'U' => "http.uri",
        'I' => "http.uri.raw",
        'P' => "http.request_body",
        'Q' => "http.response_body",
        'H' => "http.header",
        'D' => "http.header.raw",
        'M' => "http.method",
        'C' => "http.cookie",
        'S' => "http.stat_code",
        'Y' => "http.stat_msg",
        'V' => "http.user_agent",
        'W' => "http.host",
        'Z' => "http.host.raw",
        _ => return None,
    };
    Buf::from_keyword(kw)
}

/// PCRE escapes the `regex` crate spells differently.
fn translate(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            // \Z: end or before a final newline; \z is close enough for inspection buffers.
            Some('Z') => out.push_str("\\z"),
            Some('h') => out.push_str("[ \\t]"),
            Some('/') => out.push('/'),
            Some(n) => {
                out.push('\\');
                out.push(n);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn has_backreference(p: &str) -> bool {
    let b = p.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'\\' {
            if (b'1'..=b'9').contains(&b[i + 1]) {
                return true;
            }
            i += 2;
            continue;
        }
        i += 1;
    }
    false
}

fn has_possessive(p: &str) -> bool {
    let b = p.as_bytes();
    let mut escaped = false;
    let mut in_class = false;
    for i in 0..b.len() {
        let c = b[i];
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            b'\\' => escaped = true,
            b'[' => in_class = true,
            b']' => in_class = false,
            b'+' if !in_class && i > 0 => {
                let prev = b[i - 1];
                let prev_escaped = i >= 2 && b[i - 2] == b'\\';
                if matches!(prev, b'*' | b'+' | b'?' | b'}') && !prev_escaped {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_relative() {
        let (p, buf) = compile(r#""/^GET\s+\/a\/b/Ri""#).unwrap();
        assert!(buf.is_none());
        assert!(p.relative);
        assert!(p.re.is_match(b"get  /a/b"));
        assert!(!p.negated);
        let (n, buf) = compile(r#"!"/x/U""#).unwrap();
        assert!(n.negated);
        assert_eq!(buf, Some(Buf::HttpUri));
    }

    #[test]
    fn pcre_only_features_are_named() {
        let e = |s: &str| compile(s).unwrap_err();
        assert_eq!(
            e(r#""/a(?=b)/""#),
            RuleProblem::Unsupported("pcre lookahead".into())
        );
        assert_eq!(
            e(r#""/(a)\1/""#),
            RuleProblem::Unsupported("pcre backreference".into())
        );
        assert_eq!(
            e(r#""/a++/""#),
            RuleProblem::Unsupported("pcre possessive quantifier".into())
        );
        assert_eq!(
            e(r#""/a/X""#),
            RuleProblem::Unsupported("pcre flag /X".into())
        );
        assert!(matches!(e(r#""nope""#), RuleProblem::Invalid(_)));
    }

    #[test]
    fn expressions_compile_on_first_use_and_too_large_ones_are_refused_at_load() {
        let (p, _) = compile(r#""/^(?:ab|cd)[0-9]{2}/s""#).unwrap();
        assert!(p.re.re.get().is_none(), "compiled at load");
        assert_eq!(p.re.as_str(), "^(?:ab|cd)[0-9]{2}");
        assert!(p.re.is_match(b"cd42"));
        assert!(p.re.re.get().is_some());
        assert!(!p.re.is_match(b"xcd42"));
        let e = compile(r#""/(?:[a-z]{100}){1000}/""#).unwrap_err();
        assert_eq!(e, RuleProblem::Unsupported("pcre too large".into()));
        let e = compile(r#""/a[/""#).unwrap_err();
        assert!(matches!(e, RuleProblem::Unsupported(_)));
    }

    #[test]
    fn bytes_mode_matches_binary() {
        let (p, _) = compile(r#""/\x00\xff[\x80-\xfe]/""#).unwrap();
        assert!(p.re.is_match(&[0, 0xff, 0x90]));
    }
}
