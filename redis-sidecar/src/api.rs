//! The `/v1` HTTP API. Every reply is JSON; every error is an
//! [`ErrorBody`] with a stable code.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use portero_core::reject::session_hash;
use portero_wire::{
    AccessClaims, CreateSessionRequest, CreateSessionResponse, EndSessionResponse, ErrorBody,
    LookupRequest, LookupResponse, RevocationEvent, RevocationFeed, RevokeUserResponse,
    SessionList, SessionVerdict, UpdateUserRequest, UserView,
};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::keys::Keys;
use crate::metrics::{Metrics, StoreFailure};
use crate::store::{
    is_session_token, random_token, CreateOutcome, IssuedToken, Lifetimes, Lookup, RotationRules,
    SessionRecord, Store, StoreError,
};

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

pub fn router(state: Arc<AppState>) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .route(portero_wire::LOOKUP_PATH, post(lookup_session))
        .route(portero_wire::REVOCATIONS_PATH, get(revocations))
        .route(portero_wire::SESSIONS_PATH, post(create_session))
        .route("/v1/sessions/{handle}", delete(end_session))
        .route("/v1/users/{user_id}", get(get_user).put(update_user))
        .route("/v1/users/{user_id}/revoke", post(revoke_user))
        .route("/v1/users/{user_id}/sessions", get(list_sessions))
        .route(portero_wire::JWKS_PATH, get(jwks))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
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

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Filter,
    Admin,
    /// Either: ending one named session (logout by the app, or the filter
    /// ending a session whose client no longer matches its binding).
    FilterOrAdmin,
}

/// A caller whose credential allows the role `R`. As an extractor in a
/// handler's signature, it is checked before the handler runs (and before
/// its body is read): no handler can forget it.
pub struct Caller<R: CallerRole>(PhantomData<R>);

/// The role a [`Caller`] must have.
pub trait CallerRole: Send + Sync {
    const ROLE: Role;
}

/// The filter: look-ups and the revocation feed.
pub struct Filter;
/// The apps' back ends: logins, users, revocations.
pub struct Admin;
/// Either (ending one named session).
pub struct FilterOrAdmin;

impl CallerRole for Filter {
    const ROLE: Role = Role::Filter;
}
impl CallerRole for Admin {
    const ROLE: Role = Role::Admin;
}
impl CallerRole for FilterOrAdmin {
    const ROLE: Role = Role::FilterOrAdmin;
}

impl<R: CallerRole> FromRequestParts<Arc<AppState>> for Caller<R> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        authorize(state, &parts.headers, R::ROLE).map(|()| Caller(PhantomData))
    }
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
        (Role::FilterOrAdmin, true, _) | (Role::FilterOrAdmin, _, true) => Ok(()),
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
        .is_some_and(is_json_media_type);
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

/// `application/json`, in any case, with or without parameters
/// (RFC 9110 §8.3.1: type and subtype are case-insensitive).
fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
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

/// Roles and permissions travel upstream comma-separated.
fn check_names(field: &str, names: &[String]) -> Result<(), ApiError> {
    if names.len() > 64 {
        return Err(ApiError::bad_request(format!("at most 64 `{field}`")));
    }
    for name in names {
        if name.is_empty() || name.contains(',') || name.contains(' ') {
            return Err(ApiError::bad_request(format!(
                "each of `{field}` must be non-empty, without `,` or spaces"
            )));
        }
        check_header_safe(field, name, 128)?;
    }
    Ok(())
}

fn check_user_id(user_id: &str) -> Result<(), ApiError> {
    if user_id.is_empty() {
        return Err(ApiError::bad_request("`user_id` is required"));
    }
    check_header_safe("user_id", user_id, 256)
}

/// Mints an access token for a session.
fn issue_token(
    state: &AppState,
    user_id: &str,
    handle: &str,
    token_version: u64,
    session_expires_at: u64,
    now: u64,
) -> Result<IssuedToken, ApiError> {
    let jti = random_token();
    let expires_at = (now + state.access_ttl).min(session_expires_at);
    let claims = AccessClaims {
        iss: state.issuer.clone(),
        aud: state.audience.clone(),
        sub: user_id.to_string(),
        sid: handle.to_string(),
        jti: jti.clone(),
        iat: now,
        nbf: now,
        exp: expires_at,
        ver: token_version,
    };
    let token = state
        .keys
        .current()
        .sign(&claims)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "signing_failed", e))?;
    Ok(IssuedToken {
        token,
        jti,
        expires_at,
    })
}

fn validate_create(req: &CreateSessionRequest) -> Result<(), ApiError> {
    check_user_id(&req.user_id)?;
    check_header_safe("email", &req.email, 320)?;
    check_header_safe("user_agent", &req.user_agent, 1024)?;
    check_names("roles", &req.roles)?;
    if let Some(permissions) = &req.permissions {
        check_names("permissions", permissions)?;
    }
    if !req.client_ip.is_empty() && req.client_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(ApiError::bad_request("`client_ip` must be an IP address"));
    }
    Ok(())
}

