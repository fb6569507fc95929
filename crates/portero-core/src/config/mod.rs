//! Plugin configuration: parsed from the JSON Envoy hands to `on_configure`,
//! validated whole, and turned into ready-to-use parts (ciphers, keys).
//!
//! Every error names the field (as a JSON path) and the form expected; the
//! book's configuration reference (docs/configuration.md) lists every field
//! with its default.

use crate::cache::CacheConfig;
use crate::cookie::{CookieAttributes, CookieCodec};
use crate::policy::{BindingConfig, RouteDecision, RouteRule};
use crate::token::TokenVerifier;

pub mod error;
mod raw;
mod validate;

use error::err;
pub use error::ConfigError;
use raw::RawConfig;

/// Largest cache capacity (entries): bounds memory whatever the config says.
pub const MAX_CACHE_CAPACITY: usize = 1_000_000;
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

/// The HTML pages a browser navigation gets for a refusal (same status
/// codes as the JSON bodies API clients get).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPages {
    pub enabled: bool,
    /// Linked from every page (a same-site path or an `https://` URL).
    pub stylesheet_url: Option<String>,
    /// The operator's document, checked to name only [`PAGE_PLACEHOLDERS`];
    /// `None`: the built-in one.
    pub template: Option<String>,
}

/// What a page template may contain, each written `{{name}}`; every value
/// is HTML-escaped. `message` is required.
pub const PAGE_PLACEHOLDERS: [&str; 6] = [
    "status",
    "title",
    "message",
    "action_url",
    "action_label",
    "stylesheet_url",
];

/// The longest page template accepted, bytes.
pub const MAX_PAGE_TEMPLATE: usize = 32 * 1024;

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
    pub error_pages: ErrorPages,
    /// `Cache-Control` for an answer to a signed-in user's request when the
    /// upstream set none: a page built for one user must not come back
    /// from the browser's cache (Back after logout) or a shared cache.
    pub identity_response_cache_control: Option<String>,
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

    /// The plugin configuration's JSON Schema, derived from the types the
    /// parser reads: the shape, the names, the enums and the defaults (the
    /// parser also checks bounds the schema does not state). Committed as
    /// `docs/plugin-config.schema.json`; a test keeps that file current.
    pub fn json_schema() -> serde_json::Value {
        let mut schema = schemars::schema_for!(RawConfig).to_value();
        if let Some(object) = schema.as_object_mut() {
            object.insert("title".into(), "portero plugin configuration".into());
            object.insert(
                "description".into(),
                "The JSON portero's filter, module and forward auth read (docs/configuration.md)."
                    .into(),
            );
        }
        schema
    }

    /// The rule for a request (see [`crate::policy::decide`]).
    pub fn route(&self, path: &str, route_name: Option<&str>) -> RouteDecision<'_> {
        crate::policy::decide(&self.routes, path, route_name)
    }
}
