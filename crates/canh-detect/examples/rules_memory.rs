//! Loads every shared SigmaHQ rule folder, builds the engine and streams the shared EVTX files
//! through it, one file at a time; run under `/usr/bin/time -v` to see the peak memory of the
//! full rule set.

use std::path::{Path, PathBuf};

use canh_detect::{Engine, LoadOptions, RuleSet};

fn evtx_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            evtx_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "evtx") {
            out.push(p);
        }
    }
}

fn main() {
    let data = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/datasets"
    ));
    let s = data.join("sigma");
    let dirs: Vec<PathBuf> = [
        "rules",
        "rules-threat-hunting",
        "rules-emerging-threats",
        "rules-compliance",
    ]
    .iter()
    .map(|d| s.join(d))
    .collect();
    let (set, _) = RuleSet::load_paths(&dirs, &LoadOptions::default());
    let rules = set.len();
    let engine = Engine::new(set);
    let mut files = Vec::new();
    evtx_files(&data.join("evtx"), &mut files);
    files.sort();
    let opts = canh_ingest::evtx::EvtxOptions::default();
    let (mut events, mut hits) = (0u64, 0u64);
    for f in &files {
        let Ok(it) = canh_ingest::evtx::read_file(f, &opts) else {
            continue;
        };
        for ev in it.flatten() {
            events += 1;
            engine.for_each_match(&ev, |_| hits += 1);
        }
    }
    println!(
        "rules {rules}, files {}, events {events}, hits {hits}",
        files.len()
    );
}
