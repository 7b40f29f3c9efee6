//! Sources end to end: real clients (logger, the Python Elasticsearch client, pygelf, the
//! OpenTelemetry SDK, curl) over real sockets into a node, then found by search.

use canh_server::{Config, Node};
use serde_json::{Value, json};
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct TestNode {
    pub(crate) node: Node,
    pub(crate) _dir: tempfile::TempDir,
}

pub(crate) async fn start_node(tune: impl FnOnce(&mut Config)) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.server.http = any;
    cfg.server.syslog = Some(any);
    cfg.server.http_tls = false;
    cfg.store.flush_interval_ms = 200;
    tune(&mut cfg);
    let node = Node::start(cfg, dir.path()).await.unwrap();
    TestNode { node, _dir: dir }
}

/// Searches until `want` hits are there or 20 s pass; returns the hits found last.
pub(crate) async fn wait_hits(node: &Node, q: &str, want: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let hits = search(node, q).await;
        if hits.len() >= want || Instant::now() > deadline {
            return hits;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn search(node: &Node, q: &str) -> Vec<Value> {
    let url = format!("http://{}/api/v1/search", node.http);
    let q = q.to_owned();
    let auth = format!("Authorization: Bearer {}", node.state.local_token);
    let body = tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args([
                "-s",
                "-H",
                &auth,
                "-G",
                &url,
                "--data-urlencode",
                &format!("q={q}"),
                "--data-urlencode",
                "from=now-2d",
                "--data-urlencode",
                "limit=10000",
            ])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    })
    .await
    .unwrap();
    let v: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad search answer {body:?}: {e}"));
    v["hits"].as_array().cloned().unwrap_or_default()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn python(script: &str, args: &[String]) -> String {
    let mut child = Command::new("python3")
        .arg("-")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python client failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_over_udp_tcp_and_octet_counting_is_searchable() {
    let t = start_node(|_| {}).await;
    let port = t.node.syslog.unwrap().port().to_string();
    let base = ["--server", "127.0.0.1", "--port", port.as_str()];
    run(Command::new("logger").args(base).args([
        "--udp",
        "--rfc5424",
        "-t",
        "canhudp",
        "udp5424 marker-u1",
    ]));
    run(Command::new("logger").args(base).args([
        "--udp",
        "--rfc3164",
        "-t",
        "canhbsd",
        "udp3164 marker-u2",
    ]));
    run(Command::new("logger").args(base).args([
        "--tcp",
        "--rfc5424",
        "-t",
        "canhtcp",
        "tcp5424 marker-t1",
    ]));
    run(Command::new("logger").args(base).args([
        "--tcp",
        "--octet-count",
        "--rfc5424",
        "--sd-id",
        "canh@32473",
        "--sd-param",
        "agency=\"so-tt\"",
        "-t",
        "canhoct",
        "octet marker-t2",
    ]));
    let hits = wait_hits(
        &t.node,
        "marker-u1 OR marker-u2 OR marker-t1 OR marker-t2",
        4,
    )
    .await;
    assert_eq!(hits.len(), 4, "{hits:#?}");
    let by_app = |app: &str| {
        hits.iter()
            .find(|h| h["log.syslog.appname"] == app || h["process.name"] == app)
            .cloned()
    };
    let oct = by_app("canhoct").expect("octet-counted message");
    assert_eq!(oct["organization.id"], "so-tt", "{oct:#?}");
    assert_eq!(oct["canh.source.id"], "syslog_tcp");
    let udp = by_app("canhudp").expect("udp message");
    assert_eq!(udp["canh.source.id"], "syslog_udp");
    assert!(by_app("canhbsd").is_some(), "rfc3164 message: {hits:#?}");
    t.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tls_is_received() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, ck.cert.pem()).unwrap();
    std::fs::write(&key_path, ck.key_pair.serialize_pem()).unwrap();
    let (c2, k2) = (cert_path.clone(), key_path.clone());
    let t = start_node(move |cfg| {
        cfg.server.syslog_tls = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        cfg.server.tls_cert = Some(c2);
        cfg.server.tls_key = Some(k2);
    })
    .await;
    let addr = t.node.syslog_tls.unwrap();
    // openssl s_client is a real TLS client independent of Canh's TLS stack.
    let msg = "<34>1 2026-11-27T10:00:00Z tlshost tlsapp 1 - - tls marker-tls1";
    let framed = format!("{} {msg}", msg.len());
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-quiet",
            "-no_ign_eof",
            "-CAfile",
        ])
        .arg(&cert_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = out.expect("openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(framed.as_bytes())
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    let hits = wait_hits(&t.node, "marker-tls1", 1).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["canh.source.id"], "syslog_tls");
    assert_eq!(hits[0]["host.name"], "tlshost");
    t.node.shutdown().await.unwrap();
}

