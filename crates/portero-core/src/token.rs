//! Bearer access tokens: RS256 only, key chosen by `kid` from a pinned JWKS.
//!
//! Never `none`, never an HMAC algorithm (so an RSA public key can't be used as
//! an HMAC secret), never a key named by `jku`/`x5u`: only keys in the
//! configured set verify. Time claims are checked here against the host's
//! clock, not by the library, so the reasons are precise and tests control time.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{decode_header, Algorithm};
use portero_wire::AccessClaims;

use crate::crypto::{Crypto, PortableCrypto};
use crate::rs256::RsaPublicKey;

/// Longest bearer token accepted before any parsing.
pub const MAX_TOKEN_LEN: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    TooLong,
    Malformed,
    DisallowedAlgorithm,
    MissingKeyId,
    UnknownKeyId,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    Expired,
    NotYetValid,
    MissingSessionId,
}

impl TokenError {
    /// Stable reason code (response body, logs, metrics).
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::TooLong => "token_too_long",
            TokenError::Malformed => "token_malformed",
            TokenError::DisallowedAlgorithm => "token_algorithm_not_allowed",
            TokenError::MissingKeyId => "token_without_kid",
            TokenError::UnknownKeyId => "token_unknown_kid",
            TokenError::BadSignature => "token_bad_signature",
            TokenError::WrongIssuer => "token_wrong_issuer",
            TokenError::WrongAudience => "token_wrong_audience",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::MissingSessionId => "token_without_sid",
        }
    }
}

/// Why a JWKS could not be pinned; names the offending key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySetError(pub String);

/// A token whose signature, key, issuer and audience check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub claims: AccessClaims,
    /// Past `exp` but within the refresh window: only good for a refresh.
    pub expired: bool,
}

/// RS256 public keys by `kid`: the set pinned in the configuration, or the
/// one last fetched from the sidecar's JWKS.
#[derive(Clone, Default)]
pub struct KeySet {
    /// Signatures are checked by [`crate::rs256`] (measured: the generic
    /// `rsa` path costs 8× more inside V8).
    keys: HashMap<String, RsaPublicKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kids()).finish()
    }
}

impl KeySet {
    /// Every key must have a `kid`, be RSA, and not name another algorithm
    /// or use than RS256 signing.
    pub fn from_jwks(jwks: &JwkSet) -> Result<KeySet, KeySetError> {
        let mut keys = HashMap::new();
        for (i, jwk) in jwks.keys.iter().enumerate() {
            let kid = jwk
                .common
                .key_id
                .clone()
                .ok_or_else(|| KeySetError(format!("keys[{i}] has no \"kid\"")))?;
            let AlgorithmParameters::RSA(params) = &jwk.algorithm else {
                return Err(KeySetError(format!("keys[{i}] ({kid}) is not an RSA key")));
            };
            if let Some(alg) = jwk.common.key_algorithm {
                if alg != KeyAlgorithm::RS256 {
                    return Err(KeySetError(format!(
                        "keys[{i}] ({kid}) has alg {alg:?}; only RS256 is accepted"
                    )));
                }
            }
            if let Some(usage) = &jwk.common.public_key_use {
                if *usage != PublicKeyUse::Signature {
                    return Err(KeySetError(format!(
                        "keys[{i}] ({kid}) is not a \"sig\" key"
                    )));
                }
            }
            let component = |name: &str, value: &str| {
                URL_SAFE_NO_PAD
                    .decode(value)
                    .map_err(|e| KeySetError(format!("keys[{i}] ({kid}): \"{name}\": {e}")))
            };
            let key = RsaPublicKey::from_components(
                &component("n", &params.n)?,
                &component("e", &params.e)?,
            )
            .map_err(|e| KeySetError(format!("keys[{i}] ({kid}): {e}")))?;
            if keys.insert(kid.clone(), key).is_some() {
                return Err(KeySetError(format!("keys[{i}]: duplicate kid {kid}")));
            }
        }
        if keys.is_empty() {
            return Err(KeySetError("the key set is empty".into()));
        }
        Ok(KeySet { keys })
    }

