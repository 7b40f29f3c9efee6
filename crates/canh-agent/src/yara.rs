//! YARA scanning of new executables (cargo feature `yara`, off by default).
//!
//! The scanner sits between the sensors and the spool: every batch passes through unchanged,
//! and the executables it names are queued for a scan — the program of each process start,
//! the script an interpreter was started with (`sh x.sh`, `python3 x.py`), and files that the
//! file-integrity sensor sees created or changed with an execute bit. Each distinct content
//! (SHA-256) is scanned once per run of the agent; a match becomes one alert event
//! (`event.kind: alert`, `event.dataset: yara`). Scans that could not be made (queue full,
//! file too large, unreadable, timeout) are counted and reported in a `yara_scans_skipped`
//! event, so a gap in coverage is visible.
//!
//! Rules are YARA files (`.yar`, `.yara`) compiled with yara-x; each file is its own namespace,
//! so rule names may repeat across files. A file that does not compile is reported and left
//! out; the others are used. Modules available: `elf`, `hash`, `math`, `string`, `time`,
//! `console` (no `pe`, `dotnet`, `macho`: Linux endpoints).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use canh_core::Event;
use serde_json::{Value, json};
use sha2::Digest;
use tracing::{info, warn};

pub use crate::config::YaraConfig;
use crate::sensors::{Emit, base_event};

/// YARA failures.
#[derive(Debug, thiserror::Error)]
pub enum YaraError {
    /// A rule path could not be read.
    #[error("reading YARA rules {path}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No rule compiled.
    #[error("no YARA rule compiled ({} file(s) rejected)", rejected.len())]
    NoRules {
        /// Files that did not compile, with the compiler's message.
        rejected: Vec<RejectedFile>,
    },
    /// A scan failed or timed out.
    #[error("YARA scan: {0}")]
    Scan(String),
}

/// A rule file left out, with why.
#[derive(Clone, Debug, PartialEq)]
pub struct RejectedFile {
    /// The file.
    pub path: PathBuf,
    /// The compiler's message.
    pub message: String,
}

/// Compiled rules and what went into them.
pub struct RuleSet {
    rules: yara_x::Rules,
    /// Files compiled.
    pub files: Vec<PathBuf>,
    /// Files left out.
    pub rejected: Vec<RejectedFile>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("files", &self.files)
            .field("rejected", &self.rejected)
            .finish_non_exhaustive()
    }
}

fn rule_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), YaraError> {
    let err = |source| YaraError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rule_files(&p, out)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yar") || e.eq_ignore_ascii_case("yara"))
        {
            out.push(p);
        }
    }
    Ok(())
}

