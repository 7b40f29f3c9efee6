//! The embedded event store: WAL → (Parquet + tantivy), with the acknowledged-but-unflushed
//! tail searched from memory.
//!
//! Consistency: an event is in exactly one of {memory tail, index/lake} for any reader. A flush
//! writes Parquet, commits the index (invisible to readers until reload), records the WAL
//! checkpoint, and then, under the visibility lock, reloads the index readers and trims the
//! tail. Readers take the same lock (shared) while they snapshot the tail and the index.
//! Days without an index (outside the hot window) are scanned from Parquet, skipping ids that
//! are still in the tail.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration as StdDuration;

use canh_core::Event;
use canh_core::query::{self, Expr};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::deadletter::DeadLetterStore;
use crate::index::{DocKey, HotIndex, LOAD_CHUNK, Snapshot};
use crate::lake::Lake;
pub use crate::lake::SqlRows;
use crate::wal::{AppendAck, DurableSink, Frozen, Wal, WalOptions};
use crate::{StoreConfig, StoreError};

/// A boxed future, so that [`EventStore`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Most buckets a histogram may have.
pub const MAX_BUCKETS: i64 = 10_000;
/// Most rows an SQL answer carries.
pub const MAX_SQL_ROWS: usize = 100_000;

/// A position in a result list: results are ordered by `(@timestamp, id)`, newest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    /// `@timestamp` in microseconds of the last hit returned.
    pub ts: i64,
    /// Its id.
    pub id: u64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.ts, self.id)
    }
}

impl FromStr for Cursor {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || StoreError::Invalid(format!("bad cursor {s:?}"));
        let (a, b) = s.rsplit_once('_').ok_or_else(bad)?;
        Ok(Cursor {
            ts: a.parse().map_err(|_| bad())?,
            id: b.parse().map_err(|_| bad())?,
        })
    }
}

/// A search.
#[derive(Clone, Debug)]
pub struct SearchRequest {
    /// The predicate.
    pub query: Expr,
    /// Start of the time range (inclusive).
    pub from: DateTime<Utc>,
    /// End of the time range (exclusive).
    pub to: DateTime<Utc>,
    /// Most hits returned.
    pub limit: usize,
    /// Continue after this position (from a previous [`Page::next_cursor`]).
    pub cursor: Option<Cursor>,
}

/// One stored event and its id (the WAL sequence number, unique in the store).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    /// Unique id.
    pub id: u64,
    /// The event.
    pub event: Event,
}

/// One page of search results.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Page {
    /// Hits, newest first.
    pub hits: Vec<Hit>,
    /// Where the next page starts, when there is one.
    pub next_cursor: Option<Cursor>,
    /// Number of matching events in the whole time range.
    pub total: u64,
}

/// One histogram bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// Start of the bucket.
    pub start: DateTime<Utc>,
    /// Matching events in `[start, start + interval)`.
    pub count: u64,
}

/// What a flush did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlushStats {
    /// Events moved out of memory.
    pub events: usize,
    /// Parquet files written.
    pub files: usize,
    /// The WAL checkpoint afterwards.
    pub checkpoint: u64,
}

/// What maintenance did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MaintenanceReport {
    /// Parquet files deleted by retention.
    pub files_expired: usize,
    /// Day indexes dropped from the hot window.
    pub index_days_dropped: usize,
    /// Partitions whose small files were merged.
    pub partitions_compacted: usize,
    /// Dead-letter day files deleted.
    pub dead_letter_days_removed: usize,
}

