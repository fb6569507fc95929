//! The flow's state machine against a fake host: every branch of both
//! flowcharts, and the response side. (Tests outside `src/`: the fake host
//! lives in `portero-testkit`, which depends on this crate.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::RefCell;
use std::rc::Rc;

use portero_wire::{AccessClaims, LookupRequest, LookupResponse, SessionVerdict, SessionView};

use portero_core::cache::EdgeCache;
use portero_core::config::Config;
use portero_core::flow::*;
use portero_core::metrics::{CacheKind, Counter, Outcome, SidecarError};
use portero_core::policy::{BindingField, MismatchPolicy};
use portero_testkit::{claims, sign, valid_config, valid_json, FakeHost, NOW};

const SID: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

/// A flow with a fresh cache of its own (feed never read: no session hits).
fn new_flow(config: Rc<Config>) -> Flow {
    let cache = Rc::new(RefCell::new(EdgeCache::new(&config.cache)));
    Flow::new(config, cache)
}

fn config() -> Rc<Config> {
    Rc::new(valid_config())
}

fn session() -> SessionView {
    let c = claims();
    SessionView {
        handle: c.sid.clone(),
        user_id: c.sub.clone(),
        email: "ada@example.com".into(),
        roles: vec!["admin".into(), "dev".into()],
        permissions: vec![],
        created_at: NOW - 100,
        last_seen_at: NOW,
        expires_at: NOW + 3600,
        idle_expires_at: NOW + 600,
        client_ip: "203.0.113.7".into(),
        user_agent: "test".into(),
        access_token: "header.payload.sig".into(),
        access_jti: c.jti.clone(),
        access_expires_at: NOW + 300,
        rotations: 0,
        access_token_presented: true,
    }
}

fn ok_reply(session: &SessionView) -> SidecarReply {
    SidecarReply {
        status: Some(200),
        body: serde_json::to_vec(&LookupResponse {
            session: session.clone(),
            rotated: false,
        })
        .unwrap(),
    }
}

/// A browser with its session cookie. Like a real one, it sends the same
/// sealed bytes every time (the edge cache knows a cookie by them): the
/// value sealed last is reused while it opens under `config`.
fn cookie_host(config: &Config) -> FakeHost {
    thread_local! {
        static SEALED: RefCell<String> = const { RefCell::new(String::new()) };
    }
    let value = SEALED.with(|sealed| {
        let mut sealed = sealed.borrow_mut();
        if config.cookie.open(&sealed).ok().as_deref() != Some(SID) {
            *sealed = config.cookie.seal(SID).unwrap();
        }
        sealed.clone()
    });
    FakeHost::new().with("cookie", &format!("theme=dark; __Host-portero={value}"))
}

fn bearer_host(claims: &AccessClaims) -> FakeHost {
    FakeHost::new().with("authorization", &format!("Bearer {}", sign(claims)))
}

#[test]
fn cookie_flow_forwards_identity_and_hides_the_cookie() {
    let config = config();
    let mut host = cookie_host(&config).with("x-portero-user-id", "spoofed");
    let mut flow = new_flow(config);
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Wait);
    assert_eq!(host.lookup(), LookupRequest::by_id(SID));
    let call = &host.calls[0];
    assert_eq!(call.cluster, "redis_sidecar");
    assert!(call.headers.contains(&(
        "authorization".into(),
        "Bearer filter-token-0123456789".into()
    )));
    assert_eq!(
        host.request_header("x-portero-user-id"),
        None,
        "spoofed header stripped"
    );
    assert_eq!(
        flow.on_sidecar_reply(&mut host, ok_reply(&session())),
        Verdict::Forward
    );
    assert_eq!(host.sent, None);
    assert_eq!(&host.request["x-portero-user-id"], "user-1");
    assert_eq!(&host.request["x-portero-roles"], "admin,dev");
    assert_eq!(&host.request["x-portero-email"], "ada@example.com");
    assert_eq!(&host.request["x-portero-session"], session().handle);
    assert_eq!(&host.request["x-portero-client-ip"], "203.0.113.7");
    assert_eq!(&host.request["authorization"], "Bearer header.payload.sig");
    assert_eq!(&host.request["cookie"], "theme=dark");
}

#[test]
fn no_cookie_no_token_is_401_without_lookup() {
    let mut host = FakeHost::new();
    let mut flow = new_flow(config());
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Responded);
    assert!(host.calls.is_empty());
    assert_eq!(host.sent_status(), Some(401));
    assert_eq!(host.sent_reason(), "no_credentials");
    assert_eq!(
        host.sent_header("www-authenticate"),
        Some("Bearer realm=\"portero\"")
    );
    assert_eq!(host.sent_header("cache-control"), Some("no-store"));
}

#[test]
fn cookie_that_does_not_decrypt_is_401_and_cleared() {
    let config = config();
    for value in ["garbage", "", "AQE", &"A".repeat(5000)] {
        let mut host = FakeHost::new().with("cookie", &format!("__Host-portero={value}"));
        let mut flow = new_flow(config.clone());
        flow.on_request_headers(&mut host);
        assert!(host.calls.is_empty());
        assert_eq!(host.sent_status(), Some(401), "{value}");
        assert_eq!(host.sent_reason(), "cookie_invalid");
        assert!(host
            .sent_header("set-cookie")
            .unwrap()
            .contains("Max-Age=0"));
    }
}

#[test]
fn unknown_session_is_401() {
    let config = config();
    let mut host = cookie_host(&config);
    let mut flow = new_flow(config);
    flow.on_request_headers(&mut host);
    let reply = SidecarReply {
        status: Some(404),
        body: br#"{"error":"session_not_found","message":"no such session"}"#.to_vec(),
    };
    flow.on_sidecar_reply(&mut host, reply);
    assert_eq!(host.sent_status(), Some(401));
    assert_eq!(host.sent_reason(), "session_not_found");
}

#[test]
fn expired_session_or_tokens_are_401() {
    let config = config();
    let mut expired = session();
    expired.expires_at = NOW;
    let mut stale = session();
    stale.access_expires_at = NOW - 1;
    let mut tokenless = session();
    tokenless.access_token = String::new();
    for (s, reason) in [
        (expired, "session_not_found"),
        (stale, "session_tokens_invalid"),
        (tokenless, "session_tokens_invalid"),
    ] {
        let mut host = cookie_host(&config);
        let mut flow = new_flow(config.clone());
        flow.on_request_headers(&mut host);
        flow.on_sidecar_reply(&mut host, ok_reply(&s));
        assert_eq!(host.sent_status(), Some(401));
        assert_eq!(host.sent_reason(), reason);
    }
}

#[test]
fn sidecar_trouble_is_503_and_keeps_the_cookie() {
    let config = config();
    let replies = [
        no_answer(),
        SidecarReply {
            status: Some(500),
            body: vec![],
        },
        SidecarReply {
            status: Some(401),
            body: br#"{"error":"unauthorized","message":""}"#.to_vec(),
        },
        SidecarReply {
            status: Some(200),
            body: b"not json".to_vec(),
        },
        SidecarReply {
            status: Some(200),
            body: br#"{"session":{}}"#.to_vec(),
        },
        SidecarReply {
            status: Some(404),
            body: b"<html>".to_vec(),
        },
    ];
    for reply in replies {
        let mut host = cookie_host(&config);
        let mut flow = new_flow(config.clone());
        flow.on_request_headers(&mut host);
        assert_eq!(
            flow.on_sidecar_reply(&mut host, reply.clone()),
            Verdict::Responded
        );
        assert_eq!(host.sent_status(), Some(503), "{reply:?}");
        assert_eq!(host.sent_header("retry-after"), Some("1"));
        assert_eq!(
            host.sent_header("set-cookie"),
            None,
            "store trouble is not a logout"
        );
        assert!(host.request_header("x-portero-user-id").is_none());
    }
}

#[test]
fn dispatch_failure_is_503() {
    let config = config();
    let mut host = cookie_host(&config);
    host.dispatch_fails = true;
    let mut flow = new_flow(config);
    flow.on_request_headers(&mut host);
    assert_eq!(host.sent_status(), Some(503));
    assert_eq!(host.sent_reason(), "sidecar_unavailable");
}

#[test]
fn identity_that_could_split_a_header_is_refused() {
    let config = config();
    let mut bad = session();
    bad.email = "a@b\r\nx-portero-roles: admin".into();
    let mut host = cookie_host(&config);
    let mut flow = new_flow(config);
    flow.on_request_headers(&mut host);
    flow.on_sidecar_reply(&mut host, ok_reply(&bad));
    assert_eq!(host.sent_status(), Some(503));
    assert_eq!(host.sent_reason(), "sidecar_bad_reply");
}

