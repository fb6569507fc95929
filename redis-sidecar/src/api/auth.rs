//! Who may call what: each handler names the role it needs as a [`Caller`]
//! extractor, checked against the `Authorization: Bearer` credential before
//! the handler runs.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use super::{token_digest, ApiError, AppState};

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
