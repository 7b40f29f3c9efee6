//! Pure TLS helpers: extension lists, fingerprints (JA3, JA3S, JA4), certificate fields.

use crate::proto::heap::HeapSize;
use md5::{Digest as _, Md5};
use sha2::Sha256;

/// GREASE values (RFC 8701) are ignored by every fingerprint.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// One extension: type and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext<'a> {
    /// Extension type.
    pub ty: u16,
    /// Extension data.
    pub data: &'a [u8],
}

/// Splits a raw extensions block (without its length prefix). Stops at the first truncation.
pub fn split_extensions(mut raw: &[u8]) -> Vec<Ext<'_>> {
    let mut out = Vec::new();
    while raw.len() >= 4 {
        let ty = u16::from_be_bytes([raw[0], raw[1]]);
        let len = usize::from(u16::from_be_bytes([raw[2], raw[3]]));
        let Some(data) = raw.get(4..4 + len) else {
            break;
        };
        out.push(Ext { ty, data });
        raw = &raw[4 + len..];
    }
    out
}

fn u16_list(data: &[u8], len_bytes: usize) -> Vec<u16> {
    let len = match len_bytes {
        1 => data.first().map(|b| usize::from(*b)),
        _ => data
            .get(..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))),
    };
    let Some(len) = len else {
        return Vec::new();
    };
    let body = data.get(len_bytes..len_bytes + len).unwrap_or(&[]);
    body.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

/// Facts of a ClientHello needed for logging and fingerprints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// Legacy version field.
    pub version: u16,
    /// Cipher suites in order.
    pub ciphers: Vec<u16>,
    /// Extension types in order.
    pub exts: Vec<u16>,
    /// Supported groups (extension 10).
    pub groups: Vec<u16>,
    /// EC point formats (extension 11).
    pub point_formats: Vec<u8>,
    /// Signature algorithms (extension 13).
    pub sig_algs: Vec<u16>,
    /// Supported versions (extension 43).
    pub versions: Vec<u16>,
    /// Server name (extension 0).
    pub sni: Option<String>,
    /// ALPN protocols (extension 16).
    pub alpns: Vec<String>,
    /// Session id offered for resumption.
    pub session_id: Vec<u8>,
    /// Sent in the SSLv2 record format (no extensions, no JA3).
    pub sslv2: bool,
}

impl HeapSize for ClientHello {
    fn heap_size(&self) -> usize {
        self.ciphers.heap_size()
            + self.exts.heap_size()
            + self.groups.heap_size()
            + self.point_formats.heap_size()
            + self.sig_algs.heap_size()
            + self.versions.heap_size()
            + self.sni.heap_size()
            + self.alpns.heap_size()
            + self.session_id.heap_size()
    }
}

impl HeapSize for CertInfo {
    fn heap_size(&self) -> usize {
        self.subject.heap_size()
            + self.issuer.heap_size()
            + self.serial.heap_size()
            + self.fingerprint.heap_size()
            + self.not_before.heap_size()
            + self.not_after.heap_size()
            + self.alt_names.heap_size()
    }
}

impl HeapSize for ServerHello {
    fn heap_size(&self) -> usize {
        self.session_id.heap_size() + self.exts.heap_size() + self.raw_exts.heap_size()
    }
}

fn alpn_list(data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(body) = data.get(2..) else {
        return out;
    };
    let mut p = 0;
    while p < body.len() {
        let l = usize::from(body[p]);
        let Some(s) = body.get(p + 1..p + 1 + l) else {
            break;
        };
        out.push(String::from_utf8_lossy(s).into_owned());
        p += 1 + l;
    }
    out
}

fn sni_name(data: &[u8]) -> Option<String> {
    // list length (2), type (1), name length (2), name
    let len = usize::from(u16::from_be_bytes([*data.get(3)?, *data.get(4)?]));
    let name = data.get(5..5 + len)?;
    Some(String::from_utf8_lossy(name).into_owned())
}

impl ClientHello {
    /// Builds it from the parsed hello parts.
    pub fn new(version: u16, ciphers: Vec<u16>, raw_exts: Option<&[u8]>) -> Self {
        let mut ch = ClientHello {
            version,
            ciphers,
            ..Self::default()
        };
        for e in split_extensions(raw_exts.unwrap_or(&[])) {
            ch.exts.push(e.ty);
            match e.ty {
                0 => ch.sni = sni_name(e.data),
                10 => ch.groups = u16_list(e.data, 2),
                11 => {
                    let n = e.data.first().map_or(0, |b| usize::from(*b));
                    ch.point_formats = e.data.get(1..1 + n).unwrap_or(&[]).to_vec();
                }
                13 => ch.sig_algs = u16_list(e.data, 2),
                16 => ch.alpns = alpn_list(e.data),
                43 => ch.versions = u16_list(e.data, 1),
                _ => {}
            }
        }
        ch
    }

