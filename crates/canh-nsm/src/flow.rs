//! Bidirectional flows: keys, counters, TCP state, timeouts and a bounded table.

use crate::decode::{MAX_VLANS, Timestamp, tcp_flags};
use crate::proto::heap::{ALLOC_OVERHEAD, HeapSize, alloc};
use crate::proto::{Direction, ProtocolParser, ProtocolState};
use crate::stream::{Chunk, Stream};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// Normalised flow key: the lower endpoint first, so both directions find the same flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
    proto: u8,
    vlans: [u16; MAX_VLANS],
    spi: u32,
}

impl FlowKey {
    /// Builds the key of an ESP packet: one flow per direction and SPI (a security
    /// association is one-way).
    pub fn esp(src: IpAddr, dst: IpAddr, spi: u32, vlans: [u16; MAX_VLANS]) -> Self {
        Self {
            lo: (src, 0),
            hi: (dst, 0),
            proto: 50,
            vlans,
            spi,
        }
    }

    /// Builds the key of a packet.
    pub fn new(
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
        proto: u8,
        vlans: [u16; MAX_VLANS],
    ) -> Self {
        let (a, b) = ((src, sport), (dst, dport));
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        Self {
            lo,
            hi,
            proto,
            vlans,
            spi: 0,
        }
    }
}

/// Flow state as EVE names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// Only one side seen (or TCP handshake not finished).
    New,
    /// Both sides seen / TCP established.
    Established,
    /// TCP closed (FIN both ways or RST).
    Closed,
}

impl FlowState {
    /// EVE spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Established => "established",
            Self::Closed => "closed",
        }
    }
}

/// TCP connection state (EVE `tcp.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// Nothing seen yet.
    None,
    /// SYN seen.
    SynSent,
    /// SYN/ACK seen.
    SynRecv,
    /// Handshake done.
    Established,
    /// One side sent FIN.
    FinWait1,
    /// The FIN was acknowledged.
    FinWait2,
    /// Both sides sent FIN.
    TimeWait,
    /// Both FINs acknowledged, or a reset.
    Closed,
}

impl TcpState {
    /// EVE spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::SynSent => "syn_sent",
            Self::SynRecv => "syn_recv",
            Self::Established => "established",
            Self::FinWait1 => "fin_wait1",
            Self::FinWait2 => "fin_wait2",
            Self::TimeWait => "time_wait",
            Self::Closed => "closed",
        }
    }
}

/// Application-layer state of a flow.
pub struct AppLayer {
    /// The detected protocol.
    pub proto: Option<&'static dyn ProtocolParser>,
    /// Its per-flow state.
    pub state: Option<Box<dyn ProtocolState>>,
    /// Detection gave up in this direction.
    pub detect_failed: [bool; 2],
    /// Bytes kept for detection or for an incomplete parse, per direction.
    pub pending: [Vec<u8>; 2],
    /// Parsing stopped in this direction (error or gap).
    pub stopped: [bool; 2],
    /// The protocol the flow started with, when it changed (HTTP CONNECT tunnel).
    pub orig: Option<&'static str>,
}

impl AppLayer {
    fn new() -> Self {
        Self {
            proto: None,
            state: None,
            detect_failed: [false; 2],
            pending: [Vec::new(), Vec::new()],
            stopped: [false; 2],
            orig: None,
        }
    }

    /// EVE `app_proto`: the protocol, `failed`, or nothing yet.
    pub fn eve_name(&self) -> Option<&'static str> {
        match self.proto {
            Some(p) => Some(p.app_proto()),
            None if self.detect_failed[0] || self.detect_failed[1] => Some("failed"),
            None => None,
        }
    }
}

