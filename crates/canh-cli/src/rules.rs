//! `canh rules`: check Sigma rule files and report which ones this engine runs.

use std::path::PathBuf;

use canh_detect::{LoadOptions, RuleSet, RuleStatus};

/// Arguments of `canh rules`.
#[derive(clap::Args, Debug)]
pub(crate) struct RulesArgs {
    #[command(subcommand)]
    command: RulesCommand,
}

#[derive(clap::Subcommand, Debug)]
enum RulesCommand {
    /// Compile every rule under the given files or directories and report its status.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// Rule files or directories (searched recursively for .yml/.yaml).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: CheckFormat,
    /// Only list rules that are not ok (the summary still counts all).
    #[arg(long)]
    problems_only: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum CheckFormat {
    Table,
    Json,
}

/// Counts of a check run.
#[derive(Debug, Default, serde::Serialize)]
struct Summary {
    total: usize,
    ok: usize,
    warning: usize,
    unsupported: usize,
    invalid: usize,
}

pub(crate) fn run(args: RulesArgs) -> anyhow::Result<i32> {
    match args.command {
        RulesCommand::Check(a) => check(a),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<i32> {
    for p in &args.paths {
        if std::fs::metadata(p).is_err() {
            anyhow::bail!("no such file or directory: {}", p.display());
        }
    }
    let (_set, reports) = RuleSet::load_paths(&args.paths, &LoadOptions::default());
    let mut s = Summary {
        total: reports.len(),
        ..Summary::default()
    };
    for r in &reports {
        match r.status {
            RuleStatus::Ok => s.ok += 1,
            RuleStatus::Warning(_) => s.warning += 1,
            RuleStatus::Unsupported(_) => s.unsupported += 1,
            RuleStatus::Invalid(_) => s.invalid += 1,
        }
    }
    let shown: Vec<_> = reports
        .iter()
        .filter(|r| !args.problems_only || r.status != RuleStatus::Ok)
        .collect();
    match args.format {
        CheckFormat::Json => {
            let out = serde_json::json!({ "rules": shown, "summary": s });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        CheckFormat::Table => {
            for r in shown {
                let path = r
                    .path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                let (status, reason) = match &r.status {
                    RuleStatus::Ok => ("ok", String::new()),
                    RuleStatus::Warning(w) => ("warning", w.join("; ")),
                    RuleStatus::Unsupported(m) => ("unsupported", m.clone()),
                    RuleStatus::Invalid(m) => ("invalid", m.clone()),
                };
                println!("{status:<12} {:<11} {path}  {reason}", r.kind);
            }
            println!(
                "{} rules: {} ok, {} ok with warnings, {} unsupported, {} invalid \
                 / {} quy tắc: {} đạt, {} đạt có cảnh báo, {} chưa hỗ trợ, {} không hợp lệ",
                s.total,
                s.ok,
                s.warning,
                s.unsupported,
                s.invalid,
                s.total,
                s.ok,
                s.warning,
                s.unsupported,
                s.invalid
            );
        }
    }
    Ok(if s.invalid > 0 { 1 } else { 0 })
}
