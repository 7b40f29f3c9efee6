//! Crash safety of the spool: a writer process is SIGKILLed mid-stream and the spool reopened.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use canh_agent::spool::{Spool, SpoolConfig};
use canh_core::Event;

const CHILD_ENV: &str = "CANH_TEST_SPOOL_CHILD_DIR";

fn cfg() -> SpoolConfig {
    SpoolConfig {
        segment_bytes: 64 * 1024,
        max_bytes: 64 * 1024 * 1024,
    }
}

/// Runs only as the child of `sigkill_mid_batch_loses_no_acked_event_and_reads_clean`.
#[test]
#[ignore = "helper process for the SIGKILL test"]
fn spool_child_writer() {
    let dir = std::env::var(CHILD_ENV).expect("run by the parent test only");
    let mut spool = Spool::open(std::path::Path::new(&dir), cfg()).unwrap();
    let mut out = std::io::stdout().lock();
    let mut n = 0u64;
    loop {
        let batch: Vec<Event> = (0..50)
            .map(|_| {
                let mut e = Event::new(chrono::Utc::now());
                e.set("n", n);
                e.set("message", "x".repeat(200));
                n += 1;
                e
            })
            .collect();
        let r = spool.append(&batch).unwrap();
        // Pretend the server acknowledged everything but the last 25 events.
        let acked = r.end - 26;
        spool.ack(acked).unwrap();
        writeln!(out, "{} {}", r.end - 1, acked).unwrap();
        out.flush().unwrap();
        assert!(r.end > 1);
    }
}

#[test]
fn sigkill_mid_batch_loses_no_acked_event_and_reads_clean() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "spool::spool_child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut durable, mut acked) = (0u64, 0u64);
    let mut batches = 0;
    while batches < 60 {
        let line = lines.next().unwrap().unwrap();
        let mut parts = line.split(' ').filter_map(|p| p.parse::<u64>().ok());
        let (Some(d), Some(a)) = (parts.next(), parts.next()) else {
            continue;
        };
        durable = d;
        acked = a;
        batches += 1;
    }
    // The writer keeps appending while we kill it, so the kill lands mid-batch at some point.
    child.kill().unwrap();
    child.wait().unwrap();

    let mut spool = Spool::open(dir.path(), cfg()).unwrap();
    assert!(
        spool.acked() >= acked,
        "acked cursor went back: {} < {acked}",
        spool.acked()
    );
    assert!(
        spool.next_seq() > durable,
        "fsynced events lost: next {} <= {durable}",
        spool.next_seq()
    );
    let mut expected = spool.acked() + 1;
    loop {
        let batch = spool.read(1000).unwrap();
        if batch.is_empty() {
            break;
        }
        for se in batch {
            assert_eq!(se.seq, expected, "sequence must be contiguous");
            assert_eq!(se.event.get("n").and_then(|v| v.as_u64()), Some(se.seq - 1));
            expected += 1;
        }
    }
    assert!(expected > durable, "every fsynced event must be readable");
    // And the spool keeps working after recovery.
    let r = spool.append(&[Event::new(chrono::Utc::now())]).unwrap();
    assert_eq!(r.start, expected);
}
