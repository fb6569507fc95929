//! The authentication flow of one request, as a state machine over a small
//! [`Host`] trait. It reads like the seed document's flowcharts: one step per
//! function, named after the step; any "no" ends in [`Flow::reject`].
//!
//! ```text
//! route:  decide_route ─► (off: pass) ─► bearer or cookie
//! cookie: exists_cookie ─► check_same_origin ─► obtain_session_id ─► look_up_session ┐
//! bearer: verify_jwt ─► exists_session_id ─► look_up_session ───────────────────────┤
//!         (sidecar answers) ─► exists_session ─► is_same_client ─► verify_session_tokens
//!                           ─► has_required_roles ─► make_the_request
//! ```
//!
//! One file per flowchart: `cookie.rs`, `bearer.rs`, the shared `session.rs`,
//! and `response.rs` for the way back; this file holds the entry points,
//! the route decision and the two ways out (`pass`, `reject`).
//!
//! No credential on an `optional` route goes to `make_anonymous_request`; a
//! binding mismatch under `reject` goes through `end_session` (when so
//! configured) to the rejection.
//!
//! The flow never panics on request data: every input is parsed into a
//! `Result`, and every failure becomes a response.

use std::cell::RefCell;
use std::rc::Rc;

use portero_wire::{AccessClaims, ErrorBody, LookupRequest, LookupResponse, SessionView};

pub use crate::http::{ClientKind, DispatchError, LocalResponse};

mod bearer;
mod cookie;
mod response;
mod session;

use crate::cache::{EdgeCache, SessionKey};
use crate::config::Config;
use crate::cookie::find_cookie;
use crate::crypto::{Crypto, PortableCrypto};
use crate::metrics::{CacheKind, Counter, Outcome, SidecarError};
use crate::policy::{MismatchPolicy, RoleRequirement, RoutePolicy};
use crate::reject::{session_hash, Reason, Rejection, SessionRef};
use crate::request_path::{normalized_path, AmbiguousPath};
use crate::token::{bearer_token, TokenError, Verified, MAX_TOKEN_LEN};

/// An HTTP call to the sidecar, for the host to dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarCall {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

/// The sidecar's answer as the host received it. `status: None` means there
/// was no answer (connection failure, reset or timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarReply {
    pub status: Option<u16>,
    pub body: Vec<u8>,
}

/// Everything the flow needs from the proxy. The wasm shell implements it
/// with proxy-wasm host calls; tests implement it with plain maps.
pub trait Host {
    /// Unix time in seconds.
    fn now(&self) -> u64;
    /// Unix time in microseconds (for latency figures).
    fn now_micros(&self) -> u64;
    /// The `name` of the Envoy route the request matched, if any.
    fn route_name(&self) -> Option<String>;
    /// The downstream address as the proxy sees it (`ip:port`), after its
    /// trusted `X-Forwarded-For` hops.
    fn client_address(&mut self) -> Option<String>;
    /// Every line of request header `name` (lowercase), as the bytes that
    /// arrived: a value need not be UTF-8, and a name may repeat.
    fn request_header_lines(&self, name: &str) -> Vec<&[u8]>;
    /// The name of every request header line, as it arrived (a name may
    /// repeat): to find every spelling of a header the flow must remove.
    fn request_header_names(&self) -> Vec<&[u8]>;
    /// Replaces every line of `name` with one holding `value`.
    fn set_request_header(&mut self, name: &str, value: &[u8]);
    fn remove_request_header(&mut self, name: &str);
    /// Every line of response header `name`, as bytes.
    fn response_header_lines(&self, name: &str) -> Vec<&[u8]>;
    fn add_response_header(&mut self, name: &str, value: &str);
    fn remove_response_header(&mut self, name: &str);
    /// Starts the call; the answer is fed back through [`Flow::on_sidecar_reply`].
    fn dispatch_sidecar_call(&mut self, call: SidecarCall) -> Result<(), DispatchError>;
    fn send_local_response(&mut self, response: LocalResponse);
    fn increment(&mut self, counter: Counter);
    fn record_sidecar_latency_us(&mut self, micros: u64);
    /// The cryptography of this shell (portable unless it has better).
    fn crypto(&self) -> &dyn Crypto {
        &PortableCrypto
    }
}

