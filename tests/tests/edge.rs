//! Session issuance, header hygiene, failure handling and per-route control,
//! through real Envoy + portero, redis-sidecar, Redis and Fastify.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use portero_integration::{Shell, Stack, StackOptions, COOKIE_NAME};
use serde_json::json;

fn cookie(value: &str) -> String {
    format!("{COOKIE_NAME}={value}")
}

const SPOOFED: [(&str, &str); 5] = [
    ("x-portero-user-id", "root"),
    ("x-portero-session", "forged"),
    ("x-portero-email", "root@example.com"),
    ("x-portero-roles", "superuser"),
    ("x-portero-client-ip", "10.9.9.9"),
];

/// The suite runs once per shell (`PORTERO_SHELL`): the Envoy it talks to
/// runs the filter in the shell asked for, and only that one.
#[test]
fn the_stack_runs_the_filter_in_the_shell_the_suite_asked_for() {
    let stack = Stack::start();
    // The listeners Envoy runs (the rest of the dump lists every extension
    // type compiled in, both shells' among them).
    let admin = format!(
        "http://127.0.0.1:{}/config_dump?resource=static_listeners",
        stack.options.admin_port
    );
    let dump = stack.send("GET", &admin, &[], None).body;
    let (module, wasm) = (
        dump.contains("type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"),
        dump.contains("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"),
    );
    match Shell::from_env() {
        Shell::Wasm => assert!(wasm && !module, "expected the wasm filter"),
        Shell::DynamicModule => assert!(module && !wasm, "expected the dynamic module"),
    }
    // Its metrics reach Envoy's Prometheus page under the same series.
    assert_eq!(stack.request("GET", "/me", &[], None).status, 401);
    assert!(stack.metric(r#"portero_requests{flow="anonymous",outcome="no_credentials"}"#) >= 1);
}

#[test]
fn login_sets_the_cookie_and_logout_ends_the_session() {
    let stack = Stack::start();
    let reply = stack.request(
        "POST",
        "/auth/login",
        &[],
        Some(&json!({"username": "ada", "password": "lovelace", "client": "web"})),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.header("x-portero-start-session"),
        None,
        "internal header leaked"
    );
    let set_cookie = reply.set_cookie(COOKIE_NAME).expect("Set-Cookie");
    let attributes: Vec<&str> = set_cookie.split("; ").skip(1).collect();
    assert_eq!(
        attributes,
        ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"]
    );
    let value = reply.cookie_value(COOKIE_NAME).unwrap();
    // Redis holds the session under a keyed hash, never the id itself.
    let keys = stack.session_keys();
    assert_eq!(keys.len(), 1);
    let me = stack.get("/me", &[("cookie", &cookie(&value))]).json();
    let handle = me["session"].as_str().unwrap();
    // The user's tag leads the handle and is the key's Redis Cluster hash tag.
    let tag = &handle[..22];
    assert_eq!(keys[0], format!("portero:session:{{{tag}}}:{handle}"));

    let out = stack.request(
        "POST",
        "/auth/logout",
        &[
            ("cookie", &cookie(&value)),
            ("sec-fetch-site", "same-origin"),
        ],
        Some(&json!({})),
    );
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(out.json()["ended"], true);
    assert_eq!(
        out.header("x-portero-end-session"),
        None,
        "internal header leaked"
    );
    let cleared = out.set_cookie(COOKIE_NAME).expect("cookie cleared");
    assert!(
        cleared.starts_with(&format!("{COOKIE_NAME}=; Path=/; Max-Age=0")),
        "{cleared}"
    );
    assert!(
        stack.session_keys().is_empty(),
        "session still in Redis after logout"
    );
    let after = stack.get("/me", &[("cookie", &cookie(&value))]);
    assert_eq!(after.status, 401);
    assert_eq!(after.json()["reason"], "session_not_found");
}

#[test]
fn every_login_gets_a_new_session() {
    let stack = Stack::start();
    let first = stack.login_web("ada", "lovelace");
    // Logging in again while holding a cookie does not reuse its session.
    let reply = stack.request(
        "POST",
        "/auth/login",
        &[("cookie", &cookie(&first))],
        Some(&json!({"username": "ada", "password": "lovelace", "client": "web"})),
    );
    let second = reply.cookie_value(COOKIE_NAME).unwrap();
    let me1 = stack.get("/me", &[("cookie", &cookie(&first))]).json();
    let me2 = stack.get("/me", &[("cookie", &cookie(&second))]).json();
    assert_ne!(me1["session"], me2["session"]);
    assert_eq!(stack.session_keys().len(), 2);
}

#[test]
fn wrong_password_gets_no_session() {
    let stack = Stack::start();
    let reply = stack.request(
        "POST",
        "/auth/login",
        &[],
        Some(&json!({"username": "ada", "password": "nope", "client": "web"})),
    );
    assert_eq!(reply.status, 401);
    assert!(reply.headers_named("set-cookie").is_empty());
    assert!(stack.session_keys().is_empty());
}

#[test]
fn spoofed_identity_headers_are_stripped() {
    let stack = Stack::start();
    let value = stack.login_web("alan", "turing");
    let token = stack.login_app("alan", "turing");
    let cookie_header = cookie(&value);
    let bearer = format!("Bearer {token}");
    for credential in [
        ("cookie", cookie_header.as_str()),
        ("authorization", bearer.as_str()),
    ] {
        let mut headers = SPOOFED.to_vec();
        headers.push(credential);
        let me = stack.get("/me", &headers).json();
        assert_eq!(me["user_id"], "user-alan");
        assert_eq!(me["email"], "alan@example.com");
        assert_eq!(me["roles"], json!(["dev"]));
        assert_eq!(me["client_ip"], "127.0.0.1");
        assert_ne!(me["session"], "forged");
    }
    // On the login route (policy off) nothing is authenticated, and the
    // forged identity still does not get through: the login records the
    // client IP Envoy saw.
    let reply = stack.request(
        "POST",
        "/auth/login",
        &SPOOFED,
        Some(&json!({"username": "alan", "password": "turing", "client": "web"})),
    );
    assert_eq!(reply.status, 200);
    let key = &stack.session_keys()[0];
    let record = stack.redis_cli(&["HGET", key, "record"]);
    assert!(record.contains("\"client_ip\":\"127.0.0.1\""), "{record}");
}

#[test]
fn sidecar_down_is_503_and_the_session_survives() {
    let mut stack = Stack::start();
    let value = stack.login_web("ada", "lovelace");
    let token = stack.login_app("ada", "lovelace");
    stack.stop_sidecar();
    for (name, credential) in [
        ("cookie", cookie(&value)),
        ("authorization", format!("Bearer {token}")),
    ] {
        let reply = stack.get("/me", &[(name, &credential)]);
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert_eq!(reply.json()["reason"], "sidecar_unavailable");
        assert_eq!(reply.header("retry-after"), Some("1"));
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert_eq!(
            reply.set_cookie(COOKIE_NAME),
            None,
            "store trouble must not log out"
        );
    }
    stack.start_sidecar();
    assert_eq!(stack.get("/me", &[("cookie", &cookie(&value))]).status, 200);
    assert_eq!(
        stack
            .get("/me", &[("authorization", &format!("Bearer {token}"))])
            .status,
        200
    );
}

#[test]
fn redis_down_is_503_and_the_session_survives() {
    let mut stack = Stack::start();
    let value = stack.login_web("ada", "lovelace");
    // Keep the data: stop Redis with a snapshot, start it again from it.
    stack.redis_cli(&["SAVE"]);
    stack.stop_redis();
    let reply = stack.get("/me", &[("cookie", &cookie(&value))]);
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.set_cookie(COOKIE_NAME), None);
    let ready = stack.send("GET", &stack.sidecar_url("/readyz"), &[], None);
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["error"], "store_unavailable");
    stack.start_redis();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = stack.get("/me", &[("cookie", &cookie(&value))]);
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 503, "only 503 while the store recovers");
        assert!(Instant::now() < deadline, "session did not come back");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sidecar_that_hangs_is_503_after_the_timeout() {
    let stack = Stack::start();
    let value = stack.login_web("ada", "lovelace");
    // The harness waits until every thread of the sidecar is stopped: a
    // bare kill(2) returns before that, and a look-up could still be answered.
    stack.signal("sidecar", libc::SIGSTOP);
    let started = Instant::now();
    let reply = stack.get("/me", &[("cookie", &cookie(&value))]);
    let waited = started.elapsed();
    stack.signal("sidecar", libc::SIGCONT);
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.json()["reason"], "sidecar_unavailable");
    // The configured sidecar timeout is 500 ms: the request was held, then refused.
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    assert_eq!(stack.get("/me", &[("cookie", &cookie(&value))]).status, 200);
}

