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
//! No credential on an `optional` route goes to `make_anonymous_request`; a
//! binding mismatch under `reject` goes through `end_session` (when so
//! configured) to the rejection.
//!
//! The flow never panics on request data: every input is parsed into a
//! `Result`, and every failure becomes a response.

use std::cell::RefCell;
use std::rc::Rc;

use portero_wire::{AccessClaims, ErrorBody, LookupRequest, LookupResponse, SessionView};

pub use crate::http::{ClientKind, LocalResponse};

use crate::cache::{session_key_by_handle, session_key_by_id, token_key, CacheKey, EdgeCache};
use crate::config::Config;
use crate::cookie::find_cookie;
use crate::metrics::{CacheKind, Counter, Outcome, SidecarError};
use crate::policy::{MismatchPolicy, RoleRequirement, RoutePolicy};
use crate::reject::{session_hash, Reason, Rejection, SessionHash};
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
    /// Replaces every line of `name` with one holding `value`.
    fn set_request_header(&mut self, name: &str, value: &[u8]);
    fn remove_request_header(&mut self, name: &str);
    /// Every line of response header `name`, as bytes.
    fn response_header_lines(&self, name: &str) -> Vec<&[u8]>;
    fn add_response_header(&mut self, name: &str, value: &str);
    fn remove_response_header(&mut self, name: &str);
    /// Starts the call; the answer is fed back through [`Flow::on_sidecar_reply`].
    fn dispatch_sidecar_call(&mut self, call: SidecarCall) -> Result<(), String>;
    fn send_local_response(&mut self, response: LocalResponse);
    fn increment(&mut self, counter: Counter);
    fn record_sidecar_latency_us(&mut self, micros: u64);
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

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Start,
    AwaitingSession(Credential),
    /// Ending a session whose client did not match; then refuse.
    EndingSession(ClientKind, Box<Rejection>),
    Done,
}

/// One request's flow.
pub struct Flow {
    config: Rc<Config>,
    /// This worker's caches (shared by its requests and its feed poller).
    cache: Rc<RefCell<EdgeCache>>,
    state: State,
    /// The session's key in the view cache, once known.
    session_key: Option<CacheKey>,
    policy: RoutePolicy,
    required_roles: Option<RoleRequirement>,
    /// Which session this is, for log lines (a hash, never the secret).
    session: Option<SessionHash>,
    /// When the pending sidecar call started (microseconds).
    sidecar_call_started: u64,
    /// A bearer client's token was rotated: hand it the new one.
    refreshed_token: Option<String>,
    /// Bound fields that differed under the `log` policy (for the upstream).
    binding_mismatch: Option<String>,
    /// The filter answered this request itself: the response is its own.
    answered_locally: bool,
}

impl Flow {
    pub fn new(config: Rc<Config>, cache: Rc<RefCell<EdgeCache>>) -> Self {
        Self {
            config,
            cache,
            state: State::Start,
            session_key: None,
            policy: RoutePolicy::Required,
            required_roles: None,
            session: None,
            sidecar_call_started: 0,
            refreshed_token: None,
            binding_mismatch: None,
            answered_locally: false,
        }
    }

