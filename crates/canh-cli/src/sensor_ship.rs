//! Shipping the sensor's EVE records to a Canh server on the endpoint agent's no-loss path.
//!
//! Every complete EVE line the sensor writes is normalised with the Suricata EVE parser (the
//! same mapping as `canh ingest --format eve`), appended to an on-disk spool with sequence
//! numbers (one fsync per batch) and streamed to the server over mutual TLS by the agent's
//! client. The server acknowledges what is in its write-ahead log and deduplicates by
//! (sensor, sequence), so a server that is down, a lost connection or a killed sensor loses
//! nothing: what is not acknowledged is sent again, first, by the next run or by
//! `canh sensor ship`. A full spool drops its oldest events and records a gap event, so loss
//! is visible, never silent.

use anyhow::Context as _;
use canh_agent::client::{self, AgentStatus, Client, ClientOptions, Identity};
use canh_agent::commands::CommandRunner;
use canh_agent::spool::{Spool, SpoolConfig, SpoolHandle};
use canh_core::Event;
use canh_ingest::parsers::{LogParser, ParseCtx, parser_by_id};
use canh_nsm::eve::LineSink;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Chunks of lines waiting to be spooled; the sensor waits when this many are queued.
const QUEUE_CHUNKS: usize = 256;
/// Most events appended (and fsync'd) at once.
const SPOOL_BATCH: usize = 2_000;
/// What a network sensor answers to a response command.
const REFUSAL: &str = "this node is a network sensor: it ships events and takes no response \
                       actions / nút này là cảm biến mạng: chỉ gửi sự kiện, không thực hiện lệnh \
                       phản ứng";

/// What the spooling thread did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SpoolCounts {
    /// Events appended to the spool.
    pub spooled: u64,
    /// Lines the EVE parser refused; they are shipped as raw messages with the reason.
    pub unparsed: u64,
    /// Events the spool could not take (a disk error); logged.
    pub lost: u64,
}

