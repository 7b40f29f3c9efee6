//! Pure DHCP parsing: the BOOTP header (RFC 951 / RFC 2131) and DHCP options (RFC 2132),
//! including options carried in the `file` / `sname` fields (option 52, overload).

use std::net::Ipv4Addr;

/// Offset of the magic cookie; options follow it.
const COOKIE_AT: usize = 236;
const COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Most options kept per message.
const MAX_OPTIONS: usize = 256;

/// Errors in a DHCP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhcpError {
    /// Shorter than the fixed header and cookie.
    #[error("dhcp message too short: {0} bytes")]
    Short(usize),
    /// The op field is neither BOOTREQUEST nor BOOTREPLY.
    #[error("bootp op {0} is neither request nor reply")]
    BadOp(u8),
    /// The magic cookie is missing.
    #[error("dhcp magic cookie missing")]
    NoCookie,
}

/// A parsed DHCP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// 1: BOOTREQUEST, 2: BOOTREPLY.
    pub op: u8,
    /// Transaction id.
    pub xid: u32,
    /// `ciaddr`.
    pub client_ip: Ipv4Addr,
    /// `yiaddr`.
    pub assigned_ip: Ipv4Addr,
    /// `siaddr`.
    pub next_server_ip: Ipv4Addr,
    /// `giaddr`.
    pub relay_ip: Ipv4Addr,
    /// The first six bytes of `chaddr`.
    pub client_mac: [u8; 6],
    /// Options in order of appearance: (code, value).
    pub options: Vec<(u8, Vec<u8>)>,
}

impl Message {
    /// The value of the first option `code`.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    /// The DHCP message type (option 53).
    pub fn message_type(&self) -> Option<u8> {
        self.option(53).and_then(|v| v.first().copied())
    }
}

/// Whether `data` looks like a DHCP message (fixed header and magic cookie).
pub fn looks_like_dhcp(data: &[u8]) -> bool {
    data.len() >= COOKIE_AT + 4
        && matches!(data[0], 1 | 2)
        && data[COOKIE_AT..COOKIE_AT + 4] == COOKIE
}

fn ip_at(data: &[u8], at: usize) -> Ipv4Addr {
    let b = data.get(at..at + 4).unwrap_or(&[0; 4]);
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// Reads options from `area` into `out`; returns the overload value (option 52) if present.
fn read_options(area: &[u8], out: &mut Vec<(u8, Vec<u8>)>) -> Option<u8> {
    let mut overload = None;
    let mut at = 0;
    while at < area.len() && out.len() < MAX_OPTIONS {
        let code = area[at];
        match code {
            0 => {
                at += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let Some(&len) = area.get(at + 1) else { break };
        let end = at + 2 + usize::from(len);
        let Some(value) = area.get(at + 2..end) else {
            break;
        };
        if code == 52 {
            overload = value.first().copied();
        }
        out.push((code, value.to_vec()));
        at = end;
    }
    overload
}

/// Parses one DHCP message.
pub fn parse(data: &[u8]) -> Result<Message, DhcpError> {
    if data.len() < COOKIE_AT + 4 {
        return Err(DhcpError::Short(data.len()));
    }
    let op = data[0];
    if !matches!(op, 1 | 2) {
        return Err(DhcpError::BadOp(op));
    }
    if data[COOKIE_AT..COOKIE_AT + 4] != COOKIE {
        return Err(DhcpError::NoCookie);
    }
    let xid = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    let mut client_mac = [0u8; 6];
    client_mac.copy_from_slice(&data[28..34]);
    let mut options = Vec::new();
    let overload = read_options(&data[COOKIE_AT + 4..], &mut options);
    // RFC 2132 §9.3: 1 = `file` holds options, 2 = `sname`, 3 = both (file first).
    if let Some(o) = overload {
        if o & 1 != 0 {
            read_options(&data[108..236], &mut options);
        }
        if o & 2 != 0 {
            read_options(&data[44..108], &mut options);
        }
    }
    Ok(Message {
        op,
        xid,
        client_ip: ip_at(data, 12),
        assigned_ip: ip_at(data, 16),
        next_server_ip: ip_at(data, 20),
        relay_ip: ip_at(data, 24),
        client_mac,
        options,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A synthetic DHCPDISCOVER with the given options after the cookie, and `file` content.
    pub(crate) fn message(op: u8, options: &[u8], file: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; 240];
        m[0] = op;
        m[1] = 1;
        m[2] = 6;
        m[4..8].copy_from_slice(&0xdead_beef_u32.to_be_bytes());
        m[16..20].copy_from_slice(&[10, 0, 0, 9]);
        m[28..34].copy_from_slice(&[0, 0x11, 0x22, 0x33, 0x44, 0x55]);
        m[108..108 + file.len()].copy_from_slice(file);
        m[236..240].copy_from_slice(&COOKIE);
        m.extend_from_slice(options);
        m
    }

    #[test]
    fn header_and_options() {
        let m = parse(&message(
            2,
            &[53, 1, 5, 0, 51, 4, 0, 0, 14, 16, 255, 9, 9],
            &[],
        ))
        .unwrap();
        assert_eq!(m.op, 2);
        assert_eq!(m.xid, 0xdead_beef);
        assert_eq!(m.assigned_ip, Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(m.client_mac, [0, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert_eq!(m.message_type(), Some(5));
        assert_eq!(m.option(51), Some(&[0, 0, 14, 16][..]));
        assert_eq!(m.options.len(), 2);
    }

    #[test]
    fn overloaded_file_field_is_read() {
        let file = [3, 4, 10, 100, 0, 1, 255];
        let m = parse(&message(2, &[53, 1, 2, 52, 1, 1, 255], &file)).unwrap();
        assert_eq!(m.option(3), Some(&[10, 100, 0, 1][..]));
    }

    #[test]
    fn rejects_non_dhcp() {
        assert_eq!(parse(&[1, 2, 3]), Err(DhcpError::Short(3)));
        let mut m = message(1, &[], &[]);
        m[236] = 0;
        assert_eq!(parse(&m), Err(DhcpError::NoCookie));
        assert!(!looks_like_dhcp(&m));
        assert_eq!(parse(&message(7, &[], &[])), Err(DhcpError::BadOp(7)));
        // A truncated option ends the list without error.
        let m = parse(&message(1, &[53, 1, 1, 12, 40, 1], &[])).unwrap();
        assert_eq!(m.options.len(), 1);
    }
}
