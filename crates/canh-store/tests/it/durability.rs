//! Acknowledged events survive a crash and are stored exactly once.

use crate::common::{events, manual, open, tags};
use canh_store::{Store, StoreConfig};
use chrono::{Duration, Utc};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_store_replays_unflushed_events_once() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let (from, to) = (now - Duration::days(2), now + Duration::minutes(1));
    {
        let store = open(dir.path()).await;
        store
            .append(events(0, 100, now, Duration::hours(3)))
            .await
            .unwrap();
        store.flush().await.unwrap();
        store
            .append(events(100, 70, now, Duration::hours(3)))
            .await
            .unwrap();
        // Dropped without flush: 70 events live only in the WAL.
    }
    let store = open(dir.path()).await;
    assert_eq!(store.pending(), 70);
    assert_eq!(tags(&store, from, to).await.len(), 170);
    store.flush().await.unwrap();
    drop(store);
    let store = open(dir.path()).await;
    assert_eq!(store.pending(), 0);
    let t = tags(&store, from, to).await;
    assert_eq!(t.len(), 170);
    let n = store
        .sql("SELECT count(*), count(DISTINCT _id) FROM events")
        .await
        .unwrap();
    assert_eq!(n.rows[0][0].as_i64(), Some(170));
    assert_eq!(n.rows[0][1].as_i64(), Some(170));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_writing_parquet_and_index_but_before_checkpoint_stores_once() {
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let (from, to) = (now - Duration::days(2), now + Duration::minutes(1));
    {
        let store = open(dir.path()).await;
        store
            .append(events(0, 50, now, Duration::hours(1)))
            .await
            .unwrap();
        store.flush().await.unwrap();
        store
            .append(events(50, 40, now, Duration::hours(30)))
            .await
            .unwrap();
        // The WAL as it is just before the flush: checkpoint 50, records 51..=90.
        copy_dir(&dir.path().join("wal"), saved.path());
        store.flush().await.unwrap();
        assert_eq!(store.checkpoint(), 90);
    }
    // Put the old WAL back: as if the process died after Parquet and tantivy were written but
    // before the checkpoint reached the disk.
    std::fs::remove_dir_all(dir.path().join("wal")).unwrap();
    copy_dir(saved.path(), &dir.path().join("wal"));
    let store = open(dir.path()).await;
    assert_eq!(store.checkpoint(), 50);
    assert_eq!(store.pending(), 40);
    assert_eq!(
        tags(&store, from, to).await.len(),
        90,
        "no duplicates before the re-flush"
    );
    store.flush().await.unwrap();
    let t = tags(&store, from, to).await;
    assert_eq!(t.len(), 90);
    let n = store.sql("SELECT count(*) FROM events").await.unwrap();
    assert_eq!(n.rows[0][0].as_i64(), Some(90));
}

const WRITER_ENV: &str = "CANH_STORE_TEST_WRITER_DIR";
const BASE_ENV: &str = "CANH_STORE_TEST_WRITER_BASE";

/// In the child: append batches forever, printing the tag range of each acknowledged batch.
async fn writer(dir: &Path, mut next: u64) -> ! {
    let cfg = StoreConfig {
        flush_interval_ms: 20,
        wal_fsync: true,
        ..manual()
    };
    let store = Store::open(dir, cfg).await.unwrap();
    loop {
        let batch = events(next, 25, Utc::now(), Duration::minutes(10));
        store.append(batch).await.unwrap();
        println!("ACK {next} {}", next + 25);
        next += 25;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writer_loses_no_acknowledged_event_and_duplicates_none() {
    if let Ok(dir) = std::env::var(WRITER_ENV) {
        let base = std::env::var(BASE_ENV).unwrap().parse().unwrap();
        writer(Path::new(&dir), base).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(u64, u64)> = Vec::new();
    // Two kills in a row: the second run starts by recovering from the first.
    for round in 0..2u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "durability::killed_writer_loses_no_acknowledged_event_and_duplicates_none",
            ])
            .args(["--nocapture", "--test-threads=1"])
            .env(WRITER_ENV, dir.path())
            .env(BASE_ENV, (round * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut batches = 0;
        for line in out.lines() {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("ACK ") else {
                continue;
            };
            let (a, b) = rest.split_once(' ').unwrap();
            acked.push((a.parse().unwrap(), b.parse().unwrap()));
            batches += 1;
            if batches == 60 + round * 17 {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    assert_eq!(acked.len(), 60 + 77, "the writer ran in both rounds");
    let store = open(dir.path()).await;
    store.flush().await.unwrap();
    let now = Utc::now();
    let (from, to) = (now - Duration::days(1), now + Duration::days(1));
    let page = store.search(crate::common::all(from, to)).await.unwrap();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for h in &page.hits {
        *counts
            .entry(h.event.get_str("labels.tag").unwrap().to_owned())
            .or_default() += 1;
    }
    for (a, b) in &acked {
        for tag in *a..*b {
            assert_eq!(
                counts.get(&format!("t{tag}")),
                Some(&1),
                "acknowledged t{tag}"
            );
        }
    }
    assert!(counts.values().all(|n| *n == 1), "a tag is stored twice");
    // Counts come straight from the index, without the search's merge: no duplicate there.
    let by_org = store
        .count_by(
            "organization.id",
            &canh_core::query::Expr::All,
            from,
            to,
            10,
        )
        .await
        .unwrap();
    assert_eq!(by_org.iter().map(|(_, n)| n).sum::<u64>(), page.total);
    let n = store
        .sql("SELECT count(*), count(DISTINCT _id) FROM events")
        .await
        .unwrap();
    assert_eq!(n.rows[0][0], n.rows[0][1], "parquet holds no duplicate");
    assert_eq!(n.rows[0][0].as_i64(), Some(page.total as i64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_day_index_is_rebuilt_from_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let (from, to) = (now - Duration::days(2), now + Duration::minutes(1));
    {
        let store = open(dir.path()).await;
        store
            .append(events(0, 120, now, Duration::hours(30)))
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    // Break every day index (as an index written under another schema would be).
    let mut broken = 0;
    for d in std::fs::read_dir(dir.path().join("index")).unwrap() {
        let meta = d.unwrap().path().join("meta.json");
        std::fs::write(&meta, b"not an index").unwrap();
        broken += 1;
    }
    assert!(broken >= 1);
    let store = open(dir.path()).await;
    assert_eq!(tags(&store, from, to).await.len(), 120);
    // A term query is answered by the rebuilt index, with the events read back from Parquet.
    let q = canh_core::query::parse("host.name:host-003").unwrap();
    let page = store
        .search(canh_store::SearchRequest {
            query: q,
            from,
            to,
            limit: 1000,
            cursor: None,
        })
        .await
        .unwrap();
    let want = (0..120u64).filter(|i| i % 17 == 3).count();
    assert_eq!(page.hits.len(), want);
    assert!(
        page.hits
            .iter()
            .all(|h| h.event.get_str("host.name") == Some("host-003"))
    );
}
