//! Hostile bytes through real Envoy: raw sockets, h2c, a bounded fuzzer
//! with a fixed seed, and an upstream that answers with hostile headers.
//! The filter must never fall over (no panic, no `[critical]` line), never
//! let a mutated credential through, never answer an undocumented 5xx, and
//! still serve a valid session at the end.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;
use std::time::Duration;

use portero_integration::{
    raw_exchange, raw_status, Rng, Stack, StackOptions, COOKIE_NAME, COOKIE_SECRET,
};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A request line and headers, as raw bytes, on a connection that closes.
fn raw_request(path: &[u8], headers: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: portero.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn status_of(stack: &Stack, request: &[u8]) -> u16 {
    let response = raw_exchange(stack.options.listen_port, request, TIMEOUT)
        .expect("Envoy accepts connections");
    raw_status(&response).unwrap_or_else(|| {
        panic!(
            "no HTTP status in {:?}",
            String::from_utf8_lossy(&response[..response.len().min(200)])
        )
    })
}

fn envoy_log(stack: &Stack) -> String {
    let log = &stack.envoy.as_ref().expect("envoy").log;
    std::fs::read_to_string(log).unwrap_or_default()
}

/// The filter never panicked and never logged at `critical` (a panic is
/// logged there, and kills the VM for the worker).
fn assert_filter_alive(stack: &Stack) {
    let log = envoy_log(stack);
    for bad in ["[critical]", "panicked", "Function: proxy_on", "wasm trap"] {
        assert!(
            !log.contains(bad),
            "Envoy log shows {bad:?}:\n{}",
            stack.envoy.as_ref().unwrap().log_tail(30)
        );
    }
}

fn cookie_header(value: &str) -> String {
    format!("{COOKIE_NAME}={value}")
}

#[test]
fn a_non_utf8_header_byte_is_harmless_on_http1_and_h2c() {
    let stack = Stack::start();
    let cookie = stack.login_web("ada", "lovelace");
    let session = cookie_header(&cookie);
    // Anonymous, on a required route: a 401, and the worker lives on.
    let junk = raw_request(b"/me", &[(b"x-junk", b"\xff\xfe")]);
    assert_eq!(status_of(&stack, &junk), 401);
    // A valid session with junk elsewhere: served.
    let with_session = raw_request(
        b"/me",
        &[(b"cookie", session.as_bytes()), (b"x-junk", b"caf\xe9")],
    );
    assert_eq!(status_of(&stack, &with_session), 200);
    // The session cookie itself carrying a non-UTF-8 byte: a 401, and the
    // cookie never reaches the log (the old panic message printed it).
    let mut bad_cookie = session.clone().into_bytes();
    bad_cookie.extend_from_slice(b"\xff");
    let bad = raw_request(b"/me", &[(b"cookie", &bad_cookie)]);
    assert_eq!(status_of(&stack, &bad), 401);
    // The same over h2c (prior knowledge), through curl's nghttp2, with the
    // junk also in another cookie beside ours: the upstream must get that
    // cookie (so the bytes crossed the filter's cookie rewrite), not ours.
    let mut h2_cookie = b"cookie: x=\xff\xfe; ".to_vec();
    h2_cookie.extend_from_slice(session.as_bytes());
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code} %{http_version}"])
        .arg("--http2-prior-knowledge")
        .arg("-H")
        .arg(std::ffi::OsStr::from_bytes(b"x-junk: \xff\xfe"))
        .arg("-H")
        .arg(std::ffi::OsStr::from_bytes(&h2_cookie))
        .arg(stack.url("/me"))
        .output()
        .expect("curl (make setup installs it)");
    let out = String::from_utf8_lossy(&out.stdout);
    let (body, status) = out.rsplit_once('\n').expect("body and status");
    assert_eq!(status, "200 2", "{body}");
    let body: serde_json::Value = serde_json::from_str(body).expect("JSON from /me");
    assert_eq!(body["user_id"], "user-ada");
    let upstream_cookie = body["cookie"].as_str().expect("a cookie reached upstream");
    assert!(upstream_cookie.starts_with("x="), "{upstream_cookie:?}");
    assert!(
        !upstream_cookie.contains(COOKIE_NAME),
        "{upstream_cookie:?}"
    );
    // The worker still serves.
    for _ in 0..5 {
        assert_eq!(stack.me_with_cookie(&cookie).status, 200);
    }
    assert_filter_alive(&stack);
    assert!(
        !envoy_log(&stack).contains(&cookie),
        "the session cookie reached Envoy's log"
    );
}

