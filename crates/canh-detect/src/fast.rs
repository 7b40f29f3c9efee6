//! The form the engine evaluates: field names interned to small ids, an event's texts laid out
//! in reusable buffers (lower-cased once per value), and detection trees whose field lookups
//! are array indexing instead of string searches.
//!
//! The meaning of every node is the one of [`crate::ir::Node`]; [`crate::ir::Node::eval`]
//! stays the plain reference interpreter and a property test compares both.

use std::fmt::Write as _;

use canh_core::Event;
use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::event::is_keyword_field;
use crate::ir::{Node, StrOp, ValueMatcher, str_test};

/// No field / no slot.
pub(crate) const NONE: u32 = u32::MAX;
/// The prefilter key of keyword (field-less) literals.
pub(crate) const KEYWORD_KEY: u32 = u32::MAX - 1;

const EVENT_DATA: &str = "winlog.event_data.";
const USER_DATA: &str = "winlog.user_data.";

/// Field names used by rules, interned.
#[derive(Debug, Default)]
pub(crate) struct FieldIds {
    ids: FxHashMap<Box<str>, u32>,
    /// An event field name → (its own id, the id it stands in for when absent).
    ///
    /// `winlog.user_data.X` stands in for `winlog.event_data.X` (see
    /// [`crate::ir::Node::eval`]).
    by_event_name: FxHashMap<Box<str>, (u32, u32)>,
}

impl FieldIds {
    pub(crate) fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.ids.len()).unwrap_or(NONE - 2);
        self.ids.insert(name.into(), id);
        id
    }

    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Builds the event-name table; call once all names are interned.
    pub(crate) fn finish(&mut self) {
        let mut t: FxHashMap<Box<str>, (u32, u32)> = FxHashMap::default();
        for (name, &id) in &self.ids {
            t.entry(name.clone()).or_insert((NONE, NONE)).0 = id;
            if let Some(rest) = name.strip_prefix(EVENT_DATA) {
                let alias: Box<str> = format!("{USER_DATA}{rest}").into();
                t.entry(alias).or_insert((NONE, NONE)).1 = id;
            }
        }
        self.by_event_name = t;
    }

    fn lookup(&self, name: &str) -> (u32, u32) {
        self.by_event_name
            .get(name)
            .copied()
            .unwrap_or((NONE, NONE))
    }
}

/// One value test, with a `fieldref` target resolved to its id.
#[derive(Debug)]
pub(crate) struct FMatcher {
    m: ValueMatcher,
    other: u32,
    /// For a `contains` test, its `memchr::memmem` searcher, built on the first evaluation:
    /// built for every matcher up front, the searchers of the full rule set take 25 MB.
    finder: std::sync::OnceLock<Box<memchr::memmem::Finder<'static>>>,
}

/// A detection tree over interned fields.
#[derive(Debug)]
pub(crate) enum FNode {
    True,
    False,
    And(Box<[FNode]>),
    Or(Box<[FNode]>),
    Not(Box<FNode>),
    Field {
        fid: u32,
        matchers: Box<[FMatcher]>,
        all: bool,
    },
    Keyword {
        matchers: Box<[FMatcher]>,
        all: bool,
    },
}

fn matchers(ms: &[ValueMatcher], ids: &mut FieldIds) -> Box<[FMatcher]> {
    ms.iter()
        .map(|m| FMatcher {
            other: match m {
                ValueMatcher::FieldRef { other, .. } => ids.intern(other),
                _ => NONE,
            },
            finder: std::sync::OnceLock::new(),
            m: m.clone(),
        })
        .collect()
}

fn matcher_cost(m: &ValueMatcher) -> u32 {
    match m {
        ValueMatcher::Str { .. } | ValueMatcher::Null | ValueMatcher::Exists(_) => 1,
        ValueMatcher::Num { .. } | ValueMatcher::Cidr(_) | ValueMatcher::FieldRef { .. } => 2,
        ValueMatcher::Glob { .. } => 6,
        ValueMatcher::Time { .. } => 10,
        ValueMatcher::Regex { .. } => 20,
    }
}

impl FNode {
    /// Compiles `node`, interning its field names, with the children of `and`/`or` ordered
    /// cheapest first (evaluation order does not change the result).
    pub(crate) fn compile(node: &Node, ids: &mut FieldIds) -> FNode {
        match node {
            Node::True => FNode::True,
            Node::False => FNode::False,
            Node::And(c) => FNode::And(Self::children(c, ids)),
            Node::Or(c) => FNode::Or(Self::children(c, ids)),
            Node::Not(inner) => FNode::Not(Box::new(Self::compile(inner, ids))),
            Node::Field {
                field,
                matchers: ms,
                all,
            } => FNode::Field {
                fid: ids.intern(field),
                matchers: matchers(ms, ids),
                all: *all,
            },
            Node::Keyword { matchers: ms, all } => FNode::Keyword {
                matchers: matchers(ms, ids),
                all: *all,
            },
        }
    }

    fn children(c: &[Node], ids: &mut FieldIds) -> Box<[FNode]> {
        let mut v: Vec<FNode> = c.iter().map(|n| Self::compile(n, ids)).collect();
        v.sort_by_key(FNode::cost);
        v.into_boxed_slice()
    }

