//! Raw options to a typed [`Rule`]; every keyword is either understood or named as unsupported.

use super::buffers::{AppProto, Buf};
use super::header::{AddrSet, PortSet, Vars, parse_addrs, parse_ports};
use super::matcher::{ByteJump, ByteTest, Content, Item, NumFormat, Pcre, Range};
use super::parse::{RawRule, content_bytes, unescape, unquote};
use crate::proto::Direction;
use std::collections::HashMap;
use std::sync::Arc;

/// Why a rule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleProblem {
    /// The rule is well formed but uses something Canh does not implement.
    Unsupported(String),
    /// The rule is malformed.
    Invalid(String),
}

impl std::fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unsupported(k) => write!(f, "unsupported: {k}"),
            Self::Invalid(r) => write!(f, "invalid: {r}"),
        }
    }
}

fn invalid(s: impl Into<String>) -> RuleProblem {
    RuleProblem::Invalid(s.into())
}

fn unsupported(s: impl Into<String>) -> RuleProblem {
    RuleProblem::Unsupported(s.into())
}

/// Rule protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleProto {
    /// Any IP packet.
    Ip,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP / ICMPv6.
    Icmp,
    /// Flows of an application protocol.
    App(AppProto),
}

/// `flow` options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowOpts {
    /// `established`.
    pub established: bool,
    /// `not_established`.
    pub not_established: bool,
    /// Direction required.
    pub direction: Option<Direction>,
    /// `only_stream` / `no_stream` are accepted and ignored (packets and stream match alike).
    pub stateless: bool,
}

/// `flowbits` operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowbitOp {
    /// Set the bits.
    Set(Vec<String>),
    /// Clear the bits.
    Unset(Vec<String>),
    /// Flip the bits.
    Toggle(Vec<String>),
    /// All bits set (`a&b`) or any (`a|b`).
    IsSet(Vec<String>, bool),
    /// None of the bits set.
    IsNotSet(Vec<String>, bool),
}

/// Whom a threshold counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    /// Source address.
    BySrc,
    /// Destination address.
    ByDst,
    /// Source and destination.
    ByBoth,
    /// The rule as a whole.
    ByRule,
}

/// Threshold kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdKind {
    /// Alert at most `count` times per window.
    Limit,
    /// Alert every `count` matches.
    Threshold,
    /// Alert once per window after `count` matches.
    Both,
    /// `detection_filter`: alert on every match after `count`.
    DetectionFilter,
}

/// `threshold` / `detection_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    /// Kind.
    pub kind: ThresholdKind,
    /// Tracking key.
    pub track: Track,
    /// Count.
    pub count: u64,
    /// Window in seconds.
    pub seconds: u64,
}

/// Rule action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `alert`.
    Alert,
    /// `drop`.
    Drop,
    /// `reject`.
    Reject,
    /// `rejectsrc`.
    RejectSrc,
    /// `rejectdst`.
    RejectDst,
    /// `rejectboth`.
    RejectBoth,
    /// `pass`.
    Pass,
}

impl Action {
    /// Parses the action word of a rule header.
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "alert" => Self::Alert,
            "drop" => Self::Drop,
            "reject" => Self::Reject,
            "rejectsrc" => Self::RejectSrc,
            "rejectdst" => Self::RejectDst,
            "rejectboth" => Self::RejectBoth,
            "pass" => Self::Pass,
            _ => return None,
        })
    }

    /// The action word as written in rules.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Drop => "drop",
            Self::Reject => "reject",
            Self::RejectSrc => "rejectsrc",
            Self::RejectDst => "rejectdst",
            Self::RejectBoth => "rejectboth",
            Self::Pass => "pass",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Inspection of one buffer.
#[derive(Debug, Clone)]
pub struct Group {
    /// The buffer.
    pub buf: Buf,
    /// Steps in order.
    pub items: Box<[Item]>,
    /// `bsize` (also `urilen` on `http.uri`).
    pub bsize: Option<Range>,
    /// Transforms in order.
    pub transforms: Box<[Transform]>,
}

/// A [`Group`] while its rule is being compiled.
#[derive(Debug)]
struct Draft {
    buf: Buf,
    items: Vec<Item>,
    bsize: Option<Range>,
    transforms: Vec<Transform>,
}

impl Draft {
    fn new(buf: Buf) -> Self {
        Self {
            buf,
            items: Vec::new(),
            bsize: None,
            transforms: Vec::new(),
        }
    }

    fn finish(self) -> Group {
        Group {
            buf: self.buf,
            items: self.items.into_boxed_slice(),
            bsize: self.bsize,
            transforms: self.transforms.into_boxed_slice(),
        }
    }
}

/// Buffer transforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// `dotprefix`.
    DotPrefix,
    /// `to_lowercase`.
    ToLowercase,
    /// `strip_whitespace`.
    StripWhitespace,
    /// `compress_whitespace`.
    CompressWhitespace,
}

/// A rule's `metadata` entries (`key value`), in rule order. Entries are shared between the
/// rules of one load: ET Open rules carry a dozen each, drawn from a few thousand distinct
/// ones, and only alerts read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleMetadata(Box<[Arc<str>]>);

impl RuleMetadata {
    /// Adds the value of one `metadata` option.
    pub fn push_option(&mut self, text: &str) {
        self.push_with(text, |e| Arc::from(e));
    }

