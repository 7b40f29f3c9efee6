//! Conformance with Suricata: runs the sensor over the suricata-verify test cases (pcap +
//! `test.yaml`) and evaluates their `filter` checks on the EVE records Canh writes.
//!
//! Only checks whose `event_type` Canh produces (dns, http, tls, ssh, smtp, ftp, dhcp,
//! flow) are counted.
//! Skipped, and reported as such: tests that need Suricata options Canh does not emulate,
//! checks that depend on alerts (`flow.alerted: true`), and checks for other Suricata versions.
//!
//! Logger options are taken from the test's own configuration, as Suricata would: the
//! `eve-log` output of its suricata.yaml that writes the file a check reads (`filename`,
//! default `eve.json`) gives `ethernet`, `community-id-seed`, the `dns` options (`version`,
//! `requests`, `responses`, `types`) and the `http` option `dump-all-headers`; the
//! `SURICATA_EVE_DNS_VERSION` variable of the test's `env` sets the DNS record version. A check
//! on a file the configuration does not define is skipped. `has-key` / `not-has-key` test
//! whether the path (or each path of a list) exists in the record.

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
const PROTOCOLS: &[&str] = &["dns", "http", "tls", "ssh", "smtp", "ftp", "dhcp", "flow"];
/// `app_proto` values Canh can produce.
const CANH_APP_PROTOS: &[&str] = &["dns", "http", "tls", "ssh", "smtp", "ftp", "dhcp", "failed"];

/// Minimum passing checks per protocol (raise when Canh improves; never lower silently).
const FLOORS: &[(&str, usize)] = &[
    ("dns", 243),
    ("http", 52),
    ("tls", 35),
    ("ssh", 5),
    ("smtp", 46),
    ("ftp", 16),
    ("dhcp", 4),
    ("flow", 84),
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

/// The EVE file checks read when they name none.
const DEFAULT_EVE: &str = "eve.json";

fn yaml_string(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn yaml_true(v: &Yaml) -> bool {
    yaml_string(v).is_some_and(|s| matches!(s.as_str(), "yes" | "true" | "on"))
}

/// The `eve-log` output of the test's suricata.yaml that writes `filename`.
fn eve_output(dir: &Path, filename: &str) -> Option<Yaml> {
    let text = std::fs::read_to_string(dir.join("suricata.yaml")).ok()?;
    // Drop the `%YAML` directive line.
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('%'))
        .collect::<Vec<_>>()
        .join("\n");
    let doc: Yaml = serde_yaml::from_str(&body).ok()?;
    doc.get("outputs")?.as_sequence()?.iter().find_map(|o| {
        let eve = o.get("eve-log")?;
        let name = eve
            .get("filename")
            .and_then(Yaml::as_str)
            .unwrap_or(DEFAULT_EVE);
        (name == filename).then(|| eve.clone())
    })
}

/// Sensor settings for a test's arguments, or None if it needs options Canh lacks.
pub(super) fn config_for(test: &Yaml, dir: &Path) -> Option<SensorConfig> {
    config_for_output(test, dir, DEFAULT_EVE)
}

/// Sensor settings for the EVE output `filename` of a test (its logger options), or None if
/// the test needs options Canh lacks or defines no such output.
fn config_for_output(test: &Yaml, dir: &Path, filename: &str) -> Option<SensorConfig> {
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
                    // Settings that only ask for what Canh always does are accepted: VXLAN
                    // decoding, JA4 and HASSH fingerprints, unlimited reassembly depth; the run
                    // mode does not change output. DNS detection ports map to Canh's own.
                    "--set" => match words.next()? {
                        "stream.midstream=true" => cfg.midstream = true,
                        "app-layer.protocols.tls.encryption-handling=full"
                        | "app-layer.protocols.ssh.encryption-handling=full" => {
                            cfg.inspect_encrypted = true;
                        }
                        "app-layer.protocols.tls.encryption-handling=track-only"
                        | "app-layer.protocols.ssh.encryption-handling=track-only" => {}
                        "decoder.vxlan.enabled=true"
                        | "app-layer.protocols.tls.ja4-fingerprints=yes"
                        | "app-layer.protocols.ssh.hassh=yes"
                        | "stream.reassembly.depth=0" => {}
                        s => {
                            let port = s
                                .strip_prefix("app-layer.protocols.dns.detection-ports.dp=")
                                .or_else(|| {
                                    s.strip_prefix(
                                        "app-layer.protocols.dns.tcp.detection-ports.dp=",
                                    )
                                })?;
                            cfg.detection_ports.push(("dns".into(), port.parse().ok()?));
                        }
                    },
                    "--runmode=single" => {}
                    _ => return None,
                }
            }
        }
    }
    let env_dns = test
        .get("env")
        .and_then(|e| e.get("SURICATA_EVE_DNS_VERSION"))
        .and_then(|v| yaml_string(v)?.parse().ok());
    if let Some(v) = env_dns {
        cfg.dns_log.version = v;
    }
    let Some(eve) = eve_output(dir, filename) else {
        // Checks on an output file the test's configuration does not define.
        return (filename == DEFAULT_EVE).then_some(cfg);
    };
    if let Some(seed) = eve.get("community-id-seed") {
        cfg.community_id_seed = yaml_string(seed)?.parse().ok()?;
    }
    // Suricata's default is off.
    cfg.eve_ethernet = eve.get("ethernet").is_some_and(yaml_true);
    for t in eve
        .get("types")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
    {
        if let Some(dns) = t.get("dns") {
            if let Some(v) = dns.get("version").and_then(yaml_string) {
                cfg.dns_log.version = v.parse().ok()?;
            }
            cfg.dns_log.requests = dns.get("requests").is_none_or(yaml_true);
            cfg.dns_log.responses = dns.get("responses").is_none_or(yaml_true);
            if let Some(types) = dns.get("types").and_then(Yaml::as_sequence) {
                cfg.dns_log.types = types
                    .iter()
                    .filter_map(yaml_string)
                    .map(|t| t.to_ascii_uppercase())
                    .collect();
            }
        }
        if let Some(http) = t.get("http") {
            match http
                .get("dump-all-headers")
                .and_then(yaml_string)
                .as_deref()
            {
                Some("both") => {
                    cfg.http_request_headers = true;
                    cfg.http_response_headers = true;
                }
                Some("request") => cfg.http_request_headers = true,
                Some("response") => cfg.http_response_headers = true,
                _ => {}
            }
        }
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
            // One path or a list of paths.
            let paths: Vec<&str> = match expected {
                Yaml::Sequence(s) => s.iter().filter_map(Yaml::as_str).collect(),
                other => other.as_str().into_iter().collect(),
            };
            return !paths.is_empty()
                && paths
                    .iter()
                    .all(|p| lookup(rec, p).is_some() == (key == "has-key"));
        }
        lookup(rec, key).is_some_and(|actual| equal(expected, actual.as_ref()))
    })
}

