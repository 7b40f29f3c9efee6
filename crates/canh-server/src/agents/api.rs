//! `/api/v1` routes for agents: the agent list, enrolment tokens, revocation, host inventory,
//! vulnerabilities, patch tasks, the offline OSV import, and agent releases (publish, list,
//! roll out, upgrade history). Every route needs a logged-in user
//! (session cookie or bearer token); agents are not tied to agencies, so agency-scoped users
//! are refused.

// Handlers return axum's `Response` as their error, as the rest of the HTTP layer does.
#![allow(clippy::result_large_err)]

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

use super::releases::{RolloutTargets, UpgradeFailure};
use super::vuln::PatchStatus;
use super::{AgentService, AgentsError};
use crate::soar::SoarState;
use crate::soar::auth::AuthUser;

/// Largest OSV archive accepted over HTTP (osv.dev's `Debian/all.zip` is tens of MB).
const MAX_IMPORT_BYTES: usize = 1 << 30;

/// What the agent handlers share.
#[derive(Clone)]
pub struct AgentApiState {
    /// The agent service.
    pub agents: AgentService,
    /// Users and sessions (for authentication).
    pub soar: SoarState,
    /// The node's local command-line token (full access), when set.
    pub local_token: Option<String>,
}

/// Who calls: the local command line (its token file) or a user.
enum Caller {
    Local,
    User(Box<AuthUser>),
}

impl axum::extract::FromRequestParts<AgentApiState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &AgentApiState,
    ) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if let (Some(t), Some(local)) = (bearer, &st.local_token)
            && !local.is_empty()
            && t.len() == local.len()
            && t.bytes()
                .zip(local.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        {
            return Ok(Caller::Local);
        }
        AuthUser::from_request_parts(parts, st)
            .await
            .map(|u| Caller::User(Box::new(u)))
            .map_err(IntoResponse::into_response)
    }
}

impl Caller {
    /// Agents belong to no agency: only unscoped users see them.
    fn reader(&self) -> Result<(), Response> {
        match self {
            Caller::Local => Ok(()),
            Caller::User(u) => u.require_agency(None).map_err(IntoResponse::into_response),
        }
    }

    fn admin(&self) -> Result<(), Response> {
        self.reader()?;
        match self {
            Caller::Local => Ok(()),
            Caller::User(u) => u.require_admin().map_err(IntoResponse::into_response),
        }
    }

    /// The administrator role only (not the SOC lead): agent releases run as root on every
    /// endpoint.
    fn administrator(&self) -> Result<(), Response> {
        self.reader()?;
        match self {
            Caller::Local => Ok(()),
            Caller::User(u) if u.role() == canh_soar::Role::Administrator => Ok(()),
            Caller::User(_) => Err(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only an administrator may publish or roll out agent releases",
            )),
        }
    }

    fn writer(&self) -> Result<(), Response> {
        self.reader()?;
        match self {
            Caller::Local => Ok(()),
            Caller::User(u) => u.require_write().map_err(IntoResponse::into_response),
        }
    }

    fn name(&self) -> String {
        match self {
            Caller::Local => "local-cli".into(),
            Caller::User(u) => u.user.name.clone(),
        }
    }

    fn actor(&self) -> canh_soar::Actor {
        match self {
            Caller::Local => canh_soar::Actor::system("cli"),
            Caller::User(u) => u.actor(),
        }
    }
}

impl FromRef<AgentApiState> for SoarState {
    fn from_ref(s: &AgentApiState) -> Self {
        s.soar.clone()
    }
}

/// Largest agent release accepted over HTTP.
const MAX_RELEASE_BYTES: usize = super::releases::MAX_RELEASE_BYTES;

