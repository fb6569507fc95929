//! Trust boundary: nothing the client sends poses as portero's identity.
//! Every spelling of every identity header (case, `_` for `-`, a mix,
//! duplicates), on every policy (required, optional, off, and a route with
//! the filter disabled), over HTTP/1.1 and h2c, and through `ext_authz`,
//! read from the bytes Envoy sends the upstream — not from an app that
//! happens to keep `x_portero_user_id` and `x-portero-user-id` apart (Node
//! does; CGI, WSGI, Rack and PHP read both as one).

use std::os::unix::ffi::OsStrExt;
use std::process::Command;
use std::time::Duration;

use portero_core::cookie::CookieCodec;
use portero_integration::wire::{header_lines, WireUpstream};
use portero_integration::{
    free_port, raw_exchange, raw_status, Stack, StackOptions, COOKIE_NAME, COOKIE_SECRET,
};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(5);

const IDENTITY: [&str; 6] = [
    "x-portero-user-id",
    "x-portero-session",
    "x-portero-email",
    "x-portero-roles",
    "x-portero-client-ip",
    "x-portero-binding-mismatch",
];

/// Spellings with a `_`: an app folding names reads each as an identity header.
const UNDERSCORED: [&str; 5] = [
    "x_portero_user_id",
    "X_PORTERO_USER_ID",
    "x_portero-user-id",
    "x_portero_roles",
    "x-portero_binding_mismatch",
];

/// Spellings Envoy itself folds to the canonical name (case), and repeats.
const DASHED: [&str; 4] = [
    "x-portero-user-id",
    "X-Portero-User-Id",
    "X-PORTERO-ROLES",
    "x-portero-session",
];

/// The routes under test: the extra upstream behind each policy, and the
/// shipped `/public/` route (filter disabled) pointed at it too.
fn routes(config: &mut serde_json::Value) {
    let routes = config["routes"].as_array_mut().unwrap();
    routes.push(json!({"path_prefix": "/hostile/off/", "policy": "off"}));
    routes.push(json!({"path_prefix": "/hostile/optional/", "policy": "optional"}));
}

fn public_to_wire(yaml: String) -> String {
    let shipped =
        "- match: { prefix: \"/public/\" }\n                route: { cluster: upstream_app }";
    assert!(yaml.contains(shipped), "the shipped /public/ route changed");
    yaml.replacen(
        shipped,
        "- match: { prefix: \"/public/\" }\n                route: { cluster: extra_upstream }",
        1,
    )
}

fn shipped(yaml: String, _: &std::path::Path, _: &serde_json::Value) -> String {
    assert!(yaml.contains("headers_with_underscores_action: REJECT_REQUEST"));
    public_to_wire(yaml)
}

/// A listener that lets underscores through (Envoy's default, and what a
/// mesh may configure): the filter's own stripping is all that stands.
fn allowing_underscores(yaml: String, _: &std::path::Path, _: &serde_json::Value) -> String {
    public_to_wire(yaml.replace(
        "headers_with_underscores_action: REJECT_REQUEST",
        "headers_with_underscores_action: ALLOW",
    ))
}

fn stack(
    wire: &WireUpstream,
    patch: fn(String, &std::path::Path, &serde_json::Value) -> String,
) -> Stack {
    Stack::start_with(StackOptions {
        extra_upstream_port: Some(wire.port),
        plugin_config_patch: Some(routes),
        envoy_yaml_patch: Some(patch),
        ..StackOptions::default()
    })
}

