//! A signing-key rollover under load, with no config push, no restart and
//! no client ever refused: the sidecar signs from a key directory it reads
//! every second; the filter pins the old key and fetches the sidecar's JWKS
//! every second. Publish the next key → make it active → retire the old one.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portero_integration::{claims_of, Stack, StackOptions, TEST_KID};
use portero_testkit::tokens::{Minter, OTHER_PRIVATE_PEM, TEST_PRIVATE_PEM};
use serde_json::json;

const NEXT_KID: &str = "next-key";

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// The `kid` in a token's header.
fn kid_of(token: &str) -> String {
    let header = token.split('.').next().expect("a JWT");
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url")).expect("json");
    header["kid"].as_str().expect("a kid").to_string()
}

/// Bearer clients that follow every rotated token, and cookie clients,
/// until stopped; every status they saw.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    seen: Arc<Mutex<Vec<(u16, String)>>>,
    /// The bearer clients' current tokens.
    tokens: Arc<Mutex<Vec<String>>>,
}

impl Load {
    fn start(stack: &Arc<Stack>, tokens: Vec<String>, cookies: Vec<String>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let current = Arc::new(Mutex::new(tokens.clone()));
        let mut threads = Vec::new();
        for i in 0..tokens.len() {
            let (stack, stop, seen, current) =
                (stack.clone(), stop.clone(), seen.clone(), current.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let token = current.lock().unwrap()[i].clone();
                    let reply = stack.me_with_token(&token);
                    if let Some(new) = reply.header("x-portero-access-token") {
                        current.lock().unwrap()[i] = new.to_string();
                    }
                    seen.lock()
                        .unwrap()
                        .push((reply.status, reply.body.clone()));
                    sleep_ms(20);
                }
            }));
        }
        for cookie in cookies {
            let (stack, stop, seen) = (stack.clone(), stop.clone(), seen.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let reply = stack.me_with_cookie(&cookie);
                    seen.lock()
                        .unwrap()
                        .push((reply.status, reply.body.clone()));
                    sleep_ms(20);
                }
            }));
        }
        Load {
            stop,
            threads,
            seen,
            tokens: current,
        }
    }

    fn current_tokens(&self) -> Vec<String> {
        self.tokens.lock().unwrap().clone()
    }

    /// Stops; every (status, body) seen.
    fn stop(self) -> Vec<(u16, String)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("a load thread failed");
        }
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).unwrap();
}

