//! Sigma YAML documents: detection rules, correlation rules and filters, with their metadata.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value as Yaml};

use crate::error::RuleError;
use crate::pipeline::LogSource;

/// What a rule is about: shown with every match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleMeta {
    /// `id` (usually a UUID).
    pub id: Option<String>,
    /// `name` (used by correlation rules and filters to refer to a rule).
    pub name: Option<String>,
    /// `title`.
    pub title: String,
    /// `level` as written (`informational`, `low`, `medium`, `high`, `critical`).
    pub level: Option<String>,
    /// `status`.
    pub status: Option<String>,
    /// `tags` (ATT&CK tactics and techniques among them).
    pub tags: Vec<String>,
    /// `author` (kept with every match, as the Detection Rule License requires).
    pub author: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `references`.
    pub references: Vec<String>,
    /// `falsepositives`.
    pub falsepositives: Vec<String>,
    /// The file the rule came from, when loaded from disk.
    pub path: Option<PathBuf>,
}

impl RuleMeta {
    /// The level as a Canh severity (medium when absent or unknown).
    pub fn severity(&self) -> canh_core::Severity {
        self.level
            .as_deref()
            .and_then(canh_core::Severity::from_sigma_level)
            .unwrap_or(canh_core::Severity::Medium)
    }

    /// The ATT&CK tags (`attack.*`).
    pub fn attack_tags(&self) -> impl Iterator<Item = &str> {
        self.tags
            .iter()
            .map(String::as_str)
            .filter(|t| t.starts_with("attack."))
    }
}

/// A parsed Sigma document.
#[derive(Clone, Debug)]
pub(crate) enum Doc {
    Detection {
        meta: RuleMeta,
        logsource: LogSource,
        detection: Mapping,
    },
    Correlation {
        meta: RuleMeta,
        spec: Mapping,
    },
    Filter {
        meta: RuleMeta,
        logsource: LogSource,
        filter: Mapping,
    },
}

fn text(v: Option<&Yaml>) -> Option<String> {
    match v? {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn list(v: Option<&Yaml>) -> Vec<String> {
    match v {
        Some(Yaml::Sequence(items)) => items.iter().filter_map(|i| text(Some(i))).collect(),
        Some(other) => text(Some(other)).into_iter().collect(),
        None => Vec::new(),
    }
}

fn logsource(v: Option<&Yaml>) -> Result<LogSource, RuleError> {
    let Some(Yaml::Mapping(m)) = v else {
        return Err(RuleError::invalid("missing logsource"));
    };
    Ok(LogSource {
        product: text(m.get("product")),
        category: text(m.get("category")),
        service: text(m.get("service")),
    })
}

fn meta(m: &Mapping) -> Result<RuleMeta, RuleError> {
    let title = text(m.get("title")).ok_or_else(|| RuleError::invalid("missing title"))?;
    let author = match m.get("author") {
        Some(Yaml::Sequence(_)) => Some(list(m.get("author")).join(", ")),
        other => text(other),
    };
    Ok(RuleMeta {
        id: text(m.get("id")),
        name: text(m.get("name")),
        title,
        level: text(m.get("level")),
        status: text(m.get("status")),
        tags: list(m.get("tags")),
        author,
        description: text(m.get("description")),
        references: list(m.get("references")),
        falsepositives: list(m.get("falsepositives")),
        path: None,
    })
}

/// Parses one YAML document.
fn doc(v: Yaml) -> Result<Doc, RuleError> {
    let Yaml::Mapping(m) = v else {
        return Err(RuleError::invalid("a Sigma document must be a map"));
    };
    if m.get("action").is_some() {
        return Err(RuleError::unsupported(
            "Sigma v1 multi-document 'action' collections",
        ));
    }
    let meta = meta(&m)?;
    if let Some(c) = m.get("correlation") {
        let Yaml::Mapping(spec) = c else {
            return Err(RuleError::invalid("correlation must be a map"));
        };
        return Ok(Doc::Correlation {
            meta,
            spec: spec.clone(),
        });
    }
    if let Some(f) = m.get("filter") {
        let Yaml::Mapping(filter) = f else {
            return Err(RuleError::invalid("filter must be a map"));
        };
        return Ok(Doc::Filter {
            meta,
            logsource: logsource(m.get("logsource"))?,
            filter: filter.clone(),
        });
    }
    let Some(Yaml::Mapping(detection)) = m.get("detection") else {
        return Err(RuleError::invalid("missing detection"));
    };
    Ok(Doc::Detection {
        meta,
        logsource: logsource(m.get("logsource"))?,
        detection: detection.clone(),
    })
}

/// The kind (`detection`, `correlation` or `filter`) and metadata of the first document of
/// a YAML text, without compiling it.
pub fn describe(text: &str) -> Result<(&'static str, RuleMeta), RuleError> {
    match parse_docs(text).into_iter().next() {
        None => Err(RuleError::invalid("no Sigma document")),
        Some(Err(e)) => Err(e),
        Some(Ok(Doc::Detection { meta, .. })) => Ok(("detection", meta)),
        Some(Ok(Doc::Correlation { meta, .. })) => Ok(("correlation", meta)),
        Some(Ok(Doc::Filter { meta, .. })) => Ok(("filter", meta)),
    }
}

/// Parses every document of a YAML text (`---` separates documents). Empty documents are
/// skipped; a document that is not valid gives an error in its place.
pub(crate) fn parse_docs(text: &str) -> Vec<Result<Doc, RuleError>> {
    let mut out = Vec::new();
    for de in serde_yaml::Deserializer::from_str(text) {
        match Yaml::deserialize(de) {
            Ok(Yaml::Null) => {}
            Ok(v) => out.push(doc(v)),
            Err(e) => {
                out.push(Err(RuleError::invalid(format!("YAML: {e}"))));
                // The stream cannot be resynchronised after a syntax error.
                break;
            }
        }
    }
    out
}
