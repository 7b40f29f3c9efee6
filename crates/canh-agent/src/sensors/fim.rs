//! File integrity monitoring of configured paths: a SHA-256 baseline, then inotify.
//!
//! Files are watched through their parent directory, so an editor's write-to-temp-then-rename
//! and a delete-and-recreate are both seen. Directories are watched recursively (new
//! subdirectories are added as they appear). Each change is compared with the baseline and
//! reported with before/after metadata.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use canh_core::Event;
use inotify::{Inotify, WatchDescriptor, WatchMask};
use serde_json::json;

use super::{SensorError, base_event};

/// Most files kept in the baseline (a guard against watching `/`).
const MAX_FILES: usize = 50_000;
const MAX_DEPTH: usize = 8;

/// What the baseline keeps per file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileState {
    /// SHA-256 of the content, hex (`None` when unreadable).
    pub sha256: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, unix seconds.
    pub mtime: i64,
}

fn state_of(path: &Path) -> Option<FileState> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    Some(FileState {
        sha256: crate::quarantine::sha256_file(path).ok(),
        size: meta.len(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime(),
    })
}

fn mask() -> WatchMask {
    WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::ATTRIB
}

/// The FIM sensor's state.
pub struct Fim {
    inotify: Inotify,
    baseline: HashMap<PathBuf, FileState>,
    /// Watched directory per descriptor, and (for file watches) the names that matter.
    dirs: HashMap<WatchDescriptor, (PathBuf, Option<HashSet<OsString>>)>,
    recursive: HashSet<PathBuf>,
    buffer: Vec<u8>,
}

impl Fim {
    /// Takes the baseline of `paths` and starts watching them.
    pub fn new(paths: &[PathBuf]) -> Result<Self, SensorError> {
        let mut fim = Self {
            inotify: Inotify::init()?,
            baseline: HashMap::new(),
            dirs: HashMap::new(),
            recursive: HashSet::new(),
            buffer: vec![0u8; 64 * 1024],
        };
        for p in paths {
            if std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                fim.watch_tree(p, 0)?;
            } else {
                fim.watch_file(p)?;
            }
        }
        Ok(fim)
    }

    /// Number of files in the baseline.
    pub fn baseline_len(&self) -> usize {
        self.baseline.len()
    }

    fn watch_file(&mut self, path: &Path) -> Result<(), SensorError> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(());
        };
        if !parent.is_dir() {
            return Ok(());
        }
        let wd = self.inotify.watches().add(parent, mask())?;
        let entry = self
            .dirs
            .entry(wd)
            .or_insert_with(|| (parent.to_path_buf(), Some(HashSet::new())));
        if let Some(names) = entry.1.as_mut() {
            names.insert(name.to_os_string());
        }
        if let Some(st) = state_of(path) {
            self.baseline.insert(path.to_path_buf(), st);
        }
        Ok(())
    }

    fn watch_tree(&mut self, dir: &Path, depth: usize) -> Result<(), SensorError> {
        if depth > MAX_DEPTH {
            return Ok(());
        }
        let wd = self
            .inotify
            .watches()
            .add(dir, mask() | WatchMask::ONLYDIR)?;
        // A directory watch sees everything, even if a file watch on it came first.
        self.dirs.insert(wd, (dir.to_path_buf(), None));
        self.recursive.insert(dir.to_path_buf());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                self.watch_tree(&path, depth + 1)?;
            } else if ft.is_file()
                && self.baseline.len() < MAX_FILES
                && let Some(st) = state_of(&path)
            {
                self.baseline.insert(path, st);
            }
        }
        Ok(())
    }

    /// Reads pending inotify events (non-blocking) and returns change events.
    pub fn poll(&mut self, host: &str) -> Result<Vec<Event>, SensorError> {
        let mut changed = BTreeSet::new();
        let mut new_dirs = Vec::new();
        loop {
            let events = match self.inotify.read_events(&mut self.buffer) {
                Ok(evs) => evs,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            };
            let mut any = false;
            for ev in events {
                any = true;
                let Some(name) = ev.name else { continue };
                let Some((dir, filter)) = self.dirs.get(&ev.wd) else {
                    continue;
                };
                if filter.as_ref().is_some_and(|names| !names.contains(name)) {
                    continue;
                }
                let path = dir.join(name);
                if ev.mask.contains(inotify::EventMask::ISDIR) {
                    if filter.is_none()
                        && ev
                            .mask
                            .intersects(inotify::EventMask::CREATE | inotify::EventMask::MOVED_TO)
                    {
                        new_dirs.push(path);
                    }
                    continue;
                }
                changed.insert(path);
            }
            if !any {
                break;
            }
        }
        for d in new_dirs {
            // Files created in it before the watch existed join the baseline silently.
            self.watch_tree(&d, 1)?;
        }
        let mut out = Vec::new();
        for path in changed {
            let before = self.baseline.get(&path).cloned();
            let after = state_of(&path);
            if before == after {
                continue;
            }
            out.push(change_event(host, &path, before.as_ref(), after.as_ref()));
            match after {
                Some(st) => self.baseline.insert(path, st),
                None => self.baseline.remove(&path),
            };
        }
        Ok(out)
    }
}

fn change_event(
    host: &str,
    path: &Path,
    before: Option<&FileState>,
    after: Option<&FileState>,
) -> Event {
    let (ty, action) = match (before, after) {
        (None, _) => ("creation", "created"),
        (_, None) => ("deletion", "deleted"),
        (Some(b), Some(a)) if b.sha256 != a.sha256 || b.size != a.size => ("change", "modified"),
        _ => ("change", "attributes_modified"),
    };
    let mut ev = base_event(host, "file", "file", ty);
    ev.set("event.action", action);
    ev.set("file.path", path.to_string_lossy().into_owned());
    ev.set_opt(
        "file.name",
        path.file_name().map(|n| n.to_string_lossy().into_owned()),
    );
    ev.set_opt(
        "file.directory",
        path.parent().map(|p| p.to_string_lossy().into_owned()),
    );
    if let Some(a) = after {
        ev.set_opt("file.hash.sha256", a.sha256.clone());
        ev.set("file.size", a.size);
        ev.set("file.mode", format!("{:o}", a.mode));
        ev.set("file.uid", a.uid.to_string());
        ev.set("file.gid", a.gid.to_string());
        ev.set_opt(
            "file.mtime",
            chrono::DateTime::from_timestamp(a.mtime, 0).map(|t| t.to_rfc3339()),
        );
    }
    if let Some(b) = before {
        ev.set(
            "canh.fim.before",
            json!({
                "sha256": b.sha256, "size": b.size, "mode": format!("{:o}", b.mode),
                "uid": b.uid, "gid": b.gid, "mtime": b.mtime,
            }),
        );
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_kinds_follow_before_and_after() {
        let a = FileState {
            sha256: Some("a".into()),
            size: 1,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
        };
        let mut b = a.clone();
        b.mode = 0o600;
        let p = Path::new("/etc/x");
        assert_eq!(
            change_event("h", p, None, Some(&a)).get_str("event.action"),
            Some("created")
        );
        assert_eq!(
            change_event("h", p, Some(&a), None).get_str("event.action"),
            Some("deleted")
        );
        assert_eq!(
            change_event("h", p, Some(&a), Some(&b)).get_str("event.action"),
            Some("attributes_modified")
        );
        let mut c = a.clone();
        c.sha256 = Some("c".into());
        let ev = change_event("h", p, Some(&a), Some(&c));
        assert_eq!(ev.get_str("event.action"), Some("modified"));
        assert_eq!(ev.get("canh.fim.before").unwrap()["sha256"], "a");
    }
}
