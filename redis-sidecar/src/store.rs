//! Sessions and users in Redis.
//!
//! Key layout. Every key of one user carries the user's tag as its Redis
//! Cluster hash tag, so each multi-key step (look-up with the user check,
//! login, revoke-all) is one Lua script in one slot:
//!
//! ```text
//! {prefix}:user:{<utag>}              HASH  user_id | status | roles | permissions | ver
//! {prefix}:sessions:{<utag>}          ZSET  session handles, scored by absolute expiry
//! {prefix}:session:{<utag>}:<handle>  HASH  record (JSON) | abs | idle | seen | ver
//!                                           | token | jti | exp | cur_seen | rotations
//!                                           | prev_jti | prev_until | prev_max
//! ```
//!
//! `utag` = base64url(HMAC-SHA256(key, "user\0" + user_id))[..22]. A session id
//! is `utag` + 43 random characters (256 bits); its handle is `utag` +
//! base64url(HMAC-SHA256(key, session_id)). Redis only ever sees handles: a
//! dump holds no live session id, hence no cookie. A session key's TTL is the
//! smaller of the idle timeout and the time left to the absolute expiry,
//! renewed by every look-up; the record's times are checked again on read.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use portero_wire::{
    RevocationEvent, RevocationFeed, SessionSummary, SessionView, UserStatus, UserView,
};
use rand::RngCore;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::OnceCell;

/// Length of the user tag at the start of ids and handles.
pub const USER_TAG_LEN: usize = 22;
/// Length of a session id or handle.
pub const SESSION_TOKEN_LEN: usize = USER_TAG_LEN + 43;

/// The parts of a session that never change after login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user_id: String,
    pub email: String,
    pub created_at: u64,
    pub expires_at: u64,
    pub client_ip: String,
    pub user_agent: String,
}

/// An access token ready to be stored.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub jti: String,
    pub expires_at: u64,
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
            StoreError::Corrupt(e) => write!(f, "unreadable record: {e}"),
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

