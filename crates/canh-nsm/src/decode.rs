//! Packet decoding: link layer, VLAN, IPv4/IPv6, TCP, UDP, ICMP, GRE and VXLAN.
//!
//! Hand-written because it is the hot path: no allocation per packet, and every malformed
//! header becomes an [`Anomaly`] (Suricata decoder event names) instead of an error or a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A packet time: seconds since the Unix epoch and microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub secs: i64,
    /// Microseconds, below 1,000,000.
    pub usecs: u32,
}

impl Timestamp {
    /// Builds a timestamp, carrying microseconds above one second into seconds.
    pub fn new(secs: i64, usecs: u32) -> Self {
        Self {
            secs: secs.saturating_add(i64::from(usecs / 1_000_000)),
            usecs: usecs % 1_000_000,
        }
    }

    /// Microseconds since the epoch.
    pub fn as_micros(&self) -> i64 {
        self.secs
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(self.usecs))
    }

    /// EVE form: `2009-11-24T21:27:09.534255+0000`.
    pub fn to_eve(&self) -> String {
        use chrono::{Datelike, Timelike};
        let Some(dt) = chrono::DateTime::from_timestamp(self.secs, self.usecs * 1000)
            .filter(|d| (0..=9999).contains(&d.year()))
        else {
            return "1970-01-01T00:00:00.000000+0000".to_string();
        };
        // Written digit by digit: chrono's `format` parses its pattern on every call, and
        // every EVE record carries one or more timestamps.
        let mut b = *b"0000-00-00T00:00:00.000000+0000";
        let mut put = |at: usize, width: usize, mut v: u32| {
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, dt.year().unsigned_abs());
        put(5, 2, dt.month());
        put(8, 2, dt.day());
        put(11, 2, dt.hour());
        put(14, 2, dt.minute());
        put(17, 2, dt.second());
        put(20, 6, self.usecs % 1_000_000);
        b.iter().map(|&c| char::from(c)).collect()
    }
}

/// Link types Canh decodes (pcap `LINKTYPE_*` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// 1: Ethernet II.
    Ethernet,
    /// 0: BSD loopback (4-byte address family, host byte order).
    Null,
    /// 101/12/14: raw IP, version taken from the first nibble.
    Raw,
    /// 228: raw IPv4.
    Ipv4,
    /// 229: raw IPv6.
    Ipv6,
    /// 113: Linux cooked capture v1.
    LinuxSll,
    /// 276: Linux cooked capture v2.
    LinuxSll2,
    /// 104: Cisco HDLC.
    CiscoHdlc,
    /// Anything else (counted, not decoded).
    Unsupported(i32),
}

impl LinkType {
    /// Maps a pcap/pcapng link type number.
    pub fn from_dlt(dlt: i32) -> Self {
        match dlt {
            1 => Self::Ethernet,
            0 | 108 => Self::Null,
            101 | 12 | 14 => Self::Raw,
            228 => Self::Ipv4,
            229 => Self::Ipv6,
            113 => Self::LinuxSll,
            276 => Self::LinuxSll2,
            104 => Self::CiscoHdlc,
            other => Self::Unsupported(other),
        }
    }
}

/// A decoder anomaly, named as Suricata names its decoder events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anomaly {
    /// Event name, e.g. `decoder.ipv4.trunc_pkt`.
    pub event: &'static str,
}

const fn anomaly(event: &'static str) -> Anomaly {
    Anomaly { event }
}

/// IPv4 fragment information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragInfo {
    /// Identification (IPv4 16 bits, IPv6 32 bits).
    pub id: u32,
    /// Offset of this fragment's payload in bytes.
    pub offset: u32,
    /// More fragments follow.
    pub more: bool,
}

/// The network layer of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ip<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Transport protocol number (after IPv6 extension headers).
    pub proto: u8,
    /// Time to live / hop limit.
    pub ttl: u8,
    /// Transport bytes (bounded by the IP total length).
    pub payload: &'a [u8],
    /// Set for fragments.
    pub frag: Option<FragInfo>,
}

/// VLAN layers decoded (as Suricata: three).
pub const MAX_VLANS: usize = 3;

