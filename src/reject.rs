//! Why a request was refused, and the response and log line that say so.

use crate::config::Config;
use crate::flow::{ClientKind, LocalResponse};
use crate::token::TokenError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NoCredentials,
    CookieInvalid,
    Token(TokenError),
    SessionNotFound,
    SessionRevoked,
    UserBanned,
    /// A rotated-away token came back after its grace window.
    TokenReplayed,
    SessionTokensInvalid,
    /// A cookie-authenticated unsafe request from another origin (403).
    CrossSiteRequest,
    /// The sidecar could not be reached, timed out or failed (503).
    SidecarUnavailable,
    /// The sidecar answered something the filter cannot use (503).
    SidecarBadReply,
}

impl Reason {
    /// Stable reason code: response body, logs and (later) metrics.
    pub fn code(self) -> &'static str {
        match self {
            Reason::NoCredentials => "no_credentials",
            Reason::CookieInvalid => "cookie_invalid",
            Reason::Token(e) => e.reason(),
            Reason::SessionNotFound => portero_wire::SESSION_NOT_FOUND,
            Reason::SessionRevoked => portero_wire::SESSION_REVOKED,
            Reason::UserBanned => portero_wire::USER_BANNED,
            Reason::TokenReplayed => portero_wire::TOKEN_REPLAYED,
            Reason::SessionTokensInvalid => "session_tokens_invalid",
            Reason::CrossSiteRequest => "cross_site_request",
            Reason::SidecarUnavailable => "sidecar_unavailable",
            Reason::SidecarBadReply => "sidecar_bad_reply",
        }
    }

    /// The reason for a sidecar verdict code (`portero_wire::SESSION_VERDICTS`).
    pub fn from_verdict(code: &str) -> Option<Reason> {
        match code {
            portero_wire::SESSION_NOT_FOUND => Some(Reason::SessionNotFound),
            portero_wire::SESSION_REVOKED => Some(Reason::SessionRevoked),
            portero_wire::USER_BANNED => Some(Reason::UserBanned),
            portero_wire::TOKEN_REPLAYED => Some(Reason::TokenReplayed),
            _ => None,
        }
    }

    /// Store trouble is never the client's fault and never a logout.
    pub fn is_store_trouble(self) -> bool {
        matches!(self, Reason::SidecarUnavailable | Reason::SidecarBadReply)
    }

    pub fn status(self) -> u32 {
        if self.is_store_trouble() {
            503
        } else if self == Reason::CrossSiteRequest {
            403
        } else {
            401
        }
    }
}

/// A refusal: the reason and, for the log only, a detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    detail: Option<String>,
}

impl Rejection {
    pub fn new(reason: Reason) -> Self {
        Self {
            reason,
            detail: None,
        }
    }

    /// Adds a detail for the log line (never sent to the client).
    pub fn detail(mut self, detail: &str) -> Self {
        self.detail = Some(detail.to_string());
        self
    }

    /// One structured line per rejection; no secret, no token.
    pub fn log(&self, kind: ClientKind) {
        let line = serde_json::json!({
            "event": "rejected",
            "reason": self.reason.code(),
            "status": self.reason.status(),
            "client": client_name(kind),
            "detail": self.detail,
        });
        if self.reason.is_store_trouble() {
            log::error!("{line}");
        } else {
            log::info!("{line}");
        }
    }

    /// The response sent to the client.
    pub fn response(&self, config: &Config, kind: ClientKind) -> LocalResponse {
        let status = self.reason.status();
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("cache-control".to_string(), "no-store".to_string()),
        ];
        let error = if self.reason.is_store_trouble() {
            headers.push((
                "retry-after".to_string(),
                config.retry_after_seconds.to_string(),
            ));
            "unavailable"
        } else if status == 403 {
            // The session is fine; the request is not: keep the cookie.
            "forbidden"
        } else {
            match kind {
                ClientKind::Bearer => headers.push((
                    "www-authenticate".to_string(),
                    "Bearer realm=\"portero\", error=\"invalid_token\"".to_string(),
                )),
                ClientKind::Cookie => headers.push((
                    "set-cookie".to_string(),
                    config.cookie_attributes.clear_cookie(config.cookie.name()),
                )),
                ClientKind::Anonymous => headers.push((
                    "www-authenticate".to_string(),
                    "Bearer realm=\"portero\"".to_string(),
                )),
            }
            "unauthorized"
        };
        let body = serde_json::json!({"error": error, "reason": self.reason.code()});
        LocalResponse {
            status,
            headers,
            body: body.to_string().into_bytes(),
        }
    }
}

fn client_name(kind: ClientKind) -> &'static str {
    match kind {
        ClientKind::Anonymous => "anonymous",
        ClientKind::Cookie => "cookie",
        ClientKind::Bearer => "bearer",
    }
}
