use crate::env;

#[tokio::test]
async fn audit_chain_verifies_and_detects_an_altered_row() {
    let e = env().await;
    let r = e.soar.verify_audit().await.unwrap();
    assert!(r.ok(), "{r:?}");
    assert!(r.rows >= 4);
    // The table refuses updates outright.
    let refused = sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
        .execute(e.soar.pool())
        .await;
    assert!(refused.is_err());
    // Someone with write access to the file drops the trigger and alters row 2.
    sqlx::query("DROP TRIGGER audit_log_no_update")
        .execute(e.soar.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
        .execute(e.soar.pool())
        .await
        .unwrap();
    let r = e.soar.verify_audit().await.unwrap();
    let (seq, why) = r.broken.unwrap();
    assert_eq!(seq, 2);
    assert!(why.contains("row 2"), "{why}");
}

#[tokio::test]
async fn audit_detects_a_deleted_row() {
    let e = env().await;
    sqlx::query("DROP TRIGGER audit_log_no_delete")
        .execute(e.soar.pool())
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq = 3")
        .execute(e.soar.pool())
        .await
        .unwrap();
    let r = e.soar.verify_audit().await.unwrap();
    assert_eq!(r.broken.unwrap().0, 4);
}

#[tokio::test]
async fn audit_rows_carry_before_and_after() {
    let e = env().await;
    e.soar
        .rename_agency(&e.admin, e.dept, "Sở Khoa học và Công nghệ")
        .await
        .unwrap();
    let f = canh_soar::AuditFilter {
        object_type: Some("agency".into()),
        ..Default::default()
    };
    let rows = e.soar.audit_log(&f).await.unwrap();
    let last = &rows[0];
    assert_eq!(last.action, "agency.rename");
    assert_eq!(last.actor, "admin");
    assert_eq!(last.source, "127.0.0.1");
    assert!(
        last.before
            .as_deref()
            .unwrap()
            .contains("Sở Thông tin và Truyền thông")
    );
    assert!(
        last.after
            .as_deref()
            .unwrap()
            .contains("Sở Khoa học và Công nghệ")
    );
}
