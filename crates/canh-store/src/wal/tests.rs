use super::*;
use chrono::{TimeZone, Utc};
use std::sync::atomic::{AtomicU64, Ordering};

fn events(n: usize, tag: &str) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut e = Event::new(Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap());
            e.set("host.name", format!("{tag}-{i}"));
            e
        })
        .collect()
}

fn opts() -> WalOptions {
    WalOptions {
        segment_bytes: 1 << 20,
        fsync: true,
    }
}

#[test]
fn appends_are_replayed_after_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, replay) = Wal::open(dir.path(), opts(), None).unwrap();
        assert!(replay.events.is_empty());
        let a = wal.append_blocking(events(3, "a")).unwrap();
        let b = wal.append_blocking(events(2, "b")).unwrap();
        assert_eq!(
            a,
            AppendAck {
                first_seq: 1,
                count: 3
            }
        );
        assert_eq!(
            b,
            AppendAck {
                first_seq: 4,
                count: 2
            }
        );
    }
    let (wal, replay) = Wal::open(dir.path(), opts(), None).unwrap();
    let seqs: Vec<u64> = replay.events.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    assert_eq!(replay.events[3].1.get_str("host.name"), Some("b-0"));
    // Numbering continues after the replayed events.
    assert_eq!(wal.append_blocking(events(1, "c")).unwrap().first_seq, 6);
}

#[test]
fn checkpoint_hides_flushed_events_and_deletes_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let small = WalOptions {
        segment_bytes: 1024,
        fsync: false,
    };
    {
        let (wal, _) = Wal::open(dir.path(), small.clone(), None).unwrap();
        for _ in 0..20 {
            wal.append_blocking(events(10, "x")).unwrap();
        }
        assert!(wal.segment_count() > 3, "segments rotate");
        let before = wal.segment_count();
        wal.set_checkpoint(150).unwrap();
        assert!(wal.segment_count() < before);
        assert_eq!(wal.checkpoint(), 150);
    }
    let (_, replay) = Wal::open(dir.path(), small, None).unwrap();
    let seqs: Vec<u64> = replay.events.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (151..=200).collect::<Vec<_>>());
}

#[test]
fn torn_tail_is_cut_and_earlier_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), opts(), None).unwrap();
        wal.append_blocking(events(2, "ok")).unwrap();
        wal.append_blocking(events(2, "torn")).unwrap();
    }
    let seg = list_segments(dir.path()).unwrap().remove(0).path;
    let len = fs::metadata(&seg).unwrap().len();
    // Cut the last record in half, as a crash during write would.
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 30)
        .unwrap();
    let (wal, replay) = Wal::open(dir.path(), opts(), None).unwrap();
    assert_eq!(replay.events.len(), 2);
    assert!(replay.truncated_bytes > 0);
    assert_eq!(replay.events[1].1.get_str("host.name"), Some("ok-1"));
    // The torn events' numbers are given out again: they were never acknowledged.
    assert_eq!(wal.append_blocking(events(1, "new")).unwrap().first_seq, 3);
}

#[test]
fn flipped_bit_is_detected_by_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), opts(), None).unwrap();
        wal.append_blocking(events(1, "a")).unwrap();
        wal.append_blocking(events(1, "b")).unwrap();
    }
    let seg = list_segments(dir.path()).unwrap().remove(0).path;
    let mut data = fs::read(&seg).unwrap();
    let last = data.len() - 5;
    data[last] ^= 0x01;
    fs::write(&seg, &data).unwrap();
    let (_, replay) = Wal::open(dir.path(), opts(), None).unwrap();
    assert_eq!(replay.events.len(), 1);
    assert_eq!(replay.events[0].1.get_str("host.name"), Some("a-0"));
}

#[test]
fn corrupt_checkpoint_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join(CHECKPOINT),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9],
    )
    .unwrap();
    assert!(matches!(
        Wal::open(dir.path(), opts(), None),
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_get_distinct_contiguous_sequences_and_the_sink_sees_order() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let sink: DurableSink = Arc::new(move |seq, batch: Frozen| {
        lock(&seen2).push((seq, batch.len() as u64));
    });
    let (wal, _) = Wal::open(dir.path(), opts(), Some(sink)).unwrap();
    let wal = Arc::new(wal);
    let total = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..16 {
        let wal = wal.clone();
        let total = total.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..10 {
                let ack = wal.append(events(1 + (t + i) % 5, "c")).await.unwrap();
                total.fetch_add(u64::from(ack.count), Ordering::Relaxed);
                acks.push(ack);
            }
            acks
        }));
    }
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await.unwrap());
    }
    acks.sort_by_key(|a| a.first_seq);
    let mut next = 1;
    for a in &acks {
        assert_eq!(a.first_seq, next, "no gaps, no overlaps");
        next += u64::from(a.count);
    }
    assert_eq!(next - 1, total.load(Ordering::Relaxed));
    let seen = lock(&seen).clone();
    let mut expect = 1;
    for (seq, n) in seen {
        assert_eq!(seq, expect, "sink called in sequence order");
        expect += n;
    }
    assert_eq!(expect, next);
}

#[test]
fn empty_batch_is_acknowledged_without_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), opts(), None).unwrap();
    assert_eq!(
        wal.append_blocking(Vec::new()).unwrap(),
        AppendAck {
            first_seq: 0,
            count: 0
        }
    );
    assert_eq!(wal.append_blocking(events(1, "a")).unwrap().first_seq, 1);
}

#[test]
fn a_frozen_batch_gives_back_each_event_its_line_and_its_time() {
    let mut evs = events(4, "f");
    evs[2].set("nested", serde_json::json!({"a": [1, 2], "b": null}));
    evs[3].set("text", "line\nbreak \u{1F600}");
    let batch = Frozen::encode(&evs);
    assert_eq!(batch.len(), 4);
    assert_eq!(batch.payload(), encode_events(&evs).as_slice());
    for (i, ev) in evs.iter().enumerate() {
        assert_eq!(batch.line(i), ev.to_json_line().as_bytes());
        assert_eq!(batch.time_micros(i), ev.timestamp.timestamp_micros());
        assert_eq!(&batch.decode(i).unwrap(), ev);
    }
    assert!(batch.line(4).is_empty());
    assert!(batch.decode(4).is_err());
    assert!(Frozen::encode(&[]).is_empty());
}
