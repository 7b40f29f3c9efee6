//! Rules as data: a catalogue of the live detection rules with their state and history.
//!
//! Every rule document (one per rule id) has a state kept in `<data-dir>/state/rules.json`
//! (written atomically): enabled or not (default: enabled), an agency scope (the
//! `organization.id` values it applies to; empty = every agency) and its versions (each text
//! kept with its SHA-256) with a history of every change (who, when, what, the value before).
//! Rules come from the configured rules directory (one entry per document; a file that changes
//! on disk adds a version at start) and from the API (`PUT /api/v1/rules/{id}`).
//!
//! A change takes effect at once: the rules are compiled off the async threads and the live
//! engine is swapped in one step ([`LiveRules`]); ingest keeps using the previous engine until
//! the swap and never waits for a compilation. `POST /api/v1/rules/test` runs a rule (stored or
//! posted) with the real engine over the stored events of a time range.

use crate::api::Reader;
use crate::http::AppState;
use crate::ingest_http::api_error;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use canh_core::{Event, fields};
use canh_detect::{Engine, LoadOptions, Match, RuleSet, RuleStatus};
use canh_store::{Cursor, SearchRequest, Store};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tracing::{info, warn};

/// Errors of the rule catalogue.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// No rule has this id.
    #[error("no rule {0}")]
    NotFound(String),
    /// The rule text is refused (with the checker's reason).
    #[error("{0}")]
    Invalid(String),
    /// The state file could not be written.
    #[error("rule state not saved: {0}")]
    Io(#[from] std::io::Error),
    /// The state could not be serialised.
    #[error("rule state not serialisable: {0}")]
    Json(#[from] serde_json::Error),
    /// A compilation task failed.
    #[error("rule compilation failed: {0}")]
    Task(String),
}

/// One version of a rule's text.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Version {
    /// 1, 2, …
    pub version: u32,
    /// SHA-256 of the text, hex.
    pub sha256: String,
    /// `file` (rules directory) or `api`.
    pub origin: String,
    /// When it was added.
    pub at: DateTime<Utc>,
    /// Who added it.
    pub by: String,
    /// The YAML text.
    pub text: String,
}

/// One change of a rule's state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Change {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub by: String,
    /// `create`, `update`, `file_update`, `rollback`, `enable`, `disable` or `scope`.
    pub action: String,
    /// The value before (version, enabled flag or scope).
    pub before: Value,
    /// The value after.
    pub after: Value,
}

/// The saved state of one rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Agencies (`organization.id`) it applies to; empty = all.
    #[serde(default)]
    pub scope: Vec<String>,
    /// The version in use.
    pub version: u32,
    /// The file it was read from, when it came from the rules directory.
    #[serde(default)]
    pub source: Option<String>,
    /// The file no longer holds the rule (a rule whose text in use came from the file then
    /// stops running).
    #[serde(default)]
    pub source_missing: bool,
    /// Every version, oldest first.
    pub versions: Vec<Version>,
    /// Every change, oldest first.
    pub history: Vec<Change>,
}

impl Entry {
    /// The text in use.
    pub fn current(&self) -> Option<&Version> {
        self.versions.iter().find(|v| v.version == self.version)
    }

    fn runs(&self) -> bool {
        self.enabled && !(self.source_missing && self.current().is_some_and(|v| v.origin == "file"))
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Saved {
    rules: BTreeMap<String, Entry>,
}

/// What a rule is, read from its text (not saved).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Described {
    /// `detection`, `correlation` or `filter`.
    pub kind: String,
    /// Title.
    pub title: String,
    /// Sigma level.
    pub level: Option<String>,
    /// Sigma status (stable, test, experimental…).
    pub status: Option<String>,
    /// `ok`, `warning`, `unsupported`, `invalid` (the checker's verdict) or `disabled`.
    pub check: String,
    /// The checker's reason, when not ok.
    pub reason: Option<String>,
}

/// A rule as listed by the API.
#[derive(Clone, Debug, Serialize)]
pub struct RuleSummary {
    /// Rule id.
    pub id: String,
    /// What the text says.
    #[serde(flatten)]
    pub described: Described,
    /// Whether it runs.
    pub enabled: bool,
    /// Agencies it applies to; empty = all.
    pub scope: Vec<String>,
    /// The version in use.
    pub version: u32,
    /// Number of versions.
    pub versions: usize,
    /// The file it came from.
    pub source: Option<String>,
    /// The file no longer holds it.
    pub source_missing: bool,
}

/// The rules the live detector runs, with their scopes.
pub struct LiveSet {
    /// The engine.
    pub engine: Engine,
    scope: HashMap<String, Vec<String>>,
}

impl LiveSet {
    /// Whether a match of the rule `key` may alert on an event of agency `org`.
    pub fn allows(&self, key: &str, org: Option<&str>) -> bool {
        match self.scope.get(key) {
            None => true,
            Some(s) if s.is_empty() => true,
            Some(s) => org.is_some_and(|o| s.iter().any(|a| a == o)),
        }
    }
}

/// The key of a matched rule in the catalogue: its id, else `title:<title>`.
pub fn match_key(m: &Match) -> String {
    key_of(m.rule_id.as_deref(), &m.title)
}

/// The catalogue key of a rule with this id and title.
pub fn key_of(id: Option<&str>, title: &str) -> String {
    match id {
        Some(id) if !id.trim().is_empty() => id.trim().to_owned(),
        _ => format!("title:{title}"),
    }
}

/// The live rule set, swapped in one step.
pub struct LiveRules {
    current: RwLock<Arc<LiveSet>>,
}

impl LiveRules {
    /// The set in use now.
    pub fn current(&self) -> Arc<LiveSet> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn swap(&self, set: LiveSet) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }
}

