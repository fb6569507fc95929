//! The authentication flow of one request, as a state machine over a small
//! [`Host`] trait. It reads like the seed document's flowcharts: one step per
//! function, named after the step; any "no" ends in [`Flow::reject`].
//!
//! ```text
//! cookie: exists_cookie ─► obtain_session_id ─► look_up_session ┐
//! bearer: exists_jwt ─► verify_jwt ─► exists_session_id ─► look_up_session ┤
//!         (sidecar answers) ─► exists_session ─► verify_session_tokens ─► make_the_request
//! ```
//!
//! The flow never panics on request data: every input is parsed into a
//! `Result`, and every failure becomes a response.

use std::rc::Rc;

use portero_wire::{AccessClaims, ErrorBody, LookupRequest, LookupResponse, SessionView};

use crate::config::{Config, RoutePolicy};
use crate::cookie::find_cookie;
use crate::reject::{Reason, Rejection};
use crate::token::bearer_token;

/// A response the filter sends itself instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

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
    /// The downstream address as the proxy sees it (`ip:port`), after its
    /// trusted `X-Forwarded-For` hops.
    fn client_address(&self) -> Option<String>;
    fn request_header(&self, name: &str) -> Option<String>;
    fn set_request_header(&mut self, name: &str, value: &str);
    fn remove_request_header(&mut self, name: &str);
    fn response_header(&self, name: &str) -> Option<String>;
    fn add_response_header(&mut self, name: &str, value: &str);
    fn remove_response_header(&mut self, name: &str);
    /// Starts the call; the answer is fed back through [`Flow::on_sidecar_reply`].
    fn dispatch_sidecar_call(&mut self, call: SidecarCall) -> Result<(), String>;
    fn send_local_response(&mut self, response: LocalResponse);
}

/// What the host does with the request after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let the request go on (upstream, or to the local response just sent).
    Continue,
    /// Hold the request until the sidecar answers.
    Pause,
}

/// Which kind of client the request came from; decides the error's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// No credential at all.
    Anonymous,
    Cookie,
    Bearer,
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

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Start,
    AwaitingSession(Credential),
    Done,
}

/// One request's flow.
pub struct Flow {
    config: Rc<Config>,
    state: State,
    /// A bearer client's token was rotated: hand it the new one.
    refreshed_token: Option<String>,
}

impl Flow {
    pub fn new(config: Rc<Config>) -> Self {
        Self {
            config,
            state: State::Start,
            refreshed_token: None,
        }
    }

    /// Entry point: the request headers have arrived.
    pub fn on_request_headers(&mut self, host: &mut dyn Host) -> Verdict {
        if self.state != State::Start {
            return Verdict::Continue;
        }
        self.strip_spoofed_identity(host);
        self.forward_client_ip(host);
        let path = host.request_header(":path").unwrap_or_default();
        if self.config.route_policy(&path) == RoutePolicy::Off {
            self.state = State::Done;
            return Verdict::Continue;
        }
        let authorization = host.request_header("authorization");
        match authorization.as_deref().and_then(bearer_token) {
            Some(token) => self.verify_jwt(host, token),
            None => self.exists_cookie(host),
        }
    }

    /// Incoming copies of the identity headers are never trusted.
    fn strip_spoofed_identity(&self, host: &mut dyn Host) {
        for name in self.config.identity_headers.all() {
            host.remove_request_header(name);
        }
    }

    /// The client IP from the proxy's own view, for login to record.
    fn forward_client_ip(&self, host: &mut dyn Host) {
        if let Some(ip) = host.client_address().as_deref().and_then(ip_of_address) {
            host.set_request_header(&self.config.identity_headers.client_ip, &ip);
        }
    }

    // ── cookie flow ─────────────────────────────────────────────────────

