use crate::env;
use canh_soar::alert::Triage;
use canh_soar::{AlertFilter, AlertState, NewAlert, Severity, SoarError};
use chrono::{DateTime, Duration, Utc};

pub(crate) fn alert(rule: &str, host: &str, time: DateTime<Utc>) -> NewAlert {
    NewAlert {
        rule_id: rule.into(),
        rule_title: format!("rule {rule}"),
        rule_level: "high".into(),
        severity: Severity::High,
        agency_id: None,
        host: host.into(),
        event: serde_json::json!({"host": {"name": host}}),
        time,
        dedup_key: None,
    }
}

#[tokio::test]
async fn duplicates_fold_and_related_alerts_group() {
    let e = env().await;
    let t = e.soar.now();
    let a = e.soar.record_alert(alert("r1", "web01", t)).await.unwrap();
    let b = e
        .soar
        .record_alert(alert("r1", "web01", t + Duration::minutes(5)))
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(e.soar.alert(a).await.unwrap().count, 2);
    // Same host and rule, other dedup key: new row in the same group.
    let mut other = alert("r1", "web01", t + Duration::minutes(6));
    other.dedup_key = Some("r1|web01|pid 42".into());
    let c = e.soar.record_alert(other).await.unwrap();
    assert_ne!(c, a);
    assert_eq!(e.soar.alert(c).await.unwrap().group_id, a);
    // Outside the window: a fresh row and group.
    let d = e
        .soar
        .record_alert(alert("r1", "web01", t + Duration::hours(3)))
        .await
        .unwrap();
    assert_ne!(d, a);
    assert_eq!(e.soar.alert(d).await.unwrap().group_id, d);
    let f = AlertFilter {
        group_id: Some(a),
        ..Default::default()
    };
    let page = e.soar.alerts(&f, None).await.unwrap();
    assert_eq!(
        page.items.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![c, a]
    );
}

#[tokio::test]
async fn triage_needs_reasons_and_follows_the_graph() {
    let e = env().await;
    let t = e.soar.now();
    let ids: Vec<i64> = futures_ids(&e, t).await;
    let fp = Triage {
        state: AlertState::FalsePositive,
        reason: None,
    };
    assert!(matches!(
        e.soar.triage_alerts(&e.analyst, &ids, &fp).await,
        Err(SoarError::Invalid(_))
    ));
    let ack = Triage {
        state: AlertState::Acknowledged,
        reason: None,
    };
    let out = e.soar.triage_alerts(&e.analyst, &ids, &ack).await.unwrap();
    assert!(out.iter().all(|a| a.state == AlertState::Acknowledged));
    let fp = Triage {
        state: AlertState::FalsePositive,
        reason: Some("máy quét nội bộ".into()),
    };
    e.soar
        .triage_alerts(&e.analyst, &ids[..1], &fp)
        .await
        .unwrap();
    // Bulk is all or nothing: ids[0] cannot go false_positive → closed.
    let close = Triage {
        state: AlertState::Closed,
        reason: Some("x".into()),
    };
    assert!(
        e.soar
            .triage_alerts(&e.analyst, &ids, &close)
            .await
            .is_err()
    );
    assert_eq!(
        e.soar.alert(ids[1]).await.unwrap().state,
        AlertState::Acknowledged
    );
    e.soar
        .assign_alerts(&e.analyst, &ids, e.analyst.user_id)
        .await
        .unwrap();
    e.soar
        .comment_alert(&e.analyst, ids[1], "đang kiểm tra")
        .await
        .unwrap();
    assert_eq!(
        e.soar.alert_comments(ids[1]).await.unwrap()[0].body,
        "đang kiểm tra"
    );
    let f = AlertFilter {
        assignee_id: e.analyst.user_id,
        ..Default::default()
    };
    assert_eq!(e.soar.alerts(&f, None).await.unwrap().items.len(), 3);
    let f = AlertFilter {
        state: Some(AlertState::FalsePositive),
        ..Default::default()
    };
    let page = e.soar.alerts(&f, None).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].reason.as_deref(), Some("máy quét nội bộ"));
}

async fn futures_ids(e: &crate::Env, t: DateTime<Utc>) -> Vec<i64> {
    let mut ids = Vec::new();
    for host in ["a", "b", "c"] {
        ids.push(e.soar.record_alert(alert("r2", host, t)).await.unwrap());
    }
    ids
}

#[tokio::test]
async fn pagination_walks_every_alert_once() {
    let e = env().await;
    let t = e.soar.now();
    for i in 0..23 {
        e.soar
            .record_alert(alert(&format!("r{i}"), "h", t))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut f = AlertFilter {
        limit: Some(10),
        ..Default::default()
    };
    loop {
        let page = e.soar.alerts(&f, None).await.unwrap();
        seen.extend(page.items.iter().map(|a| a.id));
        match page.next {
            Some(n) => f.after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), 23);
    assert!(seen.windows(2).all(|w| w[0] > w[1]));
}
