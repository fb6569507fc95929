//! The [`Crypto`] of portero's native shells: RS256 through `ring`, whose
//! RSA is assembly (the same lineage as BoringSSL, which Envoy's `jwt_authn`
//! uses). The wasm shell keeps the portable code, written for V8.
//!
//! Chosen by measurement (2048-bit key, x86_64, this project's machine;
//! the figures and the command are in `docs/performance.md`): portero's
//! portable verifier ~136 µs, `ring` ~24 µs, `aws-lc-rs` ~20 µs with a
//! pre-parsed key. `aws-lc-rs` is a little faster but builds AWS-LC from C
//! source, minutes of every clean build; `ring` builds in seconds.
#![forbid(unsafe_code)]

use portero_core::crypto::Crypto;
use portero_core::rs256::RsaPublicKey;
use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};

/// RS256 by `ring`; cookies through the core's default (see
/// [`Crypto::open_cookie`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeCrypto;

impl Crypto for NativeCrypto {
    fn verify_rs256(&self, key: &RsaPublicKey, message: &[u8], signature: &[u8]) -> bool {
        let components = RsaPublicKeyComponents {
            n: key.modulus(),
            e: key.exponent(),
        };
        components
            .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
            .is_ok()
    }
}
