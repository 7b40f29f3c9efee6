//! `canh hunt`: run Sigma rules over EVTX, JSONL/NDJSON and Suricata EVE files.
//!
//! Files are processed in parallel (one file per worker) and streamed record by record, so
//! memory stays flat as input grows; only hits are kept. A damaged file or record is reported
//! on stderr and skipped. Correlation rules are evaluated per file, in record order.
//!
//! With `--store`, the rules run over the events stored in the data directory instead: through
//! the running server's API (`POST /api/v1/rules/test`) when one holds the data directory,
//! otherwise by opening the store directly; correlation rules are evaluated in the second case
//! (the matches are replayed in time order).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use canh_core::{Event, Severity};
use canh_detect::{Correlator, Engine, LoadOptions, RuleSet, RuleStatus};
use chrono::{DateTime, Utc};
use rayon::prelude::*;
use serde::Serialize;

/// Arguments of `canh hunt`.
#[derive(clap::Args, Debug)]
pub(crate) struct HuntArgs {
    /// Log files or directories (searched recursively for .evtx, .json, .jsonl, .ndjson).
    #[arg(required_unless_present = "store", conflicts_with = "store")]
    paths: Vec<PathBuf>,
    /// Hunt over the events stored in the data directory instead of files.
    #[arg(long)]
    store: bool,
    /// With --store: start of the time range (RFC 3339, a date, epoch seconds or `now-24h`).
    #[arg(long, default_value = "now-24h", requires = "store")]
    from: String,
    /// With --store: end of the time range (exclusive); default now.
    #[arg(long, requires = "store")]
    to: Option<String>,
    /// With --store, when no server runs: configuration file (for [store]).
    #[arg(long, requires = "store")]
    config: Option<PathBuf>,
    /// Sigma rule files or directories.
    #[arg(long, required = true)]
    rules: Vec<PathBuf>,
    /// Only report rules at this level or above (informational, low, medium, high, critical).
    #[arg(long)]
    min_level: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: HuntFormat,
    /// Also write every hit to this CSV file (a timeline, sorted by time).
    #[arg(long)]
    timeline: Option<PathBuf>,
    /// Keep each record's raw JSON in the output (`event.original`).
    #[arg(long)]
    keep_original: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum HuntFormat {
    Table,
    Json,
    Jsonl,
    Csv,
}

/// One hit: a rule (or correlation) that matched.
#[derive(Debug, Clone, Serialize)]
struct Hit {
    #[serde(rename = "@timestamp")]
    timestamp: DateTime<Utc>,
    #[serde(rename = "rule.id")]
    rule_id: Option<String>,
    #[serde(rename = "rule.title")]
    rule_title: String,
    #[serde(rename = "rule.level")]
    rule_level: String,
    #[serde(rename = "rule.tags")]
    rule_tags: Vec<String>,
    #[serde(rename = "rule.author", skip_serializing_if = "Option::is_none")]
    rule_author: Option<String>,
    #[serde(rename = "rule.path", skip_serializing_if = "Option::is_none")]
    rule_path: Option<String>,
    #[serde(rename = "rule.type")]
    rule_type: &'static str,
    #[serde(rename = "host.name", skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(rename = "log.file.path")]
    file: String,
    #[serde(rename = "winlog.record_id", skip_serializing_if = "Option::is_none")]
    record_id: Option<u64>,
    #[serde(rename = "log.offset", skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    #[serde(rename = "event.code", skip_serializing_if = "Option::is_none")]
    event_code: Option<String>,
    /// A few telling fields of the event.
    fields: BTreeMap<String, String>,
    #[serde(rename = "event.original", skip_serializing_if = "Option::is_none")]
    original: Option<String>,
    /// The stored event's id, when hunting over the store.
    #[serde(rename = "canh.event.id", skip_serializing_if = "Option::is_none")]
    store_id: Option<u64>,
}

/// Fields shown with a hit, when present.
const KEY_FIELDS: &[&str] = &[
    "winlog.event_data.CommandLine",
    "winlog.event_data.Image",
    "winlog.event_data.ParentImage",
    "winlog.event_data.NewProcessName",
    "winlog.event_data.TargetFilename",
    "winlog.event_data.TargetObject",
    "winlog.event_data.Details",
    "winlog.event_data.ImageLoaded",
    "winlog.event_data.TargetImage",
    "winlog.event_data.PipeName",
    "winlog.event_data.QueryName",
    "winlog.event_data.DestinationIp",
    "winlog.event_data.ServiceName",
    "winlog.event_data.TargetUserName",
    "winlog.event_data.IpAddress",
    "winlog.event_data.ScriptBlockText",
    "process.command_line",
    "user.name",
    "source.ip",
    "destination.ip",
    "url.original",
    "dns.question.name",
];

const MAX_FIELD_CHARS: usize = 300;

#[derive(Default)]
struct Stats {
    events: AtomicU64,
    errors: AtomicU64,
}

pub(crate) fn run(args: HuntArgs, data_dir: &Path) -> anyhow::Result<i32> {
    let min = match &args.min_level {
        Some(l) => Some(Severity::from_sigma_level(l).with_context(|| {
            format!("unknown level {l:?}; use informational, low, medium, high or critical")
        })?),
        None => None,
    };
    let (mut set, reports) = RuleSet::load_paths(&args.rules, &LoadOptions::default());
    let bad = reports.iter().filter(|r| !r.status.is_loaded()).count();
    let warned = reports
        .iter()
        .filter(|r| matches!(r.status, RuleStatus::Warning(_)))
        .count();
    eprintln!(
        "loaded {} rules and {} correlations ({} not loaded, {} with warnings; see `canh rules check`)",
        set.len(),
        set.correlations().len(),
        bad,
        warned
    );
    if set.is_empty() {
        anyhow::bail!("no usable rules under {:?}", args.rules);
    }
    if let Some(min) = min {
        set.retain_min_severity(min);
    }
    if args.store {
        return hunt_store(&args, set, min, data_dir);
    }
    let engine = Engine::new(set);

    let mut files = Vec::new();
    for p in &args.paths {
        collect_inputs(p, true, &mut files)
            .with_context(|| format!("reading input {}", p.display()))?;
    }
    files.sort();
    let progress = progress_bar(files.len() as u64);
    let stats = Stats::default();
    let started = std::time::Instant::now();
    let mut hits: Vec<Hit> = files
        .par_iter()
        .flat_map_iter(|f| {
            let hits = hunt_file(&engine, f, &args, min, &stats);
            if let Some(pb) = &progress {
                pb.inc(1);
            }
            hits
        })
        .collect();
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    hits.sort_by(|a, b| {
        a.timestamp
            .cmp(&b.timestamp)
            .then_with(|| a.file.cmp(&b.file))
    });
    let events = stats.events.load(Ordering::Relaxed);
    let errors = stats.errors.load(Ordering::Relaxed);
    write_hits(&hits, args.format)?;
    if let Some(t) = &args.timeline {
        let f = File::create(t).with_context(|| format!("creating {}", t.display()))?;
        write_csv(&hits, f)?;
    }
    eprintln!(
        "{} files, {} events, {} hits, {} unreadable records, {:.1}s",
        files.len(),
        events,
        hits.len(),
        errors,
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

/// Most hits a hunt over the store through the server returns.
const REMOTE_MAX_HITS: usize = canh_server::rules::MAX_TEST_HITS;

fn hunt_store(
    args: &HuntArgs,
    set: RuleSet,
    min: Option<Severity>,
    data_dir: &Path,
) -> anyhow::Result<i32> {
    let started = std::time::Instant::now();
    let (mut hits, scanned, total) = match crate::datadir::lock(data_dir)? {
        crate::datadir::Locked::Busy => {
            if !set.correlations().is_empty() {
                eprintln!(
                    "correlation rules are evaluated over the store only when no server holds \
                     it (the server's rule test runs single rules)"
                );
            }
            hunt_remote(args, min, &crate::datadir::remote(data_dir)?)?
        }
        crate::datadir::Locked::Mine(_lock) => hunt_local(args, set, min, data_dir)?,
    };
    hits.sort_by(|a, b| {
        a.timestamp
            .cmp(&b.timestamp)
            .then_with(|| a.store_id.cmp(&b.store_id))
    });
    write_hits(&hits, args.format)?;
    if let Some(t) = &args.timeline {
        let f = File::create(t).with_context(|| format!("creating {}", t.display()))?;
        write_csv(&hits, f)?;
    }
    if total > hits.len() as u64 {
        eprintln!(
            "the server returned the first {} of {total} hits; narrow --from/--to",
            hits.len()
        );
    }
    eprintln!(
        "{scanned} stored events, {} hits, {:.1}s",
        hits.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

fn hunt_local(
    args: &HuntArgs,
    set: RuleSet,
    min: Option<Severity>,
    data_dir: &Path,
) -> anyhow::Result<(Vec<Hit>, u64, u64)> {
    let cfg =
        canh_server::Config::load(args.config.as_deref(), canh_server::config::env_overrides())?;
    let (query, from, to) =
        canh_server::api::range_and_query(None, Some(&args.from), args.to.as_deref())
            .map_err(|m| anyhow::anyhow!(m))?;
    let engine = Engine::new(set);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut store_cfg = cfg.store;
        store_cfg.flush_interval_ms = 0;
        let store = canh_store::Store::open(&canh_server::node::store_dir(data_dir), store_cfg)
            .await
            .context("opening the event store")?;
        let mut hits = Vec::new();
        let has_corr = !engine.ruleset().correlations().is_empty();
        // Matches that correlations count, replayed in time order once the store is read
        // (it is read newest first).
        let mut for_corr: Vec<(
            chrono::DateTime<chrono::Utc>,
            u64,
            canh_detect::Match,
            Event,
        )> = Vec::new();
        let found = canh_server::rules::hunt_store(&store, &engine, query, from, to, 0, |m, h| {
            if has_corr {
                let ts = h.event.timestamp;
                for_corr.push((ts, h.id, m.clone(), h.event.clone()));
            }
            if !m.generate {
                return;
            }
            let rec = Record {
                record_id: h
                    .event
                    .get("winlog.record_id")
                    .and_then(serde_json::Value::as_u64),
                event: h.event.clone(),
                line: None,
            };
            let mut hit = match_hit(m, &rec, &stored_file(&h.event));
            hit.store_id = Some(h.id);
            hits.push(hit);
        })
        .await?;
        let mut count = found.count;
        if has_corr {
            for_corr.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
            let set = engine.ruleset();
            let mut correlator = Correlator::new();
            let mut alerts = Vec::new();
            for (_, _, m, ev) in &for_corr {
                alerts.extend(correlator.process(set, m, ev));
            }
            alerts.extend(correlator.flush(set));
            for a in alerts {
                if min.is_none_or(|min| a.severity >= min) {
                    hits.push(correlation_hit(&a, "store"));
                    count += 1;
                }
            }
        }
        Ok((hits, found.scanned, count))
    })
}

/// Where a stored event came from, for `log.file.path`.
fn stored_file(ev: &Event) -> String {
    ev.get_str("log.file.path").unwrap_or("store").to_owned()
}

fn hunt_remote(
    args: &HuntArgs,
    min: Option<Severity>,
    server: &crate::datadir::Remote,
) -> anyhow::Result<(Vec<Hit>, u64, u64)> {
    let mut body = serde_json::json!({
        "texts": crate::rules::rule_texts(&args.rules)?,
        "from": args.from,
        "limit": REMOTE_MAX_HITS,
    });
    if let Some(to) = &args.to {
        body["to"] = serde_json::json!(to);
    }
    let v = crate::rules::call(server, "POST", "/api/v1/rules/test", Some(&body))?;
    let mut hits = Vec::new();
    for h in v["hits"].as_array().into_iter().flatten() {
        let Ok(event) = serde_json::from_value::<Event>(h["event"].clone()) else {
            continue;
        };
        let level = h["rule_level"].as_str().map(str::to_owned);
        if let Some(min) = min
            && Severity::from_sigma_level(level.as_deref().unwrap_or("")).is_none_or(|s| s < min)
        {
            continue;
        }
        let tags = h["rule_tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let rec = Record {
            record_id: event
                .get("winlog.record_id")
                .and_then(serde_json::Value::as_u64),
            line: None,
            event,
        };
        let m = canh_detect::Match {
            rule_index: 0,
            rule_id: h["rule_id"].as_str().map(str::to_owned),
            title: h["rule_title"].as_str().unwrap_or("").to_owned(),
            severity: Severity::from_sigma_level(level.as_deref().unwrap_or(""))
                .unwrap_or(Severity::Low),
            level,
            tags,
            author: None,
            rule_path: None,
            generate: true,
            variant: 0,
        };
        let mut hit = match_hit(&m, &rec, &stored_file(&rec.event));
        hit.store_id = h["event_id"].as_u64();
        hits.push(hit);
    }
    let scanned = v["scanned"].as_u64().unwrap_or(0);
    let total = v["count"].as_u64().unwrap_or(0);
    Ok((hits, scanned, total))
}

fn progress_bar(len: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files {msg}") {
        pb.set_style(style);
    }
    Some(pb)
}

fn is_input(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        matches!(
            e.to_ascii_lowercase().as_str(),
            "evtx" | "json" | "jsonl" | "ndjson"
        )
    })
}