/// The catalogue: saved state, the rules directory and the live set.
pub struct RuleCatalogue {
    path: PathBuf,
    opts: LoadOptions,
    saved: tokio::sync::Mutex<Saved>,
    /// The checker's verdict of each rule of the last compilation.
    checks: RwLock<HashMap<String, RuleStatus>>,
    live: Arc<LiveRules>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

fn sha256(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        if p.is_dir() {
            collect_files(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(p);
        }
    }
    Ok(())
}

/// The catalogue key of one rule document: its id, else its title, else its place in a file.
fn doc_key(text: &str, place: &str) -> String {
    match canh_detect::describe(text) {
        Ok((_, meta)) => key_of(meta.id.as_deref(), &meta.title),
        Err(_) => format!("file:{place}"),
    }
}

fn describe(text: &str, check: Option<&RuleStatus>, runs: bool) -> Described {
    let (kind, title, level, status) = match canh_detect::describe(text) {
        Ok((kind, meta)) => (kind.to_owned(), meta.title, meta.level, meta.status),
        Err(_) => ("detection".into(), String::new(), None, None),
    };
    let (check, reason) = match (runs, check) {
        (false, _) => ("disabled".to_owned(), None),
        (true, Some(RuleStatus::Ok)) => ("ok".to_owned(), None),
        (true, Some(RuleStatus::Warning(w))) => ("warning".to_owned(), Some(w.join("; "))),
        (true, Some(RuleStatus::Unsupported(m))) => ("unsupported".to_owned(), Some(m.clone())),
        (true, Some(RuleStatus::Invalid(m))) => ("invalid".to_owned(), Some(m.clone())),
        (true, None) => match canh_detect::describe(text) {
            Ok(_) => ("ok".to_owned(), None),
            Err(e) => ("invalid".to_owned(), Some(e.to_string())),
        },
    };
    Described {
        kind,
        title,
        level,
        status,
        check,
        reason,
    }
}

/// Compiles the rules of `saved` that run; returns the set and each rule's verdict by key.
fn compile(saved: &Saved, opts: &LoadOptions) -> (RuleSet, HashMap<String, RuleStatus>) {
    let texts: Vec<(Option<PathBuf>, String)> = saved
        .rules
        .values()
        .filter(|e| e.runs())
        .filter_map(|e| {
            let v = e.current()?;
            let path = e
                .source
                .as_ref()
                .filter(|_| v.origin == "file")
                .map(PathBuf::from);
            Some((path, v.text.clone()))
        })
        .collect();
    let (set, reports) = RuleSet::from_texts(texts, opts);
    let checks = reports
        .into_iter()
        .filter(|r| r.title.is_some() || r.id.is_some())
        .map(|r| {
            (
                key_of(r.id.as_deref(), r.title.as_deref().unwrap_or("")),
                r.status,
            )
        })
        .collect();
    (set, checks)
}

fn scopes(saved: &Saved) -> HashMap<String, Vec<String>> {
    saved
        .rules
        .iter()
        .filter(|(_, e)| !e.scope.is_empty())
        .map(|(k, e)| (k.clone(), e.scope.clone()))
        .collect()
}

/// Adds the documents of the rules directory to `saved`: new ones, changed ones (a new
/// version) and ones no longer there (marked).
fn sync_dir(saved: &mut Saved, dir: &Path, now: DateTime<Utc>) {
    let mut files = Vec::new();
    if let Err(e) = collect_files(dir, &mut files) {
        warn!(error = %e, dir = %dir.display(), "rules directory not readable");
    }
    files.sort();
    let mut seen = std::collections::HashSet::new();
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, file = %f.display(), "rule file skipped");
                continue;
            }
        };
        let source = f.display().to_string();
        for (n, doc) in canh_detect::split_documents(&text).into_iter().enumerate() {
            let mut key = doc_key(&doc, &format!("{source}#{n}"));
            if seen.contains(&key) {
                warn!(rule = %key, file = %source, "a second rule with the same id is kept apart");
                key = format!("{key}#{source}#{n}");
            }
            seen.insert(key.clone());
            let hash = sha256(&doc);
            let by = "rules_dir".to_owned();
            match saved.rules.get_mut(&key) {
                None => {
                    saved.rules.insert(
                        key,
                        Entry {
                            enabled: true,
                            scope: Vec::new(),
                            version: 1,
                            source: Some(source.clone()),
                            source_missing: false,
                            versions: vec![Version {
                                version: 1,
                                sha256: hash,
                                origin: "file".into(),
                                at: now,
                                by: by.clone(),
                                text: doc,
                            }],
                            history: vec![Change {
                                at: now,
                                by,
                                action: "create".into(),
                                before: Value::Null,
                                after: json!({"version": 1}),
                            }],
                        },
                    );
                }
                Some(e) => {
                    e.source = Some(source.clone());
                    e.source_missing = false;
                    let last_file = e.versions.iter().rev().find(|v| v.origin == "file");
                    if last_file.is_some_and(|v| v.sha256 == hash) {
                        continue;
                    }
                    let version = e.versions.last().map_or(1, |v| v.version + 1);
                    e.history.push(Change {
                        at: now,
                        by: by.clone(),
                        action: "file_update".into(),
                        before: json!({"version": e.version}),
                        after: json!({"version": version}),
                    });
                    e.versions.push(Version {
                        version,
                        sha256: hash,
                        origin: "file".into(),
                        at: now,
                        by,
                        text: doc,
                    });
                    e.version = version;
                }
            }
        }
    }
    for (k, e) in &mut saved.rules {
        if e.source.is_some() && !seen.contains(k) && !e.source_missing {
            e.source_missing = true;
            e.history.push(Change {
                at: now,
                by: "rules_dir".into(),
                action: "file_removed".into(),
                before: json!({"source": e.source}),
                after: Value::Null,
            });
        }
    }
}