    /// Entry point: the request headers have arrived.
    pub fn on_request_headers(&mut self, host: &mut dyn Host) -> Verdict {
        if self.state != State::Start {
            return Verdict::Forward;
        }
        self.strip_spoofed_identity(host);
        self.forward_client_ip(host);
        self.decide_route(host);
        if self.policy == RoutePolicy::Off {
            self.remove_session_cookie(host);
            return self.pass(host, ClientKind::Anonymous, Outcome::RouteOff);
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

    /// Which rule governs this request: by Envoy route name, else by path.
    fn decide_route(&mut self, host: &dyn Host) {
        let path = header_text(host, ":path").unwrap_or_default();
        let route_name = if self.config.uses_route_names {
            host.route_name()
        } else {
            None
        };
        let decision = self.config.route(&path, route_name.as_deref());
        self.policy = decision.policy;
        self.required_roles = decision.roles.cloned();
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
            host.set_request_header(&self.config.identity_headers.client_ip, ip.as_bytes());
        }
    }

    // ── cookie flow ─────────────────────────────────────────────────────

    /// "Does the cookie exist?"
    fn exists_cookie(&mut self, host: &mut dyn Host) -> Verdict {
        let found = find_cookie(
            &host.request_header_lines("cookie"),
            self.config.cookie.name(),
        )
        .map(|value| std::str::from_utf8(value).map(str::to_string));
        match found {
            // A session cookie that is not even text cannot be ours.
            Some(Err(_)) => self.reject(
                host,
                ClientKind::Cookie,
                Rejection::new(Reason::CookieInvalid).detail("not text"),
            ),
            Some(Ok(value)) => {
                if let Err(detail) = self.check_same_origin(host) {
                    host.increment(Counter::CsrfRejected);
                    return self.reject(
                        host,
                        ClientKind::Cookie,
                        Rejection::new(Reason::CrossSiteRequest).detail(&detail),
                    );
                }
                self.obtain_session_id(host, &value)
            }
            None if self.policy == RoutePolicy::Optional => self.make_anonymous_request(host),
            None => self.reject(
                host,
                ClientKind::Anonymous,
                Rejection::new(Reason::NoCredentials),
            ),
        }
    }

    /// An `optional` route without a credential: on it goes, with no
    /// identity (the incoming identity headers are already gone).
    fn make_anonymous_request(&mut self, host: &mut dyn Host) -> Verdict {
        self.pass(host, ClientKind::Anonymous, Outcome::Anonymous)
    }

    /// CSRF defence in depth (beside `SameSite`): a cookie-authenticated
    /// unsafe request must come from the same origin — `Sec-Fetch-Site:
    /// same-origin`, or else an `Origin` that is the request's own or listed.
    fn check_same_origin(&self, host: &dyn Host) -> Result<(), String> {
        let csrf = &self.config.csrf;
        let method = header_text(host, ":method").unwrap_or_default();
        if !csrf.enabled || matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS" | "TRACE") {
            return Ok(());
        }
        if header_text(host, "sec-fetch-site").as_deref() == Some("same-origin") {
            return Ok(());
        }
        let Some(origin) = header_text(host, "origin") else {
            return Err("no same-origin Sec-Fetch-Site and no Origin".into());
        };
        let own = match (
            header_text(host, ":scheme"),
            header_text(host, ":authority"),
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
                self.session = Some(SessionHash::Id(session_hash(&session_id)));
                let key = session_key_by_id(&session_id);
                self.look_up_session(host, Credential::Cookie, key, || {
                    LookupRequest::by_id(&session_id)
                })
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
        match self.verified_token(host, token) {
            Ok(verified) => self.exists_session_id(host, verified.claims),
            Err(e) => self.reject(host, ClientKind::Bearer, Rejection::new(Reason::Token(e))),
        }
    }

    /// The token's claims, from the verified-token cache when it was seen
    /// before (the time checks run again either way), else by RS256.
    fn verified_token(&self, host: &mut dyn Host, token: &str) -> Result<Verified, TokenError> {
        let tokens = &self.config.tokens;
        let now = host.now();
        let mut cache = self.cache.borrow_mut();
        if !cache.tokens_enabled() || token.len() > MAX_TOKEN_LEN {
            return tokens.verify(token, now);
        }
        let key = token_key(token);
        if let Some(claims) = cache.token(&key, now) {
            host.increment(Counter::Cache {
                cache: CacheKind::Tokens,
                hit: true,
            });
            return tokens.check_time(claims, now);
        }
        host.increment(Counter::Cache {
            cache: CacheKind::Tokens,
            hit: false,
        });
        let claims = tokens.verify_signature(token)?;
        let valid_until = tokens.valid_until(&claims);
        let verified = tokens.check_time(claims, now)?;
        if !verified.expired {
            cache.insert_token(key, verified.claims.clone(), valid_until, now);
        }
        Ok(verified)
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
        self.session = Some(SessionHash::Handle(session_hash(&claims.sid)));
        let key = session_key_by_handle(&claims.sid);
        let lookup = LookupRequest::by_handle(&claims.sid, &claims.jti);
        self.look_up_session(host, Credential::Bearer(Box::new(claims)), key, || lookup)
    }

    // ── shared steps ────────────────────────────────────────────────────

    /// Ask the sidecar for the session (and pause until it answers) —
    /// unless this worker holds a fresh view of it under `key` (then no
    /// look-up is serialised or sent).
    fn look_up_session(
        &mut self,
        host: &mut dyn Host,
        credential: Credential,
        key: CacheKey,
        lookup: impl FnOnce() -> LookupRequest,
    ) -> Verdict {
        self.session_key = Some(key);
        if let Some(view) = self.cached_session(host, &credential, &key) {
            return self.exists_session(host, credential, view);
        }
        let Ok(body) = serde_json::to_vec(&lookup()) else {
            return self.reject(
                host,
                credential.kind(),
                Rejection::new(Reason::SidecarUnavailable),
            );
        };
        let call = self.sidecar_call("POST", portero_wire::LOOKUP_PATH.into(), body);
        match self.dispatch(host, call) {
            Ok(()) => {
                self.state = State::AwaitingSession(credential);
                Verdict::Wait
            }
            Err(e) => self.reject(
                host,
                credential.kind(),
                Rejection::new(Reason::SidecarUnavailable).detail(&e),
            ),
        }
    }

    /// A view from the session cache, if it may answer for the sidecar: a
    /// bearer client's view must also hold the very token presented (a
    /// rotated one goes to the sidecar, which knows grace from replay).
    fn cached_session(
        &self,
        host: &mut dyn Host,
        credential: &Credential,
        key: &CacheKey,
    ) -> Option<SessionView> {
        let mut cache = self.cache.borrow_mut();
        if !cache.sessions_enabled() {
            return None;
        }
        let view = cache
            .session(key, host.now_micros())
            .filter(|view| match credential {
                // A token not yet presented goes to the store once: its
                // first use is what ends its predecessor's exchangeability.
                Credential::Bearer(claims) => {
                    claims.jti == view.access_jti && view.access_token_presented
                }
                Credential::Cookie => true,
            });
        host.increment(Counter::Cache {
            cache: CacheKind::Sessions,
            hit: view.is_some(),
        });
        view
    }

    fn sidecar_call(&self, method: &str, path: String, body: Vec<u8>) -> SidecarCall {
        sidecar_call(&self.config, method, path, body)
    }

    fn dispatch(&mut self, host: &mut dyn Host, call: SidecarCall) -> Result<(), String> {
        self.sidecar_call_started = host.now_micros();
        let dispatched = host.dispatch_sidecar_call(call);
        if dispatched.is_err() {
            host.increment(Counter::Sidecar(SidecarError::DispatchFailed));
        }
        dispatched
    }

    /// The sidecar answered (or failed to).
    pub fn on_sidecar_reply(&mut self, host: &mut dyn Host, reply: SidecarReply) -> Verdict {
        let elapsed = host.now_micros().saturating_sub(self.sidecar_call_started);
        host.record_sidecar_latency_us(elapsed);
        match std::mem::replace(&mut self.state, State::Done) {
            State::AwaitingSession(credential) => self.on_session_answer(host, credential, &reply),
            State::EndingSession(kind, rejection) => {
                self.on_session_ended(host, kind, *rejection, &reply)
            }
            other => {
                // Nothing was waiting for this reply.
                self.state = other;
                Verdict::Responded
            }
        }
    }

    fn on_session_answer(
        &mut self,
        host: &mut dyn Host,
        credential: Credential,
        reply: &SidecarReply,
    ) -> Verdict {
        match read_session_reply(reply) {
            SessionAnswer::Found(answer) => {
                if answer.rotated {
                    host.increment(Counter::Refresh);
                }
                if let Some(key) = self.session_key {
                    self.cache.borrow_mut().insert_session(
                        key,
                        answer.session.clone(),
                        self.sidecar_call_started,
                    );
                }
                self.exists_session(host, credential, answer.session)
            }
            SessionAnswer::Refused(reason) => {
                self.evict_session();
                if reason == Reason::TokenReplayed {
                    host.increment(Counter::ReuseDetected);
                }
                let mut rejection = Rejection::new(reason);
                if reason == Reason::UserBanned {
                    // A ban keeps the sessions (lifting it restores them):
                    // the browser keeps its cookie too.
                    rejection = rejection.keep_cookie();
                }
                self.reject(host, credential.kind(), rejection)
            }
            SessionAnswer::Trouble(error, detail) => {
                host.increment(Counter::Sidecar(error));
                let reason = match error {
                    SidecarError::BadReply => Reason::SidecarBadReply,
                    _ => Reason::SidecarUnavailable,
                };
                self.reject(
                    host,
                    credential.kind(),
                    Rejection::new(reason).detail(&detail),
                )
            }
        }
    }

    /// "Does the session exist (and is it alive)?"
    fn exists_session(
        &mut self,
        host: &mut dyn Host,
        credential: Credential,
        session: SessionView,
    ) -> Verdict {
        // From here on the session is known by its handle (also when the
        // view came from this worker's cache).
        self.session = Some(SessionHash::Handle(session_hash(&session.handle)));
        if session.expires_at <= host.now() {
            return self.reject(
                host,
                credential.kind(),
                Rejection::new(Reason::SessionNotFound),
            );
        }
        self.is_same_client(host, credential, session)
    }

    /// "Is it the client that logged in?": the session binding. Mismatches
    /// under `log` are counted and told upstream; under `reject` they refuse
    /// the request and, if so configured, end the session first.
    fn is_same_client(
        &mut self,
        host: &mut dyn Host,
        credential: Credential,
        session: SessionView,
    ) -> Verdict {
        let client_ip = host.client_address().as_deref().and_then(ip_of_address);
        let user_agent = header_text(host, "user-agent");
        let mismatches = self.config.binding.mismatches(
            &session.client_ip,
            &session.user_agent,
            client_ip.as_deref(),
            user_agent.as_deref(),
        );
        if mismatches.is_empty() {
            return self.verify_session_tokens(host, credential, session);
        }
        let fields: Vec<&str> = mismatches.iter().map(|m| m.field.name()).collect();
        let fields = fields.join(",");
        for mismatch in &mismatches {
            host.increment(Counter::BindingMismatch {
                field: mismatch.field,
                action: mismatch.policy,
            });
        }
        if !mismatches
            .iter()
            .any(|m| m.policy == MismatchPolicy::Reject)
        {
            log::warn!(
                "{}",
                serde_json::json!({
                    "event": "binding_mismatch",
                    "action": "log",
                    "fields": fields,
                    "client": credential.kind().name(),
                    "session_hash": session_hash(&session.handle),
                })
            );
            self.binding_mismatch = Some(fields);
            return self.verify_session_tokens(host, credential, session);
        }
        let rejection = Rejection::new(Reason::BindingMismatch).detail(&fields);
        if self.config.binding.end_session_on_reject {
            self.end_session(host, credential.kind(), &session.handle, rejection)
        } else {
            self.reject(host, credential.kind(), rejection.keep_cookie())
        }
    }

    /// Ends the session at the sidecar, then refuses the request with
    /// `rejection` (a stolen credential dies with the session).
    fn end_session(
        &mut self,
        host: &mut dyn Host,
        kind: ClientKind,
        handle: &str,
        rejection: Rejection,
    ) -> Verdict {
        self.evict_session();
        let call = self.sidecar_call(
            "DELETE",
            format!("{}/{handle}", portero_wire::SESSIONS_PATH),
            Vec::new(),
        );
        match self.dispatch(host, call) {
            Ok(()) => {
                self.state = State::EndingSession(kind, Box::new(rejection));
                Verdict::Wait
            }
            // Refused either way; the session could not be ended now.
            Err(e) => self.reject(host, kind, rejection.detail(&format!("end failed: {e}"))),
        }
    }

    fn on_session_ended(
        &mut self,
        host: &mut dyn Host,
        kind: ClientKind,
        rejection: Rejection,
        reply: &SidecarReply,
    ) -> Verdict {
        let rejection = match reply.status {
            Some(200) => rejection,
            status => {
                host.increment(Counter::Sidecar(failed_call(reply)));
                rejection.detail(&format!("session not ended: {status:?}"))
            }
        };
        self.reject(host, kind, rejection)
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
        // "Valid when the store answered": the store rotates a token that has
        // expired by its clock, so its answer is checked against the moment
        // the look-up started, not the moment the answer arrived (a token
        // with a second left would otherwise fail across a second boundary
        // and refuse a valid client). A cached view was checked against now.
        let checked_at = match self.sidecar_call_started {
            0 => host.now(),
            started_us => started_us / 1_000_000,
        };
        let session_token_ok =
            !session.access_token.is_empty() && session.access_expires_at > checked_at;
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
        self.has_required_roles(host, credential.kind(), &session)
    }

    /// "Does the user have the roles the route demands?" (from the user
    /// record as the look-up returned it, so a role change applies at once).
    fn has_required_roles(
        &mut self,
        host: &mut dyn Host,
        kind: ClientKind,
        session: &SessionView,
    ) -> Verdict {
        let allowed = self
            .required_roles
            .as_ref()
            .is_none_or(|required| required.is_met_by(&session.roles));
        if !allowed {
            // The session is fine; this route is not for this user. A token
            // rotated by this look-up still goes back with the 403.
            return self.reject(host, kind, Rejection::new(Reason::MissingRole));
        }
        self.make_the_request(host, kind, session)
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
            host.set_request_header(name, value.as_bytes());
        }
        if let Some(fields) = &self.binding_mismatch {
            host.set_request_header(&headers.binding_mismatch, fields.as_bytes());
        }
        // Bearer clients may carry the session cookie too (a browser app
        // calling its API): it never goes upstream either way.
        self.remove_session_cookie(host);
        let forward_token = match kind {
            ClientKind::Cookie => headers.forward_access_token,
            _ => self.refreshed_token.is_some(),
        };
        if forward_token {
            let value = format!("Bearer {}", session.access_token);
            host.set_request_header("authorization", value.as_bytes());
        }
        self.pass(host, kind, Outcome::Allowed)
    }

