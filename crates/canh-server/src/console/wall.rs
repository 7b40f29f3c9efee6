//! The wall screen: live alerts over server-sent events, sources gone silent, ingest rate,
//! open incidents by step and by deadline, the agency tree with status colours.

use super::{Chrome, ConsoleState, PageResult, Tr, Viewer, chrome, fmt_time, render, soar_fail};
use crate::http::AppState;
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use canh_soar::{Alert, AlertFilter, AlertState, IncidentFilter, Severity, Step};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;

/// A source not heard from for this long is shown as silent.
pub(super) const SILENT_AFTER_SECS: f64 = 300.0;
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const SAMPLES: usize = 60;

pub(super) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/console/wall", get(wall))
        .route("/console/wall/panels", get(panels))
        .route("/console/wall/stream", get(stream))
}

// ---- ingest rate ----

/// Samples the node's ingest counter every 5 s (the last five minutes are kept).
#[derive(Debug, Default)]
pub struct RateSampler {
    samples: Mutex<VecDeque<(f64, u64)>>,
}

impl RateSampler {
    /// Starts sampling; the task ends when the node's state is dropped.
    pub fn start(app: &Arc<AppState>) -> Arc<Self> {
        let me = Arc::new(Self::default());
        let weak: Weak<AppState> = Arc::downgrade(app);
        let sampler = Arc::clone(&me);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let mut tick = tokio::time::interval(SAMPLE_EVERY);
                loop {
                    tick.tick().await;
                    let Some(app) = weak.upgrade() else { return };
                    let total = ingest_total(&app.metrics.render());
                    sampler.push(now_secs(), total);
                }
            });
        }
        me
    }

    fn push(&self, at: f64, total: u64) {
        if let Ok(mut s) = self.samples.lock() {
            s.push_back((at, total));
            while s.len() > SAMPLES {
                s.pop_front();
            }
        }
    }

    /// Events per second between consecutive samples, oldest first.
    pub fn rates(&self) -> Vec<f64> {
        let Ok(s) = self.samples.lock() else {
            return Vec::new();
        };
        s.iter()
            .zip(s.iter().skip(1))
            .map(|(a, b)| {
                let dt = (b.0 - a.0).max(0.001);
                b.1.saturating_sub(a.1) as f64 / dt
            })
            .collect()
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Values of one metric in the Prometheus text: `(source label, value)`.
pub(super) fn metric_values(text: &str, name: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once("} ") {
                Some((l, v)) => (l, v),
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(v) => ("", v),
                None => continue,
            },
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let source = labels
            .split(',')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == "source")
            .map(|(_, v)| v.trim_matches('"').to_owned())
            .unwrap_or_default();
        out.push((source, v));
    }
    out
}

fn ingest_total(text: &str) -> u64 {
    metric_values(text, "canh_ingest_events_total")
        .iter()
        .map(|(_, v)| *v as u64)
        .sum()
}

// ---- view models ----

/// One alert as the wall and the stream show it.
pub(super) struct WallAlert {
    id: i64,
    sev: &'static str,
    sev_name: String,
    title: String,
    host: String,
    time: String,
    count: i64,
}

impl WallAlert {
    pub(super) fn new(a: &Alert, tr: Tr) -> Self {
        Self {
            id: a.id,
            sev: a.severity.as_str(),
            sev_name: tr.k("console-sev", a.severity.as_str()),
            title: a.rule_title.clone(),
            host: a.host.clone(),
            time: fmt_time(a.last_seen),
            count: a.count,
        }
    }
}

#[derive(Template)]
#[template(path = "wall_alert.html")]
struct WallAlertRow<'a> {
    a: &'a WallAlert,
}

struct SourceRow {
    name: String,
    last: String,
    silent: bool,
}

struct StepCount {
    name: String,
    count: usize,
}

struct DeadlineRow {
    incident: i64,
    title: String,
    kind: String,
    due_iso: String,
    due: String,
    overdue: bool,
}

struct AgencyRow {
    id: i64,
    name: String,
    depth: usize,
    status: &'static str,
    status_name: String,
}