    fn push_with(&mut self, text: &str, mut intern: impl FnMut(&str) -> Arc<str>) {
        let mut entries = std::mem::take(&mut self.0).into_vec();
        entries.extend(
            text.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(&mut intern),
        );
        self.0 = entries.into_boxed_slice();
    }

    /// The entries as (key, value), in rule order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|e| {
            let (k, v) = e.split_once(' ').unwrap_or((e, ""));
            (k, v.trim())
        })
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A list of short texts (`reference` values) kept in one string, each entry after a line
/// break: rule options never hold one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextList(String);

impl TextList {
    /// Appends an entry.
    pub fn push(&mut self, text: &str) {
        self.0.push('\n');
        self.0.push_str(text);
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split('\n').skip(1)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn shrink(&mut self) {
        self.0.shrink_to_fit();
    }
}

/// A compiled rule. Address and port groups, `classtype`, `target` and `metadata` words and
/// `pcre` programs are shared between the rules of one load that spell them alike.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Action word.
    pub action: Action,
    /// Protocol.
    pub proto: RuleProto,
    /// Source addresses.
    pub src: Arc<AddrSet>,
    /// Source ports.
    pub sport: Arc<PortSet>,
    /// `<>`.
    pub bidirectional: bool,
    /// Destination addresses.
    pub dst: Arc<AddrSet>,
    /// Destination ports.
    pub dport: Arc<PortSet>,
    /// `sid`.
    pub sid: u64,
    /// `rev`.
    pub rev: u64,
    /// `gid`.
    pub gid: u64,
    /// `msg`.
    pub msg: String,
    /// `classtype`.
    pub classtype: Option<Arc<str>>,
    /// `priority`.
    pub priority: Option<u64>,
    /// `metadata` entries (`key value`).
    pub metadata: RuleMetadata,
    /// `reference` values.
    pub references: TextList,
    /// `target`.
    pub target: Option<Arc<str>>,
    /// `flow`.
    pub flow: FlowOpts,
    /// Buffer inspections.
    pub groups: Box<[Group]>,
    /// `flowbits`.
    pub flowbits: Vec<FlowbitOp>,
    /// Do not alert (`noalert` or `flowbits:noalert`).
    pub noalert: bool,
    /// `threshold` / `detection_filter`.
    pub threshold: Option<Threshold>,
    /// `dsize`, `itype`, `icode` and `flags`, out of line: most rules have none.
    pub packet: Option<Box<PacketTests>>,
}

/// Tests on the packet header that few rules use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketTests {
    /// `dsize`.
    pub dsize: Option<Range>,
    /// `itype`.
    pub itype: Option<Range>,
    /// `icode`.
    pub icode: Option<Range>,
    /// `flags`: (required set, mask of flags that are compared, modifier).
    pub flags: Option<(u8, u8, char)>,
}

impl Rule {
    /// Whether the rule only looks at addresses/ports (evaluated once per flow direction).
    pub fn is_ip_only(&self) -> bool {
        matches!(self.proto, RuleProto::Ip | RuleProto::Tcp | RuleProto::Udp)
            && self.groups.is_empty()
            && self.flow == FlowOpts::default()
            && self.flowbits.is_empty()
            && self.dsize().is_none()
            && self.itype().is_none()
            && self.icode().is_none()
            && self.flags().is_none()
    }

    /// `dsize`.
    pub fn dsize(&self) -> Option<Range> {
        self.packet.as_ref().and_then(|p| p.dsize)
    }

    /// `itype`.
    pub fn itype(&self) -> Option<Range> {
        self.packet.as_ref().and_then(|p| p.itype)
    }

    /// `icode`.
    pub fn icode(&self) -> Option<Range> {
        self.packet.as_ref().and_then(|p| p.icode)
    }

    /// `flags`: (required set, mask of flags that are compared, modifier).
    pub fn flags(&self) -> Option<(u8, u8, char)> {
        self.packet.as_ref().and_then(|p| p.flags)
    }

    fn packet_mut(&mut self) -> &mut PacketTests {
        self.packet.get_or_insert_with(Box::default)
    }

    /// Whether the rule is evaluated on application events rather than packets.
    pub fn is_app(&self) -> bool {
        matches!(self.proto, RuleProto::App(_))
            && !self.groups.iter().any(|g| g.buf == Buf::Payload)
    }

    /// Prefilter pattern: the buffer and the `fast_pattern` content, else the longest
    /// positive content (its case does not matter to the prefilter).
    pub fn fast_pattern(&self) -> Option<(Buf, &[u8])> {
        pick_fast(&self.groups)
    }
}

/// What the rules of one load share: groups, words and `pcre` programs by their text, so
/// that thousands of rules naming `$HOME_NET` or the same expression hold one copy.
#[derive(Debug, Default)]
pub struct Shared {
    addrs: HashMap<String, Result<Arc<AddrSet>, String>>,
    ports: HashMap<String, Result<Arc<PortSet>, String>>,
    pcres: HashMap<String, Result<(Pcre, Option<Buf>), RuleProblem>>,
    words: HashMap<String, Arc<str>>,
}

impl Shared {
    fn addrs(&mut self, text: &str, vars: &Vars) -> Result<Arc<AddrSet>, RuleProblem> {
        if let Some(r) = self.addrs.get(text) {
            return r.clone().map_err(invalid);
        }
        let r = parse_addrs(text, vars).map(Arc::new);
        self.addrs.insert(text.to_string(), r.clone());
        r.map_err(invalid)
    }

