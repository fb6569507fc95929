//! The sidecar API's OpenAPI document (docs/sidecar-openapi.json): the
//! committed file is the one the handlers and wire types give, it holds
//! together (every `$ref` resolves, every protected operation answers 401),
//! the router is made from its route list only, and the book's API page
//! lists exactly its operations, with their credentials. A real sidecar is
//! checked against it by tests/tests/sidecar_openapi.rs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn document() -> Value {
    serde_json::from_str(&redis_sidecar::api::openapi_json()).unwrap()
}

/// Every operation: (METHOD, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            out.push((method.to_uppercase(), path.clone(), operation.clone()));
        }
    }
    out
}

/// The document in the book is the one the code gives. After a change to
/// a handler's attributes or a wire type: `PORTERO_WRITE_SCHEMA=1 cargo test
/// -p redis-sidecar --test openapi` rewrites it.
#[test]
fn the_committed_openapi_document_is_the_one_the_code_gives() {
    let generated = redis_sidecar::api::openapi_json();
    let path = workspace().join("docs/sidecar-openapi.json");
    if std::env::var_os("PORTERO_WRITE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/sidecar-openapi.json is not the document of today's API: \
         PORTERO_WRITE_SCHEMA=1 cargo test -p redis-sidecar --test openapi"
    );
}

#[test]
fn the_document_is_openapi_3_1_and_every_reference_resolves() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 30, "{all:?}");
    for r in all {
        let pointer = r.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "{r} resolves to nothing");
    }
}

/// Each operation says who may call it, and each one that needs a
/// credential documents the 401 (and, for one role only, the 403) it gets
/// without the right one; only the JWKS, the probes and the metrics are
/// open. Errors are JSON `ErrorBody`s.
#[test]
fn every_operation_states_its_credential_and_its_errors() {
    let doc = document();
    let open: BTreeSet<&str> = ["/.well-known/jwks.json", "/healthz", "/readyz", "/metrics"].into();
    let schemes: BTreeSet<String> = doc["components"]["securitySchemes"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(schemes, ["admin".to_string(), "filter".to_string()].into());
    let operations = operations(&doc);
    assert_eq!(operations.len(), 12);
    for (method, path, operation) in operations {
        let responses = operation["responses"].as_object().unwrap();
        let roles: Vec<&str> = operation["security"]
            .as_array()
            .map(|s| {
                s.iter()
                    .flat_map(|r| r.as_object().unwrap().keys())
                    .map(String::as_str)
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{method} {path}"
        );
        if open.contains(path.as_str()) {
            assert!(roles.is_empty(), "{method} {path}: {roles:?}");
            assert!(!responses.contains_key("401"), "{method} {path}");
            continue;
        }
        assert!(!roles.is_empty(), "{method} {path} names no credential");
        assert!(responses.contains_key("401"), "{method} {path}");
        assert_eq!(
            responses.contains_key("403"),
            roles.len() == 1,
            "{method} {path}: a 403 exactly when one role may call"
        );
        for (status, answer) in responses {
            if status.starts_with('2') {
                continue;
            }
            let answer = match answer["$ref"].as_str() {
                Some(r) => doc.pointer(r.strip_prefix('#').unwrap()).unwrap(),
                None => answer,
            };
            let schema = &answer["content"]["application/json"]["schema"];
            assert_eq!(
                schema["allOf"][0]["$ref"], "#/components/schemas/ErrorBody",
                "{method} {path} {status}"
            );
        }
    }
}

/// The router is made from the document's route list only: no route added
/// to the API with axum's own `route`, `nest` or `merge`, which would be
/// served and undocumented.
#[test]
fn the_api_adds_no_route_outside_the_documented_list() {
    let dir = workspace().join("redis-sidecar/src/api");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for call in [
                ".route(",
                ".route_service(",
                ".nest(",
                ".nest_service(",
                ".merge(",
            ] {
                assert!(
                    !code.contains(call),
                    "{}:{}: `{call}` adds a route the OpenAPI document does not list; \
                     add it to `routes()` with `routes!` and a `#[utoipa::path]`",
                    path.display(),
                    n + 1
                );
            }
        }
    }
}

/// The rows of the "Routes" table of docs/sidecar.md: (METHOD path,
/// credential).
fn book_routes(page: &str) -> Vec<(String, String)> {
    let table = page
        .split("### Routes")
        .nth(1)
        .expect("docs/sidecar.md has a Routes section");
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let route = cells[1].trim_matches('`');
            // `GET /v1/revocations[?after=<cursor>]`: the path, no query.
            let route = route.split('[').next().unwrap().to_string();
            (route, cells[2].to_string())
        })
        .collect()
}

/// docs/sidecar.md, the API's page in the book, links to the document and
/// lists exactly its operations, each with its credential.
#[test]
fn the_books_api_page_lists_the_documents_operations_and_links_to_it() {
    let page = std::fs::read_to_string(workspace().join("docs/sidecar.md")).unwrap();
    assert!(
        page.contains("](sidecar-openapi.json)"),
        "docs/sidecar.md links to sidecar-openapi.json"
    );
    let doc = document();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, operation)| {
            let roles: Vec<String> = operation["security"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .flat_map(|r| r.as_object().unwrap().keys().cloned())
                        .collect()
                })
                .unwrap_or_default();
            let credential = match roles.as_slice() {
                [] => "none".to_string(),
                [one] => one.clone(),
                [a, b] => format!("{a} or {b}"),
                _ => panic!("{roles:?}"),
            };
            (format!("{method} {path}"), credential)
        })
        .collect();
    let in_book: BTreeSet<(String, String)> = book_routes(&page).into_iter().collect();
    assert_eq!(in_book, documented);
}
