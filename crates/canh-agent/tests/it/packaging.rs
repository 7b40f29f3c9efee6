//! The Debian package: built by `scripts/build-agent-deb.sh` with dpkg-deb, then inspected.

use std::path::Path;
use std::process::Command;

fn dpkg_deb_present() -> bool {
    Command::new("dpkg-deb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn deb_package_builds_and_holds_the_agent_unit_and_config() {
    if !dpkg_deb_present() {
        eprintln!("SKIPPED: dpkg-deb is not installed (apt-get install dpkg)");
        return;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = tempfile::tempdir().unwrap();
    let built = Command::new("sh")
        .arg(Path::new(root).join("scripts/build-agent-deb.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_canh-agent")])
        .arg("--out")
        .arg(out.path())
        .args(["--version", "0.9.1-1", "--arch", "amd64"])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = String::from_utf8(built.stdout).unwrap().trim().to_owned();
    assert!(deb.ends_with("canh-agent_0.9.1-1_amd64.deb"), "{deb}");

    let info = Command::new("dpkg-deb")
        .args(["-I", &deb])
        .output()
        .unwrap();
    assert!(info.status.success());
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("Package: canh-agent"), "{info}");
    assert!(info.contains("Version: 0.9.1-1"), "{info}");
    assert!(info.contains("Architecture: amd64"), "{info}");
    for script in ["postinst", "prerm", "postrm", "conffiles"] {
        assert!(info.contains(script), "{script} missing: {info}");
    }
    let field = Command::new("dpkg-deb")
        .args(["-f", &deb, "Installed-Size"])
        .output()
        .unwrap();
    let size: u64 = String::from_utf8_lossy(&field.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(size > 0);

    let contents = Command::new("dpkg-deb")
        .args(["-c", &deb])
        .output()
        .unwrap();
    assert!(contents.status.success());
    let contents = String::from_utf8_lossy(&contents.stdout);
    let line_of = |path: &str| {
        contents
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("{path} not in package:\n{contents}"))
            .to_owned()
    };
    assert!(line_of("./usr/lib/canh-agent/canh-agent").starts_with("-rwxr-xr-x root/root"));
    assert!(
        contents
            .lines()
            .any(|l| l.starts_with("lrwxrwxrwx root/root")
                && l.ends_with("./usr/sbin/canh-agent -> ../lib/canh-agent/canh-agent")),
        "no /usr/sbin link:\n{contents}"
    );
    assert!(line_of("./lib/systemd/system/canh-agent.service").starts_with("-rw-r--r-- root/root"));
    assert!(line_of("./etc/canh/canh-agent.toml").starts_with("-rw-r----- root/root"));
    line_of("./usr/share/canh-agent/policy/canh-linux-baseline.toml");

    // The packaged binary runs and is the agent.
    let x = tempfile::tempdir().unwrap();
    let ok = Command::new("dpkg-deb")
        .args(["-x", &deb])
        .arg(x.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let v = Command::new(x.path().join("usr/lib/canh-agent/canh-agent"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("canh-agent "));
}

#[test]
fn unit_file_is_complete() {
    let unit = include_str!("../../packaging/canh-agent.service");
    assert!(unit.contains(
        "ExecStart=/usr/lib/canh-agent/canh-agent run --config /etc/canh/canh-agent.toml"
    ));
    assert!(unit.contains("Restart=always"));
    assert!(unit.contains("WantedBy=multi-user.target"));
    assert!(unit.contains("User=root"));
}
