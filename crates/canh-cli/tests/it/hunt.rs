//! `canh hunt` and `canh rules check` end to end, on shared real data.

use std::path::PathBuf;
use std::process::Command;

fn datasets() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/datasets"
    ))
}

fn canh(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_canh"))
        .args(args)
        .output()
        .expect("canh runs")
}

#[test]
fn rules_check_reports_every_rule_and_a_summary() {
    let dir = datasets().join("sigma/rules/windows/process_creation");
    let out = canh(&[
        "rules".as_ref(),
        "check".as_ref(),
        dir.as_os_str(),
        "--format".as_ref(),
        "json".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = v["summary"]["total"].as_u64().unwrap();
    assert!(total > 1000);
    assert_eq!(
        v["summary"]["ok"].as_u64().unwrap() + v["summary"]["warning"].as_u64().unwrap(),
        total
    );
    assert_eq!(v["rules"].as_array().unwrap().len() as u64, total);
}

#[test]
fn rules_check_flags_invalid_rules_with_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yml"),
        "title: x\nlogsource: {product: windows}\ndetection:\n  a: {B: c}\n  condition: nope\n",
    )
    .unwrap();
    let out = canh(&["rules".as_ref(), "check".as_ref(), dir.path().as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("invalid"), "{text}");
    assert!(text.contains("1 invalid"), "{text}");
}

#[test]
fn hunt_finds_regression_hit_in_evtx_as_jsonl() {
    let case = datasets().join(
        "sigma/regression_data/rules-threat-hunting/windows/image_load/\
         image_load_win_werfaultsecure_dbgcore_dbghelp_load",
    );
    let rules = datasets().join("sigma/rules-threat-hunting/windows/image_load");
    let out = canh(&[
        "hunt".as_ref(),
        case.as_os_str(),
        "--rules".as_ref(),
        rules.as_os_str(),
        "--format".as_ref(),
        "jsonl".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let hit = hits
        .iter()
        .find(|h| h["rule.id"] == "8a2f4b1c-3d5e-4f7a-9b2c-1e4f6d8a9c2b")
        .expect("regression rule fires");
    assert!(
        hit["@timestamp"]
            .as_str()
            .unwrap()
            .starts_with("2025-11-27")
    );
    assert!(hit["winlog.record_id"].is_u64());
    assert!(hit["log.file.path"].as_str().unwrap().ends_with(".evtx"));
    assert!(
        hit["rule.title"]
            .as_str()
            .unwrap()
            .contains("WerFaultSecure")
    );
    assert!(hit["rule.level"].is_string());
}

#[test]
fn hunt_reads_jsonl_skips_corrupt_files_and_writes_a_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("events.jsonl");
    std::fs::write(
        &jsonl,
        "{\"@timestamp\":\"2024-05-01T10:00:00Z\",\"winlog\":{\"channel\":\"Microsoft-Windows-Sysmon/Operational\",\
         \"event_id\":1,\"event_data\":{\"Image\":\"C:\\\\Windows\\\\System32\\\\whoami.exe\",\
         \"CommandLine\":\"whoami /all\",\"User\":\"NT AUTHORITY\\\\SYSTEM\",\"ParentImage\":\"C:\\\\x\\\\cmd.exe\"}}}\n\
         not json\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.evtx"), b"ElfFile\0 garbage").unwrap();
    let timeline = dir.path().join("timeline.csv");
    let rules = datasets().join("sigma/rules/windows/process_creation");
    let out = canh(&[
        "hunt".as_ref(),
        dir.path().as_os_str(),
        "--rules".as_ref(),
        rules.as_os_str(),
        "--format".as_ref(),
        "csv".as_ref(),
        "--timeline".as_ref(),
        timeline.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.evtx"), "{stderr}");
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.to_lowercase().contains("whoami"), "{csv}");
    let tl = std::fs::read_to_string(&timeline).unwrap();
    assert_eq!(tl, csv);
}
