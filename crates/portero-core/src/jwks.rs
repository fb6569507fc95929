//! The signing keys the sidecar publishes (`GET` [`portero_wire::JWKS_PATH`]), fetched on the
//! root context's tick, so a key rollover needs no config push and no Envoy
//! restart. The set pinned in the configuration stays trusted whatever the
//! fetch says (the floor, and all there is when fetching is off); the last
//! good fetched set is kept through a failed fetch, so a sidecar outage
//! never turns valid tokens away.

use jsonwebtoken::jwk::JwkSet;

use crate::periodic::Periodic;
use crate::token::KeySet;

/// When to fetch the key set.
#[derive(Debug, Clone)]
pub struct JwksSchedule(Periodic);

impl JwksSchedule {
    /// Every `refresh_seconds` (0: never).
    pub fn new(refresh_seconds: u64) -> Self {
        Self(Periodic::every_us(
            refresh_seconds.saturating_mul(1_000_000),
        ))
    }

    /// Whether a fetch is due at `now_us` (a tick); records it when it is.
    pub fn due(&mut self, now_us: u64) -> bool {
        self.0.due(now_us)
    }
}

/// Reads the sidecar's answer: a `200` holding a JWKS every key of which is
/// usable (the same checks as the pinned set). Anything else is a failed
/// fetch, and the caller keeps what it had.
pub fn read_jwks_reply(status: Option<u16>, body: &[u8]) -> Result<KeySet, String> {
    match status {
        Some(200) => {}
        Some(other) => return Err(format!("status {other}")),
        None => return Err("no answer".into()),
    }
    let jwks: JwkSet = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    KeySet::from_jwks(&jwks).map_err(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portero_testkit::tokens::TEST_JWKS;

    #[test]
    fn fetched_on_the_first_tick_then_every_interval() {
        let mut s = JwksSchedule::new(2);
        assert!(s.due(10_000_000));
        assert!(!s.due(11_000_000));
        assert!(s.due(11_960_000), "a tick 40 ms early is on time");
        assert!(!JwksSchedule::new(0).due(1));
    }

    #[test]
    fn only_a_whole_usable_key_set_is_taken() {
        let keys = read_jwks_reply(Some(200), TEST_JWKS.as_bytes()).unwrap();
        assert_eq!(keys.kids(), vec!["test-key"]);
        for (status, body) in [
            (None, TEST_JWKS.as_bytes()),
            (Some(503), TEST_JWKS.as_bytes()),
            (Some(200), &b"<html>"[..]),
            (Some(200), &br#"{"keys":[]}"#[..]),
            (
                Some(200),
                &br#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"x"}]}"#[..],
            ),
        ] {
            assert!(read_jwks_reply(status, body).is_err(), "{status:?}");
        }
    }
}