#[test]
fn bearer_flow_forwards_with_the_callers_token() {
    let c = claims();
    let mut host = bearer_host(&c);
    let token = host.request["authorization"].to_string();
    let mut flow = new_flow(config());
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Wait);
    assert_eq!(host.lookup(), LookupRequest::by_handle(&c.sid, &c.jti));
    assert_eq!(
        flow.on_sidecar_reply(&mut host, ok_reply(&session())),
        Verdict::Forward
    );
    assert_eq!(host.sent, None);
    assert_eq!(&host.request["x-portero-user-id"], "user-1");
    assert_eq!(&host.request["authorization"], token);
}

#[test]
fn bearer_token_rejections_are_401_with_www_authenticate() {
    let mut expired = claims();
    expired.exp = NOW - 10_000; // beyond the default refresh window
    let mut no_sid = claims();
    no_sid.sid = String::new();
    let mut bad_sid = claims();
    bad_sid.sid = "not a handle".into();
    for (c, reason) in [
        (expired, "token_expired"),
        (no_sid, "token_without_sid"),
        (bad_sid, "token_without_sid"),
    ] {
        let mut host = bearer_host(&c);
        let mut flow = new_flow(config());
        flow.on_request_headers(&mut host);
        assert!(host.calls.is_empty());
        assert_eq!(host.sent_status(), Some(401));
        assert_eq!(host.sent_reason(), reason);
        assert_eq!(
            host.sent_header("www-authenticate"),
            Some("Bearer realm=\"portero\", error=\"invalid_token\"")
        );
        assert_eq!(host.sent_header("set-cookie"), None);
    }
}

#[test]
fn bearer_token_must_belong_to_the_session_it_names() {
    for mutate in [
        (|s: &mut SessionView| s.user_id = "someone-else".into()) as fn(&mut SessionView),
        |s| s.handle = "x".repeat(43),
        |s| s.access_expires_at = NOW,
    ] {
        let mut host = bearer_host(&claims());
        let mut flow = new_flow(config());
        flow.on_request_headers(&mut host);
        let mut s = session();
        mutate(&mut s);
        flow.on_sidecar_reply(&mut host, ok_reply(&s));
        assert_eq!(host.sent_status(), Some(401), "{s:?} {:?}", host.calls);
        assert_eq!(host.sent_reason(), "session_tokens_invalid");
    }
}

#[test]
fn expired_bearer_token_within_the_window_is_refreshed() {
    let mut v = valid_json();
    v["jwt"]["refresh_window_seconds"] = serde_json::json!(600);
    let config = Rc::new(Config::from_json(v.to_string().as_bytes()).unwrap());
    let mut old = claims();
    old.exp = NOW - 60;
    let mut host = bearer_host(&old);
    let mut flow = new_flow(config);
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Wait);
    assert_eq!(host.lookup(), LookupRequest::by_handle(&old.sid, &old.jti));
    let mut rotated = session();
    rotated.access_jti = "jti-2".into();
    rotated.access_token = "new.access.token".into();
    assert_eq!(
        flow.on_sidecar_reply(&mut host, ok_reply(&rotated)),
        Verdict::Forward,
        "{:?}",
        host.sent
    );
    assert_eq!(&host.request["authorization"], "Bearer new.access.token");
    host.add_response_header("x-portero-access-token", "forged-by-upstream");
    flow.on_response_headers(&mut host);
    assert_eq!(
        host.response.lines("x-portero-access-token"),
        vec![&b"new.access.token"[..]]
    );
}

#[test]
fn expired_bearer_token_beyond_the_window_is_401_without_lookup() {
    let mut old = claims();
    old.exp = NOW - 60;
    let mut host = bearer_host(&old);
    let mut flow = new_flow(config()); // refresh window 3600 by default
    flow.on_request_headers(&mut host);
    assert_eq!(host.calls.len(), 1, "within the default window");
    old.exp = NOW - 7200;
    let mut host = bearer_host(&old);
    let mut flow = new_flow(config());
    flow.on_request_headers(&mut host);
    assert!(host.calls.is_empty());
    assert_eq!(host.sent_reason(), "token_expired");
}

#[test]
fn sidecar_verdicts_become_401_with_their_reason() {
    let config = config();
    for code in [
        "session_not_found",
        "session_revoked",
        "user_banned",
        "token_replayed",
    ] {
        let mut host = bearer_host(&claims());
        let mut flow = new_flow(config.clone());
        flow.on_request_headers(&mut host);
        let body = serde_json::json!({"error": code, "message": "no"}).to_string();
        flow.on_sidecar_reply(
            &mut host,
            SidecarReply {
                status: Some(404),
                body: body.into_bytes(),
            },
        );
        assert_eq!(host.sent_status(), Some(401), "{code}");
        assert_eq!(host.sent_reason(), code);
    }
}

#[test]
fn unchanged_bearer_token_gets_no_new_token_header() {
    let mut host = bearer_host(&claims());
    let mut flow = new_flow(config());
    flow.on_request_headers(&mut host);
    flow.on_sidecar_reply(&mut host, ok_reply(&session()));
    flow.on_response_headers(&mut host);
    assert_eq!(host.response_header("x-portero-access-token"), None);
}

#[test]
fn non_bearer_authorization_falls_back_to_the_cookie() {
    let mut host = FakeHost::new().with("authorization", "Basic dXNlcjpwYXNz");
    let mut flow = new_flow(config());
    flow.on_request_headers(&mut host);
    assert_eq!(host.sent_reason(), "no_credentials");
}

#[test]
fn off_route_passes_anonymously_without_identity() {
    let mut host = FakeHost::new()
        .with(":path", "/auth/login")
        .with("x-portero-roles", "admin");
    let mut flow = new_flow(config());
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Forward);
    assert!(host.calls.is_empty() && host.sent.is_none());
    assert_eq!(host.request_header("x-portero-roles"), None);
}

#[test]
fn late_or_duplicate_replies_are_ignored() {
    let mut host = FakeHost::new();
    let mut flow = new_flow(config());
    // Nothing was waiting for it: nothing is resumed, nothing forwarded.
    assert_eq!(
        flow.on_sidecar_reply(&mut host, ok_reply(&session())),
        Verdict::Responded
    );
    assert!(host.sent.is_none() && host.request_header("x-portero-user-id").is_none());
}

#[test]
fn start_session_header_becomes_a_cookie() {
    let config = config();
    let mut host = FakeHost::new();
    host.add_response_header("x-portero-start-session", SID);
    new_flow(config.clone()).on_response_headers(&mut host);
    assert_eq!(host.response_header("x-portero-start-session"), None);
    let set_cookie = host.response_header("set-cookie").unwrap();
    assert!(set_cookie.starts_with("__Host-portero="));
    assert!(set_cookie.ends_with("; Path=/; Secure; HttpOnly; SameSite=Strict"));
    let value = set_cookie
        .trim_start_matches("__Host-portero=")
        .split(';')
        .next()
        .unwrap();
    assert_eq!(config.cookie.open(value).unwrap(), SID);
}

#[test]
fn a_signed_in_users_answer_is_kept_out_of_caches_unless_the_app_says_otherwise() {
    let answered = |config: &Rc<Config>, signed_in: bool, upstream: Option<&str>| {
        let mut host = if signed_in {
            cookie_host(config)
        } else {
            FakeHost::new().with(":path", "/public/page")
        };
        let mut flow = new_flow(config.clone());
        if flow.on_request_headers(&mut host) == Verdict::Wait {
            flow.on_sidecar_reply(&mut host, ok_reply(&session()));
        }
        host.add_response_header(":status", "200");
        if let Some(value) = upstream {
            host.add_response_header("cache-control", value);
        }
        flow.on_response_headers(&mut host);
        host.response_header("cache-control")
    };
    let config = config_with(|v| {
        v["routes"] = serde_json::json!([{"path_prefix": "/public/", "policy": "optional"}])
    });
    assert_eq!(answered(&config, true, None).as_deref(), Some("no-store"));
    // The app's own choice stands.
    assert_eq!(
        answered(&config, true, Some("private, max-age=60")).as_deref(),
        Some("private, max-age=60")
    );
    // Nobody signed in: nothing to keep private.
    assert_eq!(answered(&config, false, None), None);
    // Turned off.
    let off = config_with(|v| v["identity_response_cache_control"] = serde_json::Value::Null);
    assert_eq!(answered(&off, true, None), None);
}

#[test]
fn bad_start_session_header_is_502_without_cookie() {
    let mut host = FakeHost::new();
    host.add_response_header(":status", "200");
    host.add_response_header("x-portero-start-session", "not a session id");
    new_flow(config()).on_response_headers(&mut host);
    assert_eq!(host.response_header("set-cookie"), None);
    assert_eq!(host.response_header(":status").as_deref(), Some("502"));
    assert_eq!(host.response_header("x-portero-start-session"), None);
}

