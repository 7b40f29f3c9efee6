//! Scan and flood detection: per-destination rate baselines, per-source scan tracking, all in
//! bounded tables with eviction counters.
//!
//! Time is cut into fixed windows (`window_secs`, by packet time). At the end of a window each
//! destination's packet rates per vector are compared with an absolute threshold and with
//! `baseline_factor` × its own moving baseline (EWMA of earlier windows); sources are counted
//! with the Space-Saving algorithm (a fixed number of counters per destination), so a flood from
//! millions of spoofed addresses uses the same memory as one from ten.

use crate::decode::tcp_flags;
use crate::proto::heap::{HeapSize, alloc};
use std::collections::HashMap;

/// Addresses seen on the wire are attacker-chosen: a randomly seeded hasher (foldhash, much
/// cheaper than SipHash on addresses).
type AddrMap<V> = HashMap<IpAddr, V, foldhash::fast::RandomState>;
use std::net::IpAddr;

/// Hosts per source whose ports are tracked for vertical scans.
const MAX_PORT_HOSTS: usize = 64;

/// Thresholds and table sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct DdosConfig {
    /// Window length in seconds.
    pub window_secs: i64,
    /// TCP SYN (without ACK) packets per second to one destination.
    pub syn_pps: f64,
    /// UDP packets per second to one destination (reflection ports excluded).
    pub udp_pps: f64,
    /// ICMP packets per second to one destination.
    pub icmp_pps: f64,
    /// Bytes per second from one reflection service port to one destination.
    pub reflection_bps: f64,
    /// A rate must also exceed this multiple of the destination's baseline.
    pub baseline_factor: f64,
    /// Weight of the newest window in the baseline (0–1).
    pub baseline_alpha: f64,
    /// Distinct hosts one source probes in a window (horizontal scan).
    pub scan_hosts: usize,
    /// Distinct ports one source probes on one host in a window (vertical scan).
    pub scan_ports: usize,
    /// Destinations tracked at most.
    pub max_destinations: usize,
    /// Sources tracked for scans at most.
    pub max_sources: usize,
    /// Source counters per destination (Space-Saving).
    pub source_counters: usize,
    /// Top sources named in an alert.
    pub top_sources: usize,
}

impl Default for DdosConfig {
    fn default() -> Self {
        Self {
            window_secs: 10,
            syn_pps: 1000.0,
            udp_pps: 5000.0,
            icmp_pps: 1000.0,
            reflection_bps: 1_000_000.0,
            baseline_factor: 3.0,
            baseline_alpha: 0.2,
            scan_hosts: 30,
            scan_ports: 100,
            max_destinations: 65_536,
            max_sources: 65_536,
            source_counters: 32,
            top_sources: 5,
        }
    }
}

/// Attack vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vector {
    /// TCP SYN flood.
    SynFlood,
    /// UDP flood.
    UdpFlood,
    /// ICMP flood.
    IcmpFlood,
    /// DNS reflection (source port 53).
    DnsAmplification,
    /// NTP reflection (123).
    NtpAmplification,
    /// SNMP reflection (161).
    SnmpAmplification,
    /// SSDP reflection (1900).
    SsdpAmplification,
    /// memcached reflection (11211).
    MemcachedAmplification,
}

impl Vector {
    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            Self::SynFlood => "syn_flood",
            Self::UdpFlood => "udp_flood",
            Self::IcmpFlood => "icmp_flood",
            Self::DnsAmplification => "dns_amplification",
            Self::NtpAmplification => "ntp_amplification",
            Self::SnmpAmplification => "snmp_amplification",
            Self::SsdpAmplification => "ssdp_amplification",
            Self::MemcachedAmplification => "memcached_amplification",
        }
    }

    fn reflection(port: u16) -> Option<Self> {
        Some(match port {
            53 => Self::DnsAmplification,
            123 => Self::NtpAmplification,
            161 => Self::SnmpAmplification,
            1900 => Self::SsdpAmplification,
            11211 => Self::MemcachedAmplification,
            _ => return None,
        })
    }

    const ALL: [Vector; 8] = [
        Self::SynFlood,
        Self::UdpFlood,
        Self::IcmpFlood,
        Self::DnsAmplification,
        Self::NtpAmplification,
        Self::SnmpAmplification,
        Self::SsdpAmplification,
        Self::MemcachedAmplification,
    ];

    fn index(self) -> usize {
        Self::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }

    fn is_reflection(self) -> bool {
        !matches!(self, Self::SynFlood | Self::UdpFlood | Self::IcmpFlood)
    }
}

