//! redis-sidecar: the session store service of portero.
//!
//! proxy-wasm filters cannot open TCP sockets, so the filter reaches Redis
//! through this small HTTP service (an Envoy cluster it calls with
//! `dispatch_http_call`). It also holds the RS256 private key: it signs the
//! access tokens and serves the JWKS.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use redis_sidecar::backend::{RedisConnect, RedisTarget};
use redis_sidecar::{api, eviction, forward_auth, keys, metrics, oidc, store};

#[derive(Parser)]
#[command(
    name = "redis-sidecar",
    version,
    about = "portero's session store service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the /v1 API.
    Serve(Box<ServeArgs>),
    /// Write a new RS256 private key (PKCS#8 PEM) to a file.
    Keygen {
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Print the JWKS of a private key (for the filter's `jwt.jwks`).
    Jwks {
        #[arg(long, env = "PORTERO_SIGNING_KEY_FILE")]
        signing_key: std::path::PathBuf,
        #[arg(long, env = "PORTERO_KEY_ID")]
        key_id: Option<String>,
    },
    /// Print the API's OpenAPI 3.1 document (docs/sidecar-openapi.json).
    Openapi,
}

/// Every flag can also come from the environment variable named beside it;
/// prefer the environment (or a file) for secrets, which flags show in `ps`.
#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PORTERO_SIDECAR_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Forward auth (off unless set): serve portero's per-request check on
    /// this address too, for Envoy's ext_authz, nginx auth_request, Traefik
    /// forwardAuth or Caddy forward_auth. Only the proxy may reach it.
    #[arg(
        long,
        env = "PORTERO_FORWARD_AUTH_LISTEN",
        requires = "forward_auth_config"
    )]
    forward_auth_listen: Option<SocketAddr>,
    /// The plugin config (the filter's JSON) the forward-auth check runs
    /// with; its `sidecar` section and pinned keys are this sidecar's own.
    #[arg(long, env = "PORTERO_FORWARD_AUTH_CONFIG")]
    forward_auth_config: Option<std::path::PathBuf>,
    /// Sign-in with an OpenID Connect provider (off unless set): the JSON
    /// file that names the provider and the apps (docs/oidc.md). Its pages
    /// are served on --public-listen.
    #[arg(long, env = "PORTERO_OIDC_CONFIG", requires = "public_listen")]
    oidc_config: Option<std::path::PathBuf>,
    /// Where the browser-facing sign-in routes are served (Envoy routes
    /// `/.portero/oidc/` there); nothing else is served on it.
    #[arg(long, env = "PORTERO_PUBLIC_LISTEN", requires = "oidc_config")]
    public_listen: Option<SocketAddr>,
    /// How Redis is deployed: `standalone` (one server, --redis-url),
    /// `sentinel` (the primary Sentinel names: --redis-sentinels,
    /// --redis-master-name) or `cluster` (--redis-cluster-nodes).
    #[arg(long, env = "PORTERO_REDIS_MODE", value_enum, default_value_t = RedisMode::Standalone)]
    redis_mode: RedisMode,
    /// Redis URL in standalone mode (redis://[user:pass@]host:port[/db];
    /// rediss:// for TLS).
    #[arg(
        long,
        env = "PORTERO_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// Sentinel mode: the sentinels, host:port,host:port,...
    #[arg(long, env = "PORTERO_REDIS_SENTINELS", value_delimiter = ',')]
    redis_sentinels: Vec<String>,
    /// Sentinel mode: the name of the monitored primary.
    #[arg(long, env = "PORTERO_REDIS_MASTER_NAME", default_value = "portero")]
    redis_master_name: String,
    /// Sentinel mode: ACL user of the Redis nodes.
    #[arg(long, env = "PORTERO_REDIS_USERNAME")]
    redis_username: Option<String>,
    /// Sentinel mode: password of the Redis nodes.
    #[arg(long, env = "PORTERO_REDIS_PASSWORD", hide_env_values = true)]
    redis_password: Option<String>,
    /// Sentinel mode: password of the sentinels themselves.
    #[arg(long, env = "PORTERO_REDIS_SENTINEL_PASSWORD", hide_env_values = true)]
    redis_sentinel_password: Option<String>,
    /// CA certificate(s), PEM, trusted for TLS to Redis (rediss:// URLs;
    /// with Sentinel it turns TLS on to the Redis nodes) instead of the
    /// system's roots.
    #[arg(long, env = "PORTERO_REDIS_TLS_CA_FILE")]
    redis_tls_ca_file: Option<std::path::PathBuf>,
    /// Cluster mode: some of the nodes, as URLs (redis://[user:pass@]host:port),
    /// comma-separated; the rest is discovered.
    #[arg(long, env = "PORTERO_REDIS_CLUSTER_NODES", value_delimiter = ',')]
    redis_cluster_nodes: Vec<String>,
    /// Replicas that must acknowledge each write that matters (login,
    /// rotation, end, revoke-all, user changes) before it is answered
    /// (Redis WAIT). Default: 1 in sentinel and cluster modes, 0 (no wait)
    /// standalone. A write not acknowledged in time by connected replicas is
    /// a 503 to its caller; with fewer connected than this, a write waits
    /// only for those (none: no wait) and is counted as under-replicated.
    #[arg(long, env = "PORTERO_REDIS_WAIT_REPLICAS")]
    redis_wait_replicas: Option<u32>,
    /// How long a write waits for those replicas, in milliseconds (shorter
    /// than --redis-timeout-ms).
    #[arg(long, env = "PORTERO_REDIS_WAIT_TIMEOUT_MS", default_value_t = 100)]
    redis_wait_timeout_ms: u64,
    /// Start even if Redis's maxmemory-policy may evict user records
    /// (allkeys-*): sessions of an evicted user answer 503 until the record
    /// is back. Without it, such a policy stops the start with an error.
    #[arg(long, env = "PORTERO_ALLOW_EVICTING_REDIS")]
    allow_evicting_redis: bool,
    /// Prefix of every Redis key.
    #[arg(long, env = "PORTERO_KEY_PREFIX", default_value = "portero")]
    key_prefix: String,
    /// Timeout of each Redis connect and command, in milliseconds.
    #[arg(long, env = "PORTERO_REDIS_TIMEOUT_MS", default_value_t = 250)]
    redis_timeout_ms: u64,
    /// RS256 private key (PEM, PKCS#8 or PKCS#1). Or --signing-keys-dir.
    #[arg(long, env = "PORTERO_SIGNING_KEY_FILE")]
    signing_key: Option<std::path::PathBuf>,
    /// `kid` of --signing-key; default: its RFC 7638 thumbprint.
    #[arg(long, env = "PORTERO_KEY_ID")]
    key_id: Option<String>,
    /// A directory of keys that rotate while the sidecar runs: every
    /// `<kid>.pem` is published in the JWKS, the file `active` names the one
    /// that signs. Read again every --signing-keys-reload-seconds.
    #[arg(long, env = "PORTERO_SIGNING_KEYS_DIR", conflicts_with = "signing_key")]
    signing_keys_dir: Option<std::path::PathBuf>,
    /// How often --signing-keys-dir is read again, seconds.
    #[arg(
        long,
        env = "PORTERO_SIGNING_KEYS_RELOAD_SECONDS",
        default_value_t = 10
    )]
    signing_keys_reload_seconds: u64,
    /// Credential of the filter (look-ups). At least 16 characters.
    #[arg(long, env = "PORTERO_FILTER_TOKEN", hide_env_values = true)]
    filter_token: String,
    /// Credential of admin calls (create, end). At least 16 characters.
    #[arg(long, env = "PORTERO_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// Key of the session-id hash (at least 32 bytes).
    #[arg(long, env = "PORTERO_SESSION_HASH_KEY", hide_env_values = true)]
    session_hash_key: String,
    /// `iss` of the access tokens.
    #[arg(long, env = "PORTERO_ISSUER", default_value = "https://portero.local")]
    issuer: String,
    /// `aud` of the access tokens.
    #[arg(long, env = "PORTERO_AUDIENCE", default_value = "portero-apps")]
    audience: String,
    /// Lifetime of an access token, seconds.
    #[arg(long, env = "PORTERO_ACCESS_TTL", default_value_t = 900)]
    access_ttl: u64,
    /// Idle timeout of a session, seconds.
    #[arg(long, env = "PORTERO_IDLE_TIMEOUT", default_value_t = 1800)]
    idle_timeout: u64,
    /// Absolute lifetime of a session, seconds.
    #[arg(long, env = "PORTERO_ABSOLUTE_TIMEOUT", default_value_t = 86400)]
    absolute_timeout: u64,
    /// After the new access token's first use, how long the previous one
    /// still maps to it (requests already in flight), seconds.
    #[arg(long, env = "PORTERO_REFRESH_GRACE", default_value_t = 10)]
    refresh_grace: u64,
    /// Until the new access token is first used, how long the previous one
    /// maps to it at most (a client that never received the answer — a 503,
    /// a dropped connection — retries with the old one), seconds. Keep it at
    /// least the filter's `jwt.refresh_window_seconds`.
    #[arg(long, env = "PORTERO_REFRESH_EXCHANGE_MAX", default_value_t = 3600)]
    refresh_exchange_max: u64,
    /// End the session when a rotated-away token comes back after the grace
    /// window (RFC 9700 reuse detection).
    #[arg(long, env = "PORTERO_REVOKE_ON_REPLAY", default_value_t = true, action = clap::ArgAction::Set)]
    revoke_on_replay: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RedisMode {
    Standalone,
    Sentinel,
    Cluster,
}

