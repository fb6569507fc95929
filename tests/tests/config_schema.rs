//! The plugin configuration's JSON Schema (`docs/plugin-config.schema.json`,
//! the file editors and Istio users check `pluginConfig` with): every
//! example config validates against it, the book's among them; the parser
//! and the schema agree on a corpus of good and bad configs; and every field
//! it names is on the reference page.

use portero_core::config::Config;
use portero_integration::docs::{code_blocks, fill_from, json_matches, pages, parse_whole_pattern};
use portero_integration::{plugin_config, workspace_root, SECRET_ENV};
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

/// The plugin configs the README and the book show, marked
/// ```` ```json,plugin-config ````: each with where it is, the config it
/// stands for, and, for the one marked `make-run`, what it must match.
///
/// A block may be a fragment (members without the braces: `"routes": […]`),
/// which stands for the harness's config with those members replaced; and
/// may elide with `…`, which stands for the harness's value at that place.
fn documented_configs() -> Vec<(String, Value, Option<portero_integration::docs::Pattern>)> {
    let base = plugin_config("redis_sidecar", &test_jwks());
    let mut configs = Vec::new();
    for file in pages() {
        for block in code_blocks(&file) {
            if !block.has("plugin-config") {
                continue;
            }
            let text = block.text.trim();
            let fragment = text.starts_with('"');
            let whole = if fragment {
                format!("{{{text}}}")
            } else {
                text.to_string()
            };
            let pattern = parse_whole_pattern(&whole)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", block.location()));
            let filled =
                fill_from(&pattern, &base).unwrap_or_else(|e| panic!("{}: {e}", block.location()));
            let config = if fragment {
                let mut config = base.clone();
                for (name, value) in filled.as_object().into_iter().flatten() {
                    config[name] = value.clone();
                }
                config
            } else {
                filled
            };
            let make_run = block.has("make-run").then_some(pattern);
            configs.push((block.location(), config, make_run));
        }
    }
    configs
}

/// Every config the project ships or documents: docs/examples, the book's
/// own, the harness's (what `make run` uses), and Istio's `pluginConfig`.
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
    configs.extend(
        documented_configs()
            .into_iter()
            .map(|(location, config, _)| (location, config)),
    );
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
    if portero_integration::only_in_the_wasm_pass("the config schema") {
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

/// The plugin configs the book shows also parse (the parser checks bounds
/// the schema does not state); the one said to be `make run`'s is the
/// harness's; and a JSON block that looks like a plugin config is marked as
/// one, so that it is checked.
#[test]
fn every_plugin_config_in_the_book_parses_and_make_runs_is_the_harnesss() {
    if portero_integration::only_in_the_wasm_pass("the config schema") {
        return;
    }
    for (name, value) in SECRET_ENV {
        std::env::set_var(name, value);
    }
    let configs = documented_configs();
    assert!(configs.len() >= 3, "{configs:?}");
    let harness = plugin_config("redis_sidecar", &test_jwks());
    let mut make_run = 0;
    for (location, config, pattern) in &configs {
        if let Err(e) = Config::from_json(config.to_string().as_bytes()) {
            panic!("{location}: the parser refuses it: {e}\n{config:#}");
        }
        if let Some(pattern) = pattern {
            make_run += 1;
            if let Err(e) = json_matches(pattern, &harness) {
                panic!("{location}: not the config tests/src/stack.rs builds: {e}");
            }
        }
    }
    assert_eq!(make_run, 1, "one block is make run's config");

    let names: Vec<String> = schema()["properties"]
        .as_object()
        .expect("the schema's properties")
        .keys()
        .map(|k| format!("\"{k}\":"))
        .collect();
    let mut unmarked = Vec::new();
    for file in pages() {
        for block in code_blocks(&file) {
            let looks_like_one = names.iter().any(|n| block.text.contains(n.as_str()));
            if block.lang == "json" && !block.has("plugin-config") && looks_like_one {
                unmarked.push(block.location());
            }
        }
    }
    assert!(
        unmarked.is_empty(),
        "JSON blocks that look like plugin configs: mark them `json,plugin-config` \
         (fragments and `…` are fine): {unmarked:?}"
    );
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
    if portero_integration::only_in_the_wasm_pass("the config schema") {
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
    if portero_integration::only_in_the_wasm_pass("the config schema") {
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