#[test]
fn bearer_requests_never_forward_the_session_cookie_and_cookie_lines_are_merged() {
    let stack = Stack::start();
    let cookie = stack.login_web("ada", "lovelace");
    let token = stack.login_app("ada", "lovelace");
    let auth = format!("Bearer {token}");
    let mixed = format!("a=1; {COOKIE_NAME}={cookie}; b=2");
    let reply = stack.get("/me", &[("authorization", &auth), ("cookie", &mixed)]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["cookie"], "a=1; b=2");
    // Several Cookie lines (HTTP/1.1), ours in the second: found, and only
    // the others go upstream, in one header.
    let session = cookie_header(&cookie);
    let request = raw_request(
        b"/me",
        &[
            (b"cookie", b"theme=dark"),
            (b"cookie", session.as_bytes()),
            (b"cookie", b"z=9"),
        ],
    );
    let response = raw_exchange(stack.options.listen_port, &request, TIMEOUT).unwrap();
    assert_eq!(raw_status(&response), Some(200));
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.contains(r#""user_id":"user-ada""#),
        "session found in the second Cookie line: {text}"
    );
    assert!(
        text.contains(r#""cookie":"theme=dark; z=9""#),
        "upstream cookie header: {text}"
    );
    assert_filter_alive(&stack);
}

#[test]
fn a_sealed_cookie_with_a_wrong_length_id_is_a_401_not_a_503() {
    let stack = Stack::start();
    let codec =
        portero_core::cookie::CookieCodec::new(COOKIE_NAME, &[(1, COOKIE_SECRET.as_bytes())])
            .expect("codec");
    for len in [22, 30, 64, 66, 128] {
        let id = "A".repeat(len);
        let sealed = codec
            .seal(&id)
            .expect("a well-formed id of an allowed length");
        let reply = stack.me_with_cookie(&sealed);
        assert_eq!(reply.status, 401, "id of {len}: {}", reply.body);
        assert_eq!(reply.json()["reason"], "session_not_found");
    }
}

/// Mutations of a valid credential: bit flips, truncations, splices.
fn mutate(rng: &mut Rng, value: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = value.to_vec();
    match rng.below(4) {
        0 => {
            let i = rng.below(out.len());
            out[i] ^= 1 << rng.below(8);
        }
        1 => out.truncate(rng.below(out.len())),
        2 => {
            let i = rng.below(out.len());
            out[i] = rng.byte();
        }
        _ => {
            let cut = rng.below(out.len().min(other.len()));
            out.truncate(cut);
            out.extend_from_slice(&other[cut..]);
        }
    }
    out
}

/// The statuses portero documents (docs/how-it-works.md, "Errors"): 200 forwarded; 302 login
/// redirect; 400/431 Envoy's own codec refusal; 401, 403; 404 from the
/// upstream. A 5xx would need store trouble, and the store is healthy here.
fn assert_documented(status: u16, what: &str) {
    assert!(
        matches!(status, 200 | 302 | 400 | 401 | 403 | 404 | 431),
        "{what}: undocumented status {status}"
    );
}

#[test]
fn a_bounded_byte_fuzzer_never_gets_past_the_gate_nor_kills_it() {
    let stack = Stack::start();
    let cookie = stack.login_web("ada", "lovelace");
    let other_cookie = stack.login_web("alan", "turing");
    let token = stack.login_app("ada", "lovelace");
    let other_token = stack.login_app("alan", "turing");
    let mut rng = Rng::new(0x5eed_0009);
    let routes: [&[u8]; 4] = [b"/me", b"/feed", b"/admin/overview", b"/auth/login"];
    let mut counts = [0usize; 4];
    for round in 0..2400 {
        let route = routes[rng.below(routes.len())];
        let kind = round % 4;
        counts[kind] += 1;
        match kind {
            // Random bytes (all 256 values) in a header name or value.
            0 => {
                let value = rng.some_bytes(40);
                let name = if rng.below(2) == 0 {
                    b"x-fuzz".to_vec()
                } else {
                    rng.some_bytes(12)
                };
                let session = cookie_header(&cookie);
                let request =
                    raw_request(route, &[(&name, &value), (b"cookie", session.as_bytes())]);
                assert_documented(status_of(&stack, &request), "random header bytes");
            }
            // A mutated session cookie: never forwarded.
            1 => {
                let mutated = mutate(&mut rng, cookie.as_bytes(), other_cookie.as_bytes());
                let mut header = format!("{COOKIE_NAME}=").into_bytes();
                header.extend_from_slice(&mutated);
                let request = raw_request(b"/me", &[(b"cookie", &header)]);
                let status = status_of(&stack, &request);
                assert_documented(status, "mutated cookie");
                if mutated != cookie.as_bytes() && mutated != other_cookie.as_bytes() {
                    assert!(
                        !(200..300).contains(&status),
                        "mutated cookie {:?} got {status}",
                        String::from_utf8_lossy(&mutated)
                    );
                }
            }
            // A mutated bearer token: never forwarded.
            2 => {
                let mutated = mutate(&mut rng, token.as_bytes(), other_token.as_bytes());
                let mut header = b"Bearer ".to_vec();
                header.extend_from_slice(&mutated);
                let request = raw_request(b"/me", &[(b"authorization", &header)]);
                let status = status_of(&stack, &request);
                assert_documented(status, "mutated token");
                // (A splice inside the common header may rebuild the other
                // valid token: that one is no mutation.)
                let mutated = mutated.trim_ascii();
                if mutated != token.as_bytes() && mutated != other_token.as_bytes() {
                    assert!(!(200..300).contains(&status), "mutated token got {status}");
                }
            }
            // Random bytes in the path, no credential.
            _ => {
                let mut path = route.to_vec();
                path.extend_from_slice(&rng.some_bytes(20));
                let status = status_of(&stack, &raw_request(&path, &[]));
                assert!(status < 500, "path fuzz: {status}");
                if route == b"/me" || route == b"/admin/overview" {
                    assert!(!(200..300).contains(&status), "anonymous got {status}");
                }
            }
        }
    }
    assert!(counts.iter().all(|c| *c >= 600), "{counts:?}");
    // The gate still stands and still serves.
    assert_eq!(stack.me_with_cookie(&cookie).status, 200);
    assert_eq!(stack.me_with_token(&token).status, 200);
    assert_filter_alive(&stack);
}

/// An upstream that answers every request with hostile header bytes.
fn hostile_upstream(seed: u64) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut rng = Rng::new(seed);
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            if seen.starts_with(b"STOP") {
                return;
            }
            let mut response =
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n".to_vec();
            for _ in 0..1 + rng.below(4) {
                let name: &[u8] = match rng.below(5) {
                    0 => b"x-portero-start-session",
                    1 => b"x-portero-end-session",
                    2 => b"x-portero-access-token",
                    3 => b"set-cookie",
                    _ => b"x-upstream",
                };
                response.extend_from_slice(name);
                response.extend_from_slice(b": ");
                // Values without CR/LF (so the response stays one response);
                // mostly bytes Envoy's codec lets through (printable and
                // 0x80-0xff: not UTF-8 as a rule), sometimes anything.
                let anything = rng.below(4) == 0;
                let value: Vec<u8> = rng
                    .some_bytes(30)
                    .into_iter()
                    .filter(|b| *b != b'\r' && *b != b'\n')
                    .filter(|b| anything || *b >= 0x80 || (0x20..0x7f).contains(b))
                    .collect();
                response.extend_from_slice(&value);
                response.extend_from_slice(b"\r\n");
            }
            response.extend_from_slice(b"\r\nok");
            let _ = stream.write_all(&response);
        }
    });
    (port, handle)
}

