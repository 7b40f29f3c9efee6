//! Detection: prefilter (Aho-Corasick over fast patterns), rule evaluation, flowbits,
//! thresholds.

use super::buffers::{AppData, AppProto, Buf, fill};
use super::compile::{
    FlowbitOp, Group, PacketTests, Rule, RuleProto, ThresholdKind, Track, Transform,
};
use super::header::{AddrIndex, AddrIndexBuilder};
use super::matcher::inspect;
use crate::proto::Direction;
use aho_corasick::{AhoCorasick, AhoCorasickKind};
use std::collections::HashMap;
use std::net::IpAddr;

/// Threshold entries kept at most (oldest windows are dropped first).
const MAX_THRESHOLD_ENTRIES: usize = 65_536;

/// Per-flow detection state.
#[derive(Debug, Default, Clone)]
pub struct FlowDetect {
    /// Flowbits set on the flow (interned ids).
    pub bits: Vec<u32>,
    /// At least one alert fired on the flow.
    pub alerted: bool,
}

/// One packet as rules see it.
#[derive(Debug, Clone, Copy)]
pub struct PacketInfo<'a> {
    /// Capture time, seconds.
    pub ts_secs: i64,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 without ports).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// Direction in the flow.
    pub dir: Direction,
    /// The flow is established.
    pub established: bool,
    /// First packet of this direction.
    pub first_in_dir: bool,
    /// Transport payload.
    pub payload: &'a [u8],
    /// Whether content rules look at the payload (false once the session is encrypted, see
    /// `SensorConfig::inspect_encrypted`); header tests such as `dsize` still apply.
    pub inspect_payload: bool,
    /// TCP flags.
    pub tcp_flags: Option<u8>,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
    /// Detected application protocol of the flow.
    pub app: Option<AppProto>,
}

/// Flow endpoints for application events.
#[derive(Debug, Clone, Copy)]
pub struct FlowInfo {
    /// Capture time, seconds.
    pub ts_secs: i64,
    /// Initiator.
    pub client: (IpAddr, u16),
    /// Responder.
    pub server: (IpAddr, u16),
    /// The flow is established.
    pub established: bool,
}

/// A fired rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    /// Index of the rule in the set.
    pub rule: u32,
    /// Direction of the matching data.
    pub dir: Direction,
}

/// Fast patterns (borrowed from their rules) with the index of their rule.
type Patterns<'a> = Vec<(&'a [u8], u32)>;

/// One automaton over the distinct fast patterns of a group of rules. Rules often share a
/// fast pattern (dozens of SMB rules start from `|FF|SMB`); each distinct pattern is in the
/// automaton once, so an occurrence is one match, not one per rule.
#[derive(Debug, Default)]
struct Prefilter {
    matcher: Option<Literals>,
    /// Rules of pattern `p`: `owners[starts[p]..starts[p + 1]]`.
    starts: Vec<u32>,
    owners: Vec<u32>,
}

/// The automaton over one prefilter's literals (lower-cased, each once).
enum Literals {
    /// A double-array Aho-Corasick automaton walked over a lower-cased copy of the buffer:
    /// about a fifth of the memory of a contiguous NFA and two to four times its speed over
    /// ET Open's packet patterns (see BENCHMARKS.md).
    Double(daachorse::DoubleArrayAhoCorasick<u32>),
    /// The case-insensitive NFA, kept for sets the double array cannot hold.
    Nfa(AhoCorasick),
}

impl std::fmt::Debug for Literals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Literals::Double(d) => write!(f, "Double({} states)", d.num_states()),
            Literals::Nfa(a) => write!(f, "Nfa({} patterns)", a.patterns_len()),
        }
    }
}

