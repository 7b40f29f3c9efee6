//! Cisco ASA / FTD syslog messages: `%ASA-<severity>-<id>: <text>`. The common connection,
//! deny and login message ids are mapped to ECS; others keep the id, severity and text.

use std::sync::LazyLock;

use canh_core::{Event, fields as f};
use regex::{Captures, Regex};

use super::{Confidence, LogParser, ParseCtx, ParseError};
use crate::dispatch::{self, Matched};
use crate::norm::{self, ocsf};

/// Parser for Cisco ASA / FTD messages.
pub struct CiscoAsaParser;

const ID: &str = "cisco_asa";

// Constant patterns, exercised by the tests of this file.
fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("constant regex is valid")
}

const EP: &str = r"([^:\s]+):([^/\s]+)/(\d+)";
static BUILT: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"^Built (inbound|outbound) (TCP|UDP|ICMP|GRE) connection (\d+) for {EP} \([^)]*\)(?:\([^)]*\))? to {EP} \([^)]*\)"
    ))
});
static TEARDOWN: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"^Teardown (TCP|UDP|ICMP|GRE) connection (\d+) for {EP}(?:\([^)]*\))? to {EP}(?:\([^)]*\))? duration (\S+) bytes (\d+)(?: (.*))?"
    ))
});
static DENY_ACL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"^Deny (\S+) src ([^:\s]+):([^/\s]+)(?:/(\d+))? dst ([^:\s]+):([^/\s]+)(?:/(\d+))?.*? by access-group "([^"]+)""#,
    )
});
static DENY_FLAGS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:Inbound TCP connection denied|Deny TCP \(no connection\)|Deny inbound UDP) from ([^/\s]+)/(\d+) to ([^/\s]+)/(\d+)(?: flags (.*?))? +on interface (\S+)",
    )
});
static ACCESS_LIST: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^access-list (\S+) (permitted|denied|est-allowed) (\S+) ([^/\s]+)/([^(\s]+)\((\d+)\)(?:\([^)]*\))? -> ([^/\s]+)/([^(\s]+)\((\d+)\)",
    )
});
static AAA: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^AAA user (?:authentication|authorization) (Successful|Rejected) : (?:reason = (.*?) : )?server = +(\S+) : user = (.*?)(?: : user IP = (\S+))?$",
    )
});
static LOGIN: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"^Login (denied|permitted) from ([^/\s]+)/(\d+) to ([^:\s]+):([^/\s]+)/(\S+) for user "([^"]*)""#,
    )
});
static USER_AUTH: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^User authentication (succeeded|failed): (?:IP address: ([^,]+), )?Uname: (\S+)")
});
static EXECUTED: LazyLock<Regex> =
    LazyLock::new(|| re(r"^User '([^']+)' executed the '(.*)' command"));

/// Splits `%ASA-6-302013: text` into (product, severity, id, text).
fn header(msg: &str) -> Option<(&str, u8, &str, &str)> {
    let start = msg.find('%')?;
    let m = &msg[start + 1..];
    let (product, rest) = m.split_once('-')?;
    if !matches!(product, "ASA" | "FTD" | "PIX" | "FWSM") {
        return None;
    }
    let (sev, rest) = rest.split_once('-')?;
    let severity: u8 = sev.parse().ok().filter(|s| *s <= 7)?;
    let (id, text) = rest.split_once(':')?;
    if id.is_empty() || !id.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((product, severity, id, text.trim_start()))
}

fn endpoint(ev: &mut Event, side: &str, c: &Captures<'_>, at: usize) {
    norm::set_text(ev, &format!("observer.{side}.interface.name"), &c[at]);
    let role = if side == "ingress" {
        "source"
    } else {
        "destination"
    };
    norm::set_ip(ev, &format!("{role}.ip"), &c[at + 1]);
    norm::set_port(ev, &format!("{role}.port"), &c[at + 2]);
}

fn network(ev: &mut Event, types: &[&str]) -> (&'static str, u32) {
    norm::set_list(ev, f::EVENT_CATEGORY, &["network"]);
    norm::set_list(ev, f::EVENT_TYPE, types);
    ("cisco_asa.connection", ocsf::NETWORK_ACTIVITY)
}

fn login(ev: &mut Event, ok: bool) -> (&'static str, u32) {
    norm::set_list(ev, f::EVENT_CATEGORY, &["authentication"]);
    norm::set_list(ev, f::EVENT_TYPE, &["start"]);
    ev.set(f::EVENT_OUTCOME, if ok { "success" } else { "failure" });
    ("cisco_asa.auth", ocsf::AUTHENTICATION)
}

