//! The agent channel end to end: real `canh-agent` client code against the real endpoints over
//! loopback TLS 1.3.
#![allow(clippy::unwrap_used)] // test helpers fail the test on any error

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canh_agent::client::{AgentStatus, Client, ClientError, ClientOptions, Identity};
use canh_agent::commands::CommandRunner;
use canh_agent::spool::{Spool, SpoolConfig, SpoolHandle};
use canh_core::Event;
use canh_core::wire::ResponseAction;
use canh_server::agents::{AgentEventSink, AgentService, AgentsConfig, SinkFuture};
use tokio::sync::watch;

#[derive(Default)]
struct CountingSink {
    /// seq → (times delivered, the event's own counter field `n`).
    seen: Mutex<HashMap<u64, (u32, Option<u64>)>>,
}

impl AgentEventSink for CountingSink {
    fn deliver<'a>(&'a self, agent_id: &'a str, events: Vec<Event>) -> SinkFuture<'a> {
        let mut seen = self.seen.lock().unwrap();
        for ev in events {
            assert_eq!(ev.get_str("agent.id"), Some(agent_id));
            let seq = ev.get("canh.agent.seq").and_then(|v| v.as_u64()).unwrap();
            let n = ev.get("n").and_then(|v| v.as_u64());
            let entry = seen.entry(seq).or_insert((0, n));
            entry.0 += 1;
        }
        Box::pin(async { Ok(()) })
    }
}

