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
}

impl AddrSet {
    /// Whether `ip` is in the set.
    pub fn matches(&self, ip: IpAddr) -> bool {
        if self.neg.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.any || self.pos.iter().any(|c| c.contains(ip))
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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
