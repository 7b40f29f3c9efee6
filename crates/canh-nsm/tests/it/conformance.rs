//! Conformance with Suricata: runs the sensor over the suricata-verify test cases (pcap +
//! `test.yaml`) and evaluates their `filter` checks on the EVE records Canh writes.
//!
//! Only checks whose `event_type` Canh produces (dns, http, tls, ssh, flow) are counted.
//! Skipped, and reported as such: tests that need Suricata options Canh does not emulate,
//! checks that depend on alerts (`flow.alerted: true`), and checks for other Suricata versions.

use canh_nsm::{Sensor, SensorConfig};
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub(super) const SV_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/pcap/suricata-verify/tests"
);
/// The Suricata version whose expectations are checked.
const EMULATED_VERSION: (u64, u64) = (8, 0);
const PROTOCOLS: &[&str] = &["dns", "http", "tls", "ssh", "flow"];
/// `app_proto` values Canh can produce.
const CANH_APP_PROTOS: &[&str] = &["dns", "http", "tls", "ssh", "failed"];

/// Minimum passing checks per protocol (raise when Canh improves; never lower silently).
const FLOORS: &[(&str, usize)] = &[
    ("dns", 207),
    ("http", 35),
    ("tls", 27),
    ("ssh", 4),
    ("flow", 50),
];

pub(super) fn find_tests(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.join("test.yaml").is_file() {
                out.push(p.clone());
            }
            find_tests(&p, out);
        }
    }
}

pub(super) fn parse_version(v: &Yaml) -> Option<(u64, u64)> {
    let s = match v {
        Yaml::Number(n) => n.to_string(),
        Yaml::String(s) => s.clone(),
        _ => return None,
    };
    let mut it = s.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    Some((it.next()?, it.next().unwrap_or(0)))
}

pub(super) fn version_ok(req: Option<&Yaml>) -> bool {
    let Some(req) = req else { return true };
    if let Some(min) = req.get("min-version").and_then(parse_version)
        && min > EMULATED_VERSION
    {
        return false;
    }
    if let Some(lt) = req.get("lt-version").and_then(parse_version)
        && lt <= EMULATED_VERSION
    {
        return false;
    }
    true
}

/// Sensor settings for a test's arguments, or None if it needs options Canh lacks.
pub(super) fn config_for(test: &Yaml, dir: &Path) -> Option<SensorConfig> {
    let mut cfg = SensorConfig {
        stats_record: false,
        ddos: None,
        ..SensorConfig::default()
    };
    if let Some(args) = test.get("args").and_then(Yaml::as_sequence) {
        for a in args {
            let a = a.as_str()?;
            let mut words = a.split_whitespace().peekable();
            while let Some(w) = words.next() {
                match w {
                    "-k" => {
                        words.next();
                    }
                    "--set" => match words.next()? {
                        "stream.midstream=true" => cfg.midstream = true,
                        _ => return None,
                    },
                    _ => return None,
                }
            }
        }
    }
    if let Ok(yaml) = std::fs::read_to_string(dir.join("suricata.yaml"))
        && let Some(line) = yaml
            .lines()
            .find(|l| l.trim().starts_with("community-id-seed:"))
    {
        cfg.community_id_seed = line.split(':').nth(1)?.trim().parse().ok()?;
    }
    Some(cfg)
}

pub(super) fn pcap_for(test: &Yaml, dir: &Path) -> Option<PathBuf> {
    if let Some(name) = test.get("pcap") {
        return name.as_str().map(|n| dir.join(n));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    if found.len() == 1 { found.pop() } else { None }
}

fn run_sensor(pcap: &Path, cfg: SensorConfig) -> Vec<Json> {
    let mut out = Vec::new();
    let file = std::fs::File::open(pcap).expect("capture opens");
    let mut sensor = Sensor::new(cfg, &mut out);
    if canh_nsm::capture::read_capture(file, "test", &mut sensor).is_err() {
        return Vec::new();
    }
    sensor.finish().expect("writing to memory never fails");
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("valid EVE line"))
        .collect()
}

/// Resolves `a.b[0].c` (and `__len`) in an EVE record.
fn lookup<'a>(rec: &'a Json, path: &str) -> Option<std::borrow::Cow<'a, Json>> {
    use std::borrow::Cow;
    let mut cur = rec;
    let parts: Vec<&str> = path.split('.').collect();
    for (n, part) in parts.iter().enumerate() {
        if *part == "__len" && n + 1 == parts.len() {
            let len = match cur {
                Json::Array(a) => a.len(),
                Json::Object(o) => o.len(),
                Json::String(s) => s.len(),
                _ => return None,
            };
            return Some(Cow::Owned(Json::from(len)));
        }
        let (name, mut idx) = match part.find('[') {
            Some(p) => (&part[..p], &part[p..]),
            None => (*part, ""),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        while let Some(rest) = idx.strip_prefix('[') {
            let close = rest.find(']')?;
            let i: usize = rest[..close].parse().ok()?;
            cur = cur.get(i)?;
            idx = &rest[close + 1..];
        }
    }
    Some(Cow::Borrowed(cur))
}

fn equal(expected: &Yaml, actual: &Json) -> bool {
    match (expected, actual) {
        (Yaml::Null, Json::Null) => true,
        (Yaml::Bool(a), Json::Bool(b)) => a == b,
        (Yaml::Number(a), Json::Number(b)) => a.as_f64() == b.as_f64(),
        (Yaml::String(a), Json::String(b)) => a == b,
        (Yaml::Number(a), Json::String(b)) => a.to_string() == *b,
        (Yaml::String(a), Json::Number(b)) => *a == b.to_string(),
        (Yaml::Sequence(a), Json::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| equal(x, y))
        }
        (Yaml::Mapping(a), Json::Object(b)) => a.iter().all(|(k, v)| {
            k.as_str()
                .and_then(|k| b.get(k))
                .is_some_and(|actual| equal(v, actual))
        }),
        _ => false,
    }
}

