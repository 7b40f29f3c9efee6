//! EVE JSON records (Suricata-compatible field names).

use crate::decode::{EtherAddrs, Timestamp};
use crate::flow::{EndReason, Flow};
use crate::proto::{AppEvent, Direction};
use crate::rules::{Rule, RuleSet};
use serde_json::{Map, Value, json};
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;

/// Receives complete EVE lines (one or more, each ending in `\n`) once they are written.
pub type LineSink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// A writer that passes everything to `inner` and hands every complete line to a
/// [`LineSink`] too; a line cut between two writes is handed over once it is whole.
pub struct TeeLines<W> {
    inner: W,
    partial: Vec<u8>,
    sink: LineSink,
}

impl<W: Write> TeeLines<W> {
    /// Tees `inner` into `sink`.
    pub fn new(inner: W, sink: LineSink) -> Self {
        Self {
            inner,
            partial: Vec::new(),
            sink,
        }
    }

    /// The inner writer; an unfinished last line (no `\n`) is not handed to the sink.
    pub fn into_inner(self) -> W {
        self.inner
    }

    fn take(&mut self, buf: &[u8]) {
        let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
            self.partial.extend_from_slice(buf);
            return;
        };
        if self.partial.is_empty() {
            (self.sink)(&buf[..=end]);
        } else {
            self.partial.extend_from_slice(&buf[..=end]);
            (self.sink)(&self.partial);
            self.partial.clear();
        }
        self.partial.extend_from_slice(&buf[end + 1..]);
    }
}

impl<W: Write> Write for TeeLines<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.take(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Suricata's spelling of an IP address: IPv6 in full, uncompressed form.
pub fn ip_string(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let parts: Vec<String> = s.iter().map(|x| format!("{x:04x}")).collect();
            parts.join(":")
        }
    }
}

/// Suricata's name of an IP protocol.
pub fn proto_name(proto: u8) -> String {
    match proto {
        6 => "TCP".to_string(),
        17 => "UDP".to_string(),
        1 => "ICMP".to_string(),
        58 => "IPv6-ICMP".to_string(),
        132 => "SCTP".to_string(),
        47 => "GRE".to_string(),
        other => other.to_string(),
    }
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132)
}

