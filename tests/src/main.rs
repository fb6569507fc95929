//! `portero-stack`: the demo stack of `make run`, the same processes the
//! integration tests start, on fixed documented ports. Stops everything on
//! Ctrl-C (SIGINT) or SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use portero_integration::{
    demo, plugin_config, render_envoy_config, with_more_sidecars, workspace_root, Stack,
    StackOptions, COOKIE_NAME,
};

/// Writes the compose files' inputs: in `compose/`, the demo's signing key
/// and edge certificate (handed to the containers as compose `secrets:`); in
/// `compose/image/`, the Envoy configs (service names instead of loopback)
/// the Envoy image holds. `make compose-config` stages the binaries beside
/// them.
fn compose_config() {
    let root = workspace_root();
    let dir = root.join("compose");
    let image = dir.join("image");
    std::fs::create_dir_all(&image).expect("compose/image/");
    let sidecar = root.join("target/release/redis-sidecar");
    let key = dir.join("signing-key.pem");
    if !key.exists() {
        let ok = Command::new(&sidecar)
            .args(["keygen", "--out"])
            .arg(&key)
            .status()
            .expect("redis-sidecar keygen")
            .success();
        assert!(ok, "redis-sidecar keygen failed");
    }
    let jwks = Command::new(&sidecar)
        .args(["jwks", "--key-id", "compose-key", "--signing-key"])
        .arg(&key)
        .output()
        .expect("redis-sidecar jwks");
    assert!(jwks.status.success(), "redis-sidecar jwks failed");
    let jwks: serde_json::Value = serde_json::from_slice(&jwks.stdout).expect("jwks");
    let config = plugin_config("redis_sidecar", &jwks);
    let yaml = render_envoy_config(&[
        ("LISTEN_ADDRESS", "0.0.0.0".into()),
        ("LISTEN_PORT", "8080".into()),
        ("ADMIN_PORT", "9901".into()),
        ("UPSTREAM_HOST", "fastify-api".into()),
        ("UPSTREAM_PORT", "3000".into()),
        ("WEB_HOST", "fresh-web".into()),
        ("WEB_PORT", "8000".into()),
        ("SIDECAR_HOST", "redis-sidecar".into()),
        ("SIDECAR_PORT", "7070".into()),
        ("SIGN_IN_PORT", "7072".into()),
        ("WASM_PATH", "/etc/portero/portero.wasm".into()),
        ("XFF_TRUSTED_HOPS", "0".into()),
        (
            "PLUGIN_CONFIG",
            serde_json::to_string(&config.to_string()).expect("json"),
        ),
    ]);
    // HTTPS on 8443 with a certificate made here (compose secrets, mounted
    // under /run/secrets/).
    let made = portero_integration::tls::edge_certificate(&dir);
    let in_container = portero_integration::tls::EdgeCertificate {
        cert: "/run/secrets/edge-cert".into(),
        key: "/run/secrets/edge-key".into(),
        ca: "/run/secrets/edge-ca".into(),
        ca_pem: made.ca_pem.clone(),
    };
    // Compose hands a file secret over as a bind mount with the file's own
    // owner and mode, and the containers run as nobody: the demo's keys must
    // be readable by others on this machine (replace them, see README).
    for file in [&key, &made.key, &made.cert] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", file.display()));
    }
    let yaml = portero_integration::tls::with_tls_listener(&yaml, 8080, 8443, &in_container);
    // docker-compose.ha.yml: the filter's calls balanced over two sidecars.
    let ha = with_more_sidecars(&yaml, &[("redis-sidecar-2", 7070)]);
    std::fs::write(image.join("envoy.yaml"), yaml).expect("compose/image/envoy.yaml");
    std::fs::write(image.join("envoy-ha.yaml"), ha).expect("compose/image/envoy-ha.yaml");
    println!(
        "wrote compose/image/envoy.yaml, compose/image/envoy-ha.yaml, compose/signing-key.pem, compose/edge-*.pem (trust compose/edge-ca.pem for https://localhost:8443)"
    );
}

const USAGE: &str = "\
portero-stack: the demo stack of `make run` (Redis, redis-sidecar, Fastify,
the web app, Envoy with portero), on fixed ports; Ctrl-C stops it.

usage: portero-stack                 start the demo
       portero-stack compose-config  write compose/ for docker-compose (keys, Envoy configs)
       portero-stack --help          this text

environment (defaults in brackets):
  PORTERO_PORT [8080]  PORTERO_HTTPS_PORT [8443]  PORTERO_ADMIN_PORT [9901]
  PORTERO_SIDECAR_PORT [7070]  PORTERO_FORWARD_AUTH_PORT [7071]
  PORTERO_REDIS_PORT [6380]  PORTERO_UPSTREAM_PORT [3000]  PORTERO_WEB_PORT [8000]
  PORTERO_SIGN_IN_PORT [7072]  PORTERO_PROVIDER_PORT [9443]
  PORTERO_ACCESS_TTL [900]         access-token lifetime, seconds (try 10
                                   to watch refreshes happen)
  PORTERO_IDLE_TIMEOUT [1800]      session idle timeout, seconds
  PORTERO_ABSOLUTE_TIMEOUT [86400] session absolute lifetime, seconds
";

