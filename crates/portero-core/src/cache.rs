//! Per-worker caches and the revocation feed that keeps them honest.
//!
//! - **Verified tokens**: a bearer token's bytes → its verified claims,
//!   until the earlier of its `exp` and a TTL. A hit skips the RS256
//!   verification; the time checks run again on every hit.
//! - **Session views**: the sidecar's look-up answer (session + user), for a
//!   short TTL (30 s by default), under the credential that reached it (see
//!   [`SessionKey`]). A hit skips the callout, and for a cookie the
//!   decryption too; binding, roles and expiry are still checked on every
//!   request.
//! - **Revocation feed**: the sidecar appends every logout, ban, role change
//!   and revocation to a Redis Stream; each worker polls it on a tick and
//!   evicts what it names. If the feed has not been read for longer than a
//!   bound, cached views are not served: the filter asks the sidecar (fail
//!   towards the store, never towards stale trust).
//!
//! Both maps are keyed by the credential's own bytes, not a digest of them:
//! a warm request runs no cryptography at all (no SHA-256 for a key, no AES
//! to open a cookie seen before, no RSA). The maps' hasher is the fast
//! non-cryptographic one of `hashbrown`; a hit compares the full bytes, so a
//! collision costs a probe, never a wrong answer. The caches live in the
//! worker's memory, as the views and claims they hold already did.
//!
//! Plain Rust: each shell owns one [`EdgeCache`] per worker and per
//! configuration (new keys, new caches) and feeds it the clock and the
//! feed's replies.

use std::num::NonZeroUsize;
use std::rc::Rc;

use lru::LruCache;
use portero_wire::{AccessClaims, RevocationFeed, SessionView};

use crate::token::KeySet;

/// What a session view is cached under: the credential that names the
/// session, as it arrived. A sealed cookie value opens to the same session
/// id for as long as this configuration's keys do (the cache goes with the
/// configuration), so its bytes can stand for the id without opening it; a
/// verified token's session handle is its own key. The tag keeps the two
/// spaces apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey(Box<[u8]>);

impl SessionKey {
    /// The view reached by a session cookie, keyed by its sealed value.
    pub fn of_sealed_cookie(value: &str) -> Self {
        Self::tagged(b'c', value)
    }

    /// The view reached by a bearer token's session handle.
    pub fn of_handle(handle: &str) -> Self {
        Self::tagged(b'h', handle)
    }

    fn tagged(tag: u8, value: &str) -> Self {
        let mut bytes = Vec::with_capacity(1 + value.len());
        bytes.push(tag);
        bytes.extend_from_slice(value.as_bytes());
        Self(bytes.into_boxed_slice())
    }
}

/// Sizes and times of the caches (validated by `config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Entries in the verified-token cache; 0 turns it off.
    pub token_capacity: usize,
    pub token_ttl_seconds: u64,
    /// Entries in the session-view cache.
    pub session_capacity: usize,
    /// How long a view is served; 0 turns the session cache (and the feed) off.
    pub session_ttl_seconds: u64,
    pub feed_poll_interval_ms: u64,
    /// Cached views are not served when the feed was last read longer ago.
    pub feed_max_staleness_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            token_capacity: 10_000,
            token_ttl_seconds: 300,
            session_capacity: 10_000,
            session_ttl_seconds: 30,
            // Twice a second: a revocation then reaches every worker within
            // about half a second (measured p99 at 1 s was 0.97–1.00 s).
            feed_poll_interval_ms: 500,
            feed_max_staleness_ms: 3000,
        }
    }
}

impl CacheConfig {
    pub fn sessions_enabled(&self) -> bool {
        self.session_capacity > 0 && self.session_ttl_seconds > 0
    }
}

struct CachedToken {
    claims: AccessClaims,
    /// Unix seconds; not served from then on.
    until: u64,
}

struct CachedSession {
    /// Shared with the requests it answers: a hit copies no strings.
    view: Rc<SessionView>,
    fetched_at_us: u64,
}

