//! Administration: users and roles (add, change role, disable), the agency tree (add, rename),
//! IP ranges, domains and information systems per agency, sources and their health, the
//! loaded detection rules and the regulation profile in force (read only). Administrators,
//! SOC leads and auditors read; only administrators change, and every change goes through the
//! incident-handling store, which writes the audit log.
//!
//! Forms are plain POSTs. They are protected from cross-site requests by the session cookie
//! (`SameSite=Strict`, so another site's form carries no session) and, in addition, by a check
//! that the browser's `Origin` / `Sec-Fetch-Site` headers name this console.

use super::{
    Chrome, ConsoleState, PageError, PageResult, Viewer, chrome, fmt_time, render, soar_fail,
};
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use canh_soar::{Actor, NewAgency, Role};
use serde::Deserialize;

pub(super) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/console/admin", get(admin))
        .route("/console/admin/users", post(add_user))
        .route("/console/admin/users/{id}/role", post(change_role))
        .route("/console/admin/users/{id}/state", post(user_state))
        .route("/console/admin/agencies", post(add_agency))
        .route("/console/admin/agencies/{id}", get(agency_page))
        .route("/console/admin/agencies/{id}/rename", post(rename_agency))
        .route("/console/admin/agencies/{id}/ranges", post(add_range))
        .route(
            "/console/admin/agencies/{id}/ranges/remove",
            post(remove_range),
        )
        .route("/console/admin/agencies/{id}/domains", post(add_domain))
        .route(
            "/console/admin/agencies/{id}/domains/remove",
            post(remove_domain),
        )
        .route("/console/admin/agencies/{id}/systems", post(add_system))
}

/// Whether a state-changing request comes from a page of this console: a browser's
/// `Sec-Fetch-Site` must be `same-origin` (or `none`: typed by the user), and an `Origin`
/// must name the host the request was sent to. Clients that send neither (scripts, tests)
/// still need the session cookie, which browsers never attach to cross-site POSTs.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match (get("origin"), get("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
    }
}

/// The caller may change administration data: an administrator, on a same-origin request.
fn may_change(v: &Viewer, headers: &HeaderMap) -> Result<Actor, PageError> {
    if v.auth.role() != Role::Administrator || !same_origin(headers) {
        return Err(PageError::forbidden());
    }
    Ok(v.auth.actor())
}

/// Messages shown after a change (`?ok=` on the page it leads back to).
const DONE: [&str; 10] = [
    "user-added",
    "role-changed",
    "user-disabled",
    "user-enabled",
    "agency-added",
    "agency-renamed",
    "range-added",
    "range-removed",
    "domain-changed",
    "system-added",
];

fn done(path: &str, what: &str, anchor: &str) -> Response {
    Redirect::to(&format!("{path}?ok={what}#{anchor}")).into_response()
}

fn done_message(v: &Viewer, ok: &str) -> String {
    if DONE.contains(&ok) {
        v.tr.t(&format!("console-admin-ok-{ok}"))
    } else {
        String::new()
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OkQuery {
    ok: String,
}

struct UserRow {
    id: i64,
    name: String,
    role: String,
    role_key: &'static str,
    agency: String,
    agency_id: i64,
    status: String,
    disabled: bool,
}

struct AgencyRow {
    id: i64,
    code: String,
    name: String,
    level: String,
    depth: usize,
}

/// An option of a select list.
struct Opt {
    value: String,
    label: String,
}

struct SourceRow {
    name: String,
    events: u64,
    last: String,
    silent: bool,
}

struct RuleRow {
    file: String,
    title: String,
    level: String,
}

struct DeadlineRow {
    name: String,
    hours: i64,
    confirmed: bool,
    source: String,
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    c: Chrome,
    ok: String,
    can_edit: bool,
    role_opts: Vec<Opt>,
    agency_opts: Vec<Opt>,
    level_opts: Vec<Opt>,
    users: Vec<UserRow>,
    show_users: bool,
    agencies: Vec<AgencyRow>,
    sources: Vec<SourceRow>,
    rules: Vec<RuleRow>,
    rules_dir: bool,
    profile_name: String,
    profile_id: String,
    profile_version: i64,
    deadlines: Vec<DeadlineRow>,
}

/// `title:` and `level:` of a Sigma rule file, read line by line (no YAML parse needed for a
/// listing; the detector validates rules when it loads them).
fn rule_summary(text: &str) -> (String, String) {
    let mut title = String::new();
    let mut level = String::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("title:") {
            title = t.trim().trim_matches(['"', '\'']).to_owned();
        } else if let Some(l) = line.strip_prefix("level:") {
            level = l.trim().to_owned();
        }
    }
    (title, level)
}

fn rules(dir: &std::path::Path) -> Vec<RuleRow> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<RuleRow> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.path()
                .extension()
                .is_some_and(|x| x == "yml" || x == "yaml")
        })
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            let (title, level) = rule_summary(&text);
            Some(RuleRow {
                file: e.file_name().to_string_lossy().into_owned(),
                title,
                level,
            })
        })
        .collect();
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