/// One bidirectional flow.
pub struct Flow {
    /// EVE `flow_id`.
    pub id: u64,
    /// Client address (sender of the first packet, or of the SYN).
    pub client: (IpAddr, u16),
    /// Server address.
    pub server: (IpAddr, u16),
    /// IP protocol number.
    pub proto: u8,
    /// VLAN ids.
    pub vlans: [u16; MAX_VLANS],
    /// How many VLAN ids apply.
    pub vlan_count: u8,
    /// First packet time.
    pub start: Timestamp,
    /// Last packet time.
    pub end: Timestamp,
    /// Packets per direction.
    pub pkts: [u64; 2],
    /// Bytes per direction (whole captured frames, as Suricata counts them).
    pub bytes: [u64; 2],
    /// TCP flags seen per direction.
    pub tcp_flags: [u8; 2],
    /// TCP state.
    pub tcp_state: TcpState,
    /// FIN seen per direction.
    pub fin: [bool; 2],
    /// ICMP type/code of the first packet each way.
    pub icmp: [Option<(u8, u8)>; 2],
    /// TCP reassembly per direction.
    pub streams: [Stream; 2],
    /// Application layer.
    pub app: AppLayer,
    /// TCP session picked up without its handshake.
    pub midstream: bool,
    /// Community ID v1 of the flow.
    pub community_id: String,
    /// In-order stream data per direction not yet acknowledged by the peer, with its first
    /// sequence number. Like an IDS, the application layer sees data once it is acknowledged.
    pub held: [VecDeque<(u32, Chunk)>; 2],
    /// Bytes in `held`, per direction.
    pub held_bytes: [usize; 2],
    /// Application events logged for this flow.
    pub app_events: u64,
    /// Signature state (flowbits, alerted).
    pub detect: crate::rules::FlowDetect,
    /// MAC addresses seen on the client side and on the server side, first seen first
    /// (kept only when EVE logs Ethernet addresses).
    pub macs: [Vec<[u8; 6]>; 2],
    /// ESP security parameters index.
    pub spi: Option<u32>,
    /// Bytes the table counts for this flow (its fixed cost plus its heap when last counted).
    counted: usize,
}

/// Most MAC addresses remembered per side of a flow.
pub const MAX_FLOW_MACS: usize = 32;

impl Flow {
    /// Remembers the Ethernet addresses of a packet going `toserver` (or not).
    pub fn add_macs(&mut self, ether: &crate::decode::EtherAddrs, toserver: bool) {
        let (client, server) = if toserver {
            (ether.src, ether.dst)
        } else {
            (ether.dst, ether.src)
        };
        for (side, mac) in self.macs.iter_mut().zip([client, server]) {
            if side.len() < MAX_FLOW_MACS && !side.contains(&mac) {
                side.push(mac);
            }
        }
    }
}

impl Flow {
    /// Heap bytes the flow holds (an estimate): out-of-order segments, data waiting for its
    /// acknowledgement, bytes kept for protocol detection or an incomplete parse, the
    /// application parser's state, the Community ID, flowbits and Ethernet addresses.
    pub fn heap_bytes(&self) -> usize {
        let held: usize = self
            .held
            .iter()
            .zip(self.held_bytes)
            .map(|(q, bytes)| {
                alloc(q.capacity() * std::mem::size_of::<(u32, Chunk)>())
                    + bytes
                    + q.len() * ALLOC_OVERHEAD
            })
            .sum();
        let state = self
            .app
            .state
            .as_deref()
            .map_or(0, |s| alloc(std::mem::size_of_val(s)) + s.heap_bytes());
        self.streams.iter().map(Stream::heap_bytes).sum::<usize>()
            + held
            + self.app.pending.heap_size()
            + state
            + self.community_id.heap_size()
            + self.detect.bits.heap_size()
            + self.macs.heap_size()
    }

    /// Bytes the table counted for this flow when it last measured it.
    pub fn counted_bytes(&self) -> usize {
        self.counted
    }

    /// Flow state as EVE reports it.
    pub fn state(&self) -> FlowState {
        if self.proto == 6 {
            return match self.tcp_state {
                TcpState::None | TcpState::SynSent | TcpState::SynRecv => FlowState::New,
                TcpState::Closed => FlowState::Closed,
                _ => FlowState::Established,
            };
        }
        if self.pkts[0] > 0 && self.pkts[1] > 0 {
            FlowState::Established
        } else {
            FlowState::New
        }
    }