/// Event storage as the server and CLI see it.
pub trait EventStore: Send + Sync {
    /// Appends events; resolves once they are durable (and already searchable).
    fn append(&self, events: Vec<Event>) -> BoxFuture<'_, Result<AppendAck, StoreError>>;
    /// Moves acknowledged events into long-term storage now.
    fn flush(&self) -> BoxFuture<'_, Result<FlushStats, StoreError>>;
    /// Searches events, newest first, with stable paging.
    fn search(&self, req: SearchRequest) -> BoxFuture<'_, Result<Page, StoreError>>;
    /// Counts matching events by the values of `field`, most frequent first.
    fn count_by<'a>(
        &'a self,
        field: &'a str,
        query: &'a Expr,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, u64)>, StoreError>>;
    /// Counts matching events per time bucket.
    fn histogram<'a>(
        &'a self,
        query: &'a Expr,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        interval: Duration,
    ) -> BoxFuture<'a, Result<Vec<Bucket>, StoreError>>;
    /// Runs SQL over the table `events`.
    fn sql<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<SqlRows, StoreError>>;
}

/// An acknowledged event waiting for the flush: the batch it was written to the log in, and its
/// place there. It is decoded again when it is flushed or searched.
#[derive(Clone)]
struct Pending {
    seq: u64,
    batch: Arc<Frozen>,
    i: u32,
}

impl Pending {
    /// The entries of `batch`, whose events carry the sequence numbers `seqs` in order.
    fn of(batch: Frozen, seqs: impl IntoIterator<Item = u64>) -> impl Iterator<Item = Pending> {
        let batch = Arc::new(batch);
        seqs.into_iter().enumerate().map(move |(i, seq)| Pending {
            seq,
            batch: batch.clone(),
            i: u32::try_from(i).unwrap_or(u32::MAX),
        })
    }

    fn time_micros(&self) -> i64 {
        self.batch.time_micros(self.i as usize)
    }

    /// The event, or `None` (logged) for a line that does not decode, which is skipped as the
    /// log's replay skips it.
    fn decode(&self) -> Option<Event> {
        match self.batch.decode(self.i as usize) {
            Ok(ev) => Some(ev),
            Err(e) => {
                warn!(seq = self.seq, error = %e, "undecodable event in memory; skipped");
                None
            }
        }
    }
}

/// The acknowledged events not yet flushed, in sequence order.
type Tail = Vec<Pending>;
/// Decoded events with their sequence numbers.
type Decoded = Vec<(u64, Arc<Event>)>;

/// Matching tail events, the tail's id range, the index snapshot and the days to scan cold.
type View = (Decoded, Option<(u64, u64)>, Snapshot, Vec<NaiveDate>);

struct Inner {
    cfg: StoreConfig,
    wal: Wal,
    tail: Arc<Mutex<Tail>>,
    visibility: RwLock<()>,
    /// Held by the blocking flush or maintenance itself (owned guards moved into the blocking
    /// task), so an aborted caller cannot let a second flush start beside a running one.
    flush_lock: Arc<tokio::sync::Mutex<()>>,
    files_lock: Arc<tokio::sync::RwLock<()>>,
    lake: Lake,
    index: HotIndex,
    dead: DeadLetterStore,
    flush_wanted: Arc<Notify>,
    /// Woken whenever a flush step has trimmed the tail.
    drained: Notify,
    /// Appends that had to wait for the flush (backpressure), and the time they waited.
    waits: AtomicU64,
    waited_us: AtomicU64,
}

/// The embedded store. See the crate documentation for the layout on disk.
pub struct Store {
    inner: Arc<Inner>,
    background: Option<tokio::task::JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn join_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Internal(format!("background task failed: {e}"))
}

fn last_day(to: DateTime<Utc>) -> NaiveDate {
    (to - Duration::microseconds(1)).date_naive()
}

/// Where a match lives.
enum Source {
    Tail(Arc<Event>),
    Index(usize, DocKey),
    Cold(Event),
}

impl Store {
    /// Opens (or creates) a store in `dir`, repairs what a crash left and replays the WAL.
    /// Starts the background flush task when called inside a tokio runtime.
    pub async fn open(dir: &Path, cfg: StoreConfig) -> Result<Store, StoreError> {
        cfg.validate()?;
        let dir: PathBuf = dir.to_owned();
        let cfg2 = cfg.clone();
        let inner = tokio::task::spawn_blocking(move || Inner::open(&dir, cfg2))
            .await
            .map_err(join_err)??;
        let inner = Arc::new(inner);
        let background =
            (cfg.flush_interval_ms > 0).then(|| tokio::spawn(background(inner.clone())));
        Ok(Store { inner, background })
    }

