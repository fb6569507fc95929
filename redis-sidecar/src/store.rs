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

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use portero_wire::{
    RevocationEvent, RevocationFeed, SessionSummary, SessionVerdict, SessionView, UserStatus,
    UserView,
};
use rand::RngCore;
use redis::{RedisResult, Script, ScriptInvocation};

#[cfg(test)]
use crate::backend::RedisTarget;
use crate::backend::{Backend, Conn, DurableConn, RedisConnect};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A sealed access token: this prefix, then base64url(nonce ‖ AES-GCM).
const SEALED_TOKEN_PREFIX: &str = "s1.";
const TOKEN_NONCE_LEN: usize = 12;

/// The cipher that seals access tokens at rest: its key is
/// HMAC-SHA256(session hash key, "portero access-token seal v1"), so Redis,
/// which never sees the hash key, cannot open them.
fn token_seal_cipher(hash_key: &Hmac<Sha256>) -> aes_gcm::Aes256Gcm {
    use aes_gcm::KeyInit;
    let mut mac = hash_key.clone();
    mac.update(b"portero access-token seal v1");
    let key = mac.finalize().into_bytes();
    aes_gcm::Aes256Gcm::new(&key)
}

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
    /// A definite "no".
    Refused(SessionVerdict),
}

/// What a login's store step did.
#[derive(Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The user is banned: no session.
    Refused(SessionVerdict),
    /// The session id is taken (the caller retries with a new one).
    IdTaken,
}

/// The store's Lua scripts, one file each in `redis-sidecar/lua/`, whose
/// header states its KEYS, ARGV and reply. Every key a script touches is in
/// its KEYS (Redis Cluster routes on them), and every reply is one JSON
/// object with a `status`, read into the types below in [`Store::run`].
struct Scripts {
    lookup: Script,
    rotate: Script,
    create: Script,
    revoke_user: Script,
    update_user: Script,
    end_session: Script,
    list_sessions: Script,
}

impl Scripts {
    fn load() -> Scripts {
        Scripts {
            lookup: Script::new(include_str!("../lua/lookup.lua")),
            rotate: Script::new(include_str!("../lua/rotate.lua")),
            create: Script::new(include_str!("../lua/create.lua")),
            revoke_user: Script::new(include_str!("../lua/revoke_user.lua")),
            update_user: Script::new(include_str!("../lua/update_user.lua")),
            end_session: Script::new(include_str!("../lua/end_session.lua")),
            list_sessions: Script::new(include_str!("../lua/list_sessions.lua")),
        }
    }
}

/// `lookup.lua`'s reply.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum LookupReply {
    Refused { verdict: SessionVerdict },
    UserMissing,
    Found(FoundSession),
}

#[derive(Debug, Deserialize)]
struct FoundSession {
    /// [`SessionRecord`] as JSON.
    record: String,
    idle_expires_at: u64,
    /// JSON lists, as the user hash holds them.
    roles: String,
    permissions: String,
    token: String,
    jti: String,
    exp: u64,
    rotations: u64,
    ver: u64,
    now: u64,
    token_presented: bool,
}

/// `rotate.lua`'s reply.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum RotateReply {
    Refused {
        verdict: SessionVerdict,
    },
    UserMissing,
    Current {
        rotated: bool,
        token: String,
        jti: String,
        exp: u64,
        rotations: u64,
    },
}

/// `create.lua`'s reply.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum CreateReply {
    Created {
        #[allow(dead_code)]
        ver: u64,
    },
    Refused {
        verdict: SessionVerdict,
    },
    Exists,
    UserTagCollision,
}

/// `revoke_user.lua`'s reply.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum RevokeUserReply {
    Revoked { ended: u64, ver: u64 },
    UserTagCollision,
}

/// `update_user.lua`'s reply.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum UpdateUserReply {
    Updated,
    UserTagCollision,
}

/// `end_session.lua`'s reply.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum EndSessionReply {
    Ended { existed: bool },
}

