//! The evidence vault: content-addressed, write-once files (`sha256/ab/<hash>`), the SHA-256
//! computed while the upload streams in, a chain-of-custody log, zip export with a manifest of
//! hashes, and verification.

use crate::Soar;
use crate::audit::Actor;
use crate::clock::{from_ms, to_ms};
use crate::error::{Result, SoarError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// One evidence item.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Evidence {
    /// Id.
    pub id: i64,
    /// Incident.
    pub incident_id: i64,
    /// SHA-256 (hex) of the content.
    pub sha256: String,
    /// Size in bytes.
    pub size: i64,
    /// Original file name.
    pub filename: String,
    /// Description.
    pub description: String,
    /// Uploader.
    pub uploaded_by: Option<i64>,
    /// Upload time.
    pub uploaded_at: DateTime<Utc>,
}

/// One custody entry.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CustodyEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor_id: Option<i64>,
    /// `uploaded`, `downloaded`, `exported`, `verified`.
    pub action: String,
    /// Detail.
    pub detail: String,
}

/// A problem found by `verify_evidence`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EvidenceProblem {
    /// Evidence id.
    pub id: i64,
    /// Expected hash.
    pub sha256: String,
    /// What is wrong.
    pub problem: String,
}

/// An upload in progress: feed chunks, then `finish`.
#[derive(Debug)]
pub struct EvidenceWriter {
    tmp: PathBuf,
    file: tokio::fs::File,
    hasher: Sha256,
    size: u64,
    max: u64,
}

impl EvidenceWriter {
    /// Appends a chunk (refused past the size limit).
    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.size += chunk.len() as u64;
        if self.size > self.max {
            return Err(SoarError::Invalid(format!(
                "evidence larger than {} bytes",
                self.max
            )));
        }
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| SoarError::io(&self.tmp, e))
    }
}

impl Drop for EvidenceWriter {
    fn drop(&mut self) {
        // An abandoned upload leaves no temporary file behind (after `finish` it is renamed).
        let _ = std::fs::remove_file(&self.tmp);
    }
}

fn safe_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect::<String>()
        .trim_start_matches('.')
        .to_owned();
    if cleaned.is_empty() {
        "evidence.bin".into()
    } else {
        cleaned
    }
}

const COLS: &str = "id, incident_id, sha256, size, filename, description, uploaded_by, uploaded_at";

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Evidence> {
    Ok(Evidence {
        id: r.try_get(0)?,
        incident_id: r.try_get(1)?,
        sha256: r.try_get(2)?,
        size: r.try_get(3)?,
        filename: r.try_get(4)?,
        description: r.try_get(5)?,
        uploaded_by: r.try_get(6)?,
        uploaded_at: from_ms(r.try_get(7)?),
    })
}

fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok((hex::encode(h.finalize()), size));
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
}

impl Soar {
    /// Where content with this hash lives.
    pub fn evidence_path(&self, sha256: &str) -> PathBuf {
        let prefix = sha256.get(..2).unwrap_or("00");
        self.evidence_dir.join("sha256").join(prefix).join(sha256)
    }

