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
                if data.len() < 2 + len && data.len() >= 2048 {
                    // A large message still arriving, on a DNS port: its header decides.
                    return if plausible_header(&data[2..]) {
                        Probe::Yes
                    } else {
                        Probe::No
                    };
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
    fn is_server_reply(&self, transport: Transport, payload: &[u8], sport: u16) -> bool {
        // Over TCP a 2-byte length comes first.
        let msg = match transport {
            Transport::Tcp => payload.get(2..).unwrap_or(&[]),
            Transport::Udp => payload,
        };
        sport == 53 && msg.len() >= 12 && msg[2] & 0x80 != 0
    }
    fn new_state(&self, transport: Transport) -> Box<dyn ProtocolState> {
        Box::new(DnsState {
            tcp: transport == Transport::Tcp,
            tx_id: 0,
        })
    }
}

/// Whether a DNS header looks sane: a standard opcode, at least one question, and counts a
/// message can hold.
fn plausible_header(h: &[u8]) -> bool {
    let Some(h) = h.get(..12) else {
        return false;
    };
    let count = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
    let opcode = (h[2] >> 3) & 0x0f;
    opcode <= 5 && count(4) >= 1 && count(6) < 4096 && count(8) < 4096 && count(10) < 4096
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
    fn heap_bytes(&self) -> usize {
        0 // counters only
    }
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
        // Over TCP, parsing resumes with the next data as the start of a message (a lost
        // segment usually held whole messages); if it is not one, parsing stops then.
        self.tcp
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
        RData::Null(text) => {
            obj.insert("rdata".into(), Value::String(text.clone()));
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
    o.insert("flags".into(), Value::String(format!("{:x}", m.flags)));
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
        .map(|q| {
            let mut o = json!({"rrname": q.name, "rrtype": rrtype_name(q.rtype)});
            if q.truncated {
                o["rrname_truncated"] = Value::Bool(true);
            }
            o
        })
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

/// What EVE `dns` records are written (Suricata's `dns` logger options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsLogConfig {
    /// Record format: 3 (one record per message) or 2 (one `query` record per question,
    /// one `answer` record per response, logged in the flow's direction).
    pub version: u8,
    /// Log requests.
    pub requests: bool,
    /// Log responses.
    pub responses: bool,
    /// Only messages asking for these record types (upper-case names); empty: all.
    pub types: Vec<String>,
}

impl Default for DnsLogConfig {
    fn default() -> Self {
        Self {
            version: 3,
            requests: true,
            responses: true,
            types: Vec::new(),
        }
    }
}

impl DnsLogConfig {
    fn type_enabled(&self, q: &Value) -> bool {
        self.types.is_empty()
            || q.get("rrtype")
                .and_then(Value::as_str)
                .is_some_and(|t| self.types.iter().any(|x| x.eq_ignore_ascii_case(t)))
    }

    /// Turns the `dns` object of one message into the objects to log (none, one, or one per
    /// question in version 2), each with the direction to log it in (`None`: the flow's).
    pub fn records(&self, body: Map<String, Value>, dir: Option<Direction>) -> Vec<DnsRecord> {
        let response = body.get("type").and_then(Value::as_str) == Some("response");
        if (response && !self.responses) || (!response && !self.requests) {
            return Vec::new();
        }
        let queries: Vec<Value> = body
            .get("queries")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !queries.iter().any(|q| self.type_enabled(q)) {
            return Vec::new();
        }
        if self.version != 2 {
            return vec![DnsRecord { body, dir }];
        }
        let flags = body
            .get("flags")
            .and_then(Value::as_str)
            .and_then(|f| u16::from_str_radix(f, 16).ok())
            .unwrap_or(0);
        let copy = |o: &mut Map<String, Value>, keys: &[&str]| {
            for k in keys {
                if let Some(v) = body.get(*k) {
                    o.insert((*k).into(), v.clone());
                }
            }
        };
        if !response {
            return queries
                .iter()
                .filter(|q| self.type_enabled(q))
                .map(|q| {
                    let mut o = Map::new();
                    o.insert("version".into(), json!(2));
                    o.insert("type".into(), Value::String("query".into()));
                    copy(&mut o, &["id"]);
                    for k in ["rrname", "rrtype"] {
                        if let Some(v) = q.get(k) {
                            o.insert(k.into(), v.clone());
                        }
                    }
                    copy(&mut o, &["tx_id"]);
                    if flags & 0x0040 != 0 {
                        o.insert("z".into(), Value::Bool(true));
                    }
                    copy(&mut o, &["opcode"]);
                    DnsRecord { body: o, dir: None }
                })
                .collect();
        }
        let mut o = Map::new();
        o.insert("version".into(), json!(2));
        o.insert("type".into(), Value::String("answer".into()));
        copy(
            &mut o,
            &["id", "flags", "qr", "aa", "tc", "rd", "ra", "z", "opcode"],
        );
        if let Some(q) = queries.first() {
            for k in ["rrname", "rrtype"] {
                if let Some(v) = q.get(k) {
                    o.insert(k.into(), v.clone());
                }
            }
        }
        copy(
            &mut o,
            &["rcode", "answers", "grouped", "authorities", "additionals"],
        );
        vec![DnsRecord { body: o, dir: None }]
    }
}

/// One `dns` object to log.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsRecord {
    /// The object.
    pub body: Map<String, Value>,
    /// Direction to log it in (`None`: the flow's).
    pub dir: Option<Direction>,
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
    fn large_tcp_query_still_arriving_is_detected_by_its_header() {
        // First segment of suricata-verify dns-truncated-rname: a 16773-byte message with
        // 1500 questions, of which 16330 bytes arrived.
        let mut data = b"\x41\x85\x08\xae\x01\x00\x05\xdc\x00\x00\x00\x00\x00\x00".to_vec();
        data.resize(16332, b'a');
        let p = DnsProtocol.probe(Transport::Tcp, Direction::ToServer, &data, true);
        assert_eq!(p, Probe::Yes);
        assert_eq!(
            DnsProtocol.probe(Transport::Tcp, Direction::ToServer, &data, false),
            Probe::No
        );
        data[4] = 0x78; // opcode 15
        let p = DnsProtocol.probe(Transport::Tcp, Direction::ToServer, &data, true);
        assert_eq!(p, Probe::No);
    }

    #[test]
    fn replies_are_recognised_over_udp_and_tcp() {
        // First bytes of the TCP reply of suricata-verify dns-reversed-tcp-1 (length 0x00eb).
        let tcp = b"\x00\xeb\x5f\x78\x81\x80\x00\x01\x00\x0c\x00\x00\x00\x01\x03www";
        assert!(DnsProtocol.is_server_reply(Transport::Tcp, tcp, 53));
        assert!(!DnsProtocol.is_server_reply(Transport::Tcp, tcp, 5353));
        assert!(DnsProtocol.is_server_reply(Transport::Udp, &tcp[2..], 53));
        assert!(!DnsProtocol.is_server_reply(Transport::Udp, tcp, 53));
        let q = query(b"\x03www\x07example\x03org\x00");
        assert!(!DnsProtocol.is_server_reply(Transport::Udp, &q, 53));
    }

    #[test]
    fn tcp_parsing_resumes_after_a_lost_message() {
        // suricata-verify dns-tcp-ts-gap: the second of three queries was never captured.
        let q = query(b"\x03www\x06google\x03com\x00");
        let mut framed = vec![0, q.len() as u8];
        framed.extend_from_slice(&q);
        let mut state = DnsProtocol.new_state(Transport::Tcp);
        let mut out = Vec::new();
        assert_eq!(
            state.parse(Direction::ToServer, &framed, &mut out),
            ParseResult::Consumed
        );
        assert!(state.gap(Direction::ToServer, framed.len() as u64));
        assert_eq!(
            state.parse(Direction::ToServer, &framed, &mut out),
            ParseResult::Consumed
        );
        assert_eq!(out.len(), 2);
        // Data resuming mid-message is refused.
        assert!(state.gap(Direction::ToServer, 5));
        assert_eq!(
            state.parse(
                Direction::ToServer,
                &[&[0u8, 12][..], &[0xff; 12]].concat(),
                &mut out
            ),
            ParseResult::Error
        );
        // Over UDP there is nothing to resume.
        assert!(
            !DnsProtocol
                .new_state(Transport::Udp)
                .gap(Direction::ToServer, 5)
        );
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
        // Suricata writes the flags in hex without padding.
        assert_eq!(out[0].body["flags"], "100");
        assert_eq!(out[0].body["rd"], true);
    }
}
