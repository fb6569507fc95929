//! Sign-in with a real OpenID Connect provider (`oidc-provider` from npm,
//! over HTTPS): a browser without a session goes through the provider and
//! comes back with a portero session made exactly as an app's login makes
//! one; and the callback, attacked: replayed, carried to another browser,
//! forged, and met with the provider or Redis stalled.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use portero_integration::client::Reply;
use portero_integration::oidc::subject_of;
use portero_integration::stack::{Stack, StackOptions};

fn sign_in_stack() -> Stack {
    Stack::start_with(StackOptions {
        https: true,
        oidc: true,
        ..StackOptions::default()
    })
}

/// What a browser keeps between requests: cookies by host (as browsers do,
/// whatever the port), sent back with every request to that host.
struct Browser<'a> {
    stack: &'a Stack,
    cookies: BTreeMap<String, BTreeMap<String, String>>,
}

impl<'a> Browser<'a> {
    fn new(stack: &'a Stack) -> Self {
        Self {
            stack,
            cookies: BTreeMap::new(),
        }
    }

    fn host_of(url: &str) -> String {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or_default();
        authority.split(':').next().unwrap_or_default().to_string()
    }

    fn request(&mut self, method: &str, url: &str, site: &str, body: Option<&str>) -> Reply {
        let host = Self::host_of(url);
        let cookie = self
            .cookies
            .get(&host)
            .map(|jar| {
                jar.iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        let mut headers = vec![
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-site", site),
            ("accept", "text/html,application/xhtml+xml"),
            ("user-agent", "portero-oidc-test"),
        ];
        if !cookie.is_empty() {
            headers.push(("cookie", cookie.as_str()));
        }
        let origin;
        if let Some(body) = body {
            origin = url.split('/').take(3).collect::<Vec<_>>().join("/");
            headers.push(("content-type", "application/x-www-form-urlencoded"));
            headers.push(("origin", origin.as_str()));
            let reply = self.stack.send_raw(method, url, &headers, body.as_bytes());
            self.keep_cookies(&host, &reply);
            return reply;
        }
        let reply = self.stack.send_raw(method, url, &headers, b"");
        self.keep_cookies(&host, &reply);
        reply
    }

    fn keep_cookies(&mut self, host: &str, reply: &Reply) {
        for line in reply.headers_named("set-cookie") {
            let (pair, attributes) = line.split_once(';').unwrap_or((line, ""));
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let jar = self.cookies.entry(host.to_string()).or_default();
            if value.is_empty() || attributes.to_ascii_lowercase().contains("max-age=0") {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_string(), value.trim().to_string());
            }
        }
    }

    fn cookie(&self, host: &str, name: &str) -> Option<String> {
        self.cookies.get(host)?.get(name).cloned()
    }

    /// Follows redirects from `reply` (which came from `url`) until a reply
    /// that is none, or until `stop` says the next location is to be
    /// returned instead (`Err(location)`).
    fn follow(
        &mut self,
        mut url: String,
        mut reply: Reply,
        stop: impl Fn(&str) -> bool,
    ) -> Result<(String, Reply), String> {
        for _ in 0..20 {
            if !(300..400).contains(&reply.status) {
                return Ok((url, reply));
            }
            let location = reply.header("location").expect("a redirect's location");
            let next = absolute(&url, location);
            if stop(&next) {
                return Err(next);
            }
            let site = if Self::host_of(&next) == Self::host_of(&url) {
                "same-origin"
            } else {
                "cross-site"
            };
            reply = self.request("GET", &next, site, None);
            url = next;
        }
        panic!("too many redirects from {url}");
    }
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("https://") || location.starts_with("http://") {
        return location.to_string();
    }
    let origin = base.split('/').take(3).collect::<Vec<_>>().join("/");
    format!("{origin}{location}")
}

/// From a signed-out visit to `path` up to the provider's redirect back to
/// the app's callback (not followed): the callback URL. Signs in at the
/// provider's login page as `user` when it shows one.
fn up_to_the_callback(browser: &mut Browser, path: &str, user: (&str, &str)) -> String {
    let stack = browser.stack;
    let url = stack.https_url(path);
    let first = browser.request("GET", &url, "none", None);
    assert_eq!(first.status, 302, "{}", first.body);
    let location = first.header("location").unwrap().to_string();
    assert!(
        location.starts_with("/.portero/oidc/start?return_to="),
        "{location}"
    );
    let is_callback = |next: &str| next.contains("/.portero/oidc/callback");
    let (at, page) = match browser.follow(url, first, is_callback) {
        Err(callback) => return callback,
        Ok(page) => page,
    };
    assert_eq!(page.status, 200, "{at}: {}", page.body);
    let action = page
        .body
        .split("action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("a login form at {at}: {}", page.body))
        .to_string();
    let post_url = absolute(&at, &action);
    let form = format!("username={}&password={}", user.0, user.1);
    let posted = browser.request("POST", &post_url, "same-origin", Some(&form));
    match browser.follow(post_url, posted, is_callback) {
        Err(callback) => callback,
        Ok((at, page)) => panic!("no callback after signing in, at {at}: {}", page.body),
    }
}

/// The provider's redirect back, as a browser follows it (cross-site).
fn callback(browser: &mut Browser, url: &str) -> Reply {
    browser.request("GET", url, "cross-site", None)
}

const GRACE: (&str, &str) = ("grace", "hopper");

#[test]
fn a_browser_signs_in_with_the_provider_and_gets_a_portero_session() {
    let stack = sign_in_stack();
    let mut browser = Browser::new(&stack);
    let callback_url = up_to_the_callback(&mut browser, "/me?tab=1", GRACE);
    // The pre-login cookie that binds the sign-in to this browser.
    assert!(browser.cookie("localhost", "__Host-portero-oidc").is_some());
    let back = callback(&mut browser, &callback_url);
    // A page that moves on from this site (a redirect would start no
    // `SameSite=Strict` session: the chain began at the provider).
    assert_eq!(back.status, 200, "{}", back.body);
    assert!(
        back.body
            .contains(r#"<meta http-equiv="refresh" content="0;url=/me?tab=1">"#),
        "{}",
        back.body
    );
    assert_eq!(back.header("cache-control"), Some("no-store"));
    // The pre-login cookie is spent: cleared, so no app ever sees it.
    assert!(back
        .set_cookie("__Host-portero-oidc")
        .is_some_and(|c| c.contains("Max-Age=0")));
    assert!(browser.cookie("localhost", "__Host-portero-oidc").is_none());
    // The same cookie an app's login gets, sealed by the filter.
    let set_cookie = back.set_cookie("__Host-portero").expect("a session cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    // Nothing of the provider's tokens, nor the internal start header.
    for (name, value) in &back.headers {
        assert!(!value.contains("eyJ"), "a JWT in {name}: {value}");
        assert_ne!(name, "x-portero-start-session");
    }
    let me = browser.request("GET", &stack.https_url("/me"), "none", None);
    assert_eq!(me.status, 200, "{}", me.body);
    let me = me.json();
    // Sign-ins are counted by the sidecar, by step and status.
    let metrics = stack
        .send("GET", &stack.sidecar_url("/metrics"), &[], None)
        .body;
    for series in [
        r#"portero_sidecar_http_requests_total{route="/oidc/start",method="GET",status="303"} 1"#,
        r#"portero_sidecar_http_requests_total{route="/oidc/callback",method="GET",status="200"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
    assert_eq!(me["user_id"], format!("oidc:{}", subject_of("grace")));
    assert_eq!(me["email"], "grace@example.test");
    assert_eq!(me["roles"], serde_json::json!(["admin", "staff"]));
    assert_eq!(me["client_ip"], "127.0.0.1");
    // The roles from the provider's groups gate routes like any login's.
    let admin = browser.request("GET", &stack.https_url("/admin/overview"), "none", None);
    assert_eq!(admin.status, 200, "{}", admin.body);
    // And the session is the sidecar's like any other: listed, revocable.
    let user_id = format!("oidc:{}", subject_of("grace"));
    let sessions = stack.admin("GET", &format!("/v1/users/{user_id}/sessions"), None);
    assert_eq!(sessions.status, 200, "{}", sessions.body);
    let revoked = stack.admin("POST", &format!("/v1/users/{user_id}/revoke"), None);
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.json()["ended"], 1, "{}", revoked.body);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let after = browser.request("GET", &stack.https_url("/me"), "none", None);
    assert_eq!(after.status, 302, "revoked: sign in again: {}", after.body);
}

#[test]
fn a_callback_finishes_one_sign_in_once_and_only_in_the_browser_that_started_it() {
    let stack = sign_in_stack();
    // Replayed: the state is spent.
    let mut browser = Browser::new(&stack);
    let url = up_to_the_callback(&mut browser, "/me", GRACE);
    assert_eq!(callback(&mut browser, &url).status, 200);
    let again = callback(&mut browser, &url);
    assert_eq!(again.status, 400, "{}", again.body);
    assert!(again.set_cookie("__Host-portero").is_none());
    assert!(again
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(again.body.contains("Sign-in didn"), "{}", again.body);

    // Nothing half-made: the refused callbacks below leave no session and
    // no user in Redis beyond the ones the real sign-ins make.
    let sessions = || {
        stack
            .redis_cli(&["--scan", "--pattern", "portero:session:*"])
            .lines()
            .count()
    };
    let before = sessions();

    // Login CSRF: the attacker's own code and state, sent to a victim's
    // browser, which has no (or another) pre-login cookie.
    let mut attacker = Browser::new(&stack);
    let attackers = up_to_the_callback(&mut attacker, "/me", ("alan", "turing"));
    let mut victim = Browser::new(&stack);
    let forced = callback(&mut victim, &attackers);
    assert_eq!(forced.status, 400, "{}", forced.body);
    assert!(forced.set_cookie("__Host-portero").is_none());
    let mut other_victim = Browser::new(&stack);
    let _ = other_victim.request(
        "GET",
        &stack.https_url("/.portero/oidc/start"),
        "none",
        None,
    );
    assert!(other_victim
        .cookie("localhost", "__Host-portero-oidc")
        .is_some());
    let forced = callback(&mut other_victim, &attackers);
    assert_eq!(forced.status, 400, "{}", forced.body);
    assert!(forced.set_cookie("__Host-portero").is_none());

    // A state the sidecar never made, and none at all.
    let mut browser = Browser::new(&stack);
    let url = up_to_the_callback(&mut browser, "/me", GRACE);
    let (base, _) = url.split_once("state=").unwrap();
    for forged in [
        format!("{base}state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        format!("{base}state=%3Cscript%3E"),
        base.trim_end_matches(['&', '?']).to_string(),
    ] {
        let reply = callback(&mut browser, &forged);
        assert_eq!(reply.status, 400, "{forged}: {}", reply.body);
        assert!(reply.set_cookie("__Host-portero").is_none());
        assert!(!reply.body.contains("<script>"));
    }
    assert_eq!(sessions(), before, "a refused callback made a session");
    let users = stack.redis_cli(&["--scan", "--pattern", "portero:user:*"]);
    assert_eq!(users.lines().count(), 1, "only grace's record: {users}");
    // The real one still works: nothing above spent it.
    assert_eq!(callback(&mut browser, &url).status, 200);
    assert_eq!(sessions(), before + 1);

    // A callback naming another issuer (RFC 9207 mix-up): refused.
    let mut browser = Browser::new(&stack);
    let url = up_to_the_callback(&mut browser, "/me", GRACE);
    let (before_iss, _) = url.split_once("&iss=").expect("the provider names itself");
    let mixed_up = format!("{before_iss}&iss=https%3A%2F%2Fevil.example");
    let reply = callback(&mut browser, &mixed_up);
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.set_cookie("__Host-portero").is_none());

    // A return path that leaves the site is never followed.
    let mut browser = Browser::new(&stack);
    let start = stack.https_url("/.portero/oidc/start?return_to=//evil.example/x");
    let reply = browser.request("GET", &start, "none", None);
    let is_callback = |next: &str| next.contains("/.portero/oidc/callback");
    let url = match browser.follow(start, reply, is_callback) {
        Err(url) => url,
        Ok((at, page)) => {
            let action = page
                .body
                .split("action=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_string();
            let post = absolute(&at, &action);
            let posted = browser.request(
                "POST",
                &post,
                "same-origin",
                Some("username=grace&password=hopper"),
            );
            browser.follow(post, posted, is_callback).unwrap_err()
        }
    };
    let back = callback(&mut browser, &url);
    assert_eq!(back.status, 200);
    assert!(back.body.contains(r#"content="0;url=/""#), "{}", back.body);
}

#[test]
fn provider_or_store_trouble_is_a_try_again_page_and_never_a_session() {
    let stack = sign_in_stack();
    // Once signed in, a stalled provider changes nothing for the session.
    let mut browser = Browser::new(&stack);
    let url = up_to_the_callback(&mut browser, "/me", GRACE);
    assert_eq!(callback(&mut browser, &url).status, 200);

    // The provider stalls between the redirect back and the code exchange.
    let mut second = Browser::new(&stack);
    let url = up_to_the_callback(&mut second, "/me", GRACE);
    stack.provider.as_ref().unwrap().proc.signal(libc::SIGSTOP);
    let stalled = callback(&mut second, &url);
    let signed_in = browser.request("GET", &stack.https_url("/me"), "none", None);
    stack.provider.as_ref().unwrap().proc.signal(libc::SIGCONT);
    assert_eq!(stalled.status, 503, "{}", stalled.body);
    assert!(stalled.header("retry-after").is_some());
    assert!(stalled.set_cookie("__Host-portero").is_none());
    assert!(stalled.body.contains("Try again"), "{}", stalled.body);
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);

    // Redis stalls when a sign-in starts: a try-again page, no redirect.
    stack.signal("redis", libc::SIGSTOP);
    let mut third = Browser::new(&stack);
    let start = third.request(
        "GET",
        &stack.https_url("/.portero/oidc/start"),
        "none",
        None,
    );
    stack.signal("redis", libc::SIGCONT);
    assert_eq!(start.status, 503, "{}", start.body);
    assert!(start.header("location").is_none());
    assert!(start.body.contains("Try again"), "{}", start.body);

    // Back-channel logout calls that are not the provider's end nothing.
    let backchannel = format!(
        "http://127.0.0.1:{}/oidc/backchannel-logout",
        stack.options.sign_in_port
    );
    let b64 = |text: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    };
    let claims = serde_json::json!({
        "iss": stack.provider.as_ref().unwrap().issuer,
        "aud": "portero-test", "sub": subject_of("grace"), "jti": "forged",
        "iat": portero_integration::proc::unix_now(),
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    });
    let unsigned = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&claims.to_string()));
    for (what, body, content_type) in [
        (
            "no body",
            String::new(),
            "application/x-www-form-urlencoded",
        ),
        (
            "not a JWT",
            "logout_token=garbage".to_string(),
            "application/x-www-form-urlencoded",
        ),
        (
            "alg none",
            format!("logout_token={unsigned}"),
            "application/x-www-form-urlencoded",
        ),
        (
            "JSON, not a form",
            format!(r#"{{"logout_token":"{unsigned}"}}"#),
            "application/json",
        ),
    ] {
        let reply = stack.send_raw(
            "POST",
            &backchannel,
            &[("content-type", content_type)],
            body.as_bytes(),
        );
        assert_eq!(reply.status, 400, "{what}: {}", reply.body);
        assert_eq!(reply.json()["error"], "invalid_request", "{what}");
    }
    let still = browser.request("GET", &stack.https_url("/me"), "none", None);
    assert_eq!(
        still.status, 200,
        "a forged logout ended nothing: {}",
        still.body
    );

    // The sidecar's public listener serves nothing but the sign-in pages.
    for path in [
        "/.portero/oidc/../v1/sessions",
        "/.portero/oidc/v1/users/x",
        "/.portero/oidc/healthz",
    ] {
        let reply = third.request("GET", &stack.https_url(path), "none", None);
        assert_ne!(reply.status, 200, "{path}: {}", reply.body);
        assert!(!reply.body.contains("session_id"), "{path}: {}", reply.body);
    }
}

#[test]
fn a_new_provider_key_is_fetched_once_a_token_names_it() {
    let mut stack = sign_in_stack();
    // Signing in fetches the provider's keys.
    let mut browser = Browser::new(&stack);
    let url = up_to_the_callback(&mut browser, "/me", GRACE);
    assert_eq!(callback(&mut browser, &url).status, 200);
    let fetched = std::time::Instant::now();
    let session = browser.cookie("localhost", "__Host-portero").unwrap();
    drop(browser);
    // The provider starts over with a new signing key (and no sessions).
    stack.provider.as_mut().unwrap().restart();
    let mut second = Browser::new(&stack);
    let url = up_to_the_callback(&mut second, "/me", GRACE);
    // Within 10 s of the last fetch the keys are not fetched again (a token
    // naming made-up keys cannot make the sidecar hammer the provider): a
    // try-again page, not a refusal, and no session.
    if fetched.elapsed() < std::time::Duration::from_secs(9) {
        let early = callback(&mut second, &url);
        assert_eq!(early.status, 503, "{}", early.body);
        assert!(early.set_cookie("__Host-portero").is_none());
        let url = up_to_the_callback(&mut second, "/me", GRACE);
        std::thread::sleep(std::time::Duration::from_secs(10).saturating_sub(fetched.elapsed()));
        let later = callback(&mut second, &url);
        assert_eq!(later.status, 200, "the new key fetched: {}", later.body);
    } else {
        assert_eq!(callback(&mut second, &url).status, 200);
    }
    // The session made before the rotation lives on: portero's own.
    let me = stack.send(
        "GET",
        &stack.https_url("/me"),
        &[("cookie", &format!("__Host-portero={session}"))],
        None,
    );
    assert_eq!(me.status, 200, "{}", me.body);
}

#[test]
fn without_a_roles_claim_a_sign_in_keeps_the_roles_an_operator_gave() {
    let stack = Stack::start_with(StackOptions {
        https: true,
        oidc: true,
        oidc_config_patch: Some(|config| {
            config["claims"].as_object_mut().unwrap().remove("roles");
        }),
        ..StackOptions::default()
    });
    let sign_in = || {
        let mut browser = Browser::new(&stack);
        let url = up_to_the_callback(&mut browser, "/me", GRACE);
        assert_eq!(callback(&mut browser, &url).status, 200);
        let me = browser.request("GET", &stack.https_url("/me"), "none", None);
        assert_eq!(me.status, 200, "{}", me.body);
        me.json()["roles"].clone()
    };
    // The provider's groups are not read: no roles at first.
    assert_eq!(sign_in(), serde_json::json!([]));
    let user = format!("/v1/users/oidc:{}", subject_of("grace"));
    let given = stack.admin(
        "PUT",
        &user,
        Some(&serde_json::json!({"roles": ["auditor"]})),
    );
    assert_eq!(given.status, 200, "{}", given.body);
    // The next sign-in keeps them.
    assert_eq!(sign_in(), serde_json::json!(["auditor"]));
}

/// What the provider posts to its apps' back-channel logout URI, caught on
/// `listener` (answered 200) instead of reaching the sidecar.
fn catch_logout_tokens(listener: std::net::TcpListener) -> std::sync::mpsc::Receiver<String> {
    use std::io::{Read, Write};
    let (sender, tokens) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then as much body as Content-Length says.
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        if let Some(token) = body.strip_prefix("logout_token=") {
                            let _ = sender.send(token.to_string());
                        }
                        break;
                    }
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    tokens
}

#[test]
fn a_logout_token_ends_its_sessions_once_and_a_replay_ends_nothing() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tokens = catch_logout_tokens(listener);
    let stack = Stack::start_with(StackOptions {
        https: true,
        oidc: true,
        backchannel_logout_port: Some(port),
        ..StackOptions::default()
    });
    let mut browser = Browser::new(&stack);
    let url = up_to_the_callback(&mut browser, "/me", GRACE);
    assert_eq!(callback(&mut browser, &url).status, 200);
    // Sign out at the provider (portero's sign-out, then the provider's
    // confirmation form): it posts the logout tokens, caught here.
    let out = stack.https_url("/.portero/oidc/logout");
    let reply = browser.request("POST", &out, "same-origin", Some(""));
    assert_eq!(reply.status, 303, "{}", reply.body);
    let (at, confirm) = browser.follow(out, reply, |_| false).unwrap();
    let form_action = confirm
        .body
        .split("action=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let xsrf = confirm
        .body
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let confirm_url = absolute(&at, form_action);
    let _ = browser.request(
        "POST",
        &confirm_url,
        "same-origin",
        Some(&format!("xsrf={xsrf}&logout=yes")),
    );
    let token = tokens
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("a logout token");
    // A second session of the same user, made after the token was issued:
    // a replay must not end it.
    let mut later = Browser::new(&stack);
    let url = up_to_the_callback(&mut later, "/me", GRACE);
    assert_eq!(callback(&mut later, &url).status, 200);
    let backchannel = format!(
        "http://127.0.0.1:{}/oidc/backchannel-logout",
        stack.options.sign_in_port
    );
    let post = || {
        stack.send_raw(
            "POST",
            &backchannel,
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("logout_token={token}").as_bytes(),
        )
    };
    assert_eq!(post().status, 200);
    assert_eq!(post().status, 200, "a retry is answered, and ignored");
    let log = std::fs::read_to_string(stack.dir.join("sidecar.log")).unwrap();
    assert!(
        log.contains("provider session ended: back-channel logout"),
        "{log}"
    );
    assert!(log.contains("logout token already acted on"), "{log}");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let me = later.request("GET", &stack.https_url("/me"), "none", None);
    assert_eq!(me.status, 200, "the later session lives: {}", me.body);
}
