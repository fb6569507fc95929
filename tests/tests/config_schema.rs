//! The plugin configuration's JSON Schema (`docs/plugin-config.schema.json`,
//! the file editors and Istio users check `pluginConfig` with): every
//! example config validates against it, the parser and the schema agree on
//! a corpus of good and bad configs, and every field it names is on the
//! reference page.

use portero_core::config::Config;
use portero_integration::{plugin_config, workspace_root};
use serde::Deserialize;
use serde_json::{json, Value};

fn schema() -> Value {
    let path = workspace_root().join("docs/plugin-config.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the schema")).expect("JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&schema()).expect("a valid JSON Schema")
}

fn test_jwks() -> Value {
    serde_json::from_str(portero_testkit::tokens::TEST_JWKS).unwrap()
}

/// Every config the project ships or documents: the book's examples, the
/// harness's (what `make run` uses), and Istio's `pluginConfig`.
fn example_configs() -> Vec<(String, Value)> {
    let root = workspace_root();
    let mut configs = Vec::new();
    for entry in std::fs::read_dir(root.join("docs/examples")).expect("docs/examples") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            configs.push((
                path.display().to_string(),
                serde_json::from_str(&text).unwrap(),
            ));
        }
    }
    configs.push((
        "the harness's".into(),
        plugin_config("redis_sidecar", &test_jwks()),
    ));
    let istio = std::fs::read_to_string(root.join("envoy/istio/wasmplugin.yaml")).unwrap();
    for doc in serde_yaml::Deserializer::from_str(&istio) {
        let value = Value::deserialize(doc).unwrap();
        if value["kind"] == "WasmPlugin" {
            configs.push((
                "Istio's pluginConfig".into(),
                value["spec"]["pluginConfig"].clone(),
            ));
        }
    }
    configs
}