async fn admin(
    State(st): State<ConsoleState>,
    v: Viewer,
    Query(okq): Query<OkQuery>,
) -> PageResult {
    let role = v.auth.role();
    if !(role.can_administer() || role.can_read_audit()) || !v.unscoped() {
        return Err(PageError::forbidden().page(&v));
    }
    let tr = v.tr;
    let soar = &st.soar.soar;
    let agencies = soar.agencies().await.map_err(soar_fail(&v))?;
    let names: std::collections::HashMap<i64, String> =
        agencies.iter().map(|a| (a.id, a.name.clone())).collect();
    let show_users = role.can_administer();
    let users = if show_users {
        soar.users()
            .await
            .map_err(soar_fail(&v))?
            .into_iter()
            .map(|u| UserRow {
                id: u.id,
                name: u.name,
                role: tr.k("console-role", u.role.as_str()),
                role_key: u.role.as_str(),
                agency: u
                    .agency_id
                    .and_then(|a| names.get(&a).cloned())
                    .unwrap_or_default(),
                agency_id: u.agency_id.unwrap_or(0),
                disabled: u.disabled,
                status: if u.disabled {
                    tr.t("console-admin-user-disabled")
                } else if u.locked_until.is_some_and(|t| t > soar.now()) {
                    tr.t("console-admin-user-locked")
                } else {
                    tr.t("console-admin-user-active")
                },
            })
            .collect()
    } else {
        Vec::new()
    };
    let live: Vec<_> = agencies
        .iter()
        .filter(|a| a.merged_into.is_none())
        .cloned()
        .collect();
    let profiles = soar.profiles();
    let profile = profiles.active().clone();
    let level_name = |id: &str| {
        profile
            .level(id)
            .map(|l| match tr.lang {
                super::Lang::Vi => l.name_vi.clone(),
                super::Lang::En => l.name_en.clone(),
            })
            .unwrap_or_else(|| id.to_owned())
    };
    let agency_rows: Vec<AgencyRow> = super::wall::agency_tree(&live)
        .into_iter()
        .map(|(a, depth)| AgencyRow {
            id: a.id,
            code: a.code.clone(),
            name: a.name.clone(),
            level: level_name(&a.level),
            depth,
        })
        .collect();
    let text = st.app.metrics.render();
    let counts = super::wall::metric_values(&text, "canh_ingest_events_total");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut sources: Vec<SourceRow> =
        super::wall::metric_values(&text, "canh_ingest_last_seen_seconds")
            .into_iter()
            .map(|(name, last)| SourceRow {
                events: counts
                    .iter()
                    .filter(|(n, _)| *n == name)
                    .map(|(_, c)| *c as u64)
                    .sum(),
                last: chrono::DateTime::from_timestamp(last as i64, 0)
                    .map(fmt_time)
                    .unwrap_or_default(),
                silent: now - last > super::wall::SILENT_AFTER_SECS,
                name,
            })
            .collect();
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    let rules_dir = st.app.config.detect.rules_dir.clone();
    let d = &profile.deadlines;
    let deadline = |dl: &canh_soar::profile::Deadline| DeadlineRow {
        name: match tr.lang {
            super::Lang::Vi => dl.name_vi.clone(),
            super::Lang::En => dl.name_en.clone(),
        },
        hours: dl.hours,
        confirmed: dl.confirmed,
        source: dl.source.clone(),
    };
    let agency_opts = agency_rows
        .iter()
        .map(|a| Opt {
            value: a.id.to_string(),
            label: format!("{}{} ({})", "\u{a0}\u{a0}".repeat(a.depth), a.name, a.code),
        })
        .collect();
    let level_opts = profile
        .levels
        .iter()
        .map(|l| Opt {
            value: l.id.clone(),
            label: match tr.lang {
                super::Lang::Vi => l.name_vi.clone(),
                super::Lang::En => l.name_en.clone(),
            },
        })
        .collect();
    let page = AdminPage {
        c: chrome(&v, "admin", "/console/admin"),
        ok: done_message(&v, &okq.ok),
        can_edit: role == Role::Administrator,
        role_opts: Role::ALL
            .iter()
            .map(|r| Opt {
                value: r.as_str().to_owned(),
                label: tr.k("console-role", r.as_str()),
            })
            .collect(),
        agency_opts,
        level_opts,
        users,
        show_users,
        agencies: agency_rows,
        sources,
        rules: rules_dir.as_deref().map(rules).unwrap_or_default(),
        rules_dir: rules_dir.is_some(),
        profile_name: match tr.lang {
            super::Lang::Vi => profile.name_vi.clone(),
            super::Lang::En => profile.name_en.clone(),
        },
        profile_id: profile.id.clone(),
        profile_version: profile.version,
        deadlines: vec![
            deadline(&d.notice),
            deadline(&d.initial_report),
            deadline(&d.closing_report),
        ],
    };
    Ok(render(&page))
}

