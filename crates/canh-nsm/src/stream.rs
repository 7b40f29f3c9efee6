//! TCP stream reassembly for one direction: in-order delivery, bounded out-of-order buffer,
//! first-wins overlaps and gap reporting.

/// What the reassembler hands to the application layer.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// In-order bytes.
    Data(Vec<u8>),
    /// Bytes that were never seen: the application parser must resynchronise or stop.
    Gap(u64),
}

/// Counters of one direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamStats {
    /// Segments received out of order and buffered.
    pub out_of_order: u64,
    /// Segments (or parts) that repeated data already delivered or buffered.
    pub overlaps: u64,
    /// Gaps reported.
    pub gaps: u64,
    /// Bytes delivered in order.
    pub delivered: u64,
}

/// Reassembly state of one TCP direction.
#[derive(Debug)]
pub struct Stream {
    next_seq: Option<u32>,
    pending: Vec<(u32, Vec<u8>)>,
    pending_bytes: usize,
    max_pending: usize,
    /// Counters.
    pub stats: StreamStats,
}

fn seq_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

impl Stream {
    /// A stream buffering at most `max_pending` bytes out of order.
    pub fn new(max_pending: usize) -> Self {
        Self {
            next_seq: None,
            pending: Vec::new(),
            pending_bytes: 0,
            max_pending,
            stats: StreamStats::default(),
        }
    }

    /// Sets the initial sequence number (from a SYN: ISN + 1).
    pub fn set_start(&mut self, seq: u32) {
        if self.next_seq.is_none() {
            self.next_seq = Some(seq);
        }
    }

    /// The next sequence number expected in order, once known.
    pub fn next_seq(&self) -> Option<u32> {
        self.next_seq
    }

    /// Whether a start sequence is known.
    pub fn started(&self) -> bool {
        self.next_seq.is_some()
    }

    /// Adds a segment and returns the bytes now deliverable in order.
    pub fn add(&mut self, seq: u32, data: &[u8], out: &mut Vec<Chunk>) {
        if data.is_empty() {
            return;
        }
        let next = *self.next_seq.get_or_insert(seq);
        let diff = seq_diff(seq, next);
        if diff <= 0 {
            let skip = diff.unsigned_abs() as usize;
            if skip >= data.len() {
                self.stats.overlaps += 1;
                return;
            }
            if skip > 0 {
                self.stats.overlaps += 1;
            }
            self.deliver(&data[skip..], out);
            self.drain(out);
            return;
        }
        // Out of order: buffer it, unless the same start is already held (first wins).
        self.stats.out_of_order += 1;
        if self
            .pending
            .iter()
            .any(|(s, d)| *s == seq && d.len() >= data.len())
        {
            self.stats.overlaps += 1;
            return;
        }
        self.pending.push((seq, data.to_vec()));
        self.pending_bytes += data.len();
        if self.pending_bytes > self.max_pending {
            // Too much buffered: give up on the hole and move to the first held segment.
            self.skip_to_first_pending(out);
        }
    }

    fn deliver(&mut self, data: &[u8], out: &mut Vec<Chunk>) {
        if let Some(next) = self.next_seq.as_mut() {
            *next = next.wrapping_add(data.len() as u32);
        }
        self.stats.delivered += data.len() as u64;
        match out.last_mut() {
            Some(Chunk::Data(buf)) => buf.extend_from_slice(data),
            _ => out.push(Chunk::Data(data.to_vec())),
        }
    }

    fn drain(&mut self, out: &mut Vec<Chunk>) {
        loop {
            let Some(next) = self.next_seq else { return };
            let Some(idx) = self
                .pending
                .iter()
                .position(|(s, _)| seq_diff(*s, next) <= 0)
            else {
                return;
            };
            let (seq, data) = self.pending.swap_remove(idx);
            self.pending_bytes -= data.len();
            let skip = seq_diff(next, seq) as usize;
            if skip < data.len() {
                if skip > 0 {
                    self.stats.overlaps += 1;
                }
                self.deliver(&data[skip..], out);
            } else {
                self.stats.overlaps += 1;
            }
        }
    }

