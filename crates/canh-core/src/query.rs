//! The analysts' query language (Lucene/KQL style) and its predicate IR.
//!
//! [`parse`] turns a query string into an [`Expr`]; [`Expr::matches`] evaluates it on one
//! [`Event`]. Stores compile the same `Expr` to their own indexes and must agree with
//! `matches`, which is the reference semantics.
//!
//! Accepted forms:
//!
//! | form | meaning |
//! | --- | --- |
//! | `field:value`, `field:"a phrase"` | the field equals the value (any element of an array) |
//! | `failed`, `"failed password"` | full text over `message` and `event.original` |
//! | `user.name:adm*`, `host.name:web-0?` | wildcards: `*` any run, `?` one character |
//! | `field:[a TO b]`, `field:{a TO b}`, `field:[10 TO *]` | ranges, inclusive `[]` or exclusive `{}` |
//! | `field:>=10`, `field>10`, `field < 5` | one-sided ranges |
//! | `a AND b`, `a OR b`, `NOT a`, `a b` | booleans (`and`/`or`/`not`, `&&`/`||`/`!`, `-a`, `+a`); juxtaposition is AND |
//! | `( … )`, `field:(a OR b)` | grouping, and a field applied to a group of values |
//! | `_exists_:field`, `field:*` | the field is present |
//! | `source.ip:10.0.0.0/8` | CIDR match on IP addresses |
//! | `\` | escapes the next character (`path:C\:\\Windows\*`) |
//!
//! Keyword fields compare exactly (case-sensitive); full-text fields ([`FULL_TEXT_FIELDS`])
//! match a value as a sequence of lower-cased alphanumeric tokens ([`tokenize`]), and a
//! wildcard there matches single tokens.
//!
//! ```
//! use canh_core::{Event, query};
//! let mut ev = Event::new(chrono::Utc::now());
//! ev.set("host.name", "web-01");
//! ev.set("source.ip", "10.1.2.3");
//! ev.set("message", "Failed password for root");
//! let q = query::parse(r#"host.name:web-* AND source.ip:10.0.0.0/8 AND "failed password""#).unwrap();
//! assert!(q.matches(&ev));
//! assert!(!query::parse("NOT failed").unwrap().matches(&ev));
//! ```

use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};

use crate::Event;
use crate::time::parse_timestamp;

/// Fields matched as text (tokenised) rather than as exact keywords. Bare terms search these.
pub const FULL_TEXT_FIELDS: &[&str] = &["message", "event.original"];

/// The field name that stands for the event's timestamp.
pub const TIMESTAMP_FIELD: &str = "@timestamp";

/// Tokens longer than this many bytes are dropped by [`tokenize`] (and by the index).
pub const MAX_TOKEN_BYTES: usize = 255;

/// How deeply groups and negations may nest before a query is refused.
pub const MAX_DEPTH: usize = 64;

/// Whether `field` is matched as full text.
pub fn is_full_text(field: &str) -> bool {
    FULL_TEXT_FIELDS.contains(&field)
}

/// Splits text into lower-cased runs of alphanumeric characters; runs of
/// [`MAX_TOKEN_BYTES`] bytes or more are dropped.
pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty() && t.len() < MAX_TOKEN_BYTES)
        .map(lowercase)
        .collect()
}

fn lowercase(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        out.extend(c.to_lowercase());
    }
    out
}

/// One end of a range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeBound {
    /// The bound as written (a number, a timestamp or a string).
    pub value: String,
    /// Whether the bound itself is included.
    pub inclusive: bool,
}

