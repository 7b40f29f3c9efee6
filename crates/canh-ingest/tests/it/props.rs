//! Property tests: no parser and no framer panics, whatever the bytes.

use canh_ingest::framing::{Framer, Lines, OctetCounting, gelf};
use canh_ingest::{PARSERS, ParseCtx, parse_auto};
use proptest::prelude::*;

/// Arbitrary bytes, plus inputs that start like each format so that the deeper code runs.
fn inputs() -> impl Strategy<Value = Vec<u8>> {
    let prefixes = prop::sample::select(vec![
        &b""[..],
        b"<34>1 2003-10-11T22:14:15.003Z host app - - [a@1 x=\"",
        b"<13>Jan  5 10:00:00 host sshd[1]: ",
        b"<166>Jan 05 2024 10:00:00 fw : %ASA-6-302013: Built ",
        b"date=2024-01-05 time=10:00:00 devid=\"FG\" logid=\"1\" type=\"traffic\" ",
        b"<134>Jan  5 10:00:00 filterlog[1]: 5,,,1,em0,match,block,in,4,",
        b"<4>Jan  5 10:00:00 gw kernel: IN=eth0 OUT= SRC=1.2.3.4 DST=",
        b"1.2.3.4 - - [05/Jan/2024:10:00:00 +0000] \"GET ",
        b"2024/01/05 10:00:00 [error] 1#1: *1 ",
        b"[Fri Jan 05 10:00:00.1 2024] [core:error] [client ",
        b"2024-01-05 10:00:00 10.0.0.1 GET / - 80 - ",
        b"{\"event_type\":\"alert\",\"timestamp\":\"",
        b"{\"version\":\"1.1\",\"short_message\":",
        b"{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{",
        b"{\"event\":{\"a\":",
    ]);
    (prefixes, prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(p, tail)| {
        let mut v = p.to_vec();
        v.extend(tail);
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(raw in inputs()) {
        let cx = ParseCtx::default();
        for p in PARSERS {
            let _ = p.probe(&raw);
            let _ = p.parse(&raw, &cx);
            let _ = p.parse_many(&raw, &cx);
        }
        let _ = parse_auto(&raw, &cx);
        // Reaching this point without a panic is the property.
        prop_assert!(true);
    }

    #[test]
    fn framing_never_panics_and_keeps_bytes_bounded(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..12),
        max in 1usize..40,
    ) {
        let mut out = Vec::new();
        let mut lines = Lines::new(max);
        let mut octet = OctetCounting::new(max);
        for c in &chunks {
            lines.feed(c, &mut out);
            octet.feed(c, &mut out);
        }
        lines.finish(&mut out);
        octet.finish(&mut out);
        for rec in out.iter().flatten() {
            prop_assert!(rec.len() <= max, "record over the cap");
        }
        let mut asm = gelf::ChunkAssembler::new(256, 4);
        let now = std::time::Instant::now();
        for c in &chunks {
            let _ = asm.push(c, now);
            let _ = gelf::decompress(c, 128);
        }
        prop_assert!(asm.held_bytes() <= 256);
    }
}
