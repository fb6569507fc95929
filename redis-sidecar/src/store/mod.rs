//! Sessions and users in Redis.
//!
//! Key layout. Every key of one user carries the user's tag as its Redis
//! Cluster hash tag, so each multi-key step (look-up with the user check,
//! login, revoke-all) is one Lua script in one slot:
//!
//! ```text
//! {prefix}:user:{<utag>}              HASH  user_id | status | roles | permissions | ver
//!                                           | inc
//! {prefix}:sessions:{<utag>}          ZSET  session handles, scored by absolute expiry
//! {prefix}:session:{<utag>}:<handle>  HASH  record (JSON) | abs | idle | seen | ver | inc
//!                                           | token | jti | exp | cur_seen | rotations
//!                                           | prev_jti | prev_until | prev_max
//! {prefix}:signin:<mac>               STRING  an OIDC sign-in under way (`sign_in`)
//! {prefix}:oidc-sid:<mac>             SET     sessions made under a provider session
//! {prefix}:oidc-jti:<mac>             STRING  a back-channel logout token seen
//! ```
//!
//! `utag` = base64url(HMAC-SHA256(key, "user\0" + user_id))[..22]. A session id
//! is `utag` + 43 random characters (256 bits); its handle is `utag` +
//! base64url(HMAC-SHA256(key, session_id)). Redis only ever sees handles: a
//! dump holds no live session id, hence no cookie. A session key's TTL is the
//! smaller of the idle timeout and the time left to the absolute expiry,
//! renewed by every look-up; the record's times are checked again on read.
//!
//! `token` (the session's current access JWT) is sealed with AES-256-GCM
//! under a key derived from the session hash key, which Redis never sees,
//! the handle bound as associated data: a dump, the AOF or a replica's disk
//! yields no token the edge accepts. A value without the `s1.` prefix is a
//! token stored before sealing (read as it is, until its session rotates).
//!
//! User records have no TTL: they go only by eviction or by hand, and a
//! missing one is store trouble ([`StoreError::UserRecordMissing`]), never
//! a verdict on its sessions. `inc`, the user record's incarnation, is a
//! random value set when the record is made; a session keeps the `inc` it
//! was made under, so a record lost and made again (its token version back
//! at 0) revokes the older sessions instead of reviving ones a revoke-all
//! had ended (see `lua/create.lua`).
//!
//! One file per concern: `session` (a session's record: login, look-up,
//! rotation, end), `users` (user records and revoke-all), `revocations`
//! (the feed filters poll), `token_seal` (access tokens sealed at rest),
//! `sign_in` (OIDC sign-ins under way), `scripts` (running the Lua scripts
//! and reading their replies) and
//! `replication` (writes that must survive a failover). This file holds
//! the [`Store`] itself, its errors and the key naming they all share.

mod replication;
mod revocations;
mod scripts;
mod session;
mod sign_in;
mod token_seal;
mod users;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use redis::RedisResult;

#[cfg(test)]
use crate::backend::RedisTarget;
use crate::backend::{Backend, Conn, RedisConnect};
use sha2::Sha256;

pub use replication::Durability;
pub use revocations::{stream_id, REVOCATION_FEED_LENGTH};
use scripts::Scripts;
pub use session::{CreateOutcome, IssuedToken, Lifetimes, Lookup, RotationRules, SessionRecord};
pub use sign_in::PendingSignIn;
use token_seal::token_seal_cipher;

/// The target of the store's log lines: this module's, as before the store
/// was split into files (log filters and searches name it).
const LOG_TARGET: &str = module_path!();

/// Length of the user tag at the start of ids and handles.
pub const USER_TAG_LEN: usize = 22;
/// Length of a session id or handle.
pub const SESSION_TOKEN_LEN: usize = USER_TAG_LEN + 43;

#[derive(Debug)]
pub enum StoreError {
    /// Redis unreachable, timing out or failing: a 503, never "no session".
    Unavailable(String),
    /// Redis holds something this sidecar cannot read.
    Corrupt(String),
    /// A write that must survive a failover reached fewer replicas than
    /// required in time (it is on the primary; the caller retries).
    NotReplicated { acknowledged: u32, wanted: u32 },
    /// The session's user record is gone (evicted, or deleted by hand): the
    /// session cannot be judged, so it is kept and the caller gets a 503.
    UserRecordMissing,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(e) => write!(f, "redis unavailable: {e}"),
            StoreError::Corrupt(e) => write!(f, "unreadable record: {e}"),
            StoreError::NotReplicated {
                acknowledged,
                wanted,
            } => write!(
                f,
                "write acknowledged by {acknowledged} of {wanted} required replicas in time"
            ),
            StoreError::UserRecordMissing => write!(
                f,
                "the session's user record is missing from Redis (evicted, or deleted by hand; \
                 check maxmemory-policy): the session is kept and refused until it is back"
            ),
        }
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub struct Store {
    backend: Backend,
    prefix: String,
    hash_key: Hmac<Sha256>,
    token_seal: aes_gcm::Aes256Gcm,
    scripts: Scripts,
    durability: Durability,
    /// Writes accepted with fewer replicas than required, because fewer
    /// were connected (see [`Store::finish_durable`]); exported as a metric.
    pub under_replicated_writes: prometheus_client::metrics::counter::Counter,
    /// Unix second of the last under-replicated write logged.
    under_replicated_logged_at: std::sync::atomic::AtomicU64,
}

/// 32 random bytes, base64url (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether a value has the exact shape of a session id or handle.
pub fn is_session_token(value: &str) -> bool {
    value.len() == SESSION_TOKEN_LEN && portero_wire::is_session_token_shape(value)
}

