//! DHCP (UDP 67/68): BOOTP header and options, one EVE `dhcp` record per message, with the
//! fields of Suricata's extended DHCP log (message type, client MAC and id, assigned and
//! requested addresses, hostname, lease times, parameter request list, routers, DNS servers).

pub mod parser;

use crate::eve::mac_string;
use crate::proto::{
    AppEvent, Direction, ParseResult, Probe, ProtocolParser, ProtocolState, Transport,
};
use parser::{Message, looks_like_dhcp};
use serde_json::{Map, Value, json};
use std::net::Ipv4Addr;

/// The DHCP protocol.
pub struct DhcpProtocol;

impl ProtocolParser for DhcpProtocol {
    fn id(&self) -> &'static str {
        "dhcp"
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Udp]
    }
    fn ports(&self) -> &'static [u16] {
        &[67, 68]
    }
    fn probe(&self, _t: Transport, _dir: Direction, data: &[u8], port_match: bool) -> Probe {
        if port_match && looks_like_dhcp(data) {
            Probe::Yes
        } else {
            Probe::No
        }
    }
    fn is_server_reply(&self, transport: Transport, payload: &[u8], sport: u16) -> bool {
        transport == Transport::Udp && sport == 67 && payload.first() == Some(&2)
    }
    fn new_state(&self, _t: Transport) -> Box<dyn ProtocolState> {
        Box::new(DhcpState::default())
    }
}

/// Suricata's name of a DHCP message type (option 53).
fn message_type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        1 => "discover",
        2 => "offer",
        3 => "request",
        4 => "decline",
        5 => "ack",
        6 => "nak",
        7 => "release",
        8 => "inform",
        _ => return None,
    })
}

/// Suricata's name of a requested parameter (option 55 entry); parameters it has no name for
/// are not logged.
fn param_name(code: u8) -> Option<&'static str> {
    Some(match code {
        1 => "subnet_mask",
        3 => "router",
        6 => "dns_server",
        15 => "domain",
        35 => "arp_timeout",
        42 => "ntp_server",
        66 => "tftp_server_name",
        150 => "tftp_server_ip",
        _ => return None,
    })
}

fn ip_list(v: &[u8]) -> Vec<String> {
    v.chunks_exact(4)
        .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string())
        .collect()
}

fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