/// A detected flood against one destination in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct FloodAlert {
    /// Window start (seconds).
    pub window_start: i64,
    /// Window length (seconds).
    pub window_secs: i64,
    /// The destination.
    pub victim: IpAddr,
    /// Vectors over threshold with their rate (packets/s, or bytes/s for reflection).
    pub vectors: Vec<(Vector, f64)>,
    /// Heaviest sources (address, estimated packets).
    pub top_sources: Vec<(IpAddr, u64)>,
    /// Packets to the victim in the window.
    pub packets: u64,
    /// Bytes to the victim in the window.
    pub bytes: u64,
}

/// Scan kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanKind {
    /// One source, many hosts.
    Horizontal,
    /// One source, many ports on one host.
    Vertical,
}

impl ScanKind {
    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Horizontal => "horizontal_scan",
            Self::Vertical => "vertical_scan",
        }
    }
}

/// A detected scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanAlert {
    /// Time of the packet that crossed the threshold (seconds).
    pub ts: i64,
    /// Kind.
    pub kind: ScanKind,
    /// The scanner.
    pub source: IpAddr,
    /// Vertical: the host scanned. Horizontal: one of the hosts.
    pub target: IpAddr,
    /// Distinct hosts probed in the window.
    pub hosts: usize,
    /// Distinct ports probed (on `target` for vertical scans).
    pub ports: Vec<u16>,
}

/// Detector output.
#[derive(Debug, Clone, PartialEq)]
pub enum DdosEvent {
    /// A flood.
    Flood(FloodAlert),
    /// A scan.
    Scan(ScanAlert),
}

/// Table counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DdosStats {
    /// Destinations not tracked because the table was full.
    pub destinations_dropped: u64,
    /// Idle destinations evicted.
    pub destinations_evicted: u64,
    /// Sources not tracked for scans because the table was full.
    pub sources_dropped: u64,
    /// Space-Saving replacements (a source counter reused for a new source).
    pub source_replacements: u64,
    /// Peak tracked destinations.
    pub peak_destinations: usize,
    /// Peak tracked scan sources.
    pub peak_sources: usize,
    /// Largest estimated memory of the tables (measured when a window closes, when they are
    /// fullest), in bytes.
    pub peak_bytes: usize,
}

#[derive(Debug, Clone, Default)]
struct DestState {
    counts: [u64; 8],
    packets: u64,
    bytes: u64,
    baseline: [f64; 8],
    windows_seen: u32,
    idle_windows: u32,
    sources: Vec<(IpAddr, u64)>,
}

#[derive(Debug, Clone, Default)]
struct SourceState {
    hosts: Vec<IpAddr>,
    ports: AddrMap<Vec<u16>>,
    reported_h: bool,
    reported_v: Vec<IpAddr>,
}

impl HeapSize for DestState {
    fn heap_size(&self) -> usize {
        self.sources.heap_size()
    }
}

impl HeapSize for SourceState {
    fn heap_size(&self) -> usize {
        self.hosts.heap_size() + self.ports.heap_size() + self.reported_v.heap_size()
    }
}

