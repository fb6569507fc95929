//! Plugin configuration: parsed from the JSON Envoy hands to `on_configure`,
//! validated whole, and turned into ready-to-use parts (ciphers, keys).
//!
//! Every error names the field (as a JSON path) and the form expected; the
//! README's "Configuration reference" lists every field with its default.

use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use crate::cache::CacheConfig;
use crate::cookie::{CookieAttributes, CookieCodec, SameSite, MIN_SECRET_LEN};
use crate::policy::{BindingConfig, RawBinding, RawRoute, RouteDecision, RouteRule};
use crate::token::TokenVerifier;

pub mod error;

use error::err;
pub use error::ConfigError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cookie: RawCookie,
    jwt: RawJwt,
    sidecar: RawSidecar,
    #[serde(default)]
    identity_headers: RawIdentityHeaders,
    #[serde(default = "default_start_header")]
    session_start_header: String,
    #[serde(default = "default_end_header")]
    session_end_header: String,
    #[serde(default = "default_access_token_header")]
    access_token_header: String,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    csrf: RawCsrf,
    #[serde(default)]
    binding: RawBinding,
    #[serde(default)]
    login_redirect: Option<RawLoginRedirect>,
    #[serde(default)]
    cache: RawCache,
    #[serde(default = "default_retry_after")]
    retry_after_seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCookie {
    #[serde(default = "default_cookie_name")]
    name: String,
    keys: Vec<RawCookieKey>,
    #[serde(default = "default_true")]
    secure: bool,
    #[serde(default = "default_true")]
    http_only: bool,
    #[serde(default)]
    same_site: SameSite,
    #[serde(default = "default_path")]
    path: String,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    max_age_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCookieKey {
    id: u8,
    secret: Secret,
}

/// A secret in the plugin config: inline (`"…"`, for tests and quick
/// starts), or `{"env": "NAME"}`, read from the environment when the config
/// is loaded. Envoy's `/config_dump` shows a filter's plugin config in
/// clear (both shells); it shows only the variable's name. The wasm filter
/// sees the variables its `vm_config.environment_variables` passes it
/// (`host_env_keys`); the dynamic module and forward auth see their
/// process's environment.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a string, or {\"env\": \"NAME\"} to read it from the environment"
)]
enum Secret {
    Inline(String),
    FromEnv(EnvSecret),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvSecret {
    env: String,
}

impl Secret {
    /// The secret's value; `field` names it in the error.
    fn value(&self, field: &str) -> Result<String, ConfigError> {
        match self {
            Secret::Inline(value) => Ok(value.clone()),
            Secret::FromEnv(EnvSecret { env }) => match std::env::var(env) {
                Ok(value) if !value.is_empty() => Ok(value),
                _ => Err(err(
                    field,
                    format!(
                        "environment variable {env} is not set (the wasm filter sees only the \
                         variables listed in vm_config.environment_variables.host_env_keys)"
                    ),
                )),
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    issuer: String,
    audiences: Vec<String>,
    jwks: serde_json::Value,
    #[serde(default = "default_leeway")]
    leeway_seconds: u64,
    #[serde(default = "default_refresh_window")]
    refresh_window_seconds: u64,
    #[serde(default = "default_jwks_refresh")]
    jwks_refresh_seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSidecar {
    cluster: String,
    #[serde(default = "default_authority")]
    authority: String,
    token: Secret,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawIdentityHeaders {
    user_id: String,
    session: String,
    email: String,
    roles: String,
    client_ip: String,
    binding_mismatch: String,
    forward_access_token: bool,
}

impl Default for RawIdentityHeaders {
    fn default() -> Self {
        Self {
            user_id: "x-portero-user-id".into(),
            session: "x-portero-session".into(),
            email: "x-portero-email".into(),
            roles: "x-portero-roles".into(),
            client_ip: "x-portero-client-ip".into(),
            binding_mismatch: "x-portero-binding-mismatch".into(),
            forward_access_token: true,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCsrf {
    enabled: bool,
    allowed_origins: Vec<String>,
}

impl Default for RawCsrf {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_origins: Vec::new(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawCache {
    tokens: RawTokenCache,
    sessions: RawSessionCache,
    revocation_feed: RawFeed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTokenCache {
    capacity: usize,
    ttl_seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSessionCache {
    capacity: usize,
    ttl_seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFeed {
    poll_interval_ms: u64,
    max_staleness_ms: u64,
}

impl Default for RawTokenCache {
    fn default() -> Self {
        let d = CacheConfig::default();
        Self {
            capacity: d.token_capacity,
            ttl_seconds: d.token_ttl_seconds,
        }
    }
}

impl Default for RawSessionCache {
    fn default() -> Self {
        let d = CacheConfig::default();
        Self {
            capacity: d.session_capacity,
            ttl_seconds: d.session_ttl_seconds,
        }
    }
}

impl Default for RawFeed {
    fn default() -> Self {
        let d = CacheConfig::default();
        Self {
            poll_interval_ms: d.feed_poll_interval_ms,
            max_staleness_ms: d.feed_max_staleness_ms,
        }
    }
}

/// Largest cache capacity (entries): bounds memory whatever the config says.
pub const MAX_CACHE_CAPACITY: usize = 1_000_000;

impl RawCache {
    fn validate(self) -> Result<CacheConfig, ConfigError> {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoginRedirect {
    url: String,
    #[serde(default = "default_return_parameter")]
    return_parameter: String,
}

fn default_return_parameter() -> String {
    "return_to".into()
}

fn default_true() -> bool {
    true
}
fn default_cookie_name() -> String {
    "__Host-portero".into()
}
fn default_path() -> String {
    "/".into()
}
fn default_leeway() -> u64 {
    30
}
/// How often each worker fetches the sidecar's JWKS (0: never).
fn default_jwks_refresh() -> u64 {
    60
}
fn default_refresh_window() -> u64 {
    3600
}
fn default_access_token_header() -> String {
    "x-portero-access-token".into()
}
fn default_authority() -> String {
    "redis-sidecar".into()
}
fn default_timeout_ms() -> u64 {
    500
}
fn default_start_header() -> String {
    "x-portero-start-session".into()
}
fn default_end_header() -> String {
    "x-portero-end-session".into()
}
fn default_retry_after() -> u64 {
    1
}

/// Largest accepted clock leeway: leeway is for clock skew, not for policy.
pub const MAX_LEEWAY_SECONDS: u64 = 300;
/// Largest refresh window: a week. The session's own expiry bounds it anyway.
pub const MAX_REFRESH_WINDOW_SECONDS: u64 = 7 * 86400;
/// Bounds of the sidecar call timeout.
pub const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 10..=10_000;

/// Names of the headers the filter sends upstream. Incoming copies are removed
/// from every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    pub user_id: String,
    pub session: String,
    pub email: String,
    pub roles: String,
    pub client_ip: String,
    /// Set on requests whose session binding did not match under the `log`
    /// policy: the mismatched fields, comma-separated (`ip`, `user_agent`).
    pub binding_mismatch: String,
    /// Whether cookie clients' requests carry the session's access token
    /// upstream as `Authorization: Bearer`.
    pub forward_access_token: bool,
}

impl IdentityHeaders {
    pub fn all(&self) -> [&str; 6] {
        [
            &self.user_id,
            &self.session,
            &self.email,
            &self.roles,
            &self.client_ip,
            &self.binding_mismatch,
        ]
    }
}

/// Cross-site request defence for cookie-authenticated unsafe requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrfConfig {
    pub enabled: bool,
    /// Origins (`scheme://host[:port]`) accepted besides the request's own.
    pub allowed_origins: Vec<String>,
}

/// Where an HTML navigation without a valid session is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRedirect {
    /// A same-site path (`/login`) or an absolute `https://` URL.
    pub url: String,
    /// Query parameter that carries the original path back.
    pub return_parameter: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarConfig {
    pub cluster: String,
    pub authority: String,
    /// `Authorization` value of every sidecar call, built once here rather
    /// than per request.
    pub authorization: String,
    pub timeout_ms: u64,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    pub cookie: CookieCodec,
    pub cookie_attributes: CookieAttributes,
    pub tokens: TokenVerifier,
    /// How often each worker fetches the sidecar's JWKS, seconds (0: never;
    /// only the pinned `jwt.jwks` is trusted then).
    pub jwks_refresh_seconds: u64,
    pub sidecar: SidecarConfig,
    pub identity_headers: IdentityHeaders,
    pub session_start_header: String,
    pub session_end_header: String,
    /// Response header that hands a bearer client its refreshed token.
    pub access_token_header: String,
    pub routes: Vec<RouteRule>,
    /// Whether a rule names Envoy routes (then the route name is read).
    pub uses_route_names: bool,
    pub csrf: CsrfConfig,
    pub binding: BindingConfig,
    pub login_redirect: Option<LoginRedirect>,
    pub cache: CacheConfig,
    pub retry_after_seconds: u64,
}

impl Config {
    /// Parses and validates the plugin configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let message = e.inner().to_string();
            let path = e.path().to_string();
            let parent = if path == "." { None } else { Some(path) };
            // serde reports a missing field at its parent: name the field itself.
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split_once('`'))
                .map(|(name, _)| name.to_string());
            let field = match (parent, missing) {
                (Some(parent), Some(name)) => format!("{parent}.{name}"),
                (None, Some(name)) => name,
                (Some(parent), None) => parent,
                (None, None) => "(root)".to_string(),
            };
            err(&field, message)
        })?;
        raw.validate()
    }

    /// The rule for a request (see [`crate::policy::decide`]).
    pub fn route(&self, path: &str, route_name: Option<&str>) -> RouteDecision<'_> {
        crate::policy::decide(&self.routes, path, route_name)
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
    fn validate(self) -> Result<Config, ConfigError> {
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
        })
    }
}

impl RawCookie {
    fn validate(self) -> Result<(CookieCodec, CookieAttributes), ConfigError> {
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
    fn validate(self) -> Result<TokenVerifier, ConfigError> {
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
    fn validate(self) -> Result<CsrfConfig, ConfigError> {
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
    fn validate(self) -> Result<LoginRedirect, ConfigError> {
        let same_site_path = self.url.starts_with('/')
            && !self.url.starts_with("//")
            && !self.url.starts_with("/\\");
        let https_url = self
            .url
            .strip_prefix("https://")
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
        if !(same_site_path || https_url)
            || self.url.contains('#')
            || self.url.bytes().any(|b| b <= b' ' || b == 0x7f)
        {
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

impl RawSidecar {
    fn validate(self) -> Result<SidecarConfig, ConfigError> {
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
    fn validate(self) -> Result<IdentityHeaders, ConfigError> {
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

#[cfg(test)]
mod tests;