    fn ports(&mut self, text: &str, vars: &Vars) -> Result<Arc<PortSet>, RuleProblem> {
        if let Some(r) = self.ports.get(text) {
            return r.clone().map_err(invalid);
        }
        let r = parse_ports(text, vars).map(Arc::new);
        self.ports.insert(text.to_string(), r.clone());
        r.map_err(invalid)
    }

    fn pcre(&mut self, value: &str) -> Result<(Pcre, Option<Buf>), RuleProblem> {
        if let Some(r) = self.pcres.get(value) {
            return r.clone();
        }
        let r = super::pcre::compile(value);
        self.pcres.insert(value.to_string(), r.clone());
        r
    }

    fn word(&mut self, text: &str) -> Arc<str> {
        if let Some(w) = self.words.get(text) {
            return w.clone();
        }
        let w: Arc<str> = Arc::from(text);
        self.words.insert(text.to_string(), w.clone());
        w
    }
}

/// Keywords that only carry information or tune performance and can be ignored safely.
const IGNORED: &[&str] = &["rawbytes", "only_stream", "no_stream"];

/// App-layer protocols Canh has no parser for (rules on them are unsupported).
const OTHER_APPS: &[&str] = &[
    "smtp",
    "ftp",
    "ftp-data",
    "smb",
    "dcerpc",
    "ssh",
    "http2",
    "dhcp",
    "krb5",
    "nfs",
    "ntp",
    "snmp",
    "sip",
    "rdp",
    "rfb",
    "mqtt",
    "modbus",
    "dnp3",
    "enip",
    "imap",
    "pop3",
    "ike",
    "tftp",
    "ldap",
    "quic",
    "pgsql",
    "telnet",
    "websocket",
    "mdns",
    "irc",
    "ssl",
    "tcp-stream",
];

struct Builder {
    groups: Vec<Draft>,
    /// Groups that are not sticky (`urilen`), appended at the end.
    extra: Vec<Draft>,
    /// A sticky buffer was selected (later items go to it).
    sticky: bool,
    last_content: Option<(usize, usize)>,
}

impl Builder {
    fn current(&mut self) -> &mut Draft {
        if self.groups.is_empty() {
            self.groups.push(Draft::new(Buf::Payload));
        }
        let n = self.groups.len() - 1;
        &mut self.groups[n]
    }

    fn switch(&mut self, buf: Buf) {
        self.sticky = true;
        self.groups.push(Draft::new(buf));
        self.last_content = None;
    }

    fn push(&mut self, item: Item) {
        let is_content = matches!(item, Item::Content(_));
        if !self.sticky {
            // Legacy style: a modifier-less item after a moved content. Contents and pcre start
            // in the payload; positional items follow the content they refer to.
            match self.last_content {
                Some((g, _)) if !is_content && !matches!(item, Item::Pcre(_)) => {
                    if let Some(group) = self.groups.get_mut(g) {
                        group.items.push(item);
                        return;
                    }
                }
                _ => {}
            }
            if self.groups.last().is_some_and(|g| g.buf != Buf::Payload) {
                self.groups.push(Draft::new(Buf::Payload));
            }
        }
        let g = self.current();
        g.items.push(item);
        let gi = self.groups.len() - 1;
        let ii = self.groups[gi].items.len() - 1;
        if is_content {
            self.last_content = Some((gi, ii));
        }
    }

    fn last(&mut self, kw: &str) -> Result<&mut Content, RuleProblem> {
        let (g, i) = self
            .last_content
            .ok_or_else(|| invalid(format!("{kw} without a preceding content")))?;
        match self.groups.get_mut(g).and_then(|g| g.items.get_mut(i)) {
            Some(Item::Content(c)) => Ok(c),
            _ => Err(invalid(format!("{kw} without a preceding content"))),
        }
    }

    /// Adds an item to the group of `buf` without changing the current sticky buffer.
    fn push_to(&mut self, buf: Buf, item: Item) {
        match self.groups.iter_mut().find(|g| g.buf == buf) {
            Some(g) => g.items.push(item),
            None => {
                let keep = self.groups.pop();
                let mut d = Draft::new(buf);
                d.items.push(item);
                self.groups.push(d);
                if let Some(k) = keep {
                    let is_last = self
                        .last_content
                        .is_some_and(|(g, _)| g == self.groups.len() - 1);
                    self.groups.push(k);
                    if is_last {
                        self.last_content =
                            self.last_content.map(|(_, i)| (self.groups.len() - 1, i));
                    }
                }
            }
        }
    }

    /// Legacy content modifier (`content:"x"; http_uri;`): moves the last content to `buf`.
    fn move_last(&mut self, buf: Buf) -> Result<(), RuleProblem> {
        let (g, i) = self
            .last_content
            .ok_or_else(|| invalid("buffer modifier without a preceding content"))?;
        if g + 1 != self.groups.len() || i >= self.groups[g].items.len() {
            return Err(invalid("buffer modifier must follow its content"));
        }
        // The content and the items that follow it (isdataat, byte_test...) move together.
        let moved: Vec<Item> = self.groups[g].items.drain(i..).collect();
        if self.groups[g].items.is_empty() && self.groups[g].buf == Buf::Payload {
            self.groups.remove(g);
        }
        let target = match self.groups.iter().position(|x| x.buf == buf) {
            Some(t) => t,
            None => {
                self.groups.push(Draft::new(buf));
                self.groups.len() - 1
            }
        };
        let first = self.groups[target].items.len();
        self.groups[target].items.extend(moved);
        // Further modifiers still apply to this content.
        self.last_content = Some((target, first));
        Ok(())
    }
}