/// Verbose diagnosis: for the records of the check's event type, which keys differ.
fn explain(records: &[Json], m: &serde_yaml::Mapping) {
    let et = m.get("event_type").and_then(Yaml::as_str);
    let same: Vec<&Json> = records
        .iter()
        .filter(|r| r.get("event_type").and_then(Json::as_str) == et)
        .collect();
    eprintln!("    {} records of this event type", same.len());
    for r in same.iter().take(4) {
        let diffs: Vec<String> = m
            .iter()
            .filter(|(k, v)| {
                let mut one = serde_yaml::Mapping::new();
                one.insert((*k).clone(), (*v).clone());
                !matches(r, &one)
            })
            .map(|(k, _)| {
                let k = k.as_str().unwrap_or("?");
                let base = k.split(".__").next().unwrap_or(k);
                let got = lookup(r, base).map(|v| v.to_string());
                format!("{k}={}", got.as_deref().unwrap_or("<missing>"))
            })
            .collect();
        eprintln!("    differs: {}", diffs.join(" | "));
    }
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
            let file = filter
                .get("filename")
                .and_then(Yaml::as_str)
                .unwrap_or(DEFAULT_EVE)
                .to_string();
            wanted.push((
                proto,
                filter.get("count").and_then(Yaml::as_u64),
                m.clone(),
                file,
            ));
        }
        if wanted.is_empty() {
            continue;
        }
        let runnable = version_ok(test.get("requires"))
            && test.get("requires").and_then(|r| r.get("pcap")) != Some(&Yaml::Bool(false));
        let name = dir
            .strip_prefix(SV_DIR)
            .unwrap_or(dir)
            .display()
            .to_string();
        let Some(pcap) = pcap_for(&test, dir).filter(|_| runnable) else {
            if verbose {
                eprintln!("SKIP {name}: not runnable here (version or capture)");
            }
            skipped_tests += 1;
            skipped_checks += wanted.len();
            continue;
        };
        // One run per EVE output the checks read (each with its logger options).
        let mut outputs: BTreeMap<String, Option<Vec<Json>>> = BTreeMap::new();
        for (_, _, _, file) in &wanted {
            if !outputs.contains_key(file) {
                let records = config_for_output(&test, dir, file).map(|c| run_sensor(&pcap, c));
                outputs.insert(file.clone(), records);
            }
        }
        if outputs.values().all(Option::is_none) {
            if verbose {
                eprintln!("SKIP {name}: needs options Canh does not emulate");
            }
            skipped_tests += 1;
        }
        if let Some(want) = std::env::var_os("CANH_CONFORMANCE_DUMP")
            && dir.ends_with(&want)
        {
            for r in outputs.values().flatten().flatten() {
                eprintln!("EVE {r}");
            }
        }
        for (proto, count, m, file) in wanted {
            let Some(Some(records)) = outputs.get(&file) else {
                skipped_checks += 1;
                continue;
            };
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
                eprintln!("FAIL {name} [{proto}] want {count:?} got {n}: {m:?}");
                explain(records, &m);
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