    /// Updates the TCP state machine with a segment's flags.
    pub fn update_tcp(&mut self, dir: Direction, flags: u8) {
        use tcp_flags::{ACK, FIN, RST, SYN};
        let i = dir.index();
        self.tcp_flags[i] |= flags;
        if flags & RST != 0 {
            if self.tcp_state != TcpState::None {
                self.tcp_state = TcpState::Closed;
            }
            return;
        }
        self.tcp_state = match (self.tcp_state, dir) {
            (TcpState::None, _) if flags & SYN != 0 && flags & ACK == 0 => TcpState::SynSent,
            (TcpState::None, _) if flags & SYN != 0 => TcpState::SynRecv,
            (TcpState::None, _) if self.midstream => TcpState::Established,
            (TcpState::SynSent, Direction::ToClient) if flags & SYN != 0 && flags & ACK != 0 => {
                TcpState::SynRecv
            }
            (TcpState::SynRecv, Direction::ToServer) if flags & ACK != 0 && flags & SYN == 0 => {
                TcpState::Established
            }
            (state, _) => state,
        };
        if flags & FIN != 0 && !self.fin[i] {
            self.fin[i] = true;
            self.tcp_state = match self.tcp_state {
                TcpState::Established | TcpState::SynRecv => TcpState::FinWait1,
                TcpState::FinWait1 | TcpState::FinWait2 => TcpState::TimeWait,
                other => other,
            };
        } else if flags & ACK != 0 {
            self.tcp_state = match self.tcp_state {
                TcpState::FinWait1 if !self.fin[i] => TcpState::FinWait2,
                TcpState::TimeWait if self.fin[0] && self.fin[1] => TcpState::Closed,
                other => other,
            };
        }
    }

    /// Turns the flow around: the side taken for the client is the server (a session picked
    /// up midstream whose first data turns out to be a reply). Per-direction state follows.
    pub fn swap_direction(&mut self) {
        std::mem::swap(&mut self.client, &mut self.server);
        self.pkts.swap(0, 1);
        self.bytes.swap(0, 1);
        self.tcp_flags.swap(0, 1);
        self.fin.swap(0, 1);
        self.icmp.swap(0, 1);
        self.streams.swap(0, 1);
        self.held.swap(0, 1);
        self.held_bytes.swap(0, 1);
        self.macs.swap(0, 1);
        self.app.pending.swap(0, 1);
        self.app.detect_failed.swap(0, 1);
        self.app.stopped.swap(0, 1);
    }

    /// Whether the flow has timed out at `now`: its last packet plus the timeout of its
    /// state is not later than `now` (microsecond precision, as Suricata 8).
    pub fn timed_out(&self, now: Timestamp, timeouts: &Timeouts) -> bool {
        let at = Timestamp {
            secs: self.end.secs.saturating_add(self.timeout(timeouts)),
            usecs: self.end.usecs,
        };
        now >= at
    }

    /// Timeout in seconds for the current state.
    pub fn timeout(&self, t: &Timeouts) -> i64 {
        match (self.proto, self.state()) {
            (6, FlowState::New) => t.tcp_new,
            (6, FlowState::Established) => t.tcp_established,
            (6, FlowState::Closed) => t.tcp_closed,
            (_, FlowState::New) => t.other_new,
            (_, _) => t.other_established,
        }
    }
}

/// Flow timeouts by state, in seconds (Suricata's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP before the handshake completes.
    pub tcp_new: i64,
    /// Established TCP.
    pub tcp_established: i64,
    /// Closed TCP.
    pub tcp_closed: i64,
    /// UDP/ICMP/other with one side seen.
    pub other_new: i64,
    /// UDP/ICMP/other with both sides seen.
    pub other_established: i64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp_new: 60,
            tcp_established: 600,
            tcp_closed: 60,
            other_new: 30,
            other_established: 300,
        }
    }
}

