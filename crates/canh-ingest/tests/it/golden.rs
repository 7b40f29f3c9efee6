//! Golden tests: every file in `testdata/parsers/<id>/` is parsed with parser `<id>` and the
//! result is compared with its snapshot (`cargo insta review` to accept changes).

use std::fs;
use std::path::{Path, PathBuf};

use canh_core::Event;
use canh_ingest::parsers::iis::W3cReader;
use canh_ingest::{PARSERS, ParseCtx, ParseError, parser_by_id};
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/parsers")
}

fn cx() -> ParseCtx {
    let received = Utc
        .with_ymd_and_hms(2026, 1, 15, 8, 0, 0)
        .single()
        .expect("valid time");
    ParseCtx::new(received)
        .with_peer("192.0.2.10:514".parse().expect("valid address"))
        .with_source_id("golden")
}

fn render(r: Result<Event, ParseError>) -> Value {
    match r {
        Ok(ev) => serde_json::to_value(ev).expect("event serialises"),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

fn run_case(id: &str, path: &Path) -> Vec<Value> {
    let parser = parser_by_id(id).expect("parser exists");
    let bytes = fs::read(path).expect("read case");
    let cx = cx();
    match id {
        "otlp_json" => parser
            .parse_many(&bytes, &cx)
            .into_iter()
            .map(render)
            .collect(),
        "iis" => {
            let mut reader = W3cReader::new();
            let mut out = Vec::new();
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                match reader.read_line(line, &cx) {
                    Ok(Some(ev)) => out.push(render(Ok(ev))),
                    Ok(None) => {}
                    Err(e) => out.push(render(Err(e))),
                }
            }
            out
        }
        _ => bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|line| render(parser.parse(line, &cx)))
            .collect(),
    }
}

#[test]
fn every_parser_has_golden_files() {
    for p in PARSERS {
        let dir = testdata().join(p.id());
        let cases = fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert!(
            cases > 0,
            "parser {} has no files in {}",
            p.id(),
            dir.display()
        );
    }
}

#[test]
fn every_golden_dir_names_a_parser() {
    for entry in fs::read_dir(testdata()).expect("testdata exists") {
        let name = entry.expect("dir entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            parser_by_id(&name).is_some(),
            "testdata/parsers/{name} names no parser"
        );
    }
}

#[test]
fn golden_files_match_snapshots() {
    let mut checked = 0;
    let mut ids: Vec<_> = PARSERS.iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    for id in ids {
        let mut files: Vec<_> = fs::read_dir(testdata().join(id))
            .expect("golden dir")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        for path in files {
            let case = path
                .file_stem()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let results = run_case(id, &path);
            assert!(!results.is_empty(), "{} yields nothing", path.display());
            let mut settings = insta::Settings::clone_current();
            settings.set_snapshot_path("snapshots");
            settings.set_prepend_module_to_snapshot(false);
            settings.set_input_file(&path);
            settings.bind(|| insta::assert_json_snapshot!(format!("{id}__{case}"), results));
            checked += 1;
        }
    }
    assert!(checked >= PARSERS.len());
}

#[test]
fn auto_detection_picks_the_expected_parser_for_each_golden_dir() {
    // Records whose format is clear from their first bytes; program parsers are reached
    // through the syslog parsers, so their event.module is checked instead.
    let cx = cx();
    for (id, file, module) in [
        ("syslog_rfc5424", "rfc5424-examples.log", "syslog_rfc5424"),
        ("syslog_rfc3164", "rfc3164-examples.log", "syslog_rfc3164"),
        ("linux_auth", "beats-system-auth.log", "linux_auth"),
        ("cisco_asa", "synthetic-asa.log", "cisco_asa"),
        ("fortigate", "synthetic-fortios7.log", "fortigate"),
        ("pfsense", "synthetic-filterlog.log", "pfsense"),
        ("iptables", "synthetic-kernel.log", "iptables"),
        ("nginx", "beats-error.log", "nginx"),
        ("apache", "beats-error.log", "apache"),
        ("suricata_eve", "wazuh-docs-alert.log", "suricata_eve"),
        ("gelf", "gelf-spec-example.log", "gelf"),
    ] {
        let bytes = fs::read(testdata().join(id).join(file)).expect("read");
        let line = bytes.split(|b| *b == b'\n').next().expect("a line");
        let ev = canh_ingest::parse_auto(line, &cx).expect("auto parse");
        assert_eq!(ev.get_str("event.module"), Some(module), "{id}/{file}");
    }
}
