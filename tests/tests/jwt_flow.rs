//! The JWT flowchart of the seed document, one test per branch, through
//! real Envoy + portero, redis-sidecar, Redis and Fastify.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use portero_integration::{claims_of, Minter, Stack, TEST_KID};
use portero_testkit::tokens::{OTHER_PRIVATE_PEM, TEST_PRIVATE_PEM};
use serde_json::Value;

fn sign(pem: &str, kid: Option<&str>, claims: &impl serde::Serialize) -> String {
    Minter::new(pem, kid).sign(claims)
}

/// Signs with the sidecar's own (test) key: a genuine signature.
fn sign_genuine(claims: &impl serde::Serialize) -> String {
    Minter::test_key().sign(claims)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn assert_token_rejected(stack: &Stack, token: &str, reason: &str) {
    let reply = stack.get("/me", &[("authorization", &bearer(token))]);
    assert_eq!(reply.status, 401, "{reason}: {}", reply.body);
    assert_eq!(reply.json()["reason"], reason);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"portero\", error=\"invalid_token\"")
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.set_cookie(portero_integration::COOKIE_NAME), None);
}

#[test]
fn valid_token_reaches_me_with_identity() {
    let stack = Stack::start();
    let token = stack.login_app("alan", "turing");
    let reply = stack.get("/me", &[("authorization", &bearer(&token))]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let me = reply.json();
    assert_eq!(me["user_id"], "user-alan");
    assert_eq!(me["email"], "alan@example.com");
    assert_eq!(me["roles"], serde_json::json!(["dev"]));
    assert_eq!(me["session"], Value::String(claims_of(&token).sid));
    assert_eq!(me["authorization"], Value::String(bearer(&token)));
}

#[test]
fn expired_token_is_401() {
    let stack = Stack::start();
    let mut claims = claims_of(&stack.login_app("alan", "turing"));
    // Past the refresh window (an hour by default): not even refreshable.
    claims.exp = claims.iat - 7200;
    assert_token_rejected(&stack, &sign_genuine(&claims), "token_expired");
}

#[test]
fn token_signed_by_another_key_is_401() {
    let stack = Stack::start();
    let claims = claims_of(&stack.login_app("alan", "turing"));
    let forged = sign(OTHER_PRIVATE_PEM, Some(TEST_KID), &claims);
    assert_token_rejected(&stack, &forged, "token_bad_signature");
}

#[test]
fn unknown_kid_or_no_kid_is_401() {
    let stack = Stack::start();
    let claims = claims_of(&stack.login_app("alan", "turing"));
    assert_token_rejected(
        &stack,
        &sign(TEST_PRIVATE_PEM, Some("rotated-away"), &claims),
        "token_unknown_kid",
    );
    assert_token_rejected(
        &stack,
        &sign(TEST_PRIVATE_PEM, None, &claims),
        "token_without_kid",
    );
}

#[test]
fn alg_none_is_401() {
    let stack = Stack::start();
    let token = stack.login_app("alan", "turing");
    let payload = token.split('.').nth(1).unwrap();
    for header in [
        r#"{"alg":"none","typ":"JWT","kid":"test-key"}"#,
        r#"{"alg":"None","kid":"test-key"}"#,
    ] {
        let unsigned = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(header));
        assert_token_rejected(&stack, &unsigned, "token_algorithm_not_allowed");
    }
}

#[test]
fn hs256_signed_with_the_public_key_is_401() {
    let stack = Stack::start();
    let claims = claims_of(&stack.login_app("alan", "turing"));
    // The classic key-confusion attack: the RSA public key (as the JWKS
    // publishes it, and as PEM) used as an HMAC secret.
    let jwk = &stack.jwks["keys"][0];
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(TEST_KID.into());
    for secret in [
        jwk["n"].as_str().unwrap().as_bytes().to_vec(),
        serde_json::to_vec(jwk).unwrap(),
        TEST_PRIVATE_PEM.as_bytes().to_vec(),
    ] {
        let token = encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
        assert_token_rejected(&stack, &token, "token_algorithm_not_allowed");
    }
}

#[test]
fn wrong_issuer_or_audience_is_401() {
    let stack = Stack::start();
    let claims = claims_of(&stack.login_app("alan", "turing"));
    let mut wrong_iss = claims.clone();
    wrong_iss.iss = "https://attacker.example".into();
    assert_token_rejected(&stack, &sign_genuine(&wrong_iss), "token_wrong_issuer");
    let mut wrong_aud = claims;
    wrong_aud.aud = "another-app".into();
    assert_token_rejected(&stack, &sign_genuine(&wrong_aud), "token_wrong_audience");
}

#[test]
fn token_without_sid_is_401() {
    let stack = Stack::start();
    let claims = claims_of(&stack.login_app("alan", "turing"));
    let mut value = serde_json::to_value(&claims).unwrap();
    value.as_object_mut().unwrap().remove("sid");
    assert_token_rejected(&stack, &sign_genuine(&value), "token_without_sid");
}

#[test]
fn malformed_tokens_are_401() {
    let stack = Stack::start();
    let token = stack.login_app("alan", "turing");
    let truncated = &token[..token.len() - 10];
    for (bad, reason) in [
        ("abc", "token_malformed"),
        ("a.b.c", "token_malformed"),
        (truncated, "token_bad_signature"),
    ] {
        assert_token_rejected(&stack, bad, reason);
    }
    // Oversized tokens never reach a parser.
    let huge = format!(
        "{}.{}.{}",
        "e".repeat(3000),
        "e".repeat(3000),
        "e".repeat(3000)
    );
    assert_token_rejected(&stack, &huge, "token_too_long");
}

#[test]
fn token_of_an_unknown_or_ended_session_is_401() {
    let stack = Stack::start();
    let token = stack.login_app("alan", "turing");
    // A genuine signature naming a session that was never created.
    let mut claims = claims_of(&token);
    claims.sid = "A".repeat(65);
    assert_token_rejected(&stack, &sign_genuine(&claims), "session_not_found");
    // The real session, ended through the app's logout.
    let out = stack.request(
        "POST",
        "/auth/logout",
        &[("authorization", &bearer(&token))],
        Some(&serde_json::json!({})),
    );
    assert_eq!(out.status, 200, "{}", out.body);
    assert_token_rejected(&stack, &token, "session_not_found");
}

#[test]
fn token_that_is_not_the_sessions_current_one_is_401() {
    let stack = Stack::start();
    let token = stack.login_app("alan", "turing");
    // Another user's name on this session's current token.
    let mut claims = claims_of(&token);
    claims.sub = "user-ada".into();
    assert_token_rejected(&stack, &sign_genuine(&claims), "session_tokens_invalid");
    // A genuine token for this session that is not its current one (nor its
    // predecessor within the grace window) is a replay: refused, and the
    // session is revoked (RFC 9700 reuse detection, on by default).
    let mut claims = claims_of(&token);
    claims.jti = "minted-elsewhere".into();
    assert_token_rejected(&stack, &sign_genuine(&claims), "token_replayed");
    assert_token_rejected(&stack, &token, "session_not_found");
}