/// Raises an alert and writes the audit log for each failed agent upgrade.
fn report_upgrade_failures(agents: &AgentService, soar: &SoarState) {
    let soar = soar.clone();
    agents.on_upgrade_failure(std::sync::Arc::new(move |f: UpgradeFailure| {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(agent_id = %f.agent_id, "no runtime; failed upgrade not alerted");
            return;
        };
        let soar = soar.clone();
        rt.spawn(async move {
            let detail = serde_json::to_value(&f).unwrap_or_default();
            let now = chrono::Utc::now();
            let event = json!({
                "@timestamp": now,
                "event": {"kind": "alert", "module": "canh_agents"},
                "rule": {"id": "canh.agents.upgrade_failed"},
                "agent": {"id": f.agent_id, "version": f.previous_version},
                "host": {"name": f.hostname},
                "message": format!(
                    "agent upgrade to {} failed on {} and was rolled back: {}",
                    f.version, f.hostname, f.reason
                ),
            });
            let alert = canh_soar::NewAlert {
                rule_id: "canh.agents.upgrade_failed".into(),
                rule_title: "Nâng cấp tác tử thất bại / Agent upgrade failed".into(),
                rule_level: "medium".into(),
                severity: canh_soar::Severity::Medium,
                agency_id: None,
                host: f.hostname.clone(),
                event,
                time: now,
                dedup_key: Some(format!("upgrade|{}|{}", f.agent_id, f.version)),
            };
            if let Err(e) = soar.record_alert(alert).await {
                tracing::warn!(error = %e, "failed-upgrade alert not recorded");
            }
            if let Err(e) = soar
                .soar
                .record_audit(
                    &canh_soar::Actor::system("agents"),
                    "agent.upgrade_failed",
                    "agent",
                    &f.agent_id,
                    None,
                    Some(detail),
                )
                .await
            {
                tracing::warn!(error = %e, "failed upgrade not written to the audit log");
            }
        });
    }));
}

/// The agent routes, ready to merge into the node's router. Failed agent upgrades reported
/// from now on raise an alert and an audit entry through `soar`.
pub fn router(agents: AgentService, soar: SoarState, local_token: Option<String>) -> Router {
    report_upgrade_failures(&agents, &soar);
    Router::new()
        .route("/api/v1/agents", get(list_agents))
        .route("/api/v1/agents/enrolment-tokens", post(create_token))
        .route("/api/v1/agents/{id}/revoke", post(revoke))
        .route(
            "/api/v1/agents/releases",
            get(list_releases)
                .post(publish_release)
                .layer(DefaultBodyLimit::max(MAX_RELEASE_BYTES)),
        )
        .route("/api/v1/agents/releases/rollout", post(rollout))
        .route("/api/v1/agents/{id}/upgrades", get(upgrade_history))
        .route("/api/v1/agents/{id}/inventory", get(inventory))
        .route("/api/v1/agents/{id}/vulnerabilities", get(vulnerabilities))
        .route("/api/v1/agents/{id}/patch-tasks", get(host_patch_tasks))
        .route("/api/v1/patch-tasks", get(all_patch_tasks))
        .route("/api/v1/patch-tasks/{id}", patch(update_patch_task))
        .route("/api/v1/vulnerabilities/status", get(db_status))
        .route(
            "/api/v1/vulnerabilities/import",
            post(import).layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES)),
        )
        .with_state(AgentApiState {
            agents,
            soar,
            local_token,
        })
}

type R = Result<Json<Value>, Response>;

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"code": code, "message": message.into()})),
    )
        .into_response()
}