fn request(path: &str, cookie: Option<&str>, names: &[&str]) -> Vec<u8> {
    let mut out = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    if let Some(cookie) = cookie {
        out.push_str(&format!("cookie: {COOKIE_NAME}={cookie}\r\n"));
    }
    for name in names {
        out.push_str(&format!(
            "{name}: forged-by-attacker\r\n{name}: forged-again\r\n"
        ));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// No header line of `head` that folds to an identity header carries a
/// forged value.
fn assert_no_forged_identity(head: &[u8], what: &str) {
    for (name, value) in header_lines(head) {
        let folded = name.to_ascii_lowercase().replace('_', "-");
        if IDENTITY.contains(&folded.as_str()) {
            assert!(
                !value.contains("forged"),
                "{what}: `{name}: {value}` reached the upstream:\n{}",
                String::from_utf8_lossy(head)
            );
        }
    }
}

/// The cases: (path, with the session cookie?, the status the policy gives).
fn cases(cookie: &str) -> Vec<(&'static str, Option<String>, u16)> {
    vec![
        ("/hostile/required/x", Some(cookie.to_string()), 200),
        ("/hostile/optional/x", None, 200),
        ("/hostile/optional/x", Some(cookie.to_string()), 200),
        ("/hostile/off/x", None, 200),
        ("/hostile/off/x", Some(cookie.to_string()), 200),
        ("/public/x", None, 200),
    ]
}

/// The shipped listener, on every case: each underscored spelling is a 400
/// and never upstream; the dashed spellings (case, repeats) go upstream
/// stripped, with the filter's own identity once where there is a session.
fn refuses_underscores_and_strips_the_rest(stack: &Stack, wire: &WireUpstream, cookie: &str) {
    for (path, cookie, status) in cases(cookie) {
        for name in UNDERSCORED {
            let response = raw_exchange(
                stack.options.listen_port,
                &request(path, cookie.as_deref(), &[name]),
                TIMEOUT,
            )
            .unwrap();
            assert_eq!(raw_status(&response), Some(400), "{path} {name}");
        }
        let response = raw_exchange(
            stack.options.listen_port,
            &request(path, cookie.as_deref(), &DASHED),
            TIMEOUT,
        )
        .unwrap();
        assert_eq!(raw_status(&response), Some(status), "{path}");
        let heads = wire.take();
        assert_eq!(
            heads.len(),
            1,
            "{path}: only the dashed request goes upstream"
        );
        assert_no_forged_identity(&heads[0], path);
        if path == "/hostile/required/x" {
            let lines = header_lines(&heads[0]);
            let ids: Vec<&str> = lines
                .iter()
                .filter(|(n, _)| n == "x-portero-user-id")
                .map(|(_, v)| v.as_str())
                .collect();
            assert_eq!(ids, ["user-ada"], "the filter's own identity, once");
        }
    }
}

/// The session cookie is portero's, never the upstream's: on a route that
/// checks the session, the upstream receives the client's other cookies and
/// not the session cookie (the bytes on the wire, every `cookie` line).
fn the_session_cookie_stays_at_the_edge(
    stack: &Stack,
    wire: &WireUpstream,
    cookie: &str,
    what: &str,
) {
    let request = format!(
        "GET /hostile/required/x HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         cookie: theme=dark; {COOKIE_NAME}={cookie}; lang=en\r\n\r\n"
    );
    let response = raw_exchange(stack.options.listen_port, request.as_bytes(), TIMEOUT)
        .expect("Envoy answers");
    assert_eq!(raw_status(&response), Some(200), "{what}");
    let heads = wire.take();
    assert_eq!(heads.len(), 1, "{what}: one request upstream");
    let cookies: Vec<String> = header_lines(&heads[0])
        .into_iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("cookie"))
        .map(|(_, value)| value)
        .collect();
    let all = cookies.join("; ");
    assert!(
        !all.contains(COOKIE_NAME),
        "{what}: the session cookie reached the upstream: {cookies:?}"
    );
    assert!(
        all.contains("theme=dark") && all.contains("lang=en"),
        "{what}: the client's other cookies go on: {cookies:?}"
    );
}

/// A dead session cookie on an `optional` route (a session that ended
/// elsewhere, a cookie that does not open): the page is served anonymously,
/// the cookie never reaches the upstream, and the browser is told to drop
/// it. Store trouble there stays a 503 that clears nothing.
fn a_dead_cookie_on_an_optional_route_stays_at_the_edge(stack: &Stack, wire: &WireUpstream) {
    let codec = CookieCodec::new(COOKIE_NAME, &[(1, COOKIE_SECRET.as_bytes())]).unwrap();
    let ended = codec.seal(&"e".repeat(64)).unwrap();
    let request = |cookie: &str| {
        format!(
            "GET /hostile/optional/x HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
             accept: text/html\r\ncookie: theme=dark; {COOKIE_NAME}={cookie}\r\n\
             x-portero-user-id: forged-by-attacker\r\n\r\n"
        )
    };
    for (cookie, what) in [
        (ended.as_str(), "an ended session"),
        ("garbage", "a cookie that does not open"),
    ] {
        let response = raw_exchange(
            stack.options.listen_port,
            request(cookie).as_bytes(),
            TIMEOUT,
        )
        .expect("Envoy answers");
        assert_eq!(raw_status(&response), Some(200), "{what}");
        let clears = header_lines(&response).into_iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("set-cookie")
                && value.starts_with(&format!("{COOKIE_NAME}=;"))
                && value.contains("Max-Age=0")
        });
        assert!(
            clears,
            "{what}: the browser is told to drop the cookie:\n{}",
            String::from_utf8_lossy(&response)
        );
        let heads = wire.take();
        assert_eq!(heads.len(), 1, "{what}: one request upstream");
        let upstream = header_lines(&heads[0]);
        let cookies: Vec<&str> = upstream
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("cookie"))
            .map(|(_, value)| value.as_str())
            .collect();
        assert_eq!(cookies, ["theme=dark"], "{what}");
        assert_no_forged_identity(&heads[0], what);
        assert!(
            !upstream
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("x-portero-user-id")),
            "{what}: anonymous upstream"
        );
    }
    stack.signal("sidecar", libc::SIGSTOP);
    let response = raw_exchange(
        stack.options.listen_port,
        request(&ended).as_bytes(),
        TIMEOUT,
    );
    stack.signal("sidecar", libc::SIGCONT);
    let response = response.expect("Envoy answers");
    assert_eq!(
        raw_status(&response),
        Some(503),
        "store trouble is no logout"
    );
    assert!(
        !header_lines(&response)
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("set-cookie")),
        "an outage clears no cookie"
    );
    assert!(wire.take().is_empty(), "nothing upstream during the outage");
}

