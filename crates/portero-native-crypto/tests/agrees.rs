//! The native verifier says exactly what the portable one says: on the
//! published vectors, on tokens minted by the test key, on every altered
//! signature and message, and on bounded random input (fixed seed).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portero_core::crypto::{Crypto, PortableCrypto};
use portero_core::rs256::RsaPublicKey;
use portero_native_crypto::NativeCrypto;
use portero_testkit::tokens::{claims, sign, TEST_JWKS};

fn b64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

fn test_key() -> RsaPublicKey {
    let jwks: serde_json::Value = serde_json::from_str(TEST_JWKS).unwrap();
    let key = &jwks["keys"][0];
    RsaPublicKey::from_components(
        &b64(key["n"].as_str().unwrap()),
        &b64(key["e"].as_str().unwrap()),
    )
    .unwrap()
}

/// Both verdicts, which must agree.
fn verdict(key: &RsaPublicKey, message: &[u8], signature: &[u8]) -> bool {
    let native = NativeCrypto.verify_rs256(key, message, signature);
    let portable = PortableCrypto.verify_rs256(key, message, signature);
    assert_eq!(native, portable, "the two verifiers disagree");
    native
}

fn split(jws: &str) -> (String, Vec<u8>) {
    let (input, signature) = jws.trim().rsplit_once('.').unwrap();
    (input.to_string(), b64(signature))
}

#[test]
fn tokens_of_the_test_key_and_of_other_libraries_verify() {
    let key = test_key();
    let mut tokens: Vec<String> = (0..20)
        .map(|i| {
            let mut c = claims();
            c.jti = format!("jti-{i}");
            sign(&c)
        })
        .collect();
    tokens.push(include_str!("../../portero-testkit/fixtures/vectors/pyjwt.jwt").into());
    tokens.push(include_str!("../../portero-testkit/fixtures/vectors/jose.jwt").into());
    for token in tokens {
        let (input, signature) = split(&token);
        assert!(verdict(&key, input.as_bytes(), &signature));
    }
}

#[test]
fn every_alteration_fails_in_both() {
    let key = test_key();
    let (input, signature) = split(&sign(&claims()));
    for i in 0..signature.len() {
        let mut bad = signature.clone();
        bad[i] ^= 1 << (i % 8);
        assert!(!verdict(&key, input.as_bytes(), &bad), "byte {i}");
    }
    let mut message = input.clone().into_bytes();
    for i in (0..message.len()).step_by(3) {
        message[i] ^= 0x01;
        assert!(!verdict(&key, &message, &signature), "message byte {i}");
        message[i] ^= 0x01;
    }
    for odd in [
        Vec::new(),
        signature[1..].to_vec(),
        [signature.clone(), vec![0]].concat(),
        vec![0; signature.len()],
        vec![0xff; signature.len()],
        key.modulus().to_vec(),
    ] {
        assert!(!verdict(&key, input.as_bytes(), &odd));
    }
}

#[test]
fn random_signatures_fail_in_both() {
    let key = test_key();
    let mut state: u64 = 0x5eed_0f90_47e4_0001;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..300 {
        let len = match round % 3 {
            0 => 256,
            _ => (next() % 520) as usize,
        };
        let signature: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        assert!(!verdict(&key, b"header.payload", &signature));
    }
}