const ES_BULK: &str = r#"
import sys, json
from elasticsearch import Elasticsearch, helpers
es = Elasticsearch(sys.argv[1], request_timeout=30)
info = es.info()
assert info["version"]["number"].startswith("8."), info
docs = [{"_index": "logs-canh", "_source": {"@timestamp": "2026-11-27T10:00:%02dZ" % (i % 60),
         "host": {"name": "es-host"}, "message": "bulk marker-es %d" % i, "labels": {"n": i}}} for i in range(500)]
docs.append({"_index": "logs-canh", "_source": ["bad doc", "not an object"]})
ok, errors = helpers.bulk(es, docs, raise_on_error=False, chunk_size=200)
print(json.dumps({"ok": ok, "errors": errors}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_python_client_bulk_helper_is_accepted() {
    let t = start_node(|_| {}).await;
    let url = format!("http://{}", t.node.http);
    let out = tokio::task::spawn_blocking(move || python(ES_BULK, &[url]))
        .await
        .unwrap();
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], 500, "{v}");
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    assert_eq!(errors[0]["index"]["status"], 400, "{v}");
    // Acknowledged means durable and searchable at once.
    let hits = search(&t.node, "marker-es").await;
    assert_eq!(hits.len(), 500);
    assert!(
        hits.iter()
            .all(|h| h["host.name"] == "es-host" && h["canh.source.id"] == "http_bulk")
    );
    let dead = dead_letters(&t.node).await;
    assert!(
        dead.iter()
            .any(|d| d["source"] == "http_bulk" && d["raw"].as_str().unwrap().contains("bad doc")),
        "{dead:?}"
    );
    t.node.shutdown().await.unwrap();
}

pub(crate) async fn dead_letters(node: &Node) -> Vec<Value> {
    let url = format!(
        "http://{}/api/v1/deadletters?from=now-1d&limit=1000",
        node.http
    );
    let auth = format!("Authorization: Bearer {}", node.state.local_token);
    let body = tokio::task::spawn_blocking(move || {
        run(Command::new("curl").args(["-s", "-H", &auth, &url]))
    })
    .await
    .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    v["dead_letters"].as_array().cloned().unwrap_or_default()
}

