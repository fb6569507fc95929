//! Stateful refresh, reuse detection, revocation and the per-request user
//! check, through real Envoy + portero, redis-sidecar, Redis and Fastify.

use std::sync::Barrier;
use std::time::Duration;

use portero_integration::{claims_of, unix_now, Stack, StackOptions, COOKIE_NAME};
use serde_json::json;

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Access tokens of 2 s, no clock leeway, a 3 s refresh window.
fn short_tokens() -> StackOptions {
    StackOptions {
        access_ttl: 2,
        plugin_config_patch: Some(|config| {
            config["jwt"]["leeway_seconds"] = json!(0);
            config["jwt"]["refresh_window_seconds"] = json!(3);
        }),
        ..StackOptions::default()
    }
}

/// Access tokens of 2 s, no clock leeway, a 30 s refresh window.
fn short_tokens_long_window() -> StackOptions {
    StackOptions {
        plugin_config_patch: Some(|config| {
            config["jwt"]["leeway_seconds"] = json!(0);
            config["jwt"]["refresh_window_seconds"] = json!(30);
        }),
        ..short_tokens()
    }
}

/// Sleeps until every token minted before the call has expired (2 s tokens,
/// whole-second clocks).
fn outlive_tokens() {
    sleep_ms(3100);
}

fn session_key(stack: &Stack, handle: &str) -> String {
    let key = format!("portero:session:{{{}}}:{handle}", &handle[..22]);
    assert!(stack.session_keys().contains(&key), "{key} not in Redis");
    key
}

fn rotations(stack: &Stack, handle: &str) -> u64 {
    let key = session_key(stack, handle);
    stack
        .redis_cli(&["HGET", &key, "rotations"])
        .trim()
        .parse()
        .unwrap()
}

fn upstream_token(reply: &portero_integration::Reply) -> String {
    reply.json()["authorization"]
        .as_str()
        .and_then(|a| a.strip_prefix("Bearer "))
        .expect("upstream got a bearer token")
        .to_string()
}

#[test]
fn cookie_flow_refreshes_an_expired_access_token_once() {
    let stack = Stack::start_with(short_tokens());
    let cookie = stack.login_web("ada", "lovelace");
    let first = stack.me_with_cookie(&cookie);
    assert_eq!(first.status, 200);
    let old_token = upstream_token(&first);
    let handle = first.json()["session"].as_str().unwrap().to_string();
    assert_eq!(rotations(&stack, &handle), 0);
    outlive_tokens();
    let second = stack.me_with_cookie(&cookie);
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(
        second.set_cookie(COOKIE_NAME),
        None,
        "the client sees a normal response"
    );
    let new_token = upstream_token(&second);
    assert_ne!(new_token, old_token);
    assert!(
        claims_of(&new_token).exp > unix_now(),
        "upstream saw a fresh token"
    );
    assert_eq!(rotations(&stack, &handle), 1);
    let third = stack.me_with_cookie(&cookie);
    assert_eq!(upstream_token(&third), new_token);
    assert_eq!(
        rotations(&stack, &handle),
        1,
        "a fresh token is not rotated again"
    );
}

#[test]
fn jwt_flow_refreshes_within_the_window_only() {
    let stack = Stack::start_with(short_tokens());
    let token = stack.login_app("alan", "turing");
    let too_late = stack.login_app("ada", "lovelace");
    assert!(stack
        .me_with_token(&token)
        .header("x-portero-access-token")
        .is_none());
    outlive_tokens();
    let reply = stack.me_with_token(&token);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let new_token = reply
        .header("x-portero-access-token")
        .expect("the new token in the response")
        .to_string();
    assert_ne!(new_token, token);
    assert_eq!(
        upstream_token(&reply),
        new_token,
        "upstream saw the new token"
    );
    let again = stack.me_with_token(&new_token);
    assert_eq!(again.status, 200);
    assert!(again.header("x-portero-access-token").is_none());
    // Past exp + refresh window (3 s): no refresh, 401.
    sleep_ms(2100);
    let reply = stack.me_with_token(&too_late);
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["reason"], "token_expired");
}

#[test]
fn fifty_concurrent_refreshes_rotate_exactly_once() {
    let stack = Stack::start_with(short_tokens_long_window());
    let token = stack.login_app("alan", "turing");
    let handle = claims_of(&token).sid;
    outlive_tokens();
    let barrier = Barrier::new(50);
    let replies: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    stack.me_with_token(&token)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut new_tokens: Vec<String> = Vec::new();
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.body);
        let new_token = reply
            .header("x-portero-access-token")
            .expect("new token")
            .to_string();
        new_tokens.push(new_token);
    }
    new_tokens.dedup();
    assert_eq!(new_tokens.len(), 1, "all got the same new token");
    assert_eq!(rotations(&stack, &handle), 1, "exactly one rotation");
    assert_eq!(stack.me_with_token(&new_tokens[0]).status, 200);
}