/// Ethernet header addresses of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EtherAddrs {
    /// Source MAC.
    pub src: [u8; 6],
    /// Destination MAC.
    pub dst: [u8; 6],
    /// EtherType of the Ethernet header (before any VLAN tag is removed).
    pub ether_type: u16,
}

/// Link-layer facts kept with the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkInfo {
    /// VLAN ids, outermost first (QinQ gives two; up to three layers are decoded).
    pub vlans: [u16; MAX_VLANS],
    /// How many entries of `vlans` are valid.
    pub vlan_count: u8,
    /// Ethernet addresses, for Ethernet frames.
    pub ether: Option<EtherAddrs>,
}

impl LinkInfo {
    /// The VLAN ids seen.
    pub fn vlan_ids(&self) -> &[u16] {
        &self.vlans[..usize::from(self.vlan_count).min(MAX_VLANS)]
    }
}

/// Result of decoding a frame down to the network layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// An IP packet.
    Ip(LinkInfo, Ip<'a>),
    /// Not IP (ARP, LLDP, ...): counted only.
    NotIp,
}

/// Decodes a captured frame of the given link type to the IP layer.
pub fn decode_frame(link: LinkType, data: &[u8]) -> Result<Frame<'_>, Anomaly> {
    let mut info = LinkInfo::default();
    match link {
        LinkType::Ethernet => decode_ethernet(data, &mut info),
        LinkType::Raw => decode_ip_any(data, &mut info),
        LinkType::Ipv4 => decode_ipv4(data).map(|ip| Frame::Ip(info, ip)),
        LinkType::Ipv6 => decode_ipv6(data).map(|ip| Frame::Ip(info, ip)),
        LinkType::Null => {
            let body = data.get(4..).ok_or(anomaly("decoder.null.pkt_too_small"))?;
            decode_ip_any(body, &mut info)
        }
        LinkType::LinuxSll => {
            let hdr = data.get(..16).ok_or(anomaly("decoder.sll.pkt_too_small"))?;
            let ethertype = u16::from_be_bytes([hdr[14], hdr[15]]);
            decode_ethertype(ethertype, &data[16..], &mut info)
        }
        LinkType::LinuxSll2 => {
            let hdr = data
                .get(..20)
                .ok_or(anomaly("decoder.sll2.pkt_too_small"))?;
            let ethertype = u16::from_be_bytes([hdr[0], hdr[1]]);
            decode_ethertype(ethertype, &data[20..], &mut info)
        }
        LinkType::CiscoHdlc => {
            let hdr = data
                .get(..4)
                .ok_or(anomaly("decoder.chdlc.pkt_too_small"))?;
            let ethertype = u16::from_be_bytes([hdr[2], hdr[3]]);
            decode_ethertype(ethertype, &data[4..], &mut info)
        }
        LinkType::Unsupported(_) => Ok(Frame::NotIp),
    }
}

/// Decodes an Ethernet frame (used for the link layer and for GRE/VXLAN inner frames).
pub fn decode_ethernet<'a>(data: &'a [u8], info: &mut LinkInfo) -> Result<Frame<'a>, Anomaly> {
    let hdr = data
        .get(..14)
        .ok_or(anomaly("decoder.ethernet.pkt_too_small"))?;
    let ethertype = u16::from_be_bytes([hdr[12], hdr[13]]);
    let mut dst = [0u8; 6];
    let mut src = [0u8; 6];
    dst.copy_from_slice(&hdr[..6]);
    src.copy_from_slice(&hdr[6..12]);
    info.ether = Some(EtherAddrs {
        src,
        dst,
        ether_type: ethertype,
    });
    decode_ethertype(ethertype, &data[14..], info)
}

fn decode_ethertype<'a>(
    mut ethertype: u16,
    mut body: &'a [u8],
    info: &mut LinkInfo,
) -> Result<Frame<'a>, Anomaly> {
    // VLAN tags: 802.1Q, 802.1ad (QinQ) and the legacy 0x9100.
    let mut depth = 0;
    while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
        depth += 1;
        if depth > MAX_VLANS {
            return Err(anomaly("decoder.vlan.too_many_layers"));
        }
        let tag = body
            .get(..4)
            .ok_or(anomaly("decoder.vlan.header_too_small"))?;
        let id = u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff;
        if usize::from(info.vlan_count) < info.vlans.len() {
            info.vlans[usize::from(info.vlan_count)] = id;
            info.vlan_count += 1;
        }
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        body = &body[4..];
    }
    match ethertype {
        0x0800 => decode_ipv4(body).map(|ip| Frame::Ip(*info, ip)),
        0x86dd => decode_ipv6(body).map(|ip| Frame::Ip(*info, ip)),
        0x894f => decode_nsh(body, info),
        _ => Ok(Frame::NotIp),
    }
}

