//! The no-loss spool: an on-disk, segmented, CRC-checked log of events awaiting acknowledgement.
//!
//! Every event gets a sequence number and is written (and fsynced, once per batch) before it is
//! offered to the transport. The server acknowledges a prefix; the spool then deletes segments
//! that lie wholly below it. After a reconnect the reader rewinds to `acked + 1`, and the
//! server drops what it already holds by sequence number.
//!
//! The `acked` cursor is rewritten in place at every acknowledgement (one write, so a killed
//! agent never goes back), and made durable (fdatasync) before any segment is deleted, whenever
//! it passes the last sequence number on disk (so numbering can never restart below what the
//! server holds), and at least once a second: after a power loss the spool may resend up to a
//! second of acknowledged events, which the server drops as replays. The segment being
//! written is kept when the sender catches up with it, until it is full, so a caught-up sender
//! does not cost a new file (and a directory fsync) per batch.
//!
//! Events appended by value ([`Spool::append_owned`]) are also kept in memory, a bounded
//! number of them, until the sender reads them: the usual read then costs no disk read and no
//! JSON parse. The disk stays the source of truth (a rewind, a gap, or a tail that grew past
//! its bound is read from the segments).
//!
//! When the spool would exceed its disk quota the oldest segment is dropped even though the
//! server has not acknowledged it, and a `gap` event naming the lost range is appended, so loss
//! is visible downstream and never silent.
//!
//! Record layout (little-endian): `len: u32 | crc32(seq ‖ payload): u32 | seq: u64 | payload`,
//! where the payload is the event as JSON. Segments are named after their first sequence number.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use canh_core::Event;
use canh_core::wire::SequencedEvent;
use chrono::Utc;
use serde::Deserialize;
use tracing::{debug, warn};

const HEADER: usize = 16;
/// Records above this size are refused on write and treated as corruption on read.
pub const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;
const ACKED_FILE: &str = "acked";
/// The cursor as text: 20 digits (any u64), zero-padded, and a newline.
const ACKED_WIDTH: usize = 21;
/// Most events kept in memory for the sender (about two of its batches).
const TAIL_EVENTS: usize = 1024;
/// Longest time an acknowledgement that needs no durability waits to be written.
const ACKED_WRITE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const SEGMENT_EXT: &str = "seg";

/// Spool limits (`[spool]` in `canh-agent.toml`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// A segment is closed and a new one started once it reaches this size.
    pub segment_bytes: u64,
    /// Disk quota for all segments; beyond it the oldest segment is dropped and a gap recorded.
    pub max_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 8 * 1024 * 1024,
            max_bytes: 512 * 1024 * 1024,
        }
    }
}

/// Spool failures.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool i/o on {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An event could not be serialised or is too large.
    #[error("event of {0} bytes exceeds the spool record limit")]
    RecordTooLarge(usize),
    /// Bad configuration.
    #[error("invalid spool configuration: {0}")]
    Invalid(&'static str),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    first_seq: u64,
    /// Last sequence number in the segment; `first_seq - 1` when empty.
    last_seq: u64,
    bytes: u64,
}

impl Segment {
    fn is_empty(&self) -> bool {
        self.last_seq < self.first_seq
    }
}

/// What recovery found when the spool was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut from the end of segments (torn or corrupt records).
    pub truncated_bytes: u64,
    /// Segments in which a bad record was found.
    pub damaged_segments: u64,
}

/// The on-disk event log.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    cfg: SpoolConfig,
    segments: VecDeque<Segment>,
    active: Option<File>,
    next_seq: u64,
    acked: u64,
    read_seq: u64,
    /// (segment first seq, byte offset, seq at that offset) of the last read, to avoid rescans.
    read_hint: Option<(u64, u64, u64)>,
    dropped: u64,
    /// Loss not yet covered by an acknowledged gap event: (first lost seq, count, gap seq).
    unacked_loss: Option<(u64, u64, u64)>,
    recovery: Recovery,
    /// Recently appended events not yet read, in sequence order (see the module notes).
    tail: VecDeque<SequencedEvent>,
    /// The `acked` file, open for rewriting in place.
    acked_file: Option<File>,
    /// The `acked` value last made durable, and when.
    acked_on_disk: u64,
    acked_written_at: std::time::Instant,
    /// Reused encoding buffer for appends.
    scratch: Vec<u8>,
}