/// A number from the environment; a value that is not one stops the demo
/// with its name rather than being quietly replaced by the default.
fn setting<T: std::str::FromStr + Copy>(var: &str, default: T) -> T {
    match std::env::var(var) {
        Err(_) => default,
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            eprintln!("portero-stack: {var}={text:?} is not a number");
            std::process::exit(2);
        }),
    }
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("compose-config") => {
            compose_config();
            return;
        }
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            return;
        }
        Some(other) => {
            eprint!("portero-stack: unknown argument {other:?}\n\n{USAGE}");
            std::process::exit(2);
        }
    }
    let root = workspace_root();
    let run_dir = root.join(".run");
    std::fs::create_dir_all(&run_dir).expect(".run/");
    // The demo signs with its own key, made once; tests use a committed one.
    let key = run_dir.join("signing-key.pem");
    if !key.exists() {
        let status = Command::new(root.join("target/release/redis-sidecar"))
            .args(["keygen", "--out"])
            .arg(&key)
            .status()
            .expect("redis-sidecar keygen");
        assert!(status.success(), "redis-sidecar keygen failed");
    }
    let port = |var: &str, default: u16| -> u16 { setting(var, default) };
    let defaults = StackOptions::default();
    let options = StackOptions {
        listen_port: port("PORTERO_PORT", demo::EDGE_PORT),
        admin_port: port("PORTERO_ADMIN_PORT", demo::ADMIN_PORT),
        sidecar_port: port("PORTERO_SIDECAR_PORT", demo::SIDECAR_PORT),
        forward_auth_port: port("PORTERO_FORWARD_AUTH_PORT", demo::FORWARD_AUTH_PORT),
        redis_port: port("PORTERO_REDIS_PORT", demo::REDIS_PORT),
        upstream_port: port("PORTERO_UPSTREAM_PORT", demo::UPSTREAM_PORT),
        signing_key: key,
        key_id: "demo-key".into(),
        work_dir: Some(PathBuf::from(&run_dir)),
        https: true,
        https_port: port("PORTERO_HTTPS_PORT", demo::HTTPS_PORT),
        web_app: true,
        web_port: port("PORTERO_WEB_PORT", demo::WEB_PORT),
        // The organisation's sign-in beside the app's own: an OIDC provider
        // (tests/oidc-provider), linked from the login page.
        oidc: true,
        oidc_login_redirect: false,
        sign_in_port: port("PORTERO_SIGN_IN_PORT", demo::SIGN_IN_PORT),
        provider_port: port("PORTERO_PROVIDER_PORT", demo::PROVIDER_PORT),
        access_ttl: setting("PORTERO_ACCESS_TTL", defaults.access_ttl),
        idle_timeout: setting("PORTERO_IDLE_TIMEOUT", defaults.idle_timeout),
        absolute_timeout: setting("PORTERO_ABSOLUTE_TIMEOUT", defaults.absolute_timeout),
        ..defaults
    };

    // Block the stop signals before any thread exists, then wait for one.
    let mut signals: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigemptyset(&mut signals);
        libc::sigaddset(&mut signals, libc::SIGINT);
        libc::sigaddset(&mut signals, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut());
    }

    let stack = Stack::start_with(options);
    let o = &stack.options;
    let url = format!("http://127.0.0.1:{}", o.listen_port);
    let (https_port, cert) = stack.edge_tls.clone().expect("the HTTPS listener");
    println!(
        r#"
portero demo is up (logs in .run/). Open the site in a browser:

    https://localhost:{https_port}/      log in as ada / lovelace (admin) or alan / turing

  or "Sign in with your organisation" on the login page: the OpenID Connect
  provider at {provider} (grace / hopper, admin; alan / turing).

  The certificate is made by the demo's own CA, {ca}:
  import it into the browser (or accept the warning once). The session cookie
  is __Host-, so the site needs HTTPS.

  Envoy + portero   https://localhost:{https_port}   (web pages: /, /login, /account, /admin)
                    {url}   (plain HTTP, for the curl examples below)
                    admin http://127.0.0.1:{admin}
  web app (Deno)    http://127.0.0.1:{web}
  Fastify API       http://127.0.0.1:{upstream}
  redis-sidecar     http://127.0.0.1:{sidecar}   (forward auth: http://127.0.0.1:{forward_auth})
  Redis             127.0.0.1:{redis}

Web client (cookie) with curl:
  COOKIE=$(curl -si -H 'content-type: application/json' \
       -d '{{"username":"ada","password":"lovelace","client":"web"}}' {url}/auth/login \
       | sed -nE 's/^set-cookie: {cookie}=([^;]+).*/\1/ip')
  curl -s -H "cookie: {cookie}=$COOKIE" {url}/me

App client (JWT):
  TOKEN=$(curl -s -H 'content-type: application/json' \
       -d '{{"username":"alan","password":"turing","client":"app"}}' {url}/auth/login | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -s -H "authorization: Bearer $TOKEN" {url}/me

Ctrl-C stops everything.
"#,
        web = o.web_port,
        admin = o.admin_port,
        sidecar = o.sidecar_port,
        forward_auth = o.forward_auth_port,
        upstream = o.upstream_port,
        redis = o.redis_port,
        cookie = COOKIE_NAME,
        ca = cert.ca.display(),
        provider = stack.provider.as_ref().map_or("", |p| p.issuer.as_str()),
    );

    let mut received: libc::c_int = 0;
    unsafe {
        libc::sigwait(&signals, &mut received);
    }
    println!("stopping…");
    drop(stack);
}
