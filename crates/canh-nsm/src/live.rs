//! Live capture on Linux through `AF_PACKET` sockets.
//!
//! Each worker owns one `AF_PACKET` socket bound to the interface and one [`Sensor`]. With more
//! than one worker the sockets join one `PACKET_FANOUT` group in hash mode: the kernel's flow
//! hash is symmetric, so both directions of a flow reach the same worker. Packets are read from
//! a memory-mapped TPACKET_V3 ring (1 MiB blocks, handed over when full or after 50 ms) with the
//! kernel's nanosecond timestamps; with `ring_bytes = 0` they are read one per `recvmsg` call
//! instead, with `SO_TIMESTAMPNS` timestamps. On loopback, where the kernel shows each packet
//! once outgoing and once incoming, only the incoming copy is kept. A classic BPF program (the output of `tcpdump -ddd EXPR` or
//! `tcpdump -dd EXPR`) can be attached with `SO_ATTACH_FILTER` before the socket is bound, so no
//! unfiltered packet is ever queued.
//!
//! All workers write into one `eve.json`: each worker buffers its records and appends whole
//! lines under a lock at least once a second, so lines never interleave and `tail -f` follows
//! the file. On SIGINT or SIGTERM (or when the caller's stop flag is set) every worker ends its
//! flows, and one `stats` record with the sum of all workers and the kernel counters
//! (`PACKET_STATISTICS`) closes the file. A second SIGINT ends the process at once.
//!
//! Limits: VLAN tags stripped by the network card are not put back into the frame; flows of an
//! idle worker time out only when it sees its next packet or at the stop.

#![allow(unsafe_code)] // AF_PACKET socket calls through libc

use crate::NsmError;
use crate::decode::{LinkType, Timestamp};
use crate::eve::LineSink;
use crate::rules::RuleSet;
use crate::sensor::{Sensor, SensorConfig, SensorStats};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Errors of live capture.
#[derive(Debug, thiserror::Error)]
pub enum LiveCaptureError {
    /// The interface does not exist (in this network namespace).
    #[error("no such interface: {0} / không có giao diện mạng: {0}")]
    NoSuchInterface(String),
    /// Opening a packet socket needs root or the CAP_NET_RAW capability.
    #[error(
        "capturing on {0} is not permitted: run as root or grant CAP_NET_RAW \
         (setcap cap_net_raw,cap_net_admin=eip) / không đủ quyền bắt gói trên {0}: \
         cần quyền root hoặc CAP_NET_RAW"
    )]
    NotPermitted(String),
    /// A socket call failed.
    #[error("{op} failed on {iface}")]
    Socket {
        /// The call.
        op: &'static str,
        /// The interface.
        iface: String,
        /// The operating system error.
        #[source]
        source: std::io::Error,
    },
    /// The BPF program text is not valid.
    #[error("invalid BPF program: {0}")]
    InvalidFilter(String),
    /// The interface's link type cannot be decoded.
    #[error("interface {iface} has link type {arphrd}, which the sensor cannot decode")]
    UnsupportedLink {
        /// The interface.
        iface: String,
        /// Its `ARPHRD_*` number.
        arphrd: u16,
    },
    /// The EVE file could not be written.
    #[error("failed to write {path}")]
    Output {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The sensor failed.
    #[error(transparent)]
    Sensor(#[from] NsmError),
    /// A worker thread panicked.
    #[error("capture worker {0} stopped unexpectedly")]
    WorkerPanicked(usize),
}

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

/// A compiled classic BPF program, as printed by `tcpdump -ddd` or `tcpdump -dd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfProgram {
    /// The instructions.
    pub insns: Vec<BpfInsn>,
}

/// Longest program the kernel accepts (`BPF_MAXINSNS`).
const BPF_MAXINSNS: usize = 4096;