#[test]
fn every_shipped_and_documented_config_validates_against_the_schema() {
    if portero_integration::skip_unless_wasm("the config schema") {
        return;
    }
    let validator = validator();
    let configs = example_configs();
    assert!(configs.len() >= 4, "{configs:?}");
    for (name, config) in configs {
        let errors: Vec<String> = validator
            .iter_errors(&config)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

/// Good and bad configs, each (what, config, whether the shape is right).
fn corpus() -> Vec<(&'static str, Value, bool)> {
    let base = portero_testkit::valid_json();
    let with = |mutate: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        mutate(&mut v);
        v
    };
    vec![
        ("the test config", base.clone(), true),
        (
            "a secret from the environment",
            with(&|v| {
                v["cookie"]["keys"][0]["secret"] = json!({"env": "PORTERO_SCHEMA_TEST_SECRET"})
            }),
            true,
        ),
        (
            "SameSite in lowercase",
            with(&|v| v["cookie"]["same_site"] = json!("lax")),
            true,
        ),
        (
            "every route form",
            with(&|v| {
                v["routes"] = json!([
            {"path_prefix": "/a/", "policy": "optional"},
            {"route_name": "b", "roles": {"any_of": ["x"]}},
            {"path_prefix": "/c/", "roles": {"all_of": ["y", "z"]}}])
            }),
            true,
        ),
        (
            "a binding",
            with(&|v| {
                v["binding"] = json!({"ip": {"compare": "prefix", "policy": "log"},
            "user_agent": {"compare": "exact", "policy": "reject"}, "on_reject": "keep_session"})
            }),
            true,
        ),
        (
            "an unknown top-level field",
            with(&|v| v["cookies"] = json!({})),
            false,
        ),
        (
            "an unknown nested field",
            with(&|v| v["cookie"]["secur"] = json!(true)),
            false,
        ),
        (
            "a missing required field",
            with(&|v| {
                v["jwt"].as_object_mut().unwrap().remove("issuer");
            }),
            false,
        ),
        (
            "a missing section",
            with(&|v| {
                v.as_object_mut().unwrap().remove("sidecar");
            }),
            false,
        ),
        (
            "a string for a bool",
            with(&|v| v["cookie"]["secure"] = json!("yes")),
            false,
        ),
        (
            "a negative number",
            with(&|v| v["retry_after_seconds"] = json!(-1)),
            false,
        ),
        (
            "a policy that does not exist",
            with(&|v| v["routes"] = json!([{"path_prefix": "/", "policy": "sometimes"}])),
            false,
        ),
        (
            "a secret as a number",
            with(&|v| v["sidecar"]["token"] = json!(12345)),
            false,
        ),
        (
            "a secret object of the wrong form",
            with(&|v| v["sidecar"]["token"] = json!({"envx": "A"})),
            false,
        ),
        (
            "SameSite None",
            with(&|v| v["cookie"]["same_site"] = json!("None")),
            false,
        ),
        (
            "a mismatch policy that does not exist",
            with(&|v| v["binding"] = json!({"ip": {"policy": "warn"}})),
            false,
        ),
        (
            "a key id too large for a byte",
            with(&|v| v["cookie"]["keys"][0]["id"] = json!(256)),
            false,
        ),
    ]
}

#[test]
fn the_parser_and_the_schema_agree_on_good_and_bad_configs() {
    if portero_integration::skip_unless_wasm("the config schema") {
        return;
    }
    std::env::set_var(
        "PORTERO_SCHEMA_TEST_SECRET",
        "0123456789abcdef0123456789abcdef",
    );
    let validator = validator();
    for (what, config, good) in corpus() {
        let by_schema = validator.is_valid(&config);
        let by_parser = Config::from_json(config.to_string().as_bytes());
        assert_eq!(by_schema, good, "{what}: the schema says {by_schema}");
        assert_eq!(
            by_parser.is_ok(),
            good,
            "{what}: the parser says {:?}",
            by_parser.err().map(|e| e.to_string())
        );
    }
}

/// Every field of the schema as the reference page writes it
/// (`cookie.keys[].secret`), `$ref`s followed; a field only reachable
/// through one form of a choice (`anyOf`, `oneOf`) is marked as such.
fn field_paths(
    schema: &Value,
    node: &Value,
    prefix: &str,
    in_choice: bool,
    out: &mut Vec<(String, bool)>,
) {
    if let Some(reference) = node["$ref"].as_str() {
        let name = reference.trim_start_matches("#/$defs/");
        return field_paths(schema, &schema["$defs"][name], prefix, in_choice, out);
    }
    if let Some(properties) = node["properties"].as_object() {
        for (name, child) in properties {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            out.push((path.clone(), in_choice));
            field_paths(schema, child, &path, in_choice, out);
        }
    }
    if node["items"].is_object() {
        field_paths(
            schema,
            &node["items"],
            &format!("{prefix}[]"),
            in_choice,
            out,
        );
    }
    for choice in ["anyOf", "oneOf"] {
        for alternative in node[choice].as_array().into_iter().flatten() {
            field_paths(schema, alternative, prefix, true, out);
        }
    }
}

#[test]
fn every_field_of_the_schema_is_on_the_reference_page() {
    if portero_integration::skip_unless_wasm("the config schema") {
        return;
    }
    let page = std::fs::read_to_string(workspace_root().join("docs/configuration.md")).unwrap();
    let schema = schema();
    let mut fields = Vec::new();
    field_paths(&schema, &schema, "", false, &mut fields);
    assert!(fields.len() > 40, "{fields:?}");
    let documented = |path: &str, in_choice: bool| {
        let last = path.rsplit('.').next().unwrap_or(path);
        page.contains(&format!("`{path}`"))
            || page.contains(&format!("`{path}."))
            || page.contains(&format!("`{path}[]"))
            // A form of a choice (a secret's `{"env": …}`): its key, quoted.
            || (in_choice && page.contains(&format!("\"{last}\"")))
    };
    let missing: Vec<&String> = fields
        .iter()
        .filter(|(path, in_choice)| !documented(path, *in_choice))
        .map(|(path, _)| path)
        .collect();
    assert!(
        missing.is_empty(),
        "fields of the schema not on docs/configuration.md: {missing:?}"
    );
}
