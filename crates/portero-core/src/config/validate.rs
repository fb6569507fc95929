//! Turns the configuration as written into the validated [`Config`]:
//! every bound checked, every error naming its field.

use jsonwebtoken::jwk::JwkSet;

use super::error::err;
use super::raw::*;
use super::{
    Config, ConfigError, CsrfConfig, ErrorPages, IdentityHeaders, LoginRedirect, SidecarConfig,
    MAX_CACHE_CAPACITY, MAX_LEEWAY_SECONDS, MAX_PAGE_TEMPLATE, MAX_REFRESH_WINDOW_SECONDS,
    PAGE_PLACEHOLDERS, TIMEOUT_MS_RANGE,
};
use crate::cache::CacheConfig;
use crate::cookie::{CookieAttributes, CookieCodec, MIN_SECRET_LEN};
use crate::policy::is_same_site_path_or_https_url;
use crate::token::TokenVerifier;

impl RawCache {
    pub(super) fn validate(self) -> Result<CacheConfig, ConfigError> {
        if self.tokens.capacity > MAX_CACHE_CAPACITY {
            return Err(err(
                "cache.tokens.capacity",
                format!("expected 0 (off) to {MAX_CACHE_CAPACITY} entries"),
            ));
        }
        if !(1..=3600).contains(&self.tokens.ttl_seconds) {
            return Err(err("cache.tokens.ttl_seconds", "expected 1 to 3600"));
        }
        if self.sessions.capacity > MAX_CACHE_CAPACITY {
            return Err(err(
                "cache.sessions.capacity",
                format!("expected 0 (off) to {MAX_CACHE_CAPACITY} entries"),
            ));
        }
        if self.sessions.ttl_seconds > 300 {
            return Err(err(
                "cache.sessions.ttl_seconds",
                "expected 0 (off) to 300: a view must not outlive the idle timeout's granularity",
            ));
        }
        let feed = self.revocation_feed;
        if !(100..=60_000).contains(&feed.poll_interval_ms) {
            return Err(err(
                "cache.revocation_feed.poll_interval_ms",
                "expected 100 to 60000",
            ));
        }
        if feed.max_staleness_ms < 2 * feed.poll_interval_ms || feed.max_staleness_ms > 300_000 {
            return Err(err(
                "cache.revocation_feed.max_staleness_ms",
                "expected at least twice poll_interval_ms (one lost poll must not stop the cache) and at most 300000",
            ));
        }
        Ok(CacheConfig {
            token_capacity: self.tokens.capacity,
            token_ttl_seconds: self.tokens.ttl_seconds,
            session_capacity: self.sessions.capacity,
            session_ttl_seconds: self.sessions.ttl_seconds,
            feed_poll_interval_ms: feed.poll_interval_ms,
            feed_max_staleness_ms: feed.max_staleness_ms,
        })
    }
}

