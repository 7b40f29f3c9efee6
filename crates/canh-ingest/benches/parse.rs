//! Parse + normalise throughput: RFC 5424 syslog with an sshd body, and ECS NDJSON.
//! Run: `cargo bench -p canh-ingest --profile release-fast --bench parse`.

use std::hint::black_box;

// The `canh` binary runs on mimalloc, so the benchmark does too;
// `--features bench-system-alloc` measures with the system allocator for comparison.
#[cfg(not(feature = "bench-system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use canh_ingest::ParseCtx;
use canh_ingest::parsers::{
    LogParser, ecs_json::EcsJsonParser, syslog_rfc5424::SyslogRfc5424Parser,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SYSLOG: &[&[u8]] = &[
    b"<38>1 2026-11-27T15:59:03.846932+00:00 web01 sshd 21623 - [timeQuality tzKnown=\"1\" isSynced=\"0\"] Accepted publickey for deploy from 192.0.2.44 port 50514 ssh2: ED25519 SHA256:3n7i0Fz8s0kG2ZfJk9Yl2m6y4Q1x0R8u9V7w5T3s1Ab",
    b"<165>1 2026-11-27T15:59:03.855915+07:00 web01 canh-demo - AUDIT [canh@32473 agency=\"so-tt\" site=\"hanoi\"] configuration changed by operator",
    b"<86>1 2026-11-27T15:59:04.001000Z db01 cron 4411 - - (root) CMD (run-parts /etc/cron.hourly)",
    b"<38>1 2026-11-27T15:59:05.100000Z bastion sshd 4101 - - Failed password for invalid user oracle from 198.51.100.23 port 40022 ssh2",
];

const NDJSON: &[&[u8]] = &[
    br#"{"@timestamp":"2024-01-05T03:00:00.123Z","ecs":{"version":"8.11.0"},"event":{"kind":"event","category":["authentication"],"type":["start"],"outcome":"failure","module":"system","dataset":"system.auth"},"host":{"name":"bastion","ip":["10.10.1.5"]},"user":{"name":"root"},"source":{"ip":"198.51.100.23","port":40022},"message":"Failed password for root from 198.51.100.23 port 40022 ssh2","agent":{"type":"filebeat","version":"8.11.3"}}"#,
    br#"{"@timestamp":"2024-01-05T03:00:01Z","host.name":"web01","process.name":"nginx","process.pid":811,"message":"worker process exited on signal 9","log.level":"warn"}"#,
];

fn bench(c: &mut Criterion) {
    let cx = ParseCtx::default().with_source_id("bench");
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(SYSLOG.len() as u64));
    g.bench_function("syslog_rfc5424", |b| {
        b.iter(|| {
            for raw in SYSLOG {
                black_box(SyslogRfc5424Parser.parse(black_box(raw), &cx).ok());
            }
        });
    });
    g.throughput(Throughput::Elements(NDJSON.len() as u64));
    g.bench_function("ecs_json", |b| {
        b.iter(|| {
            for raw in NDJSON {
                black_box(EcsJsonParser.parse(black_box(raw), &cx).ok());
            }
        });
    });
    // Baseline: the cost of building an event of 28 string fields, without any parsing.
    g.throughput(Throughput::Elements(1));
    g.bench_function("event_with_28_fields", |b| {
        b.iter(|| {
            let mut ev = canh_core::Event::new(cx.received());
            for name in FIELDS {
                ev.set(name, black_box("value-of-some-length"));
            }
            black_box(ev)
        });
    });
    g.finish();
}

const FIELDS: [&str; 28] = [
    "event.original",
    "event.ingested",
    "canh.source.id",
    "log.syslog.priority",
    "log.syslog.facility.code",
    "log.syslog.facility.name",
    "log.syslog.severity.code",
    "log.syslog.severity.name",
    "log.level",
    "log.syslog.version",
    "log.syslog.hostname",
    "host.name",
    "log.syslog.appname",
    "process.name",
    "log.syslog.procid",
    "process.pid",
    "message",
    "event.category",
    "event.type",
    "event.action",
    "event.outcome",
    "system.auth.ssh.method",
    "user.name",
    "source.ip",
    "source.port",
    "event.module",
    "event.dataset",
    "canh.ocsf.class_uid",
];

criterion_group!(benches, bench);
criterion_main!(benches);