impl DdosConfig {
    /// Upper bound of the detector's memory with these settings, in bytes: every destination
    /// and source slot taken, each source probing [`MAX_PORT_HOSTS`] hosts on `scan_ports`
    /// ports. The tables are the estimate of [`DdosDetector::heap_bytes`] at their fullest.
    /// Real traffic stays far below: a source costs about 100 bytes per distinct host or
    /// port it probes in a window, and the scan table is emptied at every window.
    pub fn max_state_bytes(&self) -> usize {
        let table = |entries: usize, entry: usize| {
            if entries == 0 {
                return 0;
            }
            alloc((entries * 8 / 7).next_power_of_two() * (entry + 1))
        };
        let ip = std::mem::size_of::<IpAddr>();
        let counters = self.source_counters.max(1).next_power_of_two();
        let dest = alloc(counters * std::mem::size_of::<(IpAddr, u64)>());
        let hosts = alloc(self.scan_hosts.max(2).next_power_of_two() * ip);
        let ports = alloc(self.scan_ports.max(2).next_power_of_two() * 2);
        let port_map = table(MAX_PORT_HOSTS, std::mem::size_of::<(IpAddr, Vec<u16>)>())
            + MAX_PORT_HOSTS * ports;
        let reported = alloc(MAX_PORT_HOSTS * ip);
        let source = hosts + port_map + reported;
        table(
            self.max_destinations,
            std::mem::size_of::<(IpAddr, DestState)>(),
        ) + self.max_destinations * dest
            + table(
                self.max_sources,
                std::mem::size_of::<(IpAddr, SourceState)>(),
            )
            + self.max_sources * source
    }
}

/// One packet as the detector sees it.
#[derive(Debug, Clone, Copy)]
pub struct PacketMeta {
    /// Seconds.
    pub ts: i64,
    /// Source.
    pub src: IpAddr,
    /// Destination.
    pub dst: IpAddr,
    /// IP protocol.
    pub proto: u8,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// TCP flags (0 otherwise).
    pub flags: u8,
    /// Bytes on the wire.
    pub len: u64,
}

/// The scan/flood detector.
#[derive(Debug)]
pub struct DdosDetector {
    cfg: DdosConfig,
    window_start: Option<i64>,
    dests: AddrMap<DestState>,
    sources: AddrMap<SourceState>,
    /// Counters.
    pub stats: DdosStats,
}

impl DdosDetector {
    /// A detector with these settings.
    pub fn new(cfg: DdosConfig) -> Self {
        Self {
            cfg,
            window_start: None,
            dests: AddrMap::default(),
            sources: AddrMap::default(),
            stats: DdosStats::default(),
        }
    }

    /// Tracked destinations now.
    pub fn tracked_destinations(&self) -> usize {
        self.dests.len()
    }

    /// Tracked scan sources now.
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// Estimated memory of the detector's tables, in bytes (a walk over every entry: for
    /// counters, not for every packet).
    pub fn heap_bytes(&self) -> usize {
        self.dests.heap_size() + self.sources.heap_size()
    }

    /// Accounts one packet; returns events of windows that ended and scans that were found.
    pub fn observe(&mut self, p: &PacketMeta, out: &mut Vec<DdosEvent>) {
        let window = self.cfg.window_secs.max(1);
        match self.window_start {
            None => self.window_start = Some(p.ts - p.ts.rem_euclid(window)),
            Some(start) if p.ts >= start + window => {
                self.close_window(out);
                self.window_start = Some(p.ts - p.ts.rem_euclid(window));
            }
            Some(_) => {}
        }
        let vector = match p.proto {
            6 if p.flags & tcp_flags::SYN != 0 && p.flags & tcp_flags::ACK == 0 => {
                Some(Vector::SynFlood)
            }
            17 => Some(Vector::reflection(p.sport).unwrap_or(Vector::UdpFlood)),
            1 | 58 => Some(Vector::IcmpFlood),
            _ => None,
        };
        if let Some(v) = vector {
            self.count_dest(p, v);
        }
        let probe =
            (p.proto == 6 && p.flags & tcp_flags::SYN != 0 && p.flags & tcp_flags::ACK == 0)
                || (p.proto == 17 && Vector::reflection(p.sport).is_none());
        if probe {
            self.count_scan(p, out);
        }
    }

