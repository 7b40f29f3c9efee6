//! The system of record: Parquet (zstd) files partitioned by day and agency, queried with
//! DataFusion.
//!
//! Layout: `events/dt=YYYY-MM-DD/org=<agency>/<first-seq>-<last-seq>.parquet`, where the two
//! numbers are the lowest and highest event sequence numbers in the file. Those names make a
//! crash recoverable: files above the WAL checkpoint belong to an unfinished flush and are
//! removed on open, and a file whose range lies inside another's is a leftover of an
//! interrupted compaction.
//!
//! Columns: `_id` (sequence), `@timestamp` (UTC microseconds), the typed core columns in
//! [`STR_COLUMNS`] and [`INT_COLUMNS`], and `extra`, a JSON object with every other field
//! (and core fields whose value did not fit the column type). SQL sees the table `events`
//! with two more columns from the path, `dt` and `org`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, UInt64Type};
use canh_core::Event;
use chrono::{DateTime, NaiveDate, Utc};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::{Map, Value};
use tracing::{debug, info, warn};

use crate::StoreError;

/// Core string columns (ECS names).
pub const STR_COLUMNS: &[&str] = &[
    "organization.id",
    "host.name",
    "source.ip",
    "destination.ip",
    "user.name",
    "process.name",
    "process.executable",
    "process.command_line",
    "process.parent.name",
    "event.module",
    "event.dataset",
    "event.kind",
    "event.action",
    "event.outcome",
    "event.code",
    "file.path",
    "dns.question.name",
    "url.original",
    "message",
    "event.original",
];

/// Core integer columns (ECS names).
pub const INT_COLUMNS: &[&str] = &[
    "source.port",
    "destination.port",
    "process.pid",
    "process.parent.pid",
];

/// Partition value used for events without `organization.id`.
pub const NO_AGENCY: &str = "_none";

