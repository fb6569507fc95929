//! Per-route policy, session binding, login redirects and the counters that
//! report them, through real Envoy.

use std::thread::sleep;
use std::time::{Duration, Instant};

use portero_integration::{Stack, StackOptions, COOKIE_NAME};
use serde_json::{json, Value};

fn cookie(value: &str) -> String {
    format!("{COOKIE_NAME}={value}")
}

/// A stack whose Envoy trusts one proxy hop in front of it: the client is
/// then the address that proxy put in `X-Forwarded-For`.
fn behind_one_trusted_proxy(patch: fn(&mut Value)) -> Stack {
    Stack::start_with(StackOptions {
        xff_trusted_hops: 1,
        plugin_config_patch: Some(patch),
        ..StackOptions::default()
    })
}

/// The sessions the sidecar lists for a user: (client_ip, user_agent).
fn sessions_of(stack: &Stack, user_id: &str) -> Vec<(String, String)> {
    let reply = stack.admin("GET", &format!("/v1/users/{user_id}/sessions"), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| {
            (
                s["client_ip"].as_str().unwrap_or_default().to_string(),
                s["user_agent"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

const IP_MISMATCH_REJECTED: &str = r#"portero_binding_mismatches{field="ip",action="reject"}"#;
const UA_MISMATCH_REJECTED: &str =
    r#"portero_binding_mismatches{field="user_agent",action="reject"}"#;
const IP_MISMATCH_LOGGED: &str = r#"portero_binding_mismatches{field="ip",action="log"}"#;

// ── session binding ─────────────────────────────────────────────────────

#[test]
fn ip_change_under_exact_is_refused_and_ends_the_session() {
    let stack = behind_one_trusted_proxy(|c| {
        c["binding"] = json!({"ip": {"compare": "exact", "policy": "reject"}, "user_agent": {"compare": "off"}});
    });
    let home = [("x-forwarded-for", "198.51.100.7")];
    let value = stack.login_web_with("ada", "lovelace", &home);
    // Bound to the client behind the trusted proxy, not to the proxy.
    assert_eq!(
        sessions_of(&stack, "user-ada")
            .into_iter()
            .map(|s| s.0)
            .collect::<Vec<_>>(),
        vec!["198.51.100.7"]
    );
    let c = cookie(&value);
    let same = stack.get("/me", &[("cookie", &c), home[0]]);
    assert_eq!(same.status, 200, "{}", same.body);
    assert_eq!(same.json()["client_ip"], "198.51.100.7");
    assert_eq!(stack.metric(IP_MISMATCH_REJECTED), 0);

    let elsewhere = stack.get(
        "/me",
        &[("cookie", &c), ("x-forwarded-for", "198.51.100.8")],
    );
    assert_eq!(elsewhere.status, 401, "{}", elsewhere.body);
    assert_eq!(elsewhere.json()["reason"], "session_binding_mismatch");
    assert!(elsewhere
        .set_cookie(COOKIE_NAME)
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(stack.metric(IP_MISMATCH_REJECTED), 1);
    assert_eq!(
        stack.metric(r#"portero_requests{flow="cookie",outcome="session_binding_mismatch"}"#),
        1
    );
    // `on_reject: end_session` (the default): the stolen cookie is dead
    // everywhere, the rightful client logs in again.
    assert!(sessions_of(&stack, "user-ada").is_empty());
    let back_home = stack.get("/me", &[("cookie", &c), home[0]]);
    assert_eq!(back_home.status, 401);
    assert_eq!(back_home.json()["reason"], "session_not_found");
}

#[test]
fn ip_change_within_the_prefix_is_allowed() {
    let stack = behind_one_trusted_proxy(|c| {
        c["binding"] = json!({
            "ip": {"compare": "prefix", "ipv4_prefix_len": 24, "policy": "reject"},
            "user_agent": {"compare": "off"},
            "on_reject": "keep_session"
        });
    });
    let value = stack.login_web_with("ada", "lovelace", &[("x-forwarded-for", "198.51.100.7")]);
    let c = cookie(&value);
    // From 4G to Wi-Fi in the same /24: still the same client.
    let moved = stack.get(
        "/me",
        &[("cookie", &c), ("x-forwarded-for", "198.51.100.200")],
    );
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(stack.metric(IP_MISMATCH_REJECTED), 0);
    // Another network is not.
    let other = stack.get(
        "/me",
        &[("cookie", &c), ("x-forwarded-for", "198.51.101.7")],
    );
    assert_eq!(other.status, 401, "{}", other.body);
    assert_eq!(other.json()["reason"], "session_binding_mismatch");
    // `keep_session`: the session and its cookie survive.
    assert_eq!(other.set_cookie(COOKIE_NAME), None);
    assert_eq!(sessions_of(&stack, "user-ada").len(), 1);
    assert_eq!(stack.metric(IP_MISMATCH_REJECTED), 1);
}

#[test]
fn ip_change_under_log_passes_and_tells_the_upstream() {
    // The default binding: IP by /24 prefix, logged.
    let stack = behind_one_trusted_proxy(|_| {});
    let value = stack.login_web_with(
        "ada",
        "lovelace",
        &[("x-forwarded-for", "198.51.100.7"), ("user-agent", "ua-1")],
    );
    let c = cookie(&value);
    let headers = [
        ("cookie", c.as_str()),
        ("x-forwarded-for", "203.0.113.9"),
        ("user-agent", "ua-1"),
        // A client cannot set the step-up hint itself.
        ("x-portero-binding-mismatch", "none"),
    ];
    let reply = stack.get("/feed", &headers);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["user"], "user-ada");
    assert_eq!(reply.json()["binding_mismatch"], "ip");
    assert_eq!(stack.metric(IP_MISMATCH_LOGGED), 1);
    let same = stack.get(
        "/feed",
        &[
            ("cookie", c.as_str()),
            ("x-forwarded-for", "198.51.100.7"),
            ("user-agent", "ua-1"),
            ("x-portero-binding-mismatch", "forged"),
        ],
    );
    assert_eq!(same.json()["binding_mismatch"], Value::Null);
}

#[test]
fn user_agent_change_under_reject_is_401() {
    let stack = Stack::start_with(StackOptions {
        plugin_config_patch: Some(|c| {
            c["binding"] = json!({
                "ip": {"compare": "off"},
                "user_agent": {"compare": "exact", "policy": "reject"},
                "on_reject": "keep_session"
            });
        }),
        ..StackOptions::default()
    });
    let value = stack.login_web_with("ada", "lovelace", &[("user-agent", "Firefox/140")]);
    let c = cookie(&value);
    let other = stack.get("/me", &[("cookie", &c), ("user-agent", "curl/8.0")]);
    assert_eq!(other.status, 401, "{}", other.body);
    assert_eq!(other.json()["reason"], "session_binding_mismatch");
    assert_eq!(
        other.set_cookie(COOKIE_NAME),
        None,
        "kept session keeps its cookie"
    );
    let none = stack.get("/me", &[("cookie", &c)]);
    assert_eq!(none.status, 401, "another UA (the harness's default)");
    assert_eq!(stack.metric(UA_MISMATCH_REJECTED), 2);
    let same = stack.get("/me", &[("cookie", &c), ("user-agent", "Firefox/140")]);
    assert_eq!(same.status, 200, "{}", same.body);
}

#[test]
fn forged_x_forwarded_for_does_not_move_the_bound_ip() {
    // No trusted hops (the default): X-Forwarded-For is the client's word.
    let stack = Stack::start_with(StackOptions {
        plugin_config_patch: Some(|c| {
            c["binding"] = json!({"ip": {"compare": "exact", "policy": "reject"}, "user_agent": {"compare": "off"}});
        }),
        ..StackOptions::default()
    });
    let value = stack.login_web_with("ada", "lovelace", &[("x-forwarded-for", "10.1.1.1")]);
    assert_eq!(
        sessions_of(&stack, "user-ada")
            .into_iter()
            .map(|s| s.0)
            .collect::<Vec<_>>(),
        vec!["127.0.0.1"],
        "login recorded Envoy's view, not the forged header"
    );
    let c = cookie(&value);
    for forged in ["10.9.9.9", "127.0.0.1", "10.1.1.1, 10.2.2.2"] {
        let reply = stack.get("/me", &[("cookie", &c), ("x-forwarded-for", forged)]);
        assert_eq!(reply.status, 200, "{forged}: {}", reply.body);
        assert_eq!(reply.json()["client_ip"], "127.0.0.1");
    }
    assert_eq!(stack.metric(IP_MISMATCH_REJECTED), 0);
}

// ── per-route policy ────────────────────────────────────────────────────

#[test]
fn optional_route_with_and_without_a_session() {
    let stack = Stack::start();
    let anonymous = stack.get("/feed", &[("x-portero-user-id", "user-ada")]);
    assert_eq!(anonymous.status, 200, "{}", anonymous.body);
    assert_eq!(
        anonymous.json()["user"],
        Value::Null,
        "forged identity stripped"
    );
    assert_eq!(
        stack.metric(r#"portero_requests{flow="anonymous",outcome="anonymous"}"#),
        1
    );

    let value = stack.login_web("ada", "lovelace");
    let named = stack.get("/feed", &[("cookie", &cookie(&value))]);
    assert_eq!(named.status, 200, "{}", named.body);
    assert_eq!(named.json()["user"], "user-ada");

    // A dead session cookie is dropped and cleared: the page is served,
    // for nobody (the user whose session ended can still reach it).
    let dead = stack.get("/feed", &[("cookie", &cookie("garbage"))]);
    assert_eq!(dead.status, 200, "{}", dead.body);
    assert_eq!(dead.json()["user"], Value::Null);
    assert!(dead.set_cookie(COOKIE_NAME).unwrap().contains("Max-Age=0"));
    // So is one of a session that ended: logged out elsewhere.
    let logout = stack.request(
        "POST",
        "/auth/logout",
        &[
            ("cookie", &cookie(&value)),
            ("sec-fetch-site", "same-origin"),
        ],
        Some(&serde_json::json!({})),
    );
    assert_eq!(logout.status, 200, "{}", logout.body);
    let ended = stack.get("/feed", &[("cookie", &cookie(&value))]);
    assert_eq!(ended.status, 200, "{}", ended.body);
    assert_eq!(ended.json()["user"], Value::Null);
    assert!(ended.set_cookie(COOKIE_NAME).unwrap().contains("Max-Age=0"));
    // A bearer token that is presented must still be good: an API client
    // must learn its token is dead.
    let bad_token = stack.get("/feed", &[("authorization", "Bearer not.a.token")]);
    assert_eq!(bad_token.status, 401);
    // Required routes still require.
    assert_eq!(stack.get("/me", &[]).status, 401);
}

#[test]
fn role_gated_route_is_200_or_403() {
    let stack = Stack::start();
    let ada = stack.login_web("ada", "lovelace"); // roles admin, dev
    let alan = stack.login_app("alan", "turing"); // role dev
    let allowed = stack.get("/admin/overview", &[("cookie", &cookie(&ada))]);
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(allowed.json()["user"], "user-ada");

    let bearer = format!("Bearer {alan}");
    let refused = stack.get("/admin/overview", &[("authorization", &bearer)]);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        refused.json(),
        json!({"error": "forbidden", "reason": "missing_role"})
    );
    assert_eq!(
        stack.metric(r#"portero_requests{flow="bearer",outcome="missing_role"}"#),
        1
    );
    // The rule follows the Envoy route named `admin`, whatever its paths.
    assert_eq!(stack.get("/me", &[("authorization", &bearer)]).status, 200);

    // Roles come from the user record: a grant applies as soon as the
    // revocation feed has carried it to the worker (within 2 s).
    let grant = stack.admin(
        "PUT",
        "/v1/users/user-alan",
        Some(&json!({"roles": ["dev", "admin"]})),
    );
    assert_eq!(grant.status, 200, "{}", grant.body);
    let start = Instant::now();
    loop {
        let reply = stack.get("/admin/overview", &[("authorization", &bearer)]);
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 403, "{}", reply.body);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "grant never applied"
        );
        sleep(Duration::from_millis(50));
    }
}

// ── browser-friendly errors ─────────────────────────────────────────────

fn with_login_redirect() -> Stack {
    Stack::start_with(StackOptions {
        plugin_config_patch: Some(|c| {
            c["login_redirect"] = json!({"url": "/auth/login-page", "return_parameter": "next"});
        }),
        ..StackOptions::default()
    })
}

#[test]
fn html_navigation_without_a_session_redirects_to_login() {
    let stack = with_login_redirect();
    let html = ("accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8");
    let page = stack.get("/reports/2026?tab=q4", &[html]);
    assert_eq!(page.status, 302, "{}", page.body);
    assert_eq!(
        page.header("location"),
        Some("/auth/login-page?next=/reports/2026%3Ftab%3Dq4")
    );
    // A dead cookie is cleared on the way to the login page.
    let dead = stack.get("/me", &[html, ("cookie", &cookie("garbage"))]);
    assert_eq!(dead.status, 302);
    assert!(dead.set_cookie(COOKIE_NAME).unwrap().contains("Max-Age=0"));
    // APIs keep the JSON 401.
    let api = stack.get("/me", &[("accept", "application/json")]);
    assert_eq!(api.status, 401);
    assert_eq!(api.json()["reason"], "no_credentials");
    let post = stack.request("POST", "/me", &[html], Some(&json!({})));
    assert_eq!(post.status, 401);
    // A live session is not redirected.
    let value = stack.login_web("ada", "lovelace");
    assert_eq!(
        stack
            .get("/me", &[html, ("cookie", &cookie(&value))])
            .status,
        200
    );
}

#[test]
fn a_return_path_to_another_host_is_refused() {
    let stack = with_login_redirect();
    let html = ("accept", "text/html");
    for path in [
        "//evil.example/steal",
        "/%2F%2Fevil.example/steal",
        "/\\evil.example/steal",
    ] {
        let mut reply = stack.get(path, &[html]);
        if reply.status == 307 {
            // Envoy's own redirect to the unescaped path: follow it once.
            let canonical = reply.header("location").expect("location").to_string();
            let canonical = canonical
                .find("://")
                .and_then(|i| {
                    canonical[i + 3..]
                        .find('/')
                        .map(|j| canonical[i + 3 + j..].to_string())
                })
                .unwrap_or(canonical);
            reply = stack.get(&canonical, &[html]);
        }
        if reply.status == 400 {
            continue; // Envoy refused the path itself: nothing to redirect.
        }
        assert_eq!(reply.status, 302, "{path}: {}", reply.body);
        let location = reply.header("location").expect("location");
        let back = location
            .strip_prefix("/auth/login-page")
            .unwrap_or_else(|| panic!("{path}: went elsewhere: {location}"));
        if let Some(next) = back.strip_prefix("?next=") {
            assert!(
                next.starts_with('/') && !next.starts_with("//") && !next.contains('\\'),
                "{path}: {location}"
            );
        } else {
            assert_eq!(back, "", "{path}: {location}");
        }
    }
}

// ── observability ───────────────────────────────────────────────────────

#[test]
fn sidecar_latency_and_errors_reach_prometheus() {
    let mut stack = Stack::start();
    let value = stack.login_web("ada", "lovelace");
    let c = cookie(&value);
    let unused = cookie(&stack.login_web("alan", "turing"));
    assert_eq!(stack.get("/me", &[("cookie", &c)]).status, 200);
    assert_eq!(
        stack.metric(r#"portero_requests{flow="cookie",outcome="allowed"}"#),
        1
    );
    // Histograms are published at Envoy's stats flush (1 s here).
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack.metric("portero_sidecar_latency_us_count{}") == 0 {
        assert!(
            Instant::now() < deadline,
            "latency histogram never published"
        );
        sleep(Duration::from_millis(200));
    }
    stack.stop_sidecar();
    // A session this worker has no cached view of: the sidecar must answer.
    let down = stack.get("/me", &[("cookie", &unused)]);
    assert_eq!(down.status, 503);
    assert_eq!(
        stack.metric(r#"portero_sidecar_errors{kind="no_answer"}"#)
            + stack.metric(r#"portero_sidecar_errors{kind="error_status"}"#),
        1
    );
    assert_eq!(
        stack.metric(r#"portero_requests{flow="cookie",outcome="sidecar_unavailable"}"#),
        1
    );
}

#[test]
fn sidecar_serves_prometheus_metrics() {
    // Session cache off: every request reaches the sidecar and Redis.
    let mut stack = Stack::start_with(StackOptions::no_session_cache());
    stack.login_web("ada", "lovelace");
    let value = stack.login_web("alan", "turing");
    assert_eq!(stack.get("/me", &[("cookie", &cookie(&value))]).status, 200);
    let text = stack
        .send("GET", &stack.sidecar_url("/metrics"), &[], None)
        .body;
    assert!(
        text.contains(r#"portero_sidecar_http_requests_total{route="/v1/sessions",method="POST",status="201"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"portero_sidecar_http_requests_total{route="/v1/sessions/lookup",method="POST",status="200"} 1"#),
        "{text}"
    );
    assert!(text.contains("portero_sidecar_http_request_duration_seconds_bucket"));
    assert!(
        text.contains("portero_sidecar_redis_errors_total 0"),
        "{text}"
    );
    stack.stop_redis();
    let down = stack.get("/me", &[("cookie", &cookie(&value))]);
    assert_eq!(down.status, 503);
    let text = stack
        .send("GET", &stack.sidecar_url("/metrics"), &[], None)
        .body;
    assert!(
        text.contains("portero_sidecar_redis_errors_total 1"),
        "{text}"
    );
}
