//! The demo site in a real browser: Debian's Chromium, headless, driven by
//! playwright-core (`tests/browser/site.test.mjs`, run by Node's test
//! runner) against an edge's HTTPS listener. Each step leaves a screenshot in
//! `artifacts`. Run by tests/browser.rs on the harness's stack and by the
//! compose tier on the containers.

use std::path::Path;
use std::process::Command;

use crate::proc::{require, workspace_root};
use crate::tls::EdgeCertificate;

/// The steps that need only the site, each with its screenshot.
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

/// The steps of the pages a user meets when things go wrong, each with its
/// screenshot: they need [`Trouble`].
pub const TROUBLE_STEPS: [&str; 3] = [
    "11-ended-session-sees-the-login-form",
    "12-signed-out-page",
    "13-try-again-page",
];

/// What the trouble steps need of the stack under test.
pub struct Trouble {
    /// A cookie the edge opens, for a session the store does not have (a
    /// session that ended elsewhere).
    pub ended_session_cookie: String,
    /// The sidecar's pid: the script stalls it (SIGSTOP) and lets it go
    /// (SIGCONT) to show the store-outage page.
    pub sidecar_pid: u32,
}

/// Runs the site's browser checks against `https://localhost:{port}`, whose
/// certificate is `cert`; `token_seconds`: how long an access token is
/// accepted (its lifetime plus the filter's leeway); `trouble`: to run the
/// trouble steps too (skipped without it). Returns the report, or the report
/// of the failure; every step run must have left its screenshot.
pub fn site_checks(
    port: u16,
    cert: &EdgeCertificate,
    token_seconds: u64,
    artifacts: &Path,
    trouble: Option<&Trouble>,
) -> Result<String, String> {
    let chromium = Path::new("/usr/bin/chromium");
    require(chromium, "make setup (installs Debian's chromium)");
    let root = workspace_root();
    require(
        &root.join("tests/browser/node_modules/playwright-core"),
        "make setup (npm ci in tests/browser)",
    );
    let _ = std::fs::remove_dir_all(artifacts);
    let mut node = Command::new("node");
    if let Some(trouble) = trouble {
        node.env("ENDED_SESSION_COOKIE", &trouble.ended_session_cookie)
            .env("SIDECAR_PID", trouble.sidecar_pid.to_string());
    }
    let output = node
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
    let trouble_steps = if trouble.is_some() {
        &TROUBLE_STEPS[..]
    } else {
        &[]
    };
    for step in STEPS.iter().chain(trouble_steps) {
        let png = artifacts.join(format!("{step}.png"));
        let bytes = std::fs::read(&png).unwrap_or_default();
        if !(bytes.starts_with(b"\x89PNG") && bytes.len() > 2000) {
            return Err(format!("{report}\nno screenshot {}", png.display()));
        }
    }
    Ok(report)
}
