//! Pure HTTP/1.x message framing: heads (via `httparse`) and body lengths (content-length,
//! chunked, until close).

use crate::proto::heap::HeapSize;

/// Largest request or response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;

/// A parsed head.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Head {
    /// Request method (requests only).
    pub method: Option<String>,
    /// Request target (requests only).
    pub uri: Option<String>,
    /// Status code (responses only).
    pub status: Option<u16>,
    /// Reason phrase (responses only).
    pub reason: Option<String>,
    /// Status text when it is not a number (`2XX`), responses only.
    pub status_text: Option<String>,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub protocol: String,
    /// Headers in order (name, value).
    pub headers: Vec<(String, String)>,
    /// Bytes the head takes, blank line included.
    pub len: usize,
}

impl HeapSize for Head {
    fn heap_size(&self) -> usize {
        self.method.heap_size()
            + self.uri.heap_size()
            + self.reason.heap_size()
            + self.status_text.heap_size()
            + self.protocol.heap_size()
            + self.headers.heap_size()
    }
}

impl Head {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How the body is framed.
    pub fn body_framing(&self) -> Framing {
        if self
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            return Framing::Chunked;
        }
        if let Some(cl) = self.header("content-length") {
            return match cl.trim().parse::<u64>() {
                Ok(n) => Framing::Length(n),
                Err(_) => Framing::UntilClose,
            };
        }
        if self.method.is_some() {
            Framing::Length(0)
        } else {
            Framing::UntilClose
        }
    }
}

/// Body framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes.
    UntilClose,
}

/// Result of reading a head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadResult {
    /// A complete head.
    Done(Head),
    /// Not complete yet.
    Partial,
    /// Not HTTP.
    Invalid,
}

fn version(v: Option<u8>) -> String {
    match v {
        Some(0) => "HTTP/1.0".to_string(),
        _ => "HTTP/1.1".to_string(),
    }
}

fn collect(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect()
}

/// Parses a request head.
pub fn parse_request_head(data: &[u8]) -> HeadResult {
    let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = httparse::ParserConfig::default()
        .allow_multiple_spaces_in_request_line_delimiters(true)
        .ignore_invalid_headers_in_requests(true)
        .parse_request(&mut req, data);
    match parsed {
        Ok(httparse::Status::Complete(len)) => HeadResult::Done(Head {
            method: req.method.map(str::to_string),
            uri: req.path.map(str::to_string),
            status: None,
            reason: None,
            status_text: None,
            protocol: version(req.version),
            headers: collect(req.headers),
            len,
        }),
        Ok(httparse::Status::Partial) if data.len() < MAX_HEAD => HeadResult::Partial,
        Ok(httparse::Status::Partial) => HeadResult::Invalid,
        Err(_) => parse_head_lenient(data, true),
    }
}

