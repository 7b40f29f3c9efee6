//! Never-panic properties of decoders and parsers (any bytes in, no panic out).

use canh_nsm::decode::{LinkType, Timestamp, decode_frame, decode_transport};
use canh_nsm::proto::{Direction, PROTOCOLS, Transport};
use canh_nsm::{Sensor, SensorConfig};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256), dlt in 0i32..300) {
        let _ = decode_frame(LinkType::from_dlt(dlt), &data);
        for proto in [1u8, 6, 17, 47, 50, 58, 132] {
            let _ = decode_transport(proto, &data);
        }
        prop_assert!(true);
    }

    #[test]
    fn protocol_parsers_never_panic(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..6),
        to_client in any::<bool>(),
    ) {
        let dir = if to_client { Direction::ToClient } else { Direction::ToServer };
        for p in PROTOCOLS {
            for t in p.transports() {
                let mut state = p.new_state(*t);
                let mut out = Vec::new();
                for c in &chunks {
                    let _ = p.probe(*t, dir, c, true);
                    let _ = state.parse(dir, c, &mut out);
                    let _ = state.parse(dir.flip(), c, &mut out);
                }
                let _ = state.gap(dir, 10);
                state.close(&mut out);
            }
        }
        prop_assert!(true);
    }

    #[test]
    fn lenient_http_heads_and_sslv2_hellos_never_panic(
        lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
        request in any::<bool>(),
    ) {
        use canh_nsm::proto::http1::parser::{HeadResult, parse_head_lenient};
        use canh_nsm::proto::tls::parser::parse_sslv2_client_hello;
        // Line-structured input reaches the head parser's inner branches.
        let mut data = lines.join(&b'\n');
        data.extend_from_slice(b"\n\n");
        if let HeadResult::Done(h) = parse_head_lenient(&data, request) {
            prop_assert!(h.len <= data.len());
        }
        let _ = parse_sslv2_client_hello(&data);
        let mut hello = vec![1u8, 3, 1];
        hello.extend_from_slice(&data);
        let _ = parse_sslv2_client_hello(&hello);
    }

    #[test]
    fn sensor_never_panics_on_random_frames(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20)
    ) {
        let mut out = Vec::new();
        let mut sensor = Sensor::new(SensorConfig::default(), &mut out);
        for (n, f) in frames.iter().enumerate() {
            // Random bytes behind a valid IPv4/TCP prefix reach the deeper layers more often.
            let mut frame = vec![0u8; 12];
            frame.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0x01, 0x00, 0, 0, 0, 0, 64, 6, 0, 0,
                10, 0, 0, 1, 10, 0, 0, 2]);
            frame.extend_from_slice(f);
            sensor.process(Timestamp::new(n as i64, 0), LinkType::Ethernet, &frame, 0).unwrap();
            sensor.process(Timestamp::new(n as i64, 0), LinkType::Raw, f, 0).unwrap();
        }
        let stats = sensor.finish().unwrap();
        prop_assert_eq!(stats.packets, 2 * frames.len() as u64);
    }
}

#[test]
fn dns_parser_never_panics_on_truncations_of_a_real_message() {
    // Every prefix of a real response (from the shared DNS capture) must parse or fail cleanly.
    let msg: &[u8] = &[
        0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm', b'p', b'l',
        b'e', 3, b'c', b'o', b'm', 0, 0, 1, 0, 1, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4,
        1, 2, 3, 4,
    ];
    let mut ok = 0;
    for n in 0..=msg.len() {
        if canh_nsm::proto::dns::parser::parse_message(&msg[..n]).is_ok() {
            ok += 1;
        }
    }
    assert!(ok > 0);
    let _ = Transport::Udp;
}
