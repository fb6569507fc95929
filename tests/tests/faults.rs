//! Real faults at the moments that matter: Redis stalled (SIGSTOP) in the
//! middle of a refresh burst and for longer than the grace window, Redis
//! SIGKILLed and restarted, the sidecar frozen and killed under load.
//! Every session valid before is valid after; no valid client ever gets a
//! 401 or a cleared cookie; a dead sidecar shows as `no_answer`.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use portero_integration::{Reply, Stack, StackOptions, COOKIE_NAME};
use serde_json::json;

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Access tokens of 2 s, a 60 s refresh window, a 1 s grace, every request
/// to the store (no session cache): the refresh path on every retry.
fn short_tokens_to_the_store() -> StackOptions {
    StackOptions {
        access_ttl: 2,
        refresh_grace: 1,
        plugin_config_patch: Some(|config| {
            config["jwt"]["leeway_seconds"] = json!(0);
            config["jwt"]["refresh_window_seconds"] = json!(60);
            config["cache"] = json!({"sessions": {"ttl_seconds": 0}});
        }),
        ..StackOptions::default()
    }
}

/// A store-trouble answer: 503, `Retry-After`, the cookie left alone.
fn assert_trouble_not_logout(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 503, "{what}: {} {}", reply.status, reply.body);
    assert!(
        reply.header("retry-after").is_some(),
        "{what}: no Retry-After"
    );
    assert_eq!(
        reply.set_cookie(COOKIE_NAME),
        None,
        "{what}: cookie touched"
    );
}

/// Sends `token` until it is served (503s allowed meanwhile, never a 401);
/// returns the token the client holds afterwards.
fn retry_until_served(stack: &Stack, token: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = stack.me_with_token(token);
        match reply.status {
            200 => {
                return reply
                    .header("x-portero-access-token")
                    .unwrap_or(token)
                    .to_string()
            }
            503 => assert!(Instant::now() < deadline, "still 503 after 20 s"),
            status => panic!("a valid client got {status}: {}", reply.body),
        }
        sleep_ms(100);
    }
}

#[test]
fn redis_stalled_during_a_refresh_burst_logs_nobody_out() {
    let stack = Arc::new(Stack::start_with(short_tokens_to_the_store()));
    let tokens: Vec<String> = (0..40)
        .map(|i| {
            if i % 2 == 0 {
                stack.login_app("ada", "lovelace")
            } else {
                stack.login_app("alan", "turing")
            }
        })
        .collect();
    sleep_ms(3100); // every token has expired: each request refreshes
    let barrier = Arc::new(Barrier::new(tokens.len() + 1));
    let burst: Vec<_> = tokens
        .iter()
        .cloned()
        .map(|token| {
            let stack = stack.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                // The client's one request of the burst: whatever it gets,
                // it keeps the token it can see.
                let reply = stack.me_with_token(&token);
                match reply.status {
                    200 => reply
                        .header("x-portero-access-token")
                        .unwrap_or(&token)
                        .to_string(),
                    503 => token,
                    status => panic!("burst: a valid client got {status}: {}", reply.body),
                }
            })
        })
        .collect();
    barrier.wait();
    // Freeze Redis in the middle of the burst: some look-ups done, their
    // rotations queued behind the sidecar's timeout …
    sleep_ms(15);
    stack.signal("redis", libc::SIGSTOP);
    let held: Vec<String> = burst.into_iter().map(|t| t.join().unwrap()).collect();
    // … for longer than the grace window, then let it run the queue.
    sleep_ms(1600);
    stack.signal("redis", libc::SIGCONT);
    sleep_ms(1600);
    // Every client retries with what it holds, then uses what it got.
    for token in &held {
        let current = retry_until_served(&stack, token);
        let again = stack.me_with_token(&current);
        assert_eq!(again.status, 200, "{}", again.body);
    }
    // Reuse detection still works once the successor is in use.
    let first = stack.login_app("alan", "turing");
    sleep_ms(3100);
    let second = retry_until_served(&stack, &first);
    assert_ne!(first, second);
    assert_eq!(stack.me_with_token(&second).status, 200);
    // The 1 s grace on whole-second clocks: over 2 s to be sure it is past.
    sleep_ms(2100);
    let replay = stack.me_with_token(&first);
    assert_eq!(replay.status, 401, "{}", replay.body);
    assert_eq!(replay.json()["reason"], "token_replayed");
}

