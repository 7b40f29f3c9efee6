//! Every rule of the SigmaHQ corpus compiles.

use canh_detect::{LoadOptions, RuleSet, RuleStatus};

#[test]
fn every_sigmahq_rule_compiles() {
    let base = crate::datasets().join("sigma");
    let dirs: Vec<_> = [
        "rules",
        "rules-threat-hunting",
        "rules-emerging-threats",
        "rules-placeholder",
        "rules-compliance",
    ]
    .iter()
    .map(|d| base.join(d))
    .collect();
    let (set, reports) = RuleSet::load_paths(&dirs, &LoadOptions::default());
    let not_loaded: Vec<_> = reports.iter().filter(|r| !r.status.is_loaded()).collect();
    for r in &not_loaded {
        eprintln!("{:?}: {:?}", r.path, r.status);
    }
    let warned = reports
        .iter()
        .filter(|r| matches!(r.status, RuleStatus::Warning(_)))
        .count();
    eprintln!(
        "{} documents, {} loaded, {} with warnings",
        reports.len(),
        set.len(),
        warned
    );
    assert!(reports.len() >= 3780);
    // Placeholder rules need `%name%` values from the configuration: without them they are
    // reported unsupported, never silently loaded.
    for r in &not_loaded {
        assert!(
            matches!(&r.status, RuleStatus::Unsupported(m) if m.contains("placeholder")),
            "{:?}: {:?}",
            r.path,
            r.status
        );
    }
    assert_eq!(set.len() + not_loaded.len(), reports.len());
}
