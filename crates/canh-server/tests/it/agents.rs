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
        self.task = Some(tokio::spawn(async move { client.run(rx).await }));
    }

    async fn stop(mut self) {
        self.stop.send(true).unwrap();
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
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
    let svc = AgentService::open(data.path(), cfg()).unwrap();
    let token = svc
        .create_enrolment_token(Duration::from_secs(300))
        .unwrap();
    let listener = svc.bind().await.unwrap();
    let (enrol_addr, agent_addr) = (
        listener.enrol_addr().unwrap(),
        listener.agent_addr().unwrap(),
    );
    let sink = Arc::new(CountingSink::default());
    let server = tokio::spawn(listener.serve(sink.clone()));

    let identity =
        canh_agent::client::enrol(state.path(), &enrol_addr.to_string(), &token, &svc.ca_pin())
            .await
            .unwrap();
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
