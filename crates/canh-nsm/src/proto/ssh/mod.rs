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
    /// The KEXINIT was read (or cannot be): the side is ready to log.
    done: bool,
    /// The side sent NEWKEYS: its later packets are encrypted.
    newkeys: bool,
    /// No more packets are read on this side (NEWKEYS, a gap or garbage).
    stopped: bool,
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
        if side.stopped {
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
        // After the banner: binary packets, cleartext up to NEWKEYS; the first is KEXINIT.
        while at < data.len() && !side.stopped {
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
                parser::Packet::NewKeys(used) => {
                    side.newkeys = true;
                    side.stopped = true;
                    side.done = true;
                    at += used;
                }
                parser::Packet::Other(used) => at += used,
                parser::Packet::Invalid => {
                    side.done = true;
                    side.stopped = true;
                }
            }
        }
        self.maybe_log(out, false);
        ParseResult::Consumed
    }

    fn gap(&mut self, dir: Direction, _len: u64) -> bool {
        let side = &mut self.sides[dir.index()];
        side.done = true;
        side.stopped = true;
        true
    }

    fn payload_encrypted(&self) -> bool {
        self.sides.iter().all(|s| s.newkeys)
    }

    fn close(&mut self, out: &mut Vec<AppEvent>) {
        self.maybe_log(out, true);
    }
}

#[cfg(test)]
mod tests {
    use super::parser::tests::{kexinit, packet};
    use super::*;

    #[test]
    fn session_is_encrypted_after_both_sides_send_newkeys() {
        let mut st = SshState::default();
        let mut out = Vec::new();
        let mut client = b"SSH-2.0-OpenSSH_9.2\r\n".to_vec();
        client.extend(kexinit());
        let mut server = b"SSH-2.0-OpenSSH_8.4\r\n".to_vec();
        server.extend(kexinit());
        assert_eq!(
            st.parse(Direction::ToServer, &client, &mut out),
            ParseResult::Consumed
        );
        assert_eq!(
            st.parse(Direction::ToClient, &server, &mut out),
            ParseResult::Consumed
        );
        assert_eq!(
            out.len(),
            1,
            "the ssh record is written after both KEXINITs"
        );
        // Key exchange, then NEWKEYS from the client only: still cleartext on the server side.
        let mut kex = packet(&[30, 0, 0, 0, 1, 7]);
        kex.extend(packet(&[21]));
        st.parse(Direction::ToServer, &kex, &mut out);
        assert!(!st.payload_encrypted());
        st.parse(Direction::ToClient, &packet(&[31, 0]), &mut out);
        assert!(!st.payload_encrypted());
        // The server's NEWKEYS, followed by ciphertext that is not read as packets.
        let mut rest = packet(&[21]);
        rest.extend_from_slice(&[0xff; 40]);
        assert_eq!(
            st.parse(Direction::ToClient, &rest, &mut out),
            ParseResult::Consumed
        );
        assert!(st.payload_encrypted());
        assert_eq!(out.len(), 1);
    }
}
