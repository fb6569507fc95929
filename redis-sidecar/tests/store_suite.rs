//! Every store operation against every Redis topology the sidecar supports,
//! each a real set of `redis-server` processes on loopback: one server; a
//! primary with two replicas and three sentinels; a Cluster of three
//! primaries with a replica each. One suite, run whole on each (the shape of
//! oauth2-proxy's session store tests); each topology is started once per
//! test binary and its tests run side by side under their own user ids.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use portero_integration::topology::{shared, Kind, Topology};
use portero_wire::{RevocationEvent, SessionVerdict, UserStatus};
use redis_sidecar::backend::RedisTarget;
use redis_sidecar::store::{
    random_token, CreateOutcome, Durability, IssuedToken, Lifetimes, Lookup, RotationRules,
    SessionRecord, Store, StoreError,
};

static STANDALONE: OnceLock<Mutex<Topology>> = OnceLock::new();
static SENTINEL: OnceLock<Mutex<Topology>> = OnceLock::new();
static CLUSTER: OnceLock<Mutex<Topology>> = OnceLock::new();

fn topology(kind: Kind) -> &'static Mutex<Topology> {
    match kind {
        Kind::Standalone => shared(&STANDALONE, Topology::standalone),
        Kind::Sentinel => shared(&SENTINEL, || Topology::sentinel(2, 3)),
        Kind::Cluster => shared(&CLUSTER, || Topology::cluster(3, 1)),
    }
}

fn target(topology: &Topology) -> RedisTarget {
    match topology.kind {
        Kind::Standalone => RedisTarget::Standalone {
            url: topology.standalone_url(),
        },
        Kind::Sentinel => RedisTarget::Sentinel {
            sentinels: topology.sentinel_addrs(),
            master_name: portero_integration::topology::MASTER_NAME.into(),
            username: None,
            password: None,
            sentinel_password: None,
        },
        Kind::Cluster => RedisTarget::Cluster {
            nodes: topology.cluster_urls(),
        },
    }
}

const RULES: RotationRules = RotationRules {
    grace: 0,
    exchange_max: 60,
    revoke_on_replay: false,
};
const LIFETIMES: Lifetimes = Lifetimes {
    idle: 600,
    absolute: 3600,
};

/// Runs `case` against a store on `kind`, on a runtime of its own.
fn run<F, Fut>(kind: Kind, case: F)
where
    F: FnOnce(Store, RedisTarget) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let target = {
        let topology = topology(kind).lock().unwrap_or_else(|e| e.into_inner());
        target(&topology)
    };
    let key = format!("suite-hash-key-{}", "k".repeat(32));
    // Writes wait for a replica where there are replicas.
    let durability = match kind {
        Kind::Standalone => Durability::NONE,
        Kind::Sentinel | Kind::Cluster => Durability {
            replicas: 1,
            timeout: Duration::from_millis(500),
        },
    };
    let store = Store::new(
        &target.clone().into(),
        "portero",
        key.as_bytes(),
        Duration::from_secs(2),
        durability,
    )
    .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(case(store, target));
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A user id no other test uses.
fn user() -> String {
    format!("user-{}", &random_token()[..12])
}

fn token(expires_at: u64) -> IssuedToken {
    let jti = random_token();
    IssuedToken {
        token: format!("token-{jti}"),
        jti,
        expires_at,
    }
}

/// Logs `user_id` in; returns (session id, handle, its token).
async fn login(
    store: &Store,
    user_id: &str,
    token_expires_at: u64,
) -> (String, String, IssuedToken) {
    let id = store.new_session_id(user_id);
    let handle = store.handle_of(&id);
    let now = now();
    let record = SessionRecord {
        user_id: user_id.into(),
        email: format!("{user_id}@example.com"),
        created_at: now,
        expires_at: now + LIFETIMES.absolute,
        client_ip: "203.0.113.7".into(),
        user_agent: "suite".into(),
    };
    let issued = token(token_expires_at);
    let outcome = store
        .create(
            &handle,
            &record,
            &["dev".into()],
            None,
            &issued,
            LIFETIMES,
            now,
        )
        .await
        .unwrap();
    assert_eq!(outcome, CreateOutcome::Created);
    (id, handle, issued)
}

fn refused(lookup: Lookup) -> SessionVerdict {
    match lookup {
        Lookup::Refused(verdict) => verdict,
        Lookup::Found { view, .. } => panic!("found {}", view.handle),
    }
}

async fn create_and_look_up(store: Store, _target: RedisTarget) {
    let user_id = user();
    let (_, handle, issued) = login(&store, &user_id, now() + 300).await;
    let Lookup::Found {
        view,
        needs_rotation,
        now: redis_now,
        ..
    } = store.lookup(&handle, None, &RULES).await.unwrap()
    else {
        panic!("not found");
    };
    assert_eq!(view.user_id, user_id);
    assert_eq!(view.roles, vec!["dev".to_string()]);
    assert_eq!(view.access_token, issued.token);
    assert_eq!(view.access_jti, issued.jti);
    assert!(!needs_rotation);
    assert!(view.idle_expires_at >= redis_now + LIFETIMES.idle - 1);
    assert!(!view.access_token_presented);
    // Presenting the current token marks it seen.
    let Lookup::Found { view, .. } = store
        .lookup(&handle, Some(&issued.jti), &RULES)
        .await
        .unwrap()
    else {
        panic!("not found");
    };
    assert!(view.access_token_presented);
    // An id that was never issued.
    let stranger = store.handle_of(&store.new_session_id(&user_id));
    assert_eq!(
        refused(store.lookup(&stranger, None, &RULES).await.unwrap()),
        SessionVerdict::SessionNotFound
    );
}

