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
