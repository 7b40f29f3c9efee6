//! Agent upgrades end to end: a real node (HTTP API + agent endpoints), the real `canh-agent`
//! binary copied into a temporary directory and run as a process, releases published and rolled
//! out through the API, and the binary swapped (or not) on disk.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use canh_core::wire::{ResponseAction, SignedManifest, UpgradeOutcome};
use canh_server::agents::AgentService;
use sha2::{Digest, Sha256};

use super::agents::http;

/// Builds the `canh-agent` binary (a no-op when it is fresh) and returns its path. The binary
/// of another package is not built for this test target, so cargo is asked for it.
fn agent_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        // Variables cargo sets for this test process, not for a build: left in, build scripts
        // that watch them (ring's) would rebuild on every run.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_BIN_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_MANIFEST_LINKS",
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                    "OUT_DIR",
                ]
                .contains(&k.as_ref())
            {
                cmd.env_remove(k.as_ref());
            }
        }
        let out = cmd
            .args([
                "build",
                "-p",
                "canh-agent",
                "--bin",
                "canh-agent",
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .expect("running cargo build for canh-agent");
        assert!(out.status.success(), "cargo build -p canh-agent failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "canh-agent")
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no canh-agent executable")
    })
    .clone()
}

/// A version newer than the build's: major + 1.
fn newer_version(bump: u64) -> String {
    let major: u64 = env!("CARGO_PKG_VERSION")
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    format!("{}.0.{bump}", major + 1)
}

fn target() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Polls `cond` every 50 ms; fails after 180 s (a hang guard, not a speed check).
async fn wait_for(what: &str, log: &Path, mut cond: impl FnMut() -> bool) {
    for _ in 0..3600 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("timed out waiting for {what}; agent log:\n{log}");
}

/// The agent process; killed when dropped.
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Host {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    state: PathBuf,
    config: PathBuf,
    log: PathBuf,
    original: Vec<u8>,
}

