//! The process sensor sees real execs through the netlink process connector.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canh_agent::sensors::process::{self, ProcConnector};
use canh_core::Event;

#[test]
fn exec_of_a_child_produces_a_process_start_event() {
    if !crate::is_root() {
        eprintln!("SKIPPED: the process connector needs root");
        assert!(!crate::is_root());
        return;
    }
    let conn = ProcConnector::open().unwrap();
    let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sensor = {
        let (seen, stop) = (seen.clone(), stop.clone());
        let emit: canh_agent::sensors::Emit = Arc::new(move |evs| seen.lock().unwrap().extend(evs));
        std::thread::spawn(move || {
            process::run(conn, "test-host".into(), PathBuf::from("/proc"), emit, stop)
        })
    };
    let t = std::process::Command::new("/bin/true").spawn().unwrap();
    let true_pid = u64::from(t.id());
    let mut s = std::process::Command::new("/bin/sleep")
        .arg("0.5")
        .spawn()
        .unwrap();
    let sleep_pid = u64::from(s.id());
    let find = |pid: u64, ty: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .find(|e| {
                e.get("process.pid").and_then(|v| v.as_u64()) == Some(pid)
                    && e.get("event.type").and_then(|v| v[0].as_str()) == Some(ty)
            })
            .cloned()
    };
    let mut waited = 0;
    while (find(true_pid, "start").is_none() || find(sleep_pid, "end").is_none()) && waited < 3000 {
        std::thread::sleep(Duration::from_millis(20));
        waited += 1;
    }
    let mut t = t;
    t.wait().unwrap();
    s.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    sensor.join().unwrap().unwrap();

    let true_ev = find(true_pid, "start").expect("exec event of /bin/true");
    assert_eq!(true_ev.get_str("event.module"), Some("canh_agent"));
    assert_eq!(true_ev.get_str("event.dataset"), Some("process"));
    assert_eq!(true_ev.get_str("host.name"), Some("test-host"));

    // The sleep lives long enough for /proc to be read completely.
    let ev = find(sleep_pid, "start").expect("exec event of /bin/sleep");
    assert_eq!(ev.get_str("process.command_line"), Some("/bin/sleep 0.5"));
    assert!(
        ev.get_str("process.executable")
            .is_some_and(|p| p.ends_with("/sleep"))
    );
    assert_eq!(
        ev.get("process.parent.pid").and_then(|v| v.as_u64()),
        Some(u64::from(std::process::id()))
    );
    assert!(ev.get_str("process.parent.executable").is_some());
    assert_eq!(ev.get_str("user.name"), Some("root"));
    assert_eq!(ev.get_str("process.hash.sha256").map(str::len), Some(64));
    assert!(ev.get_str("process.working_directory").is_some());
    let end = find(sleep_pid, "end").expect("exit event of /bin/sleep");
    assert_eq!(
        end.get("process.exit_code").and_then(|v| v.as_u64()),
        Some(0)
    );
    assert!(
        end.get_str("process.executable")
            .is_some_and(|p| p.ends_with("/sleep"))
    );
}
