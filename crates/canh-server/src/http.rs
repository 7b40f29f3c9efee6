//! The HTTP port: API under `/api/v1`, health and metrics, and every HTTP ingest API.

use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
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
}

/// The node's HTTP router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn health() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

async fn metrics(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render())
}
