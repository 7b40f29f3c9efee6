//! EVE JSON records (Suricata-compatible field names).

use crate::decode::Timestamp;
use crate::flow::{EndReason, Flow};
use crate::proto::{AppEvent, Direction};
use serde_json::{Map, Value, json};
use std::net::IpAddr;

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

/// The header shared by flow-bound records.
fn flow_header(
    rec: &mut Map<String, Value>,
    ts: Timestamp,
    flow: &Flow,
    event_type: &str,
    dir: Direction,
) {
    let (src, dst) = match dir {
        Direction::ToServer => (flow.client, flow.server),
        Direction::ToClient => (flow.server, flow.client),
    };
    rec.insert("timestamp".into(), Value::String(ts.to_eve()));
    rec.insert("flow_id".into(), json!(flow.id));
    rec.insert("event_type".into(), Value::String(event_type.into()));
    rec.insert("src_ip".into(), Value::String(ip_string(src.0)));
    rec.insert("dest_ip".into(), Value::String(ip_string(dst.0)));
    if has_ports(flow.proto) {
        rec.insert("src_port".into(), json!(src.1));
        rec.insert("dest_port".into(), json!(dst.1));
    }
    rec.insert("proto".into(), Value::String(proto_name(flow.proto)));
    rec.insert(
        "community_id".into(),
        Value::String(flow.community_id.clone()),
    );
    if flow.vlan_count > 0 {
        let ids = &flow.vlans[..usize::from(flow.vlan_count)];
        rec.insert("vlan".into(), json!(ids));
    }
}

/// An application-layer record.
pub fn app_record(ts: Timestamp, pcap_cnt: u64, flow: &Flow, ev: AppEvent) -> Value {
    let mut rec = Map::new();
    let dir = ev.direction.unwrap_or(Direction::ToServer);
    flow_header(&mut rec, ts, flow, ev.event_type, dir);
    if pcap_cnt > 0 {
        rec.insert("pcap_cnt".into(), json!(pcap_cnt));
        rec.insert("pkt_src".into(), Value::String("wire/pcap".into()));
    }
    if let Some(tx) = ev.tx_id {
        rec.insert("tx_id".into(), json!(tx));
    }
    rec.insert(ev.event_type.into(), Value::Object(ev.body));
    Value::Object(rec)
}

fn tcp_flag_fields(obj: &mut Map<String, Value>, flags: u8) {
    let names = [
        (0x02, "syn"),
        (0x01, "fin"),
        (0x04, "rst"),
        (0x08, "psh"),
        (0x10, "ack"),
        (0x20, "urg"),
        (0x40, "ecn"),
        (0x80, "cwr"),
    ];
    for (bit, name) in names {
        if flags & bit != 0 {
            obj.insert(name.into(), Value::Bool(true));
        }
    }
}

/// The `flow` record written when a flow ends.
pub fn flow_record(flow: &Flow, reason: EndReason) -> Value {
    let mut rec = Map::new();
    flow_header(&mut rec, flow.end, flow, "flow", Direction::ToServer);
    if let Some(app) = flow.app.eve_name() {
        rec.insert("app_proto".into(), Value::String(app.into()));
    }
    if let Some((t, c)) = flow.icmp[0] {
        rec.insert("icmp_type".into(), json!(t));
        rec.insert("icmp_code".into(), json!(c));
    }
    if let Some((t, c)) = flow.icmp[1] {
        rec.insert("response_icmp_type".into(), json!(t));
        rec.insert("response_icmp_code".into(), json!(c));
    }
    let age = (flow.end.secs - flow.start.secs).max(0);
    rec.insert(
        "flow".into(),
        json!({
            "pkts_toserver": flow.pkts[0],
            "pkts_toclient": flow.pkts[1],
            "bytes_toserver": flow.bytes[0],
            "bytes_toclient": flow.bytes[1],
            "start": flow.start.to_eve(),
            "end": flow.end.to_eve(),
            "age": age,
            "state": flow.state().as_str(),
            "reason": reason.as_str(),
            "alerted": false,
        }),
    );
    if flow.proto == 6 {
        let all = flow.tcp_flags[0] | flow.tcp_flags[1];
        let mut tcp = Map::new();
        tcp.insert("tcp_flags".into(), Value::String(format!("{all:02x}")));
        tcp.insert(
            "tcp_flags_ts".into(),
            Value::String(format!("{:02x}", flow.tcp_flags[0])),
        );
        tcp.insert(
            "tcp_flags_tc".into(),
            Value::String(format!("{:02x}", flow.tcp_flags[1])),
        );
        tcp_flag_fields(&mut tcp, all);
        tcp.insert(
            "state".into(),
            Value::String(flow.tcp_state.as_str().into()),
        );
        rec.insert("tcp".into(), Value::Object(tcp));
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
    use super::*;

    #[test]
    fn ipv6_is_written_uncompressed_like_suricata() {
        let ip: IpAddr = "2001:4860:4860::8888".parse().unwrap();
        assert_eq!(ip_string(ip), "2001:4860:4860:0000:0000:0000:0000:8888");
        assert_eq!(proto_name(58), "IPv6-ICMP");
    }
}
