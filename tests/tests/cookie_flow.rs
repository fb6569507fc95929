//! The cookie flowchart of the seed document, one test per branch, through
//! real Envoy + portero, redis-sidecar, Redis and Fastify.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portero_core::cookie::CookieCodec;
use portero_integration::{Stack, StackOptions, COOKIE_NAME, COOKIE_SECRET};

/// Well-formed (65 characters, like the sidecar's ids) but never issued.
const SID: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8AAECAwQFBgcICQoLDA0ODx";

fn cookie_header(value: &str) -> String {
    format!("{COOKIE_NAME}={value}")
}

fn assert_cookie_rejected(stack: &Stack, value: &str, reason: &str) {
    let reply = stack.get("/me", &[("cookie", &cookie_header(value))]);
    assert_eq!(reply.status, 401, "{value:?}: {}", reply.body);
    assert_eq!(reply.json()["reason"], reason, "{value:?}");
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let cleared = reply.set_cookie(COOKIE_NAME).expect("cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

#[test]
fn no_cookie_is_401() {
    let stack = Stack::start();
    let reply = stack.get("/me", &[("cookie", "theme=dark")]);
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["reason"], "no_credentials");
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"portero\"")
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
}

#[test]
fn cookie_sealed_with_another_key_is_401() {
    let stack = Stack::start();
    let other = CookieCodec::new(
        COOKIE_NAME,
        &[(1, b"a different secret of 32 bytes or more")],
    )
    .unwrap();
    let sid = SID;
    assert_cookie_rejected(&stack, &other.seal(sid).unwrap(), "cookie_invalid");
    // The same key under another id is unknown, too.
    let other_id = CookieCodec::new(COOKIE_NAME, &[(7, COOKIE_SECRET.as_bytes())]).unwrap();
    assert_cookie_rejected(&stack, &other_id.seal(sid).unwrap(), "cookie_invalid");
}

#[test]
fn cookie_with_a_flipped_byte_is_401() {
    let stack = Stack::start();
    let value = stack.login_web("ada", "lovelace");
    assert_eq!(
        stack
            .get("/me", &[("cookie", &cookie_header(&value))])
            .status,
        200
    );
    let raw = URL_SAFE_NO_PAD.decode(&value).unwrap();
    // Header, nonce, ciphertext and tag: one flip in each part.
    for index in [0, 1, 5, 20, raw.len() - 1] {
        let mut altered = raw.clone();
        altered[index] ^= 0x01;
        assert_cookie_rejected(&stack, &URL_SAFE_NO_PAD.encode(&altered), "cookie_invalid");
    }
}

#[test]
fn truncated_or_garbage_cookie_is_401() {
    let stack = Stack::start();
    let value = stack.login_web("ada", "lovelace");
    for bad in [
        &value[..value.len() - 1],
        &value[..value.len() / 2],
        "",
        "not*base64",
        "%00%ff",
    ] {
        assert_cookie_rejected(&stack, bad, "cookie_invalid");
    }
    assert_cookie_rejected(&stack, &"A".repeat(3000), "cookie_invalid");
}

#[test]
fn cookie_of_another_name_is_401() {
    let stack = Stack::start();
    // Sealed for another cookie name with the right secret: the name is
    // bound as associated data, so moving the value does not work.
    let other = CookieCodec::new("__Host-other", &[(1, COOKIE_SECRET.as_bytes())]).unwrap();
    let sid = SID;
    assert_cookie_rejected(&stack, &other.seal(sid).unwrap(), "cookie_invalid");
}

#[test]
fn cookie_for_a_session_that_does_not_exist_is_401() {
    let stack = Stack::start();
    let codec = CookieCodec::new(COOKIE_NAME, &[(1, COOKIE_SECRET.as_bytes())]).unwrap();
    // Well sealed, but the session id was never issued.
    let value = codec.seal(SID).unwrap();
    assert_cookie_rejected(&stack, &value, "session_not_found");
}

#[test]
fn cookie_for_an_expired_session_is_401() {
    let stack = Stack::start_with(StackOptions {
        absolute_timeout: 2,
        ..StackOptions::default()
    });
    let value = stack.login_web("ada", "lovelace");
    assert_eq!(
        stack
            .get("/me", &[("cookie", &cookie_header(&value))])
            .status,
        200
    );
    std::thread::sleep(std::time::Duration::from_millis(3100));
    assert_cookie_rejected(&stack, &value, "session_not_found");
    assert!(
        stack.session_keys().is_empty(),
        "expired session still in Redis"
    );
}

#[test]
fn idle_session_expires_and_activity_keeps_it_alive() {
    let stack = Stack::start_with(StackOptions {
        idle_timeout: 2,
        ..StackOptions::default()
    });
    let busy = stack.login_web("ada", "lovelace");
    let idle = stack.login_web("alan", "turing");
    for _ in 0..4 {
        std::thread::sleep(std::time::Duration::from_millis(800));
        assert_eq!(
            stack
                .get("/me", &[("cookie", &cookie_header(&busy))])
                .status,
            200
        );
    }
    assert_cookie_rejected(&stack, &idle, "session_not_found");
    assert_eq!(stack.session_keys().len(), 1);
}

#[test]
fn valid_cookie_reaches_me_with_identity() {
    let stack = Stack::start();
    let value = stack.login_web("ada", "lovelace");
    let reply = stack.get(
        "/me",
        &[(
            "cookie",
            &format!("theme=dark; {}; lang=en", cookie_header(&value)),
        )],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let me = reply.json();
    assert_eq!(me["user_id"], "user-ada");
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["roles"], serde_json::json!(["admin", "dev"]));
    assert_eq!(me["client_ip"], "127.0.0.1");
    assert_eq!(me["session"].as_str().unwrap().len(), 65);
    // The session cookie is the filter's; the others go through.
    assert_eq!(me["cookie"], "theme=dark; lang=en");
    // Upstream gets the session's access token, verifiable with the JWKS.
    let token = me["authorization"]
        .as_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap();
    let verifier = portero_core::token::TokenVerifier::new(
        &serde_json::from_value(stack.jwks.clone()).unwrap(),
        portero_integration::ISSUER,
        &[portero_integration::AUDIENCE.to_string()],
        5,
        0,
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let verified = verifier.verify(token, now).unwrap();
    assert!(!verified.expired);
    let claims = verified.claims;
    assert_eq!(claims.sub, "user-ada");
    assert_eq!(claims.sid, me["session"]);
}
