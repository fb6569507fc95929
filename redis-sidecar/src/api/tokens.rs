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

/// The public keys that verify access tokens (RFC 7517), as the sidecar's
/// signing keys write them (`keys`). Described here for the OpenAPI
/// document, never built: tests/tests/sidecar_openapi.rs checks the real
/// answer against this description.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct Jwks {
    /// The key that signs, then every other published key (a key directory's
    /// next and previous keys).
    keys: Vec<Jwk>,
}

/// One RSA public key (RFC 7517, RFC 7518 §6.3).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct Jwk {
    /// Always `RSA`.
    #[schema(example = "RSA")]
    kty: String,
    /// Always `sig`.
    #[schema(rename = "use", example = "sig")]
    use_: String,
    /// Always `RS256`.
    #[schema(example = "RS256")]
    alg: String,
    /// The key id, the `kid` of the tokens it signs.
    kid: String,
    /// The modulus, base64url.
    n: String,
    /// The public exponent, base64url.
    #[schema(example = "AQAB")]
    e: String,
}

/// The key set that verifies access tokens.
///
/// Fetched by the filter every `jwt.jwks_refresh_seconds`, and by apps that
/// verify the access token forwarded to them. No credential.
#[utoipa::path(
    get,
    path = portero_wire::JWKS_PATH,
    tag = "keys",
    responses(
        (status = 200, description = "The public keys", body = Jwks,
         headers(("cache-control" = String, description = "`public, max-age=60`: keys rotate"))),
    )
)]
pub(super) async fn jwks(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        // Short: keys rotate (see `keys`).
        [("cache-control", "public, max-age=60")],
        Json(state.keys.current().jwks()),
    )
}
