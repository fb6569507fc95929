//! The Redis deployment the store talks to: one server, a primary managed
//! by Sentinel, or a Cluster. Replication, failover and sharding are Redis's
//! own; this module only finds the node to talk to, with the `redis` crate's
//! clients for each mode.

use std::future::Future;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    Cmd, ConnectionAddr, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult,
    TlsCertificates, Value,
};
use tokio::sync::{Mutex, OnceCell, OwnedSemaphorePermit, RwLock, Semaphore};

/// How to reach Redis: where, and with which TLS trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConnect {
    pub target: RedisTarget,
    /// PEM CA certificate(s) trusted for TLS (`rediss://`) instead of the
    /// system's roots; with Sentinel, also turns TLS on to the Redis nodes.
    pub tls_ca: Option<Vec<u8>>,
}

impl From<RedisTarget> for RedisConnect {
    fn from(target: RedisTarget) -> Self {
        RedisConnect {
            target,
            tls_ca: None,
        }
    }
}

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server: `redis://[user:password@]host:port[/db]` (`rediss://` for TLS).
    Standalone { url: String },
    /// The primary that Sentinel names `master_name`.
    Sentinel {
        /// `host:port` of each sentinel.
        sentinels: Vec<String>,
        master_name: String,
        /// ACL user and password of the Redis nodes.
        username: Option<String>,
        password: Option<String>,
        /// Password of the sentinels themselves (`requirepass` in sentinel.conf).
        sentinel_password: Option<String>,
    },
    /// A Redis Cluster, found from any of its nodes (`redis://[user:password@]host:port`).
    Cluster { nodes: Vec<String> },
}

impl RedisTarget {
    /// For logs: the mode and the addresses, without credentials.
    pub fn describe(&self) -> String {
        let strip = |url: &str| match url.rsplit_once('@') {
            Some((scheme_and_auth, host)) => {
                let scheme = scheme_and_auth.split_once("://").map_or("", |(s, _)| s);
                format!("{scheme}://{host}")
            }
            None => url.to_string(),
        };
        match self {
            RedisTarget::Standalone { url } => format!("standalone {}", strip(url)),
            RedisTarget::Sentinel {
                sentinels,
                master_name,
                ..
            } => format!("sentinel {master_name}@{}", sentinels.join(",")),
            RedisTarget::Cluster { nodes } => format!(
                "cluster {}",
                nodes.iter().map(|n| strip(n)).collect::<Vec<_>>().join(",")
            ),
        }
    }
}

/// A connection to whichever node serves the store now; cheap to clone (a
/// handle on a multiplexed connection).
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The most connections one place (a primary, or a Cluster) holds for the
/// writes that wait for replicas. `WAIT` blocks its whole connection until
/// the replicas answer or it times out, so such a write has a connection to
/// itself for its duration: one write's `WAIT` never delays another's.
/// Connections are made as concurrency asks and kept for reuse.
pub const DURABLE_CONNECTIONS: usize = 32;

/// How long a count of connected replicas is trusted before it is asked
/// again (`ROLE`): a durable write asks the count, never Redis, first.
pub const REPLICA_COUNT_TTL: Duration = Duration::from_secs(1);

/// The connections to one place: a shared multiplexed one for look-ups and
/// writes that wait for no replica, and a pool for the writes that do.
#[derive(Default)]
struct Lanes {
    reads: OnceCell<Conn>,
    durable: Arc<DurablePool>,
}

struct DurablePool {
    idle: std::sync::Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
}

impl Default for DurablePool {
    fn default() -> Self {
        DurablePool {
            idle: std::sync::Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(DURABLE_CONNECTIONS)),
        }
    }
}

/// A connection this write alone uses until it is dropped (then it goes
/// back to its pool, unless [`DurableConn::discard`]ed).
pub struct DurableConn {
    conn: Conn,
    pool: Arc<DurablePool>,
    reusable: bool,
    _permit: OwnedSemaphorePermit,
}

impl DurableConn {
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// After an error: the connection's state is unknown, so it is not
    /// reused (a late reply must not meet the next write).
    pub fn discard(&mut self) {
        self.reusable = false;
    }
}

impl Drop for DurableConn {
    fn drop(&mut self) {
        if self.reusable {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(self.conn.clone());
        }
    }
}

