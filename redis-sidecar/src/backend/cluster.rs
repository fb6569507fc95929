//! Redis Cluster: its client, the hash slot of a key and the slot ranges
//! of `CLUSTER SLOTS` (`WAIT` and `ROLE` go to the primary of a key's slot).

use std::sync::Arc;
use std::time::Duration;

use redis::cluster::ClusterClientBuilder;
use redis::{ErrorKind, RedisError, RedisResult, TlsCertificates, Value};

use super::Mode;

/// A Cluster found from any of `nodes`, with `certificates` trusted for TLS
/// when given.
pub(super) fn mode(
    nodes: &[String],
    certificates: Option<&TlsCertificates>,
    timeout: Duration,
) -> Result<Mode, String> {
    if nodes.is_empty() {
        return Err("cluster mode needs at least one node".into());
    }
    let mut builder = ClusterClientBuilder::new(nodes.to_vec());
    if let Some(certs) = certificates {
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
    Ok(Mode::Cluster {
        client,
        lanes: Arc::default(),
    })
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

/// The slot ranges of `CLUSTER SLOTS`' reply: `[[first, last, primary,
/// replicas...], ...]`.
pub(super) fn slot_ranges(value: &Value) -> RedisResult<Vec<(u16, u16)>> {
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
