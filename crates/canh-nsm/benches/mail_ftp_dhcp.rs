//! Sensor throughput on SMTP, FTP and DHCP sessions (real captures of the suricata-verify
//! corpus held in memory): decode, flows, reassembly, protocol parsing and EVE output to a sink.

use canh_nsm::{Sensor, SensorConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

mod common;
use common::{Frame, load_from};

const SV: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/pcap/suricata-verify/tests/"
);

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sensor_protocols");
    g.sample_size(20);
    for (name, rel) in [
        ("smtp_mime_attachment", "smtp-file-data-01/input.pcap"),
        ("ftp_session", "ftp-epsv/input.pcap"),
        ("dhcp_request_ack", "dhcp-eve-extended/input.pcap"),
    ] {
        let frames = load_from(&format!("{SV}{rel}"));
        assert!(!frames.is_empty(), "no packets loaded from {rel}");
        let bytes: u64 = frames.iter().map(|f| f.2.len() as u64).sum();
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function(name, |b| b.iter(|| run(&frames)));
    }
    g.finish();
}

fn run(frames: &[Frame]) {
    let mut sensor = Sensor::new(SensorConfig::default(), std::io::sink());
    for (ts, link, data) in frames {
        sensor
            .process(*ts, *link, data, data.len() as u32)
            .expect("sink never fails");
    }
    black_box(sensor.finish().expect("sink never fails"));
}

criterion_group!(benches, bench);
criterion_main!(benches);
