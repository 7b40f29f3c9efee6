//! Newline-delimited framing.

use super::{FrameResult, Framer, FramingError};

/// Splits a stream on LF; a CR before the LF is trimmed and empty lines are skipped. A line
/// longer than `max_len` yields one [`FramingError::Oversize`] and is dropped up to its LF.
#[derive(Debug)]
pub struct Lines {
    buf: Vec<u8>,
    max_len: usize,
    /// Bytes dropped so far from an oversize line whose LF has not come yet.
    discarding: Option<usize>,
}

impl Lines {
    /// A framer with a cap of `max_len` bytes per line.
    pub fn new(max_len: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_len: max_len.max(1),
            discarding: None,
        }
    }

    /// Whether an over-long line is being dropped up to its LF.
    pub(crate) fn is_discarding(&self) -> bool {
        self.discarding.is_some()
    }

    fn emit(&self, line: &[u8], out: &mut Vec<FrameResult>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return;
        }
        if line.len() > self.max_len {
            out.push(Err(FramingError::Oversize {
                len: line.len(),
                max: self.max_len,
            }));
        } else {
            out.push(Ok(line.to_vec()));
        }
    }
}

impl Default for Lines {
    fn default() -> Self {
        Self::new(super::DEFAULT_MAX_FRAME)
    }
}

impl Framer for Lines {
    fn feed(&mut self, data: &[u8], out: &mut Vec<FrameResult>) {
        let mut rest = data;
        while !rest.is_empty() {
            let nl = memchr::memchr(b'\n', rest);
            if let Some(dropped) = self.discarding {
                match nl {
                    Some(at) => {
                        let total = dropped + at;
                        out.push(Err(FramingError::Oversize {
                            len: total,
                            max: self.max_len,
                        }));
                        self.discarding = None;
                        rest = &rest[at + 1..];
                    }
                    None => {
                        self.discarding = Some(dropped + rest.len());
                        return;
                    }
                }
                continue;
            }
            match nl {
                Some(at) => {
                    if self.buf.is_empty() {
                        self.emit(&rest[..at], out);
                    } else {
                        self.buf.extend_from_slice(&rest[..at]);
                        let line = std::mem::take(&mut self.buf);
                        self.emit(&line, out);
                    }
                    rest = &rest[at + 1..];
                }
                None => {
                    // One byte of slack for a CR that the LF will let us trim.
                    if self.buf.len() + rest.len() > self.max_len + 1 {
                        self.discarding = Some(self.buf.len() + rest.len());
                        self.buf.clear();
                    } else {
                        self.buf.extend_from_slice(rest);
                    }
                    return;
                }
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<FrameResult>) {
        if let Some(dropped) = self.discarding.take() {
            out.push(Err(FramingError::Oversize {
                len: dropped,
                max: self.max_len,
            }));
        }
        let line = std::mem::take(&mut self.buf);
        self.emit(&line, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(max: usize, chunks: &[&[u8]]) -> Vec<FrameResult> {
        let mut l = Lines::new(max);
        let mut out = Vec::new();
        for c in chunks {
            l.feed(c, &mut out);
        }
        l.finish(&mut out);
        out
    }

    #[test]
    fn splits_across_chunks_and_trims_cr() {
        let out = run(100, &[b"ab", b"c\r\nde\n\nf", b"g"]);
        assert_eq!(
            out,
            vec![Ok(b"abc".to_vec()), Ok(b"de".to_vec()), Ok(b"fg".to_vec())]
        );
    }

    #[test]
    fn oversize_line_is_one_error_and_the_rest_continues() {
        let out = run(4, &[b"ok\n0123456", b"789\nnext\n"]);
        assert_eq!(out[0], Ok(b"ok".to_vec()));
        assert!(matches!(
            out[1],
            Err(FramingError::Oversize { len: 10, max: 4 })
        ));
        assert_eq!(out[2], Ok(b"next".to_vec()));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn oversize_inside_one_chunk() {
        let out = run(3, &[b"abcdef\nxy\n"]);
        assert!(matches!(out[0], Err(FramingError::Oversize { len: 6, .. })));
        assert_eq!(out[1], Ok(b"xy".to_vec()));
    }
}