/// Where this worker is in the revocation feed.
#[derive(Debug, Default)]
struct Feed {
    cursor: Option<String>,
    /// Dispatch time of the last poll that was read successfully: every
    /// change reported before then has been applied.
    fresh_as_of_us: Option<u64>,
    /// When a poll last evicted something. A look-up started before then
    /// may carry what was just revoked, so its answer is not cached.
    last_eviction_us: u64,
    /// Dispatch time of the poll in flight, if any.
    in_flight_since_us: Option<u64>,
}

/// What one feed reply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedOutcome {
    /// Read; this many cached views were evicted. `more`: poll again now.
    Applied { evicted: usize, more: bool },
    /// The feed could not vouch for the past: every view was dropped.
    Reset,
    /// No usable answer; staleness grows until a poll succeeds.
    Failed,
}

/// One worker's caches.
pub struct EdgeCache {
    config: CacheConfig,
    /// Verified tokens, by the token's bytes.
    tokens: Option<LruCache<Box<str>, CachedToken>>,
    sessions: Option<LruCache<SessionKey, CachedSession>>,
    feed: Feed,
    /// The sidecar's signing keys, as last fetched (see [`crate::jwks`]).
    fetched_keys: KeySet,
}

impl EdgeCache {
    pub fn new(config: &CacheConfig) -> Self {
        let tokens = NonZeroUsize::new(config.token_capacity).map(LruCache::new);
        let sessions = if config.sessions_enabled() {
            NonZeroUsize::new(config.session_capacity).map(LruCache::new)
        } else {
            None
        };
        Self {
            config: config.clone(),
            tokens,
            sessions,
            feed: Feed::default(),
            fetched_keys: KeySet::default(),
        }
    }

    // ── the sidecar's signing keys ──────────────────────────────────────

    /// The keys last fetched from the sidecar (empty before the first fetch).
    pub fn fetched_keys(&self) -> &KeySet {
        &self.fetched_keys
    }

    /// Replaces the fetched keys; whether the key ids changed.
    pub fn set_fetched_keys(&mut self, keys: KeySet) -> bool {
        let changed = keys.kids() != self.fetched_keys.kids();
        self.fetched_keys = keys;
        changed
    }

    // ── verified tokens ─────────────────────────────────────────────────

    /// The claims of a token verified before, if still cached at `now`.
    pub fn token(&mut self, token: &str, now: u64) -> Option<AccessClaims> {
        let tokens = self.tokens.as_mut()?;
        match tokens.get(token) {
            Some(entry) if now < entry.until => Some(entry.claims.clone()),
            Some(_) => {
                tokens.pop(token);
                None
            }
            None => None,
        }
    }

    /// Remembers a verified token until the earlier of `valid_until` (its
    /// `exp` with leeway) and the TTL.
    pub fn insert_token(&mut self, token: &str, claims: AccessClaims, valid_until: u64, now: u64) {
        let until = valid_until.min(now.saturating_add(self.config.token_ttl_seconds));
        if let Some(tokens) = self.tokens.as_mut() {
            if until > now {
                tokens.put(token.into(), CachedToken { claims, until });
            }
        }
    }

    pub fn tokens_enabled(&self) -> bool {
        self.tokens.is_some()
    }

    // ── session views ───────────────────────────────────────────────────

    pub fn sessions_enabled(&self) -> bool {
        self.sessions.is_some()
    }

    /// Whether the feed was read recently enough to trust cached views.
    pub fn feed_is_fresh(&self, now_us: u64) -> bool {
        self.feed.fresh_as_of_us.is_some_and(|fresh| {
            now_us.saturating_sub(fresh) <= self.config.feed_max_staleness_ms.saturating_mul(1000)
        })
    }

