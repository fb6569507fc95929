//! A real sidecar (and Redis) against the API's OpenAPI document,
//! docs/sidecar-openapi.json: every documented operation is served, each
//! answer's status is one the operation documents, and its body (every
//! error's included) is valid against the schema documented for that
//! status, with the documented content type and headers. Each documented
//! status of each operation is produced at least once, but the few that
//! need a fault this test cannot make (listed in `NOT_PRODUCED_HERE`). A
//! documented path with another method is a 405, and the routes the
//! sidecar's own metrics saw are documented ones.
//!
//! That the committed document is the one the code gives, and that the
//! router is built from its route list only, is redis-sidecar/tests/openapi.rs.

use std::cell::RefCell;
use std::collections::BTreeSet;

use portero_integration::{
    claims_of, require, workspace_root, Reply, Stack, StackOptions, ADMIN_TOKEN, FILTER_TOKEN,
};
use serde_json::{json, Value};

/// Documented answers no request of this test can produce: a signing
/// failure or a session-id collision (500s), and a user record deleted
/// between an update and its read-back (the update's 404).
const NOT_PRODUCED_HERE: &[(&str, &str, u16)] = &[
    ("POST", "/v1/sessions", 500),
    ("POST", "/v1/sessions/lookup", 500),
    ("GET", "/metrics", 500),
    ("PUT", "/v1/users/{user_id}", 404),
];

const USER: &str = "u-openapi";

fn document() -> Value {
    let path = workspace_root().join("docs/sidecar-openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the document")).expect("JSON")
}

/// A value with the shape of a session id or handle that names nothing.
fn nobody() -> String {
    "A".repeat(65)
}

struct Check {
    stack: Stack,
    doc: Value,
    /// (METHOD, path template, status) of every answer checked.
    seen: RefCell<BTreeSet<(String, String, u16)>>,
}

impl Check {
    /// Every documented operation: (METHOD, path template).
    fn operations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    fn operation(&self, method: &str, template: &str) -> &Value {
        let operation = &self.doc["paths"][template][method.to_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {template} is not in the document"
        );
        operation
    }

