//! What `/proc` says about a process, and ECS fields built from it.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use canh_core::Event;

/// Executables larger than this are not hashed (the field is left out, never guessed).
const MAX_HASH_BYTES: u64 = 256 * 1024 * 1024;

/// A process as read from `/proc/PID`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcInfo {
    /// Process id.
    pub pid: u32,
    /// Parent pid.
    pub ppid: Option<u32>,
    /// `/proc/PID/exe` target.
    pub executable: Option<String>,
    /// Arguments.
    pub args: Vec<String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Real uid.
    pub uid: Option<u32>,
    /// `comm`.
    pub name: Option<String>,
}

impl ProcInfo {
    /// Reads what is still readable; a process that already exited gives mostly `None`s.
    pub fn read(proc_root: &Path, pid: u32) -> Self {
        let dir = proc_root.join(pid.to_string());
        let executable = std::fs::read_link(dir.join("exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        let args = std::fs::read(dir.join("cmdline"))
            .map(|raw| parse_cmdline(&raw))
            .unwrap_or_default();
        let cwd = std::fs::read_link(dir.join("cwd"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let (ppid, uid, name) = parse_status(&status);
        Self {
            pid,
            ppid,
            executable,
            args,
            cwd,
            uid,
            name,
        }
    }

    /// `process.command_line`: the arguments joined by spaces.
    pub fn command_line(&self) -> Option<String> {
        if self.args.is_empty() {
            None
        } else {
            Some(self.args.join(" "))
        }
    }
}

/// Splits `/proc/PID/cmdline` (NUL-separated, maybe NUL-terminated).
pub fn parse_cmdline(raw: &[u8]) -> Vec<String> {
    let trimmed = raw.strip_suffix(b"\0").unwrap_or(raw);
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// (PPid, real Uid, Name) from `/proc/PID/status`.
pub fn parse_status(status: &str) -> (Option<u32>, Option<u32>, Option<String>) {
    let mut ppid = None;
    let mut uid = None;
    let mut name = None;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("PPid:") {
            ppid = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("Uid:") {
            uid = v.split_whitespace().next().and_then(|u| u.parse().ok());
        } else if let Some(v) = line.strip_prefix("Name:") {
            name = Some(v.trim().to_owned());
        }
    }
    (ppid, uid, name)
}

/// uid → user name from an `/etc/passwd`-format text.
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_owned()))
        })
        .collect()
}

/// Caches of user names and executable hashes (keyed by device, inode and mtime, so a
/// replaced binary is hashed again).
#[derive(Debug, Default)]
pub struct Enricher {
    users: Mutex<HashMap<u32, String>>,
    hashes: Mutex<HashMap<(u64, u64, i64, i64), String>>,
}

impl Enricher {
    /// User name for `uid` (re-reads `/etc/passwd` on a miss).
    pub fn user_name(&self, uid: u32) -> Option<String> {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = users.get(&uid) {
            return Some(n.clone());
        }
        let text = std::fs::read_to_string("/etc/passwd").ok()?;
        *users = parse_passwd(&text);
        users.get(&uid).cloned()
    }

    /// SHA-256 of the file behind `path` (e.g. `/proc/PID/exe`, which works even when the
    /// binary was deleted after start).
    pub fn sha256(&self, path: &Path) -> Option<String> {
        let meta = std::fs::metadata(path).ok()?;
        if !meta.is_file() || meta.len() > MAX_HASH_BYTES {
            return None;
        }
        let key = (meta.dev(), meta.ino(), meta.mtime(), meta.mtime_nsec());
        let mut hashes = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = hashes.get(&key) {
            return Some(h.clone());
        }
        drop(hashes);
        let h = crate::quarantine::sha256_file(path).ok()?;
        hashes = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        if hashes.len() > 50_000 {
            hashes.clear();
        }
        hashes.insert(key, h.clone());
        Some(h)
    }

    /// Sets `process.*`, `user.*` and `process.parent.*` for `pid`.
    pub fn process_fields(&self, ev: &mut Event, proc_root: &Path, pid: u32) -> ProcInfo {
        self.process_fields_with(ev, proc_root, pid, |ppid| {
            ParentInfo::from(ProcInfo::read(proc_root, ppid))
        })
    }