/// Why a flow left the table (EVE `flow.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Idle longer than its timeout.
    Timeout,
    /// Evicted because the table was full.
    Forced,
    /// End of input.
    Shutdown,
}

impl EndReason {
    /// EVE spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Forced => "forced",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Counters of the flow table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlowStats {
    /// Flows created.
    pub created: u64,
    /// Flows ended by timeout.
    pub timed_out: u64,
    /// Flows evicted because the table was full.
    pub evicted: u64,
    /// Largest number of live flows.
    pub peak: u64,
    /// Largest number of bytes counted for the live flows (see [`FlowTable`]).
    pub peak_bytes: u64,
}

/// The flow table, bounded by a memory budget in bytes.
///
/// Every flow is counted at [`FLOW_BASE_BYTES`] plus its [`Flow::heap_bytes`], measured when
/// it is inserted and again by [`FlowTable::recount`] after each of its packets (so the count
/// follows its buffers as they grow and shrink). When the total passes the budget,
/// [`FlowTable::pop_over_budget`] hands out the oldest flows for the caller to end (EVE
/// `flow.reason: forced`), never the flow being processed and never below [`MIN_FLOWS`].
pub struct FlowTable {
    /// Boxed: the hash table's buckets (a power of two, up to twice the live flows) then hold
    /// a pointer per flow instead of a whole flow.
    /// Hashed with foldhash's randomly seeded hasher: several times cheaper than SipHash on
    /// the small keys of every packet, and its seed keeps crafted addresses from colliding.
    flows: HashMap<FlowKey, Box<Flow>, foldhash::fast::RandomState>,
    order: VecDeque<(FlowKey, u64)>,
    memcap: usize,
    /// Bytes counted for the live flows.
    used: usize,
    next_id: u64,
    /// Counters.
    pub stats: FlowStats,
}

/// Fixed bytes a flow costs in the table, for the memory budget: the flow itself (streams and
/// application state inline) with its allocation, its hash-table bucket (key and pointer;
/// buckets are a power of two at most 7/8 full, so up to 16/7 of them per flow, with a control
/// byte each) and two places in the eviction queue (it keeps the places of flows that timed out
/// until they outnumber the live flows, and grows by doubling). What the flow holds on the heap
/// ([`Flow::heap_bytes`]) comes on top.
pub const FLOW_BASE_BYTES: usize = {
    let bucket = std::mem::size_of::<(FlowKey, Box<Flow>)>() + 1;
    std::mem::size_of::<Flow>()
        + ALLOC_OVERHEAD
        + bucket * 16 / 7
        + 2 * std::mem::size_of::<(FlowKey, u64)>()
};

/// Flows the table keeps whatever its budget.
pub const MIN_FLOWS: usize = 16;

// A flow growing past a few KiB inline would shrink the default table (128 MiB) below what a
// busy uplink needs: keep room for at least 32k flows.
const _: () = assert!((128usize << 20) / FLOW_BASE_BYTES >= 32_768);

impl FlowTable {
    /// A table whose flows may hold `memcap` bytes in all (at least [`MIN_FLOWS`] flows).
    pub fn new(memcap: usize) -> Self {
        Self {
            flows: HashMap::default(),
            order: VecDeque::new(),
            memcap,
            used: 0,
            next_id: 0,
            stats: FlowStats::default(),
        }
    }

    /// Bytes counted for the live flows.
    pub fn used_bytes(&self) -> usize {
        self.used
    }

    /// The budget.
    pub fn memcap(&self) -> usize {
        self.memcap
    }

    /// Live flows.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is live.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Finds a flow.
    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut Flow> {
        self.flows.get_mut(key).map(|f| &mut **f)
    }

