//! The demo site in a real browser: Debian's Chromium, headless, driven by
//! playwright-core (`tests/browser/site.test.mjs`, run by Node's test
//! runner) against the whole stack over HTTPS — Envoy with portero, the web
//! front end on Deno, the Fastify API, the sidecar and Redis. Each step
//! leaves a screenshot in `target/browser-artifacts/` (the refusal pages a
//! browser user sees among them).

use std::path::Path;
use std::process::Command;

use portero_core::cookie::CookieCodec;
use portero_integration::{
    require, workspace_root, Stack, StackOptions, COOKIE_NAME, COOKIE_SECRET,
};
use serde_json::json;

#[test]
fn the_site_works_in_a_real_browser() {
    let chromium = Path::new("/usr/bin/chromium");
    require(chromium, "make setup (installs Debian's chromium)");
    let root = workspace_root();
    require(
        &root.join("tests/browser/node_modules/playwright-core"),
        "make setup (npm ci in tests/browser)",
    );
    let stack = Stack::start_with(StackOptions {
        https: true,
        web_app: true,
        // Access tokens of 2 s and no leeway: browsing crosses refreshes.
        access_ttl: 2,
        plugin_config_patch: Some(|config| {
            config["jwt"]["leeway_seconds"] = json!(0);
        }),
        ..StackOptions::default()
    });
    let (port, cert) = stack.edge_tls.clone().expect("the HTTPS listener");
    let artifacts = root.join("target/browser-artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    // A cookie the edge can open, for a session the store does not have:
    // a session that ended elsewhere.
    let codec = CookieCodec::new(COOKIE_NAME, &[(1, COOKIE_SECRET.as_bytes())]).unwrap();
    let ended_session_cookie = codec.seal(&"e".repeat(64)).unwrap();
    let sidecar_pid = stack
        .sidecar
        .as_ref()
        .and_then(|p| p.pid())
        .expect("the sidecar");
    let output = Command::new("node")
        .current_dir(root.join("tests/browser"))
        .args(["--test", "--test-reporter=spec", "site.test.mjs"])
        .env("PORTERO_URL", format!("https://localhost:{port}"))
        .env("EDGE_CERT", &cert.cert)
        .env("EDGE_KEY", &cert.key)
        .env("ARTIFACTS", &artifacts)
        .env("CHROMIUM", chromium)
        .env("ENDED_SESSION_COOKIE", &ended_session_cookie)
        // The page for a store outage: the script stalls the sidecar
        // (SIGSTOP) and lets it go again (SIGCONT).
        .env("SIDECAR_PID", sidecar_pid.to_string())
        .output()
        .expect("node");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}{}", String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        stack.dump_logs();
    }
    assert!(output.status.success(), "browser checks failed:\n{report}");
    // Every step left its screenshot.
    for step in [
        "01-login-page",
        "02-home-signed-in",
        "03-account-api-call",
        "04-cross-origin-post-refused",
        "05-back-where-asked",
        "06-after-refreshes",
        "07-back-after-logout",
        "08-admin-refused-without-role",
        "09-admin-with-role",
        "10-cross-site-login-refused",
        "11-ended-session-sees-the-login-form",
        "12-signed-out-page",
        "13-try-again-page",
    ] {
        let png = artifacts.join(format!("{step}.png"));
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 2000,
            "no screenshot {}",
            png.display()
        );
    }
}
