//! Live capture through the library on the loopback interface (needs root; skipped otherwise).

use canh_nsm::{LiveConfig, run_live};
use serde_json::Value;
use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn records(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn live_capture_on_loopback_counts_each_packet_once_and_stops_on_request() {
    if !is_root() {
        eprintln!("skipping: live capture needs root (CAP_NET_RAW)");
        return;
    }
    // The memory-mapped TPACKET_V3 ring (default), then plain recvmsg.
    for ring_bytes in [LiveConfig::new("lo", "x").ring_bytes, 0] {
        loopback_capture(ring_bytes);
    }
}

fn loopback_capture(ring_bytes: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let eve = tmp.path().join("eve.json");
    let mut cfg = LiveConfig::new("lo", &eve);
    cfg.stop_on_signals = false;
    cfg.workers = 2;
    cfg.ring_bytes = ring_bytes;
    let stop = cfg.stop.clone();
    let handle = std::thread::spawn(move || run_live(cfg));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !eve.is_file() {
        assert!(!handle.is_finished(), "capture ended early");
        assert!(Instant::now() < deadline, "capture did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cport = client.local_addr().unwrap().port();
    for i in 0..3u8 {
        client.send_to(&[i; 40], ("127.0.0.1", port)).unwrap();
    }
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        server.recv_from(&mut buf).unwrap();
    }
    server.send_to(b"reply", ("127.0.0.1", cport)).unwrap();
    client.recv_from(&mut buf).unwrap();
    // The packets are queued in the capture sockets by now (the receiver got them); the
    // capture reads what is queued before it ends the flows.
    stop.store(true, Ordering::SeqCst);
    let stats = handle.join().unwrap().unwrap();
    assert_eq!(stats.workers.len(), 2);
    assert!(stats.total.packets >= 4);
    assert!(stats.kernel_packets >= stats.total.packets);
    let recs = records(&eve);
    let flows: Vec<&Value> = recs
        .iter()
        .filter(|r| r["event_type"] == "flow" && (r["dest_port"] == port || r["src_port"] == port))
        .collect();
    assert_eq!(flows.len(), 1, "{flows:?}");
    let f = flows[0];
    assert_eq!(f["src_port"], cport);
    assert_eq!(f["proto"], "UDP");
    // Loopback shows each packet as outgoing and incoming; only one copy counts.
    assert_eq!(f["flow"]["pkts_toserver"], 3);
    assert_eq!(f["flow"]["pkts_toclient"], 1);
    let st: Vec<&Value> = recs.iter().filter(|r| r["event_type"] == "stats").collect();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0]["stats"]["capture"]["workers"], 2);
}

#[test]
fn live_capture_on_a_missing_interface_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = LiveConfig::new("canh-nosuch1", tmp.path().join("eve.json"));
    cfg.stop_on_signals = false;
    let err = run_live(cfg).unwrap_err().to_string();
    if is_root() {
        assert!(err.contains("no such interface: canh-nosuch1"), "{err}");
    } else {
        assert!(err.contains("CAP_NET_RAW"), "{err}");
    }
    assert!(!tmp.path().join("eve.json").try_exists().unwrap());
}
