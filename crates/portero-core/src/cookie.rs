//! The session cookie: its value format, its attributes, and finding it in a
//! `Cookie` header.
//!
//! Value, version 1 (docs/formats.md, "The session cookie", is the spec):
//!
//! ```text
//! value = base64url_nopad( 0x01 | key_id | nonce[12] | AES-256-GCM(key, nonce, aad, session_id) )
//! key   = HKDF-SHA256(ikm = secret, salt = "portero-cookie-v1", info = "aes-256-gcm" | key_id)
//! aad   = 0x01 | key_id | cookie_name
//! ```
//!
//! The cookie name is bound as associated data, so a value moved to another
//! cookie does not open; the key id lets secrets rotate: the first configured
//! key seals, every listed key opens.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hkdf::Hkdf;
use sha2::Sha256;

pub const FORMAT_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 2;
const HKDF_SALT: &[u8] = b"portero-cookie-v1";
const HKDF_INFO: &[u8] = b"aes-256-gcm";
/// Browsers cap a cookie at 4096 bytes; anything longer is not ours.
pub const MAX_VALUE_LEN: usize = 4096;
/// Shortest secret accepted: 32 bytes, the AES-256 key size.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieError {
    TooLong,
    NotBase64,
    TooShort,
    UnknownVersion,
    UnknownKey,
    /// Authentication failed: wrong key, wrong cookie name, or altered bytes.
    DoesNotDecrypt,
    /// Decrypted, but the plaintext is not a session id.
    NotASessionId,
    /// The system random source failed (sealing only).
    NoRandomness,
}

impl CookieError {
    pub fn as_str(self) -> &'static str {
        match self {
            CookieError::TooLong => "cookie too long",
            CookieError::NotBase64 => "cookie is not base64url",
            CookieError::TooShort => "cookie too short",
            CookieError::UnknownVersion => "unknown cookie format version",
            CookieError::UnknownKey => "cookie sealed with a key that is not configured",
            CookieError::DoesNotDecrypt => "cookie does not decrypt",
            CookieError::NotASessionId => "cookie does not hold a session id",
            CookieError::NoRandomness => "random source failed",
        }
    }
}

struct CookieKey {
    id: u8,
    cipher: Aes256Gcm,
}

/// Seals session ids into cookie values and opens them again.
pub struct CookieCodec {
    name: String,
    /// `keys[0]` seals; all open.
    keys: Vec<CookieKey>,
}

impl std::fmt::Debug for CookieCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u8> = self.keys.iter().map(|k| k.id).collect();
        f.debug_struct("CookieCodec")
            .field("name", &self.name)
            .field("key_ids", &ids)
            .finish()
    }
}

/// Derives the AES-256-GCM key of one configured secret.
fn derive_key(key_id: u8, secret: &[u8]) -> Option<Aes256Gcm> {
    let mut okm = [0u8; 32];
    let info = [HKDF_INFO, &[key_id]].concat();
    Hkdf::<Sha256>::new(Some(HKDF_SALT), secret)
        .expand(&info, &mut okm)
        .ok()?;
    Aes256Gcm::new_from_slice(&okm).ok()
}

impl CookieCodec {
    /// `keys`: `(key id, secret)`, the sealing key first. The caller validates
    /// that the list is non-empty, ids are unique and secrets long enough.
    pub fn new(name: &str, keys: &[(u8, &[u8])]) -> Option<Self> {
        let keys = keys
            .iter()
            .map(|(id, secret)| derive_key(*id, secret).map(|cipher| CookieKey { id: *id, cipher }))
            .collect::<Option<Vec<_>>>()?;
        if keys.is_empty() {
            return None;
        }
        Some(Self {
            name: name.to_string(),
            keys,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn aad(&self, key_id: u8) -> Vec<u8> {
        [&[FORMAT_VERSION, key_id][..], self.name.as_bytes()].concat()
    }

    /// Seals a session id with the current key and a fresh random nonce.
    pub fn seal(&self, session_id: &str) -> Result<String, CookieError> {
        if !portero_wire::is_session_token_shape(session_id) {
            return Err(CookieError::NotASessionId);
        }
        let key = self.keys.first().ok_or(CookieError::UnknownKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|_| CookieError::NoRandomness)?;
        let aad = self.aad(key.id);
        let sealed = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: session_id.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| CookieError::DoesNotDecrypt)?;
        let mut raw = Vec::with_capacity(HEADER_LEN + NONCE_LEN + sealed.len());
        raw.extend_from_slice(&[FORMAT_VERSION, key.id]);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(raw))
    }

    /// Opens a cookie value and returns the session id inside.
    pub fn open(&self, value: &str) -> Result<String, CookieError> {
        if value.len() > MAX_VALUE_LEN {
            return Err(CookieError::TooLong);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| CookieError::NotBase64)?;
        let (header, rest) = raw
            .split_at_checked(HEADER_LEN)
            .ok_or(CookieError::TooShort)?;
        let [version, key_id] = header else {
            return Err(CookieError::TooShort);
        };
        if *version != FORMAT_VERSION {
            return Err(CookieError::UnknownVersion);
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(CookieError::TooShort);
        }
        let (nonce, sealed) = rest
            .split_at_checked(NONCE_LEN)
            .ok_or(CookieError::TooShort)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == *key_id)
            .ok_or(CookieError::UnknownKey)?;
        let aad = self.aad(key.id);
        let plain = key
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| CookieError::DoesNotDecrypt)?;
        let session_id = String::from_utf8(plain).map_err(|_| CookieError::NotASessionId)?;
        if !portero_wire::is_session_token_shape(&session_id) {
            return Err(CookieError::NotASessionId);
        }
        Ok(session_id)
    }
}

