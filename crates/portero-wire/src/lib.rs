//! Types shared by the filter and `redis-sidecar`.
//!
//! Each concept has exactly one definition here: the access-token claims, and
//! the JSON bodies of the sidecar's `/v1` HTTP API. Both sides serialise with
//! serde, so a field renamed here is renamed on both ends of the wire. The
//! API's types also derive `utoipa::ToSchema`: the sidecar's OpenAPI document
//! (docs/sidecar-openapi.json) describes them from these definitions, doc
//! comments included.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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

/// Filter → sidecar: resolve a session. Cookie clients name it by the raw
/// session id (decrypted from the cookie), bearer clients by its handle (the
/// token's `sid`) and also say which token they presented, so the sidecar can
/// tell a current token from a rotated one or a replay.
///
/// Exactly one of `session_id` and `session_handle` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    /// The raw session id, from the cookie (cookie clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The session's handle, the token's `sid` (bearer clients; with
    /// `presented_jti`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_handle: Option<String>,
    /// `jti` of the bearer token presented (bearer clients only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presented_jti: Option<String>,
}

impl LookupRequest {
    pub fn by_id(session_id: &str) -> Self {
        Self {
            session_id: Some(session_id.to_string()),
            ..Self::default()
        }
    }

    pub fn by_handle(handle: &str, presented_jti: &str) -> Self {
        Self {
            session_handle: Some(handle.to_string()),
            presented_jti: Some(presented_jti.to_string()),
            ..Self::default()
        }
    }
}

/// What a live session looks like to the filter: the session, its user's
/// current standing (one round trip), and its current access token. All
/// times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    /// The session's handle: its public name (the token's `sid`).
    pub handle: String,
    pub user_id: String,
    /// As at login.
    pub email: String,
    /// The user's roles and permissions now (from the user record, not from
    /// the login nor from any token).
    pub roles: Vec<String>,
    /// The user's permissions now (from the user record).
    pub permissions: Vec<String>,
    /// The login.
    pub created_at: u64,
    /// This look-up.
    pub last_seen_at: u64,
    /// Absolute expiry: the session ends then whatever its activity.
    pub expires_at: u64,
    /// Idle expiry after this look-up refreshed it.
    pub idle_expires_at: u64,
    /// The client's IP address at login (empty: not bound).
    pub client_ip: String,
    /// The client's User-Agent at login (empty: not bound).
    pub user_agent: String,
    /// The session's current access token and its claims' `jti`/`exp`.
    pub access_token: String,
    /// The current access token's `jti`.
    pub access_jti: String,
    /// The current access token's `exp`.
    pub access_expires_at: u64,
    /// How many times the access token has been rotated.
    pub rotations: u64,
    /// The current access token has been presented by a bearer client
    /// since it was minted. Until then a bearer request must reach the
    /// store (its first use ends the predecessor's exchangeability), so an
    /// edge cache may not answer for it.
    #[serde(default)]
    pub access_token_presented: bool,
}

/// `200` reply to a `LookupRequest`. Any session that cannot be used is a
/// `404` with an `ErrorBody` whose code is a `SessionVerdict`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LookupResponse {
    /// The session and its user's standing now.
    pub session: SessionView,
    /// True when this look-up rotated the access token.
    pub rotated: bool,
}

/// Admin: start a session for a user who has just proven who they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    /// The user id, 1 to 256 bytes (it travels upstream in a header).
    pub user_id: String,
    /// At most 320 bytes.
    pub email: String,
    /// The user's roles, as the app knows them at login (they replace the
    /// user record's).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Replaces the user record's permissions when given.
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    /// The `x-portero-client-ip` the filter gave the app: an IP address, or
    /// empty (not bound).
    #[serde(default)]
    pub client_ip: String,
    /// The login request's `User-Agent`, at most 1024 bytes, or empty (not
    /// bound).
    #[serde(default)]
    pub user_agent: String,
}

/// `201` reply to a `CreateSessionRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateSessionResponse {
    /// The raw session id: goes into the cookie (through the filter), nowhere else.
    pub session_id: String,
    /// The session's public name: the token's `sid`, the admin API's `{handle}`.
    pub session_handle: String,
    /// Access token for app clients (and forwarded upstream for cookie clients).
    pub access_token: String,
    /// The access token's `exp`.
    pub access_expires_at: u64,
    /// The session's absolute expiry.
    pub expires_at: u64,
}

/// `200` reply to ending a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EndSessionResponse {
    /// False when there was no such session (ending is idempotent).
    pub ended: bool,
}

/// Every non-2xx reply of the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `session_not_found`, `unauthorized`.
    pub error: String,
    /// Text for a human: not stable, match on `error`.
    pub message: String,
}