    fn cost(&self) -> u32 {
        match self {
            FNode::True | FNode::False => 0,
            FNode::And(c) | FNode::Or(c) => c.iter().map(FNode::cost).sum(),
            FNode::Not(inner) => inner.cost(),
            FNode::Field { matchers, .. } => matchers.iter().map(|m| matcher_cost(&m.m)).sum(),
            FNode::Keyword { matchers, .. } => {
                matchers.iter().map(|m| 8 * matcher_cost(&m.m)).sum()
            }
        }
    }

    pub(crate) fn eval(&self, p: &Prepared) -> bool {
        match self {
            FNode::True => true,
            FNode::False => false,
            FNode::And(c) => c.iter().all(|n| n.eval(p)),
            FNode::Or(c) => c.iter().any(|n| n.eval(p)),
            FNode::Not(inner) => !inner.eval(p),
            FNode::Field { fid, matchers, all } => {
                let f = p.field(*fid);
                if *all {
                    matchers.iter().all(|m| m.test_field(f, p))
                } else {
                    matchers.iter().any(|m| m.test_field(f, p))
                }
            }
            FNode::Keyword { matchers, all } => {
                let test = |m: &FMatcher| {
                    p.fields
                        .iter()
                        .filter(|f| f.keyword)
                        .any(|f| p.texts(f).any(|(o, l)| m.test_text(o, l, p)))
                };
                if *all {
                    matchers.iter().all(test)
                } else {
                    matchers.iter().any(test)
                }
            }
        }
    }

    /// Literal groups of which every one must be hit for the node to match: each group is a
    /// set of (field key, lower-cased literal) pairs, one of which must occur in that field
    /// ([`KEYWORD_KEY`]: in any keyword field). Empty: no requirement known.
    pub(crate) fn groups(&self) -> Vec<Vec<(u32, String)>> {
        match self {
            FNode::True | FNode::False | FNode::Not(_) => Vec::new(),
            FNode::And(c) => c.iter().flat_map(FNode::groups).collect(),
            FNode::Or(c) => {
                let mut union = Vec::new();
                for n in c.iter() {
                    let Some(best) = n.groups().into_iter().max_by_key(|g| score(g)) else {
                        return Vec::new();
                    };
                    union.extend(best);
                }
                vec![union]
            }
            FNode::Field { fid, matchers, all } => leaf_groups(*fid, matchers, *all),
            FNode::Keyword { matchers, all } => leaf_groups(KEYWORD_KEY, matchers, *all),
        }
    }
}

/// How selective a group is: its shortest literal's length.
pub(crate) fn score(g: &[(u32, String)]) -> usize {
    g.iter().map(|(_, l)| l.len()).min().unwrap_or(0)
}

fn leaf_groups(key: u32, ms: &[FMatcher], all: bool) -> Vec<Vec<(u32, String)>> {
    if all {
        ms.iter()
            .filter_map(|m| {
                m.m.literals()
                    .map(|ls| ls.into_iter().map(|l| (key, l)).collect())
            })
            .collect()
    } else {
        let mut group = Vec::new();
        for m in ms {
            let Some(ls) = m.m.literals() else {
                return Vec::new();
            };
            group.extend(ls.into_iter().map(|l| (key, l)));
        }
        if group.is_empty() {
            Vec::new()
        } else {
            vec![group]
        }
    }
}

impl FMatcher {
    fn test_text(&self, orig: &str, lower: &str, p: &Prepared) -> bool {
        if let ValueMatcher::Str {
            op: StrOp::Contains,
            cased,
            value,
        } = &self.m
        {
            let hay = if *cased { orig } else { lower };
            let finder = self.finder.get_or_init(|| {
                Box::new(memchr::memmem::Finder::new(value.as_bytes()).into_owned())
            });
            return finder.find(hay.as_bytes()).is_some();
        }
        match &self.m {
            ValueMatcher::FieldRef { op, cased, .. } => p.field(self.other).is_some_and(|f| {
                p.texts(f).any(|(o, l)| {
                    if *cased {
                        str_test(*op, orig, o)
                    } else {
                        str_test(*op, lower, l)
                    }
                })
            }),
            m => m.test_plain(orig, lower),
        }
    }

    fn test_field(&self, f: Option<&PField>, p: &Prepared) -> bool {
        match &self.m {
            ValueMatcher::Null => {
                f.is_none_or(|f| f.is_null || p.texts(f).all(|(o, _)| o.is_empty()))
            }
            ValueMatcher::Exists(want) => f.is_some() == *want,
            _ => f.is_some_and(|f| p.texts(f).any(|(o, l)| self.test_text(o, l, p))),
        }
    }
}

/// One field of a prepared event.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PField {
    /// The field's own id.
    pub(crate) id: u32,
    /// The id this field stands in for when that field is absent.
    pub(crate) alias: u32,
    pub(crate) keyword: bool,
    pub(crate) is_null: bool,
    /// Range in `Prepared::vals`.
    start: u32,
    end: u32,
}