/// An HTTP header name as Envoy accepts it from a filter: lowercase token.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A cookie name per RFC 6265 (an RFC 7230 token).
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl RawConfig {
    pub(super) fn validate(self) -> Result<Config, ConfigError> {
        let (cookie, cookie_attributes) = self.cookie.validate()?;
        let jwks_refresh_seconds = self.jwt.jwks_refresh_seconds;
        if jwks_refresh_seconds > 86_400 {
            return Err(err(
                "jwt.jwks_refresh_seconds",
                "expected 0 (no fetching) to 86400",
            ));
        }
        let tokens = self.jwt.validate()?;
        let sidecar = self.sidecar.validate()?;
        let identity_headers = self.identity_headers.validate()?;
        for (field, name) in [
            ("session_start_header", &self.session_start_header),
            ("session_end_header", &self.session_end_header),
            ("access_token_header", &self.access_token_header),
        ] {
            if !is_header_name(name) {
                return Err(err(field, "expected a lowercase HTTP header name"));
            }
        }
        let routes = self
            .routes
            .into_iter()
            .enumerate()
            .map(|(i, route)| route.validate(&format!("routes[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let csrf = self.csrf.validate()?;
        let binding = self.binding.validate()?;
        let cache = self.cache.validate()?;
        let login_redirect = match self.login_redirect {
            None => None,
            Some(raw) => Some(raw.validate()?),
        };
        if !(1..=3600).contains(&self.retry_after_seconds) {
            return Err(err("retry_after_seconds", "expected 1 to 3600"));
        }
        let error_pages = self.error_pages.validate()?;
        let identity_response_cache_control = match self.identity_response_cache_control {
            Some(value)
                if value.is_empty()
                    || value.len() > 256
                    || value.bytes().any(|b| b < b' ' || b == 0x7f) =>
            {
                return Err(err(
                    "identity_response_cache_control",
                    "expected a Cache-Control value like \"no-store\" (or null to leave answers as they are)",
                ))
            }
            value => value,
        };
        Ok(Config {
            cookie,
            cookie_attributes,
            tokens,
            jwks_refresh_seconds,
            sidecar,
            identity_headers,
            session_start_header: self.session_start_header,
            session_end_header: self.session_end_header,
            access_token_header: self.access_token_header,
            uses_route_names: crate::policy::uses_route_names(&routes),
            routes,
            csrf,
            binding,
            login_redirect,
            cache,
            retry_after_seconds: self.retry_after_seconds,
            error_pages,
            identity_response_cache_control,
        })
    }
}

impl RawCookie {
    pub(super) fn validate(self) -> Result<(CookieCodec, CookieAttributes), ConfigError> {
        if !is_cookie_name(&self.name) {
            return Err(err(
                "cookie.name",
                "expected a cookie name (RFC 6265 token)",
            ));
        }
        if self.keys.is_empty() {
            return Err(err(
                "cookie.keys",
                "expected at least one {\"id\", \"secret\"}; the first seals new cookies",
            ));
        }
        let secrets = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, key)| key.secret.value(&format!("cookie.keys[{i}].secret")))
            .collect::<Result<Vec<String>, ConfigError>>()?;
        let mut keys: Vec<(u8, &[u8])> = Vec::with_capacity(self.keys.len());
        for (i, (key, secret)) in self.keys.iter().zip(&secrets).enumerate() {
            if secret.len() < MIN_SECRET_LEN {
                return Err(err(
                    &format!("cookie.keys[{i}].secret"),
                    format!("expected at least {MIN_SECRET_LEN} bytes of secret"),
                ));
            }
            if keys.iter().any(|(id, _)| *id == key.id) {
                return Err(err(
                    &format!("cookie.keys[{i}].id"),
                    format!("key id {} is listed twice", key.id),
                ));
            }
            keys.push((key.id, secret.as_bytes()));
        }
        let same_site = self.same_site;
        if !self.path.starts_with('/') || self.path.contains(';') {
            return Err(err("cookie.path", "expected a path starting with `/`"));
        }
        if let Some(domain) = &self.domain {
            if domain.is_empty() || domain.contains([';', ' ', ',']) {
                return Err(err("cookie.domain", "expected a domain name"));
            }
        }
        // The prefixes are promises browsers enforce; refuse a config that
        // would make browsers drop the cookie.
        if self.name.starts_with("__Host-") {
            if !self.secure {
                return Err(err("cookie.secure", "a `__Host-` cookie must be Secure"));
            }
            if self.path != "/" {
                return Err(err("cookie.path", "a `__Host-` cookie must have Path=/"));
            }
            if self.domain.is_some() {
                return Err(err(
                    "cookie.domain",
                    "a `__Host-` cookie cannot have a Domain; rename the cookie to share it across sub-domains",
                ));
            }
        }
        if self.name.starts_with("__Secure-") && !self.secure {
            return Err(err("cookie.secure", "a `__Secure-` cookie must be Secure"));
        }
        let codec = CookieCodec::new(&self.name, &keys)
            .ok_or_else(|| err("cookie.keys", "could not derive the cookie keys"))?;
        Ok((
            codec,
            CookieAttributes {
                secure: self.secure,
                http_only: self.http_only,
                same_site,
                path: self.path,
                domain: self.domain,
                max_age_seconds: self.max_age_seconds,
            },
        ))
    }
}

impl RawJwt {
    pub(super) fn validate(self) -> Result<TokenVerifier, ConfigError> {
        if self.issuer.is_empty() {
            return Err(err("jwt.issuer", "expected the issuer URL of the sidecar"));
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(err(
                "jwt.audiences",
                "expected a non-empty list of audiences",
            ));
        }
        if self.leeway_seconds > MAX_LEEWAY_SECONDS {
            return Err(err(
                "jwt.leeway_seconds",
                format!("expected at most {MAX_LEEWAY_SECONDS}"),
            ));
        }
        // The key set may be given as a JSON object or as a string holding one.
        let jwks_value = match self.jwks {
            serde_json::Value::String(s) => serde_json::from_str(&s)
                .map_err(|e| err("jwt.jwks", format!("expected a JWKS: {e}")))?,
            other => other,
        };
        let jwks: JwkSet = serde_json::from_value(jwks_value).map_err(|e| {
            err(
                "jwt.jwks",
                format!("expected a JWKS ({{\"keys\": [...]}}): {e}"),
            )
        })?;
        if self.refresh_window_seconds > MAX_REFRESH_WINDOW_SECONDS {
            return Err(err(
                "jwt.refresh_window_seconds",
                format!("expected at most {MAX_REFRESH_WINDOW_SECONDS}"),
            ));
        }
        TokenVerifier::new(
            &jwks,
            &self.issuer,
            &self.audiences,
            self.leeway_seconds,
            self.refresh_window_seconds,
        )
        .map_err(|e| err("jwt.jwks", e.0))
    }
}

/// `scheme://host[:port]`, as browsers send it in `Origin`.
fn is_origin(value: &str) -> bool {
    let Some((scheme, authority)) = value.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

impl RawCsrf {
    pub(super) fn validate(self) -> Result<CsrfConfig, ConfigError> {
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            if !is_origin(origin) {
                return Err(err(
                    &format!("csrf.allowed_origins[{i}]"),
                    "expected an origin like \"https://app.example.com\" (no path, no trailing slash)",
                ));
            }
        }
        Ok(CsrfConfig {
            enabled: self.enabled,
            allowed_origins: self.allowed_origins,
        })
    }
}

impl RawLoginRedirect {
    pub(super) fn validate(self) -> Result<LoginRedirect, ConfigError> {
        if !is_same_site_path_or_https_url(&self.url) || self.url.contains('#') {
            return Err(err(
                "login_redirect.url",
                "expected a path like \"/login\" or an absolute \"https://\" URL (no fragment)",
            ));
        }
        let parameter_ok = !self.return_parameter.is_empty()
            && self
                .return_parameter
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !parameter_ok {
            return Err(err(
                "login_redirect.return_parameter",
                "expected a query parameter name (letters, digits, `-`, `_`, `.`)",
            ));
        }
        Ok(LoginRedirect {
            url: self.url,
            return_parameter: self.return_parameter,
        })
    }
}

impl RawErrorPages {
    pub(super) fn validate(self) -> Result<ErrorPages, ConfigError> {
        if let Some(url) = &self.stylesheet_url {
            if !is_same_site_path_or_https_url(url) || url.contains('#') {
                return Err(err(
                    "error_pages.stylesheet_url",
                    "expected a path like \"/assets/pages.css\" or an absolute \"https://\" URL (no fragment)",
                ));
            }
        }
        if let Some(template) = &self.template {
            check_page_template(template).map_err(|why| err("error_pages.template", why))?;
        }
        Ok(ErrorPages {
            enabled: self.enabled,
            stylesheet_url: self.stylesheet_url,
            template: self.template,
        })
    }
}

/// Every `{{…}}` names a known placeholder, `{{message}}` is there, and the
/// template is not huge (it is kept per worker and copied per page).
fn check_page_template(template: &str) -> Result<(), String> {
    if template.len() > MAX_PAGE_TEMPLATE {
        return Err(format!("longer than {MAX_PAGE_TEMPLATE} bytes"));
    }
    let mut rest = template;
    let mut has_message = false;
    while let Some((_, after)) = rest.split_once("{{") {
        let Some((name, tail)) = after.split_once("}}") else {
            return Err("a `{{` without its `}}`".into());
        };
        let name = name.trim();
        if !PAGE_PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{{{name}}}}} (known: {})",
                PAGE_PLACEHOLDERS.join(", ")
            ));
        }
        has_message |= name == "message";
        rest = tail;
    }
    if !has_message {
        return Err("expected a {{message}} placeholder".into());
    }
    Ok(())
}

