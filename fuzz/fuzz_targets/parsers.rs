//! Picks a parser from the first byte and feeds it the rest; also runs auto-detection.
#![no_main]

use canh_ingest::{PARSERS, ParseCtx, parse_auto};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, raw)) = data.split_first() else {
        return;
    };
    let cx = ParseCtx::default();
    let parser = PARSERS[usize::from(pick) % PARSERS.len()];
    let _ = parser.probe(raw);
    let _ = parser.parse(raw, &cx);
    let _ = parser.parse_many(raw, &cx);
    let _ = parse_auto(raw, &cx);
});