/// What the host does with the request after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let the request go on upstream.
    Forward,
    /// Hold the request until the sidecar answers.
    Wait,
    /// The filter answered the request itself (or has nothing pending):
    /// nothing goes upstream, nothing is resumed.
    Responded,
}

/// A credential that has passed the filter's own checks and waits for the
/// session look-up.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Credential {
    Cookie,
    Bearer(Box<AccessClaims>),
}

impl Credential {
    fn kind(&self) -> ClientKind {
        match self {
            Credential::Cookie => ClientKind::Cookie,
            Credential::Bearer(_) => ClientKind::Bearer,
        }
    }
}

/// Where one request stands. Each state carries the data that belongs to
/// it, and only it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Start,
    /// The look-up is out; its answer continues the flow.
    AwaitingSession(Box<session::Lookup>),
    /// Ending a session whose client did not match; then refuse.
    EndingSession {
        kind: ClientKind,
        rejection: Box<Rejection>,
        started_us: u64,
    },
    /// Gone upstream: what the response side still needs.
    Forwarded(Forwarded),
    /// The filter answered the request itself; the response is its own.
    Responded,
}

/// What the response side needs of a request that went upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Forwarded {
    /// The session's key in this worker's view cache (a logout through this
    /// worker evicts it at once).
    session_key: Option<SessionKey>,
    /// A bearer client's token was rotated: the response hands it the new one.
    refreshed_token: Option<String>,
    /// Why this request may not start a session (it came from another
    /// site), should the upstream's answer try to.
    session_start_refused: Option<String>,
    /// The request came with a dead session cookie: the response clears it
    /// (unless the upstream starts a session).
    clear_session_cookie: bool,
}

/// One request's flow.
pub struct Flow {
    config: Rc<Config>,
    /// This worker's caches (shared by its requests and its feed poller).
    cache: Rc<RefCell<EdgeCache>>,
    state: State,
    policy: RoutePolicy,
    required_roles: Option<RoleRequirement>,
    /// The route is a sign-in callback ([`crate::policy::RouteDecision`]).
    sign_in_callback: bool,
    /// The route's own sign-in page, if it has one.
    login_redirect_url: Option<String>,
    /// Which session this is, for log lines (a hash, never the secret).
    session: Option<SessionRef>,
}

impl Flow {
    pub fn new(config: Rc<Config>, cache: Rc<RefCell<EdgeCache>>) -> Self {
        Self {
            config,
            cache,
            state: State::Start,
            policy: RoutePolicy::Required,
            required_roles: None,
            sign_in_callback: false,
            login_redirect_url: None,
            session: None,
        }
    }

    /// Entry point: the request headers have arrived.
    pub fn on_request_headers(&mut self, host: &mut dyn Host) -> Verdict {
        if self.state != State::Start {
            return Verdict::Forward;
        }
        self.strip_spoofed_identity(host);
        self.forward_client_ip(host);
        if let Err(ambiguous) = self.decide_route(host) {
            return self.reject(
                host,
                ClientKind::Anonymous,
                Rejection::new(Reason::AmbiguousPath).detail(ambiguous.as_str()),
            );
        }
        if self.policy == RoutePolicy::Off {
            self.remove_session_cookie(host);
            return self.pass(
                host,
                ClientKind::Anonymous,
                Outcome::RouteOff,
                Forwarded::default(),
            );
        }
        match authorization(host) {
            Authorization::Bearer(token) => self.verify_jwt(host, &token),
            Authorization::None => self.exists_cookie(host),
            Authorization::Unreadable(detail) => self.reject(
                host,
                ClientKind::Bearer,
                Rejection::new(Reason::Token(TokenError::Malformed)).detail(detail),
            ),
        }
    }

