//! Sigma correlation rules (event_count, value_count, temporal, temporal_ordered, value_sum,
//! value_avg, value_percentile) and the [`Correlator`] that runs them over matches.
//!
//! Windows slide: for count/sum/avg/percentile with `gt`/`gte`/`eq`/`neq` conditions the
//! condition is checked after each event, over the events of the last `timespan` in the group;
//! when it holds an alert is raised and the group starts afresh. Conditions with `lt`/`lte`
//! can only be decided once a window is over: they are checked when the first event of a
//! group is older than `timespan` (on the next event of that group, or at [`Correlator::flush`]).

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value as Yaml};

use crate::engine::Match;
use crate::error::RuleError;
use crate::rule::RuleMeta;
use crate::ruleset::RuleSet;

/// The kind of a correlation rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorrelationType {
    /// Number of events.
    EventCount,
    /// Number of distinct values of a field.
    ValueCount,
    /// All referenced rules matched, in any order.
    Temporal,
    /// All referenced rules matched, in the order given.
    TemporalOrdered,
    /// Sum of a numeric field.
    ValueSum,
    /// Average of a numeric field.
    ValueAvg,
    /// Percentile of a numeric field.
    ValuePercentile,
}

/// What a correlation refers to: a detection rule or another correlation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Ref {
    Rule(usize),
    Correlation(usize),
}

/// A compiled correlation rule.
#[derive(Clone, Debug)]
pub struct CorrelationRule {
    /// Its metadata.
    pub meta: RuleMeta,
    /// Its type.
    pub kind: CorrelationType,
    refs: Vec<Ref>,
    group_by: Vec<String>,
    /// alias → (referenced rule → field).
    aliases: BTreeMap<String, Vec<(Ref, String)>>,
    timespan: Duration,
    conditions: Vec<(String, f64)>,
    field: Option<String>,
    percentile: f64,
}

fn parse_timespan(s: &str) -> Result<Duration, RuleError> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| RuleError::invalid(format!("bad timespan {s:?}")))?;
    let d = match unit {
        "s" => Duration::seconds(n),
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        "w" => Duration::weeks(n),
        "M" => Duration::days(30 * n),
        "y" => Duration::days(365 * n),
        _ => return Err(RuleError::invalid(format!("bad timespan unit in {s:?}"))),
    };
    Ok(d)
}

