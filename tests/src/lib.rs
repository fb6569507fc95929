//! The integration harness: real Redis, redis-sidecar, Fastify and Envoy
//! (with the portero wasm filter), each started as a plain process on free
//! loopback ports, each stopped by pid when the [`Stack`] is dropped, also
//! when a test fails.
//!
//! Prerequisites are built by `make test` (and `make run`): the release
//! sidecar, the release wasm filter, Envoy in `.venv/`, and the Fastify
//! example's `node_modules`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Fixed credentials of the test and demo stacks (never use them elsewhere).
pub const FILTER_TOKEN: &str = "filter-token-demo-0123456789";
pub const ADMIN_TOKEN: &str = "admin-token-demo-0123456789";
pub const SESSION_HASH_KEY: &str = "session-hash-key-demo-0123456789abcdef";
pub const COOKIE_SECRET: &str = "cookie-secret-demo-0123456789abcdef";
pub const COOKIE_NAME: &str = "__Host-portero";
pub const ISSUER: &str = "https://portero.local";
pub const AUDIENCE: &str = "portero-apps";
/// `kid` of the committed test key (tests/fixtures/test-rsa.pem).
/// The test signing key and the one token minter (the filter's testkit).
pub use portero::testkit::tokens::{Minter, TEST_KID};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

pub fn fixture(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures").join(name)
}

/// Ports handed out by [`free_port`]: below Linux's ephemeral range
/// (32768–60999), so no outgoing connection of another test (or Envoy's
/// own upstream connections) can take one between its pick and its bind.
const PORT_RANGE: std::ops::Range<u32> = 15_000..32_000;
static NEXT_PORT: AtomicUsize = AtomicUsize::new(0);

/// A loopback port nobody listens on right now, distinct from every other
/// one this process has picked; test binaries start at a pid-derived spot.
pub fn free_port() -> u16 {
    let span = PORT_RANGE.end - PORT_RANGE.start;
    let start = (std::process::id() * 7919) % span;
    for _ in 0..span {
        let offset = u32::try_from(NEXT_PORT.fetch_add(1, Ordering::SeqCst)).unwrap_or(0);
        let port = PORT_RANGE.start + (start + offset) % span;
        let port = u16::try_from(port).expect("port in range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {PORT_RANGE:?}")
}

pub fn envoy_binary() -> PathBuf {
    std::env::var_os("PORTERO_ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/envoy"))
}

pub fn require(path: &Path, how: &str) {
    assert!(
        path.exists(),
        "{} is missing: {how} (make test builds everything)",
        path.display()
    );
}

