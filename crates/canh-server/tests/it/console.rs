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
    http_with(addr, method, path, cookie, form, "").await
}

/// As `http`, with extra header lines (each ending in CRLF).
async fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: &str,
    form: &str,
    extra: &str,
) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}");
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

impl Resp {
    fn cookies(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, v)| v.split(';').next().map(str::to_owned))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_language_is_stored_on_the_account_and_used_at_the_next_login() {
    let c = start().await;
    let addr = c.node.http;
    // Vietnamese by default, on the login page and after logging in.
    let r = http(addr, "GET", "/console/login", "", "").await;
    assert!(r.body.contains("<html lang=\"vi\">") && r.body.contains("Đăng nhập"));
    let session = login(addr, "truc").await;
    let r = http(addr, "GET", "/console/alerts", &session, "").await;
    assert!(r.body.contains("Hàng đợi cảnh báo"), "{}", r.body);
    // Switch to English: stored on the account.
    let r = http(
        addr,
        "GET",
        "/console/lang?to=en&back=/console/wall",
        &session,
        "",
    )
    .await;
    assert_eq!(r.status, 303);
    let truc = c.node.soar.soar.user_by_name("truc").await.unwrap();
    assert_eq!(
        c.node.soar.soar.user_language(truc.id).await.unwrap(),
        Some("en".to_owned())
    );
    let r = http(addr, "POST", "/console/logout", &session, "").await;
    assert_eq!(r.status, 303);
    // A fresh browser (no language cookie): the next login is in English, and the browser
    // gets the language cookie for its login page.
    let r = http(
        addr,
        "POST",
        "/console/login",
        "",
        &format!("name=truc&password={}", PASSWORD.replace(' ', "+")),
    )
    .await;
    assert_eq!(r.status, 303);
    let cookies = r.cookies();
    assert!(cookies.iter().any(|c| c == "canh_lang=en"), "{cookies:?}");
    let session = cookies
        .iter()
        .find(|c| c.starts_with("canh_session="))
        .unwrap()
        .clone();
    // The stored choice wins over a stale cookie of another language.
    let r = http(
        addr,
        "GET",
        "/console/alerts",
        &format!("{session}; canh_lang=vi"),
        "",
    )
    .await;
    assert!(r.body.contains("<html lang=\"en\">") && r.body.contains("Alert queue"));
    assert!(!r.body.contains("Hàng đợi cảnh báo"));
    // Another user keeps Vietnamese.
    let other = login(addr, "xem-b").await;
    let r = http(addr, "GET", "/console/wall", &other, "").await;
    assert!(r.body.contains("<html lang=\"vi\">"));
    // The change is in the audit log.
    let log = c
        .node
        .soar
        .soar
        .audit_log(&canh_soar::AuditFilter::default())
        .await
        .unwrap();
    assert!(log.iter().any(|e| e.action == "user.language"));
    c.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_users_must_enter_the_code_on_the_console_login() {
    let c = start().await;
    let addr = c.node.http;
    let soar = &c.node.soar.soar;
    let truc = soar.user_by_name("truc").await.unwrap();
    let enrol = soar
        .totp_enrol(&Actor::system("test"), truc.id, false)
        .await
        .unwrap();
    assert!(enrol.active);
    let pw = PASSWORD.replace(' ', "+");
    // The form has the code field.
    let r = http(addr, "GET", "/console/login", "", "").await;
    assert!(r.body.contains("name=\"totp\""), "{}", r.body);
    // Right password, no code: refused, asking for the code.
    let r = http(
        addr,
        "POST",
        "/console/login",
        "",
        &format!("name=truc&password={pw}"),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("cần mã xác thực hai lớp"), "{}", r.body);
    assert!(r.header("set-cookie").is_none());
    // A wrong code: refused.
    let right = canh_soar::user::totp_code(&enrol.secret, chrono::Utc::now()).unwrap();
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let r = http(
        addr,
        "POST",
        "/console/login",
        "canh_lang=en",
        &format!("name=truc&password={pw}&totp={wrong}"),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(
        r.body
            .contains("Wrong user name, password or two-factor code"),
        "{}",
        r.body
    );
    assert!(r.header("set-cookie").is_none());
    // The code of now: in.
    let code = canh_soar::user::totp_code(&enrol.secret, chrono::Utc::now()).unwrap();
    let r = http(
        addr,
        "POST",
        "/console/login",
        "",
        &format!("name=truc&password={pw}&totp={code}"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let session = r.cookies().into_iter().next().unwrap();
    assert!(session.starts_with("canh_session="));
    let r = http(addr, "GET", "/console/wall", &session, "").await;
    assert_eq!(r.status, 200);
    // The same code cannot be used twice.
    let r = http(
        addr,
        "POST",
        "/console/login",
        "",
        &format!("name=truc&password={pw}&totp={code}"),
    )
    .await;
    assert_eq!(r.status, 401);
    c.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_edits_users_agencies_and_ranges_and_others_cannot() {
    let c = start().await;
    let addr = c.node.http;
    let soar = &c.node.soar.soar;
    let sys = Actor::system("test");
    soar.create_user(&sys, "quantri", Role::Administrator, None, PASSWORD)
        .await
        .unwrap();
    let admin = login(addr, "quantri").await;
    let analyst = login(addr, "truc").await;
    let r = http(addr, "GET", "/console/admin", &admin, "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("id=\"user-add-form\"") && r.body.contains("Thêm người dùng"));
    // Add an agency viewer of agency A.
    let form = format!(
        "name=xem-a&password=mat-khau-du-dai-12&role=agency_viewer&agency={}",
        c.agency_a
    );
    let r = http(addr, "POST", "/console/admin/users", &admin, &form).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        r.header("location"),
        Some("/console/admin?ok=user-added#users-h")
    );
    let u = soar.user_by_name("xem-a").await.unwrap();
    assert_eq!(
        (u.role, u.agency_id),
        (Role::AgencyViewer, Some(c.agency_a))
    );
    let r = http(addr, "GET", "/console/admin?ok=user-added", &admin, "").await;
    assert!(r.body.contains("Đã thêm người dùng") && r.body.contains("id=\"user-xem-a\""));
    // A bad password is refused with the store's reason.
    let r = http(
        addr,
        "POST",
        "/console/admin/users",
        &admin,
        "name=ngan&password=short&role=analyst",
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(soar.user_by_name("ngan").await.is_err());
    // Change the role, then disable: the user can no longer log in.
    let r = http(
        addr,
        "POST",
        &format!("/console/admin/users/{}/role", u.id),
        &admin,
        "role=analyst&agency=",
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(soar.user(u.id).await.unwrap().role, Role::Analyst);
    let r = http(
        addr,
        "POST",
        &format!("/console/admin/users/{}/state", u.id),
        &admin,
        "action=disable",
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(soar.user(u.id).await.unwrap().disabled);
    let r = http(
        addr,
        "POST",
        "/console/login",
        "",
        "name=xem-a&password=mat-khau-du-dai-12",
    )
    .await;
    assert_eq!(r.status, 401);
    // A child agency under the province, renamed.
    let province = soar.agency_by_code("tinh").await.unwrap();
    let r = http(
        addr,
        "POST",
        "/console/admin/agencies",
        &admin,
        &format!(
            "parent={}&level=department&code=xa-gamma&name=UBND+x%C3%A3+Gamma",
            province.id
        ),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let gamma = soar.agency_by_code("xa-gamma").await.unwrap();
    assert_eq!(gamma.parent_id, Some(province.id));
    assert_eq!(gamma.name, "UBND xã Gamma");
    let page = format!("/console/admin/agencies/{}", gamma.id);
    let r = http(
        addr,
        "POST",
        &format!("{page}/rename"),
        &admin,
        "name=UBND+ph%C6%B0%E1%BB%9Dng+Gamma",
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        soar.agency(gamma.id).await.unwrap().name,
        "UBND phường Gamma"
    );
    // A public range added, shown, removed; a private range is refused as public.
    let r = http(
        addr,
        "POST",
        &format!("{page}/ranges"),
        &admin,
        "cidr=113.160.12.0%2F24&public=1",
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = http(addr, "GET", &page, &admin, "").await;
    assert!(r.body.contains("113.160.12.0/24") && r.body.contains("UBND xã Gamma"));
    let r = http(
        addr,
        "POST",
        &format!("{page}/ranges"),
        &admin,
        "cidr=10.0.0.0%2F8&public=1",
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(soar.agency_ranges(gamma.id).await.unwrap().len(), 1);
    let r = http(
        addr,
        "POST",
        &format!("{page}/ranges/remove"),
        &admin,
        "cidr=113.160.12.0%2F24",
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(soar.agency_ranges(gamma.id).await.unwrap().is_empty());
    // An information system with its uplinks, and a domain name, added and removed.
    let r = http(
        addr,
        "POST",
        &format!("{page}/systems"),
        &admin,
        "name=C%E1%BB%95ng+d%E1%BB%8Bch+v%E1%BB%A5+c%C3%B4ng&level=3&owner=UBND&operator=TT+CNTT\
         &uplinks=VNPT%3D113.160.12.0%2F28%3B+Viettel&description=",
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let systems = soar.agency_systems(gamma.id).await.unwrap();
    assert_eq!(systems.len(), 1);
    assert_eq!(systems[0].name, "Cổng dịch vụ công");
    assert_eq!((systems[0].level, systems[0].uplinks.len()), (3, 2));
    let r = http(
        addr,
        "POST",
        &format!("{page}/domains"),
        &admin,
        "domain=Gamma.Gov.VN",
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = http(addr, "GET", &page, &admin, "").await;
    assert!(r.body.contains("Cổng dịch vụ công") && r.body.contains("gamma.gov.vn"));
    let r = http(
        addr,
        "POST",
        &format!("{page}/domains/remove"),
        &admin,
        "domain=gamma.gov.vn",
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(soar.agency_domains(gamma.id).await.unwrap().is_empty());
    // Not an administrator: refused, nothing changed.
    let r = http(
        addr,
        "POST",
        &format!("{page}/ranges"),
        &analyst,
        "cidr=113.160.13.0%2F24&public=1",
    )
    .await;
    assert_eq!(r.status, 403);
    // An administrator's browser posting from another site: refused.
    let r = http_with(
        addr,
        "POST",
        &format!("{page}/ranges"),
        &admin,
        "cidr=113.160.13.0%2F24&public=1",
        "Origin: http://evil.example\r\n",
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(soar.agency_ranges(gamma.id).await.unwrap().is_empty());
    // Every change is in the audit log.
    let log = soar
        .audit_log(&canh_soar::AuditFilter {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    for action in [
        "user.create",
        "user.role",
        "user.disable",
        "agency.create",
        "agency.rename",
        "agency.add_range",
        "agency.remove_range",
    ] {
        assert!(
            log.iter()
                .any(|e| e.action == action && e.actor == "quantri"),
            "{action} not audited"
        );
    }
    c.node.shutdown().await.unwrap();
}

/// The caller's running searches.
async fn running_searches(addr: SocketAddr, cookie: &str) -> Vec<String> {
    let r = http(addr, "GET", "/console/search/running", cookie, "").await;
    assert_eq!(r.status, 200);
    r.body.lines().map(str::to_owned).collect()
}

/// Waits until the search `qid` is (or is no longer) running; fails after 30 s.
async fn wait_running(addr: SocketAddr, cookie: &str, qid: &str, running: bool) {
    for _ in 0..300 {
        if running_searches(addr, cookie)
            .await
            .iter()
            .any(|q| q == qid)
            == running
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("search {qid} running: expected {running}");
}

/// A DataFusion query that would count for a very long time.
const SLOW_SQL: &str = "SELECT+count(*)+FROM+range(1000000000000)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_search_is_stopped_by_cancel_or_when_the_browser_leaves() {
    let c = start().await;
    let addr = c.node.http;
    let sys = Actor::system("test");
    c.node
        .soar
        .soar
        .create_user(&sys, "quantri", Role::Administrator, None, PASSWORD)
        .await
        .unwrap();
    let cookie = login(addr, "truc").await;
    let other = login(addr, "quantri").await;
    // Cancel by query id.
    let path = format!("/console/search?mode=sql&sql={SLOW_SQL}&qid=lau-1");
    let waiter = {
        let cookie = cookie.clone();
        tokio::spawn(async move { http(addr, "GET", &path, &cookie, "").await })
    };
    wait_running(addr, &cookie, "lau-1", true).await;
    // Only its owner may cancel it.
    let r = http(addr, "POST", "/console/search/cancel", &other, "qid=lau-1").await;
    assert_eq!(r.status, 404);
    assert_eq!(running_searches(addr, &cookie).await, vec!["lau-1"]);
    let r = http(addr, "POST", "/console/search/cancel", &cookie, "qid=lau-1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("the cancelled search did not answer")
        .unwrap();
    assert_eq!(r.status, 499);
    assert!(r.body.contains("id=\"search-cancelled\""), "{}", r.body);
    assert!(running_searches(addr, &cookie).await.is_empty());
    // The browser goes away: the work stops with the connection.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /console/search?mode=sql&sql={SLOW_SQL}&qid=lau-2 HTTP/1.1\r\nHost: {addr}\r\n\
         Cookie: {cookie}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    wait_running(addr, &cookie, "lau-2", true).await;
    drop(s);
    wait_running(addr, &cookie, "lau-2", false).await;
    // A quick query still answers.
    let r = http(
        addr,
        "GET",
        "/console/search?mode=sql&sql=SELECT+41%2B1+AS+x&qid=nhanh",
        &cookie,
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("<td>42</td>"), "{}", r.body);
    c.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_are_saved_per_user() {
    let c = start().await;
    let addr = c.node.http;
    let soar = &c.node.soar.soar;
    let cookie = login(addr, "truc").await;
    let viewer = login(addr, "xem-b").await;
    let r = http(
        addr,
        "POST",
        "/console/search/saved",
        &cookie,
        "name=D%C3%B2+SSH&mode=filter&q=%22Failed+password%22&from=now-7d&to=",
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let back = r.header("location").unwrap().to_owned();
    assert!(back.starts_with("/console/search?q=%22Failed%20password%22&from=now-7d"));
    assert!(back.ends_with("&saved=1"), "{back}");
    let r = http(addr, "GET", &back, &cookie, "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("id=\"saved-ok\"") && r.body.contains(">Dò SSH</a>"));
    // The same name again replaces the query.
    let r = http(
        addr,
        "POST",
        "/console/search/saved",
        &cookie,
        "name=D%C3%B2+SSH&mode=filter&q=sshd&from=now-24h&to=",
    )
    .await;
    assert_eq!(r.status, 303);
    let truc = soar.user_by_name("truc").await.unwrap();
    let saved = soar.saved_searches(truc.id).await.unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(
        (saved[0].query.as_str(), saved[0].range_from.as_str()),
        ("sshd", "now-24h")
    );
    // Not shown to another user; a viewer cannot save SQL; nameless searches are refused.
    let r = http(addr, "GET", "/console/search", &viewer, "").await;
    assert!(!r.body.contains("Dò SSH"));
    let r = http(
        addr,
        "POST",
        "/console/search/saved",
        &viewer,
        "name=x&mode=sql&sql=select+1",
    )
    .await;
    assert_eq!(r.status, 403);
    let r = http(
        addr,
        "POST",
        "/console/search/saved",
        &cookie,
        "name=+&mode=filter&q=x",
    )
    .await;
    assert_eq!(r.status, 422);
    // Another user cannot delete it; its owner can.
    let del = format!("/console/search/saved/{}/delete", saved[0].id);
    let r = http(addr, "POST", &del, &viewer, "").await;
    assert_eq!(r.status, 404);
    let r = http(addr, "POST", &del, &cookie, "").await;
    assert_eq!(r.status, 303);
    assert!(soar.saved_searches(truc.id).await.unwrap().is_empty());
    c.node.shutdown().await.unwrap();
}