fn string_list(json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|_| corrupt("not a JSON list of strings"))
}

impl Store {
    pub fn new(
        connect: &RedisConnect,
        prefix: &str,
        hash_key: &[u8],
        timeout: Duration,
        durability: Durability,
    ) -> Result<Self, String> {
        if durability.replicas > 0 && durability.timeout >= timeout {
            return Err(format!(
                "the replica wait ({} ms) must be shorter than the Redis timeout ({} ms)",
                durability.timeout.as_millis(),
                timeout.as_millis()
            ));
        }
        let backend = Backend::new(connect, timeout)?;
        let hash_key = Hmac::<Sha256>::new_from_slice(hash_key).map_err(|e| e.to_string())?;
        let token_seal = token_seal_cipher(&hash_key);
        Ok(Self {
            backend,
            prefix: prefix.to_string(),
            hash_key,
            token_seal,
            scripts: Scripts::load(),
            durability,
            under_replicated_writes: Default::default(),
            under_replicated_logged_at: Default::default(),
        })
    }

    /// The shared connection: look-ups, reads, and writes that wait for no
    /// replica.
    async fn connection(&self) -> Result<Conn, StoreError> {
        let result = self.backend.connection().await;
        self.check(result).await
    }

    /// Passes a Redis result on, telling the backend of a failure (under
    /// Sentinel it may mean the primary moved).
    async fn check<T>(&self, result: RedisResult<T>) -> Result<T, StoreError> {
        match result {
            Ok(value) => Ok(value),
            Err(e) => {
                self.backend.failed(&e).await;
                Err(e.into())
            }
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> String {
        let mut mac = self.hash_key.clone();
        for part in parts {
            mac.update(part);
        }
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// The tag that groups a user's keys in one Redis Cluster slot.
    pub fn user_tag(&self, user_id: &str) -> String {
        let mut tag = self.mac(&[b"user\0", user_id.as_bytes()]);
        tag.truncate(USER_TAG_LEN);
        tag
    }

    /// A new session id for this user: the user tag and 256 random bits.
    pub fn new_session_id(&self, user_id: &str) -> String {
        format!("{}{}", self.user_tag(user_id), random_token())
    }

    /// The public handle of a session id (the caller checked its shape).
    pub fn handle_of(&self, session_id: &str) -> String {
        let tag = session_id.get(..USER_TAG_LEN).unwrap_or_default();
        format!("{tag}{}", self.mac(&[session_id.as_bytes()]))
    }

    fn tag_of(handle: &str) -> &str {
        handle.get(..USER_TAG_LEN).unwrap_or_default()
    }

    fn session_prefix(&self, tag: &str) -> String {
        format!("{}:session:{{{tag}}}:", self.prefix)
    }

    fn session_key(&self, handle: &str) -> String {
        format!("{}{handle}", self.session_prefix(Self::tag_of(handle)))
    }

    fn user_key(&self, tag: &str) -> String {
        format!("{}:user:{{{tag}}}", self.prefix)
    }

    fn index_key(&self, tag: &str) -> String {
        format!("{}:sessions:{{{tag}}}", self.prefix)
    }

    fn revocations_key(&self) -> String {
        format!("{}:revocations", self.prefix)
    }

    /// `maxmemory-policy` of the primary (every primary, in a Cluster), by
    /// node; the raw Redis error, to tell unreachable from refused (see
    /// [`crate::eviction`]).
    pub async fn maxmemory_policies(&self) -> RedisResult<Vec<(String, String)>> {
        self.backend.maxmemory_policies().await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let result = redis::cmd("PING").query_async::<String>(&mut conn).await;
        self.check(result).await?;
        Ok(())
    }

    /// The handles in a user's session index, and their session keys.
    async fn indexed_sessions(&self, tag: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut conn = self.connection().await?;
        let handles: Vec<String> = {
            let result = redis::cmd("ZRANGE")
                .arg(self.index_key(tag))
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await;
            self.check(result).await?
        };
        Ok(handles
            .into_iter()
            .map(|h| (self.session_key(&h), h))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(key: &[u8]) -> Store {
        Store::new(
            &RedisTarget::Standalone {
                url: "redis://127.0.0.1:1".into(),
            }
            .into(),
            "portero",
            key,
            Duration::from_secs(1),
            Durability::NONE,
        )
        .unwrap()
    }

    #[test]
    fn ids_are_random_and_carry_the_user_tag() {
        let s = store(b"k1");
        let a = s.new_session_id("u1");
        assert_ne!(a, s.new_session_id("u1"));
        assert!(is_session_token(&a));
        assert!(a.starts_with(&s.user_tag("u1")));
        assert_ne!(s.user_tag("u1"), s.user_tag("u2"));
    }

    #[test]
    fn handle_is_keyed_and_keys_share_the_users_hash_tag() {
        let (s1, s2) = (store(b"k1"), store(b"k2"));
        let id = s1.new_session_id("u1");
        let h = s1.handle_of(&id);
        assert_eq!(h, s1.handle_of(&id));
        assert_ne!(h, s2.handle_of(&id));
        assert_ne!(h, id);
        assert!(is_session_token(&h));
        let tag = s1.user_tag("u1");
        assert!(h.starts_with(&tag));
        let hash_tag = format!("{{{tag}}}");
        assert!(s1.session_key(&h).contains(&hash_tag));
        assert!(s1.user_key(&tag).contains(&hash_tag));
        assert!(s1.index_key(&tag).contains(&hash_tag));
    }
}
