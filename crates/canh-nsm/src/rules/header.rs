//! Rule header: address and port groups with variables and negation.

use std::collections::HashMap;
use std::net::IpAddr;

/// An IP network: (family is v6, network as u128, prefix length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    v6: bool,
    net: u128,
    prefix: u8,
}

impl Cidr {
    fn parse(s: &str) -> Result<Self, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| format!("invalid address {s:?}"))?;
        let (v6, bits, max) = match ip {
            IpAddr::V4(v4) => (false, u128::from(u32::from(v4)), 32u8),
            IpAddr::V6(v6) => (true, u128::from(v6), 128u8),
        };
        let prefix = match prefix {
            None => max,
            Some(p) if p.contains('.') => {
                // dotted netmask
                let m: std::net::Ipv4Addr = p.parse().map_err(|_| format!("invalid mask {p:?}"))?;
                u32::from(m).count_ones() as u8
            }
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("invalid prefix {p:?}"))?,
        };
        Ok(Self {
            v6,
            net: bits & mask(max, prefix),
            prefix,
        })
    }

    #[cfg(test)]
    fn contains(&self, ip: IpAddr) -> bool {
        let (v6, bits, max) = match ip {
            IpAddr::V4(v4) => (false, u128::from(u32::from(v4)), 32u8),
            IpAddr::V6(v6) => (true, u128::from(v6), 128u8),
        };
        v6 == self.v6 && bits & mask(max, self.prefix) == self.net
    }
}

fn mask(max: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let full: u128 = if max == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    let shift = u32::from(max - prefix);
    (full >> shift) << shift
}

/// A set of addresses: matches if it is `any` or a positive entry matches, and no negative
/// entry matches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AddrSet {
    pos: Vec<Cidr>,
    neg: Vec<Cidr>,
    any: bool,
    /// `pos` and `neg` as sorted, merged ranges: a lookup is a binary search, not a walk of
    /// every entry (IP-reputation rules list hundreds of networks).
    pos_ranges: Ranges,
    neg_ranges: Ranges,
}

/// Address ranges per family, sorted by start and merged (no two overlap or touch).
#[derive(Debug, Clone, Default, PartialEq)]
struct Ranges {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl Ranges {
    fn build(cidrs: &[Cidr]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for c in cidrs {
            if c.v6 {
                let host = !mask(128, c.prefix);
                v6.push((c.net, c.net | host));
            } else {
                let host = !(mask(32, c.prefix) as u32);
                let net = c.net as u32;
                v4.push((net, net | host));
            }
        }
        Self {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => in_ranges(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => in_ranges(&self.v6, u128::from(v6)),
        }
    }
}

fn merge<T: Ord + Copy + num_like::Succ>(mut r: Vec<(T, T)>) -> Vec<(T, T)> {
    r.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(r.len());
    for (start, end) in r {
        if let Some(last) = out.last_mut()
            && (start <= last.1 || last.1.succ() == Some(start))
        {
            last.1 = last.1.max(end);
            continue;
        }
        out.push((start, end));
    }
    out
}

fn in_ranges<T: Ord + Copy>(r: &[(T, T)], x: T) -> bool {
    let i = r.partition_point(|&(start, _)| start <= x);
    i > 0 && r[i - 1].1 >= x
}

mod num_like {
    /// The next value, if any.
    pub(super) trait Succ: Sized {
        fn succ(self) -> Option<Self>;
    }
    impl Succ for u32 {
        fn succ(self) -> Option<Self> {
            self.checked_add(1)
        }
    }
    impl Succ for u128 {
        fn succ(self) -> Option<Self> {
            self.checked_add(1)
        }
    }
}

/// Rules by address: which rules' address lists contain an address, found with one binary
/// search (the lists are cut into elementary segments, each with the rules covering it).
#[derive(Debug, Clone, Default)]
pub struct AddrIndex {
    v4: Stab<u32>,
    v6: Stab<u128>,
}

#[derive(Debug, Clone, Default)]
struct Stab<T> {
    /// Segment `i` is `bounds[i]..bounds[i + 1]` (the last one runs to the end).
    bounds: Vec<T>,
    lists: Vec<Vec<u32>>,
}

impl<T: Ord + Copy + num_like::Succ> Stab<T> {
    fn build(items: &[((T, T), u32)]) -> Self {
        let mut bounds: Vec<T> = Vec::with_capacity(items.len() * 2);
        for &((start, end), _) in items {
            bounds.push(start);
            if let Some(n) = end.succ() {
                bounds.push(n);
            }
        }
        bounds.sort_unstable();
        bounds.dedup();
        let mut lists = vec![Vec::new(); bounds.len()];
        for &((start, end), rule) in items {
            let from = bounds.partition_point(|b| *b < start);
            let to = end
                .succ()
                .map_or(bounds.len(), |n| bounds.partition_point(|b| *b < n));
            for list in &mut lists[from..to] {
                list.push(rule);
            }
        }
        for list in &mut lists {
            list.sort_unstable();
            list.dedup();
            list.shrink_to_fit();
        }
        Self { bounds, lists }
    }

