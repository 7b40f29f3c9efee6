//! The streaming matcher: routes an event to the rules of its logsource, selects candidate
//! rules with one Aho-Corasick pass over the event's text, and evaluates only those.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use canh_core::{Event, Severity};
use serde::{Deserialize, Serialize};

use crate::event::PreparedEvent;
use crate::ruleset::{Route, RuleSet};

/// A rule that matched an event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Match {
    /// Index of the rule in its [`RuleSet`].
    pub rule_index: usize,
    /// `id` of the rule.
    pub rule_id: Option<String>,
    /// `title` of the rule.
    pub title: String,
    /// `level` as written in the rule.
    pub level: Option<String>,
    /// The level as a Canh severity.
    pub severity: Severity,
    /// ATT&CK tags (`attack.*`).
    pub tags: Vec<String>,
    /// `author` of the rule.
    pub author: Option<String>,
    /// The rule's file.
    pub rule_path: Option<PathBuf>,
    /// False for base rules of correlations that do not `generate` alerts of their own.
    pub generate: bool,
    /// Index of the compiled variant that matched (used for correlation field mapping).
    pub variant: usize,
}

/// Rules that share a route, with their literal prefilter.
#[derive(Debug, Default)]
struct Bucket {
    /// Indices into `RuleSet::variants`.
    variants: Vec<usize>,
    /// For each pattern of `ac`, the local indices (into `variants`) that require it.
    pattern_rules: Vec<Vec<u32>>,
    /// Local indices of variants that have no required literal.
    always: Vec<u32>,
    ac: Option<AhoCorasick>,
}

impl Bucket {
    fn build(set: &RuleSet, variants: Vec<usize>) -> Bucket {
        let mut patterns: HashMap<String, usize> = HashMap::new();
        let mut pattern_rules: Vec<Vec<u32>> = Vec::new();
        let mut always = Vec::new();
        for (local, &vi) in variants.iter().enumerate() {
            let local = u32::try_from(local).unwrap_or(u32::MAX);
            match set.variants[vi].node.required() {
                None => always.push(local),
                Some(lits) => {
                    for lit in lits {
                        let next = patterns.len();
                        let id = *patterns.entry(lit).or_insert(next);
                        if id == pattern_rules.len() {
                            pattern_rules.push(Vec::new());
                        }
                        if pattern_rules[id].last() != Some(&local) {
                            pattern_rules[id].push(local);
                        }
                    }
                }
            }
        }
        let mut pats: Vec<(String, usize)> = patterns.into_iter().collect();
        pats.sort_by_key(|(_, id)| *id);
        let ac = if pats.is_empty() {
            None
        } else {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::Standard)
                .build(pats.iter().map(|(p, _)| p.as_bytes()))
                .map_err(|e| tracing::warn!(error = %e, "literal prefilter disabled"))
                .ok()
        };
        if ac.is_none() {
            // Without an automaton every rule is a candidate.
            always = (0..u32::try_from(variants.len()).unwrap_or(u32::MAX)).collect();
        }
        Bucket {
            variants,
            pattern_rules,
            always,
            ac,
        }
    }
}

/// Evaluates a [`RuleSet`] on events. Cheap to share between threads (`Arc` inside).
#[derive(Clone, Debug)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    set: RuleSet,
    /// Windows buckets by (channel lower-cased, event id); `None` id = any other id.
    windows: HashMap<(String, Option<u64>), Bucket>,
    any_windows: Bucket,
    other: Bucket,
}

impl Engine {
    /// Builds the routing tables and prefilters of `set`.
    pub fn new(set: RuleSet) -> Engine {
        let mut by_key: HashMap<(String, Option<u64>), Vec<usize>> = HashMap::new();
        let mut channel_any: HashMap<String, Vec<usize>> = HashMap::new();
        let mut any_windows = Vec::new();
        let mut other = Vec::new();
        for (i, v) in set.variants.iter().enumerate() {
            match &v.route {
                Route::Channel {
                    channels,
                    event_ids,
                } => {
                    for ch in channels {
                        if event_ids.is_empty() {
                            channel_any.entry(ch.clone()).or_default().push(i);
                        } else {
                            for id in event_ids {
                                by_key.entry((ch.clone(), Some(*id))).or_default().push(i);
                            }
                        }
                    }
                }
                Route::AnyWindows => any_windows.push(i),
                Route::Other => other.push(i),
            }
        }
        for (ch, list) in &channel_any {
            by_key.entry((ch.clone(), None)).or_default().extend(list);
        }
        let mut windows = HashMap::with_capacity(by_key.len());
        for ((ch, id), mut list) in by_key {
            if id.is_some() {
                list.extend(channel_any.get(&ch).into_iter().flatten());
            }
            list.extend(&any_windows);
            list.sort_unstable();
            list.dedup();
            windows.insert((ch, id), Bucket::build(&set, list));
        }
        let any_windows = Bucket::build(&set, any_windows);
        let other = Bucket::build(&set, other);
        Engine {
            inner: Arc::new(Inner {
                set,
                windows,
                any_windows,
                other,
            }),
        }
    }

