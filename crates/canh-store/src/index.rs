//! The hot window: one tantivy index per UTC day (`index/dt=YYYY-MM-DD/`).
//!
//! Every event is one document:
//!
//! | tantivy field | holds |
//! | --- | --- |
//! | `ts` | `@timestamp` in microseconds (indexed, fast) |
//! | `id` | sequence number (indexed, fast) |
//! | `kw` | one term `name\x1fvalue` per keyword value, for exact and wildcard matches on any field |
//! | `has` | the names of fields with a value (`_exists_`) |
//! | `t_message`, `t_original` | `message` / `event.original` tokenised with positions |
//! | `ff_*` | fast string columns of [`FAST_FIELDS`] for counts |
//!
//! [`HotIndex::compile`] turns an [`Expr`] into a tantivy query. Where the index cannot answer
//! exactly (numeric ranges, CIDR, a few number spellings) it returns a superset and says so; the
//! caller then filters candidates with [`Expr::matches`], which stays the reference semantics.
//! The index stores no documents: events are loaded from the Parquet lake by sequence number
//! (see `Lake::fetch`), so the hot window costs only its postings, terms and columns.
//! Each commit carries the highest sequence number it holds as its payload.

use std::collections::BTreeMap;
use std::fs;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use canh_core::query::{self, Expr, Glob};
use canh_core::{Event, fields};
use chrono::{DateTime, NaiveDate, Utc};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, Occur, PhraseQuery, Query, RangeQuery, RegexQuery,
    TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};
use tantivy::{
    DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, Searcher, SegmentOrdinal,
    SegmentReader, TantivyDocument, Term,
};
use tracing::{debug, info, warn};

use crate::StoreError;

/// Fields kept as fast columns, so counts by them need no document loads.
pub const FAST_FIELDS: &[&str] = &[
    "organization.id",
    "host.name",
    "user.name",
    "source.ip",
    "destination.ip",
    "event.module",
    "event.dataset",
    "event.action",
    "event.outcome",
    "process.name",
];

const TEXT_TOKENIZER: &str = "canh_text";
/// Candidates loaded at once by the post-filter of inexact queries.
pub const LOAD_CHUNK: usize = 4096;

/// Loads events by sequence number for index keys (the store reads them from Parquet).
pub type Loader<'a> = dyn FnMut(
        &Snapshot,
        &[(usize, DocKey)],
    ) -> Result<std::collections::HashMap<u64, Event>, StoreError>
    + 'a;
const SEP: char = '\x1f';
/// Keyword values longer than this are not indexed as terms (such queries are post-filtered).
const MAX_KW_BYTES: usize = 32 * 1024;

fn ix_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("index: {e}"))
}

fn fast_name(field: &str) -> String {
    format!("ff_{}", field.replace('.', "_"))
}

#[derive(Clone, Debug)]
struct Fields {
    ts: Field,
    id: Field,
    kw: Field,
    has: Field,
    message: Field,
    original: Field,
    fast: Vec<(&'static str, Field)>,
}

fn build_schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let ts = b.add_i64_field("ts", NumericOptions::default().set_indexed().set_fast());
    let id = b.add_u64_field("id", NumericOptions::default().set_indexed().set_fast());
    let raw = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_index_option(IndexRecordOption::Basic),
    );
    let kw = b.add_text_field("kw", raw.clone());
    let has = b.add_text_field("has", raw);
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TEXT_TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let message = b.add_text_field("t_message", text.clone());
    let original = b.add_text_field("t_original", text);
    let mut fast = Vec::new();
    for f in FAST_FIELDS {
        let opts = TextOptions::default().set_fast("raw");
        fast.push((*f, b.add_text_field(&fast_name(f), opts)));
    }
    (
        b.build(),
        Fields {
            ts,
            id,
            kw,
            has,
            message,
            original,
            fast,
        },
    )
}

