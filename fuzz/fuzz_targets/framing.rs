//! Feeds the stream framers and the GELF assembler/decompressor arbitrary bytes in pieces.
#![no_main]

use canh_ingest::framing::{Framer, Lines, OctetCounting, gelf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(split % 32) + 1;
    let mut out = Vec::new();
    let mut lines = Lines::new(256);
    let mut octet = OctetCounting::new(256);
    let mut asm = gelf::ChunkAssembler::new(4096, 8);
    let now = std::time::Instant::now();
    for piece in rest.chunks(step) {
        lines.feed(piece, &mut out);
        octet.feed(piece, &mut out);
        let _ = asm.push(piece, now);
    }
    lines.finish(&mut out);
    octet.finish(&mut out);
    let _ = gelf::decompress(rest, 1 << 16);
});
