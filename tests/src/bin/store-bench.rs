//! The sidecar's session look-ups per second on a standalone Redis and on a
//! Redis Cluster (3 primaries, 3 replicas), side by side in one run, and
//! Redis memory per session. Part of `make bench`.
//!
//! Each contender: one `redis-sidecar` process on that topology, the same
//! number of sessions (made through the admin API), then `BENCH_CLIENTS`
//! threads sending `POST /v1/sessions/lookup` for `BENCH_SECONDS` (keep-alive
//! connections, session handles in turn). On a 2-core machine the clients,
//! the sidecar and Redis share the cores: read the ratio, not the figure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portero_integration::topology::{cli, Topology};
use portero_integration::{
    fixture, free_port, workspace_root, Proc, ADMIN_TOKEN, AUDIENCE, FILTER_TOKEN, ISSUER,
    SESSION_HASH_KEY, TEST_KID,
};
use serde_json::{json, Value};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn post(agent: &ureq::Agent, url: &str, token: &str, body: &Value) -> (u16, Value) {
    let mut reply = agent
        .post(url)
        .header("authorization", &format!("Bearer {token}"))
        .header("content-type", "application/json")
        .send(body.to_string().as_bytes())
        .expect("sidecar reachable");
    let status = reply.status().as_u16();
    let body: Value = reply.body_mut().read_json().unwrap_or(Value::Null);
    (status, body)
}

fn sidecar(topology: &Topology, dir: &std::path::Path) -> (Proc, u16) {
    let port = free_port();
    let mut command = Command::new(workspace_root().join("target/release/redis-sidecar"));
    command
        .arg("serve")
        .args(topology.sidecar_args())
        .env("PORTERO_SIDECAR_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTERO_SIGNING_KEY_FILE", fixture("test-rsa.pem"))
        .env("PORTERO_KEY_ID", TEST_KID)
        .env("PORTERO_FILTER_TOKEN", FILTER_TOKEN)
        .env("PORTERO_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("PORTERO_SESSION_HASH_KEY", SESSION_HASH_KEY)
        .env("PORTERO_ISSUER", ISSUER)
        .env("PORTERO_AUDIENCE", AUDIENCE)
        .env("PORTERO_LOG", "warn");
    let proc = Proc::spawn_tied("sidecar", command, dir.join(format!("sidecar-{port}.log")));
    let deadline = Instant::now() + Duration::from_secs(10);
    let agent = agent();
    while agent
        .get(&format!("http://127.0.0.1:{port}/readyz"))
        .call()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
        != 200
    {
        assert!(Instant::now() < deadline, "sidecar not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    (proc, port)
}

/// Logs `n` sessions in (across `users` users); returns a look-up body for each (its handle and token jti).
fn sessions(port: u16, n: usize, users: usize) -> Vec<serde_json::Value> {
    let agent = agent();
    let url = format!("http://127.0.0.1:{port}/v1/sessions");
    (0..n)
        .map(|i| {
            let (status, body) = post(
                &agent,
                &url,
                ADMIN_TOKEN,
                &json!({"user_id": format!("bench-user-{}", i % users),
                        "email": "bench@example.com", "roles": ["dev"],
                        "client_ip": "127.0.0.1", "user_agent": "store-bench"}),
            );
            assert_eq!(status, 201, "login: {body}");
            // A look-up by handle proves the token by its jti.
            let jti = portero_integration::claims_of(body["access_token"].as_str().unwrap()).jti;
            json!({"session_handle": body["session_handle"], "presented_jti": jti})
        })
        .collect()
}

/// Look-ups per second by `clients` threads for `seconds`.
fn lookups_per_second(
    port: u16,
    handles: &[serde_json::Value],
    clients: usize,
    seconds: f64,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let handles = Arc::new(handles.to_vec());
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (stop, done, handles) = (stop.clone(), done.clone(), handles.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let url = format!("http://127.0.0.1:{port}/v1/sessions/lookup");
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let handle = &handles[i % handles.len()];
                    let (status, body) = post(&agent, &url, FILTER_TOKEN, handle);
                    assert_eq!(status, 200, "look-up: {body}");
                    done.fetch_add(1, Ordering::Relaxed);
                    i += clients;
                }
            })
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let counted = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for t in threads {
        t.join().unwrap();
    }
    counted as f64 / elapsed
}

fn used_memory(port: u16) -> u64 {
    cli(port, &["INFO", "memory"])
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let seconds = env_or("BENCH_SECONDS", 5) as f64;
    let rounds = env_or("BENCH_ROUNDS", 3);
    let clients = env_or("BENCH_CLIENTS", 8) as usize;
    let n = env_or("BENCH_SESSIONS", 2000) as usize;
    let dir = std::env::temp_dir().join(format!("portero-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    println!("store bench: {clients} clients, {rounds} rounds × {seconds} s, {n} sessions");
    let standalone = Topology::standalone();
    let cluster = Topology::cluster(3, 1);
    let redis_port = standalone.nodes[0].port;
    let before = used_memory(redis_port);
    let (_s1, port_standalone) = sidecar(&standalone, &dir);
    let (_s2, port_cluster) = sidecar(&cluster, &dir);
    let handles_standalone = sessions(port_standalone, n, 100);
    let after = used_memory(redis_port);
    let handles_cluster = sessions(port_cluster, n, 100);
    // The feed's stream and the user records are shared by many sessions:
    // this is the whole cost per session at this ratio of sessions to users.
    let per_session = after.saturating_sub(before) as f64 / n as f64;

    let mut results = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        results[0].push(lookups_per_second(
            port_standalone,
            &handles_standalone,
            clients,
            seconds,
        ));
        results[1].push(lookups_per_second(
            port_cluster,
            &handles_cluster,
            clients,
            seconds,
        ));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let standalone_rate = median(&mut results[0]);
    let cluster_rate = median(&mut results[1]);
    println!("look-ups/s, median of {rounds}:");
    println!("  standalone Redis           {standalone_rate:>9.0}   1.00");
    println!(
        "  Redis Cluster (3+3)        {cluster_rate:>9.0}   {:.2}",
        cluster_rate / standalone_rate
    );
    println!(
        "Redis memory per session: {per_session:.0} bytes ({n} sessions of {} users, standalone)",
        100
    );
    let json = json!({
        "command": "./target/release/store-bench",
        "clients": clients, "seconds": seconds, "rounds": rounds, "sessions": n,
        "lookups_per_second": {"standalone": standalone_rate.round(), "cluster": cluster_rate.round()},
        "cluster_over_standalone": (cluster_rate / standalone_rate * 100.0).round() / 100.0,
        "redis_bytes_per_session": per_session.round(),
    });
    let out = workspace_root().join("bench/store-results.json");
    std::fs::write(&out, serde_json::to_string_pretty(&json).unwrap() + "\n").unwrap();
    println!("wrote {}", out.display());
    let _ = std::fs::remove_dir_all(&dir);
}
