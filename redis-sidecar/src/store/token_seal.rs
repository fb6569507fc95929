//! Access tokens sealed at rest: a session's current access token is
//! stored AES-256-GCM-sealed, so a Redis dump, the AOF or a replica's disk
//! holds no token the edge would accept.

use aes_gcm::aead::{Aead, Payload};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::{corrupt, Store, StoreError};

/// A sealed access token: this prefix, then base64url(nonce ‖ AES-GCM).
const SEALED_TOKEN_PREFIX: &str = "s1.";
const TOKEN_NONCE_LEN: usize = 12;

/// The cipher that seals access tokens at rest: its key is
/// HMAC-SHA256(session hash key, "portero access-token seal v1"), so Redis,
/// which never sees the hash key, cannot open them.
pub(super) fn token_seal_cipher(hash_key: &Hmac<Sha256>) -> aes_gcm::Aes256Gcm {
    use aes_gcm::KeyInit;
    let mut mac = hash_key.clone();
    mac.update(b"portero access-token seal v1");
    let key = mac.finalize().into_bytes();
    aes_gcm::Aes256Gcm::new(&key)
}

impl Store {
    /// `token` sealed for storage under session `handle`.
    pub(super) fn seal_token(&self, handle: &str, token: &str) -> Result<String, StoreError> {
        let mut nonce = [0u8; TOKEN_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: token.as_bytes(),
            aad: handle.as_bytes(),
        };
        let sealed = self
            .token_seal
            .encrypt(&nonce.into(), payload)
            .map_err(|_| corrupt("access token could not be sealed"))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!(
            "{SEALED_TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// The access token stored under session `handle`; one stored before
    /// tokens were sealed is read as it is.
    pub(super) fn open_token(&self, handle: &str, stored: &str) -> Result<String, StoreError> {
        let Some(sealed) = stored.strip_prefix(SEALED_TOKEN_PREFIX) else {
            return Ok(stored.to_string());
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| corrupt("sealed access token is not base64url"))?;
        if bytes.len() < TOKEN_NONCE_LEN {
            return Err(corrupt("sealed access token too short"));
        }
        let (nonce, ciphertext) = bytes.split_at(TOKEN_NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: handle.as_bytes(),
        };
        let nonce = aes_gcm::Nonce::from_slice(nonce);
        let token = self
            .token_seal
            .decrypt(nonce, payload)
            .map_err(|_| corrupt("sealed access token does not open"))?;
        String::from_utf8(token).map_err(|_| corrupt("sealed access token is not text"))
    }
}
