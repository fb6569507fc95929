//! Redis's `maxmemory-policy`, judged at start-up.
//!
//! User records have no TTL and are the only place a revocation (the token
//! version) lives: a Redis that evicts them under memory pressure turns
//! memory pressure into store trouble for every session of the user (each
//! answers 503 until the record is back; see `lua/lookup.lua`). So an
//! `allkeys-*` policy, which may evict any key, is refused unless the
//! operator says otherwise. A `volatile-*` policy evicts only keys with a
//! TTL: sessions and indexes (users are logged out under memory pressure),
//! never user records or the revocation feed, so it is allowed with a
//! warning. `noeviction` (Redis's default) refuses writes when full: 503s,
//! nothing lost.

/// How a policy treats the store's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// `noeviction`.
    Never,
    /// `volatile-*`: keys with a TTL only (sessions, never users).
    KeysWithTtl,
    /// `allkeys-*`: any key, user records included.
    AnyKey,
    /// A policy this sidecar does not know.
    Unknown,
}

pub fn classify(policy: &str) -> Eviction {
    let policy = policy.to_ascii_lowercase();
    if policy == "noeviction" {
        Eviction::Never
    } else if policy.starts_with("volatile-") {
        Eviction::KeysWithTtl
    } else if policy.starts_with("allkeys-") {
        Eviction::AnyKey
    } else {
        Eviction::Unknown
    }
}

/// The flag that downgrades the refusal to a warning.
pub const ALLOW_FLAG: &str = "--allow-evicting-redis";

/// Judges the policies of the primaries (`(node, policy)`): `Err` with the
/// reason to refuse to start, or the warnings to log.
pub fn judge(policies: &[(String, String)], allow_evicting: bool) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    for (node, policy) in policies {
        match classify(policy) {
            Eviction::Never => {}
            Eviction::KeysWithTtl => warnings.push(format!(
                "Redis {node} has maxmemory-policy {policy}: under memory pressure it evicts \
                 sessions (their keys have a TTL), logging users out; user records have no TTL \
                 and are kept. Set maxmemory-policy noeviction (writes then fail with 503 when \
                 memory is full, and nothing is lost)"
            )),
            Eviction::AnyKey | Eviction::Unknown => {
                let problem = format!(
                    "Redis {node} has maxmemory-policy {policy}: under memory pressure it may \
                     evict user records, and a session whose user record is gone answers 503 \
                     (store trouble) until the record is back; once it is made again, the \
                     user's older sessions are ended. Set maxmemory-policy noeviction on every \
                     primary and replica (redis.conf, or CONFIG SET maxmemory-policy noeviction \
                     then CONFIG REWRITE), or, to run anyway, start with {ALLOW_FLAG}"
                );
                if allow_evicting {
                    warnings.push(format!("{problem} (given: running anyway)"));
                } else {
                    return Err(problem);
                }
            }
        }
    }
    Ok(warnings)
}

/// Whether a failed `CONFIG GET` means Redis could not be reached (ask
/// again later), rather than that it refused the command (ACL, a managed
/// Redis without CONFIG: warn and go on).
pub fn is_unreachable(error: &redis::RedisError) -> bool {
    use redis::ErrorKind;
    error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_timeout()
        || matches!(
            error.kind(),
            ErrorKind::ClusterDown
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::MasterDown
                | ErrorKind::TryAgain
                | ErrorKind::BusyLoadingError
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(policy: &str) -> Vec<(String, String)> {
        vec![("primary".to_string(), policy.to_string())]
    }

    #[test]
    fn evicting_any_key_is_refused_unless_allowed() {
        assert_eq!(judge(&on("noeviction"), false), Ok(vec![]));
        for policy in [
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "something-new",
        ] {
            let refusal = judge(&on(policy), false).unwrap_err();
            assert!(refusal.contains("maxmemory-policy"), "{refusal}");
            assert!(refusal.contains(policy), "{refusal}");
            assert!(refusal.contains("noeviction"), "{refusal}");
            assert!(refusal.contains(ALLOW_FLAG), "{refusal}");
            assert_eq!(judge(&on(policy), true).unwrap().len(), 1);
        }
        for policy in [
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
        ] {
            assert_eq!(judge(&on(policy), false).unwrap().len(), 1, "{policy}");
        }
        // One evicting primary of several is enough to refuse.
        let cluster = [on("noeviction"), on("allkeys-lru")].concat();
        assert!(judge(&cluster, false).is_err());
    }
}
