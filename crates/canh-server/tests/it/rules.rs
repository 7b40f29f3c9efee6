//! Rules as data through the HTTP API: enabling, disabling, scoping, updating and rolling back
//! a rule changes live detection at once; a rule is tested against stored events; only an
//! administrator or SOC lead changes rules.

use crate::ingest::{TestNode, start_node, wait_hits};
use canh_soar::{Actor, NewAgency, Role};
use serde_json::Value;
use std::process::{Command, Stdio};

const RULE_ID: &str = "0d7f3a52-4a1e-4b8e-9c39-5a6f8e2b7c01";
const BARRIER_ID: &str = "0d7f3a52-4a1e-4b8e-9c39-5a6f8e2b7c02";

fn rule(id: &str, title: &str, keyword: &str, level: &str) -> String {
    format!(
        "title: {title}\nid: {id}\nstatus: test\nlogsource:\n    product: linux\n    service: sshd\n\
         detection:\n    keywords:\n        - '{keyword}'\n    condition: keywords\nlevel: {level}\n"
    )
}

/// `curl` with the given arguments; (HTTP status, body).
async fn curl(args: Vec<String>) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}"])
            .args(&args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    })
    .await
    .unwrap()
}

struct Api {
    base: String,
}

impl Api {
    async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut args = vec![
            "-X".to_owned(),
            method.to_owned(),
            "-H".to_owned(),
            format!("Authorization: Bearer {token}"),
        ];
        if let Some(b) = body {
            let ct = if b.trim_start().starts_with('{') {
                "application/json"
            } else {
                "application/yaml"
            };
            args.extend([
                "-H".to_owned(),
                format!("Content-Type: {ct}"),
                "--data-binary".to_owned(),
                b.to_owned(),
            ]);
        }
        args.push(format!("{}{path}", self.base));
        let (code, text) = curl(args).await;
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Posts NDJSON; the answer comes once live detection has seen the events.
    async fn ingest(&self, lines: &[String]) {
        let body = lines.join("\n") + "\n";
        let (code, text) = curl(vec![
            "-H".into(),
            "Content-Type: application/x-ndjson".into(),
            "--data-binary".into(),
            body,
            format!("{}/api/v1/ingest/ndjson", self.base),
        ])
        .await;
        assert_eq!(code, 200, "{text}");
    }
}

fn sshd_event(agency: Option<&str>, message: &str) -> String {
    let mut v = serde_json::json!({
        "@timestamp": chrono::Utc::now().to_rfc3339(),
        "process.name": "sshd",
        "host.name": "srv-1",
        "message": message,
    });
    if let Some(a) = agency {
        v["organization.id"] = Value::String(a.to_owned());
    }
    v.to_string()
}

/// Sends `lines` with `logger` over one TCP connection (in order).
fn logger(t: &TestNode, lines: &[&str]) {
    let port = t.node.syslog.unwrap().port().to_string();
    let mut child = Command::new("logger")
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
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        for l in lines {
            writeln!(stdin, "{l}").unwrap();
        }
    }
    assert!(child.wait().unwrap().success());
}

async fn alerts_of(t: &TestNode, id: &str) -> Vec<Value> {
    crate::ingest::search(&t.node, &format!("event.kind:alert AND rule.id:\"{id}\"")).await
}

