//! Single sign-on across unrelated domains in a real browser: app-one.test
//! and app-two.test behind one edge, each with its own host-only cookie and
//! its own OIDC client at a real provider (`tests/browser/cross_domain.test.mjs`).
//! Screenshots go to `target/browser-artifacts/cross-domain-*.png`.

use std::path::Path;
use std::process::Command;

use portero_integration::{require, workspace_root, Stack, StackOptions};

#[test]
fn one_sign_in_at_the_provider_serves_apps_on_unrelated_domains() {
    let chromium = Path::new("/usr/bin/chromium");
    require(chromium, "make setup (installs Debian's chromium)");
    let root = workspace_root();
    require(
        &root.join("tests/browser/node_modules/playwright-core"),
        "make setup (npm ci in tests/browser)",
    );
    let stack = Stack::start_with(StackOptions {
        https: true,
        oidc: true,
        web_app: true,
        ..StackOptions::default()
    });
    let (port, cert) = stack.edge_tls.clone().expect("the HTTPS listener");
    let provider = stack.provider.as_ref().expect("the provider");
    let output = Command::new("node")
        .current_dir(root.join("tests/browser"))
        .args(["--test", "--test-reporter=spec", "cross_domain.test.mjs"])
        .env("EDGE_PORT", port.to_string())
        .env("EDGE_CERT", &cert.cert)
        .env("PROVIDER", &provider.issuer)
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
        "cross-domain checks failed:\n{report}"
    );
}