    fn get(&self, x: T) -> &[u32] {
        let i = self.bounds.partition_point(|b| *b <= x);
        if i == 0 {
            return &[];
        }
        self.lists.get(i - 1).map_or(&[], Vec::as_slice)
    }
}

/// Collects (address list, rule) pairs for an [`AddrIndex`].
#[derive(Debug, Default)]
pub struct AddrIndexBuilder {
    v4: Vec<((u32, u32), u32)>,
    v6: Vec<((u128, u128), u32)>,
}

impl AddrIndexBuilder {
    /// Indexes `rule` under every address of the positive list of `set` (a set that is `any`
    /// adds nothing).
    pub fn add(&mut self, set: &AddrSet, rule: u32) {
        if set.any {
            return;
        }
        self.v4.extend(set.pos_ranges.v4.iter().map(|r| (*r, rule)));
        self.v6.extend(set.pos_ranges.v6.iter().map(|r| (*r, rule)));
    }

    /// The index.
    pub fn build(self) -> AddrIndex {
        AddrIndex {
            v4: Stab::build(&self.v4),
            v6: Stab::build(&self.v6),
        }
    }
}

impl AddrIndex {
    /// Rules whose list contains `ip`, ascending.
    pub fn get(&self, ip: IpAddr) -> &[u32] {
        match ip {
            IpAddr::V4(v4) => self.v4.get(u32::from(v4)),
            IpAddr::V6(v6) => self.v6.get(u128::from(v6)),
        }
    }
}

impl AddrSet {
    /// How many addresses the positive list spans (`None` for `any`): the narrower side of a
    /// rule is the better one to index it by.
    pub fn span(&self) -> Option<u128> {
        if self.any {
            return None;
        }
        let v4: u128 = self
            .pos_ranges
            .v4
            .iter()
            .map(|(s, e)| u128::from(e - s) + 1)
            .sum();
        let v6 = self.pos_ranges.v6.iter().fold(0u128, |acc, (s, e)| {
            acc.saturating_add((e - s).saturating_add(1))
        });
        Some(v4.saturating_add(v6))
    }

    /// Whether `ip` is in the set.
    pub fn matches(&self, ip: IpAddr) -> bool {
        if self.neg_ranges.contains(ip) {
            return false;
        }
        self.any || self.pos_ranges.contains(ip)
    }

    /// Whether the set is plain `any`.
    pub fn is_any(&self) -> bool {
        self.any && self.neg.is_empty()
    }

