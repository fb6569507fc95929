//! "Validate the ID token": the provider's signature with an allowed
//! asymmetric algorithm, `iss`, `aud`, `azp`, `exp`/`iat` with the leeway,
//! and the `nonce` this sign-in sent. Then the claims that make the
//! portero user.

use serde_json::{Map, Value};

use super::config::{Client, OidcConfig};
use super::provider::Provider;
use super::SignInError;

/// The validated claims of an ID token.
#[derive(Debug)]
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
    let claims = decode_signed(
        provider,
        config,
        id_token,
        &[client.client_id.as_str()],
        &["exp", "iat", "iss", "aud", "sub"],
        now,
    )
    .await
    .map_err(|e| match e {
        SignInError::Refused(why) => refused(why),
        other => other,
    })?;
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

/// A token signed by the provider: an allowed asymmetric algorithm, the
/// provider's key, `iss`, one of `audiences`, `exp` (when required or
/// present) and `iat` (not in the future) with the leeway, and the
/// `required` claims present. Its claims.
async fn decode_signed(
    provider: &Provider,
    config: &OidcConfig,
    token: &str,
    audiences: &[&str],
    required: &[&str],
    now: u64,
) -> Result<Map<String, Value>, SignInError> {
    let refused = SignInError::Refused;
    let header = jsonwebtoken::decode_header(token).map_err(|e| refused(e.to_string()))?;
    if !config.algorithms.contains(&header.alg) {
        return Err(refused(format!("algorithm {:?} not accepted", header.alg)));
    }
    // A key not published yet, even after fetching the keys again (or
    // within `JWKS_REFETCH_MIN` of the last fetch): the provider may be
    // rolling its keys over, so it is try-again, not a refusal.
    let jwk = provider
        .key(header.kid.as_deref())
        .await
        .map_err(SignInError::Provider)?
        .ok_or_else(|| {
            SignInError::Provider(super::provider::ProviderError(format!(
                "no provider key {:?} (yet)",
                header.kid
            )))
        })?;
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| refused(e.to_string()))?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.algorithms = config.algorithms.clone();
    validation.leeway = config.leeway_seconds;
    validation.set_issuer(&[config.issuer.as_str()]);
    validation.set_audience(audiences);
    validation.validate_exp = required.contains(&"exp");
    validation.set_required_spec_claims(required);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map_err(|e| refused(e.to_string()))?;
    let claims = data.claims;
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    if iat > now.saturating_add(config.leeway_seconds) {
        return Err(refused("issued in the future".into()));
    }
    // `exp` is optional in a logout token; when present it holds.
    if let Some(exp) = claims.get("exp") {
        let live = exp
            .as_u64()
            .is_some_and(|exp| exp.saturating_add(config.leeway_seconds) > now);
        if !live {
            return Err(refused("expired".into()));
        }
    }
    Ok(claims)
}

/// The event a back-channel logout token carries (OpenID Connect
/// Back-Channel Logout 1.0, §2.4).
const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a validated logout token ends.
#[derive(Debug, PartialEq, Eq)]
pub struct LogoutToken {
    /// The provider's session: end the portero sessions made under it.
    pub provider_session: Option<String>,
    /// The user: without `sid`, end every session of theirs.
    pub subject: Option<String>,
    /// For replay detection.
    pub jti: String,
    pub issued_at: u64,
}

