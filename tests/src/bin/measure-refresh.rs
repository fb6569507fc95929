//! Measures the latency of a refreshing request against a plain one, both
//! flows, through the real stack (Envoy one worker, sidecar, Redis, Fastify).
//! A measurement, not a test: `cargo run --release -p portero-integration --bin measure-refresh [N]`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use portero_integration::{Stack, StackOptions};
use serde_json::json;

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i].as_secs_f64() * 1000.0
}

fn report(name: &str, samples: &mut [Duration]) {
    println!(
        "{name:<28} n={:<4} p50={:>6.2} ms  p99={:>6.2} ms",
        samples.len(),
        percentile(samples, 0.50),
        percentile(samples, 0.99)
    );
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let stack = Stack::start_with(StackOptions {
        access_ttl: 2,
        plugin_config_patch: Some(|config| {
            config["jwt"]["leeway_seconds"] = json!(0);
            config["jwt"]["refresh_window_seconds"] = json!(600);
        }),
        ..StackOptions::default()
    });
    let tokens: Vec<String> = (0..n).map(|_| stack.login_app("alan", "turing")).collect();
    let cookies: Vec<String> = (0..n).map(|_| stack.login_web("ada", "lovelace")).collect();
    std::thread::sleep(Duration::from_millis(3100));
    let (mut jwt_refresh, mut jwt_plain, mut cookie_refresh, mut cookie_plain) =
        (vec![], vec![], vec![], vec![]);
    for (token, cookie) in tokens.iter().zip(&cookies) {
        let t = Instant::now();
        let reply = stack.me_with_token(token);
        jwt_refresh.push(t.elapsed());
        let fresh = reply
            .header("x-portero-access-token")
            .expect("refreshed")
            .to_string();
        let t = Instant::now();
        let plain = stack.me_with_token(&fresh);
        jwt_plain.push(t.elapsed());
        assert_eq!(plain.status, 200);

        let t = Instant::now();
        assert_eq!(stack.me_with_cookie(cookie).status, 200);
        cookie_refresh.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(stack.me_with_cookie(cookie).status, 200);
        cookie_plain.push(t.elapsed());
    }
    report("jwt: refreshing request", &mut jwt_refresh);
    report("jwt: plain request", &mut jwt_plain);
    report("cookie: refreshing request", &mut cookie_refresh);
    report("cookie: plain request", &mut cookie_plain);
}
