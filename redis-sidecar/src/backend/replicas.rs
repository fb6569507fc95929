//! How many replicas each primary has connected (asked with `ROLE`, kept
//! for a second so a durable write never asks Redis first), and `WAIT`
//! for them after a write.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, ErrorKind, RedisError, RedisResult, Value};
use tokio::sync::Mutex;

use super::cluster::{hash_slot, slot_ranges};
use super::{Backend, Conn, LOG_TARGET};

/// How long a count of connected replicas is trusted before it is asked
/// again (`ROLE`): a durable write asks the count, never Redis, first.
pub const REPLICA_COUNT_TTL: Duration = Duration::from_secs(1);

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
pub(super) struct ReplicaCache {
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

impl Backend {
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
                tracing::debug!(target: LOG_TARGET, error = %e, "connected replicas unknown");
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
}