    pub fn get(&self, kid: &str) -> Option<&RsaPublicKey> {
        self.keys.get(kid)
    }

    /// The key ids, sorted.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Verifies access tokens against the pinned key set, and the fetched one
/// when given.
pub struct TokenVerifier {
    pinned: KeySet,
    issuer: String,
    audiences: Vec<String>,
    leeway: u64,
    refresh_window: u64,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("pinned", &self.pinned)
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl TokenVerifier {
    pub fn new(
        jwks: &JwkSet,
        issuer: &str,
        audiences: &[String],
        leeway_seconds: u64,
        refresh_window_seconds: u64,
    ) -> Result<Self, KeySetError> {
        Ok(Self {
            pinned: KeySet::from_jwks(jwks)?,
            issuer: issuer.to_string(),
            audiences: audiences.to_vec(),
            leeway: leeway_seconds,
            refresh_window: refresh_window_seconds,
        })
    }

    /// Verifies a bearer token at time `now` (Unix seconds). A token past
    /// `exp` (plus leeway) by at most the refresh window verifies with
    /// `expired: true`; later than that it is [`TokenError::Expired`].
    pub fn verify(&self, token: &str, now: u64) -> Result<Verified, TokenError> {
        self.verify_with(token, now, &KeySet::default(), &PortableCrypto)
    }

    /// [`TokenVerifier::verify`], also trusting the keys `fetched` from the
    /// sidecar's JWKS (a pinned key wins a `kid` both name).
    pub fn verify_with(
        &self,
        token: &str,
        now: u64,
        fetched: &KeySet,
        crypto: &dyn Crypto,
    ) -> Result<Verified, TokenError> {
        let claims = self.verify_signature_with(token, fetched, crypto)?;
        self.check_time(claims, now)
    }

    /// Everything but time, against the pinned keys only.
    pub fn verify_signature(&self, token: &str) -> Result<AccessClaims, TokenError> {
        self.verify_signature_with(token, &KeySet::default(), &PortableCrypto)
    }

    /// Everything but time: form, algorithm, key, signature, issuer,
    /// audience. What holds here holds for the token's whole life, so it is
    /// what the token cache remembers.
    pub fn verify_signature_with(
        &self,
        token: &str,
        fetched: &KeySet,
        crypto: &dyn Crypto,
    ) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let header = decode_header(token).map_err(|e| match e.kind() {
            // An unknown "alg" (including "none") fails header parsing.
            ErrorKind::Json(_) if token_alg_is_unsupported(token) => {
                TokenError::DisallowedAlgorithm
            }
            _ => TokenError::Malformed,
        })?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::DisallowedAlgorithm);
        }
        let kid = header.kid.ok_or(TokenError::MissingKeyId)?;
        let key = self
            .pinned
            .get(&kid)
            .or_else(|| fetched.get(&kid))
            .ok_or(TokenError::UnknownKeyId)?;
        // Exactly `header.payload.signature`; the signature over the first two.
        if token.bytes().filter(|b| *b == b'.').count() != 2 {
            return Err(TokenError::Malformed);
        }
        let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        if !crypto.verify_rs256(key, signing_input.as_bytes(), &signature) {
            return Err(TokenError::BadSignature);
        }
        let payload = signing_input
            .split_once('.')
            .map(|(_, payload)| payload)
            .ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let claims: AccessClaims =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if !self.audiences.contains(&claims.aud) {
            return Err(TokenError::WrongAudience);
        }
        Ok(claims)
    }

    /// Unix second from which the token counts as expired (`exp` + leeway).
    pub fn valid_until(&self, claims: &AccessClaims) -> u64 {
        claims.exp.saturating_add(self.leeway)
    }

    /// The time checks, at `now`: run on every request, cached or not.
    pub fn check_time(&self, claims: AccessClaims, now: u64) -> Result<Verified, TokenError> {
        let valid_until = self.valid_until(&claims);
        let expired = valid_until <= now;
        if expired && valid_until.saturating_add(self.refresh_window) <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now.saturating_add(self.leeway) {
            return Err(TokenError::NotYetValid);
        }
        if claims.sid.is_empty() {
            return Err(TokenError::MissingSessionId);
        }
        Ok(Verified { claims, expired })
    }
}

