//! Pure, lenient DNS message parsing (RFC 1035 and friends).
//!
//! A monitor must log malformed and truncated messages, so sections parse as far as they can
//! and the message carries a `truncated` flag instead of failing as a whole.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Errors that stop a DNS message from being logged at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// Fewer than 12 bytes.
    #[error("dns message shorter than its header")]
    ShortHeader,
    /// The question section is unreadable.
    #[error("dns question section is malformed")]
    BadQuestion,
}

/// A question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Query name, dotted.
    pub name: String,
    /// Query type.
    pub rtype: u16,
    /// Query class.
    pub class: u16,
    /// The name was longer than [`MAX_NAME_LEN`] and was cut.
    pub truncated: bool,
}

/// Longest name kept, in characters (as Suricata, after dnsmasq); longer ones are cut.
pub const MAX_NAME_LEN: usize = 1025;

/// Record data, decoded for the types EVE shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    /// A / AAAA.
    Addr(IpAddr),
    /// CNAME, NS, PTR, DNAME, MX exchange.
    Name(String),
    /// SOA.
    Soa {
        /// Primary name server.
        mname: String,
        /// Responsible mailbox.
        rname: String,
        /// Serial and timers.
        values: [u32; 5],
    },
    /// TXT strings.
    Txt(Vec<String>),
    /// SRV.
    Srv {
        /// Priority.
        priority: u16,
        /// Weight.
        weight: u16,
        /// Port.
        port: u16,
        /// Target.
        name: String,
    },
    /// SSHFP.
    Sshfp {
        /// Algorithm.
        algo: u8,
        /// Fingerprint type.
        fp_type: u8,
        /// Fingerprint bytes.
        fingerprint: Vec<u8>,
    },
    /// NULL: opaque bytes, written like Suricata writes bytes as a string.
    Null(String),
    /// Anything else: raw bytes.
    Raw(Vec<u8>),
}

/// Bytes as EVE text, as Suricata writes them: UTF-8 as is, otherwise ASCII bytes as
/// characters and the others as `\xNN`.
pub fn bytes_text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => b
            .iter()
            .map(|&c| {
                if c < 0x80 {
                    char::from(c).to_string()
                } else {
                    format!("\\x{c:02x}")
                }
            })
            .collect(),
    }
}

/// A resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name.
    pub name: String,
    /// Type.
    pub rtype: u16,
    /// Class.
    pub class: u16,
    /// Time to live.
    pub ttl: u32,
    /// Data.
    pub rdata: RData,
}

/// A DNS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Transaction id.
    pub id: u16,
    /// Flags word.
    pub flags: u16,
    /// Questions.
    pub questions: Vec<Question>,
    /// Answers.
    pub answers: Vec<Record>,
    /// Authority records.
    pub authorities: Vec<Record>,
    /// Additional records.
    pub additionals: Vec<Record>,
    /// Some records could not be read.
    pub truncated: bool,
    /// Bytes left after the last record counted in the header.
    pub trailing: usize,
}

impl Message {
    /// QR bit: this is a response.
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }
    /// Opcode.
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0x0f) as u8
    }
    /// Response code.
    pub fn rcode(&self) -> u8 {
        (self.flags & 0x0f) as u8
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Reads a (possibly compressed) name at `pos`; returns the name and the position after it.
pub fn read_name(msg: &[u8], pos: usize) -> Option<(String, usize)> {
    read_name_checked(msg, pos).map(|(name, at, _)| (name, at))
}

/// Like [`read_name`], also telling whether the name was cut at [`MAX_NAME_LEN`].
pub fn read_name_checked(msg: &[u8], pos: usize) -> Option<(String, usize, bool)> {
    let mut truncated = false;
    let mut name = String::new();
    let mut at = pos;
    let mut end = None;
    let mut segments = 0;
    loop {
        // At most 255 labels and pointers (as Suricata): this also ends pointer loops. Past a
        // pointer the name's end is known, so the name is kept, cut.
        segments += 1;
        if segments > 255 {
            return end.map(|after| (name, after, true));
        }
        let len = *msg.get(at)?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    let after = end.unwrap_or(at + 1);
                    return Some((name, after, truncated));
                }
                let label = msg.get(at + 1..at + 1 + usize::from(len))?;
                if !truncated {
                    if !name.is_empty() {
                        name.push('.');
                    }
                    for &c in label {
                        if c.is_ascii_graphic() {
                            name.push(char::from(c));
                        } else {
                            name.push_str(&format!("\\x{c:02x}"));
                        }
                    }
                    if name.len() > MAX_NAME_LEN {
                        // The name is ASCII (other bytes are escaped): any cut is a boundary.
                        name.truncate(MAX_NAME_LEN);
                        truncated = true;
                    }
                }
                at += 1 + usize::from(len);
            }
            0xc0 => {
                let target = usize::from(u16_at(msg, at)? & 0x3fff);
                if target >= msg.len() {
                    return None;
                }
                if target == at {
                    // A pointer to itself: the name ends here if a pointer led to it.
                    return Some((name, end?, true));
                }
                if end.is_none() {
                    end = Some(at + 2);
                }
                at = target;
            }
            _ => return None,
        }
    }
}

