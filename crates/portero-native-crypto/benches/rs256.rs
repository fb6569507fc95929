//! RS256 in the native shells: ring against the portable verifier the wasm
//! shell uses, on the same 2048-bit key and token, in one run.
//!
//! `cargo bench -p portero-native-crypto --bench rs256`; prints microseconds
//! per verification and the ratio.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portero_core::crypto::{Crypto, PortableCrypto};
use portero_core::rs256::RsaPublicKey;
use portero_native_crypto::NativeCrypto;
use portero_testkit::tokens::{claims, sign, TEST_JWKS};

fn micros_per_call(rounds: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..rounds / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..rounds {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
}

fn main() {
    let jwks: serde_json::Value = serde_json::from_str(TEST_JWKS).unwrap();
    let jwk = &jwks["keys"][0];
    let b64 = |field: &str| {
        URL_SAFE_NO_PAD
            .decode(jwk[field].as_str().unwrap())
            .unwrap()
    };
    let key = RsaPublicKey::from_components(&b64("n"), &b64("e")).unwrap();
    let token = sign(&claims());
    let (input, signature) = token.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let contenders: [(&str, &dyn Crypto); 2] = [
        ("portable (wasm shell)", &PortableCrypto),
        ("ring (native shells)", &NativeCrypto),
    ];
    let mut figures = Vec::new();
    for (name, crypto) in contenders {
        assert!(crypto.verify_rs256(&key, input.as_bytes(), &signature));
        let us = micros_per_call(2000, || {
            black_box(crypto.verify_rs256(&key, black_box(input.as_bytes()), &signature));
        });
        println!("{name:<40} {us:>8.2} µs per RS256 verification");
        figures.push(us);
    }
    if let [portable, native] = figures[..] {
        println!(
            "{:<40} {:>8.2}× faster",
            "ring against portable",
            portable / native
        );
    }
}