impl RawSidecar {
    pub(super) fn validate(self) -> Result<SidecarConfig, ConfigError> {
        if self.cluster.is_empty() {
            return Err(err(
                "sidecar.cluster",
                "expected the Envoy cluster name of redis-sidecar",
            ));
        }
        if self.authority.is_empty() {
            return Err(err("sidecar.authority", "expected a host name"));
        }
        let token = self.token.value("sidecar.token")?;
        if token.len() < 16 || token.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(err(
                "sidecar.token",
                "expected the sidecar's filter credential: at least 16 printable characters",
            ));
        }
        if !TIMEOUT_MS_RANGE.contains(&self.timeout_ms) {
            return Err(err(
                "sidecar.timeout_ms",
                format!(
                    "expected {} to {} milliseconds",
                    TIMEOUT_MS_RANGE.start(),
                    TIMEOUT_MS_RANGE.end()
                ),
            ));
        }
        Ok(SidecarConfig {
            cluster: self.cluster,
            authority: self.authority,
            authorization: format!("Bearer {token}"),
            timeout_ms: self.timeout_ms,
        })
    }
}

impl RawIdentityHeaders {
    pub(super) fn validate(self) -> Result<IdentityHeaders, ConfigError> {
        for (field, name) in [
            ("identity_headers.user_id", &self.user_id),
            ("identity_headers.session", &self.session),
            ("identity_headers.email", &self.email),
            ("identity_headers.roles", &self.roles),
            ("identity_headers.client_ip", &self.client_ip),
            ("identity_headers.binding_mismatch", &self.binding_mismatch),
        ] {
            if !is_header_name(name) {
                return Err(err(field, "expected a lowercase HTTP header name"));
            }
            if matches!(name.as_str(), "authorization" | "cookie" | "host") {
                return Err(err(field, format!("`{name}` cannot carry identity")));
            }
        }
        Ok(IdentityHeaders {
            user_id: self.user_id,
            session: self.session,
            email: self.email,
            roles: self.roles,
            client_ip: self.client_ip,
            binding_mismatch: self.binding_mismatch,
            forward_access_token: self.forward_access_token,
        })
    }
}
