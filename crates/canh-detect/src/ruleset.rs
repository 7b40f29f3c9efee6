//! Loading and compiling rule files into a [`RuleSet`].

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_yaml::{Mapping, Value as Yaml};

use crate::compile;
use crate::correlation::{self, CorrelationRule};
use crate::error::RuleError;
use crate::ir::{Node, StrOp, ValueMatcher};
use crate::modifiers::ValueCx;
use crate::pipeline::{self, LogSource, Mapper, Pipeline};
use crate::rule::{self, Doc, RuleMeta};

/// Options for loading rules.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Values of `%placeholder%` names for the `expand` modifier.
    pub placeholders: HashMap<String, Vec<String>>,
    /// Extra pipelines (YAML text), tried before the built-in ones.
    pub extra_pipelines: Vec<String>,
}

/// The outcome of loading one rule document.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum RuleStatus {
    /// Compiled and fully mapped.
    Ok,
    /// Compiled, with caveats (unmapped fields used as written, unmapped logsource).
    Warning(Vec<String>),
    /// Valid Sigma that this engine cannot run.
    Unsupported(String),
    /// Not valid Sigma.
    Invalid(String),
}

impl RuleStatus {
    /// Whether the rule runs.
    pub fn is_loaded(&self) -> bool {
        matches!(self, RuleStatus::Ok | RuleStatus::Warning(_))
    }
}

/// One line of a load report.
#[derive(Clone, Debug, Serialize)]
pub struct RuleReport {
    /// The file, when loaded from disk.
    pub path: Option<PathBuf>,
    /// `id` of the document, if it has one.
    pub id: Option<String>,
    /// `title` of the document, if it could be read.
    pub title: Option<String>,
    /// `detection`, `correlation` or `filter`.
    pub kind: &'static str,
    /// What happened.
    #[serde(flatten)]
    pub status: RuleStatus,
}

/// Where an event must come from for a variant to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Windows events of these channels (lower-cased) and, when not empty, these event ids.
    Channel {
        channels: Vec<String>,
        event_ids: Vec<u64>,
    },
    /// Any Windows event.
    AnyWindows,
    /// Any event that is not a Windows event.
    Other,
}

/// A rule compiled for one logsource variant.
#[derive(Clone, Debug)]
pub(crate) struct CompiledVariant {
    pub(crate) rule: usize,
    pub(crate) route: Route,
    /// Pipeline conditions (other than the route) and the detection.
    pub(crate) node: Node,
    pub(crate) mapper: Mapper,
}

/// A set of compiled rules.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub(crate) rules: Vec<RuleMeta>,
    /// Whether matches of the rule are alerts (false for base rules of correlations that do
    /// not ask to `generate`).
    pub(crate) generate: Vec<bool>,
    pub(crate) variants: Vec<CompiledVariant>,
    pub(crate) correlations: Vec<CorrelationRule>,
}

fn cond_node(conds: &BTreeMap<String, pipeline::OneOrMany>) -> Node {
    let mut items = Vec::new();
    for (field, values) in conds {
        if field == "winlog.channel" || field == "winlog.event_id" {
            continue;
        }
        let matchers = values
            .values()
            .iter()
            .map(|v| {
                if v == "*" {
                    ValueMatcher::Exists(true)
                } else {
                    ValueMatcher::Str {
                        op: StrOp::Exact,
                        value: v.to_lowercase(),
                        cased: false,
                    }
                }
            })
            .collect();
        items.push(Node::Field {
            field: field.clone(),
            matchers,
            all: false,
        });
    }
    Node::And(items)
}

fn route(mapper: &Mapper) -> Route {
    let conds = &mapper.variant().conditions;
    match conds.get("winlog.channel") {
        Some(ch) => Route::Channel {
            channels: ch.values().iter().map(|c| c.to_lowercase()).collect(),
            event_ids: conds
                .get("winlog.event_id")
                .map(|ids| ids.values().iter().filter_map(|i| i.parse().ok()).collect())
                .unwrap_or_default(),
        },
        None if mapper.is_windows() => Route::AnyWindows,
        None => Route::Other,
    }
}