fn num<T: std::str::FromStr>(kw: &str, v: Option<&str>) -> Result<T, RuleProblem> {
    v.map(str::trim)
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| invalid(format!("{kw} needs a number")))
}

fn parse_proto(p: &str) -> Result<RuleProto, RuleProblem> {
    Ok(match p {
        "ip" | "pkthdr" => RuleProto::Ip,
        "tcp" | "tcp-pkt" => RuleProto::Tcp,
        "udp" => RuleProto::Udp,
        "icmp" | "icmpv4" | "icmpv6" => RuleProto::Icmp,
        "http" | "http1" => RuleProto::App(AppProto::Http),
        "dns" => RuleProto::App(AppProto::Dns),
        "tls" => RuleProto::App(AppProto::Tls),
        other if OTHER_APPS.contains(&other) => {
            return Err(unsupported(format!("protocol {other}")));
        }
        other => return Err(invalid(format!("unknown protocol {other}"))),
    })
}

/// Compiles a tokenised rule.
pub fn compile(raw: &RawRule, vars: &Vars) -> Result<Rule, RuleProblem> {
    compile_shared(raw, vars, &mut Shared::default())
}

/// Compiles a tokenised rule, sharing groups, words and `pcre` programs with the other rules
/// compiled with the same `shared` (and the same `vars`).
pub fn compile_shared(
    raw: &RawRule,
    vars: &Vars,
    shared: &mut Shared,
) -> Result<Rule, RuleProblem> {
    let proto = parse_proto(&raw.proto)?;
    let bidirectional = match raw.direction.as_str() {
        "->" => false,
        "<>" => true,
        "=>" => return Err(unsupported("transactional direction =>")),
        d => return Err(invalid(format!("invalid direction {d}"))),
    };
    let Some(action) = Action::parse(&raw.action) else {
        return Err(invalid(format!("unknown action {}", raw.action)));
    };
    let mut rule = Rule {
        action,
        proto,
        src: shared.addrs(&raw.src, vars)?,
        sport: shared.ports(&raw.sport, vars)?,
        bidirectional,
        dst: shared.addrs(&raw.dst, vars)?,
        dport: shared.ports(&raw.dport, vars)?,
        sid: 0,
        rev: 0,
        gid: 1,
        msg: String::new(),
        classtype: None,
        priority: None,
        metadata: RuleMetadata::default(),
        references: TextList::default(),
        target: None,
        flow: FlowOpts::default(),
        groups: Box::default(),
        flowbits: Vec::new(),
        noalert: false,
        threshold: None,
        packet: None,
    };
    let mut b = Builder {
        groups: Vec::new(),
        extra: Vec::new(),
        sticky: false,
        last_content: None,
    };
    let mut file_data_groups = Vec::new();
    let mut has_sid = false;
    for (name, value) in &raw.options {
        let v = value.as_deref();
        option(
            &mut rule,
            &mut b,
            name,
            v,
            &mut file_data_groups,
            &mut has_sid,
            shared,
        )?;
    }
    if !has_sid {
        return Err(invalid("rule has no sid"));
    }
    // Resolve request/response buffers from the flow direction.
    let dir = rule.flow.direction.unwrap_or(Direction::ToServer);
    for (i, g) in b.groups.iter_mut().enumerate() {
        g.buf = g.buf.with_side(dir);
        if file_data_groups.contains(&i) {
            g.buf = match dir {
                Direction::ToServer => Buf::HttpRequestBody,
                Direction::ToClient => Buf::HttpResponseBody,
            };
        }
    }
    let mut groups = b.groups;
    groups.append(&mut b.extra);
    rule.groups = groups.into_iter().map(Draft::finish).collect();
    check_groups(&rule)?;
    rule.msg.shrink_to_fit();
    rule.references.shrink();
    rule.flowbits.shrink_to_fit();
    Ok(rule)
}

fn check_groups(rule: &Rule) -> Result<(), RuleProblem> {
    let has_payload = rule.groups.iter().any(|g| g.buf == Buf::Payload);
    let mut app: Option<AppProto> = match rule.proto {
        RuleProto::App(a) => Some(a),
        _ => None,
    };
    for g in &rule.groups {
        let Some(a) = g.buf.app() else { continue };
        if has_payload {
            return Err(unsupported("payload content mixed with sticky buffers"));
        }
        match app {
            None => app = Some(a),
            Some(x) if x != a => {
                return Err(invalid(format!(
                    "{} buffer in a {} rule",
                    a.name(),
                    x.name()
                )));
            }
            Some(_) => {}
        }
    }
    if matches!(
        rule.proto,
        RuleProto::Ip | RuleProto::Tcp | RuleProto::Udp | RuleProto::Icmp
    ) && rule.groups.iter().any(|g| g.buf != Buf::Payload)
    {
        // e.g. `alert tcp ... http.uri;`: Suricata treats the protocol as the app protocol.
        return Err(unsupported("sticky buffer in a non-application rule"));
    }
    let dirs: Vec<Direction> = rule
        .groups
        .iter()
        .filter_map(|g| g.buf.direction())
        .collect();
    if dirs.windows(2).any(|w| w[0] != w[1]) {
        return Err(unsupported("request and response buffers in one rule"));
    }
    Ok(())
}

