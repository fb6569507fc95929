//! The demo site in a real browser: Debian's Chromium, headless, driven by
//! playwright-core (`tests/browser/site.test.mjs`, run by Node's test
//! runner) against the whole stack over HTTPS — Envoy with portero, the web
//! front end on Deno, the Fastify API, the sidecar and Redis. Each step
//! leaves a screenshot in `target/browser-artifacts/` (the refusal pages a
//! browser user sees among them; `portero_integration::browser`).

use portero_core::cookie::CookieCodec;
use portero_integration::browser::{self, Trouble};
use portero_integration::{workspace_root, Stack, StackOptions, COOKIE_NAME, COOKIE_SECRET};
use serde_json::json;

#[test]
fn the_site_works_in_a_real_browser() {
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
    let artifacts = workspace_root().join("target/browser-artifacts");
    let codec = CookieCodec::new(COOKIE_NAME, &[(1, COOKIE_SECRET.as_bytes())]).unwrap();
    let trouble = Trouble {
        ended_session_cookie: codec.seal(&"e".repeat(64)).unwrap(),
        sidecar_pid: stack
            .sidecar
            .as_ref()
            .and_then(|p| p.pid())
            .expect("the sidecar"),
    };
    match browser::site_checks(port, &cert, 2, &artifacts, Some(&trouble)) {
        Ok(report) => println!("{report}"),
        Err(report) => {
            stack.dump_logs();
            panic!("browser checks failed:\n{report}");
        }
    }
}
