//! The configuration as written: the JSON's shape, its defaults, and the
//! `Secret` form. Nothing here is checked; `validate.rs` turns it into a
//! [`Config`](super::Config) or names the field that is wrong.

use schemars::JsonSchema;
use serde::Deserialize;

use super::error::err;
use super::ConfigError;
use crate::cache::CacheConfig;
use crate::cookie::SameSite;
use crate::policy::{RawBinding, RawRoute};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) cookie: RawCookie,
    pub(super) jwt: RawJwt,
    pub(super) sidecar: RawSidecar,
    #[serde(default)]
    pub(super) identity_headers: RawIdentityHeaders,
    #[serde(default = "default_start_header")]
    pub(super) session_start_header: String,
    #[serde(default = "default_end_header")]
    pub(super) session_end_header: String,
    #[serde(default = "default_access_token_header")]
    pub(super) access_token_header: String,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(super) csrf: RawCsrf,
    #[serde(default)]
    pub(super) binding: RawBinding,
    #[serde(default)]
    pub(super) login_redirect: Option<RawLoginRedirect>,
    #[serde(default)]
    pub(super) cache: RawCache,
    #[serde(default = "default_retry_after")]
    pub(super) retry_after_seconds: u64,
    #[serde(default)]
    pub(super) error_pages: RawErrorPages,
    /// `Cache-Control` given to answers for a signed-in user that set none
    /// (`null`: left as they are).
    #[serde(default = "default_identity_cache_control")]
    pub(super) identity_response_cache_control: Option<String>,
}

fn default_identity_cache_control() -> Option<String> {
    Some("no-store".into())
}

/// The HTML pages a browser navigation gets instead of a JSON error body.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawErrorPages {
    /// `false`: navigations get the JSON bodies too.
    #[serde(default = "default_true")]
    pub(super) enabled: bool,
    /// A stylesheet the pages link (a same-site path or an `https://` URL).
    #[serde(default)]
    pub(super) stylesheet_url: Option<String>,
    /// A whole HTML document with `{{placeholders}}`, instead of the built-in one.
    #[serde(default)]
    pub(super) template: Option<String>,
}

impl Default for RawErrorPages {
    fn default() -> Self {
        Self {
            enabled: true,
            stylesheet_url: None,
            template: None,
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCookie {
    #[serde(default = "default_cookie_name")]
    pub(super) name: String,
    pub(super) keys: Vec<RawCookieKey>,
    #[serde(default = "default_true")]
    pub(super) secure: bool,
    #[serde(default = "default_true")]
    pub(super) http_only: bool,
    #[serde(default)]
    pub(super) same_site: SameSite,
    #[serde(default = "default_path")]
    pub(super) path: String,
    #[serde(default)]
    pub(super) domain: Option<String>,
    #[serde(default)]
    pub(super) max_age_seconds: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCookieKey {
    pub(super) id: u8,
    pub(super) secret: Secret,
}

/// A secret in the plugin config: inline (`"…"`, for tests and quick
/// starts), or `{"env": "NAME"}`, read from the environment when the config
/// is loaded. Envoy's `/config_dump` shows a filter's plugin config in
/// clear (both shells); it shows only the variable's name. The wasm filter
/// sees the variables its `vm_config.environment_variables` passes it
/// (`host_env_keys`); the dynamic module and forward auth see their
/// process's environment.
#[derive(Deserialize, JsonSchema)]
#[serde(
    untagged,
    expecting = "a string, or {\"env\": \"NAME\"} to read it from the environment"
)]
pub(super) enum Secret {
    Inline(String),
    FromEnv(EnvSecret),
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EnvSecret {
    pub(super) env: String,
}

impl Secret {
    /// The secret's value; `field` names it in the error.
    pub(super) fn value(&self, field: &str) -> Result<String, ConfigError> {
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

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwt {
    pub(super) issuer: String,
    pub(super) audiences: Vec<String>,
    pub(super) jwks: serde_json::Value,
    #[serde(default = "default_leeway")]
    pub(super) leeway_seconds: u64,
    #[serde(default = "default_refresh_window")]
    pub(super) refresh_window_seconds: u64,
    #[serde(default = "default_jwks_refresh")]
    pub(super) jwks_refresh_seconds: u64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSidecar {
    pub(super) cluster: String,
    #[serde(default = "default_authority")]
    pub(super) authority: String,
    pub(super) token: Secret,
    #[serde(default = "default_timeout_ms")]
    pub(super) timeout_ms: u64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawIdentityHeaders {
    pub(super) user_id: String,
    pub(super) session: String,
    pub(super) email: String,
    pub(super) roles: String,
    pub(super) client_ip: String,
    pub(super) binding_mismatch: String,
    pub(super) forward_access_token: bool,
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

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCsrf {
    pub(super) enabled: bool,
    pub(super) allowed_origins: Vec<String>,
}

impl Default for RawCsrf {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_origins: Vec::new(),
        }
    }
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCache {
    pub(super) tokens: RawTokenCache,
    pub(super) sessions: RawSessionCache,
    pub(super) revocation_feed: RawFeed,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTokenCache {
    pub(super) capacity: usize,
    pub(super) ttl_seconds: u64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSessionCache {
    pub(super) capacity: usize,
    pub(super) ttl_seconds: u64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawFeed {
    pub(super) poll_interval_ms: u64,
    pub(super) max_staleness_ms: u64,
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

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoginRedirect {
    pub(super) url: String,
    #[serde(default = "default_return_parameter")]
    pub(super) return_parameter: String,
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
