//! Live detection: a syslog line sent with `logger` that a Sigma rule matches becomes an alert
//! event in the store and an alert in the triage queue; repeats are suppressed and counted.

use crate::ingest::{start_node, wait_hits};
use std::process::Command;

/// Shared with the console's browser tests (`e2e/run.sh`); level critical = emergency.
const RULE: &str = include_str!("../rules/ssh_root.yml");
const RULE_ID: &str = "2d7f4c0e-1f43-4a8e-9f0b-6b1f6f3c7e21";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matching_syslog_line_becomes_an_alert_and_repeats_are_suppressed() {
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("ssh_root.yml"), RULE).unwrap();
    let dir = rules.path().to_owned();
    let t = start_node(move |cfg| {
        cfg.detect.rules_dir = Some(dir);
        cfg.detect.suppress_secs = 600;
    })
    .await;
    let port = t.node.syslog.unwrap().port().to_string();
    for _ in 0..3 {
        let st = Command::new("logger")
            .args([
                "--server",
                "127.0.0.1",
                "--port",
                &port,
                "--tcp",
                "--rfc5424",
                "-t",
                "sshd",
            ])
            .arg("Failed password for root from 198.51.100.9 port 50022 ssh2")
            .status()
            .unwrap();
        assert!(st.success());
    }
    // An unrelated line must not alert.
    Command::new("logger")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--tcp",
            "--rfc5424",
            "-t",
            "sshd",
        ])
        .arg("Accepted publickey for ops from 10.0.0.5 port 50023 ssh2")
        .status()
        .unwrap();
    let events = wait_hits(&t.node, "process.name:sshd AND NOT event.kind:alert", 4).await;
    assert_eq!(events.len(), 4);
    let alerts = wait_hits(&t.node, "event.kind:alert", 1).await;
    assert_eq!(
        alerts.len(),
        1,
        "three matches on one host within the window make one alert: {alerts:#?}"
    );
    let a = &alerts[0];
    assert_eq!(a["rule.id"], RULE_ID);
    assert_eq!(a["canh.alert.severity"], "emergency");
    assert_eq!(a["rule.level"], "critical");
    assert!(
        a["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "attack.t1110")
    );
    assert!(
        a["canh.alert.event"]["message"]
            .as_str()
            .unwrap()
            .contains("Failed password for root")
    );
    let queue = t
        .node
        .soar
        .soar
        .alerts(&canh_soar::AlertFilter::default(), None)
        .await
        .unwrap();
    assert_eq!(queue.items.len(), 1);
    assert_eq!(queue.items[0].rule_id, RULE_ID);
    let metrics = t.node.state.metrics.render();
    assert!(
        metrics.contains("canh_detect_suppressed_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("canh_detect_alerts_total{severity=\"emergency\"} 1"),
        "{metrics}"
    );
    t.node.shutdown().await.unwrap();
}
