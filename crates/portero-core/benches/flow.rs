//! The warm paths' own cost, without Envoy: one request's flow against an
//! in-memory host, cookie and bearer, served from the caches.
//!
//! `cargo bench -p portero-core --bench flow --target wasm32-wasip1` runs it under Node's V8;
//! without `--target`, natively. Prints microseconds per request and per step.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "timing.rs"]
mod timing;
use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;
use timing::time;

use portero_core::cache::EdgeCache;
use portero_core::config::Config;
use portero_core::flow::{Flow, SidecarReply, Verdict};
use portero_testkit::tokens::{Minter, TEST_JWKS};
use portero_testkit::{FakeHost, NOW};
use portero_wire::{AccessClaims, LookupResponse, SessionView};

/// Counts heap allocations (and records their sizes while `RECORD` is on),
/// so the warm paths' allocations can be counted, not guessed.
struct Counting;
static ALLOCATIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static RECORD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static SIZES: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if RECORD.swap(false, std::sync::atomic::Ordering::Relaxed) {
            if let Ok(mut sizes) = SIZES.try_lock() {
                sizes.push(layout.size());
            }
            RECORD.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        std::alloc::System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        std::alloc::System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::alloc::System.realloc(ptr, layout, size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations (and reallocations) made by `f`, and their sizes.
fn allocations(f: impl FnOnce()) -> (usize, Vec<usize>) {
    if let Ok(mut sizes) = SIZES.lock() {
        sizes.clear();
    }
    let before = ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed);
    RECORD.store(true, std::sync::atomic::Ordering::Relaxed);
    f();
    RECORD.store(false, std::sync::atomic::Ordering::Relaxed);
    let count = ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed) - before;
    (count, SIZES.lock().map(|s| s.clone()).unwrap_or_default())
}

fn main() {
    let sid = format!("{}{}", "t".repeat(22), "r".repeat(43));
    let handle = format!("{}{}", "t".repeat(22), "h".repeat(43));
    let config = serde_json::json!({
        "cookie": {"keys": [{"id": 1, "secret": "0123456789abcdef0123456789abcdef"}]},
        "jwt": {"issuer": "https://portero.local", "audiences": ["portero-apps"],
                "jwks": serde_json::from_str::<serde_json::Value>(TEST_JWKS).unwrap()},
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
    let token = Minter::test_key().sign(&claims);
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
    let base = |extra: (&str, String)| {
        let mut host = FakeHost {
            now: NOW,
            client_address: Some("127.0.0.1:4000".into()),
            ..FakeHost::default()
        };
        for (name, value) in [
            (":method", "GET"),
            (":path", "/"),
            (":authority", "bench"),
            ("user-agent", "bench"),
            ("accept", "*/*"),
            (extra.0, &extra.1),
        ] {
            host.request.insert(name, value);
        }
        host
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
        assert!(host.calls.is_empty() && host.sent.is_none());
        black_box(&host.request);
    });
    let bearer = format!("Bearer {token}");
    time("bearer request, warm (whole flow)", rounds, || {
        let mut host = base(("authorization", bearer.clone()));
        let mut flow = Flow::new(config.clone(), cache.clone());
        assert_eq!(flow.on_request_headers(&mut host), Verdict::Forward);
        assert!(host.sent.is_none());
        black_box(&host.request);
    });
    for (name, extra) in [
        ("cookie", ("cookie", cookie.clone())),
        ("bearer", ("authorization", bearer.clone())),
    ] {
        let mut host = base(extra);
        let (count, sizes) = allocations(|| {
            let mut flow = Flow::new(config.clone(), cache.clone());
            black_box(flow.on_request_headers(&mut host));
            flow.on_response_headers(&mut host);
        });
        println!(
            "{:<48} {count:>9} (sizes {sizes:?})",
            format!("{name} request, warm: heap allocations")
        );
    }
    let value = cookie.split_once('=').unwrap().1.to_string();
    time("  cookie open (AES-256-GCM)", rounds, || {
        black_box(config.cookie.open(black_box(&value)).unwrap());
    });
    time("  session cache key of the sealed cookie", rounds, || {
        black_box(portero_core::cache::SessionKey::of_sealed_cookie(
            black_box(&value),
        ));
    });
    let lines: Vec<&[u8]> = vec![cookie.as_bytes()];
    time("  find and strip the session cookie", rounds, || {
        let lines = black_box(&lines);
        black_box(portero_core::cookie::find_cookie(lines, "__Host-portero"));
        black_box(portero_core::cookie::without_cookie(
            lines,
            "__Host-portero",
        ));
    });
    time(
        "  session hash for log lines (SHA-256, hex)",
        rounds,
        || {
            black_box(portero_core::reject::session_hash(black_box(&handle)));
        },
    );
    time("  host with 6 headers (the harness itself)", rounds, || {
        black_box(base(("cookie", cookie.clone())));
    });
}