fn register_tokenizer(index: &Index) {
    let analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(query::MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .build();
    index.tokenizers().register(TEXT_TOKENIZER, analyzer);
}

struct Day {
    index: Index,
    reader: IndexReader,
    writer: Option<IndexWriter>,
}

/// Per-day tantivy indexes.
pub struct HotIndex {
    root: PathBuf,
    fields: Fields,
    schema: Schema,
    heap_bytes: usize,
    days: Mutex<BTreeMap<NaiveDate, Day>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A matching document: its key and where to load it from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DocKey {
    /// `@timestamp` in microseconds.
    pub ts: i64,
    /// Sequence number.
    pub id: u64,
    /// Segment.
    pub segment: SegmentOrdinal,
    /// Document within the segment.
    pub doc: DocId,
}

/// A point-in-time view over the days' indexes.
pub struct Snapshot {
    searchers: Vec<(NaiveDate, Searcher)>,
    fields: Fields,
}

impl HotIndex {
    /// Opens every day index under `root`. Also returns the days whose index could not be
    /// opened and was removed; the caller rebuilds them from the lake.
    pub fn open(root: &Path, heap_bytes: usize) -> Result<(Self, Vec<NaiveDate>), StoreError> {
        fs::create_dir_all(root).map_err(|e| StoreError::Io {
            what: format!("failed to create {}", root.display()),
            source: e,
        })?;
        let (schema, fields) = build_schema();
        let me = Self {
            root: root.to_owned(),
            fields,
            schema,
            heap_bytes,
            days: Mutex::new(BTreeMap::new()),
        };
        let rd = fs::read_dir(root).map_err(|e| StoreError::Io {
            what: format!("failed to list {}", root.display()),
            source: e,
        })?;
        let mut days = lock(&me.days);
        let mut rebuild = Vec::new();
        for d in rd.flatten() {
            let Some(day) = d
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("dt="))
                .and_then(|n| NaiveDate::parse_from_str(n, "%Y-%m-%d").ok())
            else {
                continue;
            };
            match me.open_day(day) {
                Ok(d) => {
                    days.insert(day, d);
                }
                // Written under another schema (an older release): the index is derived data,
                // so it is rebuilt from the lake.
                Err(e) => {
                    warn!(day = %day, error = %e, "day index unreadable; rebuilding it from Parquet");
                    let p = me.day_path(day);
                    fs::remove_dir_all(&p).map_err(|e| StoreError::Io {
                        what: format!("failed to delete {}", p.display()),
                        source: e,
                    })?;
                    rebuild.push(day);
                }
            }
        }
        drop(days);
        Ok((me, rebuild))
    }

    fn day_path(&self, day: NaiveDate) -> PathBuf {
        self.root.join(format!("dt={day}"))
    }

    fn open_day(&self, day: NaiveDate) -> Result<Day, StoreError> {
        let path = self.day_path(day);
        fs::create_dir_all(&path).map_err(|e| StoreError::Io {
            what: format!("failed to create {}", path.display()),
            source: e,
        })?;
        let dir = tantivy::directory::MmapDirectory::open(&path).map_err(ix_err)?;
        // Nothing is stored per document any more; the settings stay for indexes written when
        // events were kept here too.
        let settings = tantivy::IndexSettings {
            docstore_compression: tantivy::store::Compressor::Zstd(
                tantivy::store::ZstdCompressor {
                    compression_level: Some(3),
                },
            ),
            docstore_blocksize: 256 * 1024,
            ..tantivy::IndexSettings::default()
        };
        let index = Index::builder()
            .schema(self.schema.clone())
            .settings(settings)
            .open_or_create(dir)
            .map_err(ix_err)?;
        register_tokenizer(&index);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(ix_err)?;
        Ok(Day {
            index,
            reader,
            writer: None,
        })
    }

    /// Days that have an index.
    pub fn days(&self) -> Vec<NaiveDate> {
        lock(&self.days).keys().copied().collect()
    }

    /// Highest sequence number committed in each day (the commit payload).
    pub fn committed_seq(&self) -> Result<BTreeMap<NaiveDate, u64>, StoreError> {
        let days = lock(&self.days);
        let mut out = BTreeMap::new();
        for (d, day) in days.iter() {
            let metas = day.index.load_metas().map_err(ix_err)?;
            let seq = metas
                .payload
                .as_deref()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            out.insert(*d, seq);
        }
        Ok(out)
    }

    /// Removes documents above `checkpoint` (left by a commit whose flush did not finish).
    pub fn recover(&self, checkpoint: u64) -> Result<(), StoreError> {
        let committed = self.committed_seq()?;
        let mut days = lock(&self.days);
        for (d, seq) in committed {
            if seq <= checkpoint {
                continue;
            }
            let Some(day) = days.get_mut(&d) else {
                continue;
            };
            let mut w: IndexWriter = day
                .index
                .writer_with_num_threads(1, self.heap_bytes)
                .map_err(ix_err)?;
            let lo = Term::from_field_u64(self.fields.id, checkpoint);
            let q = RangeQuery::new(Bound::Excluded(lo), Bound::Unbounded);
            w.delete_query(Box::new(q)).map_err(ix_err)?;
            let mut prepared = w.prepare_commit().map_err(ix_err)?;
            prepared.set_payload(&checkpoint.to_string());
            prepared.commit().map_err(ix_err)?;
            day.reader.reload().map_err(ix_err)?;
            info!(day = %d, from = seq, to = checkpoint, "rolled index back to the checkpoint");
        }
        Ok(())
    }

    /// `term` is a buffer reused for the `name\x1fvalue` terms.
    fn document(&self, seq: u64, ev: &Event, term: &mut String) -> TantivyDocument {
        let f = &self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_i64(f.ts, ev.timestamp.timestamp_micros());
        doc.add_u64(f.id, seq);
        let mut scalars = Vec::new();
        for (name, value) in &ev.fields {
            scalars.clear();
            flatten(value, &mut scalars, 0);
            if scalars.is_empty() {
                continue;
            }
            doc.add_text(f.has, name);
            if query::is_full_text(name) {
                let target = if name == "message" {
                    f.message
                } else {
                    f.original
                };
                for s in &scalars {
                    if let serde_json::Value::String(text) = s {
                        doc.add_text(target, text);
                    }
                }
                continue;
            }
            let fast = f.fast.iter().find(|(n, _)| *n == name).map(|(_, fld)| *fld);
            for s in &scalars {
                for (i, text) in keyword_forms(s).into_iter().flatten().enumerate() {
                    if text.len() <= MAX_KW_BYTES {
                        term.clear();
                        term.push_str(name);
                        term.push(SEP);
                        term.push_str(&text);
                        doc.add_text(f.kw, &*term);
                    }
                    if i == 0
                        && let Some(fld) = fast
                    {
                        doc.add_text(fld, &text);
                    }
                }
            }
        }
        doc
    }

    /// Indexes events of one day and commits with `payload_seq`; keeps the writer open when
    /// `keep_writer`.
    pub fn add(
        &self,
        day: NaiveDate,
        events: &[(u64, Arc<Event>)],
        payload_seq: u64,
        keep_writer: bool,
    ) -> Result<(), StoreError> {
        let mut days = lock(&self.days);
        let d = match days.entry(day) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => v.insert(self.open_day(day)?),
        };
        if d.writer.is_none() {
            let w: IndexWriter = d
                .index
                .writer_with_num_threads(1, self.heap_bytes)
                .map_err(ix_err)?;
            d.writer = Some(w);
        }
        let Some(w) = d.writer.as_mut() else {
            return Err(ix_err("no writer"));
        };
        let mut term = String::new();
        for (seq, ev) in events {
            w.add_document(self.document(*seq, ev, &mut term))
                .map_err(ix_err)?;
        }
        let mut prepared = w.prepare_commit().map_err(ix_err)?;
        prepared.set_payload(&payload_seq.to_string());
        prepared.commit().map_err(ix_err)?;
        if !keep_writer {
            d.writer = None;
        }
        debug!(day = %day, docs = events.len(), "index committed");
        Ok(())
    }

    /// Drops writers of days other than `keep`.
    pub fn close_writers_except(&self, keep: &[NaiveDate]) {
        for (d, day) in lock(&self.days).iter_mut() {
            if !keep.contains(d) {
                day.writer = None;
            }
        }
    }

    /// Makes the last commits visible to new snapshots.
    pub fn reload(&self) -> Result<(), StoreError> {
        for day in lock(&self.days).values() {
            day.reader.reload().map_err(ix_err)?;
        }
        Ok(())
    }

    /// A consistent view of the days in `[from, to]`.
    pub fn snapshot(&self, from: NaiveDate, to: NaiveDate) -> Snapshot {
        let days = lock(&self.days);
        let searchers = days
            .range(from..=to)
            .map(|(d, day)| (*d, day.reader.searcher()))
            .collect();
        Snapshot {
            searchers,
            fields: self.fields.clone(),
        }
    }

    /// Deletes day indexes before `keep_from`; returns how many.
    pub fn drop_before(&self, keep_from: NaiveDate) -> Result<usize, StoreError> {
        let mut days = lock(&self.days);
        let old: Vec<NaiveDate> = days.range(..keep_from).map(|(d, _)| *d).collect();
        for d in &old {
            days.remove(d);
            let p = self.day_path(*d);
            fs::remove_dir_all(&p).map_err(|e| StoreError::Io {
                what: format!("failed to delete {}", p.display()),
                source: e,
            })?;
            info!(day = %d, "dropped day index outside the hot window");
        }
        Ok(old.len())
    }
}

