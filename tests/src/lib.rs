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

/// Fixed credentials of the test and demo stacks (never use them elsewhere).
pub const FILTER_TOKEN: &str = "filter-token-demo-0123456789";
pub const ADMIN_TOKEN: &str = "admin-token-demo-0123456789";
pub const SESSION_HASH_KEY: &str = "session-hash-key-demo-0123456789abcdef";
pub const COOKIE_SECRET: &str = "cookie-secret-demo-0123456789abcdef";
pub const COOKIE_NAME: &str = "__Host-portero";
pub const ISSUER: &str = "https://portero.local";
pub const AUDIENCE: &str = "portero-apps";

/// `make run`'s ports (`portero-stack`; `PORTERO_PORT` and the like move
/// them): what the docs' examples say a reader's stack listens on.
pub mod demo {
    pub const EDGE_PORT: u16 = 8080;
    pub const HTTPS_PORT: u16 = 8443;
    pub const ADMIN_PORT: u16 = 9901;
    pub const SIDECAR_PORT: u16 = 7070;
    /// The sidecar's forward-auth listener.
    pub const FORWARD_AUTH_PORT: u16 = 7071;
    pub const REDIS_PORT: u16 = 6380;
    pub const UPSTREAM_PORT: u16 = 3000;
    pub const WEB_PORT: u16 = 8000;
    /// The sidecar's sign-in pages (`--public-listen`).
    pub const SIGN_IN_PORT: u16 = 7072;
    /// The demo's OpenID Connect provider (tests/oidc-provider).
    pub const PROVIDER_PORT: u16 = 9443;
}

/// The test signing key and the one token minter (the filter's testkit).
pub use portero_testkit::tokens::{Minter, TEST_KID};

pub mod browser;
pub mod client;
pub mod compose;
pub mod docs;
pub mod oidc;
pub mod proc;
pub mod stack;
pub mod tls;
pub mod topology;
pub mod wire;

pub use client::{claims_of, raw_exchange, raw_status, Reply, Rng};
pub use proc::{envoy_binary, fixture, free_port, require, unix_now, workspace_root, Proc};
pub use stack::{
    dynamic_module_dir, only_in_the_wasm_pass, plugin_config, render_envoy_config,
    skip_unless_wasm, wasm_environment, with_more_sidecars, Shell, Stack, StackOptions, SECRET_ENV,
};
