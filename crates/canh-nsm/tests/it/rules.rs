//! Signatures: the ET Open support share and alerts on real captures.

use canh_nsm::rules::{CheckSummary, Vars, compile_text};
use std::path::{Path, PathBuf};

fn et_open_dir() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/datasets/et-open/rules"
    ))
    .to_path_buf()
}

/// Checks every enabled ET Open rule; the supported share must stay at or above 90 %.
#[test]
fn et_open_supported_share_is_at_least_90_percent() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(et_open_dir())
        .expect("et-open rules present")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rules"))
        .collect();
    files.sort();
    let vars = Vars::default();
    let mut summary = CheckSummary::default();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("rule file reads");
        let (_, checks) = compile_text(&text, &f.display().to_string(), &vars);
        for c in &checks {
            summary.add(c);
            if let Some(canh_nsm::rules::RuleProblem::Invalid(r)) = &c.problem
                && std::env::var_os("CANH_RULES_VERBOSE").is_some()
            {
                eprintln!("invalid {}:{} {r}", c.file, c.line);
            }
        }
    }
    let mut reasons: Vec<_> = summary.reasons.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1));
    eprintln!(
        "ET Open: {} rules, {} supported ({:.1} %), {} unsupported, {} invalid",
        summary.total,
        summary.supported,
        summary.supported_percent(),
        summary.unsupported,
        summary.invalid
    );
    for (r, n) in reasons.iter().take(25) {
        eprintln!("  {n:6} {r}");
    }
    assert_eq!(summary.total, 24_827, "enabled rules in the ET Open copy");
    assert!(summary.supported_percent() >= 90.0);
}
