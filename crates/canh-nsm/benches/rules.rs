//! Signatures: ET Open load time, and throughput with the supported ET Open subset over a shared
//! real capture held in memory (compare with `decode` for the metadata-only figure).

mod common;
use canh_nsm::rules::{RuleSet, Vars, load_files};
use canh_nsm::{Sensor, SensorConfig};
use common::{Frame, load};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

const ET_OPEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/et-open/rules"
);

fn rule_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(ET_OPEN)
        .expect("et-open rules present")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rules"))
        .collect();
    files.sort();
    files
}

fn load_rules() -> RuleSet {
    let files = rule_files();
    let paths: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    load_files(&paths, &Vars::default()).expect("rules load").0
}

fn bench(c: &mut Criterion) {
    let frames = load();
    assert!(!frames.is_empty(), "no packets loaded");
    let rules = Arc::new(load_rules());
    assert!(rules.engine.len() > 20_000);
    let mut g = c.benchmark_group("sensor_et_open");
    g.sample_size(10);
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("aug19_packets_with_et_open", |b| {
        b.iter(|| run(&frames, Some(rules.clone())));
    });
    g.bench_function("aug19_packets_metadata_only", |b| {
        b.iter(|| run(&frames, None));
    });
    g.finish();
    let mut l = c.benchmark_group("et_open_load");
    l.sample_size(10);
    l.bench_function("compile_all_enabled_rules", |b| {
        b.iter(|| black_box(load_rules().engine.len()));
    });
    l.finish();
}

fn run(frames: &[Frame], rules: Option<Arc<RuleSet>>) {
    let mut sensor = Sensor::new(SensorConfig::default(), std::io::sink());
    if let Some(r) = rules {
        sensor = sensor.with_rules(r);
    }
    for (ts, link, data) in frames {
        sensor
            .process(*ts, *link, data, data.len() as u32)
            .expect("sink never fails");
    }
    black_box(sensor.finish().expect("sink never fails"));
}

criterion_group!(benches, bench);
criterion_main!(benches);