    /// Appends events; resolves once they are durable in the WAL. They are searchable at once.
    ///
    /// Backpressure: while `max_pending_events` acknowledged events wait in memory for the
    /// background flush, the append waits for a flush step first, so a source faster than the
    /// flush is slowed down instead of growing memory without bound. Without a background
    /// flush (`flush_interval_ms = 0`) the caller flushes and no limit applies.
    pub async fn append(&self, events: Vec<Event>) -> Result<AppendAck, StoreError> {
        self.append_ref(&events).await
    }

    /// [`Store::append`] without taking the events, for a caller that still needs them once
    /// they are durable: the store keeps only their log encoding.
    pub async fn append_ref(&self, events: &[Event]) -> Result<AppendAck, StoreError> {
        if self.background.is_some() {
            self.wait_for_room().await;
        }
        self.inner.wal.append_ref(events).await
    }

    async fn wait_for_room(&self) {
        let limit = self.inner.cfg.max_pending_events;
        if lock(&self.inner.tail).len() < limit {
            return;
        }
        let started = std::time::Instant::now();
        loop {
            let drained = self.inner.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if lock(&self.inner.tail).len() < limit {
                break;
            }
            self.inner.flush_wanted.notify_one();
            // The timeout only guards against a missed wake-up; a flush step wakes every waiter.
            let _ = tokio::time::timeout(StdDuration::from_millis(500), drained).await;
        }
        self.inner.waits.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.inner.waited_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Appends that waited for the flush because `max_pending_events` were in memory, and the
    /// total time they waited in microseconds.
    pub fn backpressure(&self) -> (u64, u64) {
        (
            self.inner.waits.load(Ordering::Relaxed),
            self.inner.waited_us.load(Ordering::Relaxed),
        )
    }

    /// Moves every acknowledged event into Parquet and the index, and advances the checkpoint.
    pub async fn flush(&self) -> Result<FlushStats, StoreError> {
        flush(&self.inner).await
    }

    /// Searches events in `[from, to)`, newest first.
    pub async fn search(&self, req: SearchRequest) -> Result<Page, StoreError> {
        check_range(req.from, req.to)?;
        let inner = self.inner.clone();
        let files = self.inner.files_lock.clone().read_owned().await;
        tokio::task::spawn_blocking(move || {
            let _files = files;
            inner.search(&req)
        })
        .await
        .map_err(join_err)?
    }

    /// Counts matching events in `[from, to)` by the values of `field`, most frequent first,
    /// at most `limit` values. An event with several values counts once for each.
    pub async fn count_by(
        &self,
        field: &str,
        query: &Expr,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        check_range(from, to)?;
        let inner = self.inner.clone();
        let (field, query) = (field.to_owned(), query.clone());
        let files = self.inner.files_lock.clone().read_owned().await;
        let counts = tokio::task::spawn_blocking(move || {
            let _files = files;
            inner.count_by(&field, &query, from, to)
        })
        .await
        .map_err(join_err)??;
        let mut v: Vec<(String, u64)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(limit);
        Ok(v)
    }

    /// Counts matching events per `interval` bucket; buckets are aligned to the Unix epoch and
    /// cover `[from, to)`, empty ones included.
    pub async fn histogram(
        &self,
        query: &Expr,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        interval: Duration,
    ) -> Result<Vec<Bucket>, StoreError> {
        check_range(from, to)?;
        let step = interval
            .num_microseconds()
            .filter(|s| *s > 0)
            .ok_or_else(|| StoreError::Invalid("histogram interval must be positive".into()))?;
        let first = from.timestamp_micros().div_euclid(step) * step;
        let n = (to.timestamp_micros() - first + step - 1) / step;
        if n > MAX_BUCKETS {
            return Err(StoreError::Invalid(format!(
                "histogram would have {n} buckets (max {MAX_BUCKETS})"
            )));
        }
        let inner = self.inner.clone();
        let query = query.clone();
        let files = self.inner.files_lock.clone().read_owned().await;
        let stamps = tokio::task::spawn_blocking(move || {
            let _files = files;
            inner.timestamps(&query, from, to)
        })
        .await
        .map_err(join_err)??;
        let mut counts = vec![0u64; usize::try_from(n).unwrap_or(0)];
        for ts in stamps {
            if let Some(c) = usize::try_from((ts - first) / step)
                .ok()
                .and_then(|i| counts.get_mut(i))
            {
                *c += 1;
            }
        }
        Ok(counts
            .into_iter()
            .enumerate()
            .filter_map(|(i, count)| {
                let start = DateTime::from_timestamp_micros(first + step * i as i64)?;
                Some(Bucket { start, count })
            })
            .collect())
    }

    /// Runs SQL (DataFusion dialect) over the flushed events as table `events`; columns are
    /// the ECS names (quote them: `"host.name"`) plus `dt` and `org`.
    pub async fn sql(&self, query: &str) -> Result<SqlRows, StoreError> {
        let _files = self.inner.files_lock.read().await;
        self.inner.lake.sql(query, MAX_SQL_ROWS).await
    }

    /// The dead-letter store.
    pub fn dead_letters(&self) -> &DeadLetterStore {
        &self.inner.dead
    }

    /// Retention (per agency), hot-window trimming, compaction and dead-letter retention.
    pub async fn run_maintenance(&self) -> Result<MaintenanceReport, StoreError> {
        maintenance(&self.inner).await
    }

    /// The WAL checkpoint: every event with a smaller or equal id is in Parquet and the index.
    pub fn checkpoint(&self) -> u64 {
        self.inner.wal.checkpoint()
    }

    /// Events acknowledged but not yet flushed.
    pub fn pending(&self) -> usize {
        lock(&self.inner.tail).len()
    }

    /// Flushes and stops the background task.
    pub async fn close(mut self) -> Result<(), StoreError> {
        if let Some(bg) = self.background.take() {
            bg.abort();
        }
        flush(&self.inner).await.map(|_| ())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(bg) = self.background.take() {
            bg.abort();
        }
    }
}

fn check_range(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), StoreError> {
    if from >= to {
        return Err(StoreError::Invalid(
            "time range is empty (from >= to)".into(),
        ));
    }
    Ok(())
}

async fn background(inner: Arc<Inner>) {
    let every = StdDuration::from_millis(inner.cfg.flush_interval_ms);
    let maint_every = inner.cfg.maintenance_interval_secs;
    let mut last_maint = std::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = inner.flush_wanted.notified() => {}
        }
        if let Err(e) = flush(&inner).await {
            warn!(error = %e, "background flush failed");
        }
        if maint_every > 0 && last_maint.elapsed().as_secs() >= maint_every {
            last_maint = std::time::Instant::now();
            match maintenance(&inner).await {
                Ok(r) => info!(?r, "maintenance done"),
                Err(e) => warn!(error = %e, "maintenance failed"),
            }
        }
    }
}

