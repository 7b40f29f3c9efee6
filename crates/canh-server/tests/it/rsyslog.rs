//! rsyslog forwarding a followed file to Canh over TCP (octet counting, RFC 5424) and over TLS.

use crate::ingest::{start_node, wait_hits};
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

struct Rsyslog(Child);

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rsyslog(dir: &std::path::Path, forward: &str, global: &str) -> Rsyslog {
    let input = dir.join("input.log");
    std::fs::write(&input, b"").unwrap();
    let conf = format!(
        r#"global(workDirectory="{work}" {global})
module(load="imfile" PollingInterval="1")
input(type="imfile" File="{input}" Tag="rsyslogtest" Severity="notice" Facility="local0")
{forward}
"#,
        work = dir.display(),
        input = input.display(),
    );
    std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
    let child = Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(dir.join("rsyslog.conf"))
        .arg("-i")
        .arg(dir.join("rsyslog.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rsyslogd (apt-get install rsyslog rsyslog-gnutls)");
    Rsyslog(child)
}

fn write_lines(dir: &std::path::Path, marker: &str, n: usize) {
    // rsyslog's imfile starts at the end of the file it first sees, so append after it runs.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("input.log"))
        .unwrap();
    for i in 0..n {
        writeln!(f, "forwarded line {i} {marker}").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_forwards_over_tcp_with_octet_counting() {
    let t = start_node(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let port = t.node.syslog.unwrap().port();
    let fwd = format!(
        r#"action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")"#
    );
    let _r = rsyslog(dir.path(), &fwd, "");
    let d = dir.path().to_owned();
    tokio::task::spawn_blocking(move || write_lines(&d, "marker-rs1", 50))
        .await
        .unwrap();
    let hits = wait_hits(&t.node, "marker-rs1", 50).await;
    assert_eq!(hits.len(), 50);
    assert!(
        hits.iter().all(
            |h| h["log.syslog.appname"] == "rsyslogtest" && h["canh.source.id"] == "syslog_tcp"
        )
    );
    t.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_forwards_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let (c2, k2) = (cert.clone(), key.clone());
    let t = start_node(move |cfg| {
        cfg.server.syslog_tls = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        cfg.server.tls_cert = Some(c2);
        cfg.server.tls_key = Some(k2);
    })
    .await;
    let port = t.node.syslog_tls.unwrap().port();
    let global = format!(
        r#"DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{}""#,
        cert.display()
    );
    let fwd = format!(
        r#"action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp" StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/certvalid" template="RSYSLOG_SyslogProtocol23Format")"#
    );
    let _r = rsyslog(dir.path(), &fwd, &global);
    let d = dir.path().to_owned();
    tokio::task::spawn_blocking(move || write_lines(&d, "marker-rs2", 20))
        .await
        .unwrap();
    let hits = wait_hits(&t.node, "marker-rs2", 20).await;
    assert_eq!(hits.len(), 20);
    assert!(hits.iter().all(|h| h["canh.source.id"] == "syslog_tls"));
    t.node.shutdown().await.unwrap();
}
