//! The docs' examples, executed: every shell block of README.md and the
//! book marked ```` ```sh,runnable ```` runs, with bash, against a real
//! stack, and must print what the docs say it prints; every Envoy config
//! shown (```` ```yaml,envoy ````) loads in Envoy (`envoy --mode validate`).
//! (The plugin configs shown, ```` ```json,plugin-config ````, are checked
//! by tests/config_schema.rs.)
//!
//! How a page is written for it:
//!
//! - ```` ```sh,settings ````: the variables the page's examples use,
//!   `NAME=value` with `make run`'s values, for a reader to set once. The
//!   test checks each name and value against [`variables`], and runs the
//!   block with its own stack's values instead.
//! - ```` ```sh,runnable ````: run in the page's order, in one bash (so
//!   variables and functions carry on, as in a reader's terminal), under
//!   `set -euo pipefail`, in a fresh directory, with the built
//!   `redis-sidecar` on `PATH`. A failing command fails the test with the
//!   page and line.
//! - ```` ```text,output ````, right after a runnable block (prose may come
//!   between): what it prints, compared loosely (`…` stands for anything;
//!   JSON as JSON, in any member order; see `portero_integration::docs`). A
//!   runnable block without one must print nothing.
//! - ```` ```js,file=NAME ````: written to `NAME` in that directory before
//!   the page runs (the text says to save it so).
//!
//! A `sh` block that calls `curl` and is not runnable fails the test: every
//! curl example runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portero_integration::docs::{code_blocks, code_blocks_of, output_matches, pages, CodeBlock};
use portero_integration::{
    demo, envoy_binary, free_port, plugin_config, require, workspace_root, Stack, StackOptions,
    ADMIN_TOKEN, COOKIE_SECRET, FILTER_TOKEN, SECRET_ENV,
};

/// The attributes a block may carry (a typo must not turn a check off).
const ATTRIBUTES: [&str; 6] = [
    "runnable",
    "settings",
    "output",
    "plugin-config",
    "make-run",
    "envoy",
];

/// The variables a settings block may set, with their values for a stack
/// whose Envoy, Envoy admin, sidecar and forward-auth listener are on these
/// ports.
fn variables_for(
    edge: u16,
    admin: u16,
    sidecar: u16,
    forward_auth: u16,
) -> Vec<(&'static str, String)> {
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    vec![
        ("EDGE", url(edge)),
        ("ENVOY_ADMIN", url(admin)),
        ("SIDECAR", url(sidecar)),
        ("FORWARD_AUTH", url(forward_auth)),
        ("PORTERO_ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
        ("PORTERO_FILTER_TOKEN", FILTER_TOKEN.to_string()),
        ("PORTERO_COOKIE_SECRET", COOKIE_SECRET.to_string()),
    ]
}

/// The variables with `make run`'s values (what the docs must say).
fn variables() -> Vec<(&'static str, String)> {
    variables_for(
        demo::EDGE_PORT,
        demo::ADMIN_PORT,
        demo::SIDECAR_PORT,
        demo::FORWARD_AUTH_PORT,
    )
}

/// The variables for a test stack.
fn stack_values(stack: &Stack) -> BTreeMap<&'static str, String> {
    let o = &stack.options;
    variables_for(
        o.listen_port,
        o.admin_port,
        o.sidecar_port,
        o.forward_auth_port,
    )
    .into_iter()
    .collect()
}

/// A step of a page: a block that runs, and what it must print.
#[derive(Debug)]
struct Step {
    block: CodeBlock,
    settings: bool,
    output: Option<CodeBlock>,
}

/// What a page asks to run.
#[derive(Debug, Default)]
struct Page {
    steps: Vec<Step>,
    files: Vec<(String, String)>,
}

impl Page {
    fn runnable(&self) -> usize {
        self.steps.iter().filter(|s| !s.settings).count()
    }
}

