//! File quarantine: move a file into a root-only directory with its hash and metadata, and
//! put it back on request.
//!
//! The manifest is written (and fsynced) before the file moves, so a crash between the two
//! leaves a manifest pointing at the original path, never a file nobody can find.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the quarantine keeps about a file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    /// Entry id: `<sha256>-<unix seconds>`.
    pub id: String,
    /// Where the file was.
    pub original_path: PathBuf,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Modification time (unix seconds).
    pub mtime: i64,
    /// When it was quarantined.
    pub quarantined_at: chrono::DateTime<chrono::Utc>,
}

/// The quarantine directory.
#[derive(Debug)]
pub struct Quarantine {
    dir: PathBuf,
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

impl Quarantine {
    /// A quarantine rooted at `dir` (created 0700 on first use).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn ensure_dir(&self) -> Result<(), String> {
        fs::create_dir_all(&self.dir).map_err(|e| format!("creating quarantine dir: {e}"))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("securing quarantine dir: {e}"))
    }

    /// Moves `path` into quarantine.
    pub fn quarantine(&self, path: &Path) -> Result<QuarantineEntry, String> {
        self.ensure_dir()?;
        let meta = fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", path.display()));
        }
        let sha256 = sha256_file(path).map_err(|e| format!("hashing {}: {e}", path.display()))?;
        let now = chrono::Utc::now();
        let entry = QuarantineEntry {
            id: format!("{sha256}-{}", now.timestamp()),
            original_path: path.to_path_buf(),
            sha256,
            size: meta.len(),
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            quarantined_at: now,
        };
        let manifest = self.dir.join(format!("{}.json", entry.id));
        let json = serde_json::to_vec_pretty(&entry).map_err(|e| e.to_string())?;
        crate::client::write_atomic(&manifest, &json, 0o600).map_err(|e| e.to_string())?;
        let blob = self.dir.join(format!("{}.bin", entry.id));
        move_file(path, &blob)?;
        fs::set_permissions(&blob, fs::Permissions::from_mode(0o000))
            .map_err(|e| format!("locking quarantined file: {e}"))?;
        Ok(entry)
    }

    /// Puts entry `id` back where it was, with its mode and owner.
    pub fn restore(&self, id: &str) -> Result<PathBuf, String> {
        if id.contains('/') || id.contains("..") {
            return Err("invalid quarantine entry id".into());
        }
        let manifest = self.dir.join(format!("{id}.json"));
        let text = fs::read_to_string(&manifest).map_err(|e| format!("entry {id}: {e}"))?;
        let entry: QuarantineEntry = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let blob = self.dir.join(format!("{id}.bin"));
        if fs::symlink_metadata(&entry.original_path).is_ok() {
            return Err(format!(
                "{} exists; not overwriting",
                entry.original_path.display()
            ));
        }
        move_file(&blob, &entry.original_path)?;
        fs::set_permissions(&entry.original_path, fs::Permissions::from_mode(entry.mode))
            .map_err(|e| format!("restoring mode: {e}"))?;
        std::os::unix::fs::chown(&entry.original_path, Some(entry.uid), Some(entry.gid))
            .map_err(|e| format!("restoring owner: {e}"))?;
        fs::remove_file(&manifest).map_err(|e| format!("removing manifest: {e}"))?;
        Ok(entry.original_path)
    }
}

/// Renames, or copies + fsyncs + removes when source and target are on different filesystems.
fn move_file(from: &Path, to: &Path) -> Result<(), String> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            fs::copy(from, to).map_err(|e| format!("copying {}: {e}", from.display()))?;
            fs::File::open(to)
                .and_then(|f| f.sync_all())
                .map_err(|e| format!("syncing {}: {e}", to.display()))?;
            fs::remove_file(from).map_err(|e| format!("removing {}: {e}", from.display()))
        }
        Err(e) => Err(format!("moving {}: {e}", from.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_then_restore_round_trips_content_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("dropper.sh");
        fs::write(&victim, b"#!/bin/sh\necho pwned\n").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o755)).unwrap();
        let q = Quarantine::new(&dir.path().join("q"));
        let entry = q.quarantine(&victim).unwrap();
        assert!(fs::symlink_metadata(&victim).is_err(), "file must be gone");
        assert_eq!(entry.size, 21);
        assert_eq!(entry.mode, 0o755);
        let blob = dir.path().join("q").join(format!("{}.bin", entry.id));
        assert_eq!(fs::metadata(&blob).unwrap().mode() & 0o777, 0);
        let back = q.restore(&entry.id).unwrap();
        assert_eq!(back, victim);
        assert_eq!(fs::read(&victim).unwrap(), b"#!/bin/sh\necho pwned\n");
        assert_eq!(fs::metadata(&victim).unwrap().mode() & 0o777, 0o755);
        assert_eq!(sha256_file(&victim).unwrap(), entry.sha256);
    }

    #[test]
    fn restore_refuses_path_tricks_and_unknown_ids() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::new(dir.path());
        assert!(q.restore("../etc/passwd").is_err());
        assert!(q.restore("nope").is_err());
    }

    #[test]
    fn directories_are_not_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::new(&dir.path().join("q"));
        assert!(q.quarantine(dir.path()).is_err());
    }
}
