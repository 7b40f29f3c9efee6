//! Suricata/Snort signatures: parsing, support check and matching.
//!
//! - [`parse`]: rule text to header words and raw options.
//! - [`header`]: address/port groups with variables and negation.
//! - [`compile`]: options to a typed [`compile::Rule`]; anything not implemented is reported
//!   by keyword name ([`compile::RuleProblem::Unsupported`]).
//! - [`matcher`]: content/pcre/byte_* inspection of one buffer.
//! - [`buffers`]: sticky buffers and where their bytes come from.
//! - [`engine`]: Aho-Corasick prefilter over fast patterns, flowbits, thresholds.

pub mod buffers;
pub mod compile;
pub mod engine;
pub mod header;
pub mod matcher;
pub mod parse;
pub mod pcre;

pub use buffers::{AppProto, HttpRaw};
pub use compile::{Action, Rule, RuleProblem};
pub use engine::{Alert, DetectState, Engine, FlowDetect};
pub use header::Vars;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Errors of rule loading.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A rule or classification file could not be read.
    #[error("failed to read rule file {path}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Result of checking one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleCheck {
    /// File name (as given), shared by the checks of one file.
    pub file: Arc<str>,
    /// Line number (1-based, first line of the rule).
    pub line: usize,
    /// `sid`, if it could be read.
    pub sid: Option<u64>,
    /// `None` when the rule is supported.
    pub problem: Option<RuleProblem>,
}

/// Counts of a rule check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckSummary {
    /// Rules seen (enabled lines).
    pub total: usize,
    /// Rules Canh runs.
    pub supported: usize,
    /// Rules with unsupported features.
    pub unsupported: usize,
    /// Malformed rules.
    pub invalid: usize,
    /// Unsupported rules per reason.
    pub reasons: BTreeMap<String, usize>,
}

impl CheckSummary {
    /// Share of supported rules, 0–100.
    pub fn supported_percent(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.supported as f64 * 100.0 / self.total as f64
    }

    /// Adds one result.
    pub fn add(&mut self, c: &RuleCheck) {
        self.total += 1;
        match &c.problem {
            None => self.supported += 1,
            Some(RuleProblem::Unsupported(k)) => {
                self.unsupported += 1;
                *self.reasons.entry(k.clone()).or_default() += 1;
            }
            Some(RuleProblem::Invalid(_)) => self.invalid += 1,
        }
    }
}

/// Classification (`classtype` name to description and priority).
#[derive(Debug, Clone, Default)]
pub struct Classes(HashMap<String, (String, u64)>);

impl Classes {
    /// Parses `config classification: name,description,priority` lines.
    pub fn parse(text: &str) -> Self {
        let mut map = HashMap::new();
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("config classification:") else {
                continue;
            };
            let parts: Vec<&str> = rest.split(',').map(str::trim).collect();
            if let [name, desc, prio] = parts.as_slice()
                && let Ok(p) = prio.parse()
            {
                map.insert((*name).to_string(), ((*desc).to_string(), p));
            }
        }
        Self(map)
    }

    /// Description and priority of a class.
    pub fn get(&self, name: &str) -> Option<&(String, u64)> {
        self.0.get(name)
    }
}

/// Loaded rules with their metadata.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// The matching engine.
    pub engine: Engine,
    /// Classifications for `category`/`severity`.
    pub classes: Classes,
}

impl RuleSet {
    /// EVE `alert.category` and `alert.severity` of a rule.
    pub fn category(&self, rule: &Rule) -> (String, u64) {
        let class = rule.classtype.as_deref().and_then(|c| self.classes.get(c));
        let category = class.map(|(d, _)| d.clone()).unwrap_or_default();
        let severity = rule.priority.or(class.map(|(_, p)| *p)).unwrap_or(3);
        (category, severity)
    }
}

/// Splits rule text into (line number, rule) for enabled rules, joining `\` continuations.
pub fn rule_lines(text: &str) -> Vec<(usize, String)> {
    RuleLines::new(text)
        .map(|(n, r)| (n, r.into_owned()))
        .collect()
}

/// The enabled rules of a text one by one, as [`rule_lines`] lists them; a rule on one line
/// is borrowed from the text.
struct RuleLines<'a> {
    lines: std::iter::Enumerate<std::str::Lines<'a>>,
}

impl<'a> RuleLines<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            lines: text.lines().enumerate(),
        }
    }
}

