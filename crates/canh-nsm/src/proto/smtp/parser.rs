//! Pure SMTP parsing (RFC 5321 commands and replies, RFC 5322 / MIME headers of a message).

use crate::proto::heap::HeapSize;

/// One reply line: `code`, whether more lines follow (`250-`), and the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyLine<'a> {
    /// Three-digit reply code.
    pub code: u16,
    /// A `-` after the code: the reply continues on the next line.
    pub more: bool,
    /// The text after the code and separator.
    pub text: &'a [u8],
}

/// Parses one reply line (without its line ending); `None` if it does not start with a code.
pub fn parse_reply_line(line: &[u8]) -> Option<ReplyLine<'_>> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    match line.get(3) {
        None => Some(ReplyLine {
            code,
            more: false,
            text: &[],
        }),
        Some(b'-') => Some(ReplyLine {
            code,
            more: true,
            text: &line[4..],
        }),
        Some(b' ') => Some(ReplyLine {
            code,
            more: false,
            text: &line[4..],
        }),
        Some(_) => None,
    }
}

/// Splits a line at the first line ending: (line without `\r\n` / `\n`, bytes used).
pub fn next_line(data: &[u8]) -> Option<(&[u8], usize)> {
    let nl = memchr::memchr(b'\n', data)?;
    let line = &data[..nl];
    Some((line.strip_suffix(b"\r").unwrap_or(line), nl + 1))
}

/// A client command: upper-cased verb and the argument text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Verb in upper case (`EHLO`, `MAIL`, `RCPT`, `DATA`, `BDAT`, ...).
    pub verb: String,
    /// Everything after the verb and its separating spaces.
    pub args: String,
}

/// Splits a command line into verb and arguments.
pub fn parse_command(line: &[u8]) -> Command {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_start();
    let (verb, args) = match text.find([' ', '\t']) {
        Some(p) => (&text[..p], text[p..].trim_start()),
        None => (text, ""),
    };
    Command {
        verb: verb.to_ascii_uppercase(),
        args: args.to_string(),
    }
}

/// The path of `MAIL FROM:<a@b> SIZE=1` / `RCPT TO:<a@b>`: the text after the colon up to the
/// first space outside angle brackets (`<a@b>`). `None` if the prefix (`FROM`, `TO`) is absent.
pub fn command_path(args: &str, prefix: &str) -> Option<String> {
    let head = args.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = args[prefix.len()..].trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('<') {
        rest.find('>').map_or(rest.len(), |p| p + 1)
    } else {
        rest.find(' ').unwrap_or(rest.len())
    };
    Some(rest[..end].to_string())
}

/// Splits an address-list header value at commas outside quotes and angle brackets; empty
/// items are dropped.
pub fn split_addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut angle = 0usize;
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            escaped = false;
            cur.push(c);
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle += 1,
            '>' if !quoted => angle = angle.saturating_sub(1),
            ',' if !quoted && angle == 0 => {
                let item = cur.trim();
                if !item.is_empty() {
                    out.push(item.to_string());
                }
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    let item = cur.trim();
    if !item.is_empty() {
        out.push(item.to_string());
    }
    out
}

