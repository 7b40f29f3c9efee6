//! IP fragment reassembly, bounded in datagrams, bytes and time.

use crate::decode::{FragInfo, Timestamp};
use std::collections::HashMap;
use std::net::IpAddr;

/// Largest datagram rebuilt (IPv4 maximum plus headroom for IPv6).
const MAX_DATAGRAM: u32 = 65_535 + 8;

/// Fragment bytes held at most, all datagrams together (Suricata's `defrag.memcap` default):
/// without it, the datagram limit alone would allow up to 64 KiB each.
pub const DEFRAG_MEMCAP: usize = 32 << 20;

/// Bytes counted per held fragment beyond its data (its list entry and allocation).
const PIECE_COST: usize = 48;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
}

#[derive(Debug, Default)]
struct Pending {
    pieces: Vec<(u32, Vec<u8>)>,
    total: Option<u32>,
    bytes: usize,
    first_seen: i64,
}

impl Pending {
    /// Bytes counted for this datagram in [`Defrag::held_bytes`].
    fn cost(&self) -> usize {
        self.bytes + self.pieces.len() * PIECE_COST
    }
}

/// Counters of the reassembler.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DefragStats {
    /// Datagrams rebuilt.
    pub reassembled: u64,
    /// Datagrams dropped because the table was full.
    pub evicted: u64,
    /// Datagrams dropped after the timeout.
    pub timeouts: u64,
    /// Fragments that overlapped earlier data (first data wins).
    pub overlaps: u64,
    /// Fragments that would build a datagram over 64 KiB.
    pub too_large: u64,
}

/// Fragment reassembler.
#[derive(Debug)]
pub struct Defrag {
    table: HashMap<FragKey, Pending>,
    max_datagrams: usize,
    /// Bytes held in all datagrams (data plus [`PIECE_COST`] per fragment).
    held: usize,
    max_bytes: usize,
    timeout_secs: i64,
    /// Counters.
    pub stats: DefragStats,
}

/// What adding a fragment produced.
#[derive(Debug, PartialEq, Eq)]
pub enum DefragOutcome {
    /// Still waiting for more fragments.
    Pending,
    /// The datagram is complete: its transport bytes.
    Complete(Vec<u8>),
    /// The fragment was invalid and dropped (anomaly event name).
    Invalid(&'static str),
}

impl Defrag {
    /// A reassembler tracking at most `max_datagrams` at a time, holding at most
    /// [`DEFRAG_MEMCAP`] bytes.
    pub fn new(max_datagrams: usize, timeout_secs: i64) -> Self {
        Self::with_memcap(max_datagrams, DEFRAG_MEMCAP, timeout_secs)
    }

    /// A reassembler tracking at most `max_datagrams` and `max_bytes` at a time (the oldest
    /// datagrams are dropped to make room, counted as evicted).
    pub fn with_memcap(max_datagrams: usize, max_bytes: usize, timeout_secs: i64) -> Self {
        Self {
            table: HashMap::new(),
            max_datagrams: max_datagrams.max(1),
            held: 0,
            max_bytes,
            timeout_secs,
            stats: DefragStats::default(),
        }
    }

    /// Bytes held in datagrams waiting for fragments.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Adds one fragment.
    pub fn add(
        &mut self,
        ts: Timestamp,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        frag: FragInfo,
        data: &[u8],
    ) -> DefragOutcome {
        let end = frag.offset.saturating_add(data.len() as u32);
        if end > MAX_DATAGRAM {
            self.stats.too_large += 1;
            return DefragOutcome::Invalid("decoder.ipv4.frag_pkt_too_large");
        }
        if frag.more && !data.len().is_multiple_of(8) {
            return DefragOutcome::Invalid("decoder.ipv4.frag_invalid_length");
        }
        let key = FragKey {
            src,
            dst,
            id: frag.id,
            proto,
        };
        if !self.table.contains_key(&key) && self.table.len() >= self.max_datagrams {
            self.expire(ts);
            if self.table.len() >= self.max_datagrams {
                self.evict_oldest();
            }
        }
        if self.held + data.len() + PIECE_COST > self.max_bytes {
            self.expire(ts);
            while self.held + data.len() + PIECE_COST > self.max_bytes && !self.table.is_empty() {
                self.evict_oldest();
            }
        }
        let entry = self.table.entry(key).or_insert_with(|| Pending {
            first_seen: ts.secs,
            ..Pending::default()
        });
        if !frag.more {
            entry.total = Some(end);
        }
        // First data wins: keep only the bytes not covered by earlier fragments.
        let mut start = frag.offset;
        let mut overlapped = false;
        let mut covered: Vec<(u32, u32)> = entry
            .pieces
            .iter()
            .map(|(o, d)| (*o, *o + d.len() as u32))
            .collect();
        covered.sort_unstable();
        for (cs, ce) in covered {
            if ce <= start || cs >= end {
                continue;
            }
            overlapped = true;
            if cs <= start {
                start = start.max(ce);
            } else {
                // A hole before an earlier piece: keep [start, cs) now, the rest after it.
                let lo = (start - frag.offset) as usize;
                let hi = (cs - frag.offset) as usize;
                entry.pieces.push((start, data[lo..hi].to_vec()));
                entry.bytes += hi - lo;
                self.held += hi - lo + PIECE_COST;
                start = ce;
            }
        }
        if start < end {
            let lo = (start - frag.offset) as usize;
            entry.pieces.push((start, data[lo..].to_vec()));
            entry.bytes += data.len() - lo;
            self.held += data.len() - lo + PIECE_COST;
        }
        if overlapped {
            self.stats.overlaps += 1;
        }
        let Some(total) = entry.total else {
            return DefragOutcome::Pending;
        };
        if entry.bytes < total as usize {
            return DefragOutcome::Pending;
        }
        entry.pieces.sort_unstable_by_key(|(o, _)| *o);
        let mut out = Vec::with_capacity(total as usize);
        for (off, piece) in &entry.pieces {
            if *off as usize != out.len() {
                return DefragOutcome::Pending;
            }
            out.extend_from_slice(piece);
        }
        out.truncate(total as usize);
        self.remove(&key);
        self.stats.reassembled += 1;
        DefragOutcome::Complete(out)
    }

