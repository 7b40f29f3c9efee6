//! `canh evidence`: verify the vault and export an incident's evidence.

use crate::user::{cli_actor, open_soar, runtime};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub(crate) struct EvidenceArgs {
    #[command(subcommand)]
    cmd: EvidenceCmd,
}

#[derive(clap::Subcommand, Debug)]
enum EvidenceCmd {
    /// Rehash every stored item (or one incident's); exit code 1 lists the mismatches.
    Verify {
        /// Only this incident.
        #[arg(long)]
        incident: Option<i64>,
    },
    /// Write a zip with the items, manifest.json and SHA256SUMS.
    Export {
        /// Incident id.
        incident: i64,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
}

pub(crate) fn run(args: EvidenceArgs, data_dir: &Path) -> anyhow::Result<i32> {
    let rt = runtime()?;
    let soar = open_soar(&rt, data_dir)?;
    match args.cmd {
        EvidenceCmd::Verify { incident } => {
            let problems = rt.block_on(soar.verify_evidence(incident))?;
            if problems.is_empty() {
                println!("evidence intact");
                return Ok(0);
            }
            for p in &problems {
                eprintln!("evidence {} (sha256 {}): {}", p.id, p.sha256, p.problem);
            }
            Ok(1)
        }
        EvidenceCmd::Export { incident, out } => {
            let items = rt.block_on(soar.export_evidence_zip(&cli_actor(), incident, &out))?;
            println!("exported {} item(s) to {}", items.len(), out.display());
            Ok(0)
        }
    }
}
