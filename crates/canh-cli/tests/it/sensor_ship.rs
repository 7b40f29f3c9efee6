//! `canh sensor --ship`: EVE records reach the server on the endpoint agent's no-loss path,
//! through a real enrolment, mutual TLS, a server outage and a sensor killed with SIGKILL.

use crate::server::{Server, canh, search_json_from, start_server_with};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::Stdio;

const SCAN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/pcap/scans/esnet-masscan/udp_0_1000_20190821.pcap"
);
const WEB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/pcap/suricata-verify/tests/decode-teredo-01/input.pcap"
);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Ports {
    enrol: u16,
    agents: u16,
}

fn start_server(data: &Path, ports: &Ports) -> Server {
    start_server_with(
        data,
        &[
            ("CANH_AGENTS__ENABLED", "true".to_owned()),
            ("CANH_AGENTS__LISTEN", format!("127.0.0.1:{}", ports.agents)),
            (
                "CANH_AGENTS__ENROL_LISTEN",
                format!("127.0.0.1:{}", ports.enrol),
            ),
        ],
    )
}

fn eve_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stored(data: &Path, agent_id: &str) -> Vec<Value> {
    search_json_from(data, &format!("agent.id:{agent_id}"), "2000-01-01")
}

#[test]
fn shipped_records_survive_a_server_outage_and_a_killed_sensor_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let state = dir.path().join("sensor-state");
    let ports = Ports {
        enrol: free_port(),
        agents: free_port(),
    };

    // Enrol the sensor with a one-time token from the API.
    let server = start_server(&data, &ports);
    let api_token = std::fs::read_to_string(data.join("server.token")).unwrap();
    let text = ureq::post(&format!("{}/api/v1/agents/enrolment-tokens", server.url))
        .header("Authorization", &format!("Bearer {}", api_token.trim()))
        .header("Content-Type", "application/json")
        .send(r#"{"ttl_secs": 600}"#)
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    let out = canh()
        .args(["sensor", "enrol", "--server"])
        .arg(format!("127.0.0.1:{}", ports.enrol))
        .args(["--token", body["token"].as_str().unwrap()])
        .args(["--ca-pin", body["ca_pin"].as_str().unwrap()])
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let enrolled = String::from_utf8_lossy(&out.stdout).into_owned();
    let agent_id = enrolled
        .strip_prefix("enrolled as ")
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("{enrolled}"))
        .to_owned();

    // The server goes down; the sensor reads a scan capture, spools every record and is killed
    // with SIGKILL while it waits for a server that does not answer.
    drop(server);
    let mut sensor = canh()
        .args(["sensor", "-r", SCAN, "-l"])
        .arg(dir.path().join("scan"))
        .arg("--ship")
        .arg(&state)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = sensor.stderr.take().unwrap();
    let mut spooled_line = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains("events spooled for the server") {
            spooled_line = line;
            break;
        }
    }
    sensor.kill().unwrap();
    sensor.wait().unwrap();
    let scan = eve_lines(&dir.path().join("scan/eve.json"));
    assert!(scan.len() > 1000, "{}", scan.len());
    assert!(
        spooled_line.starts_with(&format!("{} events spooled", scan.len())),
        "{spooled_line}"
    );
    assert!(spooled_line.contains("0 lost"), "{spooled_line}");

    // The server is back; the next run ships what the killed one left, then its own records.
    let _server = start_server(&data, &ports);
    let out = canh()
        .args(["sensor", "-r", WEB, "-l"])
        .arg(dir.path().join("web"))
        .arg("--ship")
        .arg(&state)
        .args(["--ship-wait", "120"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("everything acknowledged"), "{err}");
    let web = eve_lines(&dir.path().join("web/eve.json"));

    let events = stored(&data, &agent_id);
    assert_eq!(events.len(), scan.len() + web.len());
    let seqs: BTreeSet<u64> = events
        .iter()
        .map(|e| e["canh.agent.seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), events.len(), "a record was stored twice");
    assert_eq!(seqs.first(), Some(&1));
    assert_eq!(seqs.last(), Some(&(events.len() as u64)));
    // Every record type arrives, normalised the way `canh ingest --format eve` does it.
    let types = |recs: &[Value]| -> BTreeSet<String> {
        recs.iter()
            .map(|r| format!("suricata_eve.{}", r["event_type"].as_str().unwrap()))
            .collect()
    };
    let mut want = types(&scan);
    want.extend(types(&web));
    let got: BTreeSet<String> = events
        .iter()
        .map(|e| e["event.dataset"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, want);
    assert!(
        events
            .iter()
            .all(|e| e["observer.type"] == "sensor" && e["event.module"] == "suricata_eve")
    );
    assert!(events.iter().any(|e| {
        e["event.dataset"] == "suricata_eve.http"
            && e["suricata.eve.http.hostname"] == "www.wireshark.org"
    }));

    // Nothing is left to send.
    let out = canh()
        .args(["sensor", "ship", "--wait", "30", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("0 events shipped"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