    /// [`Self::process_fields`] with the parent's description from `parent` (a cache).
    pub fn process_fields_with(
        &self,
        ev: &mut Event,
        proc_root: &Path,
        pid: u32,
        mut parent: impl FnMut(u32) -> ParentInfo,
    ) -> ProcInfo {
        let info = ProcInfo::read(proc_root, pid);
        ev.set("process.pid", pid);
        ev.set_opt("process.executable", info.executable.clone());
        ev.set_opt("process.name", info.name.clone());
        ev.set_opt("process.command_line", info.command_line());
        if !info.args.is_empty() {
            ev.set("process.args", info.args.clone());
        }
        ev.set_opt("process.working_directory", info.cwd.clone());
        if let Some(uid) = info.uid {
            ev.set("user.id", uid.to_string());
            ev.set_opt("user.name", self.user_name(uid));
        }
        if info.executable.is_some() {
            let exe = proc_root.join(pid.to_string()).join("exe");
            ev.set_opt("process.hash.sha256", self.sha256(&exe));
        }
        if let Some(ppid) = info.ppid.filter(|p| *p > 0) {
            ev.set("process.parent.pid", ppid);
            parent(ppid).set_fields(ev);
        }
        info
    }
}

/// What an event says about a process's parent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParentInfo {
    /// `process.parent.command_line`.
    pub command_line: Option<String>,
    /// `process.parent.executable`.
    pub executable: Option<String>,
    /// `process.parent.name`.
    pub name: Option<String>,
}

impl From<ProcInfo> for ParentInfo {
    fn from(p: ProcInfo) -> Self {
        Self {
            command_line: p.command_line(),
            executable: p.executable,
            name: p.name,
        }
    }
}

impl ParentInfo {
    /// Sets the `process.parent.*` fields it has.
    pub fn set_fields(&self, ev: &mut Event) {
        ev.set_opt("process.parent.command_line", self.command_line.clone());
        ev.set_opt("process.parent.executable", self.executable.clone());
        ev.set_opt("process.parent.name", self.name.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cmdline_splits_on_nul() {
        assert_eq!(
            parse_cmdline(b"/bin/sleep\x000.5\x00"),
            vec!["/bin/sleep", "0.5"]
        );
        assert!(parse_cmdline(b"").is_empty());
        assert_eq!(parse_cmdline(b"kworker"), vec!["kworker"]);
    }

    #[test]
    fn status_gives_parent_uid_and_name() {
        let s = "Name:\tsshd\nUmask:\t0022\nState:\tS\nPPid:\t1\nUid:\t0\t0\t0\t0\n";
        assert_eq!(parse_status(s), (Some(1), Some(0), Some("sshd".into())));
    }

    #[test]
    fn passwd_maps_uids() {
        let m = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\n# c\nbob:x:1000:1000::/home/bob:/bin/sh\nbad",
        );
        assert_eq!(m.get(&0).map(String::as_str), Some("root"));
        assert_eq!(m.get(&1000).map(String::as_str), Some("bob"));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn own_process_is_described_from_proc() {
        let e = Enricher::default();
        let mut ev = Event::new(chrono::Utc::now());
        let info = e.process_fields(&mut ev, Path::new("/proc"), std::process::id());
        assert!(info.executable.is_some());
        assert_eq!(ev.get_str("process.hash.sha256").map(str::len), Some(64));
        assert!(ev.get("process.parent.pid").is_some());
        assert_eq!(ev.get_str("user.id"), Some(own_uid().as_str()));
    }

    fn own_uid() -> String {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        parse_status(&status).1.unwrap().to_string()
    }

    proptest! {
        #[test]
        fn parsers_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..200), s in ".{0,200}") {
            let _ = parse_cmdline(&raw);
            let _ = parse_status(&s);
            let m = parse_passwd(&s);
            prop_assert!(m.len() <= s.lines().count());
        }
    }
}
