//! The ingest pipeline: frames → parse → enrich → WAL (acknowledge) → live detection.
//!
//! Every source hands batches of [`Frame`]s to [`Pipeline::ingest`], which resolves once the
//! good events of the batch are in the write-ahead log (fsync'd). Bad frames never stop the
//! batch: each goes to the dead-letter store with its reason, raw bytes and source, is counted,
//! and is reported back per item so that HTTP APIs can answer per item (as `_bulk` does).

use crate::config::IngestConfig;
use crate::metrics::Metrics;
use canh_core::query::Cidr;
use canh_core::{Event, fields};
use canh_ingest::{LogParser, ParseCtx, ParseError};
use canh_store::{DeadLetter, Store, StoreError};
use chrono::{Datelike, Utc};
use std::net::SocketAddr;
use std::sync::Arc;

/// One record (or one payload holding several records) as received.
pub struct Frame {
    /// The listener that received it (`syslog_udp`, `http_bulk`, …).
    pub source: &'static str,
    /// The sender.
    pub peer: Option<SocketAddr>,
    /// The bytes, or why framing already refused them.
    pub bytes: Result<Vec<u8>, String>,
    /// The parser to use; `None` picks one by content.
    pub parser: Option<&'static dyn LogParser>,
    /// Whether the payload may hold several records (OTLP, HEC batches).
    pub many: bool,
    /// The agency the sender authenticated as (a mapped TLS client certificate). It wins over
    /// an `organization.id` the event itself carries and over sender ranges.
    pub agency: Option<Arc<str>>,
}

impl Frame {
    /// A frame whose parser is chosen by content.
    pub fn auto(source: &'static str, peer: Option<SocketAddr>, bytes: Vec<u8>) -> Self {
        Self {
            source,
            peer,
            bytes: Ok(bytes),
            parser: None,
            many: false,
            agency: None,
        }
    }
}

/// What happened to one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// This many events were stored.
    Stored(usize),
    /// Refused, with the reason (it is in the dead-letter store).
    Refused(String),
}

/// Why a whole batch could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The store could not make the batch durable; nothing of it is acknowledged.
    #[error("event store unavailable")]
    Store(#[from] StoreError),
}

/// A boxed future, for object-safe async traits.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Something that receives the events of each batch after they are durable (live detection).
/// The batch's acknowledgement waits for it, so a slow observer pushes back on the sources.
pub trait EventObserver: Send + Sync {
    /// Called with the stored events, in order.
    fn observe(&self, events: Vec<Event>) -> BoxFuture<'_, ()>;
}

/// The pipeline shared by every source.
pub struct Pipeline {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    keep_original: bool,
    ranges: Vec<(Cidr, String)>,
    default_agency: Option<String>,
    max_message_bytes: usize,
    observers: std::sync::RwLock<Vec<Arc<dyn EventObserver>>>,
}

impl Pipeline {
    /// A pipeline writing to `store`.
    pub fn new(
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        cfg: &IngestConfig,
        max_message_bytes: usize,
    ) -> Self {
        metrics.describe(
            "canh_ingest_events_total",
            "counter",
            "events stored, by source and agency",
        );
        metrics.describe(
            "canh_ingest_dead_letters_total",
            "counter",
            "input refused and kept in the dead-letter store, by source",
        );
        metrics.describe(
            "canh_ingest_batches_total",
            "counter",
            "batches written to the WAL",
        );
        metrics.describe(
            "canh_ingest_last_seen_seconds",
            "gauge",
            "unix time of the last event from each source",
        );
        metrics.describe(
            "canh_store_wal_pending_events",
            "gauge",
            "acknowledged events not yet in Parquet and the index (WAL lag)",
        );
        let ranges = cfg
            .agency_ranges
            .iter()
            .filter_map(|r| parse_range(&r.cidr).map(|c| (c, r.agency.clone())))
            .collect();
        Self {
            store,
            metrics,
            keep_original: cfg.keep_original,
            ranges,
            default_agency: cfg.default_agency.clone(),
            max_message_bytes,
            observers: std::sync::RwLock::new(Vec::new()),
        }
    }

    /// Adds an observer of stored events (live detection).
    pub fn add_observer(&self, obs: Arc<dyn EventObserver>) {
        if let Ok(mut o) = self.observers.write() {
            o.push(obs);
        }
    }