/// An event's texts in reusable buffers. Only fields some rule names (and keyword fields)
/// are kept.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    orig: String,
    lower: String,
    /// (orig start, orig end, lower start, lower end) of each text.
    vals: Vec<[u32; 4]>,
    pub(crate) fields: Vec<PField>,
    /// Field id → index in `fields`.
    slot: Vec<u32>,
    /// Ranges of `lower` holding the keyword fields' texts, each text followed by a NUL; runs
    /// of consecutive keyword fields are one range.
    keyword_spans: Vec<(u32, u32)>,
}

fn pos(s: &str) -> u32 {
    u32::try_from(s.len()).unwrap_or(u32::MAX)
}

impl Prepared {
    /// Lays out `event`'s texts for the fields of `ids`.
    pub(crate) fn fill(&mut self, event: &Event, ids: &FieldIds) {
        for f in &self.fields {
            for id in [f.id, f.alias] {
                if let Some(s) = self.slot.get_mut(id as usize) {
                    *s = NONE;
                }
            }
        }
        if self.slot.len() < ids.len() {
            self.slot.resize(ids.len(), NONE);
        }
        self.orig.clear();
        self.lower.clear();
        self.vals.clear();
        self.fields.clear();
        self.keyword_spans.clear();
        let mut has_alias = false;
        for (name, v) in &event.fields {
            let (id, alias) = ids.lookup(name);
            let keyword = is_keyword_field(name);
            if id == NONE && alias == NONE && !keyword {
                continue;
            }
            let start = u32::try_from(self.vals.len()).unwrap_or(u32::MAX);
            let lower_start = pos(&self.lower);
            self.push_value(v, true);
            if keyword {
                let lower_end = pos(&self.lower);
                match self.keyword_spans.last_mut() {
                    Some((_, end)) if *end == lower_start => *end = lower_end,
                    _ => self.keyword_spans.push((lower_start, lower_end)),
                }
            }
            let idx = u32::try_from(self.fields.len()).unwrap_or(NONE);
            self.fields.push(PField {
                id,
                alias,
                keyword,
                is_null: v.is_null(),
                start,
                end: u32::try_from(self.vals.len()).unwrap_or(u32::MAX),
            });
            if id != NONE {
                self.slot[id as usize] = idx;
            }
            has_alias |= alias != NONE;
        }
        if has_alias {
            for (i, f) in self.fields.iter().enumerate() {
                if f.alias != NONE && self.slot[f.alias as usize] == NONE {
                    self.slot[f.alias as usize] = u32::try_from(i).unwrap_or(NONE);
                }
            }
        }
    }

    fn push_value(&mut self, v: &Value, top: bool) {
        match v {
            Value::String(s) => self.push_text(s),
            Value::Number(n) => {
                let o = pos(&self.orig);
                let _ = write!(self.orig, "{n}");
                let l = pos(&self.lower);
                self.lower.push_str(&self.orig[o as usize..]);
                self.lower[l as usize..].make_ascii_lowercase();
                self.vals.push([o, pos(&self.orig), l, pos(&self.lower)]);
                self.lower.push('\0');
            }
            Value::Bool(b) => self.push_text(if *b { "true" } else { "false" }),
            Value::Array(items) => {
                if top {
                    for item in items {
                        if !item.is_array() {
                            self.push_value(item, false);
                        }
                    }
                }
            }
            Value::Object(_) => self.push_text(&v.to_string()),
            Value::Null => {}
        }
    }

    fn push_text(&mut self, s: &str) {
        let o = pos(&self.orig);
        self.orig.push_str(s);
        let l = pos(&self.lower);
        if s.is_ascii() {
            self.lower.push_str(s);
            self.lower[l as usize..].make_ascii_lowercase();
        } else {
            self.lower.push_str(&s.to_lowercase());
        }
        self.vals.push([o, pos(&self.orig), l, pos(&self.lower)]);
        // Keeps a keyword literal from matching across two texts of a keyword span.
        self.lower.push('\0');
    }

    pub(crate) fn field(&self, id: u32) -> Option<&PField> {
        let i = *self.slot.get(id as usize)?;
        self.fields.get(i as usize)
    }

    /// The (original, lower-cased) texts of `f`.
    pub(crate) fn texts<'s>(&'s self, f: &PField) -> impl Iterator<Item = (&'s str, &'s str)> {
        self.vals[f.start as usize..f.end as usize]
            .iter()
            .map(|[a, b, c, d]| {
                (
                    &self.orig[*a as usize..*b as usize],
                    &self.lower[*c as usize..*d as usize],
                )
            })
    }

    /// The keyword fields' lower-cased texts, a few spans each holding several texts.
    pub(crate) fn keyword_spans(&self) -> impl Iterator<Item = &str> {
        self.keyword_spans
            .iter()
            .map(|&(a, b)| &self.lower[a as usize..b as usize])
    }

    /// The lower-cased texts of `f`.
    pub(crate) fn lower_texts<'s>(&'s self, f: &PField) -> impl Iterator<Item = &'s str> {
        self.vals[f.start as usize..f.end as usize]
            .iter()
            .map(|[_, _, c, d]| &self.lower[*c as usize..*d as usize])
    }
}