/// `POST /v1/sessions` (admin): start a session.
async fn create_session(
    State(state): State<Arc<AppState>>,
    _caller: Caller<Admin>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CreateSessionResponse>), ApiError> {
    let req: CreateSessionRequest = parse_json(&headers, &body)?;
    validate_create(&req)?;
    let now = now();
    let token_version = state.store.token_version(&req.user_id).await?;
    // A fresh id at every login: no fixation. Collisions of 256-bit ids are
    // not expected; the loop only keeps `create` honest if one happened.
    for _ in 0..3 {
        let session_id = state.store.new_session_id(&req.user_id);
        let handle = state.store.handle_of(&session_id);
        let expires_at = now + state.lifetimes.absolute;
        let token = issue_token(
            &state,
            &req.user_id,
            &handle,
            token_version,
            expires_at,
            now,
        )?;
        let record = SessionRecord {
            user_id: req.user_id.clone(),
            email: req.email.clone(),
            created_at: now,
            expires_at,
            client_ip: req.client_ip.clone(),
            user_agent: req.user_agent.clone(),
        };
        let stored = state
            .store
            .create(
                &handle,
                &record,
                &req.roles,
                req.permissions.as_deref(),
                &token,
                state.lifetimes,
                now,
            )
            .await?;
        match stored {
            CreateOutcome::Created => {
                // The login rewrote the user's roles: other sessions' cached
                // views must pick them up.
                revoked(&state, Some(&req.user_id), None).await?;
                tracing::info!(user = %req.user_id, session_hash = %session_hash(&handle), "session created");
                return Ok((
                    StatusCode::CREATED,
                    Json(CreateSessionResponse {
                        session_id,
                        session_handle: handle,
                        access_token: token.token,
                        access_expires_at: token.expires_at,
                        expires_at,
                    }),
                ));
            }
            CreateOutcome::Refused(verdict) => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    verdict.code(),
                    "the user is banned",
                ))
            }
            CreateOutcome::IdTaken => continue,
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
    _caller: Caller<Filter>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<LookupResponse>, ApiError> {
    let req: LookupRequest = parse_json(&headers, &body)?;
    // A well-formed request naming something that cannot be a session is a
    // definite "no such session" (the client's credential is bad), not a
    // malformed call (which the filter would have to treat as trouble).
    let no_such_session = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            SessionVerdict::SessionNotFound.code(),
            "not a session id or handle",
        )
    };
    let handle = match (&req.session_id, &req.session_handle) {
        (Some(id), None) => {
            if !is_session_token(id) {
                return Err(no_such_session());
            }
            state.store.handle_of(id)
        }
        // A handle is no secret to its holder's apps (it is the token's
        // `sid`, the admin API's name for a session): a look-up by handle
        // must also prove possession of the token, by its `jti`, or the
        // filter credential plus a handle would read the live access token.
        (None, Some(handle)) => {
            if req.presented_jti.as_deref().is_none_or(str::is_empty) {
                return Err(ApiError::bad_request(
                    "a look-up by `session_handle` must present the token's `presented_jti`",
                ));
            }
            if !is_session_token(handle) {
                return Err(no_such_session());
            }
            handle.clone()
        }
        _ => {
            return Err(ApiError::bad_request(
                "exactly one of `session_id` and `session_handle` is required",
            ))
        }
    };
    if let Some(jti) = &req.presented_jti {
        check_header_safe("presented_jti", jti, 128)?;
    }
    let presented = req.presented_jti.as_deref();
    let found = state
        .store
        .lookup(&handle, presented, &state.rotation)
        .await?;
    let (mut view, needs_rotation, token_version, now) = match found {
        Lookup::Found {
            view,
            needs_rotation,
            token_version,
            now,
        } => (view, needs_rotation, token_version, now),
        Lookup::Refused(verdict) => {
            if verdict == SessionVerdict::TokenReplayed {
                let revoke = state.rotation.revoke_on_replay;
                tracing::warn!(session_hash = %session_hash(&handle), revoked = revoke, "rotated-away token replayed");
                if revoke {
                    revoked(&state, None, Some(&handle)).await?;
                }
            }
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                verdict.code(),
                "no usable session",
            ));
        }
    };
    let mut rotated = false;
    if needs_rotation {
        // The session is alive but its access token has expired: rotate it.
        // Concurrent callers all sign a candidate; the script keeps one.
        let new = issue_token(
            &state,
            &view.user_id,
            &handle,
            token_version,
            view.expires_at,
            now,
        )?;
        match state
            .store
            .rotate(&mut view, &new, presented, &state.rotation)
            .await?
        {
            Ok(did_rotate) => rotated = did_rotate,
            Err(verdict) => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    verdict.code(),
                    "no usable session",
                ))
            }
        }
        if rotated {
            tracing::info!(session_hash = %session_hash(&handle), rotations = view.rotations, "access token rotated");
        }
    }
    Ok(Json(LookupResponse {
        session: *view,
        rotated,
    }))
}