    /// "Does the cookie exist?"
    fn exists_cookie(&mut self, host: &mut dyn Host) -> Verdict {
        let cookies = host.request_header("cookie").unwrap_or_default();
        match find_cookie(&cookies, self.config.cookie.name()) {
            Some(value) => {
                let value = value.to_string();
                if let Err(detail) = self.check_same_origin(host) {
                    return self.reject(
                        host,
                        ClientKind::Cookie,
                        Rejection::new(Reason::CrossSiteRequest).detail(&detail),
                    );
                }
                self.obtain_session_id(host, &value)
            }
            None => self.reject(
                host,
                ClientKind::Anonymous,
                Rejection::new(Reason::NoCredentials),
            ),
        }
    }

    /// CSRF defence in depth (beside `SameSite`): a cookie-authenticated
    /// unsafe request must come from the same origin — `Sec-Fetch-Site:
    /// same-origin`, or else an `Origin` that is the request's own or listed.
    fn check_same_origin(&self, host: &dyn Host) -> Result<(), String> {
        let csrf = &self.config.csrf;
        let method = host.request_header(":method").unwrap_or_default();
        if !csrf.enabled || matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS" | "TRACE") {
            return Ok(());
        }
        if host.request_header("sec-fetch-site").as_deref() == Some("same-origin") {
            return Ok(());
        }
        let Some(origin) = host.request_header("origin") else {
            return Err("no same-origin Sec-Fetch-Site and no Origin".into());
        };
        let own = match (
            host.request_header(":scheme"),
            host.request_header(":authority"),
        ) {
            (Some(scheme), Some(authority)) => Some(format!("{scheme}://{authority}")),
            _ => None,
        };
        if own.as_deref() == Some(origin.as_str()) || csrf.allowed_origins.contains(&origin) {
            Ok(())
        } else {
            Err(format!("origin {origin:?} not allowed"))
        }
    }

    /// "Obtain the session id": decrypt the cookie.
    fn obtain_session_id(&mut self, host: &mut dyn Host, cookie_value: &str) -> Verdict {
        match self.config.cookie.open(cookie_value) {
            Ok(session_id) => {
                self.look_up_session(host, Credential::Cookie, LookupRequest::by_id(&session_id))
            }
            Err(e) => self.reject(
                host,
                ClientKind::Cookie,
                Rejection::new(Reason::CookieInvalid).detail(e.as_str()),
            ),
        }
    }

    // ── bearer flow ─────────────────────────────────────────────────────

    /// "Is the JWT valid?": signature, key, issuer, audience, time. A token
    /// that is only expired (within the refresh window) goes on: the session
    /// look-up refreshes it, as the flowchart's refresh branch asks.
    fn verify_jwt(&mut self, host: &mut dyn Host, token: &str) -> Verdict {
        match self.config.tokens.verify(token, host.now()) {
            Ok(verified) => self.exists_session_id(host, verified.claims),
            Err(e) => self.reject(host, ClientKind::Bearer, Rejection::new(Reason::Token(e))),
        }
    }

    /// "Does the JWT name a session?"
    fn exists_session_id(&mut self, host: &mut dyn Host, claims: AccessClaims) -> Verdict {
        if !portero_wire::is_session_token_shape(&claims.sid) {
            return self.reject(
                host,
                ClientKind::Bearer,
                Rejection::new(Reason::Token(crate::token::TokenError::MissingSessionId)),
            );
        }
        let lookup = LookupRequest::by_handle(&claims.sid, &claims.jti);
        self.look_up_session(host, Credential::Bearer(Box::new(claims)), lookup)
    }

    // ── shared steps ────────────────────────────────────────────────────

    /// Ask the sidecar for the session (and pause until it answers).
    fn look_up_session(
        &mut self,
        host: &mut dyn Host,
        credential: Credential,
        lookup: LookupRequest,
    ) -> Verdict {
        let Ok(body) = serde_json::to_vec(&lookup) else {
            return self.reject(
                host,
                credential.kind(),
                Rejection::new(Reason::SidecarUnavailable),
            );
        };
        let sidecar = &self.config.sidecar;
        let call = SidecarCall {
            cluster: sidecar.cluster.clone(),
            headers: vec![
                (":method".into(), "POST".into()),
                (":path".into(), portero_wire::LOOKUP_PATH.into()),
                (":authority".into(), sidecar.authority.clone()),
                ("content-type".into(), "application/json".into()),
                ("authorization".into(), sidecar.authorization.clone()),
            ],
            body,
            timeout_ms: sidecar.timeout_ms,
        };
        match host.dispatch_sidecar_call(call) {
            Ok(()) => {
                self.state = State::AwaitingSession(credential);
                Verdict::Pause
            }
            Err(e) => self.reject(
                host,
                credential.kind(),
                Rejection::new(Reason::SidecarUnavailable).detail(&e),
            ),
        }
    }

    /// The sidecar answered (or failed to).
    pub fn on_sidecar_reply(&mut self, host: &mut dyn Host, reply: SidecarReply) -> Verdict {
        let credential = match std::mem::replace(&mut self.state, State::Done) {
            State::AwaitingSession(credential) => credential,
            other => {
                self.state = other;
                return Verdict::Continue;
            }
        };
        match read_session_reply(&reply) {
            SessionAnswer::Found(session) => self.exists_session(host, credential, *session),
            SessionAnswer::Refused(reason) => {
                self.reject(host, credential.kind(), Rejection::new(reason))
            }
            SessionAnswer::Trouble(reason, detail) => self.reject(
                host,
                credential.kind(),
                Rejection::new(reason).detail(&detail),
            ),
        }
    }

    /// "Does the session exist (and is it alive)?"
    fn exists_session(
        &mut self,
        host: &mut dyn Host,
        credential: Credential,
        session: SessionView,
    ) -> Verdict {
        if session.expires_at <= host.now() {
            return self.reject(
                host,
                credential.kind(),
                Rejection::new(Reason::SessionNotFound),
            );
        }
        self.verify_session_tokens(host, credential, session)
    }

    /// "Are the session's tokens valid?" The sidecar has already refreshed
    /// an expired access token and told a current token from a replay; what
    /// is left is to check that its answer fits the request.
    fn verify_session_tokens(
        &mut self,
        host: &mut dyn Host,
        credential: Credential,
        session: SessionView,
    ) -> Verdict {
        let now = host.now();
        let session_token_ok = !session.access_token.is_empty() && session.access_expires_at > now;
        let bearer_fits = match &credential {
            Credential::Bearer(claims) => {
                claims.sid == session.handle && claims.sub == session.user_id
            }
            Credential::Cookie => true,
        };
        if !session_token_ok || !bearer_fits {
            return self.reject(
                host,
                credential.kind(),
                Rejection::new(Reason::SessionTokensInvalid),
            );
        }
        if let Credential::Bearer(claims) = &credential {
            if claims.jti != session.access_jti {
                // The presented token was rotated (by this request or a
                // concurrent one): upstream and client get the current one.
                self.refreshed_token = Some(session.access_token.clone());
            }
        }
        self.make_the_request(host, credential.kind(), &session)
    }

    /// "Make the request": identity headers on, session cookie off.
    fn make_the_request(
        &mut self,
        host: &mut dyn Host,
        kind: ClientKind,
        session: &SessionView,
    ) -> Verdict {
        let headers = &self.config.identity_headers;
        let roles = session.roles.join(",");
        let values = [
            (&headers.user_id, session.user_id.as_str()),
            (&headers.session, session.handle.as_str()),
            (&headers.email, session.email.as_str()),
            (&headers.roles, roles.as_str()),
        ];
        if values.iter().any(|(_, v)| !is_header_value(v))
            || session.roles.iter().any(|r| r.contains(','))
            || !is_header_value(&session.access_token)
        {
            return self.reject(
                host,
                kind,
                Rejection::new(Reason::SidecarBadReply).detail("identity not fit for a header"),
            );
        }
        for (name, value) in values {
            host.set_request_header(name, value);
        }
        if kind == ClientKind::Cookie {
            self.remove_session_cookie(host);
            if headers.forward_access_token {
                host.set_request_header(
                    "authorization",
                    &format!("Bearer {}", session.access_token),
                );
            }
        } else if self.refreshed_token.is_some() {
            host.set_request_header("authorization", &format!("Bearer {}", session.access_token));
        }
        self.state = State::Done;
        Verdict::Continue
    }

    /// The session cookie is the filter's business, not the upstream's.
    fn remove_session_cookie(&self, host: &mut dyn Host) {
        let Some(cookies) = host.request_header("cookie") else {
            return;
        };
        match crate::cookie::without_cookie(&cookies, self.config.cookie.name()) {
            Some(rest) => host.set_request_header("cookie", &rest),
            None => host.remove_request_header("cookie"),
        }
    }

    /// "Error processing the request": answer locally, forward nothing.
    fn reject(&mut self, host: &mut dyn Host, kind: ClientKind, rejection: Rejection) -> Verdict {
        self.state = State::Done;
        rejection.log(kind);
        let response = rejection.response(&self.config, kind);
        host.send_local_response(response);
        Verdict::Pause
    }

    // ── response side ───────────────────────────────────────────────────

    /// The upstream's response headers: turn the internal "start session"
    /// and "end session" headers into `Set-Cookie`, and never let them out.
    pub fn on_response_headers(&mut self, host: &mut dyn Host) {
        let config = &self.config;
        let name = config.cookie.name();
        // Only the filter speaks this header to clients.
        host.remove_response_header(&config.access_token_header);
        if let Some(token) = self.refreshed_token.take() {
            host.add_response_header(&config.access_token_header, &token);
        }
        if let Some(session_id) = host.response_header(&config.session_start_header) {
            host.remove_response_header(&config.session_start_header);
            match config.cookie.seal(session_id.trim()) {
                Ok(value) => host.add_response_header(
                    "set-cookie",
                    &config.cookie_attributes.set_cookie(name, &value),
                ),
                Err(e) => {
                    log::error!(
                        "{}",
                        serde_json::json!({"event": "session_start_failed", "error": e.as_str()})
                    );
                    // The login did not produce a usable session: say so.
                    host.remove_response_header(":status");
                    host.add_response_header(":status", "502");
                }
            }
        }
        if host.response_header(&config.session_end_header).is_some() {
            host.remove_response_header(&config.session_end_header);
            host.add_response_header("set-cookie", &config.cookie_attributes.clear_cookie(name));
        }
    }
}