#[derive(Template)]
#[template(path = "wall_panels.html")]
struct Panels {
    tr: Tr,
    sev_counts: Vec<(&'static str, String, usize)>,
    sources: Vec<SourceRow>,
    rate_now: String,
    spark: String,
    sev_chart: String,
    sev_start: String,
    sev_end: String,
    top_sources: String,
    steps: Vec<StepCount>,
    open_total: usize,
    deadlines: Vec<DeadlineRow>,
    agencies: Vec<AgencyRow>,
}

impl Panels {
    fn t(&self, id: &str) -> String {
        self.tr.t(id)
    }
}

#[derive(Template)]
#[template(path = "wall.html")]
struct WallPage {
    c: Chrome,
    alerts: Vec<WallAlert>,
    panels: String,
}

async fn recent_alerts(st: &ConsoleState, v: &Viewer) -> Result<Vec<Alert>, canh_soar::SoarError> {
    let f = AlertFilter {
        state: Some(AlertState::New),
        limit: Some(500),
        ..AlertFilter::default()
    };
    Ok(st
        .soar
        .soar
        .alerts(&f, v.auth.scope.as_deref())
        .await?
        .items)
}

async fn build_panels(st: &ConsoleState, v: &Viewer) -> Result<Panels, canh_soar::SoarError> {
    let tr = v.tr;
    let scope = v.auth.scope.as_deref();
    let now = st.soar.soar.now();
    let alerts = recent_alerts(st, v).await?;
    let sev_counts = Severity::ALL
        .iter()
        .rev()
        .map(|s| {
            let n = alerts.iter().filter(|a| a.severity == *s).count();
            (s.as_str(), tr.k("console-sev", s.as_str()), n)
        })
        .collect();

    // Sources: only for users who see every agency (sources are not attributed to one).
    let mut sources = Vec::new();
    if scope.is_none() {
        let text = st.app.metrics.render();
        let now_s = now_secs();
        for (name, last) in metric_values(&text, "canh_ingest_last_seen_seconds") {
            let at = DateTime::<Utc>::from_timestamp(last as i64, 0).unwrap_or(now);
            sources.push(SourceRow {
                name,
                last: fmt_time(at),
                silent: now_s - last > SILENT_AFTER_SECS,
            });
        }
        sources.sort_by(|a, b| b.silent.cmp(&a.silent).then_with(|| a.name.cmp(&b.name)));
    }
    let rates = st.rates.rates();
    let rate_now = rates.last().copied().unwrap_or(0.0);
    let top_sources = if scope.is_none() {
        let text = st.app.metrics.render();
        let mut by_source: BTreeMap<String, f64> = BTreeMap::new();
        for (name, n) in metric_values(&text, "canh_ingest_events_total") {
            *by_source.entry(name).or_default() += n;
        }
        top_sources_chart(&by_source.into_iter().collect::<Vec<_>>(), tr)
    } else {
        String::new()
    };
    let day_ago = now - chrono::Duration::hours(24);
    let recent = alerts_since(st, v, day_ago).await?;
    let sev_chart = severity_chart(&recent, now, tr);

    let f = IncidentFilter {
        closed: Some(false),
        limit: Some(500),
        ..IncidentFilter::default()
    };
    let open = st.soar.soar.incidents(&f, scope).await?.items;
    let steps = Step::ALL
        .iter()
        .map(|s| StepCount {
            name: tr.k("console-step", s.as_str()),
            count: open.iter().filter(|i| i.step == *s).count(),
        })
        .collect();
    let mut deadlines = Vec::new();
    for inc in &open {
        for d in inc.deadlines(now) {
            let (Some(due), None) = (d.due, d.sent_at) else {
                continue;
            };
            let kind = serde_json::to_value(d.kind)
                .ok()
                .and_then(|k| k.as_str().map(str::to_owned))
                .unwrap_or_default();
            deadlines.push((
                due,
                DeadlineRow {
                    incident: inc.id,
                    title: inc.title.clone(),
                    kind: tr.k("console-report", &kind),
                    due_iso: due.to_rfc3339(),
                    due: fmt_time(due),
                    overdue: d.overdue,
                },
            ));
        }
    }
    deadlines.sort_by_key(|(due, _)| *due);
    let deadlines = deadlines.into_iter().take(8).map(|(_, d)| d).collect();

    // Agency status: the highest severity among its open incidents and new alerts.
    let mut worst: HashMap<i64, Severity> = HashMap::new();
    for i in &open {
        let e = worst.entry(i.agency_id).or_insert(i.severity);
        *e = (*e).max(i.severity);
    }
    for a in &alerts {
        if let Some(ag) = a.agency_id {
            let e = worst.entry(ag).or_insert(a.severity);
            *e = (*e).max(a.severity);
        }
    }
    let all = st.soar.soar.agencies().await?;
    let visible: Vec<_> = all
        .into_iter()
        .filter(|a| a.merged_into.is_none() && v.auth.can_see(Some(a.id)))
        .collect();
    let agencies = agency_tree(&visible)
        .into_iter()
        .map(|(a, depth)| {
            let status = worst.get(&a.id).map_or("ok", |s| s.as_str());
            AgencyRow {
                id: a.id,
                name: a.name.clone(),
                depth,
                status,
                status_name: if status == "ok" {
                    tr.t("console-wall-agency-ok")
                } else {
                    tr.k("console-sev", status)
                },
            }
        })
        .collect();
    Ok(Panels {
        tr,
        sev_counts,
        sources,
        rate_now: format!("{rate_now:.1}"),
        spark: sparkline(&rates),
        sev_chart,
        sev_start: fmt_time(day_ago),
        sev_end: fmt_time(now),
        top_sources,
        steps,
        open_total: open.len(),
        deadlines,
        agencies,
    })
}

/// Depth-first order of the visible agencies; those whose parent is not visible are roots.
pub(super) fn agency_tree(list: &[canh_soar::Agency]) -> Vec<(&canh_soar::Agency, usize)> {
    let ids: std::collections::HashSet<i64> = list.iter().map(|a| a.id).collect();
    let mut children: BTreeMap<Option<i64>, Vec<&canh_soar::Agency>> = BTreeMap::new();
    for a in list {
        let parent = a.parent_id.filter(|p| ids.contains(p));
        children.entry(parent).or_default().push(a);
    }
    let mut out = Vec::new();
    let mut stack: Vec<(&canh_soar::Agency, usize)> = children
        .get(&None)
        .map(|v| v.iter().rev().map(|a| (*a, 0)).collect())
        .unwrap_or_default();
    while let Some((a, depth)) = stack.pop() {
        out.push((a, depth));
        if out.len() > list.len() {
            break; // a cycle would be a bug in the store; never loop forever
        }
        if let Some(kids) = children.get(&Some(a.id)) {
            for k in kids.iter().rev() {
                stack.push((k, depth + 1));
            }
        }
    }
    out
}

/// Alerts of every state first seen since `since` (newest first, at most 5000), as time and
/// severity.
async fn alerts_since(
    st: &ConsoleState,
    v: &Viewer,
    since: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, Severity)>, canh_soar::SoarError> {
    let mut out = Vec::new();
    let mut after = None;
    for _ in 0..10 {
        let f = AlertFilter {
            limit: Some(500),
            after,
            ..AlertFilter::default()
        };
        let page = st
            .soar
            .soar
            .alerts(&f, v.auth.scope.as_deref())
            .await?
            .items;
        let full = page.len() == 500;
        let mut older = false;
        for a in &page {
            if a.first_seen >= since {
                out.push((a.first_seen, a.severity));
            } else {
                older = true;
            }
        }
        after = page.last().map(|a| a.id);
        if !full || older {
            break;
        }
    }
    Ok(out)
}

/// Escapes text for SVG/HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Alerts per hour over the last 24 hours, stacked by severity: an inline SVG.
fn severity_chart(alerts: &[(DateTime<Utc>, Severity)], now: DateTime<Utc>, tr: Tr) -> String {
    const HOURS: usize = 24;
    let (w, h) = (480.0, 96.0);
    let start = now - chrono::Duration::hours(HOURS as i64);
    let mut counts = [[0usize; 4]; HOURS];
    for (t, sev) in alerts {
        let Ok(i) = usize::try_from((*t - start).num_seconds() / 3600) else {
            continue;
        };
        if let (Some(row), Some(k)) = (
            counts.get_mut(i),
            Severity::ALL.iter().position(|s| s == sev),
        ) && let Some(c) = row.get_mut(k)
        {
            *c += 1;
        }
    }
    let max = counts
        .iter()
        .map(|r| r.iter().sum::<usize>())
        .max()
        .unwrap_or(0)
        .max(1);
    let total: usize = counts.iter().flatten().sum();
    let bw = w / HOURS as f64;
    let mut bars = String::new();
    for (i, row) in counts.iter().enumerate() {
        let mut y = h;
        let from = fmt_time(start + chrono::Duration::hours(i as i64));
        let parts: Vec<String> = Severity::ALL
            .iter()
            .zip(row)
            .rev()
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| format!("{n} {}", tr.k("console-sev", s.as_str())))
            .collect();
        for (sev, n) in Severity::ALL.iter().zip(row) {
            if *n == 0 {
                continue;
            }
            let bh = *n as f64 / max as f64 * (h - 4.0);
            y -= bh;
            bars.push_str(&format!(
                "<rect class=\"sev-{}\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" \
                 height=\"{bh:.1}\"><title>{} — {}</title></rect>",
                sev.as_str(),
                i as f64 * bw,
                (bw - 2.0).max(1.0),
                esc(&from),
                esc(&parts.join(", "))
            ));
        }
    }
    format!(
        "<svg id=\"sev-chart\" class=\"chart\" viewBox=\"0 0 {w} {h}\" \
         preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{}: {total}\" \
         data-total=\"{total}\"><line class=\"axis\" x1=\"0\" y1=\"{h}\" x2=\"{w}\" \
         y2=\"{h}\"/>{bars}</svg>",
        esc(&tr.t("console-wall-sev-chart"))
    )
}

