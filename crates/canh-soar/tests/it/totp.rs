//! Optional second factor (RFC 6238): enrolment shown once, login needs the code, a code cannot
//! be replayed within its window, disabling turns it off. Codes are computed from the secret.

use crate::env;
use canh_soar::SoarError;
use canh_soar::user::TOTP_REQUIRED;
use chrono::Duration;

fn code(secret: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.into()).to_bytes().unwrap();
    let t =
        totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes, None, "x".into()).unwrap();
    t.generate(u64::try_from(at.timestamp()).unwrap())
}

#[tokio::test]
async fn totp_enrol_confirm_login_replay_and_disable() {
    let e = env().await;
    let s = &e.soar;
    let uid = e.analyst.user_id.unwrap();
    let pw = "mật-khẩu-phân-tích";
    let en = s.totp_enrol(&e.analyst, uid, true).await.unwrap();
    assert!(!en.active);
    assert!(
        en.otpauth_uri.starts_with("otpauth://totp/Canh:an?"),
        "{}",
        en.otpauth_uri
    );
    assert!(en.otpauth_uri.contains(&format!("secret={}", en.secret)));
    // Pending only: password alone still works.
    s.login("an", pw, "t").await.unwrap();
    assert!(!s.totp_enabled(uid).await.unwrap());
    assert!(
        matches!(
            s.totp_confirm(&e.analyst, uid, "000000").await,
            Err(SoarError::Invalid(_))
        ) || code(&en.secret, s.now()) == "000000"
    );
    s.totp_confirm(&e.analyst, uid, &code(&en.secret, s.now()))
        .await
        .unwrap();
    assert!(s.totp_enabled(uid).await.unwrap());

    // Now the code is required.
    match s.login("an", pw, "t").await {
        Err(SoarError::Denied(m)) => assert_eq!(m, TOTP_REQUIRED),
        other => panic!("{other:?}"),
    }
    // The code used to confirm is spent for its window.
    let spent = code(&en.secret, s.now());
    assert!(matches!(
        s.login_with_totp("an", pw, Some(&spent), "t").await,
        Err(SoarError::Denied(_))
    ));
    e.clock.advance(Duration::seconds(30));
    let next = code(&en.secret, s.now());
    s.login_with_totp("an", pw, Some(&next), "t").await.unwrap();
    // Replay of the same code within its window: refused.
    assert!(matches!(
        s.login_with_totp("an", pw, Some(&next), "t").await,
        Err(SoarError::Denied(_))
    ));
    // The right code with a wrong password: refused.
    e.clock.advance(Duration::seconds(30));
    let c = code(&en.secret, s.now());
    assert!(
        s.login_with_totp("an", "sai-mật-khẩu-123", Some(&c), "t")
            .await
            .is_err()
    );
    s.login_with_totp("an", pw, Some(&c), "t").await.unwrap();
    // A code two windows old is refused.
    let old = code(&en.secret, s.now() - Duration::seconds(90));
    e.clock.advance(Duration::seconds(30));
    if old != code(&en.secret, s.now()) && old != code(&en.secret, s.now() + Duration::seconds(30))
    {
        assert!(s.login_with_totp("an", pw, Some(&old), "t").await.is_err());
    }

    s.totp_disable(&e.admin, uid).await.unwrap();
    s.login("an", pw, "t").await.unwrap();
    let log = s.audit_log(&Default::default()).await.unwrap();
    for action in ["user.totp_enrol", "user.totp_enable", "user.totp_disable"] {
        assert!(log.iter().any(|a| a.action == action), "{action}");
    }
    // Enabled directly (command line): active at once.
    let en = s.totp_enrol(&e.admin, uid, false).await.unwrap();
    assert!(en.active);
    assert!(s.login("an", pw, "t").await.is_err());
}