fn read_saved(path: &Path) -> Saved {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(e) => {
                let aside = path.with_extension(format!("json.bad-{}", Utc::now().timestamp()));
                warn!(error = %e, kept = %aside.display(), "rule state unreadable; starting from the rules directory");
                let _ = std::fs::rename(path, &aside);
                Saved::default()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
        Err(e) => {
            warn!(error = %e, path = %path.display(), "rule state not readable; starting from the rules directory");
            Saved::default()
        }
    }
}

fn write_saved(path: &Path, saved: &Saved) -> Result<(), RulesError> {
    let text = serde_json::to_vec(saved)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

impl RuleCatalogue {
    /// Reads the saved state in `<data_dir>/state/rules.json`, adds the documents of
    /// `rules_dir` and compiles the rules that run. Blocking (compiles the rules).
    pub fn open(
        rules_dir: Option<&Path>,
        data_dir: &Path,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> RuleCatalogue {
        let path = data_dir.join("state").join("rules.json");
        let mut saved = read_saved(&path);
        if let Some(dir) = rules_dir {
            sync_dir(&mut saved, dir, Utc::now());
        }
        if let Err(e) = write_saved(&path, &saved) {
            warn!(error = %e, "rule state not saved");
        }
        let opts = LoadOptions::default();
        let (set, checks) = compile(&saved, &opts);
        let refused = checks.values().filter(|s| !s.is_loaded()).count();
        info!(
            rules = set.len(),
            correlations = set.correlations().len(),
            refused,
            "detection rules loaded"
        );
        if let Some(m) = &metrics {
            m.set("canh_detect_rules_loaded", &[], set.len() as f64);
        }
        let live = LiveSet {
            engine: Engine::new(set),
            scope: scopes(&saved),
        };
        RuleCatalogue {
            path,
            opts,
            saved: tokio::sync::Mutex::new(saved),
            checks: RwLock::new(checks),
            live: Arc::new(LiveRules {
                current: RwLock::new(Arc::new(live)),
            }),
            metrics,
        }
    }

    /// The live rule set (for the detector).
    pub fn live(&self) -> Arc<LiveRules> {
        Arc::clone(&self.live)
    }

    fn summary(&self, id: &str, e: &Entry) -> RuleSummary {
        let checks = self.checks.read().unwrap_or_else(|e| e.into_inner());
        let text = e.current().map_or("", |v| v.text.as_str());
        RuleSummary {
            id: id.to_owned(),
            described: describe(text, checks.get(id), e.runs()),
            enabled: e.enabled,
            scope: e.scope.clone(),
            version: e.version,
            versions: e.versions.len(),
            source: e.source.clone(),
            source_missing: e.source_missing,
        }
    }

    /// Every rule, by id.
    pub async fn list(&self) -> Vec<RuleSummary> {
        let saved = self.saved.lock().await;
        saved
            .rules
            .iter()
            .map(|(k, e)| self.summary(k, e))
            .collect()
    }

    /// One rule with its versions and history.
    pub async fn get(&self, id: &str) -> Option<(RuleSummary, Entry)> {
        let saved = self.saved.lock().await;
        saved
            .rules
            .get(id)
            .map(|e| (self.summary(id, e), e.clone()))
    }

    /// Applies `change` to a copy of the state, compiles it (off the async threads) when the
    /// rules that run change, saves it and swaps the live set.
    async fn apply(
        &self,
        recompile: bool,
        change: impl FnOnce(&mut Saved) -> Result<Option<String>, RulesError>,
    ) -> Result<(), RulesError> {
        let mut saved = self.saved.lock().await;
        let mut next = saved.clone();
        // The key whose text must pass the checker, when a text changed.
        let checked = change(&mut next)?;
        let live = self.live.current();
        let (engine, checks) = if recompile {
            let opts = self.opts.clone();
            let snapshot = next.clone();
            let (set, checks) = tokio::task::spawn_blocking(move || compile(&snapshot, &opts))
                .await
                .map_err(|e| RulesError::Task(e.to_string()))?;
            if let Some(key) = &checked {
                match checks.get(key) {
                    Some(s) if s.is_loaded() => {}
                    Some(RuleStatus::Unsupported(m)) => {
                        return Err(RulesError::Invalid(format!("unsupported: {m}")));
                    }
                    Some(RuleStatus::Invalid(m)) => return Err(RulesError::Invalid(m.clone())),
                    _ => {
                        return Err(RulesError::Invalid(
                            "the rule did not compile with the others".into(),
                        ));
                    }
                }
            }
            if let Some(m) = &self.metrics {
                m.set("canh_detect_rules_loaded", &[], set.len() as f64);
            }
            (live.engine.with_rules(set), Some(checks))
        } else {
            (live.engine.clone(), None)
        };
        let path = self.path.clone();
        let to_save = next.clone();
        tokio::task::spawn_blocking(move || write_saved(&path, &to_save))
            .await
            .map_err(|e| RulesError::Task(e.to_string()))??;
        self.live.swap(LiveSet {
            engine,
            scope: scopes(&next),
        });
        if let Some(c) = checks {
            *self.checks.write().unwrap_or_else(|e| e.into_inner()) = c;
        }
        *saved = next;
        Ok(())
    }

    /// Turns a rule on or off.
    pub async fn set_enabled(&self, id: &str, enabled: bool, by: &str) -> Result<(), RulesError> {
        let now = Utc::now();
        self.apply(true, |s| {
            let e = s
                .rules
                .get_mut(id)
                .ok_or_else(|| RulesError::NotFound(id.to_owned()))?;
            let before = e.enabled;
            e.enabled = enabled;
            e.history.push(Change {
                at: now,
                by: by.to_owned(),
                action: if enabled { "enable" } else { "disable" }.into(),
                before: json!({"enabled": before}),
                after: json!({"enabled": enabled}),
            });
            Ok(None)
        })
        .await?;
        info!(rule = %id, enabled, by, "rule state changed");
        Ok(())
    }

    /// Limits a rule to these agencies (`organization.id` values; empty = all).
    pub async fn set_scope(
        &self,
        id: &str,
        agencies: Vec<String>,
        by: &str,
    ) -> Result<(), RulesError> {
        let mut agencies: Vec<String> = agencies
            .into_iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        agencies.sort();
        agencies.dedup();
        let now = Utc::now();
        self.apply(false, |s| {
            let e = s
                .rules
                .get_mut(id)
                .ok_or_else(|| RulesError::NotFound(id.to_owned()))?;
            let before = std::mem::replace(&mut e.scope, agencies.clone());
            e.history.push(Change {
                at: now,
                by: by.to_owned(),
                action: "scope".into(),
                before: json!({"scope": before}),
                after: json!({"scope": agencies}),
            });
            Ok(None)
        })
        .await?;
        info!(rule = %id, by, "rule scope changed");
        Ok(())
    }

    /// Adds or replaces a rule's text: a new version, checked with the same checker as
    /// `canh rules check` (a refused text changes nothing). The text is one Sigma document
    /// whose `id` is `id`.
    pub async fn put_text(&self, id: &str, text: &str, by: &str) -> Result<u32, RulesError> {
        let docs = canh_detect::split_documents(text);
        if docs.len() != 1 {
            return Err(RulesError::Invalid(format!(
                "send exactly one Sigma document ({} found)",
                docs.len()
            )));
        }
        let (_, meta) =
            canh_detect::describe(text).map_err(|e| RulesError::Invalid(e.to_string()))?;
        let key = key_of(meta.id.as_deref(), &meta.title);
        if key != id {
            return Err(RulesError::Invalid(format!(
                "the rule's id is {key:?}, not {id:?}"
            )));
        }
        // A rule that does not run is not in the compiled set: check its text on its own.
        let runs = self
            .saved
            .lock()
            .await
            .rules
            .get(id)
            .is_none_or(Entry::runs);
        if !runs {
            let (opts, owned) = (self.opts.clone(), text.to_owned());
            let (_, reports) =
                tokio::task::spawn_blocking(move || RuleSet::from_yaml_str(&owned, &opts))
                    .await
                    .map_err(|e| RulesError::Task(e.to_string()))?;
            match reports.into_iter().next().map(|r| r.status) {
                Some(s) if s.is_loaded() => {}
                Some(RuleStatus::Unsupported(m)) => {
                    return Err(RulesError::Invalid(format!("unsupported: {m}")));
                }
                Some(RuleStatus::Invalid(m)) => return Err(RulesError::Invalid(m)),
                _ => return Err(RulesError::Invalid("no Sigma document".into())),
            }
        }
        let now = Utc::now();
        let hash = sha256(text);
        let mut out = 0;
        self.apply(true, |s| {
            let version = Version {
                version: 1,
                sha256: hash,
                origin: "api".into(),
                at: now,
                by: by.to_owned(),
                text: text.to_owned(),
            };
            match s.rules.get_mut(id) {
                None => {
                    out = 1;
                    s.rules.insert(
                        id.to_owned(),
                        Entry {
                            enabled: true,
                            scope: Vec::new(),
                            version: 1,
                            source: None,
                            source_missing: false,
                            versions: vec![version],
                            history: vec![Change {
                                at: now,
                                by: by.to_owned(),
                                action: "create".into(),
                                before: Value::Null,
                                after: json!({"version": 1}),
                            }],
                        },
                    );
                }
                Some(e) => {
                    let n = e.versions.last().map_or(1, |v| v.version + 1);
                    out = n;
                    e.history.push(Change {
                        at: now,
                        by: by.to_owned(),
                        action: "update".into(),
                        before: json!({"version": e.version}),
                        after: json!({"version": n}),
                    });
                    e.versions.push(Version {
                        version: n,
                        ..version
                    });
                    e.version = n;
                }
            }
            Ok(runs.then(|| id.to_owned()))
        })
        .await?;
        info!(rule = %id, version = out, by, "rule text changed");
        Ok(out)
    }

    /// Makes an earlier version the one in use (the text is checked again).
    pub async fn rollback(&self, id: &str, version: u32, by: &str) -> Result<(), RulesError> {
        let now = Utc::now();
        self.apply(true, |s| {
            let e = s
                .rules
                .get_mut(id)
                .ok_or_else(|| RulesError::NotFound(id.to_owned()))?;
            if !e.versions.iter().any(|v| v.version == version) {
                return Err(RulesError::Invalid(format!(
                    "rule {id} has no version {version}"
                )));
            }
            e.history.push(Change {
                at: now,
                by: by.to_owned(),
                action: "rollback".into(),
                before: json!({"version": e.version}),
                after: json!({"version": version}),
            });
            e.version = version;
            Ok(e.runs().then(|| id.to_owned()))
        })
        .await?;
        info!(rule = %id, version, by, "rule rolled back");
        Ok(())
    }

    /// The text in use of a rule.
    pub async fn text(&self, id: &str) -> Option<String> {
        let saved = self.saved.lock().await;
        saved
            .rules
            .get(id)
            .and_then(|e| e.current().map(|v| v.text.clone()))
    }
}

/// One event a rule matched while hunting over the store.
#[derive(Clone, Debug, Serialize)]
pub struct StoreHit {
    /// Rule id.
    pub rule_id: Option<String>,
    /// Rule title.
    pub rule_title: String,
    /// Rule level.
    pub rule_level: Option<String>,
    /// Rule tags.
    pub rule_tags: Vec<String>,
    /// The stored event's id.
    pub event_id: u64,
    /// The event.
    pub event: Event,
}

/// What a hunt over the store found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StoreHunt {
    /// Events read.
    pub scanned: u64,
    /// Matches (an event matched by two rules counts twice).
    pub count: u64,
    /// Matches by rule key.
    pub by_rule: BTreeMap<String, u64>,
    /// The first hits (newest first), at most the requested number.
    pub hits: Vec<StoreHit>,
}

/// Events read per store page.
const SCAN_PAGE: usize = 2_000;

/// Runs `engine` on every stored event of `[from, to)` that `query` selects (use an empty
/// query for all), newest first; keeps the first `keep` hits and calls `on_hit` for every
/// match, including those of rules that only feed correlations (`Match::generate` false, not
/// counted as hits).
///
/// The range is read in time windows, newest first, each paged through: a store page costs
/// as much as the matches of its whole range, so windows keep that range small. A window
/// widens while it holds few events and narrows when it holds many.
pub async fn hunt_store(
    store: &Store,
    engine: &Engine,
    query: canh_core::query::Expr,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    keep: usize,
    mut on_hit: impl FnMut(&Match, &canh_store::Hit),
) -> Result<StoreHunt, canh_store::StoreError> {
    let mut out = StoreHunt::default();
    let mut hi = to;
    let mut width = chrono::Duration::hours(1);
    let widest = chrono::Duration::days(366);
    while hi > from {
        let lo = hi.checked_sub_signed(width).map_or(from, |t| t.max(from));
        let mut cursor: Option<Cursor> = None;
        let in_window = loop {
            let page = store
                .search(SearchRequest {
                    query: query.clone(),
                    from: lo,
                    to: hi,
                    limit: SCAN_PAGE,
                    cursor,
                })
                .await?;
            for h in &page.hits {
                out.scanned += 1;
                for m in engine.matches(&h.event) {
                    if !m.generate {
                        on_hit(&m, h);
                        continue;
                    }
                    out.count += 1;
                    *out.by_rule.entry(match_key(&m)).or_default() += 1;
                    on_hit(&m, h);
                    if out.hits.len() < keep {
                        out.hits.push(StoreHit {
                            rule_id: m.rule_id.clone(),
                            rule_title: m.title.clone(),
                            rule_level: m.level.clone(),
                            rule_tags: m.tags.clone(),
                            event_id: h.id,
                            event: h.event.clone(),
                        });
                    }
                }
            }
            match page.next_cursor {
                Some(c) if !page.hits.is_empty() => cursor = Some(c),
                _ => break page.total,
            }
        };
        hi = lo;
        let pages = in_window / SCAN_PAGE as u64;
        if pages == 0 && width < widest {
            width = width * 4;
        } else if pages >= 4 && width > chrono::Duration::seconds(1) {
            width = width / 4;
        }
    }
    Ok(out)
}

/// Compiles rule texts for a test; refused documents are returned as errors.
pub fn compile_for_test(texts: &[String]) -> Result<(RuleSet, Vec<String>), String> {
    let sources = texts.iter().map(|t| (None, t.clone())).collect();
    let (set, reports) = RuleSet::from_texts(sources, &LoadOptions::default());
    let problems: Vec<String> = reports
        .iter()
        .filter(|r| !r.status.is_loaded())
        .map(|r| {
            let name = r.id.clone().or_else(|| r.title.clone()).unwrap_or_default();
            match &r.status {
                RuleStatus::Unsupported(m) => format!("{name}: unsupported: {m}"),
                RuleStatus::Invalid(m) => format!("{name}: {m}"),
                _ => String::new(),
            }
        })
        .collect();
    if set.is_empty() {
        let reason = if problems.is_empty() {
            "no detection rule in the text".to_owned()
        } else {
            problems.join("; ")
        };
        return Err(reason);
    }
    Ok((set, problems))
}

/// Routes of `/api/v1/rules`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/rules", get(list))
        .route("/api/v1/rules/test", post(test))
        .route("/api/v1/rules/{id}", get(get_rule).put(put_rule))
        .route("/api/v1/rules/{id}/enable", post(enable))
        .route("/api/v1/rules/{id}/disable", post(disable))
        .route("/api/v1/rules/{id}/scope", put(scope))
        .route("/api/v1/rules/{id}/rollback", post(rollback))
}