fn curl_post(url: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut child = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "-H",
            &format!("Content-Type: {content_type}"),
            "--data-binary",
            "@-",
            url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_keeps_good_lines_and_dead_letters_bad_ones() {
    let t = start_node(|cfg| cfg.server.max_message_bytes = 4096).await;
    let mut body = Vec::new();
    body.extend_from_slice(b"{\"message\":\"nd marker-nd1\",\"host\":{\"name\":\"a\"}}\n");
    body.extend_from_slice(b"{\"message\": broken json\n");
    body.extend_from_slice(b"{\"message\":\"nd marker-nd2 \xff\xfe invalid utf8\"}\n");
    body.extend_from_slice(format!("{{\"message\":\"{}\"}}\n", "x".repeat(5000)).as_bytes());
    body.extend_from_slice(b"<13>1 2026-11-27T10:00:00Z h app - - - nd marker-nd3\n");
    let url = format!("http://{}/api/v1/ingest/ndjson", t.node.http);
    let (code, answer) =
        tokio::task::spawn_blocking(move || curl_post(&url, "application/x-ndjson", &body))
            .await
            .unwrap();
    assert_eq!(code, 200, "{answer}");
    let v: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(v["accepted"], 3, "{v}");
    assert_eq!(v["rejected"], 2, "{v}");
    let lines: Vec<u64> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![2, 4]);
    let hits = search(&t.node, "marker-nd1 OR marker-nd2 OR marker-nd3").await;
    assert_eq!(hits.len(), 3, "{hits:#?}");
    let dead = dead_letters(&t.node).await;
    assert_eq!(dead.len(), 2, "{dead:#?}");
    assert!(
        dead.iter()
            .any(|d| d["reason"].as_str().unwrap().contains("exceeds")),
        "{dead:#?}"
    );
    let metrics = tokio::task::spawn_blocking({
        let url = format!("http://{}/metrics", t.node.http);
        move || run(Command::new("curl").args(["-s", &url]))
    })
    .await
    .unwrap();
    assert!(
        metrics.contains("canh_ingest_dead_letters_total{source=\"http_ndjson\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("canh_ingest_last_seen_seconds{source=\"http_ndjson\"}"),
        "{metrics}"
    );
    t.node.shutdown().await.unwrap();
}

const GELF: &str = r#"
import sys, logging
from pygelf import GelfUdpHandler, GelfTcpHandler
udp_port, tcp_port = int(sys.argv[1]), int(sys.argv[2])
log = logging.getLogger("canh-gelf")
log.setLevel(logging.INFO)
# A small chunk size forces chunking; compress=True sends zlib.
log.addHandler(GelfUdpHandler(host="127.0.0.1", port=udp_port, chunk_size=300, compress=True, _agency="so-yt"))
log.addHandler(GelfTcpHandler(host="127.0.0.1", port=tcp_port))
log.info("gelf marker-g1 " + "padding " * 200)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gelf_udp_chunked_zlib_and_tcp_from_pygelf() {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let t = start_node(|cfg| {
        cfg.server.gelf_udp = Some(any);
        cfg.server.gelf_tcp = Some(any);
    })
    .await;
    let args = vec![
        t.node.gelf_udp.unwrap().port().to_string(),
        t.node.gelf_tcp.unwrap().port().to_string(),
    ];
    tokio::task::spawn_blocking(move || python(GELF, &args))
        .await
        .unwrap();
    let hits = wait_hits(&t.node, "marker-g1", 2).await;
    let sources: std::collections::BTreeSet<String> = hits
        .iter()
        .map(|h| h["canh.source.id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        sources,
        ["gelf_tcp".to_owned(), "gelf_udp".to_owned()].into(),
        "{hits:#?}"
    );
    t.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_hec_and_otlp_json_are_accepted() {
    let t = start_node(|_| {}).await;
    let hec = format!("http://{}/services/collector/event", t.node.http);
    let now = chrono::Utc::now().timestamp();
    let body = format!(
        r#"{{"time": {now}, "host": "hec-host", "sourcetype": "linux_secure", "event": "hec marker-h1"}}{{"event": {{"message": "hec marker-h2"}}}}"#
    );
    let (code, answer) =
        tokio::task::spawn_blocking(move || curl_post(&hec, "application/json", body.as_bytes()))
            .await
            .unwrap();
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap(),
        json!({"text": "Success", "code": 0})
    );
    let otlp = format!("http://{}/v1/logs", t.node.http);
    let body = json!({"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "otel-svc"}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": format!("{}000000000", now), "severityText": "WARN",
        "body": {"stringValue": "otlp marker-o1"}}]}]}]})
    .to_string();
    let (code, answer) =
        tokio::task::spawn_blocking(move || curl_post(&otlp, "application/json", body.as_bytes()))
            .await
            .unwrap();
    assert_eq!(code, 200, "{answer}");
    let hits = search(&t.node, "marker-h1 OR marker-h2 OR marker-o1").await;
    assert_eq!(hits.len(), 3, "{hits:#?}");
    t.node.shutdown().await.unwrap();
}

const OTEL: &str = r#"
import sys, logging
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
provider = LoggerProvider(resource=Resource.create({"service.name": "otel-canh-test"}))
provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=sys.argv[1])))
log = logging.getLogger("otel")
log.setLevel(logging.INFO)
log.addHandler(LoggingHandler(logger_provider=provider))
log.warning("otlp proto marker-op1", extra={"user_id": 42})
provider.shutdown()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_sdk_exports_protobuf_logs() {
    let t = start_node(|_| {}).await;
    let url = format!("http://{}/v1/logs", t.node.http);
    tokio::task::spawn_blocking(move || python(OTEL, &[url]))
        .await
        .unwrap();
    let hits = wait_hits(&t.node, "marker-op1", 1).await;
    assert_eq!(hits.len(), 1, "{hits:#?}");
    let h = &hits[0];
    assert_eq!(h["canh.source.id"], "otlp_http");
    let text = h.to_string();
    assert!(text.contains("otel-canh-test"), "service name kept: {text}");
    t.node.shutdown().await.unwrap();
}
