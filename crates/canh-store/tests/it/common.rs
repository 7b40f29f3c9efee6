//! Event generator and helpers shared by the store tests.

use canh_core::Event;
use canh_store::{SearchRequest, Store, StoreConfig};
use chrono::{DateTime, Duration, Utc};
use std::path::Path;

/// A deterministic security event `i` at `t` (synthetic).
pub(crate) fn event(i: u64, t: DateTime<Utc>) -> Event {
    let mut e = Event::new(t);
    e.set("host.name", format!("host-{:03}", i % 17));
    e.set(
        "user.name",
        ["root", "admin", "svc", "nguyen.van.a"][(i % 4) as usize],
    );
    e.set(
        "source.ip",
        format!("10.{}.{}.{}", i % 4, (i / 7) % 250, i % 250),
    );
    e.set("destination.port", [22, 80, 443, 3389][(i % 4) as usize]);
    e.set(
        "organization.id",
        ["so-tt", "ubnd", "so-yt"][(i % 3) as usize],
    );
    e.set(
        "event.outcome",
        if i.is_multiple_of(5) {
            "failure"
        } else {
            "success"
        },
    );
    e.set("labels.tag", format!("t{i}"));
    if i.is_multiple_of(13) {
        e.set(
            "process.command_line",
            format!("powershell -enc {i:x} mimikatz"),
        );
    }
    e.set(
        "message",
        format!(
            "Accepted publickey for user{} from 10.0.0.{} port {}",
            i % 4,
            i % 250,
            40000 + i
        ),
    );
    e
}

/// `n` events spread evenly over `span` ending at `end`, tagged from `first`.
pub(crate) fn events(first: u64, n: u64, end: DateTime<Utc>, span: Duration) -> Vec<Event> {
    let step = span.num_microseconds().unwrap_or(1) / n.max(1) as i64;
    (0..n)
        .map(|k| {
            event(
                first + k,
                end - Duration::microseconds(step * (n - k) as i64),
            )
        })
        .collect()
}

/// A config with no background task (tests flush explicitly).
pub(crate) fn manual() -> StoreConfig {
    StoreConfig {
        flush_interval_ms: 0,
        index_heap_mb: 16,
        wal_fsync: false,
        ..StoreConfig::default()
    }
}

pub(crate) async fn open(dir: &Path) -> Store {
    Store::open(dir, manual()).await.unwrap()
}

pub(crate) fn all(from: DateTime<Utc>, to: DateTime<Utc>) -> SearchRequest {
    SearchRequest {
        query: canh_core::query::Expr::All,
        from,
        to,
        limit: 1_000_000,
        cursor: None,
    }
}

/// Every `labels.tag` found by a search over `[from, to)`, sorted.
pub(crate) async fn tags(store: &Store, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
    let page = store.search(all(from, to)).await.unwrap();
    assert_eq!(page.total as usize, page.hits.len());
    let mut t: Vec<String> = page
        .hits
        .iter()
        .map(|h| h.event.get_str("labels.tag").unwrap().to_owned())
        .collect();
    t.sort();
    t
}
