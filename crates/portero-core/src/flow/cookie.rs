//! The cookie flowchart: exists_cookie ─► check_same_origin ─► obtain_session_id
//! ─► look_up_session (and the anonymous pass of an `optional` route).

use super::*;

impl Flow {
    /// "Does the cookie exist?"
    pub(super) fn exists_cookie(&mut self, host: &mut dyn Host) -> Verdict {
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
    pub(super) fn make_anonymous_request(&mut self, host: &mut dyn Host) -> Verdict {
        self.pass(
            host,
            ClientKind::Anonymous,
            Outcome::Anonymous,
            Forwarded::default(),
        )
    }

    /// CSRF defence in depth (beside `SameSite`): a cookie-authenticated
    /// unsafe request must come from the same origin — `Sec-Fetch-Site:
    /// same-origin`, or else an `Origin` that is the request's own or listed.
    pub(super) fn check_same_origin(&self, host: &dyn Host) -> Result<(), String> {
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
        self.check_origin(host, &origin)
    }

    /// Login CSRF: a session is never *started* by a request from another
    /// site, whatever the route's policy (a hostile page auto-posting the
    /// login form would sign the victim's browser into the attacker's
    /// account). Browsers mark such requests (`Sec-Fetch-Site`, and `Origin`
    /// on every POST); a request with neither is no browser's cross-site
    /// request (curl, an app) and may log in.
    ///
    /// A sign-in callback route is the exception for GET: the provider's
    /// redirect back is a cross-site navigation by design, and the callback
    /// refuses any `state` not bound to this browser's pre-login cookie.
    pub(super) fn check_may_start_session(&self, host: &dyn Host) -> Result<(), String> {
        let fetch_site = header_text(host, "sec-fetch-site");
        if fetch_site.as_deref() == Some("same-origin") {
            return Ok(());
        }
        if self.sign_in_callback
            && matches!(
                header_text(host, ":method").as_deref(),
                Some("GET" | "HEAD")
            )
        {
            return Ok(());
        }
        match header_text(host, "origin") {
            Some(origin) => self.check_origin(host, &origin),
            None if matches!(fetch_site.as_deref(), Some("cross-site" | "same-site")) => {
                Err(format!("Sec-Fetch-Site {fetch_site:?} and no Origin"))
            }
            None => Ok(()),
        }
    }

    /// `origin` is the request's own (`scheme://authority`) or listed in
    /// `csrf.allowed_origins`.
    fn check_origin(&self, host: &dyn Host, origin: &str) -> Result<(), String> {
        let own = match (
            header_text(host, ":scheme"),
            header_text(host, ":authority"),
        ) {
            (Some(scheme), Some(authority)) => Some(format!("{scheme}://{authority}")),
            _ => None,
        };
        if own.as_deref() == Some(origin)
            || self.config.csrf.allowed_origins.iter().any(|o| o == origin)
        {
            Ok(())
        } else {
            Err(format!("origin {origin:?} not allowed"))
        }
    }

    /// "Obtain the session id": decrypt the cookie — only when this worker
    /// has no view cached under the cookie's sealed bytes (a cookie opened
    /// before opens to the same id: no AES on a warm request).
    pub(super) fn obtain_session_id(&mut self, host: &mut dyn Host, cookie_value: &str) -> Verdict {
        let key = SessionKey::of_sealed_cookie(cookie_value);
        self.look_up_session(host, Credential::Cookie, key, |flow, host| {
            let opened = host.crypto().open_cookie(&flow.config.cookie, cookie_value);
            let session_id =
                opened.map_err(|e| Rejection::new(Reason::CookieInvalid).detail(e.as_str()))?;
            let lookup = LookupRequest::by_id(&session_id);
            flow.session = Some(SessionRef::Id(session_id));
            Ok(lookup)
        })
    }
}
