//! The compose tier (`make compose-test`): `docker-compose.yml` (and
//! `docker-compose.ha.yml` over it) started on podman by podman-compose,
//! under a project name of its own, and driven with the harness's own
//! clients ([`Stack::attach`]) and `podman` on the project's containers.
//!
//! Only `make compose-test` sets `PORTERO_COMPOSE=1` (and names the compose
//! command in `PORTERO_COMPOSE_CMD`); elsewhere [`Compose::up`] returns
//! `None` and the suite says it skipped. Dropping a [`Compose`] takes the
//! project down with its volumes, also when a test fails (and prints the
//! containers' logs first); `make compose-test` removes whatever a killed run
//! left by the project's label.
//!
//! Health: podman (4.3, Debian bookworm) runs a container's health check
//! from systemd timers, and these machines run no systemd; podman-compose
//! therefore starts `depends_on: condition: service_healthy` dependents
//! without waiting. [`Compose::wait_healthy`] runs each container's check
//! itself (`podman healthcheck run`) until every one passes, as Docker's own
//! health monitor would; a check that never passes fails the tier.

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proc::{free_port, workspace_root};
use crate::stack::Stack;
use crate::tls::EdgeCertificate;

/// How long a project may take to come up healthy (images already built).
const HEALTHY_BOUND: Duration = Duration::from_secs(180);

pub struct Compose {
    pub project: String,
    files: Vec<String>,
    /// The compose command (`podman-compose`, or a path to it).
    command: String,
    env: Vec<(String, String)>,
    pub stack: Arc<Stack>,
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `podman` with `args`; panics with its output when it fails.
pub fn podman(args: &[&str]) -> String {
    let out = run(Command::new("podman").args(args));
    assert!(
        out.status.success(),
        "podman {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

impl Compose {
    /// Starts `files` (relative to the repository) as project `project`,
    /// with Envoy on free loopback ports and `env` for the files'
    /// `${…}` variables, and waits until every container is healthy. `None`
    /// outside `make compose-test`.
    pub fn up(project: &str, files: &[&str], env: &[(&str, &str)]) -> Option<Compose> {
        if std::env::var("PORTERO_COMPOSE").as_deref() != Ok("1") {
            eprintln!("skipped: the compose tier runs in `make compose-test` (PORTERO_COMPOSE=1)");
            return None;
        }
        let command =
            std::env::var("PORTERO_COMPOSE_CMD").unwrap_or_else(|_| "podman-compose".into());
        let (http, https) = (free_port(), free_port());
        let mut all_env: Vec<(String, String)> = vec![
            ("PORTERO_PORT".into(), http.to_string()),
            ("PORTERO_HTTPS_PORT".into(), https.to_string()),
        ];
        all_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let dir = workspace_root().join("compose");
        let ca_pem = std::fs::read_to_string(dir.join("edge-ca.pem"))
            .expect("compose/edge-ca.pem: make compose-config makes it");
        let cert = EdgeCertificate {
            cert: dir.join("edge-cert.pem"),
            key: dir.join("edge-key.pem"),
            ca: dir.join("edge-ca.pem"),
            ca_pem,
        };
        let compose = Compose {
            project: project.to_string(),
            files: files.iter().map(|f| f.to_string()).collect(),
            command,
            env: all_env,
            stack: Arc::new(Stack::attach(http, Some((https, cert)))),
        };
        // What an earlier, killed run may have left under this name.
        compose.compose(&["down", "-v"]);
        let started = Instant::now();
        let out = compose.compose(&["up", "-d"]);
        assert!(
            out.status.success(),
            "{} up -d: {}{}",
            compose.command,
            text(&out.stdout),
            text(&out.stderr)
        );
        compose.wait_healthy();
        eprintln!(
            "{project} ({}) up and healthy in {:.1} s",
            files.join(" + "),
            started.elapsed().as_secs_f64()
        );
        Some(compose)
    }

    /// The compose command on this project's files.
    fn compose(&self, args: &[&str]) -> Output {
        let mut command = Command::new(&self.command);
        command
            .current_dir(workspace_root())
            .args(["-p", &self.project]);
        for file in &self.files {
            command.args(["-f", file]);
        }
        command.args(args).envs(self.env.iter().cloned());
        run(&mut command)
    }

    /// The project's containers (every state), by name.
    pub fn containers(&self) -> Vec<String> {
        podman(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--format",
            "{{.Names}}",
        ])
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// The container of `service` (one replica per service here).
    pub fn container(&self, service: &str) -> String {
        let names = podman(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
            "--format",
            "{{.Names}}",
        ]);
        let names: Vec<&str> = names.lines().collect();
        assert_eq!(names.len(), 1, "the containers of {service}: {names:?}");
        names[0].to_string()
    }

    /// `podman <verb> <the service's container>` (restart, stop, start, kill).
    pub fn podman_on(&self, verb: &str, service: &str) {
        podman(&[verb, &self.container(service)]);
    }

    /// Runs every container's health check until each passes (see the
    /// module's note); panics past [`HEALTHY_BOUND`] naming the ones that
    /// did not.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + HEALTHY_BOUND;
        loop {
            let failing: Vec<String> = self
                .containers()
                .into_iter()
                .filter(|name| {
                    !run(Command::new("podman").args(["healthcheck", "run", name]))
                        .status
                        .success()
                })
                .collect();
            if failing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not healthy after {HEALTHY_BOUND:?}: {failing:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The last lines of every container's log, on stderr.
    pub fn dump_logs(&self) {
        for name in self.containers() {
            let out = run(Command::new("podman").args(["logs", "--tail", "40", &name]));
            eprintln!(
                "──── {name} ────\n{}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        let out = self.compose(&["down", "-v"]);
        if !out.status.success() {
            eprintln!(
                "{} down -v: {}{}",
                self.command,
                text(&out.stdout),
                text(&out.stderr)
            );
        }
    }
}
