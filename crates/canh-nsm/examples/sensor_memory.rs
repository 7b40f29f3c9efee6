//! Runs the sensor over a capture without rules (metadata only) and prints its counters: the
//! sensor without the command line, for measuring memory (`/usr/bin/time -v`, heaptrack) and
//! comparing outputs across builds.
//!
//! `cargo run -p canh-nsm --profile release-fast --example sensor_memory -- CAPTURE [EVE_FILE]
//! [--no-ddos] [--flow-memcap-mib N]`
//!
//! Without `EVE_FILE` the records go nowhere; with it they are written to that file.

use canh_nsm::{Sensor, SensorConfig};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: sensor_memory CAPTURE [EVE_FILE] [--no-ddos] [--flow-memcap-mib N]";
    let mut cfg = SensorConfig::default();
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-ddos" => cfg.ddos = None,
            "--flow-memcap-mib" => {
                let mib: usize = args.next().ok_or(usage)?.parse()?;
                cfg.flow_memcap = mib << 20;
            }
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    let capture = paths.first().ok_or(usage)?;
    let out: Box<dyn Write> = match paths.get(1) {
        Some(p) => Box::new(BufWriter::with_capacity(1 << 16, std::fs::File::create(p)?)),
        None => Box::new(std::io::sink()),
    };
    let ddos_bound = cfg.ddos.as_ref().map(|d| d.max_state_bytes());
    let stats = canh_nsm::run_capture_file(capture, Sensor::new(cfg, out))?;
    let body = serde_json::to_string_pretty(&stats.record_body())?;
    eprintln!("{body}");
    eprintln!("records: {:?}", stats.events);
    eprintln!("flow table: peak counted bytes {}", stats.flows.peak_bytes);
    if let Some(bound) = ddos_bound {
        let peak = stats.ddos.peak_bytes;
        eprintln!("scan/flood detector: peak bytes {peak}, bound by configuration {bound}");
    }
    Ok(())
}
