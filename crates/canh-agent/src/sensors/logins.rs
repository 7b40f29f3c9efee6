//! Logins, logouts and sudo.
//!
//! Two sources, both giving ECS authentication events (`event.category: authentication`,
//! `user.name`, `source.ip`, `event.outcome`) so SigmaHQ's Linux rules apply:
//!
//! * `wtmp`/`btmp` records (glibc `struct utmp`, 384 bytes on Linux): `USER_PROCESS` is a
//!   login, `DEAD_PROCESS` the logout of the same line; every `btmp` record is a failed login.
//! * sshd and sudo messages, from `/var/log/auth.log` when rsyslog writes it, else from the
//!   journal (`journalctl --output=json`): accepted / failed / invalid-user SSH logins, sudo
//!   commands with the target user, refused sudo attempts.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use canh_core::Event;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use super::base_event;

/// Size of one `struct utmp` record on Linux (x86_64, aarch64).
pub const UTMP_SIZE: usize = 384;
/// `ut_type` of a login.
pub const USER_PROCESS: i16 = 7;
/// `ut_type` of a logout.
pub const DEAD_PROCESS: i16 = 8;
/// `ut_type` of a boot record.
pub const BOOT_TIME: i16 = 2;

/// One utmp/wtmp/btmp record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UtmpRecord {
    /// `ut_type`.
    pub kind: i16,
    /// Process id.
    pub pid: i32,
    /// Terminal (`pts/0`, `ssh:notty`).
    pub line: String,
    /// User name.
    pub user: String,
    /// Remote host name or address text.
    pub host: String,
    /// Remote address, when recorded.
    pub addr: Option<IpAddr>,
    /// Time.
    pub time: DateTime<Utc>,
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_ne_bytes(a)
}

/// Parses one 384-byte record.
pub fn parse_utmp(b: &[u8]) -> Option<UtmpRecord> {
    if b.len() < UTMP_SIZE {
        return None;
    }
    let kind = i16::from_ne_bytes([b[0], b[1]]);
    let sec = i64::from(i32_at(b, 340) as u32);
    let usec = i64::from(i32_at(b, 344).clamp(0, 999_999));
    let time = Utc.timestamp_opt(sec, (usec * 1000) as u32).single()?;
    let a = &b[348..364];
    let addr = if a.iter().all(|&x| x == 0) {
        None
    } else if a[4..].iter().all(|&x| x == 0) {
        Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])))
    } else {
        let mut o = [0u8; 16];
        o.copy_from_slice(a);
        Some(IpAddr::V6(Ipv6Addr::from(o)))
    };
    Some(UtmpRecord {
        kind,
        pid: i32_at(b, 4),
        line: cstr(&b[8..40]),
        user: cstr(&b[44..76]),
        host: cstr(&b[76..332]),
        addr,
        time,
    })
}

/// Follows a wtmp or btmp file from its current end (or from the start when `from_start`).
pub struct UtmpTail {
    path: PathBuf,
    offset: u64,
    failed: bool,
    /// Line → (user, host, addr) of open sessions, to name the user on logout.
    open: HashMap<String, (String, String, Option<IpAddr>)>,
}

impl UtmpTail {
    /// `failed`: the file is `btmp` (every record a failed login).
    pub fn new(path: &Path, failed: bool, from_start: bool) -> Self {
        let offset = if from_start {
            0
        } else {
            std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
        };
        Self {
            path: path.to_path_buf(),
            offset: offset - offset % UTMP_SIZE as u64,
            failed,
            open: HashMap::new(),
        }
    }

