//! Domains and information systems per agency, the R-14 contact-update task, CSV import of
//! contacts/systems/domains, alert classification/teams/suppression/batch intake, the R-11
//! checklist, per-step tasks with units and case templates.

use crate::alerts::alert;
use crate::env;
use canh_soar::alert::NewSuppression;
use canh_soar::incident::{NewCaseTemplate, NewTask, SeriousChecklist};
use canh_soar::{
    AlertFilter, AlertState, AuditFilter, Contact, CsvKind, NewIncident, NewSystem, Severity,
    SoarError, Step, Uplink,
};
use chrono::Duration;

fn portal() -> NewSystem {
    NewSystem {
        name: "Cổng dịch vụ công".into(),
        level: 3,
        owner: "UBND tỉnh Bến Tre".into(),
        operator: "Trung tâm CNTT-TT".into(),
        uplinks: vec![Uplink {
            provider: "VNPT".into(),
            cidr: Some("203.113.130.0/30".into()),
        }],
        description: "dịch vụ công trực tuyến".into(),
    }
}

async fn audit_actions(e: &crate::Env) -> Vec<String> {
    e.soar
        .audit_log(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect()
}

#[tokio::test]
async fn systems_and_domains_per_agency_are_checked_and_audited() {
    let e = env().await;
    let s = &e.soar;
    let sys = s.add_system(&e.admin, e.dept, portal()).await.unwrap();
    assert_eq!(sys.level, 3);
    assert_eq!(sys.uplinks[0].provider, "VNPT");
    // Level outside 1–5, empty name, bad uplink CIDR: refused.
    for bad in [
        NewSystem {
            level: 6,
            ..portal()
        },
        NewSystem {
            level: 0,
            name: "x".into(),
            ..portal()
        },
        NewSystem {
            name: " ".into(),
            ..portal()
        },
        NewSystem {
            name: "y".into(),
            uplinks: vec![Uplink {
                provider: "VNPT".into(),
                cidr: Some("999.1.1.0/24".into()),
            }],
            ..portal()
        },
    ] {
        let err = s.add_system(&e.admin, e.dept, bad).await.unwrap_err();
        assert!(matches!(err, SoarError::Invalid(_)), "{err}");
    }
    // Same name twice in one agency: conflict.
    let err = s.add_system(&e.admin, e.dept, portal()).await.unwrap_err();
    assert!(matches!(err, SoarError::Conflict(_)), "{err}");
    let upd = s
        .update_system(
            &e.admin,
            sys.id,
            NewSystem {
                level: 4,
                ..portal()
            },
        )
        .await
        .unwrap();
    assert_eq!(upd.level, 4);
    assert_eq!(s.agency_systems(e.dept).await.unwrap(), vec![upd.clone()]);
    assert!(s.agency_systems(e.province).await.unwrap().is_empty());

    let d = s
        .add_agency_domain(&e.admin, e.dept, "DichVuCong.BenTre.gov.vn.")
        .await
        .unwrap();
    assert_eq!(d, "dichvucong.bentre.gov.vn");
    s.add_agency_domain(&e.admin, e.dept, "dichvucong.bentre.gov.vn")
        .await
        .unwrap();
    s.add_agency_domain(&e.admin, e.dept, "stttt.bentre.gov.vn")
        .await
        .unwrap();
    assert_eq!(
        s.agency_domains(e.dept).await.unwrap(),
        ["dichvucong.bentre.gov.vn", "stttt.bentre.gov.vn"]
    );
    assert!(
        s.add_agency_domain(&e.admin, e.dept, "not a domain")
            .await
            .is_err()
    );
    s.remove_agency_domain(&e.admin, e.dept, "stttt.bentre.gov.vn")
        .await
        .unwrap();
    assert_eq!(s.agency_domains(e.dept).await.unwrap().len(), 1);

    let actions = audit_actions(&e).await;
    for a in [
        "system.create",
        "system.update",
        "agency.add_domain",
        "agency.remove_domain",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} not audited");
    }
    // The duplicate domain was not a change: one add_domain per distinct domain.
    assert_eq!(
        actions.iter().filter(|x| *x == "agency.add_domain").count(),
        2
    );
    assert!(s.verify_audit().await.unwrap().ok());
}

