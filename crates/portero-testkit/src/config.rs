//! A valid plugin configuration for unit tests and benches.

use serde_json::json;

use crate::tokens::{AUD, ISS, TEST_JWKS};
use portero_core::config::Config;

/// The configuration as JSON, to be changed by a test before parsing.
pub fn valid_json() -> serde_json::Value {
    json!({
        "cookie": {"keys": [{"id": 1, "secret": "0123456789abcdef0123456789abcdef"}]},
        "jwt": {
            "issuer": ISS,
            "audiences": [AUD],
            "jwks": serde_json::from_str::<serde_json::Value>(TEST_JWKS).unwrap(),
            "leeway_seconds": 5
        },
        "sidecar": {"cluster": "redis_sidecar", "token": "filter-token-0123456789"},
        "routes": [{"path_prefix": "/auth/", "policy": "off"}]
    })
}

pub fn valid_config() -> Config {
    Config::from_json(valid_json().to_string().as_bytes()).unwrap()
}