impl ServeArgs {
    fn durability(&self) -> store::Durability {
        let default_replicas = match self.redis_mode {
            RedisMode::Standalone => 0,
            RedisMode::Sentinel | RedisMode::Cluster => 1,
        };
        store::Durability {
            replicas: self.redis_wait_replicas.unwrap_or(default_replicas),
            timeout: Duration::from_millis(self.redis_wait_timeout_ms),
        }
    }

    fn redis_target(&self) -> RedisTarget {
        match self.redis_mode {
            RedisMode::Standalone => RedisTarget::Standalone {
                url: self.redis_url.clone(),
            },
            RedisMode::Sentinel => RedisTarget::Sentinel {
                sentinels: self.redis_sentinels.clone(),
                master_name: self.redis_master_name.clone(),
                username: self.redis_username.clone(),
                password: self.redis_password.clone(),
                sentinel_password: self.redis_sentinel_password.clone(),
            },
            RedisMode::Cluster => RedisTarget::Cluster {
                nodes: self.redis_cluster_nodes.clone(),
            },
        }
    }
}

fn build_state(args: &ServeArgs) -> Result<api::AppState, String> {
    if args.filter_token.len() < 16 || args.admin_token.len() < 16 {
        return Err("--filter-token and --admin-token need at least 16 characters".into());
    }
    if args.filter_token == args.admin_token {
        return Err("--filter-token and --admin-token must differ".into());
    }
    if args.session_hash_key.len() < 32 {
        return Err("--session-hash-key needs at least 32 bytes".into());
    }
    if args.idle_timeout == 0 || args.absolute_timeout == 0 || args.access_ttl == 0 {
        return Err("--idle-timeout, --absolute-timeout and --access-ttl must be positive".into());
    }
    let keys = match (&args.signing_key, &args.signing_keys_dir) {
        (Some(path), None) => {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| format!("--signing-key {}: {e}", path.display()))?;
            let key = keys::SigningKey::from_pem(&pem, args.key_id.clone())
                .map_err(|e| format!("--signing-key {}: {e}", path.display()))?;
            keys::Keys::fixed(key)
        }
        (None, Some(dir)) => {
            keys::Keys::from_dir(dir).map_err(|e| format!("--signing-keys-dir: {e}"))?
        }
        _ => return Err("one of --signing-key and --signing-keys-dir is required".into()),
    };
    let tls_ca = match &args.redis_tls_ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| format!("--redis-tls-ca-file {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let store = store::Store::new(
        &RedisConnect {
            target: args.redis_target(),
            tls_ca,
        },
        &args.key_prefix,
        args.session_hash_key.as_bytes(),
        Duration::from_millis(args.redis_timeout_ms),
        args.durability(),
    )
    .map_err(|e| format!("--redis-mode {}: {e}", args.redis_target().describe()))?;
    let metrics = Arc::new(metrics::Metrics::new(store.under_replicated_writes.clone()));
    Ok(api::AppState {
        store,
        keys,
        issuer: args.issuer.clone(),
        audience: args.audience.clone(),
        access_ttl: args.access_ttl,
        lifetimes: store::Lifetimes {
            idle: args.idle_timeout,
            absolute: args.absolute_timeout,
        },
        rotation: store::RotationRules {
            grace: args.refresh_grace,
            exchange_max: args.refresh_exchange_max.max(args.refresh_grace),
            revoke_on_replay: args.revoke_on_replay,
        },
        filter_token: api::token_digest(&args.filter_token),
        admin_token: api::token_digest(&args.admin_token),
        metrics,
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Whether the start-up check of `maxmemory-policy` got an answer.
enum PolicyCheck {
    Done,
    /// Redis could not be reached: ask again later.
    Unreachable(String),
}

/// Reads and judges Redis's `maxmemory-policy` (see [`eviction`]): `Err`
/// with the reason to refuse to run.
async fn check_maxmemory_policy(
    state: &api::AppState,
    redis: &str,
    allow_evicting: bool,
) -> Result<PolicyCheck, String> {
    match state.store.maxmemory_policies().await {
        Ok(policies) => {
            for warning in
                eviction::judge(&policies, allow_evicting).map_err(|e| format!("{redis}: {e}"))?
            {
                tracing::warn!(redis = %redis, "{warning}");
            }
            Ok(PolicyCheck::Done)
        }
        Err(e) if eviction::is_unreachable(&e) => Ok(PolicyCheck::Unreachable(e.to_string())),
        Err(e) => {
            tracing::warn!(redis = %redis, error = %e, "could not read Redis's maxmemory-policy (CONFIG refused: an ACL, or a managed Redis); make sure it is noeviction, or volatile-*: an allkeys-* policy may evict user records");
            Ok(PolicyCheck::Done)
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let state = Arc::new(build_state(&args)?);
    let refusal_rx = watch_maxmemory_policy(&state, &args).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    tracing::info!(listen = %args.listen, redis = %args.redis_target().describe(), keys = %state.keys.current().describe(), "redis-sidecar serving");
    if state.keys.reloads() {
        let period = Duration::from_secs(args.signing_keys_reload_seconds.max(1));
        reload_keys_every(period, state.clone());
    }
    if let (Some(listen), Some(path)) = (args.forward_auth_listen, &args.forward_auth_config) {
        serve_forward_auth(listen, path, &args.filter_token, &state).await?;
    }
    if let (Some(listen), Some(path)) = (args.public_listen, &args.oidc_config) {
        serve_sign_in(listen, path, &state).await?;
    }
    let stop = stopped(refusal_rx.clone());
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(refusal) = refusal_rx.borrow().clone() {
        return Err(refusal);
    }
    tracing::info!("redis-sidecar stopped");
    Ok(())
}

/// Checks Redis's `maxmemory-policy` before serving. Refused at start, or
/// later if Redis was down at start (then it is checked every second until
/// it answers, and the sidecar stops with the reason, as it would have
/// refused to start): the receiver gets that reason.
async fn watch_maxmemory_policy(
    state: &Arc<api::AppState>,
    args: &ServeArgs,
) -> Result<tokio::sync::watch::Receiver<Option<String>>, String> {
    let (refusal_tx, refusal_rx) = tokio::sync::watch::channel(None::<String>);
    let redis = args.redis_target().describe();
    let allow_evicting = args.allow_evicting_redis;
    if let PolicyCheck::Unreachable(e) =
        check_maxmemory_policy(state, &redis, allow_evicting).await?
    {
        tracing::warn!(error = %e, "Redis unreachable at start: its maxmemory-policy is checked once it answers");
        let state = state.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            loop {
                ticks.tick().await;
                match check_maxmemory_policy(&state, &redis, allow_evicting).await {
                    Ok(PolicyCheck::Done) => break,
                    Ok(PolicyCheck::Unreachable(_)) => {}
                    Err(refusal) => {
                        let _ = refusal_tx.send(Some(refusal));
                        break;
                    }
                }
            }
        });
    }
    Ok(refusal_rx)
}

/// Reads the signing keys again every `period` (a key directory rotates
/// while the sidecar runs), keeping the current ones when that fails.
fn reload_keys_every(period: Duration, state: Arc<api::AppState>) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            match state.keys.reload() {
                Ok(Some(keys)) => tracing::info!(%keys, "signing keys reloaded"),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "signing keys not reloaded; keeping the current ones")
                }
            }
        }
    });
}