impl Drop for Spool {
    fn drop(&mut self) {
        if self.acked > self.acked_on_disk
            && let Err(e) = self.record_acked(self.acked, true)
        {
            warn!(error = %e, "cannot record the acknowledged cursor at close");
        }
    }
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, repairing a torn tail left by a crash.
    pub fn open(dir: &Path, cfg: SpoolConfig) -> Result<Self, SpoolError> {
        if cfg.segment_bytes == 0 || cfg.max_bytes < cfg.segment_bytes {
            return Err(SpoolError::Invalid("need 0 < segment_bytes <= max_bytes"));
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let acked = read_acked(dir)?;
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some(SEGMENT_EXT) {
                continue;
            }
            let first = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok());
            match first {
                Some(first_seq) => names.push((first_seq, path)),
                None => warn!(path = %path.display(), "ignoring unrecognised spool file"),
            }
        }
        names.sort();
        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        for (first_seq, path) in names {
            let (last_seq, valid_len, file_len) = scan_segment(&path, first_seq)?;
            if valid_len < file_len {
                warn!(path = %path.display(), cut = file_len - valid_len, "truncating damaged spool tail");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                f.set_len(valid_len).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
                recovery.truncated_bytes += file_len - valid_len;
                recovery.damaged_segments += 1;
            }
            let seg = Segment {
                path,
                first_seq,
                last_seq,
                bytes: valid_len,
            };
            if seg.is_empty() || seg.last_seq <= acked {
                fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
                continue;
            }
            segments.push_back(seg);
        }
        let last_written = segments.back().map_or(0, |s| s.last_seq);
        let next_seq = last_written.max(acked) + 1;
        Ok(Self {
            dir: dir.to_path_buf(),
            cfg,
            segments,
            active: None,
            next_seq,
            acked,
            read_seq: acked + 1,
            read_hint: None,
            dropped: 0,
            unacked_loss: None,
            recovery,
            tail: VecDeque::new(),
            acked_file: None,
            acked_on_disk: acked,
            acked_written_at: std::time::Instant::now(),
            scratch: Vec::new(),
        })
    }

    /// What recovery did at open.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Highest acknowledged sequence number.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Events dropped by the quota since the spool was opened.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Events on disk that are not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.last_seq
                    .saturating_sub(s.first_seq.max(self.acked + 1).saturating_sub(1))
            })
            .sum()
    }

    /// Bytes used on disk by segments.
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Whether events are waiting to be read by the sender.
    pub fn has_unread(&self) -> bool {
        self.read_seq < self.next_seq
    }

    /// Appends `events` durably (one fsync) and returns the sequence numbers given to them.
    ///
    /// If the quota forces old unacknowledged events out, a `gap` event is written first.
    pub fn append(&mut self, events: &[Event]) -> Result<std::ops::Range<u64>, SpoolError> {
        let mut buf = std::mem::take(&mut self.scratch);
        let result = self.append_with(events, &mut buf);
        if buf.capacity() <= 4 * 1024 * 1024 {
            buf.clear();
            self.scratch = buf;
        }
        result
    }

    /// [`Self::append`], keeping the events in memory for the sender (bounded).
    pub fn append_owned(&mut self, events: Vec<Event>) -> Result<std::ops::Range<u64>, SpoolError> {
        let range = self.append(&events)?;
        for (seq, event) in range.clone().zip(events) {
            self.tail.push_back(SequencedEvent { seq, event });
        }
        while self.tail.len() > TAIL_EVENTS {
            self.tail.pop_front();
        }
        Ok(range)
    }

    /// Encodes every record straight into `buf` (header first, filled in once the sequence
    /// numbers are known), then writes it in one go.
    fn append_with(
        &mut self,
        events: &[Event],
        buf: &mut Vec<u8>,
    ) -> Result<std::ops::Range<u64>, SpoolError> {
        buf.clear();
        let mut starts = Vec::with_capacity(events.len());
        for ev in events {
            starts.push(push_payload(buf, ev)?);
        }
        let mut first = self.next_seq;
        if let Some(gap) = self.enforce_quota(buf.len() as u64)? {
            let mut with_gap = Vec::with_capacity(buf.len() + 1024);
            push_payload(&mut with_gap, &gap)?;
            seal_record(&mut with_gap, 0, first);
            let shift = with_gap.len();
            with_gap.extend_from_slice(buf);
            *buf = with_gap;
            for s in &mut starts {
                *s += shift;
            }
            if let Some(loss) = self.unacked_loss.as_mut() {
                loss.2 = first;
            }
            first += 1;
        }
        for (i, at) in starts.iter().enumerate() {
            seal_record(buf, *at, first + i as u64);
        }
        let end = first + events.len() as u64;
        if end > self.next_seq {
            self.rotate_if_full();
            self.write_active(self.next_seq, end - 1, buf)?;
            self.next_seq = end;
        }
        Ok(first..end)
    }

    fn write_active(&mut self, first: u64, last: u64, buf: &[u8]) -> Result<(), SpoolError> {
        if self.active.is_none() {
            // A segment left by an earlier run (or a full one) is never appended to again.
            let path = self.dir.join(format!("{first:020}.{SEGMENT_EXT}"));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_err(&path))?;
            sync_dir(&self.dir)?;
            let reuse = self
                .segments
                .back()
                .is_some_and(|s| s.path == path && s.bytes == 0);
            if !reuse {
                self.segments.push_back(Segment {
                    path,
                    first_seq: first,
                    last_seq: first - 1,
                    bytes: 0,
                });
            }
            self.active = Some(file);
        }
        let (Some(file), Some(seg)) = (self.active.as_mut(), self.segments.back_mut()) else {
            return Err(SpoolError::Invalid("no active segment"));
        };
        let path = seg.path.clone();
        if let Err(e) = file.write_all(buf).and_then(|()| file.sync_data()) {
            // Leave no half batch behind: cut back to the last good length.
            let _ = file.set_len(seg.bytes);
            return Err(io_err(&path)(e));
        }
        seg.bytes += buf.len() as u64;
        seg.last_seq = last;
        Ok(())
    }

    /// Closes the active segment once it is full, so the next write starts a new one.
    fn rotate_if_full(&mut self) {
        if self
            .segments
            .back()
            .is_some_and(|s| s.bytes >= self.cfg.segment_bytes)
        {
            self.active = None;
        }
    }

    /// Drops oldest segments until `incoming` more bytes fit; returns the gap event to record.
    fn enforce_quota(&mut self, incoming: u64) -> Result<Option<Event>, SpoolError> {
        let mut lost: Option<(u64, u64)> = None;
        let mut count = 0u64;
        while self.disk_bytes() + incoming + 512 > self.cfg.max_bytes {
            let Some(seg) = self.segments.pop_front() else {
                break;
            };
            if self.segments.is_empty() {
                self.active = None;
            }
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
            if seg.is_empty() || seg.last_seq <= self.acked {
                continue;
            }
            let from = seg.first_seq.max(self.acked + 1);
            let n = seg.last_seq - from + 1;
            count += n;
            lost = Some((lost.map_or(from, |l| l.0), seg.last_seq));
            self.read_hint = None;
        }
        let Some((lost_from, to)) = lost else {
            return Ok(None);
        };
        self.dropped += count;
        if self.read_seq <= to {
            self.read_seq = to + 1;
        }
        // An earlier gap event that the server has not acknowledged may have been dropped
        // too: each new gap event covers all loss since the last acknowledged one.
        let (from, count) = match self.unacked_loss {
            Some((f, c, _)) => (f.min(lost_from), c + count),
            None => (lost_from, count),
        };
        self.unacked_loss = Some((from, count, 0));
        warn!(
            from,
            to, count, "spool quota exceeded, dropped oldest unacknowledged events"
        );
        let mut gap = Event::new(Utc::now());
        gap.set("event.module", "canh_agent");
        gap.set("event.dataset", "gap");
        gap.set("event.kind", "event");
        gap.set("event.category", serde_json::json!(["host"]));
        gap.set("event.type", serde_json::json!(["info"]));
        gap.set("event.action", "events-dropped");
        gap.set("canh.gap.from_seq", from);
        gap.set("canh.gap.to_seq", to);
        gap.set("canh.gap.count", count);
        gap.set(
            "message",
            format!("agent spool quota exceeded: {count} events ({from}..={to}) were dropped"),
        );
        Ok(Some(gap))
    }

    /// Reads up to `max_events` unread events (in sequence order) and advances the read cursor.
    pub fn read(&mut self, max_events: usize) -> Result<Vec<SequencedEvent>, SpoolError> {
        while self.tail.front().is_some_and(|e| e.seq < self.read_seq) {
            self.tail.pop_front();
        }
        if self.tail.front().is_some_and(|e| e.seq == self.read_seq) {
            let mut out = Vec::with_capacity(max_events.min(self.tail.len()));
            while out.len() < max_events
                && self.tail.front().is_some_and(|e| e.seq == self.read_seq)
                && let Some(e) = self.tail.pop_front()
            {
                self.read_seq = e.seq + 1;
                out.push(e);
            }
            return Ok(out);
        }
        // From disk, stopping where memory takes over.
        let max_events = match self.tail.front() {
            Some(e) => max_events.min(usize::try_from(e.seq - self.read_seq).unwrap_or(usize::MAX)),
            None => max_events,
        };
        let mut out = Vec::new();
        let mut i = 0;
        while out.len() < max_events && i < self.segments.len() {
            let seg = &self.segments[i];
            i += 1;
            if seg.is_empty() || seg.last_seq < self.read_seq {
                continue;
            }
            if self.read_seq < seg.first_seq {
                self.read_seq = seg.first_seq;
            }
            let (mut offset, mut seq) = match self.read_hint {
                Some((f, off, s)) if f == seg.first_seq && s <= self.read_seq => (off, s),
                _ => (0, seg.first_seq),
            };
            let path = seg.path.clone();
            let seg_first = seg.first_seq;
            let seg_end = seg.bytes;
            let mut file = File::open(&path).map_err(io_err(&path))?;
            file.seek(SeekFrom::Start(offset)).map_err(io_err(&path))?;
            let mut reader = BufReader::new(file.take(seg_end - offset));
            let mut payload = Vec::new();
            while out.len() < max_events {
                let Some(rec_seq) =
                    read_record(&mut reader, &mut payload).map_err(io_err(&path))?
                else {
                    break;
                };
                debug_assert_eq!(rec_seq, seq);
                offset += (HEADER + payload.len()) as u64;
                seq = rec_seq + 1;
                if rec_seq < self.read_seq {
                    continue;
                }
                match serde_json::from_slice::<Event>(&payload) {
                    Ok(event) => out.push(SequencedEvent {
                        seq: rec_seq,
                        event,
                    }),
                    Err(e) => warn!(seq = rec_seq, error = %e, "skipping unreadable spool record"),
                }
                self.read_seq = rec_seq + 1;
            }
            self.read_hint = Some((seg_first, offset, seq));
        }
        Ok(out)
    }

    /// Moves the read cursor back to the first unacknowledged event (after a reconnect).
    pub fn rewind(&mut self) {
        self.read_seq = self.acked + 1;
        self.read_hint = None;
    }

    /// Aligns numbering with the server after a session starts: if the server already holds
    /// sequence numbers this spool has not issued (the spool was wiped but the identity kept),
    /// new events continue above them instead of being dropped as replays.
    pub fn resync(&mut self, server_acked: u64) -> Result<(), SpoolError> {
        if server_acked >= self.next_seq {
            warn!(
                server_acked,
                next = self.next_seq,
                "server is ahead of the spool, renumbering"
            );
            self.active = None;
            self.next_seq = server_acked + 1;
        }
        self.ack(server_acked)
    }

    /// Records that the server holds every event up to `up_to`; deletes wholly acked segments
    /// (the one being written only once it is full).
    pub fn ack(&mut self, up_to: u64) -> Result<(), SpoolError> {
        let up_to = up_to.min(self.next_seq - 1);
        if up_to <= self.acked {
            return Ok(());
        }
        let deletable = self.deletable_segments(up_to);
        let beyond_disk = self.segments.back().is_none_or(|s| up_to > s.last_seq);
        let durable =
            deletable > 0 || beyond_disk || self.acked_written_at.elapsed() >= ACKED_WRITE_EVERY;
        self.record_acked(up_to, durable)?;
        self.acked = up_to;
        if self
            .unacked_loss
            .is_some_and(|(_, _, gap_seq)| gap_seq <= up_to)
        {
            self.unacked_loss = None;
        }
        if self.read_seq <= up_to {
            self.read_seq = up_to + 1;
            self.read_hint = None;
        }
        for _ in 0..deletable {
            let Some(seg) = self.segments.pop_front() else {
                break;
            };
            if self.segments.is_empty() {
                self.active = None;
            }
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
            debug!(
                first = seg.first_seq,
                last = seg.last_seq,
                "deleted acknowledged segment"
            );
        }
        Ok(())
    }

    /// How many leading segments lie wholly at or below `up_to` and may go.
    fn deletable_segments(&self, up_to: u64) -> usize {
        let n = self.segments.len();
        self.segments
            .iter()
            .enumerate()
            .take_while(|(i, seg)| {
                let writing = *i + 1 == n && self.active.is_some();
                seg.last_seq <= up_to && !(writing && seg.bytes < self.cfg.segment_bytes)
            })
            .count()
    }

    /// Rewrites the `acked` file in place (fixed width, one write); `durable` adds an
    /// fdatasync.
    fn record_acked(&mut self, value: u64, durable: bool) -> Result<(), SpoolError> {
        use std::os::unix::fs::FileExt;
        let path = self.dir.join(ACKED_FILE);
        if self.acked_file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            sync_dir(&self.dir)?;
            self.acked_file = Some(file);
        }
        let Some(file) = self.acked_file.as_ref() else {
            return Err(SpoolError::Invalid("acked file not open"));
        };
        let text = format!("{value:0width$}\n", width = ACKED_WIDTH - 1);
        file.write_all_at(text.as_bytes(), 0)
            .map_err(io_err(&path))?;
        if durable {
            file.sync_data().map_err(io_err(&path))?;
            self.acked_on_disk = value;
            self.acked_written_at = std::time::Instant::now();
        }
        Ok(())
    }
}