/// A child process in its own process group, stopped on drop.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, command: &mut Command, log: PathBuf) -> Proc {
        let out = fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        // A child starts with no blocked signals, whatever its parent blocks
        // (portero-stack blocks SIGINT/SIGTERM to wait for them).
        unsafe {
            command.pre_exec(|| {
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                Ok(())
            });
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Sends `signal` to the process (not its group). After SIGSTOP, waits
    /// until every thread of it is seen stopped (delivery is asynchronous).
    pub fn signal(&self, signal: i32) {
        let Some(child) = &self.child else {
            return;
        };
        let pid = child.id();
        unsafe {
            libc::kill(pid as i32, signal);
        }
        if signal != libc::SIGSTOP {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let tasks = fs::read_dir(format!("/proc/{pid}/task"))
                .map(|dir| dir.flatten().map(|t| t.path()).collect::<Vec<_>>())
                .unwrap_or_default();
            let stopped = tasks.iter().all(|task| {
                fs::read_to_string(task.join("stat"))
                    .ok()
                    .and_then(|stat| {
                        let after = stat.rsplit_once(')')?.1;
                        after.trim_start().chars().next()
                    })
                    .is_some_and(|state| state == 'T' || state == 't')
            });
            if stopped && !tasks.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("{} did not stop", self.name);
    }

    /// SIGTERM the process group, SIGKILL after 5 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id() as i32;
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = child.wait();
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Timings and ports of a stack.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Envoy listener port (0: a free one).
    pub listen_port: u16,
    pub admin_port: u16,
    pub sidecar_port: u16,
    pub redis_port: u16,
    pub upstream_port: u16,
    pub access_ttl: u64,
    pub idle_timeout: u64,
    pub absolute_timeout: u64,
    /// Sidecar: grace window of a rotated token, and reuse detection.
    pub refresh_grace: u64,
    pub revoke_on_replay: bool,
    /// Signing key: the committed test key by default.
    pub signing_key: PathBuf,
    pub key_id: String,
    /// Where logs and rendered configs go; a fresh temp dir by default.
    pub work_dir: Option<PathBuf>,
    /// Edits applied to the plugin config before Envoy starts.
    pub plugin_config_patch: Option<fn(&mut Value)>,
    /// Don't wait for Envoy to be ready (it is expected to refuse its config).
    pub expect_envoy_failure: bool,
    /// The HTTP connection manager's `xff_num_trusted_hops`.
    pub xff_trusted_hops: u32,
    /// A second upstream (a test's own server on this port), routed by
    /// Envoy under `/hostile/` with the filter on.
    pub extra_upstream_port: Option<u16>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            listen_port: 0,
            admin_port: 0,
            sidecar_port: 0,
            redis_port: 0,
            upstream_port: 0,
            access_ttl: 900,
            idle_timeout: 1800,
            absolute_timeout: 86400,
            refresh_grace: 10,
            revoke_on_replay: true,
            signing_key: fixture("test-rsa.pem"),
            key_id: TEST_KID.to_string(),
            work_dir: None,
            plugin_config_patch: None,
            expect_envoy_failure: false,
            xff_trusted_hops: 0,
            extra_upstream_port: None,
        }
    }
}

impl StackOptions {
    /// Every request asks the sidecar: the session cache (and with it the
    /// revocation feed) off.
    pub fn no_session_cache() -> StackOptions {
        StackOptions {
            plugin_config_patch: Some(|config| {
                config["cache"] = json!({"sessions": {"ttl_seconds": 0}});
            }),
            ..StackOptions::default()
        }
    }
}

fn pick(port: u16) -> u16 {
    if port == 0 {
        free_port()
    } else {
        port
    }
}

/// The plugin configuration the stack gives the filter.
pub fn plugin_config(sidecar_cluster: &str, jwks: &Value) -> Value {
    json!({
        "cookie": {
            "name": COOKIE_NAME,
            "keys": [{"id": 1, "secret": COOKIE_SECRET}],
            "same_site": "Strict"
        },
        "jwt": {
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "jwks": jwks,
            "leeway_seconds": 5
        },
        "sidecar": {
            "cluster": sidecar_cluster,
            "authority": "redis-sidecar",
            "token": FILTER_TOKEN,
            "timeout_ms": 500
        },
        "routes": [
            {"path_prefix": "/auth/login", "policy": "off"},
            {"path_prefix": "/feed", "policy": "optional"},
            {"route_name": "admin", "roles": {"any_of": ["admin"]}}
        ]
    })
}

/// Fills the `{{…}}` placeholders of `envoy/envoy.yaml`.
pub fn render_envoy_config(values: &[(&str, String)]) -> String {
    let mut text =
        fs::read_to_string(workspace_root().join("envoy/envoy.yaml")).expect("envoy/envoy.yaml");
    for (name, value) in values {
        text = text.replace(&format!("{{{{{name}}}}}"), value);
    }
    assert!(!text.contains("{{"), "unfilled placeholder in envoy.yaml");
    text
}