#[test]
fn a_rotation_whose_answer_was_lost_keeps_the_old_token_exchangeable() {
    // The client sends its expired token, the answer (carrying the new one)
    // is lost; long after the grace window it retries with the old token.
    let stack = Stack::start_with(short_tokens_to_the_store());
    let token = stack.login_app("alan", "turing");
    sleep_ms(3100);
    let lost = stack.me_with_token(&token);
    assert_eq!(lost.status, 200);
    let new_token = lost.header("x-portero-access-token").unwrap().to_string();
    sleep_ms(2100); // > grace, and the new one was never used (it expired too)
    let retry = stack.me_with_token(&token);
    assert_eq!(retry.status, 200, "{}", retry.body);
    let newest = retry.header("x-portero-access-token").unwrap().to_string();
    assert_ne!(newest, new_token);
    sleep_ms(1100);
    let once_more = stack.me_with_token(&token);
    assert_eq!(
        once_more.status, 200,
        "still exchangeable: {}",
        once_more.body
    );
    // The client goes on with the token its last answer carried.
    let current = once_more
        .header("x-portero-access-token")
        .unwrap_or(&newest)
        .to_string();
    assert_eq!(stack.me_with_token(&current).status, 200);
}

#[test]
fn a_403_after_a_rotation_carries_the_new_token_and_the_session_lives() {
    let stack = Stack::start_with(short_tokens_to_the_store());
    // alan lacks the `admin` role the /admin/ route demands.
    let forbidden_with = |token: &str| {
        let auth = format!("Bearer {token}");
        let forbidden = stack.get("/admin/overview", &[("authorization", &auth)]);
        assert_eq!(forbidden.status, 403, "{}", forbidden.body);
        let new_token = forbidden
            .header("x-portero-access-token")
            .expect("the rotated token goes back with the 403")
            .to_string();
        assert_ne!(new_token, token);
        new_token
    };
    let reads_it = stack.login_app("alan", "turing");
    let misses_it = stack.login_app("alan", "turing");
    sleep_ms(3100);
    // A client that reads the header goes on with the new token …
    let new_token = forbidden_with(&reads_it);
    assert_eq!(stack.me_with_token(&new_token).status, 200);
    // … and one that missed it still holds its session, past the grace:
    // its old token is exchanged for the current one.
    forbidden_with(&misses_it);
    sleep_ms(2100);
    let current = retry_until_served(&stack, &misses_it);
    assert_ne!(current, misses_it);
    assert_eq!(stack.me_with_token(&current).status, 200);
}

#[test]
fn a_rotation_for_a_cookie_client_leaves_the_old_token_only_the_grace() {
    // The cookie client never holds the access token (the upstream does):
    // a token it had forwarded is not exchangeable for long after a
    // rotation made for the cookie.
    let stack = Stack::start_with(short_tokens_to_the_store());
    let cookie = stack.login_web("ada", "lovelace");
    let forwarded = stack.me_with_cookie(&cookie).json()["authorization"]
        .as_str()
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_string();
    sleep_ms(3100);
    assert_eq!(stack.me_with_cookie(&cookie).status, 200); // rotates
    sleep_ms(2100); // past the 1 s grace
    let late = stack.me_with_token(&forwarded);
    assert_eq!(late.status, 401, "{}", late.body);
    assert_eq!(late.json()["reason"], "token_replayed");
}