/// The five sources that sent the most events: horizontal bars with names and counts.
fn top_sources_chart(counts: &[(String, f64)], tr: Tr) -> String {
    let mut top: Vec<&(String, f64)> = counts.iter().filter(|(_, n)| *n > 0.0).collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(5);
    if top.is_empty() {
        return format!(
            "<p class=\"muted\">{}</p>",
            esc(&tr.t("console-wall-no-sources"))
        );
    }
    let max = top.first().map_or(1.0, |t| t.1.max(1.0));
    let row = 22.0;
    // About the width of a wall panel, so that the text is drawn near its CSS size.
    let (w, label_w) = (220.0, 92.0);
    let h = row * top.len() as f64;
    let mut out = format!(
        "<svg id=\"top-sources\" class=\"chart bars\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"{}\">",
        esc(&tr.t("console-wall-top-sources"))
    );
    for (i, (name, n)) in top.iter().enumerate() {
        let y = i as f64 * row;
        let bw = (n / max * (w - label_w - 40.0)).max(1.0);
        let short: String = name.chars().take(12).collect();
        out.push_str(&format!(
            "<g class=\"src\"><title>{} — {n:.0}</title><text x=\"0\" y=\"{:.1}\">{}</text>\
             <rect x=\"{label_w}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\"/>\
             <text class=\"n\" x=\"{:.1}\" y=\"{:.1}\">{n:.0}</text></g>",
            esc(name),
            y + 15.0,
            esc(&short),
            y + 4.0,
            row - 8.0,
            label_w + bw + 6.0,
            y + 15.0,
        ));
    }
    out.push_str("</svg>");
    out
}