    /// The request goes on upstream.
    fn pass(&mut self, host: &mut dyn Host, kind: ClientKind, outcome: Outcome) -> Verdict {
        host.increment(Counter::Request {
            flow: kind,
            outcome,
        });
        self.state = State::Done;
        Verdict::Forward
    }

    /// This request's session must not be served from this worker's cache.
    fn evict_session(&self) {
        if let Some(key) = &self.session_key {
            self.cache.borrow_mut().evict_session(key);
        }
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
        self.state = State::Done;
        let rejection = rejection.session(self.session.take());
        rejection.log(kind, host.now());
        host.increment(Counter::Request {
            flow: kind,
            outcome: Outcome::Rejected(rejection.reason.code()),
        });
        let redirect = if is_html_navigation(host) {
            let path = header_text(host, ":path").unwrap_or_default();
            rejection.login_redirect(&self.config, kind, &path)
        } else {
            None
        };
        let mut response = redirect.unwrap_or_else(|| rejection.response(&self.config, kind));
        // The look-up rotated the client's token: whatever the answer, the
        // client must learn its new token, or its next request would present
        // one it can no longer exchange.
        if let Some(token) = self.refreshed_token.take() {
            response
                .headers
                .push((self.config.access_token_header.clone(), token));
        }
        self.answered_locally = true;
        host.send_local_response(response);
        Verdict::Responded
    }

