//! The docker-compose files hold together as files: each parses, every
//! service has an image or a build, a health check and a read-only root, waits
//! on its dependencies' health, and everything it depends on or
//! mounts from a named volume is defined — in the base file, and in the HA
//! file laid over it as `docker compose -f docker-compose.yml -f
//! docker-compose.ha.yml` does. (Starting them is the compose tier's job.)

use std::collections::BTreeSet;

use portero_integration::workspace_root;
use serde::Deserialize;
use serde_json::Value;

fn compose_file(name: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join(name)).expect(name);
    let mut yaml: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
    // Compose applies YAML merge keys (`<<: *anchor`).
    yaml.apply_merge()
        .unwrap_or_else(|e| panic!("{name}: merge keys: {e}"));
    Value::deserialize(yaml).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// The names a service depends on (list or map form).
fn depends_on(service: &Value) -> Vec<String> {
    match &service["depends_on"] {
        Value::Array(names) => names
            .iter()
            .filter_map(|n| n.as_str().map(String::from))
            .collect(),
        Value::Object(map) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The named volumes a service mounts (`name:/path`, not `./path:/path`).
fn named_volumes(service: &Value) -> Vec<String> {
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .filter(|v| !v.starts_with('.') && !v.starts_with('/'))
        .filter_map(|v| v.split(':').next().map(String::from))
        .collect()
}

fn check(layers: &[&str]) {
    let files: Vec<Value> = layers.iter().map(|name| compose_file(name)).collect();
    let mut services = BTreeSet::new();
    let mut volumes = BTreeSet::new();
    for file in &files {
        services.extend(keys(&file["services"]));
        volumes.extend(keys(&file["volumes"]));
    }
    for name in &services {
        let layers_of: Vec<&Value> = files
            .iter()
            .map(|f| &f["services"][name.as_str()])
            .filter(|s| !s.is_null())
            .collect();
        assert!(
            layers_of
                .iter()
                .any(|s| !s["image"].is_null() || !s["build"].is_null()),
            "{layers:?}: service {name} has neither image nor build"
        );
        // What the compose tier relies on and Docker users get: every
        // service has a health check, runs on a read-only root, and waits
        // for what it depends on to be healthy (or, for the web app that
        // Envoy serves and that calls Envoy back, started).
        let field = |key: &str| layers_of.iter().rev().find(|s| !s[key].is_null());
        assert!(
            field("healthcheck").is_some(),
            "{layers:?}: {name} has no healthcheck"
        );
        assert_eq!(
            field("read_only").map(|s| &s["read_only"]),
            Some(&Value::Bool(true)),
            "{layers:?}: {name} is not read_only"
        );
        for service in &layers_of {
            if let Value::Object(map) = &service["depends_on"] {
                for (needed, how) in map {
                    let condition = how["condition"].as_str().unwrap_or("service_started");
                    assert!(
                        condition == "service_healthy"
                            || (needed == "fresh-web" && condition == "service_started"),
                        "{layers:?}: {name} waits for {needed} to be {condition}, not healthy"
                    );
                }
            } else {
                assert!(
                    service["depends_on"].is_null(),
                    "{layers:?}: {name}'s depends_on names no condition"
                );
            }
        }
        for service in layers_of {
            for needed in depends_on(service) {
                assert!(
                    services.contains(&needed),
                    "{layers:?}: {name} depends on {needed}, which is not a service"
                );
            }
            for volume in named_volumes(service) {
                assert!(
                    volumes.contains(&volume),
                    "{layers:?}: {name} mounts the undeclared volume {volume}"
                );
            }
        }
    }
}

#[test]
fn the_compose_files_parse_and_name_only_what_they_define() {
    if portero_integration::skip_unless_wasm("the compose files") {
        return;
    }
    check(&["docker-compose.yml"]);
    check(&["docker-compose.yml", "docker-compose.ha.yml"]);
}
