//! Talking to a stack: HTTP through Envoy or straight to the sidecar, raw
//! bytes on a socket, logins, metrics, and the replies read whole.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};

use crate::stack::Stack;
use crate::{ADMIN_TOKEN, COOKIE_NAME};

impl Stack {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.options.listen_port)
    }

    /// The listener port of Envoy number `envoy` (0: the first).
    pub fn listen_port(&self, envoy: usize) -> u16 {
        match envoy {
            0 => self.options.listen_port,
            n => self.more_envoys[n - 1].0,
        }
    }

    /// The port of sidecar number `sidecar` (0: the first).
    pub fn sidecar_port(&self, sidecar: usize) -> u16 {
        match sidecar {
            0 => self.options.sidecar_port,
            n => self.more_sidecars[n - 1].0,
        }
    }

    /// A GET through Envoy number `envoy`, on the client's pooled connection.
    pub fn get_via(&self, envoy: usize, path: &str, headers: &[(&str, &str)]) -> Reply {
        let url = format!("http://127.0.0.1:{}{path}", self.listen_port(envoy));
        self.send("GET", &url, headers, None)
    }

    /// The status of a GET through Envoy number `envoy` on a connection of
    /// its own (new connections spread over Envoy's workers).
    pub fn status_on_new_connection(
        &self,
        envoy: usize,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Option<u16> {
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let response = raw_exchange(
            self.listen_port(envoy),
            request.as_bytes(),
            Duration::from_secs(5),
        )?;
        raw_status(&response)
    }

    /// A URL on the HTTPS listener (`StackOptions::https`).
    pub fn https_url(&self, path: &str) -> String {
        let (port, _) = self.edge_tls.as_ref().expect("a stack with https: true");
        format!("https://localhost:{port}{path}")
    }

    pub fn sidecar_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.options.sidecar_port)
    }

    /// One request through Envoy.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Reply {
        self.send(method, &self.url(path), headers, body)
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request("GET", path, headers, None)
    }

    /// A GET through Envoy that may find nobody listening.
    pub fn try_get(&self, path: &str) -> Option<Reply> {
        let mut response = self.agent.get(self.url(path)).call().ok()?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Some(Reply {
            status,
            headers: vec![],
            body,
        })
    }

    /// One request to any URL; a JSON body gets `content-type: application/json`.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Reply {
        match body {
            Some(json) => {
                let mut with_type = headers.to_vec();
                with_type.push(("content-type", "application/json"));
                self.send_raw(method, url, &with_type, json.to_string().as_bytes())
            }
            None => self.send_raw(method, url, headers, b""),
        }
    }

    /// One request with exactly these headers and body bytes.
    pub fn send_raw(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let agent = match (&self.https_agent, url.starts_with("https://")) {
            (Some(https), true) => https,
            _ => &self.agent,
        };
        let response = if body.is_empty() {
            agent.run(builder.body(()).expect("request"))
        } else {
            agent.run(builder.body(body.to_vec()).expect("request"))
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).to_string(),
                )
            })
            .collect();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Logs in through Envoy as a web client; returns the cookie value.
    pub fn login_web(&self, username: &str, password: &str) -> String {
        let reply = self.request(
            "POST",
            "/auth/login",
            &[("user-agent", "portero-test")],
            Some(&json!({"username": username, "password": password, "client": "web"})),
        );
        assert_eq!(reply.status, 200, "web login failed: {}", reply.body);
        reply
            .cookie_value(COOKIE_NAME)
            .unwrap_or_else(|| panic!("no session cookie in {:?}", reply.headers))
    }

    /// Logs in through Envoy as a web client with extra request headers
    /// (a User-Agent, an X-Forwarded-For); returns the cookie value.
    pub fn login_web_with(
        &self,
        username: &str,
        password: &str,
        headers: &[(&str, &str)],
    ) -> String {
        let reply = self.request(
            "POST",
            "/auth/login",
            headers,
            Some(&json!({"username": username, "password": password, "client": "web"})),
        );
        assert_eq!(reply.status, 200, "web login failed: {}", reply.body);
        reply
            .cookie_value(COOKIE_NAME)
            .unwrap_or_else(|| panic!("no session cookie in {:?}", reply.headers))
    }

    /// Envoy's `/stats/prometheus`.
    pub fn prometheus(&self) -> String {
        self.prometheus_of(0)
    }

    /// The Prometheus text of Envoy number `envoy` (every worker summed).
    pub fn prometheus_of(&self, envoy: usize) -> String {
        let admin = match envoy {
            0 => self.options.admin_port,
            n => self.more_envoys[n - 1].1,
        };
        let url = format!("http://127.0.0.1:{admin}/stats/prometheus");
        let reply = self.send("GET", &url, &[], None);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body
    }

    /// The value of one Prometheus series, e.g.
    /// `portero_requests{flow="cookie",outcome="allowed"}`; 0 when absent
    /// (proxy-wasm defines a series on its first use). The filter hands its
    /// counts to Envoy every second, so this first waits for that.
    pub fn metric(&self, series: &str) -> u64 {
        self.metric_of(0, series)
    }

    /// [`Stack::metric`] of Envoy number `envoy`.
    pub fn metric_of(&self, envoy: usize, series: &str) -> u64 {
        std::thread::sleep(Duration::from_millis(1150));
        let text = self.prometheus_of(envoy);
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0, |v| v.trim().parse::<f64>().map_or(0, |v| v as u64))
    }

    /// Logs in through Envoy as an app client; returns the access token.
    pub fn login_app(&self, username: &str, password: &str) -> String {
        let reply = self.request(
            "POST",
            "/auth/login",
            &[("user-agent", "portero-test-app")],
            Some(&json!({"username": username, "password": password, "client": "app"})),
        );
        assert_eq!(reply.status, 200, "app login failed: {}", reply.body);
        reply.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// A call to the sidecar's admin API.
    pub fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        self.send(
            method,
            &self.sidecar_url(path),
            &[("authorization", &auth)],
            body,
        )
    }

    /// `/me` through Envoy with a session cookie.
    pub fn me_with_cookie(&self, value: &str) -> Reply {
        self.get("/me", &[("cookie", &format!("{COOKIE_NAME}={value}"))])
    }

    /// `/me` through Envoy with a bearer token.
    pub fn me_with_token(&self, token: &str) -> Reply {
        self.get("/me", &[("authorization", &format!("Bearer {token}"))])
    }
}

