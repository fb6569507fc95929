//! A stack of real processes — Redis, redis-sidecar, Fastify and Envoy
//! with the filter — on free loopback ports, and what a test does to them
//! (stop, kill, freeze, read Redis, read logs).

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::proc::{
    envoy_binary, fixture, free_port, raw_get_status, require, workspace_root, Proc,
};
use crate::{
    ADMIN_TOKEN, AUDIENCE, COOKIE_NAME, COOKIE_SECRET, FILTER_TOKEN, ISSUER, SESSION_HASH_KEY,
    TEST_KID,
};

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
    /// The sidecar's Redis flags, for a topology the test started itself
    /// ([`crate::topology::Topology::sidecar_args`]); the stack then starts
    /// no Redis of its own.
    pub redis_args: Option<Vec<String>>,
    /// Scale-out: sidecar processes behind Envoy's sidecar cluster, Envoy
    /// processes (the same config, their own ports) and workers in each.
    pub sidecars: usize,
    pub envoys: usize,
    pub envoy_concurrency: u32,
    /// Sidecars sign with a key directory read again every second
    /// (`--signing-keys-dir`) instead of `signing_key`; the plugin config
    /// still pins `signing_key`'s JWKS.
    pub signing_keys_dir: Option<PathBuf>,
    /// Rewrites the rendered Envoy config before Envoy starts: (config,
    /// the stack's directory, the plugin config).
    pub envoy_yaml_patch: Option<fn(String, &std::path::Path, &Value) -> String>,
    /// An HTTPS listener beside the plain one, with a certificate made at
    /// start (`Stack::edge_tls`, `Stack::https_url`).
    pub https: bool,
    /// Its port (0: a free one).
    pub https_port: u16,
    /// The web front end (examples/fresh-web, on Deno) behind Envoy's web
    /// routes; without it those routes answer 503.
    pub web_app: bool,
    pub web_port: u16,
    /// The first sidecar also serves forward auth on this port (0: none),
    /// with the stack's plugin config.
    pub forward_auth_port: u16,
    /// Envoy asks that forward-auth listener through `ext_authz` instead of
    /// running the filter (needs `forward_auth_port`).
    pub ext_authz: bool,
    /// The filter as a native Envoy dynamic module (`libportero.so`)
    /// instead of wasm: the same core, the other shell. By default, as
    /// [`Shell::from_env`] says.
    pub dynamic_module: bool,
    /// Envoy's `--log-level` (its own default is `info`; the suite's `warn`
    /// keeps logs short), with `wasm` and `dynamic_modules` at `info` always.
    pub envoy_log_level: &'static str,
    /// Sign-in with a real OIDC provider (tests/oidc-provider, started by
    /// the stack, [`Stack::provider`]): the sidecar serves its sign-in
    /// pages, and navigations without a session go to them. Needs `https`.
    pub oidc: bool,
    /// The sidecar's sign-in listener (0: a free one).
    pub sign_in_port: u16,
    /// The provider's port (0: a free one).
    pub provider_port: u16,
    /// Navigations without a session go to the provider (`true`), or to
    /// the web app's login page, which then links the provider (`false`).
    pub oidc_login_redirect: bool,
    /// Edits applied to the sidecar's `--oidc-config` before it starts.
    pub oidc_config_patch: Option<fn(&mut Value)>,
    /// Where the provider posts its back-channel logout tokens: the
    /// sidecar's sign-in listener, or a test's own listener on this port.
    pub backchannel_logout_port: Option<u16>,
}

/// Which shell the suite runs the filter in: `PORTERO_SHELL=wasm` (the
/// default) or `PORTERO_SHELL=dynamic-module`. `make test` runs the suite
/// once per shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    Wasm,
    DynamicModule,
}

/// For a test of the wasm artefact itself (ECDS, the OCI image, Istio):
/// true, with a note on stderr, in the dynamic-module pass, where it would
/// only repeat the wasm pass.
pub fn skip_unless_wasm(what: &str) -> bool {
    let skip = Shell::from_env() != Shell::Wasm;
    if skip {
        eprintln!("skipped in the dynamic-module pass: {what} is about the wasm filter");
    }
    skip
}

