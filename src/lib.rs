//! portero: an edge session gate for Envoy.
//!
//! Everything that decides lives in plain Rust that does not know it runs in
//! wasm: the cookie codec ([`cookie`]), access-token verification ([`token`]),
//! the plugin configuration ([`config`]) and the flow of one request as a
//! state machine over a small host trait ([`flow`]). The proxy-wasm shell
//! (`shell`, built for wasm only) moves bytes between Envoy and that core;
//! `dynamic_module` (feature `dynamic-module`, native) does the same over
//! Envoy's dynamic-module ABI.
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
pub mod edited_headers;
pub mod feed;
pub mod flow;
pub mod http;
pub mod http_map;
pub mod jwks;
pub mod metrics;
pub mod periodic;
pub mod policy;
pub mod reject;
pub mod request_path;
pub mod rs256;
pub mod token;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

#[cfg(any(test, feature = "dynamic-module"))]
mod live_configs;

#[cfg(all(target_arch = "wasm32", not(test)))]
mod shell;

/// The same core as a native Envoy dynamic module (experimental; see the
/// module's documentation for what it does not carry over yet).
#[cfg(all(feature = "dynamic-module", not(target_arch = "wasm32"), not(test)))]
mod dynamic_module;
