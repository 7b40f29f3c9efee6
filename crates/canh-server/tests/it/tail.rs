//! File tail: lines are read once each across a restart, a rename rotation and a truncation.

use crate::ingest::{search, wait_hits};
use canh_server::{Config, Node};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;

async fn node_on(data: &Path, log: &Path) -> Node {
    let mut cfg = Config::default();
    cfg.server.http = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.server.syslog = None;
    cfg.server.http_tls = false;
    cfg.store.flush_interval_ms = 200;
    cfg.ingest.file_poll_ms = 20;
    cfg.ingest.files = vec![canh_server::tail::TailConfig {
        path: log.to_owned(),
        format: "auto".into(),
        from_start: true,
    }];
    Node::start(cfg, data).await.unwrap()
}

fn append(path: &Path, lines: std::ops::Range<u32>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for i in lines {
        writeln!(
            f,
            "<13>1 2026-11-27T10:00:00Z host app - - - tail line={i} marker-tail"
        )
        .unwrap();
    }
}

fn line_numbers(hits: &[serde_json::Value]) -> Vec<u32> {
    let mut v: Vec<u32> = hits
        .iter()
        .filter_map(|h| h["message"].as_str())
        .filter_map(|m| m.split("line=").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_file_survives_restart_rotation_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("app.log");
    append(&log, 0..100);
    let node = node_on(&data, &log).await;
    assert_eq!(wait_hits(&node, "marker-tail", 100).await.len(), 100);
    node.shutdown().await.unwrap();

    // Written while Canh is down: read after the restart, nothing twice.
    append(&log, 100..150);
    let node = node_on(&data, &log).await;
    assert_eq!(wait_hits(&node, "marker-tail", 150).await.len(), 150);

    // Rotation by rename: the rest of the old file, then the new one from its start.
    append(&log, 150..160);
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&log, 160..170);
    assert_eq!(wait_hits(&node, "marker-tail", 170).await.len(), 170);

    // Truncation in place (copytruncate): read again from the start of the file.
    std::fs::write(&log, b"").unwrap();
    append(&log, 170..175);
    let hits = wait_hits(&node, "marker-tail", 175).await;
    assert_eq!(line_numbers(&hits), (0..175).collect::<Vec<_>>());
    assert_eq!(search(&node, "marker-tail").await.len(), 175);
    node.shutdown().await.unwrap();
}