fn collect_inputs(p: &Path, top: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(p)?;
    if meta.is_file() {
        if top || is_input(p) {
            out.push(p.to_path_buf());
        }
        return Ok(());
    }
    for entry in std::fs::read_dir(p)? {
        collect_inputs(&entry?.path(), false, out)?;
    }
    Ok(())
}

struct Record {
    event: Event,
    record_id: Option<u64>,
    line: Option<u64>,
}

fn hunt_file(
    engine: &Engine,
    path: &Path,
    args: &HuntArgs,
    min: Option<Severity>,
    stats: &Stats,
) -> Vec<Hit> {
    let mut hits = Vec::new();
    let mut correlator = Correlator::new();
    let set = engine.ruleset();
    let has_corr = !set.correlations().is_empty();
    let file = path.display().to_string();
    let mut on_record = |rec: Record| {
        stats.events.fetch_add(1, Ordering::Relaxed);
        engine.for_each_match(&rec.event, |m| {
            if has_corr {
                for a in correlator.process(set, &m, &rec.event) {
                    if min.is_none_or(|min| a.severity >= min) {
                        hits.push(correlation_hit(&a, &file));
                    }
                }
            }
            if m.generate {
                hits.push(match_hit(&m, &rec, &file));
            }
        });
    };
    let is_evtx = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("evtx"));
    let result = if is_evtx {
        read_evtx(path, args.keep_original, stats, &mut on_record)
    } else {
        read_jsonl(path, args.keep_original, stats, &mut on_record)
    };
    if let Err(e) = result {
        eprintln!("skipping {}: {e:#}", path.display());
    }
    for a in correlator.flush(set) {
        hits.push(correlation_hit(&a, &file));
    }
    hits
}

