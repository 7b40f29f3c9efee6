//! The web console over real HTTP, without a browser: login (a wrong password is refused),
//! the wall page, the live alert stream (and its agency scope), the language switch, and an
//! agency viewer kept out of another agency's incident.

use canh_server::{Config, Node};
use canh_soar::{Actor, NewAgency, NewAlert, NewIncident, Role, Severity};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const PASSWORD: &str = "correct horse battery staple";

struct Console {
    node: Node,
    _dir: tempfile::TempDir,
    agency_a: i64,
    agency_b: i64,
}

async fn start() -> Console {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.server.http = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.server.http_tls = false;
    // Only the HTTP port: no fixed default ports, so that tests can run side by side.
    cfg.server.syslog = None;
    cfg.server.syslog_tls = None;
    cfg.server.gelf_udp = None;
    cfg.server.gelf_tcp = None;
    cfg.soar.secure_cookie = false;
    let node = Node::start(cfg, dir.path()).await.unwrap();
    let soar = &node.soar.soar;
    let sys = Actor::system("test");
    let province = soar
        .create_agency(
            &sys,
            NewAgency {
                code: "tinh".into(),
                name: "UBND tỉnh".into(),
                level: "province".into(),
                parent_id: None,
            },
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (code, name) in [("so-a", "Sở Alpha"), ("so-b", "Sở Bêta")] {
        let a = soar
            .create_agency(
                &sys,
                NewAgency {
                    code: code.into(),
                    name: name.into(),
                    level: "department".into(),
                    parent_id: Some(province.id),
                },
            )
            .await
            .unwrap();
        ids.push(a.id);
    }
    soar.create_user(&sys, "truc", Role::Analyst, None, PASSWORD)
        .await
        .unwrap();
    soar.create_user(&sys, "xem-b", Role::AgencyViewer, Some(ids[1]), PASSWORD)
        .await
        .unwrap();
    Console {
        node,
        _dir: dir,
        agency_a: ids[0],
        agency_b: ids[1],
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`.
async fn http(addr: SocketAddr, method: &str, path: &str, cookie: &str, form: &str) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !cookie.is_empty() {
        req.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            form.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(form);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn login(addr: SocketAddr, name: &str) -> String {
    let form = format!("name={name}&password={}", PASSWORD.replace(' ', "+"));
    let r = http(addr, "POST", "/console/login", "", &form).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/console/wall"));
    let set = r.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    set.split(';').next().unwrap().to_owned()
}

fn alert(agency: i64, title: &str, sev: Severity) -> NewAlert {
    NewAlert {
        rule_id: format!("test.{title}"),
        rule_title: title.into(),
        rule_level: "high".into(),
        severity: sev,
        agency_id: Some(agency),
        host: "web-01".into(),
        event: serde_json::json!({"message": "Failed password for root"}),
        time: chrono::Utc::now(),
        dedup_key: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_and_pages_need_a_session() {
    let c = start().await;
    let addr = c.node.http;
    let r = http(
        addr,
        "POST",
        "/console/login",
        "",
        "name=truc&password=wrong",
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(
        r.body.contains("Sai tên đăng nhập hoặc mật khẩu"),
        "{}",
        r.body
    );
    assert!(r.header("set-cookie").is_none());
    let r = http(addr, "GET", "/console/wall", "", "").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/console/login"));
    let cookie = login(addr, "truc").await;
    let r = http(addr, "GET", "/console/wall", &cookie, "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Màn hình trực") && r.body.contains("Cây đơn vị"));
    assert!(r.body.contains("Sở Alpha") && r.body.contains("Sở Bêta"));
    let r = http(addr, "GET", "/console/static/vendor/htmx.min.js", "", "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.len() > 40_000);
    c.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_language_switch_sets_english_and_refuses_open_redirects() {
    let c = start().await;
    let addr = c.node.http;
    let cookie = login(addr, "truc").await;
    let r = http(
        addr,
        "GET",
        "/console/lang?to=en&back=/console/alerts",
        &cookie,
        "",
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/console/alerts"));
    let lang = r.header("set-cookie").unwrap().split(';').next().unwrap();
    assert_eq!(lang, "canh_lang=en");
    let both = format!("{cookie}; {lang}");
    let r = http(addr, "GET", "/console/alerts", &both, "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Alert queue") && r.body.contains("<html lang=\"en\">"));
    assert!(!r.body.contains("Hàng đợi cảnh báo"));
    let r = http(
        addr,
        "GET",
        "/console/lang?to=vi&back=//evil.example/",
        "",
        "",
    )
    .await;
    assert_eq!(r.header("location"), Some("/console/wall"));
    c.node.shutdown().await.unwrap();
}

/// Reads SSE lines until an `event: <name>` block is complete; returns its data lines.
async fn next_event(r: &mut BufReader<TcpStream>, name: &str) -> String {
    let mut current = String::new();
    let mut data = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(20), r.read_line(&mut line))
            .await
            .expect("no event within 20 s")
            .unwrap();
        assert!(n > 0, "stream closed");
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(ev) = line.strip_prefix("event:") {
            current = ev.trim().to_owned();
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.trim_start());
            data.push('\n');
        } else if line.is_empty() && !current.is_empty() {
            if current == name {
                return data;
            }
            current.clear();
            data.clear();
        }
    }
}

async fn open_stream(addr: SocketAddr, cookie: &str, last: Option<i64>) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let last = last.map_or_else(String::new, |id| format!("Last-Event-ID: {id}\r\n"));
    let req = format!(
        "GET /console/wall/stream HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\
         Accept: text/event-stream\r\n{last}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).await.unwrap();
    assert!(status.contains(" 200 "), "{status}");
    next_event(&mut r, "ready").await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_alerts_reach_the_wall_stream_within_the_viewers_scope() {
    let c = start().await;
    let addr = c.node.http;
    let analyst = login(addr, "truc").await;
    let viewer = login(addr, "xem-b").await;
    let mut all = open_stream(addr, &analyst, None).await;
    let mut only_b = open_stream(addr, &viewer, None).await;
    let first_id = c
        .node
        .soar
        .record_alert(alert(
            c.agency_a,
            "Dò mật khẩu SSH ở A",
            Severity::Emergency,
        ))
        .await
        .unwrap();
    c.node
        .soar
        .record_alert(alert(c.agency_b, "Quét cổng ở B", Severity::Medium))
        .await
        .unwrap();
    let first = next_event(&mut all, "alert").await;
    assert!(first.contains("Dò mật khẩu SSH ở A"), "{first}");
    assert!(first.contains("data-sev=\"emergency\""), "{first}");
    assert!(first.contains("Khẩn cấp"), "{first}");
    let second = next_event(&mut all, "alert").await;
    assert!(second.contains("Quét cổng ở B"), "{second}");
    // The viewer of B never gets A's alert: its first event is B's.
    let seen = next_event(&mut only_b, "alert").await;
    assert!(seen.contains("Quét cổng ở B"), "{seen}");
    assert!(!seen.contains("ở A"), "{seen}");
    // The queue page of the viewer shows B's alert only.
    let r = http(addr, "GET", "/console/alerts", &viewer, "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Quét cổng ở B") && !r.body.contains("Dò mật khẩu SSH ở A"));
    // A reconnecting page gets what came after the last event it saw.
    let mut again = open_stream(addr, &analyst, Some(first_id)).await;
    let replayed = next_event(&mut again, "alert").await;
    assert!(replayed.contains("Quét cổng ở B"), "{replayed}");
    // Open streams would hold the graceful shutdown; close them first.
    drop((all, only_b, again));
    c.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triage_and_incident_pages_respect_role_and_agency() {
    let c = start().await;
    let addr = c.node.http;
    let analyst = login(addr, "truc").await;
    let viewer = login(addr, "xem-b").await;
    let id = c
        .node
        .soar
        .record_alert(alert(c.agency_a, "Webshell", Severity::High))
        .await
        .unwrap();
    let r = http(
        addr,
        "POST",
        "/console/alerts/triage",
        &analyst,
        &format!("ids={id}&state=acknowledged"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("data-state=\"acknowledged\""), "{}", r.body);
    // A viewer may not triage.
    let r = http(
        addr,
        "POST",
        "/console/alerts/triage",
        &viewer,
        &format!("ids={id}&state=closed&reason=x"),
    )
    .await;
    assert_eq!(r.status, 403);
    let sys = Actor::system("test");
    let inc = c
        .node
        .soar
        .soar
        .create_incident(
            &sys,
            NewIncident {
                title: "Mã độc ở Sở Alpha".into(),
                description: String::new(),
                severity: Severity::High,
                agency_id: c.agency_a,
                detected_at: None,
                alert_ids: vec![id],
            },
        )
        .await
        .unwrap();
    let path = format!("/console/incidents/{}", inc.id);
    let r = http(addr, "GET", &path, &analyst, "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Mã độc ở Sở Alpha"));
    assert_eq!(r.body.matches("class=\"step ").count(), 7);
    let r = http(addr, "GET", &path, &viewer, "").await;
    assert_eq!(r.status, 404);
    assert!(!r.body.contains("Mã độc ở Sở Alpha"));
    let r = http(addr, "GET", "/console/incidents", &viewer, "").await;
    assert!(!r.body.contains("Mã độc ở Sở Alpha"));
    // The step form moves the incident on with a sign-off.
    let r = http(
        addr,
        "POST",
        &format!("{path}/step"),
        &analyst,
        &format!("version={}&to=analyse&summary=da+ghi+nhan", inc.version),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = http(addr, "GET", &path, &analyst, "").await;
    assert!(
        r.body
            .contains("data-step=\"analyse\" aria-current=\"step\"")
    );
    assert!(r.body.contains("da ghi nhan"));
    // A viewer cannot search with SQL.
    let r = http(
        addr,
        "GET",
        "/console/search?mode=sql&sql=select+1",
        &viewer,
        "",
    )
    .await;
    assert_eq!(r.status, 403);
    c.node.shutdown().await.unwrap();
}