fn read_rdata(msg: &[u8], rtype: u16, start: usize, len: usize) -> Option<RData> {
    let data = msg.get(start..start + len)?;
    Some(match rtype {
        1 if len == 4 => RData::Addr(IpAddr::V4(Ipv4Addr::new(
            data[0], data[1], data[2], data[3],
        ))),
        28 if len == 16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(data);
            RData::Addr(IpAddr::V6(Ipv6Addr::from(o)))
        }
        2 | 5 | 12 | 39 => RData::Name(read_name(msg, start)?.0),
        15 => RData::Name(read_name(msg, start + 2)?.0),
        6 => {
            let (mname, p) = read_name(msg, start)?;
            let (rname, p) = read_name(msg, p)?;
            let mut values = [0u32; 5];
            for (k, v) in values.iter_mut().enumerate() {
                *v = u32_at(msg, p + 4 * k)?;
            }
            RData::Soa {
                mname,
                rname,
                values,
            }
        }
        16 => {
            let mut strings = Vec::new();
            let mut p = 0;
            while p < data.len() {
                let l = usize::from(data[p]);
                let s = data.get(p + 1..p + 1 + l)?;
                strings.push(bytes_text(s));
                p += 1 + l;
            }
            RData::Txt(strings)
        }
        33 => RData::Srv {
            priority: u16_at(data, 0)?,
            weight: u16_at(data, 2)?,
            port: u16_at(data, 4)?,
            name: read_name(msg, start + 6)?.0,
        },
        10 => RData::Null(bytes_text(data)),
        44 if len >= 2 => RData::Sshfp {
            algo: data[0],
            fp_type: data[1],
            fingerprint: data[2..].to_vec(),
        },
        _ => RData::Raw(data.to_vec()),
    })
}

fn read_records(msg: &[u8], pos: &mut usize, count: u16, out: &mut Vec<Record>) -> bool {
    for _ in 0..count {
        let Some((name, p)) = read_name(msg, *pos) else {
            return false;
        };
        let (Some(rtype), Some(class), Some(ttl), Some(rdlen)) = (
            u16_at(msg, p),
            u16_at(msg, p + 2),
            u32_at(msg, p + 4),
            u16_at(msg, p + 8),
        ) else {
            return false;
        };
        let start = p + 10;
        let len = usize::from(rdlen);
        if start + len > msg.len() {
            // Keep the record (as Suricata does) with empty data, then stop.
            let rdata = if rtype == 16 {
                RData::Txt(Vec::new())
            } else {
                RData::Raw(Vec::new())
            };
            out.push(Record {
                name,
                rtype,
                class,
                ttl,
                rdata,
            });
            return false;
        }
        let rdata = read_rdata(msg, rtype, start, len)
            .unwrap_or_else(|| RData::Raw(msg[start..start + len].to_vec()));
        out.push(Record {
            name,
            rtype,
            class,
            ttl,
            rdata,
        });
        *pos = start + len;
    }
    true
}

/// Parses one DNS message (without the TCP length prefix).
pub fn parse_message(msg: &[u8]) -> Result<Message, DnsError> {
    if msg.len() < 12 {
        return Err(DnsError::ShortHeader);
    }
    let count = |at| u16_at(msg, at).unwrap_or(0);
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    let mut m = Message {
        id: count(0),
        flags: count(2),
        questions: Vec::new(),
        answers: Vec::new(),
        authorities: Vec::new(),
        additionals: Vec::new(),
        truncated: false,
        trailing: 0,
    };
    let mut pos = 12;
    for _ in 0..qd {
        let (name, p, truncated) = read_name_checked(msg, pos).ok_or(DnsError::BadQuestion)?;
        let rtype = u16_at(msg, p).ok_or(DnsError::BadQuestion)?;
        let class = u16_at(msg, p + 2).ok_or(DnsError::BadQuestion)?;
        m.questions.push(Question {
            name,
            rtype,
            class,
            truncated,
        });
        pos = p + 4;
    }
    let ok = read_records(msg, &mut pos, an, &mut m.answers)
        && read_records(msg, &mut pos, ns, &mut m.authorities)
        && read_records(msg, &mut pos, ar, &mut m.additionals);
    m.truncated = !ok;
    m.trailing = msg.len().saturating_sub(pos);
    Ok(m)
}

