//! Framing: a byte stream or datagram → the bytes of single records, before any parser runs
//! (kept apart from formats, as in Vector's codecs). Pure: no sockets, no clocks (callers pass
//! `Instant`s).
//!
//! - [`Lines`]: newline-delimited records (LF, trailing CR trimmed), with a length cap.
//! - [`OctetCounting`]: RFC 6587 syslog over TCP, `LEN SP MSG`, falling back to LF framing
//!   for frames that do not start with a length.
//! - [`gelf`]: GELF UDP chunk reassembly and capped zlib/gzip decompression.

pub mod gelf;
mod lines;
mod octet;

pub use lines::Lines;
pub use octet::OctetCounting;

/// The default cap on one record: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;

/// One framing result: a record's bytes, or an error for a part of the stream that was
/// skipped (the stream itself carries on).
pub type FrameResult = Result<Vec<u8>, FramingError>;

/// A stream framer: feed it bytes as they arrive, collect the complete records.
pub trait Framer: Send {
    /// Adds bytes from the stream; complete records (and errors) are appended to `out`.
    fn feed(&mut self, data: &[u8], out: &mut Vec<FrameResult>);
    /// The stream ended: a last record without its terminator is appended to `out`.
    fn finish(&mut self, out: &mut Vec<FrameResult>);
}

/// What went wrong while framing. The bytes concerned are skipped; later records still come.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    /// A record longer than the cap; its bytes were dropped.
    #[error("record of {len} bytes or more exceeds the {max}-byte limit")]
    Oversize {
        /// Bytes seen (at least).
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The stream ended inside an octet-counted frame.
    #[error("stream ended after {got} of {expected} announced bytes")]
    Truncated {
        /// Announced length.
        expected: usize,
        /// Bytes received (including the length prefix).
        got: usize,
    },
    /// A GELF chunk that cannot be used (bad header, count, duplicate, over the limits).
    #[error("invalid GELF chunk: {0}")]
    GelfChunk(&'static str),
    /// Compressed data that does not inflate.
    #[error("corrupt compressed payload: {0}")]
    Decompress(String),
    /// Inflated data larger than the cap.
    #[error("decompressed payload exceeds the {max}-byte limit")]
    DecompressedTooLarge {
        /// The cap.
        max: usize,
    },
}