/// An inline SVG polyline of the rates (server-side, no chart library).
fn sparkline(rates: &[f64]) -> String {
    let w = 240.0;
    let h = 48.0;
    if rates.len() < 2 {
        return format!(
            "<svg class=\"spark\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-hidden=\"true\"></svg>"
        );
    }
    let max = rates.iter().copied().fold(1.0_f64, f64::max);
    let step = w / (rates.len() - 1) as f64;
    let pts: Vec<String> = rates
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                h - 2.0 - r / max * (h - 4.0)
            )
        })
        .collect();
    format!(
        "<svg class=\"spark\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-hidden=\"true\">\
         <polyline fill=\"none\" stroke=\"currentColor\" stroke-width=\"2\" points=\"{}\"/></svg>",
        pts.join(" ")
    )
}

// ---- handlers ----

async fn wall(State(st): State<ConsoleState>, v: Viewer) -> PageResult {
    let alerts = recent_alerts(&st, &v).await.map_err(soar_fail(&v))?;
    let panels = build_panels(&st, &v).await.map_err(soar_fail(&v))?;
    let panels = panels.render().unwrap_or_default();
    let page = WallPage {
        c: chrome(&v, "wall", "/console/wall"),
        alerts: alerts
            .iter()
            .take(50)
            .map(|a| WallAlert::new(a, v.tr))
            .collect(),
        panels,
    };
    Ok(render(&page))
}

async fn panels(State(st): State<ConsoleState>, v: Viewer) -> PageResult {
    let p = build_panels(&st, &v).await.map_err(soar_fail(&v))?;
    Ok(render(&p))
}

/// A stream ends after this long and the browser reconnects (asking for what it missed with
/// `Last-Event-ID`), so that a node shutting down never waits long on an open wall.
const STREAM_LIFETIME: Duration = Duration::from_secs(30);

