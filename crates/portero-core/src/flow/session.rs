//! The shared steps once a credential names a session: look_up_session (the
//! sidecar refreshes an expired token as it answers) ─► exists_session ─►
//! is_same_client ─► verify_session_tokens ─► has_required_roles ─►
//! make_the_request; end_session for a binding mismatch under `reject`.

use super::*;
use portero_wire::SessionVerdict;

/// One session look-up and what its steps learn on the way: the state of
/// the steps from `look_up_session` to `make_the_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Lookup {
    credential: Credential,
    /// The session's key in this worker's view cache.
    key: SessionKey,
    /// When the call to the sidecar started (microseconds); `None` when the
    /// view came from this worker's cache.
    started_us: Option<u64>,
    /// The presented token was rotated: the session's current one.
    refreshed_token: Option<String>,
    /// Bound fields that differed under the `log` policy (for the upstream).
    binding_mismatch: Option<String>,
}

impl Lookup {
    fn kind(&self) -> ClientKind {
        self.credential.kind()
    }
}

impl Flow {
    /// Ask the sidecar for the session (and pause until it answers) —
    /// unless this worker holds a fresh view of it under `key` (then no
    /// look-up is made, serialised or sent). `lookup` makes the question
    /// from the credential; a credential it cannot read is refused.
    pub(super) fn look_up_session(
        &mut self,
        host: &mut dyn Host,
        credential: Credential,
        key: SessionKey,
        lookup: impl FnOnce(&mut Self, &mut dyn Host) -> Result<LookupRequest, Rejection>,
    ) -> Verdict {
        let mut state = Lookup {
            credential,
            key,
            started_us: None,
            refreshed_token: None,
            binding_mismatch: None,
        };
        if let Some(view) = self.cached_session(host, &state.credential, &state.key) {
            return self.exists_session(host, state, view);
        }
        let lookup = match lookup(self, host) {
            Ok(lookup) => lookup,
            Err(rejection) => return self.reject(host, state.kind(), rejection),
        };
        let Ok(body) = serde_json::to_vec(&lookup) else {
            return self.reject(
                host,
                state.kind(),
                Rejection::new(Reason::SidecarUnavailable),
            );
        };
        let call = self.sidecar_call("POST", portero_wire::LOOKUP_PATH.into(), body);
        match self.dispatch(host, call) {
            Ok(started_us) => {
                state.started_us = Some(started_us);
                self.state = State::AwaitingSession(Box::new(state));
                Verdict::Wait
            }
            Err(e) => self.reject(
                host,
                state.kind(),
                Rejection::new(Reason::SidecarUnavailable).detail(&e.to_string()),
            ),
        }
    }

