//! File tail source: follows log files, survives restarts (checkpoints) and rotation.
//!
//! Each file is identified by (device, inode). The position is saved to
//! `state/tail.json` only after the lines before it are in the WAL, so a restart re-reads at
//! most the batch that was in flight (never skips one). Rotation by rename is followed: the
//! open descriptor of the old file is read to its end before the new file at the path is
//! opened from its start; a file truncated in place (copytruncate) is read again from 0.

use crate::pipeline::{Frame, Pipeline};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};

/// One `[[ingest.files]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailConfig {
    /// The file to follow.
    pub path: PathBuf,
    /// Parser id, or `auto` to pick by content.
    #[serde(default = "auto")]
    pub format: String,
    /// Read an existing file from its start the first time (default), or only new lines.
    #[serde(default = "yes")]
    pub from_start: bool,
}

fn auto() -> String {
    "auto".into()
}

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    dev: u64,
    ino: u64,
    offset: u64,
}

/// Saved positions, by path.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoints {
    files: BTreeMap<PathBuf, Position>,
}

fn load_checkpoints(path: &Path) -> Checkpoints {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            warn!(error = %e, path = %path.display(), "tail checkpoints unreadable; starting over");
            Checkpoints::default()
        }),
        Err(_) => Checkpoints::default(),
    }
}

fn save_checkpoints(path: &Path, cp: &Checkpoints) {
    let tmp = path.with_extension("json.tmp");
    let res = serde_json::to_vec(cp)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&tmp, b))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = res {
        warn!(error = %e, path = %path.display(), "tail checkpoint not saved");
    }
}

struct Tailed {
    cfg: TailConfig,
    file: Option<File>,
    pos: Position,
    /// Bytes after the last newline, waiting for the rest of their line.
    partial: Vec<u8>,
}

/// Follows the configured files until the task is dropped.
pub async fn tail_files(
    files: Vec<TailConfig>,
    state_dir: PathBuf,
    pipeline: Arc<Pipeline>,
    poll: Duration,
    max_line: usize,
) {
    if let Err(e) = std::fs::create_dir_all(&state_dir) {
        warn!(error = %e, "cannot create the tail state directory");
    }
    let cp_path = state_dir.join("tail.json");
    let mut cps = load_checkpoints(&cp_path);
    let mut tailed: Vec<Tailed> = files
        .into_iter()
        .map(|cfg| {
            let pos = cps.files.get(&cfg.path).copied().unwrap_or_default();
            Tailed {
                cfg,
                file: None,
                pos,
                partial: Vec::new(),
            }
        })
        .collect();
    loop {
        let mut changed = false;
        for t in &mut tailed {
            match step(t, &pipeline, max_line).await {
                Ok(true) => {
                    cps.files.insert(t.cfg.path.clone(), t.pos);
                    changed = true;
                }
                Ok(false) => {}
                Err(e) => debug!(error = %e, path = %t.cfg.path.display(), "tail step failed"),
            }
        }
        if changed {
            save_checkpoints(&cp_path, &cps);
        }
        tokio::time::sleep(poll).await;
    }
}

/// Reads what is new; returns whether the position moved.
async fn step(t: &mut Tailed, pipeline: &Pipeline, max_line: usize) -> std::io::Result<bool> {
    let mut moved = false;
    if t.file.is_none() {
        let f = match File::open(&t.cfg.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let md = f.metadata()?;
        let same = t.pos.dev == md.dev() && t.pos.ino == md.ino();
        if !same {
            let first_time = t.pos == Position::default();
            let offset = if first_time && !t.cfg.from_start {
                md.len()
            } else {
                0
            };
            t.pos = Position {
                dev: md.dev(),
                ino: md.ino(),
                offset,
            };
            moved = true;
        }
        t.file = Some(f);
    }
    let Some(file) = t.file.as_mut() else {
        return Ok(moved);
    };
    let md = file.metadata()?;
    if md.len() < t.pos.offset {
        // Truncated in place: start again from the beginning.
        t.pos.offset = 0;
        t.partial.clear();
        moved = true;
    }
    moved |= read_new(t, pipeline, max_line).await?;
    // Rotated away? Once the old file is drained, move to whatever now sits at the path.
    let rotated = match std::fs::metadata(&t.cfg.path) {
        Ok(now) => now.ino() != t.pos.ino || now.dev() != t.pos.dev,
        Err(_) => false,
    };
    if rotated {
        read_new(t, pipeline, max_line).await?;
        flush_partial(t, pipeline).await;
        t.file = None;
        t.pos = Position::default();
        t.pos.offset = 0;
        // The next step opens the new file from its start.
        t.cfg.from_start = true;
        moved = true;
    }
    Ok(moved)
}

async fn read_new(t: &mut Tailed, pipeline: &Pipeline, max_line: usize) -> std::io::Result<bool> {
    let Some(file) = t.file.as_mut() else {
        return Ok(false);
    };
    let mut moved = false;
    loop {
        file.seek(SeekFrom::Start(t.pos.offset + t.partial.len() as u64))?;
        let mut buf = vec![0u8; 1 << 20];
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(moved);
        }
        buf.truncate(n);
        t.partial.extend_from_slice(&buf);
        let Some(last_nl) = memchr::memrchr(b'\n', &t.partial) else {
            if t.partial.len() > max_line {
                // A line longer than the limit: refuse it rather than buffer without end.
                let raw = std::mem::take(&mut t.partial);
                let consumed = raw.len() as u64;
                pipeline.dead_letter("file", None, "line exceeds the message size limit", raw);
                t.pos.offset += consumed;
                moved = true;
            }
            continue;
        };
        let complete: Vec<u8> = t.partial.drain(..=last_nl).collect();
        let parser = match t.cfg.format.as_str() {
            "auto" => None,
            id => canh_ingest::parser_by_id(id),
        };
        let frames: Vec<Frame> = complete
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .map(|l| Frame {
                source: "file",
                peer: None,
                bytes: Ok(l.to_vec()),
                parser,
                many: false,
                agency: None,
            })
            .collect();
        if let Err(e) = pipeline.ingest(frames).await {
            // Not stored: leave the position where it was, so the lines are read again.
            t.partial.clear();
            return Err(std::io::Error::other(e));
        }
        t.pos.offset += complete.len() as u64;
        moved = true;
    }
}

/// A rotated file's last line without a newline is still a line.
async fn flush_partial(t: &mut Tailed, pipeline: &Pipeline) {
    if t.partial.iter().all(u8::is_ascii_whitespace) {
        t.partial.clear();
        return;
    }
    let line = std::mem::take(&mut t.partial);
    let len = line.len() as u64;
    if pipeline
        .ingest(vec![Frame::auto("file", None, line)])
        .await
        .is_ok()
    {
        t.pos.offset += len;
    }
}