/// "Validate the logout token" (§2.6): signed by the provider for one of
/// the configured clients, `iat`, `jti`, the back-channel logout event,
/// `sub` or `sid`, and no `nonce` (an ID token is not a logout token).
pub async fn validate_logout(
    provider: &Provider,
    config: &OidcConfig,
    token: &str,
    now: u64,
) -> Result<LogoutToken, SignInError> {
    let audiences: Vec<&str> = config
        .clients
        .iter()
        .map(|c| c.client_id.as_str())
        .collect();
    let claims = decode_signed(
        provider,
        config,
        token,
        &audiences,
        &["iat", "iss", "aud"],
        now,
    )
    .await
    .map_err(|e| match e {
        SignInError::Refused(why) => SignInError::Refused(format!("logout token: {why}")),
        other => other,
    })?;
    let refused = |why: &str| SignInError::Refused(format!("logout token: {why}"));
    let has_event = claims
        .get("events")
        .and_then(Value::as_object)
        .is_some_and(|events| {
            events
                .get(BACKCHANNEL_LOGOUT_EVENT)
                .is_some_and(Value::is_object)
        });
    if !has_event {
        return Err(refused("no back-channel logout event"));
    }
    if claims.contains_key("nonce") {
        return Err(refused("a nonce: this is an ID token"));
    }
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let (provider_session, subject) = (text("sid"), text("sub"));
    if provider_session.is_none() && subject.is_none() {
        return Err(refused("neither sub nor sid"));
    }
    let jti = text("jti").ok_or_else(|| refused("no jti"))?;
    Ok(LogoutToken {
        provider_session,
        subject,
        jti,
        issued_at: claims.get("iat").and_then(Value::as_u64).unwrap_or(0),
    })
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

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use std::time::Duration;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    use super::super::config::ClaimMapping;
    use super::*;

    const PEM: &str = include_str!("../../../crates/portero-testkit/fixtures/test-rsa.pem");
    const KID: &str = "provider-key";
    const NONCE: &str = "the-nonce-of-this-sign-in";

    fn config() -> OidcConfig {
        OidcConfig {
            issuer: "https://id.example.test".into(),
            ca_pem: None,
            clients: vec![Client {
                host: "app.example.test".into(),
                client_id: "app".into(),
                client_secret: "s".into(),
                redirect_uri: "https://app.example.test/.portero/oidc/callback".into(),
            }],
            scopes: vec!["openid".into()],
            claims: ClaimMapping {
                user_id: "sub".into(),
                user_id_prefix: "oidc:".into(),
                email: "email".into(),
                roles: Some("groups".into()),
            },
            algorithms: vec![Algorithm::RS256],
            leeway_seconds: 30,
            sign_in_ttl: Duration::from_secs(600),
            session_start_header: "x-portero-start-session".into(),
            session_end_header: "x-portero-end-session".into(),
            pre_login_cookie: "__Host-portero-oidc".into(),
            provider_timeout: Duration::from_secs(1),
        }
    }

    fn provider(config: &OidcConfig) -> Provider {
        let key = crate::keys::SigningKey::from_pem(PEM, Some(KID.into())).unwrap();
        let keys: jsonwebtoken::jwk::JwkSet = serde_json::from_value(key.jwks()).unwrap();
        Provider::with_keys(config, keys)
    }

    fn now() -> u64 {
        crate::api::now()
    }

    fn claims() -> Value {
        json!({
            "iss": "https://id.example.test",
            "aud": "app",
            "sub": "u-42",
            "email": "grace@example.test",
            "groups": ["admin", "has space", "staff", "a,b"],
            "nonce": NONCE,
            "iat": now(),
            "exp": now() + 300,
        })
    }

    fn signed(claims: &Value, kid: &str) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        let key = EncodingKey::from_rsa_pem(PEM.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    fn check(token: &str) -> Result<IdToken, SignInError> {
        let config = config();
        let provider = provider(&config);
        let client = &config.clients[0];
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(validate(&provider, &config, client, token, NONCE, now()))
    }

    fn refused(token: &str) -> String {
        refused_as(token, "this token")
    }

    fn refused_as(token: &str, what: &str) -> String {
        match check(token) {
            Err(SignInError::Refused(why)) => why,
            Err(_) => panic!("{what}: not a refusal"),
            Ok(_) => panic!("{what}: accepted"),
        }
    }

    #[test]
    fn a_valid_token_names_the_prefixed_user_with_the_usable_roles() {
        let token = check(&signed(&claims(), KID)).unwrap();
        let user = token.user(&config()).unwrap();
        assert_eq!(
            user,
            SignedInUser {
                user_id: "oidc:u-42".into(),
                email: "grace@example.test".into(),
                roles: vec!["admin".into(), "staff".into()],
            }
        );
    }

    #[test]
    fn every_claim_that_binds_the_token_is_checked() {
        let with = |name: &str, value: Value| {
            let mut c = claims();
            c[name] = value;
            signed(&c, KID)
        };
        for (what, token) in [
            ("another nonce", with("nonce", json!("replayed"))),
            ("no nonce", {
                let mut c = claims();
                c.as_object_mut().unwrap().remove("nonce");
                signed(&c, KID)
            }),
            ("another audience", with("aud", json!("other-app"))),
            ("another issuer", with("iss", json!("https://evil.example"))),
            ("expired", with("exp", json!(now() - 120))),
            ("issued in the future", with("iat", json!(now() + 600))),
            ("azp of another client", with("azp", json!("other-app"))),
            (
                "several audiences, no azp",
                with("aud", json!(["app", "other-app"])),
            ),
        ] {
            refused_as(&token, what);
        }
        // A key the provider does not publish (yet): try again, not accepted.
        assert!(matches!(
            check(&signed(&claims(), "unknown-kid")),
            Err(SignInError::Provider(_))
        ));
        // Several audiences naming this client as azp: accepted.
        let mut c = claims();
        c["aud"] = json!(["app", "other-app"]);
        c["azp"] = json!("app");
        assert!(check(&signed(&c, KID)).is_ok());
    }

    #[test]
    fn alg_none_hs256_with_the_public_key_and_a_changed_payload_are_refused() {
        let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
        // `none`: no signature at all.
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"provider-key"}"#);
        refused(&format!("{none_header}.{payload}."));
        // HS256 keyed with the provider's public key (the key-confusion attack).
        let key = crate::keys::SigningKey::from_pem(PEM, Some(KID.into())).unwrap();
        let public_n = key.jwks()["keys"][0]["n"].as_str().unwrap().to_string();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(KID.into());
        let hs = jsonwebtoken::encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(public_n.as_bytes()),
        )
        .unwrap();
        assert!(refused(&hs).contains("not accepted"));
        // A valid token whose payload was changed after signing.
        let good = signed(&claims(), KID);
        let mut parts: Vec<&str> = good.split('.').collect();
        let mut evil = claims();
        evil["sub"] = json!("admin");
        let evil_payload = URL_SAFE_NO_PAD.encode(evil.to_string());
        parts[1] = &evil_payload;
        refused(&parts.join("."));
        // Not a JWT at all.
        refused("not-a-token");
    }

    fn logout_claims() -> Value {
        json!({
            "iss": "https://id.example.test",
            "aud": "app",
            "sub": "u-42",
            "sid": "provider-session-1",
            "jti": "logout-1",
            "iat": now(),
            "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
        })
    }

    fn check_logout(token: &str) -> Result<LogoutToken, SignInError> {
        let config = config();
        let provider = provider(&config);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(validate_logout(&provider, &config, token, now()))
    }

    #[test]
    fn a_logout_token_names_the_provider_session_and_nothing_else_passes_for_one() {
        let token = check_logout(&signed(&logout_claims(), KID)).unwrap();
        assert_eq!(
            token.provider_session.as_deref(),
            Some("provider-session-1")
        );
        assert_eq!(token.subject.as_deref(), Some("u-42"));
        let without = |name: &str| {
            let mut c = logout_claims();
            c.as_object_mut().unwrap().remove(name);
            c
        };
        let with = |name: &str, value: Value| {
            let mut c = logout_claims();
            c[name] = value;
            c
        };
        let mut neither = without("sid");
        neither.as_object_mut().unwrap().remove("sub");
        for (what, claims) in [
            ("an ID token (a nonce)", with("nonce", json!("n"))),
            ("no event", without("events")),
            (
                "another event",
                with("events", json!({"http://example.com/other": {}})),
            ),
            ("neither sub nor sid", neither),
            ("no jti", without("jti")),
            ("no iat", without("iat")),
            ("another audience", with("aud", json!("other-app"))),
            ("another issuer", with("iss", json!("https://evil.example"))),
            ("expired", with("exp", json!(now() - 120))),
        ] {
            match check_logout(&signed(&claims, KID)) {
                Err(SignInError::Refused(_)) => {}
                other => panic!("{what}: {other:?}"),
            }
        }
        // Only `sub`: every session of that user.
        let token = check_logout(&signed(&without("sid"), KID)).unwrap();
        assert_eq!(
            (token.provider_session, token.subject.as_deref()),
            (None, Some("u-42"))
        );
    }

    #[test]
    fn a_token_without_the_user_claim_names_nobody() {
        let mut c = claims();
        c["sub"] = json!("");
        // `sub` is required by the validation itself; an empty one passes it
        // and is refused by the mapping.
        let token = check(&signed(&c, KID)).unwrap();
        assert!(matches!(
            token.user(&config()),
            Err(SignInError::Refused(_))
        ));
    }
}