/// Name of a record type, as EVE writes it.
pub fn rrtype_name(t: u16) -> String {
    let name = match t {
        1 => "A",
        2 => "NS",
        3 => "MD",
        4 => "MF",
        5 => "CNAME",
        6 => "SOA",
        7 => "MB",
        8 => "MG",
        9 => "MR",
        10 => "NULL",
        11 => "WKS",
        12 => "PTR",
        13 => "HINFO",
        14 => "MINFO",
        15 => "MX",
        16 => "TXT",
        17 => "RP",
        18 => "AFSDB",
        19 => "X25",
        20 => "ISDN",
        21 => "RT",
        22 => "NSAP",
        23 => "NSAPPTR",
        24 => "SIG",
        25 => "KEY",
        26 => "PX",
        27 => "GPOS",
        28 => "AAAA",
        29 => "LOC",
        31 => "EID",
        32 => "NIMLOC",
        33 => "SRV",
        34 => "ATMA",
        35 => "NAPTR",
        36 => "KX",
        37 => "CERT",
        38 => "A6",
        39 => "DNAME",
        41 => "OPT",
        42 => "APL",
        43 => "DS",
        44 => "SSHFP",
        45 => "IPSECKEY",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        49 => "DHCID",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        55 => "HIP",
        59 => "CDS",
        60 => "CDNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        256 => "URI",
        257 => "CAA",
        32768 => "TA",
        32769 => "DLV",
        _ => return t.to_string(),
    };
    name.to_string()
}

/// Name of a response code, as EVE writes it.
pub fn rcode_name(r: u8) -> String {
    let name = match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => return r.to_string(),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    // A response for example.com A with a compressed answer, built by hand.
    fn sample_response() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        m.extend_from_slice(&[
            0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 93, 184, 216, 34,
        ]);
        m
    }

    #[test]
    fn long_names_are_cut_at_1025_characters() {
        // A query for 20 labels of 63 'a' (1279 characters), as in dns-truncated-rname.
        let mut msg = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..20 {
            msg.push(63);
            msg.extend_from_slice(&[b'a'; 63]);
        }
        msg.extend_from_slice(&[0, 0, 1, 0, 1]);
        let m = parse_message(&msg).expect("valid message");
        assert_eq!(m.questions[0].name.len(), MAX_NAME_LEN);
        assert!(m.questions[0].truncated);
        assert_eq!(m.questions[0].rtype, 1);
        let short = parse_message(&msg[..12 + 64 * 2])
            .map(|m| m.questions.len())
            .unwrap_or(0);
        assert_eq!(short, 0);
    }

    #[test]
    fn null_rdata_is_text_with_escaped_high_bytes() {
        // The NULL answer of suricata-verify dns-udp-null.
        let b = b"VACKD\x03\xc5\xe9\x01";
        assert_eq!(bytes_text(b), "VACKD\u{3}\\xc5\\xe9\u{1}");
        assert_eq!(bytes_text("ví dụ".as_bytes()), "ví dụ");
    }

    #[test]
    fn response_with_compressed_answer_parses() {
        let m = parse_message(&sample_response()).unwrap();
        assert_eq!(m.id, 0x1234);
        assert!(m.is_response());
        assert_eq!(m.questions[0].name, "example.com");
        assert_eq!(m.answers[0].name, "example.com");
        assert_eq!(m.answers[0].ttl, 3600);
        assert_eq!(
            m.answers[0].rdata,
            RData::Addr("93.184.216.34".parse().unwrap())
        );
        assert!(!m.truncated);
    }

    #[test]
    fn truncated_answer_keeps_the_question() {
        let full = sample_response();
        let m = parse_message(&full[..full.len() - 3]).unwrap();
        assert_eq!(m.questions.len(), 1);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].rdata, RData::Raw(Vec::new()));
        assert!(m.truncated);
    }

    #[test]
    fn pointer_loops_are_rejected() {
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_message(&m), Err(DnsError::BadQuestion));
        // A two-pointer loop is cut after 255 segments, its end being known.
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[1, b'a', 0xc0, 20, 0, 1, 0, 1, 0xc0, 12]);
        let parsed = parse_message(&m).expect("kept");
        assert!(parsed.questions[0].truncated);
        assert!(parsed.questions[0].name.starts_with("a.a.a"));
        assert_eq!(parsed.questions[0].rtype, 1);
    }

    #[test]
    fn type_and_rcode_names() {
        assert_eq!(rrtype_name(28), "AAAA");
        assert_eq!(rrtype_name(4242), "4242");
        assert_eq!(rcode_name(3), "NXDOMAIN");
    }
}