    /// Starts an upload of at most `max_bytes`.
    pub async fn evidence_writer(&self, max_bytes: u64) -> Result<EvidenceWriter> {
        let dir = self.evidence_dir.join("tmp");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| SoarError::io(&dir, e))?;
        let tmp = dir.join(format!(
            "upload-{}",
            crate::user::secret_hash(&format!(
                "{:?}{}",
                std::time::SystemTime::now(),
                std::process::id()
            ))
            .get(..24)
            .unwrap_or("x")
        ));
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| SoarError::io(&tmp, e))?;
        Ok(EvidenceWriter {
            tmp,
            file,
            hasher: Sha256::new(),
            size: 0,
            max: max_bytes,
        })
    }

    /// Finishes an upload: moves the content to its content address (kept if already there),
    /// records the item and the first custody entry.
    pub async fn finish_evidence(
        &self,
        actor: &Actor,
        incident_id: i64,
        filename: &str,
        description: &str,
        w: EvidenceWriter,
    ) -> Result<Evidence> {
        let detail = format!("from {}", actor.source);
        self.finish_evidence_as(
            actor,
            incident_id,
            filename,
            description,
            w,
            "uploaded",
            &detail,
        )
        .await
    }

    /// As `finish_evidence`, with the first custody entry's action and detail given (e.g.
    /// `captured` with the query and time range of a captured event set).
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_evidence_as(
        &self,
        actor: &Actor,
        incident_id: i64,
        filename: &str,
        description: &str,
        mut w: EvidenceWriter,
        custody_action: &str,
        custody_detail: &str,
    ) -> Result<Evidence> {
        self.incident(incident_id).await?;
        w.file.flush().await.map_err(|e| SoarError::io(&w.tmp, e))?;
        w.file
            .sync_all()
            .await
            .map_err(|e| SoarError::io(&w.tmp, e))?;
        let sha = hex::encode(std::mem::take(&mut w.hasher).finalize());
        let dest = self.evidence_path(&sha);
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| SoarError::io(dir, e))?;
        }
        if tokio::fs::metadata(&dest).await.is_err() {
            tokio::fs::rename(&w.tmp, &dest)
                .await
                .map_err(|e| SoarError::io(&dest, e))?;
            let mut perms = tokio::fs::metadata(&dest)
                .await
                .map_err(|e| SoarError::io(&dest, e))?
                .permissions();
            perms.set_readonly(true);
            tokio::fs::set_permissions(&dest, perms)
                .await
                .map_err(|e| SoarError::io(&dest, e))?;
        }
        let now = self.now();
        let filename = safe_filename(filename);
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO evidence (incident_id, sha256, size, filename, description, uploaded_by, \
             uploaded_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(incident_id)
        .bind(&sha)
        .bind(w.size as i64)
        .bind(&filename)
        .bind(description)
        .bind(actor.user_id)
        .bind(to_ms(now))
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        custody(&mut tx, id, now, actor, custody_action, custody_detail).await?;
        sqlx::query(
            "INSERT INTO incident_timeline (incident_id, at, kind, actor_id, text) \
             VALUES ($1, $2, 'evidence', $3, $4)",
        )
        .bind(incident_id)
        .bind(to_ms(now))
        .bind(actor.user_id)
        .bind(format!("evidence {filename} sha256 {sha}"))
        .execute(&mut *tx)
        .await?;
        let ev = Evidence {
            id,
            incident_id,
            sha256: sha,
            size: w.size as i64,
            filename,
            description: description.into(),
            uploaded_by: actor.user_id,
            uploaded_at: from_ms(to_ms(now)),
        };
        self.audit(
            &mut tx,
            actor,
            "evidence.upload",
            "evidence",
            id,
            None,
            serde_json::to_value(&ev).ok(),
        )
        .await?;
        tx.commit().await?;
        Ok(ev)
    }

    /// One item.
    pub async fn evidence(&self, id: i64) -> Result<Evidence> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM evidence WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| SoarError::not_found("evidence", id))?;
        from_row(&row)
    }

    /// The items of an incident.
    pub async fn incident_evidence(&self, incident_id: i64) -> Result<Vec<Evidence>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM evidence WHERE incident_id = $1 ORDER BY id"
        ))
        .bind(incident_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Reads an item's content, checking its hash and logging the hand-over.
    pub async fn read_evidence(&self, actor: &Actor, id: i64) -> Result<(Evidence, Vec<u8>)> {
        let ev = self.evidence(id).await?;
        let path = self.evidence_path(&ev.sha256);
        let data = tokio::fs::read(&path)
            .await
            .map_err(|e| SoarError::io(&path, e))?;
        if hex::encode(Sha256::digest(&data)) != ev.sha256 {
            return Err(SoarError::Internal(format!(
                "evidence {id} does not match its hash"
            )));
        }
        let mut tx = self.begin().await?;
        custody(
            &mut tx,
            id,
            self.now(),
            actor,
            "downloaded",
            &format!("to {}", actor.source),
        )
        .await?;
        tx.commit().await?;
        Ok((ev, data))
    }

    /// The custody log of an item.
    pub async fn custody(&self, id: i64) -> Result<Vec<CustodyEntry>> {
        let rows = sqlx::query(
            "SELECT at, actor_id, action, detail FROM evidence_custody WHERE evidence_id = $1 \
             ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CustodyEntry {
                    at: from_ms(r.try_get(0)?),
                    actor_id: r.try_get(1)?,
                    action: r.try_get(2)?,
                    detail: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Rehashes every stored item (or one incident's); returns the problems found.
    pub async fn verify_evidence(&self, incident_id: Option<i64>) -> Result<Vec<EvidenceProblem>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM evidence WHERE ($1 IS NULL OR incident_id = $1) ORDER BY id"
        ))
        .bind(incident_id)
        .fetch_all(self.pool())
        .await?;
        let mut problems = Vec::new();
        for r in &rows {
            let ev = from_row(r)?;
            let path = self.evidence_path(&ev.sha256);
            let result = tokio::task::spawn_blocking(move || hash_file(&path))
                .await
                .map_err(|e| SoarError::Internal(format!("hashing task: {e}")))?;
            let problem = match result {
                Err(e) => Some(format!("content unreadable: {e}")),
                Ok((h, _)) if h != ev.sha256 => Some(format!("content hash is {h}")),
                Ok((_, size)) if size as i64 != ev.size => Some(format!("size is {size}")),
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                problems.push(EvidenceProblem {
                    id: ev.id,
                    sha256: ev.sha256,
                    problem,
                });
            }
        }
        Ok(problems)
    }

    /// Writes a zip of an incident's evidence with `manifest.json` and `SHA256SUMS`, logging the
    /// export in each item's custody. Refuses when any item fails its hash check.
    pub async fn export_evidence_zip(
        &self,
        actor: &Actor,
        incident_id: i64,
        out: &Path,
    ) -> Result<Vec<Evidence>> {
        let incident = self.incident(incident_id).await?;
        let items = self.incident_evidence(incident_id).await?;
        let problems = self.verify_evidence(Some(incident_id)).await?;
        if let Some(p) = problems.first() {
            return Err(SoarError::Internal(format!(
                "evidence {} failed verification: {}",
                p.id, p.problem
            )));
        }
        let now = self.now();
        let paths: Vec<(Evidence, PathBuf)> = items
            .iter()
            .map(|e| (e.clone(), self.evidence_path(&e.sha256)))
            .collect();
        let manifest = serde_json::json!({
            "incident_id": incident.id,
            "incident_title": incident.title,
            "agency": incident.agency_name,
            "exported_at": now,
            "exported_by": actor.name,
            "items": items,
        });
        let out_path = out.to_owned();
        tokio::task::spawn_blocking(move || write_zip(&out_path, &paths, &manifest))
            .await
            .map_err(|e| SoarError::Internal(format!("zip task: {e}")))?
            .map_err(|e| SoarError::io(out, e))?;
        let mut tx = self.begin().await?;
        for e in &items {
            custody(
                &mut tx,
                e.id,
                now,
                actor,
                "exported",
                &out.display().to_string(),
            )
            .await?;
        }
        self.audit(
            &mut tx,
            actor,
            "evidence.export",
            "incident",
            incident_id,
            None,
            Some(serde_json::json!({"items": items.len()})),
        )
        .await?;
        tx.commit().await?;
        Ok(items)
    }
}

