//! `/api/v1` handlers for information systems, domains, contact changes and agency tasks
//! alert classification, teams and suppression, the serious-incident checklist
//! case templates, and captured event sets as evidence. Every handler checks the role
//! and the agency scope of the caller.

use super::SoarState;
use super::api::{
    ApiError, R, alerts_in_scope, expected_version, incident_in_scope, incident_json,
};
use super::auth::AuthUser;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use canh_soar::alert::{INCIDENT_TYPES, NewSuppression};
use canh_soar::incident::{NewCaseTemplate, SeriousChecklist};
use canh_soar::{Contact, NewSystem, SoarError};
use serde::Deserialize;
use serde_json::{Value, json};

pub(crate) fn routes() -> Router<SoarState> {
    Router::new()
        .route("/api/v1/incident-types", get(incident_types))
        .route("/api/v1/alerts/classify", post(classify_alerts))
        .route("/api/v1/alerts/assign-team", post(assign_team))
        .route(
            "/api/v1/suppressions",
            get(list_suppressions).post(add_suppression),
        )
        .route(
            "/api/v1/suppressions/{id}",
            axum::routing::delete(remove_suppression),
        )
        .route(
            "/api/v1/agencies/{id}/systems",
            get(list_systems).post(add_system),
        )
        .route("/api/v1/systems/{id}", get(get_system).put(update_system))
        .route(
            "/api/v1/agencies/{id}/domains",
            get(list_domains).post(add_domain),
        )
        .route(
            "/api/v1/agencies/{id}/domains/{domain}",
            axum::routing::delete(remove_domain),
        )
        .route(
            "/api/v1/agencies/{id}/contacts/{contact}",
            put(update_contact),
        )
        .route("/api/v1/agencies/{id}/tasks", get(agency_tasks))
        .route("/api/v1/agency-tasks/{id}/done", post(agency_task_done))
        .route("/api/v1/incidents/{id}/serious", post(serious_checklist))
        .route("/api/v1/templates", get(list_templates).post(add_template))
        .route("/api/v1/incidents/{id}/template", post(apply_template))
        .route(
            "/api/v1/incidents/{id}/evidence/events",
            post(capture_events),
        )
}

// ---- alerts ----