    /// The rules this engine runs.
    pub fn ruleset(&self) -> &RuleSet {
        &self.inner.set
    }

    /// The rules that match `event`.
    pub fn matches(&self, event: &Event) -> Vec<Match> {
        let mut out = Vec::new();
        self.for_each_match(event, |m| out.push(m));
        out
    }

    /// Calls `f` for every rule that matches `event`.
    pub fn for_each_match(&self, event: &Event, mut f: impl FnMut(Match)) {
        let prepared = PreparedEvent::new(event);
        let bucket = self.bucket(&prepared);
        let mut scratch = Vec::new();
        self.run_bucket(bucket, &prepared, &mut scratch, &mut |vi| {
            f(self.to_match(vi))
        });
    }

    fn bucket(&self, ev: &PreparedEvent<'_>) -> &Bucket {
        let inner = &*self.inner;
        let Some(channel) = ev.field("winlog.channel").and_then(|f| f.lower.first()) else {
            return &inner.other;
        };
        let id = ev
            .field("winlog.event_id")
            .and_then(|f| f.orig.first())
            .and_then(|s| s.parse::<u64>().ok());
        let key = (channel.clone(), id);
        if let Some(b) = inner.windows.get(&key) {
            return b;
        }
        inner
            .windows
            .get(&(channel.clone(), None))
            .unwrap_or(&inner.any_windows)
    }

    fn run_bucket(
        &self,
        bucket: &Bucket,
        ev: &PreparedEvent<'_>,
        seen: &mut Vec<bool>,
        f: &mut dyn FnMut(usize),
    ) {
        if bucket.variants.is_empty() {
            return;
        }
        seen.clear();
        seen.resize(bucket.variants.len(), false);
        for &l in &bucket.always {
            seen[l as usize] = true;
        }
        if let Some(ac) = &bucket.ac {
            // A frequent literal ("\\", ".exe") occurs many times per event: mark its rules
            // once.
            let mut pattern_seen = vec![false; bucket.pattern_rules.len()];
            for field in &ev.fields {
                for text in &field.lower {
                    for m in ac.find_overlapping_iter(text.as_str()) {
                        let p = m.pattern().as_usize();
                        if std::mem::replace(&mut pattern_seen[p], true) {
                            continue;
                        }
                        for &l in &bucket.pattern_rules[p] {
                            seen[l as usize] = true;
                        }
                    }
                }
            }
        }
        let variants = &self.inner.set.variants;
        let mut last_rule = usize::MAX;
        for (local, &vi) in bucket.variants.iter().enumerate() {
            if !seen[local] {
                continue;
            }
            let v = &variants[vi];
            // Two variants of one rule can both hold; report the rule once.
            if v.rule == last_rule {
                continue;
            }
            if v.node.eval(ev) {
                last_rule = v.rule;
                f(vi);
            }
        }
    }

    fn to_match(&self, vi: usize) -> Match {
        let set = &self.inner.set;
        let rule = set.variants[vi].rule;
        let meta = &set.rules[rule];
        Match {
            rule_index: rule,
            rule_id: meta.id.clone(),
            title: meta.title.clone(),
            level: meta.level.clone(),
            severity: meta.severity(),
            tags: meta.attack_tags().map(str::to_owned).collect(),
            author: meta.author.clone(),
            rule_path: meta.path.clone(),
            generate: set.generate[rule],
            variant: vi,
        }
    }

    /// Evaluates every rule of the set on `event` without routing or prefilter (reference
    /// interpreter; slow). Returns the indices of matching rules.
    pub fn matches_unfiltered(&self, event: &Event) -> Vec<usize> {
        let ev = PreparedEvent::new(event);
        let is_windows = ev.field("winlog.channel").is_some();
        let channel = ev
            .field("winlog.channel")
            .and_then(|f| f.lower.first())
            .cloned();
        let id = ev
            .field("winlog.event_id")
            .and_then(|f| f.orig.first())
            .and_then(|s| s.parse::<u64>().ok());
        let mut out = Vec::new();
        for v in &self.inner.set.variants {
            let routed = match &v.route {
                Route::Channel {
                    channels,
                    event_ids,
                } => {
                    channel.as_ref().is_some_and(|c| channels.contains(c))
                        && (event_ids.is_empty() || id.is_some_and(|i| event_ids.contains(&i)))
                }
                Route::AnyWindows => is_windows,
                Route::Other => !is_windows,
            };
            if routed && v.node.eval(&ev) && !out.contains(&v.rule) {
                out.push(v.rule);
            }
        }
        out.sort_unstable();
        out
    }
}
