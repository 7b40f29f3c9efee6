//! Rule text to tokens: the header words and the raw `(name, value)` options.

/// A rule split into its header fields and raw options.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRule {
    /// `alert`, `drop`, `pass`, ...
    pub action: String,
    /// `tcp`, `http`, ...
    pub proto: String,
    /// Source addresses.
    pub src: String,
    /// Source ports.
    pub sport: String,
    /// `->`, `<>` or `=>`.
    pub direction: String,
    /// Destination addresses.
    pub dst: String,
    /// Destination ports.
    pub dport: String,
    /// Options in order: name and unescaped-as-written value (quotes kept).
    pub options: Vec<(String, Option<String>)>,
}

/// Splits the header into words, keeping bracketed groups (which may hold spaces) together.
fn header_words(header: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    for c in header.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c);
            }
            ']' => {
                depth -= 1;
                cur.push(c);
            }
            c if c.is_whitespace() && depth <= 0 => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c if c.is_whitespace() => {}
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Splits the option body (between the outer parentheses) at unescaped, unquoted `;`.
fn split_options(body: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                in_quote = !in_quote;
                cur.push(c);
            }
            ';' if !in_quote => {
                push_option(&mut out, &cur)?;
                cur.clear();
            }
            c => cur.push(c),
        }
    }
    if in_quote {
        return Err("unterminated quoted string".into());
    }
    if !cur.trim().is_empty() {
        return Err(format!("option without terminating ';': {}", cur.trim()));
    }
    Ok(out)
}

fn push_option(out: &mut Vec<(String, Option<String>)>, text: &str) -> Result<(), String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(());
    }
    match text.split_once(':') {
        Some((name, value)) => {
            let name = name.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(format!("invalid option name {name:?}"));
            }
            out.push((name.to_ascii_lowercase(), Some(value.trim().to_string())));
        }
        None => {
            if text.contains(char::is_whitespace) {
                return Err(format!("invalid option {text:?}"));
            }
            out.push((text.to_ascii_lowercase(), None));
        }
    }
    Ok(())
}

/// Tokenises one rule line (without a leading `#`).
pub fn tokenize(line: &str) -> Result<RawRule, String> {
    let line = line.trim();
    let open = line.find('(').ok_or("rule has no option list")?;
    let close = line.rfind(')').ok_or("rule has no closing parenthesis")?;
    if close < open {
        return Err("unbalanced parentheses".into());
    }
    if !line[close + 1..].trim().is_empty() {
        return Err("text after the option list".into());
    }
    let words = header_words(&line[..open]);
    let [action, proto, src, sport, direction, dst, dport] = words.as_slice() else {
        // `alert http (...)`-style rules without addresses are rare; ask for a full header.
        return Err(format!("header must have 7 fields, found {}", words.len()));
    };
    let options = split_options(&line[open + 1..close])?;
    Ok(RawRule {
        action: action.clone(),
        proto: proto.to_ascii_lowercase(),
        src: src.clone(),
        sport: sport.clone(),
        direction: direction.clone(),
        dst: dst.clone(),
        dport: dport.clone(),
        options,
    })
}

/// Removes surrounding double quotes, if present.
pub fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
}

/// Resolves `\;`, `\"`, `\\` and `\:` escapes of an option value.
pub fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ (';' | '"' | '\\' | ':')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses a content pattern (`abc|3a 20|def`) into bytes.
pub fn content_bytes(v: &str) -> Result<Vec<u8>, String> {
    let s = unescape(v);
    let mut out = Vec::with_capacity(s.len());
    let mut in_hex = false;
    let mut hex = String::new();
    for c in s.chars() {
        if c == '|' {
            if in_hex {
                flush_hex(&mut hex, &mut out)?;
            }
            in_hex = !in_hex;
            continue;
        }
        if in_hex {
            if c.is_ascii_hexdigit() {
                hex.push(c);
                if hex.len() == 2 {
                    flush_hex(&mut hex, &mut out)?;
                }
            } else if !c.is_whitespace() {
                return Err(format!("invalid hex character {c:?} in content"));
            }
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    if in_hex {
        return Err("unterminated hex block in content".into());
    }
    if out.is_empty() {
        return Err("empty content".into());
    }
    Ok(out)
}

fn flush_hex(hex: &mut String, out: &mut Vec<u8>) -> Result<(), String> {
    if hex.is_empty() {
        return Ok(());
    }
    if hex.len() != 2 {
        return Err(format!("odd hex digits {hex:?} in content"));
    }
    let b = u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
    out.push(b);
    hex.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_header_and_escaped_options() {
        let r = tokenize(
            r#"alert http [1.2.3.4, 5.6.7.8] any -> $HOME_NET 80 (msg:"a \"b\" \; c"; content:"x|3b|"; nocase; sid:1;)"#,
        )
        .unwrap();
        assert_eq!(r.src, "[1.2.3.4,5.6.7.8]");
        assert_eq!(r.options.len(), 4);
        assert_eq!(r.options[0].0, "msg");
        assert_eq!(
            unescape(unquote(r.options[0].1.as_deref().unwrap())),
            r#"a "b" ; c"#
        );
        assert_eq!(r.options[2], ("nocase".to_string(), None));
    }

    #[test]
    fn content_hex_blocks() {
        assert_eq!(content_bytes("a|3a 20|b").unwrap(), b"a: b");
        assert_eq!(content_bytes("|0d0a|").unwrap(), b"\r\n");
        assert!(content_bytes("|3|").is_err());
        assert!(content_bytes("|zz|").is_err());
    }

    #[test]
    fn malformed_rules_are_errors() {
        assert!(tokenize("alert tcp any any -> any any").is_err());
        assert!(tokenize("alert tcp any any -> any (sid:1;)").is_err());
        assert!(tokenize(r#"alert tcp any any -> any any (msg:"x; sid:1;)"#).is_err());
    }
}
