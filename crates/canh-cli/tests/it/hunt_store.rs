//! `canh hunt --store` over the events of the data directory (store opened directly, then
//! through a running server) finds what `canh hunt` finds in the files they came from; `canh
//! rules list|disable|scope|test` change and test the running server's rules.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RULE_ID: &str = "8a2f4b1c-3d5e-4f7a-9b2c-1e4f6d8a9c2b";

fn datasets() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/datasets"
    ))
}

fn canh(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_canh"));
    c.env("CANH_LOG", "warn")
        .env("CANH_SERVER__HTTP_TLS", "false")
        .arg("--data-dir")
        .arg(data);
    c
}

/// `canh hunt FILE --rules DIR --format jsonl`, over the file (no data directory).
fn hunt_file(file: &Path, rules: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_canh"));
    c.arg("hunt")
        .arg(file)
        .arg("--rules")
        .arg(rules)
        .args(["--format", "jsonl"]);
    c
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// (rule id, record id) of every hit of a `--format jsonl` run.
fn hit_keys(jsonl: &str) -> BTreeSet<(String, u64)> {
    jsonl
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|h| {
            (
                h["rule.id"].as_str().unwrap().to_owned(),
                h["winlog.record_id"].as_u64().unwrap(),
            )
        })
        .collect()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(data: &Path, rules: &Path) -> Server {
    let _ = std::fs::remove_file(data.join("server.addr"));
    let child = canh(data)
        .env("CANH_DETECT__RULES_DIR", rules)
        .args(["server", "--http", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(data.join("server.addr")) {
            let url = text.trim().to_owned();
            if ureq::get(&format!("{url}/health")).call().is_ok() {
                return server;
            }
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hunt_over_the_store_finds_what_hunting_the_files_finds() {
    let case = datasets().join(
        "sigma/regression_data/rules-threat-hunting/windows/image_load/\
         image_load_win_werfaultsecure_dbgcore_dbghelp_load",
    );
    let evtx = case.join(format!("{RULE_ID}.evtx"));
    let rules = datasets().join("sigma/rules-threat-hunting/windows/image_load");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let range = ["--from", "2025-01-01", "--to", "2027-01-01"];

    let from_files = hit_keys(&run_ok(&mut hunt_file(&evtx, &rules)));
    assert!(
        from_files.iter().any(|(id, _)| id == RULE_ID),
        "{from_files:?}"
    );

    run_ok(canh(&data).arg("ingest").arg(&evtx));
    // No server: the store is read directly.
    let local = run_ok(
        canh(&data)
            .args(["hunt", "--store", "--rules"])
            .arg(&rules)
            .args(range)
            .args(["--format", "jsonl"]),
    );
    assert_eq!(hit_keys(&local), from_files);
    let first: Value = serde_json::from_str(local.lines().next().unwrap()).unwrap();
    assert!(first["canh.event.id"].is_u64(), "{first}");
    assert!(first["rule.title"].is_string());
    // Outside the events' time range: nothing.
    let none = run_ok(
        canh(&data)
            .args(["hunt", "--store", "--rules"])
            .arg(&rules)
            .args([
                "--from",
                "2020-01-01",
                "--to",
                "2021-01-01",
                "--format",
                "jsonl",
            ]),
    );
    assert!(none.trim().is_empty(), "{none}");

    // A server holds the data directory: the same hunt goes through its API.
    let _server = start_server(&data, &rules);
    let remote = run_ok(
        canh(&data)
            .args(["hunt", "--store", "--rules"])
            .arg(&rules)
            .args(range)
            .args(["--format", "jsonl"]),
    );
    assert_eq!(hit_keys(&remote), from_files);

    // The server's live rules.
    let list: Value = serde_json::from_str(&run_ok(
        canh(&data).args(["rules", "list", "--format", "json"]),
    ))
    .unwrap();
    let rule = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == RULE_ID)
        .expect("the rule is listed");
    assert_eq!(rule["enabled"], true);
    run_ok(canh(&data).args(["rules", "disable", RULE_ID]));
    run_ok(canh(&data).args(["rules", "scope", RULE_ID, "so-a", "so-b"]));
    let list: Value = serde_json::from_str(&run_ok(
        canh(&data).args(["rules", "list", "--format", "json"]),
    ))
    .unwrap();
    let rule = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == RULE_ID)
        .unwrap();
    assert_eq!(rule["enabled"], false);
    assert_eq!(rule["scope"], serde_json::json!(["so-a", "so-b"]));
    // A disabled rule can still be tested against the stored events.
    let tested: Value = serde_json::from_str(&run_ok(
        canh(&data)
            .args(["rules", "test", RULE_ID])
            .args(range)
            .args(["--format", "json"]),
    ))
    .unwrap();
    let expected = from_files.iter().filter(|(id, _)| id == RULE_ID).count();
    assert_eq!(tested["count"], expected as u64, "{tested}");
    let out = canh(&data)
        .args(["rules", "enable", "no-such-rule"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}

/// Correlation hits of a `--format jsonl` run, by title.
fn correlation_titles(jsonl: &str) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for l in jsonl.lines() {
        let h: Value = serde_json::from_str(l).unwrap();
        if h["rule.type"] == "sigma_correlation" {
            *out.entry(h["rule.title"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
    }
    out
}

#[test]
fn correlation_rules_over_the_store_find_what_they_find_in_the_file() {
    let evtx = datasets().join("evtx/DeepBlueCLI/smb-password-guessing-security.evtx");
    let rules = datasets().join("sigma/correlation-examples/hayabusa-rules");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let from_file = correlation_titles(&run_ok(&mut hunt_file(&evtx, &rules)));
    // The count computed independently of Canh (see canh-detect's correlation tests).
    assert_eq!(from_file.get("PW Guessing"), Some(&711), "{from_file:?}");
    run_ok(canh(&data).arg("ingest").arg(&evtx));
    // The store is read newest first; the matches are replayed in time order.
    let stored = correlation_titles(&run_ok(
        canh(&data)
            .args(["hunt", "--store", "--rules"])
            .arg(&rules)
            .args(["--from", "2000-01-01", "--format", "jsonl"]),
    ));
    assert_eq!(stored, from_file);
}