fn primary(phone: &str) -> Contact {
    Contact {
        kind: "primary".into(),
        name: "Nguyễn Văn An".into(),
        position: "Phó Giám đốc".into(),
        phone: phone.into(),
        mobile: "0913 000 111".into(),
        email: "an.nv@bentre.gov.vn".into(),
    }
}

#[tokio::test]
async fn an_overdue_contact_update_is_mailed_to_the_roster_once() {
    let e = env().await;
    let s = &e.soar;
    s.add_roster(&e.admin, "Trực ban A", "a@soc.example.vn", true)
        .await
        .unwrap();
    s.add_roster(&e.admin, "Nghỉ ca", "c@soc.example.vn", false)
        .await
        .unwrap();
    s.add_agency_contact(&e.admin, e.dept, primary("0275 3822 123"))
        .await
        .unwrap();
    let task = s.agency_tasks(e.dept).await.unwrap().remove(0);
    // Not yet due: nothing to send.
    assert_eq!(s.notify_overdue(s.now()).await.unwrap(), 0);
    e.clock.advance(Duration::hours(25));
    assert_eq!(s.notify_overdue(s.now()).await.unwrap(), 1);
    // Asked again, the same task is not mailed twice.
    assert_eq!(s.notify_overdue(s.now()).await.unwrap(), 0);
    let sent = s.notifications(None, None, 50).await.unwrap();
    let mails: Vec<_> = sent.iter().filter(|n| n.kind == "agency_task").collect();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].recipient, "a@soc.example.vn");
    assert!(
        mails[0].subject.contains(&task.title),
        "{}",
        mails[0].subject
    );
    assert!(mails[0].subject.starts_with("[QUÁ HẠN]"));
    // Done: later checks send nothing more.
    s.complete_agency_task(&e.admin, task.id).await.unwrap();
    e.clock.advance(Duration::days(2));
    assert_eq!(s.notify_overdue(s.now()).await.unwrap(), 0);
}

#[tokio::test]
async fn a_contact_change_opens_an_update_task_due_in_24_hours() {
    let e = env().await;
    let s = &e.soar;
    let cid = s
        .add_agency_contact(&e.admin, e.dept, primary("0275 3822 123"))
        .await
        .unwrap();
    // Registering the first primary opens the task; close it.
    let first = s.agency_tasks(e.dept).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].due_at, s.now() + Duration::hours(24));
    s.complete_agency_task(&e.admin, first[0].id).await.unwrap();

    e.clock.advance(Duration::days(30));
    let changed_at = s.now();
    // No real change: no task.
    let none = s
        .update_agency_contact(&e.admin, e.dept, cid, primary("0275 3822 123"))
        .await
        .unwrap();
    assert!(none.is_none());
    let task = s
        .update_agency_contact(&e.admin, e.dept, cid, primary("0275 3999 999"))
        .await
        .unwrap()
        .expect("a task");
    assert_eq!(task.kind, "contact_update");
    assert_eq!(task.due_at, changed_at + Duration::hours(24));
    assert!(!task.done);
    let list = s.agency_contact_list(e.dept).await.unwrap();
    assert_eq!(list[0].contact.phone, "0275 3999 999");
    assert_eq!(list[0].updated_at, changed_at);
    // A second change before the task is done keeps the one open task and its due time.
    e.clock.advance(Duration::hours(2));
    let again = s
        .update_agency_contact(&e.admin, e.dept, cid, primary("0275 3000 000"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, task.id);
    assert_eq!(again.due_at, changed_at + Duration::hours(24));
    // Not overdue at 24 h, overdue one second later, gone once done.
    e.clock.set(changed_at + Duration::hours(24));
    assert!(s.overdue_agency_tasks(s.now()).await.unwrap().is_empty());
    e.clock.advance(Duration::seconds(1));
    let overdue = s.overdue_agency_tasks(s.now()).await.unwrap();
    assert_eq!(overdue.iter().map(|t| t.id).collect::<Vec<_>>(), [task.id]);
    s.complete_agency_task(&e.admin, task.id).await.unwrap();
    assert!(s.overdue_agency_tasks(s.now()).await.unwrap().is_empty());
    // A monitoring contact is not an incident-response contact: no task.
    let mut mon = primary("0275 1");
    mon.kind = "monitoring".into();
    s.add_agency_contact(&e.admin, e.dept, mon).await.unwrap();
    assert!(s.agency_tasks(e.dept).await.unwrap().iter().all(|t| t.done));
    let actions = audit_actions(&e).await;
    assert!(actions.iter().any(|a| a == "agency.update_contact"));
    assert!(actions.iter().any(|a| a == "agency_task.create"));
    assert!(actions.iter().any(|a| a == "agency_task.done"));
}