/// Event ids a node requires (`EventID: 4625` at the top level of the detection).
pub(crate) fn required_event_ids(node: &Node) -> Option<Vec<u64>> {
    match node {
        Node::And(children) => children.iter().find_map(required_event_ids),
        Node::Or(children) => {
            let mut out = Vec::new();
            for c in children {
                out.extend(required_event_ids(c)?);
            }
            Some(out)
        }
        Node::Field {
            field,
            matchers,
            all: false,
        } if field == "winlog.event_id" => matchers
            .iter()
            .map(|m| match m {
                ValueMatcher::Str {
                    op: StrOp::Exact,
                    value,
                    ..
                } => value.parse().ok(),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

struct Compiler<'a> {
    pipelines: Arc<Vec<Pipeline>>,
    opts: &'a LoadOptions,
}

impl Compiler<'_> {
    fn mappers(&self, ls: &LogSource, warnings: &mut Vec<String>) -> Vec<Mapper> {
        pipeline::resolve(&self.pipelines, ls).unwrap_or_else(|| {
            warnings.push(format!(
                "logsource {} has no pipeline mapping: fields are matched as written, on \
                 non-Windows events",
                describe(ls)
            ));
            vec![pipeline::fallback(&self.pipelines)]
        })
    }

    /// Compiles `detection` with `mapper`; unmapped fields are used as written and reported.
    fn detection(
        &self,
        detection: &Mapping,
        mapper: &Mapper,
        warnings: &RefCell<Vec<String>>,
    ) -> Result<Node, RuleError> {
        let map_field = |name: &str| -> Result<String, RuleError> {
            Ok(mapper.map_field(name).unwrap_or_else(|| {
                let msg = format!(
                    "field '{name}' is not mapped by pipeline '{}'",
                    mapper.pipeline_name()
                );
                let mut w = warnings.borrow_mut();
                if !w.contains(&msg) {
                    w.push(msg);
                }
                name.to_owned()
            }))
        };
        let cx = ValueCx {
            placeholders: &self.opts.placeholders,
            map_field: &map_field,
        };
        compile::detection(detection, &cx)
    }
}

fn describe(ls: &LogSource) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("product", &ls.product),
        ("category", &ls.category),
        ("service", &ls.service),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}={v}"));
        }
    }
    format!("({})", parts.join(", "))
}

struct PendingFilter {
    report: usize,
    logsource: LogSource,
    filter: Mapping,
}

impl RuleSet {
    /// Compiles the rule documents of one YAML text (`---`-separated documents allowed).
    pub fn from_yaml_str(text: &str, opts: &LoadOptions) -> (RuleSet, Vec<RuleReport>) {
        Self::from_sources(vec![(None, text.to_owned())], opts)
    }

    /// Loads every `.yml`/`.yaml` file under `dir` (recursively, in name order).
    pub fn load_dir(dir: impl AsRef<Path>, opts: &LoadOptions) -> (RuleSet, Vec<RuleReport>) {
        Self::load_paths(&[dir.as_ref().to_path_buf()], opts)
    }

    /// Loads rule files and directories.
    pub fn load_paths(paths: &[PathBuf], opts: &LoadOptions) -> (RuleSet, Vec<RuleReport>) {
        let mut files = Vec::new();
        let mut reports = Vec::new();
        for p in paths {
            if let Err(e) = collect_files(p, &mut files) {
                reports.push(io_report(p, e));
            }
        }
        files.sort();
        let mut sources = Vec::with_capacity(files.len());
        for f in files {
            match std::fs::read_to_string(&f) {
                Ok(text) => sources.push((Some(f), text)),
                Err(e) => reports.push(io_report(&f, e)),
            }
        }
        let (set, mut more) = Self::from_sources(sources, opts);
        reports.append(&mut more);
        (set, reports)
    }

    /// Compiles rule texts compiled together (so that correlations and filters see the rules
    /// of every text), each with the path reported for its rules.
    pub fn from_texts(
        sources: Vec<(Option<PathBuf>, String)>,
        opts: &LoadOptions,
    ) -> (RuleSet, Vec<RuleReport>) {
        Self::from_sources(sources, opts)
    }