fn read_evtx(
    path: &Path,
    keep: bool,
    stats: &Stats,
    f: &mut dyn FnMut(Record),
) -> anyhow::Result<()> {
    let opts = canh_ingest::evtx::EvtxOptions {
        keep_original: keep,
    };
    let records = canh_ingest::evtx::read_file(path, &opts)?;
    let mut reported = false;
    for r in records {
        match r {
            Ok(event) => {
                let record_id = event
                    .get("winlog.record_id")
                    .and_then(serde_json::Value::as_u64);
                f(Record {
                    event,
                    record_id,
                    line: None,
                });
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                if !reported {
                    eprintln!("{}: damaged record(s) skipped: {e}", path.display());
                    reported = true;
                }
            }
        }
    }
    Ok(())
}

fn read_jsonl(
    path: &Path,
    keep: bool,
    stats: &Stats,
    f: &mut dyn FnMut(Record),
) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let eve = canh_ingest::parsers::parser_by_id("suricata_eve");
    let cx = canh_ingest::parsers::ParseCtx::new(Utc::now()).with_keep_original(keep);
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let mut reported = false;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        line_no += 1;
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match parse_line(text, eve, &cx, keep) {
            Some(event) => f(Record {
                event,
                record_id: None,
                line: Some(line_no),
            }),
            None => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                if !reported {
                    eprintln!("{}:{line_no}: not a JSON object, skipped", path.display());
                    reported = true;
                }
            }
        }
    }
    Ok(())
}