/// A running shipper: a spooling thread fed by [`Shipper::sink`] and the agent client.
pub(crate) struct Shipper {
    spool: SpoolHandle,
    lines: Option<SyncSender<Vec<u8>>>,
    spooler: Option<JoinHandle<SpoolCounts>>,
    client: Option<JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Shipper {
    /// Starts shipping with the identity enrolled in `state_dir` (`canh sensor enrol`).
    pub(crate) fn start(state_dir: &Path) -> anyhow::Result<Self> {
        Identity::load(state_dir).with_context(|| {
            format!(
                "{} holds no enrolled identity: run `canh sensor enrol --state-dir {}` first / \
                 chưa đăng ký với máy chủ",
                state_dir.display(),
                state_dir.display()
            )
        })?;
        let spool = Spool::open(&state_dir.join("spool"), SpoolConfig::default())
            .with_context(|| format!("opening the spool in {}", state_dir.display()))?;
        if spool.recovery().truncated_bytes > 0 {
            tracing::warn!(
                bytes = spool.recovery().truncated_bytes,
                "spool tail repaired after a crash"
            );
        }
        let spool = SpoolHandle::new(spool);
        let status = Arc::new(AgentStatus::default());
        status.sensor_started("nsm");
        let commands = Arc::new(CommandRunner::refusing(state_dir, REFUSAL));
        let client = Client::new(
            state_dir,
            spool.clone(),
            status,
            ClientOptions::default(),
            commands,
        );
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let client = std::thread::Builder::new()
            .name("canh-ship".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        rt.block_on(client.run(stop_rx));
                    }
                    Err(e) => tracing::error!(error = %e, "cannot start the shipping runtime"),
                }
            })
            .context("starting the shipping thread")?;
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE_CHUNKS);
        let host = client::hostname();
        let spooler = {
            let spool = spool.clone();
            std::thread::Builder::new()
                .name("canh-spool".into())
                .spawn(move || spool_lines(&rx, &spool, &host))
                .context("starting the spooling thread")?
        };
        Ok(Self {
            spool,
            lines: Some(tx),
            spooler: Some(spooler),
            client: Some(client),
            stop,
        })
    }

    /// Where the sensor hands its complete EVE lines; it waits while the spool catches up.
    pub(crate) fn sink(&self) -> LineSink {
        let tx = self.lines.clone();
        Arc::new(move |lines: &[u8]| {
            if let Some(tx) = &tx
                && tx.send(lines.to_vec()).is_err()
            {
                tracing::error!("spooling thread gone; EVE lines not shipped");
            }
        })
    }

    /// Waits until every line handed to the sinks is spooled; every sink must be dropped
    /// first.
    pub(crate) fn finish_input(&mut self) -> SpoolCounts {
        self.lines = None;
        self.spooler
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }

    /// Events in the spool that the server has not acknowledged yet.
    pub(crate) fn pending(&self) -> u64 {
        self.spool.with(|s| s.pending())
    }

    /// Waits until the server has acknowledged everything spooled, or until `limit` has
    /// passed; true when nothing is pending. Reports progress on standard error.
    pub(crate) fn wait_acked(&self, limit: Option<Duration>) -> bool {
        let started = Instant::now();
        let mut last_report = Instant::now();
        loop {
            let pending = self.pending();
            if pending == 0 {
                return true;
            }
            if limit.is_some_and(|l| started.elapsed() >= l) {
                return false;
            }
            if last_report.elapsed() >= Duration::from_secs(5) {
                eprintln!(
                    "{pending} events wait for the server's acknowledgement / {pending} sự kiện \
                     chờ máy chủ xác nhận"
                );
                last_report = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the client (the spool keeps what is not acknowledged).
    pub(crate) fn stop(mut self) {
        self.finish_input();
        let _ = self.stop.send(true);
        if let Some(h) = self.client.take() {
            let _ = h.join();
        }
    }
}

/// Turns chunks of EVE lines into events and appends them in batches.
fn spool_lines(rx: &Receiver<Vec<u8>>, spool: &SpoolHandle, host: &str) -> SpoolCounts {
    let mut counts = SpoolCounts::default();
    let Some(parser) = parser_by_id("suricata_eve") else {
        tracing::error!("the Suricata EVE parser is not registered");
        return counts;
    };
    let mut events = Vec::with_capacity(SPOOL_BATCH);
    while let Ok(chunk) = rx.recv() {
        to_events(parser, &chunk, host, &mut events, &mut counts);
        while events.len() < SPOOL_BATCH {
            match rx.try_recv() {
                Ok(chunk) => to_events(parser, &chunk, host, &mut events, &mut counts),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        match spool.append(&events) {
            Ok(seqs) => counts.spooled += seqs.end - seqs.start,
            Err(e) => {
                counts.lost += events.len() as u64;
                tracing::error!(error = %e, events = events.len(), "cannot spool sensor events");
            }
        }
        events.clear();
    }
    counts
}

fn to_events(
    parser: &dyn LogParser,
    chunk: &[u8],
    host: &str,
    out: &mut Vec<Event>,
    counts: &mut SpoolCounts,
) {
    let now = chrono::Utc::now();
    let cx = ParseCtx::new(now).with_source_id("canh-sensor");
    for line in chunk.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut ev = match parser.parse(line, &cx) {
            Ok(ev) => ev,
            Err(e) => {
                counts.unparsed += 1;
                let mut ev = Event::new(now);
                ev.set("message", String::from_utf8_lossy(line).into_owned());
                ev.set("event.kind", "pipeline_error");
                ev.set("error.message", e.to_string());
                ev
            }
        };
        if ev.get("observer.hostname").is_none() {
            ev.set("observer.hostname", host);
        }
        if ev.get("observer.type").is_none() {
            ev.set("observer.type", "sensor");
        }
        ev.compact();
        out.push(ev);
    }
}

/// `canh sensor enrol`: enrols this sensor with a server using a one-time token.
pub(crate) fn enrol(
    state_dir: &Path,
    server: &str,
    token: &str,
    ca_pin: &str,
) -> anyhow::Result<i32> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let id = rt
        .block_on(client::enrol(state_dir, server, token, ca_pin))
        .context("enrolment failed / đăng ký thất bại")?;
    println!(
        "enrolled as {} (certificate valid until {}) / đã đăng ký",
        id.agent_id, id.not_after
    );
    Ok(0)
}

/// `canh sensor ship`: sends what the spool holds and waits for the acknowledgement.
pub(crate) fn ship(state_dir: &Path, wait: Option<Duration>) -> anyhow::Result<i32> {
    let mut shipper = Shipper::start(state_dir)?;
    shipper.finish_input();
    let before = shipper.pending();
    let done = shipper.wait_acked(wait);
    let left = shipper.pending();
    shipper.stop();
    if done {
        println!(
            "{before} events shipped and acknowledged / đã gửi và được xác nhận {before} sự kiện"
        );
        Ok(0)
    } else {
        println!(
            "{left} of {before} events still wait for the server; they stay in the spool / còn \
             {left} sự kiện chờ máy chủ, vẫn giữ trong hàng đợi"
        );
        Ok(3)
    }
}