impl RuleSet {
    /// Compiles the rule files under `paths`; files that do not compile are left out and
    /// listed in [`RuleSet::rejected`]. An error when nothing compiled.
    pub fn load(paths: &[PathBuf]) -> Result<Self, YaraError> {
        let mut files = Vec::new();
        for p in paths {
            rule_files(p, &mut files)?;
        }
        let mut compiler = yara_x::Compiler::new();
        let mut compiled = Vec::new();
        let mut rejected = Vec::new();
        for (i, file) in files.iter().enumerate() {
            let text = match std::fs::read(file) {
                Ok(t) => t,
                Err(e) => {
                    rejected.push(RejectedFile {
                        path: file.clone(),
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            // One namespace per file: rule names only have to be unique within a file.
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            compiler.new_namespace(&format!("{stem}_{i}"));
            let src =
                yara_x::SourceCode::from(text.as_slice()).with_origin(file.display().to_string());
            match compiler.add_source(src) {
                Ok(_) => compiled.push(file.clone()),
                Err(e) => rejected.push(RejectedFile {
                    path: file.clone(),
                    message: e.to_string(),
                }),
            }
        }
        if compiled.is_empty() {
            return Err(YaraError::NoRules { rejected });
        }
        Ok(Self {
            rules: compiler.build(),
            files: compiled,
            rejected,
        })
    }

    /// Compiles YARA source text (tests, tools).
    pub fn from_source(text: &str) -> Result<Self, YaraError> {
        let mut compiler = yara_x::Compiler::new();
        compiler.add_source(text).map_err(|e| YaraError::NoRules {
            rejected: vec![RejectedFile {
                path: PathBuf::new(),
                message: e.to_string(),
            }],
        })?;
        Ok(Self {
            rules: compiler.build(),
            files: Vec::new(),
            rejected: Vec::new(),
        })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.iter().len()
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A scanner with these rules.
    pub fn scanner(&self, timeout: Duration) -> Scanner<'_> {
        let mut inner = yara_x::Scanner::new(&self.rules);
        inner.set_timeout(timeout);
        Scanner { inner }
    }
}

/// One rule that matched.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// Rule identifier.
    pub rule: String,
    /// The rule's namespace (its file).
    pub namespace: String,
    /// The rule's tags.
    pub tags: Vec<String>,
    /// The rule's `meta:` section as a JSON object.
    pub meta: Value,
    /// Identifiers of the patterns that matched.
    pub patterns: Vec<String>,
}

/// Scans data with a [`RuleSet`]; one per thread.
pub struct Scanner<'r> {
    inner: yara_x::Scanner<'r>,
}

impl Scanner<'_> {
    /// Rules matching `data`.
    pub fn scan(&mut self, data: &[u8]) -> Result<Vec<Hit>, YaraError> {
        let results = self
            .inner
            .scan(data)
            .map_err(|e| YaraError::Scan(e.to_string()))?;
        Ok(results
            .matching_rules()
            .map(|r| {
                let mut meta = serde_json::Map::new();
                for (k, v) in r.metadata() {
                    let v = match v {
                        yara_x::MetaValue::Integer(i) => json!(i),
                        yara_x::MetaValue::Float(f) => json!(f),
                        yara_x::MetaValue::Bool(b) => json!(b),
                        yara_x::MetaValue::String(s) => json!(s),
                        yara_x::MetaValue::Bytes(b) => json!(String::from_utf8_lossy(b)),
                    };
                    meta.insert(k.to_owned(), v);
                }
                Hit {
                    rule: r.identifier().to_owned(),
                    namespace: r.namespace().to_owned(),
                    tags: r.tags().map(|t| t.identifier().to_owned()).collect(),
                    meta: Value::Object(meta),
                    patterns: r
                        .patterns()
                        .filter(|p| p.matches().next().is_some())
                        .map(|p| p.identifier().to_owned())
                        .collect(),
                }
            })
            .collect())
    }
}

/// Why a target was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The program of a process start.
    Exec,
    /// The script an interpreter was started with.
    Script,
    /// A file created or changed with an execute bit.
    FileEvent,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::Script => "script",
            Self::FileEvent => "file_event",
        }
    }
}

/// A file to scan and the event that named it.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: Reason,
    /// SHA-256 already known from the event (process starts carry it).
    pub sha256: Option<String>,
    /// The process, for process starts (its `/proc/PID/exe` is read when the path is gone).
    pub pid: Option<u32>,
    /// `process.*`, `user.*` and `organization.*` fields of the event, copied to an alert.
    pub context: Vec<(String, Value)>,
}

const CONTEXT_FIELDS: &[&str] = &[
    "process.pid",
    "process.executable",
    "process.name",
    "process.command_line",
    "process.working_directory",
    "process.parent.pid",
    "process.parent.executable",
    "user.id",
    "user.name",
];