/// Why a session cannot be used: a definite "no", not store trouble. The
/// sidecar's look-up scripts reply with one, the API sends it as the code of
/// a `404` `ErrorBody`, and the filter turns it into a 401 reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionVerdict {
    /// The session does not exist, or expired (idle or absolute).
    SessionNotFound,
    /// The session was revoked (the user's token version moved past it).
    SessionRevoked,
    /// The user is banned.
    UserBanned,
    /// The presented token was rotated away and its grace window is over.
    TokenReplayed,
}

impl SessionVerdict {
    pub const ALL: [SessionVerdict; 4] = [
        SessionVerdict::SessionNotFound,
        SessionVerdict::SessionRevoked,
        SessionVerdict::UserBanned,
        SessionVerdict::TokenReplayed,
    ];

    /// The stable code (as serialized).
    pub const fn code(self) -> &'static str {
        match self {
            SessionVerdict::SessionNotFound => "session_not_found",
            SessionVerdict::SessionRevoked => "session_revoked",
            SessionVerdict::UserBanned => "user_banned",
            SessionVerdict::TokenReplayed => "token_replayed",
        }
    }

    pub fn from_code(code: &str) -> Option<SessionVerdict> {
        Self::ALL.into_iter().find(|v| v.code() == code)
    }
}

/// Admin: a user's standing, as set by `PUT /v1/users/{user_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub user_id: String,
    pub status: UserStatus,
    /// What the filter sends upstream as the user's roles.
    pub roles: Vec<String>,
    /// What the filter sends upstream as the user's permissions.
    pub permissions: Vec<String>,
    /// Bumped by every revoke-all: sessions made before are refused.
    pub token_version: u64,
}

/// A user's standing: a banned user's sessions are refused (and kept: lifting
/// the ban restores them), and a banned user cannot log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Banned,
}

/// Admin: change a user's standing; absent fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// `banned` refuses every session of the user (and keeps them),
    /// `active` lifts the ban.
    #[serde(default)]
    pub status: Option<UserStatus>,
    /// Replaces the user's roles.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// Replaces the user's permissions.
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
}

/// Admin: `POST /v1/users/{user_id}/revoke` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevokeUserResponse {
    /// How many sessions were ended.
    pub ended: u64,
    /// The user's token version now.
    pub token_version: u64,
}

/// Admin: one entry of `GET /v1/users/{user_id}/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionSummary {
    /// The session's handle (`DELETE /v1/sessions/{handle}` ends it).
    pub handle: String,
    /// The login.
    pub created_at: u64,
    /// The last look-up.
    pub last_seen_at: u64,
    /// Absolute expiry.
    pub expires_at: u64,
    /// The client's IP address at login.
    pub client_ip: String,
    /// The client's User-Agent at login.
    pub user_agent: String,
}

/// Admin: `GET /v1/users/{user_id}/sessions` reply, the user's live sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    /// The user's live sessions.
    pub sessions: Vec<SessionSummary>,
}

/// Filter → sidecar: the revocation feed, `GET /v1/revocations[?after=<cursor>]`.
pub const REVOCATIONS_PATH: &str = "/v1/revocations";

/// Something changed that a cached session view must not outlive: a session
/// ended (logout, binding, replay), or a user's standing changed (ban, roles,
/// permissions, revoke-all, a login rewriting the roles). Filters evict every
/// cached view of the named session, or of every session of the named user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevocationEvent {
    /// Every session of this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// This session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_handle: Option<String>,
}

/// `200` reply of the revocation feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevocationFeed {
    /// Pass it as `after` next time. Without `after`, the feed answers with
    /// the current end of the stream and no events: start from now.
    pub cursor: String,
    /// What changed, oldest first.
    pub events: Vec<RevocationEvent>,
    /// The feed cannot say what happened since `after` (trimmed or lost):
    /// drop every cached view.
    pub reset: bool,
    /// More events wait: ask again at once.
    pub more: bool,
}

/// Smallest and largest length of a session id / handle on the wire.
/// Ids and handles are 65 characters: a 22-character user tag and 43
/// characters of randomness (ids) or of keyed hash (handles).
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
    fn verdict_codes_are_their_serde_names() {
        for verdict in SessionVerdict::ALL {
            let json = serde_json::to_string(&verdict).unwrap();
            assert_eq!(json, format!("\"{}\"", verdict.code()));
            assert_eq!(SessionVerdict::from_code(verdict.code()), Some(verdict));
        }
        assert_eq!(SessionVerdict::from_code("unauthorized"), None);
    }

    #[test]
    fn lookup_request_wire_form() {
        let json = serde_json::to_string(&LookupRequest::by_handle("h", "j")).unwrap();
        assert_eq!(json, r#"{"session_handle":"h","presented_jti":"j"}"#);
        let back: LookupRequest = serde_json::from_str(r#"{"session_id":"x"}"#).unwrap();
        assert_eq!(back, LookupRequest::by_id("x"));
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
