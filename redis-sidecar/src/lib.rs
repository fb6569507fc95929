//! redis-sidecar as a library: the HTTP API ([`api::router`] over an
//! [`api::AppState`]), the session store over Redis ([`store`]), the signing
//! keys ([`keys`]) and the metrics. The binary (`main.rs`) only parses flags
//! and serves; tests build the same router and store in-process.
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod api;
pub mod backend;
pub mod eviction;
pub mod forward_auth;
pub mod keys;
pub mod metrics;
pub mod oidc;
pub mod store;
