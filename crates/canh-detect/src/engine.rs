//! The streaming matcher: routes an event to the rules of its logsource, selects candidate
//! rules with one Aho-Corasick pass over the event's text, and evaluates only those.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use canh_core::{Event, Severity};
use serde::{Deserialize, Serialize};

use crate::event::PreparedEvent;
use crate::fast::{FNode, FieldIds, KEYWORD_KEY, Prepared, score};
use crate::indicators::{INDICATOR_FIELDS, IndicatorKind, IndicatorMatch, IndicatorSet};
use crate::ruleset::{Route, RuleSet};
use rustc_hash::FxHashMap;

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

/// Keyword literal sets up to this size get a gate: `aho-corasick`'s SIMD searcher (Teddy)
/// tells whether any of them occurs before the automaton walks the keyword texts. Most events
/// hold none of them, while the literals of a field scanner usually occur somewhere, so only
/// the keyword scanner has one (measured: a gate on every scanner costs 5 % more).
const GATED_SET: usize = 64;

/// Most literal groups a variant keeps for the prefilter (one bit each).
const MAX_GROUPS: usize = 64;

/// One literal requirement of a variant: `bit` of the variant's mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    local: u32,
    bit: u8,
}

/// The literals required in one field (or in any keyword field), with one automaton.
#[derive(Debug)]
struct Scanner {
    /// For small literal sets: a quick test (SIMD) whether any literal occurs at all.
    gate: Option<AhoCorasick>,
    ac: Literals,
    /// For each literal of `ac`, its range in `entries`.
    lit_entries: Vec<(u32, u32)>,
    entries: Vec<Entry>,
}

/// An automaton over a scanner's (lower-cased, distinct) literals.
enum Literals {
    /// A double-array Aho-Corasick automaton: compact, and faster than the crate
    /// `aho-corasick`'s automata on overlapping walks over short texts (see BENCHMARKS.md).
    Double(daachorse::DoubleArrayAhoCorasick<u32>),
    /// Kept for literal sets the double array refuses.
    Other(AhoCorasick),
}

impl std::fmt::Debug for Literals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Literals::Double(d) => write!(f, "Double({} states)", d.num_states()),
            Literals::Other(a) => write!(f, "Other({} literals)", a.patterns_len()),
        }
    }
}

impl Scanner {
    fn build(lits: Vec<(String, Vec<Entry>)>, gated: bool) -> Option<Scanner> {
        let gate = if gated && lits.len() <= GATED_SET {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostFirst)
                // Small in memory (every Windows bucket has one); the SIMD prefilter does
                // the work.
                .kind(Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
                .build(lits.iter().map(|(p, _)| p.as_bytes()))
                .ok()
        } else {
            None
        };
        let ac = match daachorse::DoubleArrayAhoCorasick::<u32>::new(lits.iter().map(|(p, _)| p)) {
            Ok(d) => Literals::Double(d),
            Err(e) => {
                tracing::debug!(error = %e, "double-array automaton refused; using aho-corasick");
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .build(lits.iter().map(|(p, _)| p.as_bytes()))
                    .map_err(|e| tracing::warn!(error = %e, "literal prefilter disabled"))
                    .map(Literals::Other)
                    .ok()?
            }
        };
        let mut entries = Vec::new();
        let mut lit_entries = Vec::with_capacity(lits.len());
        for (_, mut es) in lits {
            es.sort_unstable();
            es.dedup();
            let a = u32::try_from(entries.len()).unwrap_or(u32::MAX);
            entries.extend(es);
            lit_entries.push((a, u32::try_from(entries.len()).unwrap_or(u32::MAX)));
        }
        Some(Scanner {
            gate,
            ac,
            lit_entries,
            entries,
        })
    }

