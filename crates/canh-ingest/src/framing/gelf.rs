//! GELF over UDP: chunk reassembly and decompression.
//!
//! A chunk is `0x1e 0x0f`, an 8-byte message id, a sequence number and a sequence count (at
//! most 128), then a slice of the payload. All chunks of a message must arrive within 5 s;
//! memory held by incomplete messages is capped. Payloads may be zlib- or gzip-compressed;
//! [`decompress`] inflates them with a size cap, never unboundedly.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

use super::FramingError;

/// The two magic bytes that start a chunk.
pub const CHUNK_MAGIC: [u8; 2] = [0x1e, 0x0f];
/// The most chunks one message may have (GELF specification).
pub const MAX_CHUNKS: u8 = 128;
/// How long the chunks of one message may take to arrive.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(5);
const HEADER: usize = 12;

#[derive(Debug)]
struct Pending {
    parts: Vec<Option<Vec<u8>>>,
    have: usize,
    bytes: usize,
    first_seen: Instant,
}

/// Reassembles chunked GELF datagrams.
#[derive(Debug)]
pub struct ChunkAssembler {
    pending: HashMap<[u8; 8], Pending>,
    held_bytes: usize,
    max_held_bytes: usize,
    max_messages: usize,
    timeout: Duration,
    expired: u64,
}

impl Default for ChunkAssembler {
    fn default() -> Self {
        Self::new(64 * 1024 * 1024, 4096)
    }
}

impl ChunkAssembler {
    /// An assembler holding at most `max_held_bytes` of incomplete messages, and at most
    /// `max_messages` of them.
    pub fn new(max_held_bytes: usize, max_messages: usize) -> Self {
        Self {
            pending: HashMap::new(),
            held_bytes: 0,
            max_held_bytes,
            max_messages: max_messages.max(1),
            timeout: CHUNK_TIMEOUT,
            expired: 0,
        }
    }

    /// Incomplete messages held now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Bytes held by incomplete messages.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Messages dropped so far because their chunks did not all arrive in time.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// Drops messages whose first chunk is older than the timeout at `now`.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.timeout;
        let mut freed = 0;
        let before = self.pending.len();
        self.pending.retain(|_, p| {
            let keep = now.saturating_duration_since(p.first_seen) < timeout;
            if !keep {
                freed += p.bytes;
            }
            keep
        });
        self.expired += (before - self.pending.len()) as u64;
        self.held_bytes -= freed;
    }

    /// Takes one datagram. A datagram that is not a chunk is returned as it is; a chunk
    /// returns the whole payload once its last missing chunk arrives, else `None`.
    pub fn push(&mut self, datagram: &[u8], now: Instant) -> Result<Option<Vec<u8>>, FramingError> {
        if !datagram.starts_with(&CHUNK_MAGIC) {
            return Ok(Some(datagram.to_vec()));
        }
        if datagram.len() < HEADER {
            return Err(FramingError::GelfChunk("shorter than its header"));
        }
        self.expire(now);
        let mut id = [0u8; 8];
        id.copy_from_slice(&datagram[2..10]);
        let seq = datagram[10];
        let count = datagram[11];
        if count == 0 || count > MAX_CHUNKS {
            return Err(FramingError::GelfChunk("sequence count outside 1..=128"));
        }
        if seq >= count {
            return Err(FramingError::GelfChunk("sequence number not below count"));
        }
        let body = &datagram[HEADER..];
        if count == 1 {
            return Ok(Some(body.to_vec()));
        }
        if !self.pending.contains_key(&id) && self.pending.len() >= self.max_messages {
            return Err(FramingError::GelfChunk("too many incomplete messages"));
        }
        if self.held_bytes + body.len() > self.max_held_bytes {
            return Err(FramingError::GelfChunk(
                "incomplete messages over the memory limit",
            ));
        }
        let entry = self.pending.entry(id).or_insert_with(|| Pending {
            parts: vec![None; usize::from(count)],
            have: 0,
            bytes: 0,
            first_seen: now,
        });
        if entry.parts.len() != usize::from(count) {
            return Err(FramingError::GelfChunk(
                "sequence count changed within a message",
            ));
        }
        let slot = &mut entry.parts[usize::from(seq)];
        if slot.is_some() {
            return Err(FramingError::GelfChunk("duplicate chunk"));
        }
        *slot = Some(body.to_vec());
        entry.have += 1;
        entry.bytes += body.len();
        self.held_bytes += body.len();
        if entry.have < entry.parts.len() {
            return Ok(None);
        }
        let Some(done) = self.pending.remove(&id) else {
            return Ok(None);
        };
        self.held_bytes -= done.bytes;
        let mut whole = Vec::with_capacity(done.bytes);
        for part in done.parts.into_iter().flatten() {
            whole.extend_from_slice(&part);
        }
        Ok(Some(whole))
    }
}

