//! Suricata EVE JSON records (alert, flow, dns, http, tls, ssh, fileinfo, anomaly, stats, …).
//! The whole record is kept flattened under `suricata.eve.*`; the common parts are mapped to
//! ECS (`source.*`, `destination.*`, `network.*`, `rule.*`, `dns.*`, `url.*`, `http.*`, `tls.*`,
//! `file.*`).

use canh_core::{Event, Value, fields as f};
use chrono::Offset;
use serde_json::Map;

use super::{Confidence, LogParser, ParseCtx, ParseError};
use crate::norm::{self, ocsf};

/// Parser for Suricata EVE JSON.
pub struct SuricataEveParser;

const ID: &str = "suricata_eve";

fn s<'a>(obj: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut cur = obj;
    for p in parents {
        cur = cur.get(*p)?.as_object()?;
    }
    cur.get(*last)
}

/// Copies `path` of the EVE object to the ECS field `to` when present and not null.
fn copy(ev: &mut Event, obj: &Map<String, Value>, path: &[&str], to: &str) {
    if let Some(v) = s(obj, path).filter(|v| !v.is_null()) {
        ev.set(to, v.clone());
    }
}

fn time(ev: &mut Event, obj: &Map<String, Value>, path: &[&str], to: Option<&str>) -> bool {
    let Some(text) = s(obj, path).and_then(Value::as_str) else {
        return false;
    };
    let Some((t, _)) = crate::timefmt::parse_iso(text.as_bytes(), chrono::Utc.fix()) else {
        return false;
    };
    match to {
        Some(name) => ev.set(name, crate::timefmt::rfc3339_millis(t)),
        None => ev.timestamp = t,
    }
    true
}

fn map_common(ev: &mut Event, o: &Map<String, Value>) {
    if let Some(ip) = s(o, &["src_ip"]).and_then(Value::as_str) {
        norm::set_ip(ev, f::SOURCE_IP, ip);
    }
    if let Some(ip) = s(o, &["dest_ip"]).and_then(Value::as_str) {
        norm::set_ip(ev, f::DESTINATION_IP, ip);
    }
    copy(ev, o, &["src_port"], f::SOURCE_PORT);
    copy(ev, o, &["dest_port"], f::DESTINATION_PORT);
    if let Some(p) = s(o, &["proto"]).and_then(Value::as_str) {
        ev.set(norm::NETWORK_TRANSPORT, p.to_ascii_lowercase());
    }
    if let Some(p) = s(o, &["app_proto"])
        .and_then(Value::as_str)
        .filter(|p| *p != "failed")
    {
        ev.set(norm::NETWORK_PROTOCOL, p.to_ascii_lowercase());
    }
    copy(ev, o, &["community_id"], "network.community_id");
    copy(ev, o, &["in_iface"], "observer.ingress.interface.name");
    copy(ev, o, &["vlan"], "network.vlan.id");
    copy(ev, o, &["host"], "observer.name");
    copy(ev, o, &["flow", "pkts_toserver"], "source.packets");
    copy(ev, o, &["flow", "pkts_toclient"], "destination.packets");
    copy(ev, o, &["flow", "bytes_toserver"], "source.bytes");
    copy(ev, o, &["flow", "bytes_toclient"], "destination.bytes");
    time(ev, o, &["flow", "start"], Some("event.start"));
    time(ev, o, &["flow", "end"], Some("event.end"));
}

/// `TLS 1.2` / `TLSv1.3` / `SSLv3` → (`tls`, `1.2`).
fn tls_version(v: &str) -> (String, String) {
    let lower = v.to_ascii_lowercase();
    if let Some((p, n)) = lower.split_once(' ') {
        return (p.to_owned(), n.to_owned());
    }
    match lower.find(|c: char| c.is_ascii_digit()) {
        Some(at) => (
            lower[..at].trim_end_matches('v').to_owned(),
            lower[at..].to_owned(),
        ),
        None => (lower, String::new()),
    }
}