#[tokio::test]
async fn csv_import_of_contacts_systems_and_domains() {
    let e = env().await;
    let s = &e.soar;
    let contacts = "agency_code,kind,name,position,phone,mobile,email\n\
        so-tt,primary,Nguyễn Văn An,Phó Giám đốc,0275 3822 123,0913 000 111,an@bentre.gov.vn\n\
        so-tt,backup,Trần Thị Bình,Chuyên viên,,0913 000 222,binh@bentre.gov.vn\n";
    let n = s
        .import_csv(&e.admin, CsvKind::Contacts, contacts.as_bytes())
        .await
        .unwrap();
    assert_eq!(n, 2);
    // Importing the same file again changes nothing; a changed phone is an update.
    let n = s
        .import_csv(&e.admin, CsvKind::Contacts, contacts.as_bytes())
        .await
        .unwrap();
    assert_eq!(n, 0);
    let changed = contacts.replace("0275 3822 123", "0275 3822 999");
    assert_eq!(
        s.import_csv(&e.admin, CsvKind::Contacts, changed.as_bytes())
            .await
            .unwrap(),
        1
    );
    let list = s.agency_contact_list(e.dept).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].contact.phone, "0275 3822 999");

    let systems = "agency_code,name,level,owner,operator,uplinks,description\n\
        so-tt,Cổng dịch vụ công,3,UBND tỉnh,Trung tâm CNTT-TT,VNPT=203.113.130.0/30; Viettel,\n\
        so-tt,Thư điện tử,2,,,TSLCD,mail\n";
    assert_eq!(
        s.import_csv(&e.admin, CsvKind::Systems, systems.as_bytes())
            .await
            .unwrap(),
        2
    );
    let all = s.agency_systems(e.dept).await.unwrap();
    assert_eq!(all.len(), 2);
    let portal = all.iter().find(|x| x.level == 3).unwrap();
    assert_eq!(portal.uplinks.len(), 2);
    assert_eq!(portal.uplinks[1].cidr, None);
    assert_eq!(
        s.import_csv(&e.admin, CsvKind::Systems, systems.as_bytes())
            .await
            .unwrap(),
        0
    );

    let domains = "agency_code,domain\nso-tt,DichVuCong.BenTre.gov.vn\nben-tre,bentre.gov.vn\n";
    assert_eq!(
        s.import_csv(&e.admin, CsvKind::Domains, domains.as_bytes())
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.agency_domains(e.province).await.unwrap(),
        ["bentre.gov.vn"]
    );

    // Bad rows name their line.
    for (kind, text, needle) in [
        (
            CsvKind::Systems,
            "agency_code,name,level\nso-tt,A,2\nso-tt,B,7\n",
            "line 3",
        ),
        (
            CsvKind::Systems,
            "agency_code,name,level\nso-tt,C,cao\n",
            "line 2",
        ),
        (
            CsvKind::Domains,
            "agency_code,domain\nkhong-co,a.vn\n",
            "line 2",
        ),
        (
            CsvKind::Contacts,
            "agency_code,kind,name\nso-tt,primary,Chỉ có tên\n",
            "line 2",
        ),
        (
            CsvKind::Domains,
            "agency,domain\nso-tt,a.vn\n",
            "agency_code",
        ),
    ] {
        let err = s
            .import_csv(&e.admin, kind, text.as_bytes())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SoarError::Invalid(m) if m.contains(needle)),
            "{err}"
        );
    }
}

