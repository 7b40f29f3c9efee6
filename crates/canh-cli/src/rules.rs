//! `canh rules`: check Sigma rule files and report which ones this engine runs; list, turn on
//! or off, scope and test the rules of the server running on the data directory.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use canh_detect::{LoadOptions, RuleSet, RuleStatus};
use serde_json::{Value, json};

use crate::datadir::{self, Locked};

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
    /// List the rules of the running server (state, scope, version).
    List(ListArgs),
    /// Turn a rule of the running server on.
    Enable(IdArg),
    /// Turn a rule of the running server off.
    Disable(IdArg),
    /// Limit a rule of the running server to agencies (`organization.id` codes); none = all.
    Scope(ScopeArgs),
    /// Run a rule (of the server, or a file) over the stored events and show the hits.
    Test(TestArgs),
}

#[derive(clap::Args, Debug)]
struct ListArgs {
    /// Output: table or json.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
}

#[derive(clap::Args, Debug)]
struct IdArg {
    /// Rule id.
    id: String,
}

#[derive(clap::Args, Debug)]
struct ScopeArgs {
    /// Rule id.
    id: String,
    /// Agency codes; give none to apply the rule to every agency.
    agencies: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct TestArgs {
    /// A rule id of the server, or a rule file (.yml/.yaml) or directory.
    rule: String,
    /// Start of the time range: RFC 3339, a date, epoch seconds or `now-24h`.
    #[arg(long, default_value = "now-24h")]
    from: String,
    /// End of the time range (exclusive); default now.
    #[arg(long)]
    to: Option<String>,
    /// Sample hits shown.
    #[arg(long, default_value_t = 10)]
    limit: usize,
    /// Output: table or json.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
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

pub(crate) fn run(args: RulesArgs, data_dir: &Path) -> anyhow::Result<i32> {
    match args.command {
        RulesCommand::Check(a) => check(a),
        RulesCommand::List(a) => list(&a, &server(data_dir)?),
        RulesCommand::Enable(a) => toggle(&a.id, true, &server(data_dir)?),
        RulesCommand::Disable(a) => toggle(&a.id, false, &server(data_dir)?),
        RulesCommand::Scope(a) => scope(&a, &server(data_dir)?),
        RulesCommand::Test(a) => test(&a, &server(data_dir)?),
    }
}

/// The server running on the data directory (these commands change or read its live rules).
fn server(data_dir: &Path) -> anyhow::Result<datadir::Remote> {
    match datadir::lock(data_dir)? {
        Locked::Busy => datadir::remote(data_dir),
        Locked::Mine(_) => anyhow::bail!(
            "no server runs on the data directory {}: start `canh server` (rules are live \
             server state) / chưa có máy chủ chạy trên thư mục dữ liệu này",
            data_dir.display()
        ),
    }
}

/// Calls the server's API; the JSON answer, or an error with the server's message.
pub(crate) fn call(
    server: &datadir::Remote,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let url = format!("{}{path}", server.base);
    let auth = format!("Bearer {}", server.token);
    let sent = match (method, body) {
        ("GET", _) => server.agent.get(&url).header("Authorization", &auth).call(),
        (m, b) => {
            let bytes = serde_json::to_vec(b.unwrap_or(&Value::Null))?;
            let req = if m == "PUT" {
                server.agent.put(&url)
            } else {
                server.agent.post(&url)
            };
            req.header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(&bytes[..])
        }
    };
    let mut resp =
        sent.with_context(|| format!("calling the running server at {}", server.base))?;
    let status = resp.status();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let msg = v["message"]
            .as_str()
            .map_or_else(|| v.to_string(), str::to_owned);
        anyhow::bail!("the server answered {status}: {msg}");
    }
    Ok(v)
}

fn enc(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn list(args: &ListArgs, server: &datadir::Remote) -> anyhow::Result<i32> {
    let v = call(server, "GET", "/api/v1/rules", None)?;
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&v["rules"])?);
        return Ok(0);
    }
    let rules = v["rules"].as_array().cloned().unwrap_or_default();
    for r in &rules {
        let scope: Vec<&str> = r["scope"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "{:<8} {:<11} v{:<3} {:<13} {:<38} {}  scope={}",
            if r["enabled"] == true { "on" } else { "off" },
            r["check"].as_str().unwrap_or(""),
            r["version"],
            r["level"].as_str().unwrap_or("-"),
            r["id"].as_str().unwrap_or(""),
            r["title"].as_str().unwrap_or(""),
            if scope.is_empty() {
                "*".to_owned()
            } else {
                scope.join(",")
            },
        );
    }
    let on = rules.iter().filter(|r| r["enabled"] == true).count();
    println!(
        "{} rules, {on} on / {} quy tắc, {on} đang bật",
        rules.len(),
        rules.len()
    );
    Ok(0)
}

fn toggle(id: &str, on: bool, server: &datadir::Remote) -> anyhow::Result<i32> {
    let action = if on { "enable" } else { "disable" };
    call(
        server,
        "POST",
        &format!("/api/v1/rules/{}/{action}", enc(id)),
        None,
    )?;
    println!("{id}: {}", if on { "on / bật" } else { "off / tắt" });
    Ok(0)
}

fn scope(args: &ScopeArgs, server: &datadir::Remote) -> anyhow::Result<i32> {
    let v = call(
        server,
        "PUT",
        &format!("/api/v1/rules/{}/scope", enc(&args.id)),
        Some(&json!({ "agencies": args.agencies })),
    )?;
    println!("{}: scope {}", args.id, v["scope"]);
    Ok(0)
}

/// The texts of the rule files under `path` (recursively, in name order).
pub(crate) fn rule_texts(paths: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    fn walk(p: &Path, top: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        if std::fs::metadata(p)?.is_file() {
            if top || p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                out.push(p.to_path_buf());
            }
            return Ok(());
        }
        for e in std::fs::read_dir(p)? {
            walk(&e?.path(), false, out)?;
        }
        Ok(())
    }
    let mut files = Vec::new();
    for p in paths {
        walk(p, true, &mut files).with_context(|| format!("reading {}", p.display()))?;
    }
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display())))
        .collect()
}

fn test(args: &TestArgs, server: &datadir::Remote) -> anyhow::Result<i32> {
    let path = Path::new(&args.rule);
    let mut body = json!({ "from": args.from, "limit": args.limit });
    // A rule id is rarely a file name; a path that is there is read as rules.
    if std::fs::metadata(path).is_ok() {
        body["texts"] = json!(rule_texts(&[path.to_path_buf()])?);
    } else {
        body["id"] = json!(args.rule);
    }
    if let Some(to) = &args.to {
        body["to"] = json!(to);
    }
    let v = call(server, "POST", "/api/v1/rules/test", Some(&body))?;
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    for (rule, n) in v["by_rule"].as_object().into_iter().flatten() {
        println!("{n:>8}  {rule}");
    }
    for h in v["hits"].as_array().into_iter().flatten() {
        println!(
            "{}  {:<10} {}  host={}  {}",
            h["event"]["@timestamp"].as_str().unwrap_or(""),
            h["rule_level"].as_str().unwrap_or("-"),
            h["rule_title"].as_str().unwrap_or(""),
            h["event"]["host.name"].as_str().unwrap_or("-"),
            h["event"]["message"].as_str().unwrap_or(""),
        );
    }
    for p in v["problems"].as_array().into_iter().flatten() {
        eprintln!("not loaded: {}", p.as_str().unwrap_or(""));
    }
    println!(
        "{} hits in {} events / {} kết quả trong {} sự kiện",
        v["count"], v["scanned"], v["count"], v["scanned"]
    );
    Ok(0)
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