async fn flush(inner: &Arc<Inner>) -> Result<FlushStats, StoreError> {
    let flushing = inner.flush_lock.clone().lock_owned().await;
    let inner2 = inner.clone();
    tokio::task::spawn_blocking(move || {
        let _flushing = flushing;
        inner2.flush()
    })
    .await
    .map_err(join_err)?
}

async fn maintenance(inner: &Arc<Inner>) -> Result<MaintenanceReport, StoreError> {
    let flushing = inner.flush_lock.clone().lock_owned().await;
    let files = inner.files_lock.clone().write_owned().await;
    let inner2 = inner.clone();
    tokio::task::spawn_blocking(move || {
        let _held = (flushing, files);
        inner2.maintenance()
    })
    .await
    .map_err(join_err)?
}

impl Inner {
    fn open(dir: &Path, cfg: StoreConfig) -> Result<Inner, StoreError> {
        let tail: Arc<Mutex<Tail>> = Arc::new(Mutex::new(Vec::new()));
        let flush_wanted = Arc::new(Notify::new());
        let sink: DurableSink = {
            let tail = tail.clone();
            let wanted = flush_wanted.clone();
            let max = cfg.flush_max_events;
            Arc::new(move |first, batch: Frozen| {
                let seqs = first..first + batch.len() as u64;
                let mut t = lock(&tail);
                t.extend(Pending::of(batch, seqs));
                if t.len() >= max {
                    wanted.notify_one();
                }
            })
        };
        let opts = WalOptions {
            segment_bytes: cfg.wal_segment_bytes,
            fsync: cfg.wal_fsync,
        };
        let (wal, replay) = Wal::open(&dir.join("wal"), opts, Some(sink))?;
        let checkpoint = wal.checkpoint();
        let lake = Lake::open(
            &dir.join("events"),
            cfg.parquet_zstd_level,
            cfg.parquet_row_group_rows,
        )?
        .with_page_bytes(cfg.parquet_page_kb.saturating_mul(1024));
        let removed = lake.recover(checkpoint)?;
        let (index, rebuild) = HotIndex::open(&dir.join("index"), cfg.index_heap_mb * 1024 * 1024)?;
        index.recover(checkpoint)?;
        for day in rebuild {
            let mut events: Decoded = Vec::new();
            for f in lake.day_files(day)? {
                events.extend(
                    lake.read_file(&f.path)?
                        .into_iter()
                        .map(|(s, e)| (s, Arc::new(e))),
                );
            }
            events.sort_by_key(|(s, _)| *s);
            index.add(day, &events, checkpoint, false)?;
            info!(day = %day, events = events.len(), "day index rebuilt from Parquet");
        }
        index.reload()?;
        let dead = DeadLetterStore::open(&dir.join("deadletter"), cfg.wal_fsync)?;
        let replayed = replay.events.len();
        {
            // Nothing can append before `open` returns, so the replay goes first in order.
            let mut t = lock(&tail);
            let appended = std::mem::take(&mut *t);
            let (seqs, events): (Vec<u64>, Vec<Event>) = replay.events.into_iter().unzip();
            t.extend(Pending::of(Frozen::encode(&events), seqs));
            t.extend(appended);
        }
        info!(dir = %dir.display(), checkpoint, replayed, removed_files = removed, "event store opened");
        Ok(Inner {
            cfg,
            wal,
            tail,
            visibility: RwLock::new(()),
            flush_lock: Arc::new(tokio::sync::Mutex::new(())),
            files_lock: Arc::new(tokio::sync::RwLock::new(())),
            lake,
            index,
            dead,
            flush_wanted,
            drained: Notify::new(),
            waits: AtomicU64::new(0),
            waited_us: AtomicU64::new(0),
        })
    }

