//! Heap bytes per parsed event, as events wait in memory for a flush: parses N syslog lines
//! (RFC 5424, the parse benchmark's four shapes with varying values) and N ECS NDJSON lines,
//! compacts each event and keeps them, and reports the heap they hold (a counting allocator
//! over the system allocator) and the parse rate.
//!
//! `cargo run -p canh-ingest --profile release-fast --example event_memory -- [N]`

// A counting global allocator is the one way to measure heap bytes exactly; it only passes
// calls on to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use canh_ingest::ParseCtx;
use canh_ingest::parsers::{
    LogParser, ecs_json::EcsJsonParser, syslog_rfc5424::SyslogRfc5424Parser,
};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout as asked.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with layout `l`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn syslog_line(i: usize) -> String {
    match i % 4 {
        0 => format!(
            "<38>1 2026-11-27T15:59:03.846932+00:00 web{:02} sshd {} - [timeQuality tzKnown=\"1\" isSynced=\"0\"] Accepted publickey for deploy{} from 192.0.2.{} port {} ssh2: ED25519 SHA256:3n7i0Fz8s0kG2ZfJk9Yl2m6y4Q1x0R8u9V7w5T3s1Ab",
            i % 50,
            1000 + i % 30000,
            i % 7,
            i % 250,
            40000 + i % 20000
        ),
        1 => format!(
            "<165>1 2026-11-27T15:59:03.855915+07:00 web{:02} canh-demo - AUDIT [canh@32473 agency=\"so-tt\" site=\"hanoi\"] configuration {} changed by operator",
            i % 50,
            i
        ),
        2 => format!(
            "<86>1 2026-11-27T15:59:04.001000Z db{:02} cron {} - - (root) CMD (run-parts /etc/cron.hourly)",
            i % 20,
            4000 + i % 1000
        ),
        _ => format!(
            "<38>1 2026-11-27T15:59:05.100000Z bastion sshd {} - - Failed password for invalid user oracle{} from 198.51.100.{} port {} ssh2",
            4000 + i % 1000,
            i % 13,
            i % 250,
            40000 + i % 20000
        ),
    }
}

fn ndjson_line(i: usize) -> String {
    format!(
        r#"{{"@timestamp":"2024-01-05T03:00:00.123Z","ecs":{{"version":"8.11.0"}},"event":{{"kind":"event","category":["authentication"],"type":["start"],"outcome":"failure","module":"system","dataset":"system.auth"}},"host":{{"name":"bastion{}","ip":["10.10.1.{}"]}},"user":{{"name":"root"}},"source":{{"ip":"198.51.100.{}","port":{}}},"message":"Failed password for root from 198.51.100.{} port {} ssh2","agent":{{"type":"filebeat","version":"8.11.3"}}}}"#,
        i % 40,
        i % 250,
        i % 250,
        40000 + i % 20000,
        i % 250,
        40000 + i % 20000
    )
}

fn measure(name: &str, lines: &[String], parser: &dyn LogParser, cx: &ParseCtx) {
    let before = LIVE.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut kept = Vec::with_capacity(lines.len());
    let mut fields = 0usize;
    for l in lines {
        if let Ok(mut ev) = parser.parse(l.as_bytes(), cx) {
            ev.compact();
            fields += ev.fields.len();
            kept.push(ev);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // The events as JSON lines (the WAL's form) and back.
    let t = Instant::now();
    let lines: Vec<String> = kept.iter().map(canh_core::Event::to_json_line).collect();
    let ser = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let back = lines
        .iter()
        .filter(|l| serde_json::from_str::<canh_core::Event>(l).is_ok())
        .count();
    let de = t.elapsed().as_secs_f64();
    drop(lines);
    let held = LIVE.load(Ordering::Relaxed)
        - before
        - (kept.capacity() * std::mem::size_of::<canh_core::Event>()) as isize;
    let n = kept.len().max(1);
    println!(
        "{name}: {} events, {:.1} fields each, {} heap bytes per event (+{} inline), parsed and kept at {:.0} events/s",
        kept.len(),
        fields as f64 / n as f64,
        held / n as isize,
        std::mem::size_of::<canh_core::Event>(),
        kept.len() as f64 / secs
    );
    println!(
        "  as JSON lines: serialised at {:.0} events/s, {back} read back at {:.0} events/s",
        kept.len() as f64 / ser,
        back as f64 / de
    );
    drop(kept);
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let cx = ParseCtx::default().with_source_id("bench");
    let syslog: Vec<String> = (0..n).map(syslog_line).collect();
    measure("syslog RFC 5424", &syslog, &SyslogRfc5424Parser, &cx);
    drop(syslog);
    let ndjson: Vec<String> = (0..n).map(ndjson_line).collect();
    measure("ECS NDJSON", &ndjson, &EcsJsonParser, &cx);
}
