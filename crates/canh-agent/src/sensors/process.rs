//! Process start/exit from the netlink process connector (`NETLINK_CONNECTOR`, `CN_IDX_PROC`),
//! enriched from `/proc`.
//!
//! The connector reports only pids, so the agent reads `/proc/PID` right after the exec
//! message. A process that is already gone (`/bin/true` can be over within microseconds)
//! still gets its pid and its parent, from the fork message; its executable and command line
//! are then unknown (the connector does not carry them; eBPF would). Fork messages are not
//! forwarded as events (an exec follows every fork that matters).
//! Parents are described once and kept until they exec or exit (both are connector messages),
//! so a shell or service starting many children costs one `/proc` read of it, not one each.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use canh_core::Event;
use tracing::warn;

use super::{Emit, SensorError, base_event};
use crate::sensors::procinfo::{Enricher, ParentInfo};

const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const NLMSG_DONE: u16 = 3;
/// Socket receive buffer asked for (the kernel doubles it for its bookkeeping).
const RECV_BUFFER_BYTES: libc::c_int = 4 * 1024 * 1024;
/// Events handed to `emit` (one spool append, one fsync) at most this many at a time …
const BATCH_EVENTS: usize = 500;
/// … or after this long.
const BATCH_WAIT: Duration = Duration::from_millis(200);

/// What the connector said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcEvent {
    /// A process (thread group `tgid`) called execve.
    Exec {
        /// Thread id.
        pid: u32,
        /// Thread group (process) id.
        tgid: u32,
    },
    /// A thread exited.
    Exit {
        /// Thread id.
        pid: u32,
        /// Thread group id.
        tgid: u32,
        /// Exit code as `wait` reports it.
        exit_code: u32,
    },
    /// A process or thread was created.
    Fork {
        /// Thread group of the parent.
        parent_tgid: u32,
        /// The new thread.
        child_pid: u32,
        /// Its thread group (equal to `child_pid` for a new process).
        child_tgid: u32,
    },
    /// Anything else (uid change, …).
    Other,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    b.get(off..off + 2)
        .map(|s| u16::from_ne_bytes([s[0], s[1]]))
}

/// Parses every netlink message in one datagram.
pub fn parse_datagram(buf: &[u8]) -> Vec<ProcEvent> {
    let mut out = Vec::new();
    parse_datagram_into(buf, &mut out);
    out
}

/// [`parse_datagram`] appending to `out`.
fn parse_datagram_into(buf: &[u8], out: &mut Vec<ProcEvent>) {
    let mut off = 0usize;
    while off + NLMSG_HDRLEN <= buf.len() {
        let Some(len) = u32_at(buf, off).map(|l| l as usize) else {
            break;
        };
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            break;
        }
        let msg = &buf[off + NLMSG_HDRLEN..off + len];
        if let Some(ev) = parse_cn_msg(msg) {
            out.push(ev);
        }
        // Netlink messages are 4-byte aligned.
        off += (len + 3) & !3;
    }
}

/// Parses a `cn_msg` carrying a `proc_event`.
fn parse_cn_msg(msg: &[u8]) -> Option<ProcEvent> {
    if u32_at(msg, 0)? != CN_IDX_PROC || u32_at(msg, 4)? != CN_VAL_PROC {
        return None;
    }
    let data_len = u16_at(msg, 16)? as usize;
    let ev = msg.get(CN_MSG_LEN..CN_MSG_LEN + data_len)?;
    // proc_event: what u32, cpu u32, timestamp_ns u64, then the union at 16.
    let what = u32_at(ev, 0)?;
    Some(match what {
        0x0000_0001 => ProcEvent::Fork {
            parent_tgid: u32_at(ev, 20)?,
            child_pid: u32_at(ev, 24)?,
            child_tgid: u32_at(ev, 28)?,
        },
        0x0000_0002 => ProcEvent::Exec {
            pid: u32_at(ev, 16)?,
            tgid: u32_at(ev, 20)?,
        },
        0x8000_0000 => ProcEvent::Exit {
            pid: u32_at(ev, 16)?,
            tgid: u32_at(ev, 20)?,
            exit_code: u32_at(ev, 24)?,
        },
        _ => ProcEvent::Other,
    })
}

