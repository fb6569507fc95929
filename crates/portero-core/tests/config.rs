//! Every field of the plugin configuration: defaults, examples, and each
//! bad value named by its JSON path.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use portero_core::cache::CacheConfig;
use portero_core::config::*;
use portero_core::cookie::SameSite;
use portero_core::policy::{
    BindingConfig, IpCompare, MismatchPolicy, RoleRequirement, RoutePolicy,
};
use portero_testkit::tokens::TEST_JWKS;
use portero_testkit::{valid_config, valid_json};
use serde_json::json;

fn error_for(mutate: impl FnOnce(&mut serde_json::Value)) -> ConfigError {
    let mut v = valid_json();
    mutate(&mut v);
    Config::from_json(v.to_string().as_bytes()).unwrap_err()
}

#[test]
fn defaults_are_safe() {
    let c = valid_config();
    assert_eq!(c.cookie.name(), "__Host-portero");
    assert!(c.cookie_attributes.secure && c.cookie_attributes.http_only);
    assert_eq!(c.cookie_attributes.same_site, SameSite::Strict);
    assert_eq!(c.cookie_attributes.path, "/");
    assert_eq!(c.sidecar.timeout_ms, 500);
    assert_eq!(c.route("/me", None).policy, RoutePolicy::Required);
    assert_eq!(c.route("/auth/login?x=1", None).policy, RoutePolicy::Off);
    assert_eq!(c.route("/authx", None).policy, RoutePolicy::Required);
    assert!(!c.uses_route_names);
    // Binding: tolerant network match, logged not rejected; no redirect.
    assert_eq!(c.binding, BindingConfig::default());
    assert_eq!(c.binding.ip, IpCompare::Prefix { v4: 24, v6: 64 });
    assert_eq!(c.binding.ip_policy, MismatchPolicy::Log);
    assert!(c.login_redirect.is_none());
    // Browsers get HTML pages for refusals, the built-in ones.
    assert!(c.error_pages.enabled);
    assert_eq!(
        (
            c.error_pages.template.as_ref(),
            c.error_pages.stylesheet_url.as_ref()
        ),
        (None, None)
    );
    // Caches on, 30 s session views, the feed read twice a second.
    assert_eq!(c.cache, CacheConfig::default());
    assert_eq!(c.cache.session_ttl_seconds, 30);
    assert_eq!(c.cache.feed_poll_interval_ms, 500);
    assert!(c
        .identity_headers
        .all()
        .contains(&"x-portero-binding-mismatch"));
}

#[test]
fn route_rules_binding_and_redirect_parse() {
    let mut v = valid_json();
    v["routes"] = json!([
        {"route_name": "admin", "roles": {"all_of": ["admin", "dev"]}},
        {"path_prefix": "/feed/", "policy": "optional"}
    ]);
    v["binding"] = json!({
        "ip": {"compare": "exact", "policy": "reject"},
        "user_agent": {"compare": "off", "policy": "reject"},
        "on_reject": "keep_session"
    });
    v["login_redirect"] = json!({"url": "/login"});
    let c = Config::from_json(v.to_string().as_bytes()).unwrap();
    assert!(c.uses_route_names);
    let admin = c.route("/anything", Some("admin"));
    assert_eq!(admin.policy, RoutePolicy::Required);
    assert_eq!(
        admin.roles,
        Some(&RoleRequirement::AllOf(vec!["admin".into(), "dev".into()]))
    );
    assert_eq!(c.route("/feed/x", None).policy, RoutePolicy::Optional);
    assert_eq!(c.binding.ip, IpCompare::Exact);
    assert_eq!(c.binding.ip_policy, MismatchPolicy::Reject);
    // `compare: off` turns the field off whatever its policy says.
    assert_eq!(c.binding.user_agent_policy, MismatchPolicy::Off);
    assert!(!c.binding.end_session_on_reject);
    let redirect = c.login_redirect.unwrap();
    assert_eq!(redirect.url, "/login");
    assert_eq!(redirect.return_parameter, "return_to");
}