fn hex_colons(v: &[u8]) -> String {
    let parts: Vec<String> = v.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// The EVE `dhcp` object of a message.
pub fn eve(m: &Message) -> Map<String, Value> {
    let mut o = Map::new();
    let reply = m.op == 2;
    o.insert(
        "type".into(),
        json!(if reply { "reply" } else { "request" }),
    );
    o.insert("id".into(), json!(m.xid));
    o.insert("client_mac".into(), json!(mac_string(&m.client_mac)));
    o.insert("assigned_ip".into(), json!(m.assigned_ip.to_string()));
    o.insert("client_ip".into(), json!(m.client_ip.to_string()));
    if reply {
        o.insert("relay_ip".into(), json!(m.relay_ip.to_string()));
        o.insert("next_server_ip".into(), json!(m.next_server_ip.to_string()));
    }
    if let Some(name) = m.message_type().and_then(message_type_name) {
        o.insert("dhcp_type".into(), json!(name));
    }
    for (code, v) in &m.options {
        let v = v.as_slice();
        match code {
            61 if v.len() > 1 => {
                o.insert("client_id".into(), json!(hex_colons(&v[1..])));
            }
            12 => {
                o.insert("hostname".into(), json!(String::from_utf8_lossy(v)));
            }
            50 if v.len() == 4 => {
                o.insert("requested_ip".into(), json!(ip_list(v)[0]));
            }
            51 | 58 | 59 => {
                let key = match code {
                    51 => "lease_time",
                    58 => "renewal_time",
                    _ => "rebinding_time",
                };
                if let Some(t) = u32_of(v) {
                    o.insert(key.into(), json!(t));
                }
            }
            1 if v.len() == 4 => {
                o.insert("subnet_mask".into(), json!(ip_list(v)[0]));
            }
            3 => {
                o.insert("routers".into(), json!(ip_list(v)));
            }
            6 => {
                o.insert("dns_servers".into(), json!(ip_list(v)));
            }
            55 => {
                let names: Vec<&str> = v.iter().filter_map(|c| param_name(*c)).collect();
                o.insert("params".into(), json!(names));
            }
            60 => {
                let s = String::from_utf8_lossy(v);
                o.insert("vendor_class_identifier".into(), json!(s));
            }
            _ => {}
        }
    }
    o
}

#[derive(Default)]
struct DhcpState {
    next_id: u64,
}

impl ProtocolState for DhcpState {
    fn heap_bytes(&self) -> usize {
        0 // counters only
    }
    fn parse(&mut self, dir: Direction, data: &[u8], out: &mut Vec<AppEvent>) -> ParseResult {
        match parser::parse(data) {
            Ok(m) => {
                out.push(AppEvent {
                    event_type: "dhcp",
                    direction: Some(dir),
                    body: eve(&m),
                    tx_id: Some(self.next_id),
                    http: None,
                });
                self.next_id += 1;
                ParseResult::Consumed
            }
            Err(e) => {
                tracing::debug!(error = %e, "dhcp message not parsed");
                ParseResult::Error
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parser::tests::message;
    use super::*;

    #[test]
    fn extended_fields() {
        let opts = [
            53, 1, 5, // ack
            1, 4, 255, 255, 0, 0, // subnet
            3, 4, 10, 16, 1, 1, // router
            6, 8, 10, 16, 1, 1, 8, 8, 8, 8, // dns
            51, 4, 0, 0, 14, 16, // lease 3600
            12, 5, b'n', b'a', b's', b'1', 0, // hostname
            61, 7, 1, 0, 0x11, 0x22, 0x33, 0x44, 0x55, // client id
            55, 3, 1, 3, 200, 255,
        ];
        let m = parser::parse(&message(2, &opts, &[])).unwrap();
        let o = eve(&m);
        assert_eq!(o["type"], "reply");
        assert_eq!(o["dhcp_type"], "ack");
        assert_eq!(o["id"], 0xdead_beef_u32);
        assert_eq!(o["client_mac"], "00:11:22:33:44:55");
        assert_eq!(o["assigned_ip"], "10.0.0.9");
        assert_eq!(o["subnet_mask"], "255.255.0.0");
        assert_eq!(o["routers"], json!(["10.16.1.1"]));
        assert_eq!(o["dns_servers"], json!(["10.16.1.1", "8.8.8.8"]));
        assert_eq!(o["lease_time"], 3600);
        assert_eq!(o["hostname"], "nas1\u{0}");
        assert_eq!(o["client_id"], "00:11:22:33:44:55");
        assert_eq!(o["params"], json!(["subnet_mask", "router"]));
        assert_eq!(o["relay_ip"], "0.0.0.0");
    }

    #[test]
    fn probe_and_state() {
        let p = DhcpProtocol;
        let m = message(1, &[53, 1, 1, 255], &[]);
        assert_eq!(
            p.probe(Transport::Udp, Direction::ToServer, &m, true),
            Probe::Yes
        );
        assert_eq!(
            p.probe(Transport::Udp, Direction::ToServer, &m, false),
            Probe::No
        );
        assert_eq!(
            p.probe(Transport::Udp, Direction::ToServer, b"xx", true),
            Probe::No
        );
        let mut st = DhcpState::default();
        let mut out = Vec::new();
        assert_eq!(
            st.parse(Direction::ToServer, &m, &mut out),
            ParseResult::Consumed
        );
        assert_eq!(
            st.parse(Direction::ToServer, b"junk", &mut out),
            ParseResult::Error
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].body["dhcp_type"], "discover");
        assert_eq!(out[0].direction, Some(Direction::ToServer));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let mut st = DhcpState::default();
            let mut out = Vec::new();
            let _ = st.parse(Direction::ToClient, &data, &mut out);
            proptest::prop_assert!(out.len() <= 1);
        }

        #[test]
        fn never_panics_on_options(opts in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
                                   file in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let mut with_overload = vec![52, 1, 3];
            with_overload.extend_from_slice(&opts);
            let m = message(2, &with_overload, &file);
            let parsed = parser::parse(&m);
            proptest::prop_assert!(parsed.is_ok());
            if let Ok(m) = parsed {
                let o = eve(&m);
                proptest::prop_assert_eq!(&o["type"], "reply");
            }
        }
    }
}
