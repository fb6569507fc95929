//! portero: an edge session gate for Envoy.
//!
//! Everything that decides lives in plain Rust that does not know it runs in
//! wasm: the cookie codec ([`cookie`]), access-token verification ([`token`]),
//! the plugin configuration ([`config`]) and the flow of one request as a
//! state machine over a small host trait ([`flow`]). The shells move bytes
//! between a proxy and this core: the proxy-wasm filter
//! (`shells/portero-wasm`), the Envoy dynamic module
//! (`shells/portero-module`) and forward auth (in `redis-sidecar`).
//! No `unsafe` here: that lives only in the shells' ABI files.
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod background;
pub mod cache;
pub mod config;
pub mod cookie;
pub mod crypto;
pub mod edited_headers;
pub mod feed;
pub mod flow;
pub mod http;
pub mod jwks;
pub mod metrics;
pub mod pages;
pub mod periodic;
pub mod policy;
pub mod reject;
pub mod request_path;
pub mod rs256;
pub mod token;
