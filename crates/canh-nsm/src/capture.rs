//! Offline capture reading: pcap and pcapng files through `pcap-parser`.

use crate::decode::LinkType;
use crate::sensor::{Sensor, SensorStats};
use crate::{NsmError, decode::Timestamp};
use pcap_parser::{Block, PcapBlockOwned, PcapError};
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

/// Size of the reader's buffer; it must hold the largest block of the capture.
const READ_BUFFER: usize = 4 << 20;

/// Reads a pcap or pcapng file and feeds every packet to `sensor`, then flushes all flows.
pub fn run_capture_file<W: Write>(
    path: &Path,
    mut sensor: Sensor<W>,
) -> Result<SensorStats, NsmError> {
    let display = path.display().to_string();
    let file = File::open(path).map_err(|source| NsmError::Io {
        path: display.clone(),
        source,
    })?;
    read_capture(file, &display, &mut sensor)?;
    sensor.finish()
}

/// Reads packets from any pcap/pcapng byte stream into `sensor` (without finishing it).
pub fn read_capture<R: Read + Send, W: Write>(
    input: R,
    name: &str,
    sensor: &mut Sensor<W>,
) -> Result<(), NsmError> {
    let invalid = |reason: String| NsmError::InvalidCapture {
        path: name.to_string(),
        reason,
    };
    let mut reader = pcap_parser::create_reader(READ_BUFFER, input)
        .map_err(|e| invalid(format!("not a pcap or pcapng file ({e:?})")))?;
    // pcapng interfaces: (link type, timestamp resolution per second, offset seconds)
    let mut interfaces: Vec<(LinkType, u64, i64)> = Vec::new();
    let mut legacy_link = LinkType::Ethernet;
    let mut legacy_nanos = false;
    let mut last_consumed_none = 0u32;
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                last_consumed_none = 0;
                match block {
                    PcapBlockOwned::LegacyHeader(hdr) => {
                        legacy_link = LinkType::from_dlt(hdr.network.0);
                        legacy_nanos = hdr.is_nanosecond_precision();
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let usecs = if legacy_nanos {
                            b.ts_usec / 1000
                        } else {
                            b.ts_usec
                        };
                        let ts = Timestamp::new(i64::from(b.ts_sec), usecs);
                        sensor.process(ts, legacy_link, b.data, b.origlen)?;
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => interfaces.clear(),
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        let res = idb.ts_resolution().unwrap_or(1_000_000);
                        interfaces.push((LinkType::from_dlt(idb.linktype.0), res, idb.ts_offset()));
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let (link, res, off) = interfaces
                            .get(epb.if_id as usize)
                            .copied()
                            .unwrap_or((LinkType::Ethernet, 1_000_000, 0));
                        let ts = ng_timestamp(epb.ts_high, epb.ts_low, res, off);
                        sensor.process(ts, link, epb.data, epb.origlen)?;
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        let link = interfaces.first().map_or(LinkType::Ethernet, |i| i.0);
                        let ts = sensor.last_timestamp();
                        sensor.process(ts, link, spb.data, spb.origlen)?;
                    }
                    PcapBlockOwned::NG(_) => {}
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => return Ok(()),
            Err(PcapError::Incomplete(_)) => {
                last_consumed_none += 1;
                if last_consumed_none > 2 {
                    // No progress after refilling: a truncated last block or one larger than
                    // the buffer. Keep what was read, note it.
                    sensor.note_truncated_capture();
                    return Ok(());
                }
                if reader.refill().is_err() {
                    sensor.note_truncated_capture();
                    return Ok(());
                }
            }
            Err(e) => {
                tracing::warn!(capture = %name, error = ?e, "stopping at a corrupt capture block");
                sensor.note_truncated_capture();
                return Ok(());
            }
        }
    }
}

/// Converts a pcapng 64-bit timestamp in `res` units per second to seconds + microseconds.
fn ng_timestamp(high: u32, low: u32, res: u64, offset: i64) -> Timestamp {
    let raw = (u64::from(high) << 32) | u64::from(low);
    let res = res.max(1);
    let secs = raw / res;
    let frac = raw % res;
    let usecs = (u128::from(frac) * 1_000_000 / u128::from(res)) as u32;
    Timestamp::new((secs as i64).saturating_add(offset), usecs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcapng_timestamps_convert_from_any_resolution() {
        let ts = ng_timestamp(0, 1_500_000_250, 1_000_000_000, 0);
        assert_eq!((ts.secs, ts.usecs), (1, 500_000));
        let ts = ng_timestamp(0, 2_000_001, 1_000_000, 10);
        assert_eq!((ts.secs, ts.usecs), (12, 1));
    }
}