async fn rotation_is_single_flight_and_replays_are_refused(store: Store, _target: RedisTarget) {
    let user_id = user();
    let (_, handle, first) = login(&store, &user_id, now() - 1).await;
    let Lookup::Found {
        view,
        needs_rotation,
        ..
    } = store
        .lookup(&handle, Some(&first.jti), &RULES)
        .await
        .unwrap()
    else {
        panic!("not found");
    };
    assert!(needs_rotation);
    // Two callers saw the same expired token: one rotates, the other gets
    // the winner's token.
    let (mut a, mut b) = (view.as_ref().clone(), view.as_ref().clone());
    let (ta, tb) = (token(now() + 300), token(now() + 300));
    let ra = store
        .rotate(&mut a, &ta, Some(&first.jti), &RULES)
        .await
        .unwrap();
    let rb = store
        .rotate(&mut b, &tb, Some(&first.jti), &RULES)
        .await
        .unwrap();
    assert_eq!((ra, rb), (Ok(true), Ok(false)));
    assert_eq!(a.access_jti, ta.jti);
    assert_eq!(b.access_jti, ta.jti, "the loser gets the winner's token");
    assert_eq!(b.rotations, 1);
    // The successor's answer may have been lost: the old token still maps
    // to the session until the successor is presented.
    assert!(matches!(
        store
            .lookup(&handle, Some(&first.jti), &RULES)
            .await
            .unwrap(),
        Lookup::Found { .. }
    ));
    // The successor is presented: from now on (grace 0) the old one is a replay.
    assert!(matches!(
        store.lookup(&handle, Some(&ta.jti), &RULES).await.unwrap(),
        Lookup::Found { .. }
    ));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        refused(
            store
                .lookup(&handle, Some(&first.jti), &RULES)
                .await
                .unwrap()
        ),
        SessionVerdict::TokenReplayed
    );
    // Without revoke-on-replay the session lives on for the right token.
    assert!(matches!(
        store.lookup(&handle, Some(&ta.jti), &RULES).await.unwrap(),
        Lookup::Found { .. }
    ));
    // With it, a replay ends the session.
    let strict = RotationRules {
        revoke_on_replay: true,
        ..RULES
    };
    assert_eq!(
        refused(
            store
                .lookup(&handle, Some(&first.jti), &strict)
                .await
                .unwrap()
        ),
        SessionVerdict::TokenReplayed
    );
    assert_eq!(
        refused(store.lookup(&handle, Some(&ta.jti), &RULES).await.unwrap()),
        SessionVerdict::SessionNotFound
    );
    // Rotating an ended session is a verdict, not an error.
    let mut gone = a.clone();
    assert_eq!(
        store
            .rotate(&mut gone, &token(now() + 300), None, &RULES)
            .await
            .unwrap(),
        Err(SessionVerdict::SessionNotFound)
    );
}

async fn revoke_all_ends_every_session_and_bumps_the_version(store: Store, _target: RedisTarget) {
    let user_id = user();
    let (_, h1, _) = login(&store, &user_id, now() + 300).await;
    let (_, h2, _) = login(&store, &user_id, now() + 300).await;
    let before = store.token_version(&user_id).await.unwrap();
    let (ended, version) = store.revoke_user(&user_id).await.unwrap();
    assert_eq!(ended, 2);
    assert_eq!(version, before + 1);
    assert_eq!(store.token_version(&user_id).await.unwrap(), version);
    for h in [&h1, &h2] {
        assert_eq!(
            refused(store.lookup(h, None, &RULES).await.unwrap()),
            SessionVerdict::SessionNotFound
        );
    }
    assert!(store.sessions_of(&user_id, now()).await.unwrap().is_empty());
    // A session made after the revocation works.
    let (_, h3, _) = login(&store, &user_id, now() + 300).await;
    assert!(matches!(
        store.lookup(&h3, None, &RULES).await.unwrap(),
        Lookup::Found { .. }
    ));
    // Revoking a user never seen is a version bump with nothing ended.
    let (ended, version) = store.revoke_user(&user()).await.unwrap();
    assert_eq!((ended, version), (0, 1));
}

async fn list_and_end_sessions(store: Store, _target: RedisTarget) {
    let user_id = user();
    let (_, h1, _) = login(&store, &user_id, now() + 300).await;
    let (_, h2, _) = login(&store, &user_id, now() + 300).await;
    let mut listed: Vec<String> = store
        .sessions_of(&user_id, now())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.handle)
        .collect();
    listed.sort();
    let mut expected = vec![h1.clone(), h2.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    assert!(store.end(&h1).await.unwrap());
    assert!(!store.end(&h1).await.unwrap(), "ending is idempotent");
    let listed = store.sessions_of(&user_id, now()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].handle, h2);
    assert_eq!(listed[0].user_agent, "suite");
    assert!(store.sessions_of(&user(), now()).await.unwrap().is_empty());
}

