//! The demo site in a real browser: Debian's Chromium, headless, driven by
//! playwright-core (`tests/browser/site.test.mjs`, run by Node's test
//! runner) against an edge's HTTPS listener. Each step leaves a screenshot in
//! `artifacts`. Run by tests/browser.rs on the harness's stack and by the
//! compose tier on the containers.

use std::path::Path;
use std::process::Command;

use crate::proc::{require, workspace_root};
use crate::tls::EdgeCertificate;

/// The steps, each with its screenshot.
pub const STEPS: [&str; 10] = [
    "01-login-page",
    "02-home-signed-in",
    "03-account-api-call",
    "04-cross-origin-post-refused",
    "05-back-where-asked",
    "06-after-refreshes",
    "07-back-after-logout",
    "08-admin-refused-without-role",
    "09-admin-with-role",
    "10-cross-site-login-refused",
];

/// Runs the site's browser checks against `https://localhost:{port}`, whose
/// certificate is `cert`; `token_seconds`: how long an access token is
/// accepted (its lifetime plus the filter's leeway). Returns the report, or
/// the report of the failure; every step must have left its screenshot.
pub fn site_checks(
    port: u16,
    cert: &EdgeCertificate,
    token_seconds: u64,
    artifacts: &Path,
) -> Result<String, String> {
    let chromium = Path::new("/usr/bin/chromium");
    require(chromium, "make setup (installs Debian's chromium)");
    let root = workspace_root();
    require(
        &root.join("tests/browser/node_modules/playwright-core"),
        "make setup (npm ci in tests/browser)",
    );
    let _ = std::fs::remove_dir_all(artifacts);
    let output = Command::new("node")
        .current_dir(root.join("tests/browser"))
        .args(["--test", "--test-reporter=spec", "site.test.mjs"])
        .env("PORTERO_URL", format!("https://localhost:{port}"))
        .env("EDGE_CERT", &cert.cert)
        .env("EDGE_KEY", &cert.key)
        .env("ARTIFACTS", artifacts)
        .env("CHROMIUM", chromium)
        .env("TOKEN_SECONDS", token_seconds.to_string())
        .output()
        .expect("node");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        return Err(report);
    }
    for step in STEPS {
        let png = artifacts.join(format!("{step}.png"));
        let bytes = std::fs::read(&png).unwrap_or_default();
        if !(bytes.starts_with(b"\x89PNG") && bytes.len() > 2000) {
            return Err(format!("{report}\nno screenshot {}", png.display()));
        }
    }
    Ok(report)
}
