//! `/api/v1` handlers. Every handler checks the role and the agency scope of the caller.

use super::SoarState;
use super::auth::{AuthUser, session_cookie};
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use canh_soar::alert::Triage;
use canh_soar::incident::{IncidentPatch, Observable, ReportKind};
use canh_soar::{
    AlertFilter, AuditFilter, Contact, IncidentFilter, NewAgency, NewIncident, Role, SoarError,
    Step,
};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};

/// An API error: `{code, message}` with a status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn forbidden() -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: "not allowed".into(),
        }
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: message.into(),
        }
    }

    pub(crate) fn unauthenticated() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthenticated",
            message: "log in or send a valid bearer token".into(),
        }
    }

    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid",
            message: message.into(),
        }
    }
}

impl From<SoarError> for ApiError {
    fn from(e: SoarError) -> Self {
        let (status, code) = match &e {
            SoarError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            SoarError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            SoarError::Denied(_) => (StatusCode::FORBIDDEN, "denied"),
            SoarError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "soar request failed");
            "internal error".to_owned()
        } else {
            e.to_string()
        };
        Self {
            status,
            code,
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"code": self.code, "message": self.message})),
        )
            .into_response()
    }
}

pub(crate) type R<T> = Result<T, ApiError>;

pub(crate) fn routes() -> Router<SoarState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/me", get(me))
        .route("/api/v1/profiles", get(profiles))
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/triage", post(triage_alerts))
        .route("/api/v1/alerts/assign", post(assign_alerts))
        .route("/api/v1/alerts/{id}", get(get_alert))
        .route(
            "/api/v1/alerts/{id}/comments",
            get(alert_comments).post(comment_alert),
        )
        .route(
            "/api/v1/incidents",
            get(list_incidents).post(create_incident),
        )
        .route(
            "/api/v1/incidents/{id}",
            get(get_incident).patch(update_incident),
        )
        .route("/api/v1/incidents/{id}/transition", post(transition))
        .route("/api/v1/incidents/{id}/close", post(close))
        .route("/api/v1/incidents/{id}/reports", post(report_sent))
        .route("/api/v1/incidents/{id}/tasks", get(tasks).post(add_task))
        .route(
            "/api/v1/incidents/{id}/timeline",
            get(timeline).post(add_note),
        )
        .route(
            "/api/v1/incidents/{id}/observables",
            get(observables).post(add_observable),
        )
        .route("/api/v1/incidents/{id}/alerts", post(link_alerts))
        .route("/api/v1/incidents/{id}/signoffs", get(signoffs))
        .route(
            "/api/v1/incidents/{id}/evidence",
            get(list_evidence).post(upload_evidence),
        )
        .route("/api/v1/incidents/{id}/evidence.zip", get(export_evidence))
        .route("/api/v1/tasks/{id}", patch(update_task))
        .route("/api/v1/evidence/{id}/content", get(evidence_content))
        .route("/api/v1/evidence/{id}/custody", get(evidence_custody))
        .route("/api/v1/overdue", get(overdue))
        .route("/api/v1/agencies", get(list_agencies).post(create_agency))
        .route("/api/v1/agencies/import", post(import_agencies))
        .route("/api/v1/agencies/{id}", get(get_agency))
        .route("/api/v1/agencies/{id}/rename", post(rename_agency))
        .route("/api/v1/agencies/{id}/merge", post(merge_agency))
        .route("/api/v1/agencies/{id}/ranges", post(add_range))
        .route(
            "/api/v1/agencies/{id}/contacts",
            get(contacts).post(add_contact),
        )
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/users/{id}/tokens", post(issue_token))
        .route("/api/v1/auth/totp", post(totp_enrol).delete(totp_disable))
        .route("/api/v1/auth/totp/confirm", post(totp_confirm))
        .route("/api/v1/incidents/{id}/initial-report", get(initial_report))
        .route("/api/v1/roster", get(roster).post(add_roster))
        .route(
            "/api/v1/roster/{id}",
            patch(update_roster).delete(remove_roster),
        )
        .route("/api/v1/notifications", get(notifications))
        .route(
            "/api/v1/notifications/{id}/attempts",
            get(notification_attempts),
        )
        .route("/api/v1/audit", get(audit_log))
        .route("/api/v1/audit/verify", get(audit_verify))
        .merge(super::extra::routes())
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

