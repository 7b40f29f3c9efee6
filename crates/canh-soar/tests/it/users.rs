use crate::env;
use canh_soar::{Role, SoarError};
use chrono::Duration;

#[tokio::test]
async fn login_sessions_tokens_and_lock_out() {
    let e = env().await;
    let (u, s) = e
        .soar
        .login("an", "mật-khẩu-phân-tích", "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(u.role, Role::Analyst);
    assert_eq!(e.soar.authenticate(&s.secret).await.unwrap().id, u.id);
    // Stored hashed, never in clear.
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM credentials")
        .fetch_all(e.soar.pool())
        .await
        .unwrap();
    assert!(!stored.contains(&s.secret));
    e.soar.revoke(&s.secret).await.unwrap();
    assert!(e.soar.authenticate(&s.secret).await.is_err());

    let t = e
        .soar
        .issue_token(&e.admin, u.id, "ci", Duration::hours(1))
        .await
        .unwrap();
    assert!(e.soar.authenticate(&t.secret).await.is_ok());
    e.clock.advance(Duration::hours(1) + Duration::seconds(1));
    assert!(e.soar.authenticate(&t.secret).await.is_err());

    for _ in 0..5 {
        assert!(matches!(
            e.soar.login("an", "sai-mật-khẩu-xx", "x").await,
            Err(SoarError::Denied(_))
        ));
    }
    // Locked: even the right password is refused until the lock expires.
    assert!(e.soar.login("an", "mật-khẩu-phân-tích", "x").await.is_err());
    e.clock.advance(Duration::minutes(16));
    assert!(e.soar.login("an", "mật-khẩu-phân-tích", "x").await.is_ok());
    assert!(
        e.soar
            .login("nobody", "whatever-password", "x")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn viewer_scope_is_the_agency_subtree() {
    let e = env().await;
    let sys = canh_soar::Actor::system("t");
    assert!(
        e.soar
            .create_user(&sys, "v", Role::AgencyViewer, None, "mật-khẩu-dài-đủ")
            .await
            .is_err()
    );
    assert!(
        e.soar
            .create_user(&sys, "w", Role::Analyst, None, "ngắn")
            .await
            .is_err()
    );
    let v = e
        .soar
        .create_user(
            &sys,
            "v",
            Role::AgencyViewer,
            Some(e.province),
            "mật-khẩu-dài-đủ",
        )
        .await
        .unwrap();
    let mut scope = e.soar.user_scope(&v).await.unwrap().unwrap();
    scope.sort();
    assert_eq!(scope, vec![e.province, e.dept]);
    let admin = e.soar.user(e.admin.user_id.unwrap()).await.unwrap();
    assert_eq!(e.soar.user_scope(&admin).await.unwrap(), None);
}

#[tokio::test]
async fn many_failed_logins_from_one_address_block_that_address_only() {
    let e = env().await;
    // Spraying: one wrong password per account name, from one address.
    for i in 0..20 {
        let r = e
            .soar
            .login(&format!("user{i}"), "sai-mật-khẩu-123", "198.51.100.7")
            .await;
        assert!(matches!(r, Err(canh_soar::SoarError::Denied(_))));
    }
    // Now even the right password is refused from there, but not from elsewhere.
    let r = e
        .soar
        .login("an", "mật-khẩu-phân-tích", "198.51.100.7")
        .await;
    assert!(
        matches!(&r, Err(canh_soar::SoarError::Denied(m)) if m.contains("this address")),
        "{r:?}"
    );
    e.soar
        .login("an", "mật-khẩu-phân-tích", "192.0.2.1")
        .await
        .unwrap();
    // After the lock-out time the address may try again.
    e.clock
        .advance(e.soar.settings().lockout + chrono::Duration::seconds(1));
    e.soar
        .login("an", "mật-khẩu-phân-tích", "198.51.100.7")
        .await
        .unwrap();
}
