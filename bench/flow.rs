//! The warm paths' own cost, without Envoy: one request's flow against an
//! in-memory host, cookie and bearer, served from the caches.
//!
//! `cargo bench --bench flow --target wasm32-wasip1` runs it under Node's V8;
//! without `--target`, natively. Prints microseconds per request and per step.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "timing.rs"]
mod timing;
use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;
use timing::time;

use portero::cache::EdgeCache;
use portero::config::Config;
use portero::flow::{DispatchError, Flow, Host, LocalResponse, SidecarCall, SidecarReply, Verdict};
use portero::metrics::Counter;
use portero_wire::{AccessClaims, LookupResponse, SessionView};

const PEM: &str = include_str!("../tests/fixtures/test-rsa.pem");
const JWKS: &str = include_str!("../tests/fixtures/test-jwks.json");
const NOW: u64 = 1_800_000_000;

struct MiniHost {
    request: Vec<(String, String)>,
    calls: usize,
}

impl Host for MiniHost {
    fn now(&self) -> u64 {
        NOW
    }
    fn now_micros(&self) -> u64 {
        NOW * 1_000_000
    }
    fn route_name(&self) -> Option<String> {
        None
    }
    fn client_address(&mut self) -> Option<String> {
        Some("127.0.0.1:4000".into())
    }
    fn request_header_lines(&self, name: &str) -> Vec<&[u8]> {
        self.request
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_bytes())
            .collect()
    }
    fn set_request_header(&mut self, name: &str, value: &[u8]) {
        self.request.retain(|(k, _)| k != name);
        self.request
            .push((name.into(), String::from_utf8_lossy(value).into_owned()));
    }
    fn remove_request_header(&mut self, name: &str) {
        self.request.retain(|(k, _)| k != name);
    }
    fn response_header_lines(&self, _name: &str) -> Vec<&[u8]> {
        Vec::new()
    }
    fn add_response_header(&mut self, _name: &str, _value: &str) {}
    fn remove_response_header(&mut self, _name: &str) {}
    fn dispatch_sidecar_call(&mut self, _call: SidecarCall) -> Result<(), DispatchError> {
        self.calls += 1;
        Ok(())
    }
    fn send_local_response(&mut self, response: LocalResponse) {
        panic!("refused: {}", String::from_utf8_lossy(&response.body));
    }
    fn increment(&mut self, _counter: Counter) {}
    fn record_sidecar_latency_us(&mut self, _micros: u64) {}
}

fn main() {
    let sid = format!("{}{}", "t".repeat(22), "r".repeat(43));
    let handle = format!("{}{}", "t".repeat(22), "h".repeat(43));
    let config = serde_json::json!({
        "cookie": {"keys": [{"id": 1, "secret": "0123456789abcdef0123456789abcdef"}]},
        "jwt": {"issuer": "https://portero.local", "audiences": ["portero-apps"],
                "jwks": serde_json::from_str::<serde_json::Value>(JWKS).unwrap()},
        "sidecar": {"cluster": "redis_sidecar", "token": "filter-token-0123456789"}
    });
    let config = Rc::new(Config::from_json(config.to_string().as_bytes()).unwrap());
    let claims = AccessClaims {
        iss: "https://portero.local".into(),
        aud: "portero-apps".into(),
        sub: "user-1".into(),
        sid: handle.clone(),
        jti: "jti-0123456789abcdef0123".into(),
        iat: NOW - 10,
        nbf: NOW - 10,
        exp: NOW + 300,
        ver: 0,
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-key".into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(PEM.as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let view = SessionView {
        handle: handle.clone(),
        user_id: "user-1".into(),
        email: "user@example.com".into(),
        roles: vec!["dev".into()],
        permissions: vec![],
        created_at: NOW - 10,
        last_seen_at: NOW,
        expires_at: NOW + 3600,
        idle_expires_at: NOW + 1800,
        client_ip: "127.0.0.1".into(),
        user_agent: "bench".into(),
        access_token: token.clone(),
        access_jti: claims.jti.clone(),
        access_expires_at: NOW + 300,
        rotations: 0,
        access_token_presented: true,
    };
    let reply = SidecarReply {
        status: Some(200),
        body: serde_json::to_vec(&LookupResponse {
            session: view,
            rotated: false,
        })
        .unwrap(),
    };
    let cache = Rc::new(RefCell::new(EdgeCache::new(&config.cache)));
    {
        let mut c = cache.borrow_mut();
        c.feed_poll(NOW * 1_000_000, 500);
        let feed =
            serde_json::json!({"cursor": "1-0", "events": [], "reset": false, "more": false});
        c.on_feed_reply(Some(200), feed.to_string().as_bytes(), NOW * 1_000_000);
    }
    let cookie = format!("__Host-portero={}", config.cookie.seal(&sid).unwrap());
    let base = |extra: (&str, String)| MiniHost {
        request: vec![
            (":method".into(), "GET".into()),
            (":path".into(), "/".into()),
            (":authority".into(), "bench".into()),
            ("user-agent".into(), "bench".into()),
            ("accept".into(), "*/*".into()),
            (extra.0.into(), extra.1),
        ],
        calls: 0,
    };
    // Warm both caches.
    for extra in [
        ("cookie", cookie.clone()),
        ("authorization", format!("Bearer {token}")),
    ] {
        let mut host = base(extra);
        let mut flow = Flow::new(config.clone(), cache.clone());
        if flow.on_request_headers(&mut host) == Verdict::Wait {
            flow.on_sidecar_reply(&mut host, reply.clone());
        }
    }
    let rounds = 20_000;
    time("cookie request, warm (whole flow)", rounds, || {
        let mut host = base(("cookie", cookie.clone()));
        let mut flow = Flow::new(config.clone(), cache.clone());
        assert_eq!(flow.on_request_headers(&mut host), Verdict::Forward);
        assert_eq!(host.calls, 0);
        black_box(&host.request);
    });
    let bearer = format!("Bearer {token}");
    time("bearer request, warm (whole flow)", rounds, || {
        let mut host = base(("authorization", bearer.clone()));
        let mut flow = Flow::new(config.clone(), cache.clone());
        assert_eq!(flow.on_request_headers(&mut host), Verdict::Forward);
        black_box(&host.request);
    });
    let value = cookie.split_once('=').unwrap().1.to_string();
    time("  cookie open (AES-256-GCM)", rounds, || {
        black_box(config.cookie.open(black_box(&value)).unwrap());
    });
    time("  sha256 cache key of the token", rounds, || {
        black_box(portero::cache::token_key(black_box(&token)));
    });
    let lines: Vec<&[u8]> = vec![cookie.as_bytes()];
    time("  find and strip the session cookie", rounds, || {
        let lines = black_box(&lines);
        black_box(portero::cookie::find_cookie(lines, "__Host-portero"));
        black_box(portero::cookie::without_cookie(lines, "__Host-portero"));
    });
    time(
        "  session hash for log lines (SHA-256, hex)",
        rounds,
        || {
            black_box(portero::reject::session_hash(black_box(&handle)));
        },
    );
    time("  host with 6 headers (the harness itself)", rounds, || {
        black_box(base(("cookie", cookie.clone())));
    });
}
