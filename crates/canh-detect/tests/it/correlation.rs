//! Correlation rules: the specification's forms on synthetic events, and the Hayabusa
//! failed-logon rules over shared EVTX files.

use canh_core::Event;
use canh_detect::{CorrelationType, Correlator, Engine, LoadOptions, RuleSet};
use chrono::{DateTime, Duration, Utc};

fn base(name: &str, value: &str) -> String {
    format!(
        "title: {name}\nname: {name}\nlogsource: {{product: windows, service: security}}\n\
         detection:\n  sel:\n    EventID: 4625\n    Marker: {value}\n  condition: sel\n"
    )
}

fn event(t: DateTime<Utc>, marker: &str, user: &str, host: &str) -> Event {
    let mut ev = Event::new(t);
    ev.set("winlog.channel", "Security");
    ev.set("winlog.event_id", 4625);
    ev.set("winlog.computer_name", host);
    ev.set("winlog.event_data.Marker", marker);
    ev.set("winlog.event_data.TargetUserName", user);
    ev
}

fn run(yaml: &str, events: &[Event]) -> Vec<canh_detect::CorrelationAlert> {
    let (set, reports) = RuleSet::from_yaml_str(yaml, &LoadOptions::default());
    for r in &reports {
        assert!(r.status.is_loaded(), "{r:?}");
    }
    let engine = Engine::new(set);
    let mut c = Correlator::new();
    let mut out = Vec::new();
    for ev in events {
        for m in engine.matches(ev) {
            assert!(
                !m.generate,
                "base rules of a correlation do not alert by default"
            );
            out.extend(c.process(engine.ruleset(), &m, ev));
        }
    }
    // State survives a round trip through JSON (a server persists it).
    let json = serde_json::to_string(&c).unwrap();
    let back: Correlator = serde_json::from_str(&json).unwrap();
    assert_eq!(back.open_groups(), c.open_groups());
    out.extend(c.flush(engine.ruleset()));
    out
}

fn t0() -> DateTime<Utc> {
    "2024-05-01T10:00:00Z".parse().unwrap()
}

#[test]
fn event_count_fires_per_group_when_threshold_is_reached_in_window() {
    let yaml = format!(
        "{}---\ntitle: many\ncorrelation:\n  type: event_count\n  rules: [a]\n  group-by: [Computer]\n  \
         timespan: 5m\n  condition:\n    gte: 3\nlevel: high\n",
        base("a", "x")
    );
    let mut evs = Vec::new();
    for i in 0..3 {
        evs.push(event(t0() + Duration::seconds(i * 10), "x", "u", "h1"));
    }
    // Two on another host, then a third one too late for the window.
    evs.push(event(t0(), "x", "u", "h2"));
    evs.push(event(t0() + Duration::minutes(1), "x", "u", "h2"));
    evs.push(event(t0() + Duration::minutes(10), "x", "u", "h2"));
    let alerts = run(&yaml, &evs);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, CorrelationType::EventCount);
    assert_eq!(
        alerts[0].group.get("Computer").map(String::as_str),
        Some("h1")
    );
    assert_eq!(alerts[0].value, 3.0);
}

#[test]
fn value_count_counts_distinct_values() {
    let yaml = format!(
        "{}---\ntitle: spray\ncorrelation:\n  type: value_count\n  rules: [a]\n  group-by: [Computer]\n  \
         timespan: 1h\n  condition:\n    field: TargetUserName\n    gte: 3\n",
        base("a", "x")
    );
    let evs: Vec<Event> = ["u1", "u1", "u2", "u2", "u3"]
        .iter()
        .enumerate()
        .map(|(i, u)| event(t0() + Duration::seconds(i as i64), "x", u, "h"))
        .collect();
    let alerts = run(&yaml, &evs);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].value, 3.0);
    assert_eq!(alerts[0].event_count, 5);
}

#[test]
fn temporal_and_temporal_ordered() {
    let rules = format!("{}---\n{}---\n", base("a", "x"), base("b", "y"));
    let temporal = format!(
        "{rules}title: both\ncorrelation:\n  type: temporal\n  rules: [a, b]\n  group-by: [Computer]\n  timespan: 5m\n"
    );
    let ordered = temporal.replace("type: temporal", "type: temporal_ordered");
    let evs = vec![
        event(t0(), "y", "u", "h"),
        event(t0() + Duration::seconds(5), "x", "u", "h"),
    ];
    assert_eq!(run(&temporal, &evs).len(), 1);
    assert_eq!(run(&ordered, &evs).len(), 0);
    let evs = vec![
        event(t0(), "x", "u", "h"),
        event(t0() + Duration::seconds(5), "y", "u", "h"),
    ];
    assert_eq!(run(&ordered, &evs).len(), 1);
    let late = vec![
        event(t0(), "x", "u", "h"),
        event(t0() + Duration::minutes(6), "y", "u", "h"),
    ];
    assert_eq!(run(&temporal, &late).len(), 0);
}

