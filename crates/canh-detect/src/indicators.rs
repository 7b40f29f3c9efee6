//! Indicator sets (IP addresses and CIDR ranges, domains with their subdomains, URLs, file
//! hashes), loaded from plain lists or CSV files, matched by the [`crate::Engine`] in the same
//! pass as the rules.

use std::net::IpAddr;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Why an indicator file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum IndicatorError {
    /// The file could not be read.
    #[error("failed to read indicator file {path}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The CSV file has no `indicator` (or `value`) column, or is not CSV.
    #[error("invalid indicator file: {0}")]
    Invalid(String),
}

/// What an indicator is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndicatorKind {
    /// An IP address or a CIDR range.
    Ip,
    /// A domain; its subdomains match too.
    Domain,
    /// A URL, matched whole (case-insensitively).
    Url,
    /// An MD5, SHA-1 or SHA-256 file hash.
    Hash,
}

impl IndicatorKind {
    /// Parses a type name as written in CSV files and the API.
    pub fn parse(s: &str) -> Option<IndicatorKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ip" | "ipv4" | "ipv6" | "cidr" | "ip-dst" | "ip-src" | "ipv4-addr" | "ipv6-addr" => {
                Some(IndicatorKind::Ip)
            }
            "domain" | "hostname" | "domain-name" | "fqdn" => Some(IndicatorKind::Domain),
            "url" | "uri" => Some(IndicatorKind::Url),
            "hash" | "md5" | "sha1" | "sha256" | "file-hash" | "filehash" => {
                Some(IndicatorKind::Hash)
            }
            _ => None,
        }
    }

    /// The kind a value looks like.
    pub fn guess(value: &str) -> Option<IndicatorKind> {
        let v = value.trim();
        if v.is_empty() || v.contains(char::is_whitespace) {
            return None;
        }
        if parse_net(v).is_some() {
            return Some(IndicatorKind::Ip);
        }
        if v.contains("://") {
            return Some(IndicatorKind::Url);
        }
        if matches!(v.len(), 32 | 40 | 64) && v.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(IndicatorKind::Hash);
        }
        if v.contains('.')
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        {
            return Some(IndicatorKind::Domain);
        }
        None
    }
}

/// An indicator as given to [`IndicatorSet::insert`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Indicator {
    /// The value (address, range, domain, URL or hash).
    pub value: String,
    /// Its kind; guessed from the value when absent.
    #[serde(default, rename = "type")]
    pub kind: Option<IndicatorKind>,
    /// After this time the indicator no longer matches.
    #[serde(default)]
    pub expires: Option<DateTime<Utc>>,
}

/// Expiry as Unix seconds (`i64::MAX`: never).
type Exp = i64;

fn exp(e: Option<DateTime<Utc>>) -> Exp {
    e.map_or(i64::MAX, |t| t.timestamp())
}

/// A named set of indicators.
#[derive(Clone, Debug, Default)]
pub struct IndicatorSet {
    name: String,
    ips: FxHashMap<IpAddr, Exp>,
    /// CIDR ranges by (is IPv6, prefix length), keyed by the masked address.
    nets: Vec<((bool, u8), FxHashMap<u128, Exp>)>,
    domains: FxHashMap<Box<str>, Exp>,
    urls: FxHashMap<Box<str>, Exp>,
    md5: FxHashMap<[u8; 16], Exp>,
    sha1: FxHashMap<[u8; 20], Exp>,
    sha256: FxHashMap<[u8; 32], Exp>,
}

/// Counts of a set, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndicatorCounts {
    /// Addresses and ranges.
    pub ip: usize,
    /// Domains.
    pub domain: usize,
    /// URLs.
    pub url: usize,
    /// Hashes.
    pub hash: usize,
}

/// The outcome of loading indicators: how many were taken, and the refused lines.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IndicatorLoad {
    /// Indicators added.
    pub loaded: usize,
    /// (line number, reason) of each refused line.
    pub refused: Vec<(usize, String)>,
}

