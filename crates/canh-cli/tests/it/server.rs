//! The `canh` binary end to end: server, ingest, search, config — and durability under SIGKILL.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn canh() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_canh"));
    c.env("CANH_LOG", "warn");
    // Plain HTTP so that the test can talk to the port directly; the TLS default has its own
    // test below.
    c.env("CANH_SERVER__HTTP_TLS", "false");
    c
}

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(data: &Path) -> Server {
    start_server_with(data, &[])
}

/// `canh server` on `data` with extra environment variables, once `/health` answers.
pub(crate) fn start_server_with(data: &Path, env: &[(&str, String)]) -> Server {
    let _ = std::fs::remove_file(data.join("server.addr"));
    let child = canh()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .arg("--data-dir")
        .arg(data)
        .args(["server", "--http", "127.0.0.1:0", "--syslog", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(data.join("server.addr")) {
            let url = text.trim().to_owned();
            if ureq::get(&format!("{url}/health")).call().is_ok() {
                return Server { child, url };
            }
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn search_json(data: &Path, q: &str) -> Vec<Value> {
    search_json_from(data, q, "now-2d")
}

/// `canh search Q --from FROM --format json`, one event per line.
pub(crate) fn search_json_from(data: &Path, q: &str, from: &str) -> Vec<Value> {
    let out = canh()
        .arg("--data-dir")
        .arg(data)
        .args([
            "search", q, "--from", from, "--limit", "100000", "--format", "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_acknowledged_event_survives_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = start_server(&data);
    let url = format!("{}/api/v1/ingest/ndjson", server.url);
    // A writer thread sends batches as fast as the server acknowledges them and records which
    // were acknowledged; the server is killed while requests are in flight.
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let writer = std::thread::spawn(move || {
        for batch in 0u64.. {
            let body: String = (0..200)
                .map(|i| format!("{{\"message\":\"dur batch {batch} item {i}\",\"labels\":{{\"batch\":{batch},\"item\":{i}}}}}\n"))
                .collect();
            match ureq::post(&url).send(body.as_bytes()) {
                Ok(resp) if resp.status() == 200 => {
                    if tx.send(batch).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    });
    // Let some batches be acknowledged, then kill without warning.
    let mut acked = Vec::new();
    while acked.len() < 30 {
        acked.push(
            rx.recv_timeout(Duration::from_secs(60))
                .expect("batches are acknowledged"),
        );
    }
    unsafe_kill(&mut server.child);
    writer.join().unwrap();
    acked.extend(rx.try_iter());
    let hits = search_json(&data, "labels.batch:*");
    let mut per_item: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    for h in &hits {
        let b = h["labels.batch"].as_u64().unwrap();
        let i = h["labels.item"].as_u64().unwrap();
        *per_item.entry((b, i)).or_default() += 1;
    }
    for b in &acked {
        for i in 0..200 {
            assert_eq!(
                per_item.get(&(*b, i)),
                Some(&1),
                "acknowledged event {b}/{i} lost or duplicated"
            );
        }
    }
    assert!(
        per_item.values().all(|n| *n == 1),
        "no event is stored twice"
    );
    // Batches in flight at the kill are all-or-nothing per WAL record, never partial twice.
    assert!(hits.len() >= acked.len() * 200);
}

/// SIGKILL: the process gets no chance to flush.
fn unsafe_kill(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = child.wait();
}

#[test]
fn ingest_files_then_search_events_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("access.log");
    let now = chrono::Utc::now().format("%d/%b/%Y:%H:%M:%S +0000");
    let mut f = std::fs::File::create(&log).unwrap();
    writeln!(
        f,
        "203.0.113.7 - - [{now}] \"GET /admin.php HTTP/1.1\" 404 12 \"-\" \"curl/8.0\""
    )
    .unwrap();
    writeln!(
        f,
        "198.51.100.2 - alice [{now}] \"POST /login HTTP/1.1\" 200 512 \"-\" \"Mozilla/5.0\""
    )
    .unwrap();
    f.write_all(b"\xff\xfe this line is not a web log at all\n")
        .unwrap();
    drop(f);
    let out = canh()
        .arg("--data-dir")
        .arg(&data)
        .args(["ingest", "--format", "nginx"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits = search_json(
        &data,
        "url.path:\"/admin.php\" AND http.response.status_code:404",
    );
    assert_eq!(hits.len(), 1, "{hits:#?}");
    assert_eq!(hits[0]["source.ip"], "203.0.113.7");
    let all = search_json(&data, "event.module:nginx");
    assert_eq!(all.len(), 2);
    let out = canh()
        .arg("--data-dir")
        .arg(&data)
        .args([
            "search",
            "*",
            "--dead-letter",
            "--from",
            "now-1d",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let dead: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert!(
        dead[0]["event.original"]
            .as_str()
            .unwrap()
            .contains("not a web log")
    );
    // CSV output has a header and one row per event.
    let out = canh()
        .arg("--data-dir")
        .arg(&data)
        .args([
            "search",
            "event.module:nginx",
            "--format",
            "csv",
            "--fields",
            "source.ip,http.request.method",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        vec![
            "198.51.100.2,POST",
            "203.0.113.7,GET",
            "source.ip,http.request.method"
        ]
    );
}

#[test]
fn search_goes_through_the_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = start_server(&data);
    let resp = ureq::post(&format!("{}/api/v1/ingest/ndjson", server.url))
        .send(b"{\"message\":\"live marker-live1\",\"host\":{\"name\":\"h1\"}}\n".as_slice())
        .unwrap();
    assert_eq!(resp.status(), 200);
    let hits = search_json(&data, "marker-live1");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["host.name"], "h1");
    // A second writer on the same data directory is refused.
    let out = canh()
        .arg("--data-dir")
        .arg(&data)
        .args(["server", "--http", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("used by another Canh process"));
    server.child.kill().unwrap();
    let _ = server.child.wait();
}

#[test]
fn the_default_server_speaks_https_and_search_follows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_canh"))
        .env("CANH_LOG", "warn")
        .arg("--data-dir")
        .arg(&data)
        .args(["server", "--http", "127.0.0.1:0", "--syslog", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = loop {
        if let Ok(text) = std::fs::read_to_string(data.join("server.addr"))
            && std::fs::metadata(data.join("server.token")).is_ok()
        {
            break text.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(url.starts_with("https://"), "{url}");
    let ca = data.join("tls/server.crt");
    // curl checks the generated certificate against the file the server wrote.
    let out = Command::new("curl")
        .args(["-s", "-w", "%{http_code}", "--cacert"])
        .arg(&ca)
        .args([
            "-H",
            "Content-Type: application/x-ndjson",
            "--data-binary",
            "{\"message\":\"tls marker-https1\",\"host\":{\"name\":\"h2\"}}\n",
            &format!("{url}/api/v1/ingest/ndjson"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("200"), "{text}");
    let hits = search_json(&data, "marker-https1");
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["host.name"], "h2");
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn config_defaults_check_and_env_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let out = canh().args(["config", "defaults"]).output().unwrap();
    assert!(out.status.success());
    let file = dir.path().join("canh.toml");
    std::fs::write(&file, &out.stdout).unwrap();
    let ok = canh()
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = canh()
        .args(["config", "check"])
        .arg(&file)
        .env("CANH_STORE__RETENTION_DAYS", "0")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("retention_days"));
    std::fs::write(&file, "[server]\nhttp = \"127.0.0.1:1\"\nsyslogg = \"x\"\n").unwrap();
    let bad = canh()
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("syslogg"));
}