static STACK_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A running stack: Redis, redis-sidecar, Fastify, Envoy with portero.
pub struct Stack {
    pub options: StackOptions,
    pub dir: PathBuf,
    temp_dir: bool,
    pub redis: Option<Proc>,
    pub sidecar: Option<Proc>,
    pub upstream: Option<Proc>,
    pub envoy: Option<Proc>,
    pub plugin_config: Value,
    pub jwks: Value,
    agent: ureq::Agent,
}

impl Stack {
    pub fn start() -> Stack {
        Self::start_with(StackOptions::default())
    }

    /// Redis and the sidecar only, with the JWKS read and every port
    /// picked (the bench brings its own Envoy).
    pub fn start_backends(mut options: StackOptions) -> Stack {
        let root = workspace_root();
        let sidecar_bin = root.join("target/release/redis-sidecar");
        require(&sidecar_bin, "cargo build --release -p redis-sidecar");

        options.listen_port = pick(options.listen_port);
        options.admin_port = pick(options.admin_port);
        options.sidecar_port = pick(options.sidecar_port);
        options.redis_port = pick(options.redis_port);
        options.upstream_port = pick(options.upstream_port);
        let (dir, temp_dir) = match &options.work_dir {
            Some(dir) => (dir.clone(), false),
            None => {
                let n = STACK_COUNTER.fetch_add(1, Ordering::SeqCst);
                let dir =
                    std::env::temp_dir().join(format!("portero-it-{}-{n}", std::process::id()));
                (dir, true)
            }
        };
        fs::create_dir_all(&dir).expect("work dir");

        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();

        let mut stack = Stack {
            options: options.clone(),
            dir: dir.clone(),
            temp_dir,
            redis: None,
            sidecar: None,
            upstream: None,
            envoy: None,
            plugin_config: Value::Null,
            jwks: Value::Null,
            agent,
        };

        stack.start_redis();
        stack.start_sidecar();

        let jwks_out = Command::new(&sidecar_bin)
            .args(["jwks", "--signing-key"])
            .arg(&options.signing_key)
            .args(["--key-id", &options.key_id])
            .output()
            .expect("redis-sidecar jwks");
        assert!(jwks_out.status.success(), "redis-sidecar jwks failed");
        stack.jwks = serde_json::from_slice(&jwks_out.stdout).expect("jwks json");

        stack
    }

    pub fn start_with(options: StackOptions) -> Stack {
        let mut stack = Self::start_backends(options);
        let options = stack.options.clone();
        let dir = stack.dir.clone();
        let root = workspace_root();
        let wasm = root.join("target/wasm32-wasip1/release/portero.wasm");
        let envoy = envoy_binary();
        let server_js = root.join("examples/fastify-api/server.js");
        require(
            &wasm,
            "cargo build --release --target wasm32-wasip1 -p portero",
        );
        require(&envoy, "make envoy");
        require(
            &root.join("examples/fastify-api/node_modules/fastify"),
            "npm ci in examples/fastify-api",
        );

        stack.upstream = Some(Proc::spawn(
            "fastify",
            Command::new("node")
                .arg(&server_js)
                .env("HOST", "127.0.0.1")
                .env("PORT", options.upstream_port.to_string())
                .env(
                    "SIDECAR_URL",
                    format!("http://127.0.0.1:{}", options.sidecar_port),
                )
                .env("PORTERO_ADMIN_TOKEN", ADMIN_TOKEN)
                .env("LOG_LEVEL", "warn"),
            dir.join("fastify.log"),
        ));

        let mut config = plugin_config("redis_sidecar", &stack.jwks);
        if let Some(patch) = options.plugin_config_patch {
            patch(&mut config);
        }
        stack.plugin_config = config.clone();
        let rendered = render_envoy_config(&[
            ("LISTEN_ADDRESS", "127.0.0.1".into()),
            ("LISTEN_PORT", options.listen_port.to_string()),
            ("ADMIN_PORT", options.admin_port.to_string()),
            ("UPSTREAM_HOST", "127.0.0.1".into()),
            ("UPSTREAM_PORT", options.upstream_port.to_string()),
            ("SIDECAR_HOST", "127.0.0.1".into()),
            ("SIDECAR_PORT", options.sidecar_port.to_string()),
            ("WASM_PATH", wasm.display().to_string()),
            ("XFF_TRUSTED_HOPS", options.xff_trusted_hops.to_string()),
            (
                "PLUGIN_CONFIG",
                serde_json::to_string(&config.to_string()).expect("json"),
            ),
        ]);
        let rendered = match options.extra_upstream_port {
            Some(port) => with_extra_upstream(&rendered, port),
            None => rendered,
        };
        let envoy_yaml = dir.join("envoy.yaml");
        fs::write(&envoy_yaml, rendered).expect("write envoy.yaml");
        stack.envoy = Some(Proc::spawn(
            "envoy",
            Command::new(&envoy)
                .arg("-c")
                .arg(&envoy_yaml)
                .args(["--concurrency", "1", "--disable-hot-restart"])
                .args(["--log-level", "warn", "--component-log-level", "wasm:info"]),
            dir.join("envoy.log"),
        ));

        stack.wait_http("fastify", options.upstream_port, "/healthz");
        if !options.expect_envoy_failure {
            stack.wait_http("envoy", options.admin_port, "/ready");
        }
        stack
    }