    /// The store behind the pipeline.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Parses, enriches and stores a batch. Resolves after the good events are in the WAL.
    pub async fn ingest(&self, frames: Vec<Frame>) -> Result<Vec<ItemOutcome>, PipelineError> {
        let now = Utc::now();
        let mut events = Vec::with_capacity(frames.len());
        let mut outcomes = Vec::with_capacity(frames.len());
        let mut letters = Vec::new();
        for frame in frames {
            let cx = self.context(now, frame.source, frame.peer);
            let bytes = match frame.bytes {
                Ok(b) if b.len() > self.max_message_bytes => {
                    let reason = format!(
                        "message of {} bytes exceeds the {}-byte limit",
                        b.len(),
                        self.max_message_bytes
                    );
                    letters.push(letter(frame.source, frame.peer, &reason, b));
                    outcomes.push(ItemOutcome::Refused(reason));
                    continue;
                }
                Ok(b) => b,
                Err(reason) => {
                    letters.push(letter(frame.source, frame.peer, &reason, Vec::new()));
                    outcomes.push(ItemOutcome::Refused(reason));
                    continue;
                }
            };
            let parsed: Vec<Result<Event, ParseError>> = match (frame.parser, frame.many) {
                (Some(p), true) => p.parse_many(&bytes, &cx),
                (Some(p), false) => vec![p.parse(&bytes, &cx)],
                (None, true) => canh_ingest::parse_auto_many(&bytes, &cx),
                (None, false) => vec![canh_ingest::parse_auto(&bytes, &cx)],
            };
            let mut stored = 0;
            let mut first_error = None;
            for r in parsed {
                match r {
                    Ok(mut ev) => {
                        if let Some(a) = &frame.agency {
                            ev.set(fields::ORGANIZATION_ID, &**a);
                        }
                        self.enrich(&mut ev, frame.peer);
                        events.push(ev);
                        stored += 1;
                    }
                    Err(e) => {
                        let reason = error_chain(&e);
                        first_error.get_or_insert_with(|| reason.clone());
                        letters.push(letter(frame.source, frame.peer, &reason, bytes.clone()));
                    }
                }
            }
            match first_error {
                Some(reason) if stored == 0 => outcomes.push(ItemOutcome::Refused(reason)),
                _ => outcomes.push(ItemOutcome::Stored(stored)),
            }
        }
        self.store_batch(events, letters).await?;
        Ok(outcomes)
    }

    /// Stores events parsed elsewhere (EVTX files, W3C logs read with their header state);
    /// each `Err` carries the reason and the raw bytes for the dead-letter store.
    pub async fn ingest_parsed(
        &self,
        source: &'static str,
        items: Vec<Result<Event, (String, Vec<u8>)>>,
    ) -> Result<(usize, usize), PipelineError> {
        let now = Utc::now();
        let cx = self.context(now, source, None);
        let mut events = Vec::with_capacity(items.len());
        let mut letters = Vec::new();
        for item in items {
            match item {
                Ok(mut ev) => {
                    if ev.get(fields::EVENT_INGESTED).is_none() {
                        ev.set(fields::EVENT_INGESTED, cx.received_text());
                    }
                    if ev.get(fields::CANH_SOURCE).is_none() {
                        ev.set(fields::CANH_SOURCE, source);
                    }
                    self.enrich(&mut ev, None);
                    events.push(ev);
                }
                Err((reason, raw)) => letters.push(letter(source, None, &reason, raw)),
            }
        }
        let counts = (events.len(), letters.len());
        self.store_batch(events, letters).await?;
        Ok(counts)
    }

    /// Keeps refused input aside (reason, raw bytes, source) and counts it.
    pub fn dead_letter(
        &self,
        source: &'static str,
        peer: Option<SocketAddr>,
        reason: &str,
        raw: Vec<u8>,
    ) {
        self.write_letters(vec![letter(source, peer, reason, raw)]);
    }