fn parse_line(
    text: &str,
    eve: Option<&'static dyn canh_ingest::parsers::LogParser>,
    cx: &canh_ingest::parsers::ParseCtx,
    keep: bool,
) -> Option<Event> {
    let serde_json::Value::Object(obj) = serde_json::from_str(text).ok()? else {
        return None;
    };
    let is_eve = obj.contains_key("event_type") && obj.contains_key("timestamp");
    if is_eve && let Some(ev) = eve.and_then(|p| p.parse(text.as_bytes(), cx).ok()) {
        return Some(ev);
    }
    let mut ev = Event::from_json_object(obj, Utc::now()).ok()?;
    if keep {
        ev.set("event.original", text);
    }
    Some(ev)
}

fn key_fields(ev: &Event) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for k in KEY_FIELDS {
        if let Some(v) = ev.get(k) {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if s.is_empty() || s == "-" {
                continue;
            }
            let short: String = s.chars().take(MAX_FIELD_CHARS).collect();
            let name = k.strip_prefix("winlog.event_data.").unwrap_or(k);
            out.insert(name.to_owned(), short);
        }
    }
    out
}

fn match_hit(m: &canh_detect::Match, rec: &Record, file: &str) -> Hit {
    let ev = &rec.event;
    Hit {
        timestamp: ev.timestamp,
        rule_id: m.rule_id.clone(),
        rule_title: m.title.clone(),
        rule_level: m
            .level
            .clone()
            .unwrap_or_else(|| m.severity.as_str().to_owned()),
        rule_tags: m.tags.clone(),
        rule_author: m.author.clone(),
        rule_path: m.rule_path.as_ref().map(|p| p.display().to_string()),
        rule_type: "sigma",
        host: ev.get_str("host.name").map(str::to_owned),
        file: file.to_owned(),
        record_id: rec.record_id,
        line: rec.line,
        event_code: ev.get_str("event.code").map(str::to_owned),
        fields: key_fields(ev),
        original: ev.original().map(str::to_owned),
        store_id: None,
    }
}