/// The answer of a look-up.
#[derive(Debug)]
pub enum Lookup {
    /// A usable session. `needs_rotation`: its access token has expired.
    Found {
        view: Box<SessionView>,
        needs_rotation: bool,
        /// The session's token version (for the claims of a rotated token).
        token_version: u64,
        /// Redis's clock at the look-up, Unix seconds.
        now: u64,
    },
    /// A definite "no", with its code (`portero_wire::SESSION_VERDICTS`).
    Refused(&'static str),
}

/// Look-up with the user check, in one round trip. Every deadline is read
/// against Redis's own clock (`TIME`), so a stalled sidecar or a skewed host
/// cannot run a grace window down.
///
/// Rotation survives lost answers: the token rotated away (`prev_jti`) stays
/// exchangeable for its successor until the successor has been presented
/// (`cur_seen`), bounded by `prev_max`; after that it is a replay, except
/// within `grace` seconds of the successor's first use (requests already in
/// flight with the old token).
/// KEYS: session, user, index. ARGV: handle, presented jti ("" for none),
/// revoke on replay ("1"/"0"), grace.
/// Reply: {verdict} or {'ok', record, idle expiry, roles, permissions, token,
/// jti, exp, rotations, ver, now, current token presented}.
const LOOKUP_LUA: &str = r"
local now = tonumber(redis.call('TIME')[1])
local s = redis.call('HMGET', KEYS[1], 'record', 'abs', 'idle', 'ver', 'token', 'jti', 'exp',
  'prev_jti', 'prev_until', 'rotations', 'cur_seen', 'prev_max')
local function drop()
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
if not s[1] then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return {'session_not_found'}
end
local abs = tonumber(s[2])
local idle = tonumber(s[3])
if not abs or not idle or abs <= now then
  drop()
  return {'session_not_found'}
end
local u = redis.call('HMGET', KEYS[2], 'status', 'roles', 'permissions', 'ver')
if not u[1] or (tonumber(s[4]) or 0) < (tonumber(u[4]) or 0) then
  drop()
  return {'session_revoked'}
end
if u[1] == 'banned' then
  return {'user_banned'}
end
local presented = ARGV[2]
local cur_seen = s[11] == '1'
if presented ~= '' then
  if presented == s[6] then
    cur_seen = true
    if s[11] ~= '1' then
      -- The successor's first use: from now on its predecessor is a replay,
      -- once the requests already in flight with it have had `grace`.
      redis.call('HSET', KEYS[1], 'cur_seen', '1', 'prev_until', now + tonumber(ARGV[4]))
    end
  else
    local exchangeable = presented == s[8] and (
      now <= (tonumber(s[9]) or 0) or (s[11] ~= '1' and now <= (tonumber(s[12]) or 0)))
    if not exchangeable then
      if ARGV[3] == '1' then drop() end
      return {'token_replayed'}
    end
  end
end
local ttl = math.min(idle, abs - now)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('HSET', KEYS[1], 'seen', now)
return {'ok', s[1], tostring(now + ttl), u[2] or '[]', u[3] or '[]', s[5], s[6], s[7],
  s[10] or '0', s[4] or '0', tostring(now), cur_seen and '1' or '0'}
";

/// Rotates the access token if it is still the one the caller saw; either
/// way returns the session's current token. This is what makes concurrent
/// refreshes single-flight: Redis runs one script at a time, so one caller
/// rotates and the others find the new token.
///
/// The token rotated away becomes `prev_jti` — unless the current one was
/// never presented and the caller holds the previous one (its successor's
/// answer was lost): then the caller's token stays the one exchangeable.
/// Only a bearer client that presented the token rotated away (or that
/// predecessor) gets the long exchange window (`prev_max`): a rotation made
/// for a cookie client leaves the old token only the short grace, as the
/// cookie client never holds it (the upstream got it).
/// KEYS: session. ARGV: expected jti, new token, new jti, new exp, grace,
/// exchange maximum, presented jti ("" for none).
/// Reply: {'session_not_found'} or {'ok', rotated, token, jti, exp, rotations}.
const ROTATE_LUA: &str = r"
local now = tonumber(redis.call('TIME')[1])
local s = redis.call('HMGET', KEYS[1], 'jti', 'cur_seen', 'prev_jti')
if not s[1] then return {'session_not_found'} end
local rotated = '0'
if s[1] == ARGV[1] then
  local prev = s[1]
  local holder = ARGV[7] ~= '' and ARGV[7] == s[1]
  if s[2] ~= '1' and ARGV[7] ~= '' and ARGV[7] == s[3] then
    prev = s[3]
    holder = true
  end
  local prev_max = 0
  if holder then prev_max = now + tonumber(ARGV[6]) end
  redis.call('HSET', KEYS[1], 'prev_jti', prev, 'prev_until', now + tonumber(ARGV[5]),
    'prev_max', prev_max, 'cur_seen', '0',
    'token', ARGV[2], 'jti', ARGV[3], 'exp', ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'rotations', 1)
  rotated = '1'
end
local t = redis.call('HMGET', KEYS[1], 'token', 'jti', 'exp', 'rotations')
return {'ok', rotated, t[1], t[2], t[3], t[4]}
";

/// Drops index entries whose session is gone, and keeps the index's own TTL
/// at its longest-lived session. Shared by the scripts below.
const PRUNE_LUA: &str = r"
local function prune(index, prefix, now)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  for _, h in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    if redis.call('EXISTS', prefix .. h) == 0 then redis.call('ZREM', index, h) end
  end
  local top = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('EXPIREAT', index, top[2]) end
end
";

/// Login: upsert the user, refuse if banned, store the session, index it.
/// KEYS: session, user, index. ARGV: record, abs, idle, now, ttl, token,
/// jti, exp, user_id, roles, permissions ('' keeps), handle, session prefix.
const CREATE_LUA: &str = r"
local u = redis.call('HMGET', KEYS[2], 'user_id', 'status', 'ver')
if u[1] and u[1] ~= ARGV[9] then return {'user_tag_collision'} end
if u[2] == 'banned' then return {'user_banned'} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
local ver = tonumber(u[3]) or 0
redis.call('HSET', KEYS[2], 'user_id', ARGV[9], 'roles', ARGV[10])
if not u[2] then redis.call('HSET', KEYS[2], 'status', 'active', 'ver', 0, 'permissions', '[]') end
if ARGV[11] ~= '' then redis.call('HSET', KEYS[2], 'permissions', ARGV[11]) end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'abs', ARGV[2], 'idle', ARGV[3], 'seen', ARGV[4],
  'ver', ver, 'token', ARGV[6], 'jti', ARGV[7], 'exp', ARGV[8], 'rotations', 0)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[12])