impl BpfProgram {
    /// Parses `tcpdump -ddd` output (a count line, then `code jt jf k` in decimal per line) or
    /// `tcpdump -dd` output (`{ 0x28, 0, 0, 0x0000000c },` per line).
    pub fn parse(text: &str) -> Result<Self, LiveCaptureError> {
        let bad = |m: String| LiveCaptureError::InvalidFilter(m);
        let mut insns = Vec::new();
        let mut declared: Option<usize> = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line
                .trim_start_matches('{')
                .trim_end_matches(',')
                .trim_end_matches('}')
                .split([',', ' ', '\t'])
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .collect();
            if fields.len() == 1 && declared.is_none() && insns.is_empty() {
                let count = parse_num(fields[0])
                    .ok_or_else(|| bad(format!("line {}: bad count {:?}", n + 1, fields[0])))?;
                declared = Some(count as usize);
                continue;
            }
            let [code, jt, jf, k] = fields[..] else {
                return Err(bad(format!(
                    "line {}: expected `code jt jf k`, found {line:?}",
                    n + 1
                )));
            };
            let num = |s: &str, max: u64| {
                parse_num(s)
                    .filter(|v| *v <= max)
                    .ok_or_else(|| bad(format!("line {}: bad number {s:?}", n + 1)))
            };
            insns.push(BpfInsn {
                code: num(code, u64::from(u16::MAX))? as u16,
                jt: num(jt, u64::from(u8::MAX))? as u8,
                jf: num(jf, u64::from(u8::MAX))? as u8,
                k: num(k, u64::from(u32::MAX))? as u32,
            });
        }
        if insns.is_empty() {
            return Err(bad("no instructions".into()));
        }
        if insns.len() > BPF_MAXINSNS {
            return Err(bad(format!(
                "{} instructions (at most {BPF_MAXINSNS})",
                insns.len()
            )));
        }
        if let Some(d) = declared
            && d != insns.len()
        {
            return Err(bad(format!(
                "count line says {d}, found {} instructions",
                insns.len()
            )));
        }
        Ok(Self { insns })
    }
}

fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Settings of a live capture.
#[derive(Clone)]
pub struct LiveConfig {
    /// Interface to capture on.
    pub interface: String,
    /// Worker threads (one socket and one sensor each); at least 1.
    pub workers: usize,
    /// Put the interface into promiscuous mode while capturing.
    pub promisc: bool,
    /// BPF filter attached to every socket.
    pub filter: Option<BpfProgram>,
    /// A filter expression in tcpdump syntax, compiled with the system's libpcap for the
    /// interface's link type (used when `filter` is `None`).
    pub filter_expr: Option<String>,
    /// Largest frame kept (bytes); longer frames are cut.
    pub snaplen: usize,
    /// Socket receive buffer (bytes) asked per worker (without a ring).
    pub rcvbuf: usize,
    /// Size of each worker's TPACKET_V3 memory-mapped receive ring in bytes (1 MiB blocks);
    /// 0 reads with `recvmsg`, one packet per call, instead.
    pub ring_bytes: usize,
    /// The EVE file (created or truncated).
    pub eve_path: PathBuf,
    /// Settings of every worker's sensor (`stats_record` decides whether the final combined
    /// `stats` record is written).
    pub sensor: SensorConfig,
    /// Signatures matched by every worker.
    pub rules: Option<Arc<RuleSet>>,
    /// Stop when SIGINT or SIGTERM arrives.
    pub stop_on_signals: bool,
    /// Stop when this flag becomes true (checked at least every 200 ms).
    pub stop: Arc<AtomicBool>,
    /// Also receives every complete EVE line once it is written to `eve_path` (for shipping
    /// to a server).
    pub tee: Option<LineSink>,
}

impl LiveConfig {
    /// Defaults: one worker, no promiscuous mode, no filter, 256 KiB snap length, stop on
    /// SIGINT/SIGTERM.
    pub fn new(interface: impl Into<String>, eve_path: impl Into<PathBuf>) -> Self {
        Self {
            interface: interface.into(),
            workers: 1,
            promisc: false,
            filter: None,
            filter_expr: None,
            snaplen: 256 << 10,
            rcvbuf: 32 << 20,
            ring_bytes: 32 << 20,
            eve_path: eve_path.into(),
            sensor: SensorConfig::default(),
            rules: None,
            stop_on_signals: true,
            stop: Arc::new(AtomicBool::new(false)),
            tee: None,
        }
    }
}

/// Counters of a live capture.
#[derive(Debug, Clone, Default)]
pub struct LiveStats {
    /// Sum of all workers' counters (block lists merged).
    pub total: SensorStats,
    /// Each worker's counters.
    pub workers: Vec<SensorStats>,
    /// Packets the kernel passed to the sockets (`tp_packets`).
    pub kernel_packets: u64,
    /// Packets the kernel dropped because a socket buffer was full (`tp_drops`).
    pub kernel_drops: u64,
    /// Frames longer than the snap length (cut).
    pub truncated: u64,
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);
static FANOUT_SEQ: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
    // The next signal of this kind gets the default action (ends the process).
    // SAFETY: signal(2) is async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
    }
}