/// Appends a record for `ev` with a blank header (see [`seal_record`]); returns where the
/// record starts.
fn push_payload(buf: &mut Vec<u8>, ev: &Event) -> Result<usize, SpoolError> {
    let at = buf.len();
    buf.extend_from_slice(&[0u8; HEADER]);
    if serde_json::to_writer(&mut *buf, ev).is_err() {
        buf.truncate(at);
        return Err(SpoolError::RecordTooLarge(0));
    }
    let len = buf.len() - at - HEADER;
    if len > MAX_RECORD_BYTES {
        buf.truncate(at);
        return Err(SpoolError::RecordTooLarge(len));
    }
    // Bounded by MAX_RECORD_BYTES just above, so it fits u32.
    buf[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(at)
}

/// Fills in the header of the record at `at`: its sequence number and checksum.
fn seal_record(buf: &mut [u8], at: usize, seq: u64) {
    let len = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
    let payload = at + HEADER..at + HEADER + len;
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&buf[payload]);
    buf[at + 4..at + 8].copy_from_slice(&h.finalize().to_le_bytes());
    buf[at + 8..at + 16].copy_from_slice(&seq.to_le_bytes());
}

/// Reads one record; `Ok(None)` at a clean end or at the first torn/corrupt record.
fn read_record<R: Read>(r: &mut R, payload: &mut Vec<u8>) -> std::io::Result<Option<u64>> {
    let mut header = [0u8; HEADER];
    if !read_full(r, &mut header)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&header[8..16]);
    let seq = u64::from_le_bytes(seq_bytes);
    if len > MAX_RECORD_BYTES {
        return Ok(None);
    }
    payload.clear();
    payload.resize(len, 0);
    if !read_full(r, payload)? {
        return Ok(None);
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&seq_bytes);
    h.update(payload);
    if h.finalize() != crc {
        return Ok(None);
    }
    Ok(Some(seq))
}