    /// Which rule governs this request: by Envoy route name, else by the
    /// path the upstream will route (see [`normalized_path`]); a path
    /// without one reading governs nothing and is refused.
    fn decide_route(&mut self, host: &dyn Host) -> Result<(), AmbiguousPath> {
        let path = match host.request_header_lines(":path").as_slice() {
            [one] => normalized_path(one)?,
            _ => return Err(AmbiguousPath::NotAbsolute),
        };
        let route_name = if self.config.uses_route_names {
            host.route_name()
        } else {
            None
        };
        let decision = self.config.route(&path, route_name.as_deref());
        self.policy = decision.policy;
        self.required_roles = decision.roles.cloned();
        self.sign_in_callback = decision.sign_in_callback;
        self.login_redirect_url = decision.login_redirect_url.map(str::to_string);
        Ok(())
    }

    /// Incoming copies of the identity headers are never trusted, in any
    /// spelling: CGI, WSGI, Rack, PHP (and nginx with
    /// `underscores_in_headers`) read `X_Portero_User_Id` as
    /// `x-portero-user-id`, so every name that folds to an identity header
    /// goes, not only the exact one.
    fn strip_spoofed_identity(&self, host: &mut dyn Host) {
        let identity = self.config.identity_headers.all();
        let spoofed: Vec<String> = host
            .request_header_names()
            .into_iter()
            .filter(|name| identity.iter().any(|id| is_spelling_of(name, id)))
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect();
        // The canonical names are removed even when absent: forward auth
        // behind ext_authz sees only the allowed headers, so naming all of
        // them is how a forged copy it cannot see still gets dropped.
        for name in identity
            .iter()
            .copied()
            .chain(spoofed.iter().map(String::as_str))
        {
            host.remove_request_header(name);
        }
    }

    /// The client IP from the proxy's own view, for login to record.
    fn forward_client_ip(&self, host: &mut dyn Host) {
        if let Some(ip) = host.client_address().as_deref().and_then(ip_of_address) {
            host.set_request_header(&self.config.identity_headers.client_ip, ip.as_bytes());
        }
    }

    fn sidecar_call(&self, method: &str, path: String, body: Vec<u8>) -> SidecarCall {
        sidecar_call(&self.config, method, path, body)
    }

    /// Starts a sidecar call; when it started (microseconds), for its
    /// latency and for reading its answer.
    fn dispatch(&mut self, host: &mut dyn Host, call: SidecarCall) -> Result<u64, DispatchError> {
        let started_us = host.now_micros();
        match host.dispatch_sidecar_call(call) {
            Ok(()) => Ok(started_us),
            Err(e) => {
                host.increment(Counter::Sidecar(SidecarError::DispatchFailed));
                Err(e)
            }
        }
    }

    /// The request goes on upstream.
    fn pass(
        &mut self,
        host: &mut dyn Host,
        kind: ClientKind,
        outcome: Outcome,
        mut forwarded: Forwarded,
    ) -> Verdict {
        host.increment(Counter::Request {
            flow: kind,
            outcome,
        });
        forwarded.session_start_refused = self.check_may_start_session(host).err();
        self.state = State::Forwarded(forwarded);
        Verdict::Forward
    }

    /// The session under `key` must not be served from this worker's cache.
    fn evict_session(&self, key: &SessionKey) {
        self.cache.borrow_mut().evict_session(key);
    }

    /// The session cookie is the filter's business, not the upstream's.
    fn remove_session_cookie(&self, host: &mut dyn Host) {
        let name = self.config.cookie.name();
        let lines = host.request_header_lines("cookie");
        if find_cookie(&lines, name).is_none() {
            return;
        }
        match crate::cookie::without_cookie(&lines, name) {
            Some(rest) => host.set_request_header("cookie", &rest),
            None => host.remove_request_header("cookie"),
        }
    }

    /// "Error processing the request": answer locally, forward nothing.
    fn reject(&mut self, host: &mut dyn Host, kind: ClientKind, rejection: Rejection) -> Verdict {
        self.reject_with_token(host, kind, rejection, None)
    }