#[test]
fn value_sum_avg_and_lt_conditions() {
    let sum = format!(
        "{}---\ntitle: s\ncorrelation:\n  type: value_sum\n  rules: [a]\n  group-by: [Computer]\n  \
         timespan: 1h\n  condition:\n    field: TargetUserName\n    gt: 10\n",
        base("a", "x")
    );
    let evs: Vec<Event> = ["4", "5", "6"]
        .iter()
        .map(|n| event(t0(), "x", n, "h"))
        .collect();
    let alerts = run(&sum, &evs);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].value, 15.0);
    let avg = sum
        .replace("value_sum", "value_avg")
        .replace("gt: 10", "gte: 5");
    assert_eq!(run(&avg, &evs[..2]).len(), 0);
    assert_eq!(run(&avg, &evs).len(), 1);
    let few = sum
        .replace("value_sum", "event_count")
        .replace("    field: TargetUserName\n", "")
        .replace("gt: 10", "lt: 2");
    assert_eq!(run(&few, &evs[..1]).len(), 1);
    assert_eq!(run(&few, &evs).len(), 0);
}

#[test]
fn chained_correlation_feeds_on_alerts() {
    let yaml = format!(
        "{}---\ntitle: burst\nname: burst\ncorrelation:\n  type: event_count\n  rules: [a]\n  group-by: [Computer]\n  \
         timespan: 1m\n  condition:\n    gte: 2\n---\ntitle: bursts\ncorrelation:\n  type: event_count\n  rules: [burst]\n  \
         group-by: [Computer]\n  timespan: 1h\n  condition:\n    gte: 2\n",
        base("a", "x")
    );
    let evs: Vec<Event> = (0..4)
        .map(|i| event(t0() + Duration::minutes(i * 5), "x", "u", "h"))
        .collect();
    // Pairs within a minute never occur: five minutes apart.
    assert_eq!(run(&yaml, &evs).len(), 0);
    let evs: Vec<Event> = (0..4)
        .map(|i| event(t0() + Duration::seconds(i * 10), "x", "u", "h"))
        .collect();
    let alerts = run(&yaml, &evs);
    assert_eq!(alerts.iter().filter(|a| a.title == "burst").count(), 2);
    assert_eq!(alerts.iter().filter(|a| a.title == "bursts").count(), 1);
}

#[test]
fn specification_correlation_examples_parse() {
    let dir = crate::datasets().join("sigma/sigma-specification/tests/schema/correlation");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        // The examples name base rules that are not part of the file: provide them.
        let (set, reports) = RuleSet::from_yaml_str(&text, &LoadOptions::default());
        assert_eq!(set.correlations().len(), 0);
        assert!(reports.iter().any(|r| r.kind == "correlation"));
        n += 1;
    }
    assert!(n >= 8);
}

/// PW Guessing alerts (Hayabusa rule, 5 wrong-password failures per user/source in 5 min)
/// over `smb-password-guessing-security.evtx`, counted independently with python-evtx and a
/// 30-line script applying the same window semantics (reset after each alert).
const EXPECTED_PW_GUESSING_ALERTS: usize = 711;

#[test]
fn hayabusa_password_guessing_over_shared_evtx() {
    let dir = crate::datasets().join("sigma/correlation-examples/hayabusa-rules");
    let (set, reports) = RuleSet::load_dir(&dir, &LoadOptions::default());
    assert_eq!(set.correlations().len(), 3, "{reports:?}");
    let engine = Engine::new(set);
    let mut c = Correlator::new();
    let mut alerts = 0;
    let path = crate::datasets().join("evtx/DeepBlueCLI/smb-password-guessing-security.evtx");
    let opts = canh_ingest::evtx::EvtxOptions::default();
    for ev in canh_ingest::evtx::read_file(&path, &opts)
        .unwrap()
        .flatten()
    {
        for m in engine.matches(&ev) {
            alerts += c
                .process(engine.ruleset(), &m, &ev)
                .iter()
                .filter(|a| a.title == "PW Guessing")
                .count();
        }
    }
    assert_eq!(alerts, EXPECTED_PW_GUESSING_ALERTS);
}