    /// The addresses, when the set is a plain list of single hosts (for indexing).
    pub fn hosts(&self) -> Option<Vec<IpAddr>> {
        if self.any || self.pos.is_empty() {
            return None;
        }
        self.pos
            .iter()
            .map(|c| {
                let full = if c.v6 { 128 } else { 32 };
                if c.prefix != full {
                    return None;
                }
                Some(if c.v6 {
                    IpAddr::V6(std::net::Ipv6Addr::from(c.net))
                } else {
                    IpAddr::V4(std::net::Ipv4Addr::from(c.net as u32))
                })
            })
            .collect()
    }
}

/// A set of port ranges with the same semantics as [`AddrSet`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortSet {
    pos: Vec<(u16, u16)>,
    neg: Vec<(u16, u16)>,
    any: bool,
}

impl PortSet {
    /// Whether `port` is in the set.
    pub fn matches(&self, port: u16) -> bool {
        let inside = |r: &(u16, u16)| r.0 <= port && port <= r.1;
        if self.neg.iter().any(inside) {
            return false;
        }
        self.any || self.pos.iter().any(inside)
    }

    /// Whether the set is plain `any`.
    pub fn is_any(&self) -> bool {
        self.any && self.neg.is_empty()
    }
}

/// Address and port variables (`$HOME_NET`, `$HTTP_PORTS`).
#[derive(Debug, Clone)]
pub struct Vars {
    /// Address groups by name (without `$`).
    pub addresses: HashMap<String, String>,
    /// Port groups by name (without `$`).
    pub ports: HashMap<String, String>,
}

impl Default for Vars {
    /// Suricata's documented defaults.
    fn default() -> Self {
        let home = "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]";
        let mut addresses = HashMap::new();
        addresses.insert("HOME_NET".to_string(), home.to_string());
        addresses.insert("EXTERNAL_NET".to_string(), "!$HOME_NET".to_string());
        for v in [
            "HTTP_SERVERS",
            "SMTP_SERVERS",
            "SQL_SERVERS",
            "DNS_SERVERS",
            "TELNET_SERVERS",
            "AIM_SERVERS",
            "DC_SERVERS",
            "DNP3_SERVER",
            "DNP3_CLIENT",
            "MODBUS_CLIENT",
            "MODBUS_SERVER",
            "ENIP_CLIENT",
            "ENIP_SERVER",
        ] {
            addresses.insert(v.to_string(), "$HOME_NET".to_string());
        }
        let mut ports = HashMap::new();
        for (k, v) in [
            ("HTTP_PORTS", "80"),
            ("SHELLCODE_PORTS", "!80"),
            ("ORACLE_PORTS", "1521"),
            ("SSH_PORTS", "22"),
            ("DNP3_PORTS", "20000"),
            ("MODBUS_PORTS", "502"),
            ("FILE_DATA_PORTS", "[$HTTP_PORTS,110,143]"),
            ("FTP_PORTS", "21"),
            ("GENEVE_PORTS", "6081"),
            ("VXLAN_PORTS", "4789"),
            ("TEREDO_PORTS", "3544"),
        ] {
            ports.insert(k.to_string(), v.to_string());
        }
        Self { addresses, ports }
    }
}

/// Splits a bracketed list at top-level commas.
fn split_list(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.into_iter().filter(|x| !x.is_empty()).collect()
}

const MAX_VAR_DEPTH: u8 = 16;

/// Parses an address group.
pub fn parse_addrs(s: &str, vars: &Vars) -> Result<AddrSet, String> {
    let mut set = AddrSet::default();
    add_addrs(s.trim(), vars, false, &mut set, 0)?;
    if !set.any && set.pos.is_empty() && !set.neg.is_empty() {
        // Only negations: everything else.
        set.any = true;
    }
    if !set.any && set.pos.is_empty() {
        return Err(format!("address group {s:?} matches nothing"));
    }
    set.pos_ranges = Ranges::build(&set.pos);
    set.neg_ranges = Ranges::build(&set.neg);
    Ok(set)
}

fn add_addrs(s: &str, vars: &Vars, neg: bool, set: &mut AddrSet, depth: u8) -> Result<(), String> {
    if depth > MAX_VAR_DEPTH {
        return Err("address variables nest too deep".into());
    }
    if let Some(rest) = s.strip_prefix('!') {
        return add_addrs(rest.trim(), vars, !neg, set, depth + 1);
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        for part in split_list(inner) {
            add_addrs(part, vars, neg, set, depth + 1)?;
        }
        return Ok(());
    }
    if let Some(name) = s.strip_prefix('$') {
        let value = vars
            .addresses
            .get(name)
            .ok_or_else(|| format!("unknown address variable ${name}"))?;
        return add_addrs(value.trim(), vars, neg, set, depth + 1);
    }
    if s.eq_ignore_ascii_case("any") {
        if neg {
            return Err("negated 'any' matches nothing".into());
        }
        set.any = true;
        return Ok(());
    }
    let cidr = Cidr::parse(s)?;
    if neg {
        set.neg.push(cidr);
    } else {
        set.pos.push(cidr);
    }
    Ok(())
}

/// Parses a port group.
pub fn parse_ports(s: &str, vars: &Vars) -> Result<PortSet, String> {
    let mut set = PortSet::default();
    add_ports(s.trim(), vars, false, &mut set, 0)?;
    if !set.any && set.pos.is_empty() && !set.neg.is_empty() {
        set.any = true;
    }
    if !set.any && set.pos.is_empty() {
        return Err(format!("port group {s:?} matches nothing"));
    }
    Ok(set)
}

fn add_ports(s: &str, vars: &Vars, neg: bool, set: &mut PortSet, depth: u8) -> Result<(), String> {
    if depth > MAX_VAR_DEPTH {
        return Err("port variables nest too deep".into());
    }
    if let Some(rest) = s.strip_prefix('!') {
        return add_ports(rest.trim(), vars, !neg, set, depth + 1);
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        for part in split_list(inner) {
            add_ports(part, vars, neg, set, depth + 1)?;
        }
        return Ok(());
    }
    if let Some(name) = s.strip_prefix('$') {
        let value = vars
            .ports
            .get(name)
            .ok_or_else(|| format!("unknown port variable ${name}"))?;
        return add_ports(value.trim(), vars, neg, set, depth + 1);
    }
    if s.eq_ignore_ascii_case("any") {
        if neg {
            return Err("negated 'any' matches nothing".into());
        }
        set.any = true;
        return Ok(());
    }
    let num = |x: &str, dflt: u16| -> Result<u16, String> {
        if x.is_empty() {
            return Ok(dflt);
        }
        x.trim()
            .parse::<u16>()
            .map_err(|_| format!("invalid port {x:?}"))
    };
    let range = match s.split_once(':') {
        Some((a, b)) => (num(a, 0)?, num(b, u16::MAX)?),
        None => {
            let p = num(s, 0)?;
            (p, p)
        }
    };
    if range.0 > range.1 {
        return Err(format!("invalid port range {s:?}"));
    }
    if neg {
        set.neg.push(range);
    } else {
        set.pos.push(range);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The definition: any positive entry and no negative entry contains the address.
    fn linear(set: &AddrSet, ip: IpAddr) -> bool {
        !set.neg.iter().any(|c| c.contains(ip))
            && (set.any || set.pos.iter().any(|c| c.contains(ip)))
    }

    proptest! {
        #[test]
        fn range_lookup_agrees_with_the_entries(
            nets in proptest::collection::vec((any::<u32>(), 0u8..=32, any::<bool>()), 1..40),
            probes in proptest::collection::vec(any::<u32>(), 1..60),
        ) {
            let list: Vec<String> = nets
                .iter()
                .map(|(n, p, neg)| {
                    let ip = std::net::Ipv4Addr::from(*n);
                    format!("{}{ip}/{p}", if *neg { "!" } else { "" })
                })
                .collect();
            let Ok(set) = parse_addrs(&format!("[{}]", list.join(",")), &Vars::default()) else {
                return Ok(());
            };
            for &(n, _, _) in &nets {
                for probe in [n, n.wrapping_add(1), n.wrapping_sub(1)] {
                    let ip = IpAddr::V4(probe.into());
                    prop_assert_eq!(set.matches(ip), linear(&set, ip));
                }
            }
            for p in probes {
                let ip = IpAddr::V4(p.into());
                prop_assert_eq!(set.matches(ip), linear(&set, ip));
            }
        }
    }

    proptest! {
        #[test]
        fn the_address_index_finds_exactly_the_rules_whose_list_holds_the_address(
            rules in proptest::collection::vec(
                proptest::collection::vec((any::<u8>(), any::<u8>(), 8u8..=32), 1..6),
                1..20,
            ),
            probes in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u16>()), 1..50),
        ) {
            // Addresses drawn from a small space so that networks overlap and nest.
            let sets: Vec<AddrSet> = rules
                .iter()
                .map(|nets| {
                    let list: Vec<String> = nets
                        .iter()
                        .map(|(a, b, p)| format!("10.{}.{}.0/{p}", a % 4, b % 4))
                        .collect();
                    parse_addrs(&format!("[{}]", list.join(",")), &Vars::default()).unwrap()
                })
                .collect();
            let mut b = AddrIndexBuilder::default();
            for (i, s) in sets.iter().enumerate() {
                b.add(s, i as u32);
            }
            let index = b.build();
            for (a, c, low) in probes {
                let ip = IpAddr::V4(std::net::Ipv4Addr::new(10, a % 4, c % 4, low as u8));
                let want: Vec<u32> = sets
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.matches(ip))
                    .map(|(i, _)| i as u32)
                    .collect();
                prop_assert_eq!(index.get(ip), want.as_slice());
            }
        }
    }

    #[test]
    fn adjacent_and_nested_networks_merge() {
        let vars = Vars::default();
        let s = parse_addrs(
            "[10.0.0.0/25,10.0.0.128/25,10.0.0.5,11.0.0.0/8,!11.1.0.0/16]",
            &vars,
        )
        .unwrap();
        assert_eq!(s.pos_ranges.v4.len(), 2);
        assert!(s.matches(ip("10.0.0.200")));
        assert!(!s.matches(ip("10.0.1.0")));
        assert!(s.matches(ip("11.0.0.1")));
        assert!(!s.matches(ip("11.1.2.3")));
        assert!(s.matches(ip("11.2.0.0")));
        assert!(!s.matches(ip("::1")));
        let v6 = parse_addrs("[2001:db8::/32,::/0]", &vars).unwrap();
        assert!(v6.matches(ip("fe80::1")));
        assert!(!v6.matches(ip("1.2.3.4")));
    }

    #[test]
    fn external_net_is_not_home_net() {
        let vars = Vars::default();
        let ext = parse_addrs("$EXTERNAL_NET", &vars).unwrap();
        assert!(ext.matches(ip("8.8.8.8")));
        assert!(!ext.matches(ip("10.1.2.3")));
        let home = parse_addrs("$HOME_NET", &vars).unwrap();
        assert!(home.matches(ip("172.16.5.5")));
        assert!(!home.matches(ip("172.32.0.1")));
    }

    #[test]
    fn lists_negation_and_v6() {
        let vars = Vars::default();
        let s = parse_addrs("[1.2.3.0/24,!1.2.3.4,2001:db8::/32]", &vars).unwrap();
        assert!(s.matches(ip("1.2.3.5")));
        assert!(!s.matches(ip("1.2.3.4")));
        assert!(s.matches(ip("2001:db8::1")));
        assert!(!s.matches(ip("2001:db9::1")));
        assert!(parse_addrs("!any", &vars).is_err());
        assert!(parse_addrs("$NOPE", &vars).is_err());
        assert!(parse_addrs("1.2.3.4/33", &vars).is_err());
    }

    #[test]
    fn port_ranges_lists_and_variables() {
        let vars = Vars::default();
        let p = parse_ports("[$HTTP_PORTS,1024:,!8080]", &vars).unwrap();
        assert!(p.matches(80));
        assert!(p.matches(5000));
        assert!(!p.matches(8080));
        assert!(!p.matches(443));
        let n = parse_ports("!80", &vars).unwrap();
        assert!(n.matches(81) && !n.matches(80));
        let low = parse_ports(":1023", &vars).unwrap();
        assert!(low.matches(0) && !low.matches(1024));
        assert!(parse_ports("90:80", &vars).is_err());
        assert!(parse_ports("70000", &vars).is_err());
    }
}