    /// Marks the groups hit by the literals found in `text`.
    fn scan(&self, text: &str, lits: &mut Vec<u32>, mask: &mut [u64], touched: &mut Vec<u32>) {
        lits.clear();
        if self.gate.as_ref().is_some_and(|g| !g.is_match(text)) {
            return;
        }
        match &self.ac {
            Literals::Double(d) => lits.extend(d.find_overlapping_iter(text).map(|m| m.value())),
            Literals::Other(ac) => lits.extend(
                ac.find_overlapping_iter(text)
                    .map(|m| u32::try_from(m.pattern().as_usize()).unwrap_or(0)),
            ),
        }
        if lits.len() > 1 {
            lits.sort_unstable();
            lits.dedup();
        }
        for &lit in lits.iter() {
            let (a, b) = self.lit_entries[lit as usize];
            for e in &self.entries[a as usize..b as usize] {
                let m = &mut mask[e.local as usize];
                if *m == 0 {
                    touched.push(e.local);
                }
                *m |= 1 << e.bit;
            }
        }
    }
}

/// Rules that share a route, with their literal prefilter.
#[derive(Debug, Default)]
struct Bucket {
    /// Indices into `RuleSet::variants`, ascending.
    variants: Vec<usize>,
    /// For each local variant, the mask of groups that must all be hit (0: always a
    /// candidate).
    need: Vec<u64>,
    /// Local indices of variants without a literal requirement.
    always: Vec<u32>,
    /// One scanner per field id that rules of the bucket need literals in, by id.
    fields: Vec<(u32, Scanner)>,
    /// The scanner of keyword (any keyword field) literals.
    keyword: Option<Scanner>,
}

impl Bucket {
    fn build(groups: &[Vec<Vec<(u32, String)>>], variants: Vec<usize>) -> Bucket {
        // key → literal → entries
        let mut by_key: FxHashMap<u32, FxHashMap<&str, Vec<Entry>>> = FxHashMap::default();
        let mut need = Vec::with_capacity(variants.len());
        let mut always = Vec::new();
        for (local, &vi) in variants.iter().enumerate() {
            let local = u32::try_from(local).unwrap_or(u32::MAX);
            let gs = &groups[vi];
            if gs.is_empty() {
                always.push(local);
                need.push(0);
                continue;
            }
            need.push(if gs.len() >= MAX_GROUPS {
                u64::MAX
            } else {
                (1u64 << gs.len()) - 1
            });
            for (bit, g) in gs.iter().enumerate() {
                let bit = u8::try_from(bit).unwrap_or(63);
                for (key, lit) in g {
                    by_key
                        .entry(*key)
                        .or_default()
                        .entry(lit.as_str())
                        .or_default()
                        .push(Entry { local, bit });
                }
            }
        }
        let mut fields = Vec::new();
        let mut keyword = None;
        let mut failed = false;
        for (key, lits) in by_key {
            let mut lits: Vec<(String, Vec<Entry>)> =
                lits.into_iter().map(|(l, e)| (l.to_owned(), e)).collect();
            lits.sort();
            match Scanner::build(lits, key == KEYWORD_KEY) {
                Some(sc) if key == KEYWORD_KEY => keyword = Some(sc),
                Some(sc) => fields.push((key, sc)),
                None => failed = true,
            }
        }
        fields.sort_unstable_by_key(|(k, _)| *k);
        if failed {
            // Without its automata every rule is a candidate.
            always = (0..u32::try_from(variants.len()).unwrap_or(u32::MAX)).collect();
            need.iter_mut().for_each(|n| *n = 0);
            fields.clear();
            keyword = None;
        }
        Bucket {
            variants,
            need,
            always,
            fields,
            keyword,
        }
    }
}

/// Per-thread buffers reused from event to event.
#[derive(Debug, Default)]
struct Scratch {
    prepared: Prepared,
    mask: Vec<u64>,
    touched: Vec<u32>,
    lits: Vec<u32>,
    candidates: Vec<u32>,
    hits: Vec<usize>,
    iocs: Vec<IndicatorMatch>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Evaluates a [`RuleSet`] on events. Cheap to share between threads (`Arc` inside).
#[derive(Clone, Debug)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    set: RuleSet,
    /// The compiled detection of each variant.
    nodes: Vec<FNode>,
    ids: FieldIds,
    channel_id: u32,
    event_id_id: u32,
    /// Fields checked against indicators: (id, kind, name).
    ioc_fields: Vec<(u32, IndicatorKind, &'static str)>,
    /// Shared by every engine derived with [`Engine::with_rules`].
    indicators: Arc<RwLock<Vec<Arc<IndicatorSet>>>>,
    /// Windows buckets by channel (lower-cased), then by event id; `None` id = any other id.
    windows: FxHashMap<String, FxHashMap<Option<u64>, Bucket>>,
    any_windows: Bucket,
    other: Bucket,
}

impl Engine {
    /// Builds the routing tables and prefilters of `set`.
    pub fn new(set: RuleSet) -> Engine {
        Self::build(set, Arc::new(RwLock::new(Vec::new())))
    }