#[test]
fn end_session_header_clears_the_cookie() {
    let mut host = FakeHost::new();
    host.add_response_header("x-portero-end-session", "1");
    new_flow(config()).on_response_headers(&mut host);
    assert_eq!(host.response_header("x-portero-end-session"), None);
    assert!(host
        .response_header("set-cookie")
        .unwrap()
        .starts_with("__Host-portero=; Path=/; Max-Age=0"));
}

#[test]
fn cross_site_unsafe_cookie_request_is_403_and_keeps_the_cookie() {
    let config = config();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<u32>);
    let cases: [Case; 8] = [
        ("POST", &[("sec-fetch-site", "cross-site")], Some(403)),
        ("DELETE", &[("origin", "https://evil.example")], Some(403)),
        ("PUT", &[], Some(403)),
        (
            "POST",
            &[
                ("sec-fetch-site", "same-site"),
                ("origin", "https://sub.example"),
            ],
            Some(403),
        ),
        ("POST", &[("sec-fetch-site", "same-origin")], None),
        ("PATCH", &[("origin", "https://gate.example")], None),
        ("GET", &[("sec-fetch-site", "cross-site")], None),
        ("HEAD", &[], None),
    ];
    for (method, headers, refused) in cases {
        let mut host = cookie_host(&config)
            .with(":method", method)
            .with(":scheme", "https")
            .with(":authority", "gate.example");
        for (k, v) in headers {
            host = host.with(k, v);
        }
        let mut flow = new_flow(config.clone());
        flow.on_request_headers(&mut host);
        assert_eq!(host.sent_status(), refused, "{method} {headers:?}");
        if refused.is_some() {
            assert_eq!(host.sent_reason(), "cross_site_request");
            assert_eq!(host.sent_header("set-cookie"), None);
            assert!(host.calls.is_empty());
        } else {
            assert_eq!(host.calls.len(), 1, "{method} {headers:?}");
        }
    }
}

#[test]
fn listed_origins_pass_and_bearer_requests_are_not_subject_to_csrf() {
    let mut v = valid_json();
    v["csrf"] = serde_json::json!({"allowed_origins": ["https://app.example"]});
    let config = Rc::new(Config::from_json(v.to_string().as_bytes()).unwrap());
    let mut host = cookie_host(&config)
        .with(":method", "POST")
        .with("origin", "https://app.example");
    new_flow(config.clone()).on_request_headers(&mut host);
    assert_eq!(host.calls.len(), 1);
    let mut host = bearer_host(&claims()).with(":method", "POST");
    new_flow(config).on_request_headers(&mut host);
    assert_eq!(host.calls.len(), 1, "bearer POST without Origin goes on");
}

fn config_with(mutate: impl FnOnce(&mut serde_json::Value)) -> Rc<Config> {
    let mut v = valid_json();
    mutate(&mut v);
    Rc::new(Config::from_json(v.to_string().as_bytes()).unwrap())
}

/// The sidecar never answered (Envoy's own timeout or reset).
fn no_answer() -> SidecarReply {
    SidecarReply {
        status: None,
        body: vec![],
    }
}

fn not_found(code: &str) -> SidecarReply {
    SidecarReply {
        status: Some(404),
        body: serde_json::to_vec(&serde_json::json!({"error": code, "message": "x"})).unwrap(),
    }
}

// ── per-route policy ────────────────────────────────────────────────────

#[test]
fn optional_route_passes_without_a_credential_but_checks_one_that_is_presented() {
    let config = config_with(|v| {
        v["routes"] = serde_json::json!([{"path_prefix": "/feed/", "policy": "optional"}])
    });
    let mut host = FakeHost::new()
        .with(":path", "/feed/today")
        .with("x-portero-user-id", "spoofed");
    let mut flow = new_flow(config.clone());
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Forward);
    assert!(host.calls.is_empty() && host.sent.is_none());
    assert_eq!(host.request_header("x-portero-user-id"), None);
    assert_eq!(host.outcome(ClientKind::Anonymous, Outcome::Anonymous), 1);

    // A dead cookie there (one that does not open, a session gone) is no
    // reason to refuse the page: it goes on anonymously, without the
    // cookie, and the response clears it in the browser.
    let mut host = FakeHost::new()
        .with(":path", "/feed/today")
        .with("cookie", "theme=dark; __Host-portero=garbage");
    let mut flow = new_flow(config.clone());
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Forward);
    assert!(host.sent.is_none() && host.calls.is_empty());
    assert_eq!(host.request_header("cookie").as_deref(), Some("theme=dark"));
    assert_eq!(host.request_header("x-portero-user-id"), None);
    flow.on_response_headers(&mut host);
    assert!(host
        .response_header("set-cookie")
        .is_some_and(|c| c.starts_with("__Host-portero=;") && c.contains("Max-Age=0")));
    let mut host = cookie_host(&config).with(":path", "/feed/today");
    let mut flow = new_flow(config.clone());
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Wait);
    assert_eq!(
        flow.on_sidecar_reply(&mut host, not_found("session_not_found")),
        Verdict::Forward
    );
    assert!(host.sent.is_none());
    assert_eq!(host.request_header("cookie").as_deref(), Some("theme=dark"));
    assert_eq!(host.request_header("x-portero-user-id"), None);
    assert_eq!(host.outcome(ClientKind::Anonymous, Outcome::Anonymous), 1);
    // … unless the page itself signs the user in (the login form's POST).
    host.add_response_header("x-portero-start-session", SID);
    flow.on_response_headers(&mut host);
    let set_cookie = host.response_header("set-cookie").unwrap();
    assert!(!set_cookie.contains("Max-Age=0"), "{set_cookie}");
    // Store trouble there is still a 503 that keeps the cookie: an outage
    // is no logout.
    let mut host = cookie_host(&config).with(":path", "/feed/today");
    let mut flow = new_flow(config.clone());
    flow.on_request_headers(&mut host);
    flow.on_sidecar_reply(&mut host, no_answer());
    assert_eq!(host.sent_status(), Some(503));
    assert_eq!(host.sent_header("set-cookie"), None);

    // A valid session there is identified as usual.
    let mut host = cookie_host(&config).with(":path", "/feed/today");
    let mut flow = new_flow(config);
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Wait);
    flow.on_sidecar_reply(&mut host, ok_reply(&session()));
    assert_eq!(&host.request["x-portero-user-id"], "user-1");
    assert_eq!(host.outcome(ClientKind::Cookie, Outcome::Allowed), 1);
}

#[test]
fn role_gated_routes_pass_or_403_by_the_users_current_roles() {
    let config = config_with(|v| {
        v["routes"] = serde_json::json!([
            {"route_name": "admin", "roles": {"any_of": ["admin", "ops"]}},
            {"path_prefix": "/ops/", "roles": {"all_of": ["admin", "ops"]}}
        ])
    });
    let cases = [
        (Some("admin"), "/x", vec!["admin"], None),
        (Some("admin"), "/x", vec!["dev"], Some(403)),
        // The route-name rule wins over a path rule.
        (Some("admin"), "/ops/x", vec!["admin"], None),
        (None, "/ops/x", vec!["admin"], Some(403)),
        (None, "/ops/x", vec!["ops", "admin"], None),
        (Some("other"), "/x", vec![], None),
    ];
    for (route_name, path, roles, refused) in cases {
        let mut host = cookie_host(&config).with(":path", path);
        host.route_name = route_name.map(String::from);
        let mut flow = new_flow(config.clone());
        flow.on_request_headers(&mut host);
        let mut s = session();
        s.roles = roles.iter().map(|r| r.to_string()).collect();
        flow.on_sidecar_reply(&mut host, ok_reply(&s));
        assert_eq!(
            host.sent_status(),
            refused,
            "{route_name:?} {path} {roles:?}"
        );
        if refused.is_some() {
            assert_eq!(host.sent_reason(), "missing_role");
            let body: serde_json::Value =
                serde_json::from_slice(&host.sent.as_ref().unwrap().body).unwrap();
            assert_eq!(body["error"], "forbidden");
            assert_eq!(host.sent_header("set-cookie"), None, "session kept");
            assert_eq!(host.request_header("x-portero-user-id"), None);
            assert_eq!(
                host.outcome(ClientKind::Cookie, Outcome::Rejected("missing_role")),
                1
            );
        } else {
            assert_eq!(&host.request["x-portero-user-id"], "user-1");
        }
    }
}

#[test]
fn route_name_is_not_read_when_no_rule_names_routes() {
    let config = config();
    let mut host = FakeHost::new().with(":path", "/auth/login");
    host.route_name = Some("anything".into());
    new_flow(config).on_request_headers(&mut host);
    assert_eq!(host.outcome(ClientKind::Anonymous, Outcome::RouteOff), 1);
}