/// Serves the forward-auth check on `listen`, with the plugin config at
/// `path`, beside the API (whose router it calls in-process).
async fn serve_forward_auth(
    listen: SocketAddr,
    path: &std::path::Path,
    filter_token: &str,
    state: &Arc<api::AppState>,
) -> Result<(), String> {
    let config = std::fs::read(path)
        .map_err(|e| format!("--forward-auth-config {}: {e}", path.display()))?;
    let service = forward_auth::ForwardAuth::new(
        &config,
        filter_token,
        state.clone(),
        api::router(state.clone()),
        tokio::runtime::Handle::current(),
    )?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("--forward-auth-listen {listen}: {e}"))?;
    tracing::info!(listen = %listen, "forward auth serving");
    let app =
        forward_auth::router(Arc::new(service)).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "forward auth stopped");
        }
    });
    Ok(())
}

/// Serves the OIDC sign-in routes on `listen`, with the configuration at
/// `path`.
async fn serve_sign_in(
    listen: SocketAddr,
    path: &std::path::Path,
    state: &Arc<api::AppState>,
) -> Result<(), String> {
    let config = oidc::load(path).map_err(|e| format!("--oidc-config {e}"))?;
    let sign_in = oidc::SignIn::new(config, state.clone())
        .map_err(|e| format!("--oidc-config {}: {e}", path.display()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("--public-listen {listen}: {e}"))?;
    tracing::info!(listen = %listen, provider = %sign_in.describe(), "sign-in serving");
    let app = oidc::router(Arc::new(sign_in));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "sign-in stopped");
        }
    });
    Ok(())
}

/// When the API stops: at SIGINT or SIGTERM, or when a later check of
/// `maxmemory-policy` refuses.
async fn stopped(mut refused: tokio::sync::watch::Receiver<Option<String>>) {
    tokio::select! {
        _ = shutdown_signal() => {},
        _ = async {
            // A check that ended without refusing closes the channel:
            // nothing to wait for then.
            if refused.wait_for(Option::is_some).await.is_err() {
                std::future::pending::<()>().await;
            }
        } => {},
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORTERO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only where a terminal shows them, never in a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(serve(*args))),
        Command::Keygen { out } => keys::generate_pem().and_then(|pem| write_private(&out, &pem)),
        Command::Jwks {
            signing_key,
            key_id,
        } => std::fs::read_to_string(&signing_key)
            .map_err(|e| format!("{}: {e}", signing_key.display()))
            .and_then(|pem| keys::SigningKey::from_pem(&pem, key_id))
            .map(|key| println!("{}", key.jwks())),
        Command::Openapi => {
            print!("{}", api::openapi_json());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redis-sidecar: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a secret file readable by its owner only.
fn write_private(path: &std::path::Path, contents: &str) -> Result<(), String> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}
