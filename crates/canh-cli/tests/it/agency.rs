//! `canh agency import|show`: agencies, contacts, information systems and domains from CSV
//! (synthetic rows written by the test), with line numbers on bad rows.

use std::path::Path;
use std::process::Command;

fn canh(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_canh"));
    c.env("CANH_LOG", "warn").arg("--data-dir").arg(data);
    c
}

fn import(data: &Path, kind: &str, file: &Path) -> std::process::Output {
    canh(data)
        .args(["agency", "import", "--kind", kind])
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn agency_csv_import_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let agencies = write(
        "agencies.csv",
        "code,name,level,parent_code,public_cidrs\n\
         ben-tre,Tỉnh Bến Tre,province,,\n\
         so-tt,Sở Thông tin và Truyền thông,department,ben-tre,203.113.130.0/28\n",
    );
    let contacts = write(
        "contacts.csv",
        "agency_code,kind,name,position,phone,mobile,email\n\
         so-tt,primary,Nguyễn Văn An,Phó Giám đốc,0275 3822 123,0913 000 111,an@bentre.gov.vn\n",
    );
    let systems = write(
        "systems.csv",
        "agency_code,name,level,owner,operator,uplinks,description\n\
         so-tt,Cổng dịch vụ công,3,UBND tỉnh,Trung tâm CNTT-TT,VNPT=203.113.130.0/30;Viettel,\n",
    );
    let domains = write(
        "domains.csv",
        "agency_code,domain\nso-tt,DichVuCong.BenTre.gov.vn\n",
    );
    for (kind, file, n) in [
        ("agencies", &agencies, 2),
        ("contacts", &contacts, 1),
        ("systems", &systems, 1),
        ("domains", &domains, 1),
    ] {
        let out = import(&data, kind, file);
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with(&format!("{n} row(s)")), "{kind}: {text}");
    }
    let out = canh(&data)
        .args(["agency", "show", "so-tt"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "system\tCổng dịch vụ công\tcấp 3\tUBND tỉnh\tTrung tâm CNTT-TT\tVNPT;Viettel"
        ),
        "{text}"
    );
    assert!(text.contains("domain\tdichvucong.bentre.gov.vn"), "{text}");
    assert!(text.contains("contact\tprimary\tNguyễn Văn An"), "{text}");
    // The new primary contact opened the R-14 update task.
    assert!(text.contains("task\tcontact_update"), "{text}");

    let bad = write(
        "bad.csv",
        "agency_code,name,level\nso-tt,Thư điện tử,2\nso-tt,Kho dữ liệu,9\n",
    );
    let out = import(&data, "systems", &bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("1 to 5"), "{err}");
    let out = import(&data, "users", &bad);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown CSV kind"));
}