async fn expired_sessions_are_gone(store: Store, _target: RedisTarget) {
    let user_id = user();
    let id = store.new_session_id(&user_id);
    let handle = store.handle_of(&id);
    let now = now();
    // Its absolute lifetime ends now: Redis's clock decides it is over.
    let record = SessionRecord {
        user_id: user_id.clone(),
        email: "x@example.com".into(),
        created_at: now - 10,
        expires_at: now,
        client_ip: String::new(),
        user_agent: String::new(),
    };
    let outcome = store
        .create(
            &handle,
            &record,
            &[],
            None,
            &token(now + 60),
            LIFETIMES,
            now,
        )
        .await
        .unwrap();
    assert_eq!(outcome, CreateOutcome::Created);
    assert_eq!(
        refused(store.lookup(&handle, None, &RULES).await.unwrap()),
        SessionVerdict::SessionNotFound
    );
    assert!(store.sessions_of(&user_id, now).await.unwrap().is_empty());
    // Idle timeout: Redis expires the key itself.
    let (_, idle_handle, _) = {
        let id = store.new_session_id(&user_id);
        let handle = store.handle_of(&id);
        let record = SessionRecord {
            expires_at: now + 3600,
            ..record.clone()
        };
        let short = Lifetimes {
            idle: 1,
            absolute: 3600,
        };
        store
            .create(&handle, &record, &[], None, &token(now + 60), short, now)
            .await
            .unwrap();
        (id, handle, ())
    };
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        refused(store.lookup(&idle_handle, None, &RULES).await.unwrap()),
        SessionVerdict::SessionNotFound
    );
}

async fn a_banned_user_is_refused_and_cannot_log_in(store: Store, _target: RedisTarget) {
    let user_id = user();
    let (_, handle, _) = login(&store, &user_id, now() + 300).await;
    let updated = store
        .update_user(
            &user_id,
            Some(UserStatus::Banned),
            Some(&["ops".into()]),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.status, UserStatus::Banned);
    assert_eq!(updated.roles, vec!["ops".to_string()]);
    assert_eq!(
        refused(store.lookup(&handle, None, &RULES).await.unwrap()),
        SessionVerdict::UserBanned
    );
    let outcome = try_login_as(&store, &user_id).await.unwrap();
    assert_eq!(outcome, CreateOutcome::Refused(SessionVerdict::UserBanned));
    // Unbanned, the session is usable again (a ban is not a revocation).
    store
        .update_user(&user_id, Some(UserStatus::Active), None, None)
        .await
        .unwrap();
    let Lookup::Found { view, .. } = store.lookup(&handle, None, &RULES).await.unwrap() else {
        panic!("not found after unban");
    };
    assert_eq!(
        view.roles,
        vec!["ops".to_string()],
        "roles read from the user now"
    );
    assert!(store.user(&user()).await.unwrap().is_none());
}

async fn the_revocation_feed_reads_in_order_from_a_cursor(store: Store, _target: RedisTarget) {
    let start = store.read_revocations(None, 100).await.unwrap();
    assert!(start.events.is_empty() && !start.reset);
    let users: Vec<String> = (0..3).map(|_| user()).collect();
    for u in &users {
        store
            .append_revocation(&RevocationEvent {
                user_id: Some(u.clone()),
                session_handle: None,
            })
            .await
            .unwrap();
    }
    // Other tests append too: find ours, in order, after the cursor.
    let mut cursor = start.cursor.clone();
    let mut seen = Vec::new();
    loop {
        let page = store.read_revocations(Some(&cursor), 2).await.unwrap();
        assert!(!page.reset);
        seen.extend(page.events.into_iter().filter_map(|e| e.user_id));
        cursor = page.cursor;
        if !page.more {
            break;
        }
    }
    let ours: Vec<&String> = seen.iter().filter(|u| users.contains(u)).collect();
    assert_eq!(ours, users.iter().collect::<Vec<_>>());
    // A cursor from before the stream's first entry that is not 0-0: reset.
    let far = store.read_revocations(Some("1-0"), 10).await.unwrap();
    assert!(far.reset);
}

/// A store that demands `replicas` acknowledgements within 200 ms.
fn demanding(target: &RedisTarget, replicas: u32) -> Store {
    let key = format!("suite-hash-key-{}", "k".repeat(32));
    Store::new(
        &target.clone().into(),
        "portero",
        key.as_bytes(),
        Duration::from_secs(2),
        Durability {
            replicas,
            timeout: Duration::from_millis(200),
        },
    )
    .unwrap()
}

/// A one-minute login of `user_id`, whatever the store answers.
async fn try_login_as(store: &Store, user_id: &str) -> Result<CreateOutcome, StoreError> {
    let id = store.new_session_id(user_id);
    let record = SessionRecord {
        user_id: user_id.to_string(),
        email: String::new(),
        created_at: now(),
        expires_at: now() + 60,
        client_ip: String::new(),
        user_agent: String::new(),
    };
    store
        .create(
            &store.handle_of(&id),
            &record,
            &[],
            None,
            &token(now() + 60),
            LIFETIMES,
            now(),
        )
        .await
}

async fn try_login(store: &Store) -> Result<CreateOutcome, StoreError> {
    try_login_as(store, &user()).await
}

/// More replicas required than are connected (as after a failover): the
/// write is accepted once every connected replica has it, and counted.
async fn too_few_replicas_connected_is_accepted_and_counted(store: Store, target: RedisTarget) {
    drop(store);
    let store = demanding(&target, 3);
    assert_eq!(try_login(&store).await.unwrap(), CreateOutcome::Created);
    assert_eq!(store.under_replicated_writes.get(), 1);
}