#[test]
fn redis_sigkilled_and_restarted_keeps_every_session() {
    let mut stack = Stack::start_with(StackOptions::no_session_cache());
    let cookies: Vec<String> = (0..60)
        .map(|_| stack.login_web("ada", "lovelace"))
        .collect();
    let tokens: Vec<String> = (0..20).map(|_| stack.login_app("alan", "turing")).collect();
    // appendfsync everysec: what is a second old is on disk.
    sleep_ms(1500);
    stack.kill_redis();
    let during = stack.me_with_cookie(&cookies[0]);
    assert_trouble_not_logout(&during, "Redis down");
    stack.start_redis();
    for cookie in &cookies {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reply = stack.me_with_cookie(cookie);
            if reply.status == 200 {
                break;
            }
            assert_trouble_not_logout(&reply, "Redis restarting");
            assert!(Instant::now() < deadline);
            sleep_ms(100);
        }
    }
    for token in &tokens {
        assert_eq!(stack.me_with_token(token).status, 200);
    }
}

/// Clients hammering the stack with valid cookies from a few threads until
/// told to stop; every answer must be a 200 or a store-trouble 503.
struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(usize, usize)>>,
}

impl Load {
    fn start(stack: &Arc<Stack>, cookies: &[String]) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = cookies
            .iter()
            .cloned()
            .map(|cookie| {
                let stack = stack.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (mut ok, mut unavailable) = (0, 0);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let reply = stack.me_with_cookie(&cookie);
                        match reply.status {
                            200 => ok += 1,
                            503 => {
                                assert_trouble_not_logout(&reply, "under load");
                                unavailable += 1;
                            }
                            status => panic!("under load: {status} {}", reply.body),
                        }
                    }
                    (ok, unavailable)
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn stop(self) -> (usize, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }
}

#[test]
fn the_sidecar_frozen_and_killed_under_load_logs_nobody_out() {
    let stack = Arc::new(Stack::start_with(StackOptions::no_session_cache()));
    let cookies: Vec<String> = (0..4).map(|_| stack.login_web("ada", "lovelace")).collect();
    let load = Load::start(&stack, &cookies);
    sleep_ms(300);
    stack.signal("sidecar", libc::SIGSTOP);
    sleep_ms(1500);
    stack.signal("sidecar", libc::SIGCONT);
    sleep_ms(300);
    // Killed outright (SIGKILL: no graceful shutdown) in the middle of it.
    stack.signal("sidecar", libc::SIGKILL);
    sleep_ms(800);
    let (ok, unavailable) = load.stop();
    assert!(
        ok > 20 && unavailable > 4,
        "{ok} served, {unavailable} refused"
    );
    let mut stack = Arc::into_inner(stack).expect("load threads are done");
    stack.stop_sidecar();
    stack.start_sidecar();
    for cookie in &cookies {
        let deadline = Instant::now() + Duration::from_secs(10);
        while stack.me_with_cookie(cookie).status != 200 {
            assert!(Instant::now() < deadline, "every session works again");
            sleep_ms(100);
        }
    }
    assert!(stack.metric("portero_sidecar_errors{kind=\"no_answer\"}") >= 4);
}

#[test]
fn a_frozen_or_dead_sidecar_is_503_and_counted_as_no_answer() {
    let mut stack = Stack::start_with(StackOptions::no_session_cache());
    let cookie = stack.login_web("ada", "lovelace");
    assert_eq!(stack.me_with_cookie(&cookie).status, 200);
    // Frozen: Envoy's callout times out (its own local reply).
    stack.signal("sidecar", libc::SIGSTOP);
    for _ in 0..3 {
        assert_trouble_not_logout(&stack.me_with_cookie(&cookie), "sidecar frozen");
    }
    stack.signal("sidecar", libc::SIGCONT);
    assert_eq!(stack.me_with_cookie(&cookie).status, 200);
    let frozen = stack.metric("portero_sidecar_errors{kind=\"no_answer\"}");
    assert!(frozen >= 3, "no_answer after a freeze: {frozen}");
    // Dead: the connection is refused (Envoy's own local 503).
    stack.stop_sidecar();
    for _ in 0..3 {
        assert_trouble_not_logout(&stack.me_with_cookie(&cookie), "sidecar dead");
    }
    let dead = stack.metric("portero_sidecar_errors{kind=\"no_answer\"}");
    assert!(dead >= frozen + 3, "no_answer after a kill: {dead}");
    assert_eq!(
        stack.metric("portero_sidecar_errors{kind=\"error_status\"}"),
        0,
        "Envoy's local replies are not the sidecar's error statuses"
    );
    stack.start_sidecar();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack.me_with_cookie(&cookie).status != 200 {
        assert!(Instant::now() < deadline, "the session works again");
        sleep_ms(100);
    }
}

#[test]
fn an_outage_logs_a_summary_not_a_line_per_request() {
    // With the session cache on, so the revocation feed is polled (and
    // fails) all through the outage too.
    let mut stack = Stack::start();
    let cookie = stack.login_web("ada", "lovelace");
    stack.stop_sidecar();
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        assert_eq!(stack.me_with_cookie(&cookie).status, 503);
        sent += 1;
    }
    sleep_ms(1200); // a tick flushes the summary
    let log = std::fs::read_to_string(&stack.envoy.as_ref().unwrap().log).unwrap();
    let lines = log
        .lines()
        .filter(|l| l.contains("sidecar_unavailable"))
        .count();
    assert!(sent > 20, "sent {sent}");
    assert!(
        lines <= 8,
        "{lines} log lines for {sent} refused requests in 2.5 s"
    );
    assert!(
        log.contains("rejected_summary"),
        "a summary line counts the rest"
    );
    let warnings = log.matches("revocation feed not read").count();
    assert_eq!(
        warnings, 1,
        "the feed warning is logged once, on the change"
    );
    // The sidecar's log is a file: no terminal colour codes in it.
    stack.start_sidecar();
    let sidecar_log = std::fs::read(&stack.sidecar.as_ref().unwrap().log).unwrap_or_default();
    assert!(!sidecar_log.is_empty());
    assert!(
        !sidecar_log.contains(&0x1b),
        "ANSI escape codes in the sidecar log"
    );
}