/// Reads a page's blocks into steps; `Err` lists what is wrong with them.
fn read_page(blocks: &[CodeBlock]) -> Result<Page, Vec<String>> {
    let mut page = Page::default();
    let mut errors = Vec::new();
    // Whether the previous block was a runnable one without its output yet.
    let mut open_step = false;
    for block in blocks {
        for attribute in &block.attributes {
            let name = attribute.split('=').next().unwrap_or_default();
            if !ATTRIBUTES.contains(&name) && name != "file" {
                errors.push(format!(
                    "{}: unknown attribute `{attribute}` (known: {ATTRIBUTES:?}, file=NAME)",
                    block.location()
                ));
            }
        }
        let is_shell = matches!(block.lang.as_str(), "sh" | "bash" | "shell" | "console");
        if block.has("output") {
            match page.steps.last_mut() {
                Some(step) if open_step => step.output = Some(block.clone()),
                _ => errors.push(format!(
                    "{}: an output block that does not follow a runnable block",
                    block.location()
                )),
            }
            open_step = false;
            continue;
        }
        open_step = false;
        if let Some(name) = block.attribute("file") {
            page.files.push((name.to_string(), block.text.clone()));
        }
        if block.has("runnable") || block.has("settings") {
            if !is_shell {
                errors.push(format!(
                    "{}: only shell blocks run (this one is `{}`)",
                    block.location(),
                    block.lang
                ));
                continue;
            }
            open_step = block.has("runnable");
            page.steps.push(Step {
                block: block.clone(),
                settings: block.has("settings"),
                output: None,
            });
        } else if is_shell && block.text.contains("curl ") {
            errors.push(format!(
                "{}: a curl example that is not run: mark it `sh,runnable` (and show its output)",
                block.location()
            ));
        }
    }
    if errors.is_empty() {
        Ok(page)
    } else {
        Err(errors)
    }
}

/// A settings block rewritten for `values`: each `[export ]NAME=value`
/// line gets the stack's value. `Err` names a line that is not of that
/// form, a variable the test does not know, or a value that is not
/// `make run`'s.
fn settings_for(block: &CodeBlock, values: &BTreeMap<&str, String>) -> Result<String, String> {
    let known = variables();
    let mut out = String::new();
    for (i, line) in block.text.lines().enumerate() {
        let at = block.location_of_line(i + 1);
        let code = line.split(" #").next().unwrap_or_default().trim();
        if code.is_empty() || code.starts_with('#') {
            out.push('\n');
            continue;
        }
        let (export, assignment) = match code.strip_prefix("export ") {
            Some(rest) => ("export ", rest.trim()),
            None => ("", code),
        };
        let Some((name, value)) = assignment.split_once('=') else {
            return Err(format!("{at}: not `NAME=value`: {line}"));
        };
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        let Some((_, documented)) = known.iter().find(|(n, _)| *n == name) else {
            return Err(format!(
                "{at}: {name} is not a variable the docs' stack provides (known: {:?})",
                known.iter().map(|(n, _)| *n).collect::<Vec<_>>()
            ));
        };
        if value != documented {
            return Err(format!(
                "{at}: {name}={value}, but make run's is {documented}"
            ));
        }
        out.push_str(&format!("{export}{name}='{}'\n", values[name]));
    }
    Ok(out)
}

/// What a page's run came to.
struct Run {
    /// Each step's stdout (steps after a failure have none).
    printed: Vec<Option<String>>,
    /// The step that failed, its line in the block (if bash said), the
    /// exit status, and bash's stderr.
    failed: Option<(usize, Option<usize>, i32, String)>,
}