impl<'a> Iterator for RuleLines<'a> {
    type Item = (usize, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        let mut cur = String::new();
        let mut start = 0;
        for (i, line) in self.lines.by_ref() {
            let t = line.trim();
            if cur.is_empty() {
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                start = i + 1;
            }
            if let Some(body) = t.strip_suffix('\\') {
                cur.push_str(body);
                continue;
            }
            if cur.is_empty() {
                return Some((start, Cow::Borrowed(t)));
            }
            cur.push_str(t);
            return Some((start, Cow::Owned(cur)));
        }
        (!cur.is_empty()).then_some((start, Cow::Owned(cur)))
    }
}

/// Checks and compiles every enabled rule of `text`.
pub fn compile_text(text: &str, file: &str, vars: &Vars) -> (Vec<Rule>, Vec<RuleCheck>) {
    let mut rules = Vec::new();
    let mut checks = Vec::new();
    compile_into(
        text,
        &Arc::from(file),
        vars,
        &mut compile::Shared::default(),
        &mut rules,
        &mut checks,
    );
    (rules, checks)
}

/// Checks and compiles every enabled rule of `text`, appending to `rules` and `checks`.
fn compile_into(
    text: &str,
    file: &Arc<str>,
    vars: &Vars,
    shared: &mut compile::Shared,
    rules: &mut Vec<Rule>,
    checks: &mut Vec<RuleCheck>,
) {
    for (line, r) in RuleLines::new(text) {
        let (sid, problem) = match parse::tokenize(&r) {
            Err(e) => (None, Some(RuleProblem::Invalid(e))),
            Ok(raw) => {
                let sid = raw
                    .options
                    .iter()
                    .find(|(n, _)| n == "sid")
                    .and_then(|(_, v)| v.as_deref())
                    .and_then(|v| v.trim().parse().ok());
                match compile::compile_shared(&raw, vars, shared) {
                    Ok(rule) => {
                        rules.push(rule);
                        (sid, None)
                    }
                    Err(p) => (sid, Some(p)),
                }
            }
        };
        checks.push(RuleCheck {
            file: file.clone(),
            line,
            sid,
            problem,
        });
    }
}

