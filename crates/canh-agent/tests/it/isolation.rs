//! Host isolation with nftables, only inside network namespaces this test creates and deletes:
//! an endpoint namespace joined by veth pairs to a "management" and an "other" namespace.
#![allow(unsafe_code)]

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use canh_agent::isolation::Isolation;

struct Namespaces {
    ep: String,
    mg: String,
    ot: String,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [&self.ep, &self.mg, &self.ot] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().unwrap();
    assert!(st.success(), "ip {args:?} failed");
}

fn setup() -> Namespaces {
    let tag = format!(
        "{:x}",
        (std::process::id() as u64) << 8
            ^ u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_micros()
            )
    );
    let tag = &tag[tag.len().saturating_sub(6)..];
    let ns = Namespaces {
        ep: format!("canh-test-{tag}-ep"),
        mg: format!("canh-test-{tag}-mg"),
        ot: format!("canh-test-{tag}-ot"),
    };
    for n in [&ns.ep, &ns.mg, &ns.ot] {
        ip(&["netns", "add", n]);
        ip(&["-n", n, "link", "set", "lo", "up"]);
    }
    let (a, b, c, d) = (
        format!("cv{tag}a"),
        format!("cv{tag}b"),
        format!("cv{tag}c"),
        format!("cv{tag}d"),
    );
    ip(&[
        "link", "add", &a, "netns", &ns.ep, "type", "veth", "peer", "name", &b, "netns", &ns.mg,
    ]);
    ip(&[
        "link", "add", &c, "netns", &ns.ep, "type", "veth", "peer", "name", &d, "netns", &ns.ot,
    ]);
    for (n, dev, addr) in [
        (&ns.ep, &a, "10.231.1.1/24"),
        (&ns.mg, &b, "10.231.1.2/24"),
        (&ns.ep, &c, "10.231.2.1/24"),
        (&ns.ot, &d, "10.231.2.2/24"),
    ] {
        ip(&["-n", n, "addr", "add", addr, "dev", dev]);
        ip(&["-n", n, "link", "set", dev, "up"]);
    }
    ns
}

/// Runs `f` on a fresh thread that has entered network namespace `ns`. Sockets created there
/// stay in that namespace after the thread ends.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: setns with a valid namespace fd changes only this thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns failed");
        f()
    })
    .join()
    .unwrap()
}

fn listen(ns: &str, addr: &str) -> TcpListener {
    let addr: SocketAddr = addr.parse().unwrap();
    in_netns(ns, move || TcpListener::bind(addr).unwrap())
}

/// A path that should be open: a fresh veth link can drop the first SYN while it comes up, so
/// a few attempts are allowed (a blocked path never succeeds, however often it is tried).
fn reachable(from: &str, to: &str) -> bool {
    (0..5).any(|_| open(from, to))
}

fn open(from: &str, to: &str) -> bool {
    let to: SocketAddr = to.parse().unwrap();
    in_netns(from, move || {
        TcpStream::connect_timeout(&to, Duration::from_millis(800)).is_ok()
    })
}

#[test]
fn isolation_blocks_all_but_management_survives_restart_and_is_reversible() {
    let have_tools = Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !crate::is_root() || !have_tools {
        eprintln!("SKIPPED: needs root and nftables (apt-get install nftables)");
        assert!(!crate::is_root() || !have_tools);
        return;
    }
    let ns = setup();
    let _mg = listen(&ns.mg, "10.231.1.2:8443");
    let _ot = listen(&ns.ot, "10.231.2.2:8080");
    let _ep = listen(&ns.ep, "0.0.0.0:9000");

    assert!(
        reachable(&ns.ep, "10.231.1.2:8443"),
        "before: management reachable"
    );
    assert!(
        reachable(&ns.ep, "10.231.2.2:8080"),
        "before: other reachable"
    );
    assert!(
        reachable(&ns.ot, "10.231.2.1:9000"),
        "before: inbound from other"
    );

    let state = tempfile::tempdir().unwrap();
    let iso = Isolation::new(state.path(), Some(ns.ep.clone()));
    let mgmt: IpAddr = "10.231.1.2".parse().unwrap();
    iso.isolate(&[mgmt]).unwrap();
    assert!(iso.state().isolated);
    assert!(
        reachable(&ns.ep, "10.231.1.2:8443"),
        "isolated: management still reachable"
    );
    assert!(
        reachable(&ns.mg, "10.231.1.1:9000"),
        "isolated: inbound from management"
    );
    assert!(!open(&ns.ep, "10.231.2.2:8080"), "isolated: other blocked");
    assert!(
        !open(&ns.ot, "10.231.2.1:9000"),
        "isolated: inbound from other blocked"
    );

    // The ruleset is lost (reboot); a restarted agent re-applies it from its saved state.
    let st = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.ep,
            "nft",
            "delete",
            "table",
            "inet",
            "canh_isolation",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        reachable(&ns.ep, "10.231.2.2:8080"),
        "table gone: open again"
    );
    let restarted = Isolation::new(state.path(), Some(ns.ep.clone()));
    assert!(restarted.restore().unwrap());
    assert!(!open(&ns.ep, "10.231.2.2:8080"), "restored: other blocked");
    assert!(
        reachable(&ns.ep, "10.231.1.2:8443"),
        "restored: management reachable"
    );

    restarted.release().unwrap();
    assert!(!restarted.state().isolated);
    assert!(
        reachable(&ns.ep, "10.231.2.2:8080"),
        "released: other reachable"
    );
    assert!(
        reachable(&ns.ot, "10.231.2.1:9000"),
        "released: inbound from other"
    );
    // Releasing twice is fine.
    restarted.release().unwrap();
}
