use super::*;
use chrono::TimeZone;
use serde_json::json;

fn events() -> Vec<(u64, Arc<Event>)> {
    let base = Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap();
    let hosts = ["web-01", "web-02", "db-01", "WEB-03"];
    let users = ["root", "admin", "Nguyễn Văn A", "svc_backup"];
    let mut out = Vec::new();
    for i in 0..120u64 {
        let mut e = Event::new(base + chrono::Duration::minutes(i as i64 * 13));
        e.set("host.name", hosts[(i % 4) as usize]);
        e.set("user.name", users[(i % 3) as usize]);
        e.set("source.ip", format!("10.{}.0.{}", i % 3, i % 250));
        e.set("destination.port", [22, 443, 8080][(i % 3) as usize]);
        if i.is_multiple_of(5) {
            e.set(
                "process.command_line",
                format!("C:\\Tools\\mimikatz.exe sekurlsa::{i}"),
            );
        }
        if i.is_multiple_of(7) {
            e.set("labels.score", 1.5 * i as f64);
            e.set("host.ip", json!(["192.168.1.1", format!("172.16.0.{i}")]));
        }
        if i.is_multiple_of(11) {
            e.set("event.outcome", json!(null));
        }
        e.set(
            "message",
            format!(
                "Failed password for {} from 10.0.0.{} port {}",
                users[(i % 3) as usize],
                i,
                1000 + i
            ),
        );
        e.set(
            "event.original",
            format!("<38>sshd[{i}]: session {i:04x} opened"),
        );
        e.set(
            "organization.id",
            if i.is_multiple_of(2) { "so-tt" } else { "ubnd" },
        );
        out.push((i + 1, Arc::new(e)));
    }
    out
}

fn open(dir: &Path) -> HotIndex {
    HotIndex::open(dir, 20 * 1024 * 1024).unwrap().0
}

/// Loads events by id from the fixture, as the store loads them from Parquet.
type Loaded = Result<std::collections::HashMap<u64, Event>, StoreError>;

fn loader(evs: &[(u64, Arc<Event>)]) -> impl FnMut(&Snapshot, &[(usize, DocKey)]) -> Loaded + '_ {
    move |_, keys| {
        Ok(keys
            .iter()
            .filter_map(|(_, k)| {
                evs.iter()
                    .find(|(s, _)| *s == k.id)
                    .map(|(s, e)| (*s, (**e).clone()))
            })
            .collect())
    }
}

const QUERIES: &[&str] = &[
    "*",
    "host.name:web-01",
    "host.name:web-*",
    "host.name:WEB*",
    "host.name:(web-01 OR db-01) AND NOT user.name:root",
    "user.name:\"Nguyễn Văn A\"",
    "failed",
    "\"password for root\"",
    "pass*",
    "message:session",
    "sshd",
    "session 000a",
    "_exists_:process.command_line",
    "NOT _exists_:process.command_line",
    "process.command_line:*mimikatz*",
    "process.command_line:C\\:\\\\Tools*",
    "destination.port:443",
    "destination.port:443.0",
    "destination.port:[100 TO 1000]",
    "destination.port>=8080 OR user.name:admin",
    "labels.score:>50",
    "labels.score:21",
    "source.ip:10.1.0.0/16",
    "host.ip:172.16.0.0/24 AND NOT source.ip:10.0.0.0/8",
    "@timestamp:[2024-05-01T05:00:00Z TO 2024-05-01T10:00:00Z}",
    "_exists_:event.outcome",
    "organization.id:so-tt AND -host.name:db*",
    "NOT (failed OR sshd)",
    "host.name:web-0?",
];