/// The prefilter pattern: the `fast_pattern` content, else the longest positive content.
fn pick_fast(groups: &[Group]) -> Option<(Buf, &[u8])> {
    let mut best: Option<(Buf, &[u8])> = None;
    for g in groups {
        // The prefilter sees the buffer before transforms; case is ignored there anyway.
        if g.transforms
            .iter()
            .any(|t| !matches!(t, Transform::DotPrefix | Transform::ToLowercase))
        {
            continue;
        }
        let dot = g.transforms.contains(&Transform::DotPrefix);
        for it in &g.items {
            let Item::Content(c) = it else { continue };
            if c.negated {
                continue;
            }
            let pat: &[u8] = if dot {
                c.pattern.strip_prefix(b".").unwrap_or(&c.pattern)
            } else {
                &c.pattern
            };
            if pat.is_empty() {
                continue;
            }
            if c.fast_pattern {
                return Some((g.buf, pat));
            }
            if best.is_none_or(|(_, b)| pat.len() > b.len()) {
                best = Some((g.buf, pat));
            }
        }
    }
    best
}

fn option(
    rule: &mut Rule,
    b: &mut Builder,
    name: &str,
    v: Option<&str>,
    file_data_groups: &mut Vec<usize>,
    has_sid: &mut bool,
    shared: &mut Shared,
) -> Result<(), RuleProblem> {
    if let Some(buf) = Buf::from_keyword(name) {
        // Sticky buffer (dotted name) or legacy modifier (underscore name after content).
        let legacy = !name.contains('.') && !matches!(name, "dns_query" | "tls_sni" | "ja3_hash");
        if legacy
            && b.last_content.is_some()
            && b.groups.last().is_some_and(|g| g.buf == Buf::Payload)
        {
            return b.move_last(buf);
        }
        b.switch(buf);
        return Ok(());
    }
    match name {
        "msg" => rule.msg = unescape(unquote(v.unwrap_or(""))),
        "sid" => {
            rule.sid = num(name, v)?;
            *has_sid = true;
        }
        "rev" => rule.rev = num(name, v)?,
        "gid" => rule.gid = num(name, v)?,
        "classtype" => rule.classtype = v.map(|x| shared.word(x.trim())),
        "priority" => rule.priority = Some(num(name, v)?),
        "reference" => rule.references.push(v.unwrap_or("").trim()),
        "target" => rule.target = v.map(|x| shared.word(x.trim())),
        "metadata" => rule.metadata.push_with(v.unwrap_or(""), |e| shared.word(e)),
        "noalert" => rule.noalert = true,
        "file.data" | "file_data" => {
            if v.is_some_and(|x| x.trim() == "to_client") {
                // Suricata 8 syntax; same as the default for responses.
            }
            b.switch(Buf::HttpResponseBody);
            file_data_groups.push(b.groups.len() - 1);
        }
        "pkt_data" => b.switch(Buf::Payload),
        "content" => {
            let v = v.ok_or_else(|| invalid("content needs a value"))?;
            let v = v.trim();
            let (negated, v) = match v.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, v),
            };
            let pattern = content_bytes(unquote(v)).map_err(invalid)?;
            b.push(Item::Content(Content::new(pattern, negated)));
        }
        "nocase" => b.last(name)?.nocase = true,
        "fast_pattern" => b.last(name)?.fast_pattern = true,
        "offset" => b.last(name)?.offset = Some(num(name, v)?),
        "depth" => b.last(name)?.depth = Some(num(name, v)?),
        "distance" => b.last(name)?.distance = Some(num(name, v)?),
        "within" => b.last(name)?.within = Some(num(name, v)?),
        "startswith" => {
            let c = b.last(name)?;
            c.offset = Some(0);
            c.depth = Some(c.pattern.len() as u32);
        }
        "endswith" => b.last(name)?.endswith = true,
        n if IGNORED.contains(&n) => {}
        "bsize" => b.current().bsize = Some(Range::parse(v.unwrap_or("")).map_err(invalid)?),
        "urilen" => {
            let spec = v.unwrap_or("");
            let (range, raw) = match spec.split_once(',') {
                Some((r, kind)) => (r, kind.trim() == "raw"),
                None => (spec, false),
            };
            let range = Range::parse(range).map_err(invalid)?;
            let buf = if raw { Buf::HttpUriRaw } else { Buf::HttpUri };
            let mut d = Draft::new(buf);
            d.bsize = Some(range);
            b.extra.push(d);
        }
        "dsize" => rule.packet_mut().dsize = Some(Range::parse(v.unwrap_or("")).map_err(invalid)?),
        "itype" => rule.packet_mut().itype = Some(Range::parse(v.unwrap_or("")).map_err(invalid)?),
        "icode" => rule.packet_mut().icode = Some(Range::parse(v.unwrap_or("")).map_err(invalid)?),
        "dotprefix" => b.current().transforms.push(Transform::DotPrefix),
        "to_lowercase" => b.current().transforms.push(Transform::ToLowercase),
        "strip_whitespace" => b.current().transforms.push(Transform::StripWhitespace),
        "compress_whitespace" => b.current().transforms.push(Transform::CompressWhitespace),
        "isdataat" => {
            let spec = v.unwrap_or("").trim();
            let (negated, spec) = match spec.strip_prefix('!') {
                Some(r) => (true, r),
                None => (false, spec),
            };
            let mut parts = spec.split(',').map(str::trim);
            let n = num(name, parts.next())?;
            let mut relative = false;
            for p in parts {
                match p {
                    "relative" => relative = true,
                    "rawbytes" => {}
                    other => return Err(unsupported(format!("isdataat option {other}"))),
                }
            }
            b.push(Item::IsDataAt {
                n,
                relative,
                negated,
            });
        }
        "pcre" => match shared.pcre(v.unwrap_or(""))? {
            (p, None) => b.push(Item::Pcre(p)),
            (p, Some(buf)) => b.push_to(buf, Item::Pcre(p)),
        },
        "byte_test" => b.push(Item::ByteTest(Box::new(byte_test(v.unwrap_or(""))?))),
        "byte_jump" => b.push(Item::ByteJump(Box::new(byte_jump(v.unwrap_or(""))?))),
        "flow" => rule.flow = flow(v.unwrap_or(""))?,
        "flowbits" => {
            if let Some(op) = flowbits(v.unwrap_or(""))? {
                rule.flowbits.push(op);
            } else {
                rule.noalert = true;
            }
        }
        "threshold" => rule.threshold = Some(threshold(v.unwrap_or(""), false)?),
        "detection_filter" => rule.threshold = Some(threshold(v.unwrap_or(""), true)?),
        "flags" => rule.packet_mut().flags = Some(tcp_flags(v.unwrap_or(""))?),
        other => return Err(unsupported(format!("keyword {other}"))),
    }
    Ok(())
}

