//! E-mail notifications end to end against a real SMTP server (aiosmtpd, started here): STARTTLS
//! with a private CA, Vietnamese subject and attachment name decoded by Python's `email`
//! package, plain sessions refused by the server, and Canh refusing a server without STARTTLS.
//! Needs `python3 -m aiosmtpd` (`pip install aiosmtpd`); skipped with a message without it.

use super::{SoarConfig, SoarState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use canh_soar::{Actor, Mailer, NewAgency, NotificationStatus, Role, SmtpSettings};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tower::ServiceExt;

fn aiosmtpd_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: python3 -m aiosmtpd is not installed (pip install aiosmtpd)");
    }
    ok
}

/// An aiosmtpd process writing every message into a Maildir; killed on drop.
struct Smtpd {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn start_smtpd(dir: &Path, tls: Option<(&Path, &Path)>) -> Smtpd {
    let maildir = dir.join(format!("mbox-{}", tls.is_some()));
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")]);
    if let Some((cert, key)) = tls {
        cmd.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
    }
    cmd.args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().unwrap();
    let smtpd = Smtpd {
        child,
        port,
        maildir,
    };
    // Wait (bounded) until it accepts connections.
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return smtpd;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("aiosmtpd did not start on port {port}");
}

fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let cert = dir.join("smtp-cert.pem");
    let key = dir.join("smtp-key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        all.push_str(&line);
        // The last line of a reply has a space after the code.
        if line.len() < 4 || line.as_bytes()[3] == b' ' {
            return all;
        }
    }
}