    /// Inserts a new flow and counts it. The table may now be over its budget: the caller
    /// ends the flows [`FlowTable::pop_over_budget`] hands out.
    pub fn insert(&mut self, key: FlowKey, mut flow: Flow) {
        self.next_id += 1;
        flow.id = flow_id(self.next_id);
        flow.counted = FLOW_BASE_BYTES + flow.heap_bytes();
        self.used += flow.counted;
        self.order.push_back((key, flow.id));
        if let Some(old) = self.flows.insert(key, Box::new(flow)) {
            // Not done by the sensor (it looks the key up first); keep the count right.
            self.used -= old.counted;
        }
        self.compact_order();
        self.stats.created += 1;
        self.stats.peak = self.stats.peak.max(self.flows.len() as u64);
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.used as u64);
    }

    /// Measures the flow of `key` again (after a packet changed its buffers).
    pub fn recount(&mut self, key: &FlowKey) {
        let Some(flow) = self.flows.get_mut(key) else {
            return;
        };
        let now = FLOW_BASE_BYTES + flow.heap_bytes();
        self.used = self.used - flow.counted + now;
        flow.counted = now;
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.used as u64);
    }

    /// While the counted bytes pass the budget: removes and returns the oldest flow other than
    /// `keep` (counted as evicted), unless only [`MIN_FLOWS`] flows are left.
    pub fn pop_over_budget(&mut self, keep: &FlowKey) -> Option<Flow> {
        if self.used <= self.memcap || self.flows.len() <= MIN_FLOWS {
            return None;
        }
        let mut at = 0;
        while let Some(&(key, id)) = self.order.get(at) {
            let live = self.flows.get(&key).is_some_and(|f| f.id == id);
            if !live {
                // The place of a flow that already ended.
                self.order.remove(at);
                continue;
            }
            if key == *keep {
                at += 1;
                continue;
            }
            self.order.remove(at);
            let flow = self.remove(&key)?;
            self.stats.evicted += 1;
            return Some(flow);
        }
        None
    }

    fn remove(&mut self, key: &FlowKey) -> Option<Flow> {
        let flow = self.flows.remove(key)?;
        self.used -= flow.counted;
        Some(*flow)
    }

    /// Removes the flow of `key` if it timed out at `now`, and returns it.
    pub fn take_timed_out(
        &mut self,
        key: &FlowKey,
        now: Timestamp,
        timeouts: &Timeouts,
    ) -> Option<Flow> {
        if !self.flows.get(key)?.timed_out(now, timeouts) {
            return None;
        }
        self.stats.timed_out += 1;
        let flow = self.remove(key);
        self.compact_order();
        flow
    }

    /// Removes flows idle longer than their timeout at `now` (boxed, as they were: a flood's
    /// flows may time out by the hundred thousand at once).
    pub fn expire(&mut self, now: Timestamp, timeouts: &Timeouts) -> Vec<Box<Flow>> {
        let expired: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| f.timed_out(now, timeouts))
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::with_capacity(expired.len());
        for key in expired {
            if let Some(f) = self.flows.remove(&key) {
                self.used -= f.counted;
                out.push(f);
            }
        }
        self.stats.timed_out += out.len() as u64;
        self.compact_order();
        out
    }

    /// Flows that ended by timeout leave their place in the eviction queue behind; those
    /// places are dropped once they outnumber the live flows, so that a table that never fills
    /// up (a long live capture) does not grow its queue for ever.
    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.flows.len() + 1024 {
            let flows = &self.flows;
            self.order
                .retain(|(k, id)| flows.get(k).is_some_and(|f| f.id == *id));
        }
    }

    /// Removes every flow, oldest first. The flows stay boxed: moving them out into one
    /// vector would hold every flow twice at the end of a run (the freed boxes cannot all be
    /// handed back to the system).
    pub fn drain_all(&mut self) -> Vec<Box<Flow>> {
        let mut out: Vec<Box<Flow>> = self.flows.drain().map(|(_, f)| f).collect();
        out.sort_by_key(|f| (f.start, f.id));
        self.order.clear();
        self.used = 0;
        out
    }
}

