//! Why a request was refused, and the response and log line that say so.

use crate::config::Config;
use crate::http::{ClientKind, LocalResponse};
use crate::token::TokenError;
use portero_wire::SessionVerdict;

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
    /// The client's IP or User-Agent differs from the login's, under the
    /// `reject` binding policy.
    BindingMismatch,
    /// The route demands roles the user does not have (403).
    MissingRole,
    /// The sidecar could not be reached, timed out or failed (503).
    SidecarUnavailable,
    /// The sidecar answered something the filter cannot use (503).
    SidecarBadReply,
    /// A path with no single reading (`%2F`, `\`, `..` above the root …):
    /// which route's policy governs it cannot be told (400).
    AmbiguousPath,
}

impl Reason {
    /// Stable reason code: response body, logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            Reason::NoCredentials => "no_credentials",
            Reason::CookieInvalid => "cookie_invalid",
            Reason::Token(e) => e.reason(),
            Reason::SessionNotFound => SessionVerdict::SessionNotFound.code(),
            Reason::SessionRevoked => SessionVerdict::SessionRevoked.code(),
            Reason::UserBanned => SessionVerdict::UserBanned.code(),
            Reason::TokenReplayed => SessionVerdict::TokenReplayed.code(),
            Reason::SessionTokensInvalid => "session_tokens_invalid",
            Reason::CrossSiteRequest => "cross_site_request",
            Reason::BindingMismatch => "session_binding_mismatch",
            Reason::MissingRole => "missing_role",
            Reason::SidecarUnavailable => "sidecar_unavailable",
            Reason::SidecarBadReply => "sidecar_bad_reply",
            Reason::AmbiguousPath => "ambiguous_path",
        }
    }

    /// The reason for the sidecar's verdict on a session.
    pub fn from_verdict(verdict: SessionVerdict) -> Reason {
        match verdict {
            SessionVerdict::SessionNotFound => Reason::SessionNotFound,
            SessionVerdict::SessionRevoked => Reason::SessionRevoked,
            SessionVerdict::UserBanned => Reason::UserBanned,
            SessionVerdict::TokenReplayed => Reason::TokenReplayed,
        }
    }

    /// Store trouble is never the client's fault and never a logout.
    pub fn is_store_trouble(self) -> bool {
        matches!(self, Reason::SidecarUnavailable | Reason::SidecarBadReply)
    }

    pub fn status(self) -> u32 {
        if self.is_store_trouble() {
            503
        } else if matches!(self, Reason::CrossSiteRequest | Reason::MissingRole) {
            403
        } else if self == Reason::AmbiguousPath {
            400
        } else {
            401
        }
    }
}

/// Per reason, the second of the last store-trouble line logged and how many
/// were held back since. Per worker (a wasm VM runs on one thread).
#[derive(Default)]
struct TroubleLog {
    reasons: Vec<(&'static str, u64, u64)>,
}

impl TroubleLog {
    /// `Some(held)` when a line for `reason` may be logged at second `now`
    /// (`held`: lines held back before it, to summarise first); `None` when
    /// this one is held back.
    fn admit(&mut self, reason: &'static str, now: u64) -> Option<u64> {
        match self.reasons.iter_mut().find(|(r, _, _)| *r == reason) {
            Some((_, logged_at, held)) if *logged_at == now => {
                *held += 1;
                None
            }
            Some((_, logged_at, held)) => {
                *logged_at = now;
                Some(std::mem::take(held))
            }
            None => {
                self.reasons.push((reason, now, 0));
                Some(0)
            }
        }
    }

