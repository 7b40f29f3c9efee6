//! Notification outbox: who gets what, once; failed deliveries are recorded and retried, then
//! marked failed and raised as an alert. Real SMTP delivery is tested in canh-server with
//! aiosmtpd.

use crate::env;
use canh_soar::incident::IncidentPatch;
use canh_soar::{
    AlertFilter, Mailer, NewIncident, NotificationStatus, Severity, SmtpSettings, SoarError,
};
use chrono::Duration;

fn incident(e: &crate::Env, severity: Severity) -> NewIncident {
    NewIncident {
        title: "Mã độc trên máy chủ thư".into(),
        description: String::new(),
        severity,
        agency_id: e.dept,
        detected_at: None,
        alert_ids: vec![],
    }
}

#[tokio::test]
async fn high_incidents_reach_everyone_on_duty_once() {
    let e = env().await;
    let s = &e.soar;
    let a = s
        .add_roster(&e.admin, "Trực ban A", "a@soc.example.vn", true)
        .await
        .unwrap();
    s.add_roster(&e.admin, "Trực ban B", "b@soc.example.vn", true)
        .await
        .unwrap();
    let off = s
        .add_roster(&e.admin, "Nghỉ ca", "c@soc.example.vn", false)
        .await
        .unwrap();
    assert!(matches!(
        s.add_roster(&e.admin, "x", "a@soc.example.vn", true).await,
        Err(SoarError::Conflict(_))
    ));
    assert!(matches!(
        s.add_roster(&e.admin, "x", "not-an-address", true).await,
        Err(SoarError::Invalid(_))
    ));
    s.set_on_duty(&e.admin, a.id, false).await.unwrap();

    let low = s
        .create_incident(&e.analyst, incident(&e, Severity::Low))
        .await
        .unwrap();
    assert!(s.notifications(None, None, 100).await.unwrap().is_empty());
    let high = s
        .create_incident(&e.analyst, incident(&e, Severity::High))
        .await
        .unwrap();
    let n = s.notifications(Some(high.id), None, 100).await.unwrap();
    assert_eq!(n.len(), 1, "only B is on duty");
    assert_eq!(n[0].recipient, "b@soc.example.vn");
    assert_eq!(n[0].status, NotificationStatus::Pending);
    assert!(
        n[0].subject.starts_with("[CAO] Sự cố #"),
        "{}",
        n[0].subject
    );
    assert_eq!(
        n[0].attachment_name.as_deref(),
        Some(format!("tóm-tắt-sự-cố-{}.txt", high.id).as_str())
    );
    assert!(!n.iter().any(|x| x.recipient == off.email));

    // Raising the low one to emergency notifies; editing it again at the same level does not.
    let patch = |sev| IncidentPatch {
        severity: Some(sev),
        ..IncidentPatch::default()
    };
    let low = s
        .update_incident(&e.analyst, low.id, low.version, patch(Severity::Emergency))
        .await
        .unwrap();
    s.update_incident(&e.analyst, low.id, low.version, patch(Severity::Emergency))
        .await
        .unwrap();
    let n = s.notifications(Some(low.id), None, 100).await.unwrap();
    assert_eq!(n.len(), 1);
    assert!(n[0].subject.starts_with("[KHẨN CẤP]"), "{}", n[0].subject);

    // Overdue notice: one e-mail per incident and report, however often the check runs.
    e.clock.advance(Duration::days(5) + Duration::seconds(1));
    assert_eq!(s.notify_overdue(s.now()).await.unwrap(), 2);
    assert_eq!(s.notify_overdue(s.now()).await.unwrap(), 0);
    let overdue: Vec<_> = s
        .notifications(None, None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.kind == "overdue")
        .collect();
    assert_eq!(overdue.len(), 2);
    assert!(overdue.iter().all(|n| n.subject.starts_with("[QUÁ HẠN]")));

    // Beyond capacity: the Mẫu 03 draft goes out as an attachment.
    let high = s.incident(high.id).await.unwrap();
    let flag = IncidentPatch {
        beyond_capacity: Some(true),
        ..IncidentPatch::default()
    };
    s.update_incident(&e.analyst, high.id, high.version, flag)
        .await
        .unwrap();
    let n = s.notifications(Some(high.id), None, 100).await.unwrap();
    let draft = n.iter().find(|n| n.kind == "initial_report").unwrap();
    assert!(draft.subject.starts_with("[TBSC]"), "{}", draft.subject);
    assert_eq!(
        draft.attachment_name.as_deref(),
        Some(format!("báo-cáo-ban-đầu-sự-cố-{}.html", high.id).as_str())
    );
    let log = s.audit_log(&Default::default()).await.unwrap();
    assert!(log.iter().any(|a| a.action == "roster.duty"));
}

#[tokio::test]
async fn unreachable_server_is_retried_then_recorded_as_failed_and_alerted() {
    let e = env().await;
    let s = &e.soar;
    s.add_roster(&e.admin, "Trực ban", "truc-ban@soc.example.vn", true)
        .await
        .unwrap();
    s.create_incident(&e.analyst, incident(&e, Severity::High))
        .await
        .unwrap();
    // A port that was just free: connections are refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mailer = Mailer::new(&SmtpSettings {
        host: "127.0.0.1".into(),
        port,
        max_attempts: 2,
        retry_secs: 60,
        timeout_secs: 5,
        ..SmtpSettings::default()
    })
    .unwrap();
    let r = s.deliver_due(&mailer).await.unwrap();
    assert_eq!((r.sent, r.retrying, r.failed), (0, 1, 0));
    // Not due again before the back-off.
    let r = s.deliver_due(&mailer).await.unwrap();
    assert_eq!((r.sent, r.retrying, r.failed), (0, 0, 0));
    e.clock.advance(Duration::seconds(61));
    let r = s.deliver_due(&mailer).await.unwrap();
    assert_eq!((r.sent, r.retrying, r.failed), (0, 0, 1));
    let n = &s.notifications(None, None, 10).await.unwrap()[0];
    assert_eq!(n.status, NotificationStatus::Failed);
    assert_eq!(n.attempts, 2);
    assert!(n.last_error.as_deref().is_some_and(|m| !m.is_empty()));
    let attempts = s.notification_attempts(n.id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(attempts.iter().all(|a| !a.ok && !a.detail.is_empty()));
    let alerts = s.alerts(&AlertFilter::default(), None).await.unwrap();
    assert!(
        alerts
            .items
            .iter()
            .any(|a| a.rule_id == "canh.soar.mail_failed")
    );
}