// ── session binding ─────────────────────────────────────────────────────

fn binding_config(binding: serde_json::Value) -> Rc<Config> {
    config_with(|v| v["binding"] = binding)
}

#[test]
fn binding_mismatch_under_log_passes_and_tells_the_upstream() {
    let config = binding_config(serde_json::json!({
        "ip": {"compare": "exact", "policy": "log"},
        "user_agent": {"compare": "exact", "policy": "log"}
    }));
    let mut host = cookie_host(&config)
        .with("user-agent", "other-browser")
        .with("x-portero-binding-mismatch", "forged");
    host.client_address = Some("198.51.100.1:443".into());
    let mut flow = new_flow(config);
    flow.on_request_headers(&mut host);
    assert_eq!(host.request_header("x-portero-binding-mismatch"), None);
    assert_eq!(
        flow.on_sidecar_reply(&mut host, ok_reply(&session())),
        Verdict::Forward
    );
    assert_eq!(host.sent, None);
    assert_eq!(&host.request["x-portero-binding-mismatch"], "ip,user_agent");
    for field in [BindingField::Ip, BindingField::UserAgent] {
        assert_eq!(
            host.counted(Counter::BindingMismatch {
                field,
                action: MismatchPolicy::Log
            }),
            1
        );
    }
}

#[test]
fn matching_client_gets_no_mismatch_header() {
    let config = binding_config(serde_json::json!({
        "ip": {"compare": "exact", "policy": "reject"},
        "user_agent": {"compare": "exact", "policy": "reject"}
    }));
    let mut host = cookie_host(&config).with("x-portero-binding-mismatch", "forged");
    let mut flow = new_flow(config);
    flow.on_request_headers(&mut host);
    assert_eq!(
        flow.on_sidecar_reply(&mut host, ok_reply(&session())),
        Verdict::Forward
    );
    assert_eq!(host.request_header("x-portero-binding-mismatch"), None);
    assert_eq!(&host.request["x-portero-user-id"], "user-1");
}

#[test]
fn ip_within_the_prefix_is_the_same_client() {
    let config = binding_config(serde_json::json!({
        "ip": {"compare": "prefix", "ipv4_prefix_len": 24, "policy": "reject"}
    }));
    let mut host = cookie_host(&config);
    host.client_address = Some("203.0.113.250:1".into());
    let mut flow = new_flow(config);
    flow.on_request_headers(&mut host);
    assert_eq!(
        flow.on_sidecar_reply(&mut host, ok_reply(&session())),
        Verdict::Forward
    );
    assert!(host
        .counters
        .iter()
        .all(|c| !matches!(c, Counter::BindingMismatch { .. })));
}

#[test]
fn binding_mismatch_under_reject_ends_the_session_then_refuses() {
    let config = binding_config(serde_json::json!({
        "user_agent": {"compare": "exact", "policy": "reject"}
    }));
    for (end_reply, error) in [
        (Some(200), None),
        (None, Some(SidecarError::NoAnswer)),
        // Not an ErrorBody: the proxy's own local 503, no answer at all.
        (Some(503), Some(SidecarError::NoAnswer)),
        (Some(500), Some(SidecarError::ErrorStatus)),
    ] {
        let mut host = cookie_host(&config).with("user-agent", "stolen-cookie-bot");
        let mut flow = new_flow(config.clone());
        flow.on_request_headers(&mut host);
        assert_eq!(
            flow.on_sidecar_reply(&mut host, ok_reply(&session())),
            Verdict::Wait
        );
        assert_eq!(host.sent, None, "waits for the session to end");
        let end = &host.calls[1];
        assert!(end.headers.contains(&(":method".into(), "DELETE".into())));
        assert!(end
            .headers
            .contains(&(":path".into(), format!("/v1/sessions/{}", session().handle))));
        assert!(end.headers.contains(&(
            "authorization".into(),
            "Bearer filter-token-0123456789".into()
        )));
        flow.on_sidecar_reply(
            &mut host,
            SidecarReply {
                status: end_reply,
                body: b"{\"ended\":true}".to_vec(),
            },
        );
        assert_eq!(host.sent_status(), Some(401));
        assert_eq!(host.sent_reason(), "session_binding_mismatch");
        assert!(host
            .sent_header("set-cookie")
            .unwrap()
            .contains("Max-Age=0"));
        assert_eq!(host.request_header("x-portero-user-id"), None);
        assert_eq!(
            host.counted(Counter::BindingMismatch {
                field: BindingField::UserAgent,
                action: MismatchPolicy::Reject
            }),
            1
        );
        if let Some(error) = error {
            assert_eq!(host.counted(Counter::Sidecar(error)), 1);
        }
    }
}

#[test]
fn binding_mismatch_under_reject_can_keep_the_session() {
    let config = binding_config(serde_json::json!({
        "ip": {"compare": "exact", "policy": "reject"},
        "on_reject": "keep_session"
    }));
    let mut host = bearer_host(&claims());
    host.client_address = Some("198.51.100.1:443".into());
    let mut flow = new_flow(config);
    flow.on_request_headers(&mut host);
    flow.on_sidecar_reply(&mut host, ok_reply(&session()));
    assert_eq!(host.calls.len(), 1, "no end-session call");
    assert_eq!(host.sent_status(), Some(401));
    assert_eq!(host.sent_reason(), "session_binding_mismatch");

    // A cookie client keeps its cookie.
    let config = binding_config(serde_json::json!({
        "ip": {"compare": "exact", "policy": "reject"},
        "on_reject": "keep_session"
    }));
    let mut host = cookie_host(&config);
    host.client_address = None;
    let mut flow = new_flow(config);
    flow.on_request_headers(&mut host);
    flow.on_sidecar_reply(&mut host, ok_reply(&session()));
    assert_eq!(host.sent_status(), Some(401));
    assert_eq!(host.sent_header("set-cookie"), None);
}

// ── browser-friendly errors ─────────────────────────────────────────────

fn redirect_config() -> Rc<Config> {
    config_with(|v| v["login_redirect"] = serde_json::json!({"url": "/login?app=web"}))
}

#[test]
fn html_navigation_without_a_session_is_sent_to_the_login_page() {
    let config = redirect_config();
    let mut host = FakeHost::new()
        .with(":path", "/reports/2026?q=a%20b&x=1")
        .with("accept", "text/html,application/xhtml+xml");
    new_flow(config.clone()).on_request_headers(&mut host);
    assert_eq!(host.sent_status(), Some(302));
    assert_eq!(
        host.sent_header("location"),
        Some("/login?app=web&return_to=/reports/2026%3Fq%3Da%2520b%26x%3D1")
    );
    assert_eq!(
        host.outcome(ClientKind::Anonymous, Outcome::Rejected("no_credentials")),
        1
    );

    // A dead cookie is cleared on the way.
    let mut host = FakeHost::new()
        .with("cookie", "__Host-portero=garbage")
        .with("accept", "text/html");
    new_flow(config).on_request_headers(&mut host);
    assert_eq!(host.sent_status(), Some(302));
    assert!(host
        .sent_header("set-cookie")
        .unwrap()
        .contains("Max-Age=0"));
}

#[test]
fn a_route_may_send_browsers_to_a_sign_in_page_of_its_own() {
    let config = config_with(|v| {
        v["login_redirect"] = serde_json::json!({"url": "/login", "return_parameter": "next"});
        v["routes"] = serde_json::json!([
            {"path_prefix": "/staff/", "login_redirect_url": "/.portero/oidc/start"},
        ]);
    });
    let navigate = |path: &str| {
        let mut host = FakeHost::new()
            .with(":path", path)
            .with("sec-fetch-mode", "navigate");
        new_flow(config.clone()).on_request_headers(&mut host);
        (
            host.sent_status(),
            host.sent_header("location").map(str::to_string),
        )
    };
    assert_eq!(
        navigate("/staff/reports"),
        (
            Some(302),
            Some("/.portero/oidc/start?next=/staff/reports".into())
        )
    );
    assert_eq!(
        navigate("/orders"),
        (Some(302), Some("/login?next=/orders".into()))
    );
    // A form POST there gets the signed-out page, linking the route's own.
    let mut host = FakeHost::new()
        .with(":method", "POST")
        .with(":path", "/staff/reports")
        .with("sec-fetch-mode", "navigate");
    new_flow(config.clone()).on_request_headers(&mut host);
    assert_eq!(host.sent_status(), Some(401));
    assert!(sent_page(&host).contains("href=\"/.portero/oidc/start?next=/staff/reports\""));
}