/// An IP network (`10.0.0.0/8`, `2001:db8::/32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network address as written (host bits are ignored when matching).
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix`; `None` when either part is invalid.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = s.split_once('/')?;
        let addr: IpAddr = a.parse().ok()?;
        let prefix: u8 = p.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside the network (IPv4 and IPv6 never match each other).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The predicate IR every query language, rule format and store speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// Matches every event (the empty query, `*`, `*:*`).
    All,
    /// All of the parts match.
    And(Vec<Expr>),
    /// Any of the parts matches.
    Or(Vec<Expr>),
    /// The part does not match.
    Not(Box<Expr>),
    /// An unquoted value; `field: None` means full text.
    Term {
        /// The field, or `None` for full text.
        field: Option<String>,
        /// The value, unescaped.
        value: String,
    },
    /// A quoted value; `field: None` means full text.
    Phrase {
        /// The field, or `None` for full text.
        field: Option<String>,
        /// The text between the quotes, unescaped.
        value: String,
    },
    /// A value with `*`/`?` wildcards; `field: None` means full-text tokens.
    Wildcard {
        /// The field, or `None` for full text.
        field: Option<String>,
        /// The pattern; `\` escapes a literal `*`, `?` or `\`.
        pattern: String,
    },
    /// A range on a number, a timestamp or a string.
    Range {
        /// The field.
        field: String,
        /// Lower bound, `None` when open.
        lower: Option<RangeBound>,
        /// Upper bound, `None` when open.
        upper: Option<RangeBound>,
    },
    /// The field is present and not null.
    Exists {
        /// The field.
        field: String,
    },
    /// An IP field's value is inside a network.
    Cidr {
        /// The field.
        field: String,
        /// The network.
        net: Cidr,
    },
}

/// Why a query string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid query at byte {position}: {message}")]
pub struct QueryError {
    /// Byte offset into the query where the problem was found.
    pub position: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses a query string; the empty query matches everything.
pub fn parse(input: &str) -> Result<Expr, QueryError> {
    let tokens = lex(input)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        end: input.len(),
    };
    if p.tokens.is_empty() {
        return Ok(Expr::All);
    }
    let expr = p.parse_or(None, 0)?;
    if let Some(t) = p.tokens.get(p.pos) {
        return Err(err(t.start, "unexpected token (unbalanced parenthesis?)"));
    }
    Ok(expr)
}

impl std::str::FromStr for Expr {
    type Err = QueryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

fn err(position: usize, message: &str) -> QueryError {
    QueryError {
        position,
        message: message.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    LParen,
    RParen,
    /// `[` (true) or `{` (false).
    Open(bool),
    /// `]` (true) or `}` (false).
    Close(bool),
    Colon,
    Cmp(Cmp),
    And,
    Or,
    Not,
    Plus,
    Word(Word),
    Quoted(String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Clone, Debug, PartialEq)]
struct Word {
    /// Unescaped text.
    text: String,
    /// Glob pattern with `\` escaping literal `*`, `?` and `\`.
    pattern: String,
    /// Contains an unescaped `*` or `?`.
    wild: bool,
    /// Contains any escape.
    escaped: bool,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

fn is_stop(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '"' | ':' | '<' | '>' | '[' | ']' | '{' | '}')
}

fn lex(input: &str) -> Result<Vec<Token>, QueryError> {
    let mut out = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let single = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::Open(true)),
            '{' => Some(Tok::Open(false)),
            ']' => Some(Tok::Close(true)),
            '}' => Some(Tok::Close(false)),
            ':' => Some(Tok::Colon),
            _ => None,
        };
        if let Some(tok) = single {
            chars.next();
            out.push(Token {
                tok,
                start,
                end: start + 1,
            });
            continue;
        }
        match c {
            '<' | '>' => {
                chars.next();
                let eq = chars.peek().is_some_and(|&(_, n)| n == '=');
                if eq {
                    chars.next();
                }
                let cmp = match (c, eq) {
                    ('<', false) => Cmp::Lt,
                    ('<', true) => Cmp::Le,
                    ('>', false) => Cmp::Gt,
                    _ => Cmp::Ge,
                };
                let end = start + if eq { 2 } else { 1 };
                out.push(Token {
                    tok: Tok::Cmp(cmp),
                    start,
                    end,
                });
            }
            '"' => {
                chars.next();
                let mut text = String::new();
                let mut closed = false;
                let mut end = input.len();
                while let Some((i, ch)) = chars.next() {
                    match ch {
                        '\\' => match chars.next() {
                            Some((_, e)) => text.push(e),
                            None => return Err(err(i, "escape at end of query")),
                        },
                        '"' => {
                            closed = true;
                            end = i + 1;
                            break;
                        }
                        _ => text.push(ch),
                    }
                }
                if !closed {
                    return Err(err(start, "unterminated quoted phrase"));
                }
                out.push(Token {
                    tok: Tok::Quoted(text),
                    start,
                    end,
                });
            }
            '!' => {
                chars.next();
                out.push(Token {
                    tok: Tok::Not,
                    start,
                    end: start + 1,
                });
            }
            '-' | '+' if at_word_start(&out, start) => {
                chars.next();
                let followed = chars.peek().is_some_and(|&(_, n)| !n.is_whitespace());
                if !followed {
                    return Err(err(start, "operator must be followed by a term"));
                }
                let tok = if c == '-' { Tok::Not } else { Tok::Plus };
                out.push(Token {
                    tok,
                    start,
                    end: start + 1,
                });
            }
            _ => {
                let mut w = Word {
                    text: String::new(),
                    pattern: String::new(),
                    wild: false,
                    escaped: false,
                };
                let mut end = start;
                while let Some(&(i, ch)) = chars.peek() {
                    if is_stop(ch) {
                        break;
                    }
                    chars.next();
                    end = i + ch.len_utf8();
                    if ch == '\\' {
                        let Some((j, e)) = chars.next() else {
                            return Err(err(i, "escape at end of query"));
                        };
                        end = j + e.len_utf8();
                        w.escaped = true;
                        w.text.push(e);
                        if matches!(e, '*' | '?' | '\\') {
                            w.pattern.push('\\');
                        }
                        w.pattern.push(e);
                        continue;
                    }
                    if matches!(ch, '*' | '?') {
                        w.wild = true;
                    }
                    w.text.push(ch);
                    w.pattern.push(ch);
                }
                let tok = if w.escaped {
                    Tok::Word(w)
                } else {
                    match w.text.as_str() {
                        "AND" | "and" | "&&" => Tok::And,
                        "OR" | "or" | "||" => Tok::Or,
                        "NOT" | "not" => Tok::Not,
                        _ => Tok::Word(w),
                    }
                };
                out.push(Token { tok, start, end });
            }
        }
    }
    Ok(out)
}

/// A leading `-`/`+` is an operator only where a new clause may start.
fn at_word_start(out: &[Token], start: usize) -> bool {
    match out.last() {
        None => true,
        Some(t) => t.end < start || matches!(t.tok, Tok::LParen | Tok::Not | Tok::And | Tok::Or),
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn here(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |t| t.start)
    }

    fn bump(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn parse_or(&mut self, field: Option<&str>, depth: usize) -> Result<Expr, QueryError> {
        if depth > MAX_DEPTH {
            return Err(err(self.here(), "query nested too deeply"));
        }
        let mut parts = vec![self.parse_and(field, depth)?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            parts.push(self.parse_and(field, depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn parse_and(&mut self, field: Option<&str>, depth: usize) -> Result<Expr, QueryError> {
        let mut parts = vec![self.parse_unary(field, depth)?];
        loop {
            match self.peek() {
                None | Some(Tok::Or | Tok::RParen) => break,
                Some(Tok::And) => {
                    self.pos += 1;
                    parts.push(self.parse_unary(field, depth)?);
                }
                Some(_) => parts.push(self.parse_unary(field, depth)?),
            }
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn parse_unary(&mut self, field: Option<&str>, depth: usize) -> Result<Expr, QueryError> {
        if depth > MAX_DEPTH {
            return Err(err(self.here(), "query nested too deeply"));
        }
        match self.peek() {
            Some(Tok::Not) => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.parse_unary(field, depth + 1)?)))
            }
            Some(Tok::Plus) => {
                self.pos += 1;
                self.parse_unary(field, depth + 1)
            }
            _ => self.parse_primary(field, depth),
        }
    }

    fn parse_primary(&mut self, field: Option<&str>, depth: usize) -> Result<Expr, QueryError> {
        let at = self.here();
        let Some(tok) = self.bump() else {
            return Err(err(at, "expected a term, found the end of the query"));
        };
        match tok.tok {
            Tok::LParen => {
                let inner = self.parse_or(field, depth + 1)?;
                match self.bump() {
                    Some(Token {
                        tok: Tok::RParen, ..
                    }) => Ok(inner),
                    _ => Err(err(tok.start, "unclosed parenthesis")),
                }
            }
            Tok::Quoted(value) => Ok(Expr::Phrase {
                field: field.map(str::to_owned),
                value,
            }),
            Tok::Open(incl) => match field {
                Some(f) => self.parse_range(f, incl, tok.start),
                None => Err(err(tok.start, "a range needs a field (field:[a TO b])")),
            },
            Tok::Cmp(cmp) => match field {
                Some(f) => self.parse_cmp(f, cmp, tok.start),
                None => Err(err(tok.start, "a comparison needs a field (field>10)")),
            },
            Tok::Word(w) => match self.peek() {
                Some(Tok::Colon) => {
                    if field.is_some() {
                        return Err(err(tok.start, "a field inside a field group"));
                    }
                    self.pos += 1;
                    let name = w.text;
                    self.parse_field_value(&name, tok.start, depth)
                }
                Some(Tok::Cmp(cmp)) if field.is_none() => {
                    let cmp = *cmp;
                    let at_cmp = self.here();
                    self.pos += 1;
                    self.parse_cmp(&w.text, cmp, at_cmp)
                }
                _ => {
                    let w = self.glue(w, tok.end, field.is_some());
                    Ok(value_expr(field, w))
                }
            },
            Tok::RParen => Err(err(tok.start, "unexpected ')'")),
            Tok::Close(_) => Err(err(tok.start, "unexpected range end")),
            Tok::Colon => Err(err(tok.start, "a ':' without a field name")),
            Tok::And | Tok::Or => Err(err(tok.start, "an operator without a left-hand term")),
            Tok::Not | Tok::Plus => Err(err(tok.start, "misplaced operator")),
        }
    }

    fn parse_field_value(
        &mut self,
        field: &str,
        field_at: usize,
        depth: usize,
    ) -> Result<Expr, QueryError> {
        if field.is_empty() {
            return Err(err(field_at, "empty field name"));
        }
        let at = self.here();
        let Some(tok) = self.bump() else {
            return Err(err(at, "expected a value after the field name"));
        };
        match tok.tok {
            Tok::LParen => {
                let inner = self.parse_or(Some(field), depth + 1)?;
                match self.bump() {
                    Some(Token {
                        tok: Tok::RParen, ..
                    }) => Ok(inner),
                    _ => Err(err(tok.start, "unclosed parenthesis")),
                }
            }
            Tok::Open(incl) => self.parse_range(field, incl, tok.start),
            Tok::Cmp(cmp) => self.parse_cmp(field, cmp, tok.start),
            Tok::Quoted(value) => {
                if field == "_exists_" {
                    return Ok(Expr::Exists { field: value });
                }
                Ok(Expr::Phrase {
                    field: Some(field.to_owned()),
                    value,
                })
            }
            Tok::Word(w) => {
                let w = self.glue(w, tok.end, true);
                Ok(value_expr(Some(field), w))
            }
            _ => Err(err(tok.start, "expected a value after the field name")),
        }
    }

    /// Joins `a:b:c` pieces written without spaces after a field (times, IPv6 addresses).
    fn glue(&mut self, mut w: Word, mut end: usize, allowed: bool) -> Word {
        if !allowed {
            return w;
        }
        loop {
            let (Some(colon), Some(next)) =
                (self.tokens.get(self.pos), self.tokens.get(self.pos + 1))
            else {
                // A trailing `:` right after a value (`fe80::`) belongs to it.
                if let Some(colon) = self.tokens.get(self.pos)
                    && colon.tok == Tok::Colon
                    && colon.start == end
                {
                    w.text.push(':');
                    w.pattern.push(':');
                    self.pos += 1;
                }
                return w;
            };
            if colon.tok != Tok::Colon || colon.start != end {
                return w;
            }
            match &next.tok {
                Tok::Word(n) if next.start == colon.end => {
                    w.text.push(':');
                    w.text.push_str(&n.text);
                    w.pattern.push(':');
                    w.pattern.push_str(&n.pattern);
                    w.wild |= n.wild;
                    w.escaped |= n.escaped;
                    end = next.end;
                    self.pos += 2;
                }
                Tok::Colon if next.start == colon.end => {
                    w.text.push(':');
                    w.pattern.push(':');
                    end = colon.end;
                    self.pos += 1;
                }
                _ => return w,
            }
        }
    }

    fn bound_value(&mut self, what: &str) -> Result<Option<String>, QueryError> {
        let at = self.here();
        match self.bump() {
            Some(Token {
                tok: Tok::Quoted(v),
                ..
            }) => Ok(Some(v)),
            Some(Token {
                tok: Tok::Word(w),
                end,
                ..
            }) => {
                let w = self.glue(w, end, true);
                if w.text == "*" && !w.escaped {
                    Ok(None)
                } else {
                    Ok(Some(w.text))
                }
            }
            _ => Err(err(at, &format!("expected {what}"))),
        }
    }

    fn parse_range(&mut self, field: &str, lo_incl: bool, at: usize) -> Result<Expr, QueryError> {
        let lo = self.bound_value("a lower bound")?;
        let to_at = self.here();
        match self.bump() {
            Some(Token {
                tok: Tok::Word(w), ..
            }) if w.text == "TO" && !w.escaped => {}
            _ => return Err(err(to_at, "expected TO in range")),
        }
        let hi = self.bound_value("an upper bound")?;
        let Some(Token {
            tok: Tok::Close(hi_incl),
            ..
        }) = self.bump()
        else {
            return Err(err(at, "unclosed range (expected ']' or '}')"));
        };
        Ok(Expr::Range {
            field: field.to_owned(),
            lower: lo.map(|value| RangeBound {
                value,
                inclusive: lo_incl,
            }),
            upper: hi.map(|value| RangeBound {
                value,
                inclusive: hi_incl,
            }),
        })
    }

    fn parse_cmp(&mut self, field: &str, cmp: Cmp, at: usize) -> Result<Expr, QueryError> {
        let Some(value) = self.bound_value("a value after the comparison")? else {
            return Err(err(at, "a comparison needs a value, not '*'"));
        };
        let field = field.to_owned();
        Ok(match cmp {
            Cmp::Gt => Expr::Range {
                field,
                lower: Some(RangeBound {
                    value,
                    inclusive: false,
                }),
                upper: None,
            },
            Cmp::Ge => Expr::Range {
                field,
                lower: Some(RangeBound {
                    value,
                    inclusive: true,
                }),
                upper: None,
            },
            Cmp::Lt => Expr::Range {
                field,
                lower: None,
                upper: Some(RangeBound {
                    value,
                    inclusive: false,
                }),
            },
            Cmp::Le => Expr::Range {
                field,
                lower: None,
                upper: Some(RangeBound {
                    value,
                    inclusive: true,
                }),
            },
        })
    }
}

fn value_expr(field: Option<&str>, w: Word) -> Expr {
    if !w.escaped && w.text == "*" {
        return match field {
            Some("*") | None => Expr::All,
            Some(f) => Expr::Exists {
                field: f.to_owned(),
            },
        };
    }
    if field == Some("_exists_") {
        return Expr::Exists { field: w.text };
    }
    let owned = field.map(str::to_owned);
    if w.wild {
        return Expr::Wildcard {
            field: owned,
            pattern: w.pattern,
        };
    }
    if let Some(f) = field
        && w.text.contains('/')
        && let Some(net) = Cidr::parse(&w.text)
    {
        return Expr::Cidr {
            field: f.to_owned(),
            net,
        };
    }
    Expr::Term {
        field: owned,
        value: w.text,
    }
}

// ---------------------------------------------------------------------------------------------
// Display: a canonical query string that parses back to the same `Expr`.

fn write_word(f: &mut fmt::Formatter<'_>, s: &str, keep_wild: bool) -> fmt::Result {
    if s.is_empty() {
        return f.write_str("\"\"");
    }
    let reserved = matches!(
        s,
        "AND" | "and" | "&&" | "OR" | "or" | "||" | "NOT" | "not" | "TO"
    );
    let mut chars = s.chars().peekable();
    let mut first = true;
    while let Some(c) = chars.next() {
        let escape = if keep_wild && c == '\\' {
            // Pattern escapes are already in place: copy the escape and its character.
            f.write_str("\\")?;
            if let Some(n) = chars.next() {
                write!(f, "{n}")?;
            }
            first = false;
            continue;
        } else {
            is_stop(c)
                || c == '\\'
                || (!keep_wild && matches!(c, '*' | '?'))
                || (first && (matches!(c, '-' | '+' | '!') || reserved))
        };
        if escape {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
        first = false;
    }
    Ok(())
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

fn write_field(f: &mut fmt::Formatter<'_>, field: &Option<String>) -> fmt::Result {
    if let Some(name) = field {
        write_word(f, name, false)?;
        f.write_str(":")?;
    }
    Ok(())
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::All => f.write_str("*"),
            Expr::And(parts) | Expr::Or(parts) => {
                let op = if matches!(self, Expr::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                if parts.is_empty() {
                    // An empty AND is true, an empty OR false.
                    return f.write_str(if op == " AND " { "*" } else { "NOT *" });
                }
                f.write_str("(")?;
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(op)?;
                    }
                    write!(f, "{p}")?;
                }
                f.write_str(")")
            }
            Expr::Not(inner) => write!(f, "NOT ({inner})"),
            Expr::Term { field, value } => {
                write_field(f, field)?;
                write_word(f, value, false)
            }
            Expr::Phrase { field, value } => {
                write_field(f, field)?;
                write_quoted(f, value)
            }
            Expr::Wildcard { field, pattern } => {
                write_field(f, field)?;
                write_word(f, pattern, true)
            }
            Expr::Range {
                field,
                lower,
                upper,
            } => {
                write_word(f, field, false)?;
                f.write_str(":")?;
                f.write_str(if lower.as_ref().is_none_or(|b| b.inclusive) {
                    "["
                } else {
                    "{"
                })?;
                match lower {
                    Some(b) => write_quoted(f, &b.value)?,
                    None => f.write_str("*")?,
                }
                f.write_str(" TO ")?;
                match upper {
                    Some(b) => write_quoted(f, &b.value)?,
                    None => f.write_str("*")?,
                }
                f.write_str(if upper.as_ref().is_none_or(|b| b.inclusive) {
                    "]"
                } else {
                    "}"
                })
            }
            Expr::Exists { field } => {
                f.write_str("_exists_:")?;
                write_word(f, field, false)
            }
            Expr::Cidr { field, net } => {
                write_word(f, field, false)?;
                f.write_str(":")?;
                write_word(f, &net.to_string(), false)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// A scalar as seen by the evaluator.
enum Val<'a> {
    Str(&'a str),
    Num(&'a serde_json::Number),
    Bool(bool),
    Time(DateTime<Utc>),
}

fn collect_vals<'a>(v: &'a serde_json::Value, out: &mut Vec<Val<'a>>, depth: usize) {
    match v {
        serde_json::Value::String(s) => out.push(Val::Str(s)),
        serde_json::Value::Number(n) => out.push(Val::Num(n)),
        serde_json::Value::Bool(b) => out.push(Val::Bool(*b)),
        serde_json::Value::Array(items) if depth < 4 => {
            for item in items {
                collect_vals(item, out, depth + 1);
            }
        }
        _ => {}
    }
}

fn values<'a>(ev: &'a Event, field: &str) -> Vec<Val<'a>> {
    let mut out = Vec::new();
    if field == TIMESTAMP_FIELD {
        out.push(Val::Time(ev.timestamp));
    } else if let Some(v) = ev.get(field) {
        collect_vals(v, &mut out, 0);
    }
    out
}

/// The text form a keyword index stores for a value (numbers as JSON writes them); borrowed
/// for strings and booleans.
pub fn keyword_text(v: &serde_json::Value) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    match v {
        serde_json::Value::String(s) => Some(Cow::Borrowed(s)),
        serde_json::Value::Number(n) => Some(Cow::Owned(n.to_string())),
        serde_json::Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

fn as_f64(s: &str) -> Option<f64> {
    let n: f64 = s.trim().parse().ok()?;
    n.is_finite().then_some(n)
}

impl Expr {
    /// Whether `ev` matches this predicate. This is the reference semantics.
    pub fn matches(&self, ev: &Event) -> bool {
        match self {
            Expr::All => true,
            Expr::And(parts) => parts.iter().all(|p| p.matches(ev)),
            Expr::Or(parts) => parts.iter().any(|p| p.matches(ev)),
            Expr::Not(inner) => !inner.matches(ev),
            Expr::Term { field, value } | Expr::Phrase { field, value } => match field {
                None => FULL_TEXT_FIELDS.iter().any(|f| text_phrase(ev, f, value)),
                Some(f) if is_full_text(f) => text_phrase(ev, f, value),
                Some(f) => values(ev, f).iter().any(|v| equals(v, value)),
            },
            Expr::Wildcard { field, pattern } => {
                let glob = Glob::new(pattern);
                match field {
                    None => FULL_TEXT_FIELDS.iter().any(|f| text_glob(ev, f, &glob)),
                    Some(f) if is_full_text(f) => text_glob(ev, f, &glob),
                    Some(f) => values(ev, f).iter().any(|v| match v {
                        Val::Str(s) => glob.matches(s),
                        Val::Num(n) => glob.matches(&n.to_string()),
                        Val::Bool(b) => glob.matches(&b.to_string()),
                        Val::Time(t) => glob.matches(&t.to_rfc3339()),
                    }),
                }
            }
            Expr::Range {
                field,
                lower,
                upper,
            } => values(ev, field)
                .iter()
                .any(|v| in_range(v, lower.as_ref(), upper.as_ref())),
            Expr::Exists { field } => field == TIMESTAMP_FIELD || !values(ev, field).is_empty(),
            Expr::Cidr { field, net } => values(ev, field).iter().any(|v| match v {
                Val::Str(s) => parse_ip(s).is_some_and(|ip| net.contains(ip)),
                _ => false,
            }),
        }
    }
}

/// Parses an IP address as stored (`10.0.0.1`, `2001:db8::1`, `[2001:db8::1]`).
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let s = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

fn equals(v: &Val<'_>, value: &str) -> bool {
    match v {
        Val::Str(s) => *s == value,
        Val::Num(n) => {
            n.to_string() == value || as_f64(value).is_some_and(|q| n.as_f64() == Some(q))
        }
        Val::Bool(b) => value.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Val::Time(t) => parse_timestamp(value).is_some_and(|q| q == *t),
    }
}

fn text_strings<'a>(ev: &'a Event, field: &str) -> Vec<&'a str> {
    values(ev, field)
        .into_iter()
        .filter_map(|v| match v {
            Val::Str(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn text_phrase(ev: &Event, field: &str, value: &str) -> bool {
    let want = tokenize(value);
    if want.is_empty() {
        return false;
    }
    text_strings(ev, field).into_iter().any(|s| {
        let have = tokenize(s);
        have.windows(want.len()).any(|w| w == want.as_slice())
    })
}

fn text_glob(ev: &Event, field: &str, glob: &Glob) -> bool {
    let lower = glob.lowercased();
    text_strings(ev, field)
        .into_iter()
        .any(|s| tokenize(s).iter().any(|t| lower.matches(t)))
}

fn in_range(v: &Val<'_>, lower: Option<&RangeBound>, upper: Option<&RangeBound>) -> bool {
    fn check<T: PartialOrd>(x: &T, b: Option<(T, bool)>, is_lower: bool) -> bool {
        match b {
            None => true,
            Some((bound, incl)) => match (is_lower, incl) {
                (true, true) => *x >= bound,
                (true, false) => *x > bound,
                (false, true) => *x <= bound,
                (false, false) => *x < bound,
            },
        }
    }
    match v {
        Val::Time(t) => {
            let conv = |b: Option<&RangeBound>| -> Option<Option<(DateTime<Utc>, bool)>> {
                match b {
                    None => Some(None),
                    Some(b) => parse_timestamp(&b.value).map(|t| Some((t, b.inclusive))),
                }
            };
            let (Some(lo), Some(hi)) = (conv(lower), conv(upper)) else {
                return false;
            };
            check(t, lo, true) && check(t, hi, false)
        }
        Val::Num(n) => {
            let Some(x) = n.as_f64() else { return false };
            num_range(x, lower, upper)
        }
        Val::Str(s) => {
            if let Some(x) = as_f64(s) {
                let numeric_bounds = lower.is_none_or(|b| as_f64(&b.value).is_some())
                    && upper.is_none_or(|b| as_f64(&b.value).is_some());
                if numeric_bounds {
                    return num_range(x, lower, upper);
                }
            }
            let lo = lower.map(|b| (b.value.as_str(), b.inclusive));
            let hi = upper.map(|b| (b.value.as_str(), b.inclusive));
            check(s, lo, true) && check(s, hi, false)
        }
        Val::Bool(_) => false,
    }
}

fn num_range(x: f64, lower: Option<&RangeBound>, upper: Option<&RangeBound>) -> bool {
    let conv = |b: Option<&RangeBound>| -> Option<Option<(f64, bool)>> {
        match b {
            None => Some(None),
            Some(b) => as_f64(&b.value).map(|n| Some((n, b.inclusive))),
        }
    };
    let (Some(lo), Some(hi)) = (conv(lower), conv(upper)) else {
        return false;
    };
    let lo_ok = lo.is_none_or(|(b, incl)| if incl { x >= b } else { x > b });
    let hi_ok = hi.is_none_or(|(b, incl)| if incl { x <= b } else { x < b });
    lo_ok && hi_ok
}

/// A compiled `*`/`?` pattern (see [`Expr::Wildcard`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    parts: Vec<GlobPart>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GlobPart {
    Lit(char),
    One,
    Many,
}

impl Glob {
    /// Compiles a pattern in which `\` escapes the next character.
    pub fn new(pattern: &str) -> Glob {
        let mut parts = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            parts.push(match c {
                '\\' => GlobPart::Lit(chars.next().unwrap_or('\\')),
                '*' => GlobPart::Many,
                '?' => GlobPart::One,
                other => GlobPart::Lit(other),
            });
        }
        Glob { parts }
    }

    /// The same pattern with its literals lower-cased (for full-text tokens).
    pub fn lowercased(&self) -> Glob {
        let mut parts = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            match p {
                GlobPart::Lit(c) => parts.extend(c.to_lowercase().map(GlobPart::Lit)),
                other => parts.push(*other),
            }
        }
        Glob { parts }
    }

    /// Whether the whole of `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        let text: Vec<char> = s.chars().collect();
        let (mut p, mut t) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.parts.get(p) {
                Some(GlobPart::Many) => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(GlobPart::One) => {
                    p += 1;
                    t += 1;
                }
                Some(GlobPart::Lit(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        self.parts[p.min(self.parts.len())..]
            .iter()
            .all(|x| *x == GlobPart::Many)
    }

    /// The literal text before the first wildcard (useful as an index prefix).
    pub fn literal_prefix(&self) -> String {
        self.parts
            .iter()
            .map_while(|p| match p {
                GlobPart::Lit(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    /// The pattern as a regular expression over the whole string (`regex` crate syntax).
    pub fn to_regex(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                GlobPart::Many => out.push_str(".*"),
                GlobPart::One => out.push('.'),
                GlobPart::Lit(c) => {
                    if c.is_alphanumeric() || *c == '_' {
                        out.push(*c);
                    } else {
                        let mut buf = [0u8; 4];
                        for b in c.encode_utf8(&mut buf).chars() {
                            out.push_str(&format!("\\x{{{:x}}}", b as u32));
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