fn agents_error(e: AgentsError) -> Response {
    match e {
        AgentsError::NotFound(what) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        ),
        AgentsError::Invalid(m) => error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
        AgentsError::Conflict(m) => error(StatusCode::CONFLICT, "conflict", m),
        other => {
            tracing::error!(error = %other, "agents request failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
    }
}

fn to_json<T: serde::Serialize>(v: T) -> R {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

async fn list_agents(auth: Caller, State(st): State<AgentApiState>) -> R {
    let agents = st.agents.agents();
    match &auth {
        Caller::Local => to_json(agents),
        Caller::User(u) if u.scope.is_none() => to_json(agents),
        Caller::User(u) => {
            // A user scoped to agencies sees the agents enrolled for them.
            let codes = agency_ids(&st).await?;
            let visible: Vec<_> = agents
                .into_iter()
                .filter(|a| {
                    a.agency
                        .as_ref()
                        .and_then(|c| codes.get(c))
                        .is_some_and(|id| u.can_see(Some(*id)))
                })
                .collect();
            to_json(visible)
        }
    }
}

/// Agency code → id.
async fn agency_ids(st: &AgentApiState) -> Result<HashMap<String, i64>, Response> {
    st.soar
        .soar
        .agencies()
        .await
        .map(|l| l.into_iter().map(|a| (a.code, a.id)).collect())
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

/// The codes of `code` and every agency under it; 422 for an unknown code.
async fn agency_subtree_codes(st: &AgentApiState, code: &str) -> Result<Vec<String>, Response> {
    let unknown = || {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("no agency with code {code:?}"),
        )
    };
    let root = st
        .soar
        .soar
        .agency_by_code(code)
        .await
        .map_err(|_| unknown())?;
    let ids = st
        .soar
        .soar
        .agency_subtree(root.id)
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let all = st
        .soar
        .soar
        .agencies()
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(all
        .into_iter()
        .filter(|a| ids.contains(&a.id))
        .map(|a| a.code)
        .collect())
}

#[derive(Deserialize)]
struct TokenRequest {
    #[serde(default = "default_ttl")]
    ttl_secs: u64,
    /// Agency code the enrolled agents belong to.
    #[serde(default)]
    agency: Option<String>,
}

fn default_ttl() -> u64 {
    3600
}

async fn create_token(
    auth: Caller,
    State(st): State<AgentApiState>,
    body: Option<Json<TokenRequest>>,
) -> R {
    auth.admin()?;
    let (ttl, agency) = body.map_or((default_ttl(), None), |b| (b.ttl_secs, b.agency.clone()));
    if let Some(code) = &agency
        && st.soar.soar.agency_by_code(code).await.is_err()
    {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("no agency with code {code:?}"),
        ));
    }
    if ttl == 0 || ttl > 7 * 24 * 3600 {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "ttl_secs must be between 1 and 604800",
        ));
    }
    let token = st
        .agents
        .create_enrolment_token_for(std::time::Duration::from_secs(ttl), agency.as_deref())
        .map_err(agents_error)?;
    if let Err(e) = st
        .soar
        .soar
        .record_audit(
            &auth.actor(),
            "agent.token.create",
            "agent",
            "enrolment-token",
            None,
            Some(json!({ "ttl_secs": ttl, "agency": agency })),
        )
        .await
    {
        tracing::warn!(error = %e, "enrolment token not written to the audit log");
    }
    Ok(Json(json!({
        "token": token,
        "ttl_secs": ttl,
        "agency": agency,
        "ca_pin": st.agents.ca_pin(),
    })))
}

async fn revoke(auth: Caller, State(st): State<AgentApiState>, Path(id): Path<String>) -> R {
    auth.admin()?;
    st.agents.revoke(&id).map_err(agents_error)?;
    if let Err(e) = st
        .soar
        .soar
        .record_audit(&auth.actor(), "agent.revoke", "agent", &id, None, None)
        .await
    {
        tracing::warn!(error = %e, "agent revocation not written to the audit log");
    }
    Ok(Json(json!({"agent_id": id, "revoked": true})))
}

async fn inventory(auth: Caller, State(st): State<AgentApiState>, Path(id): Path<String>) -> R {
    auth.reader()?;
    to_json(st.agents.host_inventory(&id).map_err(agents_error)?)
}

async fn vulnerabilities(
    auth: Caller,
    State(st): State<AgentApiState>,
    Path(id): Path<String>,
) -> R {
    auth.reader()?;
    to_json(st.agents.vulnerabilities(&id).map_err(agents_error)?)
}

async fn host_patch_tasks(
    auth: Caller,
    State(st): State<AgentApiState>,
    Path(id): Path<String>,
) -> R {
    auth.reader()?;
    st.agents.host_inventory(&id).map_err(agents_error)?;
    to_json(st.agents.patch_tasks(Some(&id)))
}

async fn all_patch_tasks(auth: Caller, State(st): State<AgentApiState>) -> R {
    auth.reader()?;
    to_json(st.agents.patch_tasks(None))
}

#[derive(Deserialize)]
struct PatchUpdate {
    status: PatchStatus,
    #[serde(default)]
    note: Option<String>,
}

async fn update_patch_task(
    auth: Caller,
    State(st): State<AgentApiState>,
    Path(id): Path<u64>,
    Json(body): Json<PatchUpdate>,
) -> R {
    auth.writer()?;
    let t = st
        .agents
        .set_patch_status(id, body.status, &auth.name(), body.note)
        .map_err(agents_error)?;
    to_json(t)
}

async fn db_status(auth: Caller, State(st): State<AgentApiState>) -> R {
    auth.reader()?;
    let eco = st.agents.vulnerability_db_status();
    Ok(Json(json!({"ecosystems": eco})))
}