/// Runs a page's steps in one bash, in `dir`.
fn run_page(page: &Page, dir: &Path, values: &BTreeMap<&str, String>) -> Result<Run, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    for (name, text) in &page.files {
        std::fs::write(dir.join(name), text).map_err(|e| e.to_string())?;
    }
    let at = |name: &str| format!("'{}'", dir.join(name).display());
    let mut driver = format!(
        "set -euo pipefail\nset -E\ntrap 'echo \"$LINENO\" > {}' ERR\n",
        dir.join(".failed-line").display()
    );
    for (n, step) in page.steps.iter().enumerate() {
        let code = if step.settings {
            settings_for(&step.block, values)?
        } else {
            step.block.text.clone()
        };
        std::fs::write(dir.join(format!("step-{n}.sh")), code).map_err(|e| e.to_string())?;
        driver.push_str(&format!(
            "echo {n} > {}; rm -f {}\nsource {} > {}\n",
            at(".step"),
            at(".failed-line"),
            at(&format!("step-{n}.sh")),
            at(&format!("out-{n}"))
        ));
    }
    driver.push_str(&format!("echo done > {}\n", at(".step")));
    std::fs::write(dir.join("driver.sh"), driver).map_err(|e| e.to_string())?;

    let path = format!(
        "{}:{}",
        workspace_root().join("target/release").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let stderr = std::fs::File::create(dir.join("stderr")).map_err(|e| e.to_string())?;
    let mut command = Command::new("bash");
    command
        .arg("driver.sh")
        .current_dir(dir)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // Only what the page's settings set: a variable it forgot is unbound.
    for (name, _) in variables() {
        command.env_remove(name);
    }
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().map_err(|e| format!("bash: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
            return Err("the page's examples did not finish within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };

    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let printed = (0..page.steps.len())
        .map(|n| read(&format!("out-{n}")))
        .collect();
    let failed = if status.success() {
        None
    } else {
        let step: usize = read(".step")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let stderr = read("stderr").unwrap_or_default();
        // The ERR trap's line; for an unbound variable (no trap), bash's
        // own "step-N.sh: line L:".
        let line = read(".failed-line")
            .and_then(|s| s.trim().parse().ok())
            .or_else(|| {
                let marker = format!("step-{step}.sh: line ");
                let at = stderr.find(&marker)? + marker.len();
                stderr[at..].split(':').next()?.parse().ok()
            });
        Some((step, line, status.code().unwrap_or(-1), stderr))
    };
    Ok(Run { printed, failed })
}

/// What is wrong with a page's run: a failed step (where, and why), or a
/// step that printed other than its output block says.
fn judge(page: &Page, run: &Run) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some((n, line, code, stderr)) = &run.failed {
        let step = &page.steps[*n];
        let at = match line {
            Some(line) => format!(
                "{}: `{}`",
                step.block.location_of_line(*line),
                step.block
                    .text
                    .lines()
                    .nth(line - 1)
                    .unwrap_or_default()
                    .trim()
            ),
            None => step.block.location(),
        };
        errors.push(format!(
            "{at}: failed (exit status {code})\nstderr:\n{stderr}\nstdout:\n{}",
            run.printed[*n].as_deref().unwrap_or_default()
        ));
    }
    let ran = match &run.failed {
        Some((n, ..)) => *n,
        None => page.steps.len(),
    };
    for (step, printed) in page.steps.iter().zip(&run.printed).take(ran) {
        let printed = printed.as_deref().unwrap_or_default();
        match &step.output {
            Some(output) => {
                if let Err(why) = output_matches(&output.text, printed) {
                    errors.push(format!(
                        "{}: the block at {} printed other than its output block says: {why}\n\
                         documented:\n{}\nprinted:\n{printed}",
                        output.location(),
                        step.block.location(),
                        output.text
                    ));
                }
            }
            None if !printed.trim().is_empty() => errors.push(format!(
                "{}: printed, but has no output block (add one after it):\n{printed}",
                step.block.location()
            )),
            None => {}
        }
    }
    errors
}

/// Every page's steps, or what is wrong with them.
fn documented_pages() -> Vec<(PathBuf, Page)> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for file in pages() {
        match read_page(&code_blocks(&file)) {
            Ok(page) if page.steps.is_empty() && page.files.is_empty() => {}
            Ok(page) => out.push((file, page)),
            Err(e) => errors.extend(e),
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    out
}

/// Every runnable block of the README and the book runs against a stack
/// (Redis, the sidecar, Fastify, Envoy with the filter) and prints what its
/// output block says. The pages run one after the other on one stack, in
/// name order, each in a bash of its own, as a reader would run them on
/// `make run`'s (their outputs say `…` where what came before shows). The
/// examples do not depend on the shell: only the first pass runs them.
#[test]
fn every_runnable_example_in_the_docs_runs_and_prints_what_it_says() {
    if portero_integration::only_in_the_wasm_pass("running the docs' examples") {
        return;
    }
    let pages = documented_pages();
    let runnable: usize = pages.iter().map(|(_, p)| p.runnable()).sum();
    assert!(runnable > 0, "no runnable block in the docs");
    let started = Instant::now();
    // As make run's: the sidecar serves forward auth too.
    let stack = Stack::start_with(StackOptions {
        forward_auth_port: free_port(),
        ..StackOptions::default()
    });
    let values = stack_values(&stack);
    let mut errors = Vec::new();
    for (file, page) in &pages {
        let name = file.file_stem().unwrap_or_default().to_string_lossy();
        let dir = stack.dir.join(format!("docs-{name}"));
        match run_page(page, &dir, &values) {
            Ok(run) => errors.extend(judge(page, &run)),
            Err(e) => errors.push(format!("{}: {e}", file.display())),
        }
        let relative = file.strip_prefix(workspace_root()).unwrap_or(file);
        eprintln!(
            "{}: {} runnable block(s)",
            relative.display(),
            page.runnable()
        );
    }
    eprintln!(
        "{runnable} runnable blocks on {} pages in {:.1} s",
        pages.len(),
        started.elapsed().as_secs_f64()
    );
    if !errors.is_empty() {
        stack.dump_logs();
    }
    assert!(errors.is_empty(), "\n{}", errors.join("\n\n"));
}

/// The line of `page` that is `text` (1-based).
fn line_of(page: &str, text: &str) -> usize {
    page.lines().position(|l| l == text).expect("the line") + 1
}

/// The runner itself: a failing command fails with its page and line, a
/// forgotten variable too, output is held to its block, a curl example
/// left unmarked and a stray attribute are refused.
#[test]
fn the_runner_names_the_page_and_line_of_what_fails() {
    let dir = std::env::temp_dir().join(format!("portero-docs-probe-{}", std::process::id()));
    let mut values = BTreeMap::new();
    values.insert("EDGE", "http://127.0.0.1:1234".to_string());
    let probe = Path::new("docs/probe.md");
    let run = |page: &str, name: &str| {
        let parsed = read_page(&code_blocks_of(probe, page)).expect("a good page");
        let run = run_page(&parsed, &dir.join(name), &values).expect("ran");
        judge(&parsed, &run)
    };

    // Settings, a block that prints what it says, one that prints without
    // an output block, one that fails in its second line.
    let page = "# Probe\n\n```sh,settings\nEDGE=http://127.0.0.1:8080\n```\n\n\
                ```sh,runnable\nA=1\necho \"$EDGE\"\n```\n\n```text,output\nhttp://127.0.0.1:…\n```\n\n\
                ```sh,runnable\necho stray\n```\n\n\
                ```sh,runnable\ncd /\nfalse\necho never\n```\n";
    assert_eq!(
        read_page(&code_blocks_of(probe, page)).unwrap().runnable(),
        3
    );
    let errors = run(page, "a");
    assert_eq!(errors.len(), 2, "{errors:?}");
    let failing = format!("docs/probe.md:{}: `false`: failed", line_of(page, "false"));
    assert!(errors[0].starts_with(&failing), "{errors:?}");
    let stray = format!("docs/probe.md:{}: printed", line_of(page, "echo stray") - 1);
    assert!(errors[1].starts_with(&stray), "{errors:?}");

    // An unbound variable (not in the page's settings) is named by its line.
    let page = "```sh,runnable\necho ok\necho \"$SIDECAR\"\n```\n\n```text,output\nok\n```\n";
    let errors = run(page, "b");
    assert!(
        errors.len() == 1 && errors[0].starts_with("docs/probe.md:3: `echo \"$SIDECAR\"`"),
        "{errors:?}"
    );

    // Output other than documented.
    let page = "```sh,runnable\necho '{\"status\":\"ok\"}'\n```\n\n```text,output\n{\"status\": \"ready\"}\n```\n";
    let errors = run(page, "c");
    assert!(
        errors.len() == 1 && errors[0].starts_with("docs/probe.md:5: the block at docs/probe.md:1"),
        "{errors:?}"
    );

    // A settings value that is not make run's, and an unknown name.
    let settings = |page: &str| {
        let parsed = read_page(&code_blocks_of(probe, page)).unwrap();
        settings_for(&parsed.steps[0].block, &values).unwrap_err()
    };
    let e = settings("```sh,settings\nEDGE=http://127.0.0.1:9999\n```\n");
    assert!(e.contains("make run's is http://127.0.0.1:8080"), "{e}");
    let e = settings("```sh,settings\nSIDECAR_URL=http://127.0.0.1:7070\n```\n");
    assert!(e.contains("SIDECAR_URL is not a variable"), "{e}");

    // A curl example left unmarked, a typo in an attribute, a stray output.
    let page =
        "```sh\ncurl -s $EDGE/me\n```\n\n```sh,runable\ntrue\n```\n\n```text,output\nx\n```\n";
    let errors = read_page(&code_blocks_of(probe, page)).unwrap_err();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains("docs/probe.md:1: a curl example that is not run"));
    assert!(errors[1].contains("docs/probe.md:5: unknown attribute `runable`"));
    assert!(errors[2].contains("docs/probe.md:9: an output block that does not follow"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The loose comparison: `…` in lines, strings, objects and arrays;
/// whitespace and member order do not count; JSON spread over lines; and
/// what must still differ does.
#[test]
fn a_documented_output_is_compared_loosely_but_not_blindly() {
    use portero_integration::docs::{fill_from, glob_matches, parse_whole_pattern};
    assert!(glob_matches("Bearer eyJ…", "Bearer eyJabc"));
    assert!(glob_matches("…x…", "axb") && !glob_matches("a…a", "a"));
    assert!(!glob_matches("Bearer eyJ…", "Bearer abc"));

    let printed = "HTTP/1.1 302 Found\r\nlocation: /login?return_to=/x\r\ndate: today\r\n\r\n\
                   {\"b\":[1,2,3],\"a\":\"eyJ123\",\"n\":7}{\"status\":\"ok\"}\nLIVE\n";
    let good = [
        "HTTP/1.1 302 Found\nlocation: /login?return_to=/x\n…\n{\"a\": \"eyJ…\", \"b\": [1, …], \"n\": …}\n{\"status\": \"ok\"}\nLIVE",
        "HTTP/1.1   302 Found\n…\n{\"a\": \"eyJ123\",\n \"b\": [1, 2, 3], …}\n…",
        "…\n{\"n\": 7, …}\n…\nLIVE",
    ];
    for expected in good {
        assert_eq!(output_matches(expected, printed), Ok(()), "{expected}");
    }
    let bad = [
        // a member missing, one too many, a value, an element, a line, order
        (
            "HTTP/1.1 302 Found\n…\n{\"a\": …, \"b\": …, \"c\": …, \"n\": 7}\n…",
            "missing",
        ),
        (
            "HTTP/1.1 302 Found\n…\n{\"a\": …, \"b\": …}\n…",
            "members not in the docs",
        ),
        ("…\n{\"n\": 8, …}\n…", "is not 8"),
        ("…\n{\"b\": [1, 2], …}\n…", "is not [1, 2]"),
        ("HTTP/1.1 200 OK\n…", "is not \"HTTP/1.1 200 OK\""),
        ("…\nLIVE\n{\"status\": \"ok\"}", "is not \"LIVE\""),
        ("HTTP/1.1 302 Found", "printed more than documented"),
        (
            &format!("{}\nLIVE\nMORE", &printed[..printed.len() - 6]),
            "documented but not printed",
        ),
    ];
    for (expected, why) in &bad {
        let e = output_matches(expected, printed).expect_err(expected);
        assert!(e.contains(why), "{expected}: {e}");
    }

    // `…` filled from a base config; a `…` the base cannot fill is named.
    let base: serde_json::Value = serde_json::json!({"a": {"x": 1, "y": [1, 2]}, "b": "s"});
    let filled = fill_from(
        &parse_whole_pattern("{\"a\": {\"y\": […], …}, \"c\": 3}").unwrap(),
        &base,
    );
    assert_eq!(
        filled,
        Ok(serde_json::json!({"a": {"x": 1, "y": [1, 2]}, "c": 3}))
    );
    let e = fill_from(&parse_whole_pattern("{\"d\": \"…\"}").unwrap(), &base).unwrap_err();
    assert!(e.contains("`.d`"), "{e}");
}

// ── Envoy configs ───────────────────────────────────────────────────────

/// A bootstrap around nothing: a listener whose connection manager gets
/// the fragment's filters or routes, and the clusters the docs name.
const BOOTSTRAP: &str = r#"
static_resources:
  listeners:
  - name: ingress
    address:
      socket_address: { address: 127.0.0.1, port_value: 10000 }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            name: apps
            virtual_hosts:
            - name: apps
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: upstream_app }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream_app
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream_app
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 3000 } } }
  - name: redis_sidecar
    connect_timeout: 1s
    load_assignment:
      cluster_name: redis_sidecar
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 7070 } } }
  - name: forward_auth
    connect_timeout: 1s
    load_assignment:
      cluster_name: forward_auth
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 7071 } } }
  - name: sign_in
    connect_timeout: 1s
    load_assignment:
      cluster_name: sign_in
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 7072 } } }
"#;

