//! The HTTP port: API under `/api/v1`, health and metrics, and every HTTP ingest API.

use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

/// What every handler can reach.
pub struct AppState {
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The node's configuration.
    pub config: crate::Config,
    /// The ingest pipeline (and through it the store).
    pub pipeline: Arc<Pipeline>,
    /// Incident handling: users, sessions and agencies (the search API's login and scope).
    pub soar: crate::soar::SoarState,
    /// Bearer token of the local command line, written to `<data-dir>/server.token` (mode
    /// 0600): whoever can read the data directory can already read every event.
    pub local_token: String,
    /// The rule catalogue of live detection (`None` when detection is off).
    pub rules: Option<Arc<crate::rules::RuleCatalogue>>,
}

impl axum::extract::FromRef<Arc<AppState>> for crate::soar::SoarState {
    fn from_ref(st: &Arc<AppState>) -> Self {
        st.soar.clone()
    }
}

/// The node's HTTP router.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.server.max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(crate::api::routes())
        .merge(crate::rules::routes())
        .merge(crate::ingest_http::routes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn health(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "wal_pending_events": st.pipeline.store().pending(),
    }))
}

async fn metrics(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    st.metrics.set(
        "canh_store_wal_pending_events",
        &[],
        st.pipeline.store().pending() as f64,
    );
    let (waits, waited_us) = st.pipeline.store().backpressure();
    st.metrics
        .set("canh_store_backpressure_waits_total", &[], waits as f64);
    st.metrics.set(
        "canh_store_backpressure_seconds_total",
        &[],
        waited_us as f64 / 1e6,
    );
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
}