    fn hot_from(&self, today: NaiveDate) -> NaiveDate {
        today - Duration::days(i64::from(self.cfg.hot_days.max(1)) - 1)
    }

    /// Moves what was in the tail when it started, at most `flush_max_events` at a time; each
    /// step advances the checkpoint, trims the tail and wakes appends waiting for room.
    fn flush(&self) -> Result<FlushStats, StoreError> {
        let mut stats = FlushStats {
            checkpoint: self.wal.checkpoint(),
            ..FlushStats::default()
        };
        let Some(end) = lock(&self.tail).last().map(|p| p.seq) else {
            return Ok(stats);
        };
        let step = self.cfg.flush_max_events.max(1);
        loop {
            let pending: Tail = lock(&self.tail)
                .iter()
                .take_while(|p| p.seq <= end)
                .take(step)
                .cloned()
                .collect();
            let Some(hi) = pending.last().map(|p| p.seq) else {
                break;
            };
            let batch: Decoded = pending
                .iter()
                .filter_map(|p| p.decode().map(|e| (p.seq, Arc::new(e))))
                .collect();
            drop(pending);
            let checkpoint = self.wal.checkpoint();
            match self.write_out(&batch, hi) {
                Ok(files) => {
                    let vis = self.visibility.write().unwrap_or_else(|p| p.into_inner());
                    let reloaded = self.index.reload();
                    lock(&self.tail).retain(|p| p.seq > hi);
                    drop(vis);
                    self.drained.notify_waiters();
                    reloaded?;
                    stats.events += batch.len();
                    stats.files += files;
                    stats.checkpoint = hi;
                }
                Err(e) => {
                    // Roll back to the last checkpoint so that a retry writes nothing twice.
                    warn!(error = %e, "flush failed; rolling back");
                    self.lake.recover(checkpoint)?;
                    self.index.recover(checkpoint)?;
                    return Err(e);
                }
            }
            if hi >= end {
                break;
            }
        }
        Ok(stats)
    }