fn flow(v: &str) -> Result<FlowOpts, RuleProblem> {
    let mut f = FlowOpts::default();
    for p in v.split(',').map(str::trim) {
        match p {
            "established" => f.established = true,
            "not_established" => f.not_established = true,
            "stateless" => f.stateless = true,
            "to_server" | "from_client" => f.direction = Some(Direction::ToServer),
            "to_client" | "from_server" => f.direction = Some(Direction::ToClient),
            "only_stream" | "no_stream" | "" => {}
            other => return Err(unsupported(format!("flow:{other}"))),
        }
    }
    Ok(f)
}

fn flowbits(v: &str) -> Result<Option<FlowbitOp>, RuleProblem> {
    let (cmd, names) = match v.split_once(',') {
        Some((c, n)) => (c.trim(), n.trim()),
        None => (v.trim(), ""),
    };
    let or = names.contains('|');
    let list: Vec<String> = names
        .split(['|', '&'])
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if cmd != "noalert" && list.is_empty() {
        return Err(invalid("flowbits needs a name"));
    }
    Ok(Some(match cmd {
        "set" => FlowbitOp::Set(list),
        "unset" => FlowbitOp::Unset(list),
        "toggle" => FlowbitOp::Toggle(list),
        "isset" => FlowbitOp::IsSet(list, or),
        "isnotset" => FlowbitOp::IsNotSet(list, or),
        "noalert" => return Ok(None),
        other => return Err(invalid(format!("unknown flowbits command {other}"))),
    }))
}

fn threshold(v: &str, filter: bool) -> Result<Threshold, RuleProblem> {
    let mut kind = if filter {
        Some(ThresholdKind::DetectionFilter)
    } else {
        None
    };
    let (mut track, mut count, mut seconds) = (None, None, None);
    for p in v.split(',') {
        let mut words = p.split_whitespace();
        let (Some(k), Some(val)) = (words.next(), words.next()) else {
            return Err(invalid(format!("bad threshold part {p:?}")));
        };
        match k {
            "type" => {
                kind = Some(match val {
                    "limit" => ThresholdKind::Limit,
                    "threshold" => ThresholdKind::Threshold,
                    "both" => ThresholdKind::Both,
                    other => return Err(unsupported(format!("threshold type {other}"))),
                });
            }
            "track" => {
                track = Some(match val {
                    "by_src" => Track::BySrc,
                    "by_dst" => Track::ByDst,
                    "by_both" => Track::ByBoth,
                    "by_rule" => Track::ByRule,
                    other => return Err(unsupported(format!("threshold track {other}"))),
                });
            }
            "count" => count = val.parse().ok(),
            "seconds" => seconds = val.parse().ok(),
            other => return Err(unsupported(format!("threshold option {other}"))),
        }
    }
    match (kind, track, count, seconds) {
        (Some(kind), Some(track), Some(count), Some(seconds)) => Ok(Threshold {
            kind,
            track,
            count,
            seconds,
        }),
        _ => Err(invalid("threshold needs type, track, count and seconds")),
    }
}

fn tcp_flags(v: &str) -> Result<(u8, u8, char), RuleProblem> {
    let (spec, mask) = match v.split_once(',') {
        Some((s, m)) => (s.trim(), Some(m.trim())),
        None => (v.trim(), None),
    };
    let bits = |s: &str| -> Result<u8, RuleProblem> {
        let mut out = 0u8;
        for c in s.chars() {
            out |= match c.to_ascii_uppercase() {
                'F' => 0x01,
                'S' => 0x02,
                'R' => 0x04,
                'P' => 0x08,
                'A' => 0x10,
                'U' => 0x20,
                'E' | '2' => 0x40,
                'C' | '1' => 0x80,
                '0' => 0,
                other => return Err(invalid(format!("unknown TCP flag {other}"))),
            };
        }
        Ok(out)
    };
    let (modifier, letters) = match spec.chars().next() {
        Some(m @ ('+' | '*' | '!')) => (m, &spec[1..]),
        _ => match spec.chars().last() {
            Some(m @ ('+' | '*' | '!')) => (m, &spec[..spec.len() - 1]),
            _ => ('=', spec),
        },
    };
    let ignore = match mask {
        Some(m) => bits(m)?,
        None => 0,
    };
    Ok((bits(letters)?, !ignore, modifier))
}