    /// JA3 string and md5.
    pub fn ja3(&self) -> (String, String) {
        let s = format!(
            "{},{},{},{},{}",
            self.version,
            join_dec(&self.ciphers),
            join_dec(&self.exts),
            join_dec(&self.groups),
            self.point_formats
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("-")
        );
        let h = hex(&Md5::digest(s.as_bytes()));
        (s, h)
    }

    /// JA4 (TLS over TCP).
    pub fn ja4(&self) -> String {
        let version = self
            .versions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .max()
            .unwrap_or(self.version);
        let ver = match version {
            0x0304 => "13",
            0x0303 => "12",
            0x0302 => "11",
            0x0301 => "10",
            0x0300 => "s3",
            0x0200 => "s2",
            0x0100 => "s1",
            0xfeff => "d1",
            0xfefd => "d2",
            0xfefc => "d3",
            _ => "00",
        };
        let sni = if self.exts.contains(&0) { 'd' } else { 'i' };
        let ciphers: Vec<u16> = self
            .ciphers
            .iter()
            .copied()
            .filter(|c| !is_grease(*c))
            .collect();
        let exts: Vec<u16> = self
            .exts
            .iter()
            .copied()
            .filter(|e| !is_grease(*e))
            .collect();
        let alpn = match self.alpns.first() {
            Some(a) if !a.is_empty() => {
                let b = a.as_bytes();
                let (f, l) = (b[0], b[b.len() - 1]);
                if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
                    format!("{}{}", char::from(f), char::from(l))
                } else {
                    let hf = format!("{f:02x}");
                    let hl = format!("{l:02x}");
                    format!("{}{}", &hf[..1], &hl[1..])
                }
            }
            _ => "00".to_string(),
        };
        let a = format!(
            "t{ver}{sni}{:02}{:02}{alpn}",
            ciphers.len().min(99),
            exts.len().min(99)
        );
        let mut sorted_c = ciphers;
        sorted_c.sort_unstable();
        let b = trunc_sha(&join_hex(&sorted_c), sorted_c.is_empty());
        let mut sorted_e: Vec<u16> = exts.into_iter().filter(|e| *e != 0 && *e != 16).collect();
        sorted_e.sort_unstable();
        let sigs: Vec<u16> = self
            .sig_algs
            .iter()
            .copied()
            .filter(|s| !is_grease(*s))
            .collect();
        let mut c_in = join_hex(&sorted_e);
        if !sigs.is_empty() {
            c_in.push('_');
            c_in.push_str(&join_hex(&sigs));
        }
        let c = trunc_sha(&c_in, sorted_e.is_empty());
        format!("{a}_{b}_{c}")
    }
}

fn trunc_sha(input: &str, empty: bool) -> String {
    if empty {
        return "000000000000".to_string();
    }
    hex(&Sha256::digest(input.as_bytes()))[..12].to_string()
}

fn join_dec(v: &[u16]) -> String {
    v.iter()
        .filter(|x| !is_grease(**x))
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("-")
}