/// Connected replicas per primary, as `ROLE` last told.
#[derive(Debug)]
enum ReplicaCounts {
    /// The one primary (standalone, Sentinel).
    Primary(u32),
    /// A Cluster: by slot range of each primary.
    Slots(Vec<SlotReplicas>),
    /// The last asking failed.
    Unknown,
}

#[derive(Debug)]
struct SlotReplicas {
    first: u16,
    last: u16,
    connected: u32,
}

impl ReplicaCounts {
    fn for_key(&self, key: &str) -> Option<u32> {
        match self {
            ReplicaCounts::Primary(connected) => Some(*connected),
            ReplicaCounts::Slots(ranges) => {
                let slot = hash_slot(key);
                ranges
                    .iter()
                    .find(|r| r.first <= slot && slot <= r.last)
                    .map(|r| r.connected)
            }
            ReplicaCounts::Unknown => None,
        }
    }
}

#[derive(Default)]
struct ReplicaCache {
    known: std::sync::Mutex<Option<(Instant, Arc<ReplicaCounts>)>>,
    /// Held by the one request that asks Redis again.
    asking: Mutex<()>,
}

impl ReplicaCache {
    /// The counts, and whether they are still fresh.
    fn get(&self) -> Option<(Arc<ReplicaCounts>, bool)> {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known
            .as_ref()
            .map(|(at, counts)| (counts.clone(), at.elapsed() < REPLICA_COUNT_TTL))
    }

    fn set(&self, counts: Option<ReplicaCounts>) {
        *self.known.lock().unwrap_or_else(PoisonError::into_inner) =
            counts.map(|c| (Instant::now(), Arc::new(c)));
    }
}

/// How connections to a place are made.
enum Maker {
    Single(redis::Client),
    Cluster(ClusterClient),
}

enum Mode {
    Standalone {
        client: redis::Client,
        lanes: Arc<Lanes>,
    },
    Sentinel {
        sentinel: Mutex<SentinelClient>,
        /// The primary (a client for it, and its connections), until an
        /// error says it may have moved.
        primary: RwLock<Option<(redis::Client, Arc<Lanes>)>>,
    },
    Cluster {
        client: ClusterClient,
        lanes: Arc<Lanes>,
    },
}

/// The store's way to Redis. Connections are made on first use, so the
/// sidecar starts (and reports not-ready) while Redis is still down.
pub struct Backend {
    mode: Mode,
    timeout: Duration,
    replicas: ReplicaCache,
}

fn parse_host_port(value: &str) -> Result<ConnectionAddr, String> {
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| format!("{value:?}: expected host:port"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("{value:?}: expected host:port"))?;
    if host.is_empty() {
        return Err(format!("{value:?}: expected host:port"));
    }
    Ok(ConnectionAddr::Tcp(host.to_string(), port))
}

