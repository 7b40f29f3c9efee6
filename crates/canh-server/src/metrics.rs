//! Counters exported at `/metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// A metric name with its label pairs.
type Key = (&'static str, Vec<(&'static str, String)>);

/// Process-wide counters, labelled.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<Key, u64>>,
    gauges: Mutex<BTreeMap<Key, f64>>,
    help: Mutex<BTreeMap<&'static str, (&'static str, &'static str)>>,
}

impl Metrics {
    /// Declares a metric's help text and type (`counter` or `gauge`).
    pub fn describe(&self, name: &'static str, kind: &'static str, help: &'static str) {
        if let Ok(mut h) = self.help.lock() {
            h.insert(name, (kind, help));
        }
    }

    /// Adds `n` to a counter.
    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        let key = (
            name,
            labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        );
        if let Ok(mut c) = self.counters.lock() {
            *c.entry(key).or_insert(0) += n;
        }
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, labels: &[(&'static str, &str)], v: f64) {
        let key = (
            name,
            labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        );
        if let Ok(mut g) = self.gauges.lock() {
            g.insert(key, v);
        }
    }

    /// The current value of a counter (0 when never set).
    pub fn get(&self, name: &'static str, labels: &[(&'static str, &str)]) -> u64 {
        let key = (
            name,
            labels
                .iter()
                .map(|(k, v)| (*k, (*v).to_owned()))
                .collect::<Vec<_>>(),
        );
        self.counters
            .lock()
            .ok()
            .and_then(|c| c.get(&key).copied())
            .unwrap_or(0)
    }

    /// Records that `source` was heard from now (for silent-source alerts).
    pub fn seen(&self, source: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.set("canh_ingest_last_seen_seconds", &[("source", source)], now);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let help = self.help.lock().map(|h| h.clone()).unwrap_or_default();
        let mut last = "";
        let mut line =
            |out: &mut String, name: &'static str, labels: &[(&str, String)], v: &str| {
                if name != last {
                    if let Some((kind, text)) = help.get(name) {
                        let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
                    }
                    last = name;
                }
                let _ = write!(out, "{name}");
                if !labels.is_empty() {
                    let parts: Vec<String> = labels
                        .iter()
                        .map(|(k, v)| {
                            format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
                        })
                        .collect();
                    let _ = write!(out, "{{{}}}", parts.join(","));
                }
                let _ = writeln!(out, " {v}");
            };
        if let Ok(c) = self.counters.lock() {
            for ((name, labels), v) in c.iter() {
                line(&mut out, name, labels, &v.to_string());
            }
        }
        if let Ok(g) = self.gauges.lock() {
            for ((name, labels), v) in g.iter() {
                line(&mut out, name, labels, &v.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_prometheus_text() {
        let m = Metrics::default();
        m.describe("canh_ingest_events_total", "counter", "events accepted");
        m.add(
            "canh_ingest_events_total",
            &[("source", "syslog_udp"), ("agency", "a\"b")],
            2,
        );
        m.add(
            "canh_ingest_events_total",
            &[("source", "syslog_udp"), ("agency", "a\"b")],
            3,
        );
        let text = m.render();
        assert!(text.contains("# TYPE canh_ingest_events_total counter"));
        assert!(
            text.contains("canh_ingest_events_total{source=\"syslog_udp\",agency=\"a\\\"b\"} 5"),
            "{text}"
        );
    }
}
