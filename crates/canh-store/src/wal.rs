//! Write-ahead log with group commit.
//!
//! Events are acknowledged only once they are on disk: [`Wal::append`] resolves after the
//! `fdatasync` that covers its batch. One writer thread drains every batch waiting in its queue,
//! writes them all and syncs once, so many concurrent appenders share one sync (group commit).
//!
//! On disk: `wal/<first-seq>.wal` segments of records, and `wal/checkpoint`, the highest
//! sequence number the store has made durable elsewhere. A record is
//!
//! ```text
//! len: u32 LE | crc32(seq..payload): u32 LE | first_seq: u64 LE | count: u32 LE | payload
//! ```
//!
//! where `payload` holds `count` events as JSON lines; event `i` has sequence `first_seq + i`.
//! Opening the log checks every record; a torn or corrupt tail is cut off (it was never
//! acknowledged), and every event after the checkpoint is handed back for replay.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use canh_core::Event;
use tokio::sync::oneshot;
use tracing::{debug, error, warn};

use crate::StoreError;

const HEADER: usize = 4 + 4 + 8 + 4;
/// Largest record accepted when reading (a guard against a corrupt length).
const MAX_RECORD: usize = 256 * 1024 * 1024;
const CHECKPOINT: &str = "checkpoint";

/// WAL tuning.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Start a new segment once the current one is larger than this.
    pub segment_bytes: u64,
    /// Sync to disk before acknowledging (turn off only for tests and benchmarks).
    pub fsync: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 * 1024 * 1024,
            fsync: true,
        }
    }
}

/// What an append was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendAck {
    /// Sequence number of the batch's first event (0 for an empty batch).
    pub first_seq: u64,
    /// Number of events written.
    pub count: u32,
}

/// Called on the writer thread, in sequence order, once a batch is durable and before the
/// appender is told; the store uses it to make the events visible to search.
pub type DurableSink = Arc<dyn Fn(u64, Frozen) + Send + Sync>;

/// A batch of events in the log's own encoding (JSON lines), with each event's time.
///
/// This is what the store keeps in memory between the acknowledgement and the flush: a parsed
/// event's field map takes several times the bytes of its JSON line, so a backlog of
/// acknowledged events costs little, and each event is decoded again only when it is flushed
/// or searched.
#[derive(Debug, Default)]
pub struct Frozen {
    payload: Vec<u8>,
    /// End of each event's line in `payload` (its newline excluded).
    ends: Vec<u32>,
    /// `@timestamp` of each event, in microseconds.
    times: Vec<i64>,
}