/// Fills `buf`; false when the input ends first.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Returns (last good seq, valid byte length, file length) of a segment.
fn scan_segment(path: &Path, first_seq: u64) -> Result<(u64, u64, u64), SpoolError> {
    let file = File::open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let mut reader = BufReader::new(file);
    let mut payload = Vec::new();
    let mut expected = first_seq;
    let mut valid = 0u64;
    while let Some(seq) = read_record(&mut reader, &mut payload).map_err(io_err(path))? {
        if seq != expected {
            break;
        }
        valid += (HEADER + payload.len()) as u64;
        expected += 1;
    }
    Ok((expected - 1, valid, file_len))
}

fn read_acked(dir: &Path) -> Result<u64, SpoolError> {
    let path = dir.join(ACKED_FILE);
    match fs::read_to_string(&path) {
        Ok(s) => Ok(s.trim().parse().unwrap_or_else(|_| {
            warn!(path = %path.display(), "unreadable acked cursor, replaying everything");
            0
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err(&path)(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// A spool shared between sensors (which append) and the sender (which reads and acks).
#[derive(Clone, Debug)]
pub struct SpoolHandle {
    inner: std::sync::Arc<std::sync::Mutex<Spool>>,
    notify: std::sync::Arc<tokio::sync::Notify>,
}

impl SpoolHandle {
    /// Wraps an open spool.
    pub fn new(spool: Spool) -> Self {
        Self {
            inner: std::sync::Arc::new(std::sync::Mutex::new(spool)),
            notify: std::sync::Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Appends durably, then wakes the sender.
    pub fn append(&self, events: &[Event]) -> Result<std::ops::Range<u64>, SpoolError> {
        let range = self.with(|s| s.append(events))?;
        self.notify.notify_one();
        Ok(range)
    }

    /// [`Self::append`] by value: the events are also kept for the sender, which then reads
    /// them without parsing them back from disk.
    pub fn append_owned(&self, events: Vec<Event>) -> Result<std::ops::Range<u64>, SpoolError> {
        let range = self.with(|s| s.append_owned(events))?;
        self.notify.notify_one();
        Ok(range)
    }

    /// Runs `f` with the spool locked.
    pub fn with<R>(&self, f: impl FnOnce(&mut Spool) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Resolves after the next append (or at once if one happened since the last call).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: u64) -> Event {
        let mut e = Event::new(Utc::now());
        e.set("n", i);
        e
    }

    fn small() -> SpoolConfig {
        SpoolConfig {
            segment_bytes: 4096,
            max_bytes: 1 << 20,
        }
    }

    #[test]
    fn appended_events_read_back_in_order_with_sequence_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), small()).unwrap();
        for chunk in 0..30 {
            let r = s
                .append(&(chunk * 10..chunk * 10 + 10).map(ev).collect::<Vec<_>>())
                .unwrap();
            assert_eq!(r, chunk * 10 + 1..chunk * 10 + 11);
        }
        let mut got = Vec::new();
        loop {
            let b = s.read(64).unwrap();
            if b.is_empty() {
                break;
            }
            got.extend(b);
        }
        assert_eq!(got.len(), 300);
        for (i, se) in got.iter().enumerate() {
            assert_eq!(se.seq, i as u64 + 1);
            assert_eq!(se.event.get("n").and_then(|v| v.as_u64()), Some(i as u64));
        }
        assert!(s.segments.len() > 1, "small segments must rotate");
    }

    #[test]
    fn ack_deletes_segments_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), small()).unwrap();
        for chunk in 0..30 {
            s.append(&(chunk * 10..chunk * 10 + 10).map(ev).collect::<Vec<_>>())
                .unwrap();
        }
        let segs_before = s.segments.len();
        s.ack(200).unwrap();
        assert!(s.segments.len() < segs_before);
        assert_eq!(s.pending(), 100);
        drop(s);
        let mut s = Spool::open(dir.path(), small()).unwrap();
        assert_eq!(s.acked(), 200);
        assert_eq!(s.next_seq(), 301);
        let b = s.read(1000).unwrap();
        assert_eq!(b.first().map(|e| e.seq), Some(201));
        assert_eq!(b.len(), 100);
    }

    #[test]
    fn rewind_replays_unacked_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), small()).unwrap();
        s.append(&(0..10).map(ev).collect::<Vec<_>>()).unwrap();
        assert_eq!(s.read(100).unwrap().len(), 10);
        s.ack(4).unwrap();
        assert!(s.read(100).unwrap().is_empty());
        s.rewind();
        let again = s.read(100).unwrap();
        assert_eq!(
            again.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (5..=10).collect::<Vec<_>>()
        );
    }

    #[test]
    fn fully_acked_spool_keeps_numbering_and_its_segment_until_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), small()).unwrap();
        s.append(&[ev(1), ev(2)]).unwrap();
        s.ack(2).unwrap();
        assert_eq!(s.pending(), 0);
        assert_eq!(s.segments.len(), 1, "the segment being written is kept");
        assert_eq!(s.append(&[ev(3)]).unwrap(), 3..4);
        assert_eq!(s.read(10).unwrap()[0].seq, 3);
        // Once full, a wholly acknowledged segment goes.
        let first = s.segments[0].path.clone();
        for _ in 0..1000 {
            let r = s.append(&[ev(4)]).unwrap();
            s.ack(r.end - 1).unwrap();
            if !first.try_exists().unwrap() {
                break;
            }
        }
        assert!(
            !first.try_exists().unwrap(),
            "a full, acknowledged segment is deleted"
        );
        let last = s.next_seq() - 1;
        drop(s);
        // Reopened, nothing acknowledged is left or replayed.
        let mut s = Spool::open(dir.path(), small()).unwrap();
        assert_eq!(s.acked(), last);
        assert_eq!(s.disk_bytes(), 0);
        assert!(s.read(10).unwrap().is_empty());
        assert_eq!(s.append(&[ev(5)]).unwrap(), last + 1..last + 2);
    }

    #[test]
    fn events_appended_by_value_are_read_from_memory_and_replayed_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), small()).unwrap();
        let r = s.append_owned((0..10).map(ev).collect()).unwrap();
        assert_eq!(r, 1..11);
        assert_eq!(s.tail.len(), 10);
        let first = s.read(4).unwrap();
        assert_eq!(
            first.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(s.tail.len(), 6, "served from memory");
        s.ack(2).unwrap();
        // A rewind goes back to disk for what memory no longer holds, then memory again.
        s.rewind();
        let again = s.read(100).unwrap();
        assert_eq!(again.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
        let rest = s.read(100).unwrap();
        assert_eq!(
            rest.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (5..=10).collect::<Vec<_>>()
        );
        for se in again.iter().chain(&rest) {
            assert_eq!(se.event.get("n").and_then(|v| v.as_u64()), Some(se.seq - 1));
        }
        // Memory is bounded; what fell out is read from disk, in order.
        let big: Vec<Event> = (0..TAIL_EVENTS as u64 + 50).map(ev).collect();
        let r = s.append_owned(big).unwrap();
        assert_eq!(s.tail.len(), TAIL_EVENTS);
        let mut seqs = Vec::new();
        loop {
            let b = s.read(300).unwrap();
            if b.is_empty() {
                break;
            }
            seqs.extend(b.iter().map(|e| e.seq));
        }
        assert_eq!(seqs, r.collect::<Vec<_>>());
    }

    #[test]
    fn acked_cursor_is_rewritten_in_place_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), small()).unwrap();
        s.append(&(0..5).map(ev).collect::<Vec<_>>()).unwrap();
        s.ack(3).unwrap();
        let text = fs::read_to_string(dir.path().join(ACKED_FILE)).unwrap();
        assert_eq!(text, "00000000000000000003\n");
        // Older agents wrote the bare number; it is read and then overwritten whole.
        drop(s);
        fs::write(dir.path().join(ACKED_FILE), "4").unwrap();
        let mut s = Spool::open(dir.path(), small()).unwrap();
        assert_eq!(s.acked(), 4);
        s.ack(5).unwrap();
        drop(s);
        assert_eq!(read_acked(dir.path()).unwrap(), 5);
    }

    #[test]
    fn resync_continues_numbering_above_the_server_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), small()).unwrap();
        s.append(&[ev(1)]).unwrap();
        s.resync(500).unwrap();
        assert_eq!(s.acked(), 500);
        assert_eq!(s.append(&[ev(2)]).unwrap(), 501..502);
        assert_eq!(s.read(10).unwrap()[0].seq, 501);
        drop(s);
        let s = Spool::open(dir.path(), small()).unwrap();
        assert_eq!(s.next_seq(), 502);
    }

    #[test]
    fn torn_tail_is_truncated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), small()).unwrap();
        s.append(&[ev(1), ev(2), ev(3)]).unwrap();
        let path = s.segments.back().unwrap().path.clone();
        drop(s);
        // Simulate a crash mid-write: half a record, then garbage in a flipped byte.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let mut s = Spool::open(dir.path(), small()).unwrap();
        assert_eq!(s.recovery().truncated_bytes, 7);
        assert_eq!(s.next_seq(), 4);
        assert_eq!(s.read(10).unwrap().len(), 3);
        assert_eq!(s.append(&[ev(4)]).unwrap(), 4..5);
    }

    #[test]
    fn corrupt_record_cuts_the_segment_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), small()).unwrap();
        s.append(&[ev(1), ev(2), ev(3)]).unwrap();
        let path = s.segments.back().unwrap().path.clone();
        drop(s);
        let mut bytes = fs::read(&path).unwrap();
        let len = bytes.len();
        bytes[len - 2] ^= 0xff; // damage the last record's payload
        fs::write(&path, &bytes).unwrap();
        let mut s = Spool::open(dir.path(), small()).unwrap();
        assert_eq!(s.recovery().damaged_segments, 1);
        let got = s.read(10).unwrap();
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn quota_drops_oldest_and_records_a_gap_event() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig {
            segment_bytes: 2048,
            max_bytes: 8192,
        };
        let mut s = Spool::open(dir.path(), cfg).unwrap();
        for i in 0..100 {
            s.append(&[ev(i), ev(i)]).unwrap();
        }
        assert!(s.disk_bytes() <= 8192);
        assert!(s.dropped() > 0);
        let mut all = Vec::new();
        loop {
            let b = s.read(50).unwrap();
            if b.is_empty() {
                break;
            }
            all.extend(b);
        }
        let gaps: Vec<_> = all
            .iter()
            .filter(|e| e.event.get_str("event.dataset") == Some("gap"))
            .collect();
        assert!(!gaps.is_empty());
        // The newest gap event covers every loss since the last acknowledged gap.
        let last_gap = gaps.last().unwrap();
        let count = last_gap
            .event
            .get("canh.gap.count")
            .and_then(|v| v.as_u64())
            .unwrap();
        assert_eq!(count, s.dropped());
        let to = last_gap
            .event
            .get("canh.gap.to_seq")
            .and_then(|v| v.as_u64())
            .unwrap();
        assert!(all.iter().all(|e| e.seq > to));
        // Nothing silently vanished: every seq is either present or inside a recorded gap.
        let first_present = all[0].seq;
        let first_gap_from = last_gap
            .event
            .get("canh.gap.from_seq")
            .and_then(|v| v.as_u64())
            .unwrap();
        assert_eq!(first_gap_from, 1);
        assert!(first_present > 1);
        for w in all.windows(2) {
            assert!(w[1].seq > w[0].seq);
        }
    }

    #[test]
    fn acked_events_are_not_counted_as_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig {
            segment_bytes: 2048,
            max_bytes: 8192,
        };
        let mut s = Spool::open(dir.path(), cfg).unwrap();
        for i in 0..100 {
            let r = s.append(&[ev(i)]).unwrap();
            s.ack(r.end - 1).unwrap();
        }
        assert_eq!(s.dropped(), 0);
    }
}
