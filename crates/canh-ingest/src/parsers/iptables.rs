//! Netfilter packet log lines (`iptables -j LOG`, `nft … log`, UFW), as the kernel writes them:
//! `[prefix] IN=eth0 OUT= MAC=… SRC=… DST=… LEN=… PROTO=TCP SPT=… DPT=… SYN …`.

use canh_core::{Event, Value, fields as f};

use super::{Confidence, LogParser, ParseCtx, ParseError};
use crate::dispatch::{self, Matched};
use crate::norm::{self, ocsf};

/// Parser for netfilter LOG lines.
pub struct IptablesParser;

const ID: &str = "iptables";

fn is_netfilter(msg: &str) -> bool {
    let b = msg.as_bytes();
    let head = &b[..b.len().min(256)];
    memchr::memmem::find(head, b"IN=").is_some()
        && memchr::memmem::find(b, b" SRC=").is_some()
        && memchr::memmem::find(b, b" DST=").is_some()
}

/// Program parser entry point (see [`crate::dispatch`]).
pub(crate) fn apply(program: Option<&str>, msg: &str, ev: &mut Event) -> Option<Matched> {
    if !matches!(program, None | Some("kernel")) || !is_netfilter(msg) {
        return None;
    }
    let in_at = msg.find("IN=")?;
    let mut prefix = msg[..in_at].trim();
    // The kernel's uptime stamp: `[12345.678901]`.
    if prefix.starts_with('[')
        && let Some(close) = prefix.find(']')
        && prefix[1..close].trim().parse::<f64>().is_ok()
    {
        prefix = prefix[close + 1..].trim();
    }
    let mut flags = Vec::new();
    for word in msg[in_at..].split(' ').filter(|w| !w.is_empty()) {
        let Some((k, v)) = word.split_once('=') else {
            flags.push(Value::from(word));
            continue;
        };
        match k {
            "IN" => norm::set_text(ev, "observer.ingress.interface.name", v),
            "OUT" => norm::set_text(ev, "observer.egress.interface.name", v),
            "SRC" => norm::set_ip(ev, f::SOURCE_IP, v),
            "DST" => norm::set_ip(ev, f::DESTINATION_IP, v),
            "SPT" => norm::set_port(ev, f::SOURCE_PORT, v),
            "DPT" => norm::set_port(ev, f::DESTINATION_PORT, v),
            "PROTO" => {
                let p = v.to_ascii_lowercase();
                let transport = match p.parse::<u8>() {
                    Ok(n) => norm::transport_name(n).map_or(p.clone(), str::to_owned),
                    Err(_) => p,
                };
                ev.set(norm::NETWORK_TRANSPORT, transport);
            }
            "LEN" => norm::set_int(ev, "iptables.length", v),
            "TTL" => norm::set_int(ev, "iptables.ttl", v),
            "ID" => norm::set_int(ev, "iptables.id", v),
            "WINDOW" => norm::set_int(ev, "iptables.tcp.window", v),
            "MAC" => norm::set_text(ev, "iptables.mac", v),
            "TYPE" => norm::set_int(ev, "iptables.icmp.type", v),
            "CODE" => norm::set_int(ev, "iptables.icmp.code", v),
            other => {
                let key = format!("iptables.{}", other.to_ascii_lowercase());
                norm::set_text(ev, &key, v);
            }
        }
    }
    if !flags.is_empty() {
        ev.set("iptables.flags", Value::Array(flags));
    }
    norm::set_list(ev, f::EVENT_CATEGORY, &["network"]);
    let upper = prefix.to_ascii_uppercase();
    let denied = ["DROP", "REJECT", "DENY", "BLOCK"]
        .iter()
        .any(|w| upper.contains(w));
    let allowed = ["ACCEPT", "ALLOW"].iter().any(|w| upper.contains(w));
    match (denied, allowed) {
        (true, _) => {
            norm::set_list(ev, f::EVENT_TYPE, &["connection", "denied"]);
            ev.set(f::EVENT_ACTION, "drop");
        }
        (false, true) => {
            norm::set_list(ev, f::EVENT_TYPE, &["connection", "allowed"]);
            ev.set(f::EVENT_ACTION, "accept");
        }
        _ => norm::set_list(ev, f::EVENT_TYPE, &["connection"]),
    }
    if !prefix.is_empty() {
        ev.set("iptables.prefix", prefix);
    }
    Some(Matched {
        module: ID,
        dataset: "iptables.log",
        class_uid: ocsf::NETWORK_ACTIVITY,
    })
}

impl LogParser for IptablesParser {
    fn id(&self) -> &'static str {
        ID
    }

    fn describe(&self) -> &'static str {
        "Netfilter (iptables, nftables, UFW) packet log lines from the kernel"
    }

    fn probe(&self, raw: &[u8]) -> Confidence {
        let head = &raw[..raw.len().min(256)];
        if !raw.starts_with(b"<")
            && memchr::memmem::find(head, b"IN=").is_some()
            && memchr::memmem::find(head, b" SRC=").is_some()
        {
            Confidence::Medium
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
    fn ufw_block_line() {
        let msg = "[ 5512.254133] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=203.0.113.5 DST=10.0.0.4 LEN=44 TOS=0x00 PREC=0x00 TTL=242 ID=54321 PROTO=TCP SPT=51432 DPT=3389 WINDOW=1024 RES=0x00 SYN URGP=0";
        let mut ev = Event::new(chrono::Utc::now());
        assert!(apply(Some("kernel"), msg, &mut ev).is_some());
        assert_eq!(ev.get_str("iptables.prefix"), Some("[UFW BLOCK]"));
        assert_eq!(ev.get_str("network.transport"), Some("tcp"));
        assert_eq!(ev.get("destination.port"), Some(&3389.into()));
        assert_eq!(ev.get_str("event.action"), Some("drop"));
        assert_eq!(ev.get("observer.egress.interface.name"), None);
    }
}
