//! The sign-in configuration (`--oidc-config`, a JSON file): the provider,
//! the apps signed in through it (one OIDC client each, picked by the host
//! the browser asked for), and how its claims become a portero user.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// What a sign-in needs, checked.
#[derive(Debug)]
pub struct OidcConfig {
    /// The provider's issuer: its discovery document is at
    /// `{issuer}/.well-known/openid-configuration`, and names it exactly.
    pub issuer: String,
    /// A CA (PEM) trusted for the provider besides Mozilla's roots.
    pub ca_pem: Option<Vec<u8>>,
    pub clients: Vec<Client>,
    pub scopes: Vec<String>,
    pub claims: ClaimMapping,
    /// ID token signature algorithms accepted (asymmetric only).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub leeway_seconds: u64,
    /// How long a started sign-in may take to come back.
    pub sign_in_ttl: Duration,
    /// The response header the filter turns into the session cookie
    /// (the filter's `session_start_header`).
    pub session_start_header: String,
    /// The response header the filter clears the cookie on (the filter's
    /// `session_end_header`).
    pub session_end_header: String,
    /// The cookie that binds a started sign-in to the browser.
    pub pre_login_cookie: String,
    /// How long the provider may take to answer one call.
    pub provider_timeout: Duration,
}

/// One app: its OIDC client at the provider.
#[derive(Debug)]
pub struct Client {
    /// The `Host` the browser uses for the app (`app.example.com`, with the
    /// port when it is not the default).
    pub host: String,
    pub client_id: String,
    pub client_secret: String,
    /// Registered at the provider: `https://{host}/.portero/oidc/callback`,
    /// routed by Envoy to this sidecar's public listener.
    pub redirect_uri: String,
}

/// Which ID token claims make the portero user.
#[derive(Debug)]
pub struct ClaimMapping {
    /// The claim that names the user (`sub`: stable at every provider).
    pub user_id: String,
    /// Put before the claim's value, so a provider's user can never be
    /// taken for an app's own user of the same id.
    pub user_id_prefix: String,
    pub email: String,
    /// A claim holding a list of names (or one name): the user's roles.
    pub roles: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidcConfig {
    issuer: String,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    clients: Vec<RawClient>,
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
    #[serde(default)]
    claims: RawClaims,
    #[serde(default = "default_algorithms")]
    id_token_algorithms: Vec<String>,
    #[serde(default = "default_leeway")]
    leeway_seconds: u64,
    #[serde(default = "default_sign_in_ttl")]
    sign_in_ttl_seconds: u64,
    #[serde(default = "default_start_header")]
    session_start_header: String,
    #[serde(default = "default_end_header")]
    session_end_header: String,
    #[serde(default = "default_pre_login_cookie")]
    pre_login_cookie: String,
    #[serde(default = "default_provider_timeout")]
    provider_timeout_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    host: String,
    client_id: String,
    client_secret: RawSecret,
    redirect_uri: String,
}

/// A secret: `{"env": "NAME"}` or `{"file": "/path"}` (never inline: the
/// file is configuration, often committed or shown).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    #[serde(default)]
    env: Option<String>,
    #[serde(default)]
    file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawClaims {
    user_id: String,
    user_id_prefix: String,
    email: String,
    roles: Option<String>,
}

impl Default for RawClaims {
    fn default() -> Self {
        Self {
            user_id: "sub".into(),
            user_id_prefix: "oidc:".into(),
            email: "email".into(),
            roles: None,
        }
    }
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into()]
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}
fn default_leeway() -> u64 {
    30
}
fn default_sign_in_ttl() -> u64 {
    600
}
fn default_start_header() -> String {
    "x-portero-start-session".into()
}
fn default_end_header() -> String {
    "x-portero-end-session".into()
}
fn default_pre_login_cookie() -> String {
    "__Host-portero-oidc".into()
}
fn default_provider_timeout() -> u64 {
    5000
}

/// Reads and checks the file at `path`; the error names the field.
pub fn load(path: &Path) -> Result<OidcConfig, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let raw: RawOidcConfig =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    raw.check().map_err(|e| format!("{}: {e}", path.display()))
}

impl RawOidcConfig {
    fn check(self) -> Result<OidcConfig, String> {
        let issuer = self.issuer.trim_end_matches('/').to_string();
        if !issuer.starts_with("https://") {
            return Err("issuer: expected an https:// URL".into());
        }
        let ca_pem = match &self.ca_file {
            Some(path) => {
                Some(std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?)
            }
            None => None,
        };
        if self.clients.is_empty() {
            return Err("clients: at least one app is needed".into());
        }
        let mut clients = Vec::new();
        for (i, raw) in self.clients.into_iter().enumerate() {
            let field = format!("clients[{i}]");
            let client = raw.check(&field)?;
            if clients.iter().any(|c: &Client| c.host == client.host) {
                return Err(format!("{field}.host: {} is listed twice", client.host));
            }
            clients.push(client);
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err("scopes: `openid` is required".into());
        }
        if self.scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
            return Err("scopes: each scope is one word".into());
        }
        let algorithms = self
            .id_token_algorithms
            .iter()
            .map(|name| asymmetric_algorithm(name))
            .collect::<Result<Vec<_>, _>>()?;
        if algorithms.is_empty() {
            return Err("id_token_algorithms: at least one is needed".into());
        }
        if self.claims.user_id.is_empty() || self.claims.email.is_empty() {
            return Err("claims: user_id and email name a claim each".into());
        }
        if !self.pre_login_cookie.starts_with("__Host-") {
            return Err(
                "pre_login_cookie: expected a `__Host-` name (Secure, Path=/, no Domain)".into(),
            );
        }
        if self.sign_in_ttl_seconds == 0 || self.sign_in_ttl_seconds > 3600 {
            return Err("sign_in_ttl_seconds: expected 1 to 3600".into());
        }
        Ok(OidcConfig {
            issuer,
            ca_pem,
            clients,
            scopes: self.scopes,
            claims: ClaimMapping {
                user_id: self.claims.user_id,
                user_id_prefix: self.claims.user_id_prefix,
                email: self.claims.email,
                roles: self.claims.roles,
            },
            algorithms,
            leeway_seconds: self.leeway_seconds,
            sign_in_ttl: Duration::from_secs(self.sign_in_ttl_seconds),
            session_start_header: self.session_start_header.to_ascii_lowercase(),
            session_end_header: self.session_end_header.to_ascii_lowercase(),
            pre_login_cookie: self.pre_login_cookie,
            provider_timeout: Duration::from_millis(self.provider_timeout_ms.max(1)),
        })
    }
}