fn split_args(v: &str) -> Vec<String> {
    v.split(',').map(|s| s.trim().to_string()).collect()
}

fn format_word(w: &str, string: &mut bool, fmt: &mut NumFormat) -> bool {
    match w {
        "big" => *fmt = NumFormat::Big,
        "little" => *fmt = NumFormat::Little,
        "string" => *string = true,
        "hex" => *fmt = NumFormat::Text(16),
        "dec" => *fmt = NumFormat::Text(10),
        "oct" => *fmt = NumFormat::Text(8),
        _ => return false,
    }
    true
}

fn byte_test(v: &str) -> Result<ByteTest, RuleProblem> {
    let a = split_args(v);
    if a.len() < 4 {
        return Err(invalid("byte_test needs bytes, operator, value, offset"));
    }
    let nbytes: usize = num("byte_test", Some(&a[0]))?;
    let (negated, op) = match a[1].strip_prefix('!') {
        Some(o) => (true, o.to_string()),
        None => (false, a[1].clone()),
    };
    let op = if op.is_empty() { "=".to_string() } else { op };
    if !["<", ">", "=", "<=", ">=", "&", "^"].contains(&op.as_str()) {
        return Err(invalid(format!("byte_test operator {op}")));
    }
    let value = parse_u64(&a[2]).ok_or_else(|| unsupported("byte_test with variable value"))?;
    let offset: i64 = a[3]
        .parse()
        .map_err(|_| unsupported("byte_test with variable offset"))?;
    let mut bt = ByteTest {
        nbytes,
        op,
        negated,
        value,
        offset,
        relative: false,
        format: NumFormat::Big,
        bitmask: None,
    };
    let mut string = false;
    let mut fmt = NumFormat::Big;
    for w in &a[4..] {
        if w == "relative" {
            bt.relative = true;
        } else if let Some(m) = w.strip_prefix("bitmask") {
            bt.bitmask = Some(parse_u64(m.trim()).ok_or_else(|| invalid("bad bitmask"))?);
        } else if !format_word(w, &mut string, &mut fmt) {
            return Err(unsupported(format!("byte_test option {w}")));
        }
    }
    bt.format = finish_format(string, fmt);
    check_nbytes(nbytes, bt.format)?;
    Ok(bt)
}

fn finish_format(string: bool, fmt: NumFormat) -> NumFormat {
    match (string, fmt) {
        (true, NumFormat::Text(b)) => NumFormat::Text(b),
        (true, _) => NumFormat::Text(10),
        (false, NumFormat::Text(_)) => NumFormat::Text(10),
        (false, f) => f,
    }
}

fn check_nbytes(n: usize, fmt: NumFormat) -> Result<(), RuleProblem> {
    let max = if matches!(fmt, NumFormat::Text(_)) {
        20
    } else {
        8
    };
    if n == 0 || n > max {
        return Err(invalid(format!("byte count {n} out of range")));
    }
    Ok(())
}

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn byte_jump(v: &str) -> Result<ByteJump, RuleProblem> {
    let a = split_args(v);
    if a.len() < 2 {
        return Err(invalid("byte_jump needs bytes and offset"));
    }
    let nbytes: usize = num("byte_jump", Some(&a[0]))?;
    let offset: i64 = a[1]
        .parse()
        .map_err(|_| unsupported("byte_jump with variable offset"))?;
    let mut bj = ByteJump {
        nbytes,
        offset,
        relative: false,
        format: NumFormat::Big,
        multiplier: 1,
        align: false,
        from_beginning: false,
        from_end: false,
        post_offset: 0,
        bitmask: None,
    };
    let mut string = false;
    let mut fmt = NumFormat::Big;
    for w in &a[2..] {
        let mut words = w.split_whitespace();
        let head = words.next().unwrap_or("");
        let arg = words.next();
        match head {
            "relative" => bj.relative = true,
            "align" => bj.align = true,
            "from_beginning" => bj.from_beginning = true,
            "from_end" => bj.from_end = true,
            "multiplier" => bj.multiplier = num("multiplier", arg)?,
            "post_offset" => bj.post_offset = num("post_offset", arg)?,
            "bitmask" => {
                bj.bitmask = Some(
                    arg.and_then(parse_u64)
                        .ok_or_else(|| invalid("bad bitmask"))?,
                );
            }
            w if format_word(w, &mut string, &mut fmt) => {}
            other => return Err(unsupported(format!("byte_jump option {other}"))),
        }
    }
    bj.format = finish_format(string, fmt);
    check_nbytes(nbytes, bj.format)?;
    Ok(bj)
}

#[cfg(test)]
mod tests {
    use super::super::parse::tokenize;
    use super::*;

    fn rule(s: &str) -> Result<Rule, RuleProblem> {
        compile(&tokenize(s).unwrap(), &Vars::default())
    }

    #[test]
    fn et_style_http_rule() {
        let r = rule(
            r#"alert http $HOME_NET any -> $EXTERNAL_NET any (msg:"ET x"; flow:established,to_server; http.method; content:"POST"; http.uri; content:"/gate.php"; fast_pattern; endswith; http.header; content:"X-Bot|3a 20|"; nocase; classtype:trojan-activity; sid:2000001; rev:3; metadata:created_at 2024_01_01, signature_severity Major;)"#,
        )
        .unwrap();
        assert_eq!(r.groups.len(), 3);
        assert_eq!(
            r.groups[2].buf,
            Buf::HttpHeader(super::super::buffers::Side::Request)
        );
        assert_eq!(r.fast_pattern(), Some((Buf::HttpUri, &b"/gate.php"[..])));
        assert_eq!(
            r.metadata.iter().nth(1),
            Some(("signature_severity", "Major"))
        );
        assert!(r.is_app());
    }

