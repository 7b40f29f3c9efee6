//! Field-mapping pipelines (data, not code): YAML files in `pipelines/` that turn a Sigma
//! logsource into event conditions and Sigma field names into stored field names.
//!
//! A pipeline entry matches a rule's logsource when it names exactly the same keys
//! (`product`, `category`, `service`) with the same values. An entry has one or more
//! variants; each variant adds conditions (stored field → accepted values, wildcards allowed)
//! and may rename Sigma fields before the pipeline's field map applies. A rule compiles once
//! per variant. A field name is mapped by: variant `rename`, then the entry's `fields`, then the
//! pipeline's `fields`, then `default_field_prefix` + name; when none applies the field is
//! reported as unmapped.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::error::RuleError;

/// The pipelines built into the engine.
pub const BUILTIN_PIPELINES: &[(&str, &str)] = &[
    ("windows", include_str!("../pipelines/windows.yaml")),
    ("linux", include_str!("../pipelines/linux.yaml")),
    ("web", include_str!("../pipelines/web.yaml")),
    ("network", include_str!("../pipelines/network.yaml")),
];

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn values(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// One way a logsource shows up in events.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    #[serde(default)]
    pub(crate) conditions: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    pub(crate) rename: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    product: Option<String>,
    category: Option<String>,
    service: Option<String>,
    #[serde(default)]
    variants: Vec<Variant>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    default_field_prefix: Option<String>,
}

/// One pipeline file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    name: String,
    /// `windows`: events are routed by `winlog.channel`.
    #[serde(default)]
    windows: bool,
    default_field_prefix: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    #[serde(default)]
    logsources: Vec<Entry>,
}

/// A rule's logsource.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct LogSource {
    /// `product`.
    pub product: Option<String>,
    /// `category`.
    pub category: Option<String>,
    /// `service`.
    pub service: Option<String>,
}

/// How fields are mapped for one variant of one logsource: the pipeline, its entry (none for
/// the identity fallback) and the variant.
#[derive(Clone, Debug)]
pub(crate) struct Mapper {
    pipelines: Arc<Vec<Pipeline>>,
    pipeline: usize,
    entry: Option<usize>,
    variant: usize,
}

impl Pipeline {
    pub(crate) fn parse(text: &str) -> Result<Self, RuleError> {
        serde_yaml::from_str(text).map_err(|e| RuleError::invalid(format!("pipeline: {e}")))
    }

    /// A pipeline that maps nothing: field names are used as written.
    pub(crate) fn identity() -> Self {
        Pipeline {
            name: "identity".into(),
            windows: false,
            default_field_prefix: Some(String::new()),
            fields: BTreeMap::new(),
            logsources: Vec::new(),
        }
    }

    /// The built-in pipelines followed by the identity fallback (always last).
    pub(crate) fn builtin() -> Result<Vec<Pipeline>, RuleError> {
        let mut out = Vec::with_capacity(BUILTIN_PIPELINES.len() + 1);
        for (_, text) in BUILTIN_PIPELINES {
            out.push(Pipeline::parse(text)?);
        }
        out.push(Pipeline::identity());
        Ok(out)
    }
}

fn same(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
        _ => false,
    }
}

/// The mappers (one per variant) for `ls`; `None` when no pipeline maps it. The last pipeline
/// of `pipelines` is the identity fallback.
pub(crate) fn resolve(pipelines: &Arc<Vec<Pipeline>>, ls: &LogSource) -> Option<Vec<Mapper>> {
    for (pi, p) in pipelines.iter().enumerate() {
        for (ei, e) in p.logsources.iter().enumerate() {
            if same(&e.product, &ls.product)
                && same(&e.category, &ls.category)
                && same(&e.service, &ls.service)
            {
                let n = e.variants.len().max(1);
                return Some(
                    (0..n)
                        .map(|vi| Mapper {
                            pipelines: pipelines.clone(),
                            pipeline: pi,
                            entry: Some(ei),
                            variant: vi,
                        })
                        .collect(),
                );
            }
        }
    }
    None
}

/// The identity mapper (fields as written, no conditions).
pub(crate) fn fallback(pipelines: &Arc<Vec<Pipeline>>) -> Mapper {
    Mapper {
        pipelines: pipelines.clone(),
        pipeline: pipelines.len().saturating_sub(1),
        entry: None,
        variant: 0,
    }
}

static NO_VARIANT: std::sync::OnceLock<Variant> = std::sync::OnceLock::new();

impl Mapper {
    fn pipeline(&self) -> &Pipeline {
        &self.pipelines[self.pipeline]
    }

    fn entry(&self) -> Option<&Entry> {
        self.entry.map(|e| &self.pipeline().logsources[e])
    }

    pub(crate) fn variant(&self) -> &Variant {
        self.entry()
            .and_then(|e| e.variants.get(self.variant))
            .unwrap_or_else(|| NO_VARIANT.get_or_init(Variant::default))
    }

    pub(crate) fn pipeline_name(&self) -> &str {
        &self.pipeline().name
    }

    pub(crate) fn is_windows(&self) -> bool {
        self.pipeline().windows
    }

    /// The stored field name of Sigma field `name`, or `None` when this pipeline cannot map it.
    pub(crate) fn map_field(&self, name: &str) -> Option<String> {
        let renamed = self.variant().rename.get(name).map_or(name, String::as_str);
        if let Some(f) = self.entry().and_then(|e| e.fields.get(renamed)) {
            return Some(f.clone());
        }
        if let Some(f) = self.pipeline().fields.get(renamed) {
            return Some(f.clone());
        }
        let prefix = self
            .entry()
            .and_then(|e| e.default_field_prefix.as_ref())
            .or(self.pipeline().default_field_prefix.as_ref())?;
        Some(format!("{prefix}{renamed}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Arc<Vec<Pipeline>> {
        Arc::new(Pipeline::builtin().unwrap())
    }

    fn ls(p: Option<&str>, c: Option<&str>, s: Option<&str>) -> LogSource {
        LogSource {
            product: p.map(Into::into),
            category: c.map(Into::into),
            service: s.map(Into::into),
        }
    }

    #[test]
    fn process_creation_is_sysmon_1_or_security_4688_with_renames() {
        let p = builtin();
        let r = resolve(&p, &ls(Some("windows"), Some("process_creation"), None)).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].map_field("Image").unwrap(), "winlog.event_data.Image");
        assert_eq!(
            r[1].map_field("Image").unwrap(),
            "winlog.event_data.NewProcessName"
        );
        assert_eq!(r[1].map_field("EventID").unwrap(), "winlog.event_id");
        assert_eq!(
            r[1].map_field("Provider_Name").unwrap(),
            "winlog.provider_name"
        );
        assert!(r[0].is_windows());
    }

    #[test]
    fn webserver_fields_map_to_ecs_and_unknown_fields_are_unmapped() {
        let p = builtin();
        let r = resolve(&p, &ls(None, Some("webserver"), None)).unwrap();
        assert_eq!(r[0].map_field("cs-uri-query").unwrap(), "url.query");
        assert_eq!(r[0].map_field("no-such-field"), None);
        assert!(resolve(&p, &ls(Some("nosuch"), None, None)).is_none());
        assert_eq!(fallback(&p).map_field("eventName").unwrap(), "eventName");
    }
}