fn strings(v: Option<&Yaml>) -> Vec<String> {
    match v {
        Some(Yaml::Sequence(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        Some(Yaml::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn find_ref(set: &RuleSet, r: &str) -> Option<Ref> {
    if let Some(i) = set.find(r) {
        return Some(Ref::Rule(i));
    }
    set.correlations
        .iter()
        .position(|c| c.meta.id.as_deref() == Some(r) || c.meta.name.as_deref() == Some(r))
        .map(Ref::Correlation)
}

/// Compiles a `correlation` section; marks base rules as not generating unless asked.
pub(crate) fn compile(
    set: &mut RuleSet,
    meta: RuleMeta,
    spec: &Mapping,
) -> Result<CorrelationRule, RuleError> {
    let kind: CorrelationType = spec
        .get("type")
        .and_then(|t| serde_yaml::from_value(t.clone()).ok())
        .ok_or_else(|| RuleError::invalid("correlation: missing or unknown type"))?;
    let mut refs = Vec::new();
    for r in strings(spec.get("rules")) {
        refs.push(
            find_ref(set, &r)
                .ok_or_else(|| RuleError::invalid(format!("correlation: unknown rule '{r}'")))?,
        );
    }
    if refs.is_empty() {
        return Err(RuleError::invalid("correlation: no rules"));
    }
    let timespan = spec
        .get("timespan")
        .and_then(Yaml::as_str)
        .ok_or_else(|| RuleError::invalid("correlation: missing timespan"))
        .and_then(parse_timespan)?;
    let mut conditions = Vec::new();
    let mut field = None;
    let mut percentile = 95.0;
    if let Some(Yaml::Mapping(c)) = spec.get("condition") {
        for (k, v) in c {
            let k = k.as_str().unwrap_or_default();
            match k {
                "field" => field = v.as_str().map(str::to_owned),
                "percentile" => percentile = v.as_f64().unwrap_or(95.0),
                "gt" | "gte" | "lt" | "lte" | "eq" | "neq" => {
                    let n = v
                        .as_f64()
                        .ok_or_else(|| RuleError::invalid("correlation: condition not a number"))?;
                    conditions.push((k.to_owned(), n));
                }
                other => {
                    return Err(RuleError::invalid(format!(
                        "correlation: unknown '{other}'"
                    )));
                }
            }
        }
    }
    let temporal = matches!(
        kind,
        CorrelationType::Temporal | CorrelationType::TemporalOrdered
    );
    if conditions.is_empty() && !temporal {
        return Err(RuleError::invalid("correlation: missing condition"));
    }
    if field.is_none() && !temporal && kind != CorrelationType::EventCount {
        return Err(RuleError::invalid("correlation: condition needs 'field'"));
    }
    let mut aliases = BTreeMap::new();
    if let Some(Yaml::Mapping(a)) = spec.get("aliases") {
        for (alias, targets) in a {
            let Some(alias) = alias.as_str() else {
                continue;
            };
            let mut list = Vec::new();
            if let Yaml::Mapping(t) = targets {
                for (rule, f) in t {
                    let (Some(rule), Some(f)) = (rule.as_str(), f.as_str()) else {
                        continue;
                    };
                    if let Some(r) = find_ref(set, rule) {
                        list.push((r, f.to_owned()));
                    }
                }
            }
            aliases.insert(alias.to_owned(), list);
        }
    }
    let generate = spec
        .get("generate")
        .and_then(Yaml::as_bool)
        .unwrap_or(false);
    if !generate {
        for r in &refs {
            if let Ref::Rule(i) = r {
                set.generate[*i] = false;
            }
        }
    }
    Ok(CorrelationRule {
        meta,
        kind,
        refs,
        group_by: strings(spec.get("group-by")),
        aliases,
        timespan,
        conditions,
        field,
        percentile,
    })
}

/// An alert raised by a correlation rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorrelationAlert {
    /// Index of the correlation in its rule set.
    pub correlation_index: usize,
    /// `id` of the correlation rule.
    pub rule_id: Option<String>,
    /// `title` of the correlation rule.
    pub title: String,
    /// `level` of the correlation rule.
    pub level: Option<String>,
    /// The level as a Canh severity.
    pub severity: canh_core::Severity,
    /// ATT&CK tags.
    pub tags: Vec<String>,
    /// The correlation type.
    pub kind: CorrelationType,
    /// The group-by values of the group that fired.
    pub group: BTreeMap<String, String>,
    /// The aggregated value (count, distinct count, sum, …) that met the condition.
    pub value: f64,
    /// Time of the first and last event of the window.
    pub first_seen: DateTime<Utc>,
    /// Time of the last event of the window.
    pub last_seen: DateTime<Utc>,
    /// How many events were in the window.
    pub event_count: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct GroupState {
    /// (time, index of the referenced rule in `refs`, value of the condition field).
    events: VecDeque<(DateTime<Utc>, usize, Option<String>)>,
}

/// Correlation state: serialisable, so that a server can persist it across restarts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Correlator {
    /// Per correlation rule: group key → window.
    groups: Vec<BTreeMap<String, GroupState>>,
}

/// Where a signal's field values come from.
enum Source<'a> {
    Event {
        set: &'a RuleSet,
        variant: usize,
        event: &'a canh_core::Event,
    },
    Alert(&'a BTreeMap<String, String>),
}

impl Source<'_> {
    fn get(&self, field: &str) -> Option<String> {
        match self {
            Source::Event {
                set,
                variant,
                event,
            } => {
                let mapper = &set.variants.get(*variant)?.mapper;
                let stored = mapper.map_field(field).unwrap_or_else(|| field.to_owned());
                let v = event.get(&stored).or_else(|| event.get(field))?;
                match v {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                }
            }
            Source::Alert(group) => group.get(field).cloned(),
        }
    }
}

impl Correlator {
    /// A correlator with empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the windows of the correlations of `old` that `new` still has (same id, or same
    /// title when they have no id), at their new positions; the others start empty. Call it
    /// when the rule set is replaced.
    pub fn carry_over(&mut self, old: &RuleSet, new: &RuleSet) {
        let key = |c: &CorrelationRule| (c.meta.id.clone(), c.meta.title.clone(), c.refs.len());
        let mut by_key: std::collections::HashMap<_, BTreeMap<String, GroupState>> = old
            .correlations
            .iter()
            .zip(std::mem::take(&mut self.groups))
            .map(|(c, g)| (key(c), g))
            .collect();
        self.groups = new
            .correlations
            .iter()
            .map(|c| by_key.remove(&key(c)).unwrap_or_default())
            .collect();
    }

    /// Feeds one match of `event`; returns the correlation alerts it completes.
    pub fn process(
        &mut self,
        set: &RuleSet,
        m: &Match,
        event: &canh_core::Event,
    ) -> Vec<CorrelationAlert> {
        let src = Source::Event {
            set,
            variant: m.variant,
            event,
        };
        let mut out = Vec::new();
        self.signal(
            set,
            Ref::Rule(m.rule_index),
            event.timestamp,
            &src,
            &mut out,
        );
        out
    }

    fn signal(
        &mut self,
        set: &RuleSet,
        what: Ref,
        time: DateTime<Utc>,
        src: &Source<'_>,
        out: &mut Vec<CorrelationAlert>,
    ) {
        if self.groups.len() < set.correlations.len() {
            self.groups
                .resize_with(set.correlations.len(), BTreeMap::new);
        }
        for (ci, c) in set.correlations.iter().enumerate() {
            let Some(pos) = c.refs.iter().position(|r| *r == what) else {
                continue;
            };
            let mut group = BTreeMap::new();
            for g in &c.group_by {
                let field = c
                    .aliases
                    .get(g)
                    .and_then(|list| list.iter().find(|(r, _)| *r == what))
                    .map_or(g.as_str(), |(_, f)| f.as_str());
                group.insert(g.clone(), src.get(field).unwrap_or_default());
            }
            let key = group.values().cloned().collect::<Vec<_>>().join("\u{1f}");
            let value = c.field.as_deref().and_then(|f| src.get(f));
            let state = self.groups[ci].entry(key.clone()).or_default();
            let mut fired = Vec::new();
            if has_lt(c) {
                let expired = state
                    .events
                    .front()
                    .is_some_and(|(first, ..)| time - *first > c.timespan);
                if expired {
                    if let Some(a) = evaluate(ci, c, state, &group) {
                        fired.push(a);
                    }
                    state.events.clear();
                }
                state.events.push_back((time, pos, value));
            } else {
                state.events.push_back((time, pos, value));
                while state
                    .events
                    .front()
                    .is_some_and(|(t, ..)| time - *t > c.timespan)
                {
                    state.events.pop_front();
                }
                if let Some(a) = evaluate(ci, c, state, &group) {
                    fired.push(a);
                    state.events.clear();
                }
            }
            if state.events.is_empty() {
                self.groups[ci].remove(&key);
            }
            for a in fired {
                let alert_src = Source::Alert(&a.group);
                let mut chained = Vec::new();
                self.signal(
                    set,
                    Ref::Correlation(ci),
                    a.last_seen,
                    &alert_src,
                    &mut chained,
                );
                out.push(a);
                out.append(&mut chained);
            }
        }
    }

    /// Decides the windows still open (for `lt`/`lte` conditions) at the end of the input.
    pub fn flush(&mut self, set: &RuleSet) -> Vec<CorrelationAlert> {
        let mut out = Vec::new();
        for (ci, groups) in self.groups.iter_mut().enumerate() {
            let Some(c) = set.correlations.get(ci) else {
                continue;
            };
            if !has_lt(c) {
                continue;
            }
            for (_, state) in std::mem::take(groups) {
                let group = group_of(c, &state);
                if let Some(a) = evaluate(ci, c, &state, &group) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// Drops windows whose last event is older than `now` minus their timespan (call now and
    /// then in a long-running process to bound memory).
    pub fn expire(&mut self, set: &RuleSet, now: DateTime<Utc>) {
        for (ci, groups) in self.groups.iter_mut().enumerate() {
            let Some(c) = set.correlations.get(ci) else {
                continue;
            };
            if has_lt(c) {
                continue;
            }
            groups.retain(|_, s| {
                s.events
                    .back()
                    .is_some_and(|(t, ..)| now - *t <= c.timespan)
            });
        }
    }

    /// How many groups hold open windows.
    pub fn open_groups(&self) -> usize {
        self.groups.iter().map(BTreeMap::len).sum()
    }
}

fn has_lt(c: &CorrelationRule) -> bool {
    c.conditions.iter().any(|(op, _)| op == "lt" || op == "lte")
}

fn group_of(_c: &CorrelationRule, _state: &GroupState) -> BTreeMap<String, String> {
    // The group values are part of the key only; a flushed window reports none.
    BTreeMap::new()
}

fn test(op: &str, left: f64, right: f64) -> bool {
    match op {
        "gt" => left > right,
        "gte" => left >= right,
        "lt" => left < right,
        "lte" => left <= right,
        "eq" => (left - right).abs() < f64::EPSILON,
        "neq" => (left - right).abs() >= f64::EPSILON,
        _ => false,
    }
}

fn numbers(state: &GroupState) -> Vec<f64> {
    state
        .events
        .iter()
        .filter_map(|(_, _, v)| v.as_deref()?.trim().parse().ok())
        .collect()
}

fn evaluate(
    ci: usize,
    c: &CorrelationRule,
    state: &GroupState,
    group: &BTreeMap<String, String>,
) -> Option<CorrelationAlert> {
    let (first, last) = (state.events.front()?.0, state.events.back()?.0);
    let value = match c.kind {
        CorrelationType::EventCount => state.events.len() as f64,
        CorrelationType::ValueCount => {
            let mut distinct: Vec<&str> = state
                .events
                .iter()
                .filter_map(|(_, _, v)| v.as_deref())
                .collect();
            distinct.sort_unstable();
            distinct.dedup();
            distinct.len() as f64
        }
        CorrelationType::ValueSum => numbers(state).iter().sum(),
        CorrelationType::ValueAvg => {
            let n = numbers(state);
            if n.is_empty() {
                return None;
            }
            n.iter().sum::<f64>() / n.len() as f64
        }
        CorrelationType::ValuePercentile => {
            let mut n = numbers(state);
            if n.is_empty() {
                return None;
            }
            n.sort_by(f64::total_cmp);
            let rank = (c.percentile / 100.0 * (n.len() - 1) as f64).round();
            n[(rank as usize).min(n.len() - 1)]
        }
        CorrelationType::Temporal => {
            let all = (0..c.refs.len()).all(|i| state.events.iter().any(|(_, p, _)| *p == i));
            if !all {
                return None;
            }
            c.refs.len() as f64
        }
        CorrelationType::TemporalOrdered => {
            let mut want = 0;
            for (_, p, _) in &state.events {
                if *p == want {
                    want += 1;
                    if want == c.refs.len() {
                        break;
                    }
                }
            }
            if want < c.refs.len() {
                return None;
            }
            c.refs.len() as f64
        }
    };
    if !c.conditions.iter().all(|(op, n)| test(op, value, *n)) {
        return None;
    }
    Some(CorrelationAlert {
        correlation_index: ci,
        rule_id: c.meta.id.clone(),
        title: c.meta.title.clone(),
        level: c.meta.level.clone(),
        severity: c.meta.severity(),
        tags: c.meta.attack_tags().map(str::to_owned).collect(),
        kind: c.kind,
        group: group.clone(),
        value,
        first_seen: first,
        last_seen: last,
        event_count: state.events.len(),
    })
}