impl Backend {
    pub fn new(connect: &RedisConnect, timeout: Duration) -> Result<Backend, String> {
        // rustls needs a crypto provider; a second install is refused, harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certificates = connect.tls_ca.as_ref().map(|ca| TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.clone()),
        });
        let mode = match &connect.target {
            RedisTarget::Standalone { url } => Mode::Standalone {
                client: match &certificates {
                    Some(certs) => redis::Client::build_with_tls(url.as_str(), certs.clone()),
                    None => redis::Client::open(url.as_str()),
                }
                .map_err(|e| format!("redis url: {e}"))?,
                lanes: Arc::default(),
            },
            RedisTarget::Sentinel {
                sentinels,
                master_name,
                username,
                password,
                sentinel_password,
            } => {
                if sentinels.is_empty() || master_name.is_empty() {
                    return Err("sentinel mode needs sentinel addresses and a master name".into());
                }
                let addrs = sentinels
                    .iter()
                    .map(|s| parse_host_port(s))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut builder = SentinelClientBuilder::new(
                    addrs,
                    master_name.clone(),
                    SentinelServerType::Master,
                )
                .map_err(|e| format!("sentinel: {e}"))?;
                if let Some(username) = username {
                    builder = builder.set_client_to_redis_username(username.clone());
                }
                if let Some(password) = password {
                    builder = builder.set_client_to_redis_password(password.clone());
                }
                if let Some(password) = sentinel_password {
                    builder = builder.set_client_to_sentinel_password(password.clone());
                }
                if let Some(certs) = &certificates {
                    builder = builder
                        .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                        .set_client_to_redis_certificates(certs.clone());
                }
                Mode::Sentinel {
                    sentinel: Mutex::new(builder.build().map_err(|e| format!("sentinel: {e}"))?),
                    primary: RwLock::new(None),
                }
            }
            RedisTarget::Cluster { nodes } => {
                if nodes.is_empty() {
                    return Err("cluster mode needs at least one node".into());
                }
                let mut builder = ClusterClientBuilder::new(nodes.clone());
                if let Some(certs) = &certificates {
                    builder = builder.certs(certs.clone());
                }
                let client = builder
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    // A failover takes seconds; the store answers 503 meanwhile
                    // rather than holding requests (the filter's timeout is short).
                    .retries(2)
                    .min_retry_wait(10)
                    .max_retry_wait(100)
                    .build()
                    .map_err(|e| format!("cluster: {e}"))?;
                Mode::Cluster {
                    client,
                    lanes: Arc::default(),
                }
            }
        };
        Ok(Backend {
            mode,
            timeout,
            replicas: ReplicaCache::default(),
        })
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1)
    }

    async fn make(&self, maker: &Maker) -> RedisResult<Conn> {
        match maker {
            Maker::Single(client) => Ok(Conn::Single(
                ConnectionManager::new_with_config(client.clone(), self.manager_config()).await?,
            )),
            Maker::Cluster(client) => Ok(Conn::Cluster(client.get_async_connection().await?)),
        }
    }

    /// Sends `cmd` over `conn` to the primary that has `key`: in a Cluster
    /// routed by the key's slot (the connection its write went through),
    /// else the one server.
    async fn on_primary_of(conn: &mut Conn, key: &str, cmd: &Cmd) -> RedisResult<Value> {
        match conn {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => {
                let route = Route::new(hash_slot(key), SlotAddr::Master);
                c.route_command(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                )
                .await
            }
        }
    }

    /// The place that serves the store now: how to connect to it, and its
    /// connections.
    async fn place(&self) -> RedisResult<(Maker, Arc<Lanes>)> {
        match &self.mode {
            Mode::Standalone { client, lanes } => {
                Ok((Maker::Single(client.clone()), lanes.clone()))
            }
            Mode::Sentinel { sentinel, primary } => {
                let known = primary.read().await.clone();
                let (client, lanes) = match known {
                    Some(known) => known,
                    None => {
                        let mut slot = primary.write().await;
                        match slot.as_ref() {
                            Some(known) => known.clone(),
                            None => {
                                // Ask the sentinels who the primary is now
                                // (bounded: a frozen sentinel must not hold
                                // requests).
                                let client = within(self.timeout * 4, async {
                                    sentinel.lock().await.async_get_client().await
                                })
                                .await?;
                                let known = (client, Arc::new(Lanes::default()));
                                *slot = Some(known.clone());
                                known
                            }
                        }
                    }
                };
                Ok((Maker::Single(client), lanes))
            }
            Mode::Cluster { client, lanes } => Ok((Maker::Cluster(client.clone()), lanes.clone())),
        }
    }

    /// The shared connection to the node that serves the store now, for
    /// look-ups, reads and writes that wait for no replica.
    pub async fn connection(&self) -> RedisResult<Conn> {
        let (maker, lanes) = self.place().await?;
        lanes
            .reads
            .get_or_try_init(|| self.make(&maker))
            .await
            .cloned()
    }

    /// A connection of its own for a write that will `WAIT` for replicas
    /// (see [`DURABLE_CONNECTIONS`]); waits for a free one at most the
    /// Redis timeout.
    pub async fn durable_connection(&self) -> RedisResult<DurableConn> {
        let (maker, lanes) = self.place().await?;
        let pool = lanes.durable.clone();
        let permit = tokio::time::timeout(self.timeout, pool.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                RedisError::from((
                    ErrorKind::ClientError,
                    "no durable-write connection free in time",
                ))
            })?
            .map_err(|_| RedisError::from((ErrorKind::ClientError, "durable-write pool closed")))?;
        let idle = pool
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.make(&maker).await?,
        };
        Ok(DurableConn {
            conn,
            pool,
            reusable: true,
            _permit: permit,
        })
    }

    /// How many replicas the primary that has `key` has connected, as last
    /// asked (at most [`REPLICA_COUNT_TTL`] ago; one request asks again
    /// when that is over, the others meanwhile use the count it replaces).
    /// `None` when unknown (asking failed, or a slot no primary claimed).
    pub async fn known_connected_replicas(&self, key: &str) -> Option<u32> {
        let counts = match self.replicas.get() {
            Some((counts, true)) => counts,
            Some((stale, false)) => match self.replicas.asking.try_lock() {
                Ok(_asking) => self.ask_replica_counts().await,
                Err(_) => stale,
            },
            None => {
                let _asking = self.replicas.asking.lock().await;
                match self.replicas.get() {
                    Some((counts, true)) => counts,
                    _ => self.ask_replica_counts().await,
                }
            }
        };
        counts.for_key(key)
    }

    /// Asks Redis the connected replica counts and keeps them.
    async fn ask_replica_counts(&self) -> Arc<ReplicaCounts> {
        let counts = match self.read_replica_counts().await {
            Ok(counts) => counts,
            Err(e) => {
                tracing::debug!(error = %e, "connected replicas unknown");
                ReplicaCounts::Unknown
            }
        };
        self.replicas.set(Some(counts));
        self.replicas
            .get()
            .map_or_else(|| Arc::new(ReplicaCounts::Unknown), |(counts, _)| counts)
    }

    /// Forgets the connected replica counts (they proved wrong, or the
    /// primary moved): the next durable write asks again.
    pub fn forget_replica_counts(&self) {
        self.replicas.set(None);
    }

    /// `ROLE` of the primary, or in a Cluster of each primary, whose slot
    /// ranges `CLUSTER SLOTS` gives (each `ROLE` routed by the client's own
    /// slot map, to the primary of the range's first slot).
    async fn read_replica_counts(&self) -> RedisResult<ReplicaCounts> {
        match self.connection().await? {
            Conn::Single(mut c) => {
                let role: Value = redis::cmd("ROLE").query_async(&mut c).await?;
                Ok(ReplicaCounts::Primary(replicas_in_role(&role)?))
            }
            Conn::Cluster(mut c) => {
                let slots = c
                    .route_command(
                        redis::cmd("CLUSTER").arg("SLOTS"),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                    )
                    .await?;
                let ranges = slot_ranges(&slots)?;
                let mut asks = tokio::task::JoinSet::new();
                for (first, last) in ranges {
                    let mut c = c.clone();
                    asks.spawn(async move {
                        let route = Route::new(first, SlotAddr::Master);
                        let role = c
                            .route_command(
                                &redis::cmd("ROLE"),
                                RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                            )
                            .await;
                        (first, last, role.and_then(|r| replicas_in_role(&r)))
                    });
                }
                let mut known = Vec::new();
                while let Some(asked) = asks.join_next().await {
                    // A primary that did not answer: its slots stay unknown
                    // (its writes WAIT for all that are wanted), the others
                    // are known.
                    if let Ok((first, last, Ok(connected))) = asked {
                        known.push(SlotReplicas {
                            first,
                            last,
                            connected,
                        });
                    }
                }
                Ok(ReplicaCounts::Slots(known))
            }
        }
    }

    /// How many replicas the primary that has `key` has connected now
    /// (`ROLE`, routed as [`Backend::wait_for_replicas`]).
    pub async fn connected_replicas(&self, conn: &mut Conn, key: &str) -> RedisResult<u32> {
        let value = Self::on_primary_of(conn, key, &redis::cmd("ROLE")).await?;
        replicas_in_role(&value)
    }

    /// `WAIT replicas timeout` on `conn`, after a write to `key` made on it:
    /// how many replicas acknowledged every write `conn` made so far. In a
    /// Cluster it goes to the primary of `key`'s slot, over the connection
    /// the write went through.
    pub async fn wait_for_replicas(
        &self,
        conn: &mut Conn,
        key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> RedisResult<u32> {
        let mut wait = redis::cmd("WAIT");
        // WAIT 0 would block without end.
        wait.arg(replicas)
            .arg(timeout.as_millis().clamp(1, u128::from(u32::MAX)) as u64);
        let acknowledged: i64 =
            redis::from_redis_value(&Self::on_primary_of(conn, key, &wait).await?)?;
        Ok(u32::try_from(acknowledged.max(0)).unwrap_or(u32::MAX))
    }

    /// `maxmemory-policy` of the primary (every primary, in a Cluster), by
    /// node: `CONFIG GET maxmemory-policy`.
    pub async fn maxmemory_policies(&self) -> RedisResult<Vec<(String, String)>> {
        let mut config_get = redis::cmd("CONFIG");
        config_get.arg("GET").arg("maxmemory-policy");
        let mut conn = self.connection().await?;
        match &mut conn {
            Conn::Single(c) => {
                let value: Value = config_get.query_async(c).await?;
                Ok(vec![("primary".to_string(), maxmemory_policy_of(&value)?)])
            }
            Conn::Cluster(c) => {
                // Without a response policy, a command sent to every primary
                // answers a map of node address to that node's reply.
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                let value = c.route_command(&config_get, routing).await?;
                let Value::Map(by_node) = value else {
                    return Err(RedisError::from((
                        ErrorKind::TypeError,
                        "CONFIG GET to every primary: not a map of replies",
                    )));
                };
                by_node
                    .iter()
                    .map(|(node, reply)| {
                        let node: String = redis::from_redis_value(node)?;
                        Ok((node, maxmemory_policy_of(reply)?))
                    })
                    .collect()
            }
        }
    }

    /// Takes note of a failed command: under Sentinel, a connection error or
    /// a `READONLY` reply (the node was demoted) means the primary may have
    /// moved, so the next call asks the sentinels again. A Cluster connection
    /// follows failovers (MOVED, topology refresh) itself.
    pub async fn failed(&self, error: &RedisError) {
        if let Mode::Sentinel { primary, .. } = &self.mode {
            let moved = error.is_io_error()
                || error.is_connection_dropped()
                || error.is_connection_refusal()
                || error.is_timeout()
                || error.kind() == ErrorKind::ReadOnly;
            if moved {
                *primary.write().await = None;
                self.forget_replica_counts();
            }
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.mode, Mode::Cluster { .. })
    }
}