    fn count_dest(&mut self, p: &PacketMeta, v: Vector) {
        if !self.dests.contains_key(&p.dst) && self.dests.len() >= self.cfg.max_destinations {
            self.stats.destinations_dropped += 1;
            return;
        }
        let counters = self.cfg.source_counters.max(1);
        let d = self.dests.entry(p.dst).or_default();
        let amount = if v.is_reflection() { p.len } else { 1 };
        d.counts[v.index()] += amount;
        d.packets += 1;
        d.bytes += p.len;
        d.idle_windows = 0;
        // Space-Saving: increment, or replace the smallest counter.
        if let Some(e) = d.sources.iter_mut().find(|(ip, _)| *ip == p.src) {
            e.1 += 1;
        } else if d.sources.len() < counters {
            d.sources.push((p.src, 1));
        } else if let Some(min) = d.sources.iter_mut().min_by_key(|(_, c)| *c) {
            *min = (p.src, min.1 + 1);
            self.stats.source_replacements += 1;
        }
        self.stats.peak_destinations = self.stats.peak_destinations.max(self.dests.len());
    }

    fn count_scan(&mut self, p: &PacketMeta, out: &mut Vec<DdosEvent>) {
        if !self.sources.contains_key(&p.src) && self.sources.len() >= self.cfg.max_sources {
            self.stats.sources_dropped += 1;
            return;
        }
        let hosts_needed = self.cfg.scan_hosts.max(2);
        let ports_needed = self.cfg.scan_ports.max(2);
        let s = self.sources.entry(p.src).or_default();
        if !s.hosts.contains(&p.dst) && s.hosts.len() < hosts_needed {
            s.hosts.push(p.dst);
        }
        if s.hosts.len() >= hosts_needed && !s.reported_h {
            s.reported_h = true;
            let mut ports: Vec<u16> = s.ports.values().flatten().copied().collect();
            ports.push(p.dport);
            ports.sort_unstable();
            ports.dedup();
            out.push(DdosEvent::Scan(ScanAlert {
                ts: p.ts,
                kind: ScanKind::Horizontal,
                source: p.src,
                target: p.dst,
                hosts: s.hosts.len(),
                ports,
            }));
        }
        // Ports per host, for a bounded number of hosts: when the map is full, hosts probed on
        // a single port (typical of a horizontal sweep) make room.
        if !s.ports.contains_key(&p.dst) && s.ports.len() >= MAX_PORT_HOSTS {
            s.ports.retain(|_, list| list.len() > 1);
        }
        if s.ports.contains_key(&p.dst) || s.ports.len() < MAX_PORT_HOSTS {
            let ports = s.ports.entry(p.dst).or_default();
            if !ports.contains(&p.dport) && ports.len() < ports_needed {
                ports.push(p.dport);
            }
            if ports.len() >= ports_needed && !s.reported_v.contains(&p.dst) {
                let mut list = ports.clone();
                list.sort_unstable();
                s.reported_v.push(p.dst);
                out.push(DdosEvent::Scan(ScanAlert {
                    ts: p.ts,
                    kind: ScanKind::Vertical,
                    source: p.src,
                    target: p.dst,
                    hosts: s.hosts.len(),
                    ports: list,
                }));
            }
        }
        self.stats.peak_sources = self.stats.peak_sources.max(self.sources.len());
    }

    fn threshold(&self, v: Vector) -> f64 {
        match v {
            Vector::SynFlood => self.cfg.syn_pps,
            Vector::UdpFlood => self.cfg.udp_pps,
            Vector::IcmpFlood => self.cfg.icmp_pps,
            _ => self.cfg.reflection_bps,
        }
    }

