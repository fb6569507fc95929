//! redis-sidecar's HTTP API on its own (Redis and the sidecar, no Envoy nor
//! upstream): credentials, bad input, health.

use portero_integration::{Stack, StackOptions, ADMIN_TOKEN, FILTER_TOKEN};
use serde_json::{json, Value};

fn admin() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

fn filter() -> String {
    format!("Bearer {FILTER_TOKEN}")
}

fn create_body() -> Value {
    json!({"user_id": "u-1", "email": "u@example.com", "roles": ["dev"], "client_ip": "127.0.0.1", "user_agent": "t"})
}

#[test]
fn every_call_is_authenticated_and_roles_are_separate() {
    let stack = Stack::start_backends(StackOptions::default());
    let create = stack.sidecar_url("/v1/sessions");
    let lookup = stack.sidecar_url("/v1/sessions/lookup");
    let lookup_body = json!({"session_handle": "A".repeat(65), "presented_jti": "j"});

    let none = stack.send("POST", &create, &[], Some(&create_body()));
    assert_eq!(
        (none.status, none.json()["error"].clone()),
        (401, json!("unauthorized"))
    );
    let wrong = stack.send(
        "POST",
        &create,
        &[("authorization", "Bearer not-a-credential")],
        Some(&create_body()),
    );
    assert_eq!(wrong.status, 401);
    let basic = stack.send(
        "POST",
        &create,
        &[("authorization", &format!("Basic {ADMIN_TOKEN}"))],
        Some(&create_body()),
    );
    assert_eq!(basic.status, 401);
    // The filter's credential cannot create sessions nor touch users ...
    let by_filter = stack.send(
        "POST",
        &create,
        &[("authorization", &filter())],
        Some(&create_body()),
    );
    assert_eq!(
        (by_filter.status, by_filter.json()["error"].clone()),
        (403, json!("forbidden"))
    );
    let revoke_by_filter = stack.send(
        "POST",
        &stack.sidecar_url("/v1/users/u-1/revoke"),
        &[("authorization", &filter())],
        None,
    );
    assert_eq!(revoke_by_filter.status, 403);
    // ... but may end one session it names (binding `on_reject: end_session`).
    let end_by_filter = stack.send(
        "DELETE",
        &stack.sidecar_url(&format!("/v1/sessions/{}", "A".repeat(65))),
        &[("authorization", &filter())],
        None,
    );
    assert_eq!(
        (end_by_filter.status, end_by_filter.json()["ended"].clone()),
        (200, json!(false))
    );
    // ... and the admin credential is not the filter's.
    let by_admin = stack.send(
        "POST",
        &lookup,
        &[("authorization", &admin())],
        Some(&lookup_body),
    );
    assert_eq!(by_admin.status, 403);
    let unauth_lookup = stack.send("POST", &lookup, &[], Some(&lookup_body));
    assert_eq!(unauth_lookup.status, 401);

    let created = stack.send(
        "POST",
        &create,
        &[("authorization", &admin())],
        Some(&create_body()),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let handle = created.json()["session_handle"]
        .as_str()
        .unwrap()
        .to_string();
    let jti = portero_integration::claims_of(created.json()["access_token"].as_str().unwrap()).jti;
    // A handle alone (the filter credential and a token's `sid`, say) reads
    // nothing: the look-up must prove possession of the token.
    for without_proof in [
        json!({"session_handle": handle}),
        json!({"session_handle": handle, "presented_jti": ""}),
    ] {
        let refused = stack.send(
            "POST",
            &lookup,
            &[("authorization", &filter())],
            Some(&without_proof),
        );
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert!(
            !refused.body.contains("access_token") && !refused.body.contains(".ey"),
            "{}",
            refused.body
        );
    }
    let found = stack.send(
        "POST",
        &lookup,
        &[("authorization", &filter())],
        Some(&json!({"session_handle": handle, "presented_jti": jti})),
    );
    assert_eq!(found.status, 200);
    assert_eq!(found.json()["session"]["user_id"], "u-1");
    let by_id = json!({"session_id": created.json()["session_id"]});
    assert_eq!(
        stack
            .send(
                "POST",
                &lookup,
                &[("authorization", &filter())],
                Some(&by_id)
            )
            .status,
        200
    );
    let end_url = stack.sidecar_url(&format!("/v1/sessions/{handle}"));
    let ended = stack.send("DELETE", &end_url, &[("authorization", &admin())], None);
    assert_eq!(ended.json()["ended"], true);
    let again = stack.send("DELETE", &end_url, &[("authorization", &admin())], None);
    assert_eq!(again.json()["ended"], false, "ending is idempotent");
    let gone = stack.send(
        "POST",
        &lookup,
        &[("authorization", &filter())],
        Some(&json!({"session_handle": handle, "presented_jti": jti})),
    );
    assert_eq!(
        (gone.status, gone.json()["error"].clone()),
        (404, json!("session_not_found"))
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let stack = Stack::start_backends(StackOptions::default());
    let create = stack.sidecar_url("/v1/sessions");
    let lookup = stack.sidecar_url("/v1/sessions/lookup");
    let auth_admin = admin();
    let auth_filter = filter();
    let as_admin = [("authorization", auth_admin.as_str())];
    let as_filter = [("authorization", auth_filter.as_str())];

    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Value, u16, &'a str);
    let cases: Vec<Case> = vec![
        (&create, &as_admin, json!({"email": "x"}), 400, "user_id"),
        (
            &create,
            &as_admin,
            json!({"user_id": "", "email": "x"}),
            400,
            "user_id",
        ),
        (
            &create,
            &as_admin,
            json!({"user_id": "u", "email": "x", "roles": ["a,b"]}),
            400,
            "role",
        ),
        (
            &create,
            &as_admin,
            json!({"user_id": "u", "email": "x", "client_ip": "not-an-ip"}),
            400,
            "client_ip",
        ),
        (
            &create,
            &as_admin,
            json!({"user_id": "u\r\nx-evil: 1", "email": "x"}),
            400,
            "control",
        ),
        (
            &create,
            &as_admin,
            json!({"user_id": "u", "email": "x", "bogus": 1}),
            400,
            "bogus",
        ),
        (
            &create,
            &as_admin,
            json!({"user_id": "u".repeat(300), "email": "x"}),
            400,
            "user_id",
        ),
        (
            &lookup,
            &as_filter,
            // Not a possible session: a definite "no" (404
            // session_not_found), so the filter answers 401, not 503.
            json!({"session_id": "short"}),
            404,
            "not a session",
        ),
        (
            &lookup,
            &as_filter,
            json!({"session_handle": "has spaces and is long enough.....", "presented_jti": "j"}),
            404,
            "not a session",
        ),
        (&lookup, &as_filter, json!({"other": "x"}), 400, "other"),
        (&lookup, &as_filter, json!(42), 400, "invalid JSON"),
        (&lookup, &as_filter, json!({}), 400, "exactly one"),
        (
            &lookup,
            &as_filter,
            json!({"session_handle": "A".repeat(65)}),
            400,
            "presented_jti",
        ),
        (
            &lookup,
            &as_filter,
            json!({"session_id": "A".repeat(65), "session_handle": "A".repeat(65)}),
            400,
            "exactly one",
        ),
        (
            &lookup,
            &as_filter,
            json!({"session_handle": "A".repeat(65), "presented_jti": "a\nb"}),
            400,
            "presented_jti",
        ),
    ];
    for (url, headers, body, status, mentions) in cases {
        let reply = stack.send("POST", url, headers, Some(&body));
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
        let message = reply.json()["message"].as_str().unwrap().to_string();
        assert!(
            message.contains(mentions),
            "{body}: {message:?} should mention {mentions}"
        );
    }

    // Not JSON at all, and not declared as JSON.
    let raw = stack.send_raw(
        "POST",
        &lookup,
        &[
            ("authorization", &auth_filter),
            ("content-type", "application/json"),
        ],
        b"{nope",
    );
    assert_eq!(
        (raw.status, raw.json()["error"].clone()),
        (400, json!("bad_request"))
    );
    let text = stack.send_raw(
        "POST",
        &lookup,
        &[
            ("authorization", &auth_filter),
            ("content-type", "text/plain"),
        ],
        b"{}",
    );
    assert_eq!(text.status, 415);
    let huge = vec![b' '; 100 * 1024];
    let too_big = stack.send_raw(
        "POST",
        &lookup,
        &[
            ("authorization", &auth_filter),
            ("content-type", "application/json"),
        ],
        &huge,
    );
    assert_eq!(too_big.status, 413);
    // Every error is the documented JSON body, axum's own ones included.
    assert_eq!(
        too_big.json()["error"],
        "payload_too_large",
        "{}",
        too_big.body
    );
    // Media types are case-insensitive (RFC 9110 §8.3.1), and exact.
    for (content_type, status) in [
        ("Application/JSON", 200),
        ("application/json; charset=utf-8", 200),
        ("application/jsonx", 415),
    ] {
        let reply = stack.send_raw(
            "POST",
            &lookup,
            &[
                ("authorization", &auth_filter),
                ("content-type", content_type),
            ],
            br#"{"session_handle":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","presented_jti":"j"}"#,
        );
        let status = if status == 200 { 404 } else { status };
        assert_eq!(reply.status, status, "{content_type}: {}", reply.body);
        assert!(reply.json()["error"].is_string());
    }
    let bad_handle = stack.send(
        "DELETE",
        &stack.sidecar_url("/v1/sessions/x"),
        &as_admin,
        None,
    );
    assert_eq!(bad_handle.status, 400);
    let unknown = stack.send("GET", &stack.sidecar_url("/v1/nope"), &[], None);
    assert_eq!(
        (unknown.status, unknown.json()["error"].clone()),
        (404, json!("no_such_route"))
    );
}

#[test]
fn jwks_and_health() {
    let mut stack = Stack::start_backends(StackOptions::default());
    let jwks = stack.send(
        "GET",
        &stack.sidecar_url("/.well-known/jwks.json"),
        &[],
        None,
    );
    assert_eq!(jwks.status, 200);
    assert_eq!(jwks.json(), stack.jwks);
    assert_eq!(jwks.json()["keys"][0]["alg"], "RS256");
    assert!(
        jwks.json()["keys"][0].get("d").is_none(),
        "private part published"
    );
    assert_eq!(
        stack
            .send("GET", &stack.sidecar_url("/healthz"), &[], None)
            .status,
        200
    );
    assert_eq!(
        stack
            .send("GET", &stack.sidecar_url("/readyz"), &[], None)
            .status,
        200
    );
    stack.stop_redis();
    let ready = stack.send("GET", &stack.sidecar_url("/readyz"), &[], None);
    assert_eq!(ready.status, 503);
    assert_eq!(
        stack
            .send("GET", &stack.sidecar_url("/healthz"), &[], None)
            .status,
        200
    );
    stack.start_redis();
    assert_eq!(
        stack
            .send("GET", &stack.sidecar_url("/readyz"), &[], None)
            .status,
        200
    );
}
