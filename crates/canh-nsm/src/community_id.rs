//! Community ID v1 flow hashing (corelight community-id-spec).

use base64::Engine as _;
use sha1::{Digest, Sha1};
use std::net::IpAddr;

/// Port equivalents for ICMP types: (counterpart type, whether the pair is two-way).
fn icmp_counterpart(v6: bool, itype: u8) -> Option<u8> {
    let v4 = [
        (8, 0),
        (0, 8),
        (13, 14),
        (14, 13),
        (15, 16),
        (16, 15),
        (10, 9),
        (9, 10),
        (17, 18),
        (18, 17),
    ];
    let v6map = [
        (128, 129),
        (129, 128),
        (133, 134),
        (134, 133),
        (135, 136),
        (136, 135),
        (130, 131),
        (131, 130),
        (144, 145),
        (145, 144),
        (139, 140),
        (140, 139),
    ];
    let table: &[(u8, u8)] = if v6 { &v6map } else { &v4 };
    table.iter().find(|(t, _)| *t == itype).map(|(_, c)| *c)
}

/// Computes `1:<base64 sha1>` for a flow. For ICMP, pass the type as `sport` and the code as
/// `dport`; the ICMP port-equivalent rules are applied here.
pub fn community_id_v1(
    seed: u16,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
) -> String {
    let (mut sport, mut dport) = (sport, dport);
    let mut one_way = false;
    if proto == 1 || proto == 58 {
        let itype = sport as u8;
        match icmp_counterpart(proto == 58, itype) {
            Some(counter) => dport = u16::from(counter),
            None => one_way = true,
        }
        sport = u16::from(itype);
    }
    let (sa, da) = (addr_bytes(src), addr_bytes(dst));
    let ordered = one_way || sa < da || (sa == da && sport < dport);
    let (a, b, pa, pb) = if ordered {
        (sa, da, sport, dport)
    } else {
        (da, sa, dport, sport)
    };
    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    h.update(&a);
    h.update(&b);
    h.update([proto, 0]);
    if matches!(proto, 1 | 6 | 17 | 58 | 132) {
        h.update(pa.to_be_bytes());
        h.update(pb.to_be_bytes());
    }
    let digest = h.finalize();
    format!(
        "1:{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn addr_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Published baseline vectors of the community-id specification (seed 0).
    #[test]
    fn matches_published_tcp_udp_vectors() {
        let a: IpAddr = "128.232.110.120".parse().unwrap();
        let b: IpAddr = "66.35.250.204".parse().unwrap();
        assert_eq!(
            community_id_v1(0, a, b, 6, 34855, 80),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
        assert_eq!(
            community_id_v1(0, b, a, 6, 80, 34855),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
        let c: IpAddr = "192.168.1.52".parse().unwrap();
        let d: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(
            community_id_v1(0, c, d, 17, 54585, 53),
            "1:d/FP5EW3wiY1vCndhwleRRKHowQ="
        );
    }

    #[test]
    fn matches_published_icmp_vectors() {
        let a: IpAddr = "192.168.0.89".parse().unwrap();
        let b: IpAddr = "192.168.0.1".parse().unwrap();
        assert_eq!(
            community_id_v1(0, a, b, 1, 8, 0),
            "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="
        );
        assert_eq!(
            community_id_v1(0, b, a, 1, 0, 0),
            "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="
        );
    }
}