    /// A cached view that may answer for the sidecar now: young enough, the
    /// feed fresh, and the session and its access token still alive.
    pub fn session(&mut self, key: &SessionKey, now_us: u64) -> Option<Rc<SessionView>> {
        if !self.feed_is_fresh(now_us) {
            return None;
        }
        let ttl_us = self.config.session_ttl_seconds.saturating_mul(1_000_000);
        let now = now_us / 1_000_000;
        let sessions = self.sessions.as_mut()?;
        let entry = sessions.get(key)?;
        // Served views do not renew the idle expiry in Redis; asking again
        // by half the idle time left keeps an active session alive.
        let fetched = entry.fetched_at_us / 1_000_000;
        let renew_by = fetched + entry.view.idle_expires_at.saturating_sub(fetched) / 2;
        let usable = now_us.saturating_sub(entry.fetched_at_us) < ttl_us
            && now < renew_by
            && entry.view.expires_at > now
            && entry.view.idle_expires_at > now
            && entry.view.access_expires_at > now;
        if usable {
            Some(Rc::clone(&entry.view))
        } else {
            sessions.pop(key);
            None
        }
    }

    /// Caches a look-up's answer, unless the look-up started before a
    /// revocation this worker has since applied.
    pub fn insert_session(
        &mut self,
        key: SessionKey,
        view: impl Into<Rc<SessionView>>,
        dispatched_at_us: u64,
    ) {
        if dispatched_at_us < self.feed.last_eviction_us {
            return;
        }
        if let Some(sessions) = self.sessions.as_mut() {
            sessions.put(
                key,
                CachedSession {
                    view: view.into(),
                    fetched_at_us: dispatched_at_us,
                },
            );
        }
    }

    pub fn evict_session(&mut self, key: &SessionKey) {
        if let Some(sessions) = self.sessions.as_mut() {
            sessions.pop(key);
        }
    }

