//! Dead letters: input that could not become an event, kept with the reason and raw bytes.
//!
//! Stored as one JSON line per letter in `deadletter/<YYYY-MM-DD>.jsonl` (UTC day of `time`),
//! raw bytes in base64. Queries use the same language as events: a letter is seen as an event
//! with `@timestamp`, `canh.source.id`, `error.message`, `event.original` (the raw bytes as
//! lossy UTF-8) and `source.address`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as B64;
use canh_core::Event;
use canh_core::query::Expr;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::StoreError;

/// One piece of input that was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// When it was refused.
    pub time: DateTime<Utc>,
    /// The source (listener or parser id) that refused it.
    pub source: String,
    /// Why, in a short English sentence.
    pub reason: String,
    /// The raw bytes as received.
    #[serde(with = "b64")]
    pub raw: Vec<u8>,
    /// Address of the peer that sent it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

mod b64 {
    use super::B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

impl DeadLetter {
    /// The letter as an event, for queries.
    pub fn to_event(&self) -> Event {
        let mut ev = Event::new(self.time);
        ev.set(canh_core::fields::CANH_SOURCE, self.source.as_str());
        ev.set("error.message", self.reason.as_str());
        ev.set(
            canh_core::fields::EVENT_ORIGINAL,
            String::from_utf8_lossy(&self.raw).into_owned(),
        );
        if let Some(p) = &self.peer {
            ev.set("source.address", p.as_str());
        }
        ev
    }
}

/// Counts of dead letters in a time window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeadLetterCounts {
    /// All letters.
    pub total: u64,
    /// By source.
    pub by_source: BTreeMap<String, u64>,
    /// By reason.
    pub by_reason: BTreeMap<String, u64>,
}

/// Append-only store of dead letters, one file per UTC day.
#[derive(Debug)]
pub struct DeadLetterStore {
    dir: PathBuf,
    fsync: bool,
    /// The open file of the current day.
    current: Mutex<Option<(NaiveDate, File)>>,
}

fn io_err(what: &str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        what: format!("{what} {}", path.display()),
        source,
    }
}

fn day_of(name: &str) -> Option<NaiveDate> {
    let stem = name.strip_suffix(".jsonl")?;
    NaiveDate::parse_from_str(stem, "%Y-%m-%d").ok()
}

