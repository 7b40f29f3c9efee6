//! TLS and access to events: HTTPS with the generated certificate, the search API behind the
//! login with agency scope, and the agency taken from a syslog client's TLS certificate.

use crate::ingest::{start_node, wait_hits};
use canh_soar::{Actor, NewAgency, Role};
use serde_json::Value;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

fn curl(args: &[&str]) -> (i32, u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        out.status.code().unwrap_or(-1),
        code.trim().parse().unwrap_or(0),
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_uses_the_generated_certificate_and_search_needs_a_login() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = canh_server::Config::default();
    cfg.server.http = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.server.syslog = None;
    cfg.server.http_tls = true;
    let node = canh_server::Node::start(cfg, dir.path()).await.unwrap();
    assert!(node.url.starts_with("https://"), "{}", node.url);
    let ca = dir.path().join("tls/server.crt");
    assert!(ca.try_exists().unwrap());
    let base = format!("https://127.0.0.1:{}", node.http.port());
    let ca_s = ca.to_str().unwrap().to_owned();
    let token = node.state.local_token.clone();
    let (health, unknown_ca, anonymous, plain, authed) = tokio::task::spawn_blocking(move || {
        (
            curl(&["--cacert", &ca_s, &format!("{base}/health")]),
            // Without the certificate, a real client refuses the server (curl exit 60).
            curl(&[&format!("{base}/health")]),
            curl(&["--cacert", &ca_s, &format!("{base}/api/v1/search?q=*")]),
            // Plain HTTP on the TLS port is not served.
            curl(&[&format!(
                "http://127.0.0.1:{}/health",
                base.rsplit(':').next().unwrap()
            )]),
            curl(&[
                "--cacert",
                &ca_s,
                "-H",
                &format!("Authorization: Bearer {token}"),
                &format!("{base}/api/v1/search?q=*"),
            ]),
        )
    })
    .await
    .unwrap();
    assert_eq!((health.0, health.1), (0, 200), "{health:?}");
    assert_eq!(unknown_ca.0, 60, "{unknown_ca:?}");
    assert_eq!(anonymous.1, 401, "{anonymous:?}");
    assert_ne!(plain.1, 200, "{plain:?}");
    assert_eq!(authed.1, 200, "{authed:?}");
    let v: Value = serde_json::from_str(&authed.2).unwrap();
    assert!(v["hits"].is_array());
    node.shutdown().await.unwrap();
}