/// Decodes a Network Service Header (RFC 8300) and the packet it carries.
fn decode_nsh<'a>(data: &'a [u8], info: &mut LinkInfo) -> Result<Frame<'a>, Anomaly> {
    let hdr = data
        .get(..8)
        .ok_or(anomaly("decoder.nsh.header_too_small"))?;
    if hdr[0] >> 6 != 0 {
        return Err(anomaly("decoder.nsh.unsupported_version"));
    }
    // Version (2 bits), O, U, TTL (6 bits), length in 4-byte words (6 bits).
    let len = usize::from(hdr[1] & 0x3f) * 4;
    let md_type = hdr[2] & 0x0f;
    if len < 8 || (md_type == 1 && len != 24) {
        return Err(anomaly("decoder.nsh.bad_header_length"));
    }
    let inner = data
        .get(len..)
        .ok_or(anomaly("decoder.nsh.bad_header_length"))?;
    match hdr[3] {
        1 => decode_ipv4(inner).map(|ip| Frame::Ip(*info, ip)),
        2 => decode_ipv6(inner).map(|ip| Frame::Ip(*info, ip)),
        3 => decode_ethernet(inner, info),
        _ => Ok(Frame::NotIp),
    }
}

fn decode_ip_any<'a>(data: &'a [u8], info: &mut LinkInfo) -> Result<Frame<'a>, Anomaly> {
    match data.first().map(|b| b >> 4) {
        Some(4) => decode_ipv4(data).map(|ip| Frame::Ip(*info, ip)),
        Some(6) => decode_ipv6(data).map(|ip| Frame::Ip(*info, ip)),
        Some(_) => Err(anomaly("decoder.ipraw.invalid_ip_version")),
        None => Err(anomaly("decoder.ipv4.pkt_too_small")),
    }
}

/// Decodes an IPv4 header.
pub fn decode_ipv4(data: &[u8]) -> Result<Ip<'_>, Anomaly> {
    let hdr = data
        .get(..20)
        .ok_or(anomaly("decoder.ipv4.pkt_too_small"))?;
    if hdr[0] >> 4 != 4 {
        return Err(anomaly("decoder.ipv4.wrong_ip_version"));
    }
    let hlen = usize::from(hdr[0] & 0x0f) * 4;
    if hlen < 20 {
        return Err(anomaly("decoder.ipv4.hlen_too_small"));
    }
    let total = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    if total < hlen {
        return Err(anomaly("decoder.ipv4.iplen_smaller_than_hlen"));
    }
    if data.len() < hlen {
        return Err(anomaly("decoder.ipv4.trunc_pkt"));
    }
    // Frames may carry Ethernet padding past the IP length; captures may be cut short (snaplen).
    let end = total.min(data.len());
    let flags_frag = u16::from_be_bytes([hdr[6], hdr[7]]);
    let more = flags_frag & 0x2000 != 0;
    let offset = u32::from(flags_frag & 0x1fff) * 8;
    let frag = (more || offset != 0).then_some(FragInfo {
        id: u32::from(u16::from_be_bytes([hdr[4], hdr[5]])),
        offset,
        more,
    });
    Ok(Ip {
        src: IpAddr::V4(Ipv4Addr::new(hdr[12], hdr[13], hdr[14], hdr[15])),
        dst: IpAddr::V4(Ipv4Addr::new(hdr[16], hdr[17], hdr[18], hdr[19])),
        proto: hdr[9],
        ttl: hdr[8],
        payload: &data[hlen..end],
        frag,
    })
}