impl Frozen {
    /// Encodes `events` as JSON lines.
    pub fn encode(events: &[Event]) -> Self {
        let mut out = Frozen {
            payload: Vec::with_capacity(events.len() * 512),
            ends: Vec::with_capacity(events.len()),
            times: Vec::with_capacity(events.len()),
        };
        for ev in events {
            let start = out.payload.len();
            // Serialising a map of JSON values into a Vec cannot fail; should it ever, the
            // event is written with its time alone rather than shifting the numbering.
            if serde_json::to_writer(&mut out.payload, ev).is_err() {
                out.payload.truncate(start);
                let bare = Event::new(ev.timestamp);
                let _ = serde_json::to_writer(&mut out.payload, &bare);
            }
            out.ends
                .push(u32::try_from(out.payload.len()).unwrap_or(u32::MAX));
            out.times.push(ev.timestamp.timestamp_micros());
            out.payload.push(b'\n');
        }
        // The batch waits in memory until it is flushed: without spare room.
        if out.payload.capacity() > out.payload.len() + out.payload.len() / 8 {
            out.payload.shrink_to_fit();
        }
        out
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The JSON lines, each ended by a newline, as written to the log.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// `@timestamp` of event `i` in microseconds.
    pub fn time_micros(&self, i: usize) -> i64 {
        self.times.get(i).copied().unwrap_or_default()
    }

    /// The JSON line of event `i` (without its newline).
    pub fn line(&self, i: usize) -> &[u8] {
        let start = match i.checked_sub(1) {
            Some(p) => self.ends.get(p).map_or(0, |e| *e as usize + 1),
            None => 0,
        };
        let end = self.ends.get(i).map_or(start, |e| *e as usize);
        self.payload.get(start..end).unwrap_or_default()
    }

    /// Decodes event `i`.
    pub fn decode(&self, i: usize) -> Result<Event, StoreError> {
        Event::from_json_line(self.line(i))
            .map_err(|e| StoreError::Corrupt(format!("event in memory: {e}")))
    }
}

/// Events found after the checkpoint when the log was opened.
#[derive(Debug, Default)]
pub struct Replay {
    /// `(sequence, event)` in sequence order.
    pub events: Vec<(u64, Event)>,
    /// Bytes cut off a torn or corrupt tail.
    pub truncated_bytes: u64,
}

struct Request {
    batch: Frozen,
    count: u32,
    reply: oneshot::Sender<Result<AppendAck, StoreError>>,
}

struct Segment {
    first_seq: u64,
    path: PathBuf,
}

struct Shared {
    dir: PathBuf,
    segments: Mutex<Vec<Segment>>,
    checkpoint: Mutex<u64>,
}

/// The write-ahead log. Cheap to share behind an `Arc`; dropping it stops the writer thread
/// after the queued batches are written.
pub struct Wal {
    tx: Option<mpsc::Sender<Request>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

fn io_err(what: &str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        what: format!("{what} {}", path.display()),
        source,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Encodes events as JSON lines.
pub fn encode_events(events: &[Event]) -> Vec<u8> {
    Frozen::encode(events).payload
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("failed to sync directory", dir, e))
}

impl Wal {
    /// Opens (or creates) the log in `dir`, repairs a torn tail and returns the events after
    /// the checkpoint. `sink` receives every batch once it is durable.
    pub fn open(
        dir: &Path,
        opts: WalOptions,
        sink: Option<DurableSink>,
    ) -> Result<(Wal, Replay), StoreError> {
        fs::create_dir_all(dir).map_err(|e| io_err("failed to create WAL directory", dir, e))?;
        let checkpoint = read_checkpoint(dir)?;
        let mut segments = list_segments(dir)?;
        let mut replay = Replay::default();
        let mut next_seq = checkpoint + 1;
        let last_index = segments.len().checked_sub(1);
        for (i, seg) in segments.iter().enumerate() {
            let scan = scan_segment(&seg.path, checkpoint, &mut replay.events)?;
            next_seq = next_seq.max(scan.next_seq).max(seg.first_seq);
            if scan.valid_len < scan.file_len {
                let cut = scan.file_len - scan.valid_len;
                if Some(i) == last_index {
                    warn!(path = %seg.path.display(), bytes = cut, "cutting torn WAL tail");
                } else {
                    error!(path = %seg.path.display(), bytes = cut, "corrupt WAL segment; cutting it");
                }
                let f = OpenOptions::new()
                    .write(true)
                    .open(&seg.path)
                    .map_err(|e| io_err("failed to open WAL segment", &seg.path, e))?;
                f.set_len(scan.valid_len)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| io_err("failed to truncate WAL segment", &seg.path, e))?;
                replay.truncated_bytes += cut;
            }
        }
        // Always write into a fresh segment: old ones stay read-only until checkpointed.
        let path = dir.join(segment_name(next_seq));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err("failed to create WAL segment", &path, e))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if !segments.iter().any(|s| s.path == path) {
            segments.push(Segment {
                first_seq: next_seq,
                path,
            });
        }
        sync_dir(dir)?;
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            segments: Mutex::new(segments),
            checkpoint: Mutex::new(checkpoint),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            shared: shared.clone(),
            opts,
            file,
            size,
            next_seq,
            sink,
            failed: None,
        };
        let thread = std::thread::Builder::new()
            .name("canh-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| io_err("failed to start WAL writer for", dir, e))?;
        debug!(dir = %dir.display(), checkpoint, next_seq, replay = replay.events.len(), "wal opened");
        Ok((
            Wal {
                tx: Some(tx),
                shared,
                thread: Some(thread),
            },
            replay,
        ))
    }

    /// Appends a batch; resolves once it is durable. Concurrent appends share one sync.
    pub async fn append(&self, events: Vec<Event>) -> Result<AppendAck, StoreError> {
        self.append_ref(&events).await
    }