fn parse_net(v: &str) -> Option<(IpAddr, Option<u8>)> {
    if let Some((a, len)) = v.split_once('/') {
        let ip: IpAddr = a.trim().parse().ok()?;
        let len: u8 = len.trim().parse().ok()?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        (len <= max).then_some((ip, Some(len)))
    } else {
        v.parse::<IpAddr>().ok().map(|ip| (ip, None))
    }
}

fn ip_bits(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (false, u128::from(u32::from(v4))),
            None => (true, u128::from(a)),
        },
    }
}

fn mask(v6: bool, bits: u128, len: u8) -> u128 {
    let width = if v6 { 128 } else { 32 };
    if len == 0 {
        0
    } else {
        let shift = width - u32::from(len);
        (bits >> shift) << shift
    }
}

fn hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

fn norm_domain(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

impl IndicatorSet {
    /// An empty set named `name` (the name alerts carry).
    pub fn new(name: impl Into<String>) -> IndicatorSet {
        IndicatorSet {
            name: name.into(),
            ..IndicatorSet::default()
        }
    }

    /// The set's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds one indicator; an error says why it was refused.
    pub fn insert(&mut self, ind: &Indicator) -> Result<(), String> {
        let v = ind.value.trim();
        let kind = match ind.kind {
            Some(k) => k,
            None => IndicatorKind::guess(v)
                .ok_or_else(|| format!("cannot tell what {v:?} is; give its type"))?,
        };
        let e = exp(ind.expires);
        match kind {
            IndicatorKind::Ip => {
                let (ip, len) =
                    parse_net(v).ok_or_else(|| format!("{v:?} is not an IP address or range"))?;
                let (v6, bits) = ip_bits(ip);
                let full = if v6 { 128 } else { 32 };
                // A mapped IPv6 range is stored as its IPv4 range.
                let len = len.map(|l| {
                    if ip.is_ipv6() && !v6 {
                        l.saturating_sub(96)
                    } else {
                        l
                    }
                });
                match len {
                    None => {
                        self.ips.insert(ip_from(v6, bits), e);
                    }
                    Some(l) if l == full => {
                        self.ips.insert(ip_from(v6, bits), e);
                    }
                    Some(l) => {
                        let key = (v6, l);
                        let m = match self.nets.iter().position(|(k, _)| *k == key) {
                            Some(i) => &mut self.nets[i].1,
                            None => {
                                self.nets.push((key, FxHashMap::default()));
                                let last = self.nets.len() - 1;
                                &mut self.nets[last].1
                            }
                        };
                        m.insert(mask(v6, bits, l), e);
                    }
                }
            }
            IndicatorKind::Domain => {
                let d = norm_domain(v);
                if d.is_empty() || d.contains(char::is_whitespace) || d.contains('/') {
                    return Err(format!("{v:?} is not a domain"));
                }
                self.domains.insert(d.into(), e);
            }
            IndicatorKind::Url => {
                if !v.contains("://") {
                    return Err(format!("{v:?} is not a URL (no scheme)"));
                }
                self.urls.insert(v.to_lowercase().into(), e);
            }
            IndicatorKind::Hash => {
                let h = v.to_ascii_lowercase();
                let ok = match h.len() {
                    32 => hex::<16>(&h).map(|b| self.md5.insert(b, e)).is_some(),
                    40 => hex::<20>(&h).map(|b| self.sha1.insert(b, e)).is_some(),
                    64 => hex::<32>(&h).map(|b| self.sha256.insert(b, e)).is_some(),
                    _ => false,
                };
                if !ok {
                    return Err(format!("{v:?} is not an MD5, SHA-1 or SHA-256 hash"));
                }
            }
        }
        Ok(())
    }

    /// Adds indicators from a plain list: one per line, `#` comments, optionally followed by
    /// whitespace and an expiry (RFC 3339 or `YYYY-MM-DD`).
    pub fn add_list(&mut self, text: &str) -> IndicatorLoad {
        let mut out = IndicatorLoad::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let value = parts.next().unwrap_or_default();
            let expires = match parts.next() {
                Some(t) => match parse_time(t) {
                    Some(t) => Some(t),
                    None => {
                        out.refused.push((n + 1, format!("bad expiry {t:?}")));
                        continue;
                    }
                },
                None => None,
            };
            let ind = Indicator {
                value: value.to_owned(),
                kind: None,
                expires,
            };
            match self.insert(&ind) {
                Ok(()) => out.loaded += 1,
                Err(e) => out.refused.push((n + 1, e)),
            }
        }
        out
    }

    /// Adds indicators from CSV with a header row: an `indicator` (or `value`) column, and
    /// optional `type` and `expires` columns.
    pub fn add_csv(&mut self, text: &str) -> Result<IndicatorLoad, IndicatorError> {
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let headers = rdr
            .headers()
            .map_err(|e| IndicatorError::Invalid(e.to_string()))?
            .clone();
        let col = |names: &[&str]| {
            headers
                .iter()
                .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
        };
        let Some(vcol) = col(&["indicator", "value", "ioc"]) else {
            return Err(IndicatorError::Invalid(
                "CSV header has no 'indicator' or 'value' column".into(),
            ));
        };
        let tcol = col(&["type", "kind"]);
        let ecol = col(&["expires", "expiry", "valid_until"]);
        let mut out = IndicatorLoad::default();
        for (n, rec) in rdr.records().enumerate() {
            let line = n + 2;
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    out.refused.push((line, e.to_string()));
                    continue;
                }
            };
            let value = rec.get(vcol).unwrap_or_default();
            let kind = match tcol.and_then(|c| rec.get(c)).filter(|t| !t.is_empty()) {
                Some(t) => match IndicatorKind::parse(t) {
                    Some(k) => Some(k),
                    None => {
                        out.refused.push((line, format!("unknown type {t:?}")));
                        continue;
                    }
                },
                None => None,
            };
            let expires = match ecol.and_then(|c| rec.get(c)).filter(|t| !t.is_empty()) {
                Some(t) => match parse_time(t) {
                    Some(t) => Some(t),
                    None => {
                        out.refused.push((line, format!("bad expiry {t:?}")));
                        continue;
                    }
                },
                None => None,
            };
            let ind = Indicator {
                value: value.to_owned(),
                kind,
                expires,
            };
            match self.insert(&ind) {
                Ok(()) => out.loaded += 1,
                Err(e) => out.refused.push((line, e)),
            }
        }
        Ok(out)
    }

    /// Loads a file: CSV when its name ends in `.csv`, a plain list otherwise. The set is
    /// named after the file's stem.
    pub fn load_file(path: &Path) -> Result<(IndicatorSet, IndicatorLoad), IndicatorError> {
        let text = std::fs::read_to_string(path).map_err(|source| IndicatorError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "indicators".into());
        let mut set = IndicatorSet::new(name);
        let load = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            set.add_csv(&text)?
        } else {
            set.add_list(&text)
        };
        Ok((set, load))
    }

    /// Counts by kind.
    pub fn counts(&self) -> IndicatorCounts {
        IndicatorCounts {
            ip: self.ips.len() + self.nets.iter().map(|(_, m)| m.len()).sum::<usize>(),
            domain: self.domains.len(),
            url: self.urls.len(),
            hash: self.md5.len() + self.sha1.len() + self.sha256.len(),
        }
    }

    /// How many indicators the set holds.
    pub fn len(&self) -> usize {
        let c = self.counts();
        c.ip + c.domain + c.url + c.hash
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes indicators that expired before `now`; returns how many.
    pub fn prune(&mut self, now: DateTime<Utc>) -> usize {
        let t = now.timestamp();
        let before = self.len();
        self.ips.retain(|_, e| *e >= t);
        for (_, m) in &mut self.nets {
            m.retain(|_, e| *e >= t);
        }
        self.domains.retain(|_, e| *e >= t);
        self.urls.retain(|_, e| *e >= t);
        self.md5.retain(|_, e| *e >= t);
        self.sha1.retain(|_, e| *e >= t);
        self.sha256.retain(|_, e| *e >= t);
        before - self.len()
    }

    /// Tests one text (lower-cased) of a field of `kind`; returns the indicator that matched.
    pub(crate) fn test(&self, kind: IndicatorKind, lower: &str, now: i64) -> Option<String> {
        let live = |e: &Exp| *e >= now;
        match kind {
            IndicatorKind::Ip => {
                let ip = parse_net(lower.trim()).filter(|(_, l)| l.is_none())?.0;
                let (v6, bits) = ip_bits(ip);
                let canon = ip_from(v6, bits);
                if self.ips.get(&canon).is_some_and(live) {
                    return Some(canon.to_string());
                }
                for ((nv6, len), m) in &self.nets {
                    if *nv6 == v6 && m.get(&mask(v6, bits, *len)).is_some_and(live) {
                        return Some(format!("{}/{len}", ip_from(v6, mask(v6, bits, *len))));
                    }
                }
                None
            }
            IndicatorKind::Domain => {
                let mut d = lower.trim().trim_end_matches('.');
                loop {
                    if self.domains.get(d).is_some_and(live) {
                        return Some(d.to_owned());
                    }
                    d = d.split_once('.')?.1;
                }
            }
            IndicatorKind::Url => {
                let u = lower.trim();
                if self.urls.get(u).is_some_and(live) {
                    return Some(u.to_owned());
                }
                let t = u.trim_end_matches('/');
                self.urls.get(t).filter(|e| live(e)).map(|_| t.to_owned())
            }
            IndicatorKind::Hash => {
                // `SHA1=…,MD5=…,SHA256=…` (Sysmon) or a bare hash.
                for tok in lower.split([',', ';', ' ']) {
                    let h = tok.rsplit('=').next().unwrap_or_default().trim();
                    let hit = match h.len() {
                        32 => hex::<16>(h)
                            .and_then(|b| self.md5.get(&b))
                            .is_some_and(live),
                        40 => hex::<20>(h)
                            .and_then(|b| self.sha1.get(&b))
                            .is_some_and(live),
                        64 => hex::<32>(h)
                            .and_then(|b| self.sha256.get(&b))
                            .is_some_and(live),
                        _ => false,
                    };
                    if hit {
                        return Some(h.to_owned());
                    }
                }
                None
            }
        }
    }
}