/// A client that hangs up while its look-up is in flight: the answer
/// comes to a stream Envoy has ended, and the gate goes on serving. (In the
/// module pass Envoy runs with the module's re-entrancy detector on.)
#[test]
fn a_client_gone_before_the_lookup_answers_leaves_the_gate_serving() {
    let mut stack = Stack::start();
    let value = stack.login_web("ada", "lovelace");
    stack.signal("sidecar", libc::SIGSTOP);
    let mut client =
        TcpStream::connect(("127.0.0.1", stack.options.listen_port)).expect("Envoy listens");
    write!(
        client,
        "GET /me HTTP/1.1\r\nHost: portero.test\r\nCookie: {}\r\n\r\n",
        cookie(&value)
    )
    .expect("request sent");
    // The look-up is in flight (the sidecar is frozen); the client leaves.
    std::thread::sleep(Duration::from_millis(150));
    drop(client);
    std::thread::sleep(Duration::from_millis(100));
    stack.signal("sidecar", libc::SIGCONT);
    // The sidecar answers the ended stream's look-up.
    std::thread::sleep(Duration::from_millis(300));
    let reply = stack.get("/me", &[("cookie", &cookie(&value))]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(!stack.envoy.as_mut().unwrap().exited(), "Envoy is up");
}

/// The sidecar killed while a look-up is in flight (the call is reset):
/// a 503, no logout, and the session is served once the sidecar is back.
#[test]
fn a_lookup_reset_mid_call_is_503_and_no_logout() {
    let mut stack = Stack::start();
    let value = stack.login_web("ada", "lovelace");
    let pid = stack.sidecar.as_ref().unwrap().pid().unwrap() as i32;
    stack.signal("sidecar", libc::SIGSTOP);
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let reply = stack.get("/me", &[("cookie", &cookie(&value))]);
    killer.join().unwrap();
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.json()["reason"], "sidecar_unavailable");
    assert_eq!(reply.set_cookie(COOKIE_NAME), None, "no logout");
    stack.stop_sidecar();
    stack.start_sidecar();
    assert_eq!(stack.get("/me", &[("cookie", &cookie(&value))]).status, 200);
}

