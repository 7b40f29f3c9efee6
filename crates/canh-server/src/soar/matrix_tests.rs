//! The full RBAC matrix: every `/api/v1` SOAR endpoint × every role × own/other agency, on a
//! real SQLite file and a real event store. Also: captured event sets as evidence, alert
//! classification/teams/suppression, information systems and the R-14 contact task through
//! the API.

use super::tests::{Fx, call, fixture};
use super::{SoarConfig, SoarState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use canh_soar::{Actor, Contact, ManualClock, NewAgency, NewSystem, Role, Severity};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use tower::ServiceExt;

/// Who may call an endpoint.
#[derive(Clone, Copy, Debug)]
enum Who {
    /// Every authenticated user.
    Any,
    /// Users who see agency A (all but the viewer of agency B).
    ReadA,
    /// Administrator, SOC lead, analyst (they see every agency).
    Write,
    /// Administrator and SOC lead.
    Admin,
    /// Administrator only.
    AdminOnly,
    /// Administrator, SOC lead, auditor.
    Audit,
    /// Users who see every agency (not agency viewers).
    Unscoped,
    /// Evidence export: administrator, SOC lead, auditor.
    Export,
}

impl Who {
    fn allows(self, name: &str, role: Role) -> bool {
        match self {
            Who::Any => true,
            Who::ReadA => name != "viewer_b",
            Who::Write => role.can_write_cases(),
            Who::Admin => role.can_administer(),
            Who::AdminOnly => role == Role::Administrator,
            Who::Audit => role.can_read_audit(),
            Who::Unscoped => role != Role::AgencyViewer,
            Who::Export => matches!(role, Role::Administrator | Role::SocLead | Role::Auditor),
        }
    }
}

/// What an allowed call must answer.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Exactly this status.
    Is(StatusCode),
    /// Neither 401 nor 403 (state-changing calls that only the first caller can make, such
    /// as a step transition; later callers get 409/422, never a refusal of access).
    NotDenied,
}

struct Case {
    method: &'static str,
    /// `{inc} {alert} {agency} {ev} {task} {sys} {cid} {atask} {tpl} {v} {name} {dname} {m}
    /// {mt} {r} {s} {uid} {nid} {totp}` are replaced per call.
    uri: &'static str,
    body: Option<Value>,
    /// Raw body (CSV, evidence bytes) instead of JSON.
    raw: Option<&'static str>,
    who: Who,
    expect: Expect,
}

fn case(method: &'static str, uri: &'static str, who: Who, expect: Expect) -> Case {
    Case {
        method,
        uri,
        body: None,
        raw: None,
        who,
        expect,
    }
}

fn with(mut c: Case, body: Value) -> Case {
    c.body = Some(body);
    c
}

fn raw(mut c: Case, text: &'static str) -> Case {
    c.raw = Some(text);
    c
}

const OK: Expect = Expect::Is(StatusCode::OK);
const CREATED: Expect = Expect::Is(StatusCode::CREATED);
const NO_CONTENT: Expect = Expect::Is(StatusCode::NO_CONTENT);

