//! Signatures: ET Open load time, and throughput with the supported ET Open subset over a shared
//! real capture held in memory (compare with `decode` for the metadata-only figure).

use canh_nsm::decode::{LinkType, Timestamp};
use canh_nsm::rules::{RuleSet, Vars, load_files};
use canh_nsm::{Sensor, SensorConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/pcap/lateral-movement/aug19.pcap"
);
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

fn run(frames: &[(Timestamp, LinkType, Vec<u8>)], rules: Option<Arc<RuleSet>>) {
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
