//! The compose tier: `docker-compose.yml`, and `docker-compose.ha.yml` over
//! it, started on podman from the images their Dockerfiles build
//! (`make compose-test`; skipped elsewhere, see
//! `portero_integration::compose`). Through the published Envoy ports, with
//! the harness's own clients: both login flows and their refreshes, the site
//! in Chromium over HTTPS, and the containers restarted, stopped and killed
//! as an operator (or a crash) would.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portero_integration::compose::Compose;
use portero_integration::{browser, workspace_root, Reply, Stack, COOKIE_NAME};
use serde_json::json;

/// The sidecar's access tokens in the tier: 2 s, so that refreshes happen
/// within a test (the filter adds its 5 s leeway).
const ACCESS_TTL: &str = "2";
const TOKEN_SECONDS: u64 = 7;

fn sleep(d: Duration) {
    std::thread::sleep(d);
}

/// An app client: its access token, replaced by the one a refresh hands
/// back (`x-portero-access-token`), as a client must.
struct App {
    token: String,
}

impl App {
    fn me(&mut self, stack: &Stack) -> Reply {
        let reply = stack.me_with_token(&self.token);
        if let Some(new) = reply.header("x-portero-access-token") {
            self.token = new.to_string();
        }
        reply
    }
}

/// `/me` with `cookie` until it is a 200 (503s allowed meanwhile: the store
/// or the sidecar coming back), within `bound`; never a 401, never a cookie
/// cleared.
fn served_again_with_cookie(stack: &Stack, cookie: &str, bound: Duration, what: &str) {
    let deadline = Instant::now() + bound;
    loop {
        let reply = stack.me_with_cookie(cookie);
        match reply.status {
            200 => return,
            503 => {
                assert_eq!(
                    reply.set_cookie(COOKIE_NAME),
                    None,
                    "{what}: cookie touched"
                );
                assert!(
                    Instant::now() < deadline,
                    "{what}: still 503 after {bound:?}"
                );
            }
            status => panic!("{what}: {status} {}", reply.body),
        }
        sleep(Duration::from_millis(200));
    }
}