    fn skip_to_first_pending(&mut self, out: &mut Vec<Chunk>) {
        let Some(next) = self.next_seq else { return };
        let Some(first) = self.pending.iter().map(|(s, _)| seq_diff(*s, next)).min() else {
            return;
        };
        if first > 0 {
            self.stats.gaps += 1;
            out.push(Chunk::Gap(first as u64));
            self.next_seq = Some(next.wrapping_add(first as u32));
        }
        self.drain(out);
    }

    /// At the end of the flow: delivers whatever is buffered, reporting gaps between.
    pub fn flush(&mut self, out: &mut Vec<Chunk>) {
        while !self.pending.is_empty() {
            let before = self.pending.len();
            self.skip_to_first_pending(out);
            if self.pending.len() == before {
                // Cannot progress (should not happen): drop what is left.
                self.pending.clear();
                self.pending_bytes = 0;
            }
        }
    }

    /// Bytes held out of order.
    pub fn buffered(&self) -> usize {
        self.pending_bytes
    }

    /// Heap bytes this direction holds (the segments buffered out of order and their list),
    /// for the flow table's memory budget.
    pub fn heap_bytes(&self) -> usize {
        let list = self.pending.capacity() * std::mem::size_of::<(u32, Vec<u8>)>();
        crate::proto::heap::alloc(list)
            + self.pending_bytes
            + self.pending.len() * crate::proto::heap::ALLOC_OVERHEAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(out: &[Chunk]) -> Vec<u8> {
        out.iter()
            .flat_map(|c| match c {
                Chunk::Data(d) => d.clone(),
                Chunk::Gap(_) => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn out_of_order_segments_are_delivered_in_order() {
        let mut s = Stream::new(1 << 16);
        s.set_start(1000);
        let mut out = Vec::new();
        s.add(1005, b"world", &mut out);
        assert!(out.is_empty());
        s.add(1000, b"hello", &mut out);
        assert_eq!(data(&out), b"helloworld");
        assert_eq!(s.stats.out_of_order, 1);
    }

    #[test]
    fn overlaps_keep_the_first_bytes() {
        let mut s = Stream::new(1 << 16);
        s.set_start(0);
        let mut out = Vec::new();
        s.add(0, b"abcd", &mut out);
        s.add(2, b"XXef", &mut out);
        assert_eq!(data(&out), b"abcdef");
        assert!(s.stats.overlaps >= 1);
    }

    #[test]
    fn sequence_wraparound_is_handled() {
        let mut s = Stream::new(1 << 16);
        s.set_start(u32::MAX - 1);
        let mut out = Vec::new();
        s.add(0, b"cd", &mut out);
        s.add(u32::MAX - 1, b"ab", &mut out);
        assert_eq!(data(&out), b"abcd");
    }

    #[test]
    fn full_buffer_reports_a_gap() {
        let mut s = Stream::new(4);
        s.set_start(0);
        let mut out = Vec::new();
        s.add(10, b"abcdef", &mut out);
        assert_eq!(out, vec![Chunk::Gap(10), Chunk::Data(b"abcdef".to_vec())]);
        assert_eq!(s.stats.gaps, 1);
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn counted_bytes_follow_the_out_of_order_buffer() {
        let mut s = Stream::new(1 << 16);
        s.set_start(0);
        let mut out = Vec::new();
        assert_eq!(s.heap_bytes(), 0);
        s.add(1000, &[7; 1000], &mut out);
        s.add(3000, &[7; 2000], &mut out);
        let held = s.heap_bytes();
        assert!(held >= 3000, "{held}");
        s.add(0, &[7; 1000], &mut out);
        // The first segment filled the hole before 1000: that one is delivered, 2000 stay.
        let after = s.heap_bytes();
        assert!(after >= 2000 && after < held - 900, "{after}");
        s.flush(&mut out);
        assert!(s.heap_bytes() < 200, "{}", s.heap_bytes());
    }

    #[test]
    fn flush_delivers_after_holes() {
        let mut s = Stream::new(1 << 16);
        s.set_start(0);
        let mut out = Vec::new();
        s.add(4, b"xy", &mut out);
        s.flush(&mut out);
        assert_eq!(out, vec![Chunk::Gap(4), Chunk::Data(b"xy".to_vec())]);
    }
}