const NDJSON: &str = concat!(
    r#"{"@timestamp":"2026-11-27T10:00:00Z","organization.id":"so-a","message":"scope-marker a1"}"#,
    "\n",
    r#"{"@timestamp":"2026-11-27T10:00:01Z","organization.id":"so-b","message":"scope-marker b1"}"#,
    "\n",
    r#"{"@timestamp":"2026-11-27T10:00:02Z","organization.id":"so-a","message":"scope-marker a2"}"#,
    "\n",
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_viewer_searches_only_its_own_agency() {
    let t = start_node(|_| {}).await;
    let soar = &t.node.soar.soar;
    let admin = Actor::system("test");
    let level = "province".to_owned();
    let a = soar
        .create_agency(
            &admin,
            NewAgency {
                code: "so-a".into(),
                name: "Sở A".into(),
                level: level.clone(),
                parent_id: None,
            },
        )
        .await
        .unwrap();
    soar.create_agency(
        &admin,
        NewAgency {
            code: "so-b".into(),
            name: "Sở B".into(),
            level,
            parent_id: None,
        },
    )
    .await
    .unwrap();
    let viewer = soar
        .create_user(
            &admin,
            "viewer-a",
            Role::AgencyViewer,
            Some(a.id),
            "mật-khẩu-đủ-dài-1",
        )
        .await
        .unwrap();
    let token = soar
        .issue_token(&admin, viewer.id, "test", chrono::Duration::hours(1))
        .await
        .unwrap()
        .secret;
    let base = format!("http://{}", t.node.http);
    let nd = format!("{base}/api/v1/ingest/ndjson");
    let (_, code, body) = tokio::task::spawn_blocking(move || {
        curl(&[
            "-H",
            "Content-Type: application/x-ndjson",
            "--data-binary",
            NDJSON,
            &nd,
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(wait_hits(&t.node, "scope-marker", 3).await.len(), 3);

    let auth = format!("Authorization: Bearer {token}");
    let b2 = base.clone();
    let (search, count, sql, dead) = tokio::task::spawn_blocking(move || {
        (
            curl(&[
                "-H",
                &auth,
                "-G",
                &format!("{b2}/api/v1/search"),
                "--data-urlencode",
                "q=scope-marker",
                "--data-urlencode",
                "from=now-2d",
            ]),
            curl(&[
                "-H",
                &auth,
                "-G",
                &format!("{b2}/api/v1/search/count"),
                "--data-urlencode",
                "field=organization.id",
                "--data-urlencode",
                "from=now-2d",
            ]),
            curl(&[
                "-H",
                &auth,
                "-H",
                "Content-Type: application/json",
                "--data",
                r#"{"query":"SELECT count(*) FROM events"}"#,
                &format!("{b2}/api/v1/sql"),
            ]),
            curl(&["-H", &auth, &format!("{b2}/api/v1/deadletters")]),
        )
    })
    .await
    .unwrap();
    assert_eq!(search.1, 200, "{search:?}");
    let v: Value = serde_json::from_str(&search.2).unwrap();
    let hits = v["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2, "{hits:#?}");
    assert!(hits.iter().all(|h| h["organization.id"] == "so-a"));
    let c: Value = serde_json::from_str(&count.2).unwrap();
    let buckets = c["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 1, "{c}");
    assert_eq!(buckets[0]["value"], "so-a");
    // SQL and dead letters cannot be limited to one agency: refused, not leaked.
    assert_eq!(sql.1, 403, "{sql:?}");
    assert_eq!(dead.1, 403, "{dead:?}");
    t.node.shutdown().await.unwrap();
}

struct Pki {
    ca_pem: String,
    ca: rcgen::CertifiedKey,
}

impl Pki {
    fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Test agencies CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            ca: rcgen::CertifiedKey {
                cert,
                key_pair: key,
            },
        }
    }

    /// A client certificate for `cn`, signed by this CA: (cert PEM, key PEM).
    fn client(&self, cn: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params
            .signed_by(&key, &self.ca.cert, &self.ca.key_pair)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Sends one octet-counted syslog message with `openssl s_client`; whether the session ended well.
fn send_tls(
    addr: SocketAddr,
    ca: &std::path::Path,
    client: Option<(&str, &str)>,
    msg: &str,
) -> bool {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &addr.to_string(),
        "-quiet",
        "-no_ign_eof",
        "-CAfile",
    ])
    .arg(ca);
    if let Some((c, k)) = client {
        cmd.args(["-cert", c, "-key", k]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl");
    let framed = format!("{} {msg}", msg.len());
    let _ = child.stdin.take().unwrap().write_all(framed.as_bytes());
    child.wait().unwrap().success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syslog_client_certificate_names_the_agency() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let ca_path = dir.path().join("clients-ca.pem");
    std::fs::write(&ca_path, &pki.ca_pem).unwrap();
    let files = |name: &str, (c, k): (String, String)| {
        let cp = dir.path().join(format!("{name}.crt"));
        let kp = dir.path().join(format!("{name}.key"));
        std::fs::write(&cp, c).unwrap();
        std::fs::write(&kp, k).unwrap();
        (cp, kp)
    };
    let (a_crt, a_key) = files("a", pki.client("syslog.so-a.test"));
    let (x_crt, x_key) = files("x", pki.client("unmapped.test"));
    // A certificate from another CA is refused at the handshake.
    let rogue = Pki::new();
    let (r_crt, r_key) = files("rogue", rogue.client("syslog.so-a.test"));
    let ca2 = ca_path.clone();
    let t = start_node(move |cfg| {
        cfg.server.syslog_tls = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        cfg.server.tls_client_ca = Some(ca2);
        cfg.ingest.default_agency = Some("tinh".into());
        cfg.ingest.agency_clients = vec![canh_server::config::AgencyClient {
            identity: "syslog.so-a.test".into(),
            agency: "so-a".into(),
        }];
    })
    .await;
    let addr = t.node.syslog_tls.unwrap();
    let server_ca = t._dir.path().join("tls/server.crt");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (a_crt, a_key, x_crt, x_key, r_crt, r_key, sca) = (
        s(&a_crt),
        s(&a_key),
        s(&x_crt),
        s(&x_key),
        s(&r_crt),
        s(&r_key),
        server_ca.clone(),
    );
    let rogue_ok = tokio::task::spawn_blocking(move || {
        let sent = send_tls(
            addr,
            &sca,
            Some((&a_crt, &a_key)),
            "<34>1 2026-11-27T10:00:00Z h1 app 1 - - mtls-marker ident-a",
        );
        assert!(sent);
        // The event claims another agency: the authenticated identity wins.
        assert!(send_tls(
            addr,
            &sca,
            Some((&a_crt, &a_key)),
            r#"<34>1 2026-11-27T10:00:00Z h1 app 1 - [canh agency="so-b"] mtls-marker claims-b"#,
        ));
        assert!(send_tls(
            addr,
            &sca,
            Some((&x_crt, &x_key)),
            "<34>1 2026-11-27T10:00:00Z h2 app 1 - - mtls-marker ident-x",
        ));
        assert!(send_tls(
            addr,
            &sca,
            None,
            "<34>1 2026-11-27T10:00:00Z h3 app 1 - - mtls-marker anonymous",
        ));
        send_tls(
            addr,
            &sca,
            Some((&r_crt, &r_key)),
            "<34>1 2026-11-27T10:00:00Z h4 app 1 - - mtls-marker rogue",
        )
    })
    .await
    .unwrap();
    let hits = wait_hits(&t.node, "mtls-marker", 4).await;
    let agency_of = |word: &str| {
        hits.iter()
            .find(|h| h["message"].as_str().unwrap_or("").contains(word))
            .map(|h| h["organization.id"].clone())
    };
    assert_eq!(agency_of("ident-a"), Some("so-a".into()), "{hits:#?}");
    assert_eq!(agency_of("claims-b"), Some("so-a".into()), "{hits:#?}");
    assert_eq!(agency_of("ident-x"), Some("tinh".into()), "{hits:#?}");
    assert_eq!(agency_of("anonymous"), Some("tinh".into()), "{hits:#?}");
    assert_eq!(agency_of("rogue"), None, "rogue: {rogue_ok} {hits:#?}");
    t.node.shutdown().await.unwrap();
}
