//! The RS256 signing keys: loaded from PEM files, published as a JWKS, and
//! used to mint access tokens.
//!
//! One key (`--signing-key`), or a directory of keys (`--signing-keys-dir`)
//! reloaded while the sidecar runs, so keys rotate with no restart and no
//! one refused: every `<kid>.pem` in it is published, the one named by the
//! file `active` signs. A rollover: add the next key (published; filters
//! fetch it), then name it in `active` (it signs), then, once the old key's
//! last tokens have expired, remove the old file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

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

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn sign(&self, claims: &AccessClaims) -> Result<String, String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.encoding).map_err(|e| e.to_string())
    }
}

/// The keys published, and the one that signs.
#[derive(Debug)]
pub struct KeyRing {
    active: SigningKey,
    /// Every published key but the active one (next and retired).
    others: Vec<SigningKey>,
}

impl KeyRing {
    pub fn single(key: SigningKey) -> KeyRing {
        KeyRing {
            active: key,
            others: Vec::new(),
        }
    }

    /// Reads `dir`: every `<kid>.pem` is a key named by its file name; the
    /// file `active` holds the kid of the one that signs.
    pub fn load_dir(dir: &Path) -> Result<KeyRing, String> {
        let active_file = dir.join("active");
        let active_kid = std::fs::read_to_string(&active_file)
            .map_err(|e| format!("{}: {e}", active_file.display()))?
            .trim()
            .to_string();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "pem"))
            .collect();
        entries.sort();
        let mut active = None;
        let mut others = Vec::new();
        for path in entries {
            let kid = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .filter(|kid| !kid.is_empty())
                .ok_or_else(|| format!("{}: not a <kid>.pem name", path.display()))?
                .to_string();
            let pem =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let key = SigningKey::from_pem(&pem, Some(kid.clone()))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if kid == active_kid {
                active = Some(key);
            } else {
                others.push(key);
            }
        }
        let active = active.ok_or_else(|| {
            format!(
                "{}: names {active_kid:?}, but there is no {active_kid}.pem",
                active_file.display()
            )
        })?;
        Ok(KeyRing { active, others })
    }

    /// Signs with the active key.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, String> {
        self.active.sign(claims)
    }

    /// Every published key, the active one first.
    pub fn jwks(&self) -> Value {
        let keys: Vec<&Value> = std::iter::once(&self.active.jwk)
            .chain(self.others.iter().map(|k| &k.jwk))
            .collect();
        json!({ "keys": keys })
    }

    /// "active A; also published B, C", for logs.
    pub fn describe(&self) -> String {
        let others: Vec<&str> = self.others.iter().map(SigningKey::kid).collect();
        format!(
            "active {}; also published: {}",
            self.active.kid,
            if others.is_empty() {
                "none".to_string()
            } else {
                others.join(", ")
            }
        )
    }
}

/// The sidecar's keys now: fixed, or reloaded from a directory.
pub struct Keys {
    ring: RwLock<Arc<KeyRing>>,
    dir: Option<PathBuf>,
}

impl Keys {
    pub fn fixed(key: SigningKey) -> Keys {
        Keys {
            ring: RwLock::new(Arc::new(KeyRing::single(key))),
            dir: None,
        }
    }

    pub fn from_dir(dir: &Path) -> Result<Keys, String> {
        Ok(Keys {
            ring: RwLock::new(Arc::new(KeyRing::load_dir(dir)?)),
            dir: Some(dir.to_path_buf()),
        })
    }

    pub fn current(&self) -> Arc<KeyRing> {
        match self.ring.read() {
            Ok(ring) => ring.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the directory again. `Ok(Some(description))` when the keys
    /// changed; a directory that does not load leaves the keys as they were.
    pub fn reload(&self) -> Result<Option<String>, String> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let ring = KeyRing::load_dir(dir)?;
        let current = self.current();
        if ring.jwks() == current.jwks() && ring.active.kid == current.active.kid {
            return Ok(None);
        }
        let description = ring.describe();
        match self.ring.write() {
            Ok(mut slot) => *slot = Arc::new(ring),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(ring),
        }
        Ok(Some(description))
    }

    pub fn reloads(&self) -> bool {
        self.dir.is_some()
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

    const PEM: &str = include_str!("../../crates/portero-testkit/fixtures/test-rsa.pem");

    #[test]
    fn jwks_matches_the_fixture_and_thumbprint_is_stable() {
        let key = SigningKey::from_pem(PEM, Some("test-key".into())).unwrap();
        let fixture: Value = serde_json::from_str(include_str!(
            "../../crates/portero-testkit/fixtures/test-jwks.json"
        ))
        .unwrap();
        assert_eq!(key.jwks(), fixture);
        let a = SigningKey::from_pem(PEM, None).unwrap();
        let b = SigningKey::from_pem(PEM, None).unwrap();
        assert_eq!(a.kid, b.kid);
        assert_eq!(a.kid.len(), 43);
    }

    #[test]
    fn a_key_directory_rotates_without_a_restart() {
        let dir = std::env::temp_dir().join(format!("portero-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let other = include_str!("../../crates/portero-testkit/fixtures/other-rsa.pem");
        std::fs::write(dir.join("old.pem"), PEM).unwrap();
        std::fs::write(dir.join("active"), "old\n").unwrap();
        let keys = Keys::from_dir(&dir).unwrap();
        assert_eq!(keys.reload().unwrap(), None, "nothing changed");
        // Publish the next key: both published, the old one signs.
        std::fs::write(dir.join("next.pem"), other).unwrap();
        assert!(keys.reload().unwrap().is_some());
        let kids = |keys: &Keys| -> Vec<String> {
            keys.current().jwks()["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(kids(&keys), vec!["old", "next"]);
        // Make it active.
        std::fs::write(dir.join("active"), "next").unwrap();
        keys.reload().unwrap();
        assert_eq!(keys.current().active.kid, "next");
        assert_eq!(kids(&keys), vec!["next", "old"]);
        // A broken directory keeps the keys: active names a missing key.
        std::fs::write(dir.join("active"), "gone").unwrap();
        assert!(keys.reload().unwrap_err().contains("gone.pem"));
        assert_eq!(keys.current().active.kid, "next");
        // Retire the old key.
        std::fs::write(dir.join("active"), "next").unwrap();
        std::fs::remove_file(dir.join("old.pem")).unwrap();
        keys.reload().unwrap();
        assert_eq!(kids(&keys), vec!["next"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(SigningKey::from_pem("nope", None)
            .unwrap_err()
            .contains("PEM"));
    }
}