    /// [`Flow::reject`] after a look-up that may have rotated the client's
    /// token (`refreshed_token`): whatever the answer, the client must learn
    /// its new token, or its next request would present one it can no
    /// longer exchange.
    fn reject_with_token(
        &mut self,
        host: &mut dyn Host,
        kind: ClientKind,
        rejection: Rejection,
        refreshed_token: Option<String>,
    ) -> Verdict {
        if self.policy == RoutePolicy::Optional
            && kind == ClientKind::Cookie
            && rejection.ends_the_credential()
        {
            return self.make_anonymous_request_without_dead_cookie(host, rejection);
        }
        self.state = State::Responded;
        let rejection = rejection.session(self.session.take());
        rejection.log(kind, host.now());
        host.increment(Counter::Request {
            flow: kind,
            outcome: Outcome::Rejected(rejection.reason.code()),
        });
        let mut response = self.refusal_for_this_client(host, kind, &rejection);
        if let Some(token) = refreshed_token {
            response
                .headers
                .push((self.config.access_token_header.clone(), token));
        }
        host.send_local_response(response);
        Verdict::Responded
    }
}

impl Flow {
    /// The refusal as this client can use it: a browser loading a page
    /// (GET/HEAD) that must sign in is sent to the login page; any other
    /// navigation gets an HTML page; API clients get the JSON body. The
    /// status code is the same for all.
    fn refusal_for_this_client(
        &self,
        host: &dyn Host,
        kind: ClientKind,
        rejection: &Rejection,
    ) -> LocalResponse {
        let config = &self.config;
        if !is_navigation(host) {
            return rejection.response(config, kind);
        }
        let path = header_text(host, ":path").unwrap_or_default();
        let method = header_text(host, ":method").unwrap_or_default();
        if matches!(method.as_str(), "GET" | "HEAD") {
            let route_url = self.login_redirect_url.as_deref();
            if let Some(redirect) = rejection.login_redirect(config, route_url, kind, &path) {
                return redirect;
            }
        }
        let json = rejection.response(config, kind);
        if !config.error_pages.enabled {
            return json;
        }
        let sign_in = crate::reject::sign_in_url(config, self.login_redirect_url.as_deref(), &path);
        crate::pages::page(config, rejection.reason, json, sign_in, &path)
    }

    /// A dead session cookie on an `optional` route (the session ended
    /// elsewhere, expired, or the cookie cannot be opened): the page still
    /// renders — for nobody — and the browser's cookie is cleared, so a
    /// user whose session ended can always reach the sign-in page.
    fn make_anonymous_request_without_dead_cookie(
        &mut self,
        host: &mut dyn Host,
        rejection: Rejection,
    ) -> Verdict {
        log::info!(
            "{}",
            serde_json::json!({"event": "dead_session_cookie_cleared", "reason": rejection.reason.code()})
        );
        self.session = None;
        self.remove_session_cookie(host);
        self.pass(
            host,
            ClientKind::Anonymous,
            Outcome::Anonymous,
            Forwarded {
                clear_session_cookie: true,
                ..Forwarded::default()
            },
        )
    }
}

/// A call to the sidecar with the filter's credential.
pub fn sidecar_call(config: &Config, method: &str, path: String, body: Vec<u8>) -> SidecarCall {
    let sidecar = &config.sidecar;
    let mut headers = vec![
        (":method".into(), method.into()),
        (":path".into(), path),
        (":authority".into(), sidecar.authority.clone()),
        ("authorization".into(), sidecar.authorization.clone()),
    ];
    if !body.is_empty() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    SidecarCall {
        cluster: sidecar.cluster.clone(),
        headers,
        body,
        timeout_ms: sidecar.timeout_ms,
    }
}

/// A browser navigating (loading a page or submitting a form), not a
/// script's `fetch`: browsers say so in `Sec-Fetch-Mode`; without it (an
/// older browser, curl), a request that accepts HTML.
fn is_navigation(host: &dyn Host) -> bool {
    match header_text(host, "sec-fetch-mode") {
        Some(mode) => mode == "navigate",
        None => header_text(host, "accept").is_some_and(|accept| accept.contains("text/html")),
    }
}