#[test]
fn index_agrees_with_the_evaluator_on_every_query_form() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path());
    let evs = events();
    let day = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
    let (d1, d2): (Vec<_>, Vec<_>) = evs
        .iter()
        .cloned()
        .partition(|(_, e)| e.timestamp.date_naive() == day);
    idx.add(day, &d1, 120, false).unwrap();
    idx.add(day.succ_opt().unwrap(), &d2, 120, false).unwrap();
    idx.reload().unwrap();
    let snap = idx.snapshot(day, day.succ_opt().unwrap());
    let from = Utc.with_ymd_and_hms(2024, 4, 30, 0, 0, 0).unwrap();
    let to = Utc.with_ymd_and_hms(2024, 5, 3, 0, 0, 0).unwrap();
    for q in QUERIES {
        let expr = query::parse(q).unwrap();
        let mut want: Vec<u64> = evs
            .iter()
            .filter(|(_, e)| expr.matches(e))
            .map(|(s, _)| *s)
            .collect();
        let mut got: Vec<u64> = snap
            .matching(&expr, from, to, &mut loader(&evs))
            .unwrap()
            .iter()
            .map(|(_, k)| k.id)
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "query {q}");
    }
    // Sanity: the queries are not all trivially empty or full.
    let failed = query::parse("process.command_line:*mimikatz*").unwrap();
    assert_eq!(
        snap.matching(&failed, from, to, &mut loader(&evs))
            .unwrap()
            .len(),
        24
    );
}

#[test]
fn fast_counts_agree_with_loaded_documents() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path());
    let evs = events();
    let day = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
    let d1: Vec<_> = evs
        .iter()
        .filter(|(_, e)| e.timestamp.date_naive() == day)
        .cloned()
        .collect();
    idx.add(day, &d1, 120, false).unwrap();
    idx.reload().unwrap();
    let snap = idx.snapshot(day, day);
    let from = Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap();
    let to = from + chrono::Duration::days(1);
    let expr = query::parse("failed AND NOT host.name:db-01").unwrap();
    let fast = snap
        .count_fast("host.name", &expr, from, to)
        .unwrap()
        .unwrap();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (_, e) in &d1 {
        if expr.matches(e) {
            *want
                .entry(e.get_str("host.name").unwrap().to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(fast, want);
    assert!(!want.contains_key("db-01"));
    assert!(
        snap.count_fast("labels.score", &expr, from, to)
            .unwrap()
            .is_none()
    );
}

#[test]
fn recover_rolls_back_documents_above_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let evs = events();
    let day = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
    let d1: Vec<_> = evs
        .iter()
        .filter(|(_, e)| e.timestamp.date_naive() == day)
        .cloned()
        .collect();
    let (a, b) = d1.split_at(50);
    {
        let idx = open(dir.path());
        idx.add(day, a, 50, false).unwrap();
        idx.add(day, b, d1.last().unwrap().0, false).unwrap();
    }
    let idx = open(dir.path());
    assert_eq!(idx.committed_seq().unwrap()[&day], d1.last().unwrap().0);
    idx.recover(50).unwrap();
    assert_eq!(idx.committed_seq().unwrap()[&day], 50);
    let snap = idx.snapshot(day, day);
    let from = Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap();
    let got = snap
        .matching(
            &Expr::All,
            from,
            from + chrono::Duration::days(1),
            &mut loader(&evs),
        )
        .unwrap();
    assert_eq!(got.len(), 50);
    assert!(got.iter().all(|(_, k)| k.id <= 50));
    assert_eq!(idx.drop_before(day.succ_opt().unwrap()).unwrap(), 1);
    assert!(idx.days().is_empty());
}

#[test]
fn documents_name_their_agency_and_day_for_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path());
    let evs = events();
    let day = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
    idx.add(day, &evs[..3], 3, true).unwrap();
    idx.reload().unwrap();
    let snap = idx.snapshot(day, day);
    let from = Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap();
    let keys = snap
        .matching(
            &Expr::All,
            from,
            from + chrono::Duration::days(1),
            &mut loader(&evs),
        )
        .unwrap();
    assert_eq!(keys.len(), 3);
    let agencies = snap.agencies(&keys);
    for ((i, k), agency) in keys.iter().zip(agencies) {
        assert_eq!(snap.day(*i), Some(day));
        let ev = &evs[(k.id - 1) as usize].1;
        assert_eq!(agency.as_deref(), ev.agency());
    }
}

#[test]
fn canonical_keyword_spots_spellings_the_index_does_not_store() {
    assert!(canonical_keyword("web-01"));
    assert!(canonical_keyword("443"));
    assert!(canonical_keyword("true"));
    assert!(!canonical_keyword("443.0"));
    assert!(!canonical_keyword("TRUE"));
    assert!(!canonical_keyword("1e3"));
}