/// For a test that does not depend on the shell (the docs, the config
/// schema): true, with a note on stderr, in the dynamic-module pass, where
/// it would only repeat the wasm pass.
pub fn only_in_the_wasm_pass(what: &str) -> bool {
    let skip = Shell::from_env() != Shell::Wasm;
    if skip {
        eprintln!("skipped in the dynamic-module pass: {what} does not depend on the shell");
    }
    skip
}

impl Shell {
    pub fn from_env() -> Shell {
        match std::env::var("PORTERO_SHELL").as_deref() {
            Ok("dynamic-module") => Shell::DynamicModule,
            Ok("wasm") | Ok("") | Err(_) => Shell::Wasm,
            Ok(other) => panic!("PORTERO_SHELL={other}: expected wasm or dynamic-module"),
        }
    }
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
            redis_args: None,
            sidecars: 1,
            envoys: 1,
            envoy_concurrency: 1,
            signing_keys_dir: None,
            envoy_yaml_patch: None,
            https: false,
            https_port: 0,
            web_app: false,
            web_port: 0,
            forward_auth_port: 0,
            ext_authz: false,
            dynamic_module: Shell::from_env() == Shell::DynamicModule,
            envoy_log_level: "warn",
            oidc: false,
            sign_in_port: 0,
            provider_port: 0,
            oidc_login_redirect: true,
            oidc_config_patch: None,
            backchannel_logout_port: None,
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

/// The secrets the plugin config names (`{"env": …}`), with their values:
/// every Envoy (and forward-auth sidecar) the harness starts has them in its
/// environment; the wasm filter gets them through `vm_config`'s
/// `environment_variables.host_env_keys`.
pub const SECRET_ENV: [(&str, &str); 2] = [
    ("PORTERO_COOKIE_SECRET", COOKIE_SECRET),
    ("PORTERO_FILTER_TOKEN", FILTER_TOKEN),
];

/// `vm_config.environment_variables` for a wasm filter of this config.
pub fn wasm_environment() -> Value {
    json!({"host_env_keys": SECRET_ENV.iter().map(|(name, _)| *name).collect::<Vec<_>>()})
}

/// The plugin configuration the stack gives the filter.
pub fn plugin_config(sidecar_cluster: &str, jwks: &Value) -> Value {
    json!({
        "cookie": {
            "name": COOKIE_NAME,
            // Secrets by name: Envoy's /config_dump shows this config in clear.
            "keys": [{"id": 1, "secret": {"env": "PORTERO_COOKIE_SECRET"}}],
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
            "token": {"env": "PORTERO_FILTER_TOKEN"},
            "timeout_ms": 500
        },
        // HTML navigations without a session go to the web app's login page.
        "login_redirect": {"url": "/login", "return_parameter": "return_to"},
        "routes": [
            {"path_prefix": "/auth/login", "policy": "off"},
            {"path_prefix": "/.portero/oidc/", "policy": "off", "sign_in_callback": true},
            {"path_prefix": "/.portero/oidc/logout", "policy": "optional"},
            {"route_name": "login", "policy": "optional"},
            {"route_name": "web_assets", "policy": "off"},
            {"path_prefix": "/feed", "policy": "optional"},
            {"route_name": "admin", "roles": {"any_of": ["admin"]}}
        ]
    })
}

/// The web front end on `port`, calling the API through the edge at `api_url`.
/// `provider_sign_in`: its login page also offers the OIDC provider.
pub fn spawn_web_app(port: u16, api_url: &str, provider_sign_in: bool, log: PathBuf) -> Proc {
    let app = workspace_root().join("examples/fresh-web");
    let deno = app.join("runtime/node_modules/.bin/deno");
    require(&deno, "make setup (npm ci in examples/fresh-web/runtime)");
    require(
        &app.join("node_modules/preact"),
        "make setup (deno install in examples/fresh-web)",
    );
    Proc::spawn(
        "fresh-web",
        Command::new(deno)
            .current_dir(&app)
            // Everything was fetched at set-up: never reach for the network.
            .args([
                "run",
                "--cached-only",
                "--frozen",
                "--allow-net",
                "--allow-env",
                "--allow-read",
            ])
            .arg("main.ts")
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("API_URL", api_url)
            .env("PROVIDER_SIGN_IN", if provider_sign_in { "1" } else { "" })
            .env("NO_COLOR", "1"),
        log,
    )
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
    pub web: Option<Proc>,
    pub envoy: Option<Proc>,
    pub plugin_config: Value,
    pub jwks: Value,
    pub(crate) agent: ureq::Agent,
    /// Sidecars and Envoys beyond the first (`StackOptions::sidecars`,
    /// `envoys`), with their ports: a sidecar's, an Envoy's listener and admin.
    pub more_sidecars: Vec<(u16, Proc)>,
    pub more_envoys: Vec<(u16, u16, Proc)>,
    /// The HTTPS listener's port and certificate (`StackOptions::https`).
    pub edge_tls: Option<(u16, crate::tls::EdgeCertificate)>,
    /// A client trusting the edge certificate's CA.
    pub(crate) https_agent: Option<ureq::Agent>,
    /// The OIDC provider (`StackOptions::oidc`).
    pub provider: Option<crate::oidc::Provider>,
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
        options.web_port = pick(options.web_port);
        options.sign_in_port = pick(options.sign_in_port);
        if options.oidc {
            assert!(options.https, "a sign-in stack needs https: true");
            options.https_port = pick(options.https_port);
        }
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
            web: None,
            envoy: None,
            plugin_config: Value::Null,
            jwks: Value::Null,
            agent,
            more_sidecars: Vec::new(),
            more_envoys: Vec::new(),
            edge_tls: None,
            https_agent: None,
            provider: None,
        };