fn flatten<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>, depth: usize) {
    match v {
        serde_json::Value::String(_)
        | serde_json::Value::Number(_)
        | serde_json::Value::Bool(_) => out.push(v),
        serde_json::Value::Array(items) if depth < 4 => {
            for i in items {
                flatten(i, out, depth + 1);
            }
        }
        _ => {}
    }
}

/// The keyword spellings indexed for a scalar: its JSON text, and for integral floats also
/// the integer spelling, so that `port:443` finds `443.0`.
fn keyword_forms(v: &serde_json::Value) -> [Option<std::borrow::Cow<'_, str>>; 2] {
    let Some(text) = query::keyword_text(v) else {
        return [None, None];
    };
    let integral = v
        .as_f64()
        .filter(|f| !v.is_i64() && !v.is_u64() && f.fract() == 0.0 && f.abs() < 9.0e15)
        .map(|f| std::borrow::Cow::Owned((f as i64).to_string()));
    [Some(text), integral]
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_alphanumeric() || c == '_' {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:x}}}", c as u32));
        }
    }
    out
}

/// Whether `value` is written the way the index stores it (so a term lookup is exact).
fn canonical_keyword(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    if (lower == "true" || lower == "false") && lower != value {
        return false;
    }
    match value.parse::<f64>() {
        Err(_) => true,
        Ok(_) => value.parse::<i64>().is_ok_and(|i| i.to_string() == value),
    }
}

