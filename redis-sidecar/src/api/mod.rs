//! The `/v1` HTTP API. Every reply is JSON; every error is an
//! [`ErrorBody`] with a stable code.
//!
//! By route group: `sessions` (login, look-up, end), `users`, `tokens`
//! (minting access tokens, the JWKS), `feed` (the revocation feed) and
//! `health` (probes and metrics); `auth` checks callers' credentials and
//! `input` what they send. This file holds the state, the router and the
//! error reply they all share; `openapi` the API's OpenAPI document, made
//! from the same route list as the router (`routes`), so a route served is a
//! route documented.

mod auth;
mod feed;
mod health;
mod input;
mod openapi;
mod sessions;
mod tokens;
mod users;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use portero_wire::ErrorBody;
use sha2::{Digest, Sha256};

use crate::keys::Keys;
use crate::metrics::{Metrics, StoreFailure};
use crate::store::{Lifetimes, RotationRules, Store, StoreError};

pub use auth::{Admin, Caller, CallerRole, Filter, FilterOrAdmin, Role};
pub(crate) use feed::revoked;
use input::is_json_media_type;
pub use openapi::{openapi, openapi_json};
pub(crate) use sessions::start_session;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The target of the route groups' log lines: this module's, as before the
/// API was split into files (log filters and searches name it).
const LOG_TARGET: &str = module_path!();

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub struct AppState {
    pub store: Store,
    /// The signing keys (the active one signs; all are published).
    pub keys: Keys,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: u64,
    pub lifetimes: Lifetimes,
    /// How a rotated-away access token is treated.
    pub rotation: RotationRules,
    /// SHA-256 of the credentials, compared in constant time.
    pub filter_token: [u8; 32],
    pub admin_token: [u8; 32],
    pub metrics: Arc<Metrics>,
}

pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Every route of the API, each a handler whose `#[utoipa::path]` names its
/// method, path, credential, bodies and answers: the one list both the
/// router and the OpenAPI document are made from. Add routes here only
/// (never with `Router::route`): redis-sidecar/tests/openapi.rs checks it.
fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(sessions::create_session))
        .routes(routes!(sessions::lookup_session))
        .routes(routes!(sessions::end_session))
        .routes(routes!(users::get_user, users::update_user))
        .routes(routes!(users::revoke_user))
        .routes(routes!(users::list_sessions))
        .routes(routes!(feed::revocations))
        .routes(routes!(tokens::jwks))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::render_metrics))
}

pub fn router(state: Arc<AppState>) -> Router {
    let metrics = state.metrics.clone();
    let (routes, _) = routes().split_for_parts();
    routes
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::track,
        ))
        .with_state(state)
}

/// An error reply.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_string(),
            message: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        if matches!(self.code, "store_unavailable" | "store_not_replicated") {
            response.extensions_mut().insert(StoreFailure);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        // Either way a 503: the caller retries, and the filter treats it as
        // store trouble (never a logout).
        let code = match e {
            StoreError::NotReplicated { .. } => "store_not_replicated",
            StoreError::Unavailable(_) | StoreError::Corrupt(_) | StoreError::UserRecordMissing => {
                "store_unavailable"
            }
        };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, e.to_string())
    }
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Errors made by axum itself (a body over the limit, a path that does not
/// parse) are plain text; every error of this API is an [`ErrorBody`].
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_media_type);
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            format!("request body over {MAX_BODY_BYTES} bytes"),
        ),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "method not allowed".into()),
        _ if status.is_client_error() => ("bad_request", "malformed request".into()),
        _ => ("internal_error", "internal error".into()),
    };
    let mut json = ApiError::new(status, code, message).into_response();
    for (name, value) in response.headers() {
        if name != "content-type" && name != "content-length" {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_such_route", "no such route")
}
