//! pfSense / OPNsense `filterlog` lines: comma-separated packet filter records
//! (rule, interface, reason, action, direction, IP version, then IPv4 or IPv6 fields, then
//! TCP/UDP/ICMP fields), as described in pfSense's "filter log format" documentation.

use canh_core::{Event, fields as f};

use super::{Confidence, LogParser, ParseCtx, ParseError};
use crate::dispatch::{self, Matched};
use crate::norm::{self, ocsf};

/// Parser for pfSense `filterlog` records.
pub struct PfsenseParser;

const ID: &str = "pfsense";

/// Program parser entry point (see [`crate::dispatch`]).
pub(crate) fn apply(program: Option<&str>, msg: &str, ev: &mut Event) -> Option<Matched> {
    if program != Some("filterlog") {
        return None;
    }
    let cols: Vec<&str> = msg.trim().split(',').collect();
    if cols.len() < 9 {
        return None;
    }
    let get = |i: usize| cols.get(i).copied().unwrap_or("");
    norm::set_text(ev, "rule.id", get(3));
    norm::set_text(ev, "pfsense.rule_number", get(0));
    norm::set_text(ev, "pfsense.sub_rule_number", get(1));
    norm::set_text(ev, "pfsense.anchor", get(2));
    norm::set_text(ev, "observer.ingress.interface.name", get(4));
    norm::set_text(ev, "event.reason", get(5));
    let action = get(6);
    norm::set_text(ev, f::EVENT_ACTION, action);
    match get(7) {
        "in" => ev.set(norm::NETWORK_DIRECTION, "inbound"),
        "out" => ev.set(norm::NETWORK_DIRECTION, "outbound"),
        _ => {}
    }
    // Index of the first protocol-specific column, and the protocol name.
    let (next, proto) = match get(8) {
        "4" => {
            ev.set("network.type", "ipv4");
            norm::set_text(ev, "pfsense.tos", get(9));
            norm::set_int(ev, "pfsense.ttl", get(11));
            norm::set_int(ev, "pfsense.id", get(12));
            norm::set_text(ev, "pfsense.flags", get(14));
            norm::set_int(ev, "network.iana_number", get(15));
            norm::set_int(ev, "network.bytes", get(17));
            norm::set_ip(ev, f::SOURCE_IP, get(18));
            norm::set_ip(ev, f::DESTINATION_IP, get(19));
            (20, get(16).to_ascii_lowercase())
        }
        "6" => {
            ev.set("network.type", "ipv6");
            norm::set_text(ev, "pfsense.class", get(9));
            norm::set_text(ev, "pfsense.flow_label", get(10));
            norm::set_int(ev, "pfsense.hop_limit", get(11));
            norm::set_int(ev, "network.iana_number", get(13));
            norm::set_int(ev, "network.bytes", get(14));
            norm::set_ip(ev, f::SOURCE_IP, get(15));
            norm::set_ip(ev, f::DESTINATION_IP, get(16));
            (17, get(12).to_ascii_lowercase())
        }
        _ => return None,
    };
    if !proto.is_empty() {
        ev.set(norm::NETWORK_TRANSPORT, proto.as_str());
    }
    match proto.as_str() {
        "tcp" => {
            norm::set_port(ev, f::SOURCE_PORT, get(next));
            norm::set_port(ev, f::DESTINATION_PORT, get(next + 1));
            norm::set_int(ev, "pfsense.data_length", get(next + 2));
            norm::set_text(ev, "pfsense.tcp_flags", get(next + 3));
            norm::set_text(ev, "pfsense.tcp_options", get(next + 8));
        }
        "udp" => {
            norm::set_port(ev, f::SOURCE_PORT, get(next));
            norm::set_port(ev, f::DESTINATION_PORT, get(next + 1));
            norm::set_int(ev, "pfsense.data_length", get(next + 2));
        }
        "icmp" | "ipv6-icmp" => norm::set_text(ev, "pfsense.icmp_type", get(next)),
        _ => {}
    }
    norm::set_list(ev, f::EVENT_CATEGORY, &["network"]);
    let kind = match action {
        "block" | "reject" => "denied",
        "pass" => "allowed",
        _ => "info",
    };
    norm::set_list(ev, f::EVENT_TYPE, &["connection", kind]);
    Some(Matched {
        module: ID,
        dataset: "pfsense.filterlog",
        class_uid: ocsf::NETWORK_ACTIVITY,
    })
}

impl LogParser for PfsenseParser {
    fn id(&self) -> &'static str {
        ID
    }

    fn describe(&self) -> &'static str {
        "pfSense and OPNsense filterlog packet filter records"
    }

    fn probe(&self, raw: &[u8]) -> Confidence {
        let head = &raw[..raw.len().min(200)];
        if memchr::memmem::find(head, b"filterlog").is_some() {
            Confidence::High
        } else {
            Confidence::No
        }
    }

    fn parse(&self, raw: &[u8], cx: &ParseCtx) -> Result<Event, ParseError> {
        dispatch::parse_standalone(ID, raw, cx, apply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_tcp_block() {
        let msg = "5,,,1000000103,igb1,match,block,in,4,0x0,,242,54321,0,none,6,tcp,44,203.0.113.5,192.0.2.10,51432,3389,0,S,1684443325,,1024,,mss";
        let mut ev = Event::new(chrono::Utc::now());
        assert!(apply(Some("filterlog"), msg, &mut ev).is_some());
        assert_eq!(ev.get_str("source.ip"), Some("203.0.113.5"));
        assert_eq!(ev.get("destination.port"), Some(&3389.into()));
        assert_eq!(ev.get_str("event.action"), Some("block"));
        assert_eq!(ev.get_str("pfsense.tcp_flags"), Some("S"));
    }
}