fn install_signal_handlers() {
    SIGNALLED.store(false, Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe); the struct is
        // zero-initialised, then its mask is emptied by sigemptyset. No SA_RESTART, so a
        // blocked recvmsg returns EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Captures on `cfg.interface` until stopped, then ends all flows and writes the `stats` record.
pub fn run_live(cfg: LiveConfig) -> Result<LiveStats, LiveCaptureError> {
    let workers = cfg.workers.max(1);
    let iface = cfg.interface.clone();
    // Open every socket first, so errors (no interface, no permission) come before any output.
    let group = fanout_group();
    let mut sockets = Vec::with_capacity(workers);
    for _ in 0..workers {
        sockets.push(PacketSocket::open(&cfg, (workers > 1).then_some(group))?);
    }
    let link = sockets[0].link;
    let eve_name = cfg.eve_path.display().to_string();
    let output_err = |source| LiveCaptureError::Output {
        path: eve_name.clone(),
        source,
    };
    let file = File::create(&cfg.eve_path).map_err(output_err)?;
    let shared = Arc::new(Mutex::new(EveFile {
        file,
        tee: cfg.tee.clone(),
    }));
    if cfg.stop_on_signals {
        install_signal_handlers();
    }
    tracing::info!(interface = %iface, workers, ?link, "live capture started");
    let cfg = Arc::new(cfg);
    let handles: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, sock)| {
            let cfg = Arc::clone(&cfg);
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("canh-capture-{i}"))
                .spawn(move || {
                    let res = worker(&cfg, sock, &shared);
                    if res.is_err() {
                        // Stop the other workers too.
                        cfg.stop.store(true, Ordering::SeqCst);
                    }
                    res
                })
        })
        .collect();
    if handles.iter().any(Result::is_err) {
        cfg.stop.store(true, Ordering::SeqCst);
    }
    let mut stats = LiveStats::default();
    let mut first_err = None;
    for (i, h) in handles.into_iter().enumerate() {
        let res = match h {
            Ok(h) => h.join().unwrap_or(Err(LiveCaptureError::WorkerPanicked(i))),
            Err(e) => Err(LiveCaptureError::Socket {
                op: "spawning a worker thread",
                iface: iface.clone(),
                source: e,
            }),
        };
        match res {
            Ok(w) => {
                stats.kernel_packets += w.kernel_packets;
                stats.kernel_drops += w.kernel_drops;
                stats.truncated += w.truncated;
                stats.workers.push(w.sensor);
            }
            Err(e) => {
                // Keep the first error, stop the other workers.
                cfg.stop.store(true, Ordering::SeqCst);
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    stats.total = sum_stats(&stats.workers, cfg.sensor.block_ttl_secs);
    if cfg.sensor.stats_record {
        let rec = stats_record(&stats, workers);
        let mut line = serde_json::to_vec(&rec).map_err(|e| output_err(e.into()))?;
        line.push(b'\n');
        shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .write_lines(&line)
            .map_err(output_err)?;
    }
    tracing::info!(
        packets = stats.total.packets,
        kernel_drops = stats.kernel_drops,
        "live capture stopped"
    );
    Ok(stats)
}

fn fanout_group() -> u16 {
    let seq = FANOUT_SEQ.fetch_add(1, Ordering::Relaxed);
    ((std::process::id() ^ (seq << 12)) & 0xffff) as u16
}

fn stopped(cfg: &LiveConfig) -> bool {
    cfg.stop.load(Ordering::SeqCst) || (cfg.stop_on_signals && SIGNALLED.load(Ordering::SeqCst))
}

struct WorkerResult {
    sensor: SensorStats,
    kernel_packets: u64,
    kernel_drops: u64,
    truncated: u64,
}

/// The writer a worker's sensor writes into: a buffer drained in whole lines.
struct Pending(Rc<RefCell<Vec<u8>>>);

impl Write for Pending {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The EVE file the workers share, and where its lines are also sent.
struct EveFile {
    file: File,
    tee: Option<LineSink>,
}

impl EveFile {
    /// Writes complete lines, then hands them to the tee.
    fn write_lines(&mut self, lines: &[u8]) -> std::io::Result<()> {
        self.file.write_all(lines)?;
        self.file.flush()?;
        if let Some(tee) = &self.tee {
            tee(lines);
        }
        Ok(())
    }
}

/// Appends the complete lines of `pending` to the shared file.
fn drain_lines(pending: &RefCell<Vec<u8>>, shared: &Mutex<EveFile>) -> std::io::Result<()> {
    let mut buf = pending.borrow_mut();
    let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
        return Ok(());
    };
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .write_lines(&buf[..=end])?;
    buf.drain(..=end);
    Ok(())
}

const FLUSH_EVERY: Duration = Duration::from_millis(500);
const FLUSH_BYTES: usize = 1 << 20;
/// Packets still read from the socket queue after a stop request.
const DRAIN_MAX: usize = 100_000;

fn worker(
    cfg: &LiveConfig,
    mut sock: PacketSocket,
    shared: &Mutex<EveFile>,
) -> Result<WorkerResult, LiveCaptureError> {
    let output_err = |source| LiveCaptureError::Output {
        path: cfg.eve_path.display().to_string(),
        source,
    };
    let pending = Rc::new(RefCell::new(Vec::with_capacity(FLUSH_BYTES)));
    let scfg = SensorConfig {
        stats_record: false,
        ..cfg.sensor.clone()
    };
    let mut sensor = Sensor::new(scfg, Pending(Rc::clone(&pending)));
    if let Some(r) = &cfg.rules {
        sensor = sensor.with_rules(Arc::clone(r));
    }
    let mut buf = vec![0u8; cfg.snaplen.max(64)];
    let mut truncated = 0u64;
    let mut last_flush = Instant::now();
    let mut draining: Option<usize> = None;
    let link = sock.link;
    let snaplen = cfg.snaplen.max(64);
    loop {
        if draining.is_none() && stopped(cfg) {
            // Take what is already queued, then stop (bounded on a busy link).
            draining = Some(0);
        }
        let mut handle = |ts: Timestamp, data: &[u8], wire_len: usize| {
            let cap = data.len().min(snaplen);
            if wire_len > cap {
                truncated += 1;
            }
            let origlen = u32::try_from(wire_len).unwrap_or(u32::MAX);
            sensor.process(ts, link, &data[..cap], origlen)
        };
        let n = sock.read_packets(&mut buf, draining.is_some(), &mut handle)?;
        if let Some(d) = draining.as_mut() {
            *d += n;
            if n == 0 || *d > DRAIN_MAX {
                break;
            }
        }
        if last_flush.elapsed() >= FLUSH_EVERY || pending.borrow().len() >= FLUSH_BYTES {
            drain_lines(&pending, shared).map_err(output_err)?;
            last_flush = Instant::now();
        }
    }
    let stats = sensor.finish()?;
    drain_lines(&pending, shared).map_err(output_err)?;
    let (kernel_packets, kernel_drops) = sock.statistics()?;
    Ok(WorkerResult {
        sensor: stats,
        kernel_packets,
        kernel_drops,
        truncated,
    })
}

struct Received {
    ts: Timestamp,
    wire_len: usize,
}

struct PacketSocket {
    /// The receive ring (dropped, i.e. unmapped, before the socket closes).
    ring: Option<Ring>,
    fd: OwnedFd,
    iface: String,
    link: LinkType,
    /// Loopback shows every packet twice (outgoing and incoming); keep the incoming copy.
    skip_outgoing: bool,
}

/// A TPACKET_V3 receive ring mapped into this process.
struct Ring {
    base: *mut u8,
    block_size: usize,
    block_nr: usize,
    /// Next block to read.
    cur: usize,
}

// SAFETY: the mapping is owned by one worker thread at a time (moved, never shared).
unsafe impl Send for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `base` came from mmap with this length and is unmapped once.
        unsafe {
            libc::munmap(self.base.cast(), self.block_size * self.block_nr);
        }
    }
}

