//! Writes that must survive a failover: each waits (Redis `WAIT`) for the
//! replicas [`Durability`] asks for, or as many as are connected, and
//! counts the ones accepted with fewer.

use std::time::Duration;

use redis::RedisResult;

use crate::backend::{Conn, DurableConn};

use super::{Store, StoreError, LOG_TARGET};

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

/// A write that must survive a failover, under way.
pub(super) struct DurableWrite {
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
    pub(super) fn conn(&mut self) -> &mut Conn {
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

impl Store {
    /// Starts a write to `key` that must survive a failover: decides, from
    /// the connected replica count the backend keeps (never asking Redis
    /// per write), how many replicas to `WAIT` for, and the connection to
    /// write on — one of its own when it will `WAIT`, since `WAIT` blocks
    /// its connection. See [`Store::finish_durable`].
    pub(super) async fn begin_durable(&self, key: &str) -> Result<DurableWrite, StoreError> {
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
    pub(super) async fn step<T>(
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
    pub(super) async fn finish_durable(
        &self,
        write: &mut DurableWrite,
        key: &str,
    ) -> Result<(), StoreError> {
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
                target: LOG_TARGET,
                acknowledged,
                connected,
                wanted,
                total = self.under_replicated_writes.get(),
                "write accepted with fewer replicas than required: too few are connected"
            );
        }
    }
}