fn by_id(id: &str, text: &str, ev: &mut Event) -> Option<(&'static str, u32)> {
    let out = match id {
        "302013" | "302015" | "302017" | "302303" => {
            let c = BUILT.captures(text)?;
            let inbound = &c[1] == "inbound";
            ev.set(
                norm::NETWORK_DIRECTION,
                if inbound { "inbound" } else { "outbound" },
            );
            ev.set(norm::NETWORK_TRANSPORT, c[2].to_ascii_lowercase());
            ev.set("cisco.asa.connection_id", &c[3]);
            // Outbound: the initiator is the second (inside) end.
            let (src, dst) = if inbound { (4, 7) } else { (7, 4) };
            endpoint(ev, "ingress", &c, src);
            endpoint(ev, "egress", &c, dst);
            ev.set(f::EVENT_ACTION, "connection_built");
            network(ev, &["connection", "start", "allowed"])
        }
        "302014" | "302016" | "302018" | "302304" => {
            let c = TEARDOWN.captures(text)?;
            ev.set(norm::NETWORK_TRANSPORT, c[1].to_ascii_lowercase());
            ev.set("cisco.asa.connection_id", &c[2]);
            endpoint(ev, "ingress", &c, 3);
            endpoint(ev, "egress", &c, 6);
            ev.set("cisco.asa.duration", &c[9]);
            norm::set_int(ev, "network.bytes", &c[10]);
            if let Some(reason) = c.get(11) {
                ev.set("cisco.asa.termination_reason", reason.as_str());
            }
            ev.set(f::EVENT_ACTION, "connection_teardown");
            network(ev, &["connection", "end"])
        }
        "106023" => {
            let c = DENY_ACL.captures(text)?;
            ev.set(norm::NETWORK_TRANSPORT, c[1].to_ascii_lowercase());
            norm::set_text(ev, "observer.ingress.interface.name", &c[2]);
            norm::set_ip(ev, f::SOURCE_IP, &c[3]);
            if let Some(p) = c.get(4) {
                norm::set_port(ev, f::SOURCE_PORT, p.as_str());
            }
            norm::set_text(ev, "observer.egress.interface.name", &c[5]);
            norm::set_ip(ev, f::DESTINATION_IP, &c[6]);
            if let Some(p) = c.get(7) {
                norm::set_port(ev, f::DESTINATION_PORT, p.as_str());
            }
            ev.set("rule.name", &c[8]);
            ev.set(f::EVENT_ACTION, "deny");
            network(ev, &["connection", "denied"])
        }
        "106001" | "106006" | "106007" | "106015" => {
            let c = DENY_FLAGS.captures(text)?;
            norm::set_ip(ev, f::SOURCE_IP, &c[1]);
            norm::set_port(ev, f::SOURCE_PORT, &c[2]);
            norm::set_ip(ev, f::DESTINATION_IP, &c[3]);
            norm::set_port(ev, f::DESTINATION_PORT, &c[4]);
            if let Some(flags) = c.get(5) {
                ev.set("cisco.asa.tcp_flags", flags.as_str().trim());
            }
            norm::set_text(ev, "observer.ingress.interface.name", &c[6]);
            let transport = if id == "106006" || id == "106007" {
                "udp"
            } else {
                "tcp"
            };
            ev.set(norm::NETWORK_TRANSPORT, transport);
            ev.set(f::EVENT_ACTION, "deny");
            network(ev, &["connection", "denied"])
        }
        "106100" => {
            let c = ACCESS_LIST.captures(text)?;
            ev.set("rule.name", &c[1]);
            let denied = &c[2] == "denied";
            ev.set(f::EVENT_ACTION, if denied { "deny" } else { "permit" });
            ev.set(norm::NETWORK_TRANSPORT, c[3].to_ascii_lowercase());
            norm::set_text(ev, "observer.ingress.interface.name", &c[4]);
            norm::set_ip(ev, f::SOURCE_IP, &c[5]);
            norm::set_port(ev, f::SOURCE_PORT, &c[6]);
            norm::set_text(ev, "observer.egress.interface.name", &c[7]);
            norm::set_ip(ev, f::DESTINATION_IP, &c[8]);
            norm::set_port(ev, f::DESTINATION_PORT, &c[9]);
            network(
                ev,
                &["connection", if denied { "denied" } else { "allowed" }],
            )
        }
        "113004" | "113005" => {
            let c = AAA.captures(text)?;
            if let Some(reason) = c.get(2) {
                ev.set("cisco.asa.reason", reason.as_str());
            }
            ev.set("cisco.asa.aaa_server", &c[3]);
            norm::set_text(ev, f::USER_NAME, &c[4]);
            if let Some(ip) = c.get(5) {
                norm::set_ip(ev, f::SOURCE_IP, ip.as_str());
            }
            ev.set(f::EVENT_ACTION, "aaa_authentication");
            login(ev, &c[1] == "Successful")
        }
        "605004" | "605005" => {
            let c = LOGIN.captures(text)?;
            norm::set_ip(ev, f::SOURCE_IP, &c[2]);
            norm::set_port(ev, f::SOURCE_PORT, &c[3]);
            norm::set_text(ev, "observer.ingress.interface.name", &c[4]);
            norm::set_ip(ev, f::DESTINATION_IP, &c[5]);
            ev.set(norm::NETWORK_PROTOCOL, &c[6]);
            norm::set_text(ev, f::USER_NAME, &c[7]);
            ev.set(f::EVENT_ACTION, "management_login");
            login(ev, &c[1] == "permitted")
        }
        "611101" | "611102" => {
            let c = USER_AUTH.captures(text)?;
            if let Some(ip) = c.get(2) {
                norm::set_ip(ev, f::SOURCE_IP, ip.as_str());
            }
            ev.set(f::USER_NAME, &c[3]);
            ev.set(f::EVENT_ACTION, "user_authentication");
            login(ev, &c[1] == "succeeded")
        }
        "111008" | "111010" => {
            let c = EXECUTED.captures(text)?;
            ev.set(f::USER_NAME, &c[1]);
            ev.set("cisco.asa.command_line", &c[2]);
            norm::set_list(ev, f::EVENT_CATEGORY, &["configuration"]);
            norm::set_list(ev, f::EVENT_TYPE, &["change"]);
            ev.set(f::EVENT_ACTION, "command_executed");
            ("cisco_asa.config", ocsf::UNKNOWN)
        }
        _ => return None,
    };
    Some(out)
}