impl CountingSink {
    fn distinct(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

fn cfg() -> AgentsConfig {
    AgentsConfig {
        enabled: true,
        listen: "127.0.0.1:0".into(),
        enrol_listen: "127.0.0.1:0".into(),
        ..AgentsConfig::default()
    }
}

/// A node on `data` with plain HTTP on a free loopback port, no syslog, and the agent
/// endpoints of [`cfg`].
pub(super) async fn start_node(data: &Path) -> canh_server::Node {
    let mut c = canh_server::Config::default();
    c.server.http = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    c.server.http_tls = false;
    c.server.syslog = None;
    c.agents = cfg();
    canh_server::Node::start(c, data).await.unwrap()
}

/// Polls `cond` every 20 ms; fails the test after 120 s (a hang guard, not a speed check).
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

struct Agent {
    client: Arc<Client>,
    spool: SpoolHandle,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Agent {
    fn new(state: &Path, heartbeat: Duration) -> Self {
        let spool = SpoolHandle::new(
            Spool::open(
                &state.join("spool"),
                SpoolConfig {
                    segment_bytes: 256 * 1024,
                    max_bytes: 1 << 30,
                },
            )
            .unwrap(),
        );
        let options = ClientOptions {
            heartbeat,
            batch_events: 500,
            window_batches: 4,
        };
        let client = Arc::new(Client::new(
            state,
            spool.clone(),
            Arc::new(AgentStatus::default()),
            options,
            Arc::new(CommandRunner::new(state)),
        ));
        let (stop, _) = watch::channel(false);
        Self {
            client,
            spool,
            stop,
            task: None,
        }
    }

    fn start(&mut self) {
        let client = self.client.clone();
        let rx = self.stop.subscribe();
        self.task = Some(tokio::spawn(async move {
            client.run(rx).await;
        }));
    }

    async fn stop(mut self) {
        self.stop.send(true).unwrap();
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

/// An agent service serving on `data`, and an agent enrolled with it whose state is in
/// `state` (not yet connected).
struct Enrolled {
    svc: AgentService,
    identity: Identity,
    enrol_addr: std::net::SocketAddr,
    agent_addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<Result<(), canh_server::agents::AgentsError>>,
}

async fn serve_and_enrol(data: &Path, state: &Path, sink: Arc<CountingSink>) -> Enrolled {
    let svc = AgentService::open(data, cfg()).unwrap();
    let token = svc
        .create_enrolment_token(Duration::from_secs(300))
        .unwrap();
    let listener = svc.bind().await.unwrap();
    let (enrol_addr, agent_addr) = (
        listener.enrol_addr().unwrap(),
        listener.agent_addr().unwrap(),
    );
    let server = tokio::spawn(listener.serve(sink));
    let identity = canh_agent::client::enrol(state, &enrol_addr.to_string(), &token, &svc.ca_pin())
        .await
        .unwrap();
    Enrolled {
        svc,
        identity,
        enrol_addr,
        agent_addr,
        server,
    }
}

fn events(from: u64, count: u64) -> Vec<Event> {
    (from..from + count)
        .map(|n| {
            let mut e = Event::new(chrono::Utc::now());
            e.set("n", n);
            e.set("event.module", "canh_agent");
            e
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_arrive_exactly_once_across_a_server_restart() {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let sink = Arc::new(CountingSink::default());
    let Enrolled {
        svc,
        identity,
        enrol_addr,
        agent_addr,
        server,
    } = serve_and_enrol(data.path(), state.path(), sink.clone()).await;
    assert_eq!(identity.agent_port, agent_addr.port());

    let mut agent = Agent::new(state.path(), Duration::from_secs(30));
    agent.start();
    for i in 0..100 {
        agent.spool.append(&events(i * 100, 100)).unwrap();
    }

    wait_for("a third of the events", || sink.distinct() >= 3000).await;
    server.abort();
    assert!(server.await.unwrap_err().is_cancelled());

    // Same data dir, same ports: the agent reconnects by itself and replays from the server's
    // cursor.
    let cfg2 = AgentsConfig {
        listen: agent_addr.to_string(),
        enrol_listen: enrol_addr.to_string(),
        ..cfg()
    };
    let svc2 = AgentService::open(data.path(), cfg2).unwrap();
    assert_eq!(svc2.ca_pin(), svc.ca_pin(), "the CA must survive a restart");
    let server2 = tokio::spawn(svc2.clone().serve(sink.clone()));

    wait_for("all events", || sink.distinct() >= 10_000).await;
    wait_for("the agent's spool to be fully acknowledged", || {
        agent.spool.with(|s| s.acked()) == 10_000
    })
    .await;
    {
        let seen = sink.seen.lock().unwrap();
        assert_eq!(seen.len(), 10_000);
        for seq in 1..=10_000u64 {
            let (times, n) = seen[&seq];
            assert_eq!(times, 1, "seq {seq} delivered {times} times");
            assert_eq!(n, Some(seq - 1), "seq {seq} carries the wrong event");
        }
    }
    assert_eq!(agent.spool.with(|s| s.pending()), 0);
    assert_eq!(svc2.agents()[0].acked_seq, 10_000);
    agent.stop().await;
    server2.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_agent_is_refused_and_tokens_are_single_use() {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let svc = AgentService::open(data.path(), cfg()).unwrap();
    let token = svc
        .create_enrolment_token(Duration::from_secs(300))
        .unwrap();
    let listener = svc.bind().await.unwrap();
    let enrol_addr = listener.enrol_addr().unwrap().to_string();
    let server = tokio::spawn(listener.serve(Arc::new(CountingSink::default())));

    // A wrong pin: the agent refuses the server.
    let bad_pin = "00".repeat(32);
    let wrong = canh_agent::client::enrol(state.path(), &enrol_addr, &token, &bad_pin).await;
    assert!(matches!(wrong, Err(ClientError::Io { .. })), "{wrong:?}");

    let identity = canh_agent::client::enrol(state.path(), &enrol_addr, &token, &svc.ca_pin())
        .await
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    let reused = canh_agent::client::enrol(other.path(), &enrol_addr, &token, &svc.ca_pin()).await;
    match reused {
        Err(ClientError::Refused(e)) => assert_eq!(e.code, "bad_token"),
        other => panic!("token reuse must be refused: {other:?}"),
    }
    let expired = svc
        .create_enrolment_token(Duration::from_millis(1))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    match canh_agent::client::enrol(other.path(), &enrol_addr, &expired, &svc.ca_pin()).await {
        Err(ClientError::Refused(e)) => assert_eq!(e.code, "bad_token"),
        other => panic!("expired token must be refused: {other:?}"),
    }

    // Before revocation a session works; after it, the server refuses.
    let agent = Agent::new(state.path(), Duration::from_secs(30));
    agent.spool.append(&events(0, 5)).unwrap();
    let mut agent = agent;
    agent.start();
    wait_for("first events acknowledged", || {
        agent.spool.with(|s| s.acked()) == 5
    })
    .await;
    agent.stop().await;

    svc.revoke(&identity.agent_id).unwrap();
    let agent = Agent::new(state.path(), Duration::from_secs(30));
    let (_tx, mut rx) = watch::channel(false);
    match agent.client.session(&mut rx).await {
        Err(ClientError::Refused(e)) => assert_eq!(e.code, "revoked"),
        other => panic!("revoked agent must be refused: {other:?}"),
    }
    assert!(svc.revoke("no-such-agent").is_err());
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_an_agent_off_the_silent_list() {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let svc = AgentService::open(data.path(), cfg()).unwrap();
    let token = svc
        .create_enrolment_token(Duration::from_secs(300))
        .unwrap();
    let listener = svc.bind().await.unwrap();
    let enrol_addr = listener.enrol_addr().unwrap().to_string();
    let server = tokio::spawn(listener.serve(Arc::new(CountingSink::default())));
    let identity = canh_agent::client::enrol(state.path(), &enrol_addr, &token, &svc.ca_pin())
        .await
        .unwrap();

    let mut agent = Agent::new(state.path(), Duration::from_secs(30));
    agent.start();
    wait_for("a heartbeat", || svc.agents()[0].last_heartbeat.is_some()).await;
    let (seen_at, hb) = svc.agents()[0].last_heartbeat.clone().unwrap();
    assert_eq!(hb.version, env!("CARGO_PKG_VERSION"));
    assert!(!hb.isolated);

    // Default: 30 s interval, 3 missed → silent after 90 s. The clock is injected.
    assert!(
        svc.silent_agents(seen_at + chrono::Duration::seconds(89))
            .is_empty()
    );
    let silent = svc.silent_agents(seen_at + chrono::Duration::seconds(91));
    assert_eq!(silent.len(), 1);
    assert_eq!(silent[0].agent_id, identity.agent_id);
    assert_eq!(silent[0].last_seen, seen_at);

    // Revoked agents are not reported as silent.
    svc.revoke(&identity.agent_id).unwrap();
    assert!(
        svc.silent_agents(seen_at + chrono::Duration::seconds(91))
            .is_empty()
    );
    agent.stop().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_is_renewed_before_expiry_and_the_new_one_is_accepted() {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let svc = AgentService::open(data.path(), cfg()).unwrap();
    let token = svc
        .create_enrolment_token(Duration::from_secs(300))
        .unwrap();
    let listener = svc.bind().await.unwrap();
    let enrol_addr = listener.enrol_addr().unwrap().to_string();
    let sink = Arc::new(CountingSink::default());
    let server = tokio::spawn(listener.serve(sink.clone()));
    let mut identity = canh_agent::client::enrol(state.path(), &enrol_addr, &token, &svc.ca_pin())
        .await
        .unwrap();
    let old_cert = std::fs::read_to_string(state.path().join("agent.crt")).unwrap();

    // Pretend most of the lifetime has passed.
    let now = chrono::Utc::now();
    identity.not_before = now - chrono::Duration::days(80);
    identity.not_after = now + chrono::Duration::days(10);
    std::fs::write(
        state.path().join("identity.json"),
        serde_json::to_vec(&identity).unwrap(),
    )
    .unwrap();
    let mut agent = Agent::new(state.path(), Duration::from_secs(30));
    agent.start();
    wait_for("renewal", || {
        Identity::load(state.path()).unwrap().not_after > now + chrono::Duration::days(80)
    })
    .await;
    agent.stop().await;
    let new_cert = std::fs::read_to_string(state.path().join("agent.crt")).unwrap();
    assert_ne!(old_cert, new_cert);

    // A fresh session with the renewed certificate and key delivers events.
    let mut agent = Agent::new(state.path(), Duration::from_secs(30));
    agent.spool.append(&events(0, 3)).unwrap();
    agent.start();
    wait_for("events over the renewed certificate", || {
        sink.distinct() == 3
    })
    .await;
    agent.stop().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_quarantine_command_runs_on_the_agent_and_reports_back() {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let Enrolled {
        svc,
        identity,
        server,
        ..
    } = serve_and_enrol(data.path(), state.path(), Arc::default()).await;
    assert_eq!(identity.command_key, svc.command_public_key());
    let mut agent = Agent::new(state.path(), Duration::from_secs(30));
    agent.start();
    wait_for("session", || svc.agents()[0].last_heartbeat.is_some()).await;

    let victim = state.path().join("payload.bin");
    std::fs::write(&victim, b"malware").unwrap();
    let id = svc
        .send_command(
            &identity.agent_id,
            ResponseAction::QuarantineFile {
                path: victim.display().to_string(),
            },
            Duration::from_secs(60),
        )
        .unwrap();
    wait_for("command result", || {
        !svc.command_results(&identity.agent_id).is_empty()
    })
    .await;
    let results = svc.command_results(&identity.agent_id);
    assert_eq!(results[0].id, id);
    assert!(results[0].ok, "{}", results[0].message);
    assert!(
        std::fs::symlink_metadata(&victim).is_err(),
        "file must be quarantined"
    );
    agent.stop().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_command_survives_a_server_restart_and_an_expired_one_is_reported() {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let Enrolled {
        svc,
        identity,
        enrol_addr,
        agent_addr,
        server,
    } = serve_and_enrol(data.path(), state.path(), Arc::default()).await;
    // The agent is offline when the command is queued, and the server restarts before the
    // agent connects.
    let victim = state.path().join("dropper.bin");
    std::fs::write(&victim, b"malware").unwrap();
    let id = svc
        .send_command(
            &identity.agent_id,
            ResponseAction::QuarantineFile {
                path: victim.display().to_string(),
            },
            Duration::from_secs(600),
        )
        .unwrap();
    server.abort();
    let _ = server.await;
    drop(svc);
    let cfg2 = AgentsConfig {
        listen: agent_addr.to_string(),
        enrol_listen: enrol_addr.to_string(),
        ..cfg()
    };
    let svc2 = AgentService::open(data.path(), cfg2).unwrap();
    assert_eq!(svc2.queued_commands(&identity.agent_id), vec![id.clone()]);
    let short = svc2
        .send_command(
            &identity.agent_id,
            ResponseAction::ReleaseHost,
            Duration::from_millis(200),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let server2 = tokio::spawn(svc2.clone().serve(Arc::new(CountingSink::default())));
    let mut agent = Agent::new(state.path(), Duration::from_secs(30));
    agent.start();
    wait_for("both results", || {
        svc2.command_results(&identity.agent_id).len() >= 2
    })
    .await;
    let results = svc2.command_results(&identity.agent_id);
    let ran = results.iter().find(|r| r.id == id).unwrap();
    assert!(ran.ok, "{}", ran.message);
    assert!(
        std::fs::symlink_metadata(&victim).is_err(),
        "file must be quarantined"
    );
    let expired = results.iter().find(|r| r.id == short).unwrap();
    assert!(!expired.ok);
    assert!(expired.message.contains("expired"), "{}", expired.message);
    assert!(svc2.queued_commands(&identity.agent_id).is_empty());
    agent.stop().await;
    server2.abort();
    let _ = server2.await;
    // Answered commands are not sent again after another restart.
    drop(svc2);
    let svc3 = AgentService::open(data.path(), cfg()).unwrap();
    assert!(svc3.queued_commands(&identity.agent_id).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_enrolled_for_an_agency_speaks_for_it_and_is_seen_and_upgraded_by_it() {
    use canh_soar::{Actor, NewAgency, Role};
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let node = start_node(dir.path()).await;
    let soar = &node.soar.soar;
    let sys = Actor::system("test");
    let pw = "correct horse battery staple";
    let mut agencies = Vec::new();
    for (code, parent) in [
        ("tinh-b", None),
        ("so-yte-b", Some(0usize)),
        ("so-gd-b", Some(0)),
    ] {
        let a = soar
            .create_agency(
                &sys,
                NewAgency {
                    code: code.into(),
                    name: code.into(),
                    level: if parent.is_some() {
                        "department"
                    } else {
                        "province"
                    }
                    .into(),
                    parent_id: parent.map(|i: usize| agencies[i]),
                },
            )
            .await
            .unwrap();
        agencies.push(a.id);
    }
    let mut tokens = Vec::new();
    for (name, role, scope) in [
        ("quantri", Role::Administrator, None),
        ("xem-yte", Role::AgencyViewer, Some(agencies[1])),
        ("xem-gd", Role::AgencyViewer, Some(agencies[2])),
    ] {
        let u = soar.create_user(&sys, name, role, scope, pw).await.unwrap();
        let issued = soar
            .issue_token(&sys, u.id, "t", chrono::Duration::days(1))
            .await
            .unwrap();
        tokens.push(issued.secret);
    }
    let (admin, yte, gd) = (&tokens[0], &tokens[1], &tokens[2]);
    let addr = node.http;

    // Tokens name a known agency.
    let (st, _) = http(
        addr,
        "POST",
        "/api/v1/agents/enrolment-tokens",
        admin,
        br#"{"ttl_secs":600,"agency":"no-such-agency"}"#,
    )
    .await;
    assert_eq!(st, 422);
    let (st, body) = http(
        addr,
        "POST",
        "/api/v1/agents/enrolment-tokens",
        admin,
        br#"{"ttl_secs":600,"agency":"so-yte-b"}"#,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["agency"], "so-yte-b");
    let svc = node.agents.clone().unwrap();
    let mut bound = None;
    wait_for("the agent endpoints", || {
        bound = svc.bound_addrs();
        bound.is_some()
    })
    .await;
    let enrol_addr = bound.unwrap().0.to_string();
    let identity = canh_agent::client::enrol(
        state.path(),
        &enrol_addr,
        body["token"].as_str().unwrap(),
        body["ca_pin"].as_str().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        svc.agent_agency(&identity.agent_id).as_deref(),
        Some("so-yte-b")
    );

    // Its events carry the agency, whatever they say themselves.
    let mut agent = Agent::new(state.path(), Duration::from_secs(30));
    let mut evs = events(0, 3);
    evs[0].set("organization.id", "so-gd-b");
    agent.spool.append(&evs).unwrap();
    agent.start();
    wait_for("the events to be acknowledged", || {
        agent.spool.with(|s| s.acked()) == 3
    })
    .await;
    let path = format!(
        "/api/v1/search?q=agent.id:{}&from=now-1h&limit=10",
        identity.agent_id
    );
    let (st, found) = http(addr, "GET", &path, admin, b"").await;
    assert_eq!(st, 200, "{found}");
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3, "{found}");
    for h in hits {
        let ev = if h["event"].is_object() {
            &h["event"]
        } else {
            h
        };
        assert_eq!(ev["organization.id"], "so-yte-b", "{h}");
    }

    // A viewer of the agency sees the agent; a viewer of another agency does not.
    let (st, list) = http(addr, "GET", "/api/v1/agents", yte, b"").await;
    assert_eq!(st, 200, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["agency"], "so-yte-b");
    let (st, list) = http(addr, "GET", "/api/v1/agents", gd, b"").await;
    assert_eq!(st, 200, "{list}");
    assert!(list.as_array().unwrap().is_empty(), "{list}");

    // A YARA match reported by the agent (its `yara` feature) becomes a high alert in its
    // agency's triage queue: seen by the agency's viewer, not by another agency's.
    let mut hit = Event::new(chrono::Utc::now());
    for (k, v) in [
        ("event.module", "canh_agent"),
        ("event.kind", "alert"),
        ("event.dataset", "yara"),
        ("event.action", "yara_match"),
        ("rule.name", "canh_test_dropper"),
        ("file.path", "/tmp/payload/dropper"),
        ("host.name", "web1"),
        (
            "message",
            "YARA: canh_test_dropper matched /tmp/payload/dropper",
        ),
    ] {
        hit.set(k, v);
    }
    agent.spool.append(&[hit]).unwrap();
    wait_for("the YARA event to be acknowledged", || {
        agent.spool.with(|s| s.acked()) == 4
    })
    .await;
    let mut yara = serde_json::Value::Null;
    for _ in 0..100 {
        let (st, list) = http(addr, "GET", "/api/v1/alerts", yte, b"").await;
        assert_eq!(st, 200, "{list}");
        if let Some(a) = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule_id"] == "yara:canh_test_dropper")
        {
            yara = a.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(yara["severity"], "high", "{yara}");
    assert_eq!(yara["rule_title"], "YARA: canh_test_dropper", "{yara}");
    assert_eq!(yara["host"], "web1", "{yara}");
    assert_eq!(yara["event"]["file.path"], "/tmp/payload/dropper", "{yara}");
    let (st, list) = http(addr, "GET", "/api/v1/alerts", gd, b"").await;
    assert_eq!(st, 200, "{list}");
    assert!(
        list["items"].as_array().unwrap().is_empty(),
        "another agency sees the alert: {list}"
    );

    // A rollout to the province reaches the departments' agents; to another department, none.
    let (st, _) = http(
        addr,
        "POST",
        "/api/v1/agents/releases?version=9.9.9&target=linux-x86_64",
        admin,
        b"\x7fELF not really a binary",
    )
    .await;
    assert_eq!(st, 201);
    for (agency, reached) in [("so-gd-b", 0), ("tinh-b", 1)] {
        let body = format!(
            r#"{{"version":"9.9.9","target":"linux-x86_64","agency":"{agency}","ttl_secs":60}}"#
        );
        let (st, out) = http(
            addr,
            "POST",
            "/api/v1/agents/releases/rollout",
            admin,
            body.as_bytes(),
        )
        .await;
        assert_eq!(st, 200, "{out}");
        let cmds = out["commands"].as_array().unwrap();
        assert_eq!(cmds.len(), reached, "{agency}: {out}");
        if reached == 1 {
            assert_eq!(cmds[0]["agent_id"], identity.agent_id.as_str());
        }
    }
    agent.stop().await;
}

// ---- inventory, vulnerabilities and patch tasks -------------------------------------------

const OSV_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../canh-agent/testdata/osv-debian"
);

/// A Debian 12 host before its security updates (package names and versions as dpkg writes
/// them; binary packages built from the `glibc` and `openssh` sources carry `Source:`).
const DPKG_BEFORE: &str = "Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u1

Package: libc-bin
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u1

Package: openssh-server
Status: install ok installed
Architecture: amd64
Source: openssh
Version: 1:9.2p1-2+deb12u2

Package: php-league-commonmark
Status: install ok installed
Architecture: all
Version: 2.3.9-1+deb12u1

Package: sudo
Status: install ok installed
Architecture: amd64
Version: 1.9.13p3-1+deb12u1

Package: lua5.1
Status: install ok installed
Architecture: amd64
Version: 5.1.5-9
";

/// The same host after `apt upgrade`: glibc at the fixed version, openssh at a binNMU of it.
const DPKG_AFTER: &str = "Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u3

Package: libc-bin
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u3

Package: openssh-server
Status: install ok installed
Architecture: amd64
Source: openssh (1:9.2p1-2+deb12u3)
Version: 1:9.2p1-2+deb12u3+b1

Package: php-league-commonmark
Status: install ok installed
Architecture: all
Version: 2.3.9-1+deb12u1
";

const DEBIAN_12: &str =
    "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";

fn inventory_event(dpkg: &str) -> Event {
    let pkgs = canh_agent::inventory::parse_dpkg_status(dpkg);
    canh_agent::inventory::package_inventory_event("web1", &pkgs, DEBIAN_12, Some("6.1.0-18-amd64"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vulnerabilities_and_patch_tasks_follow_the_agent_inventory() {
    use canh_server::agents::PatchStatus;
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let svc = AgentService::open(data.path(), cfg()).unwrap();

    // Offline import of the OSV fixtures (a directory), then the same records as a zip.
    let report = svc.import_vulnerabilities(Path::new(OSV_DIR)).unwrap();
    assert_eq!(report.records_read, 6);
    assert_eq!(report.imported, 6);
    assert_eq!(report.invalid_count, 0);
    let mut zip_bytes = Vec::new();
    {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut zip_bytes));
        for id in ["DSA-5514-1", "DSA-5724-1"] {
            z.start_file(
                format!("{id}.json"),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            let text = std::fs::read(format!("{OSV_DIR}/{id}.json")).unwrap();
            std::io::Write::write_all(&mut z, &text).unwrap();
        }
        z.start_file("README.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.finish().unwrap();
    }
    let report = svc
        .import_vulnerability_bytes("all.zip", &zip_bytes)
        .unwrap();
    assert_eq!(
        (report.records_read, report.imported, report.total),
        (2, 2, 6)
    );
    let status = svc.vulnerability_db_status();
    assert_eq!(status.get("Debian:12"), Some(&3));
    assert_eq!(status.get("Ubuntu:22.04:LTS"), Some(&1));

    let token = svc
        .create_enrolment_token(Duration::from_secs(300))
        .unwrap();
    let listener = svc.bind().await.unwrap();
    let enrol_addr = listener.enrol_addr().unwrap().to_string();
    let server = tokio::spawn(listener.serve(Arc::new(CountingSink::default())));
    let identity = canh_agent::client::enrol(state.path(), &enrol_addr, &token, &svc.ca_pin())
        .await
        .unwrap();
    let id = identity.agent_id.clone();
    assert!(svc.vulnerabilities(&id).unwrap().inventory_at.is_none());

    // The agent ships its package inventory over the real mTLS event stream.
    let mut agent = Agent::new(state.path(), Duration::from_secs(30));
    agent.spool.append(&[inventory_event(DPKG_BEFORE)]).unwrap();
    agent.start();
    wait_for("inventory on the server", || {
        svc.vulnerabilities(&id).unwrap().inventory_at.is_some()
    })
    .await;
    let v = svc.vulnerabilities(&id).unwrap();
    assert_eq!(v.os, "debian 12");
    assert_eq!(v.packages_installed, 6);
    let names: Vec<&str> = v.vulnerable.iter().map(|p| p.name.as_str()).collect();
    // sudo: only a Debian 10 record; lua5.1: only a Debian 6 record.
    assert_eq!(
        names,
        [
            "libc-bin",
            "libc6",
            "openssh-server",
            "php-league-commonmark"
        ]
    );
    let by = |n: &str| v.vulnerable.iter().find(|p| p.name == n).unwrap();
    assert_eq!(by("libc6").fixed_version.as_deref(), Some("2.36-9+deb12u3"));
    assert_eq!(by("libc6").advisories[0].id, "DSA-5514-1");
    assert_eq!(by("libc6").advisories[0].cves, ["CVE-2023-4911"]);
    assert_eq!(
        by("openssh-server").fixed_version.as_deref(),
        Some("1:9.2p1-2+deb12u3")
    );
    assert_eq!(
        by("openssh-server").advisories[0].summary,
        "openssh - security update"
    );
    // No fix published: listed, with no fixed version and no patch task.
    let php = by("php-league-commonmark");
    assert_eq!(php.fixed_version, None);
    assert_eq!(php.advisories[0].id, "DEBIAN-CVE-2024-58382");
    assert!(php.advisories[0].summary.starts_with("Markdown parsing"));

    let tasks = svc.patch_tasks(Some(&id));
    assert_eq!(tasks.len(), 2);
    assert!(tasks.iter().all(|t| t.status == PatchStatus::Open));
    let glibc = tasks.iter().find(|t| t.source == "glibc").unwrap().clone();
    assert_eq!(glibc.packages, ["libc-bin", "libc6"]);
    assert_eq!(glibc.target_version, "2.36-9+deb12u3");
    let ssh = tasks
        .iter()
        .find(|t| t.source == "openssh")
        .unwrap()
        .clone();
    svc.set_patch_status(glibc.id, PatchStatus::InProgress, "analyst", None)
        .unwrap();
    svc.set_patch_status(
        ssh.id,
        PatchStatus::Done,
        "analyst",
        Some("apt upgrade run".into()),
    )
    .unwrap();
    assert!(
        svc.set_patch_status(glibc.id, PatchStatus::Verified, "analyst", None)
            .is_err()
    );
    assert!(
        svc.set_patch_status(999, PatchStatus::Done, "analyst", None)
            .is_err()
    );

    // The next inventory shows the fixed versions: both tasks verified by the inventory.
    agent.spool.append(&[inventory_event(DPKG_AFTER)]).unwrap();
    wait_for("tasks verified", || {
        svc.patch_tasks(Some(&id))
            .iter()
            .all(|t| t.status == PatchStatus::Verified)
    })
    .await;
    let v = svc.vulnerabilities(&id).unwrap();
    let names: Vec<&str> = v.vulnerable.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["php-league-commonmark"]);
    let tasks = svc.patch_tasks(Some(&id));
    let ssh_after = tasks.iter().find(|t| t.id == ssh.id).unwrap();
    assert_eq!(ssh_after.updated_by, "inventory");
    assert_eq!(ssh_after.installed_version, "1:9.2p1-2+deb12u3");
    assert_eq!(ssh_after.note, "apt upgrade run");
    agent.stop().await;
    server.abort();

    // Everything survives a restart of the service.
    drop(svc);
    let svc = AgentService::open(data.path(), cfg()).unwrap();
    assert_eq!(svc.patch_tasks(None).len(), 2);
    assert_eq!(svc.vulnerabilities(&id).unwrap().vulnerable.len(), 1);
    // Per ecosystem: Debian 12 ×3, 11, 10, 6.0, Ubuntu 22.04 and 24.04.
    assert_eq!(svc.vulnerability_db_status().values().sum::<usize>(), 8);
    assert!(svc.vulnerabilities("nope").is_err());
}

#[test]
fn ubuntu_hosts_match_ubuntu_ecosystems() {
    use canh_server::agents::VulnDb;
    use canh_server::agents::vuln::InstalledPackage;
    let mut db = VulnDb::default();
    db.import_path(Path::new(OSV_DIR)).unwrap();
    let ssh = |v: &str| {
        vec![InstalledPackage {
            name: "openssh-server".into(),
            version: v.into(),
            arch: "amd64".into(),
            source: "openssh".into(),
            source_version: v.into(),
        }]
    };
    let f = db.match_host("ubuntu", "22.04", &ssh("1:8.9p1-3ubuntu0.6"));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].advisories[0].id, "USN-6859-1");
    assert_eq!(f[0].fixed_version.as_deref(), Some("1:8.9p1-3ubuntu0.10"));
    assert!(
        db.match_host("ubuntu", "22.04", &ssh("1:8.9p1-3ubuntu0.10"))
            .is_empty()
    );
    assert!(
        db.match_host("ubuntu", "24.04", &ssh("1:9.6p1-3ubuntu13.3"))
            .is_empty()
    );
    assert_eq!(
        db.match_host("ubuntu", "24.04", &ssh("1:9.6p1-3ubuntu13"))
            .len(),
        1
    );
    // A Debian host with the same version string is judged by Debian records only.
    let f = db.match_host("debian", "12", &ssh("1:9.2p1-2+deb12u2"));
    assert_eq!(f[0].advisories.len(), 1);
    assert_eq!(f[0].advisories[0].id, "DSA-5724-1");
    // Debian 11's glibc fix is not borrowed by Debian 12 and the reverse.
    let glibc = |v: &str| {
        vec![InstalledPackage {
            name: "libc6".into(),
            version: v.into(),
            arch: "amd64".into(),
            source: "glibc".into(),
            source_version: v.into(),
        }]
    };
    let f = db.match_host("debian", "11", &glibc("2.31-13+deb11u6"));
    assert_eq!(f[0].fixed_version.as_deref(), Some("2.31-13+deb11u7"));
    assert!(
        db.match_host("debian", "11", &glibc("2.31-13+deb11u7"))
            .is_empty()
    );
}

proptest::proptest! {
    /// The agent's own dpkg comparator and the `debversion` crate the server uses agree.
    #[test]
    fn agent_and_server_version_orderings_agree(
        a in "([0-9]:)?[0-9][0-9a-z.+~]{0,6}(-[0-9a-z.+~]{1,5})?",
        b in "([0-9]:)?[0-9][0-9a-z.+~]{0,6}(-[0-9a-z.+~]{1,5})?",
    ) {
        use canh_agent::inventory::debversion::DebVersion;
        let (Ok(x), Ok(y)) = (a.parse::<DebVersion>(), b.parse::<DebVersion>()) else {
            return Ok(());
        };
        let (Ok(p), Ok(q)) = (a.parse::<debversion::Version>(), b.parse::<debversion::Version>()) else {
            return Ok(());
        };
        proptest::prop_assert_eq!(x.cmp(&y), p.cmp(&q), "{} vs {}", a, b);
    }
}

/// Minimal HTTP/1.1 over a TcpStream: status and body.
pub(super) async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status: u16 = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vulnerability_api_needs_a_user_and_imports_a_zip() {
    use canh_soar::{Actor, NewAgency, Role};
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path()).await;
    let soar = &node.soar.soar;
    let sys = Actor::system("test");
    let pw = "correct horse battery staple";
    let admin = soar
        .create_user(&sys, "quantri", Role::Administrator, None, pw)
        .await
        .unwrap();
    let analyst = soar
        .create_user(&sys, "phantich", Role::Analyst, None, pw)
        .await
        .unwrap();
    let agency = soar
        .create_agency(
            &sys,
            NewAgency {
                code: "tinh-a".into(),
                name: "Tỉnh A".into(),
                level: "province".into(),
                parent_id: None,
            },
        )
        .await
        .unwrap();
    let viewer = soar
        .create_user(&sys, "xem", Role::AgencyViewer, Some(agency.id), pw)
        .await
        .unwrap();
    let mut toks = Vec::new();
    for id in [admin.id, analyst.id, viewer.id] {
        let issued = soar
            .issue_token(&sys, id, "t", chrono::Duration::days(1))
            .await
            .unwrap();
        toks.push(issued.secret);
    }
    let (admin_t, analyst_t, viewer_t) = (toks[0].clone(), toks[1].clone(), toks[2].clone());
    let addr = node.http;

    let record = std::fs::read(format!("{OSV_DIR}/DSA-5724-1.json")).unwrap();
    let (st, _) = http(
        addr,
        "POST",
        "/api/v1/vulnerabilities/import",
        "wrong",
        &record,
    )
    .await;
    assert_eq!(st, 401);
    let (st, _) = http(
        addr,
        "POST",
        "/api/v1/vulnerabilities/import",
        &analyst_t,
        &record,
    )
    .await;
    assert_eq!(st, 403);
    let (st, body) = http(
        addr,
        "POST",
        "/api/v1/vulnerabilities/import",
        &admin_t,
        &record,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["imported"], 1);
    let (st, body) = http(
        addr,
        "GET",
        "/api/v1/vulnerabilities/status",
        &analyst_t,
        b"",
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(body["ecosystems"]["Debian:12"], 1);
    let (st, _) = http(
        addr,
        "GET",
        "/api/v1/vulnerabilities/status",
        &viewer_t,
        b"",
    )
    .await;
    assert_eq!(st, 403);
    let (st, body) = http(
        addr,
        "GET",
        "/api/v1/agents/nope/vulnerabilities",
        &analyst_t,
        b"",
    )
    .await;
    assert_eq!(st, 404, "{body}");
    let (st, body) = http(addr, "GET", "/api/v1/patch-tasks", &analyst_t, b"").await;
    assert_eq!(st, 200);
    assert_eq!(body, serde_json::json!([]));
    let (st, _) = http(
        addr,
        "PATCH",
        "/api/v1/patch-tasks/1",
        &analyst_t,
        br#"{"status":"done"}"#,
    )
    .await;
    assert_eq!(st, 404);
    let (st, body) = http(
        addr,
        "POST",
        "/api/v1/agents/enrolment-tokens",
        &admin_t,
        br#"{"ttl_secs":600}"#,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["token"].as_str().unwrap().len(), 64);
    assert_eq!(body["ca_pin"].as_str().unwrap().len(), 64);
    let (st, _) = http(
        addr,
        "POST",
        "/api/v1/agents/enrolment-tokens",
        &analyst_t,
        b"{}",
    )
    .await;
    assert_eq!(st, 403);
    // The local command-line token (the data directory's token file) may import too.
    let local = std::fs::read_to_string(canh_server::node::local_token_path(dir.path())).unwrap();
    let (st, body) = http(
        addr,
        "POST",
        "/api/v1/vulnerabilities/import",
        local.trim(),
        &record,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    node.shutdown().await.unwrap();
}