/// The parsed answer of a session look-up.
enum SessionAnswer {
    Found(Box<SessionView>),
    Refused(Reason),
    Trouble(Reason, String),
}

/// Reads the sidecar's reply. Only a well-formed `404` with a known verdict
/// means "no usable session"; anything unexpected is trouble (503), never a
/// logout.
fn read_session_reply(reply: &SidecarReply) -> SessionAnswer {
    match reply.status {
        None => SessionAnswer::Trouble(Reason::SidecarUnavailable, "no answer".into()),
        Some(200) => match serde_json::from_slice::<LookupResponse>(&reply.body) {
            Ok(answer) => SessionAnswer::Found(Box::new(answer.session)),
            Err(e) => SessionAnswer::Trouble(Reason::SidecarBadReply, e.to_string()),
        },
        Some(404) => match serde_json::from_slice::<ErrorBody>(&reply.body)
            .ok()
            .and_then(|body| Reason::from_verdict(&body.error))
        {
            Some(reason) => SessionAnswer::Refused(reason),
            None => SessionAnswer::Trouble(Reason::SidecarBadReply, "unexpected 404".into()),
        },
        Some(status) => {
            SessionAnswer::Trouble(Reason::SidecarUnavailable, format!("status {status}"))
        }
    }
}

/// A header value Envoy will accept and that cannot split a header.
fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80)
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
#[path = "flow_tests.rs"]
mod tests;
