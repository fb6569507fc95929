//! Sessions in Redis.
//!
//! Key layout (ready for Redis Cluster: every key of one session carries the
//! session's hash tag, so every atomic step stays in one slot):
//!
//! ```text
//! {prefix}:session:{<handle>}   HASH  record (JSON) | abs (absolute expiry) | idle (idle timeout) | seen
//! ```
//!
//! `handle` = base64url(HMAC-SHA256(session_hash_key, session_id)): a dump of
//! Redis holds no live session id, hence no cookie. The key's TTL is the
//! smaller of the idle timeout and the time left to the absolute expiry,
//! renewed by every look-up; the record's times are checked again on read.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use portero_wire::{SessionView, SESSION_ID_MAX_LEN};
use rand::RngCore;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::Mutex;

/// What Redis holds for one session, besides its times. Only the sidecar
/// reads it; the filter sees [`SessionView`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user_id: String,
    pub email: String,
    pub roles: Vec<String>,
    pub created_at: u64,
    pub expires_at: u64,
    pub client_ip: String,
    pub user_agent: String,
    pub access_token: String,
    pub access_jti: String,
    pub access_expires_at: u64,
}

#[derive(Debug)]
pub enum StoreError {
    /// Redis unreachable, timing out or failing: a 503, never "no session".
    Unavailable(String),
    /// Redis holds something this sidecar cannot read.
    Corrupt(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(e) => write!(f, "redis unavailable: {e}"),
            StoreError::Corrupt(e) => write!(f, "unreadable session record: {e}"),
        }
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// Looks a session up and renews its idle expiry, in one round trip.
/// Returns `{record, idle_expires_at}` or nil.
const LOOKUP_LUA: &str = r"
local v = redis.call('HMGET', KEYS[1], 'record', 'abs', 'idle')
if not v[1] then return false end
local now = tonumber(ARGV[1])
local abs = tonumber(v[2])
local idle = tonumber(v[3])
if not abs or not idle or abs <= now then
  redis.call('DEL', KEYS[1])
  return false
end
local ttl = math.min(idle, abs - now)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('HSET', KEYS[1], 'seen', ARGV[1])
return {v[1], tostring(now + ttl)}
";

/// Stores a new session with its TTL, atomically; refuses to overwrite.
const CREATE_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'abs', ARGV[2], 'idle', ARGV[3], 'seen', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
";

pub struct Store {
    client: redis::Client,
    connection: Mutex<Option<ConnectionManager>>,
    prefix: String,
    hash_key: Hmac<Sha256>,
    lookup: Script,
    create: Script,
    timeout: Duration,
}

/// Timing of a session: idle timeout and absolute lifetime, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub idle: u64,
    pub absolute: u64,
}

/// A new random session id: 256 bits, base64url.
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Store {
    pub fn new(
        redis_url: &str,
        prefix: &str,
        hash_key: &[u8],
        timeout: Duration,
    ) -> Result<Self, String> {
        let client = redis::Client::open(redis_url).map_err(|e| format!("redis url: {e}"))?;
        let hash_key = Hmac::<Sha256>::new_from_slice(hash_key).map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            connection: Mutex::new(None),
            prefix: prefix.to_string(),
            hash_key,
            lookup: Script::new(LOOKUP_LUA),
            create: Script::new(CREATE_LUA),
            timeout,
        })
    }

    /// The shared connection, made on first use so the sidecar can start
    /// (and report not-ready) while Redis is still down.
    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// The public handle of a session id.
    pub fn handle_of(&self, session_id: &str) -> String {
        let mut mac = self.hash_key.clone();
        mac.update(session_id.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    fn session_key(&self, handle: &str) -> String {
        format!("{}:session:{{{handle}}}", self.prefix)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }

    /// Stores a new session under `handle`. False if the handle is taken
    /// (never expected with 256-bit ids; the caller retries with a new id).
    pub async fn create(
        &self,
        handle: &str,
        record: &SessionRecord,
        lifetimes: Lifetimes,
        now: u64,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let ttl = lifetimes.idle.min(lifetimes.absolute).max(1);
        let mut conn = self.connection().await?;
        let created: i64 = self
            .create
            .key(self.session_key(handle))
            .arg(json)
            .arg(record.expires_at)
            .arg(lifetimes.idle)
            .arg(now)
            .arg(ttl)
            .invoke_async(&mut conn)
            .await?;
        Ok(created == 1)
    }

    /// The live session with this handle, its idle expiry renewed.
    pub async fn lookup(&self, handle: &str, now: u64) -> Result<Option<SessionView>, StoreError> {
        if handle.len() > SESSION_ID_MAX_LEN {
            return Ok(None);
        }
        let mut conn = self.connection().await?;
        let found: Option<(String, String)> = self
            .lookup
            .key(self.session_key(handle))
            .arg(now)
            .invoke_async(&mut conn)
            .await?;
        let Some((json, idle_expires_at)) = found else {
            return Ok(None);
        };
        let record: SessionRecord =
            serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let idle_expires_at = idle_expires_at
            .parse::<u64>()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some(SessionView {
            handle: handle.to_string(),
            user_id: record.user_id,
            email: record.email,
            roles: record.roles,
            created_at: record.created_at,
            last_seen_at: now,
            expires_at: record.expires_at,
            idle_expires_at,
            client_ip: record.client_ip,
            user_agent: record.user_agent,
            access_token: record.access_token,
            access_jti: record.access_jti,
            access_expires_at: record.access_expires_at,
        }))
    }

    /// Ends a session. False if there was none.
    pub async fn end(&self, handle: &str) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        let removed: i64 = redis::cmd("DEL")
            .arg(self.session_key(handle))
            .query_async(&mut conn)
            .await?;
        Ok(removed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_well_formed() {
        let a = new_session_id();
        assert_ne!(a, new_session_id());
        assert!(portero_wire::is_session_token_shape(&a));
        assert_eq!(a.len(), 43);
    }

    #[test]
    fn handle_is_keyed_and_key_carries_the_hash_tag() {
        let s1 = Store::new(
            "redis://127.0.0.1:1",
            "portero",
            b"k1",
            Duration::from_secs(1),
        )
        .unwrap();
        let s2 = Store::new(
            "redis://127.0.0.1:1",
            "portero",
            b"k2",
            Duration::from_secs(1),
        )
        .unwrap();
        let h = s1.handle_of("abc");
        assert_eq!(h, s1.handle_of("abc"));
        assert_ne!(h, s2.handle_of("abc"));
        assert!(portero_wire::is_session_token_shape(&h));
        assert_eq!(s1.session_key(&h), format!("portero:session:{{{h}}}"));
    }
}