fn ip_from(v6: bool, bits: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(bits.into())
    } else {
        IpAddr::V4(u32::try_from(bits).unwrap_or(0).into())
    }
}

/// Event fields checked for each kind of indicator (ECS names, and the Windows/Sysmon
/// fields as stored).
pub const INDICATOR_FIELDS: &[(&str, IndicatorKind)] = &[
    ("source.ip", IndicatorKind::Ip),
    ("destination.ip", IndicatorKind::Ip),
    ("client.ip", IndicatorKind::Ip),
    ("server.ip", IndicatorKind::Ip),
    ("related.ip", IndicatorKind::Ip),
    ("dns.answers.data", IndicatorKind::Ip),
    ("winlog.event_data.SourceIp", IndicatorKind::Ip),
    ("winlog.event_data.DestinationIp", IndicatorKind::Ip),
    ("winlog.event_data.IpAddress", IndicatorKind::Ip),
    ("winlog.event_data.SourceAddress", IndicatorKind::Ip),
    ("winlog.event_data.DestAddress", IndicatorKind::Ip),
    ("winlog.event_data.ClientAddress", IndicatorKind::Ip),
    ("dns.question.name", IndicatorKind::Domain),
    ("url.domain", IndicatorKind::Domain),
    ("destination.domain", IndicatorKind::Domain),
    ("source.domain", IndicatorKind::Domain),
    ("server.domain", IndicatorKind::Domain),
    ("tls.client.server_name", IndicatorKind::Domain),
    ("winlog.event_data.QueryName", IndicatorKind::Domain),
    (
        "winlog.event_data.DestinationHostname",
        IndicatorKind::Domain,
    ),
    ("url.full", IndicatorKind::Url),
    ("url.original", IndicatorKind::Url),
    ("file.hash.md5", IndicatorKind::Hash),
    ("file.hash.sha1", IndicatorKind::Hash),
    ("file.hash.sha256", IndicatorKind::Hash),
    ("process.hash.md5", IndicatorKind::Hash),
    ("process.hash.sha1", IndicatorKind::Hash),
    ("process.hash.sha256", IndicatorKind::Hash),
    ("winlog.event_data.Hashes", IndicatorKind::Hash),
    ("winlog.event_data.Hash", IndicatorKind::Hash),
];