/// Receives a packet: kernel timestamp, captured bytes, length on the wire.
type PacketFn<'a> = dyn FnMut(Timestamp, &[u8], usize) -> Result<(), NsmError> + 'a;

/// Block size of the ring: holds the largest GSO frame (64 KiB) many times over.
const RING_BLOCK: usize = 1 << 20;
/// A block is handed to the reader after this many milliseconds even when not full.
const RING_BLOCK_TIMEOUT_MS: u32 = 50;

fn last_os_error(op: &'static str, iface: &str) -> LiveCaptureError {
    LiveCaptureError::Socket {
        op,
        iface: iface.to_string(),
        source: std::io::Error::last_os_error(),
    }
}

fn setsockopt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    op: &'static str,
    iface: &str,
) -> Result<(), LiveCaptureError> {
    // SAFETY: `value` points to a live `T` of the given size for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_os_error(op, iface))
    }
}

impl PacketSocket {
    fn open(cfg: &LiveConfig, fanout: Option<u16>) -> Result<Self, LiveCaptureError> {
        let iface = cfg.interface.as_str();
        if iface.is_empty() || iface.len() >= libc::IFNAMSIZ || iface.contains('\0') {
            return Err(LiveCaptureError::NoSuchInterface(iface.to_string()));
        }
        // Protocol 0: no packet is queued before the filter is attached and the socket bound.
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let err = std::io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => LiveCaptureError::NotPermitted(iface.into()),
                _ => LiveCaptureError::Socket {
                    op: "socket(AF_PACKET)",
                    iface: iface.into(),
                    source: err,
                },
            });
        }
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let name = std::ffi::CString::new(iface)
            .map_err(|_| LiveCaptureError::NoSuchInterface(iface.to_string()))?;
        // SAFETY: `name` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(LiveCaptureError::NoSuchInterface(iface.to_string()));
        }
        let arphrd = hardware_type(&fd, iface)?;
        let (link, skip_outgoing) = match arphrd {
            libc::ARPHRD_ETHER => (LinkType::Ethernet, false),
            // Loopback frames carry a zeroed Ethernet header.
            libc::ARPHRD_LOOPBACK => (LinkType::Ethernet, true),
            libc::ARPHRD_NONE => (LinkType::Raw, false),
            other => {
                return Err(LiveCaptureError::UnsupportedLink {
                    iface: iface.to_string(),
                    arphrd: other,
                });
            }
        };
        let compiled;
        let filter = match (&cfg.filter, &cfg.filter_expr) {
            (Some(p), _) => Some(p),
            (None, Some(expr)) => {
                compiled = crate::pcap_filter::compile(expr, link, cfg.snaplen)?;
                Some(&compiled)
            }
            (None, None) => None,
        };
        if let Some(prog) = filter {
            let mut insns: Vec<libc::sock_filter> = prog
                .insns
                .iter()
                .map(|i| libc::sock_filter {
                    code: i.code,
                    jt: i.jt,
                    jf: i.jf,
                    k: i.k,
                })
                .collect();
            let fprog = libc::sock_fprog {
                len: insns.len() as libc::c_ushort,
                filter: insns.as_mut_ptr(),
            };
            setsockopt(
                &fd,
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                &fprog,
                "attaching the BPF filter (SO_ATTACH_FILTER)",
                iface,
            )?;
        }
        let one: libc::c_int = 1;
        setsockopt(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &one,
            "SO_TIMESTAMPNS",
            iface,
        )?;
        let rcvbuf = libc::c_int::try_from(cfg.rcvbuf).unwrap_or(libc::c_int::MAX);
        // Without CAP_NET_ADMIN the kernel caps this at rmem_max; not fatal.
        if setsockopt(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &rcvbuf,
            "SO_RCVBUF",
            iface,
        )
        .is_err()
        {
            setsockopt(
                &fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &rcvbuf,
                "SO_RCVBUF",
                iface,
            )?;
        }
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        setsockopt(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &timeout,
            "SO_RCVTIMEO",
            iface,
        )?;
        let ring = if cfg.ring_bytes > 0 {
            Some(Self::setup_ring(&fd, cfg.ring_bytes, iface)?)
        } else {
            None
        };
        // SAFETY: all-zero is a valid sockaddr_ll; the fields are set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex as libc::c_int;
        // SAFETY: `addr` is a sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(last_os_error("bind", iface));
        }
        if cfg.promisc {
            // SAFETY: all-zero is a valid packet_mreq.
            let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
            mreq.mr_ifindex = ifindex as libc::c_int;
            mreq.mr_type = libc::PACKET_MR_PROMISC as libc::c_ushort;
            setsockopt(
                &fd,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                &mreq,
                "enabling promiscuous mode",
                iface,
            )?;
        }
        if let Some(group) = fanout {
            let arg: libc::c_uint = u32::from(group)
                | ((libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG) << 16);
            setsockopt(
                &fd,
                libc::SOL_PACKET,
                libc::PACKET_FANOUT,
                &arg,
                "joining the fanout group (PACKET_FANOUT)",
                iface,
            )?;
        }
        Ok(Self {
            ring,
            fd,
            iface: iface.to_string(),
            link,
            skip_outgoing,
        })
    }

    /// Maps a TPACKET_V3 ring of about `bytes` bytes (before bind).
    fn setup_ring(fd: &OwnedFd, bytes: usize, iface: &str) -> Result<Ring, LiveCaptureError> {
        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &version,
            "PACKET_VERSION",
            iface,
        )?;
        let block_nr = (bytes / RING_BLOCK).clamp(2, 1024);
        let frame_size = 2048usize;
        let req = libc::tpacket_req3 {
            tp_block_size: RING_BLOCK as libc::c_uint,
            tp_block_nr: block_nr as libc::c_uint,
            tp_frame_size: frame_size as libc::c_uint,
            tp_frame_nr: (RING_BLOCK / frame_size * block_nr) as libc::c_uint,
            tp_retire_blk_tov: RING_BLOCK_TIMEOUT_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_RX_RING,
            &req,
            "PACKET_RX_RING",
            iface,
        )?;
        let len = RING_BLOCK * block_nr;
        // SAFETY: maps the ring the kernel just allocated for this socket.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(last_os_error("mmap of the packet ring", iface));
        }
        Ok(Ring {
            base: base.cast(),
            block_size: RING_BLOCK,
            block_nr,
            cur: 0,
        })
    }

    /// Passes received packets to `f` (timestamp, captured bytes, length on the wire) and
    /// returns how many packets were taken from the kernel (loopback copies skipped included).
    /// Waits up to 200 ms for packets (a single look after the wait if `nowait`).
    fn read_packets(
        &mut self,
        buf: &mut [u8],
        nowait: bool,
        f: &mut PacketFn<'_>,
    ) -> Result<usize, LiveCaptureError> {
        let skip_outgoing = self.skip_outgoing;
        let Some(ring) = self.ring.as_mut() else {
            let flags = if nowait { libc::MSG_DONTWAIT } else { 0 };
            return match self.recv(buf, flags)? {
                Some(p) => {
                    f(p.ts, &buf[..p.wire_len.min(buf.len())], p.wire_len)?;
                    Ok(1)
                }
                None => Ok(0),
            };
        };
        // SAFETY: `cur < block_nr`, so the block lies inside the mapping.
        let block = unsafe { ring.base.add(ring.cur * ring.block_size) };
        let desc = block.cast::<libc::tpacket_block_desc>();
        // SAFETY: the block descriptor is at the start of the block; the status word is
        // shared with the kernel, so it is read volatile, then fenced before reading data.
        let status = unsafe { std::ptr::read_volatile(&raw const (*desc).hdr.bh1.block_status) };
        if status & libc::TP_STATUS_USER == 0 {
            // A block not yet full is handed over after RING_BLOCK_TIMEOUT_MS; 200 ms covers it.
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, 200) };
            if rc < 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EINTR) {
                    return Err(LiveCaptureError::Socket {
                        op: "poll",
                        iface: self.iface.clone(),
                        source: err,
                    });
                }
            }
            if nowait {
                // Draining: one more look after the wait, then report what was there.
                // SAFETY: as above.
                let status =
                    unsafe { std::ptr::read_volatile(&raw const (*desc).hdr.bh1.block_status) };
                if status & libc::TP_STATUS_USER == 0 {
                    return Ok(0);
                }
            } else {
                return Ok(0);
            }
        }
        std::sync::atomic::fence(Ordering::Acquire);
        // SAFETY: the kernel handed this block to user space; its header fields and packet
        // offsets are kernel-written and stay inside the block.
        let (num, first) = unsafe {
            let h = &(*desc).hdr.bh1;
            (h.num_pkts as usize, h.offset_to_first_pkt as usize)
        };
        let sll_off = (std::mem::size_of::<libc::tpacket3_hdr>() + libc::TPACKET_ALIGNMENT - 1)
            & !(libc::TPACKET_ALIGNMENT - 1);
        let mut off = first;
        let mut result = Ok(());
        for _ in 0..num {
            if off + std::mem::size_of::<libc::tpacket3_hdr>() > ring.block_size {
                break;
            }
            // SAFETY: `off` is inside the block (checked above); the header may be unaligned
            // only if the kernel misbehaves, so it is read unaligned.
            let hdr: libc::tpacket3_hdr =
                unsafe { std::ptr::read_unaligned(block.add(off).cast()) };
            let mac = off + usize::from(hdr.tp_mac);
            let caplen = hdr.tp_snaplen as usize;
            if mac + caplen > ring.block_size {
                break;
            }
            let outgoing =
                off + sll_off + std::mem::size_of::<libc::sockaddr_ll>() <= ring.block_size && {
                    // SAFETY: bounds checked just above.
                    let sll: libc::sockaddr_ll =
                        unsafe { std::ptr::read_unaligned(block.add(off + sll_off).cast()) };
                    sll.sll_pkttype == libc::PACKET_OUTGOING
                };
            if !(skip_outgoing && outgoing) {
                // SAFETY: `mac..mac + caplen` is inside the block (checked above).
                let data = unsafe { std::slice::from_raw_parts(block.add(mac), caplen) };
                let ts = Timestamp::new(i64::from(hdr.tp_sec), hdr.tp_nsec / 1000);
                if let Err(e) = f(ts, data, hdr.tp_len as usize) {
                    result = Err(e);
                    break;
                }
            }
            if hdr.tp_next_offset == 0 {
                break;
            }
            off += hdr.tp_next_offset as usize;
        }
        // Give the block back to the kernel.
        std::sync::atomic::fence(Ordering::Release);
        // SAFETY: the status word of a block this reader owns.
        unsafe {
            std::ptr::write_volatile(
                &raw mut (*desc).hdr.bh1.block_status,
                libc::TP_STATUS_KERNEL,
            );
        }
        ring.cur = (ring.cur + 1) % ring.block_nr;
        result?;
        Ok(num)
    }

    /// Receives one packet into `buf`; `None` after the receive timeout or a signal (or at
    /// once when nothing is queued, with `MSG_DONTWAIT`).
    fn recv(
        &self,
        buf: &mut [u8],
        flags: libc::c_int,
    ) -> Result<Option<Received>, LiveCaptureError> {
        loop {
            // SAFETY: all-zero is a valid sockaddr_ll.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut control = [0u64; 16];
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: all-zero is a valid msghdr; pointers are set to live buffers below.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            // SAFETY: `msg` points to buffers that outlive the call. MSG_TRUNC makes the
            // call return the frame's full length.
            let n =
                unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_TRUNC | flags) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                return match err.raw_os_error() {
                    Some(libc::EAGAIN | libc::EINTR) => Ok(None),
                    _ => Err(LiveCaptureError::Socket {
                        op: "recvmsg",
                        iface: self.iface.clone(),
                        source: err,
                    }),
                };
            }
            if self.skip_outgoing && from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let ts = control_timestamp(&msg).unwrap_or_else(now);
            return Ok(Some(Received {
                ts,
                wire_len: n as usize,
            }));
        }
    }

    /// Kernel counters since the last call: (packets, drops).
    fn statistics(&self) -> Result<(u64, u64), LiveCaptureError> {
        // SAFETY: all-zero is a valid tpacket_stats.
        let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `st` is writable and `len` holds its size.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(last_os_error("PACKET_STATISTICS", &self.iface));
        }
        Ok((u64::from(st.tp_packets), u64::from(st.tp_drops)))
    }
}