    /// Drops datagrams older than the timeout.
    pub fn expire(&mut self, now: Timestamp) {
        let timeout = self.timeout_secs;
        let before = self.table.len();
        let mut freed = 0;
        self.table.retain(|_, p| {
            let keep = now.secs - p.first_seen <= timeout;
            if !keep {
                freed += p.cost();
            }
            keep
        });
        self.held -= freed;
        self.stats.timeouts += (before - self.table.len()) as u64;
    }

    fn remove(&mut self, key: &FragKey) {
        if let Some(p) = self.table.remove(key) {
            self.held -= p.cost();
        }
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .table
            .iter()
            .min_by_key(|(_, p)| p.first_seen)
            .map(|(k, _)| *k);
        if let Some(key) = oldest {
            self.remove(&key);
            self.stats.evicted += 1;
        }
    }

    /// Datagrams waiting for fragments.
    pub fn pending(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn add(d: &mut Defrag, offset: u32, more: bool, data: &[u8]) -> DefragOutcome {
        let a = IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1));
        let b = IpAddr::V4(Ipv4Addr::new(2, 2, 2, 2));
        d.add(
            Timestamp::new(10, 0),
            a,
            b,
            17,
            FragInfo {
                id: 9,
                offset,
                more,
            },
            data,
        )
    }

    #[test]
    fn out_of_order_fragments_reassemble() {
        let mut d = Defrag::new(16, 60);
        assert_eq!(add(&mut d, 8, false, b"world"), DefragOutcome::Pending);
        assert_eq!(
            add(&mut d, 0, true, b"hello, w"),
            DefragOutcome::Complete(b"hello, wworld".to_vec())
        );
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn overlapping_fragment_keeps_first_data() {
        let mut d = Defrag::new(16, 60);
        assert_eq!(add(&mut d, 0, true, b"AAAAAAAA"), DefragOutcome::Pending);
        assert_eq!(
            add(&mut d, 0, true, b"BBBBBBBBBBBBBBBB"),
            DefragOutcome::Pending
        );
        assert_eq!(
            add(&mut d, 16, false, b"C"),
            DefragOutcome::Complete(b"AAAAAAAABBBBBBBBC".to_vec())
        );
        assert_eq!(d.stats.overlaps, 1);
    }

    #[test]
    fn table_is_bounded() {
        let mut d = Defrag::new(2, 60);
        let a = IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1));
        for id in 0..5 {
            let frag = FragInfo {
                id,
                offset: 0,
                more: true,
            };
            d.add(Timestamp::new(1, 0), a, a, 17, frag, b"12345678");
        }
        assert_eq!(d.pending(), 2);
        assert_eq!(d.stats.evicted, 3);
    }

    #[test]
    fn held_bytes_are_bounded_and_released() {
        let cap = 4 * (1480 + PIECE_COST) + 100;
        let mut d = Defrag::with_memcap(1000, cap, 60);
        let a = IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1));
        for id in 0..10 {
            let frag = FragInfo {
                id,
                offset: 0,
                more: true,
            };
            d.add(
                Timestamp::new(1 + i64::from(id), 0),
                a,
                a,
                17,
                frag,
                &[0; 1480],
            );
            assert!(d.held_bytes() <= cap);
        }
        assert_eq!(d.pending(), 4);
        assert_eq!(d.stats.evicted, 6);
        // Completing a datagram releases its bytes; timing out releases the rest.
        let last = FragInfo {
            id: 9,
            offset: 1480,
            more: false,
        };
        let done = d.add(Timestamp::new(10, 0), a, a, 17, last, b"end");
        assert!(matches!(done, DefragOutcome::Complete(ref b) if b.len() == 1483));
        assert_eq!(d.held_bytes(), 3 * (1480 + PIECE_COST));
        d.expire(Timestamp::new(100, 0));
        assert_eq!((d.pending(), d.held_bytes()), (0, 0));
    }
}
