//! What `/proc` says about a process, and ECS fields built from it.
//!
//! `/proc/PID` is opened once per process and every file is read relative to that directory
//! descriptor, in one `read` into a reused buffer: the path is walked once, no file is sized
//! first, and all fields describe the same process even if its pid is reused meanwhile.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use canh_core::Event;
use sha2::Digest;

/// Executables larger than this are not hashed (the field is left out, never guessed).
const MAX_HASH_BYTES: u64 = 256 * 1024 * 1024;
/// Longest link target read (the kernel's own limit for these links is a page).
const MAX_LINK_BYTES: usize = 64 * 1024;

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

/// Identity of an executable's content for the hash cache: device, inode, mtime (s, ns),
/// size. A replaced or rewritten binary changes at least one of them.
type FileKey = (u64, u64, i64, i64, u64);

/// `/proc/PID`, opened once (`O_PATH`); files are read relative to it.
struct ProcDir {
    fd: OwnedFd,
}

impl ProcDir {
    fn open(proc_root: &Path, pid: u32) -> Option<Self> {
        let mut path = proc_root.as_os_str().as_bytes().to_vec();
        path.push(b'/');
        path.extend_from_slice(pid.to_string().as_bytes());
        let path = CString::new(path).ok()?;
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        Some(Self {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    /// The target of the link `name`, lossily as text.
    fn readlink(&self, name: &CStr, buf: &mut Vec<u8>) -> Option<String> {
        buf.clear();
        let mut cap = 4096usize;
        loop {
            buf.reserve(cap);
            let spare = buf.spare_capacity_mut();
            // SAFETY: the destination is the vector's spare capacity, `spare.len()` bytes
            // long; `name` is NUL-terminated.
            let n = unsafe {
                libc::readlinkat(
                    self.fd.as_raw_fd(),
                    name.as_ptr(),
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                )
            };
            let n = usize::try_from(n).ok()?;
            if n < spare.len() {
                // SAFETY: readlinkat initialised the first `n` bytes of the spare capacity.
                unsafe { buf.set_len(n) };
                return Some(String::from_utf8_lossy(buf).into_owned());
            }
            // Possibly cut short: try again with more room.
            cap = spare.len() * 2;
            if cap > MAX_LINK_BYTES {
                return None;
            }
        }
    }

    /// Reads the whole file `name` into `buf`; false if it cannot be opened or read.
    fn read(&self, name: &CStr, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        // SAFETY: `name` is NUL-terminated; the result is checked before use.
        let raw = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return false;
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let file = unsafe { OwnedFd::from_raw_fd(raw) };
        loop {
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(buf.capacity().max(4096));
            }
            let spare = buf.spare_capacity_mut();
            // SAFETY: the destination is the vector's spare capacity, `spare.len()` bytes long.
            let n = unsafe { libc::read(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
            let Ok(n) = usize::try_from(n) else {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return false;
            };
            let room = spare.len();
            // SAFETY: read(2) initialised the first `n` bytes of the spare capacity.
            unsafe { buf.set_len(buf.len() + n) };
            // `/proc` text files hand over everything they have in one read when there is
            // room for it, so a short read is the end.
            if n == 0 || n < room {
                return true;
            }
        }
    }

    /// `stat` of what the link `name` points to.
    fn stat(&self, name: &CStr) -> Option<FileStat> {
        // SAFETY: all-zero is a valid `stat`; it is filled by fstatat before being read.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `name` is NUL-terminated and `st` is a live, writable `stat`.
        let rc = unsafe { libc::fstatat(self.fd.as_raw_fd(), name.as_ptr(), &raw mut st, 0) };
        (rc == 0).then(|| FileStat {
            key: (
                st.st_dev,
                st.st_ino,
                st.st_mtime,
                st.st_mtime_nsec,
                u64::try_from(st.st_size).unwrap_or(u64::MAX),
            ),
            regular: st.st_mode & libc::S_IFMT == libc::S_IFREG,
        })
    }

    /// Opens what the link `name` points to, for reading.
    fn open_target(&self, name: &CStr) -> Option<std::fs::File> {
        // SAFETY: `name` is NUL-terminated; the result is checked before use.
        let raw = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        (raw >= 0).then(|| std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) }))
    }
}

/// What `stat` says about an executable.
struct FileStat {
    key: FileKey,
    regular: bool,
}

/// Which parts of `/proc/PID` to read.
#[derive(Clone, Copy)]
struct Want {
    cwd: bool,
    exe_stat: bool,
}

thread_local! {
    /// Scratch space for `/proc` reads, reused by every read on this thread.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(8192));
}

/// Reads `dir` in the order that matters most for a process that may exit any moment:
/// executable (and its identity for the hash), command line, status, working directory.
fn read_dir(dir: &ProcDir, pid: u32, want: Want) -> (ProcInfo, Option<FileStat>) {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let buf = &mut *scratch;
        let executable = dir.readlink(c"exe", buf);
        let exe_stat = if want.exe_stat && executable.is_some() {
            dir.stat(c"exe")
        } else {
            None
        };
        let args = if dir.read(c"cmdline", buf) {
            parse_cmdline(buf)
        } else {
            Vec::new()
        };
        let (ppid, uid, name) = if dir.read(c"status", buf) {
            parse_status(&String::from_utf8_lossy(buf))
        } else {
            (None, None, None)
        };
        let cwd = if want.cwd {
            dir.readlink(c"cwd", buf)
        } else {
            None
        };
        if buf.capacity() > 1024 * 1024 {
            // One huge command line must not pin its buffer for the life of the thread.
            *buf = Vec::with_capacity(8192);
        }
        let info = ProcInfo {
            pid,
            ppid,
            executable,
            args,
            cwd,
            uid,
            name,
        };
        (info, exe_stat)
    })
}