// ---- changes ----

/// An optional agency id from a select (`""` or `0` = none).
fn agency_field(s: &str) -> Result<Option<i64>, PageError> {
    match s.trim() {
        "" | "0" => Ok(None),
        t => t
            .parse()
            .map(Some)
            .map_err(|_| PageError::bad(format!("bad agency {t:?}"))),
    }
}

#[derive(Deserialize)]
struct NewUserForm {
    name: String,
    password: String,
    role: String,
    #[serde(default)]
    agency: String,
}

async fn add_user(
    State(st): State<ConsoleState>,
    v: Viewer,
    headers: HeaderMap,
    axum::Form(f): axum::Form<NewUserForm>,
) -> PageResult {
    let actor = may_change(&v, &headers).map_err(super::fail(&v))?;
    let role = Role::parse(&f.role).map_err(soar_fail(&v))?;
    let agency = agency_field(&f.agency).map_err(super::fail(&v))?;
    st.soar
        .soar
        .create_user(&actor, &f.name, role, agency, &f.password)
        .await
        .map_err(soar_fail(&v))?;
    Ok(done("/console/admin", "user-added", "users-h"))
}

#[derive(Deserialize)]
struct RoleForm {
    role: String,
    #[serde(default)]
    agency: String,
}

async fn change_role(
    State(st): State<ConsoleState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<RoleForm>,
) -> PageResult {
    let actor = may_change(&v, &headers).map_err(super::fail(&v))?;
    let role = Role::parse(&f.role).map_err(soar_fail(&v))?;
    let agency = agency_field(&f.agency).map_err(super::fail(&v))?;
    st.soar
        .soar
        .set_user_role(&actor, id, role, agency)
        .await
        .map_err(soar_fail(&v))?;
    Ok(done("/console/admin", "role-changed", "users-h"))
}

#[derive(Deserialize)]
struct StateForm {
    /// `disable` or `enable`.
    action: String,
}

async fn user_state(
    State(st): State<ConsoleState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<StateForm>,
) -> PageResult {
    let actor = may_change(&v, &headers).map_err(super::fail(&v))?;
    let disable = match f.action.as_str() {
        "disable" => true,
        "enable" => false,
        other => return Err(PageError::bad(format!("unknown action {other:?}")).page(&v)),
    };
    st.soar
        .soar
        .set_user_disabled(&actor, id, disable)
        .await
        .map_err(soar_fail(&v))?;
    let what = if disable {
        "user-disabled"
    } else {
        "user-enabled"
    };
    Ok(done("/console/admin", what, "users-h"))
}

#[derive(Deserialize)]
struct NewAgencyForm {
    code: String,
    name: String,
    level: String,
    #[serde(default)]
    parent: String,
}