/// What `ev` asks to scan (nothing for most events).
pub fn targets(ev: &Event, cfg: &YaraConfig) -> Vec<Target> {
    let mut out = Vec::new();
    if ev.get_str("event.module") != Some("canh_agent") {
        return out;
    }
    let context = || {
        CONTEXT_FIELDS
            .iter()
            .filter_map(|f| ev.get(f).map(|v| ((*f).to_owned(), v.clone())))
            .collect::<Vec<_>>()
    };
    match (ev.get_str("event.dataset"), ev.get_str("event.action")) {
        (Some("process"), Some("exec")) => {
            let Some(exe) = ev.get_str("process.executable") else {
                return out;
            };
            let pid = ev
                .get("process.pid")
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok());
            out.push(Target {
                path: PathBuf::from(exe),
                reason: Reason::Exec,
                sha256: ev.get_str("process.hash.sha256").map(str::to_owned),
                pid,
                context: context(),
            });
            if let Some(script) = script_argument(ev, cfg) {
                out.push(Target {
                    path: script,
                    reason: Reason::Script,
                    sha256: None,
                    pid: None,
                    context: context(),
                });
            }
        }
        (Some("file"), Some("created" | "modified")) if cfg.scan_file_events => {
            let executable = ev
                .get_str("file.mode")
                .and_then(|m| u32::from_str_radix(m, 8).ok())
                .is_some_and(|m| m & 0o111 != 0);
            if let (true, Some(path)) = (executable, ev.get_str("file.path")) {
                out.push(Target {
                    path: PathBuf::from(path),
                    reason: Reason::FileEvent,
                    sha256: ev.get_str("file.hash.sha256").map(str::to_owned),
                    pid: None,
                    context: Vec::new(),
                });
            }
        }
        _ => {}
    }
    out
}

/// The script of `sh x.sh` / `python3 -u x.py`: the first argument after options that is
/// not an option's value, resolved against the working directory.
fn script_argument(ev: &Event, cfg: &YaraConfig) -> Option<PathBuf> {
    let name = ev.get_str("process.name")?;
    // `python3.11` is `python3`.
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    if !cfg
        .interpreters
        .iter()
        .any(|i| i == name || i.as_str() == base)
    {
        return None;
    }
    let args = ev.get("process.args")?.as_array()?;
    let mut iter = args.iter().skip(1).filter_map(Value::as_str);
    let first = loop {
        let a = iter.next()?;
        // `-c CODE` / `-e CODE` / `-m MODULE`: no script file.
        if matches!(a, "-c" | "-e" | "-m" | "-E" | "--eval") {
            return None;
        }
        if a == "--" {
            break iter.next()?;
        }
        if !a.starts_with('-') {
            break a;
        }
    };
    let p = Path::new(first);
    if p.is_absolute() {
        Some(p.to_path_buf())
    } else {
        let cwd = ev.get_str("process.working_directory")?;
        Some(Path::new(cwd).join(p))
    }
}

/// Counters of scans made and not made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Files scanned.
    pub scanned: u64,
    /// Targets whose content had been scanned before.
    pub cached: u64,
    /// Rule matches reported.
    pub matched: u64,
    /// Not scanned: the queue was full.
    pub skipped_queue_full: u64,
    /// Not scanned: larger than `max_file_bytes`.
    pub skipped_too_large: u64,
    /// Not scanned: the file could not be read (gone, permissions, not a regular file).
    pub skipped_unreadable: u64,
    /// Not scanned to the end: the scan timed out or failed.
    pub skipped_scan_error: u64,
}

impl ScanStats {
    fn skipped(&self) -> u64 {
        self.skipped_queue_full
            + self.skipped_too_large
            + self.skipped_unreadable
            + self.skipped_scan_error
    }
}

/// What became of one target.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Scanned; the alert event when a rule matched.
    Scanned(Option<Box<Event>>),
    /// The same content was scanned before.
    Cached,
    /// Not scanned, and why.
    Skipped(&'static str),
}

type StatKey = (u64, u64, u64, i64, i64);

/// Scans targets once per content; owns the caches and counters of one scanning thread.
pub struct Engine<'r> {
    scanner: Scanner<'r>,
    host: String,
    max_file_bytes: u64,
    /// (dev, inode, size, mtime, ctime) → SHA-256, so an unchanged file is not read again.
    by_stat: HashMap<StatKey, String>,
    /// Contents already scanned.
    seen: HashSet<String>,
    /// Counters.
    pub stats: ScanStats,
}

const CACHE_ENTRIES: usize = 100_000;

impl<'r> Engine<'r> {
    /// An engine scanning with `rules`, naming `host` in its events.
    pub fn new(rules: &'r RuleSet, cfg: &YaraConfig, host: &str) -> Self {
        Self {
            scanner: rules.scanner(Duration::from_secs(cfg.timeout_secs.max(1))),
            host: host.to_owned(),
            max_file_bytes: cfg.max_file_bytes,
            by_stat: HashMap::new(),
            seen: HashSet::new(),
            stats: ScanStats::default(),
        }
    }