fn correlation_hit(a: &canh_detect::CorrelationAlert, file: &str) -> Hit {
    let mut fields = a.group.clone();
    fields.insert("correlation.value".into(), a.value.to_string());
    fields.insert("correlation.first_seen".into(), a.first_seen.to_rfc3339());
    Hit {
        timestamp: a.last_seen,
        rule_id: a.rule_id.clone(),
        rule_title: a.title.clone(),
        rule_level: a
            .level
            .clone()
            .unwrap_or_else(|| a.severity.as_str().to_owned()),
        rule_tags: a.tags.clone(),
        rule_author: None,
        rule_path: None,
        rule_type: "sigma_correlation",
        host: None,
        file: file.to_owned(),
        record_id: None,
        line: None,
        event_code: None,
        fields,
        original: None,
        store_id: None,
    }
}

fn write_hits(hits: &[Hit], format: HuntFormat) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        HuntFormat::Json => {
            serde_json::to_writer_pretty(&mut out, hits)?;
            writeln!(out)?;
        }
        HuntFormat::Jsonl => {
            for h in hits {
                serde_json::to_writer(&mut out, h)?;
                writeln!(out)?;
            }
        }
        HuntFormat::Csv => write_csv(hits, &mut out)?,
        HuntFormat::Table => {
            for h in hits {
                let fields: Vec<String> = h
                    .fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.replace('\n', " ")))
                    .collect();
                let at = match (h.record_id, h.line) {
                    (Some(r), _) => format!("#{r}"),
                    (None, Some(l)) => format!(":{l}"),
                    _ => String::new(),
                };
                writeln!(
                    out,
                    "{}  {:<13} {}  [{}]  host={}  {}{}  {}",
                    h.timestamp.format("%Y-%m-%d %H:%M:%S"),
                    h.rule_level,
                    h.rule_title,
                    h.rule_tags.join(","),
                    h.host.as_deref().unwrap_or("-"),
                    h.file,
                    at,
                    fields.join(" ")
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn write_csv(hits: &[Hit], w: impl Write) -> anyhow::Result<()> {
    let mut csv = csv::Writer::from_writer(w);
    csv.write_record([
        "timestamp",
        "level",
        "rule_id",
        "rule_title",
        "tags",
        "host",
        "event_code",
        "file",
        "record",
        "fields",
    ])?;
    for h in hits {
        let fields: Vec<String> = h.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let rec = h
            .record_id
            .or(h.line)
            .map(|n| n.to_string())
            .unwrap_or_default();
        csv.write_record([
            h.timestamp.to_rfc3339().as_str(),
            &h.rule_level,
            h.rule_id.as_deref().unwrap_or(""),
            &h.rule_title,
            &h.rule_tags.join(" "),
            h.host.as_deref().unwrap_or(""),
            h.event_code.as_deref().unwrap_or(""),
            &h.file,
            &rec,
            &fields.join(" | "),
        ])?;
    }
    csv.flush()?;
    Ok(())
}