    fn from_sources(
        sources: Vec<(Option<PathBuf>, String)>,
        opts: &LoadOptions,
    ) -> (RuleSet, Vec<RuleReport>) {
        let mut reports = Vec::new();
        let mut pipelines = Vec::new();
        for text in &opts.extra_pipelines {
            match Pipeline::parse(text) {
                Ok(p) => pipelines.push(p),
                Err(e) => reports.push(RuleReport {
                    path: None,
                    id: None,
                    title: None,
                    kind: "pipeline",
                    status: RuleStatus::Invalid(e.to_string()),
                }),
            }
        }
        match Pipeline::builtin() {
            Ok(mut b) => pipelines.append(&mut b),
            Err(e) => tracing::error!(error = %e, "built-in pipeline is invalid"),
        }
        let compiler = Compiler {
            pipelines: Arc::new(pipelines),
            opts,
        };
        let mut set = RuleSet::default();
        let mut filters = Vec::new();
        let mut correlations = Vec::new();
        for (path, text) in sources {
            for doc in rule::parse_docs(&text) {
                let doc = match doc {
                    Ok(d) => d,
                    Err(e) => {
                        reports.push(RuleReport {
                            path: path.clone(),
                            id: None,
                            title: None,
                            kind: "detection",
                            status: status_of(&e),
                        });
                        continue;
                    }
                };
                match doc {
                    Doc::Detection {
                        mut meta,
                        logsource,
                        detection,
                    } => {
                        meta.path = path.clone();
                        let status =
                            set.add_detection(&compiler, meta.clone(), &logsource, &detection);
                        reports.push(report(&meta, "detection", status));
                    }
                    Doc::Filter {
                        mut meta,
                        logsource,
                        filter,
                    } => {
                        meta.path = path.clone();
                        reports.push(report(&meta, "filter", RuleStatus::Ok));
                        filters.push(PendingFilter {
                            report: reports.len() - 1,
                            logsource,
                            filter,
                        });
                    }
                    Doc::Correlation { mut meta, spec } => {
                        meta.path = path.clone();
                        reports.push(report(&meta, "correlation", RuleStatus::Ok));
                        correlations.push((reports.len() - 1, meta, spec));
                    }
                }
            }
        }
        for f in filters {
            reports[f.report].status = set.apply_filter(&compiler, &f.logsource, &f.filter);
        }
        for (idx, meta, spec) in correlations {
            match correlation::compile(&mut set, meta, &spec) {
                Ok(c) => set.correlations.push(c),
                Err(e) => reports[idx].status = status_of(&e),
            }
        }
        tracing::info!(
            rules = set.rules.len(),
            variants = set.variants.len(),
            correlations = set.correlations.len(),
            "rules loaded"
        );
        (set, reports)
    }

    fn add_detection(
        &mut self,
        compiler: &Compiler<'_>,
        meta: RuleMeta,
        logsource: &LogSource,
        detection: &Mapping,
    ) -> RuleStatus {
        let mut warnings = Vec::new();
        let mappers = compiler.mappers(logsource, &mut warnings);
        let field_warnings = RefCell::new(Vec::new());
        let mut compiled = Vec::with_capacity(mappers.len());
        for mapper in mappers {
            let node = match compiler.detection(detection, &mapper, &field_warnings) {
                Ok(n) => n,
                Err(e) => return status_of(&e),
            };
            let conds = cond_node(&mapper.variant().conditions);
            let node = compile::simplify(Node::And(vec![conds, node]));
            let mut route = route(&mapper);
            if let (Route::Channel { event_ids, .. }, Some(ids)) =
                (&mut route, required_event_ids(&node))
            {
                if event_ids.is_empty() {
                    *event_ids = ids;
                } else {
                    event_ids.retain(|i| ids.contains(i));
                    if event_ids.is_empty() {
                        // The rule asks for ids the logsource never has: it can never match.
                        continue;
                    }
                }
            }
            compiled.push((route, node, mapper));
        }
        warnings.extend(field_warnings.into_inner());
        let rule = self.rules.len();
        self.rules.push(meta);
        self.generate.push(true);
        for (route, node, mapper) in compiled {
            self.variants.push(CompiledVariant {
                rule,
                route,
                node,
                mapper,
            });
        }
        if warnings.is_empty() {
            RuleStatus::Ok
        } else {
            RuleStatus::Warning(warnings)
        }
    }