// ---- auth ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    name: String,
    password: String,
    /// TOTP code, for users with the second factor on.
    #[serde(default)]
    totp: Option<String>,
}

async fn login(State(st): State<SoarState>, req: axum::extract::Request) -> R<Response> {
    let (parts, body) = req.into_parts();
    let source = super::auth::client_source(&parts);
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| ApiError::bad("body"))?;
    let b: LoginBody = serde_json::from_slice(&bytes).map_err(|e| ApiError::bad(e.to_string()))?;
    let (user, issued) = match st
        .soar
        .login_with_totp(&b.name, &b.password, b.totp.as_deref(), &source)
        .await
    {
        Err(SoarError::Denied(m)) if m == canh_soar::user::TOTP_REQUIRED => {
            return Err(ApiError {
                status: StatusCode::UNAUTHORIZED,
                code: "totp_required",
                message: m,
            });
        }
        r => r?,
    };
    let max_age = (issued.expires_at - st.soar.now()).num_seconds().max(0);
    let cookie = session_cookie(&issued.secret, max_age, st.config.secure_cookie);
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(json!({"user": user, "expires_at": issued.expires_at})),
    )
        .into_response())
}

async fn logout(State(st): State<SoarState>, headers: HeaderMap, u: AuthUser) -> R<Response> {
    // Revoke whichever credential authenticated this request.
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == super::auth::SESSION_COOKIE)
        .map(|(_, v)| v);
    if let Some(secret) = bearer.or(cookie) {
        st.soar.revoke(secret.trim()).await?;
    }
    tracing::debug!(user = %u.user.name, "logged out");
    let clear = session_cookie("", 0, st.config.secure_cookie);
    Ok(([(header::SET_COOKIE, clear)], StatusCode::NO_CONTENT).into_response())
}

async fn me(u: AuthUser) -> Json<Value> {
    Json(json!({"user": u.user, "scope": u.scope}))
}

async fn profiles(State(st): State<SoarState>, _u: AuthUser) -> Json<Value> {
    let set = st.soar.profiles();
    Json(
        json!({"active": {"id": set.active().id, "version": set.active().version},
                "profiles": set.all()}),
    )
}

// ---- alerts ----

async fn list_alerts(
    State(st): State<SoarState>,
    u: AuthUser,
    Query(f): Query<AlertFilter>,
) -> R<Json<Value>> {
    let page = st.soar.alerts(&f, u.scope.as_deref()).await?;
    Ok(Json(json!(page)))
}