fn cases() -> Vec<Case> {
    use Who::*;
    vec![
        case("GET", "/api/v1/auth/me", Any, OK),
        case("GET", "/api/v1/profiles", Any, OK),
        case("GET", "/api/v1/incident-types", Any, OK),
        case("GET", "/api/v1/alerts", Any, OK),
        case("GET", "/api/v1/alerts/{alert}", ReadA, OK),
        with(
            case("POST", "/api/v1/alerts/triage", Write, Expect::NotDenied),
            json!({"ids": ["{alert}"], "state": "acknowledged"}),
        ),
        with(
            case("POST", "/api/v1/alerts/assign", Write, NO_CONTENT),
            json!({"ids": ["{alert}"], "assignee_id": null}),
        ),
        with(
            case("POST", "/api/v1/alerts/classify", Write, NO_CONTENT),
            json!({"ids": ["{alert}"], "incident_type": "malware"}),
        ),
        with(
            case("POST", "/api/v1/alerts/assign-team", Write, NO_CONTENT),
            json!({"ids": ["{alert}"], "team": "Tổ ứng cứu"}),
        ),
        case("GET", "/api/v1/alerts/{alert}/comments", ReadA, OK),
        with(
            case("POST", "/api/v1/alerts/{alert}/comments", Write, CREATED),
            json!({"body": "đã xem"}),
        ),
        case("GET", "/api/v1/suppressions", Unscoped, OK),
        with(
            case("POST", "/api/v1/suppressions", Write, CREATED),
            json!({"rule_id": "rule-{name}", "reason": "máy quét được phép"}),
        ),
        case("DELETE", "/api/v1/suppressions/{s}", Write, OK),
        case("GET", "/api/v1/incidents", Any, OK),
        with(
            case("POST", "/api/v1/incidents", Write, CREATED),
            json!({"title": "Sự cố của {name}", "severity": "low", "agency_id": "{agency}"}),
        ),
        case("GET", "/api/v1/incidents/{inc}", ReadA, OK),
        with(
            case("PATCH", "/api/v1/incidents/{inc}", Write, OK),
            json!({"description": "sửa bởi {name}", "version": "{v}"}),
        ),
        with(
            case("POST", "/api/v1/incidents/{inc}/serious", Write, OK),
            json!({"service_interruption": true, "version": "{v}"}),
        ),
        with(
            case(
                "POST",
                "/api/v1/incidents/{inc}/transition",
                Write,
                Expect::NotDenied,
            ),
            json!({"to": "analyse", "summary": "đã xác minh", "version": "{v}"}),
        ),
        with(
            case(
                "POST",
                "/api/v1/incidents/{inc}/close",
                Write,
                Expect::NotDenied,
            ),
            json!({"summary": "x", "version": "{v}"}),
        ),
        with(
            case(
                "POST",
                "/api/v1/incidents/{inc}/reports",
                Write,
                Expect::NotDenied,
            ),
            json!({"kind": "notice", "version": "{v}"}),
        ),
        case("GET", "/api/v1/incidents/{inc}/tasks", ReadA, OK),
        with(
            case("POST", "/api/v1/incidents/{inc}/tasks", Write, CREATED),
            json!({"step": "contain", "title": "việc của {name}", "lead_unit": "Trung tâm CNTT-TT",
                   "supporting_units": ["Công an tỉnh"]}),
        ),
        with(
            case("PATCH", "/api/v1/tasks/{task}", Write, OK),
            json!({"done": true}),
        ),
        case("GET", "/api/v1/incidents/{inc}/timeline", ReadA, OK),
        with(
            case(
                "POST",
                "/api/v1/incidents/{inc}/timeline",
                Write,
                Expect::NotDenied,
            ),
            json!({"body": "ghi chú của {name}"}),
        ),
        case("GET", "/api/v1/incidents/{inc}/observables", ReadA, OK),
        with(
            case(
                "POST",
                "/api/v1/incidents/{inc}/observables",
                Write,
                Expect::NotDenied,
            ),
            json!({"kind": "ip", "value": "198.51.100.7"}),
        ),
        with(
            case(
                "POST",
                "/api/v1/incidents/{inc}/alerts",
                Write,
                Expect::NotDenied,
            ),
            json!({"ids": ["{alert}"]}),
        ),
        case("GET", "/api/v1/incidents/{inc}/signoffs", ReadA, OK),
        case("GET", "/api/v1/incidents/{inc}/evidence", ReadA, OK),
        raw(
            case(
                "POST",
                "/api/v1/incidents/{inc}/evidence?filename=log-{name}.txt",
                Write,
                CREATED,
            ),
            "203.0.113.5 GET /shell.php\n",
        ),
        with(
            case(
                "POST",
                "/api/v1/incidents/{inc}/evidence/events",
                Write,
                CREATED,
            ),
            json!({"query": "", "from": "2026-03-05T00:00:00Z", "to": "2026-03-06T00:00:00Z"}),
        ),
        case("GET", "/api/v1/incidents/{inc}/evidence.zip", Export, OK),
        case("GET", "/api/v1/evidence/{ev}/content", ReadA, OK),
        case("GET", "/api/v1/evidence/{ev}/custody", ReadA, OK),
        case("GET", "/api/v1/incidents/{inc}/initial-report", ReadA, OK),
        case("GET", "/api/v1/templates", Any, OK),
        with(
            case("POST", "/api/v1/templates", Admin, CREATED),
            json!({"name": "Mẫu của {name}", "incident_type": "defacement",
                   "tasks": [{"step": "contain", "title": "Gỡ trang giả mạo"}]}),
        ),
        with(
            case("POST", "/api/v1/incidents/{inc}/template", Write, CREATED),
            json!({"template_id": "{tpl}"}),
        ),
        case("GET", "/api/v1/overdue", Any, OK),
        case("GET", "/api/v1/agencies", Any, OK),
        with(
            case("POST", "/api/v1/agencies", Admin, CREATED),
            json!({"code": "p-{name}", "name": "Tỉnh mới", "level": "province"}),
        ),
        raw(
            case("POST", "/api/v1/agencies/import?kind=domains", Admin, OK),
            "agency_code,domain\na,import.a.gov.vn\n",
        ),
        case("GET", "/api/v1/agencies/{agency}", ReadA, OK),
        with(
            case("POST", "/api/v1/agencies/{agency}/rename", Admin, OK),
            json!({"name": "Tỉnh A"}),
        ),
        with(
            case("POST", "/api/v1/agencies/{mt}/merge", Admin, NO_CONTENT),
            json!({"sources": ["{m}"]}),
        ),
        with(
            case("POST", "/api/v1/agencies/{agency}/ranges", Admin, CREATED),
            json!({"cidr": "203.113.140.0/24"}),
        ),
        case("GET", "/api/v1/agencies/{agency}/contacts", ReadA, OK),
        with(
            case("POST", "/api/v1/agencies/{agency}/contacts", Admin, CREATED),
            json!({"kind": "monitoring", "name": "Giám sát {name}", "email": "gs@a.gov.vn"}),
        ),
        with(
            case("PUT", "/api/v1/agencies/{agency}/contacts/{cid}", Admin, OK),
            json!({"kind": "primary", "name": "Nguyễn Văn An", "phone": "0275 {name}"}),
        ),
        case("GET", "/api/v1/agencies/{agency}/tasks", ReadA, OK),
        case("POST", "/api/v1/agency-tasks/{atask}/done", Admin, OK),
        case("GET", "/api/v1/agencies/{agency}/systems", ReadA, OK),
        with(
            case("POST", "/api/v1/agencies/{agency}/systems", Admin, CREATED),
            json!({"name": "Hệ thống {name}", "level": 2}),
        ),
        case("GET", "/api/v1/systems/{sys}", ReadA, OK),
        with(
            case("PUT", "/api/v1/systems/{sys}", Admin, OK),
            json!({"name": "Cổng dịch vụ công", "level": 3, "owner": "UBND tỉnh A",
                   "uplinks": [{"provider": "VNPT", "cidr": "203.113.130.0/30"}]}),
        ),
        case("GET", "/api/v1/agencies/{agency}/domains", ReadA, OK),
        with(
            case("POST", "/api/v1/agencies/{agency}/domains", Admin, CREATED),
            json!({"domain": "{dname}.a.gov.vn"}),
        ),
        case(
            "DELETE",
            "/api/v1/agencies/{agency}/domains/del-{dname}.a.gov.vn",
            Admin,
            NO_CONTENT,
        ),
        case("GET", "/api/v1/users", Admin, OK),
        with(
            case("POST", "/api/v1/users", AdminOnly, CREATED),
            json!({"name": "new_{name}", "role": "analyst", "password": "mật-khẩu-đủ-dài-2"}),
        ),
        with(
            case("POST", "/api/v1/users/{uid}/tokens", AdminOnly, CREATED),
            json!({"label": "ci", "days": 1}),
        ),
        case("GET", "/api/v1/roster", Write, OK),
        with(
            case("POST", "/api/v1/roster", Admin, CREATED),
            json!({"name": "Trực ban", "email": "{name}@soc.example.vn"}),
        ),
        with(
            case("PATCH", "/api/v1/roster/{r}", Admin, OK),
            json!({"on_duty": false}),
        ),
        case("DELETE", "/api/v1/roster/{r}", Admin, NO_CONTENT),
        case("GET", "/api/v1/notifications", Audit, OK),
        case("GET", "/api/v1/notifications/{nid}/attempts", Audit, OK),
        case("GET", "/api/v1/audit", Audit, OK),
        case("GET", "/api/v1/audit/verify", Audit, OK),
        case("POST", "/api/v1/auth/totp", Any, CREATED),
        with(
            case("POST", "/api/v1/auth/totp/confirm", Any, NO_CONTENT),
            json!({"code": "{totp}"}),
        ),
        case("DELETE", "/api/v1/auth/totp", Any, NO_CONTENT),
    ]
}