/// The Parquet file schema (without the `dt`/`org` path columns).
pub fn schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("_id", DataType::UInt64, false),
        Field::new(
            "@timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ];
    for c in STR_COLUMNS {
        fields.push(Field::new(*c, DataType::Utf8, true));
    }
    for c in INT_COLUMNS {
        fields.push(Field::new(*c, DataType::Int64, true));
    }
    fields.push(Field::new("extra", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

fn io_err(what: &str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        what: format!("{what} {}", path.display()),
        source,
    }
}

fn df_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

/// A path-safe partition value for an agency id (percent-encodes anything unusual).
pub fn agency_dir(agency: Option<&str>) -> String {
    let Some(a) = agency.filter(|a| !a.is_empty()) else {
        return NO_AGENCY.to_owned();
    };
    let mut out = String::new();
    for b in a.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.') && !(out.is_empty() && b == b'.')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One Parquet file of the lake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LakeFile {
    /// Day partition.
    pub day: NaiveDate,
    /// Agency partition directory name.
    pub org: String,
    /// Lowest sequence number inside.
    pub min_seq: u64,
    /// Highest sequence number inside.
    pub max_seq: u64,
    /// Full path.
    pub path: PathBuf,
}

fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".parquet")?;
    let (a, b) = stem.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The Parquet side of the store.
#[derive(Debug, Clone)]
pub struct Lake {
    root: PathBuf,
    zstd_level: i32,
    row_group_rows: usize,
    page_bytes: usize,
}

impl Lake {
    /// Opens the lake under `root` (creating it).
    pub fn open(root: &Path, zstd_level: i32, row_group_rows: usize) -> Result<Self, StoreError> {
        fs::create_dir_all(root).map_err(|e| io_err("failed to create", root, e))?;
        Ok(Self {
            root: root.to_owned(),
            zstd_level,
            row_group_rows,
            page_bytes: 1024 * 1024,
        })
    }

    /// Sets the largest data page written (bytes).
    #[must_use]
    pub fn with_page_bytes(mut self, bytes: usize) -> Self {
        self.page_bytes = bytes.max(4096);
        self
    }

    /// The directory holding the `dt=` partitions.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every committed file, sorted by day, agency and sequence.
    pub fn files(&self) -> Result<Vec<LakeFile>, StoreError> {
        let mut out = Vec::new();
        for (day, day_path) in self.days()? {
            let rd = fs::read_dir(&day_path).map_err(|e| io_err("failed to list", &day_path, e))?;
            for org in rd.flatten() {
                let Some(org_name) = org
                    .file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("org="))
                    .map(str::to_owned)
                else {
                    continue;
                };
                let org_path = org.path();
                let files =
                    fs::read_dir(&org_path).map_err(|e| io_err("failed to list", &org_path, e))?;
                for f in files.flatten() {
                    let name = f.file_name();
                    let Some((min_seq, max_seq)) = name.to_str().and_then(parse_file_name) else {
                        continue;
                    };
                    out.push(LakeFile {
                        day,
                        org: org_name.clone(),
                        min_seq,
                        max_seq,
                        path: f.path(),
                    });
                }
            }
        }
        out.sort_by(|a, b| (a.day, &a.org, a.min_seq).cmp(&(b.day, &b.org, b.min_seq)));
        Ok(out)
    }

    fn days(&self) -> Result<Vec<(NaiveDate, PathBuf)>, StoreError> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.root).map_err(|e| io_err("failed to list", &self.root, e))?;
        for d in rd.flatten() {
            let Some(day) = d
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("dt="))
                .and_then(|n| NaiveDate::parse_from_str(n, "%Y-%m-%d").ok())
            else {
                continue;
            };
            out.push((day, d.path()));
        }
        out.sort();
        Ok(out)
    }

    /// Writes events (any days and agencies) into new files; returns the files written.
    pub fn write(&self, events: &[(u64, Arc<Event>)]) -> Result<Vec<LakeFile>, StoreError> {
        let mut groups: BTreeMap<(NaiveDate, String), Vec<(u64, &Event)>> = BTreeMap::new();
        for (seq, ev) in events {
            let key = (ev.timestamp.date_naive(), agency_dir(ev.agency()));
            groups.entry(key).or_default().push((*seq, ev));
        }
        let mut written = Vec::new();
        for ((day, org), mut rows) in groups {
            rows.sort_by_key(|(seq, ev)| (ev.timestamp, *seq));
            let batch = to_batch(&rows)?;
            let (Some(min_seq), Some(max_seq)) = (
                rows.iter().map(|r| r.0).min(),
                rows.iter().map(|r| r.0).max(),
            ) else {
                continue;
            };
            let file = self.write_file(day, &org, min_seq, max_seq, &[batch])?;
            written.push(file);
        }
        Ok(written)
    }

    fn write_file(
        &self,
        day: NaiveDate,
        org: &str,
        min_seq: u64,
        max_seq: u64,
        batches: &[RecordBatch],
    ) -> Result<LakeFile, StoreError> {
        let dir = self
            .root
            .join(format!("dt={day}"))
            .join(format!("org={org}"));
        fs::create_dir_all(&dir).map_err(|e| io_err("failed to create", &dir, e))?;
        let name = format!("{min_seq:020}-{max_seq:020}.parquet");
        let tmp = dir.join(format!(".{name}.part"));
        let path = dir.join(&name);
        let level = ZstdLevel::try_new(self.zstd_level).map_err(df_err)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(self.row_group_rows.max(1)))
            // Small pages let a search read only the rows it shows (see `fetch`).
            .set_data_page_row_count_limit(4096)
            .set_data_page_size_limit(self.page_bytes)
            .build();
        let f = File::create(&tmp).map_err(|e| io_err("failed to create", &tmp, e))?;
        let mut w = ArrowWriter::try_new(f, schema(), Some(props)).map_err(df_err)?;
        for b in batches {
            w.write(b).map_err(df_err)?;
        }
        let f = w.into_inner().map_err(df_err)?;
        f.sync_all()
            .map_err(|e| io_err("failed to sync", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io_err("failed to rename", &tmp, e))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("failed to sync", &dir, e))?;
        debug!(path = %path.display(), "parquet file written");
        Ok(LakeFile {
            day,
            org: org.to_owned(),
            min_seq,
            max_seq,
            path,
        })
    }

    /// Removes what an interrupted flush or compaction left: temporary files, files above the
    /// checkpoint and files covered by a compacted one. Returns how many were removed.
    pub fn recover(&self, checkpoint: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        for (_, day_path) in self.days()? {
            for org in fs::read_dir(&day_path)
                .map_err(|e| io_err("failed to list", &day_path, e))?
                .flatten()
            {
                for f in fs::read_dir(org.path())
                    .map_err(|e| io_err("failed to list", &org.path(), e))?
                    .flatten()
                {
                    if f.file_name().to_str().is_some_and(|n| n.ends_with(".part")) {
                        fs::remove_file(f.path())
                            .map_err(|e| io_err("failed to delete", &f.path(), e))?;
                        removed += 1;
                    }
                }
            }
        }
        let files = self.files()?;
        for f in &files {
            let covered = files.iter().any(|o| {
                o.path != f.path
                    && o.day == f.day
                    && o.org == f.org
                    && o.min_seq <= f.min_seq
                    && f.max_seq <= o.max_seq
            });
            if f.min_seq > checkpoint || covered {
                info!(path = %f.path.display(), checkpoint, covered, "removing unfinished parquet file");
                fs::remove_file(&f.path).map_err(|e| io_err("failed to delete", &f.path, e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Reads every event of one file.
    pub fn read_file(&self, path: &Path) -> Result<Vec<(u64, Event)>, StoreError> {
        let f = File::open(path).map_err(|e| io_err("failed to open", path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(f)
            .map_err(df_err)?
            .build()
            .map_err(df_err)?;
        let mut out = Vec::new();
        for batch in reader {
            out.extend(from_batch(&batch.map_err(df_err)?)?);
        }
        Ok(out)
    }

    /// The committed files of one day.
    pub fn day_files(&self, day: NaiveDate) -> Result<Vec<LakeFile>, StoreError> {
        let day_path = self.root.join(format!("dt={day}"));
        let rd = match fs::read_dir(&day_path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("failed to list", &day_path, e)),
        };
        let mut out = Vec::new();
        for org in rd.flatten() {
            let Some(org_name) = org
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("org="))
                .map(str::to_owned)
            else {
                continue;
            };
            let Ok(files) = fs::read_dir(org.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name();
                let Some((min_seq, max_seq)) = name.to_str().and_then(parse_file_name) else {
                    continue;
                };
                out.push(LakeFile {
                    day,
                    org: org_name.clone(),
                    min_seq,
                    max_seq,
                    path: f.path(),
                });
            }
        }
        out.sort_by(|a, b| (&a.org, a.min_seq).cmp(&(&b.org, b.min_seq)));
        Ok(out)
    }

    /// Loads events of `day` by sequence number. Each wanted id may name its agency (the
    /// `organization.id` value), which points at the one file to read; without it, or when that
    /// file does not hold it, every file of the day whose range covers the id is tried. Only the
    /// pages holding wanted rows are decoded. Ids found nowhere (removed by retention) are
    /// left out of the answer.
    pub fn fetch(
        &self,
        day: NaiveDate,
        wanted: &[(u64, Option<&str>)],
    ) -> Result<std::collections::HashMap<u64, Event>, StoreError> {
        use std::collections::{HashMap, HashSet};
        let mut out = HashMap::with_capacity(wanted.len());
        if wanted.is_empty() {
            return Ok(out);
        }
        let files = self.day_files(day)?;
        let mut per_file: BTreeMap<usize, HashSet<u64>> = BTreeMap::new();
        let mut unplaced = Vec::new();
        for (id, org) in wanted {
            let dir = agency_dir(*org);
            match files
                .iter()
                .position(|f| f.org == dir && f.min_seq <= *id && *id <= f.max_seq)
            {
                Some(i) => {
                    per_file.entry(i).or_default().insert(*id);
                }
                None => unplaced.push(*id),
            }
        }
        for (i, ids) in &per_file {
            if let Some(f) = files.get(*i) {
                self.fetch_rows(&f.path, ids, &mut out)?;
            }
        }
        // Second chance: ids whose agency hint did not lead to them.
        let missing: HashSet<u64> = per_file
            .values()
            .flatten()
            .copied()
            .chain(unplaced)
            .filter(|id| !out.contains_key(id))
            .collect();
        if !missing.is_empty() {
            for f in &files {
                let ids: HashSet<u64> = missing
                    .iter()
                    .copied()
                    .filter(|id| f.min_seq <= *id && *id <= f.max_seq && !out.contains_key(id))
                    .collect();
                if !ids.is_empty() {
                    self.fetch_rows(&f.path, &ids, &mut out)?;
                }
            }
        }
        Ok(out)
    }

    /// Reads the rows of `ids` from one file into `out`: the `_id` column first, then only the
    /// selected rows (a large share of the file is read whole).
    fn fetch_rows(
        &self,
        path: &Path,
        ids: &std::collections::HashSet<u64>,
        out: &mut std::collections::HashMap<u64, Event>,
    ) -> Result<(), StoreError> {
        use parquet::arrow::ProjectionMask;
        use parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection};
        let open = || -> Result<Option<ParquetRecordBatchReaderBuilder<File>>, StoreError> {
            let f = match File::open(path) {
                Ok(f) => f,
                // Compaction or retention removed it since it was listed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_err("failed to open", path, e)),
            };
            let opts = ArrowReaderOptions::new()
                .with_offset_index_policy(parquet::file::metadata::PageIndexPolicy::Optional);
            ParquetRecordBatchReaderBuilder::try_new_with_options(f, opts)
                .map(Some)
                .map_err(df_err)
        };
        let Some(first) = open()? else { return Ok(()) };
        let rows = usize::try_from(first.metadata().file_metadata().num_rows()).unwrap_or(0);
        let selection = if ids.len().saturating_mul(8) >= rows {
            None
        } else {
            let mask = ProjectionMask::columns(first.parquet_schema(), ["_id"]);
            let reader = first.with_projection(mask).build().map_err(df_err)?;
            let mut positions = Vec::with_capacity(ids.len());
            let mut row = 0usize;
            for batch in reader {
                let batch = batch.map_err(df_err)?;
                let col = batch
                    .column(0)
                    .as_primitive_opt::<UInt64Type>()
                    .ok_or_else(|| StoreError::Corrupt("_id type".into()))?;
                for v in col.values() {
                    if ids.contains(v) {
                        positions.push(row);
                    }
                    row += 1;
                }
            }
            Some(RowSelection::from_consecutive_ranges(
                positions.into_iter().map(|p| p..p + 1),
                row,
            ))
        };
        let Some(mut builder) = open()? else {
            return Ok(());
        };
        if let Some(sel) = selection {
            builder = builder.with_row_selection(sel);
        }
        for batch in builder.build().map_err(df_err)? {
            for (id, ev) in from_batch(&batch.map_err(df_err)?)? {
                if ids.contains(&id) {
                    out.insert(id, ev);
                }
            }
        }
        Ok(())
    }

    /// Files whose day is inside `[from, to]` (days, inclusive).
    pub fn files_between(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<LakeFile>, StoreError> {
        Ok(self
            .files()?
            .into_iter()
            .filter(|f| f.day >= from && f.day <= to)
            .collect())
    }

    /// Deletes day partitions older than each agency's retention; returns the files removed.
    pub fn apply_retention(
        &self,
        today: NaiveDate,
        retention_for: impl Fn(&str) -> u32,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        for (day, day_path) in self.days()? {
            for org in fs::read_dir(&day_path)
                .map_err(|e| io_err("failed to list", &day_path, e))?
                .flatten()
            {
                let Some(name) = org
                    .file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("org="))
                    .map(str::to_owned)
                else {
                    continue;
                };
                let agency = percent_decode(&name);
                let keep = i64::from(retention_for(&agency));
                if (today - day).num_days() >= keep {
                    let n = fs::read_dir(org.path()).map(|r| r.count()).unwrap_or(0);
                    fs::remove_dir_all(org.path())
                        .map_err(|e| io_err("failed to delete", &org.path(), e))?;
                    info!(day = %day, agency = %agency, files = n, "retention removed partition");
                    removed += n;
                }
            }
            // Drop the day directory once empty.
            if fs::read_dir(&day_path).is_ok_and(|mut r| r.next().is_none()) {
                let _ = fs::remove_dir(&day_path);
            }
        }
        Ok(removed)
    }

    /// Merges the files of each partition that has at least `min_files` files, all at or
    /// below `checkpoint`, into one. Returns the number of partitions compacted.
    pub fn compact(&self, min_files: usize, checkpoint: u64) -> Result<usize, StoreError> {
        let files = self.files()?;
        let mut parts: BTreeMap<(NaiveDate, String), Vec<&LakeFile>> = BTreeMap::new();
        for f in files.iter().filter(|f| f.max_seq <= checkpoint) {
            parts.entry((f.day, f.org.clone())).or_default().push(f);
        }
        let mut done = 0;
        for ((day, org), group) in parts {
            if group.len() < min_files.max(2) {
                continue;
            }
            let mut rows: Vec<(u64, Event)> = Vec::new();
            for f in &group {
                rows.extend(self.read_file(&f.path)?);
            }
            rows.sort_by_key(|(seq, ev)| (ev.timestamp, *seq));
            let refs: Vec<(u64, &Event)> = rows.iter().map(|(s, e)| (*s, e)).collect();
            let min_seq = group.iter().map(|f| f.min_seq).min().unwrap_or(0);
            let max_seq = group.iter().map(|f| f.max_seq).max().unwrap_or(0);
            let mut batches = Vec::new();
            for chunk in refs.chunks(self.row_group_rows.max(1)) {
                batches.push(to_batch(chunk)?);
            }
            self.write_file(day, &org, min_seq, max_seq, &batches)?;
            for f in &group {
                if let Err(e) = fs::remove_file(&f.path) {
                    warn!(path = %f.path.display(), error = %e, "failed to delete compacted file");
                }
            }
            info!(day = %day, org = %org, files = group.len(), rows = rows.len(), "compacted partition");
            done += 1;
        }
        Ok(done)
    }

    /// Runs SQL over the table `events` (plus `dt`, `org` path columns).
    pub async fn sql(&self, query: &str, max_rows: usize) -> Result<SqlRows, StoreError> {
        use datafusion::datasource::file_format::parquet::ParquetFormat;
        use datafusion::datasource::listing::{
            ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
        };
        use datafusion::prelude::SessionContext;

        let ctx = SessionContext::new();
        let url = format!("{}/", self.root.display());
        let table_url = ListingTableUrl::parse(&url).map_err(df_err)?;
        let opts = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![
                ("dt".to_owned(), DataType::Utf8),
                ("org".to_owned(), DataType::Utf8),
            ]);
        let cfg = ListingTableConfig::new(table_url)
            .with_listing_options(opts)
            .with_schema(schema());
        let table = ListingTable::try_new(cfg).map_err(df_err)?;
        ctx.register_table("events", Arc::new(table))
            .map_err(df_err)?;
        let df = ctx
            .sql(query)
            .await
            .map_err(|e| StoreError::Invalid(format!("sql: {e}")))?;
        let batches = df
            .collect()
            .await
            .map_err(|e| StoreError::Invalid(format!("sql: {e}")))?;
        let mut out = SqlRows::default();
        if let Some(b) = batches.first() {
            out.columns = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
        }
        for b in &batches {
            for row in 0..b.num_rows() {
                if out.rows.len() >= max_rows {
                    out.truncated = true;
                    return Ok(out);
                }
                let mut r = Vec::with_capacity(b.num_columns());
                for col in b.columns() {
                    r.push(cell(col, row));
                }
                out.rows.push(r);
            }
        }
        Ok(out)
    }
}

/// The result of an SQL query.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SqlRows {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, cells as JSON values.
    pub rows: Vec<Vec<Value>>,
    /// Whether rows were cut at the row limit.
    pub truncated: bool,
}

fn cell(col: &ArrayRef, row: usize) -> Value {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    if col.is_null(row) {
        return Value::Null;
    }
    match col.data_type() {
        DataType::Int64 => Value::from(col.as_primitive::<Int64Type>().value(row)),
        DataType::UInt64 => Value::from(col.as_primitive::<UInt64Type>().value(row)),
        DataType::Int32 => {
            Value::from(col.as_primitive::<arrow::datatypes::Int32Type>().value(row))
        }
        DataType::Float64 => Value::from(
            col.as_primitive::<arrow::datatypes::Float64Type>()
                .value(row),
        ),
        DataType::Boolean => Value::from(col.as_boolean().value(row)),
        _ => match ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default()) {
            Ok(f) => Value::String(f.value(row).to_string()),
            Err(_) => Value::Null,
        },
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(h);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn to_batch(rows: &[(u64, &Event)]) -> Result<RecordBatch, StoreError> {
    let n = rows.len();
    let mut ids = UInt64Builder::with_capacity(n);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut strs: Vec<StringBuilder> = STR_COLUMNS.iter().map(|_| StringBuilder::new()).collect();
    let mut ints: Vec<Int64Builder> = INT_COLUMNS.iter().map(|_| Int64Builder::new()).collect();
    let mut extra = StringBuilder::new();
    // The `extra` object of one row, written straight from the event's fields.
    let mut json: Vec<u8> = Vec::with_capacity(1024);
    let mut used = vec![false; STR_COLUMNS.len()];
    let mut used_int = vec![false; INT_COLUMNS.len()];
    for (seq, ev) in rows {
        ids.append_value(*seq);
        ts.append_value(ev.timestamp.timestamp_micros());
        used.fill(false);
        used_int.fill(false);
        json.clear();
        for (k, v) in &ev.fields {
            if let Some(i) = STR_COLUMNS.iter().position(|c| c == k)
                && let Value::String(s) = v
            {
                strs[i].append_value(s);
                used[i] = true;
                continue;
            }
            if let Some(i) = INT_COLUMNS.iter().position(|c| c == k)
                && let Some(x) = v.as_i64()
                && v.is_i64()
            {
                ints[i].append_value(x);
                used_int[i] = true;
                continue;
            }
            json.push(if json.is_empty() { b'{' } else { b',' });
            serde_json::to_writer(&mut json, k).map_err(df_err)?;
            json.push(b':');
            serde_json::to_writer(&mut json, v).map_err(df_err)?;
        }
        for (b, u) in strs.iter_mut().zip(&used) {
            if !u {
                b.append_null();
            }
        }
        for (b, u) in ints.iter_mut().zip(&used_int) {
            if !u {
                b.append_null();
            }
        }
        if json.is_empty() {
            extra.append_null();
        } else {
            json.push(b'}');
            extra.append_value(std::str::from_utf8(&json).map_err(df_err)?);
        }
    }
    let mut cols: Vec<ArrayRef> = vec![Arc::new(ids.finish()), Arc::new(ts.finish())];
    for mut b in strs {
        cols.push(Arc::new(b.finish()));
    }
    for mut b in ints {
        cols.push(Arc::new(b.finish()));
    }
    cols.push(Arc::new(extra.finish()));
    RecordBatch::try_new(schema(), cols).map_err(df_err)
}

/// Turns rows of the file schema back into events.
pub fn from_batch(batch: &RecordBatch) -> Result<Vec<(u64, Event)>, StoreError> {
    let s = batch.schema();
    let col = |name: &str| -> Result<&ArrayRef, StoreError> {
        let i = s
            .index_of(name)
            .map_err(|_| StoreError::Corrupt(format!("parquet column {name} missing")))?;
        Ok(batch.column(i))
    };
    let ids = col("_id")?
        .as_primitive_opt::<UInt64Type>()
        .ok_or_else(|| StoreError::Corrupt("_id type".into()))?;
    let ts = col("@timestamp")?
        .as_primitive_opt::<arrow::datatypes::TimestampMicrosecondType>()
        .ok_or_else(|| StoreError::Corrupt("@timestamp type".into()))?;
    let mut str_cols = Vec::new();
    for c in STR_COLUMNS {
        let a = col(c)?
            .as_string_opt::<i32>()
            .ok_or_else(|| StoreError::Corrupt(format!("{c} type")))?;
        str_cols.push((*c, a));
    }
    let mut int_cols = Vec::new();
    for c in INT_COLUMNS {
        let a = col(c)?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| StoreError::Corrupt(format!("{c} type")))?;
        int_cols.push((*c, a));
    }
    let extra = col("extra")?
        .as_string_opt::<i32>()
        .ok_or_else(|| StoreError::Corrupt("extra type".into()))?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let t = DateTime::<Utc>::from_timestamp_micros(ts.value(row))
            .ok_or_else(|| StoreError::Corrupt("timestamp out of range".into()))?;
        let mut ev = Event::new(t);
        if !extra.is_null(row) {
            match serde_json::from_str::<Map<String, Value>>(extra.value(row)) {
                Ok(m) => ev.fields = m,
                Err(e) => return Err(StoreError::Corrupt(format!("extra column: {e}"))),
            }
        }
        for (name, a) in &str_cols {
            if !a.is_null(row) {
                ev.set(name, a.value(row));
            }
        }
        for (name, a) in &int_cols {
            if !a.is_null(row) {
                ev.set(name, a.value(row));
            }
        }
        out.push((ids.value(row), ev));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