    /// A view from the session cache, if it may answer for the sidecar: a
    /// bearer client's view must also hold the very token presented (a
    /// rotated one goes to the sidecar, which knows grace from replay).
    pub(super) fn cached_session(
        &self,
        host: &mut dyn Host,
        credential: &Credential,
        key: &SessionKey,
    ) -> Option<Rc<SessionView>> {
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

    /// The sidecar answered (or failed to).
    pub fn on_sidecar_reply(&mut self, host: &mut dyn Host, reply: SidecarReply) -> Verdict {
        let mut latency = |started_us: u64| {
            host.record_sidecar_latency_us(host.now_micros().saturating_sub(started_us));
        };
        match std::mem::replace(&mut self.state, State::Responded) {
            State::AwaitingSession(state) => {
                latency(state.started_us.unwrap_or_default());
                self.on_session_answer(host, *state, &reply)
            }
            State::EndingSession {
                kind,
                rejection,
                started_us,
            } => {
                latency(started_us);
                self.on_session_ended(host, kind, *rejection, &reply)
            }
            other => {
                // Nothing was waiting for this reply.
                self.state = other;
                Verdict::Responded
            }
        }
    }

    pub(super) fn on_session_answer(
        &mut self,
        host: &mut dyn Host,
        state: Lookup,
        reply: &SidecarReply,
    ) -> Verdict {
        match read_session_reply(reply) {
            SessionAnswer::Found(answer) => {
                if answer.rotated {
                    host.increment(Counter::Refresh);
                }
                let session = Rc::new(answer.session);
                self.cache.borrow_mut().insert_session(
                    state.key.clone(),
                    Rc::clone(&session),
                    state.started_us.unwrap_or_default(),
                );
                self.exists_session(host, state, session)
            }
            SessionAnswer::Refused(reason) => {
                self.evict_session(&state.key);
                if reason == Reason::TokenReplayed {
                    host.increment(Counter::ReuseDetected);
                }
                let mut rejection = Rejection::new(reason);
                if reason == Reason::UserBanned {
                    // A ban keeps the sessions (lifting it restores them):
                    // the browser keeps its cookie too.
                    rejection = rejection.keep_cookie();
                }
                self.reject(host, state.kind(), rejection)
            }
            SessionAnswer::Trouble(error, detail) => {
                host.increment(Counter::Sidecar(error));
                let reason = match error {
                    SidecarError::BadReply => Reason::SidecarBadReply,
                    _ => Reason::SidecarUnavailable,
                };
                self.reject(host, state.kind(), Rejection::new(reason).detail(&detail))
            }
        }
    }

    /// "Does the session exist (and is it alive)?"
    pub(super) fn exists_session(
        &mut self,
        host: &mut dyn Host,
        state: Lookup,
        session: Rc<SessionView>,
    ) -> Verdict {
        // From here on the session is known by its handle (also when the
        // view came from this worker's cache).
        self.session = Some(SessionRef::Handle(session.handle.clone()));
        if session.expires_at <= host.now() {
            return self.reject(host, state.kind(), Rejection::new(Reason::SessionNotFound));
        }
        self.is_same_client(host, state, session)
    }

    /// "Is it the client that logged in?": the session binding. Mismatches
    /// under `log` are counted and told upstream; under `reject` they refuse
    /// the request and, if so configured, end the session first.
    pub(super) fn is_same_client(
        &mut self,
        host: &mut dyn Host,
        mut state: Lookup,
        session: Rc<SessionView>,
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
            return self.verify_session_tokens(host, state, session);
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
                    "client": state.kind().name(),
                    "session_hash": session_hash(&session.handle),
                })
            );
            state.binding_mismatch = Some(fields);
            return self.verify_session_tokens(host, state, session);
        }
        let rejection = Rejection::new(Reason::BindingMismatch).detail(&fields);
        if self.config.binding.end_session_on_reject {
            self.evict_session(&state.key);
            self.end_session(host, state.kind(), &session.handle, rejection)
        } else {
            self.reject(host, state.kind(), rejection.keep_cookie())
        }
    }

    /// Ends the session at the sidecar, then refuses the request with
    /// `rejection` (a stolen credential dies with the session).
    pub(super) fn end_session(
        &mut self,
        host: &mut dyn Host,
        kind: ClientKind,
        handle: &str,
        rejection: Rejection,
    ) -> Verdict {
        let call = self.sidecar_call(
            "DELETE",
            format!("{}/{handle}", portero_wire::SESSIONS_PATH),
            Vec::new(),
        );
        match self.dispatch(host, call) {
            Ok(started_us) => {
                self.state = State::EndingSession {
                    kind,
                    rejection: Box::new(rejection),
                    started_us,
                };
                Verdict::Wait
            }
            // Refused either way; the session could not be ended now.
            Err(e) => self.reject(host, kind, rejection.detail(&format!("end failed: {e}"))),
        }
    }

    pub(super) fn on_session_ended(
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
    pub(super) fn verify_session_tokens(
        &mut self,
        host: &mut dyn Host,
        mut state: Lookup,
        session: Rc<SessionView>,
    ) -> Verdict {
        // "Valid when the store answered": the store rotates a token that has
        // expired by its clock, so its answer is checked against the moment
        // the look-up started, not the moment the answer arrived (a token
        // with a second left would otherwise fail across a second boundary
        // and refuse a valid client). A cached view was checked against now.
        let checked_at = state
            .started_us
            .map_or_else(|| host.now(), |started_us| started_us / 1_000_000);
        let session_token_ok =
            !session.access_token.is_empty() && session.access_expires_at > checked_at;
        let bearer_fits = match &state.credential {
            Credential::Bearer(claims) => {
                claims.sid == session.handle && claims.sub == session.user_id
            }
            Credential::Cookie => true,
        };
        if !session_token_ok || !bearer_fits {
            return self.reject(
                host,
                state.kind(),
                Rejection::new(Reason::SessionTokensInvalid),
            );
        }
        if let Credential::Bearer(claims) = &state.credential {
            if claims.jti != session.access_jti {
                // The presented token was rotated (by this request or a
                // concurrent one): upstream and client get the current one.
                state.refreshed_token = Some(session.access_token.clone());
            }
        }
        self.has_required_roles(host, state, &session)
    }

    /// "Does the user have the roles the route demands?" (from the user
    /// record as the look-up returned it, so a role change applies at once).
    pub(super) fn has_required_roles(
        &mut self,
        host: &mut dyn Host,
        state: Lookup,
        session: &SessionView,
    ) -> Verdict {
        let allowed = self
            .required_roles
            .as_ref()
            .is_none_or(|required| required.is_met_by(&session.roles));
        if !allowed {
            // The session is fine; this route is not for this user. A token
            // rotated by this look-up still goes back with the 403.
            let rejection = Rejection::new(Reason::MissingRole);
            return self.reject_with_token(host, state.kind(), rejection, state.refreshed_token);
        }
        self.make_the_request(host, state, session)
    }

    /// "Make the request": identity headers on, session cookie off.
    pub(super) fn make_the_request(
        &mut self,
        host: &mut dyn Host,
        state: Lookup,
        session: &SessionView,
    ) -> Verdict {
        let kind = state.kind();
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
            let rejection =
                Rejection::new(Reason::SidecarBadReply).detail("identity not fit for a header");
            return self.reject_with_token(host, kind, rejection, state.refreshed_token);
        }
        for (name, value) in values {
            host.set_request_header(name, value.as_bytes());
        }
        if let Some(fields) = &state.binding_mismatch {
            host.set_request_header(&headers.binding_mismatch, fields.as_bytes());
        }
        // Bearer clients may carry the session cookie too (a browser app
        // calling its API): it never goes upstream either way.
        self.remove_session_cookie(host);
        let forward_token = match kind {
            ClientKind::Cookie => headers.forward_access_token,
            _ => state.refreshed_token.is_some(),
        };
        if forward_token {
            let value = format!("Bearer {}", session.access_token);
            host.set_request_header("authorization", value.as_bytes());
        }
        let forwarded = Forwarded {
            session_key: Some(state.key),
            refreshed_token: state.refreshed_token,
            ..Forwarded::default()
        };
        self.pass(host, kind, Outcome::Allowed, forwarded)
    }
}

/// The parsed answer of a session look-up.
pub(super) enum SessionAnswer {
    Found(Box<LookupResponse>),
    Refused(Reason),
    Trouble(SidecarError, String),
}

/// Reads the sidecar's reply. Only a well-formed `404` with a known verdict
/// means "no usable session"; anything unexpected is trouble (503), never a
/// logout.
pub(super) fn read_session_reply(reply: &SidecarReply) -> SessionAnswer {
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
            .and_then(|body| SessionVerdict::from_code(&body.error))
        {
            Some(verdict) => SessionAnswer::Refused(Reason::from_verdict(verdict)),
            None => SessionAnswer::Trouble(SidecarError::BadReply, "unexpected 404".into()),
        },
        Some(status) => {
            SessionAnswer::Trouble(SidecarError::ErrorStatus, format!("status {status}"))
        }
    }
}