/// A request header the flow only reads (never a credential, never written
/// back): its lines joined with `, `, bytes that are not UTF-8 replaced.
/// Matching on it (a path prefix, a method, an origin) can only fail on them.
fn header_text(host: &dyn Host, name: &str) -> Option<String> {
    let lines = host.request_header_lines(name);
    let (first, rest) = lines.split_first()?;
    let mut text = String::from_utf8_lossy(first).into_owned();
    for line in rest {
        text.push_str(", ");
        text.push_str(&String::from_utf8_lossy(line));
    }
    Some(text)
}

/// What the `Authorization` header says.
enum Authorization {
    None,
    Bearer(String),
    /// A credential the filter must refuse: not text, or several lines.
    Unreadable(&'static str),
}

/// Reads `Authorization`. Another scheme (Basic …) is no bearer credential:
/// the cookie flow decides.
fn authorization(host: &dyn Host) -> Authorization {
    match host.request_header_lines("authorization").as_slice() {
        [] => Authorization::None,
        [one] => match std::str::from_utf8(one) {
            Ok(text) => bearer_token(text).map_or(Authorization::None, |t| {
                Authorization::Bearer(t.to_string())
            }),
            Err(_) => Authorization::Unreadable("authorization is not text"),
        },
        _ => Authorization::Unreadable("several authorization headers"),
    }
}

/// What kind of failure a call that did not answer `200` is. The sidecar
/// answers every error with an [`ErrorBody`]; a 502/503/504 without one is
/// the proxy's own local reply (connection refused or reset, timeout, no
/// healthy host): the sidecar gave no answer at all.
fn failed_call(reply: &SidecarReply) -> SidecarError {
    match reply.status {
        None => SidecarError::NoAnswer,
        Some(502..=504) if serde_json::from_slice::<ErrorBody>(&reply.body).is_err() => {
            SidecarError::NoAnswer
        }
        Some(_) => SidecarError::ErrorStatus,
    }
}

/// A header value Envoy will accept and that cannot split a header.
fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80)
}

/// Whether header `name` (as it arrived) reads as `canonical` (lowercase,
/// dashes) to an app that folds case and treats `_` as `-`.
pub fn is_spelling_of(name: &[u8], canonical: &str) -> bool {
    name.len() == canonical.len()
        && name.iter().zip(canonical.bytes()).all(|(&got, want)| {
            let got = got.to_ascii_lowercase();
            got == want || (got == b'_' && want == b'-')
        })
}

/// `ip` of an `ip:port` or `[ip6]:port` address.
fn ip_of_address(address: &str) -> Option<String> {
    if let Ok(socket) = address.parse::<std::net::SocketAddr>() {
        return Some(socket.ip().to_string());
    }
    address
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::{failed_call, ip_of_address, SidecarError, SidecarReply};

    #[test]
    fn client_address_forms() {
        assert_eq!(ip_of_address("10.0.0.1:80").as_deref(), Some("10.0.0.1"));
        assert_eq!(ip_of_address("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(ip_of_address("::1").as_deref(), Some("::1"));
        assert_eq!(ip_of_address("garbage"), None);
    }

    #[test]
    fn a_call_failure_is_classified_by_who_answered() {
        let reply = |status, body: &[u8]| SidecarReply {
            status,
            body: body.to_vec(),
        };
        let sidecar_error = br#"{"error":"store_unavailable","message":"redis"}"#;
        // The proxy's own local replies: connection refused, reset, timeout.
        assert_eq!(failed_call(&reply(None, b"")), SidecarError::NoAnswer);
        for status in [502, 503, 504] {
            let envoy = b"upstream connect error or disconnect/reset before headers";
            assert_eq!(
                failed_call(&reply(Some(status), envoy)),
                SidecarError::NoAnswer
            );
            assert_eq!(
                failed_call(&reply(Some(status), sidecar_error)),
                SidecarError::ErrorStatus
            );
        }
        assert_eq!(
            failed_call(&reply(Some(500), b"")),
            SidecarError::ErrorStatus
        );
        assert_eq!(
            failed_call(&reply(Some(401), sidecar_error)),
            SidecarError::ErrorStatus
        );
    }
}