impl ProcInfo {
    /// Reads what is still readable; a process that already exited gives mostly `None`s.
    pub fn read(proc_root: &Path, pid: u32) -> Self {
        Self::read_parts(proc_root, pid, true)
    }

    /// What a parent is described by: everything but the working directory.
    fn read_parts(proc_root: &Path, pid: u32, cwd: bool) -> Self {
        match ProcDir::open(proc_root, pid) {
            Some(dir) => {
                read_dir(
                    &dir,
                    pid,
                    Want {
                        cwd,
                        exe_stat: false,
                    },
                )
                .0
            }
            None => Self {
                pid,
                ..Self::default()
            },
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
    let mut found = 0;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("PPid:") {
            ppid = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("Uid:") {
            uid = v.split_whitespace().next().and_then(|u| u.parse().ok());
        } else if let Some(v) = line.strip_prefix("Name:") {
            name = Some(v.trim().to_owned());
        } else {
            continue;
        }
        found += 1;
        // All three sit near the top; the rest of the file (memory, signals, …) is not used.
        if found == 3 {
            break;
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

/// Caches of user names and executable hashes (keyed by device, inode, mtime and size, so a
/// replaced binary is hashed again).
#[derive(Debug, Default)]
pub struct Enricher {
    users: Mutex<HashMap<u32, String>>,
    hashes: Mutex<HashMap<FileKey, String>>,
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
        let key = (
            meta.dev(),
            meta.ino(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.len(),
        );
        self.cached_hash(key, meta.is_file(), || std::fs::File::open(path).ok())
    }

    /// The hash for `key` from the cache, else of the file `open` gives.
    fn cached_hash(
        &self,
        key: FileKey,
        regular: bool,
        open: impl FnOnce() -> Option<std::fs::File>,
    ) -> Option<String> {
        if !regular || key.4 > MAX_HASH_BYTES {
            return None;
        }
        let mut hashes = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = hashes.get(&key) {
            return Some(h.clone());
        }
        drop(hashes);
        let mut file = open()?;
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut file, &mut hasher).ok()?;
        let h = hex::encode(hasher.finalize());
        hashes = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        if hashes.len() > 50_000 {
            hashes.clear();
        }
        hashes.insert(key, h.clone());
        Some(h)
    }

    /// Sets `process.*`, `user.*` and `process.parent.*` for `pid`.
    pub fn process_fields(&self, ev: &mut Event, proc_root: &Path, pid: u32) -> ProcInfo {
        self.process_fields_with(ev, proc_root, pid, |ppid| ParentInfo::read(proc_root, ppid))
    }

    /// [`Self::process_fields`] with the parent's description from `parent` (a cache).
    pub fn process_fields_with(
        &self,
        ev: &mut Event,
        proc_root: &Path,
        pid: u32,
        mut parent: impl FnMut(u32) -> ParentInfo,
    ) -> ProcInfo {
        let dir = ProcDir::open(proc_root, pid);
        let (info, exe_stat) = match &dir {
            Some(d) => read_dir(
                d,
                pid,
                Want {
                    cwd: true,
                    exe_stat: true,
                },
            ),
            None => (
                ProcInfo {
                    pid,
                    ..ProcInfo::default()
                },
                None,
            ),
        };
        ev.set("process.pid", pid);
        ev.set_opt("process.executable", info.executable.as_deref());
        ev.set_opt("process.name", info.name.as_deref());
        ev.set_opt("process.command_line", info.command_line());
        if !info.args.is_empty() {
            ev.set("process.args", info.args.as_slice());
        }
        ev.set_opt("process.working_directory", info.cwd.as_deref());
        if let Some(uid) = info.uid {
            ev.set("user.id", uid.to_string());
            ev.set_opt("user.name", self.user_name(uid));
        }
        if let (Some(st), Some(d)) = (exe_stat, &dir) {
            ev.set_opt(
                "process.hash.sha256",
                self.cached_hash(st.key, st.regular, || d.open_target(c"exe")),
            );
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
    /// Reads a parent's description from `/proc` (its working directory is not needed).
    pub fn read(proc_root: &Path, pid: u32) -> Self {
        Self::from(ProcInfo::read_parts(proc_root, pid, false))
    }

    /// Sets the `process.parent.*` fields it has.
    pub fn set_fields(&self, ev: &mut Event) {
        ev.set_opt("process.parent.command_line", self.command_line.as_deref());
        ev.set_opt("process.parent.executable", self.executable.as_deref());
        ev.set_opt("process.parent.name", self.name.as_deref());
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
