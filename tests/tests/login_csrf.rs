//! Login CSRF: a session is never *started* by a request from another
//! site, whatever the route's policy. A hostile page auto-posting a login
//! form would otherwise sign the victim's browser into the attacker's
//! account. Here the upstream always starts a session (the worst app), so
//! only the filter's rule stands; tests/browser/site.test.mjs shows the
//! same in Chromium against the demo app.

use std::time::Duration;

use portero_integration::wire::WireUpstream;
use portero_integration::{raw_exchange, raw_status, Stack, StackOptions, COOKIE_NAME};
use serde_json::json;

fn login_post(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let body = "username=alan&password=turing";
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nhost: app.example\r\nconnection: close\r\n\
         content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

#[test]
fn a_cross_site_request_never_gets_a_session_cookie_on_any_policy() {
    let wire = WireUpstream::answering(
        "x-portero-start-session: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\r\nlocation: /account\r\n",
    );
    let stack = Stack::start_with(StackOptions {
        extra_upstream_port: Some(wire.port),
        plugin_config_patch: Some(|config| {
            let routes = config["routes"].as_array_mut().unwrap();
            routes.push(json!({"path_prefix": "/hostile/off/", "policy": "off"}));
            routes.push(json!({"path_prefix": "/hostile/optional/", "policy": "optional"}));
        }),
        ..StackOptions::default()
    });
    let port = stack.options.listen_port;
    let timeout = Duration::from_secs(5);
    for path in ["/hostile/off/login", "/hostile/optional/login"] {
        for cross_site in [
            &[
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ][..],
            &[("origin", "https://evil.example")],
            &[("origin", "null"), ("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "cross-site")],
            &[
                ("sec-fetch-site", "same-site"),
                ("origin", "http://other.app.example"),
            ],
        ] {
            let response = raw_exchange(port, &login_post(path, cross_site), timeout).unwrap();
            let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
            assert_eq!(
                raw_status(&response),
                Some(403),
                "{path} {cross_site:?}: {text}"
            );
            assert!(
                !text.contains("set-cookie"),
                "{path} {cross_site:?}: {text}"
            );
            assert!(!text.contains("x-portero-start-session"), "{text}");
            assert!(!text.contains(&COOKIE_NAME.to_ascii_lowercase()), "{text}");
        }
        // The site's own form, and a client that is no browser, log in.
        for same_origin in [
            &[
                ("origin", "http://app.example"),
                ("sec-fetch-site", "same-origin"),
            ][..],
            &[("origin", "http://app.example")],
            &[],
        ] {
            let response = raw_exchange(port, &login_post(path, same_origin), timeout).unwrap();
            let text = String::from_utf8_lossy(&response);
            assert_eq!(
                raw_status(&response),
                Some(200),
                "{path} {same_origin:?}: {text}"
            );
            assert!(
                text.to_ascii_lowercase().contains(&format!(
                    "set-cookie: {}=",
                    COOKIE_NAME.to_ascii_lowercase()
                )),
                "{path} {same_origin:?}: {text}"
            );
        }
    }
    assert!(
        stack.metric("portero_csrf_rejections{}") == 10,
        "{}",
        stack.prometheus()
    );
}
