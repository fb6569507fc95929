//! The JWT flowchart: verify_jwt ─► exists_session_id ─► look_up_session.

use super::*;

impl Flow {
    /// "Is the JWT valid?": signature, key, issuer, audience, time. A token
    /// that is only expired (within the refresh window) goes on: the session
    /// look-up refreshes it, as the flowchart's refresh branch asks.
    pub(super) fn verify_jwt(&mut self, host: &mut dyn Host, token: &str) -> Verdict {
        match self.verified_token(host, token) {
            Ok(verified) => self.exists_session_id(host, verified.claims),
            Err(e) => self.reject(host, ClientKind::Bearer, Rejection::new(Reason::Token(e))),
        }
    }

    /// The token's claims, from the verified-token cache when it was seen
    /// before (the time checks run again either way), else by RS256.
    pub(super) fn verified_token(
        &self,
        host: &mut dyn Host,
        token: &str,
    ) -> Result<Verified, TokenError> {
        let tokens = &self.config.tokens;
        let now = host.now();
        let mut cache = self.cache.borrow_mut();
        if !cache.tokens_enabled() || token.len() > MAX_TOKEN_LEN {
            return tokens.verify_with(token, now, cache.fetched_keys(), host.crypto());
        }
        if let Some(claims) = cache.token(token, now) {
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
        let claims = tokens.verify_signature_with(token, cache.fetched_keys(), host.crypto())?;
        let valid_until = tokens.valid_until(&claims);
        let verified = tokens.check_time(claims, now)?;
        if !verified.expired {
            cache.insert_token(token, verified.claims.clone(), valid_until, now);
        }
        Ok(verified)
    }

    /// "Does the JWT name a session?"
    pub(super) fn exists_session_id(
        &mut self,
        host: &mut dyn Host,
        claims: AccessClaims,
    ) -> Verdict {
        if !portero_wire::is_session_token_shape(&claims.sid) {
            return self.reject(
                host,
                ClientKind::Bearer,
                Rejection::new(Reason::Token(crate::token::TokenError::MissingSessionId)),
            );
        }
        self.session = Some(SessionRef::Handle(claims.sid.clone()));
        let key = SessionKey::of_handle(&claims.sid);
        let lookup = LookupRequest::by_handle(&claims.sid, &claims.jti);
        self.look_up_session(host, Credential::Bearer(Box::new(claims)), key, |_, _| {
            Ok(lookup)
        })
    }
}