    /// [`Wal::append`] without taking the events: only their encoding is kept.
    pub async fn append_ref(&self, events: &[Event]) -> Result<AppendAck, StoreError> {
        let rx = self.submit(events)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Blocking form of [`Wal::append`], for threads outside a runtime.
    pub fn append_blocking(&self, events: Vec<Event>) -> Result<AppendAck, StoreError> {
        let rx = self.submit(&events)?;
        rx.blocking_recv().map_err(|_| StoreError::Closed)?
    }

    fn submit(
        &self,
        events: &[Event],
    ) -> Result<oneshot::Receiver<Result<AppendAck, StoreError>>, StoreError> {
        let count = u32::try_from(events.len())
            .map_err(|_| StoreError::Invalid("batch larger than 4 billion events".into()))?;
        let batch = Frozen::encode(events);
        if batch.payload.len() > MAX_RECORD {
            return Err(StoreError::Invalid(format!(
                "batch of {} bytes is larger than the {MAX_RECORD}-byte record limit",
                batch.payload.len()
            )));
        }
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        tx.send(Request {
            batch,
            count,
            reply,
        })
        .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// The last checkpoint recorded.
    pub fn checkpoint(&self) -> u64 {
        *lock(&self.shared.checkpoint)
    }

    /// Records that every event up to `seq` is durable elsewhere, and deletes the segments
    /// that hold nothing newer.
    pub fn set_checkpoint(&self, seq: u64) -> Result<(), StoreError> {
        let dir = &self.shared.dir;
        {
            let mut cp = lock(&self.shared.checkpoint);
            if seq <= *cp {
                return Ok(());
            }
            let tmp = dir.join("checkpoint.tmp");
            let mut body = seq.to_le_bytes().to_vec();
            body.extend_from_slice(&crc32fast::hash(&seq.to_le_bytes()).to_le_bytes());
            let mut f = File::create(&tmp).map_err(|e| io_err("failed to write", &tmp, e))?;
            f.write_all(&body)
                .and_then(|()| f.sync_all())
                .map_err(|e| io_err("failed to write", &tmp, e))?;
            let path = dir.join(CHECKPOINT);
            fs::rename(&tmp, &path).map_err(|e| io_err("failed to replace", &path, e))?;
            sync_dir(dir)?;
            *cp = seq;
        }
        // A segment can go when the next one starts at or before seq + 1; the last (active)
        // segment always stays.
        let mut segs = lock(&self.shared.segments);
        let mut keep_from = 0;
        for i in 0..segs.len().saturating_sub(1) {
            if segs[i + 1].first_seq <= seq + 1 {
                keep_from = i + 1;
            }
        }
        for seg in segs.drain(..keep_from) {
            if let Err(e) = fs::remove_file(&seg.path) {
                warn!(path = %seg.path.display(), error = %e, "failed to delete WAL segment");
            }
        }
        Ok(())
    }

    /// Number of segment files on disk.
    pub fn segment_count(&self) -> usize {
        lock(&self.shared.segments).len()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    opts: WalOptions,
    file: File,
    size: u64,
    next_seq: u64,
    sink: Option<DurableSink>,
    failed: Option<String>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        let mut buf = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            let mut bytes = group[0].batch.payload.len();
            while bytes < 64 * 1024 * 1024 {
                match rx.try_recv() {
                    Ok(r) => {
                        bytes += r.batch.payload.len();
                        group.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.write_group(group, &mut buf);
        }
    }

    fn write_group(&mut self, group: Vec<Request>, buf: &mut Vec<u8>) {
        if let Some(why) = &self.failed {
            for r in group {
                let _ = r.reply.send(Err(StoreError::Unavailable(why.clone())));
            }
            return;
        }
        if self.size >= self.opts.segment_bytes
            && let Err(e) = self.rotate()
        {
            self.fail(group, e);
            return;
        }
        buf.clear();
        let mut acks = Vec::with_capacity(group.len());
        let mut seq = self.next_seq;
        for r in &group {
            if r.count == 0 {
                acks.push(AppendAck {
                    first_seq: 0,
                    count: 0,
                });
                continue;
            }
            let payload = r.batch.payload();
            let len = (HEADER - 4 + payload.len()) as u32;
            let mut h = crc32fast::Hasher::new();
            h.update(&seq.to_le_bytes());
            h.update(&r.count.to_le_bytes());
            h.update(payload);
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&h.finalize().to_le_bytes());
            buf.extend_from_slice(&seq.to_le_bytes());
            buf.extend_from_slice(&r.count.to_le_bytes());
            buf.extend_from_slice(payload);
            acks.push(AppendAck {
                first_seq: seq,
                count: r.count,
            });
            seq += u64::from(r.count);
        }
        let written = self.file.write_all(buf).and_then(|()| {
            if self.opts.fsync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // After a failed write or sync the page cache state is unknown: refuse further
            // writes rather than acknowledge data that may not be on disk.
            self.fail(
                group,
                StoreError::Io {
                    what: "failed to write WAL".into(),
                    source: e,
                },
            );
            return;
        }
        self.size += buf.len() as u64;
        self.next_seq = seq;
        for (r, ack) in group.into_iter().zip(acks) {
            if ack.count > 0
                && let Some(sink) = &self.sink
            {
                sink(ack.first_seq, r.batch);
            }
            let _ = r.reply.send(Ok(ack));
        }
    }

    fn fail(&mut self, group: Vec<Request>, e: StoreError) {
        error!(error = %e, "wal write failed; refusing further appends");
        let why = e.to_string();
        self.failed = Some(why.clone());
        for r in group {
            let _ = r.reply.send(Err(StoreError::Unavailable(why.clone())));
        }
    }

    fn rotate(&mut self) -> Result<(), StoreError> {
        let path = self.shared.dir.join(segment_name(self.next_seq));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err("failed to create WAL segment", &path, e))?;
        sync_dir(&self.shared.dir)?;
        self.file = file;
        self.size = 0;
        lock(&self.shared.segments).push(Segment {
            first_seq: self.next_seq,
            path,
        });
        Ok(())
    }
}

fn read_checkpoint(dir: &Path) -> Result<u64, StoreError> {
    let path = dir.join(CHECKPOINT);
    let body = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err("failed to read", &path, e)),
    };
    let (Some(seq), Some(crc)) = (body.get(0..8), body.get(8..12)) else {
        return Err(StoreError::Corrupt(format!(
            "{} is too short",
            path.display()
        )));
    };
    let crc_ok = crc32fast::hash(seq).to_le_bytes() == crc;
    let mut s = [0u8; 8];
    s.copy_from_slice(seq);
    if !crc_ok {
        return Err(StoreError::Corrupt(format!(
            "{} has a bad checksum",
            path.display()
        )));
    }
    Ok(u64::from_le_bytes(s))
}

fn list_segments(dir: &Path) -> Result<Vec<Segment>, StoreError> {
    let mut out = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| io_err("failed to list", dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| io_err("failed to list", dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else {
            continue;
        };
        let Ok(first_seq) = stem.parse::<u64>() else {
            continue;
        };
        out.push(Segment {
            first_seq,
            path: entry.path(),
        });
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

struct Scan {
    file_len: u64,
    valid_len: u64,
    next_seq: u64,
}

/// Reads every valid record of a segment, keeping events after `checkpoint`.
fn scan_segment(
    path: &Path,
    checkpoint: u64,
    out: &mut Vec<(u64, Event)>,
) -> Result<Scan, StoreError> {
    let mut f = File::open(path).map_err(|e| io_err("failed to open WAL segment", path, e))?;
    let file_len = f
        .seek(SeekFrom::End(0))
        .map_err(|e| io_err("failed to read", path, e))?;
    f.seek(SeekFrom::Start(0))
        .map_err(|e| io_err("failed to read", path, e))?;
    let mut data = Vec::with_capacity(file_len as usize);
    f.read_to_end(&mut data)
        .map_err(|e| io_err("failed to read", path, e))?;
    let mut pos = 0usize;
    let mut next_seq = 0u64;
    while let Some(head) = data.get(pos..pos + HEADER) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if !(HEADER - 4..=MAX_RECORD).contains(&len) {
            break;
        }
        let Some(body) = data.get(pos + 8..pos + 4 + len) else {
            break;
        };
        if crc32fast::hash(body) != crc {
            break;
        }
        let mut s = [0u8; 8];
        s.copy_from_slice(&body[0..8]);
        let seq = u64::from_le_bytes(s);
        let count = u64::from(u32::from_le_bytes([body[8], body[9], body[10], body[11]]));
        let payload = &body[12..];
        let mut decoded = 0u64;
        for line in payload.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let this_seq = seq + decoded;
            decoded += 1;
            if this_seq <= checkpoint {
                continue;
            }
            match Event::from_json_line(line) {
                Ok(ev) => out.push((this_seq, ev)),
                Err(e) => {
                    // The checksum matched, so this was written like this: keep going.
                    error!(path = %path.display(), seq = this_seq, error = %e, "undecodable WAL event")
                }
            }
        }
        if decoded != count {
            warn!(path = %path.display(), seq, count, decoded, "WAL record count mismatch");
        }
        next_seq = seq + count;
        pos += 4 + len;
    }
    Ok(Scan {
        file_len,
        valid_len: pos as u64,
        next_seq,
    })
}

#[cfg(test)]
mod tests;