/// `DELETE /v1/sessions/{handle}` (admin or filter): end a session.
async fn end_session(
    State(state): State<Arc<AppState>>,
    _caller: Caller<FilterOrAdmin>,
    Path(handle): Path<String>,
) -> Result<Json<EndSessionResponse>, ApiError> {
    if !is_session_token(&handle) {
        return Err(ApiError::bad_request("not a session handle"));
    }
    let ended = state.store.end(&handle).await?;
    if ended {
        revoked(&state, None, Some(&handle)).await?;
    }
    tracing::info!(session_hash = %session_hash(&handle), ended, "session ended");
    Ok(Json(EndSessionResponse { ended }))
}

/// `GET /v1/users/{user_id}` (admin).
async fn get_user(
    State(state): State<Arc<AppState>>,
    _caller: Caller<Admin>,
    Path(user_id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    check_user_id(&user_id)?;
    state
        .store
        .user(&user_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "user_not_found", "no such user"))
}

/// `PUT /v1/users/{user_id}` (admin): status, roles, permissions. Takes
/// effect on the user's next request, on every session.
async fn update_user(
    State(state): State<Arc<AppState>>,
    _caller: Caller<Admin>,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    body: Bytes,
) -> Result<Json<UserView>, ApiError> {
    check_user_id(&user_id)?;
    let req: UpdateUserRequest = parse_json(&headers, &body)?;
    if let Some(roles) = &req.roles {
        check_names("roles", roles)?;
    }
    if let Some(permissions) = &req.permissions {
        check_names("permissions", permissions)?;
    }
    let user = state
        .store
        .update_user(
            &user_id,
            req.status,
            req.roles.as_deref(),
            req.permissions.as_deref(),
        )
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "user_not_found", "no such user"))?;
    revoked(&state, Some(&user_id), None).await?;
    tracing::info!(user = %user_id, status = ?user.status, "user updated");
    Ok(Json(user))
}

/// `POST /v1/users/{user_id}/revoke` (admin): end every session of the user.
async fn revoke_user(
    State(state): State<Arc<AppState>>,
    _caller: Caller<Admin>,
    Path(user_id): Path<String>,
) -> Result<Json<RevokeUserResponse>, ApiError> {
    check_user_id(&user_id)?;
    let (ended, token_version) = state.store.revoke_user(&user_id).await?;
    revoked(&state, Some(&user_id), None).await?;
    tracing::info!(user = %user_id, ended, token_version, "all sessions revoked");
    Ok(Json(RevokeUserResponse {
        ended,
        token_version,
    }))
}

/// `GET /v1/users/{user_id}/sessions` (admin).
async fn list_sessions(
    State(state): State<Arc<AppState>>,
    _caller: Caller<Admin>,
    Path(user_id): Path<String>,
) -> Result<Json<SessionList>, ApiError> {
    check_user_id(&user_id)?;
    let sessions = state.store.sessions_of(&user_id, now()).await?;
    Ok(Json(SessionList { sessions }))
}

/// `GET /.well-known/jwks.json`: public keys, no credential needed.
async fn jwks(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        // Short: keys rotate (see `keys`).
        [("cache-control", "public, max-age=60")],
        Json(state.keys.current().jwks()),
    )
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    state.store.ping().await?;
    Ok(Json(serde_json::json!({"status": "ready"})))
}

/// Reports a change to the revocation feed, after it is made. If the feed
/// cannot be written the caller gets a 503 and retries (every change is
/// idempotent); until then filters' cached views may lag by their TTL.
async fn revoked(
    state: &AppState,
    user_id: Option<&str>,
    session_handle: Option<&str>,
) -> Result<(), ApiError> {
    let event = RevocationEvent {
        user_id: user_id.map(str::to_string),
        session_handle: session_handle.map(str::to_string),
    };
    state.store.append_revocation(&event).await?;
    Ok(())
}

#[derive(serde::Deserialize)]
struct FeedQuery {
    after: Option<String>,
}

/// Most events in one feed reply.
const FEED_PAGE: usize = 1000;

/// `GET /v1/revocations[?after=<cursor>]` (filter): what changed since.
async fn revocations(
    State(state): State<Arc<AppState>>,
    _caller: Caller<Filter>,
    axum::extract::Query(query): axum::extract::Query<FeedQuery>,
) -> Result<Json<RevocationFeed>, ApiError> {
    if let Some(after) = &query.after {
        if crate::store::stream_id(after).is_none() {
            return Err(ApiError::bad_request(
                "`after` must be a cursor like 1700000000000-0",
            ));
        }
    }
    let feed = state
        .store
        .read_revocations(query.after.as_deref(), FEED_PAGE)
        .await?;
    Ok(Json(feed))
}

/// `GET /metrics` (no credential: serve it on an internal address).
async fn render_metrics(State(state): State<Arc<AppState>>) -> Response {
    crate::metrics::response(&state.metrics)
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

#[cfg(test)]
mod media_type_tests {
    #[test]
    fn json_media_type_is_case_insensitive_and_exact() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
        ] {
            assert!(super::is_json_media_type(ok), "{ok}");
        }
        for bad in ["application/jsonx", "text/json", "application/json-seq", ""] {
            assert!(!super::is_json_media_type(bad), "{bad}");
        }
    }
}
