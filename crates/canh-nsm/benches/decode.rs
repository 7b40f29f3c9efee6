//! Metadata-only throughput (decode, flows, reassembly, DNS/HTTP/TLS/SSH parsing, EVE output to
//! a sink) over a shared real capture held in memory.

use canh_nsm::{Sensor, SensorConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

mod common;
use common::{Frame, load};

fn bench(c: &mut Criterion) {
    let frames = load();
    assert!(!frames.is_empty(), "no packets loaded");
    let bytes: u64 = frames.iter().map(|f| f.2.len() as u64).sum();
    let mut g = c.benchmark_group("sensor_metadata");
    g.sample_size(10);
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("aug19_packets", |b| {
        b.iter(|| run(&frames));
    });
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("aug19_bytes", |b| {
        b.iter(|| run(&frames));
    });
    g.finish();
}

fn run(frames: &[Frame]) {
    let cfg = SensorConfig::default();
    let mut sensor = Sensor::new(cfg, std::io::sink());
    for (ts, link, data) in frames {
        sensor
            .process(*ts, *link, data, data.len() as u32)
            .expect("sink never fails");
    }
    black_box(sensor.finish().expect("sink never fails"));
}

criterion_group!(benches, bench);
criterion_main!(benches);