async fn import(auth: Caller, State(st): State<AgentApiState>, body: Bytes) -> R {
    auth.admin()?;
    if body.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "send a zip of OSV records or one OSV JSON record as the body",
        ));
    }
    let agents = st.agents.clone();
    let report = tokio::task::spawn_blocking(move || {
        agents.import_vulnerability_bytes("request body", &body)
    })
    .await
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(agents_error)?;
    tracing::info!(
        user = %auth.name(),
        imported = report.imported,
        total = report.total,
        "osv advisories imported"
    );
    to_json(report)
}

/// `<os>-<arch>` of this server, the default release target.
fn server_target() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

#[derive(Deserialize)]
struct PublishQuery {
    version: String,
    #[serde(default = "server_target")]
    target: String,
}

async fn publish_release(
    auth: Caller,
    State(st): State<AgentApiState>,
    Query(q): Query<PublishQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Response> {
    auth.administrator()?;
    let agents = st.agents.clone();
    let (version, target) = (q.version.clone(), q.target.clone());
    let published =
        tokio::task::spawn_blocking(move || agents.publish_release(&version, &target, &body))
            .await
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
            .map_err(agents_error)?;
    let after = serde_json::to_value(&published.manifest).unwrap_or_default();
    if let Err(e) = st
        .soar
        .soar
        .record_audit(
            &auth.actor(),
            "agent.release.publish",
            "agent_release",
            &format!("{}/{}", q.target, q.version),
            None,
            Some(after),
        )
        .await
    {
        tracing::warn!(error = %e, "release publication not written to the audit log");
    }
    tracing::info!(user = %auth.name(), version = %q.version, target = %q.target, "agent release published");
    Ok((StatusCode::CREATED, to_json(published)?))
}

async fn list_releases(auth: Caller, State(st): State<AgentApiState>) -> R {
    auth.reader()?;
    to_json(st.agents.releases())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutRequest {
    version: String,
    #[serde(default = "server_target")]
    target: String,
    /// Agent ids; absent with `all: true` for every agent.
    #[serde(default)]
    agents: Option<Vec<String>>,
    /// An agency code: every agent of it and of the agencies under it.
    #[serde(default)]
    agency: Option<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    allow_downgrade: bool,
    #[serde(default = "default_rollout_ttl")]
    ttl_secs: u64,
}

fn default_rollout_ttl() -> u64 {
    24 * 3600
}

async fn rollout(
    auth: Caller,
    State(st): State<AgentApiState>,
    Json(req): Json<RolloutRequest>,
) -> R {
    auth.administrator()?;
    let to = match (req.all, req.agents, &req.agency) {
        (true, None, None) => RolloutTargets::All,
        (false, Some(list), None) if !list.is_empty() => RolloutTargets::Agents(list),
        (false, None, Some(code)) => {
            RolloutTargets::Agencies(agency_subtree_codes(&st, code).await?)
        }
        _ => {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "give one of \"all\": true, a non-empty \"agents\" list or an \"agency\" code",
            ));
        }
    };
    if req.ttl_secs == 0 || req.ttl_secs > 30 * 24 * 3600 {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "ttl_secs must be between 1 and 2592000",
        ));
    }
    let queued = st
        .agents
        .rollout(
            &req.version,
            &req.target,
            &to,
            req.allow_downgrade,
            std::time::Duration::from_secs(req.ttl_secs),
        )
        .map_err(agents_error)?;
    let after = json!({
        "agents": queued.iter().map(|c| c.agent_id.as_str()).collect::<Vec<_>>(),
        "agency": req.agency,
        "allow_downgrade": req.allow_downgrade,
        "ttl_secs": req.ttl_secs,
    });
    if let Err(e) = st
        .soar
        .soar
        .record_audit(
            &auth.actor(),
            "agent.release.rollout",
            "agent_release",
            &format!("{}/{}", req.target, req.version),
            None,
            Some(after),
        )
        .await
    {
        tracing::warn!(error = %e, "rollout not written to the audit log");
    }
    Ok(Json(
        json!({ "version": req.version, "target": req.target, "commands": queued }),
    ))
}

async fn upgrade_history(
    auth: Caller,
    State(st): State<AgentApiState>,
    Path(id): Path<String>,
) -> R {
    auth.reader()?;
    if !st.agents.agents().iter().any(|a| a.agent_id == id) {
        return Err(agents_error(AgentsError::NotFound(id)));
    }
    to_json(st.agents.upgrade_history(&id))
}