impl Snapshot {
    fn exists(&self, field: &str) -> Box<dyn Query> {
        if field == query::TIMESTAMP_FIELD {
            return Box::new(AllQuery);
        }
        Box::new(TermQuery::new(
            Term::from_field_text(self.fields.has, field),
            IndexRecordOption::Basic,
        ))
    }

    fn text_query(&self, field: Field, value: &str) -> Box<dyn Query> {
        let tokens = query::tokenize(value);
        let terms: Vec<Term> = tokens
            .iter()
            .map(|t| Term::from_field_text(field, t))
            .collect();
        match terms.len() {
            0 => Box::new(EmptyQuery),
            1 => Box::new(TermQuery::new(terms[0].clone(), IndexRecordOption::Basic)),
            _ => Box::new(PhraseQuery::new(terms)),
        }
    }

    fn text_fields(&self, field: Option<&str>) -> Vec<Field> {
        match field {
            None => vec![self.fields.message, self.fields.original],
            Some("message") => vec![self.fields.message],
            Some(_) => vec![self.fields.original],
        }
    }

    fn union(parts: Vec<Box<dyn Query>>) -> Box<dyn Query> {
        Box::new(BooleanQuery::new(
            parts.into_iter().map(|q| (Occur::Should, q)).collect(),
        ))
    }