    /// Rule indices for a reference by `id` or `name`.
    pub(crate) fn find(&self, reference: &str) -> Option<usize> {
        self.rules.iter().position(|r| {
            r.id.as_deref() == Some(reference) || r.name.as_deref() == Some(reference)
        })
    }

    fn apply_filter(
        &mut self,
        compiler: &Compiler<'_>,
        logsource: &LogSource,
        filter: &Mapping,
    ) -> RuleStatus {
        let mut detection = filter.clone();
        let targets: Vec<String> = match detection.remove("rules") {
            Some(Yaml::Sequence(items)) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            Some(Yaml::String(s)) => vec![s],
            _ => return RuleStatus::Invalid("filter has no 'rules' list".into()),
        };
        let warnings = RefCell::new(Vec::new());
        let mut missing = Vec::new();
        for target in &targets {
            let Some(rule) = self.find(target) else {
                missing.push(target.clone());
                continue;
            };
            for v in self.variants.iter_mut().filter(|v| v.rule == rule) {
                let node = match compiler.detection(&detection, &v.mapper, &warnings) {
                    Ok(n) => n,
                    Err(e) => return status_of(&e),
                };
                // A filter describes events to leave out of the rules it names.
                let old = std::mem::replace(&mut v.node, Node::True);
                v.node = compile::simplify(Node::And(vec![old, Node::Not(Box::new(node))]));
            }
        }
        let mut w = warnings.into_inner();
        if let Some(ls) = Some(logsource).filter(|l| l.product.is_none() && l.category.is_none()) {
            w.push(format!(
                "filter logsource {} names no product or category",
                describe(ls)
            ));
        }
        if !missing.is_empty() {
            w.push(format!(
                "filter names unknown rules: {}",
                missing.join(", ")
            ));
        }
        if w.is_empty() {
            RuleStatus::Ok
        } else {
            RuleStatus::Warning(w)
        }
    }

    /// The metadata of every loaded detection rule.
    pub fn rules(&self) -> &[RuleMeta] {
        &self.rules
    }

    /// How many detection rules are loaded.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether no rule is loaded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The correlation rules.
    pub fn correlations(&self) -> &[CorrelationRule] {
        &self.correlations
    }

    /// Keeps only rules at `min` severity or above (correlations keep their base rules).
    pub fn retain_min_severity(&mut self, min: canh_core::Severity) {
        let keep: Vec<bool> = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| r.severity() >= min || !self.generate[i])
            .collect();
        self.variants.retain(|v| keep[v.rule]);
    }
}

/// The YAML documents of a rule file (split at `---` lines), without empty ones: a rule
/// catalogue keeps each document on its own.
pub fn split_documents(text: &str) -> Vec<String> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end();
        if bare == "---" || (bare.starts_with("--- ") && bare[4..].trim_start().starts_with('#')) {
            docs.push(std::mem::take(&mut cur));
            continue;
        }
        if bare == "..." {
            continue;
        }
        cur.push_str(line);
    }
    docs.push(cur);
    docs.retain(|d| {
        d.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

fn status_of(e: &RuleError) -> RuleStatus {
    match e {
        RuleError::Unsupported(m) => RuleStatus::Unsupported(m.clone()),
        other => RuleStatus::Invalid(other.to_string()),
    }
}

fn report(meta: &RuleMeta, kind: &'static str, status: RuleStatus) -> RuleReport {
    RuleReport {
        path: meta.path.clone(),
        id: meta.id.clone(),
        title: Some(meta.title.clone()),
        kind,
        status,
    }
}

fn io_report(path: &Path, e: std::io::Error) -> RuleReport {
    RuleReport {
        path: Some(path.to_path_buf()),
        id: None,
        title: None,
        kind: "file",
        status: RuleStatus::Invalid(format!("cannot read: {e}")),
    }
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
