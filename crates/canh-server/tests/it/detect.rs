//! Live detection: a syslog line sent with `logger` that a Sigma rule matches becomes an alert
//! event in the store and an alert in the triage queue; repeats are suppressed and counted.

use crate::ingest::{start_node, wait_hits};
use std::process::Command;

const RULE: &str = r#"
title: SSH password failure for root
id: 5b0f5f0e-6a57-4d2f-9b7c-3f1d0c2b9a11
status: test
description: Failed password for the root account over SSH
author: Canh tests
logsource:
    product: linux
    service: sshd
detection:
    keywords:
        - 'Failed password for root'
    condition: keywords
level: high
tags:
    - attack.credential-access
    - attack.t1110
"#;

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
    assert_eq!(a["rule.id"], "5b0f5f0e-6a57-4d2f-9b7c-3f1d0c2b9a11");
    assert_eq!(a["canh.alert.severity"], "high");
    assert_eq!(a["rule.level"], "high");
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
    assert_eq!(
        queue.items[0].rule_id,
        "5b0f5f0e-6a57-4d2f-9b7c-3f1d0c2b9a11"
    );
    let metrics = t.node.state.metrics.render();
    assert!(
        metrics.contains("canh_detect_suppressed_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("canh_detect_alerts_total{severity=\"high\"} 1"),
        "{metrics}"
    );
    t.node.shutdown().await.unwrap();
}