async fn add_agency(
    State(st): State<ConsoleState>,
    v: Viewer,
    headers: HeaderMap,
    axum::Form(f): axum::Form<NewAgencyForm>,
) -> PageResult {
    let actor = may_change(&v, &headers).map_err(super::fail(&v))?;
    let parent_id = agency_field(&f.parent).map_err(super::fail(&v))?;
    let a = st
        .soar
        .soar
        .create_agency(
            &actor,
            NewAgency {
                code: f.code.trim().to_owned(),
                name: f.name.trim().to_owned(),
                level: f.level,
                parent_id,
            },
        )
        .await
        .map_err(soar_fail(&v))?;
    Ok(done(
        &format!("/console/admin/agencies/{}", a.id),
        "agency-added",
        "agency-h",
    ))
}

#[derive(Deserialize)]
struct RenameForm {
    name: String,
}

async fn rename_agency(
    State(st): State<ConsoleState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<RenameForm>,
) -> PageResult {
    let actor = may_change(&v, &headers).map_err(super::fail(&v))?;
    st.soar
        .soar
        .rename_agency(&actor, id, &f.name)
        .await
        .map_err(soar_fail(&v))?;
    Ok(done(
        &format!("/console/admin/agencies/{id}"),
        "agency-renamed",
        "agency-h",
    ))
}

#[derive(Deserialize)]
struct RangeForm {
    cidr: String,
    /// Checkbox: present when the range is a public one.
    #[serde(default)]
    public: Option<String>,
}

async fn add_range(
    State(st): State<ConsoleState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<RangeForm>,
) -> PageResult {
    let actor = may_change(&v, &headers).map_err(super::fail(&v))?;
    st.soar
        .soar
        .add_agency_range(&actor, id, &f.cidr, f.public.is_some())
        .await
        .map_err(soar_fail(&v))?;
    Ok(done(
        &format!("/console/admin/agencies/{id}"),
        "range-added",
        "ranges-h",
    ))
}

async fn remove_range(
    State(st): State<ConsoleState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<RangeForm>,
) -> PageResult {
    let actor = may_change(&v, &headers).map_err(super::fail(&v))?;
    st.soar
        .soar
        .remove_agency_range(&actor, id, &f.cidr)
        .await
        .map_err(soar_fail(&v))?;
    Ok(done(
        &format!("/console/admin/agencies/{id}"),
        "range-removed",
        "ranges-h",
    ))
}

#[derive(Deserialize)]
struct DomainForm {
    domain: String,
}

async fn add_domain(
    State(st): State<ConsoleState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<DomainForm>,
) -> PageResult {
    let actor = may_change(&v, &headers).map_err(super::fail(&v))?;
    st.soar
        .soar
        .add_agency_domain(&actor, id, &f.domain)
        .await
        .map_err(soar_fail(&v))?;
    Ok(done(
        &format!("/console/admin/agencies/{id}"),
        "domain-changed",
        "domains-h",
    ))
}

async fn remove_domain(
    State(st): State<ConsoleState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<DomainForm>,
) -> PageResult {
    let actor = may_change(&v, &headers).map_err(super::fail(&v))?;
    st.soar
        .soar
        .remove_agency_domain(&actor, id, &f.domain)
        .await
        .map_err(soar_fail(&v))?;
    Ok(done(
        &format!("/console/admin/agencies/{id}"),
        "domain-changed",
        "domains-h",
    ))
}

#[derive(Deserialize)]
struct SystemForm {
    name: String,
    level: i64,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    operator: String,
    /// `provider=cidr; provider2`.
    #[serde(default)]
    uplinks: String,
    #[serde(default)]
    description: String,
}

async fn add_system(
    State(st): State<ConsoleState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<SystemForm>,
) -> PageResult {
    let actor = may_change(&v, &headers).map_err(super::fail(&v))?;
    let uplinks = canh_soar::system::parse_uplinks(&f.uplinks).map_err(soar_fail(&v))?;
    st.soar
        .soar
        .add_system(
            &actor,
            id,
            canh_soar::NewSystem {
                name: f.name,
                level: f.level,
                owner: f.owner,
                operator: f.operator,
                uplinks,
                description: f.description,
            },
        )
        .await
        .map_err(soar_fail(&v))?;
    Ok(done(
        &format!("/console/admin/agencies/{id}"),
        "system-added",
        "systems-h",
    ))
}

