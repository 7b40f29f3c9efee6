//! Mẫu 03 initial-report draft: filled from the incident, agency, contacts, alerts and
//! observables; missing mandatory fields listed, never blank. Golden text in `snapshots/`.

use crate::env;
use canh_soar::incident::{IncidentPatch, Observable, ReportKind};
use canh_soar::{Contact, NewAlert, NewIncident, NewSystem, Severity, SoarError, Uplink};
use chrono::Duration;

#[tokio::test]
async fn initial_report_draft_lists_missing_fields_and_matches_the_golden_text() {
    let e = env().await;
    let s = &e.soar;
    s.add_agency_contact(
        &e.admin,
        e.dept,
        Contact {
            kind: "primary".into(),
            name: "Nguyễn Văn An".into(),
            position: "Phó Giám đốc".into(),
            phone: "0275 3822 123".into(),
            mobile: "0913 000 111".into(),
            email: "an.nv@bentre.gov.vn".into(),
        },
    )
    .await
    .unwrap();
    s.add_agency_range(&e.admin, e.dept, "203.113.130.0/28", true)
        .await
        .unwrap();
    // The agency's only information system fills the system name, level, owner, operator and
    // uplinks; its domains join the observed ones.
    s.add_system(
        &e.admin,
        e.dept,
        NewSystem {
            name: "Cổng dịch vụ công tỉnh".into(),
            level: 3,
            owner: "UBND tỉnh Bến Tre".into(),
            operator: "Trung tâm CNTT-TT".into(),
            uplinks: vec![
                Uplink {
                    provider: "VNPT".into(),
                    cidr: Some("203.113.130.0/30".into()),
                },
                Uplink {
                    provider: "Viettel".into(),
                    cidr: None,
                },
            ],
            description: String::new(),
        },
    )
    .await
    .unwrap();
    s.add_agency_domain(&e.admin, e.dept, "stttt.bentre.gov.vn")
        .await
        .unwrap();
    let alert = s
        .record_alert(NewAlert {
            rule_id: "web_shell".into(),
            rule_title: "Web shell trong thư mục tải lên".into(),
            rule_level: "high".into(),
            severity: Severity::High,
            agency_id: Some(e.dept),
            host: "dichvucong.bentre.gov.vn".into(),
            event: serde_json::json!({"url": {"path": "/uploads/x.php"}}),
            time: s.now() - Duration::hours(1),
            dedup_key: None,
        })
        .await
        .unwrap();
    let inc = s
        .create_incident(
            &e.analyst,
            NewIncident {
                title: "Web shell trên cổng dịch vụ công".into(),
                description: "Phát hiện tệp x.php trong thư mục tải lên, có lệnh thực thi từ xa."
                    .into(),
                severity: Severity::Emergency,
                agency_id: e.dept,
                detected_at: None,
                alert_ids: vec![alert],
            },
        )
        .await
        .unwrap();
    for (kind, value, ioc) in [
        ("ip", "198.51.100.23", true),
        ("domain", "dichvucong.bentre.gov.vn", false),
    ] {
        let o = Observable {
            kind: kind.into(),
            value: value.into(),
            ioc,
        };
        s.add_observable(&e.analyst, inc.id, o).await.unwrap();
    }
    // Not flagged: no draft.
    let err = s.initial_report_draft(inc.id).await.unwrap_err();
    assert!(matches!(err, SoarError::Invalid(_)), "{err}");

    e.clock.advance(Duration::minutes(10));
    let patch = IncidentPatch {
        beyond_capacity: Some(true),
        ..IncidentPatch::default()
    };
    let inc = s
        .update_incident(&e.analyst, inc.id, inc.version, patch)
        .await
        .unwrap();
    let d = s.initial_report_draft(inc.id).await.unwrap();
    let missing: Vec<&str> = d.missing.iter().map(|m| m.key).collect();
    assert_eq!(
        missing,
        [
            "reporter.address",
            "reporter.phone",
            "reporter.email",
            "notice.sent_to"
        ]
    );
    // Every mandatory field is either filled or listed as missing, never a blank value.
    for f in d.sections.iter().flat_map(|s| &s.fields) {
        assert!(f.value.as_deref().is_none_or(|v| !v.trim().is_empty()));
        if f.mandatory && f.value.is_none() {
            assert!(missing.contains(&f.key), "{}", f.key);
        }
    }
    assert!(d.email_subject.starts_with("[TBSC]"));
    assert_eq!(
        d.due,
        Some(s.now() + Duration::hours(inc.initial_report_hours))
    );
    let field = |key: &str| {
        d.sections
            .iter()
            .flat_map(|s| &s.fields)
            .find(|f| f.key == key)
            .and_then(|f| f.value.clone())
    };
    assert_eq!(field("system.level").as_deref(), Some("Cấp 3"));
    assert_eq!(
        field("system.name").as_deref(),
        Some("Cổng dịch vụ công tỉnh")
    );
    assert_eq!(
        field("system.operator").as_deref(),
        Some("Trung tâm CNTT-TT")
    );
    assert_eq!(field("system.owner").as_deref(), Some("UBND tỉnh Bến Tre"));
    assert_eq!(
        field("system.uplinks").as_deref(),
        Some("VNPT (203.113.130.0/30), Viettel")
    );
    assert_eq!(
        field("system.domains").as_deref(),
        Some("dichvucong.bentre.gov.vn, stttt.bentre.gov.vn")
    );
    insta::assert_snapshot!("mau03_text_vi_en", d.to_text(true));
    let html = d.to_html(false);
    assert!(html.contains("BÁO CÁO BAN ĐẦU SỰ CỐ MẠNG"));
    assert!(html.contains("<span class=\"missing\">[THIẾU – bắt buộc]</span>"));

    // Once the notice is sent, that field fills in and leaves the missing list.
    s.mark_report_sent(&e.analyst, inc.id, inc.version, ReportKind::Notice, None)
        .await
        .unwrap();
    let d = s.initial_report_draft(inc.id).await.unwrap();
    assert!(d.missing.iter().all(|m| m.key != "notice.sent_to"));
    assert_eq!(d.missing.len(), 3);
}