/// `list_sessions.lua`'s reply.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum ListSessionsReply {
    Listed {
        sessions: BTreeMap<String, ListedSession>,
    },
}

#[derive(Debug, Deserialize)]
struct ListedSession {
    record: String,
    seen: u64,
}

/// Reads a script's JSON reply into its type: the one place script output
/// is interpreted. Anything else is a corrupt store, never a verdict.
fn read_reply<T: DeserializeOwned>(json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("script reply: {e}")))
}

pub struct Store {
    backend: Backend,
    prefix: String,
    hash_key: Hmac<Sha256>,
    token_seal: aes_gcm::Aes256Gcm,
    scripts: Scripts,
    durability: Durability,
    /// Writes accepted with fewer replicas than required, because fewer
    /// were connected (see [`Store::replicated`]); exported as a metric.
    pub under_replicated_writes: prometheus_client::metrics::counter::Counter,
    /// Unix second of the last under-replicated write logged.
    under_replicated_logged_at: std::sync::atomic::AtomicU64,
}

/// A write that must survive a failover, under way.
struct DurableWrite {
    conn: WriteConn,
    plan: ReplicaPlan,
}

enum WriteConn {
    /// No `WAIT` will follow: the shared connection will do.
    Shared(Conn),
    /// `WAIT` will follow: a connection of its own.
    Own(DurableConn),
}

#[derive(Clone, Copy)]
enum ReplicaPlan {
    /// No replica wanted, or none connected (then the write is counted).
    NoWait { under_replicated: bool },
    /// `WAIT` for this many (the connected ones, at most as many as wanted).
    Wait(u32),
}

impl DurableWrite {
    fn conn(&mut self) -> &mut Conn {
        match &mut self.conn {
            WriteConn::Shared(conn) => conn,
            WriteConn::Own(conn) => conn.conn(),
        }
    }

    fn discard(&mut self) {
        if let WriteConn::Own(conn) = &mut self.conn {
            conn.discard();
        }
    }
}

/// How the writes that matter (login, rotation, end, revoke-all, user
/// changes, the revocation feed) are made durable: acknowledged by this many
/// replicas within `timeout` (Redis `WAIT`). 0 replicas: not waited for.
#[derive(Debug, Clone, Copy)]
pub struct Durability {
    pub replicas: u32,
    pub timeout: Duration,
}

impl Durability {
    pub const NONE: Durability = Durability {
        replicas: 0,
        timeout: Duration::ZERO,
    };
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

    /// Starts a write to `key` that must survive a failover: decides, from
    /// the connected replica count the backend keeps (never asking Redis
    /// per write), how many replicas to `WAIT` for, and the connection to
    /// write on — one of its own when it will `WAIT`, since `WAIT` blocks
    /// its connection. See [`Store::finish_durable`].
    async fn begin_durable(&self, key: &str) -> Result<DurableWrite, StoreError> {
        let wanted = self.durability.replicas;
        if wanted == 0 {
            return Ok(DurableWrite {
                conn: WriteConn::Shared(self.connection().await?),
                plan: ReplicaPlan::NoWait {
                    under_replicated: false,
                },
            });
        }
        let wait_for = match self.backend.known_connected_replicas(key).await {
            Some(0) => {
                return Ok(DurableWrite {
                    conn: WriteConn::Shared(self.connection().await?),
                    plan: ReplicaPlan::NoWait {
                        under_replicated: true,
                    },
                })
            }
            Some(connected) => connected.min(wanted),
            None => wanted,
        };
        let result = self.backend.durable_connection().await;
        Ok(DurableWrite {
            conn: WriteConn::Own(self.check(result).await?),
            plan: ReplicaPlan::Wait(wait_for),
        })
    }

    /// A step of a durable write: an error makes its connection unusable
    /// for the next write (see [`DurableConn::discard`]).
    async fn step<T>(
        &self,
        write: &mut DurableWrite,
        result: RedisResult<T>,
    ) -> Result<T, StoreError> {
        if result.is_err() {
            write.discard();
        }
        self.check(result).await
    }