/// Replaces `{key}` in every string of a JSON value; a string that was exactly one placeholder
/// and is a number after replacement becomes that number.
fn fill(v: &Value, vars: &HashMap<&str, String>) -> Value {
    match v {
        Value::String(s) => {
            let out = fill_str(s, vars);
            // Ids and versions are numbers; a TOTP code stays text.
            if s.starts_with('{')
                && s.ends_with('}')
                && !s.contains(' ')
                && s != "{totp}"
                && let Ok(n) = out.parse::<i64>()
            {
                return json!(n);
            }
            json!(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| fill(x, vars)).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, x)| (k.clone(), fill(x, vars))).collect())
        }
        other => other.clone(),
    }
}

fn fill_str(s: &str, vars: &HashMap<&str, String>) -> String {
    let mut out = s.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

async fn send(
    fx: &Fx,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
    raw: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match (body, raw) {
        (Some(b), _) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string()))
            .unwrap(),
        (None, Some(r)) => req.body(Body::from(r.to_owned())).unwrap(),
        (None, None) => req.body(Body::empty()).unwrap(),
    };
    let resp = router(fx.st.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Synthetic events of agencies `a` and `b` (organization.id = agency code) in a real store.
async fn event_store(dir: &std::path::Path) -> Arc<canh_store::Store> {
    let store = canh_store::Store::open(dir, canh_store::StoreConfig::default())
        .await
        .unwrap();
    let base = chrono::DateTime::parse_from_rfc3339("2026-03-05T01:00:00Z")
        .unwrap()
        .to_utc();
    let mut events = Vec::new();
    for i in 0..30 {
        let mut e = canh_core::Event::new(base + chrono::Duration::minutes(i));
        e.set("organization.id", if i % 3 == 0 { "b" } else { "a" });
        e.set("host.name", format!("portal-{}", i % 2));
        e.set("url.path", "/uploads/x.php");
        e.set("message", format!("POST /uploads/x.php lần {i}"));
        events.push(e);
    }
    store.append(events).await.unwrap();
    store.flush().await.unwrap();
    Arc::new(store)
}

#[tokio::test]
async fn full_rbac_matrix_every_endpoint_every_role_own_and_other_agency() {
    let fx = fixture().await;
    let s = &fx.st.soar;
    let sys_actor = Actor::system("test");
    let store_dir = tempfile::tempdir().unwrap();
    fx.st.set_event_store(event_store(store_dir.path()).await);
    let a = fx.agency_a;
    // The initial report needs the flag; a system, a contact, an agency task, an evidence item,
    // a template, and per-caller objects that one caller deletes.
    let cur = s.incident(fx.incident_a).await.unwrap();
    let flag = canh_soar::incident::IncidentPatch {
        beyond_capacity: Some(true),
        ..Default::default()
    };
    s.update_incident(&sys_actor, fx.incident_a, cur.version, flag)
        .await
        .unwrap();
    let system = s
        .add_system(
            &sys_actor,
            a,
            NewSystem {
                name: "Cổng dịch vụ công".into(),
                level: 3,
                owner: String::new(),
                operator: String::new(),
                uplinks: vec![],
                description: String::new(),
            },
        )
        .await
        .unwrap();
    let cid = s
        .add_agency_contact(
            &sys_actor,
            a,
            Contact {
                kind: "primary".into(),
                name: "Nguyễn Văn An".into(),
                position: String::new(),
                phone: "0275 3822 123".into(),
                mobile: String::new(),
                email: String::new(),
            },
        )
        .await
        .unwrap();
    let atask = s.agency_tasks(a).await.unwrap()[0].id;
    let task = s
        .add_task(
            &sys_actor,
            fx.incident_a,
            canh_soar::Step::Analyse,
            "xác minh",
        )
        .await
        .unwrap()
        .id;
    let mut w = s.evidence_writer(1 << 20).await.unwrap();
    w.write(b"log\n").await.unwrap();
    let ev = s
        .finish_evidence(&sys_actor, fx.incident_a, "a.log", "", w)
        .await
        .unwrap()
        .id;
    let tpl = s
        .create_template(
            &sys_actor,
            canh_soar::incident::NewCaseTemplate {
                name: "Deface".into(),
                incident_type: "defacement".into(),
                severity: None,
                tasks: vec![canh_soar::incident::NewTask {
                    step: canh_soar::Step::Contain,
                    title: "Gỡ trang".into(),
                    lead_unit: String::new(),
                    supporting_units: vec![],
                }],
            },
        )
        .await
        .unwrap()
        .id;
    let merge_target = s
        .create_agency(
            &sys_actor,
            NewAgency {
                code: "mt".into(),
                name: "Tỉnh hợp nhất".into(),
                level: "province".into(),
                parent_id: None,
            },
        )
        .await
        .unwrap()
        .id;
    let mut per: HashMap<&str, HashMap<&str, String>> = HashMap::new();
    for (name, _, _) in &fx.tokens {
        let m = s
            .create_agency(
                &sys_actor,
                NewAgency {
                    code: format!("m-{name}"),
                    name: format!("Tỉnh cũ {name}"),
                    level: "province".into(),
                    parent_id: None,
                },
            )
            .await
            .unwrap()
            .id;
        let r = s
            .add_roster(
                &sys_actor,
                "Trực",
                &format!("r-{name}@soc.example.vn"),
                true,
            )
            .await
            .unwrap()
            .id;
        let sup = s
            .add_suppression(
                &sys_actor,
                canh_soar::alert::NewSuppression {
                    rule_id: format!("del-{name}"),
                    host: String::new(),
                    reason: "thử".into(),
                    expires_at: None,
                },
            )
            .await
            .unwrap()
            .id;
        s.add_agency_domain(
            &sys_actor,
            a,
            &format!("del-{}.a.gov.vn", name.replace('_', "-")),
        )
        .await
        .unwrap();
        let mut vars = HashMap::new();
        vars.insert("m", m.to_string());
        vars.insert("r", r.to_string());
        vars.insert("s", sup.to_string());
        per.insert(name, vars);
    }
    let cases = cases();
    let mut checked = 0;
    let mut enrolled: Option<String> = None;
    for (name, role, token) in &fx.tokens {
        for c in &cases {
            let mut vars = per[name].clone();
            vars.insert("name", (*name).to_owned());
            vars.insert("dname", name.replace('_', "-"));
            vars.insert("inc", fx.incident_a.to_string());
            vars.insert("alert", fx.alert_a.to_string());
            vars.insert("agency", a.to_string());
            vars.insert("ev", ev.to_string());
            vars.insert("task", task.to_string());
            vars.insert("sys", system.id.to_string());
            vars.insert("cid", cid.to_string());
            vars.insert("atask", atask.to_string());
            vars.insert("tpl", tpl.to_string());
            vars.insert("mt", merge_target.to_string());
            vars.insert("uid", "1".into());
            vars.insert("nid", "1".into());
            vars.insert(
                "v",
                s.incident(fx.incident_a).await.unwrap().version.to_string(),
            );
            if c.uri == "/api/v1/auth/totp/confirm" {
                // The code of the secret this caller enrolled a moment ago.
                let secret = enrolled.take().expect("enrolled before confirming");
                vars.insert(
                    "totp",
                    canh_soar::user::totp_code(&secret, s.now()).unwrap(),
                );
            }
            let uri = fill_str(c.uri, &vars);
            let body = c.body.as_ref().map(|b| fill(b, &vars));
            let (status, answer) = send(&fx, c.method, &uri, Some(token), body, c.raw).await;
            if c.uri == "/api/v1/auth/totp" && c.method == "POST" {
                enrolled = answer["secret"].as_str().map(str::to_owned);
            }
            let what = format!("{name} {} {uri}", c.method);
            if c.who.allows(name, *role) {
                match c.expect {
                    Expect::Is(code) => assert_eq!(status, code, "{what}: {answer}"),
                    Expect::NotDenied => assert!(
                        status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                        "{what}: {status} {answer}"
                    ),
                }
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {answer}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, cases.len() * fx.tokens.len());
    // Without credentials, every endpoint answers 401.
    for c in &cases {
        let uri = c.uri.replace(['{', '}'], "");
        let (status, _) = send(&fx, c.method, &uri, None, c.body.clone(), c.raw).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {}", c.method, c.uri);
    }
    // The viewer of agency B sees none of A's systems, domains or tasks in lists either.
    let viewer_b = &fx.tokens[4].2;
    let (status, list) = send(&fx, "GET", "/api/v1/agencies", Some(viewer_b), None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.as_array().unwrap().iter().all(|x| x["code"] == "b"));
    assert!(s.verify_audit().await.unwrap().ok());
}

#[tokio::test]
async fn captured_event_sets_become_evidence_with_hash_and_custody() {
    let fx = fixture().await;
    let analyst = fx.tokens[2].2.clone();
    let uri = format!("/api/v1/incidents/{}/evidence/events", fx.incident_a);
    let body = json!({"query": "url.path:\"/uploads/x.php\" AND host.name:portal-1",
                      "from": "2026-03-05T00:00:00Z", "to": "2026-03-06T00:00:00Z",
                      "description": "các lần gọi web shell"});
    // No store on this node yet: 503, not a silent empty set.
    let (s, _, _) = call(&fx, "POST", &uri, Some(&analyst), Some(body.clone()), None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let store_dir = tempfile::tempdir().unwrap();
    fx.st.set_event_store(event_store(store_dir.path()).await);
    let (s, r, _) = call(&fx, "POST", &uri, Some(&analyst), Some(body), None).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    // portal-1: odd minutes 1, 3, …, 29 → 15 events of both agencies.
    assert_eq!(r["events"], 15);
    let ev = &r["evidence"];
    assert_eq!(ev["description"], "các lần gọi web shell");
    assert!(ev["filename"].as_str().unwrap().ends_with(".ndjson"));
    let id = ev["id"].as_i64().unwrap();
    // The content is NDJSON of the events, and hashes to the recorded SHA-256.
    let lead = fx.tokens[1].2.clone();
    let req = Request::builder()
        .uri(format!("/api/v1/evidence/{id}/content"))
        .header(header::AUTHORIZATION, format!("Bearer {lead}"))
        .body(Body::empty())
        .unwrap();
    let resp = router(fx.st.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    let lines: Vec<Value> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 15);
    // Flat ECS names, as the store keeps them, with the event time.
    assert!(lines.iter().all(|l| l["host.name"] == "portal-1"));
    assert!(lines.iter().all(|l| l["@timestamp"].is_string()));
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        ev["sha256"].as_str().unwrap()
    );
    let (s, custody, _) = call(
        &fx,
        "GET",
        &format!("/api/v1/evidence/{id}/custody"),
        Some(&lead),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let first = &custody.as_array().unwrap()[0];
    assert_eq!(first["action"], "captured");
    let detail = first["detail"].as_str().unwrap();
    assert!(
        detail.contains("portal-1") && detail.contains("15 event(s)"),
        "{detail}"
    );
    // A bad query is refused with 400 and stores nothing.
    let bad = json!({"query": "host.name:(", "from": "2026-03-05T00:00:00Z",
                     "to": "2026-03-06T00:00:00Z"});
    let (s, _, _) = call(&fx, "POST", &uri, Some(&analyst), Some(bad), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        fx.st
            .soar
            .incident_evidence(fx.incident_a)
            .await
            .unwrap()
            .len(),
        1
    );
    // `canh evidence verify` (verify_evidence) covers the set: intact, then tampered.
    assert!(
        fx.st
            .soar
            .verify_evidence(Some(fx.incident_a))
            .await
            .unwrap()
            .is_empty()
    );
    let path = fx.st.soar.evidence_path(ev["sha256"].as_str().unwrap());
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    std::fs::write(&path, b"{\"forged\":true}\n").unwrap();
    let problems = fx
        .st
        .soar
        .verify_evidence(Some(fx.incident_a))
        .await
        .unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].id, id);
}

#[tokio::test]
async fn contact_change_through_the_api_opens_a_task_that_becomes_an_overdue_alert() {
    let dir = tempfile::tempdir().unwrap();
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-05T01:07:00Z")
        .unwrap()
        .to_utc();
    let clock = Arc::new(ManualClock::new(start));
    let st = SoarState::open_with_clock(dir.path(), &SoarConfig::default(), clock.clone())
        .await
        .unwrap();
    let s = &st.soar;
    let sys = Actor::system("test");
    let a = s
        .create_agency(
            &sys,
            NewAgency {
                code: "a".into(),
                name: "Tỉnh A".into(),
                level: "province".into(),
                parent_id: None,
            },
        )
        .await
        .unwrap();
    let lead = s
        .create_user(&sys, "lead", Role::SocLead, None, "mật-khẩu-đủ-dài-1")
        .await
        .unwrap();
    let token = s
        .issue_token(&sys, lead.id, "t", chrono::Duration::days(30))
        .await
        .unwrap()
        .secret;
    let fx = Fx {
        st: st.clone(),
        _dir: dir,
        tokens: vec![],
        agency_a: a.id,
        incident_a: 0,
        alert_a: 0,
    };
    let t = Some(token.as_str());
    let csv = "agency_code,kind,name,position,phone,mobile,email\n\
               a,primary,Nguyễn Văn An,Phó Giám đốc,0275 3822 123,,an@a.gov.vn\n";
    let (status, r) = send(
        &fx,
        "POST",
        "/api/v1/agencies/import?kind=contacts",
        t,
        None,
        Some(csv),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["changed"], 1);
    let uri = format!("/api/v1/agencies/{}/tasks", a.id);
    let (_, tasks, _) = call(&fx, "GET", &uri, t, None, None).await;
    let first = tasks[0]["id"].as_i64().unwrap();
    call(
        &fx,
        "POST",
        &format!("/api/v1/agency-tasks/{first}/done"),
        t,
        None,
        None,
    )
    .await;
    clock.advance(chrono::Duration::days(3));
    let (_, list, _) = call(
        &fx,
        "GET",
        &format!("/api/v1/agencies/{}/contacts", a.id),
        t,
        None,
        None,
    )
    .await;
    let cid = list[0]["id"].as_i64().unwrap();
    let body = json!({"kind": "primary", "name": "Nguyễn Văn An", "position": "Phó Giám đốc",
                      "phone": "0275 3999 999", "email": "an@a.gov.vn"});
    let (status, r, _) = call(
        &fx,
        "PUT",
        &format!("/api/v1/agencies/{}/contacts/{cid}", a.id),
        t,
        Some(body),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let due = chrono::DateTime::parse_from_rfc3339(r["task"]["due_at"].as_str().unwrap())
        .unwrap()
        .to_utc();
    assert_eq!(due, s.now() + chrono::Duration::hours(24));
    // Due, not yet overdue: no alert. One second past: one alert, counted (not duplicated)
    // on the next run.
    clock.advance(chrono::Duration::hours(24));
    assert!(st.raise_overdue_alerts().await.unwrap().is_empty());
    clock.advance(chrono::Duration::seconds(1));
    let ids = st.raise_overdue_alerts().await.unwrap();
    assert_eq!(ids.len(), 1);
    let alert = s.alert(ids[0]).await.unwrap();
    assert_eq!(alert.rule_id, "canh.soar.agency_task_overdue");
    assert_eq!(alert.agency_id, Some(a.id));
    let again = st.raise_overdue_alerts().await.unwrap();
    assert_eq!(again, ids);
    assert_eq!(s.alert(ids[0]).await.unwrap().count, 2);
}

#[tokio::test]
async fn alert_classification_teams_grouping_and_suppression_through_the_api() {
    let fx = fixture().await;
    let analyst = fx.tokens[2].2.clone();
    let t = Some(analyst.as_str());
    let s = &fx.st.soar;
    let now = s.now();
    let mk = |rule: &str, host: &str, dedup: Option<&str>| canh_soar::NewAlert {
        rule_id: rule.into(),
        rule_title: format!("rule {rule}"),
        rule_level: "medium".into(),
        severity: Severity::Medium,
        agency_id: Some(fx.agency_a),
        host: host.into(),
        event: json!({}),
        time: now,
        dedup_key: dedup.map(str::to_owned),
    };
    // Batch intake through the state: same host and rule → one group.
    let ids = fx
        .st
        .record_alerts(vec![
            mk("brute", "vpn", Some("brute|vpn|1")),
            mk("brute", "vpn", Some("brute|vpn|2")),
            mk("scan", "vpn", None),
        ])
        .await
        .unwrap();
    let (status, page, _) = call(
        &fx,
        "GET",
        &format!("/api/v1/alerts?group_id={}", ids[0]),
        t,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let grouped: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_i64().unwrap())
        .collect();
    assert_eq!(grouped, [ids[1], ids[0]]);
    // Classify and assign to a team in bulk; filter by both.
    let body = json!({"ids": [ids[0], ids[1]], "incident_type": "unauthorised_access"});
    let (status, _, _) = call(&fx, "POST", "/api/v1/alerts/classify", t, Some(body), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let body = json!({"ids": [ids[0], ids[1]], "incident_type": "hacking"});
    let (status, e, _) = call(&fx, "POST", "/api/v1/alerts/classify", t, Some(body), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("unauthorised_access")
    );
    let body = json!({"ids": [ids[2]], "team": "Tổ giám sát"});
    let (status, _, _) = call(
        &fx,
        "POST",
        "/api/v1/alerts/assign-team",
        t,
        Some(body),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, page, _) = call(
        &fx,
        "GET",
        "/api/v1/alerts?incident_type=unauthorised_access",
        t,
        None,
        None,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let (_, one, _) = call(
        &fx,
        "GET",
        &format!("/api/v1/alerts/{}", ids[2]),
        t,
        None,
        None,
    )
    .await;
    assert_eq!(one["team"], "Tổ giám sát");
    // Incident types come with their Vietnamese and English names.
    let (_, types, _) = call(&fx, "GET", "/api/v1/incident-types", t, None, None).await;
    assert_eq!(types.as_array().unwrap().len(), 10);
    assert_eq!(types[4]["name_vi"], "Thay đổi giao diện");
    // Suppression needs a reason; afterwards the rule's alerts skip the queue.
    let body = json!({"rule_id": "scan", "host": "vpn", "reason": ""});
    let (status, _, _) = call(&fx, "POST", "/api/v1/suppressions", t, Some(body), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = json!({"rule_id": "scan", "host": "vpn", "reason": "quét định kỳ của SOC"});
    let (status, sup, _) = call(&fx, "POST", "/api/v1/suppressions", t, Some(body), None).await;
    assert_eq!(status, StatusCode::CREATED);
    let later = mk("scan", "vpn", Some("scan|vpn|later"));
    let id = fx.st.record_alert(later).await.unwrap();
    let got = s.alert(id).await.unwrap();
    assert_eq!(got.state, canh_soar::AlertState::Closed);
    assert_eq!(got.suppression_id, sup["id"].as_i64());
    // The severity definition of the incident's profile comes with the incident.
    let (_, inc, _) = call(
        &fx,
        "GET",
        &format!("/api/v1/incidents/{}", fx.incident_a),
        t,
        None,
        None,
    )
    .await;
    assert_eq!(inc["severity_definition"]["id"], "high");
    assert!(
        inc["severity_definition"]["description_vi"]
            .as_str()
            .unwrap()
            .contains("cấp độ 4 hoặc 5")
    );
}

/// `/api/v1/agencies/{agency}/domains/del-{dname}.a.gov.vn?x=1` → `/api/v1/agencies/{}/domains/{}`.
fn shape(uri: &str) -> String {
    let path = uri.split('?').next().unwrap_or(uri);
    path.split('/')
        .map(|seg| if seg.contains('{') { "{}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// The matrix and the OpenAPI document list the same operations: a new route must be added to
/// both (login, logout and the document itself are checked elsewhere; `/api/v1/rules` is the
/// detection API and `/api/v1/agents` the agent API, each with its own tests).
#[test]
fn matrix_covers_every_documented_operation() {
    let doc: Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
    let skip = [
        "/api/v1/openapi.json",
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
    ];
    let mut documented = std::collections::BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if skip.contains(&path.as_str())
            || path.starts_with("/api/v1/rules")
            || path.starts_with("/api/v1/agents")
        {
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), shape(path)));
        }
    }
    let tested: std::collections::BTreeSet<_> = cases()
        .iter()
        .map(|c| (c.method.to_owned(), shape(c.uri)))
        .collect();
    let untested: Vec<_> = documented.difference(&tested).collect();
    let undocumented: Vec<_> = tested.difference(&documented).collect();
    assert!(untested.is_empty(), "not in the RBAC matrix: {untested:?}");
    assert!(
        undocumented.is_empty(),
        "not in openapi.json: {undocumented:?}"
    );
    assert!(tested.len() >= 70, "{}", tested.len());
}