    fn remember(&mut self, sha256: &str) {
        if self.seen.len() >= CACHE_ENTRIES {
            self.seen.clear();
        }
        self.seen.insert(sha256.to_owned());
    }

    /// Scans `t` unless its content was scanned before.
    pub fn process(&mut self, t: &Target) -> Outcome {
        if t.sha256.as_ref().is_some_and(|h| self.seen.contains(h)) {
            self.stats.cached += 1;
            return Outcome::Cached;
        }
        let mut file = match std::fs::File::open(&t.path) {
            Ok(f) => f,
            // A program deleted after it started is still readable through its process.
            Err(_) => match t
                .pid
                .and_then(|pid| std::fs::File::open(format!("/proc/{pid}/exe")).ok())
            {
                Some(f) => f,
                None => {
                    self.stats.skipped_unreadable += 1;
                    return Outcome::Skipped("unreadable");
                }
            },
        };
        let meta = match file.metadata() {
            Ok(m) if m.is_file() => m,
            _ => {
                self.stats.skipped_unreadable += 1;
                return Outcome::Skipped("unreadable");
            }
        };
        let key = (
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
            meta.ctime_nsec() + meta.ctime() * 1_000_000_000,
        );
        if let Some(h) = self.by_stat.get(&key)
            && self.seen.contains(h)
        {
            self.stats.cached += 1;
            return Outcome::Cached;
        }
        if meta.size() > self.max_file_bytes {
            self.stats.skipped_too_large += 1;
            return Outcome::Skipped("too_large");
        }
        let mut data = Vec::with_capacity(usize::try_from(meta.size()).unwrap_or(0));
        if (&mut file)
            .take(self.max_file_bytes + 1)
            .read_to_end(&mut data)
            .is_err()
        {
            self.stats.skipped_unreadable += 1;
            return Outcome::Skipped("unreadable");
        }
        if data.len() as u64 > self.max_file_bytes {
            self.stats.skipped_too_large += 1;
            return Outcome::Skipped("too_large");
        }
        let sha256 = hex::encode(sha2::Sha256::digest(&data));
        if self.by_stat.len() >= CACHE_ENTRIES {
            self.by_stat.clear();
        }
        self.by_stat.insert(key, sha256.clone());
        if self.seen.contains(&sha256) {
            self.stats.cached += 1;
            return Outcome::Cached;
        }
        let hits = match self.scanner.scan(&data) {
            Ok(h) => h,
            Err(e) => {
                warn!(path = %t.path.display(), error = %e, "YARA scan not completed");
                self.stats.skipped_scan_error += 1;
                // Not remembered: a later start of the same program is tried again.
                return Outcome::Skipped("scan_error");
            }
        };
        self.stats.scanned += 1;
        self.remember(&sha256);
        if hits.is_empty() {
            return Outcome::Scanned(None);
        }
        self.stats.matched += hits.len() as u64;
        Outcome::Scanned(Some(Box::new(self.alert(t, &sha256, data.len(), &hits))))
    }