/// The header shared by flow-bound records, handed to `put` key by key in EVE order (into a
/// JSON map, or straight to a serialiser for flow records).
fn header_entries(
    ts: Timestamp,
    flow: &Flow,
    event_type: &str,
    dir: Direction,
    mut put: impl FnMut(&'static str, Value),
) {
    let (src, dst) = match dir {
        Direction::ToServer => (flow.client, flow.server),
        Direction::ToClient => (flow.server, flow.client),
    };
    put("timestamp", Value::String(ts.to_eve()));
    put("flow_id", json!(flow.id));
    put("event_type", Value::String(event_type.into()));
    put("src_ip", Value::String(ip_string(src.0)));
    put("dest_ip", Value::String(ip_string(dst.0)));
    if has_ports(flow.proto) {
        put("src_port", json!(src.1));
        put("dest_port", json!(dst.1));
    }
    put("proto", Value::String(proto_name(flow.proto)));
    put("community_id", Value::String(flow.community_id.clone()));
    if flow.vlan_count > 0 {
        put("vlan", json!(&flow.vlans[..usize::from(flow.vlan_count)]));
    }
}

/// The header shared by flow-bound records, into `rec`.
fn flow_header(
    rec: &mut Map<String, Value>,
    ts: Timestamp,
    flow: &Flow,
    event_type: &str,
    dir: Direction,
) {
    header_entries(ts, flow, event_type, dir, |k, v| {
        rec.insert(k.into(), v);
    });
}

/// Suricata's spelling of a MAC address.
pub fn mac_string(mac: &[u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// The Ethernet addresses of the packet a record is written for: `ether` is the packet's
/// header and the direction it travelled. They are oriented like the record's `src_ip` /
/// `dest_ip`. Without a packet (flow end), the flow's first addresses are used.
pub type PacketEther = Option<(EtherAddrs, Direction)>;

fn ether_object(rec: &mut Map<String, Value>, flow: &Flow, dir: Direction, ether: PacketEther) {
    let mut o = Map::new();
    match ether {
        Some((e, pkt_dir)) => {
            let (src, dst) = if pkt_dir == dir {
                (e.src, e.dst)
            } else {
                (e.dst, e.src)
            };
            o.insert("ether_type".into(), json!(e.ether_type));
            o.insert("src_mac".into(), Value::String(mac_string(&src)));
            o.insert("dest_mac".into(), Value::String(mac_string(&dst)));
        }
        None => {
            let (Some(c), Some(s)) = (flow.macs[0].first(), flow.macs[1].first()) else {
                return;
            };
            let (src, dst) = match dir {
                Direction::ToServer => (c, s),
                Direction::ToClient => (s, c),
            };
            o.insert("src_mac".into(), Value::String(mac_string(src)));
            o.insert("dest_mac".into(), Value::String(mac_string(dst)));
        }
    }
    rec.insert("ether".into(), Value::Object(o));
}

/// The packet a record is written for.
#[derive(Debug, Clone, Copy)]
pub struct PacketRef {
    /// Packet (or flow end) time.
    pub ts: Timestamp,
    /// Packet number in the capture (0: no packet, e.g. flow end).
    pub pcap_cnt: u64,
    /// Its Ethernet addresses, when EVE logs them.
    pub ether: PacketEther,
}

/// Keys of an [`AppEvent`] body written as top-level objects of the record, per event type.
const SIBLING_OBJECTS: &[(&str, &str)] = &[("smtp", "email")];

/// An application-layer record.
pub fn app_record(pkt: PacketRef, flow: &Flow, ev: AppEvent) -> Value {
    let mut rec = Map::new();
    let dir = ev.direction.unwrap_or(Direction::ToServer);
    flow_header(&mut rec, pkt.ts, flow, ev.event_type, dir);
    ether_object(&mut rec, flow, dir, pkt.ether);
    if pkt.pcap_cnt > 0 {
        rec.insert("pcap_cnt".into(), json!(pkt.pcap_cnt));
        rec.insert("pkt_src".into(), Value::String("wire/pcap".into()));
    }
    if let Some(tx) = ev.tx_id {
        rec.insert("tx_id".into(), json!(tx));
    }
    let mut body = ev.body;
    if let Some(orig) = flow.app.orig
        && ev.event_type == "tls"
    {
        // TLS inside an HTTP CONNECT tunnel.
        body.insert("from_proto".into(), Value::String(orig.into()));
    }
    // Objects Suricata writes beside the protocol's own (SMTP's `email`).
    for (et, key) in SIBLING_OBJECTS {
        if ev.event_type == *et
            && let Some(v) = body.remove(*key)
        {
            rec.insert((*key).into(), v);
        }
    }
    rec.insert(ev.event_type.into(), Value::Object(body));
    Value::Object(rec)
}

/// The `flow` record written when a flow ends, serialised straight to its writer: a sensor
/// writes one per flow (hundreds of thousands under a flood), and building a JSON map first
/// cost more than the writing. Keys come in the order of the other records' headers.
pub struct FlowRecord<'a> {
    /// The flow that ended.
    pub flow: &'a Flow,
    /// Why it ended.
    pub reason: EndReason,
}

const TCP_FLAG_NAMES: [(u8, &str); 8] = [
    (0x02, "syn"),
    (0x01, "fin"),
    (0x04, "rst"),
    (0x08, "psh"),
    (0x10, "ack"),
    (0x20, "urg"),
    (0x40, "ecn"),
    (0x80, "cwr"),
];

struct FlowCounters<'a>(&'a Flow, EndReason);

impl serde::Serialize for FlowCounters<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let f = self.0;
        let mut m = s.serialize_map(Some(10))?;
        m.serialize_entry("pkts_toserver", &f.pkts[0])?;
        m.serialize_entry("pkts_toclient", &f.pkts[1])?;
        m.serialize_entry("bytes_toserver", &f.bytes[0])?;
        m.serialize_entry("bytes_toclient", &f.bytes[1])?;
        m.serialize_entry("start", &f.start.to_eve())?;
        m.serialize_entry("end", &f.end.to_eve())?;
        m.serialize_entry("age", &(f.end.secs - f.start.secs).max(0))?;
        m.serialize_entry("state", f.state().as_str())?;
        m.serialize_entry("reason", self.1.as_str())?;
        m.serialize_entry("alerted", &f.detect.alerted)?;
        m.end()
    }
}