/// Decodes an IPv6 header and its extension headers.
pub fn decode_ipv6(data: &[u8]) -> Result<Ip<'_>, Anomaly> {
    let hdr = data
        .get(..40)
        .ok_or(anomaly("decoder.ipv6.pkt_too_small"))?;
    if hdr[0] >> 4 != 6 {
        return Err(anomaly("decoder.ipv6.wrong_ip_version"));
    }
    let plen = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
    let end = (40 + plen).min(data.len());
    let mut src = [0u8; 16];
    src.copy_from_slice(&hdr[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&hdr[24..40]);
    let mut next = hdr[6];
    let mut pos = 40usize;
    let mut frag = None;
    for _ in 0..8 {
        match next {
            // hop-by-hop, routing, destination options, mobility
            0 | 43 | 60 | 135 => {
                let ext = data
                    .get(pos..pos + 2)
                    .filter(|_| pos + 2 <= end)
                    .ok_or(anomaly("decoder.ipv6.trunc_exthdr"))?;
                let len = (usize::from(ext[1]) + 1) * 8;
                if pos + len > end {
                    return Err(anomaly("decoder.ipv6.trunc_exthdr"));
                }
                next = ext[0];
                pos += len;
            }
            44 => {
                let ext = data
                    .get(pos..pos + 8)
                    .filter(|_| pos + 8 <= end)
                    .ok_or(anomaly("decoder.ipv6.trunc_exthdr"))?;
                let off_flags = u16::from_be_bytes([ext[2], ext[3]]);
                let offset = u32::from(off_flags >> 3) * 8;
                let more = off_flags & 1 != 0;
                let id = u32::from_be_bytes([ext[4], ext[5], ext[6], ext[7]]);
                next = ext[0];
                pos += 8;
                // An atomic fragment (offset 0, no more) is a whole packet.
                if more || offset != 0 {
                    frag = Some(FragInfo { id, offset, more });
                    break;
                }
            }
            51 => {
                let ext = data
                    .get(pos..pos + 2)
                    .filter(|_| pos + 2 <= end)
                    .ok_or(anomaly("decoder.ipv6.trunc_exthdr"))?;
                let len = (usize::from(ext[1]) + 2) * 4;
                if pos + len > end {
                    return Err(anomaly("decoder.ipv6.trunc_exthdr"));
                }
                next = ext[0];
                pos += len;
            }
            _ => break,
        }
    }
    Ok(Ip {
        src: IpAddr::V6(Ipv6Addr::from(src)),
        dst: IpAddr::V6(Ipv6Addr::from(dst)),
        proto: next,
        ttl: hdr[7],
        payload: data.get(pos..end).unwrap_or(&[]),
        frag,
    })
}

/// TCP flag bits.
pub mod tcp_flags {
    /// FIN
    pub const FIN: u8 = 0x01;
    /// SYN
    pub const SYN: u8 = 0x02;
    /// RST
    pub const RST: u8 = 0x04;
    /// PSH
    pub const PSH: u8 = 0x08;
    /// ACK
    pub const ACK: u8 = 0x10;
    /// URG
    pub const URG: u8 = 0x20;
    /// ECE
    pub const ECE: u8 = 0x40;
    /// CWR
    pub const CWR: u8 = 0x80;
}

/// A decoded TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcp<'a> {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags byte (see [`tcp_flags`]).
    pub flags: u8,
    /// Receive window.
    pub window: u16,
    /// Segment payload.
    pub payload: &'a [u8],
}

/// The transport layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport<'a> {
    /// TCP.
    Tcp(Tcp<'a>),
    /// UDP.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Datagram payload.
        payload: &'a [u8],
    },
    /// ICMP (v4 or v6).
    Icmp {
        /// ICMPv6 rather than ICMPv4.
        v6: bool,
        /// Type.
        itype: u8,
        /// Code.
        code: u8,
        /// Rest of the message.
        payload: &'a [u8],
    },
    /// GRE: the protocol type and the encapsulated bytes.
    Gre {
        /// Ethertype of the payload.
        ethertype: u16,
        /// Encapsulated bytes.
        payload: &'a [u8],
    },
    /// SCTP: ports only (chunks are not decoded).
    Sctp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// ESP: the security parameters index (the rest is encrypted).
    Esp {
        /// SPI.
        spi: u32,
    },
    /// Other IP protocols, tracked as flows without ports.
    Other,
}