fn join_hex(v: &[u16]) -> String {
    v.iter()
        .map(|x| format!("{x:04x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// JA3S string and md5 from a ServerHello.
pub fn ja3s(version: u16, cipher: u16, raw_exts: Option<&[u8]>) -> (String, String) {
    let exts: Vec<u16> = split_extensions(raw_exts.unwrap_or(&[]))
        .iter()
        .map(|e| e.ty)
        .collect();
    let s = format!("{version},{cipher},{}", join_dec(&exts));
    let h = hex(&Md5::digest(s.as_bytes()));
    (s, h)
}

/// The version chosen by a ServerHello (supported_versions wins over the legacy field).
pub fn server_version(version: u16, raw_exts: Option<&[u8]>) -> u16 {
    for e in split_extensions(raw_exts.unwrap_or(&[])) {
        if e.ty == 43 && e.data.len() >= 2 {
            return u16::from_be_bytes([e.data[0], e.data[1]]);
        }
    }
    legacy_version(version)
}

/// ALPN protocols of a ServerHello.
pub fn server_alpns(raw_exts: Option<&[u8]>) -> Vec<String> {
    split_extensions(raw_exts.unwrap_or(&[]))
        .iter()
        .find(|e| e.ty == 16)
        .map(|e| alpn_list(e.data))
        .unwrap_or_default()
}

/// Marker version for TLS 1.3 drafts before 16, whose exact draft cannot be told apart.
pub const TLS13_PRE_DRAFT16: u16 = 0x7f01;

fn known_version(v: u16) -> bool {
    (0x0300..=0x0304).contains(&v) || v >> 8 == 0x7f
}

/// Normalises a hello's legacy version field: 0x0304 there (and drafts 1 to 15) means an
/// early TLS 1.3 draft, as real TLS 1.3 puts 0x0303 there and the version in an extension.
pub fn legacy_version(v: u16) -> u16 {
    if v == 0x0304 || (0x7f01..0x7f10).contains(&v) {
        TLS13_PRE_DRAFT16
    } else {
        v
    }
}

impl ClientHello {
    /// The version the client asks for: the first known entry of supported_versions, else
    /// the legacy field.
    pub fn offered_version(&self) -> u16 {
        self.versions
            .iter()
            .copied()
            .find(|v| known_version(*v))
            .unwrap_or_else(|| legacy_version(self.version))
    }
}

/// Parses an SSLv2-format ClientHello message (after the 2-byte record header): type 1,
/// version, cipher-spec/session-id/challenge lengths, then 3-byte cipher specs.
pub fn parse_sslv2_client_hello(msg: &[u8]) -> Option<ClientHello> {
    if *msg.first()? != 1 {
        return None;
    }
    let be =
        |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?])) };
    let version = be(1)?;
    let spec_len = usize::from(be(3)?);
    let sid_len = usize::from(be(5)?);
    let specs = msg.get(9..9 + spec_len)?;
    let session_id = msg.get(9 + spec_len..9 + spec_len + sid_len)?.to_vec();
    // Only specs whose first byte is zero name a TLS cipher suite.
    let ciphers = specs
        .chunks_exact(3)
        .filter(|c| c[0] == 0)
        .map(|c| u16::from_be_bytes([c[1], c[2]]))
        .collect();
    Some(ClientHello {
        version,
        ciphers,
        session_id,
        sslv2: true,
        ..ClientHello::default()
    })
}

/// EVE name of a TLS version.
pub fn version_name(v: u16) -> String {
    match v {
        0x0200 => "SSLv2".to_string(),
        0x0300 => "SSLv3".to_string(),
        0x0301 => "TLSv1".to_string(),
        0x0302 => "TLS 1.1".to_string(),
        0x0303 => "TLS 1.2".to_string(),
        0x0304 => "TLS 1.3".to_string(),
        v if v >> 8 == 0x7f && (v & 0xff) < 16 => "TLS 1.3 draft-<16".to_string(),
        v if v >> 8 == 0x7f => format!("TLS 1.3 draft-{}", v & 0xff),
        _ => "UNDETERMINED".to_string(),
    }
}

/// Certificate fields EVE logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial, uppercase hex bytes joined by `:`.
    pub serial: String,
    /// SHA-1 of the DER, lowercase hex joined by `:`.
    pub fingerprint: String,
    /// Validity start, `YYYY-MM-DDTHH:MM:SS`.
    pub not_before: String,
    /// Validity end.
    pub not_after: String,
    /// DNS names of the subjectAltName extension.
    pub alt_names: Vec<String>,
}

/// Facts of a ServerHello.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerHello {
    /// Legacy version field.
    pub version: u16,
    /// Session id echoed or assigned by the server.
    pub session_id: Vec<u8>,
    /// Chosen cipher suite.
    pub cipher: u16,
    /// Extension types in order.
    pub exts: Vec<u16>,
    /// Raw extensions block.
    pub raw_exts: Vec<u8>,
}

/// Parses a ServerHello body (after the 4-byte handshake header). Handles TLS 1.3 drafts
/// before 22, whose ServerHello has no session id and no compression method.
pub fn parse_server_hello(body: &[u8]) -> Option<ServerHello> {
    let version = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
    let mut at = 34; // version + random
    // Drafts before 22 announce themselves (0x7fNN, or 0x0304 for drafts before 16) in the
    // legacy field; their ServerHello has no session id and no compression method.
    let old_draft = version == 0x0304 || (version >> 8 == 0x7f && (version & 0xff) < 22);
    let mut session_id = Vec::new();
    if !old_draft {
        let sid_len = usize::from(*body.get(at)?);
        session_id = body.get(at + 1..at + 1 + sid_len)?.to_vec();
        at += 1 + sid_len;
    }
    let cipher = u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]);
    at += 2;
    if !old_draft {
        at += 1; // compression method
    }
    let mut raw_exts = Vec::new();
    if let Some(len) = body.get(at..at + 2) {
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        raw_exts = body
            .get(at + 2..at + 2 + len)
            .unwrap_or(&body[at + 2..])
            .to_vec();
    }
    let exts = split_extensions(&raw_exts).iter().map(|e| e.ty).collect();
    Some(ServerHello {
        version,
        session_id,
        cipher,
        exts,
        raw_exts,
    })
}