#[test]
fn jwks_may_be_a_string() {
    let mut v = valid_json();
    v["jwt"]["jwks"] = json!(TEST_JWKS);
    assert!(Config::from_json(v.to_string().as_bytes()).is_ok());
}

#[test]
fn each_bad_field_is_named() {
    type Mutation = Box<dyn FnOnce(&mut serde_json::Value)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("(root)", Box::new(|v| *v = json!([]))),
        (
            "cookie",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("cookie");
            }),
        ),
        ("bogus", Box::new(|v| v["bogus"] = json!(1))),
        ("cookie.keys", Box::new(|v| v["cookie"]["keys"] = json!([]))),
        (
            "cookie.keys[0].secret",
            Box::new(|v| v["cookie"]["keys"][0]["secret"] = json!("short")),
        ),
        (
            "cookie.keys[0].id",
            Box::new(|v| v["cookie"]["keys"][0]["id"] = json!(300)),
        ),
        (
            "cookie.keys[1].id",
            Box::new(|v| {
                v["cookie"]["keys"] = json!([
                    {"id": 1, "secret": "0123456789abcdef0123456789abcdef"},
                    {"id": 1, "secret": "fedcba9876543210fedcba9876543210"}
                ])
            }),
        ),
        (
            "cookie.name",
            Box::new(|v| v["cookie"]["name"] = json!("bad name")),
        ),
        (
            "cookie.same_site",
            Box::new(|v| v["cookie"]["same_site"] = json!("None")),
        ),
        (
            "cookie.secure",
            Box::new(|v| v["cookie"]["secure"] = json!(false)),
        ),
        (
            "cookie.path",
            Box::new(|v| v["cookie"]["path"] = json!("/app")),
        ),
        (
            "cookie.domain",
            Box::new(|v| v["cookie"]["domain"] = json!("example.com")),
        ),
        ("jwt.issuer", Box::new(|v| v["jwt"]["issuer"] = json!(""))),
        (
            "jwt.audiences",
            Box::new(|v| v["jwt"]["audiences"] = json!([])),
        ),
        (
            "jwt.leeway_seconds",
            Box::new(|v| v["jwt"]["leeway_seconds"] = json!(3600)),
        ),
        (
            "jwt.leeway_seconds",
            Box::new(|v| v["jwt"]["leeway_seconds"] = json!(-1)),
        ),
        (
            "jwt.jwks_refresh_seconds",
            Box::new(|v| v["jwt"]["jwks_refresh_seconds"] = json!(86_401)),
        ),
        (
            "jwt.jwks",
            Box::new(|v| v["jwt"]["jwks"] = json!({"keys": []})),
        ),
        (
            "jwt.jwks",
            Box::new(|v| v["jwt"]["jwks"] = json!("not json")),
        ),
        (
            "jwt.jwks",
            Box::new(|v| {
                v["jwt"]["jwks"] = json!({"keys": [{"kty": "oct", "k": "AA", "kid": "x"}]})
            }),
        ),
        (
            "sidecar.cluster",
            Box::new(|v| v["sidecar"]["cluster"] = json!("")),
        ),
        (
            "sidecar.token",
            Box::new(|v| v["sidecar"]["token"] = json!("short")),
        ),
        (
            "sidecar.timeout_ms",
            Box::new(|v| v["sidecar"]["timeout_ms"] = json!(0)),
        ),
        (
            "identity_headers.roles",
            Box::new(|v| v["identity_headers"] = json!({"roles": "X-Roles"})),
        ),
        (
            "identity_headers.user_id",
            Box::new(|v| v["identity_headers"] = json!({"user_id": "cookie"})),
        ),
        (
            "session_start_header",
            Box::new(|v| v["session_start_header"] = json!("bad header")),
        ),
        (
            "routes[0].path_prefix",
            Box::new(|v| v["routes"][0]["path_prefix"] = json!("auth")),
        ),
        (
            "routes[0].policy",
            Box::new(|v| v["routes"][0]["policy"] = json!("maybe")),
        ),
        (
            "routes[0]",
            Box::new(|v| v["routes"][0]["route_name"] = json!("both")),
        ),
        ("routes[0]", Box::new(|v| v["routes"][0] = json!({}))),
        (
            "routes[0].route_name",
            Box::new(|v| v["routes"] = json!([{"route_name": ""}])),
        ),
        (
            "routes[0].roles",
            Box::new(|v| v["routes"][0]["roles"] = json!({"any_of": ["a"]})),
        ),
        (
            "routes[0].roles",
            Box::new(|v| {
                v["routes"] =
                    json!([{"path_prefix": "/a", "roles": {"any_of": ["a"], "all_of": ["b"]}}])
            }),
        ),
        (
            "routes[0].roles.any_of",
            Box::new(|v| v["routes"] = json!([{"path_prefix": "/a", "roles": {"any_of": []}}])),
        ),
        (
            "routes[0].roles.all_of",
            Box::new(|v| {
                v["routes"] = json!([{"path_prefix": "/a", "roles": {"all_of": ["a,b"]}}])
            }),
        ),
        (
            "identity_response_cache_control",
            Box::new(|v| v["identity_response_cache_control"] = json!("no-store\r\nx-evil: 1")),
        ),
        (
            "routes[0].login_redirect_url",
            Box::new(|v| {
                v["routes"] = json!([{"path_prefix": "/a", "login_redirect_url": "//evil.example"}])
            }),
        ),
        (
            "routes[0].login_redirect_url",
            Box::new(|v| {
                v["routes"] = json!([{"path_prefix": "/a", "policy": "optional", "login_redirect_url": "/in"}])
            }),
        ),
        (
            "routes[0].sign_in_callback",
            Box::new(|v| v["routes"] = json!([{"path_prefix": "/cb", "sign_in_callback": true}])),
        ),
        (
            "routes[0].roles.none_of",
            Box::new(|v| v["routes"] = json!([{"path_prefix": "/a", "roles": {"none_of": ["a"]}}])),
        ),
        (
            "binding.ip.compare",
            Box::new(|v| v["binding"] = json!({"ip": {"compare": "subnet"}})),
        ),
        (
            "binding.ip.policy",
            Box::new(|v| v["binding"] = json!({"ip": {"policy": "block"}})),
        ),
        (
            "binding.ip.ipv4_prefix_len",
            Box::new(|v| v["binding"] = json!({"ip": {"ipv4_prefix_len": 33}})),
        ),
        (
            "binding.ip.ipv4_prefix_len",
            Box::new(|v| v["binding"] = json!({"ip": {"ipv4_prefix_len": -1}})),
        ),
        (
            "binding.ip.ipv6_prefix_len",
            Box::new(|v| v["binding"] = json!({"ip": {"ipv6_prefix_len": 0}})),
        ),
        (
            "binding.user_agent.compare",
            Box::new(|v| v["binding"] = json!({"user_agent": {"compare": "prefix"}})),
        ),
        (
            "binding.user_agent.policy",
            Box::new(|v| v["binding"] = json!({"user_agent": {"policy": 1}})),
        ),
        (
            "binding.on_reject",
            Box::new(|v| v["binding"] = json!({"on_reject": "logout"})),
        ),
        (
            "binding.fingerprint",
            Box::new(|v| v["binding"] = json!({"fingerprint": true})),
        ),
        (
            "identity_headers.binding_mismatch",
            Box::new(|v| v["identity_headers"] = json!({"binding_mismatch": "X-Upper"})),
        ),
        (
            "login_redirect.url",
            Box::new(|v| v["login_redirect"] = json!({"url": "//evil.example/login"})),
        ),
        (
            "login_redirect.url",
            Box::new(|v| v["login_redirect"] = json!({"url": "http://plain.example/login"})),
        ),
        (
            "login_redirect.url",
            Box::new(|v| v["login_redirect"] = json!({"url": "login"})),
        ),
        (
            "login_redirect.url",
            Box::new(|v| v["login_redirect"] = json!({})),
        ),
        (
            "login_redirect.return_parameter",
            Box::new(|v| v["login_redirect"] = json!({"url": "/login", "return_parameter": "a&b"})),
        ),
        (
            "cache.tokens.capacity",
            Box::new(|v| v["cache"] = json!({"tokens": {"capacity": 2_000_000}})),
        ),
        (
            "cache.tokens.ttl_seconds",
            Box::new(|v| v["cache"] = json!({"tokens": {"ttl_seconds": 0}})),
        ),
        (
            "cache.sessions.capacity",
            Box::new(|v| v["cache"] = json!({"sessions": {"capacity": -1}})),
        ),
        (
            "cache.sessions.ttl_seconds",
            Box::new(|v| v["cache"] = json!({"sessions": {"ttl_seconds": 301}})),
        ),
        (
            "cache.revocation_feed.poll_interval_ms",
            Box::new(|v| v["cache"] = json!({"revocation_feed": {"poll_interval_ms": 50}})),
        ),
        (
            "cache.revocation_feed.max_staleness_ms",
            Box::new(|v| {
                v["cache"] =
                    json!({"revocation_feed": {"poll_interval_ms": 1000, "max_staleness_ms": 1500}})
            }),
        ),
        (
            "cache.sessions.size",
            Box::new(|v| v["cache"] = json!({"sessions": {"size": 1}})),
        ),
        (
            "retry_after_seconds",
            Box::new(|v| v["retry_after_seconds"] = json!(0)),
        ),
        (
            "error_pages.stylesheet_url",
            Box::new(|v| v["error_pages"] = json!({"stylesheet_url": "http://cdn.example/a.css"})),
        ),
        (
            "error_pages.stylesheet_url",
            Box::new(|v| v["error_pages"] = json!({"stylesheet_url": "//cdn.example/a.css"})),
        ),
        (
            "error_pages.template",
            Box::new(|v| v["error_pages"] = json!({"template": "<h1>{{title}}</h1>"})),
        ),
        (
            "error_pages.template",
            Box::new(|v| v["error_pages"] = json!({"template": "{{message}} {{user_id}}"})),
        ),
        (
            "error_pages.template",
            Box::new(|v| v["error_pages"] = json!({"template": "{{message}} {{title"})),
        ),
        (
            "error_pages.template",
            Box::new(|v| {
                v["error_pages"] =
                    json!({"template": format!("{{{{message}}}}{}", " ".repeat(40_000))})
            }),
        ),
        (
            "error_pages.enabled",
            Box::new(|v| v["error_pages"] = json!({"enabled": "yes"})),
        ),
    ];
    for (field, mutate) in cases {
        let e = error_for(mutate);
        assert_eq!(e.field, field, "{e}");
        assert!(e.to_string().contains(field), "{e}");
    }
}