/// Who changes rules: the local command line, or an administrator or SOC lead.
pub struct Editor {
    /// Name recorded in the rule history.
    pub name: String,
    /// Who the audit log names.
    pub actor: canh_soar::Actor,
}

/// The state of a rule the audit log keeps before and after a change.
pub async fn audit_state(cat: &RuleCatalogue, id: &str) -> Option<serde_json::Value> {
    cat.get(id)
        .await
        .map(|(s, _)| json!({ "enabled": s.enabled, "scope": s.scope, "version": s.version }))
}

/// Writes a rule change into the audit chain (a failure is logged: the change is made).
pub async fn audit_change(
    st: &AppState,
    actor: &canh_soar::Actor,
    action: &str,
    id: &str,
    before: Option<serde_json::Value>,
) {
    let Some(cat) = st.rules.as_ref() else { return };
    let after = audit_state(cat, id).await;
    if let Err(e) = st
        .soar
        .soar
        .record_audit(actor, action, "detection_rule", id, before, after)
        .await
    {
        warn!(error = %e, rule = %id, action, "rule change not written to the audit log");
    }
}

impl axum::extract::FromRequestParts<Arc<AppState>> for Editor {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if let Some(t) = bearer
            && t.len() == st.local_token.len()
            && t.bytes()
                .zip(st.local_token.bytes())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
        {
            return Ok(Editor {
                name: "local command line".into(),
                actor: canh_soar::Actor {
                    user_id: None,
                    name: "local command line".into(),
                    source: "cli".into(),
                },
            });
        }
        let user = crate::soar::auth::AuthUser::from_request_parts(parts, st)
            .await
            .map_err(IntoResponse::into_response)?;
        user.require_admin().map_err(IntoResponse::into_response)?;
        Ok(Editor {
            actor: user.actor(),
            name: user.user.name,
        })
    }
}