pub(super) fn matches(rec: &Json, m: &serde_yaml::Mapping) -> bool {
    m.iter().all(|(k, expected)| {
        let Some(key) = k.as_str() else { return false };
        for (suffix, op) in [
            (".__contains", 0),
            (".__startswith", 1),
            (".__endswith", 2),
            (".__find", 3),
        ] {
            if let Some(base) = key.strip_suffix(suffix) {
                let Some(actual) = lookup(rec, base) else {
                    return false;
                };
                return match (op, actual.as_ref(), expected) {
                    (0, Json::Array(a), e) => a.iter().any(|x| equal(e, x)),
                    (0 | 3, Json::String(s), Yaml::String(e)) => s.contains(e.as_str()),
                    (1, Json::String(s), Yaml::String(e)) => s.starts_with(e.as_str()),
                    (2, Json::String(s), Yaml::String(e)) => s.ends_with(e.as_str()),
                    _ => false,
                };
            }
        }
        if key == "has-key" || key == "not-has-key" {
            return false;
        }
        lookup(rec, key).is_some_and(|actual| equal(expected, actual.as_ref()))
    })
}

#[derive(Default, Debug)]
struct Tally {
    pass: usize,
    total: usize,
}

#[test]
fn suricata_verify_checks_pass_at_or_above_the_floors() {
    let mut tests = Vec::new();
    find_tests(Path::new(SV_DIR), &mut tests);
    tests.sort();
    assert!(
        tests.len() > 1000,
        "suricata-verify corpus missing at {SV_DIR}"
    );
    let verbose = std::env::var_os("CANH_CONFORMANCE_VERBOSE").is_some();
    let mut tally: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut skipped_tests = 0;
    let mut skipped_checks = 0;
    for dir in &tests {
        let Ok(text) = std::fs::read_to_string(dir.join("test.yaml")) else {
            continue;
        };
        let Ok(test) = serde_yaml::from_str::<Yaml>(&text) else {
            continue;
        };
        let Some(checks) = test.get("checks").and_then(Yaml::as_sequence) else {
            continue;
        };
        // Collect the checks Canh can answer before running anything.
        let mut wanted = Vec::new();
        for check in checks {
            let Some(filter) = check.get("filter") else {
                continue;
            };
            let Some(m) = filter.get("match").and_then(Yaml::as_mapping) else {
                continue;
            };
            let Some(et) = m.get("event_type").and_then(Yaml::as_str) else {
                continue;
            };
            let Some(proto) = PROTOCOLS.iter().copied().find(|p| *p == et) else {
                continue;
            };
            // Flow checks about protocols Canh does not parse say nothing about Canh's flows.
            let foreign_proto = [
                "app_proto",
                "app_proto_tc",
                "app_proto_ts",
                "app_proto_orig",
            ]
            .iter()
            .filter_map(|k| m.get(*k).and_then(Yaml::as_str))
            .any(|p| !CANH_APP_PROTOS.contains(&p));
            if foreign_proto {
                continue;
            }
            let needs_alert = m
                .get("flow.alerted")
                .is_some_and(|v| v.as_bool() == Some(true));
            if needs_alert
                || !version_ok(filter.get("requires"))
                || !version_ok(check.get("requires"))
                || filter.get("min-count").is_some()
                || filter.get("max-count").is_some()
            {
                skipped_checks += 1;
                continue;
            }
            wanted.push((proto, filter.get("count").and_then(Yaml::as_u64), m.clone()));
        }
        if wanted.is_empty() {
            continue;
        }
        let runnable = version_ok(test.get("requires"))
            && test.get("requires").and_then(|r| r.get("pcap")) != Some(&Yaml::Bool(false));
        let cfg = config_for(&test, dir).filter(|_| runnable);
        let (Some(cfg), Some(pcap)) = (cfg, pcap_for(&test, dir)) else {
            skipped_tests += 1;
            skipped_checks += wanted.len();
            continue;
        };
        let records = run_sensor(&pcap, cfg);
        for (proto, count, m) in wanted {
            let n = records.iter().filter(|r| matches(r, &m)).count();
            let ok = match count {
                Some(c) => n as u64 == c,
                None => n > 0,
            };
            let t = tally.entry(proto).or_default();
            t.total += 1;
            if ok {
                t.pass += 1;
            } else if verbose {
                let name = dir.strip_prefix(SV_DIR).unwrap_or(dir).display();
                eprintln!("FAIL {name} [{proto}] want {count:?} got {n}: {m:?}");
            }
        }
    }
    eprintln!("suricata-verify conformance (emulating Suricata {EMULATED_VERSION:?}):");
    for (proto, t) in &tally {
        let pct = 100.0 * t.pass as f64 / t.total.max(1) as f64;
        eprintln!(
            "  {proto:5} {:4}/{:4} checks pass ({pct:.1}%)",
            t.pass, t.total
        );
    }
    eprintln!("  skipped: {skipped_tests} tests (options not emulated), {skipped_checks} checks");
    for (proto, floor) in FLOORS {
        let pass = tally.get(proto).map_or(0, |t| t.pass);
        assert!(
            pass >= *floor,
            "{proto}: {pass} passing checks, floor is {floor}"
        );
    }
}
