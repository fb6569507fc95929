//! The identity provider of the sign-in tests: `oidc-provider` from npm
//! (tests/oidc-provider), started on a free loopback port over HTTPS with
//! the stack's own certificate, with OIDC clients for the stack's apps and
//! fixed test users.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::proc::{free_port, require, workspace_root, Proc};
use crate::tls::EdgeCertificate;

/// The test users the provider knows (username, password, groups).
pub const USERS: &[(&str, &str, &[&str])] = &[
    ("grace", "hopper", &["admin", "staff"]),
    ("alan", "turing", &["staff"]),
];

/// `sub` of a test user at the provider.
pub fn subject_of(username: &str) -> String {
    format!("sub-{username}")
}

/// The client secret of every test client (the sidecar reads it by name).
pub const CLIENT_SECRET: &str = "oidc-client-secret-demo-0123456789";

/// One app the provider signs people in to.
pub struct App {
    pub client_id: String,
    /// `host:port` the browser uses for the app.
    pub host: String,
    /// Where the provider posts logout tokens (the sidecar), if anywhere.
    pub backchannel_logout_uri: Option<String>,
}

impl App {
    pub fn redirect_uri(&self) -> String {
        format!("https://{}/.portero/oidc/callback", self.host)
    }
}

/// A running provider.
pub struct Provider {
    pub proc: Proc,
    pub port: u16,
    pub issuer: String,
    config: std::path::PathBuf,
    starts: usize,
}

impl Provider {
    /// Starts the provider in `dir` for `apps` on `port` (0: a free one),
    /// waiting for its `ready` line.
    pub fn start(dir: &Path, cert: &EdgeCertificate, apps: &[App], port: u16) -> Provider {
        let root = workspace_root();
        require(
            &root.join("tests/oidc-provider/node_modules/oidc-provider"),
            "make setup (npm ci in tests/oidc-provider)",
        );
        let port = if port == 0 { free_port() } else { port };
        let issuer = format!("https://localhost:{port}");
        let clients: Vec<Value> = apps
            .iter()
            .map(|app| {
                let mut client = json!({
                    "client_id": app.client_id,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uris": [app.redirect_uri()],
                    "post_logout_redirect_uris": [format!("https://{}/", app.host)],
                });
                if let Some(uri) = &app.backchannel_logout_uri {
                    client["backchannel_logout_uri"] = json!(uri);
                }
                client
            })
            .collect();
        let users: Vec<Value> = USERS
            .iter()
            .map(|(username, password, groups)| {
                json!({
                    "sub": subject_of(username),
                    "username": username,
                    "password": password,
                    "email": format!("{username}@example.test"),
                    "name": username,
                    "groups": groups,
                })
            })
            .collect();
        let config = json!({
            "port": port,
            "issuer": issuer,
            "cert": cert.cert,
            "key": cert.key,
            "clients": clients,
            "users": users,
        });
        let config_path = dir.join("oidc-provider.json");
        std::fs::write(&config_path, config.to_string()).expect("oidc-provider.json");
        let proc = spawn(&config_path, &issuer, dir.join("oidc-provider.log"));
        Provider {
            proc,
            port,
            issuer,
            config: config_path,
            starts: 1,
        }
    }

    /// Stops the provider and starts it again on the same port: a new
    /// signing key (it makes one at every start), no sessions.
    pub fn restart(&mut self) {
        self.proc.stop();
        self.starts += 1;
        let log = self
            .config
            .with_file_name(format!("oidc-provider-{}.log", self.starts));
        self.proc = spawn(&self.config, &self.issuer, log);
    }

    /// The sidecar's `--oidc-config` for `apps` at this provider, trusting
    /// `cert`'s CA, with `roles` from the `groups` claim.
    pub fn sidecar_config(&self, cert: &EdgeCertificate, apps: &[App]) -> Value {
        let clients: Vec<Value> = apps
            .iter()
            .map(|app| {
                json!({
                    "host": app.host,
                    "client_id": app.client_id,
                    "client_secret": {"env": "PORTERO_OIDC_CLIENT_SECRET"},
                    "redirect_uri": app.redirect_uri(),
                })
            })
            .collect();
        json!({
            "issuer": self.issuer,
            "ca_file": cert.ca,
            "clients": clients,
            "scopes": ["openid", "email", "profile", "groups"],
            "claims": {"roles": "groups"},
            "provider_timeout_ms": 1500,
        })
    }
}

/// Starts `tests/oidc-provider/provider.mjs` with `config`, waiting for its
/// `ready` line.
fn spawn(config: &Path, issuer: &str, log: std::path::PathBuf) -> Proc {
    let script = workspace_root().join("tests/oidc-provider/provider.mjs");
    let mut proc = Proc::spawn(
        "oidc-provider",
        Command::new("node").arg(&script).arg(config),
        log.clone(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().any(|l| l.trim() == format!("ready {issuer}")) {
            return proc;
        }
        assert!(
            !proc.exited() && Instant::now() < deadline,
            "the OIDC provider did not start:\n{}",
            proc.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
