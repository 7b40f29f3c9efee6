//! File integrity monitoring on a private tmpfs inside a mount namespace this test creates.
//!
//! The test re-runs its own binary under `unshare -m --propagation private`, so the tmpfs
//! mount lives only in that child's namespace and disappears with it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use canh_agent::sensors::fim::Fim;
use canh_core::Event;

const CHILD_ENV: &str = "CANH_TEST_FIM_DIR";

/// Runs only inside the namespace created by `file_changes_on_a_private_tmpfs_are_reported`.
#[test]
#[ignore = "helper process for the FIM test"]
fn fim_child() {
    let dir = std::env::var(CHILD_ENV).expect("run by the parent test only");
    let dir = Path::new(&dir);
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "canh-test"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("canh-test ") && l.contains(" tmpfs "))
    );

    let etc = dir.join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::write(etc.join("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n").unwrap();
    let single = dir.join("sshd_config");
    std::fs::write(&single, "PermitRootLogin no\n").unwrap();
    std::fs::write(dir.join("unwatched"), "x").unwrap();

    let mut fim = Fim::new(&[etc.clone(), single.clone()]).unwrap();
    assert_eq!(fim.baseline_len(), 3);

    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0::/root:/bin/sh\nevil:x:0:0::/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(etc.join("cron.evil"), "* * * * * root sh\n").unwrap();
    std::fs::remove_file(etc.join("hosts")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&single, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::write(dir.join("unwatched"), "changed").unwrap();

    let mut events: Vec<Event> = Vec::new();
    for _ in 0..200 {
        events.extend(fim.poll("h").unwrap());
        if events.len() >= 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for e in &events {
        println!("FIM {}", e.to_json_line());
    }
    assert!(!events.is_empty());
}

#[test]
fn file_changes_on_a_private_tmpfs_are_reported() {
    let has_unshare = Command::new("unshare")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !crate::is_root() || !has_unshare {
        eprintln!("SKIPPED: needs root and util-linux unshare");
        assert!(!crate::is_root() || !has_unshare);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fim::fim_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Event> = stdout
        .lines()
        // libtest may print "test … " on the same line before the first one.
        .filter_map(|l| l.find("FIM {").map(|i| &l[i + 4..]))
        .map(|j| serde_json::from_str(j).unwrap())
        .collect();
    let by_path = |p: &Path| {
        let p = p.to_string_lossy().into_owned();
        events
            .iter()
            .find(|e| e.get_str("file.path") == Some(p.as_str()))
            .cloned()
    };
    let passwd = by_path(&dir.path().join("etc/passwd")).expect("passwd change");
    assert_eq!(passwd.get_str("event.action"), Some("modified"));
    assert_eq!(passwd.get_str("event.dataset"), Some("file"));
    assert_ne!(
        passwd.get_str("file.hash.sha256"),
        passwd.get("canh.fim.before").unwrap()["sha256"].as_str()
    );
    let created = by_path(&dir.path().join("etc/cron.evil")).expect("creation");
    assert_eq!(created.get_str("event.action"), Some("created"));
    let deleted = by_path(&dir.path().join("etc/hosts")).expect("deletion");
    assert_eq!(deleted.get_str("event.action"), Some("deleted"));
    let chmod = by_path(&dir.path().join("sshd_config")).expect("mode change");
    assert_eq!(chmod.get_str("event.action"), Some("attributes_modified"));
    assert_eq!(chmod.get_str("file.mode"), Some("666"));
    assert!(
        by_path(&dir.path().join("unwatched")).is_none(),
        "unwatched file must not be reported"
    );
    // The tmpfs was private to the child's namespace: nothing is mounted here.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.lines().any(|l| l.starts_with("canh-test ")));
}