struct TcpSummary<'a>(&'a Flow);

impl serde::Serialize for TcpSummary<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let f = self.0;
        let all = f.tcp_flags[0] | f.tcp_flags[1];
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("tcp_flags", &format!("{all:02x}"))?;
        m.serialize_entry("tcp_flags_ts", &format!("{:02x}", f.tcp_flags[0]))?;
        m.serialize_entry("tcp_flags_tc", &format!("{:02x}", f.tcp_flags[1]))?;
        for (bit, name) in TCP_FLAG_NAMES {
            if all & bit != 0 {
                m.serialize_entry(name, &true)?;
            }
        }
        m.serialize_entry("state", f.tcp_state.as_str())?;
        m.end()
    }
}

impl serde::Serialize for FlowRecord<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let flow = self.flow;
        let mut m = s.serialize_map(None)?;
        let mut failed = None;
        header_entries(flow.end, flow, "flow", Direction::ToServer, |k, v| {
            if failed.is_none()
                && let Err(e) = m.serialize_entry(k, &v)
            {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if let Some(app) = flow.app.eve_name() {
            m.serialize_entry("app_proto", app)?;
        }
        if let Some(orig) = flow.app.orig {
            m.serialize_entry("app_proto_orig", orig)?;
        }
        if let Some((t, c)) = flow.icmp[0] {
            m.serialize_entry("icmp_type", &t)?;
            m.serialize_entry("icmp_code", &c)?;
        }
        if let Some(spi) = flow.spi {
            m.serialize_entry("spi", &spi)?;
        }
        if let Some((t, c)) = flow.icmp[1] {
            m.serialize_entry("response_icmp_type", &t)?;
            m.serialize_entry("response_icmp_code", &c)?;
        }
        if !flow.macs[0].is_empty() || !flow.macs[1].is_empty() {
            let list = |v: &[[u8; 6]]| -> Vec<String> { v.iter().map(mac_string).collect() };
            m.serialize_entry(
                "ether",
                &json!({"src_macs": list(&flow.macs[0]), "dest_macs": list(&flow.macs[1])}),
            )?;
        }
        m.serialize_entry("flow", &FlowCounters(flow, self.reason))?;
        if flow.proto == 6 {
            m.serialize_entry("tcp", &TcpSummary(flow))?;
        }
        m.end()
    }
}

/// An `alert` record for a fired rule. `app` is the application event that matched, if any
/// (its object is copied into the alert, as Suricata does with `types: [alert: {http...}]`).
pub fn alert_record(
    pkt: PacketRef,
    flow: &Flow,
    dir: Direction,
    set: &RuleSet,
    rule: &Rule,
    app: Option<(&str, &Map<String, Value>)>,
) -> Value {
    let mut rec = Map::new();
    flow_header(&mut rec, pkt.ts, flow, "alert", dir);
    ether_object(&mut rec, flow, dir, pkt.ether);
    if pkt.pcap_cnt > 0 {
        rec.insert("pcap_cnt".into(), json!(pkt.pcap_cnt));
    }
    let (category, severity) = set.category(rule);
    let action = match rule.action.as_str() {
        "drop" | "reject" | "rejectsrc" | "rejectdst" | "rejectboth" => "blocked",
        _ => "allowed",
    };
    let mut alert = Map::new();
    alert.insert("action".into(), Value::String(action.into()));
    alert.insert("gid".into(), json!(rule.gid));
    alert.insert("signature_id".into(), json!(rule.sid));
    alert.insert("rev".into(), json!(rule.rev));
    alert.insert("signature".into(), Value::String(rule.msg.clone()));
    alert.insert("category".into(), Value::String(category));
    alert.insert("severity".into(), json!(severity));
    if !rule.metadata.is_empty() {
        let mut meta: Map<String, Value> = Map::new();
        for (k, v) in rule.metadata.iter() {
            if let Value::Array(a) = meta
                .entry(k.to_owned())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                a.push(Value::String(v.to_owned()));
            }
        }
        alert.insert("metadata".into(), Value::Object(meta));
    }
    rec.insert("alert".into(), Value::Object(alert));
    if let Some(name) = flow.app.eve_name() {
        rec.insert("app_proto".into(), Value::String(name.into()));
    }
    if let Some((et, body)) = app {
        rec.insert(et.into(), Value::Object(body.clone()));
    }
    rec.insert(
        "direction".into(),
        Value::String(match dir {
            Direction::ToServer => "to_server".into(),
            Direction::ToClient => "to_client".into(),
        }),
    );
    Value::Object(rec)
}

