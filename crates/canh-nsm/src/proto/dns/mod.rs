//! DNS over UDP and TCP: detection, per-flow state and EVE `dns` records (EVE DNS v3 layout).

pub mod parser;

use crate::eve::ip_string;
use crate::proto::{
    AppEvent, Direction, ParseResult, Probe, ProtocolParser, ProtocolState, Transport,
};
use parser::{Message, RData, Record, parse_message, rcode_name, rrtype_name};
use serde_json::{Map, Value, json};

/// The DNS protocol.
pub struct DnsProtocol;

impl ProtocolParser for DnsProtocol {
    fn id(&self) -> &'static str {
        "dns"
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Udp, Transport::Tcp]
    }
    fn ports(&self) -> &'static [u16] {
        &[53]
    }
    fn probe(&self, transport: Transport, dir: Direction, data: &[u8], port_match: bool) -> Probe {
        let msg = match transport {
            Transport::Udp => data,
            Transport::Tcp => {
                if !port_match {
                    return Probe::No;
                }
                if data.len() < 14 {
                    return Probe::NeedMore;
                }
                let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
                if len < 12 {
                    return Probe::No;
                }
                &data[2..data.len().min(2 + len)]
            }
        };
        let Ok(m) = parse_message(msg) else {
            return if transport == Transport::Tcp && msg.len() < 512 {
                Probe::NeedMore
            } else {
                Probe::No
            };
        };
        if port_match {
            return if m.questions.is_empty() && m.answers.is_empty() && !m.is_response() {
                Probe::No
            } else {
                Probe::Yes
            };
        }
        // Away from port 53 only a clean, plain query from the client is taken as DNS.
        // NetBIOS name service looks like DNS: its broadcast flag (0x0010) and NB/NBSTAT
        // query types (32, 33) set it apart.
        let clean = dir == Direction::ToServer
            && !m.is_response()
            && m.opcode() == 0
            && m.flags & 0x0070 == 0
            && !matches!(m.questions.first().map(|q| q.rtype), Some(32 | 33))
            && m.questions.len() == 1
            && m.answers.is_empty()
            && m.authorities.is_empty()
            && m.additionals.len() <= 1
            && !m.truncated
            && m.trailing == 0
            && m.questions[0].class == 1
            && !m.questions[0].name.is_empty()
            && !m.questions[0].name.contains("\\x");
        if clean { Probe::Yes } else { Probe::No }
    }
    fn is_server_reply(&self, payload: &[u8], sport: u16) -> bool {
        sport == 53 && payload.len() >= 12 && payload[2] & 0x80 != 0
    }
    fn new_state(&self, transport: Transport) -> Box<dyn ProtocolState> {
        Box::new(DnsState {
            tcp: transport == Transport::Tcp,
            tx_id: 0,
        })
    }
}

/// Per-flow DNS state: numbers messages as transactions.
struct DnsState {
    tcp: bool,
    tx_id: u64,
}

impl DnsState {
    fn log(&mut self, dir: Direction, m: &Message, out: &mut Vec<AppEvent>) {
        let mut body = message_to_eve(m);
        body.insert("tx_id".into(), json!(self.tx_id));
        out.push(AppEvent {
            http: None,
            event_type: "dns",
            direction: Some(dir),
            body,
            tx_id: Some(self.tx_id),
        });
        self.tx_id += 1;
    }
}

impl ProtocolState for DnsState {
    fn parse(&mut self, dir: Direction, data: &[u8], out: &mut Vec<AppEvent>) -> ParseResult {
        if !self.tcp {
            return match parse_message(data) {
                Ok(m) => {
                    self.log(dir, &m, out);
                    ParseResult::Consumed
                }
                Err(_) => ParseResult::Error,
            };
        }
        let mut at = 0;
        while at < data.len() {
            let Some(hdr) = data.get(at..at + 2) else {
                return ParseResult::Incomplete {
                    consumed: at,
                    needed: 2,
                };
            };
            let len = usize::from(u16::from_be_bytes([hdr[0], hdr[1]]));
            let Some(msg) = data.get(at + 2..at + 2 + len) else {
                return ParseResult::Incomplete {
                    consumed: at,
                    needed: at + 2 + len - data.len(),
                };
            };
            match parse_message(msg) {
                Ok(m) => self.log(dir, &m, out),
                Err(_) => return ParseResult::Error,
            }
            at += 2 + len;
        }
        ParseResult::Consumed
    }

    fn gap(&mut self, _dir: Direction, _len: u64) -> bool {
        false
    }
}

fn rdata_fields(r: &Record, obj: &mut Map<String, Value>) {
    match &r.rdata {
        RData::Addr(ip) => {
            obj.insert("rdata".into(), Value::String(ip_string(*ip)));
        }
        RData::Name(n) => {
            obj.insert("rdata".into(), Value::String(n.clone()));
        }
        RData::Txt(t) => {
            obj.insert("rdata".into(), Value::String(t.concat()));
        }
        RData::Soa {
            mname,
            rname,
            values,
        } => {
            obj.insert(
                "soa".into(),
                json!({
                    "mname": mname, "rname": rname, "serial": values[0], "refresh": values[1],
                    "retry": values[2], "expire": values[3], "minimum": values[4],
                }),
            );
        }
        RData::Srv {
            priority,
            weight,
            port,
            name,
        } => {
            obj.insert(
                "srv".into(),
                json!({"priority": priority, "weight": weight, "port": port, "name": name}),
            );
        }
        RData::Sshfp {
            algo,
            fp_type,
            fingerprint,
        } => {
            let fp: Vec<String> = fingerprint.iter().map(|b| format!("{b:02x}")).collect();
            obj.insert(
                "sshfp".into(),
                json!({"fingerprint": fp.join(":"), "algo": algo, "type": fp_type}),
            );
        }
        RData::Raw(_) => {}
    }
}