    #[test]
    fn legacy_modifiers_move_content() {
        let r = rule(
            r#"alert tcp any any -> any any (content:"GET"; http_method; content:"/x"; http_uri; sid:1;)"#,
        );
        // Sticky buffers in a plain tcp rule are named as unsupported.
        assert!(matches!(r, Err(RuleProblem::Unsupported(_))));
        let r = rule(
            r#"alert http any any -> any any (content:"GET"; http_method; content:"/x"; http_uri; sid:1;)"#,
        )
        .unwrap();
        assert_eq!(r.groups.len(), 2);
        assert_eq!(r.groups[0].buf, Buf::HttpMethod);
        let r = rule(
            r#"alert http any any -> any any (content:"a"; http_uri; content:"b"; http_header; content:"c"; distance:0; http_uri; isdataat:!1,relative; sid:1;)"#,
        )
        .unwrap();
        assert_eq!(r.groups.len(), 2);
        assert_eq!(r.groups[0].buf, Buf::HttpUri);
        assert_eq!(r.groups[0].items.len(), 3);
        assert_eq!(r.groups[1].items.len(), 1);
    }

    #[test]
    fn unsupported_keywords_are_named() {
        let e =
            rule(r#"alert tcp any any -> any any (content:"x"; xbits:set,a,track ip_src; sid:1;)"#)
                .unwrap_err();
        assert_eq!(e, RuleProblem::Unsupported("keyword xbits".into()));
        let e = rule(r#"alert smtp any any -> any any (content:"x"; sid:1;)"#).unwrap_err();
        assert_eq!(e, RuleProblem::Unsupported("protocol smtp".into()));
        assert!(matches!(
            rule(r#"alert tcp any any -> any any (nocase; sid:1;)"#),
            Err(RuleProblem::Invalid(_))
        ));
        assert!(matches!(
            rule(r#"alert tcp any any -> any any (content:"x";)"#),
            Err(RuleProblem::Invalid(_))
        ));
    }

    #[test]
    fn metadata_and_references_keep_their_entries() {
        let r = rule(
            r#"alert tcp any any -> any any (metadata: a 1 , b  2,,c; metadata:d 4; reference:url,x.example/a; reference:; reference:cve,2020-1; sid:1;)"#,
        )
        .unwrap();
        assert_eq!(
            r.metadata.iter().collect::<Vec<_>>(),
            vec![("a", "1"), ("b", "2"), ("c", ""), ("d", "4")]
        );
        assert_eq!(
            r.references.iter().collect::<Vec<_>>(),
            vec!["url,x.example/a", "", "cve,2020-1"]
        );
        assert_eq!(r.references.len(), 3);
        let mut m = RuleMetadata::default();
        assert!(m.is_empty());
        m.push_option(" , ");
        assert!(m.is_empty());
        m.push_option("k v");
        assert_eq!(m.iter().next(), Some(("k", "v")));
        assert_eq!(r.action, Action::Alert);
        assert_eq!(
            rule("pass tcp any any -> any any (sid:1;)")
                .unwrap()
                .action
                .as_str(),
            "pass"
        );
        assert!(matches!(
            rule("block tcp any any -> any any (sid:1;)"),
            Err(RuleProblem::Invalid(_))
        ));
    }

    #[test]
    fn shared_parts_are_compiled_once() {
        let vars = Vars::default();
        let mut shared = Shared::default();
        let mut one = |s: &str| compile_shared(&tokenize(s).unwrap(), &vars, &mut shared);
        let a = one(r#"alert tcp $HOME_NET any -> any 80 (pcre:"/a+b/i"; sid:1;)"#).unwrap();
        let b = one(r#"alert tcp $HOME_NET any -> any 80 (pcre:"/a+b/i"; sid:2;)"#).unwrap();
        assert!(Arc::ptr_eq(&a.src, &b.src) && Arc::ptr_eq(&a.dport, &b.dport));
        let (Item::Pcre(pa), Item::Pcre(pb)) = (&a.groups[0].items[0], &b.groups[0].items[0])
        else {
            panic!("pcre expected");
        };
        assert!(Arc::ptr_eq(&pa.re, &pb.re));
        assert!(pa.re.is_match(b"xAAB"));
        // Errors are remembered and given again.
        let bad = r#"alert tcp [1.2.3.4/40] any -> any any (sid:3;)"#;
        let e1 = one(bad).unwrap_err();
        assert_eq!(one(bad).unwrap_err(), e1);
        assert!(matches!(e1, RuleProblem::Invalid(_)));
    }

    #[test]
    fn threshold_flowbits_flags() {
        let r = rule(
            "alert tcp any any -> any any (flags:S,12; flowbits:isset,a|b; threshold: type both, track by_src, count 5, seconds 60; sid:1;)",
        )
        .unwrap();
        assert_eq!(r.flags(), Some((0x02, !0xc0, '=')));
        assert!(r.dsize().is_none());
        assert_eq!(
            r.flowbits[0],
            FlowbitOp::IsSet(vec!["a".into(), "b".into()], true)
        );
        assert_eq!(r.threshold.unwrap().count, 5);
        assert!(!r.is_ip_only());
    }
}
