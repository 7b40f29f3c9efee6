//! Evaluates the SigmaHQ Windows rule set (the `engine` bench's rules) over the shared EVTX
//! events, already normalised and in memory, PASSES times (default 1); with a second argument
//! `fresh`, each event is cloned just before it is evaluated and only evaluations are timed.
//! Made for instruction counts, which do not depend on what else the machine runs:
//!
//! ```text
//! valgrind --tool=callgrind --toggle-collect='*evaluate_all*' \
//!     target/release-fast/examples/evaluate_passes 1
//! ```
//!
//! The collected instructions divided by the events printed are the engine's cost per event.

use std::path::{Path, PathBuf};

use canh_core::Event;
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

#[inline(never)]
fn evaluate_all(engine: &Engine, events: &[Event]) -> usize {
    let mut hits = 0usize;
    for ev in events {
        engine.for_each_match(ev, |_| hits += 1);
    }
    hits
}

fn main() {
    let passes: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let data = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/datasets"
    ));
    let s = data.join("sigma");
    let dirs = [
        s.join("rules/windows"),
        s.join("rules-threat-hunting/windows"),
        s.join("rules-emerging-threats"),
    ];
    let (set, _) = RuleSet::load_paths(&dirs, &LoadOptions::default());
    let rules = set.len();
    let engine = Engine::new(set);
    let mut files = Vec::new();
    evtx_files(&data.join("evtx"), &mut files);
    files.sort();
    let opts = canh_ingest::evtx::EvtxOptions::default();
    let mut events = Vec::new();
    for f in &files {
        if let Ok(it) = canh_ingest::evtx::read_file(f, &opts) {
            events.extend(it.flatten());
        }
    }
    if std::env::args().nth(2).as_deref() == Some("fresh") {
        // Each event cloned just before its evaluation, only the evaluation timed (see the
        // `engine` bench).
        let mut spent = std::time::Duration::ZERO;
        let mut hits = 0usize;
        for _ in 0..passes {
            for ev in &events {
                let fresh = ev.clone();
                let started = std::time::Instant::now();
                engine.for_each_match(&fresh, |_| hits += 1);
                spent += started.elapsed();
            }
        }
        println!(
            "rules {rules}, events {}, passes {passes}, fresh events, hits {hits}, {:.0} events/s",
            events.len(),
            (events.len() * passes) as f64 / spent.as_secs_f64()
        );
        return;
    }
    let started = std::time::Instant::now();
    let mut hits = 0;
    for _ in 0..passes {
        hits = evaluate_all(&engine, &events);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "rules {rules}, events {}, passes {passes}, hits per pass {hits}, {:.0} events/s",
        events.len(),
        (events.len() * passes) as f64 / secs
    );
}
