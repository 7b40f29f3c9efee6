//! TLS: record and handshake reassembly, ClientHello/ServerHello/Certificate via `tls-parser`
//! and `x509-parser`, JA3/JA3S/JA4, EVE `tls` records.

pub mod parser;

use crate::proto::heap::HeapSize;
use crate::proto::{
    AppEvent, Direction, ParseResult, Probe, ProtocolParser, ProtocolState, Transport,
};
use parser::{
    CertInfo, ClientHello, ServerHello, cert_info, ja3s, parse_server_hello, server_alpns,
    server_version, version_name,
};
use serde_json::{Map, Value, json};
use tls_parser::{TlsMessage, TlsMessageHandshake, parse_tls_message_handshake};

/// Largest handshake message buffered.
const MAX_HANDSHAKE: usize = 256 * 1024;
/// Largest record accepted (2^14 plus expansion allowance).
const MAX_RECORD: usize = (1 << 14) + 2048;

/// The TLS protocol.
pub struct TlsProtocol;

impl ProtocolParser for TlsProtocol {
    fn id(&self) -> &'static str {
        "tls"
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Tcp]
    }
    fn ports(&self) -> &'static [u16] {
        &[443, 465, 993, 995, 8443]
    }
    fn probe(&self, _t: Transport, _dir: Direction, data: &[u8], _port_match: bool) -> Probe {
        if data.len() < 3 {
            return if data.first().is_none_or(|b| *b == 0x16 || *b & 0x80 != 0) {
                Probe::NeedMore
            } else {
                Probe::No
            };
        }
        // TLS handshake record, SSL 3.0 .. TLS 1.3 record versions.
        if data[0] == 0x16 && data[1] == 3 && data[2] <= 4 {
            if data.len() < 6 {
                return Probe::NeedMore;
            }
            // HelloRequest, ClientHello or ServerHello.
            return if matches!(data[5], 0..=2) {
                Probe::Yes
            } else {
                Probe::No
            };
        }
        // SSLv2-framed ClientHello (2-byte header, message type 1, version 2 or 3).
        if data[0] & 0x80 != 0 && data[2] == 1 {
            if data.len() < 4 {
                return Probe::NeedMore;
            }
            return if matches!(data[3], 0 | 2 | 3) {
                Probe::Yes
            } else {
                Probe::No
            };
        }
        Probe::No
    }
    fn new_state(&self, _t: Transport) -> Box<dyn ProtocolState> {
        Box::new(TlsState::default())
    }
}

#[derive(Default)]
struct TlsState {
    hs_buf: [Vec<u8>; 2],
    encrypted: [bool; 2],
    client: Option<ClientHello>,
    server_version: Option<u16>,
    server_hello: Option<ServerHello>,
    ja3s: Option<(String, String)>,
    server_alpns: Vec<String>,
    cert: Option<CertInfo>,
    chain_len: usize,
    logged: bool,
    stopped: [bool; 2],
    /// Application data was seen after the handshake (not 0-RTT data before the ServerHello).
    app_data: bool,
}

impl TlsState {
    fn handle_message(&mut self, dir: Direction, msg: &[u8], out: &mut Vec<AppEvent>) {
        if dir == Direction::ToClient && msg[0] == 2 {
            if let Some(sh) = parse_server_hello(&msg[4..]) {
                let raw = Some(sh.raw_exts.as_slice());
                let v = server_version(sh.version, raw);
                self.server_version = Some(v);
                self.ja3s = Some(ja3s(sh.version, sh.cipher, raw));
                self.server_alpns = server_alpns(raw);
                if v == 0x0304 || v >> 8 == 0x7f {
                    // TLS 1.3: everything after the ServerHello is encrypted.
                    self.encrypted[1] = true;
                }
                self.server_hello = Some(sh);
            }
            return;
        }
        if dir == Direction::ToClient && msg[0] == 14 && self.ready() {
            // ServerHelloDone: the server side of the handshake is complete.
            self.log(out);
            return;
        }
        let Ok((_, TlsMessage::Handshake(hs))) = parse_tls_message_handshake(msg) else {
            return;
        };
        match hs {
            TlsMessageHandshake::ClientHello(ch)
                if dir == Direction::ToServer && self.client.is_none() =>
            {
                let ciphers = ch.ciphers.iter().map(|c| c.0).collect();
                let mut hello = ClientHello::new(ch.version.0, ciphers, ch.ext);
                hello.session_id = ch.session_id.unwrap_or_default().to_vec();
                self.client = Some(hello);
            }
            TlsMessageHandshake::Certificate(c)
                if dir == Direction::ToClient && self.cert.is_none() =>
            {
                self.chain_len = c.cert_chain.len();
                self.cert = c.cert_chain.first().and_then(|raw| cert_info(raw.data));
            }
            _ => {}
        }
    }