/// `redis-cli` against the primary of `kind`'s topology (in a Cluster, any
/// node, following redirects): the test's hand on Redis, as an operator's
/// or eviction's would be.
fn redis_cli(kind: Kind, args: &[&str]) -> String {
    let topology = topology(kind).lock().unwrap_or_else(|e| e.into_inner());
    match kind {
        Kind::Standalone => portero_integration::topology::cli(topology.nodes[0].port, args),
        Kind::Sentinel => {
            let primary = topology.primary_port().expect("a primary");
            portero_integration::topology::cli(primary, args)
        }
        Kind::Cluster => {
            let node = topology.nodes.iter().find(|n| n.proc.is_some()).unwrap();
            let mut follow = vec!["-c"];
            follow.extend_from_slice(args);
            portero_integration::topology::cli(node.port, &follow)
        }
    }
}

fn kind_of(target: &RedisTarget) -> Kind {
    match target {
        RedisTarget::Standalone { .. } => Kind::Standalone,
        RedisTarget::Sentinel { .. } => Kind::Sentinel,
        RedisTarget::Cluster { .. } => Kind::Cluster,
    }
}

/// The keys of the layout in `store/mod.rs` (prefix `portero`).
fn user_key(store: &Store, user_id: &str) -> String {
    format!("portero:user:{{{}}}", store.user_tag(user_id))
}

fn session_key(handle: &str) -> String {
    format!("portero:session:{{{}}}:{handle}", &handle[..22])
}

fn index_key(store: &Store, user_id: &str) -> String {
    format!("portero:sessions:{{{}}}", store.user_tag(user_id))
}

/// A user record gone (as eviction or a slip of an operator's hand would
/// remove it) is store trouble: look-up and rotation fail without a
/// verdict, the session stays in Redis, and once the record is back the
/// session works again.
async fn a_missing_user_record_is_store_trouble_never_a_logout(store: Store, target: RedisTarget) {
    let kind = kind_of(&target);
    let user_id = user();
    let (_, handle, issued) = login(&store, &user_id, now() - 1).await;
    let Lookup::Found { view, .. } = store
        .lookup(&handle, Some(&issued.jti), &RULES)
        .await
        .unwrap()
    else {
        panic!("not found");
    };
    let user_key = user_key(&store, &user_id);
    let fields = redis_cli(kind, &["HGETALL", &user_key]);
    assert!(!fields.is_empty(), "the user record exists");
    assert_eq!(redis_cli(kind, &["DEL", &user_key]), "1");

    match store.lookup(&handle, Some(&issued.jti), &RULES).await {
        Err(StoreError::UserRecordMissing) => {}
        other => panic!("a look-up without its user record must be store trouble, got {other:?}"),
    }
    let mut rotating = view.as_ref().clone();
    match store
        .rotate(
            &mut rotating,
            &token(now() + 300),
            Some(&issued.jti),
            &RULES,
        )
        .await
    {
        Err(StoreError::UserRecordMissing) => {}
        other => panic!("a rotation without its user record must be store trouble, got {other:?}"),
    }
    assert_eq!(
        redis_cli(kind, &["EXISTS", &session_key(&handle)]),
        "1",
        "the session is kept"
    );
    assert!(
        !redis_cli(kind, &["ZSCORE", &index_key(&store, &user_id), &handle]).is_empty(),
        "and still indexed"
    );

    // The record restored (as from a backup): the session works again, and
    // its expired token is rotated.
    let mut restore = vec!["HSET", user_key.as_str()];
    restore.extend(fields.lines());
    redis_cli(kind, &restore);
    let Lookup::Found {
        view,
        needs_rotation,
        ..
    } = store
        .lookup(&handle, Some(&issued.jti), &RULES)
        .await
        .unwrap()
    else {
        panic!("not found after the user record came back");
    };
    assert!(needs_rotation);
    let mut rotating = view.as_ref().clone();
    assert_eq!(
        store
            .rotate(
                &mut rotating,
                &token(now() + 300),
                Some(&issued.jti),
                &RULES
            )
            .await
            .unwrap(),
        Ok(true)
    );
}

/// Revoke-all, then the user record is lost, then the user logs in again:
/// a session the revoke-all had ended must not come back. The session
/// here is one a login racing the revoke-all made (not in the index the
/// revoke read, so only the token version refuses it).
async fn a_lost_user_record_never_revives_a_revoked_session(store: Store, target: RedisTarget) {
    let kind = kind_of(&target);
    let user_id = user();
    let (_, raced, _) = login(&store, &user_id, now() + 300).await;
    redis_cli(kind, &["ZREM", &index_key(&store, &user_id), &raced]);
    let (ended, _) = store.revoke_user(&user_id).await.unwrap();
    assert_eq!(ended, 0, "the revoke did not see the racing session");
    assert_eq!(redis_cli(kind, &["DEL", &user_key(&store, &user_id)]), "1");
    let (_, fresh, _) = login(&store, &user_id, now() + 300).await;
    for _ in 0..2 {
        match store.lookup(&raced, None, &RULES).await {
            Ok(Lookup::Refused(_)) => {}
            other => panic!("a revoked session came back: {other:?}"),
        }
    }
    assert!(matches!(
        store.lookup(&fresh, None, &RULES).await.unwrap(),
        Lookup::Found { .. }
    ));
    // The same through an admin's update or a revoke making the record.
    let (_, older, _) = login(&store, &user_id, now() + 300).await;
    assert_eq!(redis_cli(kind, &["DEL", &user_key(&store, &user_id)]), "1");
    store
        .update_user(&user_id, Some(UserStatus::Active), None, None)
        .await
        .unwrap();
    assert_eq!(
        refused(store.lookup(&older, None, &RULES).await.unwrap()),
        SessionVerdict::SessionRevoked
    );
}