async fn token(t: &TestNode, name: &str, role: Role, agency: Option<i64>) -> String {
    let soar = &t.node.soar.soar;
    let admin = Actor::system("test");
    let u = soar
        .create_user(&admin, name, role, agency, "mật-khẩu-đủ-dài-1")
        .await
        .unwrap();
    soar.issue_token(&admin, u.id, "test", chrono::Duration::hours(1))
        .await
        .unwrap()
        .secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_changes_apply_to_live_detection_at_once() {
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(
        rules.path().join("marker.yml"),
        rule(RULE_ID, "Rules marker", "canh-rules-marker", "high"),
    )
    .unwrap();
    std::fs::write(
        rules.path().join("barrier.yml"),
        rule(BARRIER_ID, "Rules barrier", "canh-rules-barrier", "low"),
    )
    .unwrap();
    let dir = rules.path().to_owned();
    let t = start_node(move |cfg| {
        cfg.detect.rules_dir = Some(dir);
        cfg.detect.suppress_secs = 0;
    })
    .await;
    let api = Api {
        base: format!("http://{}", t.node.http),
    };
    let lead = token(&t, "lead", Role::SocLead, None).await;
    let auditor = token(&t, "auditor", Role::Auditor, None).await;
    let analyst = token(&t, "analyst", Role::Analyst, None).await;

    // Reading needs a login; every logged-in user reads.
    let (code, _) = api.call("wrong", "GET", "/api/v1/rules", None).await;
    assert_eq!(code, 401);
    let (code, list) = api.call(&auditor, "GET", "/api/v1/rules", None).await;
    assert_eq!(code, 200, "{list}");
    let listed = list["rules"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{list}");
    let marker = listed.iter().find(|r| r["id"] == RULE_ID).unwrap();
    assert_eq!(marker["enabled"], true);
    assert_eq!(marker["level"], "high");
    assert_eq!(marker["version"], 1);
    assert_eq!(marker["check"], "ok");
    assert!(marker["source"].as_str().unwrap().ends_with("marker.yml"));

    // Only an administrator or SOC lead changes rules.
    for tok in [&auditor, &analyst] {
        let path = format!("/api/v1/rules/{RULE_ID}/disable");
        let (code, body) = api.call(tok, "POST", &path, None).await;
        assert_eq!(code, 403, "{body}");
    }
    let (code, body) = api
        .call(
            &analyst,
            "PUT",
            &format!("/api/v1/rules/{RULE_ID}"),
            Some(&rule(RULE_ID, "x", "y", "low")),
        )
        .await;
    assert_eq!(code, 403, "{body}");

    // Disabled: a matching logger line raises nothing. The barrier line, sent after it on the
    // same connection, shows when the first line has been evaluated.
    let (code, body) = api
        .call(
            &lead,
            "POST",
            &format!("/api/v1/rules/{RULE_ID}/disable"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    logger(
        &t,
        &["canh-rules-marker while disabled", "canh-rules-barrier one"],
    );
    assert_eq!(
        wait_hits(
            &t.node,
            &format!("event.kind:alert AND rule.id:\"{BARRIER_ID}\""),
            1
        )
        .await
        .len(),
        1
    );
    assert!(
        alerts_of(&t, RULE_ID).await.is_empty(),
        "a disabled rule alerted"
    );

    // Enabled again: the same line alerts.
    let (code, body) = api
        .call(
            &lead,
            "POST",
            &format!("/api/v1/rules/{RULE_ID}/enable"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    logger(&t, &["canh-rules-marker while enabled"]);
    let alerts = wait_hits(
        &t.node,
        &format!("event.kind:alert AND rule.id:\"{RULE_ID}\""),
        1,
    )
    .await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert!(
        alerts[0]["canh.alert.event"]["message"]
            .as_str()
            .unwrap()
            .contains("while enabled")
    );

    // Scoped to agency so-a: an event of so-b does not alert, one of so-a does.
    let (code, body) = api
        .call(
            &lead,
            "PUT",
            &format!("/api/v1/rules/{RULE_ID}/scope"),
            Some(r#"{"agencies": ["so-a"]}"#),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["scope"], serde_json::json!(["so-a"]));
    api.ingest(&[
        sshd_event(Some("so-b"), "canh-rules-marker from b"),
        sshd_event(Some("so-a"), "canh-rules-marker from a"),
        sshd_event(None, "canh-rules-marker from nowhere"),
    ])
    .await;
    let alerts = alerts_of(&t, RULE_ID).await;
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    let scoped: Vec<_> = alerts
        .iter()
        .filter(|a| a["canh.alert.event"]["message"] != "canh-rules-marker while enabled")
        .collect();
    assert_eq!(scoped.len(), 1, "{scoped:#?}");
    assert_eq!(scoped[0]["organization.id"], "so-a");
    let (code, _) = api
        .call(
            &lead,
            "PUT",
            &format!("/api/v1/rules/{RULE_ID}/scope"),
            Some(r#"{"agencies": []}"#),
        )
        .await;
    assert_eq!(code, 200);

    // An invalid text is refused with the checker's reason and changes nothing.
    let broken = rule(RULE_ID, "Rules marker", "x", "high")
        .replace("condition: keywords", "condition: nothing_here");
    let (code, body) = api
        .call(
            &lead,
            "PUT",
            &format!("/api/v1/rules/{RULE_ID}"),
            Some(&broken),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("nothing_here"),
        "{body}"
    );

    // An update is a new version that runs at once; the old text is kept.
    let v2 = rule(RULE_ID, "Rules marker v2", "canh-rules-second", "low");
    let (code, body) = api
        .call(&lead, "PUT", &format!("/api/v1/rules/{RULE_ID}"), Some(&v2))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["version"], 2);
    api.ingest(&[sshd_event(None, "canh-rules-second seen")])
        .await;
    let alerts = alerts_of(&t, RULE_ID).await;
    let second: Vec<_> = alerts.iter().filter(|a| a["rule.level"] == "low").collect();
    assert_eq!(second.len(), 1, "{alerts:#?}");
    assert_eq!(second[0]["rule.name"], "Rules marker v2");
    let (code, got) = api
        .call(&auditor, "GET", &format!("/api/v1/rules/{RULE_ID}"), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(got["version"], 2);
    assert_eq!(got["text"], v2.as_str());
    let versions = got["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["origin"], "file");
    assert_eq!(versions[1]["by"], "lead");
    let actions: Vec<_> = got["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        ["create", "disable", "enable", "scope", "scope", "update"]
    );

    // Rollback: version 1 runs again; the second keyword no longer alerts.
    let (code, body) = api
        .call(
            &lead,
            "POST",
            &format!("/api/v1/rules/{RULE_ID}/rollback"),
            Some(r#"{"version": 1}"#),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let before = alerts_of(&t, RULE_ID).await.len();
    api.ingest(&[sshd_event(None, "canh-rules-second again")])
        .await;
    assert_eq!(alerts_of(&t, RULE_ID).await.len(), before);
    api.ingest(&[sshd_event(None, "canh-rules-marker after rollback")])
        .await;
    assert_eq!(alerts_of(&t, RULE_ID).await.len(), before + 1);
    let (_, got) = api
        .call(&auditor, "GET", &format!("/api/v1/rules/{RULE_ID}"), None)
        .await;
    assert_eq!(got["version"], 1);
    assert_eq!(
        got["text"],
        rule(RULE_ID, "Rules marker", "canh-rules-marker", "high").as_str()
    );
    // Every change is in the audit chain too, with the state before and after.
    let (code, log) = api
        .call(
            &auditor,
            "GET",
            &format!("/api/v1/audit?object_type=detection_rule&object_id={RULE_ID}"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{log}");
    let mut audited: Vec<String> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect();
    audited.reverse();
    assert_eq!(
        audited,
        [
            "rule.disable",
            "rule.enable",
            "rule.scope",
            "rule.scope",
            "rule.update",
            "rule.rollback"
        ]
    );
    // The chain keeps before and after as JSON text.
    let disable = &log.as_array().unwrap()[5];
    let state = |k: &str| -> serde_json::Value {
        serde_json::from_str(disable[k].as_str().unwrap()).unwrap()
    };
    assert_eq!(state("before")["enabled"], true);
    assert_eq!(state("after")["enabled"], false);
    assert_eq!(disable["actor"], "lead");
    let (_, verified) = api
        .call(&auditor, "GET", "/api/v1/audit/verify", None)
        .await;
    assert_eq!(verified["ok"], true, "{verified}");
    t.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_is_tested_against_stored_events_within_the_readers_scope() {
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(
        rules.path().join("marker.yml"),
        rule(RULE_ID, "Rules marker", "canh-rules-stored", "high"),
    )
    .unwrap();
    let dir = rules.path().to_owned();
    let t = start_node(move |cfg| {
        cfg.detect.rules_dir = Some(dir);
    })
    .await;
    let api = Api {
        base: format!("http://{}", t.node.http),
    };
    let soar = &t.node.soar.soar;
    let agency = soar
        .create_agency(
            &Actor::system("test"),
            NewAgency {
                code: "so-a".into(),
                name: "Sở A".into(),
                level: "province".into(),
                parent_id: None,
            },
        )
        .await
        .unwrap();
    let lead = token(&t, "lead", Role::SocLead, None).await;
    let viewer = token(&t, "viewer-a", Role::AgencyViewer, Some(agency.id)).await;
    // The rule is off while the events arrive: the test reads the store, not the alerts.
    let (code, _) = api
        .call(
            &lead,
            "POST",
            &format!("/api/v1/rules/{RULE_ID}/disable"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    api.ingest(&[
        sshd_event(Some("so-a"), "canh-rules-stored 1"),
        sshd_event(Some("so-b"), "canh-rules-stored 2"),
        sshd_event(Some("so-a"), "canh-rules-stored 3"),
        sshd_event(Some("so-a"), "canh-rules-other 4"),
        // Not from sshd: the rule's logsource excludes it.
        serde_json::json!({"@timestamp": chrono::Utc::now().to_rfc3339(),
            "process.name": "cron", "message": "canh-rules-stored 5"})
        .to_string(),
    ])
    .await;
    assert!(alerts_of(&t, RULE_ID).await.is_empty());

    let body = format!(r#"{{"id": "{RULE_ID}", "from": "now-1h", "limit": 2}}"#);
    let (code, found) = api
        .call(&lead, "POST", "/api/v1/rules/test", Some(&body))
        .await;
    assert_eq!(code, 200, "{found}");
    assert_eq!(found["count"], 3, "{found}");
    assert_eq!(found["scanned"], 5, "{found}");
    assert_eq!(found["by_rule"][RULE_ID], 3);
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2, "limit");
    assert!(hits.iter().all(|h| {
        h["event"]["message"]
            .as_str()
            .unwrap()
            .starts_with("canh-rules-stored")
    }));

    // A posted rule that is not in the catalogue.
    let posted = serde_json::json!({
        "text": rule("posted-1", "Posted", "canh-rules-other", "medium"),
        "from": "now-1h",
    })
    .to_string();
    let (code, found) = api
        .call(&lead, "POST", "/api/v1/rules/test", Some(&posted))
        .await;
    assert_eq!(code, 200, "{found}");
    assert_eq!(found["count"], 1, "{found}");
    assert_eq!(found["hits"][0]["rule_id"], "posted-1");

    // An agency viewer tests too, over its own agency's events only.
    let (code, found) = api
        .call(&viewer, "POST", "/api/v1/rules/test", Some(&body))
        .await;
    assert_eq!(code, 200, "{found}");
    assert_eq!(found["count"], 2, "{found}");

    // A text that does not compile is refused.
    let bad = serde_json::json!({"text": "title: x\nlogsource: {product: linux}\n"}).to_string();
    let (code, found) = api
        .call(&lead, "POST", "/api/v1/rules/test", Some(&bad))
        .await;
    assert_eq!(code, 400, "{found}");
    assert!(
        found["message"].as_str().unwrap().contains("detection"),
        "{found}"
    );
    t.node.shutdown().await.unwrap();
}