/// Sends `request` as raw bytes on a new connection to `port` and reads
/// the answer until the peer closes or `timeout` passes. `None` when the
/// connection could not be made.
pub fn raw_exchange(port: u16, request: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.write_all(request).ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    // Stop at the end of the first response: after a codec error Envoy
    // keeps the socket open for its delayed-close timeout (1 s).
    while !response_complete(&out) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    Some(out)
}

/// Whether `bytes` hold a whole HTTP/1.1 response (by `content-length`, or
/// the last chunk).
fn response_complete(bytes: &[u8]) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let body = &bytes[end + 4..];
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body.len() >= len;
    }
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    false
}

/// The status code of a raw HTTP/1.1 response.
pub fn raw_status(response: &[u8]) -> Option<u16> {
    let head = response.get(..response.len().min(32))?;
    let text = String::from_utf8_lossy(head);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// A small deterministic PRNG (xorshift64*) for fuzzing with a fixed seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn byte(&mut self) -> u8 {
        (self.next() >> 24) as u8
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
    /// 1 to `max` random bytes.
    pub fn some_bytes(&mut self, max: usize) -> Vec<u8> {
        let len = 1 + self.below(max);
        self.bytes(len)
    }
}

/// The claims of a token, read without verifying it.
pub fn claims_of(token: &str) -> portero_wire::AccessClaims {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("claims")
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The value a `Set-Cookie` gives to cookie `name`.
    pub fn cookie_value(&self, name: &str) -> Option<String> {
        self.headers_named("set-cookie").into_iter().find_map(|c| {
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (n, v) = pair.split_once('=')?;
            (n.trim() == name).then(|| v.trim().to_string())
        })
    }

    /// The whole `Set-Cookie` line for cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers_named("set-cookie")
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }
}