fn detection_off() -> Response {
    api_error(
        StatusCode::CONFLICT,
        "detection_off",
        "live detection is off (set detect.rules_dir)",
    )
}

fn rules_error(e: &RulesError) -> Response {
    match e {
        RulesError::NotFound(_) => api_error(StatusCode::NOT_FOUND, "not_found", &e.to_string()),
        RulesError::Invalid(m) => api_error(StatusCode::BAD_REQUEST, "invalid_rule", m),
        _ => {
            warn!(error = %e, "rule change failed");
            api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            )
        }
    }
}

async fn list(State(st): State<Arc<AppState>>, _reader: Reader) -> Response {
    let Some(cat) = st.rules.as_ref() else {
        return detection_off();
    };
    axum::Json(json!({ "rules": cat.list().await })).into_response()
}

async fn get_rule(
    State(st): State<Arc<AppState>>,
    _reader: Reader,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let Some(cat) = st.rules.as_ref() else {
        return detection_off();
    };
    match cat.get(&id).await {
        Some((summary, entry)) => {
            let mut v = serde_json::to_value(&summary).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "text".into(),
                    json!(entry.current().map(|c| c.text.clone())),
                );
                o.insert("history".into(), json!(entry.history));
                o.insert("versions".into(), json!(entry.versions));
            }
            axum::Json(v).into_response()
        }
        None => api_error(StatusCode::NOT_FOUND, "not_found", "no such rule"),
    }
}

