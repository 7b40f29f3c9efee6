//! Search, paging, counts, histograms, SQL and maintenance of the embedded store.

use crate::common::{all, event, events, manual, open, tags};
use canh_core::query::{self, Expr};
use canh_store::{SearchRequest, Store, StoreConfig};
use chrono::{Duration, DurationRound, Utc};
use std::collections::{BTreeMap, BTreeSet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_are_searchable_before_and_after_flush_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let now = Utc::now();
    let (from, to) = (now - Duration::days(3), now + Duration::minutes(1));
    store
        .append(events(0, 300, now, Duration::hours(40)))
        .await
        .unwrap();
    assert_eq!(store.pending(), 300);
    assert_eq!(
        tags(&store, from, to).await.len(),
        300,
        "visible from memory"
    );
    let stats = store.flush().await.unwrap();
    assert_eq!(stats.events, 300);
    assert_eq!(stats.checkpoint, 300);
    assert!(stats.files >= 3, "partitioned by day and agency: {stats:?}");
    assert_eq!(store.pending(), 0);
    let after = tags(&store, from, to).await;
    assert_eq!(after.len(), 300);
    store
        .append(events(300, 50, now, Duration::hours(1)))
        .await
        .unwrap();
    let mixed = tags(&store, from, to).await;
    assert_eq!(mixed.len(), 350);
    assert_eq!(
        mixed.iter().collect::<BTreeSet<_>>().len(),
        350,
        "no duplicates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_by_cursor_is_complete_and_stable_while_events_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let now = Utc::now() - Duration::hours(1);
    // Equal timestamps in pairs, to exercise the id tie-break.
    let mut evs = Vec::new();
    for i in 0..200u64 {
        evs.push(event(i, now - Duration::seconds((i / 2) as i64)));
    }
    store.append(evs[..120].to_vec()).await.unwrap();
    store.flush().await.unwrap();
    store.append(evs[120..].to_vec()).await.unwrap();
    let q = query::parse("NOT host.name:host-003").unwrap();
    let (from, to) = (now - Duration::days(1), now + Duration::hours(2));
    let full = store
        .search(SearchRequest {
            query: q.clone(),
            from,
            to,
            limit: 1000,
            cursor: None,
        })
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store
            .search(SearchRequest {
                query: q.clone(),
                from,
                to,
                limit: 23,
                cursor,
            })
            .await
            .unwrap();
        seen.extend(page.hits.iter().map(|h| h.id));
        pages += 1;
        if pages == 2 {
            // Newer events arriving meanwhile do not shift the pages already being read.
            store
                .append(events(1000, 10, Utc::now(), Duration::minutes(1)))
                .await
                .unwrap();
            store.flush().await.unwrap();
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c.to_string().parse().unwrap()),
            None => break,
        }
    }
    let want: Vec<u64> = full.hits.iter().map(|h| h.id).collect();
    assert_eq!(seen, want);
    assert_eq!(full.total as usize, want.len());
    assert!(want.len() > 150);
    let keys: Vec<(i64, u64)> = full
        .hits
        .iter()
        .map(|h| (h.event.timestamp.timestamp_micros(), h.id))
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] > w[1]),
        "newest first by (timestamp, id)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_and_histograms_agree_with_the_evaluator_across_tail_index_and_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let now = Utc::now();
    let hot = events(0, 400, now, Duration::hours(30));
    let cold = events(400, 100, now - Duration::days(60), Duration::hours(5));
    store.append(hot[..250].to_vec()).await.unwrap();
    store.append(cold.clone()).await.unwrap();
    store.flush().await.unwrap();
    store.append(hot[250..].to_vec()).await.unwrap();
    let every: Vec<_> = hot.iter().chain(&cold).cloned().collect();
    let (from, to) = (now - Duration::days(70), now + Duration::seconds(1));
    for q in [
        "*",
        "event.outcome:failure",
        "mimikatz OR user.name:admin",
        "destination.port:[80 TO 443] AND NOT organization.id:ubnd",
        "source.ip:10.2.0.0/16",
        "accepted AND publickey",
    ] {
        let expr = query::parse(q).unwrap();
        for field in ["host.name", "destination.port", "labels.tag"] {
            let mut want: BTreeMap<String, u64> = BTreeMap::new();
            for e in every.iter().filter(|e| expr.matches(e)) {
                let v = query::keyword_text(e.get(field).unwrap())
                    .unwrap()
                    .into_owned();
                *want.entry(v).or_default() += 1;
            }
            let got: BTreeMap<String, u64> = store
                .count_by(field, &expr, from, to, 100_000)
                .await
                .unwrap()
                .into_iter()
                .collect();
            assert_eq!(got, want, "count_by {field} for {q}");
        }
        let hist = store
            .histogram(&expr, from, to, Duration::hours(6))
            .await
            .unwrap();
        let total: u64 = hist.iter().map(|b| b.count).sum();
        assert_eq!(
            total,
            every.iter().filter(|e| expr.matches(e)).count() as u64,
            "{q}"
        );
        for b in &hist {
            let want = every
                .iter()
                .filter(|e| {
                    e.timestamp >= b.start
                        && e.timestamp < b.start + Duration::hours(6)
                        && expr.matches(e)
                })
                .count() as u64;
            assert_eq!(b.count, want, "bucket {} of {q}", b.start);
        }
        assert_eq!(hist[0].start.timestamp() % (6 * 3600), 0, "aligned buckets");
    }
    let top = store
        .count_by("host.name", &Expr::All, from, to, 3)
        .await
        .unwrap();
    assert_eq!(top.len(), 3);
    assert!(top[0].1 >= top[1].1 && top[1].1 >= top[2].1);
    assert!(
        store
            .histogram(&Expr::All, from, to, Duration::seconds(1))
            .await
            .is_err(),
        "too many buckets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_runs_over_flushed_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let now = Utc::now();
    store
        .append(events(0, 120, now, Duration::hours(2)))
        .await
        .unwrap();
    store.flush().await.unwrap();
    let r = store
        .sql("SELECT org, count(*) AS n FROM events WHERE \"event.outcome\" = 'failure' GROUP BY org ORDER BY org")
        .await
        .unwrap();
    assert_eq!(r.columns, vec!["org", "n"]);
    let total: i64 = r.rows.iter().map(|row| row[1].as_i64().unwrap()).sum();
    assert_eq!(total, 24);
    assert_eq!(r.rows.len(), 3);
    let e = store.sql("SELECT * FROM nowhere").await.unwrap_err();
    assert!(e.to_string().contains("nowhere"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_expires_old_days_per_agency_and_compacts_small_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        retention_days: 30,
        retention_days_by_agency: [("so-tt".to_owned(), 90)].into_iter().collect(),
        compact_min_files: 3,
        ..manual()
    };
    let store = Store::open(dir.path(), cfg).await.unwrap();
    let now = Utc::now();
    let old_day = (now - Duration::days(45))
        .duration_trunc(Duration::days(1))
        .unwrap()
        + Duration::hours(12);
    store
        .append(events(0, 30, old_day, Duration::hours(1)))
        .await
        .unwrap();
    store.flush().await.unwrap();
    let recent = now - Duration::hours(1);
    for k in 0..4 {
        store
            .append(vec![event(100 + k, recent), event(200 + k, recent)])
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    let (from, to) = (now - Duration::days(100), now + Duration::seconds(1));
    assert_eq!(tags(&store, from, to).await.len(), 38);
    let report = store.run_maintenance().await.unwrap();
    assert!(report.files_expired >= 2, "{report:?}");
    assert!(report.partitions_compacted >= 1, "{report:?}");
    let left = store.search(all(from, to)).await.unwrap();
    let old_left: Vec<_> = left
        .hits
        .iter()
        .filter(|h| h.event.timestamp < now - Duration::days(40))
        .collect();
    assert_eq!(old_left.len(), 10, "only so-tt keeps 45-day-old events");
    assert!(old_left.iter().all(|h| h.event.agency() == Some("so-tt")));
    assert_eq!(left.total, 18);
    let n = store.sql("SELECT count(*) FROM events").await.unwrap();
    assert_eq!(n.rows[0][0].as_i64(), Some(18));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_reachable_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let now = Utc::now();
    let letter = canh_store::DeadLetter {
        time: now,
        source: "syslog_tcp".into(),
        reason: "frame exceeds 64 KiB".into(),
        raw: vec![0, 159, 146, 150],
        peer: Some("192.0.2.1:601".into()),
    };
    store
        .dead_letters()
        .append(std::slice::from_ref(&letter))
        .unwrap();
    let q = query::parse("canh.source.id:syslog_tcp").unwrap();
    let found = store
        .dead_letters()
        .search(&q, now - Duration::hours(1), now + Duration::hours(1), 10)
        .unwrap();
    assert_eq!(found, vec![letter]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let now = Utc::now();
    assert!(store.search(all(now, now)).await.is_err());
    assert!(
        store
            .histogram(&Expr::All, now - Duration::hours(1), now, Duration::zero())
            .await
            .is_err()
    );
    let bad = StoreConfig {
        index_heap_mb: 1,
        ..manual()
    };
    let other = tempfile::tempdir().unwrap();
    assert!(Store::open(other.path(), bad).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_wait_for_the_flush_when_the_memory_tail_is_full() {
    let dir = tempfile::tempdir().unwrap();
    // A long interval: only a full tail wakes the background flush.
    let cfg = StoreConfig {
        flush_interval_ms: 3_600_000,
        flush_max_events: 100,
        max_pending_events: 200,
        ..manual()
    };
    let store = Store::open(dir.path(), cfg).await.unwrap();
    let now = Utc::now();
    let (from, to) = (now - Duration::days(1), now + Duration::minutes(1));
    let mut peak = 0;
    for b in 0..50u64 {
        store
            .append(events(b * 100, 100, now, Duration::hours(2)))
            .await
            .unwrap();
        peak = peak.max(store.pending());
        // Room is checked before an append: at most one batch above the limit.
        assert!(store.pending() < 300, "tail grew to {}", store.pending());
    }
    let (waits, _) = store.backpressure();
    assert!(
        waits > 0,
        "5,000 events against a 200-event limit never waited"
    );
    assert!(peak >= 100, "peak {peak}");
    let got = tags(&store, from, to).await;
    assert_eq!(got.len(), 5_000);
    assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 5_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_moves_a_large_tail_in_bounded_steps() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        flush_max_events: 100,
        ..manual()
    };
    let store = Store::open(dir.path(), cfg).await.unwrap();
    let now = Utc::now();
    let (from, to) = (now - Duration::days(1), now + Duration::minutes(1));
    store
        .append(events(0, 250, now, Duration::minutes(30)))
        .await
        .unwrap();
    let stats = store.flush().await.unwrap();
    assert_eq!(stats.events, 250);
    assert_eq!(stats.checkpoint, 250);
    // Three steps (100, 100, 50), each split by agency (3) within one day or two.
    assert!(stats.files >= 9, "{stats:?}");
    assert_eq!(store.pending(), 0);
    assert_eq!(tags(&store, from, to).await.len(), 250);
    drop(store);
    let store = open(dir.path()).await;
    assert_eq!(store.pending(), 0, "nothing replayed after the checkpoint");
    assert_eq!(tags(&store, from, to).await.len(), 250);
}