    fn alert(&self, t: &Target, sha256: &str, size: usize, hits: &[Hit]) -> Event {
        let mut ev = base_event(&self.host, "yara", "malware", "info");
        ev.set("event.kind", "alert");
        ev.set("event.category", json!(["malware", "file"]));
        ev.set("event.action", "yara_match");
        ev.set("event.reason", t.reason.as_str());
        let path = t.path.to_string_lossy().into_owned();
        ev.set(
            "file.name",
            t.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        ev.set("file.path", path.as_str());
        ev.set("file.size", size as u64);
        ev.set("file.hash.sha256", sha256);
        for (k, v) in &t.context {
            ev.set(k, v.clone());
        }
        let first = &hits[0];
        ev.set("rule.name", first.rule.as_str());
        ev.set("rule.ruleset", first.namespace.as_str());
        let mut tags: Vec<&str> = hits
            .iter()
            .flat_map(|h| h.tags.iter().map(String::as_str))
            .collect();
        tags.sort_unstable();
        tags.dedup();
        if !tags.is_empty() {
            ev.set("tags", json!(tags));
        }
        ev.set(
            "canh.yara.matches",
            Value::Array(
                hits.iter()
                    .map(|h| {
                        json!({
                            "rule": h.rule, "namespace": h.namespace, "tags": h.tags,
                            "meta": h.meta, "patterns": h.patterns,
                        })
                    })
                    .collect(),
            ),
        );
        let names: Vec<&str> = hits.iter().map(|h| h.rule.as_str()).collect();
        ev.set(
            "message",
            format!("YARA: {} matched {}", names.join(", "), path),
        );
        ev
    }

    /// The `yara_scans_skipped` event for the counters since `since`, if any scan was skipped.
    pub fn skipped_event(&self, since: &ScanStats) -> Option<Event> {
        let now = &self.stats;
        if now.skipped() == since.skipped() {
            return None;
        }
        let mut ev = base_event(&self.host, "yara", "malware", "info");
        ev.set("event.action", "yara_scans_skipped");
        ev.set("event.outcome", "failure");
        let d = |a: u64, b: u64| a.saturating_sub(b);
        ev.set(
            "canh.yara.skipped",
            json!({
                "queue_full": d(now.skipped_queue_full, since.skipped_queue_full),
                "too_large": d(now.skipped_too_large, since.skipped_too_large),
                "unreadable": d(now.skipped_unreadable, since.skipped_unreadable),
                "scan_error": d(now.skipped_scan_error, since.skipped_scan_error),
            }),
        );
        ev.set(
            "message",
            format!(
                "{} file(s) not scanned by YARA",
                d(now.skipped(), since.skipped())
            ),
        );
        Some(ev)
    }
}

/// How often skipped scans are reported.
pub const SKIP_REPORT_EVERY: Duration = Duration::from_secs(60);

/// Starts the scanning thread and returns the `emit` that sensors should use instead of
/// `emit`: it passes every batch on and queues the batch's targets.
pub fn start(
    rules: RuleSet,
    cfg: YaraConfig,
    host: String,
    emit: Emit,
    stop: Arc<AtomicBool>,
) -> (Emit, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Target>(cfg.queue.max(1));
    let queue_full = Arc::new(AtomicU64::new(0));
    let tap: Emit = {
        let (emit, cfg, queue_full) = (emit.clone(), cfg.clone(), queue_full.clone());
        Arc::new(move |events: Vec<Event>| {
            for ev in &events {
                for t in targets(ev, &cfg) {
                    enqueue(&tx, t, &queue_full);
                }
            }
            emit(events);
        })
    };
    let handle = std::thread::spawn(move || {
        let stats = run(rules, cfg, host, emit, rx, queue_full, stop);
        info!(?stats, "YARA scanning stopped");
    });
    (tap, handle)
}

fn enqueue(tx: &SyncSender<Target>, t: Target, queue_full: &AtomicU64) {
    match tx.try_send(t) {
        Ok(()) | Err(TrySendError::Disconnected(_)) => {}
        Err(TrySendError::Full(_)) => {
            queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn run(
    rules: RuleSet,
    cfg: YaraConfig,
    host: String,
    emit: Emit,
    rx: Receiver<Target>,
    queue_full: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> ScanStats {
    let mut engine = Engine::new(&rules, &cfg, &host);
    info!(
        rules = rules.len(),
        files = rules.files.len(),
        "YARA scanning of new executables on"
    );
    let mut reported = ScanStats::default();
    let mut last_report = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(t) => {
                if let Outcome::Scanned(Some(alert)) = engine.process(&t) {
                    emit(vec![*alert]);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        engine.stats.skipped_queue_full = queue_full.load(Ordering::Relaxed);
        if last_report.elapsed() >= SKIP_REPORT_EVERY {
            if let Some(ev) = engine.skipped_event(&reported) {
                emit(vec![ev]);
            }
            reported = engine.stats.clone();
            last_report = Instant::now();
        }
    }
    engine.stats.skipped_queue_full = queue_full.load(Ordering::Relaxed);
    if let Some(ev) = engine.skipped_event(&reported) {
        emit(vec![ev]);
    }
    engine.stats
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKER: &str = "CANH-YARA-UNIT-MARKER-31c4";

    fn rules() -> RuleSet {
        RuleSet::from_source(&format!(
            r#"
            rule unit_marker : dropper linux {{
              meta:
                author = "canh tests"
                score = 80
              strings:
                $m = "{MARKER}"
              condition:
                $m
            }}"#
        ))
        .unwrap()
    }

    fn exec_event(exe: &Path, sha256: Option<&str>) -> Event {
        let mut ev = base_event("h1", "process", "process", "start");
        ev.set("event.action", "exec");
        ev.set("process.executable", exe.to_string_lossy().into_owned());
        ev.set("process.pid", 4242u32);
        ev.set("process.name", "dropper");
        ev.set("user.name", "www-data");
        ev.set_opt("process.hash.sha256", sha256);
        ev
    }

    #[test]
    fn a_rule_directory_compiles_good_files_and_reports_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let rule =
            |name: &str| format!("rule same_name {{ strings: $a = \"{name}\" condition: $a }}");
        std::fs::write(dir.path().join("a.yar"), rule("aaa")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        // The same rule name in another file is another namespace.
        std::fs::write(dir.path().join("sub/b.YARA"), rule("bbb")).unwrap();
        std::fs::write(
            dir.path().join("broken.yar"),
            "rule broken { condition: $nope }",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pe.yar"),
            "import \"pe\" rule p { condition: pe.is_dll() }",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a rule").unwrap();
        let set = RuleSet::load(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.files.len(), 2);
        let rejected: Vec<String> = set
            .rejected
            .iter()
            .map(|r| r.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(rejected, ["broken.yar", "pe.yar"]);
        assert!(
            set.rejected[0].message.contains("broken.yar"),
            "{}",
            set.rejected[0].message
        );
        let mut sc = set.scanner(Duration::from_secs(5));
        let hits = sc.scan(b"xx bbb yy").unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].rule, "same_name");
        assert!(hits[0].namespace.starts_with("b_"), "{}", hits[0].namespace);

        std::fs::remove_file(dir.path().join("a.yar")).unwrap();
        std::fs::remove_dir_all(dir.path().join("sub")).unwrap();
        let err = RuleSet::load(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(
            matches!(&err, YaraError::NoRules { rejected } if rejected.len() == 2),
            "{err}"
        );
        let missing = RuleSet::load(&[dir.path().join("nope")]).unwrap_err();
        assert!(matches!(missing, YaraError::Read { .. }));
    }

    #[test]
    fn a_matching_executable_alerts_once_per_content() {
        let set = rules();
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("dropper");
        std::fs::write(&bad, format!("\x7fELF....{MARKER}....")).unwrap();
        let clean = dir.path().join("clean");
        std::fs::write(&clean, "\x7fELF nothing here").unwrap();
        let cfg = YaraConfig::default();
        let mut engine = Engine::new(&set, &cfg, "h1");

        let ts = targets(&exec_event(&bad, None), &cfg);
        assert_eq!(ts.len(), 1);
        let Outcome::Scanned(Some(alert)) = engine.process(&ts[0]) else {
            panic!("no alert");
        };
        let sha = hex::encode(sha2::Sha256::digest(std::fs::read(&bad).unwrap()));
        assert_eq!(alert.get_str("event.kind"), Some("alert"));
        assert_eq!(alert.get_str("event.action"), Some("yara_match"));
        assert_eq!(alert.get_str("event.dataset"), Some("yara"));
        assert_eq!(alert.get_str("event.reason"), Some("exec"));
        assert_eq!(alert.get_str("rule.name"), Some("unit_marker"));
        assert_eq!(alert.get_str("file.hash.sha256"), Some(sha.as_str()));
        assert_eq!(alert.get_str("file.path"), bad.to_str());
        assert_eq!(alert.get_str("file.name"), Some("dropper"));
        assert_eq!(alert.get("process.pid"), Some(&json!(4242)));
        assert_eq!(alert.get_str("user.name"), Some("www-data"));
        assert_eq!(alert.get("tags"), Some(&json!(["dropper", "linux"])));
        let m = &alert.get("canh.yara.matches").unwrap()[0];
        assert_eq!(m["meta"], json!({"author": "canh tests", "score": 80}));
        assert_eq!(m["patterns"], json!(["$m"]));

        // The same content again, by path or by the hash the exec event carries: no scan.
        assert_eq!(engine.process(&ts[0]), Outcome::Cached);
        let by_hash = targets(&exec_event(Path::new("/nonexistent"), Some(&sha)), &cfg);
        assert_eq!(engine.process(&by_hash[0]), Outcome::Cached);
        // A copy elsewhere has the same content: no second alert.
        let copy = dir.path().join("copy");
        std::fs::copy(&bad, &copy).unwrap();
        assert_eq!(
            engine.process(&targets(&exec_event(&copy, None), &cfg)[0]),
            Outcome::Cached
        );
        assert_eq!(
            engine.process(&targets(&exec_event(&clean, None), &cfg)[0]),
            Outcome::Scanned(None)
        );
        assert_eq!(engine.stats.scanned, 2);
        assert_eq!(engine.stats.matched, 1);
        assert_eq!(engine.stats.cached, 3);
        assert_eq!(engine.skipped_event(&ScanStats::default()), None);
    }

    #[test]
    fn files_that_cannot_be_scanned_are_counted_and_reported() {
        let set = rules();
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'A'; 2048]).unwrap();
        let cfg = YaraConfig {
            max_file_bytes: 1024,
            ..YaraConfig::default()
        };
        let mut engine = Engine::new(&set, &cfg, "h1");
        let t = |p: &Path| targets(&exec_event(p, None), &cfg).remove(0);
        assert_eq!(engine.process(&t(&big)), Outcome::Skipped("too_large"));
        assert_eq!(
            engine.process(&t(&dir.path().join("gone"))),
            Outcome::Skipped("unreadable")
        );
        assert_eq!(
            engine.process(&t(dir.path())),
            Outcome::Skipped("unreadable")
        );
        let ev = engine.skipped_event(&ScanStats::default()).unwrap();
        assert_eq!(ev.get_str("event.action"), Some("yara_scans_skipped"));
        assert_eq!(
            ev.get("canh.yara.skipped"),
            Some(&json!({"queue_full": 0, "too_large": 1, "unreadable": 2, "scan_error": 0}))
        );
        assert_eq!(engine.skipped_event(&engine.stats.clone()), None);
    }

    #[test]
    fn targets_are_programs_scripts_and_new_executable_files() {
        let cfg = YaraConfig::default();
        let mut ev = exec_event(Path::new("/usr/bin/bash"), None);
        ev.set("process.name", "bash");
        ev.set("process.working_directory", "/home/u");
        ev.set("process.args", json!(["bash", "-x", "./run.sh", "arg"]));
        let ts = targets(&ev, &cfg);
        assert_eq!(ts.len(), 2);
        assert_eq!(ts[1].path, Path::new("/home/u/./run.sh"));
        assert_eq!(ts[1].reason, Reason::Script);
        ev.set("process.args", json!(["bash", "-c", "echo hi"]));
        assert_eq!(targets(&ev, &cfg).len(), 1);
        ev.set("process.name", "python3.11");
        ev.set("process.args", json!(["python3.11", "/opt/x.py"]));
        assert_eq!(targets(&ev, &cfg)[1].path, Path::new("/opt/x.py"));
        ev.set("process.name", "ls");
        ev.set("process.args", json!(["ls", "/opt/x.py"]));
        assert_eq!(targets(&ev, &cfg).len(), 1);

        let mut file = base_event("h1", "file", "file", "creation");
        file.set("event.action", "created");
        file.set("file.path", "/usr/local/bin/new");
        file.set("file.mode", "100755");
        assert_eq!(targets(&file, &cfg)[0].reason, Reason::FileEvent);
        file.set("file.mode", "100644");
        assert!(targets(&file, &cfg).is_empty());
        let off = YaraConfig {
            scan_file_events: false,
            ..YaraConfig::default()
        };
        file.set("file.mode", "100755");
        assert!(targets(&file, &off).is_empty());

        // Events from elsewhere (a shipped log) are not the agent's to scan.
        let mut foreign = exec_event(Path::new("/bin/sh"), None);
        foreign.set("event.module", "auditd");
        assert!(targets(&foreign, &cfg).is_empty());
    }
}