    /// Events for the records appended since the last call.
    pub fn poll(&mut self, host: &str) -> std::io::Result<Vec<Event>> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        if len < self.offset {
            // Rotated or truncated.
            self.offset = 0;
        }
        let whole = (len - self.offset) / UTMP_SIZE as u64 * UTMP_SIZE as u64;
        if whole == 0 {
            return Ok(Vec::new());
        }
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = vec![0u8; usize::try_from(whole).unwrap_or(0)];
        f.read_exact(&mut buf)?;
        self.offset += whole;
        Ok(buf
            .chunks_exact(UTMP_SIZE)
            .filter_map(parse_utmp)
            .filter_map(|r| self.event(host, r))
            .collect())
    }

    fn event(&mut self, host: &str, r: UtmpRecord) -> Option<Event> {
        let (action, kind, outcome, user, rhost, addr) = if self.failed {
            (
                "login-failed",
                "start",
                "failure",
                r.user.clone(),
                r.host.clone(),
                r.addr,
            )
        } else if r.kind == USER_PROCESS {
            self.open
                .insert(r.line.clone(), (r.user.clone(), r.host.clone(), r.addr));
            (
                "logged-in",
                "start",
                "success",
                r.user.clone(),
                r.host.clone(),
                r.addr,
            )
        } else if r.kind == DEAD_PROCESS {
            let (user, rhost, addr) = self.open.remove(&r.line)?;
            ("logged-out", "end", "success", user, rhost, addr)
        } else {
            return None;
        };
        let mut ev = base_event(host, "login", "authentication", kind);
        ev.timestamp = r.time;
        ev.set("event.category", json!(["authentication", "session"]));
        ev.set("event.action", action);
        ev.set("event.outcome", outcome);
        ev.set_opt("user.name", (!user.is_empty()).then_some(user));
        ev.set("process.pid", r.pid);
        ev.set("canh.login.tty", r.line.as_str());
        let ip = addr.or_else(|| rhost.parse().ok());
        ev.set_opt("source.ip", ip.map(|i| i.to_string()));
        if ip.is_none() && !rhost.is_empty() {
            ev.set("source.domain", rhost);
        }
        Some(ev)
    }
}

fn word_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let i = text.find(marker)? + marker.len();
    text[i..].split_whitespace().next()
}

/// An event for one sshd or sudo message (`program` is the syslog identifier).
pub fn auth_message_event(
    host: &str,
    program: &str,
    pid: Option<u32>,
    msg: &str,
    time: DateTime<Utc>,
) -> Option<Event> {
    let msg = msg.trim();
    let mut ev = match program {
        "sshd" | "sshd-session" => ssh_event(host, msg)?,
        "sudo" => sudo_event(host, msg)?,
        _ => return None,
    };
    ev.timestamp = time;
    ev.set("process.name", program);
    ev.set_opt("process.pid", pid);
    ev.set("message", msg);
    Some(ev)
}

fn ssh_event(host: &str, msg: &str) -> Option<Event> {
    let login = |outcome: &str, action: &str| {
        let mut ev = base_event(host, "login", "authentication", "start");
        ev.set("event.action", action);
        ev.set("event.outcome", outcome);
        ev.set("service.name", "sshd");
        ev
    };
    let source = |ev: &mut Event, msg: &str| {
        if let Some(ip) = word_after(msg, " from ").and_then(|s| s.parse::<IpAddr>().ok()) {
            ev.set("source.ip", ip.to_string());
        }
        if let Some(port) = word_after(msg, " port ").and_then(|s| s.parse::<u16>().ok()) {
            ev.set("source.port", port);
        }
    };
    if let Some(rest) = msg.strip_prefix("Accepted ") {
        let method = rest.split_whitespace().next()?;
        let user = word_after(rest, " for ")?;
        let mut ev = login("success", "ssh-login");
        ev.set("user.name", user);
        ev.set("canh.auth.method", method);
        source(&mut ev, rest);
        return Some(ev);
    }
    if let Some(rest) = msg.strip_prefix("Failed ") {
        let method = rest.split_whitespace().next()?;
        let after_for = rest.split_once(" for ")?.1;
        let (invalid, after_for) = match after_for.strip_prefix("invalid user ") {
            Some(r) => (true, r),
            None => (false, after_for),
        };
        let user = after_for.split(" from ").next()?.trim();
        let mut ev = login("failure", "ssh-login");
        ev.set("user.name", user);
        ev.set("canh.auth.method", method);
        if invalid {
            ev.set("event.reason", "invalid user");
        }
        source(&mut ev, rest);
        return Some(ev);
    }
    if let Some(rest) = msg.strip_prefix("Invalid user ") {
        let user = rest.split(" from ").next()?.trim();
        let mut ev = login("failure", "ssh-invalid-user");
        ev.set("user.name", user);
        ev.set("event.reason", "invalid user");
        source(&mut ev, rest);
        return Some(ev);
    }
    if msg.starts_with("pam_unix(sshd:session): session closed for user ") {
        let user = word_after(msg, "for user ")?;
        let mut ev = base_event(host, "login", "authentication", "end");
        ev.set("event.category", json!(["authentication", "session"]));
        ev.set("event.action", "ssh-logout");
        ev.set("event.outcome", "success");
        ev.set("service.name", "sshd");
        ev.set("user.name", user);
        return Some(ev);
    }
    None
}