/// EVE entries of a record: TXT records give one entry per character-string, like Suricata.
fn records_to_eve(records: &[Record]) -> Vec<Value> {
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        match &r.rdata {
            RData::Txt(strings) if strings.len() > 1 => {
                for s in strings {
                    let mut one = r.clone();
                    one.rdata = RData::Txt(vec![s.clone()]);
                    out.push(record_to_eve(&one));
                }
            }
            _ => out.push(record_to_eve(r)),
        }
    }
    out
}

fn record_to_eve(r: &Record) -> Value {
    let mut obj = Map::new();
    obj.insert("rrname".into(), Value::String(r.name.clone()));
    obj.insert("rrtype".into(), Value::String(rrtype_name(r.rtype)));
    obj.insert("ttl".into(), json!(r.ttl));
    rdata_fields(r, &mut obj);
    Value::Object(obj)
}

/// Builds the EVE `dns` object of a message.
pub fn message_to_eve(m: &Message) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("version".into(), json!(3));
    let response = m.is_response();
    o.insert(
        "type".into(),
        Value::String(if response { "response" } else { "request" }.into()),
    );
    o.insert("id".into(), json!(m.id));
    o.insert("flags".into(), Value::String(format!("{:04x}", m.flags)));
    let bits = [
        (0x8000, "qr"),
        (0x0400, "aa"),
        (0x0200, "tc"),
        (0x0100, "rd"),
        (0x0080, "ra"),
        (0x0040, "z"),
        (0x0020, "ad"),
        (0x0010, "cd"),
    ];
    for (bit, name) in bits {
        if m.flags & bit != 0 {
            o.insert(name.into(), Value::Bool(true));
        }
    }
    o.insert("opcode".into(), json!(m.opcode()));
    let queries: Vec<Value> = m
        .questions
        .iter()
        .map(|q| json!({"rrname": q.name, "rrtype": rrtype_name(q.rtype)}))
        .collect();
    if !queries.is_empty() {
        o.insert("queries".into(), Value::Array(queries));
    }
    if response {
        o.insert("rcode".into(), Value::String(rcode_name(m.rcode())));
        if !m.answers.is_empty() {
            o.insert("answers".into(), Value::Array(records_to_eve(&m.answers)));
            let mut grouped: Map<String, Value> = Map::new();
            for r in &m.answers {
                if let RData::Txt(strings) = &r.rdata
                    && strings.len() > 1
                {
                    let entry = grouped
                        .entry("TXT".to_string())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(list) = entry {
                        list.extend(strings.iter().map(|s| Value::String(s.clone())));
                    }
                    continue;
                }
                let value = match &r.rdata {
                    RData::Addr(ip) => Value::String(ip_string(*ip)),
                    RData::Name(n) => Value::String(n.clone()),
                    RData::Txt(t) => Value::String(t.concat()),
                    _ => {
                        let mut obj = Map::new();
                        rdata_fields(r, &mut obj);
                        match obj.into_iter().next() {
                            Some((_, v)) => v,
                            None => continue,
                        }
                    }
                };
                let entry = grouped
                    .entry(rrtype_name(r.rtype))
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = entry {
                    list.push(value);
                }
            }
            if !grouped.is_empty() {
                o.insert("grouped".into(), Value::Object(grouped));
            }
        }
        if !m.authorities.is_empty() {
            o.insert(
                "authorities".into(),
                Value::Array(records_to_eve(&m.authorities)),
            );
        }
        let kept: Vec<Record> = m
            .additionals
            .iter()
            .filter(|r| r.rtype != 41)
            .cloned()
            .collect();
        let additionals = records_to_eve(&kept);
        if !additionals.is_empty() {
            o.insert("additionals".into(), Value::Array(additionals));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8]) -> Vec<u8> {
        let mut m = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(name);
        m.extend_from_slice(&[0, 1, 0, 1]);
        m
    }

    #[test]
    fn plain_query_is_detected_on_any_port() {
        let q = query(b"\x03www\x07example\x03org\x00");
        let p = DnsProtocol.probe(Transport::Udp, Direction::ToServer, &q, false);
        assert_eq!(p, Probe::Yes);
        let junk = b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d";
        let p = DnsProtocol.probe(Transport::Udp, Direction::ToServer, junk, false);
        assert_eq!(p, Probe::No);
    }

    #[test]
    fn tcp_messages_split_across_segments_are_reassembled() {
        let q = query(b"\x03www\x07example\x03org\x00");
        let mut framed = vec![0, q.len() as u8];
        framed.extend_from_slice(&q);
        let mut state = DnsProtocol.new_state(Transport::Tcp);
        let mut out = Vec::new();
        let r = state.parse(Direction::ToServer, &framed[..5], &mut out);
        assert_eq!(
            r,
            ParseResult::Incomplete {
                consumed: 0,
                needed: framed.len() - 5
            }
        );
        assert_eq!(
            state.parse(Direction::ToServer, &framed, &mut out),
            ParseResult::Consumed
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].body["queries"][0]["rrname"], "www.example.org");
        assert_eq!(out[0].body["type"], "request");
        assert_eq!(out[0].body["flags"], "0100");
        assert_eq!(out[0].body["rd"], true);
    }
}
