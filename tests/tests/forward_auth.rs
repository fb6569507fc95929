//! Forward auth: the sidecar serves portero's check per request, and Envoy
//! asks it through `ext_authz` (HTTP) instead of running the filter — the
//! way oauth2-proxy, Authelia or Pomerium are put in front of Envoy, and
//! how nginx `auth_request`, Traefik `forwardAuth` and Caddy `forward_auth`
//! users reach portero's sessions. Real Envoy, sidecar, Redis and Fastify.

use std::time::Duration;

use portero_core::cookie::CookieCodec;
use portero_integration::{
    free_port, raw_exchange, raw_status, Stack, StackOptions, COOKIE_NAME, COOKIE_SECRET,
};
use serde_json::json;

const UA: &str = "portero-test";

fn ext_authz_stack() -> Stack {
    Stack::start_with(StackOptions {
        forward_auth_port: free_port(),
        ext_authz: true,
        plugin_config_patch: Some(|config| {
            // Forward auth has no route names: gate by path.
            config["routes"]
                .as_array_mut()
                .expect("routes")
                .push(json!({"path_prefix": "/admin/", "roles": {"any_of": ["admin"]}}));
        }),
        ..StackOptions::default()
    })
}

/// A web login at the API itself (the session-start header is the
/// filter's to turn into a cookie; forward auth has no response side), the
/// cookie sealed as the filter would.
fn session_cookie(stack: &Stack, username: &str, password: &str) -> String {
    let login = stack.send(
        "POST",
        &format!(
            "http://127.0.0.1:{}/auth/login",
            stack.options.upstream_port
        ),
        &[("user-agent", UA)],
        Some(&json!({"username": username, "password": password, "client": "web"})),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let id = login.header("x-portero-start-session").expect("session id");
    let codec = CookieCodec::new(COOKIE_NAME, &[(1, COOKIE_SECRET.as_bytes())]).unwrap();
    format!("{COOKIE_NAME}={}", codec.seal(id).unwrap())
}

#[test]
fn ext_authz_lets_sessions_through_with_identity_and_refuses_the_rest() {
    let stack = ext_authz_stack();
    let cookie = session_cookie(&stack, "ada", "lovelace");

    // A cookie: the upstream sees who it is, and a forged identity is replaced.
    let me = stack.get(
        "/me",
        &[
            ("cookie", &cookie),
            ("user-agent", UA),
            ("x-portero-user-id", "user-mallory"),
            ("x-portero-roles", "admin,root"),
        ],
    );
    assert_eq!(me.status, 200, "{}", me.body);
    let body = me.json();
    assert_eq!(body["user_id"], "user-ada");
    assert_eq!(body["email"], "ada@example.com");
    assert_eq!(body["roles"], json!(["admin", "dev"]));
    // The session's access JWT goes upstream, as the filter forwards it.
    assert!(body["authorization"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Bearer ey"));

    // A bearer token from an app login (through Envoy: /auth/login is `off`).
    let token = stack.login_app("alan", "turing");
    let me = stack.me_with_token(&token);
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["user_id"], "user-alan");

    // No credential: the flow's own 401, its body and headers through Envoy.
    let anonymous = stack.get("/me", &[("x-portero-user-id", "user-mallory")]);
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert!(
        anonymous.body.contains("no_credentials"),
        "{}",
        anonymous.body
    );
    // An HTML navigation: the login redirect.
    let navigation = stack.get("/me", &[("accept", "text/html")]);
    assert_eq!(navigation.status, 302);
    assert_eq!(navigation.header("location"), Some("/login?return_to=/me"));

    // An `optional` route, anonymously: a forged identity never arrives.
    let feed = stack.get("/feed", &[("x-portero-user-id", "user-mallory")]);
    assert_eq!(feed.status, 200, "{}", feed.body);
    assert_eq!(feed.json()["user"], json!(null));

    // A tampered cookie, and a token that is not one: 401.
    let tampered = format!("{cookie}x");
    assert_eq!(stack.get("/me", &[("cookie", &tampered)]).status, 401);
    assert_eq!(stack.me_with_token("not.a.token").status, 401);

    // Role gate by path: alan lacks `admin`, ada has it.
    let alan = session_cookie(&stack, "alan", "turing");
    let refused = stack.get("/admin/overview", &[("cookie", &alan), ("user-agent", UA)]);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("missing_role"));
    let allowed = stack.get(
        "/admin/overview",
        &[("cookie", &cookie), ("user-agent", UA)],
    );
    assert_eq!(allowed.status, 200, "{}", allowed.body);

    // CSRF: a cookie-authenticated POST from another origin.
    let cross = stack.request(
        "POST",
        "/auth/logout-everywhere",
        &[
            ("cookie", &cookie),
            ("user-agent", UA),
            ("origin", "https://evil.example"),
        ],
        Some(&json!({})),
    );
    assert_eq!(cross.status, 403, "{}", cross.body);
    assert!(cross.body.contains("cross_site_request"));

    // A session ended at the store is refused on the next request (no edge
    // cache to wait for).
    let handle = me_session(&stack, &cookie);
    let ended = stack.admin("DELETE", &format!("/v1/sessions/{handle}"), None);
    assert_eq!(ended.status, 200);
    let after = stack.get("/me", &[("cookie", &cookie), ("user-agent", UA)]);
    assert_eq!(after.status, 401, "{}", after.body);
}

fn me_session(stack: &Stack, cookie: &str) -> String {
    let me = stack.get("/me", &[("cookie", cookie), ("user-agent", UA)]);
    assert_eq!(me.status, 200, "{}", me.body);
    me.json()["session"].as_str().expect("session").to_string()
}

#[test]
fn store_trouble_is_a_503_through_ext_authz_never_a_pass_or_a_logout() {
    let mut stack = ext_authz_stack();
    let cookie = session_cookie(&stack, "ada", "lovelace");
    assert_eq!(
        stack
            .get("/me", &[("cookie", &cookie), ("user-agent", UA)])
            .status,
        200
    );
    // Redis frozen: the look-up times out inside the sidecar.
    stack.signal("redis", libc::SIGSTOP);
    let frozen = stack.get("/me", &[("cookie", &cookie), ("user-agent", UA)]);
    stack.signal("redis", libc::SIGCONT);
    assert_eq!(frozen.status, 503, "{}", frozen.body);
    assert!(frozen.set_cookie(COOKIE_NAME).is_none(), "no logout");
    assert_eq!(
        stack
            .get("/me", &[("cookie", &cookie), ("user-agent", UA)])
            .status,
        200,
        "the session survived"
    );
    // The sidecar gone: Envoy's own 503 (status_on_error), fail closed.
    stack.stop_sidecar();
    let gone = stack.get("/me", &[("cookie", &cookie), ("user-agent", UA)]);
    assert_eq!(gone.status, 503, "{}", gone.body);
}

/// The way nginx `auth_request`, Traefik `forwardAuth` and Caddy
/// `forward_auth` ask: the original request named in headers, the answer's
/// headers for the proxy to copy upstream.
#[test]
fn a_proxy_asking_with_forwarded_headers_gets_the_identity_in_the_answer() {
    let stack = ext_authz_stack();
    let cookie = session_cookie(&stack, "ada", "lovelace");
    let ask = |headers: &[(&str, &str)]| {
        stack.send(
            "GET",
            &format!("http://127.0.0.1:{}/", stack.options.forward_auth_port),
            headers,
            None,
        )
    };
    let allowed = ask(&[
        ("cookie", &cookie),
        ("user-agent", UA),
        ("x-forwarded-uri", "/reports/2026?tab=q4"),
        ("x-forwarded-method", "GET"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "app.example"),
        ("x-portero-user-id", "user-mallory"),
    ]);
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(allowed.header("x-portero-user-id"), Some("user-ada"));
    assert_eq!(allowed.header("x-portero-roles"), Some("admin,dev"));
    assert!(allowed
        .header("authorization")
        .is_some_and(|a| a.starts_with("Bearer ")));
    // A POST named by the proxy is held to the same-origin rule.
    let cross = ask(&[
        ("cookie", &cookie),
        ("user-agent", UA),
        ("x-forwarded-uri", "/auth/logout"),
        ("x-forwarded-method", "POST"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "app.example"),
        ("origin", "https://evil.example"),
    ]);
    assert_eq!(cross.status, 403, "{}", cross.body);
    let same = ask(&[
        ("cookie", &cookie),
        ("user-agent", UA),
        ("x-forwarded-uri", "/auth/logout"),
        ("x-forwarded-method", "POST"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "app.example"),
        ("origin", "https://app.example"),
    ]);
    assert_eq!(same.status, 200, "{}", same.body);
    // Anonymous on an `optional` route: allowed, and the forged identity is
    // named for removal.
    let anonymous = ask(&[
        ("x-forwarded-uri", "/feed"),
        ("x-portero-user-id", "user-mallory"),
    ]);
    assert_eq!(anonymous.status, 200, "{}", anonymous.body);
    assert_eq!(anonymous.header("x-portero-user-id"), None);
    let removed = anonymous
        .header("x-envoy-auth-headers-to-remove")
        .unwrap_or_default();
    assert!(
        removed.split(',').any(|h| h == "x-portero-user-id"),
        "{removed}"
    );
    // Hostile bytes in what the proxy relays (raw, on a socket): a clear
    // refusal, never a pass, and the service keeps answering.
    for cookie in [
        &b"__Host-portero=\xff\xfe\x80garbage"[..],
        b"__Host-portero=\x7f; __Host-portero=AAAA",
        b"\xc3\x28=\xa0\xa1",
    ] {
        let mut request = b"GET / HTTP/1.1\r\nhost: a\r\nx-forwarded-uri: /me\r\ncookie: ".to_vec();
        request.extend_from_slice(cookie);
        request.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
        let answer = raw_exchange(
            stack.options.forward_auth_port,
            &request,
            Duration::from_secs(5),
        )
        .unwrap_or_default();
        let status = raw_status(&answer);
        assert!(
            matches!(status, Some(400 | 401)),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert_eq!(ask(&[("cookie", &cookie), ("user-agent", UA)]).status, 200);
}

/// nginx (`$request_uri`), Traefik and Caddy name the *raw* request URI;
/// the app behind them decodes and resolves it. The policy must be the one
/// of the path the upstream will route, and a path with no single reading
/// is refused, whichever header names it.
#[test]
fn forward_auth_decides_on_the_path_the_upstream_will_route() {
    let stack = Stack::start_with(StackOptions {
        forward_auth_port: free_port(),
        ext_authz: true,
        plugin_config_patch: Some(|config| {
            let routes = config["routes"].as_array_mut().expect("routes");
            routes.push(json!({"path_prefix": "/admin/", "roles": {"any_of": ["admin"]}}));
            routes.push(json!({"path_prefix": "/public/", "policy": "off"}));
        }),
        ..StackOptions::default()
    });
    let dev = session_cookie(&stack, "alan", "turing");
    let ask = |uri_header: &str, uri: &str, cookie: Option<&str>| {
        let mut headers = vec![(uri_header, uri), ("user-agent", UA)];
        if let Some(cookie) = cookie {
            headers.push(("cookie", cookie));
        }
        let reply = stack.send(
            "GET",
            &format!("http://127.0.0.1:{}/", stack.options.forward_auth_port),
            &headers,
            None,
        );
        (
            reply.status,
            reply.header("x-portero-user-id").map(str::to_string),
        )
    };
    let same_as = [
        ("/%61dmin/overview", "/admin/overview", true),
        ("//admin/overview", "/admin/overview", true),
        ("/x/../admin/overview", "/admin/overview", true),
        ("/./admin/overview", "/admin/overview", true),
        ("/public/%2e%2e/admin/overview", "/admin/overview", true),
        ("/public/../admin/overview", "/admin/overview", true),
        ("/public/./../me", "/me", false),
        ("/%70ublic/hello", "/public/hello", false),
    ];
    for uri_header in ["x-forwarded-uri", "x-original-uri"] {
        for (raw, normalized, signed_in) in same_as {
            let cookie = signed_in.then_some(dev.as_str());
            let want = ask(uri_header, normalized, cookie);
            assert_eq!(ask(uri_header, raw, cookie), want, "{uri_header}: {raw}");
        }
        for ambiguous in [
            "/admin%2Foverview",
            "/public/..%2Fadmin/overview",
            "/public/..%5Cadmin/overview",
            "/public\\..\\admin/overview",
            "/public/%00/../admin/overview",
            "/../admin/overview",
            "/admin/%zz",
        ] {
            assert_eq!(
                ask(uri_header, ambiguous, Some(&dev)),
                (400, None),
                "{uri_header}: {ambiguous}"
            );
        }
    }
    // The expected decisions themselves: the admin route refuses a dev,
    // the off route lets anyone in, /me wants a session.
    assert_eq!(ask("x-forwarded-uri", "/admin/overview", Some(&dev)).0, 403);
    assert_eq!(ask("x-forwarded-uri", "/public/hello", None), (200, None));
    assert_eq!(ask("x-forwarded-uri", "/me", None).0, 401);
    // Bytes that are not text, raw on a socket.
    let mut request =
        b"GET / HTTP/1.1\r\nhost: a\r\nx-forwarded-uri: /public/\xff/../me\r\n".to_vec();
    request.extend_from_slice(b"connection: close\r\n\r\n");
    let answer = raw_exchange(
        stack.options.forward_auth_port,
        &request,
        Duration::from_secs(5),
    )
    .unwrap_or_default();
    assert_eq!(
        raw_status(&answer),
        Some(400),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}

/// Many client headers through ext_authz: below Envoy's header count limit
/// the request passes with its identity; a request whose headers plus the
/// identity headers the answer sets would exceed it is refused by Envoy's
/// ext_authz (a 500, `request_header_limits_reached`, since Envoy checks the
/// map after applying an authorization answer) or by the codec (431):
/// never passed without its identity. docs/security.md says so.
#[test]
fn ext_authz_with_many_headers_fails_closed() {
    let stack = ext_authz_stack();
    let cookie = session_cookie(&stack, "ada", "lovelace");
    let mut refused = 0;
    for count in [20, 60, 90, 99, 120] {
        let mut request = format!(
            "GET /me HTTP/1.1\r\nhost: a\r\nconnection: close\r\nuser-agent: {UA}\r\ncookie: {cookie}\r\n"
        );
        for i in 0..count {
            request.push_str(&format!("x-filler-{i}: {i}\r\n"));
        }
        request.push_str("\r\n");
        let answer = raw_exchange(
            stack.options.listen_port,
            request.as_bytes(),
            Duration::from_secs(5),
        )
        .unwrap_or_default();
        let text = String::from_utf8_lossy(&answer);
        match raw_status(&answer) {
            Some(200) => assert!(text.contains("\"user_id\":\"user-ada\""), "{count}: {text}"),
            Some(431 | 500) => refused += 1,
            other => panic!("{count} headers: {other:?} {text}"),
        }
    }
    assert_eq!(
        refused, 3,
        "90, 99 and 120 headers are over the limit with the identity"
    );
}
