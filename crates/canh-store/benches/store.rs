//! Store benchmarks: ingest (WAL + Parquet + tantivy), size on disk, query latency.
//!
//! `CANH_BENCH_EVENTS` sets the corpus size (default 1,000,000). Run with
//! `cargo bench -p canh-store --all-features --profile release-fast --bench store`.

#![allow(clippy::unwrap_used)] // a benchmark stops on the first failure

mod synth;

use std::path::Path;
use std::time::Instant;

use canh_core::query;
use canh_store::{SearchRequest, Store, StoreConfig};
use chrono::{Duration, Utc};
use criterion::{Criterion, criterion_group, criterion_main};

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            };
        }
    }
    total
}

/// Bytes per file extension under `p` (tantivy: `term`, `idx`, `pos`, `store`, `fast`, ...).
fn by_extension(p: &Path, out: &mut std::collections::BTreeMap<String, u64>) {
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                by_extension(&e.path(), out);
            } else {
                let ext = e
                    .path()
                    .extension()
                    .map_or_else(String::new, |x| x.to_string_lossy().into_owned());
                *out.entry(ext).or_insert(0) += m.len();
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let n: u64 = std::env::var("CANH_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig {
        flush_interval_ms: 0,
        flush_max_events: usize::MAX,
        max_pending_events: usize::MAX,
        ..StoreConfig::default()
    };
    // `CANH_BENCH_PAGE_KB` tries another Parquet page size (disk against search latency).
    if let Some(kb) = std::env::var("CANH_BENCH_PAGE_KB")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.parquet_page_kb = kb;
    }
    let end = Utc::now();
    let span = Duration::hours(24);
    let store = rt.block_on(Store::open(dir.path(), cfg)).unwrap();
    let mut raw = 0u64;
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let mut flush_time = std::time::Duration::ZERO;
    // Anonymous memory (heap) after each flush, apart from mapped index and Parquet files.
    let mut max_anon = 0u64;
    let mut i = 0;
    while i < n {
        let batch: Vec<_> = (i..(i + 1000).min(n))
            .map(|k| synth::event(k, n, end, span))
            .collect();
        raw += batch
            .iter()
            .map(|e| e.to_json_line().len() as u64 + 1)
            .sum::<u64>();
        i += batch.len() as u64;
        rt.block_on(store.append(batch)).unwrap();
        if i.is_multiple_of(100_000) || i == n {
            let t = Instant::now();
            rt.block_on(store.flush()).unwrap();
            flush_time += t.elapsed();
            max_anon = max_anon.max(status_kb("RssAnon:"));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    // CPU time is steadier than wall time on a shared machine.
    eprintln!(
        "ingest CPU: {cpu:.1} s of CPU for {n} events = {:.0} events per CPU-second",
        n as f64 / cpu.max(1e-9)
    );
    let parquet = dir_size(&dir.path().join("events"));
    let index = dir_size(&dir.path().join("index"));
    eprintln!(
        "ingest: {n} events, {:.1} MB raw NDJSON, {secs:.1} s total ({:.0} events/s; flush {:.1} s), \
         parquet {:.1} MB ({:.1} % of raw), index {:.1} MB ({:.1} % of raw)",
        raw as f64 / 1e6,
        n as f64 / secs,
        flush_time.as_secs_f64(),
        parquet as f64 / 1e6,
        100.0 * parquet as f64 / raw as f64,
        index as f64 / 1e6,
        100.0 * index as f64 / raw as f64,
    );
    let mut parts = std::collections::BTreeMap::new();
    by_extension(&dir.path().join("index"), &mut parts);
    let parts: Vec<String> = parts
        .iter()
        .map(|(ext, b)| format!("{ext} {:.1} MB", *b as f64 / 1e6))
        .collect();
    eprintln!("index by file kind: {}", parts.join(", "));
    let total = dir_size(dir.path());
    eprintln!(
        "on disk in all (WAL, Parquet, index, dead letters): {:.1} MB ({:.1} % of raw); peak RSS {} MB \
         (anonymous memory after flushes at most {} MB, file-backed now {} MB)",
        total as f64 / 1e6,
        100.0 * total as f64 / raw as f64,
        peak_rss_mb(),
        max_anon / 1024,
        status_kb("RssFile:") / 1024
    );
    let day_from = end - Duration::hours(24);
    let term = query::parse("host.name:host-0042").unwrap();
    // Latency percentiles, as the goals are stated (p50), besides criterion's estimates.
    let percentiles = |name: &str, f: &dyn Fn()| {
        let mut v: Vec<f64> = (0..41)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        v.sort_by(f64::total_cmp);
        eprintln!(
            "{name}: p50 {:.2} ms, p95 {:.2} ms (41 runs)",
            v[20],
            v[(v.len() * 95) / 100]
        );
    };
    percentiles("term host.name + 24 h, 100 rows", &|| {
        let req = SearchRequest {
            query: term.clone(),
            from: day_from,
            to: end,
            limit: 100,
            cursor: None,
        };
        assert!(rt.block_on(store.search(req)).unwrap().total > 0);
    });
    percentiles("count by host.name over 24 h", &|| {
        let top = rt
            .block_on(store.count_by("host.name", &query::Expr::All, day_from, end, 10_000))
            .unwrap();
        assert!(!top.is_empty());
    });
    c.bench_function("query/term_24h_rows", |b| {
        b.iter(|| {
            let req = SearchRequest {
                query: term.clone(),
                from: day_from,
                to: end,
                limit: 1000,
                cursor: None,
            };
            let page = rt.block_on(store.search(req)).unwrap();
            assert!(page.total > 0);
        })
    });
    let every = query::Expr::All;
    c.bench_function("query/count_by_host_24h", |b| {
        b.iter(|| {
            let top = rt
                .block_on(store.count_by("host.name", &every, day_from, end, 10_000))
                .unwrap();
            assert_eq!(top.len(), 2000);
        })
    });
    let needle = query::parse("process.command_line:*mimikatz*").unwrap();
    c.bench_function("query/contains_mimikatz_count", |b| {
        b.iter(|| {
            let req = SearchRequest {
                query: needle.clone(),
                from: day_from,
                to: end,
                limit: 0,
                cursor: None,
            };
            let page = rt.block_on(store.search(req)).unwrap();
            assert!(page.total > 0);
        })
    });
    c.bench_function("query/sql_count_by_host_24h", |b| {
        b.iter(|| {
            let r = rt
                .block_on(store.sql("SELECT \"host.name\", count(*) FROM events GROUP BY 1"))
                .unwrap();
            assert_eq!(r.rows.len(), 2000);
        })
    });
}

/// User + system CPU time of this process so far, in seconds (Linux, 100 ticks/s).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which is in parentheses): utime is the 12th, stime
            // the 13th.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let u: f64 = f.get(11)?.parse().ok()?;
            let st: f64 = f.get(12)?.parse().ok()?;
            Some((u + st) / 100.0)
        })
        .unwrap_or(0.0)
}

/// A `kB` line of `/proc/self/status` (0 when absent).
fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// Peak resident set size of this process, in MB (Linux `VmHWM`).
fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