/// Whether the token's header names an `alg` this library does not know
/// (notably `none`), so that it is reported as a disallowed algorithm.
fn token_alg_is_unsupported(token: &str) -> bool {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let Some(header) = token.split('.').next() else {
        return false;
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(header) else {
        return false;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return false;
    };
    value.get("alg").and_then(|a| a.as_str()).is_some()
}

/// The token of an `Authorization: Bearer <token>` header, if that is its form.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    if token.is_empty() {
        None
    } else {
        Some(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{encode, EncodingKey, Header};

    pub use portero_testkit::tokens::*;

    #[test]
    fn tokens_minted_by_pyjwt_and_jose_verify_whole() {
        let jwks: JwkSet = serde_json::from_str(TEST_JWKS).unwrap();
        let v =
            TokenVerifier::new(&jwks, "https://portero.local", &[AUD.to_string()], 0, 0).unwrap();
        for (who, token, sub) in [
            (
                "pyjwt",
                include_str!("../../portero-testkit/fixtures/vectors/pyjwt.jwt"),
                "user-pyjwt",
            ),
            (
                "jose",
                include_str!("../../portero-testkit/fixtures/vectors/jose.jwt"),
                "user-jose",
            ),
        ] {
            let verified = v
                .verify(token.trim(), NOW)
                .unwrap_or_else(|e| panic!("{who}: {e:?}"));
            assert_eq!(verified.claims.sub, sub);
            assert!(!verified.expired);
            // Four segments, or a signature moved onto other claims: refused.
            assert_eq!(
                v.verify(&format!("{}.x", token.trim()), NOW).unwrap_err(),
                TokenError::Malformed
            );
        }
        let pyjwt = include_str!("../../portero-testkit/fixtures/vectors/pyjwt.jwt").trim();
        let jose = include_str!("../../portero-testkit/fixtures/vectors/jose.jwt").trim();
        let (jose_input, _) = jose.rsplit_once('.').unwrap();
        let (_, pyjwt_sig) = pyjwt.rsplit_once('.').unwrap();
        assert_eq!(
            v.verify(&format!("{jose_input}.{pyjwt_sig}"), NOW)
                .unwrap_err(),
            TokenError::BadSignature
        );
    }

    pub fn verifier() -> TokenVerifier {
        let jwks: JwkSet = serde_json::from_str(TEST_JWKS).unwrap();
        TokenVerifier::new(&jwks, ISS, &[AUD.to_string()], 5, 0).unwrap()
    }

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn valid_token_verifies() {
        let got = verifier().verify(&sign(&claims()), NOW).unwrap();
        assert_eq!(
            got,
            Verified {
                claims: claims(),
                expired: false
            }
        );
    }

    #[test]
    fn expiry_and_not_before_with_leeway() {
        let v = verifier();
        let mut c = claims();
        c.exp = NOW - 3;
        assert!(v.verify(&sign(&c), NOW).is_ok(), "within leeway");
        c.exp = NOW - 5;
        assert_eq!(v.verify(&sign(&c), NOW), Err(TokenError::Expired));
        let mut c = claims();
        c.nbf = NOW + 60;
        assert_eq!(v.verify(&sign(&c), NOW), Err(TokenError::NotYetValid));
    }

    #[test]
    fn expired_within_the_refresh_window_is_only_good_for_refresh() {
        let jwks: JwkSet = serde_json::from_str(TEST_JWKS).unwrap();
        let v = TokenVerifier::new(&jwks, ISS, &[AUD.to_string()], 5, 60).unwrap();
        let mut c = claims();
        c.exp = NOW - 30;
        assert!(v.verify(&sign(&c), NOW).unwrap().expired);
        c.exp = NOW - 5 - 60;
        assert_eq!(v.verify(&sign(&c), NOW), Err(TokenError::Expired));
        // The window never excuses a bad signature.
        c.exp = NOW - 30;
        let forged = sign_with(OTHER_PRIVATE_PEM, "test-key", &c);
        assert_eq!(v.verify(&forged, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn wrong_issuer_audience_and_missing_sid() {
        let v = verifier();
        let mut c = claims();
        c.iss = "https://evil".into();
        assert_eq!(v.verify(&sign(&c), NOW), Err(TokenError::WrongIssuer));
        let mut c = claims();
        c.aud = "other".into();
        assert_eq!(v.verify(&sign(&c), NOW), Err(TokenError::WrongAudience));
        let mut c = claims();
        c.sid = String::new();
        assert_eq!(v.verify(&sign(&c), NOW), Err(TokenError::MissingSessionId));
    }

    #[test]
    fn other_key_and_unknown_kid() {
        let v = verifier();
        let forged = sign_with(OTHER_PRIVATE_PEM, "test-key", &claims());
        assert_eq!(v.verify(&forged, NOW), Err(TokenError::BadSignature));
        let unknown = sign_with(TEST_PRIVATE_PEM, "nope", &claims());
        assert_eq!(v.verify(&unknown, NOW), Err(TokenError::UnknownKeyId));
    }

    #[test]
    fn alg_none_and_hs256_with_public_key_are_refused() {
        let v = verifier();
        let payload = b64(&serde_json::to_string(&claims()).unwrap());
        let none = format!("{}.{payload}.", b64(r#"{"alg":"none","kid":"test-key"}"#));
        assert_eq!(v.verify(&none, NOW), Err(TokenError::DisallowedAlgorithm));
        let jwks: serde_json::Value = serde_json::from_str(TEST_JWKS).unwrap();
        let n = jwks["keys"][0]["n"].as_str().unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("test-key".into());
        let hs = encode(&header, &claims(), &EncodingKey::from_secret(n.as_bytes())).unwrap();
        assert_eq!(v.verify(&hs, NOW), Err(TokenError::DisallowedAlgorithm));
    }

    #[test]
    fn malformed_tokens() {
        let v = verifier();
        for bad in ["", "a", "a.b", "a.b.c", "....", "é.é.é", "e30.e30.e30"] {
            assert!(v.verify(bad, NOW).is_err(), "{bad:?} verified");
        }
        assert_eq!(v.verify(&"a".repeat(9000), NOW), Err(TokenError::TooLong));
        let good = sign(&claims());
        assert!(v.verify(&good[..good.len() - 3], NOW).is_err());
        let no_kid = Minter::new(TEST_PRIVATE_PEM, None).sign(&claims());
        assert_eq!(v.verify(&no_kid, NOW), Err(TokenError::MissingKeyId));
    }

    #[test]
    fn bearer_header_forms() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn key_set_is_checked() {
        let empty: JwkSet = serde_json::from_str(r#"{"keys":[]}"#).unwrap();
        assert!(TokenVerifier::new(&empty, ISS, &[], 0, 0).is_err());
        let mut jwks: serde_json::Value = serde_json::from_str(TEST_JWKS).unwrap();
        jwks["keys"][0].as_object_mut().unwrap().remove("kid");
        let no_kid: JwkSet = serde_json::from_value(jwks).unwrap();
        let err = TokenVerifier::new(&no_kid, ISS, &[], 0, 0).unwrap_err();
        assert!(err.0.contains("kid"), "{err:?}");
    }
}