    /// Compiles `expr`; the flag says whether the result is exact (else a superset).
    pub fn compile(&self, expr: &Expr) -> Result<(Box<dyn Query>, bool), StoreError> {
        Ok(match expr {
            Expr::All => (Box::new(AllQuery), true),
            Expr::And(parts) | Expr::Or(parts) => {
                if parts.is_empty() {
                    let q: Box<dyn Query> = if matches!(expr, Expr::And(_)) {
                        Box::new(AllQuery)
                    } else {
                        Box::new(EmptyQuery)
                    };
                    return Ok((q, true));
                }
                let occur = if matches!(expr, Expr::And(_)) {
                    Occur::Must
                } else {
                    Occur::Should
                };
                let mut exact = true;
                let mut clauses = Vec::new();
                for p in parts {
                    let (q, e) = self.compile(p)?;
                    exact &= e;
                    clauses.push((occur, q));
                }
                (Box::new(BooleanQuery::new(clauses)), exact)
            }
            Expr::Not(inner) => {
                let (q, exact) = self.compile(inner)?;
                if !exact {
                    return Ok((Box::new(AllQuery), false));
                }
                let clauses = vec![
                    (Occur::Must, Box::new(AllQuery) as Box<dyn Query>),
                    (Occur::MustNot, q),
                ];
                (Box::new(BooleanQuery::new(clauses)), true)
            }
            Expr::Term { field, value } | Expr::Phrase { field, value } => match field.as_deref() {
                None => {
                    let parts = self
                        .text_fields(None)
                        .into_iter()
                        .map(|f| self.text_query(f, value))
                        .collect();
                    (Self::union(parts), true)
                }
                Some(f) if query::is_full_text(f) => {
                    (self.text_query(self.text_fields(Some(f))[0], value), true)
                }
                Some(query::TIMESTAMP_FIELD) => match canh_core::time::parse_timestamp(value) {
                    Some(t) => (self.ts_range(Some((t, true)), Some((t, true))), true),
                    None => (Box::new(EmptyQuery), true),
                },
                Some(f) => {
                    if !canonical_keyword(value) {
                        return Ok((self.exists(f), false));
                    }
                    let term = Term::from_field_text(self.fields.kw, &format!("{f}{SEP}{value}"));
                    (
                        Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
                        value.len() <= MAX_KW_BYTES,
                    )
                }
            },
            Expr::Wildcard { field, pattern } => {
                let glob = Glob::new(pattern);
                match field.as_deref() {
                    Some(f) if !query::is_full_text(f) => {
                        if f == query::TIMESTAMP_FIELD {
                            return Ok((Box::new(AllQuery), false));
                        }
                        let re = format!(
                            "{}{}{}",
                            regex_escape(f),
                            regex_escape(&SEP.to_string()),
                            glob.to_regex()
                        );
                        let q = RegexQuery::from_pattern(&re, self.fields.kw).map_err(ix_err)?;
                        (Box::new(q), true)
                    }
                    other => {
                        let re = glob.lowercased().to_regex();
                        let mut parts: Vec<Box<dyn Query>> = Vec::new();
                        for fld in self.text_fields(other) {
                            parts.push(Box::new(
                                RegexQuery::from_pattern(&re, fld).map_err(ix_err)?,
                            ));
                        }
                        (Self::union(parts), true)
                    }
                }
            }
            Expr::Range {
                field,
                lower,
                upper,
            } if field == query::TIMESTAMP_FIELD => {
                let conv =
                    |b: &Option<query::RangeBound>| -> Result<Option<(DateTime<Utc>, bool)>, ()> {
                        match b {
                            None => Ok(None),
                            Some(b) => canh_core::time::parse_timestamp(&b.value)
                                .map(|t| Some((t, b.inclusive)))
                                .ok_or(()),
                        }
                    };
                match (conv(lower), conv(upper)) {
                    (Ok(lo), Ok(hi)) => (self.ts_range(lo, hi), true),
                    _ => (Box::new(EmptyQuery), true),
                }
            }
            Expr::Range { field, .. } | Expr::Cidr { field, .. } => (self.exists(field), false),
            Expr::Exists { field } => (self.exists(field), true),
        })
    }