fn read_rules(path: &Path) -> Result<String, RulesError> {
    std::fs::read_to_string(path).map_err(|source| RulesError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Loads rule files into a [`RuleSet`]. A `classification.config` next to the first file is
/// used for categories when present.
///
/// Rules are compiled one by one straight from the file text; address and port groups,
/// words and `pcre` programs that several rules spell alike are compiled once and shared.
pub fn load_files(paths: &[&Path], vars: &Vars) -> Result<(RuleSet, Vec<RuleCheck>), RulesError> {
    // Count first, so that the lists are allocated once at their final size.
    let mut count = 0;
    for path in paths {
        count += RuleLines::new(&read_rules(path)?).count();
    }
    let mut all = Vec::with_capacity(count);
    let mut checks = Vec::with_capacity(count);
    let mut classes = Classes::default();
    let mut shared = compile::Shared::default();
    for (n, path) in paths.iter().enumerate() {
        let text = read_rules(path)?;
        let file: Arc<str> = Arc::from(path.display().to_string());
        compile_into(&text, &file, vars, &mut shared, &mut all, &mut checks);
        if n == 0
            && let Some(dir) = path.parent()
            && let Ok(t) = std::fs::read_to_string(dir.join("classification.config"))
        {
            classes = Classes::parse(&t);
        }
    }
    drop(shared);
    // Unsupported rules leave room at the end of the list.
    all.shrink_to_fit();
    tracing::info!(
        rules = all.len(),
        skipped = checks.len() - all.len(),
        "rules loaded"
    );
    Ok((
        RuleSet {
            engine: Engine::new(all),
            classes,
        },
        checks,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// [`rule_lines`] as it was written before rules were read one by one.
    fn rule_lines_reference(text: &str) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut start = 0;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if cur.is_empty() {
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                start = i + 1;
            }
            if let Some(body) = t.strip_suffix('\\') {
                cur.push_str(body);
                continue;
            }
            cur.push_str(t);
            out.push((start, std::mem::take(&mut cur)));
        }
        if !cur.is_empty() {
            out.push((start, cur));
        }
        out
    }

    proptest! {
        #[test]
        fn rule_lines_one_by_one_match_the_whole_text_split(
            lines in proptest::collection::vec(
                prop_oneof![
                    Just(String::new()),
                    Just("   ".to_string()),
                    Just("# comment".to_string()),
                    Just("\\".to_string()),
                    Just(" alert tcp any any -> any any \\".to_string()),
                    Just("(sid:1;)".to_string()),
                    Just("  #x \\".to_string()),
                    "[a-z #\\\\ ]{0,12}",
                ],
                0..24,
            ),
            crlf in any::<bool>(),
        ) {
            let text = lines.join(if crlf { "\r\n" } else { "\n" });
            let got: Vec<(usize, String)> = RuleLines::new(&text)
                .map(|(n, r)| (n, r.into_owned()))
                .collect();
            prop_assert_eq!(got, rule_lines_reference(&text));
        }
    }

    #[test]
    fn load_files_shares_groups_and_expressions_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.rules");
        let b = dir.path().join("b.rules");
        std::fs::write(
            &a,
            concat!(
                "alert http $HOME_NET any -> $EXTERNAL_NET any (msg:\"a\"; ",
                "http.uri; content:\"/x\"; pcre:\"/x[0-9]+/U\"; classtype:bad-unknown; ",
                "metadata:created_at 2024_01_01, signature_severity Major; sid:1;)\n",
                "alert tcp any any -> any any (msg:\"broken\"; content:\"x\";)\n",
            ),
        )
        .unwrap();
        std::fs::write(
            &b,
            concat!(
                "# disabled\n",
                "alert http $HOME_NET any -> $EXTERNAL_NET any (msg:\"b\"; ",
                "http.uri; content:\"/y\"; pcre:\"/x[0-9]+/U\"; classtype:bad-unknown; ",
                "metadata:signature_severity Major; sid:2;)\n",
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("classification.config"),
            "config classification: bad-unknown,Potentially Bad Traffic,2\n",
        )
        .unwrap();
        let (set, checks) = load_files(&[&a, &b], &Vars::default()).unwrap();
        assert_eq!(set.engine.len(), 2);
        assert_eq!(checks.len(), 3);
        assert_eq!(&*checks[0].file, a.display().to_string());
        assert!(matches!(checks[1].problem, Some(RuleProblem::Invalid(_))));
        assert_eq!(
            (&*checks[2].file, checks[2].line),
            (&*b.display().to_string(), 2)
        );
        let [r1, r2] = [&set.engine.rules[0], &set.engine.rules[1]];
        assert_eq!((r1.sid, r2.sid), (1, 2));
        assert!(Arc::ptr_eq(&r1.src, &r2.src) && Arc::ptr_eq(&r1.dst, &r2.dst));
        assert!(Arc::ptr_eq(&r1.sport, &r1.dport));
        let (Some(c1), Some(c2)) = (&r1.classtype, &r2.classtype) else {
            panic!("classtype lost");
        };
        assert!(Arc::ptr_eq(c1, c2));
        let pcre = |r: &Rule| match r.groups[0].items.last() {
            Some(matcher::Item::Pcre(p)) => p.re.clone(),
            other => panic!("expected a pcre, found {other:?}"),
        };
        assert!(Arc::ptr_eq(&pcre(r1), &pcre(r2)));
        assert_eq!(set.category(r2), ("Potentially Bad Traffic".to_string(), 2));
        assert_eq!(
            r2.metadata.iter().collect::<Vec<_>>(),
            vec![("signature_severity", "Major")]
        );
        let missing = dir.path().join("missing.rules");
        assert!(matches!(
            load_files(&[&a, &missing], &Vars::default()),
            Err(RulesError::Io { .. })
        ));
    }

    #[test]
    fn lines_skip_comments_and_join_continuations() {
        let text = "# c\nalert tcp any any -> any any \\\n (sid:1;)\n\n#alert x\nalert udp any any -> any any (sid:2;)\n";
        let lines = rule_lines(text);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].0, 2);
        assert!(lines[0].1.ends_with("(sid:1;)"));
        let (rules, checks) = compile_text(text, "t", &Vars::default());
        assert_eq!(rules.len(), 2);
        let mut s = CheckSummary::default();
        for c in &checks {
            s.add(c);
        }
        assert_eq!(s.supported, 2);
        assert!((s.supported_percent() - 100.0).abs() < f64::EPSILON);
    }

    #[test]
    fn classification_gives_category_and_severity() {
        let classes = Classes::parse(
            "config classification: trojan-activity,A Network Trojan was detected,1\n",
        );
        let set = RuleSet {
            engine: Engine::default(),
            classes,
        };
        let (rules, _) = compile_text(
            "alert tcp any any -> any any (classtype:trojan-activity; sid:1;)\nalert tcp any any -> any any (classtype:trojan-activity; priority:2; sid:2;)",
            "t",
            &Vars::default(),
        );
        assert_eq!(
            set.category(&rules[0]),
            ("A Network Trojan was detected".to_string(), 1)
        );
        assert_eq!(set.category(&rules[1]).1, 2);
    }
}
