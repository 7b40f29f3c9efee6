use super::*;
use chrono::TimeZone;
use serde_json::json;

fn ev(day: u32, h: u32, agency: Option<&str>, i: u64) -> Event {
    let mut e = Event::new(Utc.with_ymd_and_hms(2024, 5, day, h, 0, 0).unwrap());
    e.set("host.name", format!("host-{}", i % 3));
    e.set("destination.port", 443);
    e.set("source.port", "not-a-number");
    e.set("host.ip", json!(["10.0.0.1", "10.0.0.2"]));
    e.set("message", format!("event {i}"));
    e.set("labels.nested", json!({"a": 1}));
    if let Some(a) = agency {
        e.set("organization.id", a);
    }
    e
}

fn rows(v: Vec<Event>, first: u64) -> Vec<(u64, Arc<Event>)> {
    v.into_iter()
        .enumerate()
        .map(|(i, e)| (first + i as u64, Arc::new(e)))
        .collect()
}

#[test]
fn events_round_trip_through_parquet_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), 3, 1000).unwrap();
    let input = rows(
        vec![
            ev(1, 1, Some("so-tt"), 1),
            ev(1, 2, Some("a/b c"), 2),
            ev(2, 3, None, 3),
            ev(1, 0, Some("so-tt"), 4),
        ],
        1,
    );
    let files = lake.write(&input).unwrap();
    assert_eq!(files.len(), 3);
    let listed = lake.files().unwrap();
    assert_eq!(listed.len(), 3);
    let orgs: Vec<&str> = listed.iter().map(|f| f.org.as_str()).collect();
    assert!(orgs.contains(&"a%2Fb%20c"));
    assert!(orgs.contains(&NO_AGENCY));
    let mut back = Vec::new();
    for f in &listed {
        back.extend(lake.read_file(&f.path).unwrap());
    }
    back.sort_by_key(|(s, _)| *s);
    assert_eq!(back.len(), 4);
    for ((s, e), (s2, e2)) in back.iter().zip(&input) {
        assert_eq!(s, s2);
        assert_eq!(e, e2.as_ref());
    }
    let so_tt = listed.iter().find(|f| f.org == "so-tt").unwrap();
    assert_eq!((so_tt.min_seq, so_tt.max_seq), (1, 4));
    assert!(
        so_tt
            .path
            .to_string_lossy()
            .contains("dt=2024-05-01/org=so-tt/")
    );
}

#[test]
fn recover_removes_uncommitted_and_compaction_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), 3, 1000).unwrap();
    lake.write(&rows(vec![ev(1, 1, Some("x"), 1)], 1)).unwrap();
    lake.write(&rows(vec![ev(1, 2, Some("x"), 2)], 2)).unwrap();
    lake.write(&rows(vec![ev(1, 3, Some("x"), 3)], 3)).unwrap();
    // A compaction that wrote its output but did not delete its inputs.
    let merged: Vec<(u64, Arc<Event>)> =
        rows(vec![ev(1, 1, Some("x"), 1), ev(1, 2, Some("x"), 2)], 1);
    let b = to_batch(
        &merged
            .iter()
            .map(|(s, e)| (*s, e.as_ref()))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    lake.write_file(
        NaiveDate::from_ymd_opt(2024, 5, 1).unwrap(),
        "x",
        1,
        2,
        &[b],
    )
    .unwrap();
    let part = lake
        .root()
        .join("dt=2024-05-01/org=x/.00000000000000000009-00000000000000000009.parquet.part");
    fs::write(&part, b"partial").unwrap();
    assert_eq!(lake.files().unwrap().len(), 4);
    // Checkpoint 2: file 3 is above it, files 1 and 2 are covered by 1-2, the .part is junk.
    assert_eq!(lake.recover(2).unwrap(), 4);
    let left = lake.files().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].min_seq, left[0].max_seq), (1, 2));
    assert_eq!(lake.read_file(&left[0].path).unwrap().len(), 2);
}

#[test]
fn compaction_merges_small_files_below_the_checkpoint_only() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), 3, 2).unwrap();
    for i in 1..=5 {
        lake.write(&rows(vec![ev(1, i as u32, Some("x"), i)], i))
            .unwrap();
    }
    assert_eq!(lake.compact(3, 4).unwrap(), 1);
    let files = lake.files().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!((files[0].min_seq, files[0].max_seq), (1, 4));
    assert_eq!((files[1].min_seq, files[1].max_seq), (5, 5));
    let merged = lake.read_file(&files[0].path).unwrap();
    assert_eq!(
        merged.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(
        lake.compact(3, 5).unwrap(),
        0,
        "two files are below the minimum"
    );
}

#[test]
fn retention_honours_agency_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), 3, 1000).unwrap();
    lake.write(&rows(
        vec![
            ev(1, 1, Some("short"), 1),
            ev(1, 1, Some("long"), 2),
            ev(20, 1, Some("short"), 3),
        ],
        1,
    ))
    .unwrap();
    let today = NaiveDate::from_ymd_opt(2024, 5, 25).unwrap();
    let removed = lake
        .apply_retention(today, |a| if a == "long" { 90 } else { 10 })
        .unwrap();
    assert_eq!(removed, 1);
    let left: Vec<(NaiveDate, String)> = lake
        .files()
        .unwrap()
        .into_iter()
        .map(|f| (f.day, f.org))
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&(
        NaiveDate::from_ymd_opt(2024, 5, 1).unwrap(),
        "long".to_owned()
    )));
    assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
}

#[tokio::test]
async fn sql_sees_typed_columns_and_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), 3, 1000).unwrap();
    let empty = lake
        .sql("SELECT count(*) AS n FROM events", 10)
        .await
        .unwrap();
    assert_eq!(empty.rows, vec![vec![json!(0)]]);
    let evs: Vec<Event> = (0..30)
        .map(|i| ev(1 + (i % 2) as u32, 1, Some("so-tt"), i))
        .collect();
    lake.write(&rows(evs, 1)).unwrap();
    let r = lake
        .sql(
            "SELECT \"host.name\" AS h, count(*) AS n FROM events WHERE dt = '2024-05-01' \
             AND \"destination.port\" = 443 GROUP BY 1 ORDER BY 1",
            10,
        )
        .await
        .unwrap();
    assert_eq!(r.columns, vec!["h", "n"]);
    assert_eq!(
        r.rows,
        vec![
            vec![json!("host-0"), json!(5)],
            vec![json!("host-1"), json!(5)],
            vec![json!("host-2"), json!(5)]
        ]
    );
    let t = lake
        .sql(
            "SELECT org, min(\"@timestamp\") FROM events GROUP BY org",
            10,
        )
        .await
        .unwrap();
    assert_eq!(t.rows[0][0], json!("so-tt"));
    assert!(
        t.rows[0][1]
            .as_str()
            .unwrap()
            .starts_with("2024-05-01T01:00:00")
    );
    let cut = lake.sql("SELECT _id FROM events", 7).await.unwrap();
    assert!(cut.truncated);
    assert_eq!(cut.rows.len(), 7);
    assert!(matches!(
        lake.sql("SELEC nonsense", 1).await,
        Err(StoreError::Invalid(_))
    ));
}
