//! The SOAR router on a real SQLite file: RBAC matrix (role × endpoint × own/other agency),
//! optimistic concurrency, cookie login and lock-out, evidence upload, OpenAPI document.

use super::{SoarConfig, SoarState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use canh_soar::{Actor, NewAgency, NewAlert, NewIncident, Role, Severity};
use serde_json::{Value, json};
use tower::ServiceExt;

pub(super) struct Fx {
    pub(super) st: SoarState,
    pub(super) _dir: tempfile::TempDir,
    pub(super) tokens: Vec<(&'static str, Role, String)>,
    pub(super) agency_a: i64,
    pub(super) incident_a: i64,
    pub(super) alert_a: i64,
}

pub(super) async fn fixture() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SoarConfig {
        secure_cookie: true,
        ..SoarConfig::default()
    };
    let st = SoarState::open(dir.path(), &cfg).await.unwrap();
    let s = &st.soar;
    let sys = Actor::system("test");
    let mk = |code: &str, name: &str| NewAgency {
        code: code.into(),
        name: name.into(),
        level: "province".into(),
        parent_id: None,
    };
    let a = s.create_agency(&sys, mk("a", "Tỉnh A")).await.unwrap();
    let b = s.create_agency(&sys, mk("b", "Tỉnh B")).await.unwrap();
    let users: [(&'static str, Role, Option<i64>); 6] = [
        ("admin", Role::Administrator, None),
        ("lead", Role::SocLead, None),
        ("analyst", Role::Analyst, None),
        ("viewer_a", Role::AgencyViewer, Some(a.id)),
        ("viewer_b", Role::AgencyViewer, Some(b.id)),
        ("auditor", Role::Auditor, None),
    ];
    let mut tokens = Vec::new();
    for (name, role, agency) in users {
        let u = s
            .create_user(&sys, name, role, agency, "mật-khẩu-đủ-dài-1")
            .await
            .unwrap();
        let t = s
            .issue_token(&sys, u.id, "test", chrono::Duration::hours(1))
            .await
            .unwrap();
        tokens.push((name, role, t.secret));
    }
    let alert_a = st
        .record_alert(NewAlert {
            rule_id: "web_shell".into(),
            rule_title: "Web shell".into(),
            rule_level: "high".into(),
            severity: Severity::High,
            agency_id: Some(a.id),
            host: "portal-a".into(),
            event: json!({"url": {"path": "/shell.php"}}),
            time: s.now(),
            dedup_key: None,
        })
        .await
        .unwrap();
    let admin = s.user(1).await.unwrap();
    let inc = s
        .create_incident(
            &Actor::user(admin.id, &admin.name, "test"),
            NewIncident {
                title: "Web shell trên cổng A".into(),
                description: String::new(),
                severity: Severity::High,
                agency_id: a.id,
                detected_at: None,
                alert_ids: vec![],
            },
        )
        .await
        .unwrap();
    Fx {
        st,
        _dir: dir,
        tokens,
        agency_a: a.id,
        incident_a: inc.id,
        alert_a,
    }
}

pub(super) async fn call(
    fx: &Fx,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
    if_match: Option<i64>,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(v) = if_match {
        req = req.header(header::IF_MATCH, format!("\"{v}\""));
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string()))
            .unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let resp = router(fx.st.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, v, headers)
}

async fn version(fx: &Fx) -> i64 {
    fx.st.soar.incident(fx.incident_a).await.unwrap().version
}

#[tokio::test]
async fn rbac_matrix_role_by_endpoint_by_agency() {
    let fx = fixture().await;
    let inc = fx.incident_a;
    let alert = fx.alert_a;
    for (name, role, token) in &fx.tokens {
        let t = Some(token.as_str());
        let reader = *name != "viewer_b";
        let writer = role.can_write_cases();
        let ok_if =
            |allowed: bool, ok: StatusCode| if allowed { ok } else { StatusCode::FORBIDDEN };

        let (s, _, h) = call(
            &fx,
            "GET",
            &format!("/api/v1/incidents/{inc}"),
            t,
            None,
            None,
        )
        .await;
        assert_eq!(s, ok_if(reader, StatusCode::OK), "{name} GET incident");
        if reader {
            assert!(h.get(header::ETAG).is_some());
        }
        for sub in ["timeline", "tasks", "observables", "signoffs", "evidence"] {
            let uri = format!("/api/v1/incidents/{inc}/{sub}");
            let (s, _, _) = call(&fx, "GET", &uri, t, None, None).await;
            assert_eq!(s, ok_if(reader, StatusCode::OK), "{name} GET {sub}");
        }
        let (s, _, _) = call(
            &fx,
            "GET",
            &format!("/api/v1/alerts/{alert}"),
            t,
            None,
            None,
        )
        .await;
        assert_eq!(s, ok_if(reader, StatusCode::OK), "{name} GET alert");

        let (s, list, _) = call(&fx, "GET", "/api/v1/incidents", t, None, None).await;
        assert_eq!(s, StatusCode::OK);
        let n = list["items"].as_array().unwrap().len();
        assert_eq!(n, usize::from(reader), "{name} incident list");
        let (s, list, _) = call(&fx, "GET", "/api/v1/alerts", t, None, None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            list["items"].as_array().unwrap().len(),
            usize::from(reader),
            "{name} alerts"
        );

        let v = version(&fx).await;
        let body = json!({"description": format!("edited by {name}")});
        let uri = format!("/api/v1/incidents/{inc}");
        let (s, _, _) = call(&fx, "PATCH", &uri, t, Some(body), Some(v)).await;
        let expect = if !reader {
            StatusCode::FORBIDDEN
        } else {
            ok_if(writer, StatusCode::OK)
        };
        assert_eq!(s, expect, "{name} PATCH incident");

        let uri = format!("/api/v1/incidents/{inc}/tasks");
        let body = json!({"step": "analyse", "title": format!("task of {name}")});
        let (s, _, _) = call(&fx, "POST", &uri, t, Some(body), None).await;
        let expect = if !reader {
            StatusCode::FORBIDDEN
        } else {
            ok_if(writer, StatusCode::CREATED)
        };
        assert_eq!(s, expect, "{name} POST task");

        let body = json!({"ids": [alert], "assignee_id": null});
        let (s, _, _) = call(&fx, "POST", "/api/v1/alerts/assign", t, Some(body), None).await;
        let expect = if !reader {
            StatusCode::FORBIDDEN
        } else {
            ok_if(writer, StatusCode::NO_CONTENT)
        };
        assert_eq!(s, expect, "{name} assign alert");

        let (s, _, _) = call(&fx, "GET", "/api/v1/audit", t, None, None).await;
        assert_eq!(
            s,
            ok_if(role.can_read_audit(), StatusCode::OK),
            "{name} audit"
        );
        let (s, _, _) = call(&fx, "GET", "/api/v1/audit/verify", t, None, None).await;
        assert_eq!(
            s,
            ok_if(role.can_read_audit(), StatusCode::OK),
            "{name} audit verify"
        );

        let body = json!({"name": format!("new_{name}"), "role": "analyst",
                          "password": "mật-khẩu-đủ-dài-2"});
        let (s, _, _) = call(&fx, "POST", "/api/v1/users", t, Some(body), None).await;
        let admin = *role == Role::Administrator;
        assert_eq!(s, ok_if(admin, StatusCode::CREATED), "{name} create user");

        let body = json!({"code": format!("p-{name}"), "name": "Tỉnh mới", "level": "province"});
        let (s, _, _) = call(&fx, "POST", "/api/v1/agencies", t, Some(body), None).await;
        assert_eq!(
            s,
            ok_if(role.can_administer(), StatusCode::CREATED),
            "{name} agency"
        );

        let (s, _, _) = call(
            &fx,
            "GET",
            &format!("/api/v1/agencies/{}", fx.agency_a),
            t,
            None,
            None,
        )
        .await;
        assert_eq!(s, ok_if(reader, StatusCode::OK), "{name} GET agency");
    }
    // No credentials at all.
    let (s, body, _) = call(&fx, "GET", "/api/v1/incidents", None, None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "unauthenticated");
    let (s, _, _) = call(&fx, "GET", "/api/v1/incidents", Some("forged"), None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Every accepted change is in the audit chain, and the chain holds.
    assert!(fx.st.soar.verify_audit().await.unwrap().ok());
}

#[tokio::test]
async fn concurrent_edits_with_the_same_version_conflict() {
    let fx = fixture().await;
    let analyst = fx.tokens[2].2.clone();
    let lead = fx.tokens[1].2.clone();
    let v = version(&fx).await;
    let uri = format!("/api/v1/incidents/{}", fx.incident_a);
    let (a, b) = tokio::join!(
        call(
            &fx,
            "PATCH",
            &uri,
            Some(&analyst),
            Some(json!({"title": "A"})),
            Some(v)
        ),
        call(
            &fx,
            "PATCH",
            &uri,
            Some(&lead),
            Some(json!({"title": "B"})),
            Some(v)
        ),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    // A transition with a stale body version is refused the same way.
    let uri = format!("/api/v1/incidents/{}/transition", fx.incident_a);
    let body = json!({"to": "analyse", "summary": "đã xác minh", "version": v});
    let (s, e, _) = call(&fx, "POST", &uri, Some(&analyst), Some(body), None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(e["code"], "conflict");
    // Without any version: 428.
    let body = json!({"to": "analyse", "summary": "x"});
    let (s, _, _) = call(&fx, "POST", &uri, Some(&analyst), Some(body), None).await;
    assert_eq!(s, StatusCode::PRECONDITION_REQUIRED);
    let v = version(&fx).await;
    let body = json!({"to": "contain", "summary": "x", "version": v});
    let (s, e, _) = call(&fx, "POST", &uri, Some(&analyst), Some(body), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("illegal transition")
    );
    let body = json!({"to": "analyse", "summary": "đã xác minh", "version": v});
    let (s, r, _) = call(&fx, "POST", &uri, Some(&analyst), Some(body), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["incident"]["step"], "analyse");
}

#[tokio::test]
async fn cookie_login_flags_and_lock_out() {
    let fx = fixture().await;
    let login = |pw: &str| {
        Request::builder()
            .method("POST")
            .uri("/api/v1/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"name": "analyst", "password": pw}).to_string(),
            ))
            .unwrap()
    };
    let resp = router(fx.st.clone())
        .oneshot(login("mật-khẩu-đủ-dài-1"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = resp.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_owned();
    let me = Request::builder()
        .uri("/api/v1/auth/me")
        .header(header::COOKIE, &pair)
        .body(Body::empty())
        .unwrap();
    let resp = router(fx.st.clone()).oneshot(me).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    for _ in 0..5 {
        let resp = router(fx.st.clone())
            .oneshot(login("sai-mật-khẩu-000"))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    let resp = router(fx.st.clone())
        .oneshot(login("mật-khẩu-đủ-dài-1"))
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::FORBIDDEN,
        "locked account must be refused"
    );
}

#[tokio::test]
async fn evidence_upload_streams_and_hashes() {
    let fx = fixture().await;
    let analyst = fx.tokens[2].2.clone();
    let data = "203.0.113.5 - - [05/Mar/2026:08:07:00 +0700] \"POST /shell.php\" 200\n".repeat(500);
    let req = Request::builder()
        .method("POST")
        .uri(format!(
            "/api/v1/incidents/{}/evidence?filename=access.log&description=nh%E1%BA%ADt%20k%C3%BD",
            fx.incident_a
        ))
        .header(header::AUTHORIZATION, format!("Bearer {analyst}"))
        .body(Body::from(data.clone()))
        .unwrap();
    let resp = router(fx.st.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let ev: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(ev["size"], data.len());
    assert_eq!(ev["description"], "nhật ký");
    let id = ev["id"].as_i64().unwrap();
    let lead = fx.tokens[1].2.clone();
    let uri = format!("/api/v1/evidence/{id}/content");
    let req = Request::builder()
        .uri(&uri)
        .header(header::AUTHORIZATION, format!("Bearer {lead}"))
        .body(Body::empty())
        .unwrap();
    let resp = router(fx.st.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["x-content-sha256"],
        ev["sha256"].as_str().unwrap()
    );
    let back = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(back, data.as_bytes());
    let viewer_b = fx.tokens[4].2.clone();
    let (s, _, _) = call(&fx, "GET", &uri, Some(&viewer_b), None, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, h) = call(
        &fx,
        "GET",
        &format!("/api/v1/incidents/{}/evidence.zip", fx.incident_a),
        Some(&lead),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::CONTENT_TYPE], "application/zip");
}

#[tokio::test]
async fn overdue_reports_become_alerts_once() {
    let dir = tempfile::tempdir().unwrap();
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-05T01:07:00Z")
        .unwrap()
        .to_utc();
    let clock = std::sync::Arc::new(canh_soar::ManualClock::new(start));
    let st = SoarState::open_with_clock(dir.path(), &SoarConfig::default(), clock.clone())
        .await
        .unwrap();
    let sys = Actor::system("t");
    let a = st
        .soar
        .create_agency(
            &sys,
            NewAgency {
                code: "a".into(),
                name: "A".into(),
                level: "province".into(),
                parent_id: None,
            },
        )
        .await
        .unwrap();
    let inc = NewIncident {
        title: "x".into(),
        description: String::new(),
        severity: Severity::Low,
        agency_id: a.id,
        detected_at: None,
        alert_ids: vec![],
    };
    st.soar.create_incident(&sys, inc).await.unwrap();
    assert!(st.raise_overdue_alerts().await.unwrap().is_empty());
    clock.advance(chrono::Duration::days(5) + chrono::Duration::seconds(1));
    let first = st.raise_overdue_alerts().await.unwrap();
    let second = st.raise_overdue_alerts().await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first, second);
    let alert = st.soar.alert(first[0]).await.unwrap();
    assert_eq!(alert.rule_id, "canh.soar.overdue");
    assert_eq!(alert.count, 2);
    assert_eq!(alert.agency_id, Some(a.id));
}

#[test]
fn openapi_document_lists_the_routes() {
    let doc: Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/api/v1/incidents",
        "/api/v1/incidents/{id}/transition",
        "/api/v1/audit/verify",
    ] {
        assert!(doc["paths"][p].is_object(), "{p}");
    }
}

#[test]
fn soar_config_defaults_and_unknown_keys() {
    let c: SoarConfig = toml::from_str("").unwrap();
    assert_eq!(c, SoarConfig::default());
    assert!(toml::from_str::<SoarConfig>("profil = \"x\"").is_err());
}

#[tokio::test]
async fn rbac_for_roster_notifications_initial_report_and_totp() {
    let fx = fixture().await;
    let inc = fx.incident_a;
    let sys = Actor::system("test");
    let cur = fx.st.soar.incident(inc).await.unwrap();
    let flag = canh_soar::incident::IncidentPatch {
        beyond_capacity: Some(true),
        ..Default::default()
    };
    fx.st
        .soar
        .update_incident(&sys, inc, cur.version, flag)
        .await
        .unwrap();
    for (name, role, token) in &fx.tokens {
        let t = Some(token.as_str());
        let ok_if =
            |allowed: bool, ok: StatusCode| if allowed { ok } else { StatusCode::FORBIDDEN };
        let (s, _, _) = call(&fx, "GET", "/api/v1/roster", t, None, None).await;
        assert_eq!(
            s,
            ok_if(role.can_write_cases(), StatusCode::OK),
            "{name} GET roster"
        );
        let body = json!({"name": "Trực ban", "email": format!("{name}@soc.example.vn")});
        let (s, _, _) = call(&fx, "POST", "/api/v1/roster", t, Some(body), None).await;
        assert_eq!(
            s,
            ok_if(role.can_administer(), StatusCode::CREATED),
            "{name} POST roster"
        );
        let (s, _, _) = call(&fx, "GET", "/api/v1/notifications", t, None, None).await;
        assert_eq!(
            s,
            ok_if(
                role.can_administer() || role.can_read_audit(),
                StatusCode::OK
            ),
            "{name} GET notifications"
        );
        let uri = format!("/api/v1/incidents/{inc}/initial-report");
        let (s, body, _) = call(&fx, "GET", &uri, t, None, None).await;
        let reader = *name != "viewer_b";
        assert_eq!(
            s,
            ok_if(reader, StatusCode::OK),
            "{name} GET initial report"
        );
        if reader {
            assert_eq!(body["form"], "mau-03");
            assert!(!body["missing"].as_array().unwrap().is_empty());
        }
        let (s, _, _) = call(&fx, "POST", "/api/v1/auth/totp", t, None, None).await;
        assert_eq!(s, StatusCode::CREATED, "{name} TOTP enrol");
    }
    let (s, _, _) = call(&fx, "POST", "/api/v1/auth/totp", None, None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn initial_report_renders_as_html_and_text_and_needs_the_flag() {
    let fx = fixture().await;
    let lead = fx.tokens[1].2.clone();
    let uri = format!("/api/v1/incidents/{}/initial-report", fx.incident_a);
    let (s, e, _) = call(&fx, "GET", &uri, Some(&lead), None, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let cur = fx.st.soar.incident(fx.incident_a).await.unwrap();
    let flag = canh_soar::incident::IncidentPatch {
        beyond_capacity: Some(true),
        ..Default::default()
    };
    let (s, _, _) = call(
        &fx,
        "PATCH",
        &format!("/api/v1/incidents/{}", fx.incident_a),
        Some(&lead),
        Some(serde_json::to_value(&flag).unwrap()),
        Some(cur.version),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for (q, ctype, needle) in [
        (
            "?format=html",
            "text/html; charset=utf-8",
            "BÁO CÁO BAN ĐẦU SỰ CỐ MẠNG",
        ),
        (
            "?format=text&lang=en",
            "text/plain; charset=utf-8",
            "[MISSING – mandatory]",
        ),
    ] {
        let req = Request::builder()
            .uri(format!("{uri}{q}"))
            .header(header::AUTHORIZATION, format!("Bearer {lead}"))
            .body(Body::empty())
            .unwrap();
        let resp = router(fx.st.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], ctype);
        let b = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(
            String::from_utf8(b.to_vec()).unwrap().contains(needle),
            "{q}"
        );
    }
    let (s, _, _) = call(
        &fx,
        "GET",
        &format!("{uri}?format=pdf"),
        Some(&lead),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn api_login_asks_for_the_totp_code_once_enabled() {
    let fx = fixture().await;
    let analyst = fx.st.soar.user_by_name("analyst").await.unwrap();
    let en = fx
        .st
        .soar
        .totp_enrol(&Actor::system("t"), analyst.id, false)
        .await
        .unwrap();
    let login = |body: Value| {
        Request::builder()
            .method("POST")
            .uri("/api/v1/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let pw = "mật-khẩu-đủ-dài-1";
    let resp = router(fx.st.clone())
        .oneshot(login(json!({"name": "analyst", "password": pw})))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let b = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["code"], "totp_required");
    let code = canh_soar::user::totp_code(&en.secret, fx.st.soar.now()).unwrap();
    let resp = router(fx.st.clone())
        .oneshot(login(
            json!({"name": "analyst", "password": pw, "totp": code}),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get(header::SET_COOKIE).is_some());
    // The same code again: replay refused.
    let resp = router(fx.st.clone())
        .oneshot(login(
            json!({"name": "analyst", "password": pw, "totp": code}),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}
