use crate::env;
use canh_soar::incident::{IncidentPatch, ReportKind};
use canh_soar::{NewIncident, Severity, SoarError, Step};
use chrono::Duration;

async fn open(e: &crate::Env) -> canh_soar::Incident {
    e.soar
        .create_incident(
            &e.analyst,
            NewIncident {
                title: "Thay đổi giao diện cổng thông tin".into(),
                description: String::new(),
                severity: Severity::High,
                agency_id: e.dept,
                detected_at: None,
                alert_ids: vec![],
            },
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn every_step_is_reachable_with_sign_offs_and_the_loop_is_logged() {
    let e = env().await;
    let mut inc = open(&e).await;
    assert_eq!(inc.step, Step::Record);
    let path = [
        Step::Analyse,
        Step::Contain,
        Step::CollectEvidence,
        Step::RemoveCause,
        Step::Recover,
        Step::Contain, // post-recovery check failed
        Step::CollectEvidence,
        Step::RemoveCause,
        Step::Recover,
        Step::PostIncident,
    ];
    for to in path {
        inc = e
            .soar
            .transition_incident(&e.analyst, inc.id, inc.version, to, "đã thực hiện")
            .await
            .unwrap();
        assert_eq!(inc.step, to);
    }
    assert!(inc.response_ended_at.is_some());
    let signoffs = e.soar.signoffs(inc.id).await.unwrap();
    assert_eq!(signoffs.len(), path.len());
    assert!(
        signoffs
            .iter()
            .all(|s| s.signed_by == e.analyst.user_id.unwrap())
    );
    let tl = e.soar.timeline(inc.id).await.unwrap();
    assert_eq!(tl.iter().filter(|t| t.kind == "loop").count(), 1);
    let log = e.soar.audit_log(&Default::default()).await.unwrap();
    assert_eq!(
        log.iter().filter(|a| a.action == "incident.loop").count(),
        1
    );

    // Closing needs the closing report or a waiver.
    let err = e
        .soar
        .close_incident(&e.analyst, inc.id, inc.version, "xong", None)
        .await;
    assert!(matches!(err, Err(SoarError::Invalid(_))), "{err:?}");
    inc = e
        .soar
        .mark_report_sent(
            &e.analyst,
            inc.id,
            inc.version,
            ReportKind::ClosingReport,
            None,
        )
        .await
        .unwrap();
    inc = e
        .soar
        .close_incident(&e.analyst, inc.id, inc.version, "xong", None)
        .await
        .unwrap();
    assert!(inc.closed);
    let err = e
        .soar
        .transition_incident(&e.analyst, inc.id, inc.version, Step::Record, "x")
        .await;
    assert!(matches!(err, Err(SoarError::Invalid(_))));
}

#[tokio::test]
async fn illegal_transitions_and_empty_sign_offs_are_refused() {
    let e = env().await;
    let inc = open(&e).await;
    for to in [
        Step::Record,
        Step::Contain,
        Step::Recover,
        Step::PostIncident,
    ] {
        let err = e
            .soar
            .transition_incident(&e.analyst, inc.id, inc.version, to, "x")
            .await;
        assert!(
            matches!(&err, Err(SoarError::Invalid(m)) if m.contains("illegal transition")),
            "{to:?}: {err:?}"
        );
    }
    let err = e
        .soar
        .transition_incident(&e.analyst, inc.id, inc.version, Step::Analyse, "  ")
        .await;
    assert!(matches!(err, Err(SoarError::Invalid(_))));
    let sys = canh_soar::Actor::system("x");
    let err = e
        .soar
        .transition_incident(&sys, inc.id, inc.version, Step::Analyse, "x")
        .await;
    assert!(matches!(err, Err(SoarError::Denied(_))));
    // Nothing moved.
    assert_eq!(e.soar.incident(inc.id).await.unwrap().step, Step::Record);
    assert!(e.soar.signoffs(inc.id).await.unwrap().is_empty());
    // Closing is only possible from the post-incident step.
    let err = e
        .soar
        .close_incident(&e.analyst, inc.id, inc.version, "x", Some("miễn"))
        .await;
    assert!(matches!(err, Err(SoarError::Invalid(_))));
}

#[tokio::test]
async fn stale_versions_conflict() {
    let e = env().await;
    let inc = open(&e).await;
    let a = e
        .soar
        .update_incident(
            &e.analyst,
            inc.id,
            inc.version,
            IncidentPatch {
                title: Some("A".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(a.version, inc.version + 1);
    let b = e
        .soar
        .update_incident(
            &e.admin,
            inc.id,
            inc.version,
            IncidentPatch {
                title: Some("B".into()),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(b, Err(SoarError::Conflict(_))), "{b:?}");
    let c = e
        .soar
        .transition_incident(&e.admin, inc.id, inc.version, Step::Analyse, "x")
        .await;
    assert!(matches!(c, Err(SoarError::Conflict(_))));
    assert_eq!(e.soar.incident(inc.id).await.unwrap().title, "A");
}

#[tokio::test]
async fn deadlines_follow_the_profile_and_the_clock() {
    let e = env().await;
    let inc = open(&e).await;
    let t0 = e.soar.now();
    assert_eq!(
        (inc.profile_id.as_str(), inc.profile_version),
        ("vn-tt20-2017", 1)
    );
    let notice = &inc.deadlines(t0)[0];
    assert_eq!(notice.due, Some(t0 + Duration::days(5)));
    assert!(!notice.overdue);

    e.clock.advance(Duration::days(5) - Duration::minutes(1));
    assert!(e.soar.overdue(e.soar.now()).await.unwrap().is_empty());
    e.clock.advance(Duration::minutes(1) + Duration::seconds(1));
    let over = e.soar.overdue(e.soar.now()).await.unwrap();
    assert_eq!(over.len(), 1);
    assert_eq!(
        (over[0].incident_id, over[0].kind),
        (inc.id, ReportKind::Notice)
    );

    // Beyond capacity starts the initial-report clock (2 h in this profile).
    let inc = e
        .soar
        .update_incident(
            &e.analyst,
            inc.id,
            inc.version,
            IncidentPatch {
                beyond_capacity: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let inc = e
        .soar
        .mark_report_sent(&e.analyst, inc.id, inc.version, ReportKind::Notice, None)
        .await
        .unwrap();
    assert!(e.soar.overdue(e.soar.now()).await.unwrap().is_empty());
    e.clock.advance(Duration::hours(2) + Duration::seconds(1));
    let over = e.soar.overdue(e.soar.now()).await.unwrap();
    assert_eq!(
        over.iter().map(|o| o.kind).collect::<Vec<_>>(),
        vec![ReportKind::InitialReport]
    );
    assert!(inc.deadlines(e.soar.now())[1].overdue);
}

#[tokio::test]
async fn an_incident_keeps_the_profile_it_was_opened_under() {
    let e = env().await;
    let a = open(&e).await;
    e.soar
        .set_active_profile(&e.admin, "vn-2025")
        .await
        .unwrap();
    let b = open(&e).await;
    assert_eq!(a.profile_id, "vn-tt20-2017");
    assert_eq!(a.notice_hours, 120);
    assert_eq!(b.profile_id, "vn-2025");
    assert_eq!(b.notice_hours, 24);
    let t = e.soar.now();
    assert_eq!(
        e.soar.incident(a.id).await.unwrap().deadlines(t)[0].due,
        Some(a.detected_at + Duration::hours(120))
    );
    e.clock.advance(Duration::hours(25));
    let over = e.soar.overdue(e.soar.now()).await.unwrap();
    assert_eq!(
        over.iter().map(|o| o.incident_id).collect::<Vec<_>>(),
        vec![b.id]
    );
}

#[tokio::test]
async fn tasks_observables_and_alert_links() {
    let e = env().await;
    let inc = open(&e).await;
    let t = e
        .soar
        .add_task(&e.analyst, inc.id, Step::Contain, "Chặn IP nguồn")
        .await
        .unwrap();
    let t = e
        .soar
        .update_task(&e.analyst, t.id, true, None)
        .await
        .unwrap();
    assert!(t.done);
    e.soar
        .add_observable(
            &e.analyst,
            inc.id,
            canh_soar::incident::Observable {
                kind: "IP".into(),
                value: "203.0.113.9".into(),
                ioc: true,
            },
        )
        .await
        .unwrap();
    let obs = e.soar.observables(inc.id).await.unwrap();
    assert_eq!(obs.len(), 1);
    assert_eq!(obs[0].kind, "ip");
    let aid = e
        .soar
        .record_alert(crate::alerts::alert("r1", "web01", e.soar.now()))
        .await
        .unwrap();
    e.soar
        .link_alerts(&e.analyst, inc.id, &[aid])
        .await
        .unwrap();
    assert_eq!(e.soar.incident_alerts(inc.id).await.unwrap(), vec![aid]);
    let a = e.soar.alert(aid).await.unwrap();
    assert_eq!(a.state, canh_soar::AlertState::Escalated);
    assert_eq!(a.incident_id, Some(inc.id));
    let kinds: Vec<String> = e
        .soar
        .timeline(inc.id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.kind)
        .collect();
    assert_eq!(kinds, vec!["opened", "task", "alert"]);
}

/// Every (from, to) pair of the seven steps: the legal ones (next step, and recover → contain)
/// are accepted with a sign-off, every other one is refused and changes nothing.
#[tokio::test]
async fn full_transition_matrix() {
    let e = env().await;
    // The shortest legal walk from record to each step.
    let walk = |target: Step| -> Vec<Step> {
        Step::ALL
            .iter()
            .copied()
            .skip(1)
            .take(target as usize)
            .collect()
    };
    let mut checked = 0;
    for from in Step::ALL {
        for to in Step::ALL {
            let mut inc = open(&e).await;
            for s in walk(from) {
                inc = e
                    .soar
                    .transition_incident(&e.analyst, inc.id, inc.version, s, "bước")
                    .await
                    .unwrap();
            }
            assert_eq!(inc.step, from);
            let before = e.soar.signoffs(inc.id).await.unwrap().len();
            let r = e
                .soar
                .transition_incident(&e.analyst, inc.id, inc.version, to, "thử")
                .await;
            let legal = from.can_go(to);
            let after = e.soar.incident(inc.id).await.unwrap();
            if legal {
                assert_eq!(r.unwrap().step, to, "{from:?} → {to:?}");
                assert_eq!(after.step, to);
                assert_eq!(e.soar.signoffs(inc.id).await.unwrap().len(), before + 1);
            } else {
                assert!(
                    matches!(&r, Err(SoarError::Invalid(m)) if m.contains("illegal transition")),
                    "{from:?} → {to:?}: {r:?}"
                );
                assert_eq!((after.step, after.version), (from, inc.version));
                assert_eq!(e.soar.signoffs(inc.id).await.unwrap().len(), before);
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 49);
    // 7 legal edges: six "next" steps plus the recovery loop.
    let legal = Step::ALL
        .iter()
        .flat_map(|a| Step::ALL.iter().map(move |b| a.can_go(*b)))
        .filter(|x| *x)
        .count();
    assert_eq!(legal, 7);
}
