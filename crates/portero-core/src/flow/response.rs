//! The response side: the upstream's internal "start session" and "end
//! session" headers become `Set-Cookie`, and never leave.

use super::*;

impl Flow {
    /// The upstream's response headers: turn the internal "start session"
    /// and "end session" headers into `Set-Cookie`, and never let them out.
    pub fn on_response_headers(&mut self, host: &mut dyn Host) {
        let forwarded = match std::mem::replace(&mut self.state, State::Responded) {
            // Envoy runs a local reply through the encoders too; this one is
            // the filter's own, already complete.
            State::Responded => return,
            State::Forwarded(forwarded) => forwarded,
            // A response without the request's own steps (a test, a filter
            // chain that skipped the request side): nothing to hand back.
            _ => Forwarded::default(),
        };
        let config = &self.config;
        let name = config.cookie.name();
        if forwarded.session_key.is_some() {
            keep_out_of_caches(host, config.identity_response_cache_control.as_deref());
        }
        // Only the filter speaks this header to clients.
        host.remove_response_header(&config.access_token_header);
        if let Some(token) = forwarded.refreshed_token {
            host.add_response_header(&config.access_token_header, &token);
        }
        let session_start = response_text(host, &config.session_start_header);
        let mut cookie_to_clear = forwarded.clear_session_cookie;
        if let Some(session_start) = session_start {
            cookie_to_clear = false;
            host.remove_response_header(&config.session_start_header);
            if let Some(why) = forwarded.session_start_refused {
                refuse_cross_site_session_start(host, &why);
                return;
            }
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
            if let Some(key) = &forwarded.session_key {
                self.evict_session(key);
            }
            cookie_to_clear = true;
        }
        if cookie_to_clear {
            host.add_response_header("set-cookie", &config.cookie_attributes.clear_cookie(name));
        }
    }
}

/// "Keep it out of caches": an answer built for a signed-in user gets the
/// configured `Cache-Control` when the upstream set none, so Back after a
/// logout shows no private page and no shared cache keeps one.
fn keep_out_of_caches(host: &mut dyn Host, cache_control: Option<&str>) {
    if let Some(value) = cache_control {
        if host.response_header_lines("cache-control").is_empty() {
            host.add_response_header("cache-control", value);
        }
    }
}

/// The upstream started a session for a cross-site request: the browser
/// gets no cookie and a 403 instead of the app's answer (its redirect).
fn refuse_cross_site_session_start(host: &mut dyn Host, why: &str) {
    log::warn!(
        "{}",
        serde_json::json!({"event": "session_start_refused", "reason": "cross_site_request", "detail": why})
    );
    host.increment(Counter::CsrfRejected);
    host.remove_response_header("location");
    host.remove_response_header(":status");
    host.add_response_header(":status", "403");
}

/// A single-valued response header: `None` when absent, `Some(None)` when
/// it is not one line of UTF-8.
pub(super) fn response_text(host: &dyn Host, name: &str) -> Option<Option<String>> {
    match host.response_header_lines(name).as_slice() {
        [] => None,
        [one] => Some(std::str::from_utf8(one).ok().map(str::to_string)),
        _ => Some(None),
    }
}
