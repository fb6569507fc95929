//! The one token minter: RS256 tokens signed with the test keys, as the
//! sidecar signs them, plus the claims a test starts from.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use portero_wire::AccessClaims;
use serde::Serialize;

/// A 2048-bit test key (PKCS#1), made for the tests only; the sidecar of the
/// test stacks signs with it, and `TEST_JWKS` publishes it as `TEST_KID`.
pub const TEST_PRIVATE_PEM: &str = include_str!("../fixtures/test-rsa.pem");
/// A key nobody trusts.
pub const OTHER_PRIVATE_PEM: &str = include_str!("../fixtures/other-rsa.pem");
pub const TEST_JWKS: &str = include_str!("../fixtures/test-jwks.json");
pub const TEST_KID: &str = "test-key";

pub const ISS: &str = "https://portero.test";
pub const AUD: &str = "portero-apps";
/// The unit tests' clock (seconds).
pub const NOW: u64 = 1_800_000_000;

/// Signs tokens with one key; parse the key once, sign many.
pub struct Minter {
    key: EncodingKey,
    kid: Option<String>,
}

impl Minter {
    /// A minter for `pem` (PKCS#1 or PKCS#8), naming `kid` in the header.
    pub fn new(pem: &str, kid: Option<&str>) -> Minter {
        Minter {
            key: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("an RSA private key in PEM"),
            kid: kid.map(str::to_string),
        }
    }

    /// The test key, as the sidecar of a test stack signs.
    pub fn test_key() -> Minter {
        Minter::new(TEST_PRIVATE_PEM, Some(TEST_KID))
    }

    /// An RS256 token over any claims (well-formed or not).
    pub fn sign(&self, claims: &impl Serialize) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.kid.clone();
        encode(&header, claims, &self.key).expect("RS256 signing")
    }
}

/// Claims the filter's unit tests accept at [`NOW`] with the test config.
pub fn claims() -> AccessClaims {
    AccessClaims {
        iss: ISS.into(),
        aud: AUD.into(),
        sub: "user-1".into(),
        sid: "h".repeat(43),
        jti: "jti-1".into(),
        iat: NOW - 10,
        nbf: NOW - 10,
        exp: NOW + 300,
        ver: 1,
    }
}

/// `claims` signed with `pem`, naming `kid`.
pub fn sign_with(pem: &str, kid: &str, claims: &impl Serialize) -> String {
    Minter::new(pem, Some(kid)).sign(claims)
}

/// `claims` signed with the test key.
pub fn sign(claims: &impl Serialize) -> String {
    Minter::test_key().sign(claims)
}