/// Concurrent durable writes: logins of `users` (one each) all at once,
/// then rotations of those sessions all at once. Every one must be
/// accepted; returns the wall time of both bursts.
async fn durable_burst(store: &std::sync::Arc<Store>, users: &[String]) -> Duration {
    let started = std::time::Instant::now();
    let mut logins = tokio::task::JoinSet::new();
    for user_id in users {
        let (store, user_id) = (store.clone(), user_id.clone());
        logins.spawn(async move {
            let id = store.new_session_id(&user_id);
            let handle = store.handle_of(&id);
            let record = SessionRecord {
                user_id: user_id.clone(),
                email: String::new(),
                created_at: now(),
                expires_at: now() + 600,
                client_ip: String::new(),
                user_agent: String::new(),
            };
            let result = store
                .create(
                    &handle,
                    &record,
                    &[],
                    None,
                    &token(now() + 60),
                    LIFETIMES,
                    now(),
                )
                .await;
            (handle, result)
        });
    }
    let mut handles = Vec::new();
    while let Some(joined) = logins.join_next().await {
        let (handle, result) = joined.unwrap();
        match result {
            Ok(CreateOutcome::Created) => handles.push(handle),
            other => panic!("a login under a degraded topology: {other:?}"),
        }
    }
    let logged_in = started.elapsed();
    // The views to rotate (look-ups are not durable writes: not timed).
    let mut views = Vec::new();
    for handle in &handles {
        let Lookup::Found { view, .. } = store.lookup(handle, None, &RULES).await.unwrap() else {
            panic!("not found");
        };
        views.push(*view);
    }
    let started = std::time::Instant::now();
    let mut rotations = tokio::task::JoinSet::new();
    for mut view in views {
        let store = store.clone();
        rotations.spawn(async move {
            store
                .rotate(&mut view, &token(now() + 300), None, &RULES)
                .await
        });
    }
    while let Some(joined) = rotations.join_next().await {
        match joined.unwrap() {
            Ok(Ok(true)) => {}
            other => panic!("a rotation under a degraded topology: {other:?}"),
        }
    }
    logged_in + started.elapsed()
}

/// Writes that want more replicas than are connected (`durable`) against
/// the same writes without durability (`baseline`): 50 logins and 50
/// rotations at once, three rounds each, alternating. Every write is
/// accepted and counted as under-replicated, and the durable bursts take
/// no more than a small multiple of the plain ones (best round of each,
/// against the noise of a shared machine): no write waits behind another's
/// `WAIT`.
async fn under_replicated_bursts(
    topology: &str,
    durable: Store,
    baseline: Store,
    mut fresh_user: impl FnMut() -> String,
) {
    const WRITERS: usize = 50;
    const ROUNDS: usize = 3;
    let (durable, baseline) = (std::sync::Arc::new(durable), std::sync::Arc::new(baseline));
    let (mut best_durable, mut best_baseline) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let users: Vec<String> = (0..WRITERS).map(|_| fresh_user()).collect();
        best_baseline = best_baseline.min(durable_burst(&baseline, &users).await);
        let users: Vec<String> = (0..WRITERS).map(|_| fresh_user()).collect();
        best_durable = best_durable.min(durable_burst(&durable, &users).await);
    }
    assert_eq!(
        durable.under_replicated_writes.get(),
        (2 * WRITERS * ROUNDS) as u64,
        "every write accepted under-replicated is counted"
    );
    let ratio = best_durable.as_secs_f64() / best_baseline.as_secs_f64().max(1e-6);
    eprintln!(
        "{topology}: under-replicated bursts {best_durable:?}, without durability {best_baseline:?}, ratio {ratio:.2}"
    );
    assert!(
        ratio < 10.0,
        "durable writes took {ratio:.1}x the time of plain ones ({best_durable:?} against {best_baseline:?})"
    );
}

macro_rules! suite {
    ($kind:ident: $($case:ident),* $(,)?) => {
        #[allow(non_snake_case)]
        mod $kind {
            $(
                #[test]
                fn $case() {
                    super::run(portero_integration::topology::Kind::$kind, super::$case);
                }
            )*
        }
    };
}

macro_rules! every_topology {
    ($($case:ident),* $(,)?) => {
        suite!(Standalone: $($case),*);
        suite!(Sentinel: $($case),*);
        suite!(Cluster: $($case),*);
    };
}

// Standalone has no replica to wait for.
mod replicated {
    use std::time::Duration;

    use portero_integration::topology::Kind;
    use redis_sidecar::store::StoreError;

    #[test]
    fn sentinel_too_few_replicas_connected_is_accepted_and_counted() {
        super::run(
            Kind::Sentinel,
            super::too_few_replicas_connected_is_accepted_and_counted,
        );
    }

    #[test]
    fn cluster_too_few_replicas_connected_is_accepted_and_counted() {
        super::run(
            Kind::Cluster,
            super::too_few_replicas_connected_is_accepted_and_counted,
        );
    }

