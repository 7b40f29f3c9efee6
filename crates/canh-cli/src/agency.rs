//! `canh agency`: import agencies, incident-response contacts, information systems and
//! domains from CSV, and list an agency's systems, domains, contacts and open tasks.

use crate::user::{cli_actor, open_soar, runtime};
use anyhow::Context;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub(crate) struct AgencyArgs {
    #[command(subcommand)]
    cmd: AgencyCmd,
}

#[derive(clap::Subcommand, Debug)]
enum AgencyCmd {
    /// Import a CSV file. agencies: code,name,level,parent_code,public_cidrs; contacts:
    /// agency_code,kind,name,position,phone,mobile,email; systems:
    /// agency_code,name,level,owner,operator,uplinks,description (uplinks `provider=cidr;…`);
    /// domains: agency_code,domain.
    Import {
        /// agencies, contacts, systems or domains.
        #[arg(long, default_value = "agencies")]
        kind: String,
        /// The CSV file.
        file: PathBuf,
    },
    /// Show an agency (by code): its information systems, domains, contacts and tasks.
    Show {
        /// Agency code.
        code: String,
    },
}

pub(crate) fn run(args: AgencyArgs, data_dir: &Path) -> anyhow::Result<i32> {
    let rt = runtime()?;
    let soar = open_soar(&rt, data_dir)?;
    match args.cmd {
        AgencyCmd::Import { kind, file } => {
            let kind = canh_soar::CsvKind::parse(&kind)?;
            let data =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let n = rt.block_on(soar.import_csv(&cli_actor(), kind, &data))?;
            println!("{n} row(s) imported or changed");
            Ok(0)
        }
        AgencyCmd::Show { code } => {
            let a = rt.block_on(soar.agency_by_code(&code))?;
            println!("{}\t{}\t{}", a.id, a.code, a.name);
            for s in rt.block_on(soar.agency_systems(a.id))? {
                let uplinks: Vec<String> = s.uplinks.iter().map(|u| u.provider.clone()).collect();
                println!(
                    "system\t{}\tcấp {}\t{}\t{}\t{}",
                    s.name,
                    s.level,
                    s.owner,
                    s.operator,
                    uplinks.join(";")
                );
            }
            for d in rt.block_on(soar.agency_domains(a.id))? {
                println!("domain\t{d}");
            }
            for c in rt.block_on(soar.agency_contact_list(a.id))? {
                println!(
                    "contact\t{}\t{}\t{}\t{}",
                    c.contact.kind, c.contact.name, c.contact.phone, c.contact.email
                );
            }
            for t in rt.block_on(soar.agency_tasks(a.id))? {
                if !t.done {
                    println!(
                        "task\t{}\tdue {}\t{}",
                        t.kind,
                        t.due_at.to_rfc3339(),
                        t.title
                    );
                }
            }
            Ok(0)
        }
    }
}