/// Decodes the transport layer of an IP packet.
pub fn decode_transport(proto: u8, data: &[u8]) -> Result<Transport<'_>, Anomaly> {
    match proto {
        6 => {
            let hdr = data.get(..20).ok_or(anomaly("decoder.tcp.pkt_too_small"))?;
            let hlen = usize::from(hdr[12] >> 4) * 4;
            if hlen < 20 {
                return Err(anomaly("decoder.tcp.hlen_too_small"));
            }
            if data.len() < hlen {
                return Err(anomaly("decoder.tcp.invalid_optlen"));
            }
            Ok(Transport::Tcp(Tcp {
                sport: u16::from_be_bytes([hdr[0], hdr[1]]),
                dport: u16::from_be_bytes([hdr[2], hdr[3]]),
                seq: u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]),
                ack: u32::from_be_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]),
                flags: hdr[13],
                window: u16::from_be_bytes([hdr[14], hdr[15]]),
                payload: &data[hlen..],
            }))
        }
        17 => {
            let hdr = data.get(..8).ok_or(anomaly("decoder.udp.pkt_too_small"))?;
            let len = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
            if len != 0 && len < 8 {
                return Err(anomaly("decoder.udp.hlen_invalid"));
            }
            // len 0 is allowed for IPv6 jumbograms; otherwise trust the shorter of both.
            let end = if len == 0 {
                data.len()
            } else {
                len.min(data.len())
            };
            Ok(Transport::Udp {
                sport: u16::from_be_bytes([hdr[0], hdr[1]]),
                dport: u16::from_be_bytes([hdr[2], hdr[3]]),
                payload: &data[8..end],
            })
        }
        1 | 58 => {
            let hdr = data.get(..4).ok_or(if proto == 1 {
                anomaly("decoder.icmpv4.pkt_too_small")
            } else {
                anomaly("decoder.icmpv6.pkt_too_small")
            })?;
            Ok(Transport::Icmp {
                v6: proto == 58,
                itype: hdr[0],
                code: hdr[1],
                payload: &data[4..],
            })
        }
        47 => decode_gre(data),
        132 => {
            let hdr = data
                .get(..12)
                .ok_or(anomaly("decoder.sctp.pkt_too_small"))?;
            Ok(Transport::Sctp {
                sport: u16::from_be_bytes([hdr[0], hdr[1]]),
                dport: u16::from_be_bytes([hdr[2], hdr[3]]),
            })
        }
        50 => {
            let hdr = data.get(..8).ok_or(anomaly("decoder.esp.pkt_too_small"))?;
            Ok(Transport::Esp {
                spi: u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]),
            })
        }
        _ => Ok(Transport::Other),
    }
}

fn decode_gre(data: &[u8]) -> Result<Transport<'_>, Anomaly> {
    let hdr = data.get(..4).ok_or(anomaly("decoder.gre.pkt_too_small"))?;
    let flags = hdr[0];
    let version = hdr[1] & 0x07;
    let ethertype = u16::from_be_bytes([hdr[2], hdr[3]]);
    if version != 0 {
        // Version 1 is PPTP's enhanced GRE: not decoded further.
        return Ok(Transport::Other);
    }
    let mut len = 4;
    if flags & 0x80 != 0 || flags & 0x40 != 0 {
        len += 4; // checksum + reserved (present if C or R)
    }
    if flags & 0x20 != 0 {
        len += 4; // key
    }
    if flags & 0x10 != 0 {
        len += 4; // sequence
    }
    let payload = data
        .get(len..)
        .ok_or(anomaly("decoder.gre.pkt_too_small"))?;
    // ERSPAN type II (0x88be) carries an 8-byte header before the Ethernet frame.
    if ethertype == 0x88be {
        let inner = payload
            .get(8..)
            .ok_or(anomaly("decoder.erspan.pkt_too_small"))?;
        return Ok(Transport::Gre {
            ethertype: 0x6558,
            payload: inner,
        });
    }
    Ok(Transport::Gre { ethertype, payload })
}

/// VXLAN's default UDP port.
pub const VXLAN_PORT: u16 = 4789;

/// Decodes a VXLAN header; returns the inner Ethernet frame if the header is valid.
pub fn decode_vxlan(payload: &[u8]) -> Option<&[u8]> {
    let hdr = payload.get(..8)?;
    // The I flag must be set; the reserved fields must be zero.
    if hdr[0] & 0x08 == 0 || hdr[7] != 0 {
        return None;
    }
    payload.get(8..).filter(|inner| inner.len() >= 14)
}