/// Replaces what the docs elide: a plugin configuration written with `…`
/// (it must match the test's as a pattern) becomes the test's, and a wasm
/// module's file the build's.
fn fill_placeholders(
    value: &mut serde_json::Value,
    config: &serde_json::Value,
) -> Result<(), String> {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            if map.get("@type").and_then(Value::as_str)
                == Some("type.googleapis.com/google.protobuf.StringValue")
            {
                if let Some(Value::String(text)) = map.get("value") {
                    if text.contains('…') {
                        let pattern = portero_integration::docs::parse_whole_pattern(text)
                            .map_err(|e| format!("the plugin config `{text}`: {e}"))?;
                        portero_integration::docs::json_matches(&pattern, config).map_err(|e| {
                            format!("the plugin config `{text}` is not the stack's: {e}")
                        })?;
                        map.insert("value".into(), Value::String(config.to_string()));
                    }
                }
            }
            if let Some(Value::String(file)) = map.get("filename") {
                if file.ends_with(".wasm") {
                    let wasm = workspace_root().join("target/wasm32-wasip1/release/portero.wasm");
                    map.insert("filename".into(), Value::String(wasm.display().to_string()));
                }
            }
            for v in map.values_mut() {
                fill_placeholders(v, config)?;
            }
        }
        Value::Array(items) => {
            for v in items {
                fill_placeholders(v, config)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A bootstrap holding the fragment `block` shows: top-level fields as
/// they are, `http_filters` or a list of HTTP filters in the connection
/// manager (before the router), `routes` in the virtual host.
fn bootstrap_with(block: &CodeBlock, config: &serde_json::Value) -> Result<String, String> {
    use serde_json::Value;
    let fragment: Value =
        serde_yaml::from_str(&block.text).map_err(|e| format!("not YAML: {e}"))?;
    let mut bootstrap: Value = serde_yaml::from_str(BOOTSTRAP).expect("the bootstrap");
    let hcm = "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config";
    let router = bootstrap.pointer(&format!("{hcm}/http_filters/0")).cloned();
    let set_filters = |bootstrap: &mut Value, filters: &[Value]| {
        let mut list = filters.to_vec();
        let has_router = list.iter().any(|f| {
            f["name"]
                .as_str()
                .is_some_and(|n| n.contains("http.router"))
        });
        if !has_router {
            list.extend(router.clone());
        }
        bootstrap.pointer_mut(hcm).expect("the hcm")["http_filters"] = Value::Array(list);
    };
    match &fragment {
        Value::Array(filters) if filters.iter().all(|f| f.get("typed_config").is_some()) => {
            set_filters(&mut bootstrap, filters);
        }
        Value::Object(map) if map.contains_key("http_filters") => {
            let filters = map["http_filters"].as_array().cloned().unwrap_or_default();
            set_filters(&mut bootstrap, &filters);
        }
        Value::Object(map) if map.contains_key("routes") => {
            bootstrap
                .pointer_mut(&format!("{hcm}/route_config/virtual_hosts/0"))
                .expect("the virtual host")["routes"] = map["routes"].clone();
        }
        Value::Object(map)
            if map
                .keys()
                .all(|k| ["layered_runtime", "stats_config", "admin"].contains(&k.as_str())) =>
        {
            for (k, v) in map {
                bootstrap[k] = v.clone();
            }
        }
        _ => {
            return Err(
                "a fragment this test cannot place in a bootstrap (HTTP filters, \
                 `http_filters`, `routes` or top-level fields): teach bootstrap_with"
                    .into(),
            )
        }
    }
    fill_placeholders(&mut bootstrap, config)?;
    Ok(serde_yaml::to_string(&bootstrap).expect("YAML"))
}

/// Every Envoy config the docs show (```` ```yaml,envoy ````), placed in a
/// bootstrap, loads in the Envoy under test (`envoy --mode validate`, which
/// also loads the wasm filter or the dynamic module and hands it the plugin
/// config); and every YAML block says what checks it.
#[test]
fn every_envoy_config_in_the_docs_loads_in_envoy() {
    if portero_integration::only_in_the_wasm_pass("loading the docs' Envoy configs") {
        return;
    }
    let envoy = envoy_binary();
    require(&envoy, "make envoy");
    let jwks: serde_json::Value =
        serde_json::from_str(portero_testkit::tokens::TEST_JWKS).expect("the test JWKS");
    let config = plugin_config("redis_sidecar", &jwks);
    let dir = std::env::temp_dir().join(format!("portero-docs-envoy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let mut errors = Vec::new();
    let mut checked = Vec::new();
    for file in pages() {
        for block in code_blocks(&file) {
            if block.lang != "yaml" && block.lang != "yml" {
                continue;
            }
            if !block.has("envoy") {
                errors.push(format!(
                    "{}: a YAML block that nothing checks: mark it `yaml,envoy` (or teach this test its kind)",
                    block.location()
                ));
                continue;
            }
            match bootstrap_with(&block, &config) {
                Ok(yaml) => checked.push((block, yaml)),
                Err(e) => errors.push(format!("{}: {e}", block.location())),
            }
        }
    }
    assert!(!checked.is_empty(), "no Envoy config in the docs");
    let results: Vec<Option<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = checked
            .iter()
            .enumerate()
            .map(|(n, (block, yaml))| {
                let (dir, envoy) = (&dir, &envoy);
                scope.spawn(move || {
                    let path = dir.join(format!("envoy-{n}.yaml"));
                    std::fs::write(&path, yaml).expect("the bootstrap");
                    let out = Command::new(envoy)
                        .args(["--mode", "validate", "--log-level", "error", "-c"])
                        .arg(&path)
                        .envs(SECRET_ENV)
                        .env(
                            "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
                            portero_integration::dynamic_module_dir(),
                        )
                        .output()
                        .expect("envoy");
                    (!out.status.success()).then(|| {
                        format!(
                            "{}: Envoy refuses it:\n{}{}\nas placed in:\n{yaml}",
                            block.location(),
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr)
                        )
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a thread"))
            .collect()
    });
    let refused = results.iter().flatten().count();
    errors.extend(results.into_iter().flatten());
    eprintln!(
        "{} of {} Envoy configs of the docs loaded",
        checked.len() - refused,
        checked.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(errors.is_empty(), "\n{}", errors.join("\n\n"));
}
