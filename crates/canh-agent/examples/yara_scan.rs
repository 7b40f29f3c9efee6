//! Scans files with the agent's YARA engine, as the agent scans new executables: each file read,
//! hashed (SHA-256) and scanned once per content. Prints what was compiled and the scan rate.
//!
//! `cargo run -p canh-agent --features yara --profile release-fast --example yara_scan -- \
//!     RULES_DIR_OR_FILE PATH...`

use std::path::{Path, PathBuf};
use std::time::Instant;

use canh_agent::config::YaraConfig;
use canh_agent::yara::{Engine, Outcome, Reason, RuleSet, Target};

fn walk(p: &Path, out: &mut Vec<PathBuf>) {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return;
    };
    if meta.is_file() {
        out.push(p.to_path_buf());
    } else if meta.is_dir()
        && let Ok(rd) = std::fs::read_dir(p)
    {
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for e in entries {
            walk(&e, out);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rules = PathBuf::from(args.next().ok_or("usage: yara_scan RULES PATH...")?);
    let t0 = Instant::now();
    let set = RuleSet::load(&[rules])?;
    let load = t0.elapsed();
    println!(
        "rules: {} rules from {} files, {} files rejected, compiled in {:.2} s",
        set.len(),
        set.files.len(),
        set.rejected.len(),
        load.as_secs_f64()
    );
    for r in &set.rejected {
        let first = r.message.lines().next().unwrap_or("");
        println!("  rejected {}: {first}", r.path.display());
    }
    let mut files = Vec::new();
    for p in args {
        walk(Path::new(&p), &mut files);
    }
    // Every file is scanned, whatever its size (the agent's default stops at 64 MiB), so that
    // a comparison with another scanner covers the same bytes.
    let cfg = YaraConfig {
        max_file_bytes: 1 << 30,
        ..YaraConfig::default()
    };
    let mut engine = Engine::new(&set, &cfg, "bench");
    let mut bytes = 0u64;
    let mut matched_files = 0u64;
    let t1 = Instant::now();
    for f in &files {
        let t = Target {
            path: f.clone(),
            reason: Reason::FileEvent,
            sha256: None,
            pid: None,
            context: Vec::new(),
        };
        let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        match engine.process(&t) {
            Outcome::Scanned(hit) => {
                bytes += size;
                if let Some(ev) = hit {
                    matched_files += 1;
                    println!(
                        "match {} {}",
                        ev.get_str("rule.name").unwrap_or(""),
                        f.display()
                    );
                }
            }
            Outcome::Cached | Outcome::Skipped(_) => {}
        }
    }
    let secs = t1.elapsed().as_secs_f64();
    println!(
        "files: {} listed, {} scanned, {} same content as an earlier one, {} skipped; {} matched",
        files.len(),
        engine.stats.scanned,
        engine.stats.cached,
        engine.stats.skipped_too_large
            + engine.stats.skipped_unreadable
            + engine.stats.skipped_scan_error,
        matched_files
    );
    println!(
        "scanned {:.1} MB in {:.2} s: {:.1} MB/s, {:.0} files/s",
        bytes as f64 / 1e6,
        secs,
        bytes as f64 / 1e6 / secs,
        engine.stats.scanned as f64 / secs
    );
    Ok(())
}