        if stack.options.oidc {
            stack.start_provider();
        }
        if stack.options.redis_args.is_none() {
            stack.start_redis();
        }
        stack.start_sidecar();
        for _ in 1..stack.options.sidecars {
            let port = free_port();
            let log = stack.dir.join(format!("sidecar-{port}.log"));
            let proc = Proc::spawn("sidecar", &mut stack.sidecar_command(port), log);
            stack.wait_http("sidecar", port, "/healthz");
            stack.more_sidecars.push((port, proc));
        }

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

    /// The client side of a stack someone else started (the compose tier's
    /// containers): Envoy's plain listener on `listen_port`, its HTTPS one as
    /// `https`; no process of its own to stop.
    pub fn attach(listen_port: u16, https: Option<(u16, crate::tls::EdgeCertificate)>) -> Stack {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let https_agent = https
            .as_ref()
            .map(|(_, cert)| crate::tls::agent_trusting(&cert.ca_pem));
        Stack {
            options: StackOptions {
                listen_port,
                https: https.is_some(),
                https_port: https.as_ref().map_or(0, |(port, _)| *port),
                ..StackOptions::default()
            },
            dir: std::env::temp_dir(),
            temp_dir: false,
            redis: None,
            sidecar: None,
            upstream: None,
            web: None,
            envoy: None,
            plugin_config: Value::Null,
            jwks: Value::Null,
            agent,
            more_sidecars: Vec::new(),
            more_envoys: Vec::new(),
            edge_tls: https,
            https_agent,
            provider: None,
        }
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
            "cargo build --release --target wasm32-wasip1 -p portero-wasm",
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

        if options.web_app {
            stack.web = Some(spawn_web_app(
                options.web_port,
                &format!("http://127.0.0.1:{}", options.listen_port),
                options.oidc,
                dir.join("fresh-web.log"),
            ));
        }

        let mut config = plugin_config("redis_sidecar", &stack.jwks);
        if options.oidc && options.oidc_login_redirect {
            // Navigations without a session sign in with the provider.
            config["login_redirect"] =
                json!({"url": "/.portero/oidc/start", "return_parameter": "return_to"});
        }
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
            ("WEB_HOST", "127.0.0.1".into()),
            ("WEB_PORT", options.web_port.to_string()),
            ("SIDECAR_HOST", "127.0.0.1".into()),
            ("SIDECAR_PORT", options.sidecar_port.to_string()),
            ("SIGN_IN_PORT", options.sign_in_port.to_string()),
            ("WASM_PATH", wasm.display().to_string()),
            ("XFF_TRUSTED_HOPS", options.xff_trusted_hops.to_string()),
            (
                "PLUGIN_CONFIG",
                serde_json::to_string(&config.to_string()).expect("json"),
            ),
        ]);
        let rendered = if options.ext_authz {
            with_ext_authz(&rendered, options.forward_auth_port)
        } else if options.dynamic_module {
            require(
                &dynamic_module_dir().join("libportero.so"),
                "make build (the dynamic module)",
            );
            with_dynamic_module(&rendered, &config)
        } else {
            rendered
        };
        let rendered = match options.extra_upstream_port {
            Some(port) => with_extra_upstream(&rendered, port),
            None => rendered,
        };
        let sidecars: Vec<(&str, u16)> = stack
            .more_sidecars
            .iter()
            .map(|(port, _)| ("127.0.0.1", *port))
            .collect();
        let rendered = with_more_sidecars(&rendered, &sidecars);
        let rendered = if options.https {
            let port = pick(options.https_port);
            let cert = crate::tls::edge_certificate(&dir);
            let rendered =
                crate::tls::with_tls_listener(&rendered, options.listen_port, port, &cert);
            stack.https_agent = Some(crate::tls::agent_trusting(&cert.ca_pem));
            stack.edge_tls = Some((port, cert));
            rendered
        } else {
            rendered
        };
        let rendered = match options.envoy_yaml_patch {
            Some(patch) => patch(rendered, &dir, &config),
            None => rendered,
        };
        let spawn_envoy = |name: &str, yaml: String| {
            let envoy_yaml = dir.join(format!("{name}.yaml"));
            fs::write(&envoy_yaml, yaml).expect("write envoy.yaml");
            Proc::spawn(
                "envoy",
                Command::new(&envoy)
                    .envs(SECRET_ENV)
                    .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dynamic_module_dir())
                    // The module's re-entrancy detector: a hook entered
                    // while another hook of its stream holds the stream's
                    // state aborts Envoy (a no-op for the wasm filter).
                    .env("PORTERO_MODULE_ABORT_ON_REENTRY", "1")
                    .arg("-c")
                    .arg(&envoy_yaml)
                    .args([
                        "--concurrency",
                        &options.envoy_concurrency.to_string(),
                        "--disable-hot-restart",
                    ])
                    .args([
                        "--log-level",
                        options.envoy_log_level,
                        "--component-log-level",
                        "wasm:info,dynamic_modules:info",
                    ]),
                dir.join(format!("{name}.log")),
            )
        };
        stack.envoy = Some(spawn_envoy("envoy", rendered.clone()));
        for i in 1..options.envoys {
            let (listen, admin) = (free_port(), free_port());
            let yaml = rendered
                .replacen(
                    &format!("port_value: {} }}", options.listen_port),
                    &format!("port_value: {listen} }}"),
                    1,
                )
                .replacen(
                    &format!("port_value: {} }}", options.admin_port),
                    &format!("port_value: {admin} }}"),
                    1,
                );
            let proc = spawn_envoy(&format!("envoy-{i}"), yaml);
            stack.more_envoys.push((listen, admin, proc));
        }

        stack.wait_http("fastify", options.upstream_port, "/healthz");
        if options.web_app {
            stack.wait_http("fresh-web", options.web_port, "/healthz");
        }
        if !options.expect_envoy_failure {
            stack.wait_http("envoy", options.admin_port, "/ready");
            let admins: Vec<u16> = stack.more_envoys.iter().map(|(_, a, _)| *a).collect();
            for admin in admins {
                stack.wait_http("envoy", admin, "/ready");
            }
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
        let p = [
            &self.redis,
            &self.sidecar,
            &self.upstream,
            &self.web,
            &self.envoy,
        ]
        .into_iter()
        .flatten()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no process {name}"));
        p.signal(signal);
    }

    /// The command of a sidecar listening on `port`, on this stack's Redis.
    fn sidecar_command(&self, port: u16) -> Command {
        let o = &self.options;
        let bin = workspace_root().join("target/release/redis-sidecar");
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .env("PORTERO_SIDECAR_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "PORTERO_REDIS_URL",
                format!("redis://127.0.0.1:{}", o.redis_port),
            )
            .env("PORTERO_SIGNING_KEY_FILE", &o.signing_key)
            .env("PORTERO_KEY_ID", &o.key_id)
            .env("PORTERO_FILTER_TOKEN", FILTER_TOKEN)
            // Forward auth reads the plugin config's cookie secret by name.
            .env("PORTERO_COOKIE_SECRET", COOKIE_SECRET)
            .env("PORTERO_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("PORTERO_SESSION_HASH_KEY", SESSION_HASH_KEY)
            .env("PORTERO_ISSUER", ISSUER)
            .env("PORTERO_AUDIENCE", AUDIENCE)
            .env("PORTERO_ACCESS_TTL", o.access_ttl.to_string())
            .env("PORTERO_IDLE_TIMEOUT", o.idle_timeout.to_string())
            .env("PORTERO_ABSOLUTE_TIMEOUT", o.absolute_timeout.to_string())
            .env("PORTERO_REFRESH_GRACE", o.refresh_grace.to_string())
            .env("PORTERO_REVOKE_ON_REPLAY", o.revoke_on_replay.to_string())
            .args(o.redis_args.iter().flatten());
        if o.oidc {
            command
                .env("PORTERO_OIDC_CONFIG", self.dir.join("oidc.json"))
                .env(
                    "PORTERO_PUBLIC_LISTEN",
                    format!("127.0.0.1:{}", o.sign_in_port),
                )
                .env("PORTERO_OIDC_CLIENT_SECRET", crate::oidc::CLIENT_SECRET);
        }
        if let Some(dir) = &o.signing_keys_dir {
            command
                .env_remove("PORTERO_SIGNING_KEY_FILE")
                .env_remove("PORTERO_KEY_ID")
                .env("PORTERO_SIGNING_KEYS_DIR", dir)
                .env("PORTERO_SIGNING_KEYS_RELOAD_SECONDS", "1");
        }
        command
    }

    pub fn start_sidecar(&mut self) {
        let port = self.options.sidecar_port;
        let mut command = self.sidecar_command(port);
        let forward_auth = self.options.forward_auth_port;
        if forward_auth != 0 {
            // The filter's config; its sidecar section and keys are the sidecar's own.
            let mut config = plugin_config("in-process", &Value::Null);
            if let Some(patch) = self.options.plugin_config_patch {
                patch(&mut config);
            }
            let path = self.dir.join("forward-auth.json");
            fs::write(&path, config.to_string()).expect("forward-auth.json");
            command
                .env(
                    "PORTERO_FORWARD_AUTH_LISTEN",
                    format!("127.0.0.1:{forward_auth}"),
                )
                .env("PORTERO_FORWARD_AUTH_CONFIG", &path);
        }
        self.sidecar = Some(Proc::spawn(
            "sidecar",
            &mut command,
            self.dir.join("sidecar.log"),
        ));
        self.wait_http("sidecar", port, "/healthz");
    }

    /// The OIDC provider for this stack's HTTPS apps, and the sidecar's
    /// sign-in configuration for them: `localhost`, and `app-one.test` and
    /// `app-two.test` (unrelated domains a browser maps to the edge), each
    /// an OIDC client of its own, all on the HTTPS port.
    fn start_provider(&mut self) {
        let cert = crate::tls::edge_certificate(&self.dir);
        let port = self.options.https_port;
        let apps = [
            ("portero-test", "localhost"),
            ("app-one", "app-one.test"),
            ("app-two", "app-two.test"),
        ]
        .map(|(client_id, host)| crate::oidc::App {
            client_id: client_id.into(),
            host: format!("{host}:{port}"),
            // Server to server: straight to the sidecar's sign-in listener.
            backchannel_logout_uri: Some(format!(
                "http://127.0.0.1:{}/oidc/backchannel-logout",
                self.options
                    .backchannel_logout_port
                    .unwrap_or(self.options.sign_in_port)
            )),
        });
        let provider =
            crate::oidc::Provider::start(&self.dir, &cert, &apps, self.options.provider_port);
        let mut config = provider.sidecar_config(&cert, &apps);
        if let Some(patch) = self.options.oidc_config_patch {
            patch(&mut config);
        }
        fs::write(self.dir.join("oidc.json"), config.to_string()).expect("oidc.json");
        self.provider = Some(provider);
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

    /// Prints the logs of every process (on test failure).
    pub fn dump_logs(&self) {
        let more = self
            .more_sidecars
            .iter()
            .map(|(_, p)| p)
            .chain(self.more_envoys.iter().map(|(_, _, p)| p))
            .chain(self.provider.iter().map(|p| &p.proc));
        for p in [
            &self.redis,
            &self.sidecar,
            &self.upstream,
            &self.web,
            &self.envoy,
        ]
        .into_iter()
        .flatten()
        .chain(more)
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
        for (_, _, p) in &mut self.more_envoys {
            p.stop();
        }
        for (_, p) in &mut self.more_sidecars {
            p.stop();
        }
        for p in [
            &mut self.envoy,
            &mut self.web,
            &mut self.upstream,
            &mut self.sidecar,
            &mut self.redis,
        ]
        .into_iter()
        .flatten()
        .chain(self.provider.as_mut().map(|p| &mut p.proc))
        {
            p.stop();
        }
        if self.temp_dir && !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Adds endpoints to the filter's sidecar cluster: more sidecars at
/// `endpoints` (host, port).
pub fn with_more_sidecars(yaml: &str, endpoints: &[(&str, u16)]) -> String {
    let mut yaml = yaml.to_string();
    for (host, port) in endpoints {
        let anchor = "      cluster_name: redis_sidecar\n      endpoints:\n      - lb_endpoints:\n";
        assert!(yaml.contains(anchor), "the sidecar cluster's endpoints");
        let endpoint = format!(
            "        - endpoint:\n            address:\n              socket_address: {{ address: {host}, port_value: {port} }}\n"
        );
        yaml = yaml.replacen(anchor, &format!("{anchor}{endpoint}"), 1);
    }
    yaml
}

/// Adds a `/hostile/` route to a test's own upstream on `port`.
/// Where `make build` puts the dynamic module (`libportero.so`).
pub fn dynamic_module_dir() -> PathBuf {
    workspace_root().join("target/release")
}

/// The filter as Envoy's `DynamicModuleFilter` instead of the wasm filter,
/// under the same name and with the same plugin config.
pub fn with_dynamic_module(yaml: &str, config: &Value) -> String {
    let quoted = serde_json::to_string(&config.to_string()).expect("json");
    let module = format!(
        r#"          - name: portero
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config: {{ name: portero }}
              filter_name: portero
              filter_config:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: {quoted}
"#
    );
    // The module's counters live under the `dynamicmodulescustom`
    // namespace; registered as a custom namespace (this runtime guard), it
    // is stripped from /stats/prometheus as `wasmcustom` is, so both shells
    // publish the same series (`portero_requests{flow=…,outcome=…}`).
    let runtime = "layered_runtime:\n  layers:\n  - name: static\n    static_layer:\n      \
                   envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix: true\n";
    format!("{runtime}{}", with_filter(yaml, &module))
}

/// `yaml` with the portero filter's block (up to the router) replaced.
fn with_filter(yaml: &str, filter: &str) -> String {
    let start = yaml
        .find("          - name: portero\n")
        .expect("the portero filter");
    let end = yaml
        .find("          - name: envoy.filters.http.router\n")
        .expect("the router");
    format!("{}{filter}{}", &yaml[..start], &yaml[end..])
}

/// Puts forward auth where the filter was: Envoy's `ext_authz` (HTTP)
/// asking the sidecar's forward-auth listener on `port`, under the same
/// filter name (so per-route `disabled` still applies), and the cluster.
pub fn with_ext_authz(yaml: &str, port: u16) -> String {
    let ext_authz = r#"          - name: portero
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              status_on_error: { code: 503 }
              # What the check request carries of the client's (the field
              # moved here from http_service.authorization_request in 1.40).
              allowed_headers:
                patterns:
                - exact: cookie
                - exact: user-agent
                - exact: origin
                - exact: sec-fetch-site
                - exact: accept
                - exact: sec-fetch-mode
                - exact: x-forwarded-for
                - exact: x-forwarded-proto
              http_service:
                server_uri: { uri: "http://forward-auth", cluster: forward_auth, timeout: 0.5s }
                authorization_response:
                  allowed_upstream_headers:
                    patterns:
                    - prefix: x-portero-
                    - exact: authorization
                    # The client's cookies without the session cookie: the
                    # answer's `cookie` replaces the request's.
                    - exact: cookie
                  allowed_client_headers:
                    patterns:
                    - exact: location
                    - exact: retry-after
                    - exact: cache-control
                    - exact: content-type
                    - exact: set-cookie
"#;
    let cluster = format!(
        "  - name: forward_auth\n    type: STATIC\n    connect_timeout: 0.25s\n    load_assignment:\n      cluster_name: forward_auth\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n"
    );
    let cluster_anchor = "  # The filter's dispatch_http_call target.\n";
    assert!(yaml.contains(cluster_anchor));
    with_filter(yaml, ext_authz).replacen(cluster_anchor, &format!("{cluster}{cluster_anchor}"), 1)
}

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