#[test]
fn only_html_gets_of_login_matters_are_redirected() {
    let config = redirect_config();
    let html = "text/html";
    let cases: [(&str, &str, &str, Option<&str>, u32); 6] = [
        ("GET", "/me", "application/json", None, 401),
        ("POST", "/me", html, None, 401),
        ("GET", "/me", html, Some("bearer"), 401),
        ("GET", "/login", html, None, 401),
        ("HEAD", "/me", html, None, 302),
        ("GET", "/me", "*/*", None, 401),
    ];
    for (method, path, accept, bearer, status) in cases {
        let mut host = FakeHost::new()
            .with(":method", method)
            .with(":path", path)
            .with("accept", accept);
        if bearer.is_some() {
            host = host.with("authorization", "Bearer not.a.jwt");
        }
        new_flow(config.clone()).on_request_headers(&mut host);
        assert_eq!(host.sent_status(), Some(status), "{method} {path} {accept}");
    }
    // Store trouble is never a login matter.
    let mut host = cookie_host(&config).with("accept", html);
    let mut flow = new_flow(config);
    flow.on_request_headers(&mut host);
    flow.on_sidecar_reply(&mut host, no_answer());
    assert_eq!(host.sent_status(), Some(503));
}

#[test]
fn a_return_path_to_another_host_is_dropped() {
    let config = redirect_config();
    let mut host = FakeHost::new()
        .with(":path", "//evil.example/x")
        .with("accept", "text/html");
    new_flow(config.clone()).on_request_headers(&mut host);
    assert_eq!(host.sent_status(), Some(302));
    assert_eq!(host.sent_header("location"), Some("/login?app=web"));
    // A path with no single reading is refused before any redirect.
    for path in ["/\\evil.example/x", "/x\u{1}y"] {
        let mut host = FakeHost::new()
            .with(":path", path)
            .with("accept", "application/json");
        new_flow(config.clone()).on_request_headers(&mut host);
        assert_eq!(host.sent_status(), Some(400), "{path:?}");
        assert_eq!(host.sent_reason(), "ambiguous_path");
        assert_eq!(host.sent_header("location"), None, "{path:?}");
    }
}

// ── pages for browsers ──────────────────────────────────────────────────

fn sent_page(host: &FakeHost) -> String {
    let sent = host.sent.as_ref().expect("a local response");
    String::from_utf8(sent.body.clone()).unwrap()
}

