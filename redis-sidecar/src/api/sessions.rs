//! The session routes: login (`POST /v1/sessions`), the filter's look-up
//! (rotating an expired access token on the way) and ending a session.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use portero_core::reject::session_hash;
use portero_wire::{
    CreateSessionRequest, CreateSessionResponse, EndSessionResponse, LookupRequest, LookupResponse,
    SessionVerdict, SessionView,
};

use crate::store::{is_session_token, CreateOutcome, Lookup, SessionRecord};

use super::feed::revoked;
use super::input::{check_header_safe, check_names, check_user_id, parse_json};
use super::openapi::{
    BadRequest, LoginFailed, LoginRefused, PayloadTooLarge, SessionRefused, SigningFailed,
    StoreTrouble, Unauthorized, UnsupportedMediaType, WrongRole,
};
use super::tokens::issue_token;
use super::{now, Admin, ApiError, AppState, Caller, Filter, FilterOrAdmin, LOG_TARGET};

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

/// Start a session: a login.
///
/// The app has checked who the user is. The login makes the user record if
/// there is none (status `active`), replaces its roles with `roles` (and its
/// permissions with `permissions`, when given), stores a session under a new
/// id, signs its first access token, and appends the user to the revocation
/// feed. `session_id` goes into the cookie (through the filter) and nowhere
/// else. Admin credential.
#[utoipa::path(
    post,
    path = portero_wire::SESSIONS_PATH,
    tag = "sessions",
    security(("admin" = [])),
    request_body = CreateSessionRequest,
    responses(
        (status = 201, description = "The new session", body = CreateSessionResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = LoginRefused),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = LoginFailed),
        (status = 503, response = StoreTrouble),
    )
)]
pub(super) async fn create_session(
    State(state): State<Arc<AppState>>,
    _caller: Caller<Admin>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CreateSessionResponse>), ApiError> {
    let req: CreateSessionRequest = parse_json(&headers, &body)?;
    let created = start_session(&state, &req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// A login, however the user was recognised (an app's own login, or the
/// OIDC callback): checks `req`, and stores the session and its first
/// access token as [`create_session`] says.
pub(crate) async fn start_session(
    state: &AppState,
    req: &CreateSessionRequest,
) -> Result<CreateSessionResponse, ApiError> {
    validate_create(req)?;
    let now = now();
    let token_version = state.store.token_version(&req.user_id).await?;
    // A fresh id at every login: no fixation. Collisions of 256-bit ids are
    // not expected; the loop only keeps `create` honest if one happened.
    for _ in 0..3 {
        let session_id = state.store.new_session_id(&req.user_id);
        let handle = state.store.handle_of(&session_id);
        let expires_at = now + state.lifetimes.absolute;
        let token = issue_token(state, &req.user_id, &handle, token_version, expires_at, now)?;
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
                revoked(state, Some(&req.user_id), None).await?;
                tracing::info!(target: LOG_TARGET, user = %req.user_id, session_hash = %session_hash(&handle), "session created");
                return Ok(CreateSessionResponse {
                    session_id,
                    session_handle: handle,
                    access_token: token.token,
                    access_expires_at: token.expires_at,
                    expires_at,
                });
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

/// Look a session up: the filter's hot path.
///
/// Cookie clients are looked up by `session_id`, bearer clients by
/// `session_handle` (the token's `sid`) with the `presented_jti` of their
/// token. The look-up renews the idle expiry, checks the absolute expiry,
/// the user's token version and ban, and (by handle) whether the token is
/// the session's current one or its still exchangeable predecessor; an
/// expired access token is rotated first. A value that cannot be a session is
/// a `404 session_not_found`, not a `400`. Filter credential.
#[utoipa::path(
    post,
    path = portero_wire::LOOKUP_PATH,
    tag = "sessions",
    security(("filter" = [])),
    request_body = LookupRequest,
    responses(
        (status = 200, description = "The session, its user's standing now and its current access token", body = LookupResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = WrongRole),
        (status = 404, response = SessionRefused),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = SigningFailed),
        (status = 503, response = StoreTrouble),
    )
)]
pub(super) async fn lookup_session(
    State(state): State<Arc<AppState>>,
    _caller: Caller<Filter>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<LookupResponse>, ApiError> {
    let req: LookupRequest = parse_json(&headers, &body)?;
    let handle = handle_to_look_up(&state, &req)?;
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
        Lookup::Refused(verdict) => return Err(refuse_lookup(&state, &handle, verdict).await),
    };
    let mut rotated = false;
    if needs_rotation {
        rotated =
            rotate_expired_token(&state, &handle, &mut view, token_version, now, presented).await?;
    }
    Ok(Json(LookupResponse {
        session: *view,
        rotated,
    }))
}

/// The handle a look-up names, by session id or by handle (then with the
/// token's `jti`).
fn handle_to_look_up(state: &AppState, req: &LookupRequest) -> Result<String, ApiError> {
    match (&req.session_id, &req.session_handle) {
        (Some(id), None) => {
            if !is_session_token(id) {
                return Err(no_such_session());
            }
            Ok(state.store.handle_of(id))
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
            Ok(handle.clone())
        }
        _ => Err(ApiError::bad_request(
            "exactly one of `session_id` and `session_handle` is required",
        )),
    }
}

/// A well-formed request naming something that cannot be a session is a
/// definite "no such session" (the client's credential is bad), not a
/// malformed call (which the filter would have to treat as trouble).
fn no_such_session() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        SessionVerdict::SessionNotFound.code(),
        "not a session id or handle",
    )
}

