//! The provider as the sidecar sees it: its discovery document, its signing
//! keys (fetched again when an ID token names a key not seen yet, at most
//! every [`JWKS_REFETCH_MIN`]), and the HTTPS client that reaches it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use super::config::OidcConfig;

/// The least time between two fetches of the provider's keys on an unknown
/// `kid` (a token with made-up key ids must not turn into a flood).
const JWKS_REFETCH_MIN: Duration = Duration::from_secs(10);
/// Largest document read from the provider.
const MAX_PROVIDER_BODY: usize = 256 * 1024;

/// The parts of the discovery document a sign-in uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    /// RP-initiated logout, when the provider offers it.
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
}

/// Why the provider could not be used: the browser gets a try-again page.
#[derive(Debug)]
pub struct ProviderError(pub String);

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub struct Provider {
    http: reqwest::Client,
    issuer: String,
    metadata: tokio::sync::Mutex<Option<Metadata>>,
    keys: Mutex<Option<(Instant, JwkSet)>>,
    /// One fetch of the keys at a time.
    fetching_keys: tokio::sync::Mutex<()>,
}

impl Provider {
    pub fn new(config: &OidcConfig) -> Result<Self, String> {
        let mut http = reqwest::Client::builder()
            .timeout(config.provider_timeout)
            // The token endpoint's answer is read, never followed.
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true);
        if let Some(pem) = &config.ca_pem {
            for cert in
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("ca_file: {e}"))?
            {
                http = http.add_root_certificate(cert);
            }
        }
        Ok(Self {
            http: http.build().map_err(|e| format!("HTTPS client: {e}"))?,
            issuer: config.issuer.clone(),
            metadata: tokio::sync::Mutex::new(None),
            keys: Mutex::new(None),
            fetching_keys: tokio::sync::Mutex::new(()),
        })
    }

    /// A provider whose keys are already known (tests of the validation).
    #[cfg(test)]
    pub fn with_keys(config: &OidcConfig, keys: JwkSet) -> Self {
        let provider = Self::new(config).expect("an HTTPS client");
        *provider
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), keys));
        provider
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The discovery document, fetched on first use (the provider may start
    /// after the sidecar) and kept; it must name the configured issuer.
    pub async fn metadata(&self) -> Result<Metadata, ProviderError> {
        let mut known = self.metadata.lock().await;
        if let Some(metadata) = known.as_ref() {
            return Ok(metadata.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let metadata: Metadata = serde_json::from_slice(&self.get(&url).await?)
            .map_err(|e| ProviderError(format!("discovery document: {e}")))?;
        if metadata.issuer.trim_end_matches('/') != self.issuer {
            return Err(ProviderError(format!(
                "discovery names the issuer {:?}, not the configured {:?}",
                metadata.issuer, self.issuer
            )));
        }
        if !metadata
            .code_challenge_methods_supported
            .iter()
            .any(|m| m == "S256")
        {
            // Not all providers list it; PKCE is sent regardless.
            tracing::debug!(target: super::LOG_TARGET, "the provider does not list PKCE S256");
        }
        tracing::info!(target: super::LOG_TARGET, issuer = %self.issuer, "provider discovered");
        *known = Some(metadata.clone());
        Ok(metadata)
    }

    /// The provider's key named `kid` (or its only key when the token names
    /// none): fetched again when not known, at most every
    /// [`JWKS_REFETCH_MIN`].
    pub async fn key(
        &self,
        kid: Option<&str>,
    ) -> Result<Option<jsonwebtoken::jwk::Jwk>, ProviderError> {
        if let Some(key) = self.known_key(kid) {
            return Ok(Some(key));
        }
        let _one_at_a_time = self.fetching_keys.lock().await;
        let fetched_recently = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < JWKS_REFETCH_MIN);
        if fetched_recently {
            return Ok(self.known_key(kid));
        }
        let metadata = self.metadata().await?;
        let set: JwkSet = serde_json::from_slice(&self.get(&metadata.jwks_uri).await?)
            .map_err(|e| ProviderError(format!("provider JWKS: {e}")))?;
        *self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), set));
        Ok(self.known_key(kid))
    }

    fn known_key(&self, kid: Option<&str>) -> Option<jsonwebtoken::jwk::Jwk> {
        let keys = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (_, set) = keys.as_ref()?;
        match kid {
            Some(kid) => set.find(kid).cloned(),
            None => match set.keys.as_slice() {
                [only] => Some(only.clone()),
                _ => None,
            },
        }
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, ProviderError> {
        let response = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| ProviderError(format!("GET {url}: {e}")))?;
        read_body(response, url).await
    }
}

/// A provider's answer, if it is a 2xx and not too large.
pub async fn read_body(response: reqwest::Response, url: &str) -> Result<Vec<u8>, ProviderError> {
    let status = response.status();
    if response
        .content_length()
        .is_some_and(|n| n > MAX_PROVIDER_BODY as u64)
    {
        return Err(ProviderError(format!("{url}: answer too large")));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| ProviderError(format!("{url}: {e}")))?;
    if body.len() > MAX_PROVIDER_BODY {
        return Err(ProviderError(format!("{url}: answer too large")));
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(body.get(..body.len().min(300)).unwrap_or_default());
        return Err(ProviderError(format!("{url}: {status}: {text}")));
    }
    Ok(body.to_vec())
}
