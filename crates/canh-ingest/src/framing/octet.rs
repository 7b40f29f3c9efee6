//! RFC 6587 framing for syslog over TCP.

use super::{FrameResult, Framer, FramingError, Lines};

/// Octet-counted framing (`LEN SP MSG`, RFC 6587 §3.4.1) with non-transparent (LF) framing
/// as the fallback. Each frame is checked: one that starts with a digit run and a space is
/// octet-counted, anything else (normally `<`) is read up to its LF, so senders that mix or
/// switch are read correctly.
#[derive(Debug)]
pub struct OctetCounting {
    buf: Vec<u8>,
    max_len: usize,
    /// Bytes of an oversize counted frame still to skip.
    skip: usize,
    lines: Lines,
}

enum Head {
    /// `LEN SP` of this many bytes, for a message of this length.
    Counted(usize, usize),
    /// Not a length: LF framing.
    Lf,
    /// Could still become a length; wait for more bytes.
    NeedMore,
}

fn head(b: &[u8]) -> Head {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || b[0] == b'0' || digits > 10 {
        return Head::Lf;
    }
    match b.get(digits) {
        None => Head::NeedMore,
        Some(b' ') => {
            let n = b[..digits]
                .iter()
                .fold(0usize, |n, c| n * 10 + usize::from(c - b'0'));
            Head::Counted(digits + 1, n)
        }
        Some(_) => Head::Lf,
    }
}

impl OctetCounting {
    /// A framer with a cap of `max_len` bytes per message.
    pub fn new(max_len: usize) -> Self {
        let max_len = max_len.max(1);
        Self {
            buf: Vec::new(),
            max_len,
            skip: 0,
            lines: Lines::new(max_len),
        }
    }

    fn run(&mut self, out: &mut Vec<FrameResult>) {
        let mut pos = 0;
        loop {
            let rest = &self.buf[pos..];
            if rest.is_empty() {
                break;
            }
            if self.lines.is_discarding() {
                let n = memchr::memchr(b'\n', rest).map_or(rest.len(), |at| at + 1);
                self.lines.feed(&rest[..n], out);
                pos += n;
                continue;
            }
            if self.skip > 0 {
                let n = self.skip.min(rest.len());
                self.skip -= n;
                pos += n;
                continue;
            }
            match head(rest) {
                Head::NeedMore => break,
                Head::Counted(h, len) if len > self.max_len => {
                    out.push(Err(FramingError::Oversize {
                        len,
                        max: self.max_len,
                    }));
                    self.skip = len;
                    pos += h;
                }
                Head::Counted(h, len) => {
                    if rest.len() < h + len {
                        break;
                    }
                    let msg = &rest[h..h + len];
                    let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
                    out.push(Ok(msg.to_vec()));
                    pos += h + len;
                }
                Head::Lf => match memchr::memchr(b'\n', rest) {
                    Some(at) => {
                        self.lines.feed(&rest[..=at], out);
                        pos += at + 1;
                    }
                    None if rest.len() > self.max_len + 1 => {
                        // Hand the over-long line to the LF framer, which drops it to its LF.
                        self.lines.feed(rest, out);
                        pos = self.buf.len();
                    }
                    None => break,
                },
            }
        }
        self.buf.drain(..pos);
    }
}

impl Default for OctetCounting {
    fn default() -> Self {
        Self::new(super::DEFAULT_MAX_FRAME)
    }
}

impl Framer for OctetCounting {
    fn feed(&mut self, data: &[u8], out: &mut Vec<FrameResult>) {
        self.buf.extend_from_slice(data);
        self.run(out);
    }

    fn finish(&mut self, out: &mut Vec<FrameResult>) {
        let rest = std::mem::take(&mut self.buf);
        if self.skip > 0 {
            self.skip = 0;
            return;
        }
        match head(&rest) {
            Head::Counted(_, len) if len <= self.max_len => {
                out.push(Err(FramingError::Truncated {
                    expected: len,
                    got: rest.len(),
                }));
            }
            _ => {
                self.lines.feed(&rest, out);
                self.lines.finish(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<FrameResult> {
        let mut f = OctetCounting::new(64);
        let mut out = Vec::new();
        for c in chunks {
            f.feed(c, &mut out);
        }
        f.finish(&mut out);
        out
    }

    #[test]
    fn counted_frames_split_anywhere() {
        let out = run(&[b"11 <13>1 - a", b"bc12 <13>1 - x\ny", b"z"]);
        assert_eq!(
            out,
            vec![Ok(b"<13>1 - abc".to_vec()), Ok(b"<13>1 - x\nyz".to_vec())]
        );
    }

    #[test]
    fn lf_frames_are_detected() {
        let out = run(&[b"<13>hello\n<14>world\n", b"5 hello"]);
        assert_eq!(
            out,
            vec![
                Ok(b"<13>hello".to_vec()),
                Ok(b"<14>world".to_vec()),
                Ok(b"hello".to_vec())
            ]
        );
    }

    #[test]
    fn oversize_counted_frame_is_skipped() {
        let big = format!("100 {}8 <13>1 ok", "x".repeat(100));
        let out = run(&[big.as_bytes()]);
        assert!(matches!(
            out[0],
            Err(FramingError::Oversize { len: 100, max: 64 })
        ));
        assert_eq!(out[1], Ok(b"<13>1 ok".to_vec()));
    }

    #[test]
    fn truncated_counted_frame_at_end_is_an_error() {
        let out = run(&[b"20 <13>1 short"]);
        assert_eq!(out.len(), 1);
        assert!(out[0].is_err());
    }
}
