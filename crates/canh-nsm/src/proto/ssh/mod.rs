//! SSH: banner exchange (software versions) and HASSH fingerprints from KEXINIT.

pub mod parser;

use crate::proto::heap::HeapSize;
use crate::proto::{
    AppEvent, Direction, ParseResult, Probe, ProtocolParser, ProtocolState, Transport,
};
use parser::{Banner, parse_banner, parse_kexinit_packet};
use serde_json::{Map, Value, json};

/// The SSH protocol.
pub struct SshProtocol;

impl ProtocolParser for SshProtocol {
    fn id(&self) -> &'static str {
        "ssh"
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Tcp]
    }
    fn ports(&self) -> &'static [u16] {
        &[22]
    }
    fn probe(&self, _t: Transport, _dir: Direction, data: &[u8], _port_match: bool) -> Probe {
        let n = data.len().min(4);
        if data[..n] != b"SSH-"[..n] {
            return Probe::No;
        }
        if n < 4 { Probe::NeedMore } else { Probe::Yes }
    }
    fn new_state(&self, _t: Transport) -> Box<dyn ProtocolState> {
        Box::new(SshState::default())
    }
}

#[derive(Default)]
struct Side {
    banner: Option<Banner>,
    hassh: Option<(String, String)>,
    done: bool,
}

#[derive(Default)]
struct SshState {
    sides: [Side; 2],
    logged: bool,
}

impl SshState {
    fn maybe_log(&mut self, out: &mut Vec<AppEvent>, force: bool) {
        if self.logged {
            return;
        }
        let both_banners = self.sides.iter().all(|s| s.banner.is_some());
        let both_done = self.sides.iter().all(|s| s.done);
        let any = self.sides.iter().any(|s| s.banner.is_some());
        if !((both_banners && both_done) || (force && any)) {
            return;
        }
        let mut body = Map::new();
        for (side, key) in self.sides.iter().zip(["client", "server"]) {
            let Some(b) = &side.banner else { continue };
            let mut o = Map::new();
            o.insert(
                "proto_version".into(),
                Value::String(b.proto_version.clone()),
            );
            o.insert(
                "software_version".into(),
                Value::String(b.software_version.clone()),
            );
            if let Some((string, hash)) = &side.hassh {
                o.insert("hassh".into(), json!({"hash": hash, "string": string}));
            }
            body.insert(key.into(), Value::Object(o));
        }
        out.push(AppEvent {
            http: None,
            event_type: "ssh",
            direction: None,
            body,
            tx_id: Some(0),
        });
        self.logged = true;
    }
}

impl ProtocolState for SshState {
    fn heap_bytes(&self) -> usize {
        self.sides
            .iter()
            .map(|s| s.banner.heap_size() + s.hassh.heap_size())
            .sum()
    }
    fn parse(&mut self, dir: Direction, data: &[u8], out: &mut Vec<AppEvent>) -> ParseResult {
        let side = &mut self.sides[dir.index()];
        if side.done {
            return ParseResult::Consumed;
        }
        let mut at = 0;
        if side.banner.is_none() {
            match parse_banner(data) {
                Ok(Some((banner, used))) => {
                    side.banner = Some(banner);
                    at = used;
                }
                Ok(None) if data.len() < 256 => {
                    return ParseResult::Incomplete {
                        consumed: 0,
                        needed: 1,
                    };
                }
                Ok(None) | Err(_) => return ParseResult::Error,
            }
        }
        // After the banner: binary packets; the first one is KEXINIT (cleartext).
        while at < data.len() && !side.done {
            match parse_kexinit_packet(&data[at..], dir == Direction::ToClient) {
                parser::Packet::Incomplete(needed) => {
                    return ParseResult::Incomplete {
                        consumed: at,
                        needed,
                    };
                }
                parser::Packet::Kexinit { used, hassh } => {
                    side.hassh = Some(hassh);
                    side.done = true;
                    at += used;
                }
                parser::Packet::Other(used) => at += used,
                parser::Packet::Invalid => {
                    side.done = true;
                }
            }
        }
        self.maybe_log(out, false);
        ParseResult::Consumed
    }

    fn gap(&mut self, dir: Direction, _len: u64) -> bool {
        self.sides[dir.index()].done = true;
        true
    }

    fn close(&mut self, out: &mut Vec<AppEvent>) {
        self.maybe_log(out, true);
    }
}