// ---- one agency ----

struct SystemRow {
    name: String,
    level: i64,
    owner: String,
    operator: String,
    uplinks: String,
}

#[derive(Template)]
#[template(path = "admin_agency.html")]
struct AgencyPage {
    c: Chrome,
    ok: String,
    can_edit: bool,
    id: i64,
    code: String,
    name: String,
    level: String,
    parent: Option<(i64, String)>,
    former_names: Vec<(String, String)>,
    ranges: Vec<(String, String)>,
    domains: Vec<String>,
    systems: Vec<SystemRow>,
    children: Vec<(i64, String)>,
}

async fn agency_page(
    State(st): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<i64>,
    Query(okq): Query<OkQuery>,
) -> PageResult {
    let role = v.auth.role();
    if !(role.can_administer() || role.can_read_audit()) || !v.unscoped() {
        return Err(PageError::forbidden().page(&v));
    }
    let tr = v.tr;
    let soar = &st.soar.soar;
    let a = soar.agency(id).await.map_err(soar_fail(&v))?;
    let all = soar.agencies().await.map_err(soar_fail(&v))?;
    let parent = a.parent_id.and_then(|p| {
        all.iter()
            .find(|x| x.id == p)
            .map(|x| (x.id, x.name.clone()))
    });
    let children = all
        .iter()
        .filter(|x| x.parent_id == Some(id) && x.merged_into.is_none())
        .map(|x| (x.id, x.name.clone()))
        .collect();
    let profile = soar.profiles().active().clone();
    let level = profile
        .level(&a.level)
        .map(|l| match tr.lang {
            super::Lang::Vi => l.name_vi.clone(),
            super::Lang::En => l.name_en.clone(),
        })
        .unwrap_or_else(|| a.level.clone());
    let former_names = soar
        .agency_names(id)
        .await
        .map_err(soar_fail(&v))?
        .into_iter()
        .filter_map(|n| {
            n.valid_to.map(|to| {
                (
                    n.name,
                    format!("{} – {}", fmt_time(n.valid_from), fmt_time(to)),
                )
            })
        })
        .collect();
    let ranges = soar
        .agency_ranges(id)
        .await
        .map_err(soar_fail(&v))?
        .into_iter()
        .map(|r| {
            let kind = if r.public {
                "console-admin-public"
            } else {
                "console-admin-internal"
            };
            (r.cidr, tr.t(kind))
        })
        .collect();
    let domains = soar.agency_domains(id).await.map_err(soar_fail(&v))?;
    let systems = soar
        .agency_systems(id)
        .await
        .map_err(soar_fail(&v))?
        .into_iter()
        .map(|s| SystemRow {
            name: s.name,
            level: s.level,
            owner: s.owner,
            operator: s.operator,
            uplinks: s
                .uplinks
                .iter()
                .map(|u| match &u.cidr {
                    Some(c) => format!("{} ({c})", u.provider),
                    None => u.provider.clone(),
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let page = AgencyPage {
        c: chrome(&v, "admin", format!("/console/admin/agencies/{id}")),
        ok: done_message(&v, &okq.ok),
        can_edit: role == Role::Administrator,
        id,
        code: a.code,
        name: a.name,
        level,
        parent,
        former_names,
        ranges,
        domains,
        systems,
        children,
    };
    Ok(render(&page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_posts_may_change() {
        let mut h = HeaderMap::new();
        assert!(
            same_origin(&h),
            "no browser headers: the SameSite cookie decides"
        );
        h.insert("host", "127.0.0.1:8080".parse().unwrap());
        h.insert("origin", "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h));
        h.insert("origin", "http://evil.example".parse().unwrap());
        assert!(!same_origin(&h));
        h.remove("origin");
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!same_origin(&h));
        h.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(same_origin(&h));
    }

    #[test]
    fn rule_files_are_summarised() {
        let (t, l) = rule_summary("title: 'SSH root'\nid: x\nlevel: high\n");
        assert_eq!(t, "SSH root");
        assert_eq!(l, "high");
    }
}
