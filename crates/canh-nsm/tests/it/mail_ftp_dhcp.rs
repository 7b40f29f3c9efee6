//! SMTP, FTP and DHCP records on real captures of the suricata-verify corpus: the protocol
//! objects Canh writes are pinned as snapshots (header fields that depend on the flow, such
//! as `flow_id`, are left out).

use canh_nsm::{Sensor, SensorConfig};
use serde_json::{Map, Value};
use std::path::Path;

const SV: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/pcap/suricata-verify/tests"
);

fn run(rel: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let sensor = Sensor::new(SensorConfig::default(), &mut out);
    canh_nsm::run_capture_file(&Path::new(SV).join(rel), sensor).expect("capture reads");
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("valid EVE line"))
        .collect()
}

/// The records of `event_type`, with the fields a snapshot should pin.
fn records(recs: &[Value], event_type: &str, extra: &[&str]) -> Vec<Value> {
    recs.iter()
        .filter(|r| r["event_type"] == event_type)
        .map(|r| {
            let mut o = Map::new();
            for k in [
                "src_ip",
                "src_port",
                "dest_ip",
                "dest_port",
                "tx_id",
                "pcap_cnt",
            ]
            .iter()
            .chain([event_type].iter())
            .chain(extra)
            {
                if let Some(v) = r.get(*k) {
                    o.insert((*k).to_string(), v.clone());
                }
            }
            Value::Object(o)
        })
        .collect()
}

fn app_proto_of_flows(recs: &[Value]) -> Vec<String> {
    recs.iter()
        .filter(|r| r["event_type"] == "flow")
        .filter_map(|r| r["app_proto"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn smtp_message_with_attachment() {
    let recs = run("smtp-file-data-01/input.pcap");
    let smtp = records(&recs, "smtp", &["email"]);
    assert_eq!(smtp.len(), 1);
    assert_eq!(app_proto_of_flows(&recs), vec!["smtp"]);
    // Keys sorted: serde_json keeps insertion order when another crate of the build asks for it.
    insta::with_settings!({sort_maps => true}, {
        insta::assert_json_snapshot!(smtp);
    });
}

#[test]
fn smtp_pipelined_reset_sequence() {
    let recs = run("smtp-pipelined-post-data-rset-sequence/input.pcap");
    let smtp = records(&recs, "smtp", &["email"]);
    assert_eq!(smtp.len(), 2);
    // Keys sorted: serde_json keeps insertion order when another crate of the build asks for it.
    insta::with_settings!({sort_maps => true}, {
        insta::assert_json_snapshot!(smtp);
    });
}

#[test]
fn smtp_starttls_hands_over_to_tls() {
    let recs = run("smtp-startssl/input.pcap");
    let smtp = records(&recs, "smtp", &["email"]);
    assert_eq!(smtp.len(), 1);
    assert!(smtp[0].get("email").is_none());
    let flow = recs
        .iter()
        .find(|r| r["event_type"] == "flow" && r["app_proto"] == "tls")
        .expect("the session continues as TLS");
    assert_eq!(flow["app_proto_orig"], "smtp");
    // Keys sorted: serde_json keeps insertion order when another crate of the build asks for it.
    insta::with_settings!({sort_maps => true}, {
        insta::assert_json_snapshot!(smtp);
    });
}

#[test]
fn ftp_active_and_passive_ports() {
    let recs = run("ftp/ftp-bounce/test.pcap");
    let ftp = records(&recs, "ftp", &[]);
    assert!(ftp.iter().any(|r| r["ftp"]["command"] == "PORT"
        && r["ftp"]["dynamic_port"] == 80
        && r["ftp"]["mode"] == "active"));
    // Keys sorted: serde_json keeps insertion order when another crate of the build asks for it.
    insta::with_settings!({sort_maps => true}, {
        insta::assert_json_snapshot!(ftp);
    });
    let recs = run("ftp-epsv/input.pcap");
    let epsv: Vec<Value> = records(&recs, "ftp", &[])
        .into_iter()
        .filter(|r| r["ftp"]["command"] == "EPSV")
        .collect();
    assert_eq!(epsv.len(), 4);
    assert_eq!(epsv[0]["ftp"]["dynamic_port"], 58612);
    assert_eq!(epsv[2]["ftp"]["dynamic_port"], 36986);
    assert_eq!(epsv[0]["ftp"]["mode"], "passive");
}

#[test]
fn dhcp_request_and_ack() {
    let recs = run("dhcp-eve-extended/input.pcap");
    let dhcp = records(&recs, "dhcp", &[]);
    assert_eq!(dhcp.len(), 2);
    assert_eq!(app_proto_of_flows(&recs), vec!["dhcp"]);
    // Keys sorted: serde_json keeps insertion order when another crate of the build asks for it.
    insta::with_settings!({sort_maps => true}, {
        insta::assert_json_snapshot!(dhcp);
    });
}

#[test]
fn dhcp_option_overload_is_read() {
    // Routers and DNS servers of these offers and acks sit in the `file` / `sname` fields.
    let recs = run("dhcp-option-52-overload/input.pcap");
    let dhcp = records(&recs, "dhcp", &[]);
    let with_router = dhcp
        .iter()
        .filter(|r| {
            r["dhcp"]["routers"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .count();
    assert!(with_router >= 4, "{dhcp:?}");
    // Keys sorted: serde_json keeps insertion order when another crate of the build asks for it.
    insta::with_settings!({sort_maps => true}, {
        insta::assert_json_snapshot!(dhcp);
    });
}