    // ── response side ───────────────────────────────────────────────────

    /// The upstream's response headers: turn the internal "start session"
    /// and "end session" headers into `Set-Cookie`, and never let them out.
    pub fn on_response_headers(&mut self, host: &mut dyn Host) {
        if self.answered_locally {
            // Envoy runs a local reply through the encoders too; this one is
            // the filter's own, already complete.
            return;
        }
        let config = &self.config;
        let name = config.cookie.name();
        // Only the filter speaks this header to clients.
        host.remove_response_header(&config.access_token_header);
        if let Some(token) = self.refreshed_token.take() {
            host.add_response_header(&config.access_token_header, &token);
        }
        let session_start = response_text(host, &config.session_start_header);
        if let Some(session_start) = session_start {
            host.remove_response_header(&config.session_start_header);
            let sealed = session_start
                .ok_or(crate::cookie::CookieError::NotASessionId)
                .and_then(|session_id| config.cookie.seal(session_id.trim()));
            match sealed {
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
        if !host
            .response_header_lines(&config.session_end_header)
            .is_empty()
        {
            host.remove_response_header(&config.session_end_header);
            // Logged out through this worker: don't wait for the feed.
            self.evict_session();
            host.add_response_header("set-cookie", &config.cookie_attributes.clear_cookie(name));
        }
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

/// The parsed answer of a session look-up.
enum SessionAnswer {
    Found(Box<LookupResponse>),
    Refused(Reason),
    Trouble(SidecarError, String),
}

/// Reads the sidecar's reply. Only a well-formed `404` with a known verdict
/// means "no usable session"; anything unexpected is trouble (503), never a
/// logout.
fn read_session_reply(reply: &SidecarReply) -> SessionAnswer {
    match reply.status {
        None => SessionAnswer::Trouble(SidecarError::NoAnswer, "no answer".into()),
        Some(status) if failed_call(reply) == SidecarError::NoAnswer => {
            SessionAnswer::Trouble(SidecarError::NoAnswer, format!("proxy's own {status}"))
        }
        Some(200) => match serde_json::from_slice::<LookupResponse>(&reply.body) {
            Ok(answer) => SessionAnswer::Found(Box::new(answer)),
            Err(e) => SessionAnswer::Trouble(SidecarError::BadReply, e.to_string()),
        },
        Some(404) => match serde_json::from_slice::<ErrorBody>(&reply.body)
            .ok()
            .and_then(|body| Reason::from_verdict(&body.error))
        {
            Some(reason) => SessionAnswer::Refused(reason),
            None => SessionAnswer::Trouble(SidecarError::BadReply, "unexpected 404".into()),
        },
        Some(status) => {
            SessionAnswer::Trouble(SidecarError::ErrorStatus, format!("status {status}"))
        }
    }
}

/// A browser loading a page (not an API call): a GET or HEAD that accepts
/// HTML. Only these are redirected to the login page.
fn is_html_navigation(host: &dyn Host) -> bool {
    let method = header_text(host, ":method").unwrap_or_default();
    let accept = header_text(host, "accept").unwrap_or_default();
    matches!(method.as_str(), "GET" | "HEAD") && accept.contains("text/html")
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

/// A single-valued response header: `None` when absent, `Some(None)` when
/// it is not one line of UTF-8.
fn response_text(host: &dyn Host, name: &str) -> Option<Option<String>> {
    match host.response_header_lines(name).as_slice() {
        [] => None,
        [one] => Some(std::str::from_utf8(one).ok().map(str::to_string)),
        _ => Some(None),
    }
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