    /// Sentinel with two replicas connected and `--redis-wait-replicas 3`:
    /// 50 concurrent logins, then 50 rotations, are all accepted (after both
    /// replicas have them), counted, and about as fast as without WAIT.
    #[test]
    fn sentinel_concurrent_writes_with_too_few_replicas_are_accepted_quickly() {
        let target = {
            let topology = super::topology(Kind::Sentinel)
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            super::target(&topology)
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(super::under_replicated_bursts(
                "sentinel, 3 wanted, 2 connected",
                super::demanding(&target, 3),
                super::demanding(&target, 0),
                super::user,
            ));
    }

    /// A Cluster shard whose replica is down (as after a failover, until the
    /// old primary rejoins), with `--redis-wait-replicas 1`: 50 concurrent
    /// logins, then 50 rotations, of users on that shard are all accepted
    /// without waiting, counted, and about as fast as without durability.
    #[test]
    fn cluster_concurrent_writes_on_a_shard_without_replicas_are_accepted_quickly() {
        use portero_integration::topology::cli;

        let mut topology = super::topology(Kind::Cluster)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let target = super::target(&topology);
        let probe = super::demanding(&target, 0);
        let user_key = |user_id: &str| super::user_key(&probe, user_id);
        // The shard of a first user: its primary, slots and replica.
        let primary = topology.cluster_primary_of(&user_key("probe")).unwrap();
        let nodes = cli(primary, &["CLUSTER", "NODES"]);
        let lines: Vec<Vec<&str>> = nodes
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let port_of = |fields: &Vec<&str>| -> u16 {
            let addr = fields[1].split('@').next().unwrap();
            addr.rsplit_once(':').unwrap().1.parse().unwrap()
        };
        let primary_line = lines.iter().find(|f| port_of(f) == primary).unwrap();
        let primary_id = primary_line[0].to_string();
        let slots: Vec<(u16, u16)> = primary_line[8..]
            .iter()
            .filter(|r| !r.starts_with('['))
            .map(|r| {
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                (a.parse().unwrap(), b.parse().unwrap())
            })
            .collect();
        let replica = port_of(
            lines
                .iter()
                .find(|f| f[2].contains("slave") && f[3] == primary_id)
                .expect("the shard's replica"),
        );
        let on_shard = |user_id: &str| {
            let slot = redis_sidecar::backend::hash_slot(&user_key(user_id));
            slots.iter().any(|(a, b)| *a <= slot && slot <= *b)
        };
        let fresh_user = || loop {
            let candidate = super::user();
            if on_shard(&candidate) {
                return candidate;
            }
        };

        topology.node_mut(replica).kill();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !cli(primary, &["INFO", "replication"]).contains("connected_slaves:0") {
            assert!(
                std::time::Instant::now() < deadline,
                "replica still connected"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(super::under_replicated_bursts(
                    "cluster shard without replicas, 1 wanted",
                    super::demanding(&target, 1),
                    super::demanding(&target, 0),
                    fresh_user,
                ));
        }));
        // The replica back, synced, for the other tests.
        topology.node_mut(replica).restart();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !cli(primary, &["INFO", "replication"]).contains("connected_slaves:1") {
            assert!(std::time::Instant::now() < deadline, "replica not back");
            std::thread::sleep(Duration::from_millis(50));
        }
        topology.wait_cluster_ok();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// A replica that is connected but frozen (SIGSTOP) cannot acknowledge:
    /// a write that needs both replicas is reported not replicated (a 503
    /// to the caller), never taken as done. The other replica keeps
    /// acknowledging the other tests' writes meanwhile.
    #[test]
    fn sentinel_a_frozen_replica_makes_a_write_not_replicated() {
        let topology = super::topology(Kind::Sentinel)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let target = super::target(&topology);
        let replica = topology.nodes[2].proc.as_ref().expect("replica running");
        replica.signal(libc::SIGSTOP);
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let store = super::demanding(&target, 2);
                let result = super::try_login(&store).await;
                (result, store.under_replicated_writes.get())
            });
        replica.signal(libc::SIGCONT);
        std::thread::sleep(Duration::from_millis(100));
        match result {
            (
                Err(StoreError::NotReplicated {
                    acknowledged: 1,
                    wanted: 2,
                }),
                0,
            ) => {}
            other => panic!("expected NotReplicated, got {other:?}"),
        }
    }
}