fn navigation(host: FakeHost) -> FakeHost {
    host.with("sec-fetch-mode", "navigate")
        .with("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
}

#[test]
fn navigations_get_pages_and_scripts_get_json_with_the_same_status() {
    let config = config_with(|v| {
        v["routes"] =
            serde_json::json!([{"path_prefix": "/admin", "roles": {"any_of": ["auditor"]}}])
    });
    // 403: signed in, without the role.
    let mut host = navigation(cookie_host(&config)).with(":path", "/admin");
    let mut flow = new_flow(config.clone());
    flow.on_request_headers(&mut host);
    flow.on_sidecar_reply(&mut host, ok_reply(&session()));
    assert_eq!(host.sent_status(), Some(403));
    assert_eq!(
        host.sent_header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(host.sent_header("cache-control"), Some("no-store"));
    assert_eq!(host.sent_header("set-cookie"), None, "the session is fine");
    let csp = host.sent_header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    let page = sent_page(&host);
    assert!(page.starts_with("<!doctype html>") && page.contains("<html lang=\"en\">"));
    assert!(
        page.contains("<h1>You don&#39;t have access to this page</h1>"),
        "{page}"
    );
    // Nothing private: no user, no session, no reason detail.
    for private in ["user-1", "ada@example.com", "session-1", "missing_role"] {
        assert!(!page.contains(private), "{private} on the page");
    }

    // The same refusal to a script's fetch: JSON.
    let mut host = cookie_host(&config)
        .with(":path", "/admin")
        .with("sec-fetch-mode", "cors")
        .with("accept", "text/html, */*");
    let mut flow = new_flow(config.clone());
    flow.on_request_headers(&mut host);
    flow.on_sidecar_reply(&mut host, ok_reply(&session()));
    assert_eq!(host.sent_status(), Some(403));
    assert_eq!(host.sent_header("content-type"), Some("application/json"));
    assert_eq!(host.sent_reason(), "missing_role");

    // 503 during a store outage: a page saying try again, Retry-After kept,
    // the cookie kept, and a link back to where the user was.
    let mut host = navigation(cookie_host(&config)).with(":path", "/reports?q=1");
    let mut flow = new_flow(config.clone());
    flow.on_request_headers(&mut host);
    flow.on_sidecar_reply(&mut host, no_answer());
    assert_eq!(host.sent_status(), Some(503));
    assert_eq!(host.sent_header("retry-after"), Some("1"));
    assert_eq!(host.sent_header("set-cookie"), None);
    let page = sent_page(&host);
    assert!(
        page.contains("Try again in a moment") && page.contains("href=\"/reports?q=1\""),
        "{page}"
    );

    // 401 without a login page configured: signed out, a link home, the
    // dead cookie cleared.
    let mut host = navigation(FakeHost::new())
        .with(":path", "/me")
        .with("cookie", "__Host-portero=garbage");
    new_flow(config.clone()).on_request_headers(&mut host);
    assert_eq!(host.sent_status(), Some(401));
    assert!(host
        .sent_header("set-cookie")
        .unwrap()
        .contains("Max-Age=0"));
    assert!(sent_page(&host).contains("<h1>You&#39;re signed out</h1>"));

    // A form POST from another site (a navigation, not a GET): the 403 page.
    let mut host = navigation(cookie_host(&config))
        .with(":method", "POST")
        .with(":path", "/transfer")
        .with("origin", "https://evil.example");
    new_flow(config.clone()).on_request_headers(&mut host);
    assert_eq!(host.sent_status(), Some(403));
    assert!(sent_page(&host).contains("came from another site"));

    // Pages off: JSON for everyone.
    let off = config_with(|v| v["error_pages"] = serde_json::json!({"enabled": false}));
    let mut host = navigation(FakeHost::new()).with(":path", "/me");
    new_flow(off).on_request_headers(&mut host);
    assert_eq!(host.sent_status(), Some(401));
    assert_eq!(host.sent_reason(), "no_credentials");
}

#[test]
fn a_signed_out_page_links_the_sign_in_page_when_a_get_cannot_be_redirected() {
    let config = redirect_config();
    // A GET navigation is redirected as before …
    let mut host = navigation(FakeHost::new()).with(":path", "/me");
    new_flow(config.clone()).on_request_headers(&mut host);
    assert_eq!(host.sent_status(), Some(302));
    // … a form POST that lost its session gets the page with the link.
    let mut host = navigation(FakeHost::new())
        .with(":method", "POST")
        .with(":path", "/notes");
    new_flow(config).on_request_headers(&mut host);
    assert_eq!(host.sent_status(), Some(401));
    let page = sent_page(&host);
    assert!(
        page.contains("<a href=\"/login?app=web&amp;return_to=/notes\">Sign in</a>"),
        "{page}"
    );
}

#[test]
fn an_operators_template_and_stylesheet_brand_the_pages() {
    let config = config_with(|v| {
        v["error_pages"] = serde_json::json!({
            "stylesheet_url": "https://cdn.example/brand.css",
            "template": "<html><link rel=stylesheet href=\"{{stylesheet_url}}\"><h1>ACME: {{ title }}</h1><p role=alert>{{message}}</p><a href=\"{{action_url}}\">{{action_label}}</a> ({{status}})</html>"
        })
    });
    let mut host = navigation(FakeHost::new()).with(":path", "/me");
    new_flow(config).on_request_headers(&mut host);
    assert_eq!(host.sent_status(), Some(401));
    let page = sent_page(&host);
    assert_eq!(
        page,
        "<html><link rel=stylesheet href=\"https://cdn.example/brand.css\"><h1>ACME: Sign in to continue</h1>\
         <p role=alert>You need to be signed in to open this page.</p><a href=\"/\">Go to the home page</a> (401)</html>"
    );
    assert!(host
        .sent_header("content-security-policy")
        .unwrap()
        .contains("style-src 'unsafe-inline' https://cdn.example;"));
}

// ── metrics ─────────────────────────────────────────────────────────────

#[test]
fn look_ups_count_refreshes_reuse_errors_and_latency() {
    let config = config();
    // A rotation.
    let mut host = cookie_host(&config);
    let mut flow = new_flow(config.clone());
    flow.on_request_headers(&mut host);
    host.now += 0;
    let mut reply = LookupResponse {
        session: session(),
        rotated: true,
    };
    reply.session.rotations = 1;
    flow.on_sidecar_reply(
        &mut host,
        SidecarReply {
            status: Some(200),
            body: serde_json::to_vec(&reply).unwrap(),
        },
    );
    assert_eq!(host.counted(Counter::Refresh), 1);
    assert_eq!(host.latencies, vec![700], "reply time minus dispatch time");

    // A replay.
    let mut host = bearer_host(&claims());
    let mut flow = new_flow(config.clone());
    flow.on_request_headers(&mut host);
    flow.on_sidecar_reply(&mut host, not_found(SessionVerdict::TokenReplayed.code()));
    assert_eq!(host.counted(Counter::ReuseDetected), 1);
    assert_eq!(
        host.outcome(ClientKind::Bearer, Outcome::Rejected("token_replayed")),
        1
    );

    // Each kind of sidecar trouble.
    for (reply, error) in [
        (no_answer(), SidecarError::NoAnswer),
        (
            SidecarReply {
                status: Some(500),
                body: vec![],
            },
            SidecarError::ErrorStatus,
        ),
        (
            SidecarReply {
                status: Some(200),
                body: b"{".to_vec(),
            },
            SidecarError::BadReply,
        ),
        (not_found("no_such_verdict"), SidecarError::BadReply),
    ] {
        let mut host = cookie_host(&config);
        let mut flow = new_flow(config.clone());
        flow.on_request_headers(&mut host);
        flow.on_sidecar_reply(&mut host, reply);
        assert_eq!(host.counted(Counter::Sidecar(error)), 1, "{error:?}");
        assert_eq!(host.sent_status(), Some(503));
    }
    let mut host = cookie_host(&config);
    host.dispatch_fails = true;
    new_flow(config.clone()).on_request_headers(&mut host);
    assert_eq!(
        host.counted(Counter::Sidecar(SidecarError::DispatchFailed)),
        1
    );

    // CSRF.
    let mut host = cookie_host(&config).with(":method", "POST");
    new_flow(config).on_request_headers(&mut host);
    assert_eq!(host.counted(Counter::CsrfRejected), 1);
    assert_eq!(
        host.outcome(ClientKind::Cookie, Outcome::Rejected("cross_site_request")),
        1
    );
}

#[test]
fn every_request_is_counted_once() {
    let config = config();
    let mut host = cookie_host(&config);
    let mut flow = new_flow(config);
    flow.on_request_headers(&mut host);
    flow.on_sidecar_reply(&mut host, ok_reply(&session()));
    let requests: Vec<_> = host
        .counters
        .iter()
        .filter(|c| matches!(c, Counter::Request { .. }))
        .collect();
    assert_eq!(
        requests,
        vec![&Counter::Request {
            flow: ClientKind::Cookie,
            outcome: Outcome::Allowed
        }]
    );
}

// ── caches ──────────────────────────────────────────────────────────────

/// A worker cache whose revocation feed has just been read.
fn read_feed_cache(config: &Config) -> Rc<RefCell<EdgeCache>> {
    let mut cache = EdgeCache::new(&config.cache);
    let now_us = NOW * 1_000_000;
    assert!(cache.feed_poll(now_us, 500).is_some());
    let reply = serde_json::json!({"cursor": "1-0", "events": [], "reset": false, "more": false});
    cache.on_feed_reply(Some(200), reply.to_string().as_bytes(), now_us);
    Rc::new(RefCell::new(cache))
}

fn token_hits(host: &FakeHost, hit: bool) -> usize {
    host.counted(Counter::Cache {
        cache: CacheKind::Tokens,
        hit,
    })
}

#[test]
fn a_token_seen_before_is_not_verified_again_but_its_time_is() {
    let config = config();
    let cache = Rc::new(RefCell::new(EdgeCache::new(&config.cache)));
    let c = claims();
    let mut host = bearer_host(&c);
    Flow::new(config.clone(), cache.clone()).on_request_headers(&mut host);
    assert_eq!((token_hits(&host, false), token_hits(&host, true)), (1, 0));
    let mut host = bearer_host(&c);
    Flow::new(config.clone(), cache.clone()).on_request_headers(&mut host);
    assert_eq!((token_hits(&host, false), token_hits(&host, true)), (0, 1));
    assert_eq!(host.lookup(), LookupRequest::by_handle(&c.sid, &c.jti));

    // Cached, then expired past the refresh window: refused all the same.
    let mut host = bearer_host(&c);
    host.now = c.exp + 5 + 3600; // past leeway and refresh window
    Flow::new(config.clone(), cache.clone()).on_request_headers(&mut host);
    assert_eq!(host.sent_status(), Some(401));
    assert_eq!(host.sent_reason(), "token_expired");
    assert!(host.calls.is_empty());

    // A token that fails is never cached.
    let signed = sign(&c);
    let (head, sig) = signed.rsplit_once('.').unwrap();
    let flipped: String = sig
        .chars()
        .enumerate()
        .map(|(i, ch)| {
            if i == 10 {
                if ch == 'A' {
                    'B'
                } else {
                    'A'
                }
            } else {
                ch
            }
        })
        .collect();
    let forged = format!("{head}.{flipped}");
    for _ in 0..2 {
        let mut host = FakeHost::new().with("authorization", &format!("Bearer {forged}"));
        Flow::new(config.clone(), cache.clone()).on_request_headers(&mut host);
        assert_eq!(host.sent_reason(), "token_bad_signature");
        assert_eq!(token_hits(&host, true), 0);
    }
}

#[test]
fn a_session_view_is_served_from_the_cache_until_something_says_otherwise() {
    let config = config();
    let cache = read_feed_cache(&config);
    let mut host = cookie_host(&config);
    let mut flow = Flow::new(config.clone(), cache.clone());
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Wait);
    flow.on_sidecar_reply(&mut host, ok_reply(&session()));

    // Same worker, same cookie: no callout, same identity.
    let mut host = cookie_host(&config);
    let mut flow = Flow::new(config.clone(), cache.clone());
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Forward);
    assert!(host.calls.is_empty());
    assert_eq!(&host.request["x-portero-user-id"], "user-1");
    assert_eq!(
        host.counted(Counter::Cache {
            cache: CacheKind::Sessions,
            hit: true
        }),
        1
    );

    // Logout through this worker evicts at once.
    host.add_response_header("x-portero-end-session", "1");
    flow.on_response_headers(&mut host);
    let mut host = cookie_host(&config);
    assert_eq!(
        Flow::new(config.clone(), cache.clone()).on_request_headers(&mut host),
        Verdict::Wait
    );
    assert_eq!(host.calls.len(), 1, "asked the sidecar again");
}

#[test]
fn cached_views_still_face_binding_roles_and_the_presented_token() {
    let config = config_with(|v| {
        v["binding"] = serde_json::json!({"user_agent": {"compare": "exact", "policy": "reject"}, "on_reject": "keep_session"});
        v["routes"] =
            serde_json::json!([{"path_prefix": "/admin/", "roles": {"any_of": ["root"]}}]);
    });
    let cache = read_feed_cache(&config);
    let c = claims();
    let mut host = bearer_host(&c);
    let mut flow = Flow::new(config.clone(), cache.clone());
    flow.on_request_headers(&mut host);
    flow.on_sidecar_reply(&mut host, ok_reply(&session()));
    assert_eq!(host.sent, None);

    let mut host = bearer_host(&c).with("user-agent", "someone-else");
    Flow::new(config.clone(), cache.clone()).on_request_headers(&mut host);
    assert_eq!(host.sent_reason(), "session_binding_mismatch");
    assert!(host.calls.is_empty(), "decided on the cached view");

    let mut host = bearer_host(&c).with(":path", "/admin/x");
    Flow::new(config.clone(), cache.clone()).on_request_headers(&mut host);
    assert_eq!(host.sent_reason(), "missing_role");

    // Another token of the same session (rotated, or replayed) goes to the sidecar.
    let mut other = claims();
    other.jti = "jti-2".into();
    let mut host = bearer_host(&other);
    assert_eq!(
        Flow::new(config.clone(), cache.clone()).on_request_headers(&mut host),
        Verdict::Wait
    );
    assert_eq!(host.calls.len(), 1);
}

#[test]
fn a_refused_session_is_evicted_and_a_stale_feed_serves_nothing() {
    let config = config();
    let cache = read_feed_cache(&config);
    let mut host = cookie_host(&config);
    let mut flow = Flow::new(config.clone(), cache.clone());
    flow.on_request_headers(&mut host);
    flow.on_sidecar_reply(&mut host, ok_reply(&session()));

    // The feed has not been read for 4 s (bound 3 s): the sidecar answers.
    let mut host = cookie_host(&config);
    host.now += 4;
    let mut flow = Flow::new(config.clone(), cache.clone());
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Wait);
    flow.on_sidecar_reply(&mut host, not_found(SessionVerdict::SessionRevoked.code()));
    assert_eq!(host.sent_reason(), "session_revoked");

    // Fresh feed again: the refused session was evicted, not served.
    let mut fresh = cache.borrow_mut();
    let later = (NOW + 4) * 1_000_000;
    fresh.feed_poll(later, 500);
    let reply = serde_json::json!({"cursor": "2-0", "events": [], "reset": false, "more": false});
    fresh.on_feed_reply(Some(200), reply.to_string().as_bytes(), later);
    drop(fresh);
    let mut host = cookie_host(&config);
    host.now += 4;
    assert_eq!(
        Flow::new(config, cache).on_request_headers(&mut host),
        Verdict::Wait
    );
}