fn write_zip(
    out: &Path,
    items: &[(Evidence, PathBuf)],
    manifest: &serde_json::Value,
) -> std::io::Result<()> {
    let file = std::fs::File::create(out)?;
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let zerr = |e: zip::result::ZipError| std::io::Error::other(e.to_string());
    let mut sums = String::new();
    for (ev, path) in items {
        let name = format!("evidence/{}-{}", ev.id, ev.filename);
        zip.start_file(&name, opts).map_err(zerr)?;
        let mut f = std::fs::File::open(path)?;
        std::io::copy(&mut f, &mut zip)?;
        sums.push_str(&format!("{}  {}\n", ev.sha256, name));
    }
    zip.start_file("SHA256SUMS", opts).map_err(zerr)?;
    zip.write_all(sums.as_bytes())?;
    zip.start_file("manifest.json", opts).map_err(zerr)?;
    zip.write_all(
        serde_json::to_string_pretty(manifest)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    zip.finish().map_err(zerr)?;
    Ok(())
}

async fn custody(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    id: i64,
    at: DateTime<Utc>,
    actor: &Actor,
    action: &str,
    detail: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO evidence_custody (evidence_id, at, actor_id, action, detail) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(to_ms(at))
    .bind(actor.user_id)
    .bind(action)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_lose_paths_and_control_characters() {
        assert_eq!(safe_filename("../../etc/passwd"), "passwd");
        assert_eq!(safe_filename("C:\\x\\nhật-ký.log"), "nhật-ký.log");
        assert_eq!(safe_filename("a\u{1b}[31mb"), "a[31mb");
        assert_eq!(safe_filename(".."), "evidence.bin");
        assert_eq!(safe_filename(""), "evidence.bin");
    }

    proptest::proptest! {
        #[test]
        fn safe_filename_never_panics_and_has_no_separators(name in "\\PC{0,300}") {
            let f = safe_filename(&name);
            proptest::prop_assert!(!f.is_empty() && !f.contains('/') && !f.contains('\\'));
            proptest::prop_assert!(!f.starts_with('.'));
        }
    }
}
