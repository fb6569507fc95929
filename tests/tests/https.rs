//! HTTPS at the edge: the test stack's Envoy has a TLS listener (h2 and
//! HTTP/1.1) with a certificate made when the stack starts, because the
//! `__Host-` and `Secure` cookies are what browsers get in production.
//! Plain HTTP stays for curl-style examples.

use std::process::Command;

use portero_integration::{Stack, StackOptions, COOKIE_NAME};
use serde_json::json;

#[test]
fn a_login_over_https_sets_a_host_prefixed_secure_cookie_that_works_over_h2() {
    let stack = Stack::start_with(StackOptions {
        https: true,
        ..StackOptions::default()
    });
    let login = stack.send(
        "POST",
        &stack.https_url("/auth/login"),
        &[("user-agent", "portero-test")],
        Some(&json!({"username": "ada", "password": "lovelace", "client": "web"})),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let set_cookie = login.set_cookie(COOKIE_NAME).expect("a session cookie");
    for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(
            set_cookie.contains(attribute),
            "{attribute} in {set_cookie}"
        );
    }
    assert!(
        !set_cookie.contains("Domain="),
        "__Host- cookies have no Domain"
    );
    let value = login.cookie_value(COOKIE_NAME).unwrap();
    let cookie = format!("{COOKIE_NAME}={value}");
    let me = stack.send(
        "GET",
        &stack.https_url("/me"),
        &[("cookie", &cookie), ("user-agent", "portero-test")],
        None,
    );
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["user_id"], "user-ada");

    // HTTP/2 over TLS (ALPN), as browsers speak it, with curl trusting the
    // stack's CA; and a client that does not trust it gets no answer.
    let (port, cert) = stack.edge_tls.clone().expect("an HTTPS listener");
    let url = format!("https://localhost:{port}/me");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg("--cacert")
        .arg(&cert.ca)
        .args([
            "-H",
            &format!("cookie: {cookie}"),
            "-H",
            "user-agent: portero-test",
        ])
        .arg(&url)
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
    let untrusted = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", &url])
        .output()
        .expect("curl");
    assert!(!untrusted.status.success(), "an unknown CA is refused");
}
