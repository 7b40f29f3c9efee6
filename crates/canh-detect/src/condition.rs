//! The Sigma condition grammar: `and`, `or`, `not`, parentheses, `1 of x*`, `all of x*`,
//! `1 of them`, `all of them`. Precedence: `not` > `and` > `or`.

use crate::error::RuleError;

/// A parsed condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cond {
    Ident(String),
    /// `1 of pattern` (`any of` is accepted too); `them` is the pattern `*`.
    OneOf(String),
    AllOf(String),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Not,
    OneOf,
    AllOf,
    Word(String),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, RuleError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' | ')' => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
                words.push(c.to_string());
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            '|' => return Err(RuleError::unsupported("v1 aggregation '|' in condition")),
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut toks = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        let lower = w.to_ascii_lowercase();
        let next_is_of = words
            .get(i + 1)
            .is_some_and(|n| n.eq_ignore_ascii_case("of"));
        let tok = match lower.as_str() {
            "(" => Tok::LParen,
            ")" => Tok::RParen,
            "and" => Tok::And,
            "or" => Tok::Or,
            "not" => Tok::Not,
            "1" | "any" if next_is_of => {
                i += 1;
                Tok::OneOf
            }
            "all" if next_is_of => {
                i += 1;
                Tok::AllOf
            }
            _ if next_is_of => {
                return Err(RuleError::unsupported(format!("'{w} of' quantifier")));
            }
            _ => Tok::Word(w.to_owned()),
        };
        toks.push(tok);
        i += 1;
    }
    Ok(toks)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn or(&mut self) -> Result<Cond, RuleError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            let right = self.and()?;
            left = Cond::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Cond, RuleError> {
        let mut left = self.not()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            let right = self.not()?;
            left = Cond::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn not(&mut self) -> Result<Cond, RuleError> {
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.atom()
    }
    fn atom(&mut self) -> Result<Cond, RuleError> {
        match self.next() {
            Some(Tok::LParen) => {
                let inner = self.or()?;
                if self.next() != Some(Tok::RParen) {
                    return Err(RuleError::invalid("condition: missing ')'"));
                }
                Ok(inner)
            }
            Some(Tok::OneOf) => Ok(Cond::OneOf(self.pattern()?)),
            Some(Tok::AllOf) => Ok(Cond::AllOf(self.pattern()?)),
            Some(Tok::Word(w)) => Ok(Cond::Ident(w)),
            Some(t) => Err(RuleError::invalid(format!("condition: unexpected {t:?}"))),
            None => Err(RuleError::invalid("condition: unexpected end")),
        }
    }
    fn pattern(&mut self) -> Result<String, RuleError> {
        match self.next() {
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("them") => Ok("*".to_owned()),
            Some(Tok::Word(w)) => Ok(w),
            _ => Err(RuleError::invalid(
                "condition: 'of' needs a name pattern or 'them'",
            )),
        }
    }
}

/// Parses one condition string.
pub(crate) fn parse(s: &str) -> Result<Cond, RuleError> {
    let toks = tokenize(s)?;
    if toks.is_empty() {
        return Err(RuleError::invalid("empty condition"));
    }
    let mut p = Parser { toks, pos: 0 };
    let cond = p.or()?;
    if p.pos != p.toks.len() {
        return Err(RuleError::invalid(format!(
            "condition: trailing input in {s:?}"
        )));
    }
    Ok(cond)
}

/// Whether a search identifier `name` matches an `of` pattern (`*` wildcards only).
/// `them` (the pattern `*`) leaves out identifiers starting with `_`.
pub(crate) fn name_matches(pattern: &str, name: &str) -> bool {
    if pattern == "*" {
        return !name.starts_with('_');
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(idx) = rest.find(part) {
            rest = &rest[idx + part.len()..];
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Box<Cond> {
        Box::new(Cond::Ident(s.to_owned()))
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        let c = parse("a or b and not c").unwrap();
        assert_eq!(
            c,
            Cond::Or(
                id("a"),
                Box::new(Cond::And(id("b"), Box::new(Cond::Not(id("c")))))
            )
        );
        let c = parse("(a or b) and c").unwrap();
        assert_eq!(c, Cond::And(Box::new(Cond::Or(id("a"), id("b"))), id("c")));
    }

    #[test]
    fn quantifiers_parse() {
        assert_eq!(
            parse("1 of selection*").unwrap(),
            Cond::OneOf("selection*".into())
        );
        assert_eq!(parse("all of them").unwrap(), Cond::AllOf("*".into()));
        assert_eq!(parse("any of them").unwrap(), Cond::OneOf("*".into()));
        let c = parse("selection and not 1 of filter_*").unwrap();
        assert_eq!(
            c,
            Cond::And(
                id("selection"),
                Box::new(Cond::Not(Box::new(Cond::OneOf("filter_*".into()))))
            )
        );
    }

    #[test]
    fn bad_conditions_are_errors() {
        assert!(parse("a and").is_err());
        assert!(parse("(a").is_err());
        assert!(parse("a b").is_err());
        assert!(parse("").is_err());
        assert!(matches!(
            parse("sel | count() > 5"),
            Err(RuleError::Unsupported(_))
        ));
    }

    #[test]
    fn of_patterns_match_names() {
        assert!(name_matches("selection_*", "selection_img"));
        assert!(!name_matches("selection_*", "filter_img"));
        assert!(name_matches("*", "sel"));
        assert!(!name_matches("*", "_private"));
        assert!(name_matches("sel*img*", "sel_a_img_b"));
        assert!(name_matches("a", "a"));
    }
}
