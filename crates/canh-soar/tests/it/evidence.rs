use crate::env;
use canh_soar::{NewIncident, Severity};
use std::io::Read;

#[tokio::test]
async fn evidence_is_content_addressed_verified_and_exported() {
    let e = env().await;
    let inc = e
        .soar
        .create_incident(
            &e.analyst,
            NewIncident {
                title: "Mã độc".into(),
                description: String::new(),
                severity: Severity::Medium,
                agency_id: e.dept,
                detected_at: None,
                alert_ids: vec![],
            },
        )
        .await
        .unwrap();
    let data = b"GET /wp-login.php 200\n".repeat(1000);
    let mut w = e.soar.evidence_writer(1 << 20).await.unwrap();
    for chunk in data.chunks(777) {
        w.write(chunk).await.unwrap();
    }
    let ev = e
        .soar
        .finish_evidence(&e.analyst, inc.id, "../access.log", "nhật ký web", w)
        .await
        .unwrap();
    assert_eq!(ev.filename, "access.log");
    assert_eq!(ev.size, data.len() as i64);
    let expected = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&data))
    };
    assert_eq!(ev.sha256, expected);
    assert!(e.soar.verify_evidence(None).await.unwrap().is_empty());
    let (_, back) = e.soar.read_evidence(&e.admin, ev.id).await.unwrap();
    assert_eq!(back, data);

    let out = e.dir.path().join("export.zip");
    e.soar
        .export_evidence_zip(&e.admin, inc.id, &out)
        .await
        .unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
    let mut sums = String::new();
    zip.by_name("SHA256SUMS")
        .unwrap()
        .read_to_string(&mut sums)
        .unwrap();
    assert_eq!(sums, format!("{expected}  evidence/{}-access.log\n", ev.id));
    let mut inner = Vec::new();
    zip.by_name(&format!("evidence/{}-access.log", ev.id))
        .unwrap()
        .read_to_end(&mut inner)
        .unwrap();
    assert_eq!(inner, data);
    let actions: Vec<String> = e
        .soar
        .custody(ev.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.action)
        .collect();
    assert_eq!(actions, vec!["uploaded", "downloaded", "exported"]);

    // Tamper with the stored file.
    let path = e.soar.evidence_path(&ev.sha256);
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    std::fs::write(&path, b"GET / 200\n").unwrap();
    let problems = e.soar.verify_evidence(None).await.unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].id, ev.id);
    assert!(e.soar.read_evidence(&e.admin, ev.id).await.is_err());
    assert!(
        e.soar
            .export_evidence_zip(&e.admin, inc.id, &out)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn oversized_upload_is_refused() {
    let e = env().await;
    let mut w = e.soar.evidence_writer(10).await.unwrap();
    w.write(b"0123456789").await.unwrap();
    assert!(w.write(b"x").await.is_err());
}
