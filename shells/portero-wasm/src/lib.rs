//! The proxy-wasm shell: moves bytes between Envoy and [`portero_core::flow`].
//! No decisions here.
//!
//! Header maps are read and written as bytes through [`abi`], never
//! through the SDK's `get_map`/`get_map_value` (they decode values as UTF-8
//! and unwrap: one byte like `0xff` in any header was a panic, and a panic
//! poisons the VM for every later request on the worker).
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

//!
//! Built for `wasm32-wasip1` (`portero.wasm`). Natively, and in its own
//! tests, only the header-map codec compiles: the rest calls the proxy.

#[cfg(all(target_arch = "wasm32", not(test)))]
mod abi;
// Natively and in tests, nothing but its own tests calls the codec.
#[cfg_attr(any(test, not(target_arch = "wasm32")), allow(dead_code))]
mod http_map;
#[cfg(all(target_arch = "wasm32", not(test)))]
mod shell;