fn map_kind(ev: &mut Event, o: &Map<String, Value>, kind: &str) -> u32 {
    match kind {
        "alert" => {
            ev.set(f::EVENT_KIND, "alert");
            norm::set_list(ev, f::EVENT_CATEGORY, &["network", "intrusion_detection"]);
            let blocked = s(o, &["alert", "action"]).and_then(Value::as_str) == Some("blocked");
            norm::set_list(
                ev,
                f::EVENT_TYPE,
                &[if blocked { "denied" } else { "allowed" }],
            );
            copy(ev, o, &["alert", "action"], f::EVENT_ACTION);
            if let Some(id) = s(o, &["alert", "signature_id"]).and_then(Value::as_u64) {
                ev.set("rule.id", id.to_string());
            }
            copy(ev, o, &["alert", "signature"], "rule.name");
            copy(ev, o, &["alert", "category"], "rule.category");
            copy(ev, o, &["alert", "rev"], "rule.version");
            copy(ev, o, &["alert", "severity"], norm::EVENT_SEVERITY);
            copy(ev, o, &["alert", "signature"], f::MESSAGE);
            ocsf::DETECTION_FINDING
        }
        "dns" => {
            norm::set_list(ev, f::EVENT_CATEGORY, &["network"]);
            norm::set_list(ev, f::EVENT_TYPE, &["protocol"]);
            copy(ev, o, &["dns", "type"], "dns.type");
            copy(ev, o, &["dns", "id"], "dns.id");
            copy(ev, o, &["dns", "rrname"], "dns.question.name");
            copy(ev, o, &["dns", "rrtype"], "dns.question.type");
            copy(ev, o, &["dns", "rcode"], "dns.response_code");
            // EVE v2 and later put queries in a list.
            copy(ev, o, &["dns", "queries"], "dns.queries");
            if let Some(q) = s(o, &["dns", "queries"]).and_then(Value::as_array) {
                if let Some(first) = q.first().and_then(Value::as_object) {
                    copy(ev, first, &["rrname"], "dns.question.name");
                    copy(ev, first, &["rrtype"], "dns.question.type");
                }
                ev.remove("dns.queries");
            }
            ocsf::DNS_ACTIVITY
        }
        "http" => {
            norm::set_list(ev, f::EVENT_CATEGORY, &["network", "web"]);
            norm::set_list(ev, f::EVENT_TYPE, &["protocol", "access"]);
            copy(ev, o, &["http", "hostname"], "url.domain");
            copy(ev, o, &["http", "url"], "url.original");
            copy(ev, o, &["http", "http_method"], "http.request.method");
            copy(ev, o, &["http", "status"], "http.response.status_code");
            copy(ev, o, &["http", "http_user_agent"], "user_agent.original");
            copy(ev, o, &["http", "http_refer"], "http.request.referrer");
            copy(ev, o, &["http", "length"], "http.response.body.bytes");
            copy(
                ev,
                o,
                &["http", "http_content_type"],
                "http.response.mime_type",
            );
            if let Some(v) = s(o, &["http", "protocol"]).and_then(Value::as_str) {
                ev.set("http.version", v.trim_start_matches("HTTP/"));
            }
            ocsf::HTTP_ACTIVITY
        }
        "tls" => {
            norm::set_list(ev, f::EVENT_CATEGORY, &["network"]);
            norm::set_list(ev, f::EVENT_TYPE, &["protocol"]);
            copy(ev, o, &["tls", "sni"], "tls.client.server_name");
            // Suricata writes `TLS 1.2`, `TLSv1.3` or `SSLv3`; ECS splits protocol and version.
            if let Some(v) = s(o, &["tls", "version"]).and_then(Value::as_str) {
                let (proto, num) = tls_version(v);
                ev.set("tls.version_protocol", proto);
                if !num.is_empty() {
                    ev.set("tls.version", num);
                }
            }
            copy(ev, o, &["tls", "subject"], "tls.server.subject");
            copy(ev, o, &["tls", "issuerdn"], "tls.server.issuer");
            copy(ev, o, &["tls", "serial"], "tls.server.x509.serial_number");
            copy(ev, o, &["tls", "notbefore"], "tls.server.not_before");
            copy(ev, o, &["tls", "notafter"], "tls.server.not_after");
            copy(ev, o, &["tls", "ja3", "hash"], "tls.client.ja3");
            copy(ev, o, &["tls", "ja3s", "hash"], "tls.server.ja3s");
            copy(ev, o, &["tls", "ja4"], "tls.client.ja4");
            if let Some(fp) = s(o, &["tls", "fingerprint"]).and_then(Value::as_str) {
                ev.set(
                    "tls.server.hash.sha1",
                    fp.replace(':', "").to_ascii_uppercase(),
                );
            }
            ocsf::NETWORK_ACTIVITY
        }
        "ssh" => {
            norm::set_list(ev, f::EVENT_CATEGORY, &["network"]);
            norm::set_list(ev, f::EVENT_TYPE, &["protocol"]);
            ocsf::SSH_ACTIVITY
        }
        "fileinfo" => {
            norm::set_list(ev, f::EVENT_CATEGORY, &["network", "file"]);
            norm::set_list(ev, f::EVENT_TYPE, &["info"]);
            copy(ev, o, &["fileinfo", "filename"], "file.name");
            copy(ev, o, &["fileinfo", "size"], "file.size");
            copy(ev, o, &["fileinfo", "md5"], "file.hash.md5");
            copy(ev, o, &["fileinfo", "sha1"], "file.hash.sha1");
            copy(ev, o, &["fileinfo", "sha256"], "file.hash.sha256");
            copy(ev, o, &["fileinfo", "magic"], "file.type");
            ocsf::FILE_ACTIVITY
        }
        "anomaly" => {
            norm::set_list(ev, f::EVENT_CATEGORY, &["network"]);
            norm::set_list(ev, f::EVENT_TYPE, &["info"]);
            copy(ev, o, &["anomaly", "event"], f::EVENT_ACTION);
            copy(ev, o, &["anomaly", "event"], f::MESSAGE);
            ocsf::NETWORK_ACTIVITY
        }
        "stats" => {
            ev.set(f::EVENT_KIND, "metric");
            ocsf::UNKNOWN
        }
        "flow" | "netflow" => {
            norm::set_list(ev, f::EVENT_CATEGORY, &["network"]);
            norm::set_list(ev, f::EVENT_TYPE, &["connection", "end"]);
            copy(ev, o, &["flow", "state"], "network.connection.state");
            copy(ev, o, &["flow", "reason"], "event.reason");
            ocsf::NETWORK_ACTIVITY
        }
        _ => {
            norm::set_list(ev, f::EVENT_CATEGORY, &["network"]);
            ocsf::NETWORK_ACTIVITY
        }
    }
}

