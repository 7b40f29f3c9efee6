//! Pure SSH parsing: identification banner (RFC 4253 §4.2) and KEXINIT for HASSH.

use crate::proto::heap::HeapSize;
use md5::{Digest, Md5};

/// Errors in an SSH banner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    /// The line does not start with `SSH-`.
    #[error("ssh banner does not start with SSH-")]
    NotSsh,
}

/// A parsed identification banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// Protocol version (`2.0`, `1.99`).
    pub proto_version: String,
    /// Software version (`OpenSSH_8.9p1`).
    pub software_version: String,
}

impl HeapSize for Banner {
    fn heap_size(&self) -> usize {
        self.proto_version.heap_size() + self.software_version.heap_size()
    }
}

/// Parses the banner line; `Ok(None)` if the line is not complete yet.
pub fn parse_banner(data: &[u8]) -> Result<Option<(Banner, usize)>, SshError> {
    if !data.starts_with(b"SSH-") && data.len() >= 4 {
        return Err(SshError::NotSsh);
    }
    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    if nl < 4 || !data.starts_with(b"SSH-") {
        return Err(SshError::NotSsh);
    }
    let line = &data[4..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    let (proto, rest) = text.split_once('-').unwrap_or((&text, ""));
    let software = rest.split(' ').next().unwrap_or("");
    Ok(Some((
        Banner {
            proto_version: proto.to_string(),
            software_version: software.to_string(),
        },
        nl + 1,
    )))
}

/// One binary packet after the banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// More bytes needed.
    Incomplete(usize),
    /// A KEXINIT: bytes used and (HASSH string, md5).
    Kexinit {
        /// Bytes used.
        used: usize,
        /// HASSH string and hash.
        hassh: (String, String),
    },
    /// A NEWKEYS of the given size: what follows in this direction is encrypted.
    NewKeys(usize),
    /// Another message of the given size.
    Other(usize),
    /// Not a plausible packet.
    Invalid,
}

/// Reads one binary packet; for KEXINIT computes HASSH
/// (`kex;ciphers;macs;compression`, client-to-server lists for HASSH, server-to-client lists
/// for HASSHServer).
pub fn parse_kexinit_packet(data: &[u8], server: bool) -> Packet {
    let Some(hdr) = data.get(..6) else {
        return Packet::Incomplete(6 - data.len());
    };
    let plen = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
    if !(5..=256 * 1024).contains(&plen) {
        return Packet::Invalid;
    }
    let total = 4 + plen;
    let Some(pkt) = data.get(..total) else {
        return Packet::Incomplete(total - data.len());
    };
    let pad = usize::from(pkt[4]);
    match pkt[5] {
        20 => {}
        21 => return Packet::NewKeys(total),
        _ => return Packet::Other(total),
    }
    let payload_end = total.saturating_sub(pad).max(6);
    let payload = &pkt[6..payload_end];
    // cookie (16) then 10 name-lists
    let mut at = 16;
    let mut lists = Vec::with_capacity(10);
    for _ in 0..10 {
        let Some(len) = payload.get(at..at + 4) else {
            return Packet::Invalid;
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let Some(s) = payload.get(at + 4..at + 4 + len) else {
            return Packet::Invalid;
        };
        lists.push(String::from_utf8_lossy(s).into_owned());
        at += 4 + len;
    }
    // kex, host key, enc c2s, enc s2c, mac c2s, mac s2c, comp c2s, comp s2c, lang c2s, lang s2c
    let k = usize::from(server);
    let string = format!(
        "{};{};{};{}",
        lists[0],
        lists[2 + k],
        lists[4 + k],
        lists[6 + k]
    );
    let hash = Md5::digest(string.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    Packet::Kexinit {
        used: total,
        hassh: (string, hex),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn banner_splits_versions() {
        let (b, used) = parse_banner(b"SSH-2.0-OpenSSH_7.4 extra\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(b.proto_version, "2.0");
        assert_eq!(b.software_version, "OpenSSH_7.4");
        assert_eq!(used, 27);
        assert_eq!(parse_banner(b"SSH-2.0-Open"), Ok(None));
        assert_eq!(parse_banner(b"HTTP/1.1"), Err(SshError::NotSsh));
    }

    /// One binary packet around `payload` (message type first), with 4 bytes of padding.
    pub(crate) fn packet(payload: &[u8]) -> Vec<u8> {
        let pad = 4u8;
        let plen = (payload.len() + 1 + usize::from(pad)) as u32;
        let mut pkt = plen.to_be_bytes().to_vec();
        pkt.push(pad);
        pkt.extend_from_slice(payload);
        pkt.extend_from_slice(&[0u8; 4]);
        pkt
    }

    /// A KEXINIT packet offering one algorithm of each kind.
    pub(crate) fn kexinit() -> Vec<u8> {
        let mut payload = vec![20u8];
        payload.extend_from_slice(&[0u8; 16]);
        let lists = [
            "kexA", "hostkey", "aes", "aes", "hmac", "hmac", "none", "none", "", "",
        ];
        for l in lists {
            payload.extend_from_slice(&(l.len() as u32).to_be_bytes());
            payload.extend_from_slice(l.as_bytes());
        }
        payload.extend_from_slice(&[0, 0, 0, 0, 0]);
        packet(&payload)
    }

    #[test]
    fn kexinit_gives_hassh() {
        let pkt = kexinit();
        let Packet::Kexinit { used, hassh } = parse_kexinit_packet(&pkt, false) else {
            panic!("not kexinit");
        };
        assert_eq!(used, pkt.len());
        assert_eq!(hassh.0, "kexA;aes;hmac;none");
        assert_eq!(hassh.1.len(), 32);
        assert_eq!(
            parse_kexinit_packet(&packet(&[21]), false),
            Packet::NewKeys(10)
        );
        assert_eq!(
            parse_kexinit_packet(&packet(&[30, 1]), false),
            Packet::Other(11)
        );
    }
}