/// A parameter of a structured header (`boundary`, `filename`, `name`), unquoted.
pub fn header_param(value: &str, name: &str) -> Option<String> {
    let lower = value.to_ascii_lowercase();
    let mut from = 0;
    while let Some(p) = lower[from..].find(name) {
        let at = from + p;
        from = at + name.len();
        // The name must start a parameter: after `;` or whitespace.
        let before_ok = lower[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c == ';' || c.is_ascii_whitespace());
        let rest = lower[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let skip = value.len() - rest.len() + 1;
        let raw = value.get(skip..)?.trim_start();
        let v = if let Some(q) = raw.strip_prefix('"') {
            q.find('"').map_or(q, |e| &q[..e])
        } else {
            raw.find([';', ' ', '\t']).map_or(raw, |e| &raw[..e])
        };
        return Some(v.to_string());
    }
    None
}

/// A header block being read line by line (unfolding continuation lines).
#[derive(Debug, Default, Clone)]
pub struct HeaderReader {
    /// Complete headers: lower-case name and value.
    pub headers: Vec<(String, String)>,
    pending: Option<(String, String)>,
}

/// Most headers kept per block; more are ignored.
const MAX_HEADERS: usize = 256;
/// Longest header value kept.
const MAX_VALUE: usize = 8192;

impl HeapSize for HeaderReader {
    fn heap_size(&self) -> usize {
        self.headers.heap_size() + self.pending.heap_size()
    }
}

impl HeaderReader {
    /// Feeds one line (without line ending). Returns true when the block ended (empty line).
    pub fn line(&mut self, line: &[u8]) -> bool {
        if line.is_empty() {
            self.flush();
            return true;
        }
        let text = String::from_utf8_lossy(line);
        if matches!(line[0], b' ' | b'\t') {
            if let Some((_, v)) = self.pending.as_mut()
                && v.len() < MAX_VALUE
            {
                // Unfolded as Suricata does: the continuation's leading blanks are dropped.
                v.push_str(text.trim_start());
            }
            return false;
        }
        self.flush();
        if let Some((name, value)) = text.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            if !name.is_empty() && !name.contains(' ') {
                self.pending = Some((name, value.trim().to_string()));
            }
        }
        false
    }

    /// Completes the header being read.
    pub fn flush(&mut self) {
        if let Some((n, v)) = self.pending.take()
            && self.headers.len() < MAX_HEADERS
        {
            self.headers.push((n, v.trim_end().to_string()));
        }
    }

    /// Every value of a header, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a header.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines() {
        let r = parse_reply_line(b"250-PIPELINING").unwrap();
        assert_eq!((r.code, r.more, r.text), (250, true, &b"PIPELINING"[..]));
        let r = parse_reply_line(b"354 go ahead").unwrap();
        assert_eq!((r.code, r.more), (354, false));
        assert_eq!(parse_reply_line(b"221").unwrap().code, 221);
        assert!(parse_reply_line(b"2x0 no").is_none());
        assert!(parse_reply_line(b"250x").is_none());
        assert!(parse_reply_line(b"25").is_none());
    }

    #[test]
    fn commands_and_paths() {
        let c = parse_command(b"mail FROM:<a@b.c> SIZE=12");
        assert_eq!(c.verb, "MAIL");
        assert_eq!(command_path(&c.args, "FROM").as_deref(), Some("<a@b.c>"));
        let c = parse_command(b"RCPT TO: <x@y>");
        assert_eq!(command_path(&c.args, "TO").as_deref(), Some("<x@y>"));
        assert_eq!(command_path("TO:<x@y>", "FROM"), None);
        assert_eq!(parse_command(b"DATA").verb, "DATA");
    }

    #[test]
    fn address_lists_respect_quotes() {
        assert_eq!(
            split_addresses("\"jam,abrakadabra.ch\" <mirjam@abrakadabra.ch>, b@c"),
            vec!["\"jam,abrakadabra.ch\" <mirjam@abrakadabra.ch>", "b@c"]
        );
        assert!(split_addresses(" , ").is_empty());
    }

    #[test]
    fn params_and_headers() {
        let ct = "multipart/mixed; boundary=\"----=_Part_1\"";
        assert_eq!(
            header_param(ct, "boundary").as_deref(),
            Some("----=_Part_1")
        );
        let cd = "attachment; filename=J.txt";
        assert_eq!(header_param(cd, "filename").as_deref(), Some("J.txt"));
        assert_eq!(header_param("text/plain; xname=a", "name"), None);
        let mut h = HeaderReader::default();
        assert!(!h.line(b"Subject: hello"));
        assert!(!h.line(b"  world"));
        assert!(!h.line(b"From: a@b"));
        assert!(h.line(b""));
        assert_eq!(h.get("subject"), Some("helloworld"));
        assert_eq!(h.get("from"), Some("a@b"));
    }
}