/// The documented example configs (`docs/examples/`) stay valid; their
/// JWKS placeholder is replaced by the test key set.
#[test]
fn documented_examples_are_valid() {
    for (name, text) in [
        ("web", include_str!("../../../docs/examples/web.json")),
        ("api", include_str!("../../../docs/examples/api.json")),
        (
            "subdomains",
            include_str!("../../../docs/examples/subdomains.json"),
        ),
    ] {
        let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert!(v["jwt"]["jwks"].as_str().unwrap().starts_with("REPLACE"));
        v["jwt"]["jwks"] = json!(TEST_JWKS);
        if let Err(e) = Config::from_json(v.to_string().as_bytes()) {
            panic!("docs/examples/{name}.json: {e}");
        }
    }
}

#[test]
fn not_json_is_an_error_not_a_panic() {
    for bad in [&b""[..], b"{", b"\xff\xfe", b"null", b"42"] {
        assert!(Config::from_json(bad).is_err());
    }
}

#[test]
fn lax_and_domain_when_host_prefix_is_off() {
    let mut v = valid_json();
    v["cookie"]["name"] = json!("portero");
    v["cookie"]["same_site"] = json!("Lax");
    v["cookie"]["domain"] = json!("example.com");
    let c = Config::from_json(v.to_string().as_bytes()).unwrap();
    assert_eq!(c.cookie_attributes.same_site, SameSite::Lax);
    assert_eq!(c.cookie_attributes.domain.as_deref(), Some("example.com"));
}

