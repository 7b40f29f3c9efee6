//! Reads a capture with the given rule files and writes EVE JSON to standard output: the
//! sensor without the command line, for comparing detection across builds.
//!
//! `cargo run -p canh-nsm --profile release-fast --example eve_alerts -- CAPTURE RULES...`

use canh_nsm::rules::{Vars, load_files};
use canh_nsm::{Sensor, SensorConfig};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let capture = args.next().ok_or("usage: eve_alerts CAPTURE RULES...")?;
    let files: Vec<PathBuf> = args.collect();
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (set, _) = load_files(&paths, &Vars::default())?;
    let out = BufWriter::new(std::io::stdout().lock());
    let sensor = Sensor::new(SensorConfig::default(), out).with_rules(Arc::new(set));
    canh_nsm::run_capture_file(&capture, sensor)?;
    Ok(())
}