async fn put_rule(
    State(st): State<Arc<AppState>>,
    editor: Editor,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> Response {
    let Some(cat) = st.rules.as_ref() else {
        return detection_off();
    };
    let before = audit_state(cat, &id).await;
    match cat.put_text(&id, &body, &editor.name).await {
        Ok(version) => {
            audit_change(st.as_ref(), &editor.actor, "rule.update", &id, before).await;
            axum::Json(json!({ "id": id, "version": version })).into_response()
        }
        Err(e) => rules_error(&e),
    }
}

async fn set_enabled(st: &AppState, editor: &Editor, id: &str, on: bool) -> Response {
    let Some(cat) = st.rules.as_ref() else {
        return detection_off();
    };
    let before = audit_state(cat, id).await;
    match cat.set_enabled(id, on, &editor.name).await {
        Ok(()) => {
            let action = if on { "rule.enable" } else { "rule.disable" };
            audit_change(st, &editor.actor, action, id, before).await;
            axum::Json(json!({ "id": id, "enabled": on })).into_response()
        }
        Err(e) => rules_error(&e),
    }
}

async fn enable(
    State(st): State<Arc<AppState>>,
    editor: Editor,
    UrlPath(id): UrlPath<String>,
) -> Response {
    set_enabled(&st, &editor, &id, true).await
}

async fn disable(
    State(st): State<Arc<AppState>>,
    editor: Editor,
    UrlPath(id): UrlPath<String>,
) -> Response {
    set_enabled(&st, &editor, &id, false).await
}

#[derive(Deserialize)]
struct ScopeBody {
    agencies: Vec<String>,
}

async fn scope(
    State(st): State<Arc<AppState>>,
    editor: Editor,
    UrlPath(id): UrlPath<String>,
    axum::Json(body): axum::Json<ScopeBody>,
) -> Response {
    let Some(cat) = st.rules.as_ref() else {
        return detection_off();
    };
    let before = audit_state(cat, &id).await;
    if let Err(e) = cat.set_scope(&id, body.agencies, &editor.name).await {
        return rules_error(&e);
    }
    audit_change(st.as_ref(), &editor.actor, "rule.scope", &id, before).await;
    match cat.get(&id).await {
        Some((s, _)) => axum::Json(json!({ "id": id, "scope": s.scope })).into_response(),
        None => api_error(StatusCode::NOT_FOUND, "not_found", "no such rule"),
    }
}

#[derive(Deserialize)]
struct RollbackBody {
    version: u32,
}

async fn rollback(
    State(st): State<Arc<AppState>>,
    editor: Editor,
    UrlPath(id): UrlPath<String>,
    axum::Json(body): axum::Json<RollbackBody>,
) -> Response {
    let Some(cat) = st.rules.as_ref() else {
        return detection_off();
    };
    let before = audit_state(cat, &id).await;
    match cat.rollback(&id, body.version, &editor.name).await {
        Ok(()) => {
            audit_change(st.as_ref(), &editor.actor, "rule.rollback", &id, before).await;
            axum::Json(json!({ "id": id, "version": body.version })).into_response()
        }
        Err(e) => rules_error(&e),
    }
}

/// Body of `POST /api/v1/rules/test`: a stored rule (`id`) or posted texts (`text`, `texts`).
#[derive(Deserialize, Default)]
pub struct TestBody {
    /// A rule of the catalogue (its text in use, enabled or not).
    pub id: Option<String>,
    /// A Sigma YAML text (several documents allowed).
    pub text: Option<String>,
    /// Several Sigma YAML texts.
    #[serde(default)]
    pub texts: Vec<String>,
    /// Start of the range (RFC 3339, date, epoch seconds or `now-24h`); default `now-24h`.
    pub from: Option<String>,
    /// End of the range; default now.
    pub to: Option<String>,
    /// Most hits returned (default 20, at most [`MAX_TEST_HITS`]).
    pub limit: Option<usize>,
}

/// Most sample hits a test returns.
pub const MAX_TEST_HITS: usize = 10_000;

async fn test(
    State(st): State<Arc<AppState>>,
    reader: Reader,
    axum::Json(body): axum::Json<TestBody>,
) -> Response {
    let mut texts = body.texts.clone();
    texts.extend(body.text.clone());
    if let Some(id) = &body.id {
        let Some(cat) = st.rules.as_ref() else {
            return detection_off();
        };
        match cat.text(id).await {
            Some(t) => texts.push(t),
            None => return api_error(StatusCode::NOT_FOUND, "not_found", "no such rule"),
        }
    }
    if texts.is_empty() {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_rule",
            "give a rule id, a text or texts",
        );
    }
    let (query, from, to) =
        match crate::api::range_and_query(None, body.from.as_deref(), body.to.as_deref()) {
            Ok(r) => r,
            Err(m) => return api_error(StatusCode::BAD_REQUEST, "invalid_query", &m),
        };
    let Some(query) = reader.scoped(query) else {
        return axum::Json(StoreHunt::default()).into_response();
    };
    let compiled = tokio::task::spawn_blocking(move || compile_for_test(&texts)).await;
    let (set, problems) = match compiled {
        Ok(Ok(c)) => c,
        Ok(Err(m)) => return api_error(StatusCode::BAD_REQUEST, "invalid_rule", &m),
        Err(e) => {
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            );
        }
    };
    let engine = Engine::new(set);
    let keep = body.limit.unwrap_or(20).min(MAX_TEST_HITS);
    match hunt_store(
        st.pipeline.store(),
        &engine,
        query,
        from,
        to,
        keep,
        |_, _| {},
    )
    .await
    {
        Ok(found) => {
            let mut v = serde_json::to_value(&found).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("problems".into(), json!(problems));
                o.insert("from".into(), json!(from));
                o.insert("to".into(), json!(to));
            }
            axum::Json(v).into_response()
        }
        Err(e) => api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            &crate::pipeline::error_chain(&e),
        ),
    }
}