/// The Cluster hash slot of a key: CRC16 (XMODEM) of its hash tag (the
/// part between the first `{` and the next `}`, when not empty) or of the
/// whole key, modulo 16384. The `redis` crate keeps its own private; the
/// rule is Redis's (cluster specification, "Keys distribution model").
pub fn hash_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = bytes
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let rest = bytes.get(open + 1..)?;
            let close = rest.iter().position(|b| *b == b'}')?;
            (close > 0).then(|| rest.get(..close)).flatten()
        })
        .unwrap_or(bytes);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % 16384
}

/// The replicas a primary's `ROLE` lists: it answers
/// `["master", offset, [[ip, port, offset], ...]]`, listing the replicas
/// that are online. Any other role (a demoted node) is an error.
fn replicas_in_role(value: &Value) -> RedisResult<u32> {
    let not_primary = || RedisError::from((ErrorKind::ReadOnly, "ROLE: not a primary"));
    let Value::Array(parts) = value else {
        return Err(not_primary());
    };
    let role: String = redis::from_redis_value(parts.first().ok_or_else(not_primary)?)?;
    if role != "master" {
        return Err(not_primary());
    }
    let replicas = match parts.get(2) {
        Some(Value::Array(replicas)) => replicas.len(),
        _ => 0,
    };
    Ok(u32::try_from(replicas).unwrap_or(u32::MAX))
}