    fn write_out(&self, batch: &Decoded, hi: u64) -> Result<usize, StoreError> {
        // Parquet and the index are written side by side; the checkpoint moves only when both
        // are done.
        let (files, indexed) = std::thread::scope(|s| {
            let lake = s.spawn(|| self.lake.write(batch));
            let indexed = self.index_batch(batch, hi);
            let files = lake
                .join()
                .unwrap_or_else(|_| Err(StoreError::Internal("Parquet writer panicked".into())));
            (files, indexed)
        });
        let files = files?;
        indexed?;
        self.wal.set_checkpoint(hi)?;
        Ok(files.len())
    }

    fn index_batch(&self, batch: &Decoded, hi: u64) -> Result<(), StoreError> {
        let today = Utc::now().date_naive();
        let hot_from = self.hot_from(today);
        let indexed = self.index.days();
        let mut by_day: BTreeMap<NaiveDate, Decoded> = BTreeMap::new();
        for (s, e) in batch {
            by_day
                .entry(e.timestamp.date_naive())
                .or_default()
                .push((*s, e.clone()));
        }
        let recent = [today, today.pred_opt().unwrap_or(today)];
        for (day, evs) in &by_day {
            if *day >= hot_from || indexed.contains(day) {
                self.index.add(*day, evs, hi, recent.contains(day))?;
            }
        }
        self.index.close_writers_except(&recent);
        Ok(())
    }

    /// Takes a consistent view: the tail's matching events and an index snapshot.
    fn view(&self, expr: &Expr, from: DateTime<Utc>, to: DateTime<Utc>) -> View {
        let (tail, snap) = {
            let _vis = self.visibility.read().unwrap_or_else(|p| p.into_inner());
            let tail = lock(&self.tail).clone();
            (tail, self.index.snapshot(from.date_naive(), last_day(to)))
        };
        let range = tail.first().zip(tail.last()).map(|(a, b)| (a.seq, b.seq));
        let (lo, hi) = (from.timestamp_micros(), to.timestamp_micros());
        let matched = tail
            .iter()
            .filter(|p| (lo..hi).contains(&p.time_micros()))
            .filter_map(|p| p.decode().map(|e| (p.seq, e)))
            .filter(|(_, e)| e.timestamp >= from && e.timestamp < to && expr.matches(e))
            .map(|(s, e)| (s, Arc::new(e)))
            .collect();
        let indexed: BTreeSet<NaiveDate> = self.index.days().into_iter().collect();
        let mut cold = Vec::new();
        let mut d = from.date_naive();
        while d <= last_day(to) {
            if !indexed.contains(&d) {
                cold.push(d);
            }
            let Some(next) = d.succ_opt() else { break };
            d = next;
        }
        (matched, range, snap, cold)
    }