#[test]
fn replayed_token_after_the_grace_window_revokes_the_session() {
    let stack = Stack::start_with(StackOptions {
        refresh_grace: 1,
        ..short_tokens_long_window()
    });
    let token = stack.login_app("alan", "turing");
    outlive_tokens();
    let refreshed = stack.me_with_token(&token);
    let new_token = refreshed
        .header("x-portero-access-token")
        .unwrap()
        .to_string();
    // Within the grace window the old token still maps to the new one.
    let within = stack.me_with_token(&token);
    assert_eq!(within.status, 200);
    assert_eq!(
        within.header("x-portero-access-token"),
        Some(new_token.as_str())
    );
    // The successor's first use: from now on (after the grace) the old
    // token is a replay. Until then it stays exchangeable (faults.rs).
    assert_eq!(stack.me_with_token(&new_token).status, 200);
    sleep_ms(2100);
    let replay = stack.me_with_token(&token);
    assert_eq!(replay.status, 401);
    assert_eq!(replay.json()["reason"], "token_replayed");
    assert!(stack.session_keys().is_empty(), "session revoked on replay");
    // Both show in Envoy's /stats/prometheus.
    assert_eq!(stack.metric("portero_refreshes{}"), 1);
    assert_eq!(stack.metric("portero_reuse_detected{}"), 1);
    let after = stack.me_with_token(&new_token);
    assert_eq!(after.status, 401, "{}", after.body);
    assert_eq!(after.json()["reason"], "session_not_found");
}

#[test]
fn replayed_token_with_revocation_off_is_refused_but_the_session_lives() {
    let stack = Stack::start_with(StackOptions {
        refresh_grace: 1,
        revoke_on_replay: false,
        ..short_tokens_long_window()
    });
    let token = stack.login_app("alan", "turing");
    outlive_tokens();
    let new_token = stack
        .me_with_token(&token)
        .header("x-portero-access-token")
        .unwrap()
        .to_string();
    assert_eq!(stack.me_with_token(&new_token).status, 200);
    sleep_ms(2100);
    let replay = stack.me_with_token(&token);
    assert_eq!(replay.json()["reason"], "token_replayed");
    assert_eq!(stack.me_with_token(&new_token).status, 200);
}

#[test]
fn banned_user_is_refused_at_once_on_both_flows() {
    // Without the session cache: the store's answer on every request (the
    // cached path is held to its feed bound in caches.rs).
    let stack = Stack::start_with(StackOptions::no_session_cache());
    let cookie = stack.login_web("alan", "turing");
    let token = stack.login_app("alan", "turing");
    let other = stack.login_web("ada", "lovelace");
    assert_eq!(stack.me_with_cookie(&cookie).status, 200);
    // Through the demo app's admin route, as ada (role admin).
    let ban = stack.request(
        "POST",
        "/admin/users/alan/ban",
        &[
            ("cookie", &format!("{COOKIE_NAME}={other}")),
            ("sec-fetch-site", "same-origin"),
        ],
        Some(&json!({"banned": true})),
    );
    assert_eq!(ban.status, 200, "{}", ban.body);
    for reply in [stack.me_with_cookie(&cookie), stack.me_with_token(&token)] {
        assert_eq!(reply.status, 401);
        assert_eq!(reply.json()["reason"], "user_banned");
        // The ban keeps the session, so the browser keeps its cookie.
        assert_eq!(reply.set_cookie(COOKIE_NAME), None);
    }
    assert_eq!(stack.me_with_cookie(&other).status, 200);
    // A banned user cannot log in either.
    let login = stack.request(
        "POST",
        "/auth/login",
        &[],
        Some(&json!({"username": "alan", "password": "turing", "client": "web"})),
    );
    assert_eq!(login.status, 403);
    // Unbanned, the sessions work again (a ban is not a revocation).
    let unban = stack.admin(
        "PUT",
        "/v1/users/user-alan",
        Some(&json!({"status": "active"})),
    );
    assert_eq!(unban.status, 200);
    assert_eq!(stack.me_with_cookie(&cookie).status, 200);
}

#[test]
fn non_admin_cannot_use_the_demo_ban_route() {
    let stack = Stack::start();
    let alan = stack.login_web("alan", "turing");
    let ban = stack.request(
        "POST",
        "/admin/users/ada/ban",
        &[
            ("cookie", &format!("{COOKIE_NAME}={alan}")),
            ("sec-fetch-site", "same-origin"),
        ],
        Some(&json!({})),
    );
    assert_eq!(ban.status, 403);
    // Refused at the edge (the `admin` Envoy route needs the `admin` role),
    // not by CSRF; the app's own check stays as defence in depth.
    assert_eq!(ban.json()["reason"], "missing_role");
    assert_eq!(stack.me_with_cookie(&alan).status, 200, "session kept");
}