/// `key=value` fields of a sudo log line (`TTY=pts/0 ; PWD=/root ; USER=root ; COMMAND=…`).
fn sudo_fields(s: &str) -> HashMap<&str, &str> {
    s.split(" ; ")
        .filter_map(|kv| kv.trim().split_once('='))
        .collect()
}

fn sudo_event(host: &str, msg: &str) -> Option<Event> {
    if msg.starts_with("pam_unix(sudo:auth): authentication failure") {
        let user = msg
            .split_whitespace()
            .find_map(|w| {
                w.strip_prefix("ruser=")
                    .or_else(|| w.strip_prefix("logname="))
            })
            .filter(|u| !u.is_empty())?;
        let mut ev = base_event(host, "sudo", "authentication", "start");
        ev.set("event.action", "sudo-auth-failure");
        ev.set("event.outcome", "failure");
        ev.set("user.name", user);
        return Some(ev);
    }
    // `alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id`
    // `alice : 3 incorrect password attempts ; TTY=… ; COMMAND=…`
    // `alice : user NOT in sudoers ; TTY=… ; COMMAND=…`
    let (user, rest) = msg.split_once(" : ")?;
    let user = user.trim();
    if user.is_empty() || user.contains(char::is_whitespace) {
        return None;
    }
    let fields = sudo_fields(rest);
    let command = fields.get("COMMAND")?;
    let first = rest.split(" ; ").next().unwrap_or_default();
    let (outcome, reason) = if first.contains('=') {
        ("success", None)
    } else {
        ("failure", Some(first.trim()))
    };
    let mut ev = base_event(host, "sudo", "authentication", "start");
    ev.set("event.category", json!(["authentication", "process"]));
    ev.set("event.action", "sudo");
    ev.set("event.outcome", outcome);
    ev.set_opt("event.reason", reason);
    ev.set("user.name", user);
    ev.set_opt("user.effective.name", fields.get("USER").copied());
    ev.set("process.command_line", *command);
    ev.set(
        "process.executable",
        command.split_whitespace().next().unwrap_or_default(),
    );
    ev.set_opt("process.working_directory", fields.get("PWD").copied());
    ev.set_opt("canh.login.tty", fields.get("TTY").copied());
    Some(ev)
}

/// Parses one `/var/log/auth.log` line, in the classic (`Nov 27 10:00:00 host prog[pid]: msg`)
/// or the RFC 3339 (`2026-11-27T10:00:00.123456+07:00 host prog[pid]: msg`) syslog format.
pub fn auth_log_line_event(host: &str, line: &str, now: DateTime<Utc>) -> Option<Event> {
    let (time, rest) = if line.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        let (ts, rest) = line.split_once(' ')?;
        let t = DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc);
        (t, rest)
    } else {
        // Classic syslog carries no year or zone: the receive time is used.
        (now, line.get(16..)?)
    };
    let (_host, rest) = rest.split_once(' ')?;
    let (tag, msg) = rest.split_once(": ")?;
    let (program, pid) = match tag.split_once('[') {
        Some((p, pid)) => (p, pid.trim_end_matches(']').parse().ok()),
        None => (tag, None),
    };
    auth_message_event(host, program, pid, msg, time)
}

/// Parses one line of `journalctl --output=json`.
pub fn journal_json_event(host: &str, line: &str) -> Option<Event> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let program = v.get("SYSLOG_IDENTIFIER")?.as_str()?;
    let msg = v.get("MESSAGE")?.as_str()?;
    let pid = v
        .get("_PID")
        .and_then(|p| p.as_str())
        .and_then(|p| p.parse().ok());
    let time = v
        .get("__REALTIME_TIMESTAMP")
        .and_then(|t| t.as_str())
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|us| Utc.timestamp_micros(us).single())
        .unwrap_or_else(Utc::now);
    auth_message_event(host, program, pid, msg, time)
}