/// Python's `email` package decodes the message: subject, recipient, body, attachments.
fn parse_with_python(file: &Path) -> Value {
    let script = r#"
import email, email.policy, json, sys
raw = open(sys.argv[1], 'rb').read()
head = raw.split(b'\r\n\r\n', 1)[0].split(b'\n\n', 1)[0]
m = email.message_from_bytes(raw, policy=email.policy.default)
body = m.get_body(preferencelist=('plain',))
atts = [{'name': a.get_filename(), 'content': a.get_content()} for a in m.iter_attachments()]
print(json.dumps({'subject': str(m['subject']), 'to': str(m['to']),
                  'head_ascii': all(b < 128 for b in head),
                  'raw_head': head.decode('ascii', 'replace'),
                  'body': body.get_content() if body else None, 'attachments': atts}))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn api(
    st: &SoarState,
    method: &str,
    uri: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = router(st.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn admin_token(st: &SoarState) -> (String, i64) {
    let sys = Actor::system("test");
    let a = st
        .soar
        .create_agency(
            &sys,
            NewAgency {
                code: "so-tt".into(),
                name: "Sở Thông tin và Truyền thông".into(),
                level: "province".into(),
                parent_id: None,
            },
        )
        .await
        .unwrap();
    let u = st
        .soar
        .create_user(
            &sys,
            "admin",
            Role::Administrator,
            None,
            "mật-khẩu-đủ-dài-1",
        )
        .await
        .unwrap();
    let t = st
        .soar
        .issue_token(&sys, u.id, "test", chrono::Duration::hours(1))
        .await
        .unwrap();
    (t.secret, a.id)
}

#[tokio::test]
async fn high_incident_is_mailed_over_starttls_with_vietnamese_subject_and_file_name() {
    if !aiosmtpd_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let smtpd = start_smtpd(dir.path(), Some((&cert, &key))).await;

    // A plain session (no STARTTLS) is refused by this server: 530.
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", smtpd.port))
        .await
        .unwrap();
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    assert!(reply(&mut r).await.starts_with("220"));
    w.write_all(b"EHLO plain.test\r\n").await.unwrap();
    let ehlo = reply(&mut r).await;
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    w.write_all(b"MAIL FROM:<x@plain.test>\r\n").await.unwrap();
    let refused = reply(&mut r).await;
    assert!(refused.starts_with("530"), "{refused}");
    w.write_all(b"QUIT\r\n").await.unwrap();

    let cfg = SoarConfig {
        smtp: Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port: smtpd.port,
            from: "Canh SOC <soc@canh.test>".into(),
            ca_file: Some(cert.clone()),
            timeout_secs: 10,
            ..SmtpSettings::default()
        }),
        ..SoarConfig::default()
    };
    let data = tempfile::tempdir().unwrap();
    let st = SoarState::open(data.path(), &cfg).await.unwrap();
    let (token, agency) = admin_token(&st).await;
    let (s, _) = api(
        &st,
        "POST",
        "/api/v1/roster",
        &token,
        json!({"name": "Trực ban", "email": "truc-ban@soc.canh.test"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let title = "Tấn công thay đổi giao diện cổng thông tin điện tử";
    let (s, body) = api(
        &st,
        "POST",
        "/api/v1/incidents",
        &token,
        json!({"title": title, "severity": "high", "agency_id": agency}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let id = body["incident"]["id"].as_i64().unwrap();

    // Wait (bounded) for the sender to deliver it.
    let mut files = Vec::new();
    for _ in 0..600 {
        files = std::fs::read_dir(smtpd.maildir.join("new"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        if !files.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(files.len(), 1, "one message in the mailbox");
    let m = parse_with_python(&files[0]);
    assert_eq!(
        m["subject"],
        format!("[CAO] Sự cố #{id}: {title} / [HIGH] Incident #{id}")
    );
    assert_eq!(
        m["head_ascii"], true,
        "headers must be encoded: {}",
        m["raw_head"]
    );
    assert!(m["raw_head"].as_str().unwrap().contains("=?utf-8?"));
    assert_eq!(m["to"], "truc-ban@soc.canh.test");
    assert!(
        m["body"]
            .as_str()
            .unwrap()
            .contains("Sự cố mức độ Cao cần xử lý.")
    );
    assert!(m["body"].as_str().unwrap().contains("--- English ---"));
    let att = &m["attachments"][0];
    assert_eq!(att["name"], format!("tóm-tắt-sự-cố-{id}.txt"));
    assert!(att["content"].as_str().unwrap().contains(title));

    // The record says sent, with the server's reply, and the API shows it.
    let mut sent = None;
    for _ in 0..200 {
        let n = st.soar.notifications(Some(id), None, 10).await.unwrap();
        if n.first()
            .is_some_and(|n| n.status == NotificationStatus::Sent)
        {
            sent = n.into_iter().next();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = sent.expect("notification recorded as sent");
    assert!(sent.server_reply.as_deref().unwrap().starts_with("250"));
    let (s, list) = api(&st, "GET", "/api/v1/notifications", &token, Value::Null).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list[0]["status"], "sent");
}

#[tokio::test]
async fn starttls_required_refuses_a_server_without_it_and_records_the_failure() {
    if !aiosmtpd_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let smtpd = start_smtpd(dir.path(), None).await;
    let data = tempfile::tempdir().unwrap();
    // No [soar.smtp]: nothing sends in the background; this test drives the sender.
    let st = SoarState::open(data.path(), &SoarConfig::default())
        .await
        .unwrap();
    let (token, agency) = admin_token(&st).await;
    let (s, _) = api(
        &st,
        "POST",
        "/api/v1/roster",
        &token,
        json!({"name": "Trực ban", "email": "truc-ban@soc.canh.test"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = api(
        &st,
        "POST",
        "/api/v1/incidents",
        &token,
        json!({"title": "Mã độc mã hóa dữ liệu", "severity": "emergency", "agency_id": agency}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let mailer = Mailer::new(&SmtpSettings {
        host: "127.0.0.1".into(),
        port: smtpd.port,
        max_attempts: 1,
        timeout_secs: 10,
        ..SmtpSettings::default()
    })
    .unwrap();
    let r = st.soar.deliver_due(&mailer).await.unwrap();
    assert_eq!((r.sent, r.failed), (0, 1));
    let (s, list) = api(
        &st,
        "GET",
        "/api/v1/notifications?status=failed",
        &token,
        Value::Null,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let err = list[0]["last_error"].as_str().unwrap();
    assert!(err.to_ascii_lowercase().contains("starttls"), "{err}");
    let id = list[0]["id"].as_i64().unwrap();
    let (_, attempts) = api(
        &st,
        "GET",
        &format!("/api/v1/notifications/{id}/attempts"),
        &token,
        Value::Null,
    )
    .await;
    assert_eq!(attempts[0]["ok"], false);
    // Nothing reached the plain server.
    assert_eq!(
        std::fs::read_dir(smtpd.maildir.join("new"))
            .unwrap()
            .count(),
        0
    );
}
