//! The Redis deployment the store talks to: one server, a primary managed
//! by Sentinel, or a Cluster. Replication, failover and sharding are Redis's
//! own; this module only finds the node to talk to, with the `redis` crate's
//! clients for each mode.

use std::future::Future;
use std::time::Duration;

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
use tokio::sync::{Mutex, OnceCell, RwLock};

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

/// Which of the two connections: look-ups and reads, or the writes that
/// must reach a replica. They are apart because `WAIT` blocks its
/// connection until replicas answer, and look-ups must not queue behind it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Reads,
    Durable,
}

/// Two connections to one place, made on first use.
struct Lanes<C> {
    reads: OnceCell<C>,
    durable: OnceCell<C>,
}

impl<C> Default for Lanes<C> {
    fn default() -> Self {
        Lanes {
            reads: OnceCell::new(),
            durable: OnceCell::new(),
        }
    }
}

impl<C> Lanes<C> {
    fn lane(&self, lane: Lane) -> &OnceCell<C> {
        match lane {
            Lane::Reads => &self.reads,
            Lane::Durable => &self.durable,
        }
    }
}

enum Mode {
    Standalone {
        client: redis::Client,
        lanes: Lanes<ConnectionManager>,
    },
    Sentinel {
        sentinel: Mutex<SentinelClient>,
        /// The primary (a client for it, and its connections), until an
        /// error says it may have moved.
        primary: RwLock<Option<(redis::Client, std::sync::Arc<Lanes<ConnectionManager>>)>>,
    },
    Cluster {
        client: ClusterClient,
        lanes: Lanes<ClusterConnection>,
    },
}

/// The store's way to Redis. Connections are made on first use, so the
/// sidecar starts (and reports not-ready) while Redis is still down.
pub struct Backend {
    mode: Mode,
    timeout: Duration,
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
                lanes: Lanes::default(),
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
                    lanes: Lanes::default(),
                }
            }
        };
        Ok(Backend { mode, timeout })
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1)
    }

    /// `lane`'s connection to one server, made on first use.
    async fn single(
        &self,
        client: &redis::Client,
        lanes: &Lanes<ConnectionManager>,
        lane: Lane,
    ) -> RedisResult<Conn> {
        let conn = lanes
            .lane(lane)
            .get_or_try_init(|| {
                ConnectionManager::new_with_config(client.clone(), self.manager_config())
            })
            .await?;
        Ok(Conn::Single(conn.clone()))
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

    /// A connection to the node that serves the store now.
    pub async fn connection(&self, lane: Lane) -> RedisResult<Conn> {
        match &self.mode {
            Mode::Standalone { client, lanes } => self.single(client, lanes, lane).await,
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
                                let known = (client, std::sync::Arc::new(Lanes::default()));
                                *slot = Some(known.clone());
                                known
                            }
                        }
                    }
                };
                self.single(&client, &lanes, lane).await
            }
            Mode::Cluster { client, lanes } => {
                let conn = lanes
                    .lane(lane)
                    .get_or_try_init(|| client.get_async_connection())
                    .await?;
                Ok(Conn::Cluster(conn.clone()))
            }
        }
    }

    /// How many replicas the primary that has `key` has connected now
    /// (`ROLE`, routed as [`Backend::wait_for_replicas`]).
    pub async fn connected_replicas(&self, conn: &mut Conn, key: &str) -> RedisResult<u32> {
        let value = Self::on_primary_of(conn, key, &redis::cmd("ROLE")).await?;
        // A primary answers ["master", offset, [[ip, port, offset], ...]].
        let replicas = match value {
            Value::Array(parts) => match parts.get(2) {
                Some(Value::Array(replicas)) => replicas.len(),
                _ => 0,
            },
            _ => 0,
        };
        Ok(u32::try_from(replicas).unwrap_or(u32::MAX))
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
        let mut conn = self.connection(Lane::Reads).await?;
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