impl Host {
    /// A host directory with a copy of the agent binary and a quiet configuration (no
    /// sensors, 1 s heartbeats, the given trial time).
    fn new(trial_secs: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin_dir = dir.path().join("bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        let bin = bin_dir.join("canh-agent");
        std::fs::copy(agent_binary(), &bin).unwrap();
        let original = std::fs::read(&bin).unwrap();
        let state = dir.path().join("state");
        let config = dir.path().join("canh-agent.toml");
        std::fs::write(
            &config,
            format!(
                "state_dir = {state:?}\nheartbeat_secs = 1\n\
                 [sensors]\nprocess = false\nfim_paths = []\nnetwork_poll_secs = 0\n\
                 modules_poll_secs = 0\nlogins = false\ndevices = false\n\
                 [inventory]\ninterval_secs = 0\n\
                 [upgrade]\ntrial_secs = {trial_secs}\n"
            ),
        )
        .unwrap();
        let log = dir.path().join("agent.log");
        Self {
            _dir: dir,
            bin,
            state,
            config,
            log,
            original,
        }
    }

    fn enrol(&self, svc: &AgentService) -> String {
        let (enrol_addr, _) = svc.bound_addrs().unwrap();
        let token = svc
            .create_enrolment_token(Duration::from_secs(300))
            .unwrap();
        let out = Command::new(&self.bin)
            .args([
                "enrol",
                "--server",
                &enrol_addr.to_string(),
                "--token",
                &token,
            ])
            .args(["--ca-pin", &svc.ca_pin(), "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        canh_agent::client::Identity::load(&self.state)
            .unwrap()
            .agent_id
    }

    fn run(&self) -> AgentProcess {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(&self.bin)
            .args(["run", "--config"])
            .arg(&self.config)
            .env("CANH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        AgentProcess(child)
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        self.bin.with_file_name(format!("canh-agent.{suffix}"))
    }

    /// Nothing of an upgrade is left: same binary, no staged file, no marker.
    fn assert_untouched(&self) {
        assert_eq!(
            std::fs::read(&self.bin).unwrap(),
            self.original,
            "binary changed"
        );
        assert!(
            !self.sibling("new").try_exists().unwrap(),
            "staged file left"
        );
        assert!(
            !self.sibling("download").try_exists().unwrap(),
            "download left"
        );
        assert!(
            !self.sibling("prev").try_exists().unwrap(),
            "no swap happened"
        );
        assert!(!self.state.join("release.json").try_exists().unwrap());
    }
}

struct Server {
    node: canh_server::Node,
    _data: tempfile::TempDir,
    token: String,
}

impl Server {
    async fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let node = super::agents::start_node(data.path()).await;
        let token = std::fs::read_to_string(canh_server::node::local_token_path(data.path()))
            .unwrap()
            .trim()
            .to_owned();
        Self {
            node,
            _data: data,
            token,
        }
    }

    fn svc(&self) -> &AgentService {
        self.node.agents.as_ref().unwrap()
    }

    async fn publish(&self, version: &str, target: &str, binary: &[u8]) -> serde_json::Value {
        let (st, body) = http(
            self.node.http,
            "POST",
            &format!("/api/v1/agents/releases?version={version}&target={target}"),
            &self.token,
            binary,
        )
        .await;
        assert_eq!(st, 201, "{body}");
        body
    }

    async fn rollout(&self, version: &str, target: &str, agent: &str) -> String {
        let req = serde_json::json!({"version": version, "target": target, "agents": [agent]});
        let (st, body) = http(
            self.node.http,
            "POST",
            "/api/v1/agents/releases/rollout",
            &self.token,
            req.to_string().as_bytes(),
        )
        .await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(body["commands"][0]["agent_id"], agent);
        body["commands"][0]["command_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn heartbeat_version(&self) -> Option<String> {
        self.svc()
            .agents()
            .first()
            .and_then(|a| a.last_heartbeat.as_ref().map(|(_, hb)| hb.version.clone()))
    }

    fn outcomes(&self, agent: &str) -> Vec<(String, UpgradeOutcome)> {
        self.svc()
            .upgrade_history(agent)
            .into_iter()
            .map(|r| (r.report.version, r.report.outcome))
            .collect()
    }

    /// The result of command `id`, once the agent sent it.
    fn result(&self, agent: &str, id: &str) -> Option<canh_core::wire::CommandResult> {
        self.svc()
            .command_results(agent)
            .into_iter()
            .find(|r| r.id == id)
    }
}

fn exe_of(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .unwrap()
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_release_is_tried_swapped_in_and_reported() {
    let server = Server::start().await;
    let host = Host::new(120);
    let agent_id = host.enrol(server.svc());
    let mut agent = host.run();
    let pid = agent.0.id();
    wait_for("the first heartbeat", &host.log, || {
        server.heartbeat_version().as_deref() == Some(env!("CARGO_PKG_VERSION"))
    })
    .await;

    // The same binary, published as a newer version: what changes is only what the signed
    // manifest says, so the version the agent reports proves which manifest it installed.
    let version = newer_version(0);
    let published = server.publish(&version, &target(), &host.original).await;
    assert_eq!(published["manifest"]["sha256"], sha256(&host.original));
    assert_eq!(published["manifest"]["size"], host.original.len());
    let (st, list) = http(
        server.node.http,
        "GET",
        "/api/v1/agents/releases",
        &server.token,
        b"",
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(list[0]["manifest"]["version"], version.as_str());

    let cmd = server.rollout(&version, &target(), &agent_id).await;
    wait_for("the installed report", &host.log, || {
        server.outcomes(&agent_id).last() == Some(&(version.clone(), UpgradeOutcome::Installed))
    })
    .await;
    // Trial first, then the swap.
    assert_eq!(
        server.outcomes(&agent_id),
        [
            (version.clone(), UpgradeOutcome::TrialPassed),
            (version.clone(), UpgradeOutcome::Installed)
        ]
    );
    let result = server.result(&agent_id, &cmd).unwrap();
    assert!(result.ok, "{}", result.message);
    wait_for("a heartbeat with the new version", &host.log, || {
        server.heartbeat_version().as_deref() == Some(version.as_str())
    })
    .await;
    wait_for("the marker to be cleared", &host.log, || {
        !host.state.join("upgrade.json").try_exists().unwrap()
    })
    .await;

    // Swapped: the previous binary kept as `.prev`, the new one in place, nothing staged.
    assert_eq!(std::fs::read(host.sibling("prev")).unwrap(), host.original);
    assert_eq!(std::fs::read(&host.bin).unwrap(), host.original);
    assert!(!host.sibling("new").try_exists().unwrap());
    let release: SignedManifest =
        serde_json::from_slice(&std::fs::read(host.state.join("release.json")).unwrap()).unwrap();
    assert!(release.body.contains(&format!("\"version\":\"{version}\"")));
    // Re-executed in place: the same process, now running the file at the binary's path (an
    // old image would show the replaced file as deleted).
    assert!(agent.0.try_wait().unwrap().is_none(), "agent process ended");
    assert_eq!(exe_of(pid), host.bin.display().to_string());
    // The agent list shows the running version and the last upgrade report.
    let (st, list) = http(
        server.node.http,
        "GET",
        "/api/v1/agents",
        &server.token,
        b"",
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(list[0]["upgrade"]["outcome"], "installed");
    assert_eq!(list[0]["upgrade"]["version"], version.as_str());
    assert_eq!(list[0]["last_heartbeat"][1]["version"], version.as_str());
    let info = &server.svc().agents()[0];
    assert_eq!(
        info.upgrade.as_ref().unwrap().report.outcome,
        UpgradeOutcome::Installed
    );

    // Publication and rollout are in the audit chain.
    let audit = server
        .node
        .soar
        .soar
        .audit_log(&canh_soar::AuditFilter {
            object_type: Some("agent_release".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["agent.release.rollout", "agent.release.publish"]);
    drop(agent);
    server.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_forged_foreign_and_older_releases_change_nothing() {
    let server = Server::start().await;
    let host = Host::new(120);
    let agent_id = host.enrol(server.svc());
    let mut agent = host.run();
    wait_for("the first heartbeat", &host.log, || {
        server.heartbeat_version().is_some()
    })
    .await;

    // 1. The stored binary is altered after signing (same size): the hash check refuses it.
    let version = newer_version(1);
    server.publish(&version, &target(), &host.original).await;
    let stored = server
        ._data
        .path()
        .join("agents/releases")
        .join(target())
        .join(&version)
        .join("canh-agent");
    let mut bytes = std::fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();
    let cmd = server.rollout(&version, &target(), &agent_id).await;
    wait_for("the refusal", &host.log, || {
        server.result(&agent_id, &cmd).is_some()
    })
    .await;
    let r = server.result(&agent_id, &cmd).unwrap();
    assert!(!r.ok);
    assert!(r.message.contains("does not match"), "{}", r.message);
    host.assert_untouched();

    // 2. A manifest whose body was changed after signing (the server's command signature
    // around it is valid): the release signature refuses it.
    let good = server.svc().releases()[0].signed.clone();
    let forged = SignedManifest {
        body: good.body.replace(&version, &newer_version(9)),
        signature: good.signature.clone(),
    };
    let id = server
        .svc()
        .send_command(
            &agent_id,
            ResponseAction::UpgradeAgent {
                manifest: forged,
                allow_downgrade: false,
            },
            Duration::from_secs(60),
        )
        .unwrap();
    wait_for("the refusal", &host.log, || {
        server.result(&agent_id, &id).is_some()
    })
    .await;
    let r = server.result(&agent_id, &id).unwrap();
    assert!(!r.ok);
    assert!(r.message.contains("signature"), "{}", r.message);

    // 3. Another platform.
    server
        .publish(&newer_version(2), "linux-riscv64", b"\x7fELF")
        .await;
    let cmd = server
        .rollout(&newer_version(2), "linux-riscv64", &agent_id)
        .await;
    wait_for("the refusal", &host.log, || {
        server.result(&agent_id, &cmd).is_some()
    })
    .await;
    let r = server.result(&agent_id, &cmd).unwrap();
    assert!(!r.ok);
    assert!(r.message.contains("linux-riscv64"), "{}", r.message);

    // 4. An older version without permission to downgrade.
    server.publish("0.0.1", &target(), &host.original).await;
    let cmd = server.rollout("0.0.1", &target(), &agent_id).await;
    wait_for("the refusal", &host.log, || {
        server.result(&agent_id, &cmd).is_some()
    })
    .await;
    let r = server.result(&agent_id, &cmd).unwrap();
    assert!(!r.ok);
    assert!(r.message.contains("downgrade not allowed"), "{}", r.message);

    host.assert_untouched();
    assert!(!host.state.join("upgrade.json").try_exists().unwrap());
    assert!(server.outcomes(&agent_id).is_empty());
    assert!(agent.0.try_wait().unwrap().is_none(), "agent process ended");
    assert_eq!(
        server.heartbeat_version().as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    drop(agent);
    server.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_never_heartbeats_is_rolled_back_and_alerted() {
    let server = Server::start().await;
    let host = Host::new(10);
    let agent_id = host.enrol(server.svc());
    let mut agent = host.run();
    wait_for("the first heartbeat", &host.log, || {
        server.heartbeat_version().is_some()
    })
    .await;

    // A "binary" that exits at once, then one that never reaches the server (killed at the
    // trial deadline).
    let crashing = newer_version(3);
    let silent = newer_version(4);
    for (version, script, reason) in [
        (&crashing, "#!/bin/sh\nexit 1\n", "exited"),
        (&silent, "#!/bin/sh\nexec sleep 60\n", "within 10 s"),
    ] {
        server.publish(version, &target(), script.as_bytes()).await;
        let cmd = server.rollout(version, &target(), &agent_id).await;
        wait_for("the failure report", &host.log, || {
            server.outcomes(&agent_id).last() == Some(&(version.clone(), UpgradeOutcome::Failed))
        })
        .await;
        let r = server.result(&agent_id, &cmd).unwrap();
        assert!(r.ok, "the release was staged: {}", r.message);
        let rec = server.svc().upgrade_history(&agent_id).pop().unwrap();
        let why = rec.report.reason.unwrap();
        assert!(why.contains(reason), "{why}");
        assert_eq!(rec.report.previous_version, env!("CARGO_PKG_VERSION"));
        wait_for("the marker to be cleared", &host.log, || {
            !host.state.join("upgrade.json").try_exists().unwrap()
        })
        .await;
        host.assert_untouched();
    }
    // The old agent runs again, in the same process, and keeps reporting.
    assert!(agent.0.try_wait().unwrap().is_none(), "agent process ended");
    let before = server.svc().agents()[0].last_heartbeat.clone().unwrap().0;
    wait_for("a later heartbeat", &host.log, || {
        server.svc().agents()[0].last_heartbeat.clone().unwrap().0 > before
    })
    .await;
    assert_eq!(
        server.heartbeat_version().as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    // The alert and the audit entry are written after the report is stored: poll for both.
    let soar = &server.node.soar.soar;
    let (mut alerts, mut audit) = (Vec::new(), Vec::new());
    for _ in 0..600 {
        alerts = soar
            .alerts(
                &canh_soar::AlertFilter {
                    rule_id: Some("canh.agents.upgrade_failed".into()),
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap()
            .items;
        audit = soar
            .audit_log(&canh_soar::AuditFilter {
                object_type: Some("agent".into()),
                object_id: Some(agent_id.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        if alerts.len() == 2 && audit.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(alerts.len(), 2, "one alert per failed release");
    assert_eq!(audit.len(), 2);
    assert!(audit.iter().all(|e| e.action == "agent.upgrade_failed"));
    drop(agent);
    server.node.shutdown().await.unwrap();
}

/// Who may publish, roll out and read releases, over the HTTP API; and the OpenAPI document
/// lists these operations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_routes_are_for_administrators_and_documented() {
    use canh_soar::{Actor, NewAgency, Role};
    let server = Server::start().await;
    let soar = &server.node.soar.soar;
    let sys = Actor::system("test");
    let pw = "correct horse battery staple";
    let agency = soar
        .create_agency(
            &sys,
            NewAgency {
                code: "tinh-b".into(),
                name: "Tỉnh B".into(),
                level: "province".into(),
                parent_id: None,
            },
        )
        .await
        .unwrap();
    let mut tokens = std::collections::HashMap::new();
    for (name, role, agency) in [
        ("quantri", Role::Administrator, None),
        ("truongca", Role::SocLead, None),
        ("phantich", Role::Analyst, None),
        ("xem", Role::AgencyViewer, Some(agency.id)),
    ] {
        let u = soar
            .create_user(&sys, name, role, agency, pw)
            .await
            .unwrap();
        let t = soar
            .issue_token(&sys, u.id, "t", chrono::Duration::days(1))
            .await
            .unwrap();
        tokens.insert(name, t.secret);
    }
    let addr = server.node.http;
    let publish = format!("/api/v1/agents/releases?version=1.2.3&target={}", target());
    let rollout = br#"{"version":"1.2.3","all":true}"#;
    for who in ["truongca", "phantich", "xem"] {
        let (st, _) = http(addr, "POST", &publish, &tokens[who], b"bin").await;
        assert_eq!(st, 403, "{who} publishes");
        let (st, _) = http(
            addr,
            "POST",
            "/api/v1/agents/releases/rollout",
            &tokens[who],
            rollout,
        )
        .await;
        assert_eq!(st, 403, "{who} rolls out");
    }
    let (st, _) = http(addr, "POST", &publish, "wrong", b"bin").await;
    assert_eq!(st, 401);
    assert!(
        server.svc().releases().is_empty(),
        "nothing published by refused calls"
    );
    let (st, body) = http(addr, "POST", &publish, &tokens["quantri"], b"bin").await;
    assert_eq!(st, 201, "{body}");
    let (st, body) = http(addr, "POST", &publish, &tokens["quantri"], b"bin2").await;
    assert_eq!(st, 409, "{body}");
    let (st, body) = http(
        addr,
        "POST",
        "/api/v1/agents/releases?version=latest",
        &tokens["quantri"],
        b"bin",
    )
    .await;
    assert_eq!(st, 422, "{body}");
    for who in ["quantri", "truongca", "phantich"] {
        let (st, body) = http(addr, "GET", "/api/v1/agents/releases", &tokens[who], b"").await;
        assert_eq!(st, 200, "{who}");
        assert_eq!(body.as_array().unwrap().len(), 1);
    }
    let (st, _) = http(addr, "GET", "/api/v1/agents/releases", &tokens["xem"], b"").await;
    assert_eq!(st, 403);
    let (st, body) = http(
        addr,
        "POST",
        "/api/v1/agents/releases/rollout",
        &tokens["quantri"],
        rollout,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        body["commands"],
        serde_json::json!([]),
        "no agents enrolled"
    );
    let (st, _) = http(
        addr,
        "POST",
        "/api/v1/agents/releases/rollout",
        &tokens["quantri"],
        br#"{"version":"1.2.3"}"#,
    )
    .await;
    assert_eq!(st, 422, "neither all nor a list");
    let (st, _) = http(
        addr,
        "POST",
        "/api/v1/agents/releases/rollout",
        &tokens["quantri"],
        br#"{"version":"9.9.9","all":true}"#,
    )
    .await;
    assert_eq!(st, 404);
    let (st, _) = http(
        addr,
        "GET",
        "/api/v1/agents/nope/upgrades",
        &tokens["phantich"],
        b"",
    )
    .await;
    assert_eq!(st, 404);

    let doc: serde_json::Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/soar/openapi.json"
    )))
    .unwrap();
    for (path, method) in [
        ("/api/v1/agents/releases", "get"),
        ("/api/v1/agents/releases", "post"),
        ("/api/v1/agents/releases/rollout", "post"),
        ("/api/v1/agents/{id}/upgrades", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    server.node.shutdown().await.unwrap();
}