    /// Ends the current window: evaluates every destination and resets the counters.
    pub fn close_window(&mut self, out: &mut Vec<DdosEvent>) {
        let Some(start) = self.window_start else {
            return;
        };
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.heap_bytes());
        let secs = self.cfg.window_secs.max(1);
        let thresholds: Vec<f64> = Vector::ALL.iter().map(|v| self.threshold(*v)).collect();
        let (factor, alpha, top) = (
            self.cfg.baseline_factor,
            self.cfg.baseline_alpha,
            self.cfg.top_sources,
        );
        let mut evicted = 0u64;
        self.dests.retain(|victim, d| {
            let mut vectors = Vec::new();
            for v in Vector::ALL {
                let i = v.index();
                let rate = d.counts[i] as f64 / secs as f64;
                let base = d.baseline[i];
                let over_base = d.windows_seen == 0 || rate > factor * base;
                if rate >= thresholds[i] && over_base {
                    vectors.push((v, rate));
                }
                // Attack windows do not raise the baseline.
                if vectors.last().is_none_or(|(x, _)| *x != v) {
                    d.baseline[i] = if d.windows_seen == 0 {
                        rate
                    } else {
                        alpha * rate + (1.0 - alpha) * base
                    };
                }
            }
            if !vectors.is_empty() {
                let mut srcs = d.sources.clone();
                srcs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                srcs.truncate(top);
                out.push(DdosEvent::Flood(FloodAlert {
                    window_start: start,
                    window_secs: secs,
                    victim: *victim,
                    vectors,
                    top_sources: srcs,
                    packets: d.packets,
                    bytes: d.bytes,
                }));
            }
            let active = d.packets > 0;
            d.windows_seen = d.windows_seen.saturating_add(1);
            d.counts = [0; 8];
            d.packets = 0;
            d.bytes = 0;
            d.sources.clear();
            if !active {
                d.idle_windows += 1;
            }
            // A destination idle for a while with a flat baseline is forgotten.
            let keep = d.idle_windows < 6;
            if !keep {
                evicted += 1;
            }
            keep
        });
        self.stats.destinations_evicted += evicted;
        // Scan state is per window.
        self.sources.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn syn(ts: i64, src: IpAddr, dst: IpAddr, dport: u16) -> PacketMeta {
        PacketMeta {
            ts,
            src,
            dst,
            proto: 6,
            sport: 40000,
            dport,
            flags: tcp_flags::SYN,
            len: 60,
        }
    }

    #[test]
    fn vertical_scan_is_reported_once() {
        let mut d = DdosDetector::new(DdosConfig {
            scan_ports: 10,
            ..DdosConfig::default()
        });
        let mut out = Vec::new();
        for port in 1..=50 {
            d.observe(&syn(0, ip("10.0.0.1"), ip("10.0.0.2"), port), &mut out);
        }
        assert_eq!(out.len(), 1);
        let DdosEvent::Scan(s) = &out[0] else {
            panic!("scan expected")
        };
        assert_eq!(s.kind, ScanKind::Vertical);
        assert_eq!(s.ports.len(), 10);
    }

    #[test]
    fn state_is_bounded_by_the_configuration() {
        let cfg = DdosConfig {
            max_destinations: 64,
            max_sources: 64,
            scan_hosts: 8,
            scan_ports: 8,
            ..DdosConfig::default()
        };
        let bound = cfg.max_state_bytes();
        let mut d = DdosDetector::new(cfg);
        let mut out = Vec::new();
        // Every source probes many hosts on many ports: more of everything than the tables
        // take.
        for s in 0..200u32 {
            let src = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + s));
            for h in 0..100u32 {
                let dst = IpAddr::from(std::net::Ipv4Addr::from(0xc0a8_0000 + h));
                for port in 0..12 {
                    d.observe(&syn(0, src, dst, port), &mut out);
                }
            }
        }
        assert_eq!(d.tracked_sources(), 64);
        assert_eq!(d.tracked_destinations(), 64);
        let full = d.heap_bytes();
        assert!(full > 64 * 500 && full <= bound, "{full} > {bound}");
        // The scan table empties at the end of a window.
        d.close_window(&mut out);
        assert_eq!(d.stats.peak_bytes, full);
        assert!(d.heap_bytes() < full / 2, "{}", d.heap_bytes());
    }

    #[test]
    fn normal_rate_is_no_flood() {
        let mut d = DdosDetector::new(DdosConfig::default());
        let mut out = Vec::new();
        for t in 0..100 {
            d.observe(&syn(t, ip("10.0.0.1"), ip("10.0.0.2"), 80), &mut out);
        }
        d.close_window(&mut out);
        assert!(out.is_empty());
    }
}
