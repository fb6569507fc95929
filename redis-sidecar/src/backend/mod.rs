//! The Redis deployment the store talks to: one server, a primary managed
//! by Sentinel, or a Cluster. Replication, failover and sharding are Redis's
//! own; this module only finds the node to talk to, with the `redis` crate's
//! clients for each mode.
//!
//! One file per concern: `tls` (the trust for `rediss://`), `sentinel` (its
//! client, and asking it for the primary), `cluster` (its client, and a
//! key's hash slot), `pool` (the connections to one place, and the pool the
//! writes that `WAIT` draw from) and `replicas` (how many replicas each
//! primary has connected, and `WAIT` itself). This file holds the
//! [`Backend`], where Redis is, and the connection type they all share.

mod cluster;
mod pool;
mod replicas;
mod sentinel;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::sentinel::SentinelClient;
use redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, TlsCertificates, Value,
};
use tokio::sync::{Mutex, RwLock};

pub use cluster::hash_slot;
use pool::Lanes;
pub use pool::{DurableConn, DURABLE_CONNECTIONS};
use replicas::ReplicaCache;
pub use replicas::REPLICA_COUNT_TTL;

/// The target of the backend's log lines: this module's, as before the
/// backend was split into files (log filters and searches name it).
const LOG_TARGET: &str = module_path!();

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

impl Backend {
    pub fn new(connect: &RedisConnect, timeout: Duration) -> Result<Backend, String> {
        let certificates = tls::certificates(connect);
        let mode = match &connect.target {
            RedisTarget::Standalone { url } => standalone(url, certificates.as_ref())?,
            RedisTarget::Sentinel {
                sentinels,
                master_name,
                username,
                password,
                sentinel_password,
            } => sentinel::mode(
                sentinels,
                master_name,
                username.as_deref(),
                password.as_deref(),
                sentinel_password.as_deref(),
                certificates.as_ref(),
            )?,
            RedisTarget::Cluster { nodes } => cluster::mode(nodes, certificates.as_ref(), timeout)?,
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

    /// The place that serves the store now: how to connect to it, and its
    /// connections.
    async fn place(&self) -> RedisResult<(Maker, Arc<Lanes>)> {
        match &self.mode {
            Mode::Standalone { client, lanes } => {
                Ok((Maker::Single(client.clone()), lanes.clone()))
            }
            Mode::Sentinel { sentinel, primary } => {
                let (client, lanes) = sentinel::primary(sentinel, primary, self.timeout).await?;
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

/// One server: a client for its URL, with `certificates` trusted for TLS
/// when given.
fn standalone(url: &str, certificates: Option<&TlsCertificates>) -> Result<Mode, String> {
    Ok(Mode::Standalone {
        client: match certificates {
            Some(certs) => redis::Client::build_with_tls(url, certs.clone()),
            None => redis::Client::open(url),
        }
        .map_err(|e| format!("redis url: {e}"))?,
        lanes: Arc::default(),
    })
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

#[cfg(test)]
mod tests {
    use super::sentinel::parse_host_port;
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
