//! The user routes (admin): read and change a user, end all of a user's
//! sessions, list them.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use portero_wire::{RevokeUserResponse, SessionList, UpdateUserRequest, UserView};

use super::feed::revoked;
use super::input::{check_names, check_user_id, parse_json};
use super::openapi::{
    BadRequest, PayloadTooLarge, StoreTrouble, StoreUnavailable, Unauthorized,
    UnsupportedMediaType, UserNotFound, WrongRole,
};
use super::{now, Admin, ApiError, AppState, Caller, LOG_TARGET};

/// Read a user's standing.
///
/// Admin credential.
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}",
    tag = "users",
    security(("admin" = [])),
    params(("user_id" = String, Path, description = "The user id, as the app's login gave it")),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = WrongRole),
        (status = 404, response = UserNotFound),
        (status = 503, response = StoreUnavailable),
    )
)]
pub(super) async fn get_user(
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

/// Change a user's status, roles or permissions.
///
/// Absent fields are left as they are; the record is made if there is none
/// (a user may be banned, or granted roles, before the first login). Takes
/// effect on the user's next request, on every session: a ban refuses the
/// sessions (and keeps them: lifting it restores them). The user is appended
/// to the revocation feed. Admin credential.
#[utoipa::path(
    put,
    path = "/v1/users/{user_id}",
    tag = "users",
    security(("admin" = [])),
    params(("user_id" = String, Path, description = "The user id")),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "The user as it is now", body = UserView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = WrongRole),
        (status = 404, response = UserNotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = StoreTrouble),
    )
)]
pub(super) async fn update_user(
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
    tracing::info!(target: LOG_TARGET, user = %user_id, status = ?user.status, "user updated");
    Ok(Json(user))
}

/// End every session of a user.
///
/// Also bumps the user's token version, so no session or token made before
/// can pass, one made by a login racing this call included. The user is
/// appended to the revocation feed. Admin credential.
#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/revoke",
    tag = "users",
    security(("admin" = [])),
    params(("user_id" = String, Path, description = "The user id")),
    responses(
        (status = 200, description = "How many sessions ended, and the new token version", body = RevokeUserResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = WrongRole),
        (status = 503, response = StoreTrouble),
    )
)]
pub(super) async fn revoke_user(
    State(state): State<Arc<AppState>>,
    _caller: Caller<Admin>,
    Path(user_id): Path<String>,
) -> Result<Json<RevokeUserResponse>, ApiError> {
    check_user_id(&user_id)?;
    let (ended, token_version) = state.store.revoke_user(&user_id).await?;
    revoked(&state, Some(&user_id), None).await?;
    tracing::info!(target: LOG_TARGET, user = %user_id, ended, token_version, "all sessions revoked");
    Ok(Json(RevokeUserResponse {
        ended,
        token_version,
    }))
}

/// List a user's live sessions.
///
/// Dead entries leave the user's index as they are found. Admin credential.
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/sessions",
    tag = "users",
    security(("admin" = [])),
    params(("user_id" = String, Path, description = "The user id")),
    responses(
        (status = 200, description = "The user's live sessions", body = SessionList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = WrongRole),
        (status = 503, response = StoreUnavailable),
    )
)]
pub(super) async fn list_sessions(
    State(state): State<Arc<AppState>>,
    _caller: Caller<Admin>,
    Path(user_id): Path<String>,
) -> Result<Json<SessionList>, ApiError> {
    check_user_id(&user_id)?;
    let sessions = state.store.sessions_of(&user_id, now()).await?;
    Ok(Json(SessionList { sessions }))
}