    fn handshake_bytes(&mut self, dir: Direction, fragment: &[u8], out: &mut Vec<AppEvent>) {
        let i = dir.index();
        if self.encrypted[i] {
            return;
        }
        self.hs_buf[i].extend_from_slice(fragment);
        loop {
            let buf = &self.hs_buf[i];
            if buf.len() < 4 {
                return;
            }
            let len =
                (usize::from(buf[1]) << 16) | (usize::from(buf[2]) << 8) | usize::from(buf[3]);
            if len + 4 > MAX_HANDSHAKE {
                self.hs_buf[i].clear();
                self.encrypted[i] = true;
                return;
            }
            if buf.len() < 4 + len {
                return;
            }
            let msg: Vec<u8> = self.hs_buf[i].drain(..4 + len).collect();
            self.handle_message(dir, &msg, out);
        }
    }

    fn ready(&self) -> bool {
        self.client.is_some() && self.server_version.is_some()
    }

    fn log(&mut self, out: &mut Vec<AppEvent>) {
        if self.logged || (self.client.is_none() && self.server_version.is_none()) {
            return;
        }
        self.logged = true;
        let mut o = Map::new();
        if let Some(c) = &self.cert {
            o.insert("subject".into(), Value::String(c.subject.clone()));
            o.insert("issuerdn".into(), Value::String(c.issuer.clone()));
            o.insert("serial".into(), Value::String(c.serial.clone()));
            o.insert("fingerprint".into(), Value::String(c.fingerprint.clone()));
            o.insert("notbefore".into(), Value::String(c.not_before.clone()));
            o.insert("notafter".into(), Value::String(c.not_after.clone()));
            o.insert("chain_len".into(), json!(self.chain_len));
            if !c.alt_names.is_empty() {
                o.insert("subjectaltname".into(), json!(c.alt_names));
            }
        }
        if let (Some(ch), Some(sh)) = (&self.client, &self.server_hello) {
            if !ch.session_id.is_empty() && ch.session_id == sh.session_id && self.cert.is_none() {
                o.insert("session_resumed".into(), Value::Bool(true));
            }
            o.insert(
                "server_handshake".into(),
                json!({
                    "version": version_name(self.server_version.unwrap_or(sh.version)),
                    "cipher": sh.cipher,
                    "exts": sh.exts,
                }),
            );
        }
        if let Some(ch) = self.client.as_ref().filter(|c| !c.sslv2) {
            if let Some(sni) = &ch.sni {
                o.insert("sni".into(), Value::String(sni.clone()));
            }
            let (s, h) = ch.ja3();
            o.insert("ja3".into(), json!({"hash": h, "string": s}));
            o.insert("ja4".into(), Value::String(ch.ja4()));
            if !ch.alpns.is_empty() {
                o.insert("client_alpns".into(), json!(ch.alpns));
            }
            let grease = parser::is_grease;
            let ciphers: Vec<u16> = ch.ciphers.iter().copied().filter(|c| !grease(*c)).collect();
            let exts: Vec<u16> = ch.exts.iter().copied().filter(|e| !grease(*e)).collect();
            let sigs: Vec<u16> = ch
                .sig_algs
                .iter()
                .copied()
                .filter(|s| !grease(*s))
                .collect();
            o.insert(
                "client_handshake".into(),
                json!({
                    "version": version_name(ch.version),
                    "ciphers": ciphers,
                    "exts": exts,
                    "sig_algs": sigs,
                }),
            );
        }
        // The server's choice, else what the client offered (as Suricata 8.0.3+ does).
        let version = self
            .server_version
            .or_else(|| self.client.as_ref().map(ClientHello::offered_version))
            .map_or_else(|| "UNDETERMINED".to_string(), version_name);
        o.insert("version".into(), Value::String(version));
        if let Some((s, h)) = &self.ja3s {
            o.insert("ja3s".into(), json!({"hash": h, "string": s}));
        }
        if !self.server_alpns.is_empty() {
            o.insert("server_alpns".into(), json!(self.server_alpns));
        }
        out.push(AppEvent {
            http: None,
            event_type: "tls",
            direction: None,
            body: o,
            tx_id: Some(0),
        });
    }
}