    /// Evicts every view of this user or of this session handle.
    fn evict_matching(&mut self, user_id: Option<&str>, handle: Option<&str>) -> usize {
        let Some(sessions) = self.sessions.as_mut() else {
            return 0;
        };
        let doomed: Vec<SessionKey> = sessions
            .iter()
            .filter(|(_, entry)| {
                user_id.is_some_and(|u| entry.view.user_id == u)
                    || handle.is_some_and(|h| entry.view.handle == h)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in &doomed {
            sessions.pop(key);
        }
        doomed.len()
    }

    // ── revocation feed ─────────────────────────────────────────────────

    /// The feed path to poll now, if a poll is due: none in flight (or the
    /// one in flight is long overdue) and the session cache is on.
    pub fn feed_poll(&mut self, now_us: u64, timeout_ms: u64) -> Option<String> {
        if !self.sessions_enabled() {
            return None;
        }
        if let Some(since) = self.feed.in_flight_since_us {
            if now_us.saturating_sub(since) < timeout_ms.saturating_mul(2000) {
                return None;
            }
        }
        self.feed.in_flight_since_us = Some(now_us);
        Some(match &self.feed.cursor {
            Some(cursor) => format!("{}?after={cursor}", portero_wire::REVOCATIONS_PATH),
            None => portero_wire::REVOCATIONS_PATH.to_string(),
        })
    }

    /// Applies the feed's reply (`status: None`: no answer).
    pub fn on_feed_reply(&mut self, status: Option<u16>, body: &[u8], now_us: u64) -> FeedOutcome {
        let Some(dispatched) = self.feed.in_flight_since_us.take() else {
            return FeedOutcome::Failed;
        };
        let feed = match (status, serde_json::from_slice::<RevocationFeed>(body)) {
            (Some(200), Ok(feed)) if is_cursor(&feed.cursor) => feed,
            _ => return FeedOutcome::Failed,
        };
        // The first reply starts the feed at its end: it cannot vouch for
        // views cached before (a session ended between their look-up and
        // this reply is in no later reply), so they go, as on a reset.
        let first = self.feed.cursor.is_none();
        self.feed.cursor = Some(feed.cursor);
        self.feed.fresh_as_of_us = Some(dispatched);
        if first {
            let evicted = self.sessions.as_ref().map_or(0, |s| s.len());
            if let Some(sessions) = self.sessions.as_mut() {
                sessions.clear();
            }
            self.feed.last_eviction_us = now_us;
            return FeedOutcome::Applied {
                evicted,
                more: feed.more,
            };
        }
        if feed.reset {
            if let Some(sessions) = self.sessions.as_mut() {
                sessions.clear();
            }
            self.feed.last_eviction_us = now_us;
            return FeedOutcome::Reset;
        }
        let mut evicted = 0;
        for event in &feed.events {
            evicted +=
                self.evict_matching(event.user_id.as_deref(), event.session_handle.as_deref());
        }
        if !feed.events.is_empty() {
            self.feed.last_eviction_us = now_us;
        }
        FeedOutcome::Applied {
            evicted,
            more: feed.more,
        }
    }
}

/// A stream cursor `ms-seq`, as the sidecar hands them out.
fn is_cursor(value: &str) -> bool {
    value.split_once('-').is_some_and(|(ms, seq)| {
        !ms.is_empty()
            && !seq.is_empty()
            && ms.len() <= 20
            && seq.len() <= 20
            && ms.bytes().chain(seq.bytes()).all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use portero_wire::RevocationEvent;

    const S: u64 = 1_000_000;
    const NOW: u64 = 1_800_000_000;

    fn claims(exp: u64) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: "u".into(),
            sid: "s".into(),
            jti: "j".into(),
            iat: 0,
            nbf: 0,
            exp,
            ver: 0,
        }
    }

    fn view(user: &str, handle: &str) -> SessionView {
        SessionView {
            handle: handle.into(),
            user_id: user.into(),
            email: String::new(),
            roles: vec![],
            permissions: vec![],
            created_at: NOW,
            last_seen_at: NOW,
            expires_at: NOW + 3600,
            idle_expires_at: NOW + 600,
            client_ip: String::new(),
            user_agent: String::new(),
            access_token: "t".into(),
            access_jti: "j".into(),
            access_expires_at: NOW + 300,
            rotations: 0,
            access_token_presented: true,
        }
    }

    fn feed(cursor: &str, events: &[(&str, &str)], reset: bool) -> Vec<u8> {
        serde_json::to_vec(&RevocationFeed {
            cursor: cursor.into(),
            events: events
                .iter()
                .map(|(u, h)| RevocationEvent {
                    user_id: (!u.is_empty()).then(|| u.to_string()),
                    session_handle: (!h.is_empty()).then(|| h.to_string()),
                })
                .collect(),
            reset,
            more: false,
        })
        .unwrap()
    }

    /// A cache whose feed has just been read.
    fn fresh_cache(config: &CacheConfig) -> EdgeCache {
        let mut cache = EdgeCache::new(config);
        assert_eq!(
            cache.feed_poll(NOW * S, 500).as_deref(),
            Some("/v1/revocations")
        );
        let outcome = cache.on_feed_reply(Some(200), &feed("5-0", &[], false), NOW * S);
        assert_eq!(
            outcome,
            FeedOutcome::Applied {
                evicted: 0,
                more: false
            }
        );
        cache
    }

    #[test]
    fn token_cache_keeps_until_the_earlier_of_exp_and_ttl() {
        let mut cache = EdgeCache::new(&CacheConfig::default());
        cache.insert_token("a.b.c", claims(NOW + 60), NOW + 60, NOW);
        assert!(cache.token("a.b.c", NOW + 59).is_some());
        assert!(cache.token("a.b.d", NOW + 59).is_none(), "the bytes decide");
        assert!(cache.token("a.b.c", NOW + 60).is_none(), "expired: gone");
        assert!(cache.token("a.b.c", NOW).is_none(), "and stays gone");
        cache.insert_token("long", claims(NOW + 9999), NOW + 9999, NOW);
        assert!(cache.token("long", NOW + 299).is_some());
        assert!(cache.token("long", NOW + 300).is_none(), "TTL 300 s");
        // Already expired: not cached.
        cache.insert_token("old", claims(NOW - 1), NOW - 1, NOW);
        assert!(cache.token("old", NOW - 5).is_none());
    }

    #[test]
    fn caches_are_bounded_and_can_be_off() {
        let config = CacheConfig {
            token_capacity: 3,
            session_capacity: 2,
            ..CacheConfig::default()
        };
        let mut cache = fresh_cache(&config);
        for i in 0..10 {
            cache.insert_token(&i.to_string(), claims(NOW + 60), NOW + 60, NOW);
            cache.insert_session(
                SessionKey::of_sealed_cookie(&i.to_string()),
                view("u", "h"),
                NOW * S,
            );
        }
        assert_eq!(cache.tokens.as_ref().unwrap().len(), 3);
        assert_eq!(cache.sessions.as_ref().unwrap().len(), 2);
        assert!(cache.token("9", NOW).is_some());
        assert!(cache.token("0", NOW).is_none(), "least recent evicted");

        let off = EdgeCache::new(&CacheConfig {
            token_capacity: 0,
            session_ttl_seconds: 0,
            ..CacheConfig::default()
        });
        assert!(!off.tokens_enabled() && !off.sessions_enabled());
        let mut off = off;
        assert_eq!(off.feed_poll(NOW * S, 500), None, "no cache, no feed");
    }

    #[test]
    fn session_views_need_a_fresh_feed_a_young_entry_and_a_live_session() {
        let mut cache = EdgeCache::new(&CacheConfig::default());
        let key = SessionKey::of_sealed_cookie("id");
        cache.insert_session(key.clone(), view("u", "h"), NOW * S);
        assert!(cache.session(&key, NOW * S).is_none(), "feed never read");

        let mut cache = fresh_cache(&CacheConfig::default());
        cache.insert_session(key.clone(), view("u", "h"), NOW * S);
        assert!(cache.session(&key, NOW * S + 1).is_some());
        assert!(
            cache.session(&key, (NOW + 3) * S).is_some(),
            "within staleness"
        );
        assert!(
            cache.session(&key, (NOW + 4) * S).is_none(),
            "feed not read for 4 s > 3 s bound"
        );

        let mut cache = fresh_cache(&CacheConfig {
            feed_max_staleness_ms: 60_000,
            ..CacheConfig::default()
        });
        cache.insert_session(key.clone(), view("u", "h"), NOW * S);
        assert!(cache.session(&key, (NOW + 29) * S).is_some());
        assert!(cache.session(&key, (NOW + 30) * S).is_none(), "TTL 30 s");

        // Half the idle time left, then a look-up renews it in Redis.
        let mut v = view("u", "h");
        v.idle_expires_at = NOW + 4;
        cache.insert_session(key.clone(), v, NOW * S);
        assert!(cache.session(&key, (NOW + 1) * S).is_some());
        assert!(cache.session(&key, (NOW + 2) * S).is_none());

        for (field, absolute) in [("absolute", true), ("token", false)] {
            let mut v = view("u", "h");
            if absolute {
                v.expires_at = NOW + 1;
            } else {
                v.access_expires_at = NOW + 1;
            }
            cache.insert_session(key.clone(), v, NOW * S);
            assert!(cache.session(&key, NOW * S).is_some(), "{field}");
            assert!(cache.session(&key, (NOW + 1) * S).is_none(), "{field}");
        }
    }

    #[test]
    fn feed_events_evict_by_user_and_by_session() {
        let mut cache = fresh_cache(&CacheConfig::default());
        let keys: Vec<SessionKey> = (0..4)
            .map(|i| SessionKey::of_sealed_cookie(&i.to_string()))
            .collect();
        cache.insert_session(keys[0].clone(), view("ada", "h0"), NOW * S);
        cache.insert_session(keys[1].clone(), view("ada", "h1"), NOW * S);
        cache.insert_session(keys[2].clone(), view("alan", "h2"), NOW * S);
        cache.insert_session(keys[3].clone(), view("alan", "h3"), NOW * S);
        let t = NOW * S + 1000;
        assert_eq!(
            cache.feed_poll(t, 500).as_deref(),
            Some("/v1/revocations?after=5-0")
        );
        assert_eq!(cache.feed_poll(t, 500), None, "one poll at a time");
        let outcome = cache.on_feed_reply(
            Some(200),
            &feed("6-0", &[("ada", ""), ("", "h3")], false),
            t,
        );
        assert_eq!(
            outcome,
            FeedOutcome::Applied {
                evicted: 3,
                more: false
            }
        );
        assert!(cache.session(&keys[0], t).is_none());
        assert!(cache.session(&keys[1], t).is_none());
        assert!(cache.session(&keys[2], t).is_some());
        assert!(cache.session(&keys[3], t).is_none());
        // A look-up dispatched before that eviction is not cached...
        cache.insert_session(keys[0].clone(), view("ada", "h0"), t - 1);
        assert!(cache.session(&keys[0], t).is_none());
        // ... one dispatched after it is.
        cache.insert_session(keys[0].clone(), view("ada", "h0"), t);
        assert!(cache.session(&keys[0], t).is_some());
        assert_eq!(cache.feed.cursor.as_deref(), Some("6-0"));
    }

    #[test]
    fn a_reset_drops_everything_and_bad_replies_leave_the_feed_stale() {
        let mut cache = fresh_cache(&CacheConfig::default());
        let key = SessionKey::of_sealed_cookie("x");
        cache.insert_session(key.clone(), view("u", "h"), NOW * S);
        cache.feed_poll(NOW * S + 1, 500);
        assert_eq!(
            cache.on_feed_reply(Some(200), &feed("9-0", &[], true), NOW * S + 2),
            FeedOutcome::Reset
        );
        assert!(cache.session(&key, NOW * S + 3).is_none());

        for (status, body) in [
            (None, b"".to_vec()),
            (Some(503), feed("10-0", &[], false)),
            (Some(200), b"{".to_vec()),
            (Some(200), b"{\"cursor\":\"9-0\"}".to_vec()),
            (Some(200), feed("not-a-cursor", &[], false)),
            (Some(200), feed("1-2-3", &[], false)),
        ] {
            let mut cache = fresh_cache(&CacheConfig::default());
            cache.insert_session(key.clone(), view("u", "h"), NOW * S);
            cache.feed_poll((NOW + 1) * S, 500);
            assert_eq!(
                cache.on_feed_reply(status, &body, (NOW + 1) * S),
                FeedOutcome::Failed
            );
            assert_eq!(cache.feed.cursor.as_deref(), Some("5-0"), "cursor kept");
            assert!(
                cache.session(&key, (NOW + 3) * S).is_some(),
                "within the bound"
            );
            assert!(
                cache.session(&key, (NOW + 4) * S).is_none(),
                "past the bound: ask the sidecar"
            );
        }
        // A reply nobody asked for changes nothing.
        let mut cache = fresh_cache(&CacheConfig::default());
        assert_eq!(
            cache.on_feed_reply(Some(200), &feed("7-0", &[], false), NOW * S),
            FeedOutcome::Failed
        );
    }

    #[test]
    fn views_cached_before_the_first_feed_reply_are_dropped_by_it() {
        // A worker caches a view before its feed is read (the view is not
        // served yet); the session ends; then the first reply starts the
        // feed at its end, after that event. The view must not be trusted.
        let mut cache = EdgeCache::new(&CacheConfig::default());
        let key = SessionKey::of_sealed_cookie("early");
        cache.insert_session(key.clone(), view("u", "h"), NOW * S);
        assert!(cache.session(&key, NOW * S).is_none(), "feed not read yet");
        cache.feed_poll(NOW * S + 10, 500);
        let outcome = cache.on_feed_reply(Some(200), &feed("5-0", &[], false), NOW * S + 20);
        assert_eq!(
            outcome,
            FeedOutcome::Applied {
                evicted: 1,
                more: false
            }
        );
        assert!(cache.session(&key, NOW * S + 30).is_none());
        // A look-up dispatched before that reply is not cached either.
        cache.insert_session(key.clone(), view("u", "h"), NOW * S + 15);
        assert!(cache.session(&key, NOW * S + 30).is_none());
        cache.insert_session(key.clone(), view("u", "h"), NOW * S + 25);
        assert!(cache.session(&key, NOW * S + 30).is_some());
    }

    #[test]
    fn an_overdue_poll_is_replaced() {
        let mut cache = fresh_cache(&CacheConfig::default());
        assert!(cache.feed_poll(NOW * S, 500).is_some());
        assert!(cache.feed_poll(NOW * S + 999_000, 500).is_none());
        assert!(cache.feed_poll(NOW * S + 1_000_000, 500).is_some());
    }
}
