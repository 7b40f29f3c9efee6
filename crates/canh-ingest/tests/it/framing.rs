//! Framing over realistic streams: syslog from `logger` framed both ways, GELF chunking of a
//! compressed payload.

use std::io::Write;
use std::time::Instant;

use canh_ingest::framing::{Framer, FramingError, Lines, OctetCounting, gelf};
use canh_ingest::{ParseCtx, parse_auto};

const CASE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/parsers/syslog_rfc5424/synthetic-logger-udp.log"
);

#[test]
fn octet_counted_and_lf_streams_give_the_same_records() {
    let text = std::fs::read_to_string(CASE).expect("case file");
    let records: Vec<&str> = text.lines().collect();
    let mut counted = Vec::new();
    for r in &records {
        counted.extend_from_slice(format!("{} {}", r.len(), r).as_bytes());
    }
    let mut out_counted = Vec::new();
    let mut f = OctetCounting::default();
    for piece in counted.chunks(7) {
        f.feed(piece, &mut out_counted);
    }
    f.finish(&mut out_counted);
    let mut out_lf = Vec::new();
    let mut l = Lines::default();
    for piece in text.as_bytes().chunks(5) {
        l.feed(piece, &mut out_lf);
    }
    l.finish(&mut out_lf);
    assert_eq!(out_counted.len(), records.len());
    assert_eq!(out_counted, out_lf);
    let cx = ParseCtx::default();
    for r in out_counted {
        let ev = parse_auto(&r.expect("record"), &cx).expect("parses");
        assert!(ev.get_str("log.syslog.hostname").is_some());
    }
}

#[test]
fn chunked_zlib_gelf_message_reassembles_and_parses() {
    let payload = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/parsers/gelf/gelf-spec-example.log"
    ))
    .expect("case");
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&payload).expect("compress");
    let compressed = z.finish().expect("compress");
    let parts: Vec<&[u8]> = compressed.chunks(20).collect();
    let count = u8::try_from(parts.len()).expect("few chunks");
    let mut asm = gelf::ChunkAssembler::default();
    let now = Instant::now();
    let mut whole = None;
    for (i, part) in parts.iter().enumerate().rev() {
        let mut d = vec![
            0x1e,
            0x0f,
            9,
            9,
            9,
            9,
            9,
            9,
            9,
            9,
            u8::try_from(i).expect("seq"),
            count,
        ];
        d.extend_from_slice(part);
        whole = asm.push(&d, now).expect("chunk accepted");
    }
    let whole = whole.expect("complete after the last chunk");
    let inflated = gelf::decompress(&whole, 64 * 1024).expect("inflates");
    let ev = parse_auto(&inflated, &ParseCtx::default()).expect("parses");
    assert_eq!(ev.get_str("host.name"), Some("example.org"));
    assert_eq!(
        gelf::decompress(&whole, 10),
        Err(FramingError::DecompressedTooLarge { max: 10 })
    );
}
