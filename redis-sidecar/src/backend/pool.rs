//! The connections to one place (a primary, or a Cluster): one shared
//! multiplexed connection, and a pool for the writes that `WAIT`, since
//! `WAIT` blocks the connection it is sent on.

use std::sync::{Arc, PoisonError};

use redis::{ErrorKind, RedisError, RedisResult};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use super::{Backend, Conn};

/// The most connections one place (a primary, or a Cluster) holds for the
/// writes that wait for replicas. `WAIT` blocks its whole connection until
/// the replicas answer or it times out, so such a write has a connection to
/// itself for its duration: one write's `WAIT` never delays another's.
/// Connections are made as concurrency asks and kept for reuse.
pub const DURABLE_CONNECTIONS: usize = 32;

/// The connections to one place: a shared multiplexed one for look-ups and
/// writes that wait for no replica, and a pool for the writes that do.
#[derive(Default)]
pub(super) struct Lanes {
    pub(super) reads: OnceCell<Conn>,
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

impl Backend {
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
}
