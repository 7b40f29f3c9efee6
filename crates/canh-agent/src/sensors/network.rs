//! Network connections with their owning process, from `/proc/net/{tcp,tcp6,udp,udp6}` and
//! the socket inodes under `/proc/PID/fd`.
//!
//! Polling sees connections that live at least one interval; short ones are missed (the
//! eBPF sensor, when built, closes that gap). A connection is reported once, when first seen.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use canh_core::Event;

use super::base_event;
use super::procinfo::Enricher;

/// TCP state `ESTABLISHED`.
pub const TCP_ESTABLISHED: u8 = 0x01;
/// TCP state `LISTEN`.
pub const TCP_LISTEN: u8 = 0x0A;

/// One socket line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SocketEntry {
    /// `tcp` or `udp`.
    pub transport: &'static str,
    /// Local address.
    pub local: (IpAddr, u16),
    /// Remote address.
    pub remote: (IpAddr, u16),
    /// Kernel state code.
    pub state: u8,
    /// Owner uid.
    pub uid: u32,
    /// Socket inode.
    pub inode: u64,
}

fn parse_addr(s: &str) -> Option<(IpAddr, u16)> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        // The kernel prints the address as native-endian 32-bit words.
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.to_ne_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            let v6 = Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some((ip, port))
}

/// Parses one `/proc/net/{tcp,udp}{,6}` table.
pub fn parse_table(text: &str, transport: &'static str) -> Vec<SocketEntry> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(SocketEntry {
                transport,
                local: parse_addr(f.get(1)?)?,
                remote: parse_addr(f.get(2)?)?,
                state: u8::from_str_radix(f.get(3)?, 16).ok()?,
                uid: f.get(7)?.parse().ok()?,
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// All TCP and UDP sockets of the host.
pub fn snapshot(proc_root: &Path) -> Vec<SocketEntry> {
    let mut out = Vec::new();
    for (file, transport) in [
        ("tcp", "tcp"),
        ("tcp6", "tcp"),
        ("udp", "udp"),
        ("udp6", "udp"),
    ] {
        if let Ok(text) = std::fs::read_to_string(proc_root.join("net").join(file)) {
            out.extend(parse_table(&text, transport));
        }
    }
    out
}

/// Socket inode → owning pid, from `/proc/*/fd`.
pub fn inode_owners(proc_root: &Path) -> HashMap<u64, u32> {
    let mut map = HashMap::new();
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return map;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']'))
                && let Ok(inode) = inode.parse()
            {
                map.entry(inode).or_insert(pid);
            }
        }
    }
    map
}

/// (socket inode, local, remote).
type ConnKey = (u64, (IpAddr, u16), (IpAddr, u16));

/// Tracks established connections between polls.
#[derive(Debug, Default)]
pub struct ConnectionTracker {
    seen: HashSet<ConnKey>,
}

impl ConnectionTracker {
    /// Events for connections not seen in the previous poll.
    pub fn poll(&mut self, host: &str, proc_root: &Path, enricher: &Enricher) -> Vec<Event> {
        let sockets = snapshot(proc_root);
        let listening: HashSet<u16> = sockets
            .iter()
            .filter(|s| s.transport == "tcp" && s.state == TCP_LISTEN)
            .map(|s| s.local.1)
            .collect();
        let current: Vec<&SocketEntry> = sockets
            .iter()
            .filter(|s| s.transport == "tcp" && s.state == TCP_ESTABLISHED && s.inode != 0)
            .collect();
        let keys: HashSet<_> = current
            .iter()
            .map(|s| (s.inode, s.local, s.remote))
            .collect();
        let fresh: Vec<&&SocketEntry> = current
            .iter()
            .filter(|s| !self.seen.contains(&(s.inode, s.local, s.remote)))
            .collect();
        self.seen = keys;
        if fresh.is_empty() {
            return Vec::new();
        }
        let owners = inode_owners(proc_root);
        fresh
            .into_iter()
            .map(|s| {
                let mut ev = base_event(host, "network", "network", "start");
                ev.set("event.action", "connection-established");
                ev.set("source.ip", s.local.0.to_string());
                ev.set("source.port", s.local.1);
                ev.set("destination.ip", s.remote.0.to_string());
                ev.set("destination.port", s.remote.1);
                ev.set("network.transport", s.transport);
                ev.set(
                    "network.type",
                    if s.local.0.is_ipv4() { "ipv4" } else { "ipv6" },
                );
                let inbound = listening.contains(&s.local.1);
                ev.set(
                    "network.direction",
                    if inbound { "ingress" } else { "egress" },
                );
                ev.set("user.id", s.uid.to_string());
                ev.set_opt("user.name", enricher.user_name(s.uid));
                if let Some(pid) = owners.get(&s.inode) {
                    enricher.process_fields(&mut ev, proc_root, *pid);
                }
                ev
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A2C4 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 23456 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn ipv4_table_parses_addresses_state_uid_inode() {
        let t = parse_table(TCP, "tcp");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].local, ("127.0.0.1".parse().unwrap(), 8080));
        assert_eq!(t[0].state, TCP_LISTEN);
        assert_eq!(t[1].remote, ("127.0.0.1".parse().unwrap(), 8080));
        assert_eq!(t[1].uid, 1000);
        assert_eq!(t[1].inode, 23456);
    }

    #[test]
    fn ipv6_addresses_parse() {
        // ::1 port 22 as the kernel prints it on little-endian machines.
        let (ip, port) = parse_addr("00000000000000000000000001000000:0016").unwrap();
        assert_eq!(port, 22);
        assert_eq!(ip, "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_real_loopback_connection_is_reported_once_with_its_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let enricher = Enricher::default();
        let mut tracker = ConnectionTracker::default();
        tracker.poll("h", Path::new("/proc"), &enricher);
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server_side, _) = listener.accept().unwrap();
        let evs = tracker.poll("h", Path::new("/proc"), &enricher);
        let mine: Vec<_> = evs
            .iter()
            .filter(|e| e.get("destination.port").and_then(|v| v.as_u64()) == Some(u64::from(port)))
            .collect();
        assert_eq!(mine.len(), 1, "{evs:?}");
        assert_eq!(
            mine[0].get("process.pid").and_then(|v| v.as_u64()),
            Some(u64::from(std::process::id()))
        );
        assert_eq!(mine[0].get_str("network.direction"), Some("egress"));
        let again = tracker.poll("h", Path::new("/proc"), &enricher);
        assert!(
            !again.iter().any(
                |e| e.get("destination.port").and_then(|v| v.as_u64()) == Some(u64::from(port))
            )
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,400}") {
            prop_assert!(parse_table(&s, "tcp").len() <= s.lines().count());
        }
    }
}