fn hardware_type(fd: &OwnedFd, iface: &str) -> Result<u16, LiveCaptureError> {
    // SAFETY: all-zero is a valid ifreq.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name (len < IFNAMSIZ).
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::ENODEV) => LiveCaptureError::NoSuchInterface(iface.to_string()),
            _ => LiveCaptureError::Socket {
                op: "SIOCGIFHWADDR",
                iface: iface.to_string(),
                source: err,
            },
        });
    }
    // SAFETY: SIOCGIFHWADDR fills the hwaddr member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_hwaddr.sa_family })
}

fn control_timestamp(msg: &libc::msghdr) -> Option<Timestamp> {
    // SAFETY: `msg` was filled by recvmsg; the CMSG_* helpers stay inside msg_control.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(Timestamp::new(ts.tv_sec, (ts.tv_nsec / 1000) as u32));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::new(d.as_secs() as i64, d.subsec_micros())
}

/// Sums the counters of several workers.
fn sum_stats(all: &[SensorStats], block_ttl: i64) -> SensorStats {
    let mut t = SensorStats {
        blocklist: crate::blocklist::BlockList::with_ttl(block_ttl),
        ..SensorStats::default()
    };
    for s in all {
        t.packets += s.packets;
        t.bytes += s.bytes;
        t.ipv4 += s.ipv4;
        t.ipv6 += s.ipv6;
        t.not_ip += s.not_ip;
        t.decode_anomalies += s.decode_anomalies;
        t.app_anomalies += s.app_anomalies;
        t.tunnelled += s.tunnelled;
        for (k, v) in &s.events {
            *t.events.entry(k.clone()).or_default() += v;
        }
        t.flows.created += s.flows.created;
        t.flows.timed_out += s.flows.timed_out;
        t.flows.evicted += s.flows.evicted;
        t.flows.peak += s.flows.peak;
        t.defrag.reassembled += s.defrag.reassembled;
        t.defrag.evicted += s.defrag.evicted;
        t.defrag.timeouts += s.defrag.timeouts;
        t.defrag.overlaps += s.defrag.overlaps;
        t.defrag.too_large += s.defrag.too_large;
        t.tcp_out_of_order += s.tcp_out_of_order;
        t.tcp_overlaps += s.tcp_overlaps;
        t.tcp_gaps += s.tcp_gaps;
        t.truncated_capture |= s.truncated_capture;
        t.ddos.destinations_dropped += s.ddos.destinations_dropped;
        t.ddos.destinations_evicted += s.ddos.destinations_evicted;
        t.ddos.sources_dropped += s.ddos.sources_dropped;
        t.ddos.source_replacements += s.ddos.source_replacements;
        t.ddos.peak_destinations += s.ddos.peak_destinations;
        t.ddos.peak_sources += s.ddos.peak_sources;
        for (ip, e) in s.blocklist.entries() {
            t.blocklist.add(*ip, &e.reason, e.last_seen);
        }
        t.threshold_evictions += s.threshold_evictions;
    }
    t
}

