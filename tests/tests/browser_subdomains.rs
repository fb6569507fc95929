//! Single sign-on across sub-domains in a real browser: the `Domain` cookie
//! mode (docs/examples/subdomains.json) on `a.example.test` and
//! `b.example.test`, both mapped to the edge on loopback
//! (`tests/browser/subdomains.test.mjs`). Screenshots go to
//! `target/browser-artifacts/subdomains-*.png`.

use std::path::Path;
use std::process::Command;

use portero_integration::{require, workspace_root, Stack, StackOptions};
use serde_json::json;

#[test]
fn one_sign_in_serves_sibling_sub_domains() {
    let chromium = Path::new("/usr/bin/chromium");
    require(chromium, "make setup (installs Debian's chromium)");
    let root = workspace_root();
    require(
        &root.join("tests/browser/node_modules/playwright-core"),
        "make setup (npm ci in tests/browser)",
    );
    let stack = Stack::start_with(StackOptions {
        https: true,
        web_app: true,
        plugin_config_patch: Some(|config| {
            // The sub-domain mode: no `__Host-` prefix, a Domain, Lax.
            config["cookie"]["name"] = json!("portero");
            config["cookie"]["domain"] = json!("example.test");
            config["cookie"]["same_site"] = json!("Lax");
        }),
        ..StackOptions::default()
    });
    let (port, cert) = stack.edge_tls.clone().expect("the HTTPS listener");
    let output = Command::new("node")
        .current_dir(root.join("tests/browser"))
        .args(["--test", "--test-reporter=spec", "subdomains.test.mjs"])
        .env("EDGE_PORT", port.to_string())
        .env("EDGE_CERT", &cert.cert)
        .env("ARTIFACTS", root.join("target/browser-artifacts"))
        .env("CHROMIUM", chromium)
        .output()
        .expect("node");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}{}", String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        stack.dump_logs();
    }
    assert!(
        output.status.success(),
        "sub-domain checks failed:\n{report}"
    );
}