    /// What was held back before second `now`, per reason.
    fn drain(&mut self, now: u64) -> Vec<(&'static str, u64)> {
        self.reasons
            .iter_mut()
            .filter(|(_, logged_at, held)| *held > 0 && *logged_at < now)
            .map(|(reason, _, held)| (*reason, std::mem::take(held)))
            .collect()
    }
}

fn log_summary(reason: &str, count: u64) {
    log::error!(
        "{}",
        serde_json::json!({"event": "rejected_summary", "reason": reason, "count": count,
            "note": "rejections of this reason held back (one line per second is logged)"})
    );
}

thread_local! {
    static TROUBLE_LOG: std::cell::RefCell<TroubleLog> = std::cell::RefCell::new(TroubleLog::default());
}

/// Logs one summary line per reason for the store-trouble rejections held
/// back before second `now` (the tick calls it, so a summary is not left
/// waiting for the next rejection).
pub fn flush_trouble_log(now: u64) {
    let held = TROUBLE_LOG.with(|t| t.borrow_mut().drain(now));
    for (reason, count) in held {
        log_summary(reason, count);
    }
}

/// A refusal: the reason and, for the log only, a detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    detail: Option<String>,
    /// A 401 that leaves the session alive must not clear its cookie.
    keep_cookie: bool,
    /// Which session (logged as a short hash, see [`session_hash`]).
    session: Option<SessionRef>,
}

/// Which session a request is about. Logs name it by a hash, never by its
/// id or handle; the hash is computed only when a line is written (a
/// SHA-256 per request was a measurable share of the warm path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRef {
    /// The session handle (the token's `sid`, the admin API's name).
    Handle(String),
    /// The raw session id (cookie clients before the look-up answers).
    Id(String),
}