/// Everything on the disks of every data node of `kind`'s topology (the
/// AOF directory and the RDB file of each port), per port.
fn disk_of_every_node(kind: Kind) -> Vec<(u16, Vec<u8>)> {
    let topology = topology(kind).lock().unwrap_or_else(|e| e.into_inner());
    topology
        .nodes
        .iter()
        .map(|node| {
            let mut bytes = std::fs::read(topology.dir.join(format!("dump-{}.rdb", node.port)))
                .unwrap_or_default();
            let aof = topology.dir.join(format!("aof-{}", node.port));
            for file in std::fs::read_dir(aof).into_iter().flatten().flatten() {
                bytes.extend(std::fs::read(file.path()).unwrap_or_default());
            }
            (node.port, bytes)
        })
        .collect()
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Access tokens at rest are sealed with a key Redis never sees: the AOF
/// and RDB of the primary and of every replica hold the session (its
/// handle) but never its token, first or rotated; the store still hands the
/// token back.
async fn tokens_at_rest_are_sealed_on_every_node(store: Store, target: RedisTarget) {
    let kind = kind_of(&target);
    let user_id = user();
    let (_, handle, first) = login(&store, &user_id, now() - 1).await;
    let Lookup::Found { mut view, .. } = store.lookup(&handle, None, &RULES).await.unwrap() else {
        panic!("not found");
    };
    assert_eq!(view.access_token, first.token);
    let second = token(now() + 300);
    assert_eq!(
        store
            .rotate(&mut view, &second, None, &RULES)
            .await
            .unwrap(),
        Ok(true)
    );
    assert_eq!(view.access_token, second.token);
    let Lookup::Found { view, .. } = store.lookup(&handle, None, &RULES).await.unwrap() else {
        panic!("not found");
    };
    assert_eq!(view.access_token, second.token);
    // Replicas apply and append asynchronously: give them a moment.
    let copies_wanted = if kind == Kind::Standalone { 1 } else { 2 };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let disks = disk_of_every_node(kind);
        let copies = disks.iter().filter(|(_, d)| holds(d, &handle)).count();
        for (port, disk) in &disks {
            for issued in [&first, &second] {
                assert!(
                    !holds(disk, &issued.token),
                    "node {port}'s disk holds an access token in clear"
                );
            }
        }
        if copies >= copies_wanted {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the session reached {copies} node disks, wanted {copies_wanted}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

every_topology!(
    tokens_at_rest_are_sealed_on_every_node,
    create_and_look_up,
    rotation_is_single_flight_and_replays_are_refused,
    revoke_all_ends_every_session_and_bumps_the_version,
    list_and_end_sessions,
    expired_sessions_are_gone,
    a_banned_user_is_refused_and_cannot_log_in,
    the_revocation_feed_reads_in_order_from_a_cursor,
    a_missing_user_record_is_store_trouble_never_a_logout,
    a_lost_user_record_never_revives_a_revoked_session,
);

/// TLS (`rediss://`, a CA of the test's own) and an ACL user with a
/// password: the store works through both, and a wrong password is store
/// trouble (a 503), never a verdict.
#[test]
fn tls_and_an_acl_user_on_standalone_redis() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

    let dir = std::env::temp_dir().join(format!("portero-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();

    let port = portero_integration::free_port();
    let mut command = std::process::Command::new("redis-server");
    command
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--tls-cert-file")
        .arg(dir.join("cert.pem"))
        .arg("--tls-key-file")
        .arg(dir.join("key.pem"))
        .arg("--tls-ca-cert-file")
        .arg(dir.join("ca.pem"))
        .args([
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--user", "default", "off"])
        .args([
            "--user",
            "portero",
            "on",
            ">s3cret-pass",
            "~*",
            "&*",
            "+@all",
        ]);
    let redis = portero_integration::Proc::spawn_tied("redis-tls", command, dir.join("redis.log"));

    let store_for = |password: &str| {
        let key = format!("suite-hash-key-{}", "k".repeat(32));
        Store::new(
            &redis_sidecar::backend::RedisConnect {
                target: RedisTarget::Standalone {
                    url: format!("rediss://portero:{password}@127.0.0.1:{port}"),
                },
                tls_ca: Some(ca.pem().into_bytes()),
            },
            "portero",
            key.as_bytes(),
            Duration::from_secs(2),
            Durability::NONE,
        )
        .unwrap()
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = store_for("s3cret-pass");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while store.ping().await.is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "redis over TLS: {}",
                    redis.log_tail(20)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            create_and_look_up(store, RedisTarget::Standalone { url: String::new() }).await;
            let wrong = store_for("wrong-pass");
            match wrong.lookup(&"a".repeat(65), None, &RULES).await {
                Err(StoreError::Unavailable(_)) => {}
                other => panic!("a wrong password must be store trouble, got {other:?}"),
            }
        });
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `redis-sidecar serve` (this package's binary) on a Redis at `port`,
/// its log in `log`.
fn sidecar(port: u16, extra: &[&str], log: std::path::PathBuf) -> portero_integration::Proc {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_redis-sidecar"));
    command
        .arg("serve")
        .args(extra)
        .env(
            "PORTERO_SIDECAR_LISTEN",
            format!("127.0.0.1:{}", portero_integration::free_port()),
        )
        .env("PORTERO_REDIS_URL", format!("redis://127.0.0.1:{port}"))
        .env(
            "PORTERO_SIGNING_KEY_FILE",
            portero_integration::fixture("test-rsa.pem"),
        )
        .env("PORTERO_FILTER_TOKEN", portero_integration::FILTER_TOKEN)
        .env("PORTERO_ADMIN_TOKEN", portero_integration::ADMIN_TOKEN)
        .env(
            "PORTERO_SESSION_HASH_KEY",
            portero_integration::SESSION_HASH_KEY,
        )
        .env_remove("PORTERO_ALLOW_EVICTING_REDIS")
        .env("PORTERO_LOG", "info");
    portero_integration::Proc::spawn_tied("sidecar", command, log)
}

/// Waits until `proc`'s log has `text` (or it exited, when `or_exit`).
fn wait_for_log(proc: &mut portero_integration::Proc, text: &str, or_exit: bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if std::fs::read_to_string(&proc.log)
            .unwrap_or_default()
            .contains(text)
        {
            return true;
        }
        if or_exit && proc.exited() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A Redis of a test's own (no persistence) with `extra` flags, answering
/// PING: its directory, port and process (stopped when dropped).
fn throwaway_redis(
    name: &str,
    extra: &[&str],
) -> (std::path::PathBuf, u16, portero_integration::Proc) {
    let dir = std::env::temp_dir().join(format!("portero-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = portero_integration::free_port();
    let mut command = std::process::Command::new("redis-server");
    let port_text = port.to_string();
    command.args([
        "--port",
        &port_text,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    command.args(extra);
    let redis = portero_integration::Proc::spawn_tied("redis", command, dir.join("redis.log"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while portero_integration::topology::cli(port, &["PING"]) != "PONG" {
        assert!(std::time::Instant::now() < deadline, "redis did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (dir, port, redis)
}

/// A Redis whose maxmemory-policy may evict user records: the sidecar
/// refuses to start, naming the setting and the fix; with
/// `--allow-evicting-redis` it starts, warning.
#[test]
fn an_evicting_redis_is_refused_at_start() {
    let (dir, port, _redis) = throwaway_redis(
        "evicting",
        &["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"],
    );

    let mut refused = sidecar(port, &[], dir.join("refused.log"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !refused.exited() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sidecar kept running on an allkeys-lru Redis:\n{}",
            refused.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(&refused.log).unwrap();
    for needed in [
        "maxmemory-policy allkeys-lru",
        "maxmemory-policy noeviction",
        "--allow-evicting-redis",
    ] {
        assert!(log.contains(needed), "{needed:?} not in:\n{log}");
    }
    assert!(!log.contains("redis-sidecar serving"), "{log}");

    let mut allowed = sidecar(port, &["--allow-evicting-redis"], dir.join("allowed.log"));
    assert!(
        wait_for_log(&mut allowed, "redis-sidecar serving", true),
        "with --allow-evicting-redis it serves:\n{}",
        allowed.log_tail(20)
    );
    let log = std::fs::read_to_string(&allowed.log).unwrap();
    assert!(
        log.contains("WARN") && log.contains("maxmemory-policy allkeys-lru"),
        "a loud warning:\n{log}"
    );
    drop(allowed);
    drop(refused);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A real eviction: Redis under `maxmemory` with an `allkeys-*` policy (as
/// with `--allow-evicting-redis`) evicts a user record while its session
/// is kept. The look-up is store trouble (a 503), never a logout, and the
/// session is still there. `allkeys-lfu` with a log factor of 0 (every
/// access counts) and no decay makes the order of eviction deterministic:
/// the user record (touched at login only) goes before the padding keys
/// (read a few times) and long before the session (read often).
#[test]
fn a_user_record_evicted_under_memory_pressure_is_store_trouble() {
    let (dir, port, _redis) = throwaway_redis(
        "eviction",
        &[
            "--maxmemory-policy",
            "allkeys-lfu",
            "--lfu-log-factor",
            "0",
            "--lfu-decay-time",
            "0",
        ],
    );
    let url = format!("redis://127.0.0.1:{port}");
    let key = format!("suite-hash-key-{}", "k".repeat(32));
    let store = Store::new(
        &RedisTarget::Standalone { url: url.clone() }.into(),
        "portero",
        key.as_bytes(),
        Duration::from_secs(2),
        Durability::NONE,
    )
    .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut redis = redis::Client::open(url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let user_id = user();
            let (_, handle, _) = login(&store, &user_id, now() + 300).await;
            let (user_key, session_key) = (user_key(&store, &user_id), session_key(&handle));
            for _ in 0..50 {
                let _: Option<String> = redis::cmd("HGET")
                    .arg(&session_key)
                    .arg("abs")
                    .query_async(&mut redis)
                    .await
                    .unwrap();
            }
            for i in 0..64 {
                let padding = format!("padding:{i}");
                let _: () = redis::cmd("SET")
                    .arg(&padding)
                    .arg("x".repeat(8 * 1024))
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                for _ in 0..5 {
                    let _: usize = redis::cmd("STRLEN")
                        .arg(&padding)
                        .query_async(&mut redis)
                        .await
                        .unwrap();
                }
            }
            // Memory pressure: the limit lowered below what is used, step by
            // step, until the user record is evicted.
            let mut evicted = false;
            for _ in 0..200 {
                let info: String = redis::cmd("INFO")
                    .arg("memory")
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                let used: u64 = info
                    .lines()
                    .find_map(|l| l.strip_prefix("used_memory:"))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                let _: () = redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("maxmemory")
                    .arg(used - 16 * 1024)
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                // Eviction runs before a command once memory is over the limit.
                let _: Result<(), _> = redis::cmd("SET")
                    .arg("pressure")
                    .arg("1")
                    .query_async::<()>(&mut redis)
                    .await;
                let exists: bool = redis::cmd("EXISTS")
                    .arg(&user_key)
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                if !exists {
                    evicted = true;
                    break;
                }
            }
            assert!(evicted, "the user record was never evicted");
            let kept: bool = redis::cmd("EXISTS")
                .arg(&session_key)
                .query_async(&mut redis)
                .await
                .unwrap();
            assert!(kept, "the session is read often: evicted last");
            // The pressure off: the look-up's own writes must evict nothing more.
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory")
                .arg(0)
                .query_async(&mut redis)
                .await
                .unwrap();
            match store.lookup(&handle, None, &RULES).await {
                Err(StoreError::UserRecordMissing) => {}
                other => panic!("an evicted user record must be store trouble, got {other:?}"),
            }
            let kept: bool = redis::cmd("EXISTS")
                .arg(&session_key)
                .query_async(&mut redis)
                .await
                .unwrap();
            assert!(kept, "the look-up kept the session");
        });
    let _ = std::fs::remove_dir_all(&dir);
}
