use crate::env;
use canh_soar::{NewAgency, NewIncident, Severity, SoarError};

#[tokio::test]
async fn levels_come_from_the_profile() {
    let e = env().await;
    let sys = canh_soar::Actor::system("t");
    let bad = NewAgency {
        code: "x".into(),
        name: "X".into(),
        level: "commune".into(),
        parent_id: Some(e.province),
    };
    let err = e.soar.create_agency(&sys, bad).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("commune cannot sit under a province"),
        "{err}"
    );
    e.soar
        .set_active_profile(&e.admin, "vn-2025")
        .await
        .unwrap();
    let ok = NewAgency {
        code: "x".into(),
        name: "Xã Phú Túc".into(),
        level: "commune".into(),
        parent_id: Some(e.province),
    };
    e.soar.create_agency(&sys, ok).await.unwrap();
    let bad = NewAgency {
        code: "y".into(),
        name: "Y".into(),
        level: "district".into(),
        parent_id: Some(e.province),
    };
    assert!(matches!(
        e.soar.create_agency(&sys, bad).await,
        Err(SoarError::Invalid(_))
    ));
}

#[tokio::test]
async fn merge_and_rename_keep_old_names_on_old_incidents() {
    let e = env().await;
    let sys = canh_soar::Actor::system("t");
    let old = e
        .soar
        .create_incident(
            &e.analyst,
            NewIncident {
                title: "Sự cố cũ".into(),
                description: String::new(),
                severity: Severity::Low,
                agency_id: e.province,
                detected_at: None,
                alert_ids: vec![],
            },
        )
        .await
        .unwrap();
    let vl = e
        .soar
        .create_agency(
            &sys,
            NewAgency {
                code: "vinh-long".into(),
                name: "Tỉnh Vĩnh Long".into(),
                level: "province".into(),
                parent_id: None,
            },
        )
        .await
        .unwrap();
    e.soar
        .add_agency_range(&e.admin, e.province, "203.113.128.0/24", true)
        .await
        .unwrap();
    e.soar
        .merge_agencies(&e.admin, &[e.province], vl.id)
        .await
        .unwrap();
    let new = e
        .soar
        .create_incident(
            &e.analyst,
            NewIncident {
                title: "Sự cố mới".into(),
                description: String::new(),
                severity: Severity::Low,
                agency_id: vl.id,
                detected_at: None,
                alert_ids: vec![],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        e.soar.incident(old.id).await.unwrap().agency_name,
        "Tỉnh Bến Tre"
    );
    assert_eq!(new.agency_name, "Tỉnh Vĩnh Long");
    // The department moved under the new province; ranges moved too.
    assert_eq!(e.soar.agency(e.dept).await.unwrap().parent_id, Some(vl.id));
    assert_eq!(
        e.soar
            .agency_for_ip("203.113.128.7".parse().unwrap())
            .await
            .unwrap(),
        Some(vl.id)
    );
    let sub = e.soar.agency_subtree(vl.id).await.unwrap();
    assert!(sub.contains(&e.province) && sub.contains(&e.dept));

    e.soar
        .rename_agency(&e.admin, e.dept, "Sở Khoa học và Công nghệ")
        .await
        .unwrap();
    let names = e.soar.agency_names(e.dept).await.unwrap();
    assert_eq!(names.len(), 2);
    assert_eq!(names[0].name, "Sở Thông tin và Truyền thông");
    assert!(names[0].valid_to.is_some() && names[1].valid_to.is_none());
}

#[tokio::test]
async fn ranges_contacts_and_csv_import() {
    let e = env().await;
    let err = e
        .soar
        .add_agency_range(&e.admin, e.dept, "10.0.0.0/8", true)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a public range"), "{err}");
    e.soar
        .add_agency_range(&e.admin, e.dept, "10.20.0.0/16", false)
        .await
        .unwrap();
    assert_eq!(
        e.soar
            .agency_for_ip("10.20.3.4".parse().unwrap())
            .await
            .unwrap(),
        Some(e.dept)
    );
    let bad = canh_soar::Contact {
        kind: "primary".into(),
        name: "Nguyễn Văn A".into(),
        position: String::new(),
        phone: String::new(),
        mobile: String::new(),
        email: String::new(),
    };
    assert!(
        e.soar
            .add_agency_contact(&e.admin, e.dept, bad.clone())
            .await
            .is_err()
    );
    let ok = canh_soar::Contact {
        mobile: "0912345678".into(),
        ..bad
    };
    e.soar
        .add_agency_contact(&e.admin, e.dept, ok)
        .await
        .unwrap();
    assert_eq!(e.soar.agency_contacts(e.dept).await.unwrap().len(), 1);

    let csv = "code,name,level,parent_code,public_cidrs\n\
               ubnd-huyen-cl,UBND huyện Châu Thành,district,ben-tre,\n\
               xa-an-hiep,UBND xã An Hiệp,commune,ubnd-huyen-cl,203.113.140.0/28;2402:800:1::/48\n\
               so-tt,duplicate is skipped,department,ben-tre,\n";
    assert_eq!(
        e.soar
            .import_agencies_csv(&e.admin, csv.as_bytes())
            .await
            .unwrap(),
        2
    );
    let xa = e.soar.agency_by_code("xa-an-hiep").await.unwrap();
    assert_eq!(e.soar.agency_ranges(xa.id).await.unwrap().len(), 2);
    let bad = "code,name,level,parent_code\nq,Q,commune,nowhere\n";
    let err = e
        .soar
        .import_agencies_csv(&e.admin, bad.as_bytes())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("line 2") && err.to_string().contains("nowhere"),
        "{err}"
    );
}