    /// After a write to `key` begun with [`Store::begin_durable`]: waits
    /// until [`Durability::replicas`] replicas have it, so a failover cannot
    /// lose it. Replicas that are connected but do not acknowledge in time
    /// make it [`StoreError::NotReplicated`]: the caller gets a 503 and
    /// retries (every such write is idempotent or safe to redo; it stays on
    /// the primary). When the primary has fewer replicas connected than
    /// required (after a failover, until the old primary rejoins), the write
    /// is accepted once every connected replica has it — at once when none
    /// is — and counted and logged as under-replicated: refusing every login
    /// then would turn one lost node into an outage, and waiting for
    /// replicas that are not there would turn it into timeouts.
    async fn finish_durable(&self, write: &mut DurableWrite, key: &str) -> Result<(), StoreError> {
        let Durability {
            replicas: wanted,
            timeout,
        } = self.durability;
        let wait_for = match write.plan {
            ReplicaPlan::NoWait { under_replicated } => {
                if under_replicated {
                    self.under_replicated(0, 0, wanted);
                }
                return Ok(());
            }
            ReplicaPlan::Wait(wait_for) => wait_for,
        };
        let result = self
            .backend
            .wait_for_replicas(write.conn(), key, wait_for, timeout)
            .await;
        let acknowledged = self.step(write, result).await?;
        if acknowledged >= wanted {
            return Ok(());
        }
        if acknowledged >= wait_for {
            // Fewer were connected than wanted, and all of them have it.
            self.under_replicated(acknowledged, wait_for, wanted);
            return Ok(());
        }
        // Fewer acknowledged than the count said were connected: the count
        // may be out of date (a replica gone since). Ask the primary now.
        self.backend.forget_replica_counts();
        let result = self.backend.connected_replicas(write.conn(), key).await;
        let connected = self.step(write, result).await?;
        if connected < wanted && acknowledged >= connected {
            self.under_replicated(acknowledged, connected, wanted);
            return Ok(());
        }
        Err(StoreError::NotReplicated {
            acknowledged,
            wanted,
        })
    }