#[test]
fn sidecar_answering_garbage_is_503() {
    // Point the filter's sidecar calls at the Fastify app: it answers, but
    // not in the sidecar's language.
    let stack = Stack::start_with(StackOptions {
        plugin_config_patch: Some(|config| config["sidecar"]["cluster"] = json!("upstream_app")),
        ..StackOptions::default()
    });
    let value = stack.login_web("ada", "lovelace");
    let reply = stack.get("/me", &[("cookie", &cookie(&value))]);
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.json()["reason"], "sidecar_bad_reply");
    assert_eq!(reply.set_cookie(COOKIE_NAME), None);
}

#[test]
fn sidecar_refusing_the_filter_credential_is_503() {
    let stack = Stack::start_with(StackOptions {
        plugin_config_patch: Some(|config| {
            config["sidecar"]["token"] = json!("a-wrong-credential-0123456789")
        }),
        ..StackOptions::default()
    });
    let value = stack.login_web("ada", "lovelace");
    let reply = stack.get("/me", &[("cookie", &cookie(&value))]);
    assert_eq!(
        reply.status, 503,
        "a misconfiguration is not the user's fault"
    );
    assert_eq!(reply.set_cookie(COOKIE_NAME), None);
}

#[test]
fn disabled_route_passes_without_a_session() {
    let stack = Stack::start();
    let mut headers = SPOOFED.to_vec();
    headers.push(("cookie", "__Host-portero=garbage"));
    let reply = stack.get("/public/hello", &headers);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["hello"], "world");
    // Envoy strips the identity headers on the route where the filter is off.
    assert_eq!(reply.json()["user_id"], serde_json::Value::Null);
    // The filter is on everywhere else.
    assert_eq!(stack.get("/me", &[]).status, 401);
    assert_eq!(stack.get("/publicity", &[]).status, 401);
}

