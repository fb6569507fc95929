//! What an operator's tools give away: after a full run (web and app
//! logins, requests, refreshes, a logout), Envoy's `/config_dump` and every
//! process log of the stack hold no secret, no token, no cookie value and no
//! session handle that grants access — on both shells. The plugin config
//! names its secrets (`{"env": …}`); Envoy's dump shows only the names.

use std::time::Duration;

use portero_integration::{
    claims_of, Stack, StackOptions, ADMIN_TOKEN, COOKIE_SECRET, FILTER_TOKEN, SESSION_HASH_KEY,
};

#[test]
fn config_dump_and_logs_hold_nothing_that_grants_access() {
    let stack = Stack::start_with(StackOptions {
        access_ttl: 2,
        // Every log at its default level: Envoy's is `info`.
        envoy_log_level: "info",
        ..StackOptions::default()
    });
    let cookie = stack.login_web("ada", "lovelace");
    let token = stack.login_app("alan", "turing");
    let mut tokens = vec![token.clone()];
    assert_eq!(stack.me_with_cookie(&cookie).status, 200);
    assert_eq!(stack.me_with_token(&token).status, 200);
    // Past the tokens' lifetime: both flows refresh.
    std::thread::sleep(Duration::from_millis(3200));
    assert_eq!(stack.me_with_cookie(&cookie).status, 200);
    let refreshed = stack.me_with_token(&token);
    assert_eq!(refreshed.status, 200);
    if let Some(new) = refreshed.header("x-portero-access-token") {
        tokens.push(new.to_string());
    }
    let cookie_me = stack.me_with_cookie(&cookie).json();
    if let Some(forwarded) = cookie_me["authorization"].as_str() {
        tokens.push(forwarded.trim_start_matches("Bearer ").to_string());
    }
    let handle = claims_of(&token).sid;
    // A refused credential is logged too: its value must not be.
    assert_eq!(
        stack
            .me_with_cookie("forged-cookie-value-0123456789")
            .status,
        401
    );

    let dump = stack
        .send(
            "GET",
            &format!(
                "http://127.0.0.1:{}/config_dump?include_eds",
                stack.options.admin_port
            ),
            &[],
            None,
        )
        .body;
    assert!(
        dump.contains("PORTERO_COOKIE_SECRET"),
        "the dump names the secret"
    );
    let mut logs = String::new();
    for entry in std::fs::read_dir(&stack.dir).expect("stack dir").flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            logs.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    assert!(
        logs.contains("session"),
        "the logs were read: {}",
        logs.len()
    );
    let mut secrets: Vec<(&str, String)> = vec![
        ("cookie secret", COOKIE_SECRET.to_string()),
        ("filter credential", FILTER_TOKEN.to_string()),
        ("admin credential", ADMIN_TOKEN.to_string()),
        ("session hash key", SESSION_HASH_KEY.to_string()),
        ("session cookie", cookie.clone()),
        ("session handle", handle),
        (
            "refused cookie",
            "forged-cookie-value-0123456789".to_string(),
        ),
    ];
    for token in &tokens {
        // The signature alone is enough to recognise a logged token.
        let signature = token.rsplit('.').next().unwrap_or_default().to_string();
        secrets.push(("access token", signature));
    }
    for (what, value) in &secrets {
        assert!(
            !dump.contains(value.as_str()),
            "the config dump shows the {what}"
        );
        assert!(
            !logs.contains(value.as_str()),
            "a log shows the {what}: {value}"
        );
    }
}

/// Every JWT-shaped string in `bytes` (`eyJ….eyJ….sig`).
fn jwts_in(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut found = Vec::new();
    let mut rest = text.as_ref();
    while let Some(at) = rest.find("eyJ") {
        let candidate: String = rest[at..]
            .chars()
            .take_while(|c| is_part(*c) || *c == '.')
            .collect();
        if candidate.split('.').filter(|p| !p.is_empty()).count() == 3 {
            found.push(candidate.clone());
        }
        rest = &rest[at + 3..];
    }
    found
}

/// A Redis dump yields nothing live: after logins and refreshes, the AOF and
/// the RDB hold no access token (they are sealed with a key only the
/// sidecar has), and whatever token-shaped string they hold is refused at
/// the edge.
#[test]
fn tokens_lifted_from_redis_files_are_refused_at_the_edge() {
    let stack = Stack::start_with(StackOptions {
        access_ttl: 2,
        ..StackOptions::default()
    });
    let mut live = Vec::new();
    for _ in 0..5 {
        let token = stack.login_app("alan", "turing");
        assert_eq!(stack.me_with_token(&token).status, 200);
        live.push(token);
        stack.login_web("ada", "lovelace");
    }
    std::thread::sleep(Duration::from_millis(2200));
    for token in &live {
        // A refresh writes the rotated token.
        let me = stack.me_with_token(token);
        assert_eq!(me.status, 200);
    }
    let redis_port = stack.options.redis_port.to_string();
    let saved = std::process::Command::new("redis-cli")
        .args(["-p", &redis_port, "SAVE"])
        .output()
        .expect("redis-cli");
    assert!(saved.status.success());
    let mut files = std::fs::read(stack.dir.join("dump.rdb")).unwrap_or_default();
    for entry in std::fs::read_dir(stack.dir.join("appendonlydir"))
        .expect("Redis runs with an AOF")
        .flatten()
    {
        files.extend(std::fs::read(entry.path()).unwrap_or_default());
    }
    let lifted = jwts_in(&files);
    for token in &lifted {
        assert_eq!(
            stack.me_with_token(token).status,
            401,
            "a token from Redis's files works"
        );
    }
    assert!(
        lifted.is_empty(),
        "{} tokens in clear in Redis's files",
        lifted.len()
    );
    // The files were read: the sealed tokens are there.
    let text = String::from_utf8_lossy(&files);
    assert!(
        text.contains("s1."),
        "no sealed token in the files: were they read?"
    );
}