    async fn store_batch(
        &self,
        events: Vec<Event>,
        letters: Vec<DeadLetter>,
    ) -> Result<(), PipelineError> {
        self.write_letters(letters);
        if events.is_empty() {
            return Ok(());
        }
        let mut counts: Vec<((String, String), u64)> = Vec::new();
        for ev in &events {
            let key = (
                ev.get_str(fields::CANH_SOURCE)
                    .unwrap_or("unknown")
                    .to_owned(),
                ev.agency().unwrap_or("").to_owned(),
            );
            match counts.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => counts.push((key, 1)),
            }
        }
        let observers: Vec<Arc<dyn EventObserver>> =
            self.observers.read().map(|o| o.clone()).unwrap_or_default();
        self.store.append_ref(&events).await?;
        self.metrics.add("canh_ingest_batches_total", &[], 1);
        for ((source, agency), n) in counts {
            self.metrics.add(
                "canh_ingest_events_total",
                &[("source", &source), ("agency", &agency)],
                n,
            );
            self.metrics.seen(&source);
        }
        self.metrics.set(
            "canh_store_wal_pending_events",
            &[],
            self.store.pending() as f64,
        );
        if let Some((last, rest)) = observers.split_last() {
            for obs in rest {
                obs.observe(events.clone()).await;
            }
            last.observe(events).await;
        }
        Ok(())
    }

    fn write_letters(&self, letters: Vec<DeadLetter>) {
        if letters.is_empty() {
            return;
        }
        for l in &letters {
            let source = l.source.clone();
            self.metrics
                .add("canh_ingest_dead_letters_total", &[("source", &source)], 1);
        }
        if let Err(e) = self.store.dead_letters().append(&letters) {
            // The dead-letter store is the last resort; its failure must be loud.
            tracing::error!(error = %e, count = letters.len(), "failed to write dead letters");
        }
    }

    fn context(
        &self,
        now: chrono::DateTime<Utc>,
        source: &'static str,
        peer: Option<SocketAddr>,
    ) -> ParseCtx {
        let mut cx = ParseCtx::new(now)
            .with_source_id(source)
            .with_default_year(now.year())
            .with_keep_original(self.keep_original);
        if let Some(p) = peer {
            cx = cx.with_peer(p);
        }
        cx
    }

    /// Sets `organization.id` from the sender's address or the default, when the event has none.
    fn enrich(&self, ev: &mut Event, peer: Option<SocketAddr>) {
        if ev.agency().is_some() {
            return;
        }
        let by_range = peer.and_then(|p| {
            // A v4 sender seen on a dual-stack socket arrives as ::ffff:a.b.c.d.
            let ip = p.ip().to_canonical();
            self.ranges
                .iter()
                .find(|(c, _)| c.contains(ip))
                .map(|(_, a)| a.clone())
        });
        if let Some(agency) = by_range.or_else(|| self.default_agency.clone()) {
            ev.set(fields::ORGANIZATION_ID, agency);
        }
    }
}

fn letter(
    source: &'static str,
    peer: Option<SocketAddr>,
    reason: &str,
    raw: Vec<u8>,
) -> DeadLetter {
    DeadLetter {
        time: Utc::now(),
        source: source.to_owned(),
        reason: reason.to_owned(),
        raw,
        peer: peer.map(|p| p.to_string()),
    }
}

/// An error and its causes, joined, for the dead-letter reason.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A range from the configuration: CIDR, or a bare address meaning that one host.
pub fn parse_range(s: &str) -> Option<Cidr> {
    let s = s.trim();
    Cidr::parse(s).or_else(|| {
        let addr: std::net::IpAddr = s.parse().ok()?;
        Some(Cidr {
            addr,
            prefix: if addr.is_ipv4() { 32 } else { 128 },
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_accept_cidrs_and_bare_addresses() {
        let c = parse_range("10.20.0.0/16").unwrap();
        assert!(c.contains("10.20.3.4".parse().unwrap()));
        assert!(!c.contains("10.21.0.1".parse().unwrap()));
        let mapped: std::net::IpAddr = "::ffff:10.20.9.9".parse().unwrap();
        assert!(c.contains(mapped.to_canonical()));
        assert!(
            parse_range("192.0.2.1")
                .unwrap()
                .contains("192.0.2.1".parse().unwrap())
        );
        assert!(parse_range("10.0.0.0/33").is_none());
        assert!(parse_range("nonsense").is_none());
    }
}
