//! Sign-ins under way (OIDC): what the callback needs to finish one,
//! stored when it starts and taken (read and deleted, once) when the
//! provider sends the browser back.
//!
//! ```text
//! {prefix}:signin:<mac("signin\0" + state)>         STRING  PendingSignIn (JSON), TTL = sign-in time
//! {prefix}:oidc-sid:<mac("sid\0" + iss + "\0" + sid)> SET     handles of the sessions made under
//!                                                            a provider session (back-channel
//!                                                            logout), TTL = session lifetime
//! {prefix}:oidc-jti:<mac("jti\0" + iss + "\0" + jti)> STRING  a logout token seen (no replay)
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{corrupt, Store, StoreError};

/// A started sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignIn {
    /// The app's host (its OIDC client).
    pub host: String,
    pub nonce: String,
    /// PKCE: sent to the token endpoint with the code.
    pub code_verifier: String,
    /// Where the browser goes once signed in (a safe same-site path).
    pub return_to: String,
    /// SHA-256 of the pre-login cookie's value, base64url: the browser
    /// that started it.
    pub browser_binding: String,
}

impl Store {
    fn sign_in_key(&self, state: &str) -> String {
        format!(
            "{}:signin:{}",
            self.prefix,
            self.mac(&[b"signin\0", state.as_bytes()])
        )
    }

    /// Keeps `pending` under `state` for `ttl`.
    pub async fn put_sign_in(
        &self,
        state: &str,
        pending: &PendingSignIn,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(pending).map_err(|e| corrupt(&e.to_string()))?;
        let mut conn = self.connection().await?;
        let result = redis::cmd("SET")
            .arg(self.sign_in_key(state))
            .arg(json)
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
            .query_async::<()>(&mut conn)
            .await;
        self.check(result).await
    }

    /// The sign-in started under `state`, deleted as it is read: a state
    /// is good for one callback. `None`: unknown, used or expired.
    pub async fn take_sign_in(&self, state: &str) -> Result<Option<PendingSignIn>, StoreError> {
        let mut conn = self.connection().await?;
        let result = redis::cmd("GETDEL")
            .arg(self.sign_in_key(state))
            .query_async::<Option<String>>(&mut conn)
            .await;
        match self.check(result).await? {
            None => Ok(None),
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|_| corrupt("a pending sign-in")),
        }
    }
}

impl Store {
    fn provider_session_key(&self, issuer: &str, sid: &str) -> String {
        let mac = self.mac(&[b"sid\0", issuer.as_bytes(), b"\0", sid.as_bytes()]);
        format!("{}:oidc-sid:{mac}", self.prefix)
    }

    /// Notes that session `handle` was made under the provider's session
    /// `sid`, for as long as the session can live.
    pub async fn index_provider_session(
        &self,
        issuer: &str,
        sid: &str,
        handle: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = self.provider_session_key(issuer, sid);
        let mut conn = self.connection().await?;
        let result = redis::pipe()
            .atomic()
            .cmd("SADD")
            .arg(&key)
            .arg(handle)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(ttl.as_secs().max(1))
            .ignore()
            .query_async::<()>(&mut conn)
            .await;
        self.check(result).await
    }

    /// The sessions made under the provider's session `sid` (some may have
    /// ended since).
    pub async fn provider_session_handles(
        &self,
        issuer: &str,
        sid: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.connection().await?;
        let result = redis::cmd("SMEMBERS")
            .arg(self.provider_session_key(issuer, sid))
            .query_async::<Vec<String>>(&mut conn)
            .await;
        self.check(result).await
    }

    fn logout_token_key(&self, issuer: &str, jti: &str) -> String {
        let mac = self.mac(&[b"jti\0", issuer.as_bytes(), b"\0", jti.as_bytes()]);
        format!("{}:oidc-jti:{mac}", self.prefix)
    }

    /// Whether logout token `jti` was acted on before (a replay).
    pub async fn logout_token_seen(&self, issuer: &str, jti: &str) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        let result = redis::cmd("EXISTS")
            .arg(self.logout_token_key(issuer, jti))
            .query_async::<u64>(&mut conn)
            .await;
        Ok(self.check(result).await? > 0)
    }

    /// Remembers that logout token `jti` was acted on, for `ttl`.
    pub async fn remember_logout_token(
        &self,
        issuer: &str,
        jti: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let result = redis::cmd("SET")
            .arg(self.logout_token_key(issuer, jti))
            .arg(1)
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .query_async::<()>(&mut conn)
            .await;
        self.check(result).await
    }
}
