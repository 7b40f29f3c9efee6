//! YARA scanning (feature `yara`) behind the real process sensor: programs and scripts that
//! are started on this machine are scanned, once per content, and a match is one alert event.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canh_agent::config::YaraConfig;
use canh_agent::sensors::process::{self, ProcConnector};
use canh_agent::yara::{self, RuleSet};
use canh_core::Event;
use sha2::Digest;

const ELF_MARKER: &str = "CANH-YARA-IT-DROPPER-5b1e";
const SCRIPT_MARKER: &str = "CANH-YARA-IT-SCRIPT-90ad";

#[test]
fn started_programs_and_scripts_are_scanned_and_a_match_is_one_alert() {
    if !crate::is_root() {
        eprintln!("SKIPPED: the process connector needs root");
        assert!(!crate::is_root());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("dropper.yar"),
        format!(
            r#"import "elf"
            rule it_elf_dropper : linux {{
              meta:
                description = "an ELF program carrying the test marker"
              strings:
                $m = "{ELF_MARKER}"
              condition:
                uint32(0) == 0x464c457f and elf.number_of_sections > 0 and $m
            }}"#
        ),
    )
    .unwrap();
    std::fs::write(
        rules.join("script.yara"),
        format!("rule it_script {{ strings: $m = \"{SCRIPT_MARKER}\" condition: $m }}"),
    )
    .unwrap();
    // A real program with the marker appended: it still runs.
    let dropper = dir.path().join("dropper");
    let mut bytes = std::fs::read("/bin/sleep").unwrap();
    bytes.extend_from_slice(ELF_MARKER.as_bytes());
    std::fs::write(&dropper, &bytes).unwrap();
    std::fs::set_permissions(
        &dropper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let script = dir.path().join("job.sh");
    // The script runs long enough for its `/proc` entry (arguments, working directory) to be
    // read: the sensor names a script only from there.
    std::fs::write(&script, format!("# {SCRIPT_MARKER}\nsleep 0.3\n")).unwrap();

    let set = RuleSet::load(&[rules]).unwrap();
    assert_eq!(set.len(), 2);
    let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let spool: canh_agent::sensors::Emit = {
        let seen = seen.clone();
        Arc::new(move |evs| seen.lock().unwrap().extend(evs))
    };
    let (emit, scanner) = yara::start(
        set,
        YaraConfig::default(),
        "it-host".into(),
        spool,
        stop.clone(),
    );
    let conn = ProcConnector::open().unwrap();
    let sensor = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            process::run(conn, "it-host".into(), PathBuf::from("/proc"), emit, stop)
        })
    };

    let mut pids = Vec::new();
    for _ in 0..2 {
        let mut c = std::process::Command::new(&dropper)
            .arg("0.3")
            .spawn()
            .unwrap();
        pids.push(u64::from(c.id()));
        c.wait().unwrap();
    }
    let status = std::process::Command::new("/bin/sh")
        .arg("job.sh")
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    std::process::Command::new("/bin/true").status().unwrap();

    let alerts = || -> Vec<Event> {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|e| e.get_str("event.action") == Some("yara_match"))
            .cloned()
            .collect()
    };
    let mut waited = 0;
    while alerts().len() < 2 && waited < 1500 {
        std::thread::sleep(Duration::from_millis(20));
        waited += 1;
    }
    // Time for a wrong third alert to show up.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    sensor.join().unwrap().unwrap();
    scanner.join().unwrap();

    let alerts = alerts();
    let elf: Vec<&Event> = alerts
        .iter()
        .filter(|a| a.get_str("rule.name") == Some("it_elf_dropper"))
        .collect();
    assert_eq!(
        elf.len(),
        1,
        "one alert for two runs of the same program: {alerts:?}"
    );
    let a = elf[0];
    assert_eq!(a.get_str("event.reason"), Some("exec"));
    assert_eq!(a.get_str("host.name"), Some("it-host"));
    assert_eq!(a.get_str("file.path"), dropper.to_str());
    assert_eq!(
        a.get_str("file.hash.sha256"),
        Some(hex::encode(sha2::Sha256::digest(&bytes)).as_str())
    );
    let pid = a.get("process.pid").and_then(|v| v.as_u64()).unwrap();
    assert!(pids.contains(&pid), "{pid} not in {pids:?}");
    assert_eq!(a.get_str("user.name"), Some("root"));

    let sh: Vec<&Event> = alerts
        .iter()
        .filter(|a| a.get_str("rule.name") == Some("it_script"))
        .collect();
    assert_eq!(sh.len(), 1, "{alerts:?}");
    assert_eq!(sh[0].get_str("event.reason"), Some("script"));
    assert_eq!(
        sh[0].get_str("file.path").map(PathBuf::from),
        Some(dir.path().join("job.sh"))
    );
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    // Every event the sensor produced still reached the spool.
    let seen = seen.lock().unwrap();
    assert!(seen.iter().any(|e| {
        e.get_str("event.action") == Some("exec")
            && e.get("process.pid").and_then(|v| v.as_u64()) == Some(pids[0])
    }));
}
