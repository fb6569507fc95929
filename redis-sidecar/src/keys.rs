//! The RS256 signing key: loaded from a PEM file, published as a JWKS, and
//! used to mint access tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use portero_wire::AccessClaims;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Smallest accepted RSA modulus.
pub const MIN_KEY_BITS: usize = 2048;

pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 or PKCS#1 PEM private key. `kid` defaults to the key's
    /// RFC 7638 thumbprint, so every instance sharing the key agrees on it.
    pub fn from_pem(pem: &str, kid: Option<String>) -> Result<Self, String> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .map_err(|e| format!("not an RSA private key in PEM (PKCS#8 or PKCS#1): {e}"))?;
        let bits = key.size() * 8;
        if bits < MIN_KEY_BITS {
            return Err(format!(
                "RSA key of {bits} bits; at least {MIN_KEY_BITS} needed"
            ));
        }
        let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
        let kid = kid.unwrap_or_else(|| {
            // RFC 7638: members in lexicographic order, no whitespace.
            let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
            URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
        });
        let der = key
            .to_pkcs1_der()
            .map_err(|e| format!("cannot encode the key: {e}"))?;
        Ok(Self {
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            jwk: json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e}),
            kid,
        })
    }

    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    pub fn sign(&self, claims: &AccessClaims) -> Result<String, String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.encoding).map_err(|e| e.to_string())
    }
}

/// A new 2048-bit key as PKCS#8 PEM.
pub fn generate_pem() -> Result<String, String> {
    let key =
        RsaPrivateKey::new(&mut rand::rngs::OsRng, MIN_KEY_BITS).map_err(|e| e.to_string())?;
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = include_str!("../../tests/fixtures/test-rsa.pem");

    #[test]
    fn jwks_matches_the_fixture_and_thumbprint_is_stable() {
        let key = SigningKey::from_pem(PEM, Some("test-key".into())).unwrap();
        let fixture: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/test-jwks.json")).unwrap();
        assert_eq!(key.jwks(), fixture);
        let a = SigningKey::from_pem(PEM, None).unwrap();
        let b = SigningKey::from_pem(PEM, None).unwrap();
        assert_eq!(a.kid, b.kid);
        assert_eq!(a.kid.len(), 43);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(SigningKey::from_pem("nope", None)
            .unwrap_err()
            .contains("PEM"));
    }
}