/// Reads a head the strict parser refuses, as servers and IDSes tolerate it: a request line
/// without protocol (`GET /`), a non-numeric status (`HTTP/1.0 2XX OK`), bare LF line ends,
/// header lines without a colon (skipped) and folded header lines.
pub fn parse_head_lenient(data: &[u8], request: bool) -> HeadResult {
    let mut lines = Vec::new();
    let mut at = 0;
    let mut end = None;
    while let Some(nl) = data[at..].iter().position(|&b| b == b'\n') {
        let line = &data[at..at + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at += nl + 1;
        if line.is_empty() && !lines.is_empty() {
            end = Some(at);
            break;
        }
        if !line.is_empty() {
            lines.push(line);
        }
    }
    let Some(len) = end else {
        return if data.len() < MAX_HEAD && !data.is_empty() {
            HeadResult::Partial
        } else {
            HeadResult::Invalid
        };
    };
    let first = String::from_utf8_lossy(lines[0]);
    let mut words = first.split_ascii_whitespace();
    let mut head = Head {
        len,
        ..Head::default()
    };
    if request {
        let (Some(method), Some(uri)) = (words.next(), words.next()) else {
            return HeadResult::Invalid;
        };
        if !method
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_')
        {
            return HeadResult::Invalid;
        }
        head.method = Some(method.to_string());
        head.uri = Some(uri.to_string());
        head.protocol = words.next().unwrap_or("").to_string();
    } else {
        let (Some(proto), Some(status)) = (words.next(), words.next()) else {
            return HeadResult::Invalid;
        };
        if !proto.starts_with("HTTP/") {
            return HeadResult::Invalid;
        }
        head.protocol = proto.to_string();
        match status.parse::<u16>() {
            Ok(code) => head.status = Some(code),
            Err(_) => head.status_text = Some(status.to_string()),
        }
        let reason: Vec<&str> = words.collect();
        head.reason = Some(reason.join(" "));
    }
    for line in &lines[1..] {
        if line[0] == b' ' || line[0] == b'\t' {
            // Folded continuation of the previous header.
            if let Some((_, v)) = head.headers.last_mut() {
                v.push(' ');
                v.push_str(String::from_utf8_lossy(line).trim());
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon]).trim().to_string();
        let value = String::from_utf8_lossy(&line[colon + 1..])
            .trim()
            .to_string();
        if !name.is_empty() && head.headers.len() < MAX_HEADERS {
            head.headers.push((name, value));
        }
    }
    HeadResult::Done(head)
}

/// Parses a response head.
pub fn parse_response_head(data: &[u8]) -> HeadResult {
    let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let parsed = httparse::ParserConfig::default()
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .ignore_invalid_headers_in_responses(true)
        .parse_response(&mut resp, data);
    match parsed {
        Ok(httparse::Status::Complete(len)) => HeadResult::Done(Head {
            method: None,
            uri: None,
            status: resp.code,
            reason: resp.reason.map(str::to_string),
            status_text: None,
            protocol: version(resp.version),
            headers: collect(resp.headers),
            len,
        }),
        Ok(httparse::Status::Partial) if data.len() < MAX_HEAD => HeadResult::Partial,
        Ok(httparse::Status::Partial) => HeadResult::Invalid,
        Err(_) => parse_head_lenient(data, false),
    }
}

/// Whether bytes look like the start of a request line (`METHOD SP`).
pub fn looks_like_request(data: &[u8]) -> Option<bool> {
    const METHODS: &[&[u8]] = &[
        b"GET ",
        b"POST ",
        b"HEAD ",
        b"PUT ",
        b"DELETE ",
        b"OPTIONS ",
        b"CONNECT ",
        b"TRACE ",
        b"PATCH ",
        b"PROPFIND ",
        b"PROPPATCH ",
        b"MKCOL ",
        b"COPY ",
        b"MOVE ",
        b"LOCK ",
        b"UNLOCK ",
        b"SEARCH ",
        b"REPORT ",
        b"SUBSCRIBE ",
        b"NOTIFY ",
        b"M-SEARCH ",
    ];
    let mut partial = false;
    for m in METHODS {
        let n = data.len().min(m.len());
        if data[..n].eq_ignore_ascii_case(&m[..n]) {
            if n == m.len() {
                return Some(true);
            }
            partial = true;
        }
    }
    if partial { None } else { Some(false) }
}

/// Whether bytes look like a status line (`HTTP/1.`).
pub fn looks_like_response(data: &[u8]) -> Option<bool> {
    let pat = b"HTTP/1.";
    let n = data.len().min(pat.len());
    if data[..n] != pat[..n] {
        return Some(false);
    }
    if n < pat.len() { None } else { Some(true) }
}

/// Chunked body decoder state (counts bytes, does not keep them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Reading a chunk-size line.
    Size,
    /// Reading chunk data: bytes left plus the CRLF after it.
    Data(u64),
    /// Reading trailer lines after the last chunk.
    Trailer,
    /// Body finished.
    Done,
}