/// First 16 hex digits of SHA-256: enough to correlate log lines, too short
/// and one-way to be turned back into a credential.
pub fn session_hash(value: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(value.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl Rejection {
    pub fn new(reason: Reason) -> Self {
        Self {
            reason,
            detail: None,
            keep_cookie: false,
            session: None,
        }
    }

    /// The session survives this refusal: leave its cookie alone.
    pub fn keep_cookie(mut self) -> Self {
        self.keep_cookie = true;
        self
    }

    pub fn session(mut self, session: Option<SessionRef>) -> Self {
        self.session = session;
        self
    }

    /// The credential is dead (the session is gone, the cookie unusable),
    /// not merely refused for this request: its cookie is to be cleared.
    pub fn ends_the_credential(&self) -> bool {
        self.reason.status() == 401 && !self.keep_cookie
    }

    /// Adds a detail for the log line (never sent to the client).
    pub fn detail(mut self, detail: &str) -> Self {
        self.detail = Some(detail.to_string());
        self
    }

    /// One structured line per rejection; no secret, no token. Store
    /// trouble comes in floods (every request of an outage): the first of
    /// each second is logged, the rest are counted into a summary line
    /// (see [`flush_trouble_log`]).
    pub fn log(&self, kind: ClientKind, now: u64) {
        if self.reason.is_store_trouble() {
            let reason = self.reason.code();
            match TROUBLE_LOG.with(|t| t.borrow_mut().admit(reason, now)) {
                None => return,
                Some(0) => {}
                Some(held) => log_summary(reason, held),
            }
        }
        let mut line = serde_json::json!({
            "event": "rejected",
            "reason": self.reason.code(),
            "status": self.reason.status(),
            "client": kind.name(),
            "detail": self.detail,
        });
        match (&self.session, line.as_object_mut()) {
            (Some(SessionRef::Handle(handle)), Some(fields)) => {
                fields.insert("session_hash".into(), session_hash(handle).into());
            }
            (Some(SessionRef::Id(id)), Some(fields)) => {
                fields.insert("session_id_hash".into(), session_hash(id).into());
            }
            _ => {}
        }
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
        } else if status == 400 {
            "bad_request"
        } else {
            match kind {
                ClientKind::Bearer => headers.push((
                    "www-authenticate".to_string(),
                    "Bearer realm=\"portero\", error=\"invalid_token\"".to_string(),
                )),
                ClientKind::Cookie if self.keep_cookie => {}
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

    /// For a browser navigation that needs a login: a redirect to the login
    /// URL carrying the original path back (when it is a safe one), instead
    /// of the JSON 401. `None` when this rejection is not a login matter.
    pub fn login_redirect(
        &self,
        config: &Config,
        route_url: Option<&str>,
        kind: ClientKind,
        original_path: &str,
    ) -> Option<LocalResponse> {
        if self.reason.status() != 401 || kind == ClientKind::Bearer {
            return None;
        }
        let location = sign_in_url(config, route_url, original_path)?;
        let mut headers = vec![
            ("location".to_string(), location),
            ("cache-control".to_string(), "no-store".to_string()),
        ];
        if kind == ClientKind::Cookie && !self.keep_cookie {
            headers.push((
                "set-cookie".to_string(),
                config.cookie_attributes.clear_cookie(config.cookie.name()),
            ));
        }
        Some(LocalResponse {
            status: 302,
            headers,
            body: Vec::new(),
        })
    }
}

/// Where a signed-out browser signs in, carrying `original_path` back
/// (when it is a safe one): the route's own sign-in page (`route_url`), or
/// the login redirect's target. `None` without either, or on the login page
/// itself (it must not send to itself).
pub fn sign_in_url(
    config: &Config,
    route_url: Option<&str>,
    original_path: &str,
) -> Option<String> {
    let global = config.login_redirect.as_ref();
    let url = route_url.or_else(|| global.map(|r| r.url.as_str()))?;
    let return_parameter = global.map_or("return_to", |r| r.return_parameter.as_str());
    let path_only = |p: &str| p.split(['?', '#']).next().unwrap_or_default().to_string();
    if path_only(url) == path_only(original_path) {
        return None;
    }
    let mut location = url.to_string();
    if let Some(path) = safe_return_path(original_path) {
        location.push(if location.contains('?') { '&' } else { '?' });
        location.push_str(return_parameter);
        location.push('=');
        location.push_str(&percent_encode(path));
    }
    Some(location)
}

/// A return path that can only lead back to this site: absolute path, not
/// scheme-relative (`//host`), no backslash (browsers read `/\host` as
/// `//host`), no control characters.
pub fn safe_return_path(path: &str) -> Option<&str> {
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && path.len() <= 2048
        && path.bytes().all(|b| b > b' ' && b != 0x7f);
    ok.then_some(path)
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/`.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_stay_on_this_site() {
        assert_eq!(safe_return_path("/a/b?c=d"), Some("/a/b?c=d"));
        for bad in [
            "",
            "a",
            "//evil.example",
            "/\\evil.example",
            "https://x",
            "/a b",
            "/a\u{7f}",
        ] {
            assert_eq!(safe_return_path(bad), None, "{bad:?}");
        }
        assert_eq!(safe_return_path(&format!("/{}", "a".repeat(4096))), None);
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_and_slash() {
        assert_eq!(percent_encode("/a-b_c.d~e/"), "/a-b_c.d~e/");
        assert_eq!(percent_encode("/?&=#%é"), "/%3F%26%3D%23%25%C3%A9");
    }

    #[test]
    fn session_hashes_are_short_stable_and_distinct() {
        let a = session_hash("session-a");
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, session_hash("session-a"));
        assert_ne!(a, session_hash("session-b"));
        assert!(!a.contains("session"));
    }
}

#[cfg(test)]
mod trouble_log_tests {
    #[test]
    fn store_trouble_logs_one_line_per_second_and_a_summary() {
        let mut log = super::TroubleLog::default();
        assert_eq!(log.admit("sidecar_unavailable", 100), Some(0));
        assert_eq!(log.admit("sidecar_unavailable", 100), None);
        assert_eq!(log.admit("sidecar_unavailable", 100), None);
        // Another reason has its own budget.
        assert_eq!(log.admit("sidecar_bad_reply", 100), Some(0));
        // Nothing to summarise within the same second …
        assert!(log.drain(100).is_empty());
        // … then the two held back, once.
        assert_eq!(log.drain(101), vec![("sidecar_unavailable", 2)]);
        assert!(log.drain(102).is_empty());
        assert_eq!(log.admit("sidecar_unavailable", 103), Some(0));
        assert_eq!(log.admit("sidecar_unavailable", 103), None);
        // A line in a later second first reports what was held back.
        assert_eq!(log.admit("sidecar_unavailable", 104), Some(1));
    }
}