/// The agency of an event (`organization.id`).
pub fn event_agency(ev: &Event) -> Option<&str> {
    ev.get_str(fields::ORGANIZATION_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "title: Sudo to root\nid: 7c1e0f5a-0000-4000-8000-000000000001\nlevel: high\n\
                        logsource:\n  product: linux\ndetection:\n  keywords:\n    - 'canh-rule-test'\n  \
                        condition: keywords\n";

    #[tokio::test]
    async fn versions_history_and_scope_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = dir.path().join("rules");
        std::fs::create_dir_all(&rules).expect("mkdir");
        std::fs::write(rules.join("r.yml"), RULE).expect("write");
        let data = dir.path().join("data");
        let cat = RuleCatalogue::open(Some(&rules), &data, None);
        let id = "7c1e0f5a-0000-4000-8000-000000000001";
        assert_eq!(cat.live().current().engine.ruleset().len(), 1);
        let v2 = RULE.replace("level: high", "level: low");
        assert_eq!(cat.put_text(id, &v2, "ana").await.expect("update"), 2);
        cat.set_scope(id, vec!["A".into(), " ".into(), "A".into()], "ana")
            .await
            .expect("scope");
        cat.set_enabled(id, false, "ana").await.expect("disable");
        assert!(cat.live().current().engine.ruleset().is_empty());
        drop(cat);
        let cat = RuleCatalogue::open(Some(&rules), &data, None);
        let (s, e) = cat.get(id).await.expect("rule");
        assert!(!s.enabled);
        assert_eq!(s.scope, vec!["A".to_owned()]);
        assert_eq!(
            s.version, 2,
            "the API version survives a restart with the same file"
        );
        let actions: Vec<_> = e.history.iter().map(|c| c.action.as_str()).collect();
        assert_eq!(actions, ["create", "update", "scope", "disable"]);
        assert_eq!(e.history[1].before, json!({"version": 1}));
        cat.rollback(id, 1, "ana").await.expect("rollback");
        assert_eq!(cat.text(id).await.as_deref(), Some(RULE));
        assert!(cat.rollback(id, 9, "ana").await.is_err());
    }

    #[tokio::test]
    async fn a_refused_text_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cat = RuleCatalogue::open(None, dir.path(), None);
        let id = "7c1e0f5a-0000-4000-8000-000000000001";
        cat.put_text(id, RULE, "ana").await.expect("create");
        let bad = RULE.replace("condition: keywords", "condition: missing_selection");
        let err = cat.put_text(id, &bad, "ana").await.expect_err("refused");
        assert!(matches!(err, RulesError::Invalid(_)), "{err}");
        let other = RULE.replace("7c1e0f5a-0000-4000-8000-000000000001", "other");
        assert!(
            cat.put_text(id, &other, "ana").await.is_err(),
            "id must match"
        );
        let two = format!("{RULE}---\n{RULE}");
        assert!(cat.put_text(id, &two, "ana").await.is_err());
        let (s, _) = cat.get(id).await.expect("rule");
        assert_eq!((s.version, s.versions), (1, 1));
        assert_eq!(cat.live().current().engine.ruleset().len(), 1);
        // A rule that is off is checked on its own.
        cat.set_enabled(id, false, "ana").await.expect("disable");
        assert!(cat.put_text(id, &bad, "ana").await.is_err());
        let v2 = RULE.replace("level: high", "level: low");
        assert_eq!(cat.put_text(id, &v2, "ana").await.expect("update"), 2);
        assert!(cat.live().current().engine.ruleset().is_empty());
    }

    #[tokio::test]
    async fn a_store_hunt_reads_every_event_of_the_range_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), canh_store::StoreConfig::default())
            .await
            .expect("store");
        let now = Utc::now();
        let mut events = Vec::new();
        let mut expected = 0u64;
        // A dense hour (several pages), a sparse past and events outside the range.
        for i in 0..4_500i64 {
            let mut ev = Event::new(now - chrono::Duration::milliseconds(i * 700));
            ev.set("process.name", "sshd");
            let hit = i % 3 == 0;
            expected += u64::from(hit);
            ev.set("message", if hit { "canh-rule-test seen" } else { "other" });
            events.push(ev);
        }
        for days in [2i64, 40, 400, 900] {
            let mut ev = Event::new(now - chrono::Duration::days(days));
            ev.set("process.name", "sshd");
            ev.set("message", "canh-rule-test old");
            events.push(ev);
        }
        expected += 4;
        let mut outside = Event::new(now - chrono::Duration::days(2000));
        outside.set("process.name", "sshd");
        outside.set("message", "canh-rule-test too old");
        events.push(outside);
        store.append(events).await.expect("append");
        let sshd = RULE.replace("product: linux\n", "product: linux\n  service: sshd\n");
        let (set, _) = compile_for_test(&[sshd]).expect("rule");
        let engine = Engine::new(set);
        let mut ids = std::collections::HashSet::new();
        let found = hunt_store(
            &store,
            &engine,
            canh_core::query::parse("").expect("query"),
            now - chrono::Duration::days(1000),
            now + chrono::Duration::seconds(1),
            5,
            |m, h| {
                if m.generate {
                    assert!(ids.insert(h.id), "event {} read twice", h.id);
                }
            },
        )
        .await
        .expect("hunt");
        assert_eq!(found.scanned, 4_504);
        assert_eq!(found.count, expected);
        assert_eq!(found.hits.len(), 5);
        assert_eq!(ids.len() as u64, expected);
    }

    #[test]
    fn the_openapi_document_lists_every_rules_route() {
        let doc: Value =
            serde_json::from_str(include_str!("soar/openapi.json")).expect("valid JSON");
        for (path, method) in [
            ("/api/v1/rules", "get"),
            ("/api/v1/rules/test", "post"),
            ("/api/v1/rules/{id}", "get"),
            ("/api/v1/rules/{id}", "put"),
            ("/api/v1/rules/{id}/enable", "post"),
            ("/api/v1/rules/{id}/disable", "post"),
            ("/api/v1/rules/{id}/scope", "put"),
            ("/api/v1/rules/{id}/rollback", "post"),
        ] {
            assert!(doc["paths"][path][method].is_object(), "{method} {path}");
        }
    }

    #[test]
    fn scope_allows_listed_agencies_only() {
        let mut scope = HashMap::new();
        scope.insert("r1".to_owned(), vec!["A".to_owned()]);
        let live = LiveSet {
            engine: Engine::new(RuleSet::default()),
            scope,
        };
        assert!(live.allows("r1", Some("A")));
        assert!(!live.allows("r1", Some("B")));
        assert!(!live.allows("r1", None));
        assert!(live.allows("r2", Some("B")));
    }
}
