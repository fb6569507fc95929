//! Redis Sentinel: asking the sentinels which node is the primary
//! now, until an error says it may have moved.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::sentinel::SentinelClient;
use redis::{ConnectionAddr, ErrorKind, RedisError, RedisResult};
use tokio::sync::{Mutex, RwLock};

use super::pool::Lanes;

/// The primary (a client for it, and its connections) as the sentinels
/// last named it; asked again when not known (at first, or after
/// [`super::Backend::failed`] forgot it).
pub(super) async fn primary(
    sentinel: &Mutex<SentinelClient>,
    primary: &RwLock<Option<(redis::Client, Arc<Lanes>)>>,
    timeout: Duration,
) -> RedisResult<(redis::Client, Arc<Lanes>)> {
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
                    let client = within(timeout * 4, async {
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
    Ok((client, lanes))
}

pub(super) fn parse_host_port(value: &str) -> Result<ConnectionAddr, String> {
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