/// Spreads a counter over 64 bits (splitmix64) so ids look like Suricata's hashed ids but stay
/// deterministic for a given capture; kept below 2^53 so JSON readers keep them exact.
fn flow_id(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) & ((1 << 53) - 1)
}

/// Builds a fresh flow.
pub fn new_flow(
    client: (IpAddr, u16),
    server: (IpAddr, u16),
    proto: u8,
    vlans: &[u16],
    ts: Timestamp,
    max_stream_buffer: usize,
) -> Flow {
    let mut v = [0u16; MAX_VLANS];
    for (slot, id) in v.iter_mut().zip(vlans) {
        *slot = *id;
    }
    Flow {
        id: 0,
        client,
        server,
        proto,
        vlans: v,
        vlan_count: vlans.len().min(MAX_VLANS) as u8,
        start: ts,
        end: ts,
        pkts: [0; 2],
        bytes: [0; 2],
        tcp_flags: [0; 2],
        tcp_state: TcpState::None,
        fin: [false; 2],
        icmp: [None; 2],
        streams: [
            Stream::new(max_stream_buffer),
            Stream::new(max_stream_buffer),
        ],
        app: AppLayer::new(),
        midstream: false,
        community_id: String::new(),
        held: [VecDeque::new(), VecDeque::new()],
        held_bytes: [0; 2],
        app_events: 0,
        detect: crate::rules::FlowDetect::default(),
        macs: [Vec::new(), Vec::new()],
        spi: None,
        counted: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    #[test]
    fn esp_keys_are_one_way_and_per_spi() {
        let a = FlowKey::esp(ip(1), ip(2), 123, [0; MAX_VLANS]);
        assert_ne!(a, FlowKey::esp(ip(2), ip(1), 123, [0; MAX_VLANS]));
        assert_ne!(a, FlowKey::esp(ip(1), ip(2), 321, [0; MAX_VLANS]));
        assert_eq!(a, FlowKey::esp(ip(1), ip(2), 123, [0; MAX_VLANS]));
    }

    #[test]
    fn swapping_a_flow_turns_its_counters_around() {
        let mut f = new_flow(
            (ip(2), 80),
            (ip(1), 38498),
            6,
            &[],
            Timestamp::default(),
            1024,
        );
        f.pkts = [2, 0];
        f.bytes = [388, 0];
        f.tcp_flags = [0x18, 0];
        f.add_macs(
            &crate::decode::EtherAddrs {
                src: [2; 6],
                dst: [1; 6],
                ether_type: 0x0800,
            },
            true,
        );
        f.swap_direction();
        assert_eq!(f.client, (ip(1), 38498));
        assert_eq!(f.server, (ip(2), 80));
        assert_eq!(f.pkts, [0, 2]);
        assert_eq!(f.bytes, [0, 388]);
        assert_eq!(f.tcp_flags, [0, 0x18]);
        assert_eq!(f.macs, [vec![[1; 6]], vec![[2; 6]]]);
    }

    #[test]
    fn timeouts_count_microseconds() {
        let mut table = FlowTable::new(1 << 20);
        let key = FlowKey::new(ip(1), 5, ip(2), 53, 17, [0; MAX_VLANS]);
        let mut f = new_flow(
            (ip(1), 5),
            (ip(2), 53),
            17,
            &[],
            Timestamp::new(70, 53_134),
            1024,
        );
        f.pkts = [1, 0];
        table.insert(key, f);
        let t = Timeouts::default();
        // 30 s for a one-sided UDP flow: not yet at 100.053133, gone at 100.053134.
        assert!(
            table
                .take_timed_out(&key, Timestamp::new(100, 53_133), &t)
                .is_none()
        );
        assert!(
            table
                .take_timed_out(&key, Timestamp::new(100, 53_134), &t)
                .is_some()
        );
        assert!(table.is_empty());
        assert_eq!(table.stats.timed_out, 1);
    }

    #[test]
    fn both_directions_share_a_key() {
        let a = FlowKey::new(ip(1), 1000, ip(2), 80, 6, [0; MAX_VLANS]);
        let b = FlowKey::new(ip(2), 80, ip(1), 1000, 6, [0; MAX_VLANS]);
        assert_eq!(a, b);
    }

    #[test]
    fn tcp_handshake_and_close_move_the_state() {
        use tcp_flags::*;
        let mut f = new_flow((ip(1), 1), (ip(2), 2), 6, &[], Timestamp::default(), 1024);
        f.update_tcp(Direction::ToServer, SYN);
        assert_eq!(f.state(), FlowState::New);
        f.update_tcp(Direction::ToClient, SYN | ACK);
        f.update_tcp(Direction::ToServer, ACK);
        assert_eq!(f.tcp_state, TcpState::Established);
        f.update_tcp(Direction::ToServer, FIN | ACK);
        f.update_tcp(Direction::ToClient, FIN | ACK);
        f.update_tcp(Direction::ToServer, ACK);
        assert_eq!(f.tcp_state, TcpState::Closed);
        assert_eq!(f.state(), FlowState::Closed);
    }

    #[test]
    fn full_table_evicts_the_oldest_flow() {
        let mut t = FlowTable::new(0); // minimum of 16 flows
        for n in 0..20u16 {
            let key = FlowKey::new(ip(1), n, ip(2), 53, 17, [0; MAX_VLANS]);
            let f = new_flow((ip(1), n), (ip(2), 53), 17, &[], Timestamp::default(), 16);
            t.insert(key, f);
            let evicted = t.pop_over_budget(&key);
            assert_eq!(evicted.is_some(), n >= 16);
            if let Some(e) = evicted {
                assert_eq!(e.client.1, n - 16);
            }
            assert!(t.pop_over_budget(&key).is_none());
        }
        assert_eq!(t.len(), 16);
        assert_eq!(t.stats.evicted, 4);
        assert_eq!(t.used_bytes(), 16 * FLOW_BASE_BYTES);
    }

    fn udp_flow(t: &mut FlowTable, port: u16) -> FlowKey {
        let key = FlowKey::new(ip(1), port, ip(2), 53, 17, [0; MAX_VLANS]);
        let f = new_flow(
            (ip(1), port),
            (ip(2), 53),
            17,
            &[],
            Timestamp::default(),
            1 << 16,
        );
        t.insert(key, f);
        key
    }

    #[test]
    fn counted_bytes_rise_with_buffered_data_and_fall_when_it_is_released() {
        let mut t = FlowTable::new(1 << 30);
        let key = udp_flow(&mut t, 1);
        let base = t.used_bytes();
        assert_eq!(base, FLOW_BASE_BYTES);
        let f = t.get_mut(&key).unwrap();
        // Data waiting for its acknowledgement, bytes kept for detection, out of order data.
        f.held[0].push_back((0, Chunk::Data(vec![1; 20_000])));
        f.held_bytes[0] += 20_000;
        f.app.pending[1].extend_from_slice(&[2; 3_000]);
        f.streams[1].set_start(0);
        f.streams[1].add(500, &[3; 7_000], &mut Vec::new());
        t.recount(&key);
        let grown = t.used_bytes() - base;
        assert!((30_000..32_000).contains(&grown), "{grown}");
        assert_eq!(t.get_mut(&key).unwrap().counted_bytes(), t.used_bytes());
        assert!(t.stats.peak_bytes >= t.used_bytes() as u64);
        // Released: the acknowledged data and the detection buffer go.
        let f = t.get_mut(&key).unwrap();
        f.held[0].clear();
        f.held_bytes[0] = 0;
        f.app.pending[1] = Vec::new();
        t.recount(&key);
        let left = t.used_bytes() - base;
        assert!((7_000..8_000).contains(&left), "{left}");
        // The flow leaves: nothing stays counted.
        t.take_timed_out(&key, Timestamp::new(1_000_000, 0), &Timeouts::default());
        assert_eq!(t.used_bytes(), 0);
    }

    #[test]
    fn table_evicts_oldest_flows_when_counted_bytes_pass_the_budget() {
        let budget = 40 * FLOW_BASE_BYTES;
        let mut t = FlowTable::new(budget);
        let keys: Vec<FlowKey> = (0..30).map(|n| udp_flow(&mut t, n)).collect();
        assert!(
            t.pop_over_budget(&keys[29]).is_none(),
            "under budget by flow count"
        );
        // The newest flow buffers the room of about 20 flows: the oldest ones make room.
        let f = t.get_mut(&keys[29]).unwrap();
        f.app.pending[0] = vec![0; 20 * FLOW_BASE_BYTES];
        t.recount(&keys[29]);
        let mut evicted = Vec::new();
        while let Some(f) = t.pop_over_budget(&keys[29]) {
            evicted.push(f.client.1);
        }
        assert!(t.used_bytes() <= budget, "{} > {budget}", t.used_bytes());
        assert!(evicted.len() >= 10 && evicted.len() <= 12, "{evicted:?}");
        let oldest: Vec<u16> = (0..evicted.len() as u16).collect();
        assert_eq!(evicted, oldest);
        assert_eq!(t.stats.evicted, evicted.len() as u64);
        assert!(t.get_mut(&keys[29]).is_some(), "the busy flow stays");
    }

    #[test]
    fn the_flow_being_processed_is_never_evicted() {
        let mut t = FlowTable::new(0);
        let keys: Vec<FlowKey> = (0..20).map(|n| udp_flow(&mut t, n)).collect();
        // The oldest flow is the busy one: the next oldest go instead.
        let mut evicted = Vec::new();
        while let Some(f) = t.pop_over_budget(&keys[0]) {
            evicted.push(f.client.1);
        }
        assert_eq!(evicted, vec![1, 2, 3, 4]);
        assert_eq!(t.len(), MIN_FLOWS);
        assert!(t.get_mut(&keys[0]).is_some());
    }

    #[test]
    fn idle_flows_time_out_by_state() {
        let mut t = FlowTable::new(1 << 20);
        let key = FlowKey::new(ip(1), 5, ip(2), 53, 17, [0; MAX_VLANS]);
        t.insert(
            key,
            new_flow((ip(1), 5), (ip(2), 53), 17, &[], Timestamp::new(100, 0), 16),
        );
        assert!(
            t.expire(Timestamp::new(120, 0), &Timeouts::default())
                .is_empty()
        );
        assert_eq!(
            t.expire(Timestamp::new(131, 0), &Timeouts::default()).len(),
            1
        );
        assert_eq!(t.stats.timed_out, 1);
    }

    #[test]
    fn the_eviction_queue_stays_bounded_when_flows_only_time_out() {
        let mut t = FlowTable::new(1 << 30);
        for n in 0..100_000u32 {
            let port = (n % 60_000) as u16;
            let key = FlowKey::new(ip(1), port, ip(2), 53, 17, [0; MAX_VLANS]);
            let at = Timestamp::new(i64::from(n), 0);
            t.insert(key, new_flow((ip(1), port), (ip(2), 53), 17, &[], at, 16));
            t.expire(at, &Timeouts::default());
        }
        assert!(t.len() <= 31, "{}", t.len());
        assert!(t.order.len() <= 2 * t.len() + 1025, "{}", t.order.len());
        // Eviction still finds the oldest live flow.
        let mut small = FlowTable::new(0);
        for n in 0..40u16 {
            let key = FlowKey::new(ip(3), n, ip(4), 53, 17, [0; MAX_VLANS]);
            let at = Timestamp::new(i64::from(n) * 100, 0);
            small.insert(key, new_flow((ip(3), n), (ip(4), 53), 17, &[], at, 16));
            while small.pop_over_budget(&key).is_some() {}
        }
        assert_eq!(small.len(), 16);
    }
}
