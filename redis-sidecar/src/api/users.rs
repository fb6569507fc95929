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
use super::{now, Admin, ApiError, AppState, Caller, LOG_TARGET};

/// `GET /v1/users/{user_id}` (admin).
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

/// `PUT /v1/users/{user_id}` (admin): status, roles, permissions. Takes
/// effect on the user's next request, on every session.
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

/// `POST /v1/users/{user_id}/revoke` (admin): end every session of the user.
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

/// `GET /v1/users/{user_id}/sessions` (admin).
pub(super) async fn list_sessions(
    State(state): State<Arc<AppState>>,
    _caller: Caller<Admin>,
    Path(user_id): Path<String>,
) -> Result<Json<SessionList>, ApiError> {
    check_user_id(&user_id)?;
    let sessions = state.store.sessions_of(&user_id, now()).await?;
    Ok(Json(SessionList { sessions }))
}