#[test]
fn non_utf8_bytes_in_headers_never_panic_and_credentials_fail_closed() {
    // A junk byte in an unrelated header: the session is served and the
    // junk left alone.
    let mut host = cookie_host(&config());
    host.request.push("x-junk", vec![0xff, 0xfe]);
    let mut flow = new_flow(config());
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Wait);
    assert_eq!(
        flow.on_sidecar_reply(&mut host, ok_reply(&session())),
        Verdict::Forward
    );
    assert_eq!(host.request_header_lines("x-junk"), vec![&[0xff, 0xfe][..]]);
    // A non-UTF-8 Authorization: a 401 bearer refusal, no call made.
    let mut host = FakeHost::new();
    host.request.push("authorization", b"Bearer \xff".to_vec());
    let mut flow = new_flow(config());
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Responded);
    assert_eq!(host.sent_status(), Some(401));
    assert_eq!(host.sent_reason(), "token_malformed");
    assert!(host.calls.is_empty());
    // A session cookie that is not text: 401 cookie_invalid.
    let mut host = FakeHost::new();
    host.request
        .push("cookie", b"__Host-portero=ab\xffcd".to_vec());
    let mut flow = new_flow(config());
    flow.on_request_headers(&mut host);
    assert_eq!(host.sent_status(), Some(401));
    assert_eq!(host.sent_reason(), "cookie_invalid");
}

/// A property test of the whole flow over arbitrary header bytes: any
/// values (all 256 byte values) under the headers the flow reads, repeated
/// lines, credential-looking prefixes, then any sidecar reply and hostile
/// response headers. Thousands of cases from a fixed seed, natively.
#[cfg(not(target_arch = "wasm32"))]
mod header_bytes_property {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config as Cases, RngSeed};

    const NAMES: [&str; 9] = [
        "cookie",
        "authorization",
        ":path",
        ":method",
        "origin",
        "user-agent",
        "accept",
        "sec-fetch-site",
        "x-other",
    ];

    fn header_line() -> impl Strategy<Value = (String, Vec<u8>)> {
        (
            0..NAMES.len(),
            prop_oneof![
                Just(&b""[..]),
                Just(&b"__Host-portero="[..]),
                Just(&b"Bearer "[..])
            ],
            proptest::collection::vec(any::<u8>(), 0..48),
        )
            .prop_map(|(name, prefix, rest)| {
                let mut value = prefix.to_vec();
                value.extend(rest);
                (NAMES[name].to_string(), value)
            })
    }

    fn sidecar_reply() -> impl Strategy<Value = SidecarReply> {
        (
            prop_oneof![
                Just(None),
                Just(Some(200)),
                Just(Some(404)),
                Just(Some(503))
            ],
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(status, body)| SidecarReply { status, body })
    }

    proptest! {
        #![proptest_config(Cases {
            cases: 4000,
            rng_seed: RngSeed::Fixed(9),
            failure_persistence: None,
            ..Cases::default()
        })]
        #[test]
        fn any_header_bytes_are_answered_without_a_panic(
            lines in proptest::collection::vec(header_line(), 0..6),
            reply in sidecar_reply(),
            start_session in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let config = config();
            let mut host = FakeHost::new();
            host.request.extend(lines);
            let mut flow = new_flow(config);
            let verdict = flow.on_request_headers(&mut host);
            if verdict == Verdict::Wait && host.sent.is_none() {
                flow.on_sidecar_reply(&mut host, reply);
            }
            if let Some(sent) = &host.sent {
                prop_assert!(matches!(sent.status, 302 | 400 | 401 | 403 | 503), "status {}", sent.status);
            }
            host.response.push("x-portero-start-session", start_session);
            flow.on_response_headers(&mut host);
        }
    }
}

/// A JWKS holding the public half of `pem`, as the sidecar publishes it.
fn jwks_of(pem: &str, kid: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(pem)
        .or_else(|_| {
            use rsa::pkcs8::DecodePrivateKey;
            rsa::RsaPrivateKey::from_pkcs8_pem(pem)
        })
        .unwrap();
    serde_json::json!({"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be())}]})
    .to_string()
}

#[test]
fn a_token_of_a_fetched_key_verifies_and_an_unpublished_one_does_not() {
    use portero_testkit::tokens::{sign_with, OTHER_PRIVATE_PEM};
    let config = config();
    let token = sign_with(OTHER_PRIVATE_PEM, "next-key", &claims());
    let bearer = format!("Bearer {token}");
    // Not pinned, not fetched: refused before any look-up.
    let cache = Rc::new(RefCell::new(EdgeCache::new(&config.cache)));
    let mut host = FakeHost::new().with("authorization", &bearer);
    let mut flow = Flow::new(config.clone(), cache.clone());
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Responded);
    assert_eq!(host.sent_reason(), "token_unknown_kid");
    // The sidecar publishes it: the next request verifies and is looked up.
    let keys = portero_core::jwks::read_jwks_reply(
        Some(200),
        jwks_of(OTHER_PRIVATE_PEM, "next-key").as_bytes(),
    )
    .unwrap();
    assert!(cache.borrow_mut().set_fetched_keys(keys));
    let mut host = FakeHost::new().with("authorization", &bearer);
    let mut flow = Flow::new(config.clone(), cache.clone());
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Wait);
    assert_eq!(host.calls.len(), 1);
    // A fetched key cannot stand in for a pinned one: the pinned key of the
    // same kid wins, so a token signed by another key under "test-key" fails.
    let forged = sign_with(OTHER_PRIVATE_PEM, "test-key", &claims());
    let keys = portero_core::jwks::read_jwks_reply(
        Some(200),
        jwks_of(OTHER_PRIVATE_PEM, "test-key").as_bytes(),
    )
    .unwrap();
    cache.borrow_mut().set_fetched_keys(keys);
    let mut host = FakeHost::new().with("authorization", &format!("Bearer {forged}"));
    let mut flow = Flow::new(config, cache);
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Responded);
    assert_eq!(host.sent_reason(), "token_bad_signature");
}

// ── identity headers in every spelling ──────────────────────────────────

/// Every spelling an app could read as an identity header: case, `_` for
/// `-`, a mix, and duplicates.
fn forged_spellings(host: &mut FakeHost) {
    for name in [
        "x-portero-user-id",
        "x_portero_user_id",
        "X_PORTERO_USER_ID",
        "x_portero-user-id",
        "X-Portero-Roles",
        "x_portero_roles",
        "x-portero-email",
        "x_portero_session",
        "x_portero_client_ip",
        "x_portero_binding_mismatch",
    ] {
        host.request.push(name, "forged-by-attacker");
        host.request.push(name, "forged-again");
    }
}

fn assert_no_forged_identity(host: &FakeHost, config: &Config) {
    for (name, value) in &host.request.0 {
        if config
            .identity_headers
            .all()
            .iter()
            .any(|id| is_spelling_of(name.as_bytes(), id))
        {
            assert!(
                !value.starts_with(b"forged"),
                "{name}: {} reached the upstream",
                String::from_utf8_lossy(value)
            );
        }
    }
}

#[test]
fn identity_headers_are_stripped_in_every_spelling_on_every_policy() {
    let config = config_with(|v| {
        v["routes"] = serde_json::json!([
            {"path_prefix": "/feed/", "policy": "optional"},
            {"path_prefix": "/public/", "policy": "off"}
        ])
    });
    // off and optional (anonymous): nothing of the client's survives.
    for path in ["/public/x", "/feed/x"] {
        let mut host = FakeHost::new().with(":path", path);
        forged_spellings(&mut host);
        let mut flow = new_flow(config.clone());
        assert_eq!(flow.on_request_headers(&mut host), Verdict::Forward);
        assert_no_forged_identity(&host, &config);
    }
    // required, signed in: only the filter's own values.
    let mut host = cookie_host(&config).with(":path", "/me");
    forged_spellings(&mut host);
    let mut flow = new_flow(config.clone());
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Wait);
    flow.on_sidecar_reply(&mut host, ok_reply(&session()));
    assert_no_forged_identity(&host, &config);
    assert_eq!(
        host.request.lines("x-portero-user-id"),
        vec![&b"user-1"[..]]
    );
}

