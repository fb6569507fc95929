//! Probes and metrics: liveness, readiness (Redis answers) and the
//! Prometheus scrape, none behind a credential.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{ApiError, AppState};

pub(super) async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

pub(super) async fn readyz(
    State(state): State<Arc<AppState>>,
) -> Result<impl IntoResponse, ApiError> {
    state.store.ping().await?;
    Ok(Json(serde_json::json!({"status": "ready"})))
}

/// `GET /metrics` (no credential: serve it on an internal address).
pub(super) async fn render_metrics(State(state): State<Arc<AppState>>) -> Response {
    crate::metrics::response(&state.metrics)
}
