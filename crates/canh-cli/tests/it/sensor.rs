//! `canh sensor` end to end: a real capture in, `eve.json` out.

use std::path::Path;
use std::process::Command;

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/pcap/suricata-verify/tests/decode-teredo-01/input.pcap"
);

#[test]
fn sensor_writes_eve_json_for_a_capture() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("logs");
    let status = Command::new(env!("CARGO_BIN_EXE_canh"))
        .args(["sensor", "-r", CAPTURE, "-l"])
        .arg(&log_dir)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(log_dir.join("eve.json")).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |t: &str| records.iter().filter(|r| r["event_type"] == t).count();
    assert!(count("flow") >= 5);
    assert!(count("dns") >= 10);
    assert!(count("http") >= 2);
    assert_eq!(count("stats"), 1);
    assert!(
        records
            .iter()
            .any(|r| r["event_type"] == "http" && r["http"]["hostname"] == "www.wireshark.org")
    );
}

#[test]
fn sensor_rejects_a_file_that_is_not_a_capture() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("not-a-pcap.pcap");
    std::fs::write(&bogus, b"this is not a capture file at all").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_canh"))
        .args(["sensor", "-r"])
        .arg(&bogus)
        .arg("-l")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a pcap or pcapng file"), "{err}");
    assert!(Path::new(&dir.path().join("eve.json")).is_file());
}

const ET_DNS_RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/et-open/rules/emerging-dns.rules"
);

#[test]
fn sensor_rules_check_names_unsupported_keywords() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("local.rules");
    std::fs::write(
        &rules,
        "alert http any any -> any any (msg:\"ok\"; http.uri; content:\"/x\"; sid:1;)\n\
         alert tcp any any -> any any (msg:\"xb\"; xbits:set,a,track ip_src; sid:2;)\n\
         # alert tcp any any -> any any (msg:\"disabled\"; sid:3;)\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_canh"))
        .args(["sensor", "rules", "check"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sid 1: supported"), "{text}");
    assert!(
        text.contains("sid 2: unsupported (keyword xbits)"),
        "{text}"
    );
    assert!(text.contains("2 rules: 1 supported (50.0 %)"), "{text}");
    assert!(!text.contains("sid 3"), "{text}");
}

#[test]
fn sensor_rules_check_summarises_et_open_dns_rules() {
    let out = Command::new(env!("CARGO_BIN_EXE_canh"))
        .args(["sensor", "rules", "check", "--summary-only", ET_DNS_RULES])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default();
    // "N rules: M supported (P %), ..."
    let pct: f64 = first
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(' '))
        .and_then(|(p, _)| p.parse().ok())
        .unwrap_or(0.0);
    assert!(pct >= 90.0, "{text}");
    assert!(first.contains("unsupported"), "{text}");
}

#[test]
fn sensor_matches_rules_and_writes_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("local.rules");
    std::fs::write(
        &rules,
        "alert dns any any -> any any (msg:\"wireshark lookup\"; dns.query; content:\"wireshark\"; nocase; sid:1000001; rev:2;)\n",
    )
    .unwrap();
    let log_dir = dir.path().join("logs");
    let status = Command::new(env!("CARGO_BIN_EXE_canh"))
        .args(["sensor", "-r", CAPTURE, "-S"])
        .arg(&rules)
        .arg("-l")
        .arg(&log_dir)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(log_dir.join("eve.json")).unwrap();
    let alerts: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event_type"] == "alert")
        .collect();
    assert!(!alerts.is_empty());
    for a in &alerts {
        assert_eq!(a["alert"]["signature_id"], 1_000_001);
        assert_eq!(a["alert"]["rev"], 2);
        assert_eq!(a["alert"]["signature"], "wireshark lookup");
        assert_eq!(a["app_proto"], "dns");
        assert!(
            a["dns"]["queries"][0]["rrname"]
                .as_str()
                .unwrap()
                .contains("wireshark")
        );
    }
}

#[test]
fn sensor_writes_a_block_list_for_a_real_port_scan() {
    let scan = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/datasets/pcap/scans/esnet-masscan/tcp_0_1000_20190821.pcap"
    );
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_canh"))
        .args(["sensor", "-r", scan, "-l"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let nft = std::fs::read_to_string(dir.path().join("blocklist.nft")).unwrap();
    assert!(nft.contains("table inet canh"));
    let feed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("blocklist.json")).unwrap())
            .unwrap();
    assert_eq!(feed["count"], 1);
    let ip = feed["entries"][0]["ip"].as_str().unwrap();
    assert!(nft.contains(ip));
}
