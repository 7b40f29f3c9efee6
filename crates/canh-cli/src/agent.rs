//! `canh agent`: enrolment tokens, the agent list, revocation, and endpoint-agent releases
//! (signed manifests) with their rollout. With no server on the data directory, the commands
//! work on its files directly; with one, they go through its API with the local command-line
//! token. A rollout needs the running server (it delivers the signed commands).

use crate::datadir::{self, Locked};
use crate::user::{cli_actor, open_soar, runtime};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub(crate) struct AgentArgs {
    #[command(subcommand)]
    cmd: AgentCmd,
}

#[derive(clap::Subcommand, Debug)]
enum AgentCmd {
    /// Create a one-time enrolment token; prints it and the CA pin for `canh-agent enrol`.
    /// Tạo mã đăng ký tác tử dùng một lần.
    Token {
        /// Seconds the token stays valid (at most 7 days).
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Agency (code) the enrolled agent belongs to: its events carry it as
        /// `organization.id`. Đơn vị của máy trạm.
        #[arg(long, value_name = "CODE")]
        agency: Option<String>,
    },
    /// Enrolled agents with their last heartbeat. Danh sách tác tử.
    List,
    /// Refuse an agent from now on. Thu hồi tác tử.
    Revoke {
        /// The agent id.
        id: String,
    },
    /// Agent releases / Phiên bản tác tử.
    #[command(subcommand)]
    Release(ReleaseCmd),
}

#[derive(clap::Subcommand, Debug)]
enum ReleaseCmd {
    /// Store a `canh-agent` binary as a release and sign its manifest.
    /// Phát hành một phiên bản tác tử (ký bản kê khai).
    Publish {
        /// The binary.
        file: PathBuf,
        /// Its version, MAJOR.MINOR.PATCH.
        #[arg(long)]
        version: String,
        /// Platform, `<os>-<arch>`.
        #[arg(long, default_value_t = default_target())]
        target: String,
    },
    /// List published releases. Liệt kê các phiên bản.
    List,
    /// Send a release to agents (needs the running server).
    /// Triển khai phiên bản tới các tác tử.
    Rollout {
        /// Version to install.
        #[arg(long)]
        version: String,
        /// Platform, `<os>-<arch>`.
        #[arg(long, default_value_t = default_target())]
        target: String,
        /// Every enrolled agent.
        #[arg(long, conflicts_with_all = ["agent", "agency"])]
        all: bool,
        /// An agent id (repeat for several).
        #[arg(long, conflicts_with = "agency")]
        agent: Vec<String>,
        /// Every agent of this agency (code) and of the agencies under it.
        #[arg(long, value_name = "CODE")]
        agency: Option<String>,
        /// Install even over a newer version.
        #[arg(long)]
        allow_downgrade: bool,
    },
}

fn default_target() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

fn open_service(data_dir: &Path) -> anyhow::Result<canh_server::agents::AgentService> {
    canh_server::agents::AgentService::open(data_dir, canh_server::agents::AgentsConfig::default())
        .context("opening the agent registry")
}

/// GET from the running server with the local token; the answer as JSON.
fn get(data_dir: &Path, path: &str) -> anyhow::Result<serde_json::Value> {
    let remote = datadir::remote(data_dir)?;
    let url = format!("{}{path}", remote.base);
    let mut resp = remote
        .agent
        .get(&url)
        .header("Authorization", &format!("Bearer {}", remote.token))
        .call()
        .with_context(|| format!("asking {}", remote.base))?;
    let status = resp.status();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    refused(status.as_u16(), &text)?;
    serde_json::from_str(&text).context("the server's answer is not JSON")
}

/// An error for a refused request; 404 on the agent routes means they are off.
fn refused(status: u16, text: &str) -> anyhow::Result<()> {
    match status {
        200..=299 => Ok(()),
        404 => bail!(
            "the running server has no agent endpoints (set `[agents] enabled = true`) \
             or the agent is unknown: {text}"
        ),
        _ => bail!("server refused: {status} {text}"),
    }
}

