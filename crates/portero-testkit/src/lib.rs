//! Test machinery, in one place for the unit tests, the benches and the
//! integration harness: one fake host, one token minter with the test keys,
//! a valid configuration.
//!
//! Compiled for `cargo test` and with the `testkit` feature only; the filter
//! never contains it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod config;
pub mod host;
pub mod tokens;

pub use config::{valid_config, valid_json};
pub use host::FakeHost;
pub use tokens::{claims, sign, sign_with, Minter, NOW};
