//! Administration (read views): users and roles, the agency tree, sources and their health,
//! the loaded detection rules, and the regulation profile in force. Administrators, SOC leads
//! and auditors only; user and agency changes go through `/api/v1` and the command line.

use super::{
    Chrome, ConsoleState, PageError, PageResult, Viewer, chrome, fmt_time, render, soar_fail,
};
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

pub(super) fn routes() -> Router<ConsoleState> {
    Router::new().route("/console/admin", get(admin))
}

struct UserRow {
    name: String,
    role: String,
    agency: String,
    status: String,
}

struct AgencyRow {
    code: String,
    name: String,
    level: String,
    depth: usize,
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

async fn admin(State(st): State<ConsoleState>, v: Viewer) -> PageResult {
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
                name: u.name,
                role: tr.k("console-role", u.role.as_str()),
                agency: u
                    .agency_id
                    .and_then(|a| names.get(&a).cloned())
                    .unwrap_or_default(),
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
    let agency_rows = super::wall::agency_tree(&live)
        .into_iter()
        .map(|(a, depth)| AgencyRow {
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
    let page = AdminPage {
        c: chrome(&v, "admin", "/console/admin"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_files_are_summarised() {
        let (t, l) = rule_summary("title: 'SSH root'\nid: x\nlevel: high\n");
        assert_eq!(t, "SSH root");
        assert_eq!(l, "high");
    }
}