/// Canh's generator id for its own detections (floods, scans).
pub const CANH_GID: u64 = 9000;
/// `signature_id` of a flood alert.
pub const SID_FLOOD: u64 = 9_000_001;
/// `signature_id` of a horizontal scan alert.
pub const SID_HORIZONTAL_SCAN: u64 = 9_000_002;
/// `signature_id` of a vertical scan alert.
pub const SID_VERTICAL_SCAN: u64 = 9_000_003;

/// An `alert` record for a flood or scan (with a `ddos` or `scan` object).
pub fn ddos_record(ev: &crate::ddos::DdosEvent) -> Value {
    use crate::ddos::{DdosEvent, ScanKind};
    let mut rec = Map::new();
    match ev {
        DdosEvent::Flood(f) => {
            let names: Vec<&str> = f.vectors.iter().map(|(v, _)| v.name()).collect();
            let ts = Timestamp::new(f.window_start + f.window_secs, 0);
            rec.insert("timestamp".into(), Value::String(ts.to_eve()));
            rec.insert("event_type".into(), Value::String("alert".into()));
            if let Some((src, _)) = f.top_sources.first() {
                rec.insert("src_ip".into(), Value::String(ip_string(*src)));
            }
            rec.insert("dest_ip".into(), Value::String(ip_string(f.victim)));
            rec.insert(
                "alert".into(),
                json!({
                    "action": "allowed",
                    "gid": CANH_GID,
                    "signature_id": SID_FLOOD,
                    "rev": 1,
                    "signature": format!("CANH DDOS {} against {}", names.join(","), f.victim),
                    "category": "Attempted Denial of Service",
                    "severity": 1,
                }),
            );
            let vectors: Vec<Value> = f
                .vectors
                .iter()
                .map(|(v, rate)| {
                    let unit = if matches!(
                        v,
                        crate::ddos::Vector::SynFlood
                            | crate::ddos::Vector::UdpFlood
                            | crate::ddos::Vector::IcmpFlood
                    ) {
                        "pps"
                    } else {
                        "bps"
                    };
                    json!({"vector": v.name(), "rate": rate, "unit": unit})
                })
                .collect();
            let tops: Vec<Value> = f
                .top_sources
                .iter()
                .map(|(ip, n)| json!({"ip": ip_string(*ip), "packets": n}))
                .collect();
            rec.insert(
                "ddos".into(),
                json!({
                    "victim": ip_string(f.victim),
                    "vectors": vectors,
                    "top_sources": tops,
                    "packets": f.packets,
                    "bytes": f.bytes,
                    "window_start": Timestamp::new(f.window_start, 0).to_eve(),
                    "window_secs": f.window_secs,
                }),
            );
        }
        DdosEvent::Scan(s) => {
            let (sid, what) = match s.kind {
                ScanKind::Horizontal => (SID_HORIZONTAL_SCAN, "horizontal port scan"),
                ScanKind::Vertical => (SID_VERTICAL_SCAN, "vertical port scan"),
            };
            rec.insert(
                "timestamp".into(),
                Value::String(Timestamp::new(s.ts, 0).to_eve()),
            );
            rec.insert("event_type".into(), Value::String("alert".into()));
            rec.insert("src_ip".into(), Value::String(ip_string(s.source)));
            rec.insert("dest_ip".into(), Value::String(ip_string(s.target)));
            rec.insert(
                "alert".into(),
                json!({
                    "action": "allowed",
                    "gid": CANH_GID,
                    "signature_id": sid,
                    "rev": 1,
                    "signature": format!("CANH SCAN {what} from {}", s.source),
                    "category": "Detection of a Network Scan",
                    "severity": 2,
                }),
            );
            rec.insert(
                "scan".into(),
                json!({
                    "kind": s.kind.name(),
                    "source": ip_string(s.source),
                    "target": ip_string(s.target),
                    "hosts": s.hosts,
                    "ports": s.ports,
                }),
            );
        }
    }
    Value::Object(rec)
}

