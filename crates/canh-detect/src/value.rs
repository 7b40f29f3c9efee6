//! Sigma string values: wildcards and escapes, and the value transformations of modifiers
//! (base64, base64offset, utf16, windash).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A piece of a Sigma string value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    Lit(String),
    /// `*`: any run of characters.
    Star,
    /// `?`: one character.
    One,
}

/// Splits a Sigma string into literal runs and wildcards. `\*`, `\?` and `\\` escape; a
/// backslash before any other character is kept as it is.
pub(crate) fn parse_wildcards(s: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&n @ ('*' | '?' | '\\')) => {
                    lit.push(n);
                    chars.next();
                }
                _ => lit.push('\\'),
            },
            '*' | '?' => {
                if !lit.is_empty() {
                    out.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                out.push(if c == '*' { Piece::Star } else { Piece::One });
            }
            _ => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    out
}

/// The plain text of a value: wildcards are taken literally after unescaping (used where a
/// value is encoded, as encoding wildcards makes no sense).
pub(crate) fn unescape(s: &str) -> String {
    parse_wildcards(s)
        .into_iter()
        .map(|p| match p {
            Piece::Lit(l) => l,
            Piece::Star => "*".to_owned(),
            Piece::One => "?".to_owned(),
        })
        .collect()
}

/// Escapes wildcard characters so that a transformed value is matched literally.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The UTF-16 encodings of the `utf16le`/`wide`, `utf16be` and `utf16` (with BOM) modifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Utf16 {
    Le,
    Be,
    Bom,
}

pub(crate) fn utf16(bytes: &[u8], kind: Utf16) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::with_capacity(bytes.len() * 2 + 2);
    if kind == Utf16::Bom {
        out.extend_from_slice(&[0xFF, 0xFE]);
    }
    for unit in text.encode_utf16() {
        let b = if kind == Utf16::Be {
            unit.to_be_bytes()
        } else {
            unit.to_le_bytes()
        };
        out.extend_from_slice(&b);
    }
    out
}

pub(crate) fn base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The three forms a value takes inside a longer base64 text, by its offset modulo 3: the
/// encoded text with the characters that depend on neighbouring bytes cut off.
pub(crate) fn base64_offsets(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::with_capacity(3);
    for shift in 0..3usize {
        let mut buf = vec![b' '; shift];
        buf.extend_from_slice(bytes);
        let enc = STANDARD.encode(&buf);
        let start = [0usize, 2, 3][shift];
        let cut_end = [0usize, 3, 2][(bytes.len() + shift) % 3];
        let end = enc.len().saturating_sub(cut_end);
        if start < end {
            out.push(enc[start..end].to_owned());
        }
    }
    out
}

/// Characters the `windash` modifier treats as the same command-line flag prefix.
const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];

/// Most variants `windash` produces for one value; beyond that, later dashes are kept as is.
const MAX_WINDASH_VARIANTS: usize = 625;

/// Every variant of `s` with each dash-like character at the start of a word replaced by each
/// of [`DASHES`].
pub(crate) fn windash(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let positions: Vec<usize> = (0..chars.len())
        .filter(|&i| DASHES.contains(&chars[i]) && (i == 0 || chars[i - 1].is_whitespace()))
        .collect();
    let mut variants = vec![chars];
    for pos in positions {
        if variants.len() * DASHES.len() > MAX_WINDASH_VARIANTS {
            break;
        }
        let mut next = Vec::with_capacity(variants.len() * DASHES.len());
        for v in &variants {
            for d in DASHES {
                let mut copy = v.clone();
                copy[pos] = d;
                next.push(copy);
            }
        }
        variants = next;
    }
    variants
        .into_iter()
        .map(|v| v.into_iter().collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_escapes_follow_the_spec() {
        assert_eq!(
            parse_wildcards(r"a*b?c"),
            vec![
                Piece::Lit("a".into()),
                Piece::Star,
                Piece::Lit("b".into()),
                Piece::One,
                Piece::Lit("c".into())
            ]
        );
        assert_eq!(parse_wildcards(r"a\*b"), vec![Piece::Lit("a*b".into())]);
        assert_eq!(
            parse_wildcards(r"C:\Windows\\"),
            vec![Piece::Lit(r"C:\Windows\".into())]
        );
        assert_eq!(
            parse_wildcards(r"\\*"),
            vec![Piece::Lit(r"\".into()), Piece::Star]
        );
        assert_eq!(unescape(r"a\*b*"), "a*b*");
        assert_eq!(
            parse_wildcards(&escape("x*?\\")),
            vec![Piece::Lit("x*?\\".into())]
        );
    }

    #[test]
    fn base64offset_gives_the_three_shifted_forms() {
        // Spec example: `/bin/bash` is found in any of these forms.
        let forms = base64_offsets(b"/bin/bash");
        assert_eq!(forms, vec!["L2Jpbi9iYXNo", "9iaW4vYmFza", "vYmluL2Jhc2"]);
        assert_eq!(base64(b"/bin/bash"), "L2Jpbi9iYXNo");
    }

    #[test]
    fn utf16_encodings_match_the_spec_examples() {
        assert_eq!(utf16(b"cmd", Utf16::Le), vec![0x63, 0, 0x6d, 0, 0x64, 0]);
        assert_eq!(utf16(b"cmd", Utf16::Be), vec![0, 0x63, 0, 0x6d, 0, 0x64]);
        assert_eq!(
            utf16(b"cmd", Utf16::Bom),
            vec![0xFF, 0xFE, 0x63, 0, 0x6d, 0, 0x64, 0]
        );
        assert_eq!(base64(&utf16(b"ping", Utf16::Le)), "cABpAG4AZwA=");
    }

    #[test]
    fn windash_permutes_flag_prefixes_only() {
        let v = windash(" -foo a-b");
        assert_eq!(v.len(), 5);
        assert!(v.contains(&" /foo a-b".to_owned()));
        assert!(v.contains(&" \u{2015}foo a-b".to_owned()));
        assert_eq!(windash("-a -b").len(), 25);
    }
}