impl Chunked {
    /// Consumes bytes; returns how many were used (stops at `Done`).
    /// Returns `None` on a malformed chunk-size line.
    pub fn advance(&mut self, data: &[u8]) -> Option<usize> {
        let mut at = 0;
        while at < data.len() {
            match *self {
                Chunked::Done => break,
                Chunked::Size => {
                    let Some(nl) = data[at..].iter().position(|&b| b == b'\n') else {
                        if data.len() - at > 1024 {
                            return None;
                        }
                        break;
                    };
                    let line = String::from_utf8_lossy(&data[at..at + nl]);
                    let hex = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(hex, 16).ok()?;
                    at += nl + 1;
                    *self = if size == 0 {
                        Chunked::Trailer
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    let take = (left as usize).min(data.len() - at);
                    at += take;
                    let rest = left - take as u64;
                    if rest > 0 {
                        *self = Chunked::Data(rest);
                        break;
                    }
                    // Expect the CRLF (or a lone LF) that ends the chunk.
                    let tail = &data[at..];
                    if tail.starts_with(b"\r\n") {
                        at += 2;
                    } else if tail.starts_with(b"\n") {
                        at += 1;
                    } else if tail.is_empty() || tail == b"\r" {
                        // Wait for the line end.
                        *self = Chunked::Data(0);
                        break;
                    }
                    *self = Chunked::Size;
                }
                Chunked::Trailer => {
                    let Some(nl) = data[at..].iter().position(|&b| b == b'\n') else {
                        break;
                    };
                    let line = &data[at..at + nl];
                    at += nl + 1;
                    if line.is_empty() || line == b"\r" {
                        *self = Chunked::Done;
                    }
                }
            }
        }
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_head_parses() {
        let r = parse_request_head(b"GET /a?b=1 HTTP/1.1\r\nHost: example.org\r\n\r\nrest");
        let HeadResult::Done(h) = r else {
            panic!("not parsed")
        };
        assert_eq!(h.method.as_deref(), Some("GET"));
        assert_eq!(h.uri.as_deref(), Some("/a?b=1"));
        assert_eq!(h.header("HOST"), Some("example.org"));
        assert_eq!(h.len, 42);
        assert_eq!(h.body_framing(), Framing::Length(0));
        assert_eq!(
            parse_request_head(b"GET / HTTP/1.1\r\nHo"),
            HeadResult::Partial
        );
    }

    #[test]
    fn request_line_without_protocol_is_read_leniently() {
        // suricata-verify http-not09: no protocol, a header line without a colon, bare LFs.
        let data = b"GET /\nFakeHeader\nHost: localhost\nUser-Agent: myscript\n\n";
        let HeadResult::Done(h) = parse_request_head(data) else {
            panic!("not parsed")
        };
        assert_eq!(h.method.as_deref(), Some("GET"));
        assert_eq!(h.uri.as_deref(), Some("/"));
        assert_eq!(h.protocol, "");
        assert_eq!(h.header("user-agent"), Some("myscript"));
        assert_eq!(h.headers.len(), 2);
        assert_eq!(h.len, data.len());
        assert_eq!(parse_request_head(b"GET /\nHost: x\n"), HeadResult::Partial);
        assert_eq!(parse_request_head(b"\x16\x03 /\n\n"), HeadResult::Invalid);
    }

    #[test]
    fn non_numeric_status_is_kept_as_text() {
        // suricata-verify http1-noint-status.
        let data = b"HTTP/1.0 2XX OK\nServer: POC\nContent-Length:4\n\ntoto";
        let HeadResult::Done(h) = parse_response_head(data) else {
            panic!("not parsed")
        };
        assert_eq!(h.status, None);
        assert_eq!(h.status_text.as_deref(), Some("2XX"));
        assert_eq!(h.reason.as_deref(), Some("OK"));
        assert_eq!(h.body_framing(), Framing::Length(4));
        assert_eq!(&data[h.len..], b"toto");
        assert_eq!(parse_response_head(b"SSH-2.0 x\n\n"), HeadResult::Invalid);
    }

    #[test]
    fn chunked_body_is_counted_to_its_end() {
        let body = b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\nNEXT";
        let mut c = Chunked::Size;
        let used = c.advance(body).unwrap();
        assert_eq!(c, Chunked::Done);
        assert_eq!(&body[used..], b"NEXT");
        // the same body split byte by byte
        let mut c = Chunked::Size;
        let mut buf = Vec::new();
        for b in body.iter().take(body.len() - 4) {
            buf.push(*b);
            let used = c.advance(&buf).unwrap();
            buf.drain(..used);
        }
        assert_eq!(c, Chunked::Done);
    }

    #[test]
    fn method_and_status_probes() {
        assert_eq!(looks_like_request(b"GE"), None);
        assert_eq!(looks_like_request(b"GET /"), Some(true));
        assert_eq!(looks_like_request(b"\x16\x03"), Some(false));
        assert_eq!(looks_like_response(b"HTTP/1.1 200"), Some(true));
    }
}