/// Teredo's UDP port.
pub const TEREDO_PORT: u16 = 3544;

/// Decodes a Teredo payload (RFC 4380): optional authentication and origin indication
/// headers, then an IPv6 packet. Returns the IPv6 bytes if they look valid.
pub fn decode_teredo(payload: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    if payload.get(..2) == Some(&[0, 1]) {
        // authentication header: id length, auth length, nonce (8), confirmation (1)
        let id_len = usize::from(*payload.get(2)?);
        let auth_len = usize::from(*payload.get(3)?);
        at += 4 + id_len + auth_len + 9;
    }
    if payload.get(at..at + 2) == Some(&[0, 0]) {
        at += 8; // origin indication
    }
    let inner = payload.get(at..)?;
    let ip = decode_ipv6(inner).ok()?;
    // The declared payload length must match what the datagram carries.
    let declared = usize::from(u16::from_be_bytes([inner[4], inner[5]]));
    (declared + 40 == inner.len() && ip.src != ip.dst).then_some(inner)
}

/// Geneve's UDP port (RFC 8926).
pub const GENEVE_PORT: u16 = 6081;

/// Decodes a Geneve header (RFC 8926): version 0, options, then the inner frame of the given
/// protocol type. Returns the protocol type and the inner bytes.
pub fn decode_geneve(payload: &[u8]) -> Option<(u16, &[u8])> {
    let hdr = payload.get(..8)?;
    if hdr[0] >> 6 != 0 {
        return None;
    }
    let opt_len = usize::from(hdr[0] & 0x3f) * 4;
    let proto = u16::from_be_bytes([hdr[2], hdr[3]]);
    if !matches!(proto, 0x6558 | 0x0800 | 0x86dd) {
        return None;
    }
    let inner = payload.get(8 + opt_len..)?;
    (!inner.is_empty()).then_some((proto, inner))
}