    /// The credentials that may call an operation (`filter`, `admin`).
    fn roles(&self, method: &str, template: &str) -> Vec<String> {
        self.operation(method, template)["security"]
            .as_array()
            .map(|s| {
                s.iter()
                    .flat_map(|r| r.as_object().unwrap().keys().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn documented_statuses(&self, method: &str, template: &str) -> BTreeSet<u16> {
        self.operation(method, template)["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|s| s.parse().unwrap())
            .collect()
    }

    fn resolve<'v>(&'v self, value: &'v Value) -> &'v Value {
        match value["$ref"].as_str() {
            Some(r) => self
                .doc
                .pointer(r.strip_prefix('#').unwrap())
                .unwrap_or_else(|| panic!("{r} resolves to nothing")),
            None => value,
        }
    }

    /// Why `body` is not valid against `schema` (whose `$ref`s point into
    /// the document's components); empty when it is.
    fn errors(&self, schema: &Value, body: &Value) -> Vec<String> {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::validator_for(&root).expect("a valid schema");
        validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    fn assert_valid(&self, schema: &Value, body: &Value, what: &str) {
        let errors = self.errors(schema, body);
        assert!(errors.is_empty(), "{what}: {errors:?}\n{body}");
    }

    /// Checks one answer against the document: a documented status, the
    /// documented content type and headers, a body valid against the
    /// documented schema.
    fn check(&self, method: &str, template: &str, path: &str, reply: &Reply) {
        let what = format!("{method} {path} -> {}", reply.status);
        let operation = self.operation(method, template);
        let answer = &operation["responses"][reply.status.to_string()];
        assert!(
            !answer.is_null(),
            "{what}: not a status the document gives {method} {template}: {}",
            reply.body
        );
        let answer = self.resolve(answer);
        for header in answer["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            assert!(reply.header(header).is_some(), "{what}: no {header} header");
        }
        let content_type = reply.header("content-type").unwrap_or_default();
        let media = &answer["content"][content_type];
        assert!(
            media.is_object(),
            "{what}: content-type {content_type:?}, documented {:?}",
            answer["content"]
                .as_object()
                .map(|c| c.keys().collect::<Vec<_>>())
        );
        if content_type == "application/json" {
            self.assert_valid(&media["schema"], &reply.json(), &what);
        }
        self.seen
            .borrow_mut()
            .insert((method.to_string(), template.to_string(), reply.status));
    }

    /// Sends one request to the sidecar and checks the answer.
    fn send(
        &self,
        method: &str,
        template: &str,
        path: &str,
        credential: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let authorization = credential.map(|c| format!("Bearer {c}"));
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|a| ("authorization", a.as_str()))
            .collect();
        let reply = self
            .stack
            .send(method, &self.stack.sidecar_url(path), &headers, body);
        self.check(method, template, path, &reply);
        reply
    }

    /// Sends exactly these headers and body bytes, and checks the answer.
    fn send_raw(
        &self,
        method: &str,
        template: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let reply = self
            .stack
            .send_raw(method, &self.stack.sidecar_url(path), headers, body);
        self.check(method, template, path, &reply);
        reply
    }
}

/// A path of the template, its parameters filled in.
fn concrete(template: &str) -> String {
    template
        .replace("{handle}", &nobody())
        .replace("{user_id}", USER)
}

/// A body the operation accepts (to show a refusal is not about the body).
fn good_body(method: &str, template: &str) -> Option<Value> {
    match (method, template) {
        ("POST", "/v1/sessions") => Some(json!({"user_id": USER, "email": "o@example.com"})),
        ("POST", "/v1/sessions/lookup") => Some(json!({"session_id": nobody()})),
        ("PUT", "/v1/users/{user_id}") => Some(json!({"roles": ["dev"]})),
        _ => None,
    }
}

fn error_code(reply: &Reply) -> String {
    reply.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

const LOOKUP: &str = "/v1/sessions/lookup";
const LOGIN: &str = "/v1/sessions";
const END: &str = "/v1/sessions/{handle}";
const USERS: &str = "/v1/users/{user_id}";
const REVOKE: &str = "/v1/users/{user_id}/revoke";
const SESSIONS: &str = "/v1/users/{user_id}/sessions";
const FEED: &str = "/v1/revocations";
const OPEN: [&str; 4] = ["/.well-known/jwks.json", "/healthz", "/readyz", "/metrics"];

/// The credential an operation wants (the admin's where either will do).
fn credential_for(c: &Check, method: &str, template: &str) -> &'static str {
    if c.roles(method, template).iter().any(|r| r == "admin") {
        ADMIN_TOKEN
    } else {
        FILTER_TOKEN
    }
}

#[test]
fn the_sidecar_answers_as_its_openapi_document_says() {
    let c = Check {
        stack: Stack::start_backends(StackOptions::default()),
        doc: document(),
        seen: RefCell::new(BTreeSet::new()),
    };
    let operations = c.operations();
    assert_eq!(operations.len(), 12, "{operations:?}");
    the_checks_refuse_what_the_document_does_not_allow(&c);
    credentials(&c);
    successes(&c);
    refusals(&c);
    bodies(&c);
    other_methods_and_paths(&c);
    routes_in_the_metrics(&c);
    // Redis frozen (stopped, it would be the same answers, each after the
    // reconnection's back-off: ~1.5 s a request here, against 250 ms).
    c.stack.signal("redis", libc::SIGSTOP);
    store_trouble(&c);
    c.stack.signal("redis", libc::SIGCONT);

    // Every documented answer of every operation was seen, but those this
    // test cannot produce.
    let seen = c.seen.borrow();
    let mut missing = Vec::new();
    for (method, template) in &operations {
        for status in c.documented_statuses(method, template) {
            let key = (method.clone(), template.clone(), status);
            let exempt = NOT_PRODUCED_HERE.contains(&(method.as_str(), template.as_str(), status));
            if !seen.contains(&key) && !exempt {
                missing.push(key);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documented, never produced: {missing:?}"
    );
}

/// The checks themselves: a body the document does not allow fails them
/// (through `$ref`s into the components, and the codes an answer lists).
fn the_checks_refuse_what_the_document_does_not_allow(c: &Check) {
    let refused = c.resolve(&c.operation("POST", LOOKUP)["responses"]["404"]);
    let schema = &refused["content"]["application/json"]["schema"];
    let verdict = json!({"error": "token_replayed", "message": "no usable session"});
    assert!(c.errors(schema, &verdict).is_empty());
    for wrong in [
        json!({"error": "user_not_found", "message": "a code of another answer"}),
        json!({"error": "session_not_found"}),
        json!({"error": "session_not_found", "message": 7}),
    ] {
        assert!(!c.errors(schema, &wrong).is_empty(), "{wrong}");
    }
    let created = &c.operation("POST", LOGIN)["responses"]["201"]["content"]["application/json"];
    let no_token = json!({"session_id": "s", "session_handle": "h", "access_expires_at": 1,
                          "expires_at": 2});
    assert!(!c.errors(&created["schema"], &no_token).is_empty());
}

/// No credential, an unknown one, the other role's.
fn credentials(c: &Check) {
    for (method, template) in c.operations() {
        let (path, body) = (concrete(&template), good_body(&method, &template));
        let roles = c.roles(&method, &template);
        let none = c.send(&method, &template, &path, None, body.as_ref());
        if roles.is_empty() {
            assert!(OPEN.contains(&template.as_str()), "{template}");
            continue;
        }
        assert_eq!(
            (none.status, error_code(&none)),
            (401, "unauthorized".into())
        );
        let unknown = Some("not-a-credential-of-this-sidecar");
        let reply = c.send(&method, &template, &path, unknown, body.as_ref());
        assert_eq!(reply.status, 401);
        let other = match roles.as_slice() {
            [role] if role == "admin" => FILTER_TOKEN,
            [role] if role == "filter" => ADMIN_TOKEN,
            _ => continue,
        };
        let reply = c.send(&method, &template, &path, Some(other), body.as_ref());
        assert_eq!(
            (reply.status, error_code(&reply)),
            (403, "forbidden".into()),
            "{method} {template}"
        );
    }
}

/// Each operation answers its success at least once.
fn successes(c: &Check) {
    let login = json!({"user_id": USER, "email": "o@example.com", "roles": ["dev"],
                       "client_ip": "127.0.0.1", "user_agent": "openapi"});
    let created = c.send("POST", LOGIN, LOGIN, Some(ADMIN_TOKEN), Some(&login));
    assert_eq!(created.status, 201, "{}", created.body);
    let session = created.json();
    let handle = session["session_handle"].as_str().unwrap().to_string();
    let jti = claims_of(session["access_token"].as_str().unwrap()).jti;
    for body in [
        json!({"session_id": session["session_id"]}),
        json!({"session_handle": handle, "presented_jti": jti}),
    ] {
        let found = c.send("POST", LOOKUP, LOOKUP, Some(FILTER_TOKEN), Some(&body));
        assert_eq!(found.status, 200, "{}", found.body);
    }
    let feed = c.send("GET", FEED, FEED, Some(FILTER_TOKEN), None);
    assert_eq!(feed.status, 200);
    let cursor = feed.json()["cursor"].as_str().unwrap().to_string();
    let user = concrete(USERS);
    let reply = c.send("GET", USERS, &user, Some(ADMIN_TOKEN), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let update = json!({"status": "active", "roles": ["dev", "ops"], "permissions": ["r:read"]});
    let reply = c.send("PUT", USERS, &user, Some(ADMIN_TOKEN), Some(&update));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = c.send(
        "GET",
        SESSIONS,
        &concrete(SESSIONS),
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(reply.json()["sessions"].as_array().map(Vec::len), Some(1));
    let end = format!("/v1/sessions/{handle}");
    for (credential, ended) in [(ADMIN_TOKEN, true), (FILTER_TOKEN, false)] {
        let reply = c.send("DELETE", END, &end, Some(credential), None);
        assert_eq!(
            (reply.status, reply.json()["ended"].clone()),
            (200, json!(ended))
        );
    }
    let after = format!("{FEED}?after={cursor}");
    let feed = c.send("GET", FEED, &after, Some(FILTER_TOKEN), None);
    let events = feed.json()["events"].as_array().map_or(0, Vec::len);
    assert!(events >= 2, "{}", feed.body);
    let reply = c.send("POST", REVOKE, &concrete(REVOKE), Some(ADMIN_TOKEN), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    for open in OPEN {
        assert_eq!(c.send("GET", open, open, None, None).status, 200, "{open}");
    }
}

/// Malformed input; no such session or user; a banned user's login.
fn refusals(c: &Check) {
    let unknown_field = json!({"user_id": USER, "email": "o@example.com", "surprise": 1});
    let malformed: [(&str, &str, String, Option<Value>); 8] = [
        ("POST", LOGIN, LOGIN.into(), Some(unknown_field)),
        ("POST", LOOKUP, LOOKUP.into(), Some(json!({}))),
        ("DELETE", END, "/v1/sessions/not-a-handle".into(), None),
        ("GET", USERS, "/v1/users/%01".into(), None),
        (
            "PUT",
            USERS,
            concrete(USERS),
            Some(json!({"roles": ["a,b"]})),
        ),
        ("POST", REVOKE, "/v1/users/%01/revoke".into(), None),
        ("GET", SESSIONS, "/v1/users/%01/sessions".into(), None),
        ("GET", FEED, format!("{FEED}?after=yesterday"), None),
    ];
    for (method, template, path, body) in malformed {
        let credential = credential_for(c, method, template);
        let reply = c.send(method, template, &path, Some(credential), body.as_ref());
        assert_eq!(
            (reply.status, error_code(&reply)),
            (400, "bad_request".into()),
            "{method} {path}"
        );
    }
    let nobody = good_body("POST", LOOKUP);
    let reply = c.send("POST", LOOKUP, LOOKUP, Some(FILTER_TOKEN), nobody.as_ref());
    assert_eq!(
        (reply.status, error_code(&reply)),
        (404, "session_not_found".into())
    );
    let reply = c.send(
        "GET",
        USERS,
        "/v1/users/u-never-seen",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(
        (reply.status, error_code(&reply)),
        (404, "user_not_found".into())
    );
    let ban = json!({"status": "banned"});
    let reply = c.send(
        "PUT",
        USERS,
        "/v1/users/u-banned",
        Some(ADMIN_TOKEN),
        Some(&ban),
    );
    assert_eq!(reply.status, 200);
    let login = json!({"user_id": "u-banned", "email": "b@example.com"});
    let reply = c.send("POST", LOGIN, LOGIN, Some(ADMIN_TOKEN), Some(&login));
    assert_eq!(
        (reply.status, error_code(&reply)),
        (403, "user_banned".into())
    );
}

/// Bodies too large, or not declared JSON.
fn bodies(c: &Check) {
    let huge = json!({"user_id": "x".repeat(70 * 1024)}).to_string();
    for (method, template) in [("POST", LOGIN), ("POST", LOOKUP), ("PUT", USERS)] {
        let authorization = format!("Bearer {}", credential_for(c, method, template));
        let path = concrete(template);
        let good = good_body(method, template).unwrap().to_string();
        for (content_type, body, status, code) in [
            ("application/json", &huge, 413, "payload_too_large"),
            ("text/plain", &good, 415, "unsupported_media_type"),
        ] {
            let headers = [
                ("authorization", authorization.as_str()),
                ("content-type", content_type),
            ];
            let reply = c.send_raw(method, template, &path, &headers, body.as_bytes());
            assert_eq!(
                (reply.status, error_code(&reply)),
                (status, code.into()),
                "{method} {path}"
            );
        }
    }
}

/// A documented path with a method it does not document is a 405, a path
/// no route serves a 404; both `ErrorBody`s. (HEAD is left out: HTTP makes
/// it GET without the body, and axum serves it so on every GET route.)
fn other_methods_and_paths(c: &Check) {
    let error_body = json!({"$ref": "#/components/schemas/ErrorBody"});
    for (path, item) in c.doc["paths"].as_object().unwrap() {
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"] {
            if item.get(method.to_lowercase()).is_some() {
                continue;
            }
            let url = c.stack.sidecar_url(&concrete(path));
            let reply = c.stack.send(method, &url, &[], None);
            assert_eq!(
                (reply.status, error_code(&reply)),
                (405, "method_not_allowed".into()),
                "{method} {path}"
            );
            c.assert_valid(&error_body, &reply.json(), &format!("{method} {path}"));
        }
    }
    let reply = c
        .stack
        .send("GET", &c.stack.sidecar_url("/v1/nothing"), &[], None);
    assert_eq!(
        (reply.status, error_code(&reply)),
        (404, "no_such_route".into())
    );
    c.assert_valid(&error_body, &reply.json(), "GET /v1/nothing");
}

/// Every route pattern the sidecar's router matched (its request metrics
/// are labelled with them) is a documented path.
fn routes_in_the_metrics(c: &Check) {
    let metrics = c
        .stack
        .send("GET", &c.stack.sidecar_url("/metrics"), &[], None)
        .body;
    let documented: BTreeSet<&str> = c.doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut routes = BTreeSet::new();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        if let Some(route) = line
            .split("route=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        {
            assert!(route == "unmatched" || documented.contains(route), "{line}");
            routes.insert(route.to_string());
        }
    }
    assert!(routes.len() >= documented.len(), "{routes:?}");
}

/// Redis not answering: each operation that reads or writes it is a 503.
fn store_trouble(c: &Check) {
    for (method, template) in c.operations() {
        if !c.documented_statuses(&method, &template).contains(&503) {
            continue;
        }
        let credential = (!c.roles(&method, &template).is_empty())
            .then(|| credential_for(c, &method, &template));
        let (path, body) = (concrete(&template), good_body(&method, &template));
        let reply = c.send(&method, &template, &path, credential, body.as_ref());
        assert_eq!(
            (reply.status, error_code(&reply)),
            (503, "store_unavailable".into()),
            "{method} {path}"
        );
    }
}

/// `redis-sidecar openapi` prints the committed document.
#[test]
fn the_openapi_command_prints_the_document() {
    let sidecar = workspace_root().join("target/release/redis-sidecar");
    require(&sidecar, "cargo build --release -p redis-sidecar");
    let out = std::process::Command::new(sidecar)
        .arg("openapi")
        .output()
        .expect("redis-sidecar openapi");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed, document());
}