#[tokio::test]
async fn batch_intake_folds_and_groups_like_single_intake() {
    let e = env().await;
    let s = &e.soar;
    let t = s.now();
    let mut batch = vec![
        alert("r1", "web01", t),
        alert("r1", "web01", t + Duration::minutes(1)),
        alert("r2", "web01", t),
    ];
    let mut other = alert("r1", "web01", t + Duration::minutes(2));
    other.dedup_key = Some("r1|web01|pid 7".into());
    batch.push(other);
    let ids = s.record_alerts(batch).await.unwrap();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[0], ids[1], "the repeat folds into the first row");
    assert_ne!(ids[0], ids[2]);
    assert_eq!(s.alert(ids[0]).await.unwrap().count, 2);
    assert_eq!(s.alert(ids[3]).await.unwrap().group_id, ids[0]);
    assert_eq!(s.alert(ids[2]).await.unwrap().group_id, ids[2]);
    // A later single alert folds into the batch's row.
    let single = s
        .record_alert(alert("r2", "web01", t + Duration::minutes(3)))
        .await
        .unwrap();
    assert_eq!(single, ids[2]);
    assert!(s.record_alerts(Vec::new()).await.unwrap().is_empty());
}

#[tokio::test]
async fn suppression_needs_a_reason_and_keeps_alerts_out_of_the_queue() {
    let e = env().await;
    let s = &e.soar;
    let t = s.now();
    let no_reason = NewSuppression {
        rule_id: "scanner".into(),
        host: String::new(),
        reason: "  ".into(),
        expires_at: None,
    };
    assert!(matches!(
        s.add_suppression(&e.analyst, no_reason).await.unwrap_err(),
        SoarError::Invalid(_)
    ));
    let sup = s
        .add_suppression(
            &e.analyst,
            NewSuppression {
                rule_id: "scanner".into(),
                host: "vuln-scanner".into(),
                reason: "máy quét lỗ hổng được phép / authorised scanner".into(),
                expires_at: Some(t + Duration::days(7)),
            },
        )
        .await
        .unwrap();
    let a = s
        .record_alert(alert("scanner", "vuln-scanner", t))
        .await
        .unwrap();
    let b = s
        .record_alert(alert("scanner", "vuln-scanner", t + Duration::minutes(1)))
        .await
        .unwrap();
    assert_eq!(a, b, "suppressed repeats fold too");
    let got = s.alert(a).await.unwrap();
    assert_eq!(got.state, AlertState::Closed);
    assert_eq!(got.suppression_id, Some(sup.id));
    assert!(got.reason.unwrap().contains("authorised scanner"));
    // Another host of the same rule is not suppressed.
    let c = s.record_alert(alert("scanner", "web01", t)).await.unwrap();
    assert_eq!(s.alert(c).await.unwrap().state, AlertState::New);
    let queue = s
        .alerts(
            &AlertFilter {
                state: Some(AlertState::New),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(queue.items.iter().map(|x| x.id).collect::<Vec<_>>(), [c]);
    assert_eq!(s.suppressions().await.unwrap()[0].hits, 2);
    // After expiry, or after removal, alerts reach the queue again.
    e.clock.advance(Duration::days(8));
    let d = s
        .record_alert(alert("scanner", "vuln-scanner", s.now()))
        .await
        .unwrap();
    assert_eq!(s.alert(d).await.unwrap().state, AlertState::New);
    let removed = s.remove_suppression(&e.analyst, sup.id).await.unwrap();
    assert!(removed.removed_at.is_some());
    let actions = audit_actions(&e).await;
    assert!(actions.iter().any(|a| a == "suppression.create"));
    assert!(actions.iter().any(|a| a == "suppression.remove"));
}

#[tokio::test]
async fn alerts_are_classified_and_assigned_to_teams_in_bulk() {
    let e = env().await;
    let s = &e.soar;
    let t = s.now();
    let a = s.record_alert(alert("r1", "h1", t)).await.unwrap();
    let b = s.record_alert(alert("r2", "h2", t)).await.unwrap();
    s.classify_alerts(&e.analyst, &[a, b], "malware")
        .await
        .unwrap();
    assert!(s.classify_alerts(&e.analyst, &[a], "virus").await.is_err());
    // All or nothing: an unknown id leaves the others unchanged.
    assert!(
        s.classify_alerts(&e.analyst, &[a, 9999], "dos")
            .await
            .is_err()
    );
    assert_eq!(
        s.alert(a).await.unwrap().incident_type.as_deref(),
        Some("malware")
    );
    s.assign_alerts_to_team(&e.analyst, &[b], Some("Tổ ứng cứu"))
        .await
        .unwrap();
    let f = AlertFilter {
        team: Some("Tổ ứng cứu".into()),
        ..Default::default()
    };
    let page = s.alerts(&f, None).await.unwrap();
    assert_eq!(page.items.iter().map(|x| x.id).collect::<Vec<_>>(), [b]);
    let f = AlertFilter {
        incident_type: Some("malware".into()),
        ..Default::default()
    };
    assert_eq!(s.alerts(&f, None).await.unwrap().items.len(), 2);
    s.assign_alerts_to_team(&e.analyst, &[b], None)
        .await
        .unwrap();
    assert_eq!(s.alert(b).await.unwrap().team, None);
}

#[tokio::test]
async fn serious_checklist_tasks_with_units_and_templates() {
    let e = env().await;
    let s = &e.soar;
    let sys = s
        .add_system(
            &e.admin,
            e.dept,
            NewSystem {
                level: 4,
                ..portal()
            },
        )
        .await
        .unwrap();
    let inc = s
        .create_incident(
            &e.analyst,
            NewIncident {
                title: "Mã độc mã hóa dữ liệu".into(),
                description: String::new(),
                severity: Severity::High,
                agency_id: e.dept,
                detected_at: None,
                alert_ids: vec![],
            },
        )
        .await
        .unwrap();
    let patch = canh_soar::incident::IncidentPatch {
        system_id: Some(sys.id),
        ..Default::default()
    };
    let inc = s
        .update_incident(&e.analyst, inc.id, inc.version, patch)
        .await
        .unwrap();
    assert_eq!(inc.system_id, Some(sys.id));
    // A system of another agency cannot be linked.
    let other = s.add_system(&e.admin, e.province, portal()).await.unwrap();
    let patch = canh_soar::incident::IncidentPatch {
        system_id: Some(other.id),
        ..Default::default()
    };
    assert!(
        s.update_incident(&e.analyst, inc.id, inc.version, patch)
            .await
            .is_err()
    );

    // Handled in house: not serious, suggests at least high.
    let mut c = SeriousChecklist {
        service_interruption: true,
        ..Default::default()
    };
    let inc = s
        .set_serious_checklist(&e.analyst, inc.id, inc.version, c.clone())
        .await
        .unwrap();
    let a = inc.serious.clone().unwrap();
    assert!(!a.serious);
    assert_eq!(a.level, Some(4));
    assert_eq!(a.suggested_min_severity, Some(Severity::High));
    assert!(s.tasks(inc.id).await.unwrap().is_empty());
    // Stale version: conflict.
    assert!(matches!(
        s.set_serious_checklist(&e.analyst, inc.id, inc.version - 1, c.clone())
            .await
            .unwrap_err(),
        SoarError::Conflict(_)
    ));
    c.cannot_handle = true;
    let inc = s
        .set_serious_checklist(&e.analyst, inc.id, inc.version, c)
        .await
        .unwrap();
    assert!(inc.serious.as_ref().unwrap().serious);
    let tasks = s.tasks(inc.id).await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert!(tasks[0].title.contains("sự cố nghiêm trọng"));
    assert!(
        s.timeline(inc.id)
            .await
            .unwrap()
            .iter()
            .any(|t| t.kind == "serious")
    );

    // A task with a lead unit and supporting units.
    let t = s
        .add_step_task(
            &e.analyst,
            inc.id,
            NewTask {
                step: Step::Contain,
                title: "Cô lập máy chủ".into(),
                lead_unit: "Trung tâm CNTT-TT".into(),
                supporting_units: vec!["Công an tỉnh".into(), " ".into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(t.lead_unit, "Trung tâm CNTT-TT");
    assert_eq!(t.supporting_units, ["Công an tỉnh"]);
    assert_eq!(s.task(t.id).await.unwrap(), t);
    let orphan = NewTask {
        step: Step::Contain,
        title: "x".into(),
        lead_unit: String::new(),
        supporting_units: vec!["Công an tỉnh".into()],
    };
    assert!(s.add_step_task(&e.analyst, inc.id, orphan).await.is_err());

    // Case template with a task checklist.
    let tpl = s
        .create_template(
            &e.admin,
            NewCaseTemplate {
                name: "Ransomware".into(),
                incident_type: "encryption".into(),
                severity: Some(Severity::Emergency),
                tasks: vec![
                    NewTask {
                        step: Step::Analyse,
                        title: "Xác định biến thể mã độc".into(),
                        lead_unit: "Tổ ứng cứu".into(),
                        supporting_units: vec![],
                    },
                    NewTask {
                        step: Step::Contain,
                        title: "Ngắt kết nối các máy bị nhiễm".into(),
                        lead_unit: "Trung tâm CNTT-TT".into(),
                        supporting_units: vec!["Sở TT&TT".into()],
                    },
                ],
            },
        )
        .await
        .unwrap();
    let bad = NewCaseTemplate {
        name: "Bad".into(),
        incident_type: "virus".into(),
        severity: None,
        tasks: tpl.tasks.clone(),
    };
    assert!(s.create_template(&e.admin, bad).await.is_err());
    assert_eq!(s.templates().await.unwrap(), vec![tpl.clone()]);
    let added = s.apply_template(&e.analyst, inc.id, tpl.id).await.unwrap();
    assert_eq!(added.len(), 2);
    assert_eq!(added[1].supporting_units, ["Sở TT&TT"]);
    assert_eq!(s.tasks(inc.id).await.unwrap().len(), 4);
    assert!(s.apply_template(&e.analyst, inc.id, 999).await.is_err());
    assert!(s.verify_audit().await.unwrap().ok());
}

/// CSV import of outside files never panics: random text under each header is imported or
/// refused with an error, and the database stays usable.
#[test]
fn csv_import_never_panics_on_random_input() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt.block_on(env());
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    let headers = [
        (
            CsvKind::Agencies,
            "code,name,level,parent_code,public_cidrs\n",
        ),
        (
            CsvKind::Contacts,
            "agency_code,kind,name,position,phone,mobile,email\n",
        ),
        (
            CsvKind::Systems,
            "agency_code,name,level,owner,operator,uplinks,description\n",
        ),
        (CsvKind::Domains, "agency_code,domain\n"),
    ];
    runner
        .run(
            &(0usize..4, "(so-tt|ben-tre|[a-z,;=./0-9 \"\n-]{0,12}){0,12}"),
            |(k, body)| {
                let (kind, header) = headers[k];
                let text = format!("{header}{body}");
                let _ = rt.block_on(e.soar.import_csv(&e.admin, kind, text.as_bytes()));
                prop_assert!(rt.block_on(e.soar.agencies()).is_ok());
                Ok(())
            },
        )
        .unwrap();
    assert!(rt.block_on(e.soar.verify_audit()).unwrap().ok());
}

/// notified while unresolved → exactly one update task when the response ends; an
/// incident not notified gets none.
#[tokio::test]
async fn ending_the_response_after_a_notice_opens_one_update_task() {
    use canh_soar::incident::{ReportKind, UPDATE_NOTICE_TASK};
    let e = env().await;
    let s = &e.soar;
    for notified in [true, false] {
        let mut inc = s
            .create_incident(
                &e.analyst,
                NewIncident {
                    title: format!("Sự cố (thông báo: {notified})"),
                    description: String::new(),
                    severity: Severity::Medium,
                    agency_id: e.dept,
                    detected_at: None,
                    alert_ids: vec![],
                },
            )
            .await
            .unwrap();
        if notified {
            inc = s
                .mark_report_sent(&e.analyst, inc.id, inc.version, ReportKind::Notice, None)
                .await
                .unwrap();
        }
        for to in [
            Step::Analyse,
            Step::Contain,
            Step::CollectEvidence,
            Step::RemoveCause,
            Step::Recover,
            Step::Contain,
            Step::CollectEvidence,
            Step::RemoveCause,
            Step::Recover,
            Step::PostIncident,
        ] {
            inc = s
                .transition_incident(&e.analyst, inc.id, inc.version, to, "đã làm")
                .await
                .unwrap();
        }
        let updates: Vec<_> = s
            .tasks(inc.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|t| t.title == UPDATE_NOTICE_TASK)
            .collect();
        assert_eq!(updates.len(), usize::from(notified), "notified: {notified}");
        if notified {
            assert_eq!(updates[0].step, Step::PostIncident);
        }
    }
}