#[test]
fn revoke_all_ends_every_session_of_one_user_only() {
    let stack = Stack::start();
    let web = stack.login_web("alan", "turing");
    let app = stack.login_app("alan", "turing");
    let ada = stack.login_web("ada", "lovelace");
    let listed = stack.admin("GET", "/v1/users/user-alan/sessions", None);
    assert_eq!(listed.status, 200);
    let sessions = listed.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2);
    assert!(sessions.iter().all(|s| s["client_ip"] == "127.0.0.1"));
    let agents: Vec<&str> = sessions
        .iter()
        .map(|s| s["user_agent"].as_str().unwrap())
        .collect();
    assert!(agents.contains(&"portero-test") && agents.contains(&"portero-test-app"));

    // "Log out everywhere" through the app, from the web session.
    let out = stack.request(
        "POST",
        "/auth/logout-everywhere",
        &[
            ("cookie", &format!("{COOKIE_NAME}={web}")),
            ("sec-fetch-site", "same-origin"),
        ],
        Some(&json!({})),
    );
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(out.json()["ended"], 2);
    assert!(out.set_cookie(COOKIE_NAME).unwrap().contains("Max-Age=0"));
    for reply in [stack.me_with_cookie(&web), stack.me_with_token(&app)] {
        assert_eq!(reply.status, 401);
    }
    assert_eq!(
        stack.me_with_cookie(&ada).status,
        200,
        "another user's session still works"
    );
    let user = stack.admin("GET", "/v1/users/user-alan", None).json();
    assert_eq!(user["token_version"], 1);
    // A new login after the revocation is a good session.
    let fresh = stack.login_web("alan", "turing");
    assert_eq!(stack.me_with_cookie(&fresh).status, 200);
}

#[test]
fn role_change_reaches_upstream_on_the_next_request() {
    let stack = Stack::start_with(StackOptions::no_session_cache());
    let cookie = stack.login_web("alan", "turing");
    let token = stack.login_app("alan", "turing");
    assert_eq!(
        stack.me_with_cookie(&cookie).json()["roles"],
        json!(["dev"])
    );
    let set = stack.admin(
        "PUT",
        "/v1/users/user-alan",
        Some(&json!({"roles": ["auditor", "ops"], "permissions": ["read"]})),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(
        stack.me_with_cookie(&cookie).json()["roles"],
        json!(["auditor", "ops"])
    );
    assert_eq!(
        stack.me_with_token(&token).json()["roles"],
        json!(["auditor", "ops"])
    );
    // The token's claims carry no roles the filter could trust instead.
    assert!(serde_json::to_value(claims_of(&token))
        .unwrap()
        .get("roles")
        .is_none());
}

#[test]
fn idle_and_absolute_expiry_leave_no_dead_index_entries() {
    let stack = Stack::start_with(StackOptions {
        idle_timeout: 2,
        absolute_timeout: 4,
        ..StackOptions::default()
    });
    let idle = stack.login_web("alan", "turing");
    let busy = stack.login_web("alan", "turing");
    let tag = &stack.me_with_cookie(&busy).json()["session"]
        .as_str()
        .unwrap()[..22]
        .to_string();
    let index = format!("portero:sessions:{{{tag}}}");
    assert_eq!(stack.redis_cli(&["ZCARD", &index]).trim(), "2");
    let started = std::time::Instant::now();
    let mut idle_checked = false;
    loop {
        sleep_ms(700);
        let reply = stack.me_with_cookie(&busy);
        if reply.status == 401 {
            assert_eq!(reply.json()["reason"], "session_not_found");
            assert!(
                started.elapsed() >= Duration::from_millis(2900),
                "ended before its absolute expiry"
            );
            break;
        }
        assert_eq!(reply.status, 200, "activity keeps the session alive");
        // Look at the idle one only once it has idled past its timeout (a
        // look-up is activity).
        if !idle_checked && started.elapsed() >= Duration::from_millis(2600) {
            let r = stack.me_with_cookie(&idle);
            assert_eq!(r.status, 401);
            assert_eq!(r.json()["reason"], "session_not_found");
            idle_checked = true;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "busy session never ended"
        );
    }
    assert!(
        idle_checked,
        "the absolute expiry came before the idle check"
    );
    assert!(stack.session_keys().is_empty());
    assert_eq!(
        stack.redis_cli(&["ZCARD", &index]).trim(),
        "0",
        "dead index entries"
    );
}

#[test]
fn redis_down_during_refresh_is_503_and_the_session_survives() {
    let mut stack = Stack::start_with(short_tokens());
    let cookie = stack.login_web("ada", "lovelace");
    let handle = stack.me_with_cookie(&cookie).json()["session"]
        .as_str()
        .unwrap()
        .to_string();
    stack.redis_cli(&["SAVE"]);
    outlive_tokens();
    stack.stop_redis();
    let reply = stack.me_with_cookie(&cookie);
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.set_cookie(COOKIE_NAME), None);
    stack.start_redis();
    let mut status = 0;
    for _ in 0..50 {
        status = stack.me_with_cookie(&cookie).status;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        sleep_ms(100);
    }
    assert_eq!(status, 200, "the same session works once Redis is back");
    assert_eq!(rotations(&stack, &handle), 1);
}