impl Prefilter {
    fn build(pats: Patterns<'_>) -> Self {
        if pats.is_empty() {
            return Self::default();
        }
        // Matching ignores ASCII case, so patterns differing only in case are one.
        let mut by_pattern: HashMap<Vec<u8>, Vec<u32>> = HashMap::new();
        let mut order: Vec<Vec<u8>> = Vec::new();
        for (p, r) in pats {
            if p.is_empty() {
                continue;
            }
            let key = p.to_ascii_lowercase();
            let rules = by_pattern.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                Vec::new()
            });
            rules.push(r);
        }
        let mut starts = Vec::with_capacity(order.len() + 1);
        let mut owners = Vec::new();
        for key in &order {
            starts.push(owners.len() as u32);
            if let Some(rules) = by_pattern.get(key) {
                owners.extend_from_slice(rules);
            }
        }
        starts.push(owners.len() as u32);
        if order.is_empty() {
            return Self::default();
        }
        let matcher = match daachorse::DoubleArrayAhoCorasick::<u32>::new(&order) {
            Ok(d) => Some(Literals::Double(d)),
            Err(e) => {
                tracing::debug!(error = %e, "double-array automaton refused; using an NFA");
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .kind(Some(AhoCorasickKind::ContiguousNFA))
                    .build(&order)
                    .ok()
                    .map(Literals::Nfa)
            }
        };
        Self {
            matcher,
            starts,
            owners,
        }
    }

    fn candidates(&self, hay: &[u8], out: &mut Candidates) {
        let Some(matcher) = &self.matcher else { return };
        let mut lower = std::mem::take(&mut out.lowered);
        let mut add = |p: usize| {
            let (Some(&from), Some(&to)) = (self.starts.get(p), self.starts.get(p + 1)) else {
                return;
            };
            if let Some(rules) = self.owners.get(from as usize..to as usize) {
                out.extend(rules);
            }
        };
        match matcher {
            Literals::Double(d) => {
                lower.clear();
                lower.extend(hay.iter().map(u8::to_ascii_lowercase));
                for m in d.find_overlapping_iter(&lower) {
                    add(m.value() as usize);
                }
            }
            Literals::Nfa(ac) => {
                for m in ac.find_overlapping_iter(hay) {
                    add(m.pattern().as_usize());
                }
            }
        }
        out.lowered = lower;
    }
}

#[derive(Debug, Default)]
struct AppIndex {
    prefilters: Vec<(Buf, Prefilter)>,
    always: Vec<u32>,
}

#[derive(Debug, Clone, Copy)]
struct ThresholdEntry {
    start: i64,
    count: u64,
    fired: u64,
}

/// Mutable detection state shared by all flows (thresholds, scratch buffers).
#[derive(Debug, Default)]
pub struct DetectState {
    thresholds: HashMap<(u32, Option<IpAddr>, Option<IpAddr>), ThresholdEntry>,
    /// Threshold entries dropped because the table was full.
    pub threshold_evictions: u64,
    candidates: Candidates,
    scratch: Vec<u8>,
    transformed: Vec<u8>,
}

/// The rules one packet or event may match, each once.
#[derive(Debug, Default)]
struct Candidates {
    list: Vec<u32>,
    /// `seen[rule] == epoch` when the rule is already in `list`.
    seen: Vec<u32>,
    epoch: u32,
    /// A lower-cased copy of the buffer being scanned.
    lowered: Vec<u8>,
}