prune(KEYS[3], ARGV[13], tonumber(ARGV[4]))
return {'ok', tostring(ver)}
";

/// Revoke every session of a user and bump the token version.
/// KEYS: user, index. ARGV: user_id, session prefix.
const REVOKE_USER_LUA: &str = r"
local owner = redis.call('HGET', KEYS[1], 'user_id')
if owner and owner ~= ARGV[1] then return {-1, 0} end
if not owner then
  redis.call('HSET', KEYS[1], 'user_id', ARGV[1], 'status', 'active', 'roles', '[]', 'permissions', '[]')
end
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
local n = 0
for _, h in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  n = n + redis.call('DEL', ARGV[2] .. h)
end
redis.call('DEL', KEYS[2])
return {n, ver}
";

/// End one session. KEYS: session, index. ARGV: handle.
const END_LUA: &str = r"
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
";

/// A user's sessions, pruning the dead. KEYS: index. ARGV: session prefix, now.
const LIST_LUA: &str = r"
prune(KEYS[1], ARGV[1], tonumber(ARGV[2]))
local out = {}
for _, h in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local s = redis.call('HMGET', ARGV[1] .. h, 'record', 'seen')
  if s[1] then
    table.insert(out, h)
    table.insert(out, s[1])
    table.insert(out, s[2] or '0')
  end
end
return out
";

pub struct Store {
    client: redis::Client,
    /// One multiplexed, auto-reconnecting connection, made on first use;
    /// cloned per call (a handle, not a new connection), no lock after that.
    connection: OnceCell<ConnectionManager>,
    prefix: String,
    hash_key: Hmac<Sha256>,
    lookup: Script,
    rotate: Script,
    create: Script,
    revoke_user: Script,
    end: Script,
    list: Script,
    timeout: Duration,
}

/// How a rotated-away access token is treated (seconds).
#[derive(Debug, Clone, Copy)]
pub struct RotationRules {
    /// After its successor's first use, the previous token still maps to
    /// it for this long (requests already in flight).
    pub grace: u64,
    /// Until its successor is first used, the previous token maps to it for
    /// at most this long (the client may never have received the answer).
    pub exchange_max: u64,
    /// End the session when a rotated-away token comes back after that.
    pub revoke_on_replay: bool,
}

/// Timing of a session: idle timeout and absolute lifetime, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub idle: u64,
    pub absolute: u64,
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

fn string_at(values: &[Value], i: usize) -> Result<String, StoreError> {
    match values.get(i) {
        Some(Value::BulkString(b)) => {
            String::from_utf8(b.clone()).map_err(|_| corrupt("non-UTF-8 field"))
        }
        Some(Value::SimpleString(s)) => Ok(s.clone()),
        Some(Value::Int(n)) => Ok(n.to_string()),
        _ => Err(corrupt("missing field in script reply")),
    }
}

