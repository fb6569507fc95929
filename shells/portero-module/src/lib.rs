//! portero as an Envoy dynamic module (experimental): a second thin shell
//! over the same core and the same [`Host`] trait as the wasm filter,
//! compiled natively (`cargo build --release -p portero-module` →
//! `target/release/libportero.so`) and loaded by Envoy's
//! `DynamicModuleFilter`. It moves bytes between Envoy's C ABI and the flow:
//!
//! - `abi`: the bindings, hand-written and pinned to Envoy 1.40, and safe
//!   handles over Envoy's callbacks; `exports`: the hooks Envoy calls
//!   (pointers in, safe values out). The shell's only `unsafe` is in these two;
//! - `hooks`: what each hook does, per request (`FilterState`);
//! - `host`: the core's `Host` over Envoy's callbacks, and metric ids;
//! - `worker`: per-worker state per filter config (`live_configs`: which
//!   configs Envoy still holds);
//! - `logger`: the `log` crate into Envoy's log.
//!
//! The background duties (revocation feed, JWKS fetch; see
//! [`portero_core::background`]) have no timer here (the ABI gives an HTTP filter
//! none): each worker makes them from a request, which waits for them (one
//! request per worker per poll interval pays a sidecar round trip), so its
//! cached views and keys stay as fresh as the wasm filter's.
//!
//! Metrics are Envoy's own labelled counters, defined once per filter
//! config. There is no sandbox: a memory-safety bug here takes Envoy down,
//! which is why every hook catches panics and fails closed.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

// The hooks reference Envoy's own symbols, which a test binary cannot
// link: only the parts that need no Envoy are compiled for `cargo test`.
#[cfg(not(test))]
mod abi;
#[cfg(not(test))]
mod exports;
#[cfg(not(test))]
mod hooks;
#[cfg(not(test))]
mod host;
mod live_configs;
#[cfg(not(test))]
mod logger;
#[cfg(not(test))]
mod worker;
