//! Metadata-only throughput (decode, flows, reassembly, DNS/HTTP/TLS/SSH parsing, EVE output to
//! a sink) over a shared real capture held in memory.

use canh_nsm::decode::{LinkType, Timestamp};
use canh_nsm::{Sensor, SensorConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/pcap/lateral-movement/aug19.pcap"
);

fn load() -> Vec<(Timestamp, LinkType, Vec<u8>)> {
    use pcap_parser::{PcapBlockOwned, PcapError};
    let file = std::fs::File::open(CAPTURE).expect("shared capture present");
    let mut reader = pcap_parser::create_reader(1 << 20, file).expect("pcap");
    let mut link = LinkType::Ethernet;
    let mut frames = Vec::new();
    loop {
        match reader.next() {
            Ok((off, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(h) => link = LinkType::from_dlt(h.network.0),
                    PcapBlockOwned::Legacy(b) => frames.push((
                        Timestamp::new(i64::from(b.ts_sec), b.ts_usec),
                        link,
                        b.data.to_vec(),
                    )),
                    PcapBlockOwned::NG(pcap_parser::Block::InterfaceDescription(idb)) => {
                        link = LinkType::from_dlt(idb.linktype.0);
                    }
                    PcapBlockOwned::NG(pcap_parser::Block::EnhancedPacket(epb)) => {
                        let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                        let ts = Timestamp::new((raw / 1_000_000) as i64, (raw % 1_000_000) as u32);
                        frames.push((ts, link, epb.data.to_vec()));
                    }
                    PcapBlockOwned::NG(_) => {}
                }
                reader.consume(off);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => reader.refill().expect("refill"),
            Err(e) => panic!("bad capture: {e:?}"),
        }
    }
    frames
}

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

fn run(frames: &[(Timestamp, LinkType, Vec<u8>)]) {
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