impl Candidates {
    fn begin(&mut self, rules: usize) {
        self.list.clear();
        if self.seen.len() < rules {
            self.seen.resize(rules, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.seen.fill(0);
            self.epoch = 1;
        }
    }

    fn push(&mut self, rule: u32) {
        if let Some(s) = self.seen.get_mut(rule as usize)
            && *s != self.epoch
        {
            *s = self.epoch;
            self.list.push(rule);
        }
    }

    fn extend(&mut self, rules: &[u32]) {
        for &r in rules {
            self.push(r);
        }
    }

    /// Rule order (flowbit setters first) decides evaluation order.
    fn finish(&mut self) {
        self.list.sort_unstable();
    }
}

/// Compiled rules ready for matching.
#[derive(Debug, Default)]
pub struct Engine {
    /// Rules, flowbit setters first.
    pub rules: Vec<Rule>,
    bits: Vec<Vec<BitOp>>,
    /// Payload prefilters by [`packet_slot`]: a packet is scanned only for the patterns of
    /// rules that can match its protocol and direction.
    packet: [Prefilter; PACKET_SLOTS],
    packet_always: Vec<u32>,
    ip_only: Vec<u32>,
    ip_by_src: AddrIndex,
    ip_by_dst: AddrIndex,
    pkt_by_src: AddrIndex,
    pkt_by_dst: AddrIndex,
    apps: [AppIndex; 3],
}

#[derive(Debug, Clone)]
enum BitOp {
    Set(Vec<u32>),
    Unset(Vec<u32>),
    Toggle(Vec<u32>),
    IsSet(Vec<u32>, bool),
    IsNotSet(Vec<u32>, bool),
}

fn app_slot(a: AppProto) -> usize {
    match a {
        AppProto::Http => 0,
        AppProto::Dns => 1,
        AppProto::Tls => 2,
    }
}

impl Engine {
    /// Builds the engine.
    pub fn new(mut rules: Vec<Rule>) -> Self {
        // Flowbit checkers after the setters, each part in load order (a stable partition
        // that only moves the checkers, without a scratch copy of the whole list).
        let checkers: Vec<Rule> = rules
            .extract_if(.., |r| {
                r.flowbits
                    .iter()
                    .any(|op| matches!(op, FlowbitOp::IsSet(..) | FlowbitOp::IsNotSet(..)))
            })
            .collect();
        rules.extend(checkers);
        let mut names: HashMap<String, u32> = HashMap::new();
        let mut intern = |list: &[String]| -> Vec<u32> {
            list.iter()
                .map(|n| {
                    let next = names.len() as u32;
                    *names.entry(n.clone()).or_insert(next)
                })
                .collect()
        };
        let mut bits = Vec::with_capacity(rules.len());
        for r in &rules {
            let ops = r
                .flowbits
                .iter()
                .map(|op| match op {
                    FlowbitOp::Set(l) => BitOp::Set(intern(l)),
                    FlowbitOp::Unset(l) => BitOp::Unset(intern(l)),
                    FlowbitOp::Toggle(l) => BitOp::Toggle(intern(l)),
                    FlowbitOp::IsSet(l, or) => BitOp::IsSet(intern(l), *or),
                    FlowbitOp::IsNotSet(l, or) => BitOp::IsNotSet(intern(l), *or),
                })
                .collect();
            bits.push(ops);
        }
        let mut packet_pats: [Patterns; PACKET_SLOTS] = Default::default();
        let mut packet_always = Vec::new();
        let mut ip_only = Vec::new();
        let mut ip_by_src = AddrIndexBuilder::default();
        let mut ip_by_dst = AddrIndexBuilder::default();
        let mut pkt_by_src = AddrIndexBuilder::default();
        let mut pkt_by_dst = AddrIndexBuilder::default();
        let mut app_pats: [HashMap<Buf, Patterns>; 3] = Default::default();
        let mut apps: [AppIndex; 3] = Default::default();
        for (i, r) in rules.iter().enumerate() {
            let i = i as u32;
            if r.is_app() {
                let slot = match r.proto {
                    RuleProto::App(a) => app_slot(a),
                    _ => continue,
                };
                match r.fast_pattern() {
                    Some((buf, pat)) => app_pats[slot].entry(buf).or_default().push((pat, i)),
                    None => apps[slot].always.push(i),
                }
            } else if r.is_ip_only() {
                // Address lists are indexed (by the narrower side) so that a new flow looks
                // up only the rules naming its own addresses.
                match index_side(r) {
                    Some(Side::Src) => ip_by_src.add(&r.src, i),
                    Some(Side::Dst) => ip_by_dst.add(&r.dst, i),
                    None => ip_only.push(i),
                }
            } else {
                match r.fast_pattern() {
                    Some((Buf::Payload, pat)) => {
                        for slot in rule_slots(r) {
                            packet_pats[slot].push((pat, i));
                        }
                    }
                    // Rules without a payload pattern but with an address list (reputation
                    // rules with flags/flowbits) are looked up by address.
                    _ => match index_side(r) {
                        Some(Side::Src) => pkt_by_src.add(&r.src, i),
                        Some(Side::Dst) => pkt_by_dst.add(&r.dst, i),
                        None => packet_always.push(i),
                    },
                }
            }
        }
        for (slot, pats) in app_pats.into_iter().enumerate() {
            let mut list: Vec<(Buf, Patterns)> = pats.into_iter().collect();
            list.sort_by_key(|(_, p)| p.first().map_or(0, |x| x.1));
            apps[slot].prefilters = list
                .into_iter()
                .map(|(b, p)| (b, Prefilter::build(p)))
                .collect();
        }
        let packet = packet_pats.map(Prefilter::build);
        Self {
            rules,
            bits,
            packet,
            packet_always,
            ip_only,
            ip_by_src: ip_by_src.build(),
            ip_by_dst: ip_by_dst.build(),
            pkt_by_src: pkt_by_src.build(),
            pkt_by_dst: pkt_by_dst.build(),
            apps,
        }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Evaluates packet rules on one packet.
    pub fn match_packet(
        &self,
        st: &mut DetectState,
        pkt: &PacketInfo<'_>,
        flow: &mut FlowDetect,
        out: &mut Vec<Alert>,
    ) {
        let mut cands = std::mem::take(&mut st.candidates);
        cands.begin(self.rules.len());
        if pkt.first_in_dir {
            cands.extend(&self.ip_only);
            cands.extend(self.ip_by_src.get(pkt.src));
            cands.extend(self.ip_by_dst.get(pkt.dst));
        }
        if pkt.inspect_payload
            && !pkt.payload.is_empty()
            && let Some(pf) = self.packet.get(packet_slot(pkt.proto, pkt.dir))
        {
            pf.candidates(pkt.payload, &mut cands);
        }
        cands.extend(self.pkt_by_src.get(pkt.src));
        cands.extend(self.pkt_by_dst.get(pkt.dst));
        cands.extend(&self.packet_always);
        cands.finish();
        for &ri in &cands.list {
            let Some(rule) = self.rules.get(ri as usize) else {
                continue;
            };
            if !self.packet_header(rule, pkt) {
                continue;
            }
            if !self.bits_ok(ri, flow) {
                continue;
            }
            let groups_ok = (pkt.inspect_payload || rule.groups.is_empty())
                && rule.groups.iter().all(|g| {
                    g.buf == Buf::Payload && group_matches(g, pkt.payload, &mut st.transformed)
                });
            if !groups_ok {
                continue;
            }
            self.fire(st, ri, pkt.ts_secs, pkt.src, pkt.dst, pkt.dir, flow, out);
        }
        st.candidates = cands;
    }

    fn packet_header(&self, rule: &Rule, pkt: &PacketInfo<'_>) -> bool {
        let proto_ok = match rule.proto {
            RuleProto::Ip => true,
            RuleProto::Tcp => pkt.proto == 6,
            RuleProto::Udp => pkt.proto == 17,
            RuleProto::Icmp => pkt.proto == 1 || pkt.proto == 58,
            RuleProto::App(a) => pkt.app == Some(a),
        };
        if !proto_ok || !flow_ok(rule, pkt.dir, pkt.established) {
            return false;
        }
        if let Some(tests) = rule.packet.as_deref()
            && !packet_tests_ok(tests, pkt)
        {
            return false;
        }
        // Address groups last: they are the most expensive header test.
        header_ok(rule, (pkt.src, pkt.sport), (pkt.dst, pkt.dport))
    }

    /// Evaluates application rules on one application event.
    pub fn match_app(
        &self,
        st: &mut DetectState,
        data: &AppData<'_>,
        flow_info: &FlowInfo,
        flow: &mut FlowDetect,
        out: &mut Vec<Alert>,
    ) {
        let idx = &self.apps[app_slot(data.proto)];
        let mut cands = std::mem::take(&mut st.candidates);
        cands.begin(self.rules.len());
        for (buf, pf) in &idx.prefilters {
            if fill(*buf, data, &mut st.scratch) {
                pf.candidates(&st.scratch, &mut cands);
            }
        }
        cands.extend(&idx.always);
        cands.finish();
        for &ri in &cands.list {
            let Some(rule) = self.rules.get(ri as usize) else {
                continue;
            };
            if rule.proto != RuleProto::App(data.proto) {
                continue;
            }
            let dir = rule
                .groups
                .iter()
                .find_map(|g| g.buf.direction())
                .or(rule.flow.direction)
                .or(data.direction)
                .unwrap_or(Direction::ToServer);
            if data.direction.is_some_and(|d| d != dir) && data.proto != AppProto::Http {
                continue;
            }
            if !flow_ok(rule, dir, flow_info.established) {
                continue;
            }
            let (src, dst) = match dir {
                Direction::ToServer => (flow_info.client, flow_info.server),
                Direction::ToClient => (flow_info.server, flow_info.client),
            };
            if !header_ok(rule, src, dst) || !self.bits_ok(ri, flow) {
                continue;
            }
            let ok = rule.groups.iter().all(|g| {
                fill(g.buf, data, &mut st.scratch)
                    && group_matches(g, &st.scratch, &mut st.transformed)
            });
            if !ok {
                continue;
            }
            self.fire(st, ri, flow_info.ts_secs, src.0, dst.0, dir, flow, out);
        }
        st.candidates = cands;
    }

    fn bits_ok(&self, ri: u32, flow: &FlowDetect) -> bool {
        let Some(ops) = self.bits.get(ri as usize) else {
            return true;
        };
        ops.iter().all(|op| match op {
            BitOp::IsSet(l, true) => l.iter().any(|b| flow.bits.contains(b)),
            BitOp::IsSet(l, false) => l.iter().all(|b| flow.bits.contains(b)),
            BitOp::IsNotSet(l, true) => l.iter().any(|b| !flow.bits.contains(b)),
            BitOp::IsNotSet(l, false) => l.iter().all(|b| !flow.bits.contains(b)),
            _ => true,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn fire(
        &self,
        st: &mut DetectState,
        ri: u32,
        ts: i64,
        src: IpAddr,
        dst: IpAddr,
        dir: Direction,
        flow: &mut FlowDetect,
        out: &mut Vec<Alert>,
    ) {
        if let Some(ops) = self.bits.get(ri as usize) {
            for op in ops {
                match op {
                    BitOp::Set(l) => {
                        for b in l {
                            if !flow.bits.contains(b) {
                                flow.bits.push(*b);
                            }
                        }
                    }
                    BitOp::Unset(l) => flow.bits.retain(|b| !l.contains(b)),
                    BitOp::Toggle(l) => {
                        for b in l {
                            if let Some(p) = flow.bits.iter().position(|x| x == b) {
                                flow.bits.swap_remove(p);
                            } else {
                                flow.bits.push(*b);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let Some(rule) = self.rules.get(ri as usize) else {
            return;
        };
        if rule.noalert {
            return;
        }
        if let Some(t) = rule.threshold
            && !st.threshold_pass(ri, t, ts, src, dst)
        {
            return;
        }
        flow.alerted = true;
        out.push(Alert { rule: ri, dir });
    }
}

impl DetectState {
    fn threshold_pass(
        &mut self,
        ri: u32,
        t: super::compile::Threshold,
        ts: i64,
        src: IpAddr,
        dst: IpAddr,
    ) -> bool {
        let key = match t.track {
            Track::BySrc => (ri, Some(src), None),
            Track::ByDst => (ri, None, Some(dst)),
            Track::ByBoth => (ri, Some(src), Some(dst)),
            Track::ByRule => (ri, None, None),
        };
        if self.thresholds.len() >= MAX_THRESHOLD_ENTRIES && !self.thresholds.contains_key(&key) {
            let before = self.thresholds.len();
            // Drop windows that ended more than an hour ago, else everything.
            self.thresholds.retain(|_, e| ts - e.start < 3600);
            if self.thresholds.len() >= MAX_THRESHOLD_ENTRIES {
                self.thresholds.clear();
            }
            self.threshold_evictions += (before - self.thresholds.len()) as u64;
        }
        let window = t.seconds as i64;
        let e = self.thresholds.entry(key).or_insert(ThresholdEntry {
            start: ts,
            count: 0,
            fired: 0,
        });
        if ts - e.start >= window {
            *e = ThresholdEntry {
                start: ts,
                count: 0,
                fired: 0,
            };
        }
        e.count += 1;
        match t.kind {
            ThresholdKind::Limit => {
                if e.count <= t.count {
                    e.fired += 1;
                    true
                } else {
                    false
                }
            }
            ThresholdKind::Threshold => {
                if e.count >= t.count {
                    e.count = 0;
                    true
                } else {
                    false
                }
            }
            ThresholdKind::Both => {
                if e.count >= t.count && e.fired == 0 {
                    e.fired = 1;
                    true
                } else {
                    false
                }
            }
            ThresholdKind::DetectionFilter => e.count > t.count,
        }
    }
}

/// `dsize`, `itype`/`icode` and `flags`.
fn packet_tests_ok(t: &PacketTests, pkt: &PacketInfo<'_>) -> bool {
    if let Some(d) = t.dsize
        && !d.test(pkt.payload.len() as u64)
    {
        return false;
    }
    if t.itype.is_some() || t.icode.is_some() {
        let Some((ty, code)) = pkt.icmp else {
            return false;
        };
        if t.itype.is_some_and(|r| !r.test(u64::from(ty)))
            || t.icode.is_some_and(|r| !r.test(u64::from(code)))
        {
            return false;
        }
    }
    if let Some((want, mask, modifier)) = t.flags {
        let Some(f) = pkt.tcp_flags else {
            return false;
        };
        let f = f & mask;
        let ok = match modifier {
            '+' => f & want == want,
            '*' => f & want != 0,
            '!' => f & want == 0,
            _ => f == want,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn flow_ok(rule: &Rule, dir: Direction, established: bool) -> bool {
    let f = &rule.flow;
    if f.established && !established {
        return false;
    }
    if f.not_established && established {
        return false;
    }
    f.direction.is_none_or(|d| d == dir)
}

/// Payload prefilter slots: (TCP, UDP, other) × (to server, to client).
const PACKET_SLOTS: usize = 6;

fn packet_slot(proto: u8, dir: Direction) -> usize {
    let class = match proto {
        6 => 0,
        17 => 1,
        _ => 2,
    };
    class * 2 + usize::from(dir == Direction::ToClient)
}

/// The slots whose packets a payload rule can match.
fn rule_slots(r: &Rule) -> Vec<usize> {
    let classes: &[usize] = match r.proto {
        RuleProto::Tcp => &[0],
        RuleProto::Udp => &[1],
        RuleProto::Icmp => &[2],
        // `ip` rules, and application rules inspecting the raw payload, see any protocol.
        RuleProto::Ip | RuleProto::App(_) => &[0, 1, 2],
    };
    let dirs: &[usize] = match r.flow.direction {
        Some(Direction::ToServer) => &[0],
        Some(Direction::ToClient) => &[1],
        None => &[0, 1],
    };
    classes
        .iter()
        .flat_map(|c| dirs.iter().map(move |d| c * 2 + d))
        .collect()
}

enum Side {
    Src,
    Dst,
}

/// Which address list a one-directional rule is best indexed by: the narrower of its lists;
/// `None` when both sides are `any` (or negations only) or the rule is bidirectional.
fn index_side(r: &Rule) -> Option<Side> {
    if r.bidirectional {
        return None;
    }
    match (r.src.span(), r.dst.span()) {
        (Some(s), Some(d)) if d < s => Some(Side::Dst),
        (Some(_), _) => Some(Side::Src),
        (None, Some(_)) => Some(Side::Dst),
        (None, None) => None,
    }
}

fn header_ok(rule: &Rule, src: (IpAddr, u16), dst: (IpAddr, u16)) -> bool {
    let fwd = rule.src.matches(src.0)
        && rule.sport.matches(src.1)
        && rule.dst.matches(dst.0)
        && rule.dport.matches(dst.1);
    fwd || (rule.bidirectional
        && rule.src.matches(dst.0)
        && rule.sport.matches(dst.1)
        && rule.dst.matches(src.0)
        && rule.dport.matches(src.1))
}

fn group_matches(g: &Group, buf: &[u8], scratch: &mut Vec<u8>) -> bool {
    let data: &[u8] = if g.transforms.is_empty() {
        buf
    } else {
        scratch.clear();
        scratch.extend_from_slice(buf);
        for t in &g.transforms {
            apply_transform(*t, scratch);
        }
        scratch
    };
    if let Some(b) = g.bsize
        && !b.test(data.len() as u64)
    {
        return false;
    }
    if g.buf == Buf::Payload && data.is_empty() && !g.items.is_empty() {
        return false;
    }
    inspect(data, &g.items)
}

fn apply_transform(t: Transform, buf: &mut Vec<u8>) {
    match t {
        Transform::DotPrefix => buf.insert(0, b'.'),
        Transform::ToLowercase => buf.make_ascii_lowercase(),
        Transform::StripWhitespace => buf.retain(|c| !c.is_ascii_whitespace()),
        Transform::CompressWhitespace => {
            let mut out = Vec::with_capacity(buf.len());
            let mut last_ws = false;
            for &c in buf.iter() {
                let ws = c.is_ascii_whitespace();
                if ws && last_ws {
                    continue;
                }
                out.push(if ws { b' ' } else { c });
                last_ws = ws;
            }
            *buf = out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::buffers::HttpRaw;
    use super::super::{Vars, compile_text};
    use super::*;
    use crate::proto::http1::parser::Head;
    use serde_json::Map;

    fn prefilter_hits(pf: &Prefilter, hay: &[u8], rules: usize) -> Vec<u32> {
        let mut c = Candidates::default();
        c.begin(rules);
        pf.candidates(hay, &mut c);
        c.finish();
        c.list
    }

    proptest::proptest! {
        /// The prefilter names exactly the rules one of whose patterns occurs in the buffer,
        /// ignoring ASCII case, whichever automaton it uses.
        #[test]
        fn prefilter_finds_every_rule_whose_pattern_occurs(
            pats in proptest::collection::vec(
                proptest::collection::vec(proptest::prop_oneof![
                    proptest::prelude::Just(b'a'), proptest::prelude::Just(b'B'),
                    proptest::prelude::Just(0u8), proptest::prelude::Just(0xe9u8),
                ], 0..5),
                1..12,
            ),
            hay in proptest::collection::vec(proptest::prop_oneof![
                proptest::prelude::Just(b'A'), proptest::prelude::Just(b'b'),
                proptest::prelude::Just(0u8), proptest::prelude::Just(0xc9u8),
                proptest::prelude::Just(0xe9u8),
            ], 0..40),
        ) {
            let list: Patterns = pats.iter().enumerate().map(|(i, p)| (p.as_slice(), i as u32)).collect();
            let want: Vec<u32> = pats
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    !p.is_empty() && hay.windows(p.len()).any(|w| w.eq_ignore_ascii_case(p))
                })
                .map(|(i, _)| i as u32)
                .collect();
            let double = Prefilter::build(list.clone());
            proptest::prop_assert!(matches!(double.matcher, Some(Literals::Double(_)) | None));
            proptest::prop_assert_eq!(&prefilter_hits(&double, &hay, pats.len()), &want);
            let nfa = Prefilter {
                matcher: double.matcher.as_ref().map(|_| {
                    let keys: Vec<Vec<u8>> = (0..double.starts.len() - 1)
                        .map(|p| {
                            let r = double.owners[double.starts[p] as usize];
                            pats[r as usize].to_ascii_lowercase()
                        })
                        .collect();
                    Literals::Nfa(
                        AhoCorasick::builder()
                            .ascii_case_insensitive(true)
                            .build(&keys)
                            .expect("small set"),
                    )
                }),
                starts: double.starts.clone(),
                owners: double.owners,
            };
            proptest::prop_assert_eq!(&prefilter_hits(&nfa, &hay, pats.len()), &want);
        }
    }

    /// The first packet, without payload, of a flow from `src` port 1 to `dst` port 2.
    fn first_packet(src: &str, dst: &str, proto: u8) -> PacketInfo<'static> {
        PacketInfo {
            ts_secs: 0,
            src: src.parse().expect("test address"),
            dst: dst.parse().expect("test address"),
            sport: 1,
            dport: 2,
            proto,
            dir: Direction::ToServer,
            established: false,
            first_in_dir: true,
            payload: b"",
            inspect_payload: true,
            tcp_flags: None,
            icmp: None,
            app: None,
        }
    }

    fn engine(text: &str) -> Engine {
        let (rules, checks) = compile_text(text, "t", &Vars::default());
        assert!(checks.iter().all(|c| c.problem.is_none()), "{checks:?}");
        Engine::new(rules)
    }

    fn head(method: &str, uri: &str, headers: &[(&str, &str)]) -> Head {
        Head {
            method: Some(method.into()),
            uri: Some(uri.into()),
            protocol: "HTTP/1.1".into(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_string(), (*v).to_string()))
                .collect(),
            ..Head::default()
        }
    }

    fn run_http(e: &Engine, raw: &HttpRaw) -> Vec<u64> {
        let body = Map::new();
        let data = AppData {
            proto: AppProto::Http,
            body: &body,
            http: Some(raw),
            direction: None,
        };
        let info = FlowInfo {
            ts_secs: 0,
            client: ("10.0.0.1".parse().unwrap(), 40000),
            server: ("93.184.216.34".parse().unwrap(), 80),
            established: true,
        };
        let mut st = DetectState::default();
        let mut fd = FlowDetect::default();
        let mut out = Vec::new();
        e.match_app(&mut st, &data, &info, &mut fd, &mut out);
        out.iter().map(|a| e.rules[a.rule as usize].sid).collect()
    }

    #[test]
    fn flowbit_checkers_follow_the_setters_in_load_order() {
        let e = engine(concat!(
            "alert tcp any any -> any any (flowbits:isset,a; content:\"x\"; sid:1;)\n",
            "alert tcp any any -> any any (flowbits:set,a; content:\"y\"; sid:2;)\n",
            "alert tcp any any -> any any (flowbits:isnotset,b; content:\"z\"; sid:3;)\n",
            "alert tcp any any -> any any (content:\"w\"; sid:4;)\n",
            "alert tcp any any -> any any (flowbits:set,b; flowbits:isset,a; sid:5;)\n",
        ));
        let sids: Vec<u64> = e.rules.iter().map(|r| r.sid).collect();
        assert_eq!(sids, vec![2, 4, 1, 3, 5]);
    }

    #[test]
    fn packet_tests_are_checked() {
        let e = engine(concat!(
            "alert tcp any any -> any any (flags:S; dsize:0; sid:1;)\n",
            "alert icmp any any -> any any (itype:8; icode:0; sid:2;)\n",
        ));
        let mut pkt = first_packet("192.0.2.1", "192.0.2.2", 6);
        pkt.tcp_flags = Some(0x02);
        let mut st = DetectState::default();
        let mut out = Vec::new();
        let sids = |e: &Engine, out: &[Alert]| -> Vec<u64> {
            out.iter().map(|a| e.rules[a.rule as usize].sid).collect()
        };
        e.match_packet(&mut st, &pkt, &mut FlowDetect::default(), &mut out);
        assert_eq!(sids(&e, &out), vec![1]);
        out.clear();
        pkt.tcp_flags = Some(0x12);
        e.match_packet(&mut st, &pkt, &mut FlowDetect::default(), &mut out);
        assert!(out.is_empty());
        pkt.proto = 1;
        pkt.tcp_flags = None;
        pkt.icmp = Some((8, 0));
        e.match_packet(&mut st, &pkt, &mut FlowDetect::default(), &mut out);
        assert_eq!(sids(&e, &out), vec![2]);
        out.clear();
        pkt.icmp = Some((8, 1));
        e.match_packet(&mut st, &pkt, &mut FlowDetect::default(), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn indexed_ip_lists_match_on_the_first_packet_only() {
        let e = engine(concat!(
            "alert ip [192.0.2.1,192.0.2.2] any -> $HOME_NET any (msg:\"rep\"; sid:1;)\n",
            "alert ip $HOME_NET any -> [198.51.100.9] any (msg:\"rep out\"; sid:2;)\n",
        ));
        let mut pkt = first_packet("192.0.2.2", "10.0.0.5", 17);
        let mut st = DetectState::default();
        let mut fd = FlowDetect::default();
        let mut out = Vec::new();
        e.match_packet(&mut st, &pkt, &mut fd, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(e.rules[out[0].rule as usize].sid, 1);
        pkt.first_in_dir = false;
        out.clear();
        e.match_packet(&mut st, &pkt, &mut fd, &mut out);
        assert!(out.is_empty());
        pkt.src = "10.0.0.5".parse().unwrap();
        pkt.dst = "198.51.100.9".parse().unwrap();
        pkt.first_in_dir = true;
        e.match_packet(&mut st, &pkt, &mut fd, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(e.rules[out[0].rule as usize].sid, 2);
    }

    #[test]
    fn http_sticky_and_legacy_buffers_match() {
        let e = engine(concat!(
            "alert http any any -> any any (content:\"/etc/passwd\"; http_uri; sid:1;)\n",
            "alert http $HOME_NET any -> $EXTERNAL_NET any (flow:established,to_server; ",
            "http.method; content:\"GET\"; http.host; content:\"example.com\"; bsize:11; ",
            "http.user_agent; content:\"curl/\"; startswith; sid:2;)\n",
            "alert http any any -> any any (http.uri; content:\"/other\"; sid:3;)\n",
            "alert http any any -> any any (http.header; content:\"X-A|3a 20|1|0d 0a|\"; sid:4;)\n",
            "alert http any any -> any any (pcre:\"/passwd$/U\"; sid:5;)\n",
        ));
        let raw = HttpRaw {
            request: Some(head(
                "GET",
                "/etc/passwd",
                &[
                    ("Host", "Example.com:8080"),
                    ("User-Agent", "curl/8.0"),
                    ("X-A", "1"),
                ],
            )),
            ..HttpRaw::default()
        };
        let mut sids = run_http(&e, &raw);
        sids.sort_unstable();
        assert_eq!(sids, vec![1, 2, 4, 5]);
    }
}