#[test]
fn only_case_and_underscore_fold_into_an_identity_header() {
    assert!(is_spelling_of(b"X_Portero-USER_id", "x-portero-user-id"));
    assert!(!is_spelling_of(b"x-portero-user-idx", "x-portero-user-id"));
    assert!(!is_spelling_of(b"x-portero-user.id", "x-portero-user-id"));
    // `-` never stands for `_`: the canonical names have none.
    assert!(!is_spelling_of(b"x-portero-user-id", "x_portero_user_id"));
}

// ── login CSRF: no session is started by another site ───────────────────

/// A login POST through an `off` route, as `headers` describe it, answered
/// by an upstream that starts a session: the Set-Cookie, and the status.
fn login_through_off_route(
    config: &Rc<Config>,
    headers: &[(&str, &str)],
) -> (Option<String>, Option<String>) {
    session_start_through(config, "POST", "/auth/login", headers)
}

/// A `method` request to `path`, as `headers` describe it, answered by an
/// upstream that starts a session: the Set-Cookie, and the status.
fn session_start_through(
    config: &Rc<Config>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (Option<String>, Option<String>) {
    let mut host = FakeHost::new()
        .with(":method", method)
        .with(":path", path)
        .with(":scheme", "https")
        .with(":authority", "app.example");
    for (name, value) in headers {
        host.request.insert(name, value);
    }
    let mut flow = new_flow(config.clone());
    assert_eq!(flow.on_request_headers(&mut host), Verdict::Forward);
    host.add_response_header(":status", "303");
    host.add_response_header("location", "/account");
    host.add_response_header("x-portero-start-session", SID);
    flow.on_response_headers(&mut host);
    assert_eq!(host.response_header("x-portero-start-session"), None);
    (
        host.response_header("set-cookie"),
        host.response_header(":status"),
    )
}

#[test]
fn a_cross_site_request_never_starts_a_session_whatever_the_routes_policy() {
    let config = config_with(|v| {
        v["routes"] = serde_json::json!([{"path_prefix": "/auth/login", "policy": "off"}]);
        v["csrf"] = serde_json::json!({"allowed_origins": ["https://login.example"]});
    });
    for cross_site in [
        &[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ][..],
        &[("origin", "https://evil.example")],
        &[("origin", "null")],
        &[("sec-fetch-site", "cross-site")],
        &[
            ("sec-fetch-site", "same-site"),
            ("origin", "https://sub.app.example"),
        ],
        &[("origin", "http://app.example")],
    ] {
        let (cookie, status) = login_through_off_route(&config, cross_site);
        assert_eq!(cookie, None, "{cross_site:?}");
        assert_eq!(status.as_deref(), Some("403"), "{cross_site:?}");
    }
    for same_origin in [
        &[
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://app.example"),
        ][..],
        &[("origin", "https://app.example")],
        &[
            ("sec-fetch-site", "same-site"),
            ("origin", "https://login.example"),
        ],
        // Neither header: not a browser's cross-site request (curl, an app).
        &[],
    ] {
        let (cookie, status) = login_through_off_route(&config, same_origin);
        assert!(cookie.is_some(), "{same_origin:?}");
        assert_eq!(status.as_deref(), Some("303"), "{same_origin:?}");
    }
}

#[test]
fn only_a_sign_in_callback_starts_a_session_from_the_providers_cross_site_redirect() {
    let config = config_with(|v| {
        v["routes"] = serde_json::json!([
            {"path_prefix": "/.portero/oidc/", "policy": "off", "sign_in_callback": true},
            {"path_prefix": "/auth/", "policy": "off"},
        ]);
    });
    let from_the_provider = [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "navigate"),
    ];
    let callback = "/.portero/oidc/callback?code=c&state=s";
    let (cookie, status) = session_start_through(&config, "GET", callback, &from_the_provider);
    assert!(cookie.is_some_and(|c| c.starts_with("__Host-portero=")));
    assert_eq!(status.as_deref(), Some("303"));
    // A cross-site POST there (a hostile form) still starts nothing.
    let hostile_post = [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ];
    let (cookie, status) = session_start_through(&config, "POST", callback, &hostile_post);
    assert_eq!((cookie, status.as_deref()), (None, Some("403")));
    // Nor does the same redirect to an `off` route that is no callback.
    let (cookie, status) =
        session_start_through(&config, "GET", "/auth/callback", &from_the_provider);
    assert_eq!((cookie, status.as_deref()), (None, Some("403")));
}

#[test]
fn a_warm_request_runs_no_cryptography_and_new_bytes_do() {
    let config = config();
    let cache = read_feed_cache(&config);
    let c = claims();
    // Cold: the cookie is opened and the token verified, once each.
    let mut cookie = cookie_host(&config);
    let mut flow = Flow::new(config.clone(), cache.clone());
    assert_eq!(flow.on_request_headers(&mut cookie), Verdict::Wait);
    flow.on_sidecar_reply(&mut cookie, ok_reply(&session()));
    assert_eq!(cookie.crypto.cookie_opens.get(), 1);
    let mut bearer = bearer_host(&c);
    let mut flow = Flow::new(config.clone(), cache.clone());
    flow.on_request_headers(&mut bearer);
    flow.on_sidecar_reply(&mut bearer, ok_reply(&session()));
    assert_eq!(bearer.crypto.rs256_verifications.get(), 1);

    // Warm: the same bytes again, answered with no cryptography at all.
    for mut host in [cookie_host(&config), bearer_host(&c)] {
        let mut flow = Flow::new(config.clone(), cache.clone());
        assert_eq!(flow.on_request_headers(&mut host), Verdict::Forward);
        assert_eq!(host.crypto.operations(), 0);
        assert!(host.calls.is_empty());
        assert_eq!(&host.request["x-portero-user-id"], "user-1");
    }

    // The same session under other bytes is no hit: a cookie sealed anew
    // is opened, and a tampered one is opened and refused.
    let other = config.cookie.seal(SID).unwrap();
    let mut host = FakeHost::new().with("cookie", &format!("__Host-portero={other}"));
    Flow::new(config.clone(), cache.clone()).on_request_headers(&mut host);
    assert_eq!(host.crypto.cookie_opens.get(), 1);
    let mut tampered = other.into_bytes();
    if let Some(last) = tampered.last_mut() {
        *last = if *last == b'A' { b'B' } else { b'A' };
    }
    let tampered = String::from_utf8(tampered).unwrap();
    let mut host = FakeHost::new().with("cookie", &format!("__Host-portero={tampered}"));
    Flow::new(config.clone(), cache.clone()).on_request_headers(&mut host);
    assert_eq!(host.crypto.cookie_opens.get(), 1);
    assert_eq!(host.sent_reason(), "cookie_invalid");
}

#[test]
fn hostile_paths_and_header_bytes_never_reach_a_page_as_markup() {
    let config = redirect_config();
    let hostile = [
        "/r?q=\"><script>alert(1)</script>",
        "/r?q='onmouseover='alert(1)",
        "/r?next=javascript:alert(1)&x=<img src=x>",
    ];
    let mut pages_checked = 0;
    for path in hostile {
        // A 503 links back to the path; a POST's 401 links the sign-in page
        // with the path as its return parameter.
        let mut host = navigation(cookie_host(&config)).with(":path", path);
        let mut flow = new_flow(config.clone());
        flow.on_request_headers(&mut host);
        flow.on_sidecar_reply(&mut host, no_answer());
        let mut post = navigation(FakeHost::new())
            .with(":method", "POST")
            .with(":path", path);
        new_flow(config.clone()).on_request_headers(&mut post);
        for (host, status) in [(&host, 503), (&post, 401)] {
            if host.sent_status() == Some(400) {
                continue; // no single reading: refused before any page
            }
            assert_eq!(host.sent_status(), Some(status), "{path}");
            let page = sent_page(host);
            for markup in ["<script", "<img", "'onmouseover", "\"><"] {
                assert!(
                    !page.contains(markup),
                    "{path}: {markup} on the page:\n{page}"
                );
            }
            pages_checked += 1;
        }
    }
    assert_eq!(
        pages_checked,
        2 * hostile.len(),
        "every hostile path reached a page"
    );
    // Bytes that are not UTF-8 where the flow reads whether this is a
    // navigation: no panic, a refusal either way.
    let mut host = FakeHost::new().with(":path", "/me");
    host.request.push("sec-fetch-mode", vec![0xff, 0xfe, b'n']);
    host.request.push("accept", vec![b't', 0x80, b'/', b'h']);
    new_flow(config).on_request_headers(&mut host);
    assert_eq!(host.sent_status(), Some(401));
}
