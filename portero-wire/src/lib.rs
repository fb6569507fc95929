//! Types shared by the filter and `redis-sidecar`.
//!
//! Each concept has exactly one definition here: the access-token claims, and
//! the JSON bodies of the sidecar's `/v1` HTTP API. Both sides serialise with
//! serde, so a field renamed here is renamed on both ends of the wire.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use serde::{Deserialize, Serialize};

/// Path prefix of every versioned sidecar route.
pub const API_PREFIX: &str = "/v1";
/// Filter → sidecar: resolve a session (the hot path).
pub const LOOKUP_PATH: &str = "/v1/sessions/lookup";
/// Admin: start a session (login).
pub const SESSIONS_PATH: &str = "/v1/sessions";
/// Public: the key set that verifies access tokens.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Claims of an access token (RS256, signed by the sidecar).
///
/// `sid` is the session *handle* (a keyed hash of the session id), never the
/// raw id: a token in a log reveals nothing that can be turned into a cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// Session handle. Defaulted so a token without it is reported as such
    /// rather than as unparseable.
    #[serde(default)]
    pub sid: String,
    pub jti: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    /// Token version of the user when the token was minted.
    #[serde(default)]
    pub ver: u64,
}

/// How the filter names the session it wants: cookie clients know the raw
/// session id (decrypted from the cookie), bearer clients only the handle
/// (the token's `sid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LookupRequest {
    SessionId(String),
    SessionHandle(String),
}

/// What a live session looks like to the filter. All times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    pub handle: String,
    pub user_id: String,
    pub email: String,
    pub roles: Vec<String>,
    pub created_at: u64,
    pub last_seen_at: u64,
    /// Absolute expiry: the session ends then whatever its activity.
    pub expires_at: u64,
    /// Idle expiry after this look-up refreshed it.
    pub idle_expires_at: u64,
    pub client_ip: String,
    pub user_agent: String,
    /// The session's current access token and its claims' `jti`/`exp`.
    pub access_token: String,
    pub access_jti: String,
    pub access_expires_at: u64,
}

/// `200` reply to [`LookupRequest`]. A missing or expired session is a `404`
/// with [`ErrorBody`] code `session_not_found`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupResponse {
    pub session: SessionView,
}

/// Admin: start a session for a user who has just proven who they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    pub user_id: String,
    pub email: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub client_ip: String,
    #[serde(default)]
    pub user_agent: String,
}

/// `201` reply to [`CreateSessionRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSessionResponse {
    /// The raw session id: goes into the cookie (through the filter), nowhere else.
    pub session_id: String,
    pub session_handle: String,
    /// Access token for app clients (and forwarded upstream for cookie clients).
    pub access_token: String,
    pub access_expires_at: u64,
    pub expires_at: u64,
}

/// `200` reply to ending a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndSessionResponse {
    /// False when there was no such session (ending is idempotent).
    pub ended: bool,
}

/// Every non-2xx reply of the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `session_not_found`, `unauthorized`.
    pub error: String,
    pub message: String,
}

/// Error code of a look-up for a session that does not exist (or expired).
pub const SESSION_NOT_FOUND: &str = "session_not_found";

/// Smallest and largest length of a session id / handle on the wire
/// (base64url of 32 bytes is 43 characters).
pub const SESSION_ID_MIN_LEN: usize = 22;
pub const SESSION_ID_MAX_LEN: usize = 128;

/// Whether `value` has the shape of a session id or handle: base64url
/// characters only, of a sane length. Checked before any crypto or callout.
pub fn is_session_token_shape(value: &str) -> bool {
    (SESSION_ID_MIN_LEN..=SESSION_ID_MAX_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_request_is_tagged_by_kind() {
        let json = serde_json::to_string(&LookupRequest::SessionHandle("h".into())).unwrap();
        assert_eq!(json, r#"{"session_handle":"h"}"#);
        let back: LookupRequest = serde_json::from_str(r#"{"session_id":"x"}"#).unwrap();
        assert_eq!(back, LookupRequest::SessionId("x".into()));
        assert!(serde_json::from_str::<LookupRequest>(r#"{"other":"x"}"#).is_err());
    }

    #[test]
    fn session_token_shape() {
        assert!(is_session_token_shape(&"a".repeat(43)));
        assert!(!is_session_token_shape(&"a".repeat(21)));
        assert!(!is_session_token_shape(&"a".repeat(129)));
        assert!(!is_session_token_shape(&format!("{}=", "a".repeat(42))));
        assert!(!is_session_token_shape(&format!("{}\n", "a".repeat(42))));
    }

    #[test]
    fn claims_without_sid_parse_with_empty_sid() {
        let c: AccessClaims = serde_json::from_str(
            r#"{"iss":"i","aud":"a","sub":"u","jti":"j","iat":1,"nbf":1,"exp":2}"#,
        )
        .unwrap();
        assert_eq!(c.sid, "");
    }
}
