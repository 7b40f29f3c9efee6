//! Rule evaluation throughput with the full SigmaHQ Windows rule set over normalised Windows
//! events (the shared EVTX corpus), and rule-set load time.

use std::path::{Path, PathBuf};

use canh_core::Event;
use canh_detect::{Engine, LoadOptions, RuleSet};
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