#[test]
fn hostile_upstream_response_headers_never_kill_the_filter() {
    let (port, upstream) = hostile_upstream(0x5eed_0010);
    let stack = Stack::start_with(StackOptions {
        extra_upstream_port: Some(port),
        ..StackOptions::default()
    });
    let cookie = stack.login_web("ada", "lovelace");
    let session = cookie_header(&cookie);
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..300 {
        let request = raw_request(b"/hostile/x", &[(b"cookie", session.as_bytes())]);
        let response = raw_exchange(stack.options.listen_port, &request, TIMEOUT).unwrap();
        let status = raw_status(&response).expect("a status");
        *statuses.entry(status).or_insert(0) += 1;
        // 200 passed on; 502 when Envoy's codec refuses the upstream's
        // bytes, or the filter could not seal a forged start-session value.
        assert!(matches!(status, 200 | 502 | 503), "status {status}");
        let head = String::from_utf8_lossy(&response).to_lowercase();
        assert!(
            !head.contains("x-portero-start-session")
                && !head.contains("x-portero-end-session")
                && !head.contains("x-portero-access-token"),
            "internal headers leaked: {head}"
        );
    }
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > 50,
        "{statuses:?}"
    );
    assert_eq!(stack.me_with_cookie(&cookie).status, 200);
    assert_filter_alive(&stack);
    let _ = raw_exchange(port, b"STOP\r\n\r\n", TIMEOUT);
    let _ = upstream.join();
}

/// Slowloris: a client that never finishes its request headers is cut off
/// by the shipped config's `request_headers_timeout` (408), not held for
/// ever.
#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let stack = Stack::start();
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", stack.options.listen_port)).unwrap();
    stream
        .write_all(b"GET /me HTTP/1.1\r\nhost: a\r\nx-slow: 1\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // Held for ever, the read would time out with nothing: a 408 means
    // Envoy cut the client off itself.
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert_eq!(
        raw_status(&answer),
        Some(408),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}