async fn get_alert(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
) -> R<Json<Value>> {
    let a = st.soar.alert(id).await?;
    u.require_agency(a.agency_id)?;
    Ok(Json(json!(a)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkTriage {
    ids: Vec<i64>,
    #[serde(flatten)]
    triage: Triage,
}

pub(crate) async fn alerts_in_scope(st: &SoarState, u: &AuthUser, ids: &[i64]) -> R<()> {
    for &id in ids {
        u.require_agency(st.soar.alert(id).await?.agency_id)?;
    }
    Ok(())
}

async fn triage_alerts(
    State(st): State<SoarState>,
    u: AuthUser,
    Json(b): Json<BulkTriage>,
) -> R<Json<Value>> {
    u.require_write()?;
    alerts_in_scope(&st, &u, &b.ids).await?;
    Ok(Json(json!(
        st.soar.triage_alerts(&u.actor(), &b.ids, &b.triage).await?
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkAssign {
    ids: Vec<i64>,
    assignee_id: Option<i64>,
}

async fn assign_alerts(
    State(st): State<SoarState>,
    u: AuthUser,
    Json(b): Json<BulkAssign>,
) -> R<StatusCode> {
    u.require_write()?;
    alerts_in_scope(&st, &u, &b.ids).await?;
    st.soar
        .assign_alerts(&u.actor(), &b.ids, b.assignee_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextBody {
    body: String,
}

async fn comment_alert(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Json(b): Json<TextBody>,
) -> R<StatusCode> {
    u.require_write()?;
    alerts_in_scope(&st, &u, &[id]).await?;
    st.soar.comment_alert(&u.actor(), id, &b.body).await?;
    Ok(StatusCode::CREATED)
}

async fn alert_comments(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
) -> R<Json<Value>> {
    alerts_in_scope(&st, &u, &[id]).await?;
    Ok(Json(json!(st.soar.alert_comments(id).await?)))
}

// ---- incidents ----

pub(crate) async fn incident_in_scope(
    st: &SoarState,
    u: &AuthUser,
    id: i64,
) -> R<canh_soar::Incident> {
    let inc = st.soar.incident(id).await?;
    u.require_agency(Some(inc.agency_id))?;
    Ok(inc)
}

pub(crate) fn incident_json(st: &SoarState, inc: &canh_soar::Incident) -> Response {
    // The regulation's definition of the incident's severity, from the profile it was opened
    // under, so that the user sees what the level means.
    let definition = st
        .soar
        .profiles()
        .get(&inc.profile_id, inc.profile_version)
        .and_then(|p| {
            p.severities
                .iter()
                .find(|s| s.id == inc.severity.as_str())
                .map(|s| json!(s))
        });
    let body = json!({"incident": inc, "deadlines": inc.deadlines(st.soar.now()),
                      "severity_definition": definition});
    ([(header::ETAG, format!("\"{}\"", inc.version))], Json(body)).into_response()
}

/// The version the client last saw: `If-Match: "N"` or `version` in the body.
pub(crate) fn expected_version(headers: &HeaderMap, body: Option<i64>) -> R<i64> {
    if let Some(v) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        return v
            .trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .parse()
            .map_err(|_| ApiError::bad("If-Match must be the incident version"));
    }
    body.ok_or(ApiError {
        status: StatusCode::PRECONDITION_REQUIRED,
        code: "version_required",
        message: "send If-Match or version".into(),
    })
}

async fn list_incidents(
    State(st): State<SoarState>,
    u: AuthUser,
    Query(f): Query<IncidentFilter>,
) -> R<Json<Value>> {
    Ok(Json(json!(
        st.soar.incidents(&f, u.scope.as_deref()).await?
    )))
}

async fn create_incident(
    State(st): State<SoarState>,
    u: AuthUser,
    Json(b): Json<NewIncident>,
) -> R<Response> {
    u.require_write()?;
    u.require_agency(Some(b.agency_id))?;
    alerts_in_scope(&st, &u, &b.alert_ids).await?;
    let inc = st.soar.create_incident(&u.actor(), b).await?;
    Ok((StatusCode::CREATED, incident_json(&st, &inc)).into_response())
}

async fn get_incident(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
) -> R<Response> {
    let inc = incident_in_scope(&st, &u, id).await?;
    Ok(incident_json(&st, &inc))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(default)]
    version: Option<i64>,
    #[serde(flatten)]
    patch: IncidentPatch,
}

async fn update_incident(
    State(st): State<SoarState>,
    u: AuthUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(b): Json<PatchBody>,
) -> R<Response> {
    u.require_write()?;
    incident_in_scope(&st, &u, id).await?;
    let v = expected_version(&headers, b.version)?;
    let inc = st.soar.update_incident(&u.actor(), id, v, b.patch).await?;
    Ok(incident_json(&st, &inc))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionBody {
    to: Step,
    summary: String,
    #[serde(default)]
    version: Option<i64>,
}

async fn transition(
    State(st): State<SoarState>,
    u: AuthUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(b): Json<TransitionBody>,
) -> R<Response> {
    u.require_write()?;
    incident_in_scope(&st, &u, id).await?;
    let v = expected_version(&headers, b.version)?;
    let inc = st
        .soar
        .transition_incident(&u.actor(), id, v, b.to, &b.summary)
        .await?;
    Ok(incident_json(&st, &inc))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    summary: String,
    #[serde(default)]
    waiver: Option<String>,
    #[serde(default)]
    version: Option<i64>,
}

async fn close(
    State(st): State<SoarState>,
    u: AuthUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(b): Json<CloseBody>,
) -> R<Response> {
    u.require_write()?;
    incident_in_scope(&st, &u, id).await?;
    let v = expected_version(&headers, b.version)?;
    let inc = st
        .soar
        .close_incident(&u.actor(), id, v, &b.summary, b.waiver.as_deref())
        .await?;
    Ok(incident_json(&st, &inc))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportBody {
    kind: ReportKind,
    #[serde(default)]
    at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    version: Option<i64>,
}

async fn report_sent(
    State(st): State<SoarState>,
    u: AuthUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(b): Json<ReportBody>,
) -> R<Response> {
    u.require_write()?;
    incident_in_scope(&st, &u, id).await?;
    let v = expected_version(&headers, b.version)?;
    let inc = st
        .soar
        .mark_report_sent(&u.actor(), id, v, b.kind, b.at)
        .await?;
    Ok(incident_json(&st, &inc))
}

async fn tasks(State(st): State<SoarState>, u: AuthUser, Path(id): Path<i64>) -> R<Json<Value>> {
    incident_in_scope(&st, &u, id).await?;
    Ok(Json(json!(st.soar.tasks(id).await?)))
}

async fn add_task(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Json(b): Json<canh_soar::incident::NewTask>,
) -> R<(StatusCode, Json<Value>)> {
    u.require_write()?;
    incident_in_scope(&st, &u, id).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!(st.soar.add_step_task(&u.actor(), id, b).await?)),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskPatch {
    done: bool,
    #[serde(default)]
    assignee_id: Option<i64>,
}

async fn update_task(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Json(b): Json<TaskPatch>,
) -> R<Json<Value>> {
    u.require_write()?;
    let task = st.soar.task(id).await?;
    incident_in_scope(&st, &u, task.incident_id).await?;
    Ok(Json(json!(
        st.soar
            .update_task(&u.actor(), id, b.done, b.assignee_id)
            .await?
    )))
}

async fn timeline(State(st): State<SoarState>, u: AuthUser, Path(id): Path<i64>) -> R<Json<Value>> {
    incident_in_scope(&st, &u, id).await?;
    Ok(Json(json!(st.soar.timeline(id).await?)))
}

async fn add_note(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Json(b): Json<TextBody>,
) -> R<StatusCode> {
    u.require_write()?;
    incident_in_scope(&st, &u, id).await?;
    st.soar.add_note(&u.actor(), id, &b.body).await?;
    Ok(StatusCode::CREATED)
}

async fn observables(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
) -> R<Json<Value>> {
    incident_in_scope(&st, &u, id).await?;
    Ok(Json(json!(st.soar.observables(id).await?)))
}

async fn add_observable(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Json(b): Json<Observable>,
) -> R<StatusCode> {
    u.require_write()?;
    incident_in_scope(&st, &u, id).await?;
    st.soar.add_observable(&u.actor(), id, b).await?;
    Ok(StatusCode::CREATED)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdsBody {
    ids: Vec<i64>,
}

async fn link_alerts(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Json(b): Json<IdsBody>,
) -> R<StatusCode> {
    u.require_write()?;
    incident_in_scope(&st, &u, id).await?;
    alerts_in_scope(&st, &u, &b.ids).await?;
    st.soar.link_alerts(&u.actor(), id, &b.ids).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn signoffs(State(st): State<SoarState>, u: AuthUser, Path(id): Path<i64>) -> R<Json<Value>> {
    incident_in_scope(&st, &u, id).await?;
    Ok(Json(json!(st.soar.signoffs(id).await?)))
}

async fn overdue(State(st): State<SoarState>, u: AuthUser) -> R<Json<Value>> {
    let items = st.soar.overdue(st.soar.now()).await?;
    let visible: Vec<_> = items
        .into_iter()
        .filter(|i| u.can_see(Some(i.agency_id)))
        .collect();
    Ok(Json(json!(visible)))
}

// ---- evidence ----

async fn list_evidence(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
) -> R<Json<Value>> {
    incident_in_scope(&st, &u, id).await?;
    Ok(Json(json!(st.soar.incident_evidence(id).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    filename: String,
    #[serde(default)]
    description: String,
}

async fn upload_evidence(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> R<(StatusCode, Json<Value>)> {
    u.require_write()?;
    incident_in_scope(&st, &u, id).await?;
    let mut w = st
        .soar
        .evidence_writer(st.config.max_evidence_bytes)
        .await?;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad(format!("upload interrupted: {e}")))?;
        if let Ok(data) = frame.into_data() {
            w.write(&data).await?;
        }
    }
    let ev = st
        .soar
        .finish_evidence(&u.actor(), id, &q.filename, &q.description, w)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(ev))))
}

async fn evidence_content(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
) -> R<Response> {
    let ev = st.soar.evidence(id).await?;
    incident_in_scope(&st, &u, ev.incident_id).await?;
    let (ev, data) = st.soar.read_evidence(&u.actor(), id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::HeaderName::from_static("x-content-sha256"),
                ev.sha256,
            ),
        ],
        data,
    )
        .into_response())
}

async fn evidence_custody(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
) -> R<Json<Value>> {
    let ev = st.soar.evidence(id).await?;
    incident_in_scope(&st, &u, ev.incident_id).await?;
    Ok(Json(json!(st.soar.custody(id).await?)))
}

async fn export_evidence(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
) -> R<Response> {
    incident_in_scope(&st, &u, id).await?;
    if !matches!(
        u.role(),
        Role::Administrator | Role::SocLead | Role::Auditor
    ) {
        return Err(ApiError::forbidden());
    }
    let dir = tempdir_in_vault(&st)?;
    let path = dir.join(format!("incident-{id}.zip"));
    st.soar.export_evidence_zip(&u.actor(), id, &path).await?;
    let data = tokio::fs::read(&path).await.map_err(|e| SoarError::Io {
        path: path.clone(),
        source: e,
    })?;
    let _ = tokio::fs::remove_file(&path).await;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"incident-{id}-evidence.zip\""),
            ),
        ],
        data,
    )
        .into_response())
}

pub(crate) fn tempdir_in_vault(st: &SoarState) -> R<std::path::PathBuf> {
    // The vault's own tmp dir: same filesystem, never world-readable.
    let p = st
        .soar
        .evidence_path("0000")
        .parent()
        .and_then(|p| p.parent())
        .and_then(|p| p.parent())
        .map(|p| p.join("tmp"))
        .ok_or_else(|| ApiError::from(SoarError::Internal("vault path".into())))?;
    std::fs::create_dir_all(&p).map_err(|e| SoarError::Io {
        path: p.clone(),
        source: e,
    })?;
    Ok(p)
}

// ---- agencies ----

async fn list_agencies(State(st): State<SoarState>, u: AuthUser) -> R<Json<Value>> {
    let all = st.soar.agencies().await?;
    let visible: Vec<_> = all.into_iter().filter(|a| u.can_see(Some(a.id))).collect();
    Ok(Json(json!(visible)))
}

async fn get_agency(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
) -> R<Json<Value>> {
    u.require_agency(Some(id))?;
    let a = st.soar.agency(id).await?;
    Ok(Json(
        json!({"agency": a, "names": st.soar.agency_names(id).await?,
                   "ranges": st.soar.agency_ranges(id).await?}),
    ))
}

async fn create_agency(
    State(st): State<SoarState>,
    u: AuthUser,
    Json(b): Json<NewAgency>,
) -> R<(StatusCode, Json<Value>)> {
    u.require_admin()?;
    Ok((
        StatusCode::CREATED,
        Json(json!(st.soar.create_agency(&u.actor(), b).await?)),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    /// `agencies` (default), `contacts`, `systems` or `domains`.
    #[serde(default)]
    kind: Option<String>,
}

async fn import_agencies(
    State(st): State<SoarState>,
    u: AuthUser,
    Query(q): Query<ImportQuery>,
    body: axum::body::Bytes,
) -> R<Json<Value>> {
    u.require_admin()?;
    let kind = canh_soar::CsvKind::parse(q.kind.as_deref().unwrap_or("agencies"))?;
    let n = st.soar.import_csv(&u.actor(), kind, &body).await?;
    // `created` kept for agencies; `changed` for every kind.
    Ok(Json(json!({"created": n, "changed": n})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    name: String,
}

async fn rename_agency(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Json(b): Json<RenameBody>,
) -> R<Json<Value>> {
    u.require_admin()?;
    Ok(Json(json!(
        st.soar.rename_agency(&u.actor(), id, &b.name).await?
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    sources: Vec<i64>,
}

async fn merge_agency(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Json(b): Json<MergeBody>,
) -> R<StatusCode> {
    u.require_admin()?;
    st.soar.merge_agencies(&u.actor(), &b.sources, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeBody {
    cidr: String,
    #[serde(default = "yes")]
    public: bool,
}

fn yes() -> bool {
    true
}

async fn add_range(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Json(b): Json<RangeBody>,
) -> R<(StatusCode, Json<Value>)> {
    u.require_admin()?;
    Ok((
        StatusCode::CREATED,
        Json(json!(
            st.soar
                .add_agency_range(&u.actor(), id, &b.cidr, b.public)
                .await?
        )),
    ))
}

async fn contacts(State(st): State<SoarState>, u: AuthUser, Path(id): Path<i64>) -> R<Json<Value>> {
    u.require_agency(Some(id))?;
    Ok(Json(json!(st.soar.agency_contact_list(id).await?)))
}

async fn add_contact(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Json(b): Json<Contact>,
) -> R<StatusCode> {
    u.require_admin()?;
    st.soar.add_agency_contact(&u.actor(), id, b).await?;
    Ok(StatusCode::CREATED)
}

// ---- users ----

async fn list_users(State(st): State<SoarState>, u: AuthUser) -> R<Json<Value>> {
    u.require_admin()?;
    Ok(Json(json!(st.soar.users().await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    name: String,
    role: Role,
    #[serde(default)]
    agency_id: Option<i64>,
    password: String,
}

async fn create_user(
    State(st): State<SoarState>,
    u: AuthUser,
    Json(b): Json<NewUserBody>,
) -> R<(StatusCode, Json<Value>)> {
    if u.role() != Role::Administrator {
        return Err(ApiError::forbidden());
    }
    let user = st
        .soar
        .create_user(&u.actor(), &b.name, b.role, b.agency_id, &b.password)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(user))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    label: String,
    days: i64,
}

async fn issue_token(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Json(b): Json<TokenBody>,
) -> R<(StatusCode, Json<Value>)> {
    // Users issue tokens for themselves; administrators for anyone.
    if u.user.id != id && u.role() != Role::Administrator {
        return Err(ApiError::forbidden());
    }
    let t = st
        .soar
        .issue_token(&u.actor(), id, &b.label, chrono::Duration::days(b.days))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": t.secret, "expires_at": t.expires_at})),
    ))
}

// ---- audit ----

async fn audit_log(
    State(st): State<SoarState>,
    u: AuthUser,
    Query(f): Query<AuditFilter>,
) -> R<Json<Value>> {
    u.require_audit()?;
    Ok(Json(json!(st.soar.audit_log(&f).await?)))
}

async fn audit_verify(State(st): State<SoarState>, u: AuthUser) -> R<Json<Value>> {
    u.require_audit()?;
    let r = st.soar.verify_audit().await?;
    Ok(Json(
        json!({"ok": r.ok(), "rows": r.rows, "head": r.head, "broken": r.broken}),
    ))
}

// ---- second factor ----

async fn totp_enrol(State(st): State<SoarState>, u: AuthUser) -> R<(StatusCode, Json<Value>)> {
    let e = st.soar.totp_enrol(&u.actor(), u.user.id, true).await?;
    Ok((StatusCode::CREATED, Json(json!(e))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    code: String,
}

async fn totp_confirm(
    State(st): State<SoarState>,
    u: AuthUser,
    Json(b): Json<CodeBody>,
) -> R<StatusCode> {
    st.soar.totp_confirm(&u.actor(), u.user.id, &b.code).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn totp_disable(State(st): State<SoarState>, u: AuthUser) -> R<StatusCode> {
    st.soar.totp_disable(&u.actor(), u.user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- initial report (Mẫu 03) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    /// `json` (default), `text` or `html`.
    #[serde(default)]
    format: Option<String>,
    /// `vi` (default) or `en` (adds English labels).
    #[serde(default)]
    lang: Option<String>,
}

async fn initial_report(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Query(q): Query<ReportQuery>,
) -> R<Response> {
    incident_in_scope(&st, &u, id).await?;
    let english = match q.lang.as_deref() {
        None | Some("vi") => false,
        Some("en") => true,
        Some(other) => return Err(ApiError::bad(format!("unknown lang {other:?}"))),
    };
    let draft = st.soar.initial_report_draft(id).await?;
    Ok(match q.format.as_deref() {
        None | Some("json") => Json(json!(draft)).into_response(),
        Some("text") => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            draft.to_text(english),
        )
            .into_response(),
        Some("html") => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            draft.to_html(english),
        )
            .into_response(),
        Some(other) => return Err(ApiError::bad(format!("unknown format {other:?}"))),
    })
}

// ---- roster and notifications ----

async fn roster(State(st): State<SoarState>, u: AuthUser) -> R<Json<Value>> {
    u.require_write()?;
    Ok(Json(json!(st.soar.roster().await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRoster {
    name: String,
    email: String,
    #[serde(default = "yes")]
    on_duty: bool,
}

async fn add_roster(
    State(st): State<SoarState>,
    u: AuthUser,
    Json(b): Json<NewRoster>,
) -> R<(StatusCode, Json<Value>)> {
    u.require_admin()?;
    let e = st
        .soar
        .add_roster(&u.actor(), &b.name, &b.email, b.on_duty)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(e))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DutyBody {
    on_duty: bool,
}

async fn update_roster(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Json(b): Json<DutyBody>,
) -> R<Json<Value>> {
    u.require_admin()?;
    Ok(Json(json!(
        st.soar.set_on_duty(&u.actor(), id, b.on_duty).await?
    )))
}

async fn remove_roster(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
) -> R<StatusCode> {
    u.require_admin()?;
    st.soar.remove_roster(&u.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationQuery {
    #[serde(default)]
    incident_id: Option<i64>,
    #[serde(default)]
    status: Option<canh_soar::NotificationStatus>,
    #[serde(default)]
    limit: Option<i64>,
}

fn require_notifications(u: &AuthUser) -> R<()> {
    if u.role().can_administer() || u.role().can_read_audit() {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

async fn notifications(
    State(st): State<SoarState>,
    u: AuthUser,
    Query(q): Query<NotificationQuery>,
) -> R<Json<Value>> {
    require_notifications(&u)?;
    Ok(Json(json!(
        st.soar
            .notifications(q.incident_id, q.status, q.limit.unwrap_or(100))
            .await?
    )))
}

async fn notification_attempts(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
) -> R<Json<Value>> {
    require_notifications(&u)?;
    Ok(Json(json!(st.soar.notification_attempts(id).await?)))
}