    fn ts_range(
        &self,
        lo: Option<(DateTime<Utc>, bool)>,
        hi: Option<(DateTime<Utc>, bool)>,
    ) -> Box<dyn Query> {
        let b = |x: Option<(DateTime<Utc>, bool)>| match x {
            None => Bound::Unbounded,
            Some((t, true)) => {
                Bound::Included(Term::from_field_i64(self.fields.ts, t.timestamp_micros()))
            }
            Some((t, false)) => {
                Bound::Excluded(Term::from_field_i64(self.fields.ts, t.timestamp_micros()))
            }
        };
        Box::new(RangeQuery::new(b(lo), b(hi)))
    }

    /// Matching documents in `[from, to)`. When the query is inexact the candidates are loaded
    /// with `load` (events by sequence number) and filtered with [`Expr::matches`].
    pub fn matching(
        &self,
        expr: &Expr,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        load: &mut Loader<'_>,
    ) -> Result<Vec<(usize, DocKey)>, StoreError> {
        let (q, exact) = self.compile(expr)?;
        let range = self.ts_range(Some((from, true)), Some((to, false)));
        let full = BooleanQuery::new(vec![(Occur::Must, range), (Occur::Must, q)]);
        let mut out = Vec::new();
        for (i, (_, searcher)) in self.searchers.iter().enumerate() {
            let keys = searcher.search(&full, &KeyCollector).map_err(ix_err)?;
            if exact {
                out.extend(keys.into_iter().map(|k| (i, k)));
                continue;
            }
            for chunk in keys.chunks(LOAD_CHUNK) {
                let want: Vec<(usize, DocKey)> = chunk.iter().map(|k| (i, *k)).collect();
                let events = load(self, &want)?;
                for k in chunk {
                    if events.get(&k.id).is_some_and(|ev| expr.matches(ev)) {
                        out.push((i, *k));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether `matching` would need to load documents.
    pub fn is_exact(&self, expr: &Expr) -> Result<bool, StoreError> {
        Ok(self.compile(expr)?.1)
    }

    /// The day of searcher `i`.
    pub fn day(&self, searcher: usize) -> Option<NaiveDate> {
        self.searchers.get(searcher).map(|(d, _)| *d)
    }

    /// The `organization.id` of documents (from its fast column), in the order given;
    /// `None` where the document has none.
    pub fn agencies(&self, keys: &[(usize, DocKey)]) -> Vec<Option<String>> {
        let mut columns: BTreeMap<(usize, SegmentOrdinal), Option<StrColumn>> = BTreeMap::new();
        let field = fast_name(fields::ORGANIZATION_ID);
        let mut buf = String::new();
        keys.iter()
            .map(|(i, k)| {
                let col = columns.entry((*i, k.segment)).or_insert_with(|| {
                    self.searchers.get(*i).and_then(|(_, s)| {
                        s.segment_readers()
                            .get(k.segment as usize)
                            .and_then(|r| r.fast_fields().str(&field).ok().flatten())
                    })
                });
                let col = col.as_ref()?;
                let ord = col.term_ords(k.doc).next()?;
                col.ord_to_str(ord, &mut buf).ok()?.then(|| buf.clone())
            })
            .collect()
    }

    /// Counts of `field`'s values among exactly-matched documents, read from fast columns;
    /// `None` when the field has no fast column.
    pub fn count_fast(
        &self,
        field: &str,
        expr: &Expr,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Option<BTreeMap<String, u64>>, StoreError> {
        if !FAST_FIELDS.contains(&field) {
            return Ok(None);
        }
        let (q, exact) = self.compile(expr)?;
        if !exact {
            return Ok(None);
        }
        let range = self.ts_range(Some((from, true)), Some((to, false)));
        let full = BooleanQuery::new(vec![(Occur::Must, range), (Occur::Must, q)]);
        let mut out = BTreeMap::new();
        let collector = TermCountCollector {
            column: fast_name(field),
        };
        for (_, searcher) in &self.searchers {
            for (k, n) in searcher.search(&full, &collector).map_err(ix_err)? {
                *out.entry(k).or_insert(0) += n;
            }
        }
        Ok(Some(out))
    }
}

/// Collects `(ts, id, address)` of every match.
struct KeyCollector;

struct KeySegment {
    segment: SegmentOrdinal,
    ts: Column<i64>,
    id: Column<u64>,
    out: Vec<DocKey>,
}

impl Collector for KeyCollector {
    type Fruit = Vec<DocKey>;
    type Child = KeySegment;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<KeySegment> {
        let ts = reader.fast_fields().i64("ts")?;
        let id = reader.fast_fields().u64("id")?;
        Ok(KeySegment {
            segment,
            ts,
            id,
            out: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<DocKey>>) -> tantivy::Result<Vec<DocKey>> {
        Ok(fruits.into_iter().flatten().collect())
    }
}

impl SegmentCollector for KeySegment {
    type Fruit = Vec<DocKey>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let ts = self.ts.first(doc).unwrap_or(0);
        let id = self.id.first(doc).unwrap_or(0);
        self.out.push(DocKey {
            ts,
            id,
            segment: self.segment,
            doc,
        });
    }

    fn harvest(self) -> Vec<DocKey> {
        self.out
    }
}

/// Counts the values of one fast string column.
struct TermCountCollector {
    column: String,
}

struct TermCountSegment {
    column: Option<StrColumn>,
    /// Documents per term ordinal of this segment's dictionary.
    counts: Vec<u64>,
    /// A document's ordinals, reused (several values of one document count once).
    ords: Vec<u64>,
}

impl Collector for TermCountCollector {
    type Fruit = BTreeMap<String, u64>;
    type Child = TermCountSegment;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<TermCountSegment> {
        let column = reader.fast_fields().str(&self.column)?;
        let terms = column.as_ref().map_or(0, |c| c.num_terms());
        Ok(TermCountSegment {
            column,
            counts: vec![0; terms],
            ords: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(
        &self,
        fruits: Vec<BTreeMap<String, u64>>,
    ) -> tantivy::Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for f in fruits {
            for (k, v) in f {
                *out.entry(k).or_insert(0) += v;
            }
        }
        Ok(out)
    }
}

impl SegmentCollector for TermCountSegment {
    type Fruit = BTreeMap<String, u64>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let Some(col) = &self.column else { return };
        self.ords.clear();
        self.ords.extend(col.term_ords(doc));
        if self.ords.len() > 1 {
            self.ords.sort_unstable();
            self.ords.dedup();
        }
        for &ord in &self.ords {
            if let Some(c) = usize::try_from(ord)
                .ok()
                .and_then(|i| self.counts.get_mut(i))
            {
                *c += 1;
            }
        }
    }

    fn harvest(self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        let Some(col) = self.column else { return out };
        // One ordered walk of the dictionary instead of a lookup per ordinal.
        let (ords, counts): (Vec<u64>, Vec<u64>) = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (i as u64, *n))
            .unzip();
        let mut counts = counts.into_iter();
        let walked = col.dictionary().sorted_ords_to_term_cb(&ords, |term| {
            if let Some(n) = counts.next() {
                *out.entry(String::from_utf8_lossy(term).into_owned())
                    .or_insert(0) += n;
            }
        });
        if let Err(e) = walked {
            debug!(error = %e, "fast column dictionary unreadable");
        }
        out
    }
}

#[cfg(test)]
mod tests;
