//! Access tokens: minting them for a session, and publishing the public
//! keys that verify them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use portero_wire::AccessClaims;

use crate::store::{random_token, IssuedToken};

use super::{ApiError, AppState};

/// Mints an access token for a session.
pub(super) fn issue_token(
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

/// `GET /.well-known/jwks.json`: public keys, no credential needed.
pub(super) async fn jwks(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        // Short: keys rotate (see `keys`).
        [("cache-control", "public, max-age=60")],
        Json(state.keys.current().jwks()),
    )
}