/// An event field that matched an indicator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndicatorMatch {
    /// The indicator set's name.
    pub set: String,
    /// What kind of indicator matched.
    pub kind: IndicatorKind,
    /// The event field that matched.
    pub field: String,
    /// The indicator (as stored: lower-cased; a range for CIDR hits).
    pub indicator: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> i64 {
        Utc::now().timestamp()
    }

    #[test]
    fn ips_ranges_domains_urls_and_hashes_match() {
        let mut s = IndicatorSet::new("t");
        let load = s.add_list(
            "# comment\n10.1.2.3\n192.168.0.0/16\n2001:db8::/32\nevil.example\n\
             http://x.test/a\nd41d8cd98f00b204e9800998ecf8427e\nnot an indicator\n",
        );
        assert_eq!(load.loaded, 6);
        assert_eq!(load.refused.len(), 1);
        assert_eq!(
            s.test(IndicatorKind::Ip, "10.1.2.3", now()).as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(
            s.test(IndicatorKind::Ip, "192.168.44.1", now()).as_deref(),
            Some("192.168.0.0/16")
        );
        assert!(
            s.test(IndicatorKind::Ip, "::ffff:192.168.1.1", now())
                .is_some()
        );
        assert!(s.test(IndicatorKind::Ip, "2001:db8::5", now()).is_some());
        assert!(s.test(IndicatorKind::Ip, "10.1.2.4", now()).is_none());
        assert!(
            s.test(IndicatorKind::Domain, "a.b.evil.example", now())
                .is_some()
        );
        assert!(
            s.test(IndicatorKind::Domain, "evil.example.", now())
                .is_some()
        );
        assert!(
            s.test(IndicatorKind::Domain, "notevil.example", now())
                .is_none()
        );
        assert!(
            s.test(IndicatorKind::Url, "http://x.test/a/", now())
                .is_some()
        );
        assert!(
            s.test(
                IndicatorKind::Hash,
                "sha1=00,md5=d41d8cd98f00b204e9800998ecf8427e,imphash=11",
                now()
            )
            .is_some()
        );
    }

    #[test]
    fn csv_with_types_and_expiry_and_pruning() {
        let mut s = IndicatorSet::new("t");
        let load = s
            .add_csv(
                "indicator,type,expires\n1.2.3.4,ip,2000-01-01\nbad.example,domain,\n\
                 x,hash,\n5.6.7.8,weird,\n",
            )
            .unwrap();
        assert_eq!(load.loaded, 2);
        assert_eq!(load.refused.len(), 2);
        // Expired: kept until pruned, but never matches.
        assert!(s.test(IndicatorKind::Ip, "1.2.3.4", now()).is_none());
        assert!(
            s.test(IndicatorKind::Domain, "bad.example", now())
                .is_some()
        );
        assert_eq!(s.prune(Utc::now()), 1);
        assert_eq!(s.len(), 1);
        assert!(s.add_csv("foo,bar\n1,2\n").is_err());
    }

    proptest::proptest! {
        #[test]
        fn loading_any_text_never_panics(t in ".{0,300}") {
            let mut s = IndicatorSet::new("p");
            let a = s.add_list(&t);
            let _ = s.add_csv(&t);
            for k in [IndicatorKind::Ip, IndicatorKind::Domain, IndicatorKind::Url,
                      IndicatorKind::Hash] {
                let _ = s.test(k, &t, 0);
            }
            proptest::prop_assert!(a.loaded <= t.lines().count());
        }
    }
}