/// The final `stats` record: the same sections as an offline run plus `capture`.
fn stats_record(l: &LiveStats, workers: usize) -> Value {
    let mut body = l.total.record_body();
    body["capture"] = json!({
        "kernel_packets": l.kernel_packets,
        "kernel_drops": l.kernel_drops,
        "truncated": l.truncated,
        "workers": workers,
        "worker_pkts": l.workers.iter().map(|w| w.packets).collect::<Vec<_>>(),
    });
    json!({
        "timestamp": now().to_eve(),
        "event_type": "stats",
        "stats": body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcpdump_ddd_output() {
        let p = BpfProgram::parse("4\n40 0 0 12\n21 0 1 2048\n6 0 0 262144\n6 0 0 0\n").unwrap();
        assert_eq!(p.insns.len(), 4);
        assert_eq!(
            p.insns[1],
            BpfInsn {
                code: 21,
                jt: 0,
                jf: 1,
                k: 2048
            }
        );
    }

    #[test]
    fn parses_tcpdump_dd_output() {
        let text = "{ 0x28, 0, 0, 0x0000000c },\n{ 0x15, 0, 1, 0x00000800 },\n\
                    { 0x6, 0, 0, 0x00040000 },\n{ 0x6, 0, 0, 0x00000000 },\n";
        let p = BpfProgram::parse(text).unwrap();
        assert_eq!(
            p,
            BpfProgram::parse("4\n40 0 0 12\n21 0 1 2048\n6 0 0 262144\n6 0 0 0").unwrap()
        );
    }

    #[test]
    fn rejects_bad_programs() {
        for bad in [
            "",
            "2\n6 0 0 0\n",
            "6 0 0\n",
            "6 0 300 0\n",
            "x y z w\n",
            "ip and udp",
        ] {
            assert!(
                matches!(
                    BpfProgram::parse(bad),
                    Err(LiveCaptureError::InvalidFilter(_))
                ),
                "{bad:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn filter_parser_never_panics(text in "[0-9a-fx{},# \t\n-]{0,200}") {
            let _ = BpfProgram::parse(&text);
        }
    }

    #[test]
    fn unknown_interface_is_a_clear_error() {
        let mut cfg = LiveConfig::new("canh-no-such0", "/nonexistent/eve.json");
        cfg.stop_on_signals = false;
        match run_live(cfg) {
            Err(LiveCaptureError::NoSuchInterface(n)) => assert_eq!(n, "canh-no-such0"),
            Err(LiveCaptureError::NotPermitted(_)) => {} // not root: the socket comes first
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn drain_writes_only_whole_lines() {
        let dir = std::env::temp_dir().join(format!("canh-live-drain-{}", std::process::id()));
        let file = File::create(&dir).unwrap();
        let teed = Arc::new(Mutex::new(Vec::new()));
        let tee: LineSink = {
            let teed = Arc::clone(&teed);
            Arc::new(move |lines: &[u8]| teed.lock().unwrap().extend_from_slice(lines))
        };
        let shared = Mutex::new(EveFile {
            file,
            tee: Some(tee),
        });
        let pending = RefCell::new(b"{\"a\":1}\n{\"b\":".to_vec());
        drain_lines(&pending, &shared).unwrap();
        assert_eq!(std::fs::read(&dir).unwrap(), b"{\"a\":1}\n");
        assert_eq!(pending.borrow().as_slice(), b"{\"b\":");
        assert_eq!(teed.lock().unwrap().as_slice(), b"{\"a\":1}\n");
        std::fs::remove_file(&dir).unwrap();
    }
}
