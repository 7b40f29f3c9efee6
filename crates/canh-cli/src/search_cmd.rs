//! `canh search QUERY`: search stored events (or dead letters) of the data directory.
//!
//! When a server runs on the data directory, the search goes through its HTTP API; otherwise
//! the store is opened directly.

use crate::datadir::{self, Locked};
use anyhow::Context as _;
use canh_store::{SearchRequest, Store};
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Arguments of `canh search`.
#[derive(clap::Args, Debug)]
pub(crate) struct SearchArgs {
    /// Query in the filter language (`host.name:web-01 AND NOT event.outcome:success`, `*`).
    #[arg(default_value = "")]
    query: String,
    /// Start of the time range: RFC 3339, a date, epoch seconds or `now-24h`.
    #[arg(long, default_value = "now-24h")]
    from: String,
    /// End of the time range (exclusive).
    #[arg(long)]
    to: Option<String>,
    /// Most results.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Output: table, json (one event per line) or csv.
    #[arg(long, default_value = "table", value_parser = ["table", "json", "csv"])]
    format: String,
    /// Search the dead-letter store (refused input) instead of events.
    #[arg(long)]
    dead_letter: bool,
    /// Fields shown by table and csv output (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "@timestamp,organization.id,host.name,event.module,message"
    )]
    fields: Vec<String>,
    /// Configuration file (for [store]) when the store is opened directly.
    #[arg(long)]
    config: Option<PathBuf>,
}

pub(crate) fn run(args: SearchArgs, data_dir: &Path) -> anyhow::Result<i32> {
    let query = if args.query.trim() == "*" {
        String::new()
    } else {
        args.query.clone()
    };
    let rows = match datadir::lock(data_dir)? {
        Locked::Busy => remote(&args, &query, &datadir::remote(data_dir)?)?,
        Locked::Mine(_lock) => local(&args, &query, data_dir)?,
    };
    print_rows(&args, &rows)?;
    Ok(0)
}

fn local(args: &SearchArgs, query: &str, data_dir: &Path) -> anyhow::Result<Vec<Value>> {
    let cfg =
        canh_server::Config::load(args.config.as_deref(), canh_server::config::env_overrides())?;
    let (expr, from, to) =
        canh_server::api::range_and_query(Some(query), Some(&args.from), args.to.as_deref())
            .map_err(|m| anyhow::anyhow!(m))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut store_cfg = cfg.store;
        store_cfg.flush_interval_ms = 0;
        let store = Store::open(&canh_server::node::store_dir(data_dir), store_cfg)
            .await
            .context("opening the event store")?;
        if args.dead_letter {
            let letters = store.dead_letters().search(&expr, from, to, args.limit)?;
            return Ok(letters.iter().map(letter_row).collect());
        }
        let page = store
            .search(SearchRequest {
                query: expr,
                from,
                to,
                limit: args.limit,
                cursor: None,
            })
            .await?;
        Ok(page
            .hits
            .into_iter()
            .map(|h| {
                let mut v = serde_json::to_value(&h.event).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("_id".into(), json!(h.id.to_string()));
                }
                v
            })
            .collect())
    })
}

fn letter_row(l: &canh_store::DeadLetter) -> Value {
    json!({"@timestamp": l.time, "canh.source.id": l.source, "error.message": l.reason,
           "source.address": l.peer, "event.original": String::from_utf8_lossy(&l.raw)})
}

fn remote(args: &SearchArgs, query: &str, server: &datadir::Remote) -> anyhow::Result<Vec<Value>> {
    let base = &server.base;
    let path = if args.dead_letter {
        "/api/v1/deadletters"
    } else {
        "/api/v1/search"
    };
    let url = format!("{base}{path}");
    let limit = args.limit.to_string();
    let mut req = server
        .agent
        .get(&url)
        .header("authorization", &format!("Bearer {}", server.token))
        .query("q", query)
        .query("from", &args.from)
        .query("limit", &limit);
    if let Some(to) = &args.to {
        req = req.query("to", to);
    }
    let mut resp = req
        .call()
        .with_context(|| format!("querying the running server at {base}"))?;
    let text = resp.body_mut().read_to_string()?;
    if !resp.status().is_success() {
        anyhow::bail!("the server at {base} answered {}: {text}", resp.status());
    }
    let body: Value = serde_json::from_str(&text)?;
    if args.dead_letter {
        let items = body
            .get("dead_letters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        return Ok(items
            .into_iter()
            .map(|l| {
                json!({"@timestamp": l["time"], "canh.source.id": l["source"], "error.message": l["reason"],
                       "source.address": l["peer"], "event.original": l["raw"]})
            })
            .collect());
    }
    Ok(body
        .get("hits")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

fn cell(v: &Value, field: &str) -> String {
    match v.get(field) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn print_rows(args: &SearchArgs, rows: &[Value]) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let fields: Vec<String> =
        if args.dead_letter && args.fields.len() == 5 && args.fields[1] == "organization.id" {
            [
                "@timestamp",
                "canh.source.id",
                "error.message",
                "event.original",
            ]
            .map(String::from)
            .to_vec()
        } else {
            args.fields.clone()
        };
    match args.format.as_str() {
        "json" => {
            for r in rows {
                writeln!(out, "{r}")?;
            }
        }
        "csv" => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(&fields)?;
            for r in rows {
                w.write_record(fields.iter().map(|f| cell(r, f)))?;
            }
            w.flush()?;
        }
        _ => {
            let mut widths: Vec<usize> = fields.iter().map(|f| f.chars().count()).collect();
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    fields
                        .iter()
                        .map(|f| {
                            let c: String = cell(r, f).replace(['\n', '\r', '\t'], " ");
                            if c.chars().count() > 120 {
                                c.chars().take(117).collect::<String>() + "..."
                            } else {
                                c
                            }
                        })
                        .collect()
                })
                .collect();
            for row in &table {
                for (w, c) in widths.iter_mut().zip(row) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: &[String]| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}", w = *w))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_owned()
            };
            writeln!(out, "{}", line(&fields))?;
            for row in &table {
                writeln!(out, "{}", line(row))?;
            }
            writeln!(out, "({} results)", rows.len())?;
        }
    }
    Ok(())
}
