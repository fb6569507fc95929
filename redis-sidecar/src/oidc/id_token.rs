//! "Validate the ID token": the provider's signature with an allowed
//! asymmetric algorithm, `iss`, `aud`, `azp`, `exp`/`iat` with the leeway,
//! and the `nonce` this sign-in sent. Then the claims that make the
//! portero user.

use serde_json::{Map, Value};

use super::config::{Client, OidcConfig};
use super::provider::Provider;
use super::SignInError;

/// The validated claims of an ID token.
pub struct IdToken {
    claims: Map<String, Value>,
}

/// Who signed in, as portero will record them.
#[derive(Debug, PartialEq, Eq)]
pub struct SignedInUser {
    pub user_id: String,
    pub email: String,
    pub roles: Vec<String>,
}

pub async fn validate(
    provider: &Provider,
    config: &OidcConfig,
    client: &Client,
    id_token: &str,
    nonce: &str,
    now: u64,
) -> Result<IdToken, SignInError> {
    let refused = |why: String| SignInError::Refused(format!("ID token: {why}"));
    let header = jsonwebtoken::decode_header(id_token).map_err(|e| refused(e.to_string()))?;
    if !config.algorithms.contains(&header.alg) {
        return Err(refused(format!("algorithm {:?} not accepted", header.alg)));
    }
    let jwk = provider
        .key(header.kid.as_deref())
        .await
        .map_err(SignInError::Provider)?
        .ok_or_else(|| refused(format!("no provider key {:?}", header.kid)))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| refused(e.to_string()))?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.algorithms = config.algorithms.clone();
    validation.leeway = config.leeway_seconds;
    validation.set_issuer(&[config.issuer.as_str()]);
    validation.set_audience(&[client.client_id.as_str()]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(id_token, &key, &validation)
        .map_err(|e| refused(e.to_string()))?;
    let claims = data.claims;
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    if iat > now.saturating_add(config.leeway_seconds) {
        return Err(refused("issued in the future".into()));
    }
    // A token for several audiences must name this client as the one it
    // was issued to; a named `azp` must be this client whatever `aud` is.
    let audiences = match claims.get("aud") {
        Some(Value::Array(list)) => list.len(),
        _ => 1,
    };
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != client.client_id => {
            return Err(refused(format!("azp {azp:?} is another client")))
        }
        None if audiences > 1 => return Err(refused("several audiences and no azp".into())),
        _ => {}
    }
    let sent = claims.get("nonce").and_then(Value::as_str);
    if sent.map(str::as_bytes) != Some(nonce.as_bytes()) {
        return Err(refused("nonce is not this sign-in's".into()));
    }
    Ok(IdToken { claims })
}

impl IdToken {
    /// The provider's session (`sid`), when it says.
    pub fn provider_session(&self) -> Option<&str> {
        self.claims.get("sid").and_then(Value::as_str)
    }

    pub fn subject(&self) -> Option<&str> {
        self.claims.get("sub").and_then(Value::as_str)
    }

    /// The portero user the claims name, by `config.claims`.
    pub fn user(&self, config: &OidcConfig) -> Result<SignedInUser, SignInError> {
        let mapping = &config.claims;
        let id = match self.claims.get(&mapping.user_id) {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            _ => {
                return Err(SignInError::Refused(format!(
                    "the ID token has no {:?} claim to name the user",
                    mapping.user_id
                )))
            }
        };
        let email = self
            .claims
            .get(&mapping.email)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let roles = match mapping.roles.as_ref().and_then(|c| self.claims.get(c)) {
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        Ok(SignedInUser {
            user_id: format!("{}{id}", mapping.user_id_prefix),
            email,
            roles: usable_roles(roles),
        })
    }
}

/// Role names portero can carry (they travel upstream comma-separated):
/// others are dropped and logged, not fatal to the sign-in.
fn usable_roles(roles: Vec<String>) -> Vec<String> {
    let (usable, dropped): (Vec<String>, Vec<String>) = roles.into_iter().partition(|r| {
        !r.is_empty()
            && r.len() <= 128
            && !r.contains([',', ' '])
            && !r.chars().any(char::is_control)
    });
    if !dropped.is_empty() {
        tracing::warn!(target: super::LOG_TARGET, dropped = dropped.len(), "provider roles that portero cannot carry (empty, commas, spaces, controls, over 128 bytes) were dropped");
    }
    usable.into_iter().take(64).collect()
}