/// The slot ranges of `CLUSTER SLOTS`' reply: `[[first, last, primary,
/// replicas...], ...]`.
fn slot_ranges(value: &Value) -> RedisResult<Vec<(u16, u16)>> {
    let Value::Array(entries) = value else {
        return Err(RedisError::from((
            ErrorKind::TypeError,
            "CLUSTER SLOTS: not a list",
        )));
    };
    entries
        .iter()
        .map(|entry| match entry {
            Value::Array(parts) => match (parts.first(), parts.get(1)) {
                (Some(first), Some(last)) => Ok((
                    redis::from_redis_value(first)?,
                    redis::from_redis_value(last)?,
                )),
                _ => Err(RedisError::from((
                    ErrorKind::TypeError,
                    "CLUSTER SLOTS: an entry without its range",
                ))),
            },
            _ => Err(RedisError::from((
                ErrorKind::TypeError,
                "CLUSTER SLOTS: an entry that is not a list",
            ))),
        })
        .collect()
}

/// The value of `CONFIG GET maxmemory-policy`'s reply (a name/value list
/// in RESP2, a map in RESP3).
fn maxmemory_policy_of(value: &Value) -> RedisResult<String> {
    let pairs: std::collections::HashMap<String, String> = redis::from_redis_value(value)?;
    pairs.get("maxmemory-policy").cloned().ok_or_else(|| {
        RedisError::from((
            ErrorKind::TypeError,
            "CONFIG GET maxmemory-policy: no value",
        ))
    })
}

