//! Probes and metrics: liveness, readiness (Redis answers) and the
//! Prometheus scrape, none behind a credential.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::openapi::{InternalError, StoreUnavailable};
use super::{ApiError, AppState};

/// A probe's answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Health {
    /// `ok` from `/healthz`, `ready` from `/readyz`.
    #[schema(example = "ok")]
    status: String,
}

/// Liveness: the process answers.
///
/// No credential.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Health))
)]
pub(super) async fn healthz() -> impl IntoResponse {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: Redis answers a `PING`.
///
/// No credential.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`", body = Health),
        (status = 503, response = StoreUnavailable),
    )
)]
pub(super) async fn readyz(
    State(state): State<Arc<AppState>>,
) -> Result<impl IntoResponse, ApiError> {
    state.store.ping().await?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}

/// The sidecar's metrics, for Prometheus.
///
/// No credential: serve the API on an address only the filter's Envoys, the
/// apps and the monitoring reach.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses(
        (status = 200, description = "Prometheus's OpenMetrics text", body = String,
         content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn render_metrics(State(state): State<Arc<AppState>>) -> Response {
    crate::metrics::response(&state.metrics)
}