/// Inflates a zlib or gzip payload to at most `max` bytes; other payloads are returned as
/// they are. This is the only way Canh decompresses input.
pub fn decompress(payload: &[u8], max: usize) -> Result<Cow<'_, [u8]>, FramingError> {
    let is_gzip = payload.starts_with(&[0x1f, 0x8b]);
    let is_zlib = payload.len() >= 2
        && payload[0] & 0x0f == 8
        && (u16::from(payload[0]) << 8 | u16::from(payload[1])) % 31 == 0;
    if !is_gzip && !is_zlib {
        return Ok(Cow::Borrowed(payload));
    }
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    let read = if is_gzip {
        flate2::read::MultiGzDecoder::new(payload)
            .take(limit)
            .read_to_end(&mut out)
    } else {
        flate2::read::ZlibDecoder::new(payload)
            .take(limit)
            .read_to_end(&mut out)
    };
    read.map_err(|e| FramingError::Decompress(e.to_string()))?;
    if out.len() > max {
        return Err(FramingError::DecompressedTooLarge { max });
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn chunk(id: u8, seq: u8, count: u8, body: &[u8]) -> Vec<u8> {
        let mut d = vec![0x1e, 0x0f, id, 0, 0, 0, 0, 0, 0, 0, seq, count];
        d.extend_from_slice(body);
        d
    }

    #[test]
    fn chunks_in_any_order_reassemble() {
        let mut a = ChunkAssembler::default();
        let t = Instant::now();
        assert_eq!(a.push(&chunk(1, 2, 3, b"c"), t).unwrap(), None);
        assert_eq!(a.push(&chunk(1, 0, 3, b"a"), t).unwrap(), None);
        assert_eq!(a.held_bytes(), 2);
        assert_eq!(
            a.push(&chunk(1, 1, 3, b"b"), t).unwrap(),
            Some(b"abc".to_vec())
        );
        assert_eq!((a.pending(), a.held_bytes()), (0, 0));
    }

    #[test]
    fn late_chunks_expire() {
        let mut a = ChunkAssembler::default();
        let t = Instant::now();
        a.push(&chunk(7, 0, 2, b"x"), t).unwrap();
        a.push(&chunk(8, 0, 2, b"y"), t + Duration::from_secs(6))
            .unwrap();
        assert_eq!(a.expired(), 1);
        assert_eq!(a.pending(), 1);
        // The expired message's second half now starts a new, incomplete message.
        assert_eq!(
            a.push(&chunk(7, 1, 2, b"z"), t + Duration::from_secs(6))
                .unwrap(),
            None
        );
    }

    #[test]
    fn limits_are_enforced() {
        let mut a = ChunkAssembler::new(4, 1);
        let t = Instant::now();
        assert!(a.push(&chunk(1, 0, 129, b""), t).is_err());
        assert!(a.push(&chunk(1, 5, 5, b""), t).is_err());
        a.push(&chunk(1, 0, 2, b"abc"), t).unwrap();
        assert!(
            a.push(&chunk(2, 0, 2, b"a"), t).is_err(),
            "second message over the count cap"
        );
        assert!(a.push(&chunk(1, 0, 2, b"a"), t).is_err(), "duplicate");
        assert!(
            a.push(&chunk(1, 1, 2, b"xx"), t).is_err(),
            "over the byte cap"
        );
    }

    #[test]
    fn decompress_zlib_gzip_and_cap() {
        let text = b"{\"short_message\":\"hi\"}".repeat(50);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&text).unwrap();
        let z = z.finish().unwrap();
        assert_eq!(decompress(&z, 10_000).unwrap().as_ref(), text.as_slice());
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        g.write_all(&text).unwrap();
        let g = g.finish().unwrap();
        assert_eq!(decompress(&g, 10_000).unwrap().as_ref(), text.as_slice());
        assert_eq!(
            decompress(&g, 100),
            Err(FramingError::DecompressedTooLarge { max: 100 })
        );
        assert_eq!(decompress(b"{\"a\":1}", 10).unwrap().as_ref(), b"{\"a\":1}");
        assert!(decompress(&[0x1f, 0x8b, 0, 1, 2], 100).is_err());
    }
}