fn user_of(reply: &Reply) -> String {
    reply.json()["user_id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn compose_file_serves_both_flows_and_survives_its_containers_restarting() {
    let Some(compose) = Compose::up(
        "portero-compose-test",
        &["docker-compose.yml"],
        &[("PORTERO_ACCESS_TTL", ACCESS_TTL)],
    ) else {
        return;
    };
    let stack = &compose.stack;

    // The web app's pages through Envoy, over HTTPS.
    let page = stack.send("GET", &stack.https_url("/login"), &[], None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("login"), "the login page: {}", page.body);

    // Web client over HTTPS: the __Host- cookie, then /me with it.
    let login = stack.send(
        "POST",
        &stack.https_url("/auth/login"),
        &[],
        Some(&json!({"username": "ada", "password": "lovelace", "client": "web"})),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let https_cookie = login.cookie_value(COOKIE_NAME).expect("the session cookie");
    let me = stack.send(
        "GET",
        &stack.https_url("/me"),
        &[("cookie", &format!("{COOKIE_NAME}={https_cookie}"))],
        None,
    );
    assert_eq!(
        (me.status, user_of(&me)),
        (200, "user-ada".into()),
        "{}",
        me.body
    );

    // Both flows on the plain listener.
    let cookie = stack.login_web("ada", "lovelace");
    let first = stack.me_with_cookie(&cookie);
    assert_eq!((first.status, user_of(&first)), (200, "user-ada".into()));
    let first_token = first.json()["authorization"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut app = App {
        token: stack.login_app("alan", "turing"),
    };
    let issued = app.token.clone();
    let reply = app.me(stack);
    assert_eq!((reply.status, user_of(&reply)), (200, "user-alan".into()));
    assert!(stack.me_with_token("not-a-token").status == 401);

    // Refresh: past the tokens' lifetime, the cookie's session gets a new
    // access token upstream, and the app client is handed one.
    sleep(Duration::from_secs(TOKEN_SECONDS + 1));
    let second = stack.me_with_cookie(&cookie);
    assert_eq!(second.status, 200, "{}", second.body);
    assert_ne!(
        second.json()["authorization"].as_str().unwrap_or_default(),
        first_token,
        "the cookie's session was refreshed"
    );
    let reply = app.me(stack);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_ne!(app.token, issued, "the app client got a new token");

    // The site in Chromium, over HTTPS.
    let (https_port, cert) = stack.edge_tls.clone().expect("https");
    let artifacts = workspace_root().join("target/compose-browser-artifacts");
    match browser::site_checks(https_port, &cert, TOKEN_SECONDS, &artifacts, None) {
        Ok(report) => println!("{report}"),
        Err(report) => panic!("browser checks on the compose stack failed:\n{report}"),
    }

    // Redis's container restarted: every session is still in the store
    // (the AOF on its volume). A cookie the filter has never cached asks
    // the sidecar, and the app client's refresh rotates in the store.
    let unseen = stack.login_web("alan", "turing");
    compose.podman_on("restart", "redis");
    compose.wait_healthy();
    served_again_with_cookie(
        stack,
        &unseen,
        Duration::from_secs(30),
        "after Redis restarted",
    );
    served_again_with_cookie(
        stack,
        &cookie,
        Duration::from_secs(30),
        "after Redis restarted",
    );
    sleep(Duration::from_secs(TOKEN_SECONDS + 1));
    let before = app.token.clone();
    let reply = app.me(stack);
    assert_eq!(
        reply.status, 200,
        "refresh after Redis restarted: {}",
        reply.body
    );
    assert_ne!(app.token, before, "a refresh after Redis restarted");

    // The sidecar's container killed: what needs the sidecar is a 503 that
    // keeps the cookie (a cookie the filter has not cached yet); once it is
    // started again, the same cookie works: nobody was logged out.
    let uncached = stack.login_web("ada", "lovelace");
    compose.podman_on("kill", "redis-sidecar");
    for _ in 0..3 {
        let reply = stack.me_with_cookie(&uncached);
        assert_eq!(
            reply.status, 503,
            "sidecar down: {} {}",
            reply.status, reply.body
        );
        assert_eq!(
            reply.set_cookie(COOKIE_NAME),
            None,
            "sidecar down: cookie touched"
        );
    }
    compose.podman_on("start", "redis-sidecar");
    compose.wait_healthy();
    served_again_with_cookie(
        stack,
        &uncached,
        Duration::from_secs(30),
        "after the sidecar came back",
    );
    served_again_with_cookie(
        stack,
        &cookie,
        Duration::from_secs(30),
        "after the sidecar came back",
    );

    // Envoy's container restarted (its session cache gone): every session
    // is still valid, both flows.
    compose.podman_on("restart", "envoy");
    compose.wait_healthy();
    for c in [&cookie, &unseen, &uncached, &https_cookie] {
        served_again_with_cookie(stack, c, Duration::from_secs(30), "after Envoy restarted");
    }
    let reply = app.me(stack);
    assert_eq!(
        reply.status, 200,
        "app client after Envoy restarted: {}",
        reply.body
    );
}

#[test]
fn compose_ha_file_loses_no_session_when_the_primary_is_killed_under_load() {
    let Some(compose) = Compose::up(
        "portero-compose-test-ha",
        &["docker-compose.yml", "docker-compose.ha.yml"],
        &[],
    ) else {
        return;
    };
    let stack = compose.stack.clone();

    let cookies: Vec<String> = (0..8)
        .map(|i| {
            let (user, password) = if i % 2 == 0 {
                ("ada", "lovelace")
            } else {
                ("alan", "turing")
            };
            stack.login_web(user, password)
        })
        .collect();
    // Every session is on a replica before the kill (the sidecars wait for
    // one on each write): none of them may be lost.
    for cookie in &cookies {
        assert_eq!(stack.me_with_cookie(cookie).status, 200);
    }

    // Load: logins and /me with the cookies, each a 200 or a 503 that keeps
    // the cookie.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let threads: Vec<_> = cookies
        .iter()
        .cloned()
        .map(|cookie| {
            let (stack, stop, served, refused) =
                (stack.clone(), stop.clone(), served.clone(), refused.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let reply = stack.me_with_cookie(&cookie);
                    match reply.status {
                        200 => served.fetch_add(1, Ordering::Relaxed),
                        503 => {
                            assert_eq!(reply.set_cookie(COOKIE_NAME), None, "cookie touched");
                            sleep(Duration::from_millis(50));
                            refused.fetch_add(1, Ordering::Relaxed)
                        }
                        status => panic!("{status} during the failover: {}", reply.body),
                    };
                }
            })
        })
        .collect();
    sleep(Duration::from_secs(2));
    let killed = Instant::now();
    compose.podman_on("kill", "redis");
    // New sessions need the new primary: wait for one, then for every old one.
    let deadline = killed + Duration::from_secs(60);
    let fresh = loop {
        let reply = stack.request(
            "POST",
            "/auth/login",
            &[],
            Some(&json!({"username": "ada", "password": "lovelace", "client": "web"})),
        );
        if reply.status == 200 {
            break reply.cookie_value(COOKIE_NAME).expect("cookie");
        }
        assert!(
            Instant::now() < deadline,
            "no login 60 s after the kill: {}",
            reply.status
        );
        sleep(Duration::from_millis(250));
    };
    let outage = killed.elapsed();
    for cookie in cookies.iter().chain([&fresh]) {
        served_again_with_cookie(
            &stack,
            cookie,
            Duration::from_secs(30),
            "after the failover",
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("a load thread failed");
    }
    let (served, refused) = (
        served.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    println!("primary killed: logins again after {outage:?}; under load {served} served, {refused} refused (503)");
    assert!(served > 0, "the load ran");

    // The old primary's container started again (it rejoins as a replica;
    // podman restarts no container whose dependencies are down), then
    // Envoy's restarted: not the filter's session cache answering, every
    // session is looked up in the store.
    compose.podman_on("start", "redis");
    compose.wait_healthy();
    compose.podman_on("restart", "envoy");
    compose.wait_healthy();
    for cookie in cookies.iter().chain([&fresh]) {
        served_again_with_cookie(
            &stack,
            cookie,
            Duration::from_secs(30),
            "after the failover, Envoy restarted",
        );
    }
}