async fn within<T>(
    limit: Duration,
    future: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result,
        Err(_) => Err(RedisError::from((
            ErrorKind::IoError,
            "sentinel did not answer in time",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_counts_are_read_from_role_and_cluster_slots() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let replica = Value::Array(vec![bulk("127.0.0.1"), bulk("7001"), bulk("42")]);
        let primary = Value::Array(vec![
            bulk("master"),
            Value::Int(42),
            Value::Array(vec![replica.clone(), replica]),
        ]);
        assert_eq!(replicas_in_role(&primary).unwrap(), 2);
        let alone = Value::Array(vec![bulk("master"), Value::Int(1), Value::Array(vec![])]);
        assert_eq!(replicas_in_role(&alone).unwrap(), 0);
        let demoted = Value::Array(vec![bulk("slave"), bulk("127.0.0.1"), Value::Int(7000)]);
        assert!(replicas_in_role(&demoted).is_err());

        let slots = Value::Array(vec![
            Value::Array(vec![Value::Int(0), Value::Int(5460), Value::Array(vec![])]),
            Value::Array(vec![Value::Int(5461), Value::Int(16383)]),
        ]);
        assert_eq!(slot_ranges(&slots).unwrap(), vec![(0, 5460), (5461, 16383)]);
        assert!(slot_ranges(&Value::Array(vec![Value::Int(1)])).is_err());

        let counts = ReplicaCounts::Slots(vec![SlotReplicas {
            first: hash_slot("foo"),
            last: hash_slot("foo"),
            connected: 1,
        }]);
        assert_eq!(counts.for_key("foo"), Some(1));
        assert_eq!(counts.for_key("{user1000}.following"), None);
        assert_eq!(ReplicaCounts::Unknown.for_key("foo"), None);
    }

    #[test]
    fn addresses_are_checked_and_credentials_never_described() {
        assert!(parse_host_port("127.0.0.1:26379").is_ok());
        for bad in ["", "host", ":1", "host:port", "host:70000"] {
            assert!(parse_host_port(bad).is_err(), "{bad:?}");
        }
        let target = RedisTarget::Standalone {
            url: "redis://app:s3cret@10.0.0.1:6379/0".into(),
        };
        assert_eq!(target.describe(), "standalone redis://10.0.0.1:6379/0");
        let cluster = RedisTarget::Cluster {
            nodes: vec!["redis://u:p@a:1".into(), "redis://b:2".into()],
        };
        assert_eq!(cluster.describe(), "cluster redis://a:1,redis://b:2");
        // Slots as `CLUSTER KEYSLOT` gives them (checked on Redis 7.0).
        assert_eq!(hash_slot("foo"), 12182);
        assert_eq!(hash_slot("{user1000}.following"), hash_slot("user1000"));
        assert_eq!(hash_slot("foo{}{bar}"), hash_slot("foo{}{bar}"));
        assert_eq!(hash_slot("foo{{bar}}zap"), hash_slot("{bar"));
        assert!(Backend::new(
            &RedisTarget::Sentinel {
                sentinels: vec![],
                master_name: "m".into(),
                username: None,
                password: None,
                sentinel_password: None,
            }
            .into(),
            Duration::from_secs(1)
        )
        .is_err());
    }
}