impl RawClient {
    fn check(self, field: &str) -> Result<Client, String> {
        if self.host.is_empty() || self.host.contains(['/', ' ']) {
            return Err(format!("{field}.host: expected a host[:port]"));
        }
        if self.client_id.is_empty() {
            return Err(format!("{field}.client_id: required"));
        }
        let expected = format!("https://{}/", self.host);
        if !self.redirect_uri.starts_with(&expected) {
            return Err(format!(
                "{field}.redirect_uri: expected an https:// URL on the app's own host ({expected}…)"
            ));
        }
        let client_secret = self
            .client_secret
            .value(&format!("{field}.client_secret"))?;
        Ok(Client {
            host: self.host.to_ascii_lowercase(),
            client_id: self.client_id,
            client_secret,
            redirect_uri: self.redirect_uri,
        })
    }
}

impl RawSecret {
    fn value(&self, field: &str) -> Result<String, String> {
        let value = match (&self.env, &self.file) {
            (Some(name), None) => std::env::var(name)
                .map_err(|_| format!("{field}: environment variable {name} is not set"))?,
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("{field}: {}: {e}", path.display()))?
                .trim_end()
                .to_string(),
            _ => {
                return Err(format!(
                    "{field}: expected {{\"env\": NAME}} or {{\"file\": PATH}}"
                ))
            }
        };
        if value.is_empty() {
            return Err(format!("{field}: empty"));
        }
        Ok(value)
    }
}

/// An asymmetric JWS algorithm: never `none`, never HS* (a provider's
/// public key must not double as an HMAC secret).
fn asymmetric_algorithm(name: &str) -> Result<jsonwebtoken::Algorithm, String> {
    use jsonwebtoken::Algorithm::*;
    match name {
        "RS256" => Ok(RS256),
        "RS384" => Ok(RS384),
        "RS512" => Ok(RS512),
        "PS256" => Ok(PS256),
        "PS384" => Ok(PS384),
        "PS512" => Ok(PS512),
        "ES256" => Ok(ES256),
        "ES384" => Ok(ES384),
        "EdDSA" => Ok(EdDSA),
        other => Err(format!(
            "id_token_algorithms: {other:?} is not accepted (asymmetric algorithms only: \
             RS256/384/512, PS256/384/512, ES256/384, EdDSA)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(value: serde_json::Value) -> Result<OidcConfig, String> {
        serde_json::from_value::<RawOidcConfig>(value)
            .map_err(|e| e.to_string())
            .and_then(RawOidcConfig::check)
    }

    fn good() -> serde_json::Value {
        std::env::set_var("PORTERO_TEST_OIDC_SECRET", "s3cret");
        serde_json::json!({
            "issuer": "https://id.example.test/",
            "clients": [{
                "host": "app.example.test",
                "client_id": "app",
                "client_secret": {"env": "PORTERO_TEST_OIDC_SECRET"},
                "redirect_uri": "https://app.example.test/.portero/oidc/callback"
            }]
        })
    }

    #[test]
    fn defaults_are_the_safe_ones() {
        let config = raw(good()).unwrap();
        assert_eq!(config.issuer, "https://id.example.test");
        assert_eq!(config.algorithms, vec![jsonwebtoken::Algorithm::RS256]);
        assert_eq!(config.claims.user_id_prefix, "oidc:");
        assert_eq!(config.pre_login_cookie, "__Host-portero-oidc");
        assert_eq!(config.clients[0].client_secret, "s3cret");
    }

    #[test]
    fn each_bad_field_is_named() {
        type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("issuer", Box::new(|v| v["issuer"] = "http://id".into())),
            (
                "clients",
                Box::new(|v| v["clients"] = serde_json::json!([])),
            ),
            (
                "clients[0].redirect_uri",
                Box::new(|v| v["clients"][0]["redirect_uri"] = "https://evil.test/cb".into()),
            ),
            (
                "clients[0].client_secret",
                Box::new(|v| {
                    v["clients"][0]["client_secret"] =
                        serde_json::json!({"env": "PORTERO_TEST_UNSET_VARIABLE"})
                }),
            ),
            (
                "id_token_algorithms",
                Box::new(|v| v["id_token_algorithms"] = serde_json::json!(["HS256"])),
            ),
            (
                "id_token_algorithms",
                Box::new(|v| v["id_token_algorithms"] = serde_json::json!(["none"])),
            ),
            (
                "scopes",
                Box::new(|v| v["scopes"] = serde_json::json!(["email"])),
            ),
            (
                "pre_login_cookie",
                Box::new(|v| v["pre_login_cookie"] = "oidc".into()),
            ),
            ("unknown field", Box::new(|v| v["isuer"] = "x".into())),
        ];
        for (field, mutate) in cases {
            let mut value = good();
            mutate(&mut value);
            let e = raw(value).unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
        }
    }
}