    pub fn start_redis(&mut self) {
        let port = self.options.redis_port;
        self.redis = Some(Proc::spawn(
            "redis",
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                // Durable as every Redis portero starts or ships: the AOF,
                // fsynced every second, is replayed on restart.
                .args(["--appendonly", "yes", "--appendfsync", "everysec"])
                .arg("--dir")
                .arg(&self.dir),
            self.dir.join("redis.log"),
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.redis_cli(&["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop_redis(&mut self) {
        if let Some(mut p) = self.redis.take() {
            p.stop();
        }
    }

    /// SIGKILLs Redis (no shutdown save, no goodbye), as a crash or an OOM
    /// kill would.
    pub fn kill_redis(&mut self) {
        if let Some(mut p) = self.redis.take() {
            p.signal(libc::SIGKILL);
            p.stop();
        }
    }

    /// Sends `signal` (SIGSTOP, SIGCONT …) to a process of the stack by name.
    pub fn signal(&self, name: &str, signal: i32) {
        let p = [&self.redis, &self.sidecar, &self.upstream, &self.envoy]
            .into_iter()
            .flatten()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process {name}"));
        p.signal(signal);
    }

    pub fn start_sidecar(&mut self) {
        let o = &self.options;
        let bin = workspace_root().join("target/release/redis-sidecar");
        self.sidecar = Some(Proc::spawn(
            "sidecar",
            Command::new(bin)
                .arg("serve")
                .env(
                    "PORTERO_SIDECAR_LISTEN",
                    format!("127.0.0.1:{}", o.sidecar_port),
                )
                .env(
                    "PORTERO_REDIS_URL",
                    format!("redis://127.0.0.1:{}", o.redis_port),
                )
                .env("PORTERO_SIGNING_KEY_FILE", &o.signing_key)
                .env("PORTERO_KEY_ID", &o.key_id)
                .env("PORTERO_FILTER_TOKEN", FILTER_TOKEN)
                .env("PORTERO_ADMIN_TOKEN", ADMIN_TOKEN)
                .env("PORTERO_SESSION_HASH_KEY", SESSION_HASH_KEY)
                .env("PORTERO_ISSUER", ISSUER)
                .env("PORTERO_AUDIENCE", AUDIENCE)
                .env("PORTERO_ACCESS_TTL", o.access_ttl.to_string())
                .env("PORTERO_IDLE_TIMEOUT", o.idle_timeout.to_string())
                .env("PORTERO_ABSOLUTE_TIMEOUT", o.absolute_timeout.to_string())
                .env("PORTERO_REFRESH_GRACE", o.refresh_grace.to_string())
                .env("PORTERO_REVOKE_ON_REPLAY", o.revoke_on_replay.to_string()),
            self.dir.join("sidecar.log"),
        ));
        self.wait_http("sidecar", self.options.sidecar_port, "/healthz");
    }

    pub fn stop_sidecar(&mut self) {
        if let Some(mut p) = self.sidecar.take() {
            p.stop();
        }
    }

    pub fn wait_http(&mut self, name: &str, port: u16, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = raw_get_status(port, path) {
                if status == 200 {
                    return;
                }
            }
            let exited = [&mut self.envoy, &mut self.upstream, &mut self.sidecar]
                .into_iter()
                .flatten()
                .find(|p| p.name == name)
                .is_some_and(Proc::exited);
            if exited || Instant::now() > deadline {
                let log = [&self.envoy, &self.upstream, &self.sidecar]
                    .into_iter()
                    .flatten()
                    .find(|p| p.name == name)
                    .map(|p| p.log_tail(40))
                    .unwrap_or_default();
                panic!("{name} did not become ready on port {port}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Runs `redis-cli` against the stack's Redis.
    pub fn redis_cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.options.redis_port.to_string(),
            ])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// The session keys in Redis.
    pub fn session_keys(&self) -> Vec<String> {
        self.redis_cli(&["--scan", "--pattern", "portero:session:*"])
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.options.listen_port)
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
        let response = if body.is_empty() {
            self.agent.run(builder.body(()).expect("request"))
        } else {
            self.agent
                .run(builder.body(body.to_vec()).expect("request"))
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
        let url = format!(
            "http://127.0.0.1:{}/stats/prometheus",
            self.options.admin_port
        );
        let reply = self.send("GET", &url, &[], None);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body
    }

    /// The value of one Prometheus series, e.g.
    /// `portero_requests{flow="cookie",outcome="allowed"}`; 0 when absent
    /// (proxy-wasm defines a series on its first use). The filter hands its
    /// counts to Envoy every second, so this first waits for that.
    pub fn metric(&self, series: &str) -> u64 {
        std::thread::sleep(Duration::from_millis(1150));
        let text = self.prometheus();
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

    /// Prints the logs of every process (on test failure).
    pub fn dump_logs(&self) {
        for p in [&self.redis, &self.sidecar, &self.upstream, &self.envoy]
            .into_iter()
            .flatten()
        {
            eprintln!(
                "──── {} ({}) ────\n{}",
                p.name,
                p.log.display(),
                p.log_tail(60)
            );
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for p in [
            &mut self.envoy,
            &mut self.upstream,
            &mut self.sidecar,
            &mut self.redis,
        ]
        .into_iter()
        .flatten()
        {
            p.stop();
        }
        if self.temp_dir && !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Adds a `/hostile/` route to a test's own upstream on `port`.
fn with_extra_upstream(yaml: &str, port: u16) -> String {
    let route_anchor = "              - name: admin\n";
    let cluster_anchor = "  # The filter's dispatch_http_call target.\n";
    assert!(yaml.contains(route_anchor) && yaml.contains(cluster_anchor));
    let route = "              - match: { prefix: \"/hostile/\" }\n                route: { cluster: extra_upstream }\n";
    let cluster = format!(
        "  - name: extra_upstream\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: extra_upstream\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n"
    );
    yaml.replacen(route_anchor, &format!("{route}{route_anchor}"), 1)
        .replacen(cluster_anchor, &format!("{cluster}{cluster_anchor}"), 1)
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

/// Unix time now, in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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

/// Status of a plain HTTP/1.0 GET, without any client library (readiness).
fn raw_get_status(port: u16, path: &str) -> Option<u16> {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).ok()?;
    let head = std::str::from_utf8(buf.get(..n)?).ok()?;
    head.split(' ').nth(1)?.parse().ok()
}
