//! Integration tests of canh-soar on a real SQLite file in a temporary directory.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod agencies;
mod alerts;
mod audit;
mod evidence;
mod incidents;
mod notify;
mod report;
mod systems;
mod totp;
mod users;

use canh_soar::{Actor, ManualClock, NewAgency, ProfileSet, Role, Settings, Soar};
use chrono::{TimeZone, Utc};
use std::sync::Arc;

pub(crate) struct Env {
    pub(crate) soar: Soar,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) admin: Actor,
    pub(crate) analyst: Actor,
    pub(crate) province: i64,
    pub(crate) dept: i64,
}

pub(crate) async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 5, 1, 7, 0).unwrap(),
    ));
    let soar = Soar::open(
        dir.path(),
        ProfileSet::bundled("vn-tt20-2017").unwrap(),
        clock.clone(),
        Settings::default(),
    )
    .await
    .unwrap();
    let sys = Actor::system("test");
    let p = soar
        .create_agency(
            &sys,
            NewAgency {
                code: "ben-tre".into(),
                name: "Tỉnh Bến Tre".into(),
                level: "province".into(),
                parent_id: None,
            },
        )
        .await
        .unwrap();
    let d = soar
        .create_agency(
            &sys,
            NewAgency {
                code: "so-tt".into(),
                name: "Sở Thông tin và Truyền thông".into(),
                level: "department".into(),
                parent_id: Some(p.id),
            },
        )
        .await
        .unwrap();
    let admin = soar
        .create_user(
            &sys,
            "admin",
            Role::Administrator,
            None,
            "mật-khẩu-quản-trị",
        )
        .await
        .unwrap();
    let analyst = soar
        .create_user(&sys, "an", Role::Analyst, None, "mật-khẩu-phân-tích")
        .await
        .unwrap();
    Env {
        soar,
        clock,
        dir,
        admin: Actor::user(admin.id, &admin.name, "127.0.0.1"),
        analyst: Actor::user(analyst.id, &analyst.name, "127.0.0.1"),
        province: p.id,
        dept: d.id,
    }
}
