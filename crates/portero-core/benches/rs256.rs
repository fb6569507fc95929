//! Where RS256 verification time goes inside the filter's target.
//!
//! `cargo bench -p portero-core --bench rs256 --target wasm32-wasip1` runs it under Node's
//! V8 (the cargo runner), the engine Envoy embeds; without `--target` it runs
//! natively for comparison. Prints microseconds per operation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "timing.rs"]
mod timing;
use std::hint::black_box;
use timing::time;

use jsonwebtoken::jwk::JwkSet;
use portero_core::token::TokenVerifier;
use portero_testkit::tokens::{Minter, NOW, TEST_JWKS as JWKS, TEST_PRIVATE_PEM as PEM};
use portero_wire::AccessClaims;

fn main() {
    let claims = AccessClaims {
        iss: "https://portero.local".into(),
        aud: "portero-apps".into(),
        sub: "user-1".into(),
        sid: "h".repeat(65),
        jti: "jti-1".into(),
        iat: NOW - 10,
        nbf: NOW - 10,
        exp: NOW + 300,
        ver: 1,
    };
    let token = Minter::test_key().sign(&claims);
    let jwks: JwkSet = serde_json::from_str(JWKS).unwrap();
    let verifier = TokenVerifier::new(
        &jwks,
        "https://portero.local",
        &["portero-apps".into()],
        5,
        0,
    )
    .unwrap();
    assert!(verifier.verify(&token, NOW).is_ok());

    let rounds = 200;
    time("TokenVerifier::verify (whole path)", rounds, || {
        black_box(verifier.verify(black_box(&token), NOW).is_ok());
    });
    let rsa_key = {
        use rsa::pkcs8::DecodePrivateKey;
        let private = rsa::RsaPrivateKey::from_pkcs8_pem(PEM)
            .or_else(|_| {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                rsa::RsaPrivateKey::from_pkcs1_pem(PEM)
            })
            .unwrap();
        private.to_public_key()
    };
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let signature = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .unwrap()
    };
    use sha2::Digest;
    let digest = sha2::Sha256::digest(signing_input.as_bytes());
    time("rsa 0.9 verify, key prebuilt", rounds, || {
        let scheme = rsa::Pkcs1v15Sign::new::<sha2::Sha256>();
        black_box(rsa_key.verify(scheme, &digest, &signature).is_ok());
    });
    {
        use rsa::traits::PublicKeyParts;
        let n = num_bigint::BigUint::from_bytes_be(&rsa_key.n().to_bytes_be());
        let e = num_bigint::BigUint::from(65537u32);
        let s = num_bigint::BigUint::from_bytes_be(&signature);
        time("num-bigint modpow s^e mod n", rounds, || {
            black_box(black_box(&s).modpow(&e, &n));
        });
        use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
        use crypto_bigint::{Encoding, U2048};
        let n = U2048::from_be_slice(&rsa_key.n().to_bytes_be());
        let s = U2048::from_be_slice(&signature);
        let e = U2048::from_u32(65537);
        let params = DynResidueParams::new(&n);
        time(
            "crypto-bigint 0.5 pow_bounded_exp (17 bits)",
            rounds,
            || {
                let r = DynResidue::new(black_box(&s), params).pow_bounded_exp(&e, 17);
                black_box(r.retrieve().to_be_bytes());
            },
        );
    }
    {
        use rsa::traits::PublicKeyParts;
        let ours = portero_core::rs256::RsaPublicKey::from_components(
            &rsa_key.n().to_bytes_be(),
            &rsa_key.e().to_bytes_be(),
        )
        .unwrap();
        assert!(ours.verify(signing_input.as_bytes(), &signature));
        time(
            "portero_core::rs256 verify (Montgomery, 32-bit limbs)",
            rounds * 5,
            || {
                black_box(ours.verify(black_box(signing_input.as_bytes()), &signature));
            },
        );
    }
    time("sha256 of the signing input", rounds * 50, || {
        black_box(sha2::Sha256::digest(black_box(signing_input.as_bytes())));
    });
    time("jsonwebtoken::decode_header", rounds * 50, || {
        black_box(jsonwebtoken::decode_header(black_box(&token)).is_ok());
    });
    time("rsa::RsaPublicKey::new from n, e", rounds, || {
        use rsa::traits::PublicKeyParts;
        let n = rsa_key.n().clone();
        let e = rsa_key.e().clone();
        black_box(rsa::RsaPublicKey::new(n, e).is_ok());
    });
}