/// The subscription message: nlmsghdr + cn_msg + `PROC_CN_MCAST_LISTEN`.
fn listen_message(pid: u32) -> Vec<u8> {
    let total = NLMSG_HDRLEN + CN_MSG_LEN + 4;
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_ne_bytes());
    m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&pid.to_ne_bytes());
    m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // ack
    m.extend_from_slice(&4u16.to_ne_bytes()); // len
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    m
}

/// A subscribed connector socket.
pub struct ProcConnector {
    fd: OwnedFd,
}

impl ProcConnector {
    /// Opens and subscribes (needs CAP_NET_ADMIN, i.e. root).
    pub fn open() -> Result<Self, SensorError> {
        let last = || SensorError::Io(std::io::Error::last_os_error());
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_CONNECTOR,
            )
        };
        if raw < 0 {
            return Err(last());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value before we set fields.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = CN_IDX_PROC;
        // SAFETY: addr is a valid sockaddr_nl and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(last());
        }
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: SO_RCVTIMEO takes a timeval; we pass a valid one and its size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast::<libc::c_void>(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(last());
        }
        // Room for a few seconds of a busy host's messages, so a sensor thread that is
        // briefly starved of CPU does not make the kernel drop them. SO_RCVBUFFORCE passes
        // the system limit (root); SO_RCVBUF is the fallback, capped by the system.
        let size: libc::c_int = RECV_BUFFER_BYTES;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: both options take an int; we pass a valid one and its size.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&raw const size).cast::<libc::c_void>(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
        }
        let msg = listen_message(std::process::id());
        // SAFETY: msg is a live buffer of msg.len() bytes.
        let sent = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if sent < 0 {
            return Err(last());
        }
        Ok(Self { fd })
    }

    /// Waits up to 200 ms for a datagram; an empty vector on timeout.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Vec<ProcEvent>, SensorError> {
        let mut out = Vec::new();
        self.recv_into(buf, &mut out)?;
        Ok(out)
    }

    /// [`Self::recv`] into `out` (cleared first), so one vector serves every call.
    pub fn recv_into(&self, buf: &mut [u8], out: &mut Vec<ProcEvent>) -> Result<(), SensorError> {
        out.clear();
        // SAFETY: buf is a live, writable buffer of buf.len() bytes.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(()),
                // ENOBUFS: the kernel dropped messages because we were slow; keep going.
                _ if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    warn!("process connector overrun, some process events were lost");
                    Ok(())
                }
                _ => Err(SensorError::Io(e)),
            };
        }
        parse_datagram_into(&buf[..n as usize], out);
        Ok(())
    }
}

/// The parent's description: from the cache while it is fresh, else from `/proc`.
fn parent_info(
    cache: &mut HashMap<u32, (Instant, ParentInfo)>,
    proc_root: &std::path::Path,
    ppid: u32,
) -> ParentInfo {
    const FRESH: Duration = Duration::from_secs(5);
    if let Some((at, p)) = cache.get(&ppid)
        && at.elapsed() < FRESH
    {
        return p.clone();
    }
    let p = ParentInfo::read(proc_root, ppid);
    if cache.len() > 10_000 {
        cache.retain(|_, (at, _)| at.elapsed() < FRESH);
    }
    // A parent that is already gone is not kept: its pid may come back as another process.
    if p.executable.is_some() {
        cache.insert(ppid, (Instant::now(), p.clone()));
    }
    p
}

/// Turns connector messages into events, with what it remembers between messages.
pub struct Tracker {
    host: String,
    proc_root: PathBuf,
    own_pid: u32,
    enricher: Enricher,
    /// pid → executable, for exit events (the /proc entry is gone by then).
    known: HashMap<u32, Option<String>>,
    /// New process → its parent (fork messages), until it exits: a process that execs twice
    /// (a wrapper that execs its program) keeps its parent.
    forked: HashMap<u32, u32>,
    /// Parents already described, until they exec or exit; an entry is trusted for a few
    /// seconds only, in case the kernel dropped the message that ends it.
    parents: HashMap<u32, (Instant, ParentInfo)>,
    /// Start events without a parent (the process was gone before `/proc` was read and its
    /// fork message had not been seen: messages from different CPUs can arrive out of
    /// order) → their index in the pending batch, for a fork message that comes later.
    orphans: HashMap<u32, usize>,
}