/// `SameSite` attribute of the session cookie (`"Strict"`, the default, or
/// `"Lax"`; lowercase accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum SameSite {
    #[default]
    #[serde(alias = "strict")]
    Strict,
    #[serde(alias = "lax")]
    Lax,
}

// Written out because the schema must list the aliases the parser accepts.
impl schemars::JsonSchema for SameSite {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SameSite".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`SameSite` attribute of the session cookie (`Strict`, the default, or `Lax`).",
            "type": "string",
            "enum": ["Strict", "Lax", "strict", "lax"]
        })
    }
}

/// Attributes written on every `Set-Cookie` of the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieAttributes {
    pub secure: bool,
    pub http_only: bool,
    pub same_site: SameSite,
    pub path: String,
    pub domain: Option<String>,
    /// `Max-Age`; `None` makes it a browser-session cookie.
    pub max_age_seconds: Option<u64>,
}

impl CookieAttributes {
    fn render(&self, name: &str, value: &str, max_age: Option<u64>) -> String {
        let mut out = format!("{name}={value}; Path={}", self.path);
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        if let Some(age) = max_age {
            out.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure {
            out.push_str("; Secure");
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        out.push_str(match self.same_site {
            SameSite::Strict => "; SameSite=Strict",
            SameSite::Lax => "; SameSite=Lax",
        });
        out
    }

    /// `Set-Cookie` value that stores `value` under `name`.
    pub fn set_cookie(&self, name: &str, value: &str) -> String {
        self.render(name, value, self.max_age_seconds)
    }

    /// `Set-Cookie` value that deletes the cookie `name`.
    pub fn clear_cookie(&self, name: &str) -> String {
        self.render(name, "", Some(0))
    }
}

/// Splits `Cookie` request header lines into `(name, value)` pairs. Bytes,
/// not text: another application's cookie may hold any byte, and neither
/// reading ours nor removing it may fail or alter the others.
fn cookie_pairs<'a, 'h>(
    lines: &'a [&'h [u8]],
) -> impl Iterator<Item = (&'h [u8], &'h [u8])> + use<'a, 'h> {
    lines.iter().flat_map(|line| {
        line.split(|b| *b == b';').filter_map(|pair| {
            let eq = pair.iter().position(|b| *b == b'=')?;
            let name = pair.get(..eq)?.trim_ascii();
            let value = pair.get(eq + 1..)?.trim_ascii();
            Some((name, value))
        })
    })
}

/// The value of the first cookie called `name` in the `Cookie` lines.
pub fn find_cookie<'h>(lines: &[&'h [u8]], name: &str) -> Option<&'h [u8]> {
    cookie_pairs(lines)
        .find(|(n, _)| *n == name.as_bytes())
        .map(|(_, v)| v)
}