/// Program parser entry point (see [`crate::dispatch`]).
pub(crate) fn apply(_program: Option<&str>, msg: &str, ev: &mut Event) -> Option<Matched> {
    let head = &msg.as_bytes()[..msg.len().min(48)];
    memchr::memchr(b'%', head)?;
    let (product, severity, id, text) = header(msg)?;
    ev.set(f::EVENT_CODE, id);
    ev.set("event.severity", severity);
    ev.set("cisco.asa.message_id", id);
    ev.set("observer.product", product);
    ev.set("observer.vendor", "Cisco");
    if let Some(name) = crate::syslog::severity_name(severity) {
        ev.set(norm::LOG_LEVEL, name);
    }
    ev.set(f::MESSAGE, text);
    let (dataset, class_uid) = by_id(id, text, ev).unwrap_or(("cisco_asa.log", ocsf::UNKNOWN));
    Some(Matched {
        module: ID,
        dataset,
        class_uid,
    })
}

impl LogParser for CiscoAsaParser {
    fn id(&self) -> &'static str {
        ID
    }

    fn describe(&self) -> &'static str {
        "Cisco ASA and Firepower Threat Defense syslog messages (%ASA-x-nnnnnn)"
    }

    fn probe(&self, raw: &[u8]) -> Confidence {
        if raw.starts_with(b"%ASA-") || raw.starts_with(b"%FTD-") {
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

    fn run(msg: &str) -> Event {
        let mut ev = Event::new(chrono::Utc::now());
        assert!(apply(None, msg, &mut ev).is_some());
        ev
    }

    #[test]
    fn outbound_built_puts_inside_host_as_source() {
        let ev = run(
            "%ASA-6-302013: Built outbound TCP connection 4 for outside:198.51.100.20/443 (198.51.100.20/443) to inside:10.1.1.5/51515 (203.0.113.2/51515)",
        );
        assert_eq!(ev.get_str("source.ip"), Some("10.1.1.5"));
        assert_eq!(ev.get_str("destination.ip"), Some("198.51.100.20"));
        assert_eq!(ev.get("destination.port"), Some(&443.into()));
        assert_eq!(ev.get_str("event.code"), Some("302013"));
    }

    #[test]
    fn deny_by_access_group() {
        let ev = run(
            r#"%ASA-4-106023: Deny tcp src outside:203.0.113.77/4444 dst inside:10.1.1.9/445 by access-group "outside_in" [0x0, 0x0]"#,
        );
        assert_eq!(ev.get_str("rule.name"), Some("outside_in"));
        assert_eq!(ev.get_str("event.action"), Some("deny"));
        assert_eq!(ev.get("source.port"), Some(&4444.into()));
    }

    #[test]
    fn unknown_id_keeps_code_and_text() {
        let ev = run("%ASA-5-111008: something else entirely");
        assert_eq!(ev.get_str("event.code"), Some("111008"));
        assert_eq!(ev.get_str("message"), Some("something else entirely"));
    }
}