impl Tracker {
    /// A tracker for `host`, reading processes from `proc_root`.
    pub fn new(host: String, proc_root: PathBuf) -> Self {
        Self {
            host,
            proc_root,
            own_pid: std::process::id(),
            enricher: Enricher::default(),
            known: HashMap::new(),
            forked: HashMap::new(),
            parents: HashMap::new(),
            orphans: HashMap::new(),
        }
    }

    /// Handles one message; events it gives are pushed onto `pending`.
    pub fn handle(&mut self, pe: ProcEvent, pending: &mut Vec<Event>) {
        match pe {
            ProcEvent::Fork {
                parent_tgid,
                child_pid,
                child_tgid,
            } if child_pid == child_tgid => {
                if self.forked.len() > 100_000 {
                    self.forked.clear();
                }
                self.forked.insert(child_tgid, parent_tgid);
                if let Some(ev) = self
                    .orphans
                    .remove(&child_tgid)
                    .and_then(|i| pending.get_mut(i))
                    && parent_tgid > 0
                {
                    ev.set("process.parent.pid", parent_tgid);
                    parent_info(&mut self.parents, &self.proc_root, parent_tgid).set_fields(ev);
                }
            }
            ProcEvent::Exec { pid, tgid } if pid == tgid && tgid != self.own_pid => {
                self.parents.remove(&tgid);
                let mut ev = base_event(&self.host, "process", "process", "start");
                ev.set("event.action", "exec");
                let (parents, root) = (&mut self.parents, &self.proc_root);
                let info = self
                    .enricher
                    .process_fields_with(&mut ev, root, tgid, |ppid| {
                        parent_info(parents, root, ppid)
                    });
                let parent = self.forked.get(&tgid).copied();
                // A process that has exited shows `PPid: 0` in its status.
                if info.ppid.filter(|p| *p > 0).is_none() {
                    match parent.filter(|p| *p > 0) {
                        Some(ppid) => {
                            ev.set("process.parent.pid", ppid);
                            parent_info(&mut self.parents, &self.proc_root, ppid)
                                .set_fields(&mut ev);
                        }
                        None => {
                            self.orphans.insert(tgid, pending.len());
                        }
                    }
                }
                if self.known.len() > 100_000 {
                    self.known.clear();
                }
                self.known.insert(tgid, info.executable);
                pending.push(ev);
            }
            ProcEvent::Exit {
                pid,
                tgid,
                exit_code,
            } if pid == tgid && tgid != self.own_pid => {
                self.parents.remove(&tgid);
                self.forked.remove(&tgid);
                let mut ev = base_event(&self.host, "process", "process", "end");
                ev.set("event.action", "exit");
                ev.set("process.pid", tgid);
                if let Some(Some(exe)) = self.known.remove(&tgid) {
                    ev.set("process.executable", exe);
                }
                // wait(2) status: high byte = exit code, low 7 bits = terminating signal.
                if exit_code & 0x7f == 0 {
                    ev.set("process.exit_code", (exit_code >> 8) & 0xff);
                } else {
                    ev.set("process.exit_code", 128 + (exit_code & 0x7f));
                    ev.set("canh.process.signal", exit_code & 0x7f);
                }
                pending.push(ev);
            }
            _ => {}
        }
    }

    /// Hands `pending` to `emit`; the batch's indexes are forgotten.
    pub fn flush(&mut self, pending: &mut Vec<Event>, emit: &Emit) {
        self.orphans.clear();
        if !pending.is_empty() {
            emit(std::mem::take(pending));
        }
    }
}