fn u64_at(values: &[Value], i: usize) -> Result<u64, StoreError> {
    string_at(values, i)?
        .parse::<u64>()
        .map_err(|_| corrupt("not a number"))
}

fn string_list(json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|_| corrupt("not a JSON list of strings"))
}

/// How many entries the revocation stream keeps (approximately): at one
/// poll a second per worker, hours of history.
pub const REVOCATION_FEED_LENGTH: u64 = 100_000;

/// A stream entry as XRANGE returns it: id and field/value pairs.
type StreamEntry = (String, Vec<(String, String)>);

/// A stream entry id `ms-seq` as a comparable pair.
pub fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn verdict(code: &str) -> Option<&'static str> {
    portero_wire::SESSION_VERDICTS
        .into_iter()
        .find(|known| *known == code)
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
        let with_prune = |body: &str| Script::new(&format!("{PRUNE_LUA}\n{body}"));
        Ok(Self {
            client,
            connection: OnceCell::new(),
            prefix: prefix.to_string(),
            hash_key,
            lookup: Script::new(LOOKUP_LUA),
            rotate: Script::new(ROTATE_LUA),
            create: with_prune(CREATE_LUA),
            revoke_user: Script::new(REVOKE_USER_LUA),
            end: Script::new(END_LUA),
            list: with_prune(LIST_LUA),
            timeout,
        })
    }

    /// The shared connection, made on first use so the sidecar can start
    /// (and report not-ready) while Redis is still down.
    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let conn = self
            .connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(self.timeout)
                    .set_response_timeout(self.timeout)
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await?;
        Ok(conn.clone())
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

    /// Appends to the revocation feed. Called *after* the change it reports,
    /// so a filter that evicts on it and looks up again sees the change.
    pub async fn append_revocation(&self, event: &RevocationEvent) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.revocations_key())
            .arg("MAXLEN")
            .arg("~")
            .arg(REVOCATION_FEED_LENGTH)
            .arg("*");
        if let Some(user_id) = &event.user_id {
            cmd.arg("user").arg(user_id);
        }
        if let Some(handle) = &event.session_handle {
            cmd.arg("session").arg(handle);
        }
        let mut conn = self.connection().await?;
        cmd.query_async::<String>(&mut conn).await?;
        Ok(())
    }

    /// Reads the feed after `after` (see [`RevocationFeed`]).
    pub async fn read_revocations(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> Result<RevocationFeed, StoreError> {
        let key = self.revocations_key();
        let mut conn = self.connection().await?;
        let Some(after) = after else {
            let last: Vec<StreamEntry> = redis::cmd("XREVRANGE")
                .arg(&key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await?;
            let cursor = last
                .first()
                .map_or_else(|| "0-0".to_string(), |e| e.0.clone());
            return Ok(RevocationFeed {
                cursor,
                events: Vec::new(),
                reset: false,
                more: false,
            });
        };
        // The API checked the cursor's form; anything else reads from the start.
        let after_id = stream_id(after).unwrap_or((0, 0));
        let (first, entries): (Vec<StreamEntry>, Vec<StreamEntry>) = redis::pipe()
            .cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .cmd("XRANGE")
            .arg(&key)
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut conn)
            .await?;
        let first_id = first.first().and_then(|e| stream_id(&e.0));
        // The entry after `after` may have been trimmed (or the stream lost):
        // the feed cannot vouch for what happened, so the filter starts over.
        let lost = match first_id {
            None => after_id > (0, 0),
            Some(first) => first > after_id && after_id > (0, 0),
        };
        if lost {
            let cursor = entries
                .last()
                .map(|e| e.0.clone())
                .or_else(|| first.first().map(|e| e.0.clone()))
                .unwrap_or_else(|| "0-0".to_string());
            return Ok(RevocationFeed {
                cursor,
                events: Vec::new(),
                reset: true,
                more: false,
            });
        }
        let more = entries.len() >= max;
        let cursor = entries
            .last()
            .map_or_else(|| after.to_string(), |e| e.0.clone());
        let events = entries
            .into_iter()
            .map(|(_, fields)| {
                let mut event = RevocationEvent {
                    user_id: None,
                    session_handle: None,
                };
                for (name, value) in fields {
                    match name.as_str() {
                        "user" => event.user_id = Some(value),
                        "session" => event.session_handle = Some(value),
                        _ => {}
                    }
                }
                event
            })
            .collect();
        Ok(RevocationFeed {
            cursor,
            events,
            reset: false,
            more,
        })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }

    /// The user's current token version (0 for a user never seen).
    pub async fn token_version(&self, user_id: &str) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        let ver: Option<u64> = redis::cmd("HGET")
            .arg(self.user_key(&self.user_tag(user_id)))
            .arg("ver")
            .query_async(&mut conn)
            .await?;
        Ok(ver.unwrap_or(0))
    }

    /// Stores a new session. `Ok(Err(code))` is a refusal: `user_banned`, or
    /// `exists` (the caller retries with a new id).
    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        &self,
        handle: &str,
        record: &SessionRecord,
        roles: &[String],
        permissions: Option<&[String]>,
        token: &IssuedToken,
        lifetimes: Lifetimes,
        now: u64,
    ) -> Result<Result<(), String>, StoreError> {
        let tag = Self::tag_of(handle);
        let json = serde_json::to_string(record).map_err(|e| corrupt(&e.to_string()))?;
        let roles = serde_json::to_string(roles).map_err(|e| corrupt(&e.to_string()))?;
        let permissions = match permissions {
            Some(p) => serde_json::to_string(p).map_err(|e| corrupt(&e.to_string()))?,
            None => String::new(),
        };
        let ttl = lifetimes.idle.min(lifetimes.absolute).max(1);
        let mut conn = self.connection().await?;
        let reply: Vec<Value> = self
            .create
            .key(self.session_key(handle))
            .key(self.user_key(tag))
            .key(self.index_key(tag))
            .arg(json)
            .arg(record.expires_at)
            .arg(lifetimes.idle)
            .arg(now)
            .arg(ttl)
            .arg(&token.token)
            .arg(&token.jti)
            .arg(token.expires_at)
            .arg(&record.user_id)
            .arg(roles)
            .arg(permissions)
            .arg(handle)
            .arg(self.session_prefix(tag))
            .invoke_async(&mut conn)
            .await?;
        let status = string_at(&reply, 0)?;
        Ok(if status == "ok" { Ok(()) } else { Err(status) })
    }

    /// Looks a session up with its user, renewing its idle expiry. Times
    /// are Redis's (see [`LOOKUP_LUA`]).
    pub async fn lookup(
        &self,
        handle: &str,
        presented_jti: Option<&str>,
        rotation: &RotationRules,
    ) -> Result<Lookup, StoreError> {
        let tag = Self::tag_of(handle);
        let mut conn = self.connection().await?;
        let reply: Vec<Value> = self
            .lookup
            .key(self.session_key(handle))
            .key(self.user_key(tag))
            .key(self.index_key(tag))
            .arg(handle)
            .arg(presented_jti.unwrap_or(""))
            .arg(if rotation.revoke_on_replay { "1" } else { "0" })
            .arg(rotation.grace)
            .invoke_async(&mut conn)
            .await?;
        let status = string_at(&reply, 0)?;
        if status != "ok" {
            return verdict(&status)
                .map(Lookup::Refused)
                .ok_or_else(|| corrupt("unknown look-up status"));
        }
        let record: SessionRecord =
            serde_json::from_str(&string_at(&reply, 1)?).map_err(|e| corrupt(&e.to_string()))?;
        let access_expires_at = u64_at(&reply, 7)?;
        let now = u64_at(&reply, 10)?;
        let view = SessionView {
            handle: handle.to_string(),
            user_id: record.user_id,
            email: record.email,
            roles: string_list(&string_at(&reply, 3)?)?,
            permissions: string_list(&string_at(&reply, 4)?)?,
            created_at: record.created_at,
            last_seen_at: now,
            expires_at: record.expires_at,
            idle_expires_at: u64_at(&reply, 2)?,
            client_ip: record.client_ip,
            user_agent: record.user_agent,
            access_token: string_at(&reply, 5)?,
            access_jti: string_at(&reply, 6)?,
            access_expires_at,
            rotations: u64_at(&reply, 8)?,
            access_token_presented: string_at(&reply, 11)? == "1",
        };
        Ok(Lookup::Found {
            view: Box::new(view),
            needs_rotation: access_expires_at <= now,
            token_version: u64_at(&reply, 9)?,
            now,
        })
    }

    /// Replaces the access token if it is still `expected_jti`; returns the
    /// current token afterwards and whether this call rotated it.
    pub async fn rotate(
        &self,
        view: &mut SessionView,
        new: &IssuedToken,
        presented_jti: Option<&str>,
        rotation: &RotationRules,
    ) -> Result<Result<bool, &'static str>, StoreError> {
        let mut conn = self.connection().await?;
        let reply: Vec<Value> = self
            .rotate
            .key(self.session_key(&view.handle))
            .arg(&view.access_jti)
            .arg(&new.token)
            .arg(&new.jti)
            .arg(new.expires_at)
            .arg(rotation.grace)
            .arg(rotation.exchange_max)
            .arg(presented_jti.unwrap_or(""))
            .invoke_async(&mut conn)
            .await?;
        if string_at(&reply, 0)? != "ok" {
            return Ok(Err(portero_wire::SESSION_NOT_FOUND));
        }
        let rotated = string_at(&reply, 1)? == "1";
        view.access_token = string_at(&reply, 2)?;
        view.access_jti = string_at(&reply, 3)?;
        view.access_expires_at = u64_at(&reply, 4)?;
        view.rotations = u64_at(&reply, 5)?;
        if rotated {
            view.access_token_presented = false;
        }
        Ok(Ok(rotated))
    }

    /// Ends a session. False if there was none.
    pub async fn end(&self, handle: &str) -> Result<bool, StoreError> {
        let tag = Self::tag_of(handle);
        let mut conn = self.connection().await?;
        let removed: i64 = self
            .end
            .key(self.session_key(handle))
            .key(self.index_key(tag))
            .arg(handle)
            .invoke_async(&mut conn)
            .await?;
        Ok(removed > 0)
    }

    /// Ends every session of a user and bumps the token version, so any
    /// session or token minted before is refused from now on.
    pub async fn revoke_user(&self, user_id: &str) -> Result<(u64, u64), StoreError> {
        let tag = self.user_tag(user_id);
        let mut conn = self.connection().await?;
        let (ended, ver): (i64, i64) = self
            .revoke_user
            .key(self.user_key(&tag))
            .key(self.index_key(&tag))
            .arg(user_id)
            .arg(self.session_prefix(&tag))
            .invoke_async(&mut conn)
            .await?;
        if ended < 0 {
            return Err(corrupt("user tag collision"));
        }
        Ok((ended as u64, ver.max(0) as u64))
    }

    /// The user record, if the user was ever seen.
    pub async fn user(&self, user_id: &str) -> Result<Option<UserView>, StoreError> {
        let tag = self.user_tag(user_id);
        let mut conn = self.connection().await?;
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.user_key(&tag))
            .arg(&["user_id", "status", "roles", "permissions", "ver"])
            .query_async(&mut conn)
            .await?;
        let [owner, status, roles, permissions, ver] = fields.as_slice() else {
            return Err(corrupt("user record"));
        };
        let Some(owner) = owner else {
            return Ok(None);
        };
        if owner != user_id {
            return Err(corrupt("user tag collision"));
        }
        Ok(Some(UserView {
            user_id: owner.clone(),
            status: if status.as_deref() == Some("banned") {
                UserStatus::Banned
            } else {
                UserStatus::Active
            },
            roles: string_list(roles.as_deref().unwrap_or("[]"))?,
            permissions: string_list(permissions.as_deref().unwrap_or("[]"))?,
            token_version: ver.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0),
        }))
    }

    /// Sets a user's status, roles and permissions (absent: unchanged).
    pub async fn update_user(
        &self,
        user_id: &str,
        status: Option<UserStatus>,
        roles: Option<&[String]>,
        permissions: Option<&[String]>,
    ) -> Result<Option<UserView>, StoreError> {
        let tag = self.user_tag(user_id);
        let key = self.user_key(&tag);
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("HSETNX")
            .arg(&key)
            .arg("user_id")
            .arg(user_id)
            .ignore();
        pipe.cmd("HSETNX")
            .arg(&key)
            .arg("status")
            .arg("active")
            .ignore();
        pipe.cmd("HSETNX").arg(&key).arg("roles").arg("[]").ignore();
        pipe.cmd("HSETNX")
            .arg(&key)
            .arg("permissions")
            .arg("[]")
            .ignore();
        pipe.cmd("HSETNX").arg(&key).arg("ver").arg(0).ignore();
        if let Some(status) = status {
            let value = match status {
                UserStatus::Active => "active",
                UserStatus::Banned => "banned",
            };
            pipe.cmd("HSET").arg(&key).arg("status").arg(value).ignore();
        }
        if let Some(roles) = roles {
            let json = serde_json::to_string(roles).map_err(|e| corrupt(&e.to_string()))?;
            pipe.cmd("HSET").arg(&key).arg("roles").arg(json).ignore();
        }
        if let Some(permissions) = permissions {
            let json = serde_json::to_string(permissions).map_err(|e| corrupt(&e.to_string()))?;
            pipe.cmd("HSET")
                .arg(&key)
                .arg("permissions")
                .arg(json)
                .ignore();
        }
        {
            let mut conn = self.connection().await?;
            pipe.query_async::<()>(&mut conn).await?;
        }
        self.user(user_id).await
    }

    /// The live sessions of a user (dead index entries are dropped).
    pub async fn sessions_of(
        &self,
        user_id: &str,
        now: u64,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        let tag = self.user_tag(user_id);
        let mut conn = self.connection().await?;
        let flat: Vec<String> = self
            .list
            .key(self.index_key(&tag))
            .arg(self.session_prefix(&tag))
            .arg(now)
            .invoke_async(&mut conn)
            .await?;
        let mut out = Vec::new();
        for entry in flat.chunks(3) {
            let [handle, record, seen] = entry else {
                return Err(corrupt("session list"));
            };
            let record: SessionRecord =
                serde_json::from_str(record).map_err(|e| corrupt(&e.to_string()))?;
            out.push(SessionSummary {
                handle: handle.clone(),
                created_at: record.created_at,
                last_seen_at: seen.parse().unwrap_or(record.created_at),
                expires_at: record.expires_at,
                client_ip: record.client_ip,
                user_agent: record.user_agent,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(key: &[u8]) -> Store {
        Store::new(
            "redis://127.0.0.1:1",
            "portero",
            key,
            Duration::from_secs(1),
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

    #[test]
    fn script_replies_are_read_defensively() {
        let values = vec![Value::BulkString(b"12".to_vec()), Value::Nil];
        assert_eq!(u64_at(&values, 0).unwrap(), 12);
        assert!(u64_at(&values, 1).is_err());
        assert!(string_at(&values, 5).is_err());
        assert!(string_list("not json").is_err());
        assert_eq!(verdict("user_banned"), Some("user_banned"));
        assert_eq!(verdict("anything"), None);
    }
}
