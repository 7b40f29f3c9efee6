//! WAL append throughput with group commit (fsync on), for several concurrent appenders.
//!
//! `cargo bench -p canh-store --profile release-fast --bench wal`

#![allow(clippy::unwrap_used)] // a benchmark stops on the first failure

mod synth;

use std::sync::Arc;

use canh_store::{Wal, WalOptions};
use chrono::{Duration, Utc};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let end = Utc::now();
    let pool: Vec<_> = (0..4096)
        .map(|i| synth::event(i, 4096, end, Duration::hours(1)))
        .collect();
    let bytes_per_event = canh_store::wal::encode_events(&pool).len() as u64 / pool.len() as u64;
    let mut g = c.benchmark_group("wal_append");
    for (writers, batch) in [(1usize, 1usize), (16, 1), (1, 256), (8, 256)] {
        let per_iter = (writers * batch * 8) as u64;
        g.throughput(Throughput::Elements(per_iter));
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), WalOptions::default(), None).unwrap();
        let wal = Arc::new(wal);
        let id = BenchmarkId::new(format!("{writers}_writers_x_batch"), batch);
        g.bench_function(id, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut tasks = Vec::new();
                    for w in 0..writers {
                        let wal = wal.clone();
                        let evs: Vec<_> = (0..batch)
                            .map(|k| pool[(w * batch + k) % pool.len()].clone())
                            .collect();
                        tasks.push(tokio::spawn(async move {
                            for _ in 0..8 {
                                wal.append(evs.clone()).await.unwrap();
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                })
            })
        });
    }
    g.finish();
    eprintln!("wal: {bytes_per_event} bytes per encoded event (JSON line)");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