    /// Counts a write accepted with fewer replicas than wanted; logs it at
    /// most once a second (a degraded topology may last hours, at every
    /// write).
    fn under_replicated(&self, acknowledged: u32, connected: u32, wanted: u32) {
        self.under_replicated_writes.inc();
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let logged = self
            .under_replicated_logged_at
            .swap(second, std::sync::atomic::Ordering::Relaxed);
        if logged != second {
            tracing::warn!(
                acknowledged,
                connected,
                wanted,
                total = self.under_replicated_writes.get(),
                "write accepted with fewer replicas than required: too few are connected"
            );
        }
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
    /// `token` sealed for storage under session `handle`.
    fn seal_token(&self, handle: &str, token: &str) -> Result<String, StoreError> {
        use aes_gcm::aead::{Aead, Payload};
        let mut nonce = [0u8; TOKEN_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: token.as_bytes(),
            aad: handle.as_bytes(),
        };
        let sealed = self
            .token_seal
            .encrypt(&nonce.into(), payload)
            .map_err(|_| corrupt("access token could not be sealed"))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!(
            "{SEALED_TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// The access token stored under session `handle`; one stored before
    /// tokens were sealed is read as it is.
    fn open_token(&self, handle: &str, stored: &str) -> Result<String, StoreError> {
        use aes_gcm::aead::{Aead, Payload};
        let Some(sealed) = stored.strip_prefix(SEALED_TOKEN_PREFIX) else {
            return Ok(stored.to_string());
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| corrupt("sealed access token is not base64url"))?;
        if bytes.len() < TOKEN_NONCE_LEN {
            return Err(corrupt("sealed access token too short"));
        }
        let (nonce, ciphertext) = bytes.split_at(TOKEN_NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: handle.as_bytes(),
        };
        let nonce = aes_gcm::Nonce::from_slice(nonce);
        let token = self
            .token_seal
            .decrypt(nonce, payload)
            .map_err(|_| corrupt("sealed access token does not open"))?;
        String::from_utf8(token).map_err(|_| corrupt("sealed access token is not text"))
    }

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
        let key = self.revocations_key();
        let mut write = self.begin_durable(&key).await?;
        let result = cmd.query_async::<String>(write.conn()).await;
        self.step(&mut write, result).await?;
        self.finish_durable(&mut write, &key).await
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
            let last: Vec<StreamEntry> = {
                let result = redis::cmd("XREVRANGE")
                    .arg(&key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut conn)
                    .await;
                self.check(result).await?
            };
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
        let (first, entries): (Vec<StreamEntry>, Vec<StreamEntry>) = {
            let result = redis::pipe()
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
                .await;
            self.check(result).await?
        };
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

    /// The user's current token version (0 for a user never seen).
    pub async fn token_version(&self, user_id: &str) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        let ver: Option<u64> = {
            let result = redis::cmd("HGET")
                .arg(self.user_key(&self.user_tag(user_id)))
                .arg("ver")
                .query_async(&mut conn)
                .await;
            self.check(result).await?
        };
        Ok(ver.unwrap_or(0))
    }

    /// Runs a script that writes what must survive a failover (see
    /// [`Store::begin_durable`], [`Store::finish_durable`]).
    async fn run_durable<T: DeserializeOwned>(
        &self,
        invocation: ScriptInvocation<'_>,
        key: &str,
    ) -> Result<T, StoreError> {
        let mut write = self.begin_durable(key).await?;
        let result = invocation.invoke_async::<String>(write.conn()).await;
        let json = self.step(&mut write, result).await?;
        let reply = read_reply(&json)?;
        self.finish_durable(&mut write, key).await?;
        Ok(reply)
    }

    /// Runs a script and reads its reply (see [`read_reply`]).
    async fn run<T: DeserializeOwned>(
        &self,
        invocation: ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.connection().await?;
        let result = invocation.invoke_async::<String>(&mut conn).await;
        let json = self.check(result).await?;
        read_reply(&json)
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

    /// Stores a new session (`create.lua`).
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
    ) -> Result<CreateOutcome, StoreError> {
        let tag = Self::tag_of(handle);
        let json = serde_json::to_string(record).map_err(|e| corrupt(&e.to_string()))?;
        let roles = serde_json::to_string(roles).map_err(|e| corrupt(&e.to_string()))?;
        let permissions = match permissions {
            Some(p) => serde_json::to_string(p).map_err(|e| corrupt(&e.to_string()))?,
            None => String::new(),
        };
        let ttl = lifetimes.idle.min(lifetimes.absolute).max(1);
        let session_key = self.session_key(handle);
        let mut invocation = self.scripts.create.prepare_invoke();
        invocation
            .key(&session_key)
            .key(self.user_key(tag))
            .key(self.index_key(tag))
            .arg(json)
            .arg(record.expires_at)
            .arg(lifetimes.idle)
            .arg(now)
            .arg(ttl)
            .arg(self.seal_token(handle, &token.token)?)
            .arg(&token.jti)
            .arg(token.expires_at)
            .arg(&record.user_id)
            .arg(roles)
            .arg(permissions)
            .arg(handle)
            .arg(random_token());
        match self.run_durable(invocation, &session_key).await? {
            CreateReply::Created { .. } => Ok(CreateOutcome::Created),
            CreateReply::Refused { verdict } => Ok(CreateOutcome::Refused(verdict)),
            CreateReply::Exists => Ok(CreateOutcome::IdTaken),
            CreateReply::UserTagCollision => Err(corrupt("user tag collision")),
        }
    }

    /// Looks a session up with its user, renewing its idle expiry
    /// (`lookup.lua`; its times are Redis's).
    pub async fn lookup(
        &self,
        handle: &str,
        presented_jti: Option<&str>,
        rotation: &RotationRules,
    ) -> Result<Lookup, StoreError> {
        let tag = Self::tag_of(handle);
        let mut invocation = self.scripts.lookup.prepare_invoke();
        invocation
            .key(self.session_key(handle))
            .key(self.user_key(tag))
            .key(self.index_key(tag))
            .arg(handle)
            .arg(presented_jti.unwrap_or(""))
            .arg(if rotation.revoke_on_replay { "1" } else { "0" })
            .arg(rotation.grace);
        let found = match self.run(invocation).await? {
            LookupReply::Refused { verdict } => return Ok(Lookup::Refused(verdict)),
            LookupReply::UserMissing => return Err(StoreError::UserRecordMissing),
            LookupReply::Found(found) => found,
        };
        let record: SessionRecord =
            serde_json::from_str(&found.record).map_err(|e| corrupt(&e.to_string()))?;
        let view = SessionView {
            handle: handle.to_string(),
            user_id: record.user_id,
            email: record.email,
            roles: string_list(&found.roles)?,
            permissions: string_list(&found.permissions)?,
            created_at: record.created_at,
            last_seen_at: found.now,
            expires_at: record.expires_at,
            idle_expires_at: found.idle_expires_at,
            client_ip: record.client_ip,
            user_agent: record.user_agent,
            access_token: self.open_token(handle, &found.token)?,
            access_jti: found.jti,
            access_expires_at: found.exp,
            rotations: found.rotations,
            access_token_presented: found.token_presented,
        };
        Ok(Lookup::Found {
            view: Box::new(view),
            needs_rotation: found.exp <= found.now,
            token_version: found.ver,
            now: found.now,
        })
    }

    /// Replaces the access token if it is still `view.access_jti`
    /// (`rotate.lua`); `view` gets the current token afterwards. `Ok(true)`
    /// when this call rotated it.
    pub async fn rotate(
        &self,
        view: &mut SessionView,
        new: &IssuedToken,
        presented_jti: Option<&str>,
        rotation: &RotationRules,
    ) -> Result<Result<bool, SessionVerdict>, StoreError> {
        let session_key = self.session_key(&view.handle);
        let mut invocation = self.scripts.rotate.prepare_invoke();
        invocation
            .key(&session_key)
            .key(self.user_key(Self::tag_of(&view.handle)))
            .arg(&view.access_jti)
            .arg(self.seal_token(&view.handle, &new.token)?)
            .arg(&new.jti)
            .arg(new.expires_at)
            .arg(rotation.grace)
            .arg(rotation.exchange_max)
            .arg(presented_jti.unwrap_or(""));
        match self.run_durable(invocation, &session_key).await? {
            RotateReply::Refused { verdict } => Ok(Err(verdict)),
            RotateReply::UserMissing => Err(StoreError::UserRecordMissing),
            RotateReply::Current {
                rotated,
                token,
                jti,
                exp,
                rotations,
            } => {
                view.access_token = self.open_token(&view.handle, &token)?;
                view.access_jti = jti;
                view.access_expires_at = exp;
                view.rotations = rotations;
                if rotated {
                    view.access_token_presented = false;
                }
                Ok(Ok(rotated))
            }
        }
    }

    /// Ends a session (`end_session.lua`). False if there was none.
    pub async fn end(&self, handle: &str) -> Result<bool, StoreError> {
        let tag = Self::tag_of(handle);
        let session_key = self.session_key(handle);
        let mut invocation = self.scripts.end_session.prepare_invoke();
        invocation
            .key(&session_key)
            .key(self.index_key(tag))
            .arg(handle);
        let EndSessionReply::Ended { existed } = self.run_durable(invocation, &session_key).await?;
        Ok(existed)
    }

    /// Ends every session of a user and bumps the token version, so any
    /// session or token minted before is refused from now on
    /// (`revoke_user.lua`). Returns (sessions ended, new version).
    pub async fn revoke_user(&self, user_id: &str) -> Result<(u64, u64), StoreError> {
        let tag = self.user_tag(user_id);
        let sessions = self.indexed_sessions(&tag).await?;
        let user_key = self.user_key(&tag);
        let mut invocation = self.scripts.revoke_user.prepare_invoke();
        invocation.key(&user_key).key(self.index_key(&tag));
        for (key, _) in &sessions {
            invocation.key(key);
        }
        invocation.arg(user_id).arg(random_token());
        match self.run_durable(invocation, &user_key).await? {
            RevokeUserReply::Revoked { ended, ver } => Ok((ended, ver)),
            RevokeUserReply::UserTagCollision => Err(corrupt("user tag collision")),
        }
    }

    /// The user record, if the user was ever seen.
    pub async fn user(&self, user_id: &str) -> Result<Option<UserView>, StoreError> {
        let tag = self.user_tag(user_id);
        let mut conn = self.connection().await?;
        let fields: Vec<Option<String>> = {
            let result = redis::cmd("HMGET")
                .arg(self.user_key(&tag))
                .arg(&["user_id", "status", "roles", "permissions", "ver"])
                .query_async(&mut conn)
                .await;
            self.check(result).await?
        };
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
        let status = match status {
            Some(UserStatus::Active) => "active",
            Some(UserStatus::Banned) => "banned",
            None => "",
        };
        let list = |names: Option<&[String]>| match names {
            Some(names) => serde_json::to_string(names).map_err(|e| corrupt(&e.to_string())),
            None => Ok(String::new()),
        };
        let mut invocation = self.scripts.update_user.prepare_invoke();
        invocation
            .key(&key)
            .arg(user_id)
            .arg(random_token())
            .arg(status)
            .arg(list(roles)?)
            .arg(list(permissions)?);
        match self.run_durable(invocation, &key).await? {
            UpdateUserReply::Updated => {}
            UpdateUserReply::UserTagCollision => return Err(corrupt("user tag collision")),
        }
        self.user(user_id).await
    }

    /// The live sessions of a user (`list_sessions.lua`; dead index
    /// entries are dropped).
    pub async fn sessions_of(
        &self,
        user_id: &str,
        now: u64,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        let tag = self.user_tag(user_id);
        let sessions = self.indexed_sessions(&tag).await?;
        let mut invocation = self.scripts.list_sessions.prepare_invoke();
        invocation.key(self.index_key(&tag)).arg(now);
        for (key, handle) in &sessions {
            invocation.key(key).arg(handle);
        }
        let ListSessionsReply::Listed { sessions } = self.run(invocation).await?;
        let mut out = Vec::new();
        for (handle, listed) in sessions {
            let record: SessionRecord =
                serde_json::from_str(&listed.record).map_err(|e| corrupt(&e.to_string()))?;
            out.push(SessionSummary {
                handle,
                created_at: record.created_at,
                last_seen_at: listed.seen.max(record.created_at),
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

    #[test]
    fn script_replies_are_read_defensively() {
        let refused: LookupReply =
            read_reply(r#"{"status":"refused","verdict":"user_banned"}"#).unwrap();
        assert!(matches!(
            refused,
            LookupReply::Refused {
                verdict: SessionVerdict::UserBanned
            }
        ));
        // An unknown verdict, a missing field, a wrong type: corrupt, never a verdict.
        for bad in [
            r#"{"status":"refused","verdict":"maybe"}"#,
            r#"{"status":"found","record":"{}"}"#,
            r#"{"status":"found","record":"{}","idle_expires_at":"soon"}"#,
            r#"{"status":"exploded"}"#,
            "",
        ] {
            assert!(matches!(
                read_reply::<LookupReply>(bad),
                Err(StoreError::Corrupt(_))
            ));
        }
        // cjson writes an empty table as {}: an empty session list.
        let listed: ListSessionsReply = read_reply(r#"{"status":"listed","sessions":{}}"#).unwrap();
        let ListSessionsReply::Listed { sessions } = listed;
        assert!(sessions.is_empty());
        assert!(string_list("not json").is_err());
    }
}