#[test]
fn the_shipped_config_refuses_underscored_names_and_strips_every_other_spelling() {
    let wire = WireUpstream::start();
    let stack = stack(&wire, shipped);
    let cookie = stack.login_web("ada", "lovelace");
    refuses_underscores_and_strips_the_rest(&stack, &wire, &cookie);
    the_session_cookie_stays_at_the_edge(&stack, &wire, &cookie, "the filter");
    a_dead_cookie_on_an_optional_route_stays_at_the_edge(&stack, &wire);
    // h2c: an underscored name never reaches the upstream either.
    for name in UNDERSCORED {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--http2-prior-knowledge",
            ])
            .arg("-H")
            .arg(std::ffi::OsStr::from_bytes(
                format!("{name}: forged-by-attacker").as_bytes(),
            ))
            .arg(stack.url("/hostile/off/x"))
            .output()
            .expect("curl");
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        assert_ne!(code, "200", "{name} over h2c");
    }
    assert!(
        wire.take().is_empty(),
        "an h2c request with a forged name went upstream"
    );
}

#[test]
fn with_underscores_allowed_the_filter_strips_every_spelling_itself() {
    let wire = WireUpstream::start();
    let stack = stack(&wire, allowing_underscores);
    let cookie = stack.login_web("ada", "lovelace");
    let all: Vec<&str> = UNDERSCORED.iter().chain(DASHED.iter()).copied().collect();
    for (path, cookie, status) in cases(&cookie) {
        let response = raw_exchange(
            stack.options.listen_port,
            &request(path, cookie.as_deref(), &all),
            TIMEOUT,
        )
        .unwrap();
        assert_eq!(raw_status(&response), Some(status), "{path}");
        let heads = wire.take();
        assert_eq!(heads.len(), 1);
        if path == "/public/x" {
            // Pinned hazard: a route with the filter disabled has only
            // Envoy's `request_headers_to_remove` (exact names), so it
            // relies on the listener refusing underscores, as shipped.
            let leaked = header_lines(&heads[0])
                .iter()
                .any(|(n, v)| n.contains('_') && v.contains("forged"));
            assert!(leaked, "the hazard the docs describe is gone: update them");
            continue;
        }
        assert_no_forged_identity(&heads[0], path);
    }
    // h2c, through the filter.
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    for name in &all {
        args.push("-H".into());
        args.push(format!("{name}: forged-by-attacker").into());
    }
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--http2-prior-knowledge",
        ])
        .args(&args)
        .arg(stack.url("/hostile/off/x"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let heads = wire.take();
    assert_eq!(heads.len(), 1);
    assert_no_forged_identity(&heads[0], "h2c");
}

#[test]
fn through_ext_authz_no_spelling_reaches_the_upstream() {
    let wire = WireUpstream::start();
    let stack = Stack::start_with(StackOptions {
        extra_upstream_port: Some(wire.port),
        forward_auth_port: free_port(),
        ext_authz: true,
        plugin_config_patch: Some(|config| {
            // Forward auth has no route names: gate by path.
            routes(config);
        }),
        envoy_yaml_patch: Some(shipped),
        ..StackOptions::default()
    });
    // ext_authz has no response side to turn a login into a cookie: seal
    // the session id the API's login hands out, as the filter would.
    let login = stack.send(
        "POST",
        &format!(
            "http://127.0.0.1:{}/auth/login",
            stack.options.upstream_port
        ),
        &[],
        Some(&json!({"username": "ada", "password": "lovelace", "client": "web"})),
    );
    let id = login.header("x-portero-start-session").expect("session id");
    let codec = portero_core::cookie::CookieCodec::new(
        COOKIE_NAME,
        &[(1, portero_integration::COOKIE_SECRET.as_bytes())],
    )
    .unwrap();
    let cookie = codec.seal(id).unwrap();
    refuses_underscores_and_strips_the_rest(&stack, &wire, &cookie);
    the_session_cookie_stays_at_the_edge(&stack, &wire, &cookie, "ext_authz");
}