/// Follows a text log from its end, yielding complete new lines.
pub struct LineTail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl LineTail {
    /// Starts at the current end of `path`.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            offset: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            partial: String::new(),
        }
    }

    /// New complete lines since the last call.
    pub fn poll(&mut self) -> std::io::Result<Vec<String>> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        if len < self.offset {
            self.offset = 0;
            self.partial.clear();
        }
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.take(16 * 1024 * 1024).read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let mut lines: Vec<String> = self.partial.split('\n').map(str::to_owned).collect();
        self.partial = lines.pop().unwrap_or_default();
        Ok(lines)
    }
}

/// Follows `journalctl --output=json` for sshd and sudo on a detached thread (the child is
/// killed when `stop` is seen after its next line). Returns false when journalctl cannot run.
fn follow_journal(
    host: String,
    emit: super::Emit,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> bool {
    use std::io::BufRead;
    let child = std::process::Command::new("journalctl")
        .args([
            "--follow",
            "--lines=0",
            "--output=json",
            "SYSLOG_IDENTIFIER=sshd",
            "SYSLOG_IDENTIFIER=sshd-session",
            "SYSLOG_IDENTIFIER=sudo",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    let Some(out) = child.stdout.take() else {
        return false;
    };
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            if let Some(ev) = journal_json_event(&host, &line) {
                emit(vec![ev]);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    });
    true
}

/// Runs the login sensor until `stop` is set: `wtmp`/`btmp` under `log_dir`, and sshd/sudo
/// messages from `auth_log` (or the journal when that file does not exist).
pub fn run(
    host: String,
    log_dir: &Path,
    auth_log: &Path,
    emit: super::Emit,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut wtmp = UtmpTail::new(&log_dir.join("wtmp"), false, false);
    let mut btmp = UtmpTail::new(&log_dir.join("btmp"), true, false);
    let mut auth = if std::fs::metadata(auth_log).is_ok() {
        Some(LineTail::new(auth_log))
    } else {
        if !follow_journal(host.clone(), emit.clone(), stop.clone()) {
            tracing::warn!("no auth log and no journal: sshd/sudo messages are not collected");
        }
        None
    };
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut evs = Vec::new();
        for tail in [&mut wtmp, &mut btmp] {
            match tail.poll(&host) {
                Ok(e) => evs.extend(e),
                Err(e) => tracing::debug!(error = %e, "utmp read failed"),
            }
        }
        if let Some(t) = &mut auth {
            let now = Utc::now();
            match t.poll() {
                Ok(lines) => evs.extend(
                    lines
                        .iter()
                        .filter_map(|l| auth_log_line_event(&host, l, now)),
                ),
                Err(e) => tracing::debug!(error = %e, "auth log read failed"),
            }
        }
        if !evs.is_empty() {
            emit(evs);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A synthetic `struct utmp` record laid out as glibc writes it on x86_64.
    fn synthetic_utmp(
        kind: i16,
        pid: i32,
        line: &str,
        user: &str,
        host: &str,
        ip: [u8; 4],
        sec: i32,
    ) -> Vec<u8> {
        let mut b = vec![0u8; UTMP_SIZE];
        b[0..2].copy_from_slice(&kind.to_ne_bytes());
        b[4..8].copy_from_slice(&pid.to_ne_bytes());
        b[8..8 + line.len()].copy_from_slice(line.as_bytes());
        b[44..44 + user.len()].copy_from_slice(user.as_bytes());
        b[76..76 + host.len()].copy_from_slice(host.as_bytes());
        b[340..344].copy_from_slice(&sec.to_ne_bytes());
        b[348..352].copy_from_slice(&ip);
        b
    }

    #[test]
    fn wtmp_login_and_logout_become_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wtmp");
        std::fs::write(
            &path,
            synthetic_utmp(BOOT_TIME, 0, "~", "reboot", "6.1.0", [0; 4], 1_700_000_000),
        )
        .unwrap();
        let mut tail = UtmpTail::new(&path, false, false);
        let mut data = std::fs::read(&path).unwrap();
        data.extend(synthetic_utmp(
            USER_PROCESS,
            4242,
            "pts/0",
            "alice",
            "203.0.113.7",
            [203, 0, 113, 7],
            1_700_000_100,
        ));
        // Half a record: not read until complete.
        let logout = synthetic_utmp(DEAD_PROCESS, 4242, "pts/0", "", "", [0; 4], 1_700_000_200);
        data.extend(&logout[..100]);
        std::fs::write(&path, &data).unwrap();
        let evs = tail.poll("h").unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].get_str("event.action"), Some("logged-in"));
        assert_eq!(evs[0].get_str("user.name"), Some("alice"));
        assert_eq!(evs[0].get_str("source.ip"), Some("203.0.113.7"));
        assert_eq!(evs[0].get_str("event.outcome"), Some("success"));
        assert_eq!(evs[0].timestamp.timestamp(), 1_700_000_100);
        let cats = evs[0].get("event.category").unwrap();
        assert_eq!(cats[0], "authentication");
        data.extend(&logout[100..]);
        std::fs::write(&path, &data).unwrap();
        let evs = tail.poll("h").unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].get_str("event.action"), Some("logged-out"));
        assert_eq!(evs[0].get_str("user.name"), Some("alice"));
    }

    #[test]
    fn btmp_records_are_failed_logins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("btmp");
        std::fs::write(
            &path,
            synthetic_utmp(
                6,
                99,
                "ssh:notty",
                "admin",
                "198.51.100.9",
                [198, 51, 100, 9],
                1_700_000_300,
            ),
        )
        .unwrap();
        let evs = UtmpTail::new(&path, true, true).poll("h").unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].get_str("event.outcome"), Some("failure"));
        assert_eq!(evs[0].get_str("user.name"), Some("admin"));
        assert_eq!(evs[0].get_str("source.ip"), Some("198.51.100.9"));
    }

    #[test]
    fn real_wtmp_parses_when_present() {
        let Ok(data) = std::fs::read("/var/log/wtmp") else {
            eprintln!("SKIPPED: no /var/log/wtmp on this host");
            return;
        };
        let recs: Vec<UtmpRecord> = data
            .chunks_exact(UTMP_SIZE)
            .filter_map(parse_utmp)
            .collect();
        assert_eq!(recs.len(), data.len() / UTMP_SIZE);
        assert!(recs.iter().all(|r| (0..=9).contains(&r.kind)));
    }

    #[test]
    fn sshd_lines() {
        let now = Utc::now();
        let ev = auth_log_line_event(
            "h",
            "Nov 27 10:01:02 web1 sshd[1234]: Accepted publickey for alice from 192.0.2.10 port 50522 ssh2: ED25519 SHA256:abc",
            now,
        )
        .unwrap();
        assert_eq!(ev.get_str("event.outcome"), Some("success"));
        assert_eq!(ev.get_str("user.name"), Some("alice"));
        assert_eq!(ev.get_str("source.ip"), Some("192.0.2.10"));
        assert_eq!(ev.get("source.port").and_then(|v| v.as_u64()), Some(50522));
        assert_eq!(ev.get_str("canh.auth.method"), Some("publickey"));
        assert_eq!(ev.get("process.pid").and_then(|v| v.as_u64()), Some(1234));

        let ev = auth_log_line_event(
            "h",
            "2026-11-27T10:01:05.123456+07:00 web1 sshd[1240]: Failed password for invalid user oracle from 2001:db8::5 port 4444 ssh2",
            now,
        )
        .unwrap();
        assert_eq!(ev.get_str("event.outcome"), Some("failure"));
        assert_eq!(ev.get_str("user.name"), Some("oracle"));
        assert_eq!(ev.get_str("source.ip"), Some("2001:db8::5"));
        assert_eq!(ev.get_str("event.reason"), Some("invalid user"));
        assert_eq!(
            ev.timestamp.to_rfc3339(),
            "2026-11-27T03:01:05.123456+00:00"
        );

        let ev = auth_log_line_event("h", "Nov 27 10:01:09 web1 sshd[1240]: Failed password for root from 192.0.2.11 port 4445 ssh2", now).unwrap();
        assert_eq!(ev.get_str("user.name"), Some("root"));
        assert!(ev.get("event.reason").is_none());

        let ev = auth_log_line_event("h", "Nov 27 10:01:03 web1 sshd[1234]: pam_unix(sshd:session): session closed for user alice", now).unwrap();
        assert_eq!(ev.get_str("event.action"), Some("ssh-logout"));
        assert!(
            auth_log_line_event(
                "h",
                "Nov 27 10:01:03 web1 CRON[1]: pam_unix(cron:session): session opened",
                now
            )
            .is_none()
        );
    }

    #[test]
    fn sudo_lines() {
        let now = Utc::now();
        let ev = auth_log_line_event(
            "h",
            "Nov 27 10:05:00 web1 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/cat /etc/shadow",
            now,
        )
        .unwrap();
        assert_eq!(ev.get_str("event.action"), Some("sudo"));
        assert_eq!(ev.get_str("event.outcome"), Some("success"));
        assert_eq!(ev.get_str("user.name"), Some("alice"));
        assert_eq!(ev.get_str("user.effective.name"), Some("root"));
        assert_eq!(
            ev.get_str("process.command_line"),
            Some("/usr/bin/cat /etc/shadow")
        );
        assert_eq!(ev.get_str("process.executable"), Some("/usr/bin/cat"));
        assert_eq!(ev.get_str("process.working_directory"), Some("/home/alice"));

        let ev = auth_log_line_event(
            "h",
            "Nov 27 10:06:00 web1 sudo:      bob : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/tmp ; USER=root ; COMMAND=/bin/bash",
            now,
        )
        .unwrap();
        assert_eq!(ev.get_str("event.outcome"), Some("failure"));
        assert_eq!(
            ev.get_str("event.reason"),
            Some("3 incorrect password attempts")
        );
        let ev = auth_log_line_event(
            "h",
            "Nov 27 10:06:01 web1 sudo:      eve : user NOT in sudoers ; TTY=pts/2 ; PWD=/tmp ; USER=root ; COMMAND=/bin/sh",
            now,
        )
        .unwrap();
        assert_eq!(ev.get_str("event.outcome"), Some("failure"));
        let ev = auth_log_line_event(
            "h",
            "Nov 27 10:06:02 web1 sudo: pam_unix(sudo:auth): authentication failure; logname=bob uid=1001 euid=0 tty=/dev/pts/1 ruser=bob rhost=  user=bob",
            now,
        )
        .unwrap();
        assert_eq!(ev.get_str("event.action"), Some("sudo-auth-failure"));
        assert_eq!(ev.get_str("user.name"), Some("bob"));
    }

    #[test]
    fn journal_json_lines() {
        let line = r#"{"__REALTIME_TIMESTAMP":"1764237600000000","SYSLOG_IDENTIFIER":"sudo","_PID":"777","MESSAGE":"    carol : TTY=pts/3 ; PWD=/root ; USER=root ; COMMAND=/usr/sbin/reboot"}"#;
        let ev = journal_json_event("h", line).unwrap();
        assert_eq!(ev.get_str("user.name"), Some("carol"));
        assert_eq!(ev.get("process.pid").and_then(|v| v.as_u64()), Some(777));
        assert_eq!(ev.timestamp.timestamp(), 1_764_237_600);
        assert!(journal_json_event("h", "{}").is_none());
    }

    #[test]
    fn line_tail_keeps_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth.log");
        std::fs::write(&p, "old line\n").unwrap();
        let mut t = LineTail::new(&p);
        std::fs::write(&p, "old line\nnew one\nhalf").unwrap();
        assert_eq!(t.poll().unwrap(), vec!["new one".to_owned()]);
        std::fs::write(&p, "old line\nnew one\nhalf done\n").unwrap();
        assert_eq!(t.poll().unwrap(), vec!["half done".to_owned()]);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,200}", bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
            let now = Utc::now();
            let _ = auth_log_line_event("h", &s, now);
            let _ = journal_json_event("h", &s);
            let _ = auth_message_event("h", "sudo", None, &s, now);
            let _ = auth_message_event("h", "sshd", None, &s, now);
            let n = bytes.chunks_exact(UTMP_SIZE).filter_map(parse_utmp).count();
            prop_assert!(n <= bytes.len() / UTMP_SIZE);
        }
    }
}