/// A decoder or application-layer anomaly.
pub fn anomaly_record(
    ts: Timestamp,
    pcap_cnt: u64,
    kind: &str,
    event: &str,
    flow: Option<&Flow>,
) -> Value {
    let mut rec = Map::new();
    match flow {
        Some(f) => flow_header(&mut rec, ts, f, "anomaly", Direction::ToServer),
        None => {
            rec.insert("timestamp".into(), Value::String(ts.to_eve()));
            rec.insert("event_type".into(), Value::String("anomaly".into()));
        }
    }
    if pcap_cnt > 0 {
        rec.insert("pcap_cnt".into(), json!(pcap_cnt));
    }
    let mut body = Map::new();
    body.insert("type".into(), Value::String(kind.into()));
    body.insert("event".into(), Value::String(event.into()));
    if let Some(f) = flow
        && let Some(app) = f.app.eve_name()
    {
        body.insert("app_proto".into(), Value::String(app.into()));
    }
    rec.insert("anomaly".into(), Value::Object(body));
    Value::Object(rec)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tee_hands_over_whole_lines_only() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
        let sink: super::LineSink = {
            let seen = std::sync::Arc::clone(&seen);
            std::sync::Arc::new(move |b: &[u8]| seen.lock().unwrap().push(b.to_vec()))
        };
        let mut tee = super::TeeLines::new(Vec::new(), sink);
        std::io::Write::write_all(&mut tee, b"{\"a\":1}\n{\"b\"").unwrap();
        std::io::Write::write_all(&mut tee, b":2}\n{\"c\":3}\n{").unwrap();
        std::io::Write::write_all(&mut tee, b"\"d\":").unwrap();
        let file = tee.into_inner();
        assert_eq!(file, b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n{\"d\":");
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.as_slice(),
            [b"{\"a\":1}\n".to_vec(), b"{\"b\":2}\n{\"c\":3}\n".to_vec()]
        );
    }

    use super::*;

    #[test]
    fn ipv6_is_written_uncompressed_like_suricata() {
        let ip: IpAddr = "2001:4860:4860::8888".parse().unwrap();
        assert_eq!(ip_string(ip), "2001:4860:4860:0000:0000:0000:0000:8888");
        assert_eq!(proto_name(58), "IPv6-ICMP");
    }
}