/// `text/event-stream` of `alert` events, each an HTML row of one alert the viewer may see.
async fn stream(State(st): State<ConsoleState>, v: Viewer, headers: HeaderMap) -> Response {
    let mut feed = st.soar.alert_feed.subscribe();
    let last_seen: Option<i64> = headers
        .get("last-event-id")
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.trim().parse().ok());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(64);
    let soar = st.soar;
    tokio::spawn(async move {
        let send_alert = |alert: &Alert| {
            let row = WallAlert::new(alert, v.tr);
            let html = WallAlertRow { a: &row }.render().unwrap_or_default();
            Event::default()
                .event("alert")
                .id(alert.id.to_string())
                .data(html)
        };
        // Tell the page the stream is live (tests and the status dot wait for it).
        let ready = Event::default()
            .event("ready")
            .retry(Duration::from_secs(1))
            .data("ok");
        if tx.send(Ok(ready)).await.is_err() {
            return;
        }
        if let Some(last) = last_seen {
            let f = AlertFilter {
                limit: Some(100),
                ..AlertFilter::default()
            };
            if let Ok(page) = soar.soar.alerts(&f, v.auth.scope.as_deref()).await {
                for a in page.items.iter().rev().filter(|a| a.id > last) {
                    if tx.send(Ok(send_alert(a))).await.is_err() {
                        return;
                    }
                }
            }
        }
        let until = tokio::time::Instant::now() + STREAM_LIFETIME;
        loop {
            let id = match tokio::time::timeout_at(until, feed.recv()).await {
                Err(_) => return, // lifetime over: the browser reconnects
                Ok(Ok(id)) => id,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                    tracing::debug!(skipped = n, "wall stream lagged");
                    continue;
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return,
            };
            let alert = match soar.soar.alert(id).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, alert = id, "wall stream: alert gone");
                    continue;
                }
            };
            if !v.auth.can_see(alert.agency_id) {
                continue;
            }
            if tx.send(Ok(send_alert(&alert))).await.is_err() {
                return; // the page went away
            }
        }
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_lines_are_read_by_source() {
        let text = "# HELP x\ncanh_ingest_events_total{source=\"syslog_udp\"} 5\n\
                    canh_ingest_events_total{source=\"gelf\",agency=\"a\"} 7\n\
                    canh_ingest_events_total_other 9\n\
                    canh_ingest_last_seen_seconds{source=\"syslog_udp\"} 1700000000.5\n";
        assert_eq!(ingest_total(text), 12);
        let seen = metric_values(text, "canh_ingest_last_seen_seconds");
        assert_eq!(seen, vec![("syslog_udp".to_owned(), 1_700_000_000.5)]);
    }

    #[test]
    fn rates_come_from_consecutive_samples() {
        let s = RateSampler::default();
        s.push(0.0, 0);
        s.push(5.0, 50);
        s.push(10.0, 60);
        assert_eq!(s.rates(), vec![10.0, 2.0]);
        assert!(sparkline(&s.rates()).contains("<polyline"));
        assert!(!sparkline(&[]).contains("<polyline"));
    }

    #[test]
    fn the_severity_chart_stacks_alerts_per_hour() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let tr = Tr {
            lang: super::super::Lang::En,
        };
        let h = |n: i64| now - chrono::Duration::minutes(n);
        let alerts = vec![
            (h(30), Severity::Emergency),
            (h(40), Severity::Low),
            (h(50), Severity::Low),
            (h(5 * 60), Severity::High),
            // Older than a day: left out.
            (h(25 * 60), Severity::High),
        ];
        let svg = severity_chart(&alerts, now, tr);
        assert!(svg.contains("data-total=\"4\""), "{svg}");
        assert_eq!(svg.matches("<rect class=\"sev-low\"").count(), 1);
        assert_eq!(svg.matches("<rect class=\"sev-emergency\"").count(), 1);
        assert_eq!(svg.matches("<rect class=\"sev-high\"").count(), 1);
        // The last hour holds 3 alerts, the tallest bar: it fills the height.
        assert!(svg.contains("1 Emergency, 2 Low"), "{svg}");
        assert!(svg.contains("y=\"4.0\""), "{svg}");
    }

    #[test]
    fn top_sources_are_sorted_and_escaped() {
        let tr = Tr {
            lang: super::super::Lang::Vi,
        };
        let counts = vec![
            ("syslog".to_owned(), 10.0),
            ("<gelf>".to_owned(), 30.0),
            ("a".to_owned(), 0.0),
        ];
        let svg = top_sources_chart(&counts, tr);
        assert!(
            svg.find("&lt;gelf&gt;").unwrap() < svg.find("syslog").unwrap(),
            "{svg}"
        );
        assert!(!svg.contains("<gelf>"));
        assert_eq!(svg.matches("<g class=\"src\"").count(), 2);
        assert!(top_sources_chart(&[], tr).contains("muted"));
    }
}