impl DeadLetterStore {
    /// Opens (or creates) the store in `dir`; `fsync` syncs every append.
    pub fn open(dir: &Path, fsync: bool) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(|e| io_err("failed to create", dir, e))?;
        Ok(Self {
            dir: dir.to_owned(),
            fsync,
            current: Mutex::new(None),
        })
    }

    /// Appends letters (each goes to the file of its own day).
    pub fn append(&self, letters: &[DeadLetter]) -> Result<(), StoreError> {
        let mut guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
        for letter in letters {
            let day = letter.time.date_naive();
            if guard.as_ref().is_none_or(|(d, _)| *d != day) {
                let path = self.dir.join(format!("{day}.jsonl"));
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| io_err("failed to open", &path, e))?;
                *guard = Some((day, f));
            }
            let Some((_, file)) = guard.as_mut() else {
                continue;
            };
            let mut line = serde_json::to_vec(letter)
                .map_err(|e| StoreError::Internal(format!("encoding a dead letter: {e}")))?;
            line.push(b'\n');
            file.write_all(&line)
                .map_err(|e| io_err("failed to write", &self.dir, e))?;
        }
        if self.fsync
            && let Some((_, file)) = guard.as_mut()
        {
            file.sync_data()
                .map_err(|e| io_err("failed to sync", &self.dir, e))?;
        }
        Ok(())
    }

    fn days(&self) -> Result<Vec<(NaiveDate, PathBuf)>, StoreError> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.dir).map_err(|e| io_err("failed to list", &self.dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| io_err("failed to list", &self.dir, e))?;
            if let Some(day) = entry.file_name().to_str().and_then(day_of) {
                out.push((day, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Visits letters with `from <= time < to`, oldest file first; stops when `f` says false.
    fn scan(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        mut f: impl FnMut(DeadLetter) -> bool,
    ) -> Result<(), StoreError> {
        for (day, path) in self.days()? {
            if day < from.date_naive() || day > to.date_naive() {
                continue;
            }
            let file = File::open(&path).map_err(|e| io_err("failed to open", &path, e))?;
            for (n, line) in BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|e| io_err("failed to read", &path, e))?;
                let letter: DeadLetter = match serde_json::from_str(&line) {
                    Ok(l) => l,
                    Err(e) => {
                        // A torn last line after a crash; anything else is worth a warning too.
                        warn!(path = %path.display(), line = n + 1, error = %e, "skipping bad dead letter");
                        continue;
                    }
                };
                if letter.time >= from && letter.time < to && !f(letter) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Letters in `[from, to)` matching `query`, newest first, at most `limit`.
    pub fn search(
        &self,
        query: &Expr,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let mut out = Vec::new();
        self.scan(from, to, |l| {
            if query.matches(&l.to_event()) {
                out.push(l);
            }
            true
        })?;
        out.sort_by_key(|l| std::cmp::Reverse(l.time));
        out.truncate(limit);
        Ok(out)
    }

    /// Counts letters in `[from, to)` matching `query`, by source and by reason.
    pub fn counts(
        &self,
        query: &Expr,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<DeadLetterCounts, StoreError> {
        let mut c = DeadLetterCounts::default();
        self.scan(from, to, |l| {
            if query.matches(&l.to_event()) {
                c.total += 1;
                *c.by_source.entry(l.source).or_default() += 1;
                *c.by_reason.entry(l.reason).or_default() += 1;
            }
            true
        })?;
        Ok(c)
    }

    /// Deletes the files of days before `keep_from`; returns how many were deleted.
    pub fn delete_before(&self, keep_from: NaiveDate) -> Result<usize, StoreError> {
        let mut guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_some_and(|(d, _)| *d < keep_from) {
            *guard = None;
        }
        let mut n = 0;
        for (day, path) in self.days()? {
            if day < keep_from {
                fs::remove_file(&path).map_err(|e| io_err("failed to delete", &path, e))?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn letter(h: u32, source: &str, reason: &str, raw: &[u8]) -> DeadLetter {
        DeadLetter {
            time: Utc.with_ymd_and_hms(2024, 5, 1, h, 0, 0).unwrap(),
            source: source.into(),
            reason: reason.into(),
            raw: raw.to_vec(),
            peer: Some("192.0.2.7:5514".into()),
        }
    }

    #[test]
    fn letters_round_trip_with_binary_raw_bytes_and_are_searchable() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadLetterStore::open(dir.path(), true).unwrap();
        let bin = [0xff, 0x00, b'h', b'i', 0xc3];
        store
            .append(&[
                letter(1, "syslog_udp", "frame too long", b"<13>oversize"),
                letter(2, "cef", "missing CEF header", &bin),
                letter(23, "cef", "missing CEF header", b"garbage"),
            ])
            .unwrap();
        let from = Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap();
        let to = from + Duration::days(1);
        let all = store.search(&Expr::All, from, to, 10).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].time.format("%H").to_string(), "23", "newest first");
        assert_eq!(all[1].raw, bin);
        let q = canh_core::query::parse("canh.source.id:cef AND garbage").unwrap();
        let hits = store.search(&q, from, to, 10).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].raw, b"garbage");
        let c = store
            .counts(&Expr::All, from, from + Duration::hours(3))
            .unwrap();
        assert_eq!(c.total, 2);
        assert_eq!(c.by_source.get("cef"), Some(&1));
        assert_eq!(c.by_reason.get("frame too long"), Some(&1));
    }

    #[test]
    fn torn_last_line_is_skipped_and_old_days_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadLetterStore::open(dir.path(), false).unwrap();
        store.append(&[letter(1, "a", "r", b"x")]).unwrap();
        let mut old = letter(1, "a", "r", b"y");
        old.time -= Duration::days(40);
        store.append(&[old]).unwrap();
        let path = dir.path().join("2024-05-01.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"time\":\"2024-05-01T0").unwrap();
        let from = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(store.counts(&Expr::All, from, to).unwrap().total, 2);
        let keep = NaiveDate::from_ymd_opt(2024, 4, 1).unwrap();
        assert_eq!(store.delete_before(keep).unwrap(), 1);
        assert_eq!(store.counts(&Expr::All, from, to).unwrap().total, 1);
    }
}
