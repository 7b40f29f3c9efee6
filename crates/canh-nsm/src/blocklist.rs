//! Block lists for firewalls: an nftables set file, a JSON feed and a plain feed.

use crate::eve::ip_string;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

/// Why an address is listed and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEntry {
    /// Short reason (`syn_flood`, `vertical_scan`, ...).
    pub reason: String,
    /// First listing time (Unix seconds).
    pub first_seen: i64,
    /// Latest listing time (Unix seconds).
    pub last_seen: i64,
}

/// A block list: addresses with reasons, expiring `ttl_secs` after they were last seen.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockList {
    entries: BTreeMap<IpAddr, BlockEntry>,
    /// Seconds an entry stays after it was last seen.
    pub ttl_secs: i64,
    /// Entries kept at most (the oldest `last_seen` is dropped first).
    pub max_entries: usize,
    /// Entries dropped because the list was full.
    pub dropped: u64,
}

impl Default for BlockList {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            ttl_secs: 3600,
            max_entries: 100_000,
            dropped: 0,
        }
    }
}

impl BlockList {
    /// An empty list whose entries expire `ttl_secs` after they were last seen.
    pub fn with_ttl(ttl_secs: i64) -> Self {
        Self {
            ttl_secs,
            ..Self::default()
        }
    }

    /// Adds or refreshes an address.
    pub fn add(&mut self, ip: IpAddr, reason: &str, now: i64) {
        if let Some(e) = self.entries.get_mut(&ip) {
            e.last_seen = e.last_seen.max(now);
            if !e.reason.split(',').any(|r| r == reason) {
                e.reason.push(',');
                e.reason.push_str(reason);
            }
            return;
        }
        if self.entries.len() >= self.max_entries {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(ip, _)| *ip);
            if let Some(o) = oldest {
                self.entries.remove(&o);
                self.dropped += 1;
            }
        }
        self.entries.insert(
            ip,
            BlockEntry {
                reason: reason.to_string(),
                first_seen: now,
                last_seen: now,
            },
        );
    }

    /// Removes entries expired at `now`.
    pub fn expire(&mut self, now: i64) {
        let ttl = self.ttl_secs;
        self.entries.retain(|_, e| now - e.last_seen < ttl);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in address order.
    pub fn entries(&self) -> impl Iterator<Item = (&IpAddr, &BlockEntry)> {
        self.entries.iter()
    }

    fn remaining(&self, e: &BlockEntry, now: i64) -> i64 {
        (e.last_seen + self.ttl_secs - now).max(1)
    }

    /// An nftables script defining `table inet <table>` with the sets `<set>_v4` and
    /// `<set>_v6` (elements with their remaining timeout). Load it with `nft -f`; a firewall
    /// rule such as `ip saddr @<set>_v4 drop` uses it.
    pub fn to_nft(&self, table: &str, set: &str, now: i64) -> String {
        let table = sanitize(table);
        let set = sanitize(set);
        let mut out = String::new();
        let _ = writeln!(out, "# Canh block list: {} addresses", self.entries.len());
        let _ = writeln!(out, "table inet {table} {{");
        for (v6, ty) in [(false, "ipv4_addr"), (true, "ipv6_addr")] {
            let suffix = if v6 { "v6" } else { "v4" };
            let _ = writeln!(out, "\tset {set}_{suffix} {{");
            let _ = writeln!(out, "\t\ttype {ty}");
            let _ = writeln!(out, "\t\tflags timeout");
            let elems: Vec<String> = self
                .entries
                .iter()
                .filter(|(ip, _)| ip.is_ipv6() == v6)
                .map(|(ip, e)| format!("{ip} timeout {}s", self.remaining(e, now)))
                .collect();
            if !elems.is_empty() {
                let _ = writeln!(out, "\t\telements = {{ {} }}", elems.join(", "));
            }
            let _ = writeln!(out, "\t}}");
        }
        let _ = writeln!(out, "}}");
        out
    }

    /// The JSON feed: `{"generated": t, "ttl": s, "count": n, "entries": [...]}`.
    pub fn to_json(&self, now: i64) -> Value {
        let entries: Vec<Value> = self
            .entries
            .iter()
            .map(|(ip, e)| {
                json!({
                    "ip": ip_string(*ip),
                    "reason": e.reason,
                    "first_seen": e.first_seen,
                    "last_seen": e.last_seen,
                    "expires": e.last_seen + self.ttl_secs,
                })
            })
            .collect();
        json!({
            "generated": now,
            "ttl": self.ttl_secs,
            "count": entries.len(),
            "entries": entries,
        })
    }

    /// The plain feed: one address per line after a `#` comment header.
    pub fn to_plain(&self) -> String {
        let mut out = format!("# Canh block list, {} addresses\n", self.entries.len());
        for ip in self.entries.keys() {
            let _ = writeln!(out, "{ip}");
        }
        out
    }
}

/// nftables identifiers: letters, digits and `_`, starting with a letter.
fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
        s.insert(0, 'c');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_merge_reasons_and_expire() {
        let mut b = BlockList::default();
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        b.add(ip, "syn_flood", 100);
        b.add(ip, "vertical_scan", 200);
        b.add(ip, "syn_flood", 300);
        assert_eq!(b.len(), 1);
        let (_, e) = b.entries().next().unwrap();
        assert_eq!(e.reason, "syn_flood,vertical_scan");
        assert_eq!((e.first_seen, e.last_seen), (100, 300));
        b.expire(300 + 3600);
        assert!(b.is_empty());
    }

    #[test]
    fn full_list_drops_oldest() {
        let mut b = BlockList::with_ttl(60);
        b.max_entries = 2;
        for (i, ip) in ["192.0.2.1", "192.0.2.2", "192.0.2.3"].iter().enumerate() {
            b.add(ip.parse().unwrap(), "x", i as i64);
        }
        assert_eq!(b.len(), 2);
        assert_eq!(b.dropped, 1);
        assert!(!b.to_plain().contains("192.0.2.1\n"));
    }

    #[test]
    fn nft_names_are_sanitized() {
        let b = BlockList::default();
        let s = b.to_nft("1-bad name", "set;x", 0);
        assert!(s.contains("table inet c1_bad_name {"));
        assert!(s.contains("set set_x_v4 {"));
        assert!(!s.contains("elements"));
    }
}