impl LogParser for SuricataEveParser {
    fn id(&self) -> &'static str {
        ID
    }

    fn describe(&self) -> &'static str {
        "Suricata EVE JSON (alerts, flows and protocol records)"
    }

    fn probe(&self, raw: &[u8]) -> Confidence {
        if norm::first_non_ws(raw) == Some(b'{') && norm::head_contains(raw, 600, b"\"event_type\"")
        {
            Confidence::High
        } else {
            Confidence::No
        }
    }

    fn parse(&self, raw: &[u8], cx: &ParseCtx) -> Result<Event, ParseError> {
        let text = norm::decode(raw);
        let obj = norm::json_object(ID, &text.s)?;
        let kind = s(&obj, &["event_type"])
            .and_then(Value::as_str)
            .ok_or_else(|| ParseError::invalid(ID, "missing event_type"))?
            .to_owned();
        let mut ev = norm::new_event(cx.received(), &text, cx);
        if !time(&mut ev, &obj, &["timestamp"], None) {
            norm::add_parse_error(&mut ev, "missing or invalid timestamp");
        }
        map_common(&mut ev, &obj);
        let class_uid = map_kind(&mut ev, &obj, &kind);
        if ev.get(f::EVENT_KIND).is_none() {
            ev.set(f::EVENT_KIND, "event");
        }
        norm::flatten_under(&mut ev, "suricata.eve", &Value::Object(obj), 0);
        let dataset = format!("suricata_eve.{kind}");
        norm::tag(&mut ev, ID, &dataset, class_uid);
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_maps_rule_and_kind() {
        let raw = br#"{"timestamp":"2017-04-07T22:24:37.251547+0100","flow_id":586497171462735,"event_type":"alert","src_ip":"192.168.0.5","src_port":41946,"dest_ip":"203.0.113.8","dest_port":80,"proto":"TCP","alert":{"action":"allowed","gid":1,"signature_id":2019236,"rev":3,"signature":"ET EXPLOIT bash CGI","category":"Attempted Administrator Privilege Gain","severity":1}}"#;
        let ev = SuricataEveParser.parse(raw, &ParseCtx::default()).unwrap();
        assert_eq!(ev.get_str("event.kind"), Some("alert"));
        assert_eq!(ev.get_str("rule.id"), Some("2019236"));
        assert_eq!(ev.get_str("network.transport"), Some("tcp"));
        assert_eq!(ev.get("suricata.eve.alert.gid"), Some(&1.into()));
        assert_eq!(
            ev.timestamp.to_rfc3339(),
            "2017-04-07T21:24:37.251547+00:00"
        );
    }
}
