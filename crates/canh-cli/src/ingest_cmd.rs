//! `canh ingest FILE...`: read log files into the event store of the data directory.

use crate::datadir::{self, Locked};
use anyhow::Context as _;
use canh_server::Config;
use canh_server::metrics::Metrics;
use canh_server::pipeline::{Frame, ItemOutcome, Pipeline};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Arguments of `canh ingest`.
#[derive(clap::Args, Debug)]
pub(crate) struct IngestArgs {
    /// Files to read (text logs one record per line, EVTX, EVE JSON, NDJSON).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Format: auto (by content; EVTX by extension), syslog, ndjson, evtx, eve, nginx, apache,
    /// iis, or any parser id listed by `canh ingest --list-formats`.
    #[arg(long, default_value = "auto")]
    format: String,
    /// Configuration file (for [ingest] and [store]).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Records per write to the store.
    #[arg(long, default_value_t = 4096)]
    batch: usize,
}

pub(crate) fn run(args: IngestArgs, data_dir: &Path) -> anyhow::Result<i32> {
    let cfg = Config::load(args.config.as_deref(), canh_server::config::env_overrides())?;
    let _lock = match datadir::lock(data_dir)? {
        Locked::Mine(l) => l,
        Locked::Busy => anyhow::bail!(
            "the data directory {} is in use by a running server; send the files to it instead \
             (e.g. curl --data-binary @FILE http://ADDR/api/v1/ingest/ndjson) or stop it",
            data_dir.display()
        ),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut store_cfg = cfg.store.clone();
        store_cfg.flush_interval_ms = 0;
        let store = canh_store::Store::open(&canh_server::node::store_dir(data_dir), store_cfg)
            .await
            .context("opening the event store")?;
        let pipeline = Pipeline::new(
            Arc::new(store),
            Arc::new(Metrics::default()),
            &cfg.ingest,
            cfg.server.max_message_bytes,
        );
        let mut total = (0usize, 0usize);
        for file in &args.files {
            let (ok, bad) = ingest_file(&pipeline, file, &args.format, args.batch.max(1))
                .await
                .with_context(|| format!("ingesting {}", file.display()))?;
            eprintln!(
                "{}: {ok} events stored, {bad} refused (see canh search --dead-letter)",
                file.display()
            );
            total.0 += ok;
            total.1 += bad;
        }
        pipeline
            .store()
            .flush()
            .await
            .context("flushing the event store")?;
        eprintln!("total: {} events stored, {} refused", total.0, total.1);
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}

async fn ingest_file(
    pipeline: &Pipeline,
    file: &Path,
    format: &str,
    batch: usize,
) -> anyhow::Result<(usize, usize)> {
    let is_evtx = format == "evtx"
        || (format == "auto"
            && file
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("evtx")));
    if is_evtx {
        return ingest_evtx(pipeline, file, batch).await;
    }
    if format == "iis" || format == "w3c" {
        return ingest_w3c(pipeline, file, batch).await;
    }
    let parser = match format {
        "auto" => None,
        "eve" => canh_ingest::parser_by_id("suricata_eve"),
        id => Some(
            canh_ingest::parser_by_id(id)
                .ok_or_else(|| anyhow::anyhow!("unknown format {id:?}"))?,
        ),
    };
    let reader = std::io::BufReader::new(std::fs::File::open(file)?);
    let mut frames = Vec::with_capacity(batch);
    let mut counts = (0, 0);
    for line in reader.split(b'\n') {
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        frames.push(Frame {
            source: "file",
            peer: None,
            bytes: Ok(line),
            parser,
            many: false,
            agency: None,
        });
        if frames.len() >= batch {
            tally(
                &mut counts,
                pipeline.ingest(std::mem::take(&mut frames)).await?,
            );
        }
    }
    tally(&mut counts, pipeline.ingest(frames).await?);
    Ok(counts)
}

fn tally(counts: &mut (usize, usize), outcomes: Vec<ItemOutcome>) {
    for o in outcomes {
        match o {
            ItemOutcome::Stored(n) => counts.0 += n,
            ItemOutcome::Refused(_) => counts.1 += 1,
        }
    }
}

async fn ingest_evtx(
    pipeline: &Pipeline,
    file: &Path,
    batch: usize,
) -> anyhow::Result<(usize, usize)> {
    let path = file.display().to_string();
    let records = canh_ingest::evtx::read_file(
        file,
        &canh_ingest::evtx::EvtxOptions {
            keep_original: true,
        },
    )?;
    let mut items = Vec::with_capacity(batch);
    let mut counts = (0, 0);
    for r in records {
        items.push(match r {
            Ok(mut ev) => {
                ev.set(canh_core::fields::LOG_FILE_PATH, path.as_str());
                Ok(ev)
            }
            Err(e) => Err((canh_server::pipeline::error_chain(&e), Vec::new())),
        });
        if items.len() >= batch {
            let (a, b) = pipeline
                .ingest_parsed("file", std::mem::take(&mut items))
                .await?;
            counts.0 += a;
            counts.1 += b;
        }
    }
    let (a, b) = pipeline.ingest_parsed("file", items).await?;
    Ok((counts.0 + a, counts.1 + b))
}

async fn ingest_w3c(
    pipeline: &Pipeline,
    file: &Path,
    batch: usize,
) -> anyhow::Result<(usize, usize)> {
    let reader = std::io::BufReader::new(std::fs::File::open(file)?);
    let mut w3c = canh_ingest::parsers::iis::W3cReader::new();
    let cx = canh_ingest::ParseCtx::new(chrono::Utc::now()).with_source_id("file");
    let mut items = Vec::with_capacity(batch);
    let mut counts = (0, 0);
    for line in reader.split(b'\n') {
        let line = line?;
        match w3c.read_line(&line, &cx) {
            Ok(Some(ev)) => items.push(Ok(ev)),
            Ok(None) => {}
            Err(e) => items.push(Err((canh_server::pipeline::error_chain(&e), line))),
        }
        if items.len() >= batch {
            let (a, b) = pipeline
                .ingest_parsed("file", std::mem::take(&mut items))
                .await?;
            counts.0 += a;
            counts.1 += b;
        }
    }
    let (a, b) = pipeline.ingest_parsed("file", items).await?;
    Ok((counts.0 + a, counts.1 + b))
}
