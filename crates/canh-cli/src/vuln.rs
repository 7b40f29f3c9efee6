//! `canh vuln`: vulnerability data for the endpoint agents' hosts (OSV records imported
//! offline; no network access is needed).

use crate::datadir::{self, Locked};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub(crate) struct VulnArgs {
    #[command(subcommand)]
    cmd: VulnCmd,
}

#[derive(clap::Subcommand, Debug)]
enum VulnCmd {
    /// Import OSV records for Debian/Ubuntu: a zip as osv.dev publishes per ecosystem
    /// (`Debian/all.zip`, `Ubuntu/all.zip`), a directory of `*.json` records, or one record.
    /// Nhập dữ liệu lỗ hổng OSV (Debian/Ubuntu) ngoại tuyến.
    Import {
        /// Zip, directory or JSON file.
        path: PathBuf,
    },
}

pub(crate) fn run(args: VulnArgs, data_dir: &Path) -> anyhow::Result<i32> {
    match args.cmd {
        VulnCmd::Import { path } => import(&path, data_dir),
    }
}

fn print_report(r: &serde_json::Value) {
    println!(
        "imported {} advisories ({} records read, {} other ecosystems, {} withdrawn, {} invalid); {} in the database",
        r["imported"],
        r["records_read"],
        r["other_ecosystems"],
        r["withdrawn"],
        r["invalid_count"],
        r["total"]
    );
    if let Some(list) = r["invalid"].as_array() {
        for i in list {
            eprintln!("  invalid: {}", i.as_str().unwrap_or_default());
        }
    }
}

fn import(path: &Path, data_dir: &Path) -> anyhow::Result<i32> {
    std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    match datadir::lock(data_dir)? {
        Locked::Mine(_lock) => {
            let report = canh_server::agents::import_offline(data_dir, path)
                .with_context(|| format!("importing {}", path.display()))?;
            print_report(&serde_json::to_value(&report)?);
            println!("the server recomputes host findings when it starts");
            Ok(0)
        }
        Locked::Busy => {
            // A server runs on this data directory: send the records to it.
            let remote = datadir::remote(data_dir)?;
            let files: Vec<PathBuf> = if path.is_dir() {
                let mut v: Vec<PathBuf> = std::fs::read_dir(path)
                    .with_context(|| format!("listing {}", path.display()))?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect();
                v.sort();
                v
            } else {
                vec![path.to_path_buf()]
            };
            let url = format!("{}/api/v1/vulnerabilities/import", remote.base);
            let mut last = serde_json::Value::Null;
            for f in &files {
                let body = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                let mut resp = remote
                    .agent
                    .post(&url)
                    .header("Authorization", &format!("Bearer {}", remote.token))
                    .header("Content-Type", "application/octet-stream")
                    .send(&body[..])
                    .with_context(|| format!("sending {} to {}", f.display(), remote.base))?;
                let status = resp.status();
                let text = resp.body_mut().read_to_string().unwrap_or_default();
                if !status.is_success() {
                    bail!("server refused {}: {status} {text}", f.display());
                }
                last = serde_json::from_str(&text).unwrap_or_default();
            }
            if files.len() == 1 {
                print_report(&last);
            } else {
                println!(
                    "sent {} records; {} advisories in the database",
                    files.len(),
                    last["total"]
                );
            }
            Ok(0)
        }
    }
}