    /// Matching events of days without an index, read from Parquet.
    /// Loads indexed events from the lake, grouped by day, with each document's agency
    /// pointing at its file.
    fn load_indexed(
        &self,
        snap: &Snapshot,
        keys: &[(usize, DocKey)],
    ) -> Result<HashMap<u64, Event>, StoreError> {
        let orgs = snap.agencies(keys);
        let mut by_day: BTreeMap<NaiveDate, Vec<(u64, Option<&str>)>> = BTreeMap::new();
        for ((i, k), org) in keys.iter().zip(&orgs) {
            if let Some(day) = snap.day(*i) {
                by_day.entry(day).or_default().push((k.id, org.as_deref()));
            }
        }
        let mut out = HashMap::with_capacity(keys.len());
        for (day, wanted) in by_day {
            out.extend(self.lake.fetch(day, &wanted)?);
        }
        Ok(out)
    }

    fn cold_matches(
        &self,
        days: &[NaiveDate],
        tail_range: Option<(u64, u64)>,
        expr: &Expr,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(u64, Event)>, StoreError> {
        let (Some(first), Some(last)) = (days.first(), days.last()) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for f in self.lake.files_between(*first, *last)? {
            if !days.contains(&f.day) {
                continue;
            }
            let rows = match self.lake.read_file(&f.path) {
                Ok(r) => r,
                // Compaction or retention may have removed it since it was listed.
                Err(StoreError::Io { .. }) => continue,
                Err(e) => return Err(e),
            };
            for (id, ev) in rows {
                let in_tail = tail_range.is_some_and(|(a, b)| id >= a && id <= b);
                if !in_tail && ev.timestamp >= from && ev.timestamp < to && expr.matches(&ev) {
                    out.push((id, ev));
                }
            }
        }
        Ok(out)
    }

    fn all_matches(
        &self,
        expr: &Expr,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(Vec<(Cursor, Source)>, Snapshot), StoreError> {
        let (tail, tail_range, snap, cold) = self.view(expr, from, to);
        let mut all: Vec<(Cursor, Source)> = Vec::new();
        for (id, ev) in tail {
            all.push((
                Cursor {
                    ts: ev.timestamp.timestamp_micros(),
                    id,
                },
                Source::Tail(ev),
            ));
        }
        for (i, k) in snap.matching(expr, from, to, &mut |s, k| self.load_indexed(s, k))? {
            all.push((Cursor { ts: k.ts, id: k.id }, Source::Index(i, k)));
        }
        for (id, ev) in self.cold_matches(&cold, tail_range, expr, from, to)? {
            all.push((
                Cursor {
                    ts: ev.timestamp.timestamp_micros(),
                    id,
                },
                Source::Cold(ev),
            ));
        }
        all.sort_by_key(|a| std::cmp::Reverse(a.0));
        all.dedup_by(|a, b| a.0.id == b.0.id);
        Ok((all, snap))
    }

    fn search(&self, req: &SearchRequest) -> Result<Page, StoreError> {
        let (all, snap) = self.all_matches(&req.query, req.from, req.to)?;
        let total = all.len() as u64;
        let start = match req.cursor {
            None => 0,
            Some(c) => all.partition_point(|(k, _)| *k >= c),
        };
        let page: Vec<&(Cursor, Source)> = all.iter().skip(start).take(req.limit).collect();
        let keys: Vec<(usize, DocKey)> = page
            .iter()
            .filter_map(|(_, src)| match src {
                Source::Index(i, k) => Some((*i, *k)),
                _ => None,
            })
            .collect();
        let mut loaded = self.load_indexed(&snap, &keys)?;
        let mut hits = Vec::new();
        for (key, src) in &page {
            let event = match src {
                Source::Tail(e) => (**e).clone(),
                // Absent when retention removed its file after the snapshot was taken.
                Source::Index(_, k) => match loaded.remove(&k.id) {
                    Some(e) => e,
                    None => continue,
                },
                Source::Cold(e) => e.clone(),
            };
            hits.push(Hit { id: key.id, event });
        }
        let more = start + page.len() < all.len();
        let last = (start + page.len()).checked_sub(1);
        let next_cursor = if more && !hits.is_empty() {
            last.and_then(|i| all.get(i)).map(|(k, _)| *k)
        } else {
            None
        };
        Ok(Page {
            hits,
            next_cursor,
            total,
        })
    }

    fn timestamps(
        &self,
        expr: &Expr,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let (all, _) = self.all_matches(expr, from, to)?;
        Ok(all.into_iter().map(|(k, _)| k.ts).collect())
    }

    fn count_by(
        &self,
        field: &str,
        expr: &Expr,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        let (tail, tail_range, snap, cold) = self.view(expr, from, to);
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let add = |counts: &mut BTreeMap<String, u64>, ev: &Event| {
            for v in distinct_values(ev, field) {
                *counts.entry(v).or_insert(0) += 1;
            }
        };
        for (_, ev) in &tail {
            add(&mut counts, ev);
        }
        match snap.count_fast(field, expr, from, to)? {
            Some(fast) => {
                for (k, n) in fast {
                    *counts.entry(k).or_insert(0) += n;
                }
            }
            None => {
                let keys = snap.matching(expr, from, to, &mut |s, k| self.load_indexed(s, k))?;
                for chunk in keys.chunks(LOAD_CHUNK) {
                    let events = self.load_indexed(&snap, chunk)?;
                    for (_, k) in chunk {
                        if let Some(ev) = events.get(&k.id) {
                            add(&mut counts, ev);
                        }
                    }
                }
            }
        }
        for (_, ev) in self.cold_matches(&cold, tail_range, expr, from, to)? {
            add(&mut counts, &ev);
        }
        Ok(counts)
    }

    fn maintenance(&self) -> Result<MaintenanceReport, StoreError> {
        let today = Utc::now().date_naive();
        let files_expired = self
            .lake
            .apply_retention(today, |a| self.cfg.retention_for(a))?;
        let index_days_dropped = self.index.drop_before(self.hot_from(today))?;
        let partitions_compacted = self
            .lake
            .compact(self.cfg.compact_min_files, self.wal.checkpoint())?;
        let keep =
            today - Duration::days(i64::from(self.cfg.dead_letter_retention_days.max(1)) - 1);
        let dead_letter_days_removed = self.dead.delete_before(keep)?;
        Ok(MaintenanceReport {
            files_expired,
            index_days_dropped,
            partitions_compacted,
            dead_letter_days_removed,
        })
    }
}

/// The distinct keyword spellings of `field` in an event (`@timestamp` as RFC 3339).
fn distinct_values(ev: &Event, field: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if field == query::TIMESTAMP_FIELD {
        out.insert(ev.timestamp.to_rfc3339());
        return out;
    }
    fn walk(v: &serde_json::Value, out: &mut BTreeSet<String>, depth: usize) {
        match v {
            serde_json::Value::Array(items) if depth < 4 => {
                for i in items {
                    walk(i, out, depth + 1);
                }
            }
            other => {
                if let Some(t) = query::keyword_text(other) {
                    out.insert(t.into_owned());
                }
            }
        }
    }
    if let Some(v) = ev.get(field) {
        walk(v, &mut out, 0);
    }
    out
}

impl EventStore for Store {
    fn append(&self, events: Vec<Event>) -> BoxFuture<'_, Result<AppendAck, StoreError>> {
        Box::pin(Store::append(self, events))
    }

    fn flush(&self) -> BoxFuture<'_, Result<FlushStats, StoreError>> {
        Box::pin(Store::flush(self))
    }

    fn search(&self, req: SearchRequest) -> BoxFuture<'_, Result<Page, StoreError>> {
        Box::pin(Store::search(self, req))
    }

    fn count_by<'a>(
        &'a self,
        field: &'a str,
        query: &'a Expr,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, u64)>, StoreError>> {
        Box::pin(Store::count_by(self, field, query, from, to, limit))
    }

    fn histogram<'a>(
        &'a self,
        query: &'a Expr,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        interval: Duration,
    ) -> BoxFuture<'a, Result<Vec<Bucket>, StoreError>> {
        Box::pin(Store::histogram(self, query, from, to, interval))
    }

    fn sql<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<SqlRows, StoreError>> {
        Box::pin(Store::sql(self, query))
    }
}