#[test]
fn bad_plugin_config_is_refused_and_the_field_named() {
    let stack = Stack::start_with(StackOptions {
        plugin_config_patch: Some(|config| config["cookie"]["keys"][0]["secret"] = json!("short")),
        expect_envoy_failure: true,
        ..StackOptions::default()
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let envoy = stack.envoy.as_ref().unwrap();
    loop {
        let log = std::fs::read_to_string(&envoy.log).unwrap_or_default();
        if log.contains("field `cookie.keys[0].secret`") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no config error in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Whether Envoy exits or stays up without the filter, nothing is served
    // unauthenticated.
    if let Some(reply) = stack.try_get("/me") {
        assert_ne!(reply.status, 200, "{}", reply.body);
    }
}

#[test]
fn cross_site_post_with_a_cookie_is_403() {
    let stack = Stack::start();
    let value = stack.login_web("ada", "lovelace");
    let token = stack.login_app("ada", "lovelace");
    let own_origin = stack.url("");
    for headers in [
        vec![
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ],
        vec![("origin", "https://evil.example")],
        vec![],
    ] {
        let mut with_cookie = headers.clone();
        let c = cookie(&value);
        with_cookie.push(("cookie", &c));
        let reply = stack.request("POST", "/auth/logout", &with_cookie, Some(&json!({})));
        assert_eq!(reply.status, 403, "{headers:?}: {}", reply.body);
        assert_eq!(reply.json()["reason"], "cross_site_request");
        assert_eq!(reply.set_cookie(COOKIE_NAME), None);
    }
    assert_eq!(stack.session_keys().len(), 2, "nothing was logged out");
    assert_eq!(stack.metric("portero_csrf_rejections{}"), 3);
    assert_eq!(
        stack.metric(r#"portero_requests{flow="cookie",outcome="cross_site_request"}"#),
        3
    );
    // Bearer clients are not subject to it: a POST without Origin goes on.
    let bearer = format!("Bearer {token}");
    let reply = stack.request(
        "POST",
        "/auth/logout",
        &[("authorization", &bearer)],
        Some(&json!({})),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Same origin, by Origin alone (no Sec-Fetch-Site): allowed.
    let c = cookie(&value);
    let reply = stack.request(
        "POST",
        "/auth/logout",
        &[("cookie", &c), ("origin", &own_origin)],
        Some(&json!({})),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(stack.session_keys().is_empty());
}

/// A forged identity header sent twice: both lines go, whether the filter
/// then sets the header (a signed-in request) or not (anonymous, `optional`).
#[test]
fn repeated_forged_identity_headers_are_all_replaced() {
    use portero_integration::raw_exchange;
    let stack = Stack::start();
    let value = stack.login_web("ada", "lovelace");
    let port = stack.options.listen_port;
    let ask = |path: &str, extra: &str| -> serde_json::Value {
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: localhost\r\nuser-agent: portero-test\r\n\
             x-portero-user-id: root\r\nx-portero-user-id: admin\r\n\
             x-portero-roles: superuser\r\nx-portero-roles: root\r\n\
             x-portero-email: a@evil\r\nx-portero-email: b@evil\r\n\
             {extra}connection: close\r\n\r\n"
        );
        let answer =
            raw_exchange(port, request.as_bytes(), Duration::from_secs(5)).expect("an answer");
        let text = String::from_utf8_lossy(&answer).to_string();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|_| panic!("{text}"))
    };
    let me = ask("/me", &format!("cookie: {}\r\n", cookie(&value)));
    assert_eq!(me["user_id"], "user-ada");
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["roles"], json!(["admin", "dev"]));
    let feed = ask("/feed", "");
    assert_eq!(feed["user"], json!(null));
}
