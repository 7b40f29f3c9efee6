//! The shared real capture, loaded into memory once per benchmark (used by `decode` and `rules`).

use canh_nsm::decode::{LinkType, Timestamp};

#[allow(dead_code)] // Not every benchmark binary uses both loaders.
const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/pcap/lateral-movement/aug19.pcap"
);

/// One captured frame: time, link type, bytes.
pub(crate) type Frame = (Timestamp, LinkType, Vec<u8>);

#[allow(dead_code)]
pub(crate) fn load() -> Vec<Frame> {
    load_from(CAPTURE)
}

/// Loads any pcap/pcapng file into memory.
#[allow(dead_code)] // Not every benchmark binary uses both loaders.
pub(crate) fn load_from(path: &str) -> Vec<Frame> {
    use pcap_parser::{PcapBlockOwned, PcapError};
    let file = std::fs::File::open(path).expect("shared capture present");
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