/// Runs the process sensor until `stop` is set: exec → `process` start events, process exit →
/// end events. Events are handed to `emit` in batches (at most [`BATCH_EVENTS`], or what
/// came within [`BATCH_WAIT`]), each one spool append.
pub fn run(
    conn: ProcConnector,
    host: String,
    proc_root: PathBuf,
    emit: Emit,
    stop: Arc<AtomicBool>,
) -> Result<(), SensorError> {
    let mut tracker = Tracker::new(host, proc_root);
    let mut buf = vec![0u8; 16 * 1024];
    let mut messages = Vec::new();
    let mut pending: Vec<Event> = Vec::with_capacity(BATCH_EVENTS);
    let mut first_pending = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        conn.recv_into(&mut buf, &mut messages)?;
        let was_empty = pending.is_empty();
        for pe in messages.drain(..) {
            tracker.handle(pe, &mut pending);
        }
        if was_empty && !pending.is_empty() {
            first_pending = Instant::now();
        }
        if !pending.is_empty()
            && (pending.len() >= BATCH_EVENTS || first_pending.elapsed() >= BATCH_WAIT)
        {
            tracker.flush(&mut pending, &emit);
        }
    }
    tracker.flush(&mut pending, &emit);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn datagram(what: u32, a: u32, b: u32, c: u32) -> Vec<u8> {
        let union: Vec<u8> = [a, b, c, 0].iter().flat_map(|v| v.to_ne_bytes()).collect();
        raw_datagram(what, &union)
    }

    fn raw_datagram(what: u32, union: &[u8]) -> Vec<u8> {
        let mut ev = Vec::new();
        ev.extend_from_slice(&what.to_ne_bytes());
        ev.extend_from_slice(&0u32.to_ne_bytes());
        ev.extend_from_slice(&0u64.to_ne_bytes());
        ev.extend_from_slice(union);
        let mut cn = Vec::new();
        cn.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        cn.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        cn.extend_from_slice(&[0u8; 8]);
        cn.extend_from_slice(&(ev.len() as u16).to_ne_bytes());
        cn.extend_from_slice(&0u16.to_ne_bytes());
        cn.extend_from_slice(&ev);
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + cn.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&[0u8; 12]);
        m.extend_from_slice(&cn);
        m
    }

    #[test]
    fn exec_and_exit_messages_parse() {
        assert_eq!(
            parse_datagram(&datagram(2, 10, 10, 0)),
            vec![ProcEvent::Exec { pid: 10, tgid: 10 }]
        );
        assert_eq!(
            parse_datagram(&datagram(0x8000_0000, 11, 11, 256)),
            vec![ProcEvent::Exit {
                pid: 11,
                tgid: 11,
                exit_code: 256
            }]
        );
        assert_eq!(
            parse_datagram(&datagram(4, 1, 1, 1)),
            vec![ProcEvent::Other],
            "uid changes are not used"
        );
    }

    #[test]
    fn fork_messages_parse() {
        // fork: parent pid, parent tgid, child pid, child tgid.
        let fork: Vec<u8> = [7u32, 7, 12, 12]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        assert_eq!(
            parse_datagram(&raw_datagram(1, &fork)),
            vec![ProcEvent::Fork {
                parent_tgid: 7,
                child_pid: 12,
                child_tgid: 12
            }]
        );
        // A fork message cut short is not read past its end.
        assert!(parse_datagram(&raw_datagram(1, &fork[..10])).is_empty());
    }

    #[test]
    fn subscription_message_has_the_connector_layout() {
        let m = listen_message(42);
        assert_eq!(m.len(), 40);
        assert_eq!(u32_at(&m, 0), Some(40));
        assert_eq!(u32_at(&m, 12), Some(42));
        assert_eq!(u32_at(&m, 36), Some(PROC_CN_MCAST_LISTEN));
    }

    /// A pid no process has (above the kernel's pid limit).
    const GONE: u32 = 4_000_000_000;

    /// A numeric field of an event.
    fn number(ev: &Event, field: &str) -> Option<u64> {
        ev.get(field).and_then(serde_json::Value::as_u64)
    }

    /// The connector's exec message for the process that is already gone.
    /// The fork message of the process `GONE`, child of `parent`.
    fn fork_gone(t: &mut Tracker, pending: &mut Vec<Event>, parent: u32) {
        t.handle(
            ProcEvent::Fork {
                parent_tgid: parent,
                child_pid: GONE,
                child_tgid: GONE,
            },
            pending,
        );
    }

    fn exec_gone(t: &mut Tracker, pending: &mut Vec<Event>) {
        t.handle(
            ProcEvent::Exec {
                pid: GONE,
                tgid: GONE,
            },
            pending,
        );
    }

    #[test]
    fn a_start_whose_fork_message_comes_late_still_gets_its_parent() {
        let mut t = Tracker::new("h".into(), PathBuf::from("/proc"));
        let mut pending = Vec::new();
        let me = std::process::id();
        exec_gone(&mut t, &mut pending);
        assert_eq!(pending.len(), 1);
        assert!(pending[0].get("process.parent.pid").is_none());
        fork_gone(&mut t, &mut pending, me);
        let ev = &pending[0];
        assert_eq!(number(ev, "process.parent.pid"), Some(u64::from(me)));
        assert!(ev.get_str("process.parent.executable").is_some());
        assert_eq!(number(ev, "process.pid"), Some(u64::from(GONE)));
        assert!(t.orphans.is_empty());
        // Its exit forgets it.
        t.handle(
            ProcEvent::Exit {
                pid: GONE,
                tgid: GONE,
                exit_code: 0,
            },
            &mut pending,
        );
        assert!(t.forked.is_empty());
    }

    #[test]
    fn a_start_after_its_fork_message_gets_its_parent_and_its_exit_the_executable() {
        let mut t = Tracker::new("h".into(), PathBuf::from("/proc"));
        let mut pending = Vec::new();
        let me = std::process::id();
        fork_gone(&mut t, &mut pending, me);
        assert!(pending.is_empty(), "forks are not events");
        exec_gone(&mut t, &mut pending);
        assert_eq!(
            number(&pending[0], "process.parent.pid"),
            Some(u64::from(me))
        );
        // A second exec (a wrapper exec'ing its program) keeps the parent.
        exec_gone(&mut t, &mut pending);
        assert_eq!(
            number(&pending[1], "process.parent.pid"),
            Some(u64::from(me))
        );
        pending.pop();
        t.handle(
            ProcEvent::Exit {
                pid: GONE,
                tgid: GONE,
                exit_code: 2 << 8,
            },
            &mut pending,
        );
        assert_eq!(pending.len(), 2);
        assert!(t.forked.is_empty(), "an exit forgets the fork");
        assert_eq!(pending[1].get_str("event.action"), Some("exit"));
        assert_eq!(number(&pending[1], "process.exit_code"), Some(2));
        let seen: Arc<std::sync::Mutex<Vec<Event>>> = Arc::default();
        let emit: Emit = {
            let seen = seen.clone();
            Arc::new(move |evs| seen.lock().unwrap().extend(evs))
        };
        t.flush(&mut pending, &emit);
        assert!(pending.is_empty());
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn own_process_is_described_completely() {
        let mut t = Tracker::new("h".into(), PathBuf::from("/proc"));
        let mut pending = Vec::new();
        let me = std::process::id();
        // Our own pid is skipped by design; describe the test harness's process through a
        // fresh tracker whose own pid differs.
        t.own_pid = 0;
        t.handle(ProcEvent::Exec { pid: me, tgid: me }, &mut pending);
        let ev = &pending[0];
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(ev.get_str("process.executable"), exe.to_str());
        assert_eq!(ev.get_str("process.hash.sha256").map(str::len), Some(64));
        assert!(ev.get_str("process.command_line").is_some());
        assert!(ev.get("process.args").is_some());
        assert!(ev.get_str("process.name").is_some());
        assert!(ev.get_str("process.working_directory").is_some());
        assert!(ev.get_str("user.id").is_some());
        assert!(ev.get("process.parent.pid").is_some());
        assert!(ev.get_str("process.parent.executable").is_some());
    }

    proptest! {
        #[test]
        fn parsing_random_datagrams_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            let evs = parse_datagram(&raw);
            prop_assert!(evs.len() <= raw.len() / NLMSG_HDRLEN + 1);
        }
    }
}
