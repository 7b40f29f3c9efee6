//! The WAL through its public API only (no features needed).

use canh_core::Event;
use canh_store::{Wal, WalOptions};
use chrono::Utc;

#[test]
fn wal_public_api_replays_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_bytes: 8192,
        fsync: true,
    };
    let mut acked = 0u64;
    {
        let (wal, replay) = Wal::open(dir.path(), opts.clone(), None).unwrap();
        assert!(replay.events.is_empty());
        for i in 0..50 {
            let mut e = Event::new(Utc::now());
            e.set("message", format!("line {i} {}", "x".repeat(200)));
            acked += u64::from(wal.append_blocking(vec![e]).unwrap().count);
        }
        wal.set_checkpoint(20).unwrap();
    }
    let (_, replay) = Wal::open(dir.path(), opts, None).unwrap();
    assert_eq!(acked, 50);
    assert_eq!(replay.events.len(), 30);
    assert_eq!(replay.events[0].0, 21);
    assert_eq!(
        replay.events[29]
            .1
            .get_str("message")
            .unwrap()
            .split(' ')
            .nth(1),
        Some("49")
    );
}