/// The reply to a refused look-up. A rotated-away token replayed is logged,
/// and ends its session first when the rules say so.
async fn refuse_lookup(state: &AppState, handle: &str, verdict: SessionVerdict) -> ApiError {
    if verdict == SessionVerdict::TokenReplayed {
        let revoke = state.rotation.revoke_on_replay;
        tracing::warn!(target: LOG_TARGET, session_hash = %session_hash(handle), revoked = revoke, "rotated-away token replayed");
        if revoke {
            if let Err(e) = revoked(state, None, Some(handle)).await {
                return e;
            }
        }
    }
    ApiError::new(StatusCode::NOT_FOUND, verdict.code(), "no usable session")
}

/// The session is alive but its access token has expired: rotate it.
/// Concurrent callers all sign a candidate; the script keeps one. Whether
/// this call's candidate became the session's token.
async fn rotate_expired_token(
    state: &AppState,
    handle: &str,
    view: &mut SessionView,
    token_version: u64,
    now: u64,
    presented: Option<&str>,
) -> Result<bool, ApiError> {
    let new = issue_token(
        state,
        &view.user_id,
        handle,
        token_version,
        view.expires_at,
        now,
    )?;
    let rotated = match state
        .store
        .rotate(view, &new, presented, &state.rotation)
        .await?
    {
        Ok(did_rotate) => did_rotate,
        Err(verdict) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                verdict.code(),
                "no usable session",
            ))
        }
    };
    if rotated {
        tracing::info!(target: LOG_TARGET, session_hash = %session_hash(handle), rotations = view.rotations, "access token rotated");
    }
    Ok(rotated)
}

/// End one session: a logout.
///
/// The app's logout (the handle is the request's `x-portero-session`), an
/// operator's, or the filter's when a binding mismatch ends the session.
/// Idempotent: `ended` is false when there was no such session. An ended
/// session is appended to the revocation feed. Filter or admin credential.
#[utoipa::path(
    delete,
    path = "/v1/sessions/{handle}",
    tag = "sessions",
    security(("filter" = []), ("admin" = [])),
    params(("handle" = String, Path, description = "The session's handle: the token's `sid`, the `x-portero-session` header")),
    responses(
        (status = 200, description = "Whether a session was ended", body = EndSessionResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = StoreTrouble),
    )
)]
pub(super) async fn end_session(
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
    tracing::info!(target: LOG_TARGET, session_hash = %session_hash(&handle), ended, "session ended");
    Ok(Json(EndSessionResponse { ended }))
}