fn token(data_dir: &Path, ttl: u64, agency: Option<&str>) -> anyhow::Result<i32> {
    if ttl == 0 || ttl > 7 * 24 * 3600 {
        bail!("--ttl must be between 1 and 604800 seconds");
    }
    let (token, pin) = match datadir::lock(data_dir)? {
        Locked::Mine(_lock) => {
            let rt = runtime()?;
            let soar = open_soar(&rt, data_dir)?;
            if let Some(code) = agency
                && rt.block_on(soar.agency_by_code(code)).is_err()
            {
                bail!("no agency with code {code:?} (see `canh agency list`)");
            }
            let svc = open_service(data_dir)?;
            let token =
                svc.create_enrolment_token_for(std::time::Duration::from_secs(ttl), agency)?;
            rt.block_on(soar.record_audit(
                &cli_actor(),
                "agent.token.create",
                "agent",
                "enrolment-token",
                None,
                Some(serde_json::json!({"ttl_secs": ttl, "agency": agency})),
            ))
            .context("writing the audit log")?;
            (token, svc.ca_pin())
        }
        Locked::Busy => {
            let body = serde_json::json!({ "ttl_secs": ttl, "agency": agency }).to_string();
            let out = call(
                data_dir,
                "/api/v1/agents/enrolment-tokens",
                "application/json",
                body.as_bytes(),
            )?;
            (
                out["token"].as_str().unwrap_or_default().to_owned(),
                out["ca_pin"].as_str().unwrap_or_default().to_owned(),
            )
        }
    };
    println!("token\t{token}");
    println!("ca_pin\t{pin}");
    println!(
        "valid for {ttl} s; on the endpoint: canh-agent enrol --server HOST:PORT --token {token} --ca-pin {pin}"
    );
    Ok(0)
}

fn agents(data_dir: &Path) -> anyhow::Result<i32> {
    let list: Vec<serde_json::Value> = match datadir::lock(data_dir)? {
        Locked::Mine(_lock) => open_service(data_dir)?
            .agents()
            .into_iter()
            .map(|a| serde_json::to_value(a).unwrap_or_default())
            .collect(),
        Locked::Busy => match get(data_dir, "/api/v1/agents")? {
            serde_json::Value::Array(v) => v,
            other => other["agents"].as_array().cloned().unwrap_or_default(),
        },
    };
    if list.is_empty() {
        println!("no agents enrolled");
    }
    for a in &list {
        let field = |k: &str| {
            a[k].as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| "-".into())
        };
        // `last_heartbeat` is [received at, heartbeat].
        let beat = &a["last_heartbeat"];
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            field("agent_id"),
            field("hostname"),
            beat[1]["version"].as_str().unwrap_or("-"),
            beat[0].as_str().unwrap_or("no heartbeat"),
            if a["revoked_at"].is_null() {
                "active"
            } else {
                "revoked"
            },
            field("agency")
        );
    }
    Ok(0)
}

fn revoke(data_dir: &Path, id: &str) -> anyhow::Result<i32> {
    match datadir::lock(data_dir)? {
        Locked::Mine(_lock) => {
            open_service(data_dir)?.revoke(id)?;
            let rt = runtime()?;
            let soar = open_soar(&rt, data_dir)?;
            rt.block_on(soar.record_audit(&cli_actor(), "agent.revoke", "agent", id, None, None))
                .context("writing the audit log")?;
        }
        Locked::Busy => {
            call(
                data_dir,
                &format!("/api/v1/agents/{id}/revoke"),
                "application/json",
                b"{}",
            )?;
        }
    }
    println!("agent {id} revoked");
    Ok(0)
}

