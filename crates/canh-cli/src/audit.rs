//! `canh audit`: check and read the hash-chained audit log.

use crate::user::{open_soar, runtime};
use std::path::Path;

#[derive(clap::Args, Debug)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    cmd: AuditCmd,
}

#[derive(clap::Subcommand, Debug)]
enum AuditCmd {
    /// Recompute the hash chain; exit code 1 names the first altered or missing row.
    Verify,
    /// Print the newest rows as JSON lines.
    List {
        /// How many rows.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

pub(crate) fn run(args: AuditArgs, data_dir: &Path) -> anyhow::Result<i32> {
    let rt = runtime()?;
    let soar = open_soar(&rt, data_dir)?;
    match args.cmd {
        AuditCmd::Verify => {
            let report = rt.block_on(soar.verify_audit())?;
            match report.broken {
                None => {
                    println!(
                        "audit log intact: {} rows, head {}",
                        report.rows, report.head
                    );
                    Ok(0)
                }
                Some((seq, why)) => {
                    eprintln!("audit log BROKEN at row {seq}: {why}");
                    Ok(1)
                }
            }
        }
        AuditCmd::List { limit } => {
            let f = canh_soar::AuditFilter {
                limit: Some(limit),
                ..Default::default()
            };
            for row in rt.block_on(soar.audit_log(&f))? {
                println!("{}", serde_json::to_string(&row)?);
            }
            Ok(0)
        }
    }
}
