//! `canh agent`: enrolment tokens, the agent list, revocation and releases, on a data directory
//! without a running server (the routes behind them are tested in canh-server).

use std::path::Path;
use std::process::{Command, Output};

fn canh(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_canh"))
        .env("CANH_LOG", "warn")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tokens_releases_and_revocation_work_offline_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let out = ok(&canh(&data, &["agent", "token", "--ttl", "600"]));
    let value = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}\t")))
            .unwrap_or_else(|| panic!("no {key} in {out}"))
            .to_owned()
    };
    let (token, pin) = (value("token"), value("ca_pin"));
    assert_eq!(token.len(), 64, "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!pin.is_empty());
    // A second token is another one.
    let again = ok(&canh(&data, &["agent", "token"]));
    assert!(!again.contains(&token));
    let bad = canh(&data, &["agent", "token", "--ttl", "0"]);
    assert!(!bad.status.success());

    assert!(ok(&canh(&data, &["agent", "list"])).contains("no agents enrolled"));
    let unknown = canh(&data, &["agent", "revoke", "no-such-agent"]);
    assert!(
        !unknown.status.success(),
        "revoking an unknown agent succeeded"
    );

    // A release: any executable file stands in for the agent here; its hash is checked.
    let bin = dir.path().join("canh-agent");
    std::fs::write(&bin, b"#!/bin/sh\necho canh-agent 9.9.9\n").unwrap();
    let published = ok(&canh(
        &data,
        &[
            "agent",
            "release",
            "publish",
            bin.to_str().unwrap(),
            "--version",
            "9.9.9",
            "--target",
            "linux-x86_64",
        ],
    ));
    let sha = {
        let out = Command::new("sha256sum").arg(&bin).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    assert!(published.contains(&sha), "{published}");
    let listed = ok(&canh(&data, &["agent", "release", "list"]));
    assert!(listed.contains("9.9.9\tlinux-x86_64"), "{listed}");
    let twice = canh(
        &data,
        &[
            "agent",
            "release",
            "publish",
            bin.to_str().unwrap(),
            "--version",
            "9.9.9",
            "--target",
            "linux-x86_64",
        ],
    );
    assert!(!twice.status.success(), "a release was published twice");

    let audit = ok(&canh(&data, &["audit", "list", "--limit", "20"]));
    assert_eq!(audit.matches("agent.token.create").count(), 2, "{audit}");
    assert!(audit.contains("agent.release.publish"), "{audit}");
    assert!(ok(&canh(&data, &["audit", "verify"])).contains("intact"));
}
