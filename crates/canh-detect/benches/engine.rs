//! Rule evaluation throughput with the full SigmaHQ Windows rule set over normalised Windows
//! events (the shared EVTX corpus), and rule-set load time.

use std::path::{Path, PathBuf};

use canh_core::Event;
use canh_detect::{Engine, Indicator, IndicatorSet, LoadOptions, RuleSet};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn datasets() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/datasets"
    ))
}

fn rule_dirs() -> Vec<PathBuf> {
    let s = datasets().join("sigma");
    vec![
        s.join("rules/windows"),
        s.join("rules-threat-hunting/windows"),
        s.join("rules-emerging-threats"),
    ]
}

fn evtx_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            evtx_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "evtx") {
            out.push(p);
        }
    }
}

fn events() -> Vec<Event> {
    let mut files = Vec::new();
    evtx_files(&datasets().join("evtx"), &mut files);
    files.sort();
    let opts = canh_ingest::evtx::EvtxOptions::default();
    let mut out = Vec::new();
    for f in files {
        if let Ok(it) = canh_ingest::evtx::read_file(&f, &opts) {
            out.extend(it.flatten());
        }
    }
    out
}

fn million_indicators() -> IndicatorSet {
    let mut set = IndicatorSet::new("bench");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..1_000_000u64 {
        let r = next();
        let value = match i % 5 {
            0 => std::net::Ipv4Addr::from(r as u32).to_string(),
            1 => format!("{}/24", std::net::Ipv4Addr::from((r as u32) & 0xffff_ff00)),
            2 => format!("h{r:x}.example{}.test", i % 97),
            3 => format!("http://u{r:x}.test/p/{i}"),
            _ => format!("{r:016x}{:016x}{r:016x}{i:016x}", r.rotate_left(7)),
        };
        let ind = Indicator {
            value,
            kind: None,
            expires: None,
        };
        let _ = set.insert(&ind);
    }
    set
}

fn bench(c: &mut Criterion) {
    let (set, _) = RuleSet::load_paths(&rule_dirs(), &LoadOptions::default());
    let engine = Engine::new(set);
    let evs = events();
    let mut g = c.benchmark_group("evaluate");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.sample_size(10);
    g.bench_function("sigmahq_windows_all_rules", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for ev in &evs {
                engine.for_each_match(ev, |_| n += 1);
            }
            n
        })
    });
    // In the server an event is evaluated right after it was decoded, so its fields are in the
    // cache; the pass above reads 15k events (tens of MB, scattered by the EVTX reader's own
    // allocations) from memory. Here each event is cloned first (fresh, contiguous memory, as
    // a decoded event is) and only the evaluation is timed.
    g.bench_function("sigmahq_windows_all_rules_fresh_events", |b| {
        b.iter_custom(|iters| {
            let mut spent = std::time::Duration::ZERO;
            let mut n = 0usize;
            for _ in 0..iters {
                for ev in &evs {
                    let fresh = ev.clone();
                    let started = std::time::Instant::now();
                    engine.for_each_match(&fresh, |_| n += 1);
                    spent += started.elapsed();
                }
            }
            std::hint::black_box(n);
            spent
        })
    });
    // The same pass with one million indicators (synthetic: addresses, /24 ranges, domains,
    // URLs, SHA-256 hashes) against the events' address, domain and hash fields.
    g.bench_function("sigmahq_windows_all_rules_no_indicators", |b| {
        b.iter(|| {
            let (mut n, mut m) = (0usize, 0usize);
            for ev in &evs {
                engine.evaluate(ev, |_| n += 1, |_| m += 1);
            }
            (n, m)
        })
    });
    let with_iocs = Engine::new(RuleSet::load_paths(&rule_dirs(), &LoadOptions::default()).0);
    with_iocs.set_indicators(million_indicators());
    g.bench_function("sigmahq_windows_all_rules_1m_indicators", |b| {
        b.iter(|| {
            let (mut n, mut m) = (0usize, 0usize);
            for ev in &evs {
                with_iocs.evaluate(ev, |_| n += 1, |_| m += 1);
            }
            (n, m)
        })
    });
    drop(with_iocs);
    // The floor: reading every field name and text of every event once (memory traffic of
    // the benchmark's own data), without matching.
    g.bench_function("touch_every_field_baseline", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for ev in &evs {
                for (k, v) in &ev.fields {
                    n += k.len() + v.as_str().map_or(1, |s| s.bytes().map(usize::from).sum());
                }
            }
            n
        })
    });
    g.finish();
    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.bench_function("sigmahq_windows_rules_compile", |b| {
        b.iter(|| {
            let (set, _) = RuleSet::load_paths(&rule_dirs(), &LoadOptions::default());
            Engine::new(set)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
