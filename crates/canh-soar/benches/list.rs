//! List-page latency with 10k open incidents and 1M alerts (first page, a filtered page, a deep
//! page, and an agency viewer's scoped page), and alert intake throughput (record + dedup +
//! grouping, one transaction per alert as the detection engine calls it, and the same stream
//! through the batch intake `record_alerts`, one transaction per 1000) on that table.
//! `CANH_BENCH_ALERTS` overrides the alert count.
#![allow(clippy::unwrap_used)] // a benchmark harness: a failure must stop it loudly

use canh_soar::{
    Actor, AlertFilter, IncidentFilter, NewAgency, ProfileSet, Settings, Soar, SystemClock,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;

const INCIDENTS: i64 = 10_000;
fn alert_count() -> i64 {
    std::env::var("CANH_BENCH_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

async fn populate(soar: &Soar) -> Vec<i64> {
    let sys = Actor::system("bench");
    let root = soar
        .create_agency(
            &sys,
            NewAgency {
                code: "p".into(),
                name: "Tỉnh".into(),
                level: "province".into(),
                parent_id: None,
            },
        )
        .await
        .unwrap();
    let mut agencies = vec![root.id];
    for i in 0..20 {
        let a = soar
            .create_agency(
                &sys,
                NewAgency {
                    code: format!("d{i}"),
                    name: format!("Sở {i}"),
                    level: "department".into(),
                    parent_id: Some(root.id),
                },
            )
            .await
            .unwrap();
        agencies.push(a.id);
    }
    let mut tx = soar.pool().begin().await.unwrap();
    let steps = ["record", "analyse", "contain", "recover", "post_incident"];
    let sev = ["low", "medium", "high", "emergency"];
    for i in 0..INCIDENTS {
        let agency = agencies[(i % agencies.len() as i64) as usize];
        sqlx::query(
            "INSERT INTO incidents (title, severity, agency_id, agency_name, step, profile_id, \
             profile_version, notice_hours, initial_report_hours, closing_report_hours, \
             detected_at, opened_at, updated_at) VALUES ($1, $2, $3, 'x', $4, 'vn-tt20-2017', 1, \
             120, 2, 120, $5, $5, $5)",
        )
        .bind(format!("Sự cố {i}"))
        .bind(sev[(i % 4) as usize])
        .bind(agency)
        .bind(steps[(i % 5) as usize])
        .bind(1_700_000_000_000 + i * 60_000)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    let states = [
        "new",
        "acknowledged",
        "escalated",
        "false_positive",
        "closed",
    ];
    for i in 0..alert_count() {
        let agency = agencies[(i % agencies.len() as i64) as usize];
        sqlx::query(
            "INSERT INTO alerts (dedup_key, rule_id, rule_title, rule_level, severity, agency_id, \
             host, event, first_seen, last_seen, state, updated_at) VALUES ($1, $2, 'rule', \
             'high', $3, $4, $5, '{\"event\":{\"code\":\"4625\"}}', $6, $6, $7, $6)",
        )
        .bind(format!("k{i}"))
        .bind(format!("rule-{}", i % 300))
        .bind(sev[(i % 4) as usize])
        .bind(agency)
        .bind(format!("host-{}", i % 2000))
        .bind(1_700_000_000_000 + i * 6_000)
        .bind(states[(i % 5) as usize])
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    vec![agencies[3]]
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let soar = rt.block_on(async {
        let profiles = ProfileSet::bundled("vn-tt20-2017").unwrap();
        Soar::open(
            dir.path(),
            profiles,
            Arc::new(SystemClock),
            Settings::default(),
        )
        .await
        .unwrap()
    });
    let scope = rt.block_on(populate(&soar));
    let mut g = c.benchmark_group("list_page");
    g.sample_size(30);
    g.bench_function("incidents_first_page_50", |b| {
        b.iter(|| {
            rt.block_on(soar.incidents(&IncidentFilter::default(), None))
                .unwrap()
        })
    });
    g.bench_function("incidents_severity_step_filter", |b| {
        let f = IncidentFilter {
            severity: Some(canh_soar::Severity::High),
            step: Some(canh_soar::Step::Contain),
            ..Default::default()
        };
        b.iter(|| rt.block_on(soar.incidents(&f, None)).unwrap())
    });
    g.bench_function("alerts_first_page_50", |b| {
        b.iter(|| {
            rt.block_on(soar.alerts(&AlertFilter::default(), None))
                .unwrap()
        })
    });
    g.bench_function("alerts_state_new_page_50", |b| {
        let f = AlertFilter {
            state: Some(canh_soar::AlertState::New),
            ..Default::default()
        };
        b.iter(|| rt.block_on(soar.alerts(&f, None)).unwrap())
    });
    g.bench_function("alerts_deep_page_middle", |b| {
        let f = AlertFilter {
            after: Some(alert_count() / 2),
            ..Default::default()
        };
        b.iter(|| rt.block_on(soar.alerts(&f, None)).unwrap())
    });
    g.bench_function("alerts_agency_viewer_scope", |b| {
        b.iter(|| {
            rt.block_on(soar.alerts(&AlertFilter::default(), Some(&scope)))
                .unwrap()
        })
    });
    g.bench_function("alerts_host_filter", |b| {
        let f = AlertFilter {
            host: Some("host-77".into()),
            ..Default::default()
        };
        b.iter(|| rt.block_on(soar.alerts(&f, None)).unwrap())
    });
    g.finish();

    // Intake: 1000 alerts per iteration over 300 rules × 2000 hosts, a tenth of them repeats of
    // a recent key (folded into a count), the rest new rows joining or opening a group.
    let mut g = c.benchmark_group("alert_intake");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1000));
    let mut t = chrono::Utc::now();
    let mut n: u64 = 0;
    let mut next_batch = move || {
        (0..1000)
            .map(|_| {
                n += 1;
                t += chrono::Duration::milliseconds(20);
                let repeat = n.is_multiple_of(10);
                let k = if repeat { n - 1 } else { n };
                canh_soar::NewAlert {
                    rule_id: format!("rule-{}", k % 300),
                    rule_title: "Đăng nhập thất bại nhiều lần".into(),
                    rule_level: "high".into(),
                    severity: canh_soar::Severity::High,
                    agency_id: None,
                    host: format!("host-{}", k % 2000),
                    event: serde_json::json!({"event": {"code": "4625"}, "n": k}),
                    time: t,
                    dedup_key: Some(format!("rule-{}|host-{}|{k}", k % 300, k % 2000)),
                }
            })
            .collect::<Vec<_>>()
    };
    g.bench_function("record_and_group_1000", |b| {
        b.iter_batched(
            &mut next_batch,
            |alerts| {
                rt.block_on(async {
                    for alert in alerts {
                        soar.record_alert(alert).await.unwrap();
                    }
                })
            },
            criterion::BatchSize::PerIteration,
        )
    });
    // The same stream through `record_alerts`: the 1000 alerts in one transaction.
    g.bench_function("record_alerts_batch_1000", |b| {
        b.iter_batched(
            &mut next_batch,
            |alerts| rt.block_on(soar.record_alerts(alerts)).unwrap(),
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