/// Decodes the inner packet of a GRE tunnel.
pub fn decode_gre_inner(ethertype: u16, payload: &[u8]) -> Result<Frame<'_>, Anomaly> {
    let mut info = LinkInfo::default();
    match ethertype {
        0x6558 => decode_ethernet(payload, &mut info),
        other => decode_ethertype(other, payload, &mut info),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geneve_header_gives_the_inner_frame() {
        // Version 0, one 4-byte option, Ethernet payload, VNI 10.
        let mut g = vec![0x01, 0x00, 0x65, 0x58, 0, 0, 0x0a, 0, 1, 2, 3, 4];
        g.extend_from_slice(&[0xaa; 14]);
        let (proto, inner) = decode_geneve(&g).expect("valid Geneve");
        assert_eq!(proto, 0x6558);
        assert_eq!(inner, &[0xaa; 14]);
        g[0] = 0x40; // version 1
        assert_eq!(decode_geneve(&g), None);
        assert_eq!(decode_geneve(&g[..7]), None);
        let arp = [0x00, 0x00, 0x08, 0x06, 0, 0, 0x0a, 0, 1];
        assert_eq!(decode_geneve(&arp), None);
    }

    #[test]
    fn nsh_md_types_1_and_2_carry_ipv4() {
        // Frames of suricata-verify decode-nsh-type1 and decode-nsh-type2.
        let ip = "45000022284440004011e96a0a0000010a000002cc99ccf0000e0000646174610a0a";
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let eth = "525400000001525400000002894f";
        let type1 = hex(&format!(
            "{eth}0006010100000102000000010000000200000003000000044{}",
            &ip[1..]
        ));
        let type2 = hex(&format!("{eth}00020201000001024{}", &ip[1..]));
        for frame in [type1, type2] {
            let Ok(Frame::Ip(_, ip)) = decode_frame(LinkType::Ethernet, &frame) else {
                panic!("not decoded");
            };
            assert_eq!(ip.src.to_string(), "10.0.0.1");
            assert_eq!(ip.proto, 17);
        }
        let bad = hex(&format!("{eth}40020201"));
        assert!(decode_frame(LinkType::Ethernet, &bad).is_err());
    }

    #[test]
    fn esp_header_gives_the_spi() {
        // ESP header of suricata-verify eve-flow-esp: SPI 123, sequence 1, then ciphertext.
        let esp = [0, 0, 0, 0x7b, 0, 0, 0, 1, 0xde, 0xad];
        assert_eq!(decode_transport(50, &esp), Ok(Transport::Esp { spi: 123 }));
        assert_eq!(
            decode_transport(50, &esp[..7]).map_err(|a| a.event),
            Err("decoder.esp.pkt_too_small")
        );
    }

    fn ipv4_udp(payload: &[u8]) -> Vec<u8> {
        let total = 20 + 8 + payload.len();
        let mut p = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            1,
            0,
            0,
            64,
            17,
            0,
            0,
        ];
        p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        let ulen = 8 + payload.len();
        p.extend_from_slice(&[0x30, 0x39, 0, 53, (ulen >> 8) as u8, ulen as u8, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn three_vlan_layers_are_kept_and_a_fourth_is_refused() {
        // As in suricata-verify eve-flow-vlan-02: tags 1, 10, 100.
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x01, 0x81, 0x00, 0x00, 0x0a]);
        frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x64, 0x08, 0x00]);
        frame.extend_from_slice(&ipv4_udp(b"abc"));
        let Ok(Frame::Ip(info, _)) = decode_frame(LinkType::Ethernet, &frame) else {
            panic!("not decoded");
        };
        assert_eq!(info.vlan_ids(), &[1, 10, 100]);
        let ether = info.ether.expect("ethernet addresses");
        assert_eq!(ether.ether_type, 0x8100);
        let mut four = frame[..12].to_vec();
        four.extend_from_slice(&[0x81, 0x00, 0x00, 0x02]);
        four.extend_from_slice(&frame[12..]);
        assert_eq!(
            decode_frame(LinkType::Ethernet, &four).map_err(|a| a.event),
            Err("decoder.vlan.too_many_layers")
        );
    }

    #[test]
    fn ethernet_qinq_ipv4_udp_decodes() {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0xc8, 0x08, 0x00]);
        frame.extend_from_slice(&ipv4_udp(b"abc"));
        let Ok(Frame::Ip(info, ip)) = decode_frame(LinkType::Ethernet, &frame) else {
            panic!("not decoded");
        };
        assert_eq!(info.vlan_ids(), &[100, 200]);
        assert_eq!(ip.src.to_string(), "10.0.0.1");
        let Ok(Transport::Udp {
            sport,
            dport,
            payload,
        }) = decode_transport(ip.proto, ip.payload)
        else {
            panic!("not udp");
        };
        assert_eq!((sport, dport, payload), (12345, 53, &b"abc"[..]));
    }

    #[test]
    fn truncated_ipv4_is_an_anomaly() {
        let frame = ipv4_udp(b"abc");
        assert_eq!(
            decode_frame(LinkType::Raw, &frame[..10]),
            Err(Anomaly {
                event: "decoder.ipv4.pkt_too_small"
            })
        );
    }

    #[test]
    fn ipv6_fragment_header_is_reported() {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 44, 64];
        p.extend_from_slice(&[0u8; 32]);
        p.extend_from_slice(&[17, 0, 0x00, 0x01, 0, 0, 0, 7]);
        p.extend_from_slice(&[0u8; 8]);
        let ip = decode_ipv6(&p).unwrap();
        assert_eq!(ip.proto, 17);
        assert_eq!(
            ip.frag,
            Some(FragInfo {
                id: 7,
                offset: 0,
                more: true
            })
        );
    }

    #[test]
    fn eve_timestamp_format_matches_suricata() {
        assert_eq!(
            Timestamp::new(1_259_098_029, 534_255).to_eve(),
            "2009-11-24T21:27:09.534255+0000"
        );
        assert_eq!(
            Timestamp::new(-1, 0).to_eve(),
            "1969-12-31T23:59:59.000000+0000"
        );
    }

    proptest::proptest! {
        #[test]
        fn eve_timestamp_agrees_with_chrono(secs in -62_000_000_000i64..253_000_000_000, usecs in 0u32..1_000_000) {
            let dt = chrono::DateTime::from_timestamp(secs, usecs * 1000).expect("in range");
            let want = dt.format("%Y-%m-%dT%H:%M:%S%.6f+0000").to_string();
            proptest::prop_assert_eq!(Timestamp::new(secs, usecs).to_eve(), want);
        }
    }
}
