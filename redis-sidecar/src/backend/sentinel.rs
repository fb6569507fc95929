//! Redis Sentinel: its client, and asking the sentinels which node is the
//! primary now, until an error says it may have moved.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, ErrorKind, RedisError, RedisResult, TlsCertificates};
use tokio::sync::{Mutex, RwLock};

use super::pool::Lanes;
use super::Mode;

/// The primary that the sentinels at `sentinels` name `master_name`;
/// `username` and `password` are the Redis nodes', `sentinel_password` the
/// sentinels' own, `certificates` (when given) turns TLS on to the nodes.
pub(super) fn mode(
    sentinels: &[String],
    master_name: &str,
    username: Option<&str>,
    password: Option<&str>,
    sentinel_password: Option<&str>,
    certificates: Option<&TlsCertificates>,
) -> Result<Mode, String> {
    if sentinels.is_empty() || master_name.is_empty() {
        return Err("sentinel mode needs sentinel addresses and a master name".into());
    }
    let addrs = sentinels
        .iter()
        .map(|s| parse_host_port(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder =
        SentinelClientBuilder::new(addrs, master_name.to_string(), SentinelServerType::Master)
            .map_err(|e| format!("sentinel: {e}"))?;
    if let Some(username) = username {
        builder = builder.set_client_to_redis_username(username.to_string());
    }
    if let Some(password) = password {
        builder = builder.set_client_to_redis_password(password.to_string());
    }
    if let Some(password) = sentinel_password {
        builder = builder.set_client_to_sentinel_password(password.to_string());
    }
    if let Some(certs) = certificates {
        builder = builder
            .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
            .set_client_to_redis_certificates(certs.clone());
    }
    Ok(Mode::Sentinel {
        sentinel: Mutex::new(builder.build().map_err(|e| format!("sentinel: {e}"))?),
        primary: RwLock::new(None),
    })
}

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