/// A user record gone (eviction, an operator's slip) is store trouble
/// through the whole stack: both flows get 503 with the cookie left alone,
/// the sessions stay in Redis, and once the record is back both are served
/// again — never a logout (#19, finding 8).
#[test]
fn a_lost_user_record_is_503_through_envoy_never_a_logout() {
    let stack = Stack::start_with(StackOptions::no_session_cache());
    let cookie = stack.login_web("ada", "lovelace");
    let token = stack.login_app("ada", "lovelace");
    assert_eq!(stack.me_with_cookie(&cookie).status, 200);
    let users: Vec<String> = stack
        .redis_cli(&["--scan", "--pattern", "portero:user:*"])
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(users.len(), 1, "{users:?}");
    let fields: Vec<String> = stack
        .redis_cli(&["HGETALL", &users[0]])
        .lines()
        .map(str::to_string)
        .collect();
    assert!(fields.len() >= 4 && fields.len() % 2 == 0, "{fields:?}");
    let sessions = stack.session_keys();
    assert_eq!(stack.redis_cli(&["DEL", &users[0]]).trim(), "1");
    for _ in 0..3 {
        assert_trouble_not_logout(&stack.me_with_cookie(&cookie), "cookie, user record gone");
        let bearer = stack.me_with_token(&token);
        assert_eq!(bearer.status, 503, "{}", bearer.body);
    }
    assert_eq!(stack.session_keys(), sessions, "a session was deleted");
    // Restored (as from a backup or a replica): both are served again.
    let mut hset = vec!["HSET", users[0].as_str()];
    hset.extend(fields.iter().map(String::as_str));
    assert_eq!(
        stack.redis_cli(&hset).trim(),
        (fields.len() / 2).to_string()
    );
    assert_eq!(stack.me_with_cookie(&cookie).status, 200);
    assert_eq!(stack.me_with_token(&token).status, 200);
}