/// One `Cookie` header holding every cookie of `lines` but those called
/// `name`, byte for byte; `None` when nothing else is left (the header
/// should then be removed).
pub fn without_cookie(lines: &[&[u8]], name: &str) -> Option<Vec<u8>> {
    let mut kept: Vec<u8> = Vec::new();
    let pieces = lines
        .iter()
        .flat_map(|line| line.split(|b| *b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty());
    for pair in pieces {
        let pair_name = pair
            .iter()
            .position(|b| *b == b'=')
            .and_then(|eq| pair.get(..eq))
            .map(<[u8]>::trim_ascii);
        if pair_name == Some(name.as_bytes()) {
            continue;
        }
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    (!kept.is_empty()).then_some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const SECRET_A: &[u8] = b"an example secret of at least 32 bytes!!";
    const SECRET_B: &[u8] = b"another example secret, 32 bytes or more";

    fn codec(keys: &[(u8, &[u8])]) -> CookieCodec {
        CookieCodec::new("__Host-portero", keys).unwrap()
    }

    #[test]
    fn round_trip() {
        let c = codec(&[(1, SECRET_A)]);
        let value = c.seal(SID).unwrap();
        assert_eq!(c.open(&value).unwrap(), SID);
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let c = codec(&[(1, SECRET_A)]);
        assert_ne!(c.seal(SID).unwrap(), c.seal(SID).unwrap());
    }

    #[test]
    fn every_flipped_byte_fails() {
        let c = codec(&[(1, SECRET_A)]);
        let raw = URL_SAFE_NO_PAD.decode(c.seal(SID).unwrap()).unwrap();
        for i in 0..raw.len() {
            for bit in [0x01u8, 0x80] {
                let mut altered = raw.clone();
                altered[i] ^= bit;
                let result = c.open(&URL_SAFE_NO_PAD.encode(&altered));
                assert!(result.is_err(), "byte {i} bit {bit:#x} still opened");
            }
        }
    }

    #[test]
    fn every_truncation_fails() {
        let c = codec(&[(1, SECRET_A)]);
        let value = c.seal(SID).unwrap();
        for len in 0..value.len() {
            assert!(c.open(&value[..len]).is_err(), "prefix of {len} opened");
        }
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = codec(&[(1, SECRET_A)]).seal(SID).unwrap();
        assert_eq!(
            codec(&[(1, SECRET_B)]).open(&sealed),
            Err(CookieError::DoesNotDecrypt)
        );
    }

    #[test]
    fn another_cookie_name_fails() {
        let sealed = codec(&[(1, SECRET_A)]).seal(SID).unwrap();
        let other = CookieCodec::new("__Host-other", &[(1, SECRET_A)]).unwrap();
        assert_eq!(other.open(&sealed), Err(CookieError::DoesNotDecrypt));
    }

    #[test]
    fn keys_rotate_old_key_opens_while_listed() {
        let old = codec(&[(1, SECRET_A)]);
        let sealed_old = old.seal(SID).unwrap();
        let rotated = codec(&[(2, SECRET_B), (1, SECRET_A)]);
        assert_eq!(rotated.open(&sealed_old).unwrap(), SID);
        let sealed_new = rotated.seal(SID).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(&sealed_new).unwrap()[1], 2);
        assert_eq!(old.open(&sealed_new), Err(CookieError::UnknownKey));
        let retired = codec(&[(2, SECRET_B)]);
        assert_eq!(retired.open(&sealed_old), Err(CookieError::UnknownKey));
        assert_eq!(retired.open(&sealed_new).unwrap(), SID);
    }

    #[test]
    fn malformed_values_fail_cleanly() {
        let c = codec(&[(1, SECRET_A)]);
        assert_eq!(c.open(""), Err(CookieError::TooShort));
        assert_eq!(c.open("!!!"), Err(CookieError::NotBase64));
        assert_eq!(c.open("a b"), Err(CookieError::NotBase64));
        assert_eq!(c.open(&"A".repeat(5000)), Err(CookieError::TooLong));
        let v2 = URL_SAFE_NO_PAD.encode([2u8; 60]);
        assert_eq!(c.open(&v2), Err(CookieError::UnknownVersion));
    }

    #[test]
    fn only_session_ids_are_sealed() {
        let c = codec(&[(1, SECRET_A)]);
        assert_eq!(c.seal("short"), Err(CookieError::NotASessionId));
        assert_eq!(c.seal(&"a;b".repeat(20)), Err(CookieError::NotASessionId));
    }

    #[test]
    fn find_and_strip_cookie() {
        let header: &[&[u8]] = &[b"a=1; __Host-portero=xyz;b=2"];
        assert_eq!(find_cookie(header, "__Host-portero"), Some(&b"xyz"[..]));
        assert_eq!(find_cookie(header, "portero"), None);
        assert_eq!(
            without_cookie(header, "__Host-portero").as_deref(),
            Some(&b"a=1; b=2"[..])
        );
        assert_eq!(
            without_cookie(&[b"__Host-portero=xyz"], "__Host-portero"),
            None
        );
        assert_eq!(find_cookie(&[b"garbage;;=;"], "x"), None);
    }

    #[test]
    fn several_cookie_lines_and_foreign_bytes() {
        // HTTP/1.1 may carry several `Cookie` lines; ours may sit in any.
        let lines: &[&[u8]] = &[b"a=\xff\x01", b"theme=dark; __Host-portero=v1", b"z=9"];
        assert_eq!(find_cookie(lines, "__Host-portero"), Some(&b"v1"[..]));
        // Everything else survives byte for byte, in one header.
        assert_eq!(
            without_cookie(lines, "__Host-portero").as_deref(),
            Some(&b"a=\xff\x01; theme=dark; z=9"[..])
        );
        // Every copy of ours goes.
        let twice: &[&[u8]] = &[b"__Host-portero=a", b"__Host-portero=b; k=1"];
        assert_eq!(
            without_cookie(twice, "__Host-portero").as_deref(),
            Some(&b"k=1"[..])
        );
    }

    #[test]
    fn set_cookie_attributes() {
        let attrs = CookieAttributes {
            secure: true,
            http_only: true,
            same_site: SameSite::Strict,
            path: "/".into(),
            domain: None,
            max_age_seconds: Some(3600),
        };
        assert_eq!(
            attrs.set_cookie("__Host-p", "v"),
            "__Host-p=v; Path=/; Max-Age=3600; Secure; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            attrs.clear_cookie("__Host-p"),
            "__Host-p=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict"
        );
    }
}
