//! The Istio manifests (`envoy/istio/`) hold together: the WasmPlugin runs
//! in the AUTHN phase and fails closed; its `pluginConfig` is a config the
//! filter accepts; the sidecar cluster it names is the Service's, in Istio's
//! `outbound|port||host` form; the Deployment sets only flags the sidecar
//! has and reads only keys its Secret holds, and runs `serve` once with the
//! image's entrypoint; the pinned key is one the sidecar's key directory
//! publishes. (No cluster runs here: Istio's ECDS
//! delivery itself is tested in `ecds.rs`.)

use std::collections::BTreeSet;

use portero_core::config::Config;
use portero_integration::workspace_root;
use serde::Deserialize;
use serde_json::Value;

/// Every document of every manifest, as JSON.
fn documents() -> Vec<Value> {
    let dir = workspace_root().join("envoy/istio");
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("envoy/istio") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let value =
                    Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                if !value.is_null() {
                    docs.push(value);
                }
            }
        }
    }
    docs
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn the_istio_manifests_hold_together() {
    if portero_integration::skip_unless_wasm("Istio") {
        return;
    }
    let docs = documents();
    let plugin = find(&docs, "WasmPlugin", "portero");
    assert_eq!(plugin["spec"]["phase"], "AUTHN");
    assert_eq!(plugin["spec"]["failStrategy"], "FAIL_CLOSE");

    // Istio hands pluginConfig over as JSON in a StringValue: the filter
    // must accept exactly that text.
    let plugin_config = &plugin["spec"]["pluginConfig"];
    let config = Config::from_json(plugin_config.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("pluginConfig: {e}"));
    assert!(
        config.uses_route_names,
        "a per-route rule by Istio route name"
    );

    // The cluster is the Service's, as Istio names outbound clusters.
    let service = find(&docs, "Service", "redis-sidecar");
    let namespace = service["metadata"]["namespace"].as_str().unwrap();
    let port = &service["spec"]["ports"][0]["port"];
    let host = format!("redis-sidecar.{namespace}.svc.cluster.local");
    assert_eq!(
        plugin_config["sidecar"]["cluster"],
        format!("outbound|{port}||{host}").as_str()
    );
    assert_eq!(plugin_config["sidecar"]["authority"], host.as_str());

    // The Deployment sets only flags the sidecar has, from keys the Secret has.
    let deployment = find(&docs, "Deployment", "redis-sidecar");
    let secret = find(&docs, "Secret", "redis-sidecar");
    let secret_keys: BTreeSet<&str> = secret["stringData"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let sidecar_source =
        std::fs::read_to_string(workspace_root().join("redis-sidecar/src/main.rs")).unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    for env in container["env"].as_array().unwrap() {
        let name = env["name"].as_str().unwrap();
        assert!(
            sidecar_source.contains(&format!("env = \"{name}\"")),
            "the sidecar has no {name}"
        );
        if let Some(key) = env["valueFrom"]["secretKeyRef"]["key"].as_str() {
            assert!(secret_keys.contains(key), "the Secret has no {key}");
        }
    }
    // The container's command is the image's entrypoint and its args: one
    // `serve` (a second one would be an argument the sidecar refuses).
    let dockerfile =
        std::fs::read_to_string(workspace_root().join("redis-sidecar/Dockerfile")).unwrap();
    let entrypoint: Vec<String> = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .map(|json| serde_json::from_str(json).expect("ENTRYPOINT as JSON"))
        .expect("the sidecar image has an ENTRYPOINT");
    let args: Vec<String> = container["args"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    let command: Vec<String> = entrypoint.into_iter().chain(args).collect();
    assert_eq!(
        command.iter().filter(|word| *word == "serve").count(),
        1,
        "the sidecar's command: {command:?}"
    );
    // The filter's credential is the sidecar's.
    assert_eq!(
        plugin_config["sidecar"]["token"],
        secret["stringData"]["filter-token"]
    );
    // The key directory: `active` names a key it holds, and the pinned key
    // is one of them.
    let mounted: Vec<&str> = deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]
        ["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    let active = secret["stringData"]["active"].as_str().unwrap();
    assert!(mounted.contains(&"active"));
    assert!(mounted.contains(&format!("{active}.pem").as_str()));
    for key in plugin_config["jwt"]["jwks"]["keys"].as_array().unwrap() {
        let kid = key["kid"].as_str().unwrap();
        assert!(
            secret_keys.contains(format!("{kid}.pem").as_str()),
            "pinned key {kid} is not in the sidecar's key directory"
        );
    }
}