pub(crate) fn run(args: AgentArgs, data_dir: &Path) -> anyhow::Result<i32> {
    let cmd = match args.cmd {
        AgentCmd::Token { ttl, agency } => return token(data_dir, ttl, agency.as_deref()),
        AgentCmd::List => return agents(data_dir),
        AgentCmd::Revoke { id } => return revoke(data_dir, &id),
        AgentCmd::Release(cmd) => cmd,
    };
    match cmd {
        ReleaseCmd::Publish {
            file,
            version,
            target,
        } => publish(data_dir, &file, &version, &target),
        ReleaseCmd::List => list(data_dir),
        ReleaseCmd::Rollout {
            version,
            target,
            all,
            agent,
            agency,
            allow_downgrade,
        } => {
            if !all && agent.is_empty() && agency.is_none() {
                bail!("give --all, --agency CODE or at least one --agent");
            }
            let body = if all {
                serde_json::json!({"version": version, "target": target, "all": true,
                    "allow_downgrade": allow_downgrade})
            } else if let Some(code) = &agency {
                serde_json::json!({"version": version, "target": target, "agency": code,
                    "allow_downgrade": allow_downgrade})
            } else {
                serde_json::json!({"version": version, "target": target, "agents": agent,
                    "allow_downgrade": allow_downgrade})
            };
            let Locked::Busy = datadir::lock(data_dir)? else {
                bail!(
                    "no server runs on {}: start it to roll out",
                    data_dir.display()
                );
            };
            let out = call(
                data_dir,
                "/api/v1/agents/releases/rollout",
                "application/json",
                body.to_string().as_bytes(),
            )?;
            let cmds = out["commands"].as_array().cloned().unwrap_or_default();
            for c in &cmds {
                println!(
                    "{}\t{}",
                    c["agent_id"].as_str().unwrap_or_default(),
                    c["command_id"].as_str().unwrap_or_default()
                );
            }
            println!(
                "release {version} ({target}) sent to {} agent(s)",
                cmds.len()
            );
            Ok(0)
        }
    }
}

fn print_manifest(m: &serde_json::Value) {
    println!(
        "{}\t{}\t{} bytes\tsha256 {}\t{}",
        m["version"].as_str().unwrap_or_default(),
        m["target"].as_str().unwrap_or_default(),
        m["size"],
        m["sha256"].as_str().unwrap_or_default(),
        m["created"].as_str().unwrap_or_default()
    );
}

/// POST to the running server with the local token; the answer as JSON.
fn call(
    data_dir: &Path,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> anyhow::Result<serde_json::Value> {
    let remote = datadir::remote(data_dir)?;
    let url = format!("{}{path}", remote.base);
    let mut resp = remote
        .agent
        .post(&url)
        .header("Authorization", &format!("Bearer {}", remote.token))
        .header("Content-Type", content_type)
        .send(body)
        .with_context(|| format!("sending to {}", remote.base))?;
    let status = resp.status();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    refused(status.as_u16(), &text)?;
    Ok(serde_json::from_str(&text).unwrap_or_default())
}

fn publish(data_dir: &Path, file: &Path, version: &str, target: &str) -> anyhow::Result<i32> {
    let binary = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    match datadir::lock(data_dir)? {
        Locked::Mine(_lock) => {
            let r = open_service(data_dir)?.publish_release(version, target, &binary)?;
            let manifest = serde_json::to_value(&r.manifest)?;
            let rt = runtime()?;
            let soar = open_soar(&rt, data_dir)?;
            rt.block_on(soar.record_audit(
                &cli_actor(),
                "agent.release.publish",
                "agent_release",
                &format!("{target}/{version}"),
                None,
                Some(manifest.clone()),
            ))
            .context("writing the audit log")?;
            print_manifest(&manifest);
        }
        Locked::Busy => {
            let path = format!("/api/v1/agents/releases?version={version}&target={target}");
            let out = call(data_dir, &path, "application/octet-stream", &binary)?;
            print_manifest(&out["manifest"]);
        }
    }
    println!("published; roll it out with `canh agent release rollout --version {version}`");
    Ok(0)
}

fn list(data_dir: &Path) -> anyhow::Result<i32> {
    let releases: Vec<serde_json::Value> = match datadir::lock(data_dir)? {
        Locked::Mine(_lock) => open_service(data_dir)?
            .releases()
            .into_iter()
            .map(|r| serde_json::to_value(r.manifest).unwrap_or_default())
            .collect(),
        Locked::Busy => match get(data_dir, "/api/v1/agents/releases")? {
            serde_json::Value::Array(v) => v.into_iter().map(|r| r["manifest"].clone()).collect(),
            _ => Vec::new(),
        },
    };
    if releases.is_empty() {
        println!("no releases");
    }
    for m in &releases {
        print_manifest(m);
    }
    Ok(0)
}