    /// An engine running `set` that shares this engine's indicator sets (a set added or
    /// removed through either applies to both).
    pub fn with_rules(&self, set: RuleSet) -> Engine {
        Self::build(set, Arc::clone(&self.inner.indicators))
    }

    fn build(set: RuleSet, indicators: Arc<RwLock<Vec<Arc<IndicatorSet>>>>) -> Engine {
        let mut ids = FieldIds::default();
        let channel_id = ids.intern("winlog.channel");
        let event_id_id = ids.intern("winlog.event_id");
        let nodes: Vec<FNode> = set
            .variants
            .iter()
            .map(|v| FNode::compile(&v.node, &mut ids))
            .collect();
        let ioc_fields = INDICATOR_FIELDS
            .iter()
            .map(|(name, kind)| (ids.intern(name), *kind, *name))
            .collect();
        ids.finish();
        let groups: Vec<Vec<Vec<(u32, String)>>> = nodes
            .iter()
            .map(|n| {
                let mut gs = n.groups();
                for g in &mut gs {
                    g.sort();
                    g.dedup();
                }
                gs.sort();
                gs.dedup();
                // Keep the most selective groups.
                gs.sort_by_key(|g| std::cmp::Reverse(score(g)));
                gs.truncate(MAX_GROUPS);
                gs
            })
            .collect();
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
        let mut windows: FxHashMap<String, FxHashMap<Option<u64>, Bucket>> = FxHashMap::default();
        for ((ch, id), mut list) in by_key {
            if id.is_some() {
                list.extend(channel_any.get(&ch).into_iter().flatten());
            }
            list.extend(&any_windows);
            list.sort_unstable();
            list.dedup();
            let b = Bucket::build(&groups, list);
            windows.entry(ch).or_default().insert(id, b);
        }
        let any_windows = Bucket::build(&groups, any_windows);
        let other = Bucket::build(&groups, other);
        Engine {
            inner: Arc::new(Inner {
                set,
                nodes,
                ids,
                channel_id,
                event_id_id,
                ioc_fields,
                indicators,
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
    pub fn for_each_match(&self, event: &Event, f: impl FnMut(Match)) {
        self.eval(event, false, f, |_| {});
    }

    /// Calls `on_rule` for every rule and `on_indicator` for every indicator that matches
    /// `event`, in one pass over the event.
    pub fn evaluate(
        &self,
        event: &Event,
        on_rule: impl FnMut(Match),
        on_indicator: impl FnMut(IndicatorMatch),
    ) {
        self.eval(event, true, on_rule, on_indicator);
    }

    fn eval(
        &self,
        event: &Event,
        iocs: bool,
        mut on_rule: impl FnMut(Match),
        mut on_indicator: impl FnMut(IndicatorMatch),
    ) {
        let (hits, found) = SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => {
                self.run(event, iocs, &mut s);
                (std::mem::take(&mut s.hits), std::mem::take(&mut s.iocs))
            }
            // Re-entered from a callback on this thread: use fresh buffers.
            Err(_) => {
                let mut s = Scratch::default();
                self.run(event, iocs, &mut s);
                (s.hits, s.iocs)
            }
        });
        if hits.is_empty() && found.is_empty() {
            return;
        }
        for &vi in &hits {
            on_rule(self.to_match(vi));
        }
        for m in found {
            on_indicator(m);
        }
        SCRATCH.with(|cell| {
            if let Ok(mut s) = cell.try_borrow_mut() {
                let mut hits = hits;
                hits.clear();
                s.hits = hits;
            }
        });
    }

    /// Adds `set`, replacing a set of the same name.
    pub fn set_indicators(&self, set: IndicatorSet) {
        let mut sets = self
            .inner
            .indicators
            .write()
            .unwrap_or_else(|e| e.into_inner());
        sets.retain(|s| s.name() != set.name());
        sets.push(Arc::new(set));
    }

    /// Removes the set named `name`; false when there is none.
    pub fn remove_indicators(&self, name: &str) -> bool {
        let mut sets = self
            .inner
            .indicators
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let before = sets.len();
        sets.retain(|s| s.name() != name);
        sets.len() != before
    }

    /// The loaded indicator sets.
    pub fn indicator_sets(&self) -> Vec<Arc<IndicatorSet>> {
        self.inner
            .indicators
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Matches the indicator fields of the prepared event against every set.
    fn run_indicators(&self, p: &Prepared, out: &mut Vec<IndicatorMatch>) {
        let inner = &*self.inner;
        let sets = inner.indicators.read().unwrap_or_else(|e| e.into_inner());
        if sets.is_empty() {
            return;
        }
        let now = chrono::Utc::now().timestamp();
        for &(fid, kind, name) in &inner.ioc_fields {
            let Some(f) = p.field(fid) else { continue };
            for text in p.lower_texts(f) {
                for set in sets.iter() {
                    if let Some(indicator) = set.test(kind, text, now) {
                        out.push(IndicatorMatch {
                            set: set.name().to_owned(),
                            kind,
                            field: name.to_owned(),
                            indicator,
                        });
                    }
                }
            }
        }
    }

    /// Indices of the variants matching `event` (one per rule), into `s.hits`.
    fn run(&self, event: &Event, iocs: bool, s: &mut Scratch) {
        let inner = &*self.inner;
        s.hits.clear();
        s.iocs.clear();
        s.prepared.fill(event, &inner.ids);
        if iocs {
            self.run_indicators(&s.prepared, &mut s.iocs);
        }
        let bucket = self.bucket(&s.prepared);
        if bucket.variants.is_empty() {
            return;
        }
        let Scratch {
            prepared: p,
            mask,
            touched,
            lits,
            candidates,
            hits,
            ..
        } = s;
        if mask.len() < bucket.variants.len() {
            mask.resize(bucket.variants.len(), 0);
        }
        touched.clear();
        candidates.clear();
        // Each scanner walks the texts of its field (or of the field standing in for it, as
        // the rules read them), and the keyword scanner the keyword texts in one go.
        for (fid, sc) in &bucket.fields {
            if let Some(f) = p.field(*fid) {
                for text in p.lower_texts(f) {
                    sc.scan(text, lits, mask, touched);
                }
            }
        }
        if let Some(sc) = &bucket.keyword {
            for text in p.keyword_spans() {
                sc.scan(text, lits, mask, touched);
            }
        }
        for &l in touched.iter() {
            let m = std::mem::take(&mut mask[l as usize]);
            if m == bucket.need[l as usize] {
                candidates.push(l);
            }
        }
        candidates.extend_from_slice(&bucket.always);
        candidates.sort_unstable();
        let variants = &inner.set.variants;
        let mut last_rule = usize::MAX;
        for &local in candidates.iter() {
            let vi = bucket.variants[local as usize];
            // Two variants of one rule can both hold; report the rule once.
            if variants[vi].rule == last_rule {
                continue;
            }
            if inner.nodes[vi].eval(p) {
                last_rule = variants[vi].rule;
                hits.push(vi);
            }
        }
    }

    fn bucket(&self, p: &Prepared) -> &Bucket {
        let inner = &*self.inner;
        let Some(channel) = p
            .field(inner.channel_id)
            .and_then(|f| p.lower_texts(f).next())
        else {
            return &inner.other;
        };
        let id = p
            .field(inner.event_id_id)
            .and_then(|f| p.texts(f).next())
            .and_then(|(o, _)| o.parse::<u64>().ok());
        let Some(by_id) = inner.windows.get(channel) else {
            return &inner.any_windows;
        };
        by_id
            .get(&id)
            .or_else(|| by_id.get(&None))
            .unwrap_or(&inner.any_windows)
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