#[test]
fn a_key_rollover_under_load_refuses_nobody() {
    let dir = std::env::temp_dir().join(format!("portero-keys-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write(&dir, &format!("{TEST_KID}.pem"), TEST_PRIVATE_PEM);
    write(&dir, "active", TEST_KID);
    let stack = Arc::new(Stack::start_with(StackOptions {
        signing_keys_dir: Some(dir.clone()),
        // Tokens expire every 3 s, so clients move to the new key quickly.
        access_ttl: 3,
        plugin_config_patch: Some(|config| {
            config["jwt"]["leeway_seconds"] = json!(0);
            config["jwt"]["refresh_window_seconds"] = json!(60);
            config["jwt"]["jwks_refresh_seconds"] = json!(1);
        }),
        ..StackOptions::default()
    }));
    let tokens: Vec<String> = (0..2).map(|_| stack.login_app("alan", "turing")).collect();
    let cookies: Vec<String> = (0..2).map(|_| stack.login_web("ada", "lovelace")).collect();
    assert_eq!(kid_of(&tokens[0]), TEST_KID);
    // A token signed by the next key for a live session: not trusted yet
    // (neither pinned nor published).
    let next = Minter::new(OTHER_PRIVATE_PEM, Some(NEXT_KID));
    let probe = stack.login_app("alan", "turing");
    let early = next.sign(&claims_of(&probe));
    let refused = stack.me_with_token(&early);
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["reason"], "token_unknown_kid");

    let load = Load::start(&stack, tokens, cookies);
    sleep_ms(1000);

    // 1. Publish the next key: every filter fetches it within a couple of
    //    seconds (sidecar reload 1 s, filter fetch 1 s).
    write(&dir, &format!("{NEXT_KID}.pem"), OTHER_PRIVATE_PEM);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stack.me_with_token(&early).status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the published key was never trusted"
        );
        sleep_ms(200);
    }

    // 2. Make it active: new and rotated tokens are signed with it.
    write(&dir, "active", NEXT_KID);
    sleep_ms(2500);
    let fresh = stack.login_app("alan", "turing");
    assert_eq!(kid_of(&fresh), NEXT_KID, "logins sign with the new key");
    sleep_ms(4000); // every old token expired and was rotated
    for token in load.current_tokens() {
        assert_eq!(kid_of(&token), NEXT_KID, "clients moved to the new key");
    }

    // 3. Retire the old key once its tokens have expired.
    std::fs::remove_file(dir.join(format!("{TEST_KID}.pem"))).unwrap();
    sleep_ms(2500);
    let jwks = stack.send(
        "GET",
        &stack.sidecar_url("/.well-known/jwks.json"),
        &[],
        None,
    );
    let kids: Vec<String> = jwks.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kids, vec![NEXT_KID.to_string()]);
    sleep_ms(1000);

    let seen = load.stop();
    let refused: Vec<&(u16, String)> = seen.iter().filter(|(s, _)| *s != 200).collect();
    assert!(seen.len() > 100, "the load ran: {} requests", seen.len());
    assert!(
        refused.is_empty(),
        "clients refused during the rollover: {refused:?}"
    );
    // A key that was never published stays untrusted.
    let stranger = Minter::new(OTHER_PRIVATE_PEM, Some("never-published"));
    let reply = stack.me_with_token(&stranger.sign(&claims_of(&fresh)));
    assert_eq!(reply.status, 401);
    eprintln!("rollover: {} requests, none refused", seen.len());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sidecar outage never drops a fetched key: while the sidecar is frozen
/// (every JWKS fetch fails), a token of a key that only the fetch brought is
/// still verified, and its cached session served; a key never published
/// stays refused.
#[test]
fn a_failed_jwks_fetch_keeps_the_last_good_keys() {
    let dir = std::env::temp_dir().join(format!("portero-keys-outage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write(&dir, &format!("{TEST_KID}.pem"), TEST_PRIVATE_PEM);
    write(&dir, &format!("{NEXT_KID}.pem"), OTHER_PRIVATE_PEM);
    write(&dir, "active", TEST_KID);
    let stack = Stack::start_with(StackOptions {
        signing_keys_dir: Some(dir.clone()),
        plugin_config_patch: Some(|config| {
            config["jwt"]["jwks_refresh_seconds"] = json!(1);
        }),
        ..StackOptions::default()
    });
    let token = stack.login_app("alan", "turing");
    let next = Minter::new(OTHER_PRIVATE_PEM, Some(NEXT_KID)).sign(&claims_of(&token));
    // Fetched (not pinned): trusted once a fetch has brought it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stack.me_with_token(&next).status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the published key was never trusted"
        );
        sleep_ms(200);
    }
    let stranger = Minter::new(OTHER_PRIVATE_PEM, Some("never-published")).sign(&claims_of(&token));
    stack.signal("sidecar", libc::SIGSTOP);
    // At least one fetch fails meanwhile (the wasm filter fetches every
    // second on its tick; the dynamic module from the next request, which
    // waits up to the sidecar timeout for it). The freeze stays well inside
    // the cached session's staleness bound (3 s), which `caches.rs` tests.
    sleep_ms(1500);
    let during = stack.me_with_token(&next);
    let refused = stack.me_with_token(&stranger);
    stack.signal("sidecar", libc::SIGCONT);
    assert_eq!(
        during.status, 200,
        "a fetched key was dropped: {}",
        during.body
    );
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["reason"], "token_unknown_kid");
    assert!(
        stack.metric(r#"portero_jwks_fetches{result="failed"}"#) >= 1,
        "the failed fetches are counted"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
