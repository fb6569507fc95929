//! Many Envoys, many workers, many sidecars: two Envoy processes with two
//! workers each, and two sidecar processes behind Envoy's sidecar cluster,
//! on one Redis. Sessions, revocations and refresh single-flight must hold
//! across all of them.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use portero_integration::{claims_of, Stack, StackOptions, ADMIN_TOKEN, COOKIE_NAME};
use serde_json::json;

const SESSION_HITS: &str = r#"portero_cache_lookups{cache="sessions",result="hit"}"#;
/// The revocation feed's promise (docs/how-it-works.md, "Edge caches"), as `caches.rs`
/// holds one worker to it.
const REVOCATION_BOUND: Duration = Duration::from_millis(1000);
/// New connections per Envoy per round: they spread over its two workers
/// (every connection on one worker: odds of 2^-15).
const CONNECTIONS: usize = 16;

fn scaled_out(options: StackOptions) -> Stack {
    Stack::start_with(StackOptions {
        sidecars: 2,
        envoys: 2,
        envoy_concurrency: 2,
        ..options
    })
}

/// The statuses of `CONNECTIONS` requests on new connections to each Envoy.
fn statuses(stack: &Stack, path: &str, headers: &[(&str, &str)]) -> Vec<u16> {
    (0..2)
        .flat_map(|envoy| {
            (0..CONNECTIONS).map(move |_| {
                stack
                    .status_on_new_connection(envoy, path, headers)
                    .unwrap_or(0)
            })
        })
        .collect()
}

#[test]
fn a_login_through_one_envoy_works_through_the_other_on_every_worker() {
    let stack = scaled_out(StackOptions::default());
    let cookie = format!("{COOKIE_NAME}={}", stack.login_web("ada", "lovelace"));
    let bearer = format!("Bearer {}", stack.login_app("alan", "turing"));
    for (name, value) in [("cookie", &cookie), ("authorization", &bearer)] {
        let seen = statuses(&stack, "/me", &[(name, value)]);
        assert!(seen.iter().all(|s| *s == 200), "{name}: {seen:?}");
    }
    // Through the second Envoy on the client's own connection too, with the
    // identity the first one saw.
    let me = stack.get_via(1, "/me", &[("cookie", &cookie)]);
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user_id"], "user-ada");
}

#[test]
fn a_revocation_through_either_sidecar_reaches_every_worker_of_both_envoys() {
    let stack = scaled_out(StackOptions::default());
    let cookie = format!("{COOKIE_NAME}={}", stack.login_web("ada", "lovelace"));
    let token = stack.login_app("alan", "turing");
    let bearer = format!("Bearer {token}");
    // Warm every worker's caches: a worker serves views only once it has
    // read the feed, so go on until both Envoys count cache hits.
    let hits_before = [0, 1].map(|envoy| stack.metric_of(envoy, SESSION_HITS));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for (name, value) in [("cookie", &cookie), ("authorization", &bearer)] {
            let seen = statuses(&stack, "/me", &[(name, value)]);
            assert!(seen.iter().all(|s| *s == 200), "{name}: {seen:?}");
        }
        let hits = [0, 1].map(|envoy| stack.metric_of(envoy, SESSION_HITS));
        if hits
            .iter()
            .zip(&hits_before)
            .all(|(now, before)| now > before)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "views were never served from the caches: {hits:?}"
        );
    }
    // Alan's session ended through the second sidecar; every session of
    // Ada revoked through the first.
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let second = format!("http://127.0.0.1:{}", stack.sidecar_port(1));
    let first = format!("http://127.0.0.1:{}", stack.sidecar_port(0));
    let handle = claims_of(&token).sid;
    let ended = stack.send(
        "DELETE",
        &format!("{second}/v1/sessions/{handle}"),
        &[("authorization", &admin)],
        None,
    );
    assert_eq!(ended.json()["ended"], true, "{}", ended.body);
    let revoked = stack.send(
        "POST",
        &format!("{first}/v1/users/user-ada/revoke"),
        &[("authorization", &admin)],
        Some(&json!({})),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let start = Instant::now();
    loop {
        let cookies = statuses(&stack, "/me", &[("cookie", &cookie)]);
        let bearers = statuses(&stack, "/me", &[("authorization", &bearer)]);
        if cookies.iter().chain(&bearers).all(|s| *s == 401) {
            break;
        }
        assert!(
            start.elapsed() < REVOCATION_BOUND,
            "still served after {:?}: cookie {cookies:?}, bearer {bearers:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "refused at every worker of both Envoys after {:?}",
        start.elapsed()
    );
}

#[test]
fn concurrent_refreshes_spread_over_both_envoys_rotate_once() {
    let stack = scaled_out(StackOptions {
        access_ttl: 2,
        plugin_config_patch: Some(|config| {
            config["jwt"]["leeway_seconds"] = json!(0);
            config["jwt"]["refresh_window_seconds"] = json!(30);
        }),
        ..StackOptions::default()
    });
    let token = stack.login_app("alan", "turing");
    let handle = claims_of(&token).sid;
    std::thread::sleep(Duration::from_millis(3100));
    let barrier = Barrier::new(20);
    let bearer = format!("Bearer {token}");
    let replies: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let (barrier, bearer, stack) = (&barrier, &bearer, &stack);
                scope.spawn(move || {
                    barrier.wait();
                    stack.get_via(i % 2, "/me", &[("authorization", bearer)])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut new_tokens: Vec<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.body);
            r.header("x-portero-access-token")
                .expect("a new token")
                .to_string()
        })
        .collect();
    new_tokens.sort();
    new_tokens.dedup();
    assert_eq!(new_tokens.len(), 1, "every client got the same new token");
    let key = format!("portero:session:{{{}}}:{handle}", &handle[..22]);
    let rotations = stack.redis_cli(&["HGET", &key, "rotations"]);
    assert_eq!(
        rotations.trim(),
        "1",
        "exactly one rotation across both Envoys"
    );
    for envoy in 0..2 {
        let me = stack.get_via(
            envoy,
            "/me",
            &[("authorization", &format!("Bearer {}", new_tokens[0]))],
        );
        assert_eq!(me.status, 200);
    }
}
