//! The `/v1` HTTP API. Every reply is JSON; every error is an
//! [`ErrorBody`] with a stable code.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use portero_wire::{
    AccessClaims, CreateSessionRequest, CreateSessionResponse, EndSessionResponse, ErrorBody,
    LookupRequest, LookupResponse, SESSION_NOT_FOUND,
};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::keys::SigningKey;
use crate::store::{new_session_id, Lifetimes, SessionRecord, Store, StoreError};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub struct AppState {
    pub store: Store,
    pub signing_key: SigningKey,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: u64,
    pub lifetimes: Lifetimes,
    /// SHA-256 of the credentials, compared in constant time.
    pub filter_token: [u8; 32],
    pub admin_token: [u8; 32],
}

pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(portero_wire::LOOKUP_PATH, post(lookup_session))
        .route(portero_wire::SESSIONS_PATH, post(create_session))
        .route("/v1/sessions/{handle}", delete(end_session))
        .route(portero_wire::JWKS_PATH, get(jwks))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_string(),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Filter,
    Admin,
}

/// Checks the caller's `Authorization: Bearer` credential for `role`.
fn authorize(state: &AppState, headers: &HeaderMap, role: Role) -> Result<(), ApiError> {
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(token_digest);
    let Some(presented) = presented else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing `Authorization: Bearer <credential>`",
        ));
    };
    let is_filter: bool = presented.ct_eq(&state.filter_token).into();
    let is_admin: bool = presented.ct_eq(&state.admin_token).into();
    match (role, is_filter, is_admin) {
        (Role::Filter, true, _) | (Role::Admin, _, true) => Ok(()),
        (_, true, _) | (_, _, true) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this credential may not call this route",
        )),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown credential",
        )),
    }
}

/// Parses a JSON body with a clear 400 on failure.
fn parse_json<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, ApiError> {
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected `content-type: application/json`",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A value that will travel in an HTTP header to upstreams.
fn check_header_safe(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError::bad_request(format!(
            "`{field}` longer than {max} bytes"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "`{field}` contains control characters"
        )));
    }
    Ok(())
}

fn validate_create(req: &CreateSessionRequest) -> Result<(), ApiError> {
    if req.user_id.is_empty() {
        return Err(ApiError::bad_request("`user_id` is required"));
    }
    check_header_safe("user_id", &req.user_id, 256)?;
    check_header_safe("email", &req.email, 320)?;
    check_header_safe("user_agent", &req.user_agent, 1024)?;
    if req.roles.len() > 64 {
        return Err(ApiError::bad_request("at most 64 `roles`"));
    }
    for role in &req.roles {
        if role.is_empty() || role.contains(',') || role.contains(' ') {
            return Err(ApiError::bad_request(
                "each role must be non-empty, without `,` or spaces",
            ));
        }
        check_header_safe("roles", role, 128)?;
    }
    if !req.client_ip.is_empty() && req.client_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(ApiError::bad_request("`client_ip` must be an IP address"));
    }
    Ok(())
}

/// `POST /v1/sessions` (admin): start a session.
async fn create_session(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CreateSessionResponse>), ApiError> {
    authorize(&state, &headers, Role::Admin)?;
    let req: CreateSessionRequest = parse_json(&headers, &body)?;
    validate_create(&req)?;
    let now = now();
    // A fresh id at every login: no fixation. Collisions of 256-bit ids are
    // not expected; the loop only keeps `create` honest if one happened.
    for _ in 0..3 {
        let session_id = new_session_id();
        let handle = state.store.handle_of(&session_id);
        let access_jti = new_session_id();
        let expires_at = now + state.lifetimes.absolute;
        let access_expires_at = (now + state.access_ttl).min(expires_at);
        let claims = AccessClaims {
            iss: state.issuer.clone(),
            aud: state.audience.clone(),
            sub: req.user_id.clone(),
            sid: handle.clone(),
            jti: access_jti.clone(),
            iat: now,
            nbf: now,
            exp: access_expires_at,
            ver: 0,
        };
        let access_token = state
            .signing_key
            .sign(&claims)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "signing_failed", e))?;
        let record = SessionRecord {
            user_id: req.user_id.clone(),
            email: req.email.clone(),
            roles: req.roles.clone(),
            created_at: now,
            expires_at,
            client_ip: req.client_ip.clone(),
            user_agent: req.user_agent.clone(),
            access_token: access_token.clone(),
            access_jti,
            access_expires_at,
        };
        if state
            .store
            .create(&handle, &record, state.lifetimes, now)
            .await?
        {
            tracing::info!(user = %req.user_id, session = %handle, "session created");
            return Ok((
                StatusCode::CREATED,
                Json(CreateSessionResponse {
                    session_id,
                    session_handle: handle,
                    access_token,
                    access_expires_at,
                    expires_at,
                }),
            ));
        }
    }
    Err(ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "session_id_collision",
        "could not allocate a session id",
    ))
}

/// `POST /v1/sessions/lookup` (filter): the hot path.
async fn lookup_session(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<LookupResponse>, ApiError> {
    authorize(&state, &headers, Role::Filter)?;
    let req: LookupRequest = parse_json(&headers, &body)?;
    let handle = match &req {
        LookupRequest::SessionId(id) => {
            if !portero_wire::is_session_token_shape(id) {
                return Err(ApiError::bad_request("`session_id` is not a session id"));
            }
            state.store.handle_of(id)
        }
        LookupRequest::SessionHandle(handle) => {
            if !portero_wire::is_session_token_shape(handle) {
                return Err(ApiError::bad_request(
                    "`session_handle` is not a session handle",
                ));
            }
            handle.clone()
        }
    };
    match state.store.lookup(&handle, now()).await? {
        Some(session) => Ok(Json(LookupResponse { session })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            SESSION_NOT_FOUND,
            "no live session",
        )),
    }
}

/// `DELETE /v1/sessions/{handle}` (admin): end a session (logout).
async fn end_session(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(handle): Path<String>,
) -> Result<Json<EndSessionResponse>, ApiError> {
    authorize(&state, &headers, Role::Admin)?;
    if !portero_wire::is_session_token_shape(&handle) {
        return Err(ApiError::bad_request("not a session handle"));
    }
    let ended = state.store.end(&handle).await?;
    tracing::info!(session = %handle, ended, "session ended");
    Ok(Json(EndSessionResponse { ended }))
}

/// `GET /.well-known/jwks.json`: public keys, no credential needed.
async fn jwks(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [("cache-control", "public, max-age=300")],
        Json(state.signing_key.jwks()),
    )
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    state.store.ping().await?;
    Ok(Json(serde_json::json!({"status": "ready"})))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_such_route", "no such route")
}