fn iso(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Reads the fields of a DER certificate.
pub fn cert_info(der: &[u8]) -> Option<CertInfo> {
    use sha1::{Digest as _, Sha1};
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let serial: Vec<String> = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let fp: Vec<String> = Sha1::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut alt_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                alt_names.push((*n).to_string());
            }
        }
    }
    Some(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: serial.join(":"),
        fingerprint: fp.join(":"),
        not_before: iso(cert.validity().not_before.timestamp()),
        not_after: iso(cert.validity().not_after.timestamp()),
        alt_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grease_values_are_recognised() {
        assert!(is_grease(0x0a0a));
        assert!(is_grease(0xfafa));
        assert!(!is_grease(0x0a1a));
        assert!(!is_grease(0x1301));
    }

    #[test]
    fn ja3_skips_grease_and_joins_fields() {
        let mut exts = Vec::new();
        for (ty, data) in [
            (0x0a0a_u16, &b""[..]),
            (0, &b"\x00\x0e\x00\x00\x0bexample.com"[..]),
            (10, &b"\x00\x04\x0a\x0a\x00\x1d"[..]),
            (11, &b"\x01\x00"[..]),
        ] {
            exts.extend_from_slice(&ty.to_be_bytes());
            exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
            exts.extend_from_slice(data);
        }
        let ch = ClientHello::new(0x0303, vec![0x2a2a, 0x1301, 0xc02f], Some(&exts));
        assert_eq!(ch.sni.as_deref(), Some("example.com"));
        let (s, h) = ch.ja3();
        assert_eq!(s, "771,4865-49199,0-10-11,29,0");
        assert_eq!(h.len(), 32);
        let ja4 = ch.ja4();
        assert!(ja4.starts_with("t12d0203"), "{ja4}");
    }

    #[test]
    fn sslv2_client_hello_from_a_real_capture_is_parsed() {
        // SSLv2-framed ClientHello offering TLS 1.0 (suricata-verify tls-glupteba, packet 4).
        let rec = hex_bytes(
            "808001030100570000002000003900003800003500001600001300000a0700c00000330000320000\
             2f00009a0000990000960300800000050000040100800000150000120000090600400000140000\
             110000080000060400800000030200800000fff2b458f22ebe9d236438685ae34adfe4cec58fab\
             a3d0c4a1b1a1c18047274b3c",
        );
        let ch = parse_sslv2_client_hello(&rec[2..]).expect("valid SSLv2 hello");
        assert!(ch.sslv2);
        assert_eq!(ch.version, 0x0301);
        assert_eq!(ch.offered_version(), 0x0301);
        assert_eq!(&ch.ciphers[..3], &[0x39, 0x38, 0x35]);
        assert!(ch.ciphers.contains(&0x00ff));
        assert!(ch.session_id.is_empty());
        assert_eq!(parse_sslv2_client_hello(&rec[2..20]), None);
        assert_eq!(parse_sslv2_client_hello(&[2, 3, 1]), None);
    }

    #[test]
    fn draft14_server_hello_without_session_id_is_pre_draft16() {
        // ServerHello of a TLS 1.3 draft-14 server: legacy version 0x0304, no session id,
        // no compression method (suricata-verify tls13-draft14, packet 6).
        let rec = hex_bytes(
            "16030100730200006f03042393b6518b8dd3d7ae957155977935932a6f5e600e5b7d9774daa7bc2f\
             2cbcc3c02b00490028004500170041042dd0952da464b93202b067c846029914097c1887d6d068d3\
             53f8bea91988051990f726f1f2739d87d6f7e63b2bd045d19d6940e75fe8ae06fd04b350c5bf1565",
        );
        let sh = parse_server_hello(&rec[9..]).expect("valid ServerHello");
        assert_eq!(sh.version, 0x0304);
        assert_eq!(sh.cipher, 0xc02b);
        assert_eq!(sh.exts, vec![40]);
        let v = server_version(sh.version, Some(&sh.raw_exts));
        assert_eq!(v, TLS13_PRE_DRAFT16);
        assert_eq!(version_name(v), "TLS 1.3 draft-<16");
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn version_names_follow_eve() {
        assert_eq!(version_name(0x0301), "TLSv1");
        assert_eq!(version_name(0x0304), "TLS 1.3");
        assert_eq!(version_name(0x7f1c), "TLS 1.3 draft-28");
    }
}
