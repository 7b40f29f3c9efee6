//! SigmaHQ regression data: every rule with a regression test fires on its own EVTX file
//! (exactly `match_count` times where the test gives a count).

use std::path::{Path, PathBuf};

use canh_detect::{Engine, LoadOptions, RuleSet};
use serde_yaml::Value;

/// Passes reached by this engine; the test fails if a change makes fewer pass.
const PASS_FLOOR: usize = 198;

fn find_info(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            find_info(&p, out);
        } else if p.file_name().is_some_and(|n| n == "info.yml") {
            out.push(p);
        }
    }
}

#[test]
fn sigmahq_regression_logs_fire_their_rules() {
    let sigma = crate::datasets().join("sigma");
    let dirs: Vec<_> = ["rules", "rules-threat-hunting", "rules-emerging-threats"]
        .iter()
        .map(|d| sigma.join(d))
        .collect();
    let (set, _) = RuleSet::load_paths(&dirs, &LoadOptions::default());
    let engine = Engine::new(set);
    let mut infos = Vec::new();
    find_info(&sigma.join("regression_data"), &mut infos);
    infos.sort();
    let mut total = 0;
    let mut passed = 0;
    let mut failures = Vec::new();
    for info in &infos {
        let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(info).unwrap()).unwrap();
        let rule_id = doc["rule_metadata"][0]["id"].as_str().unwrap().to_owned();
        let tests = doc["regression_tests_info"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        for t in &tests {
            if t["type"].as_str() != Some("evtx") {
                continue;
            }
            total += 1;
            let path = sigma.join(t["path"].as_str().unwrap());
            let want = t["match_count"].as_u64();
            if !engine
                .ruleset()
                .rules()
                .iter()
                .any(|r| r.id.as_deref() == Some(&rule_id))
            {
                failures.push(format!("{rule_id}: rule not loaded"));
                continue;
            }
            let opts = canh_ingest::evtx::EvtxOptions::default();
            let mut got = 0u64;
            for ev in canh_ingest::evtx::read_file(&path, &opts)
                .unwrap()
                .flatten()
            {
                got += engine
                    .matches(&ev)
                    .iter()
                    .filter(|m| m.rule_id.as_deref() == Some(&rule_id))
                    .count() as u64;
            }
            let ok = match want {
                Some(n) => got == n,
                None => got >= 1,
            };
            if ok {
                passed += 1;
            } else {
                failures.push(format!(
                    "{rule_id} ({}): {got} matches, want {want:?}",
                    path.display()
                ));
            }
        }
    }
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    eprintln!("regression: {passed} of {total} passed");
    assert!(total >= 200, "regression data not found ({total} tests)");
    assert!(
        passed >= PASS_FLOOR,
        "{passed} of {total} passed, floor is {PASS_FLOOR}"
    );
}
