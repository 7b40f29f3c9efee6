//! Signature conformance: suricata-verify tests whose `test.rules` Canh fully supports are run
//! with those rules, and their `alert` checks evaluated on Canh's EVE output.

use super::conformance::{SV_DIR, config_for, find_tests, matches, pcap_for, version_ok};
use canh_nsm::rules::{Engine, RuleSet, Vars, compile_text};
use canh_nsm::{Sensor, SensorConfig};
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use std::path::Path;
use std::sync::Arc;

/// Minimum passing alert checks (raise when Canh improves; never lower silently).
const FLOOR: usize = 55;

fn run_with_rules(pcap: &Path, cfg: SensorConfig, rules: Arc<RuleSet>) -> Vec<Json> {
    let mut out = Vec::new();
    let file = std::fs::File::open(pcap).expect("capture opens");
    let mut sensor = Sensor::new(cfg, &mut out).with_rules(rules);
    if canh_nsm::capture::read_capture(file, "test", &mut sensor).is_err() {
        return Vec::new();
    }
    sensor.finish().expect("writing to memory never fails");
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("valid EVE line"))
        .collect()
}

#[test]
fn suricata_verify_alert_checks_pass_at_or_above_the_floor() {
    let mut tests = Vec::new();
    find_tests(Path::new(SV_DIR), &mut tests);
    tests.sort();
    let verbose = std::env::var_os("CANH_CONFORMANCE_VERBOSE").is_some();
    let (mut pass, mut total, mut unsupported_tests) = (0usize, 0usize, 0usize);
    for dir in &tests {
        let Ok(rules_text) = std::fs::read_to_string(dir.join("test.rules")) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(dir.join("test.yaml")) else {
            continue;
        };
        let Ok(test) = serde_yaml::from_str::<Yaml>(&text) else {
            continue;
        };
        let Some(checks) = test.get("checks").and_then(Yaml::as_sequence) else {
            continue;
        };
        let mut wanted = Vec::new();
        for check in checks {
            let Some(filter) = check.get("filter") else {
                continue;
            };
            let Some(m) = filter.get("match").and_then(Yaml::as_mapping) else {
                continue;
            };
            if m.get("event_type").and_then(Yaml::as_str) != Some("alert") {
                continue;
            }
            if !version_ok(filter.get("requires"))
                || !version_ok(check.get("requires"))
                || filter.get("min-count").is_some()
                || filter.get("max-count").is_some()
            {
                continue;
            }
            wanted.push((filter.get("count").and_then(Yaml::as_u64), m.clone()));
        }
        if wanted.is_empty() {
            continue;
        }
        let (rules, checks) = compile_text(&rules_text, "test.rules", &Vars::default());
        if rules.is_empty() || checks.iter().any(|c| c.problem.is_some()) {
            unsupported_tests += 1;
            continue;
        }
        let runnable = version_ok(test.get("requires"))
            && test.get("requires").and_then(|r| r.get("pcap")) != Some(&Yaml::Bool(false));
        let cfg = config_for(&test, dir).filter(|_| runnable);
        let (Some(cfg), Some(pcap)) = (cfg, pcap_for(&test, dir)) else {
            continue;
        };
        let set = Arc::new(RuleSet {
            engine: Engine::new(rules),
            classes: Default::default(),
        });
        let records = run_with_rules(&pcap, cfg, set);
        for (count, m) in wanted {
            let n = records.iter().filter(|r| matches(r, &m)).count();
            let ok = match count {
                Some(c) => n as u64 == c,
                None => n > 0,
            };
            total += 1;
            if ok {
                pass += 1;
            } else if verbose {
                let name = dir.strip_prefix(SV_DIR).unwrap_or(dir).display();
                let kinds: Vec<&str> = records
                    .iter()
                    .filter_map(|r| r["event_type"].as_str())
                    .filter(|t| *t != "flow")
                    .collect();
                eprintln!(
                    "FAIL {name} [alert] want {count:?} got {n}: {m:?} (events: {})",
                    kinds.join(",")
                );
            }
        }
    }
    eprintln!(
        "suricata-verify alert checks: {pass}/{total} pass ({:.1}%), {unsupported_tests} tests \
         skipped for unsupported rules",
        100.0 * pass as f64 / total.max(1) as f64
    );
    assert!(total > 0, "no alert checks found under {SV_DIR}");
    assert!(
        pass >= FLOOR,
        "{pass} passing alert checks, floor is {FLOOR}"
    );
}

/// A content rule written for bytes of a TLS session's ciphertext: Suricata's default
/// (`track-only`) and Canh's do not look at the packets once application data flows;
/// `inspect_encrypted` (Suricata's `full`) does.
#[test]
fn content_rules_skip_encrypted_tls_unless_asked() {
    let pcap = Path::new(SV_DIR).join("ethernet-eve/test.pcap");
    let bytes = std::fs::read(&pcap).expect("capture reads");
    // The last TLS 1.2 application-data record with at least 64 bytes of ciphertext.
    let at = bytes
        .windows(5)
        .rposition(|w| w[..3] == [0x17, 3, 3] && u16::from_be_bytes([w[3], w[4]]) >= 64)
        .expect("the capture carries TLS application data");
    let hex: Vec<String> = bytes[at + 13..at + 29]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let text = format!(
        "alert tcp any any -> any any (msg:\"ciphertext\"; content:\"|{}|\"; sid:9000001; rev:1;)",
        hex.join(" ")
    );
    let (rules, checks) = compile_text(&text, "t.rules", &Vars::default());
    assert!(checks.iter().all(|c| c.problem.is_none()), "{checks:?}");
    let set = Arc::new(RuleSet {
        engine: Engine::new(rules),
        ..RuleSet::default()
    });
    let hits = |inspect_encrypted: bool| {
        let cfg = SensorConfig {
            inspect_encrypted,
            ddos: None,
            ..SensorConfig::default()
        };
        run_with_rules(&pcap, cfg, set.clone())
            .iter()
            .filter(|r| r["alert"]["signature_id"] == 9000001)
            .count()
    };
    assert_eq!(hits(false), 0);
    assert!(hits(true) >= 1);
}