/// Secrets from the environment: the config (and so Envoy's config dump)
/// holds only the variable's name.
#[test]
fn secrets_can_come_from_the_environment_and_a_missing_one_is_named() {
    // Names of this test's own: tests run in parallel in one process.
    std::env::set_var(
        "PORTERO_TEST_COOKIE_SECRET_CFG",
        "0123456789abcdef0123456789abcdef",
    );
    std::env::set_var(
        "PORTERO_TEST_FILTER_TOKEN_CFG",
        "filter-token-from-env-0123",
    );
    let mut v = valid_json();
    v["cookie"]["keys"][0]["secret"] = json!({"env": "PORTERO_TEST_COOKIE_SECRET_CFG"});
    v["sidecar"]["token"] = json!({"env": "PORTERO_TEST_FILTER_TOKEN_CFG"});
    let text = v.to_string();
    assert!(!text.contains("0123456789abcdef0123") && !text.contains("from-env"));
    let c = Config::from_json(text.as_bytes()).unwrap();
    assert_eq!(c.sidecar.authorization, "Bearer filter-token-from-env-0123");
    let sealed = c
        .cookie
        .seal("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")
        .unwrap();
    assert!(c.cookie.open(&sealed).is_ok());

    let e =
        error_for(|v| v["cookie"]["keys"][0]["secret"] = json!({"env": "PORTERO_TEST_NEVER_SET"}));
    assert_eq!(e.field, "cookie.keys[0].secret");
    assert!(e.to_string().contains("PORTERO_TEST_NEVER_SET"), "{e}");
    let e = error_for(|v| v["sidecar"]["token"] = json!({"env": "PORTERO_TEST_NEVER_SET"}));
    assert_eq!(e.field, "sidecar.token");
    // Neither form: the error says which forms there are.
    for wrong in [json!(5), json!({"file": "/etc/secret"}), json!({"env": 1})] {
        let e = error_for(|v| v["sidecar"]["token"] = wrong);
        assert_eq!(e.field, "sidecar.token");
        assert!(e.to_string().contains("{\"env\": \"NAME\"}"), "{e}");
    }
    // A short secret from the environment is as bad as an inline one.
    std::env::set_var("PORTERO_TEST_SHORT_SECRET_CFG", "short");
    let e = error_for(|v| {
        v["cookie"]["keys"][0]["secret"] = json!({"env": "PORTERO_TEST_SHORT_SECRET_CFG"})
    });
    assert_eq!(e.field, "cookie.keys[0].secret");
}

/// The schema in the book is the one the parser's types give. After a
/// change to the configuration: `PORTERO_WRITE_SCHEMA=1 cargo test -p
/// portero-core --test config` rewrites it.
#[test]
fn the_committed_json_schema_is_the_one_the_parser_reads() {
    let generated = serde_json::to_string_pretty(&Config::json_schema()).unwrap() + "\n";
    #[cfg(not(target_arch = "wasm32"))]
    if std::env::var_os("PORTERO_WRITE_SCHEMA").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/plugin-config.schema.json"
        );
        std::fs::write(path, &generated).unwrap();
        return;
    }
    let committed = include_str!("../../../docs/plugin-config.schema.json");
    assert!(
        committed == generated,
        "docs/plugin-config.schema.json is not the schema of today's config: \
         PORTERO_WRITE_SCHEMA=1 cargo test -p portero-core --test config"
    );
}