async fn incident_types(_u: AuthUser) -> Json<Value> {
    let list: Vec<Value> = INCIDENT_TYPES
        .iter()
        .map(|(id, vi, en)| json!({"id": id, "name_vi": vi, "name_en": en}))
        .collect();
    Json(json!(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyBody {
    ids: Vec<i64>,
    incident_type: String,
}

async fn classify_alerts(
    State(st): State<SoarState>,
    u: AuthUser,
    Json(b): Json<ClassifyBody>,
) -> R<StatusCode> {
    u.require_write()?;
    alerts_in_scope(&st, &u, &b.ids).await?;
    st.soar
        .classify_alerts(&u.actor(), &b.ids, &b.incident_type)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamBody {
    ids: Vec<i64>,
    team: Option<String>,
}

async fn assign_team(
    State(st): State<SoarState>,
    u: AuthUser,
    Json(b): Json<TeamBody>,
) -> R<StatusCode> {
    u.require_write()?;
    alerts_in_scope(&st, &u, &b.ids).await?;
    st.soar
        .assign_alerts_to_team(&u.actor(), &b.ids, b.team.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Suppression rules act on every agency's alerts: only unscoped writers manage them.
fn require_global_write(u: &AuthUser) -> R<()> {
    u.require_write()?;
    if u.scope.is_some() {
        return Err(ApiError::forbidden());
    }
    Ok(())
}

async fn list_suppressions(State(st): State<SoarState>, u: AuthUser) -> R<Json<Value>> {
    if u.scope.is_some() {
        return Err(ApiError::forbidden());
    }
    Ok(Json(json!(st.soar.suppressions().await?)))
}

async fn add_suppression(
    State(st): State<SoarState>,
    u: AuthUser,
    Json(b): Json<NewSuppression>,
) -> R<(StatusCode, Json<Value>)> {
    require_global_write(&u)?;
    Ok((
        StatusCode::CREATED,
        Json(json!(st.soar.add_suppression(&u.actor(), b).await?)),
    ))
}

async fn remove_suppression(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
) -> R<Json<Value>> {
    require_global_write(&u)?;
    Ok(Json(json!(
        st.soar.remove_suppression(&u.actor(), id).await?
    )))
}

// ---- agencies: systems, domains, contacts, tasks ----

async fn list_systems(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
) -> R<Json<Value>> {
    u.require_agency(Some(id))?;
    Ok(Json(json!(st.soar.agency_systems(id).await?)))
}

async fn add_system(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Json(b): Json<NewSystem>,
) -> R<(StatusCode, Json<Value>)> {
    u.require_admin()?;
    u.require_agency(Some(id))?;
    Ok((
        StatusCode::CREATED,
        Json(json!(st.soar.add_system(&u.actor(), id, b).await?)),
    ))
}

async fn get_system(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
) -> R<Json<Value>> {
    let sys = st.soar.system(id).await?;
    u.require_agency(Some(sys.agency_id))?;
    Ok(Json(json!(sys)))
}

async fn update_system(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Json(b): Json<NewSystem>,
) -> R<Json<Value>> {
    u.require_admin()?;
    let sys = st.soar.system(id).await?;
    u.require_agency(Some(sys.agency_id))?;
    Ok(Json(json!(st.soar.update_system(&u.actor(), id, b).await?)))
}

async fn list_domains(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
) -> R<Json<Value>> {
    u.require_agency(Some(id))?;
    Ok(Json(json!(st.soar.agency_domains(id).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainBody {
    domain: String,
}

async fn add_domain(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Json(b): Json<DomainBody>,
) -> R<(StatusCode, Json<Value>)> {
    u.require_admin()?;
    u.require_agency(Some(id))?;
    let d = st.soar.add_agency_domain(&u.actor(), id, &b.domain).await?;
    Ok((StatusCode::CREATED, Json(json!({"domain": d}))))
}

async fn remove_domain(
    State(st): State<SoarState>,
    u: AuthUser,
    Path((id, domain)): Path<(i64, String)>,
) -> R<StatusCode> {
    u.require_admin()?;
    u.require_agency(Some(id))?;
    st.soar
        .remove_agency_domain(&u.actor(), id, &domain)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn update_contact(
    State(st): State<SoarState>,
    u: AuthUser,
    Path((id, contact)): Path<(i64, i64)>,
    Json(b): Json<Contact>,
) -> R<Json<Value>> {
    u.require_admin()?;
    u.require_agency(Some(id))?;
    let task = st
        .soar
        .update_agency_contact(&u.actor(), id, contact, b)
        .await?;
    Ok(Json(json!({"task": task})))
}

async fn agency_tasks(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
) -> R<Json<Value>> {
    u.require_agency(Some(id))?;
    Ok(Json(json!(st.soar.agency_tasks(id).await?)))
}

async fn agency_task_done(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
) -> R<Json<Value>> {
    u.require_admin()?;
    let task = st.soar.agency_task(id).await?;
    u.require_agency(Some(task.agency_id))?;
    Ok(Json(json!(
        st.soar.complete_agency_task(&u.actor(), id).await?
    )))
}

// ---- incidents: R-11, templates ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriousBody {
    #[serde(default)]
    version: Option<i64>,
    #[serde(flatten)]
    checklist: SeriousChecklist,
}

async fn serious_checklist(
    State(st): State<SoarState>,
    u: AuthUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(b): Json<SeriousBody>,
) -> R<Response> {
    u.require_write()?;
    incident_in_scope(&st, &u, id).await?;
    let v = expected_version(&headers, b.version)?;
    let inc = st
        .soar
        .set_serious_checklist(&u.actor(), id, v, b.checklist)
        .await?;
    Ok(incident_json(&st, &inc))
}

async fn list_templates(State(st): State<SoarState>, _u: AuthUser) -> R<Json<Value>> {
    Ok(Json(json!(st.soar.templates().await?)))
}

async fn add_template(
    State(st): State<SoarState>,
    u: AuthUser,
    Json(b): Json<NewCaseTemplate>,
) -> R<(StatusCode, Json<Value>)> {
    u.require_admin()?;
    Ok((
        StatusCode::CREATED,
        Json(json!(st.soar.create_template(&u.actor(), b).await?)),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyBody {
    template_id: i64,
}

async fn apply_template(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Json(b): Json<ApplyBody>,
) -> R<(StatusCode, Json<Value>)> {
    u.require_write()?;
    incident_in_scope(&st, &u, id).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!(
            st.soar
                .apply_template(&u.actor(), id, b.template_id)
                .await?
        )),
    ))
}

// ---- evidence: captured event sets ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureBody {
    /// Query in the filter language (empty: every event of the range).
    #[serde(default)]
    query: String,
    /// Start (RFC 3339, date, epoch seconds or `now-24h`).
    from: String,
    /// End (exclusive).
    to: String,
    /// Why the set is kept.
    #[serde(default)]
    description: String,
}

/// Events read per store page while capturing.
const CAPTURE_PAGE: usize = 1000;

/// Runs the query over the event store, limited to the caller's agencies, and keeps the hits
/// (newest first, one ECS JSON object per line) as an evidence item: hashed at intake,
/// content-addressed, with a `captured` custody entry naming the query and the range.
async fn capture_events(
    State(st): State<SoarState>,
    u: AuthUser,
    Path(id): Path<i64>,
    Json(b): Json<CaptureBody>,
) -> R<(StatusCode, Json<Value>)> {
    u.require_write()?;
    incident_in_scope(&st, &u, id).await?;
    let Some(store) = st.events.get().cloned() else {
        return Err(ApiError::unavailable("this node has no event store"));
    };
    let (query, from, to) = crate::api::range_and_query(Some(&b.query), Some(&b.from), Some(&b.to))
        .map_err(ApiError::bad)?;
    let agencies = match &u.scope {
        None => None,
        Some(ids) => {
            let mut codes = Vec::with_capacity(ids.len());
            for &aid in ids {
                codes.push(st.soar.agency(aid).await?.code);
            }
            Some(codes)
        }
    };
    let scoped = crate::api::Reader { agencies }.scoped(query);
    let mut w = st
        .soar
        .evidence_writer(st.config.max_evidence_bytes)
        .await?;
    let mut count: u64 = 0;
    if let Some(query) = scoped {
        let mut cursor = None;
        loop {
            let page = store
                .search(canh_store::SearchRequest {
                    query: query.clone(),
                    from,
                    to,
                    limit: CAPTURE_PAGE,
                    cursor,
                })
                .await
                .map_err(|e| match e {
                    canh_store::StoreError::Invalid(_) | canh_store::StoreError::Query(_) => {
                        ApiError::bad(e.to_string())
                    }
                    other => {
                        tracing::error!(error = %other, "event capture failed");
                        ApiError::unavailable("event store unavailable")
                    }
                })?;
            let mut buf = Vec::with_capacity(page.hits.len() * 512);
            for hit in &page.hits {
                serde_json::to_writer(&mut buf, &hit.event)
                    .map_err(|e| SoarError::Internal(format!("event to JSON: {e}")))?;
                buf.push(b'\n');
            }
            count += page.hits.len() as u64;
            w.write(&buf).await?;
            match page.next_cursor {
                Some(c) if !page.hits.is_empty() => cursor = Some(c),
                _ => break,
            }
        }
    }
    let filename = format!(
        "events-{}-{}.ndjson",
        from.format("%Y%m%dT%H%M%SZ"),
        to.format("%Y%m%dT%H%M%SZ")
    );
    let detail = format!(
        "event set: query {:?}, from {} to {}, {count} event(s), from {}",
        b.query,
        from.to_rfc3339(),
        to.to_rfc3339(),
        u.source
    );
    let description = if b.description.trim().is_empty() {
        format!("captured events: {}", b.query)
    } else {
        b.description.trim().to_owned()
    };
    let ev = st
        .soar
        .finish_evidence_as(
            &u.actor(),
            id,
            &filename,
            &description,
            w,
            "captured",
            &detail,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"evidence": ev, "events": count})),
    ))
}
