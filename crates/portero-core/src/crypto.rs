//! The cryptography a request may need, behind one seam: the flow asks the
//! `Host` (`flow`) for a [`Crypto`] and does not know which it
//! got. The wasm shell uses [`PortableCrypto`] (plain Rust, written for V8:
//! see [`crate::rs256`]); the native shells hand in assembly implementations
//! (`crates/portero-native-crypto`).
//!
//! Only the operations a request pays for are here: RS256 verification (a
//! bearer token not seen before) and opening a sealed cookie (a cookie not
//! seen before). A warm request runs neither (the edge cache answers it).

use crate::cookie::{CookieCodec, CookieError};
use crate::rs256::RsaPublicKey;

pub trait Crypto {
    /// Whether `signature` is `key`'s RSASSA-PKCS1-v1_5 SHA-256 signature of
    /// `message`.
    fn verify_rs256(&self, key: &RsaPublicKey, message: &[u8], signature: &[u8]) -> bool;

    /// Opens a session cookie's value: the session id inside. AES-256-GCM
    /// through the `aes-gcm` crate by default, in every shell: natively that
    /// crate already selects AES-NI and CLMUL at run time, and an open is a
    /// fraction of a microsecond (`cargo bench -p portero-core --bench flow`).
    fn open_cookie(&self, codec: &CookieCodec, value: &str) -> Result<String, CookieError> {
        codec.open(value)
    }
}

/// Plain Rust, for any target.
#[derive(Debug, Clone, Copy, Default)]
pub struct PortableCrypto;

impl Crypto for PortableCrypto {
    fn verify_rs256(&self, key: &RsaPublicKey, message: &[u8], signature: &[u8]) -> bool {
        key.verify(message, signature)
    }
}