impl ProtocolState for TlsState {
    fn heap_bytes(&self) -> usize {
        self.hs_buf.iter().map(HeapSize::heap_size).sum::<usize>()
            + self.client.heap_size()
            + self.server_hello.heap_size()
            + self.ja3s.heap_size()
            + self.server_alpns.heap_size()
            + self.cert.heap_size()
    }
    fn payload_encrypted(&self) -> bool {
        self.app_data
    }
    fn parse(&mut self, dir: Direction, data: &[u8], out: &mut Vec<AppEvent>) -> ParseResult {
        let i = dir.index();
        if self.stopped[i] {
            return ParseResult::Consumed;
        }
        let mut at = 0;
        while at < data.len() {
            let rest = &data[at..];
            // SSLv2-framed hello: skip it (the upgraded handshake follows).
            if rest[0] & 0x80 != 0 && rest.len() >= 2 && !self.ready() {
                let len = (usize::from(rest[0] & 0x7f) << 8) | usize::from(rest[1]);
                if rest.len() < 2 + len {
                    return ParseResult::Incomplete {
                        consumed: at,
                        needed: 2 + len - rest.len(),
                    };
                }
                if dir == Direction::ToServer && self.client.is_none() {
                    self.client = parser::parse_sslv2_client_hello(&rest[2..2 + len]);
                }
                at += 2 + len;
                continue;
            }
            if rest.len() < 5 {
                return ParseResult::Incomplete {
                    consumed: at,
                    needed: 5 - rest.len(),
                };
            }
            let ctype = rest[0];
            let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
            if rest[1] != 3 || len > MAX_RECORD || !(20..=24).contains(&ctype) {
                // Not TLS records any more (or garbage): log what we have and stop.
                self.stopped[i] = true;
                if self.client.is_some() {
                    self.log(out);
                }
                return ParseResult::Error;
            }
            if rest.len() < 5 + len {
                return ParseResult::Incomplete {
                    consumed: at,
                    needed: 5 + len - rest.len(),
                };
            }
            let fragment = &rest[5..5 + len];
            match ctype {
                22 => self.handshake_bytes(dir, fragment, out),
                20 => {
                    // ChangeCipherSpec: this side encrypts from now on.
                    self.encrypted[i] = true;
                    if self.ready() && dir == Direction::ToClient {
                        self.log(out);
                    }
                }
                23 => {
                    self.encrypted[i] = true;
                    // Early data precedes the ServerHello; a session picked up midstream has
                    // no handshake to wait for.
                    if self.server_hello.is_some() || self.client.is_none() {
                        self.app_data = true;
                    }
                    if self.ready() {
                        self.log(out);
                    }
                }
                _ => {}
            }
            at += 5 + len;
        }
        if self.ready() && self.encrypted[0] && self.encrypted[1] {
            self.log(out);
        }
        ParseResult::Consumed
    }

    fn gap(&mut self, dir: Direction, _len: u64) -> bool {
        self.stopped[dir.index()] = true;
        true
    }

    fn close(&mut self, out: &mut Vec<AppEvent>) {
        self.log(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_recognises_record_and_sslv2_hellos() {
        let p = &TlsProtocol;
        let hello = [0x16, 3, 1, 0, 0x40, 1, 0, 0];
        assert_eq!(
            p.probe(Transport::Tcp, Direction::ToServer, &hello, false),
            Probe::Yes
        );
        assert_eq!(
            p.probe(Transport::Tcp, Direction::ToServer, &hello[..2], false),
            Probe::NeedMore
        );
        assert_eq!(
            p.probe(Transport::Tcp, Direction::ToServer, b"GET /", false),
            Probe::No
        );
        // The first record of a client in an HTTP CONNECT tunnel (http-connect-tls).
        let empty = [0x16, 3, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            p.probe(Transport::Tcp, Direction::ToServer, &empty, false),
            Probe::Yes
        );
        let v2 = [0x80, 0x2e, 1, 3, 1];
        assert_eq!(
            p.probe(Transport::Tcp, Direction::ToServer, &v2, false),
            Probe::Yes
        );
    }

    #[test]
    fn client_hello_only_is_logged_with_the_client_version_at_close() {
        // A ClientHello with no extensions, TLS 1.2, one cipher.
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0u8; 32]);
        body.extend_from_slice(&[0, 0, 2, 0xc0, 0x2f, 1, 0]);
        let mut hs = vec![1, 0, 0, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1, 0, hs.len() as u8];
        rec.extend_from_slice(&hs);
        let mut s = TlsProtocol.new_state(Transport::Tcp);
        let mut out = Vec::new();
        assert_eq!(
            s.parse(Direction::ToServer, &rec[..7], &mut out),
            ParseResult::Incomplete {
                consumed: 0,
                needed: rec.len() - 7
            }
        );
        assert_eq!(
            s.parse(Direction::ToServer, &rec, &mut out),
            ParseResult::Consumed
        );
        assert!(out.is_empty());
        s.close(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].body["version"], "TLS 1.2");
        assert_eq!(out[0].body["ja3"]["string"], "771,49199,,,");
    }
}
