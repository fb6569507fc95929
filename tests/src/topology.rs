//! Real Redis topologies on loopback, made of plain `redis-server`
//! processes: one server; a primary with replicas watched by Sentinel; a
//! Cluster of primaries with replicas. Redis's own replication, failover and
//! sharding, never a stand-in.
//!
//! A topology is expensive to start (a Cluster takes seconds), so a test
//! binary starts each once ([`shared`]) and its tests share it, each under
//! its own user ids.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::proc::{free_cluster_port, free_port, Proc};

/// The name Sentinel knows the primary by.
pub const MASTER_NAME: &str = "portero";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Standalone,
    Sentinel,
    Cluster,
}

/// One `redis-server` (data node or sentinel).
pub struct Node {
    pub port: u16,
    pub proc: Option<Proc>,
    args: Vec<String>,
    log: PathBuf,
}

pub struct Topology {
    pub kind: Kind,
    /// Data nodes. Standalone: one; Sentinel: the first is the initial
    /// primary; Cluster: every node (roles as the cluster assigns them).
    pub nodes: Vec<Node>,
    pub sentinels: Vec<Node>,
    pub dir: PathBuf,
}

fn redis_server() -> &'static str {
    "redis-server"
}

/// `redis-cli` against a port; its stdout, trimmed.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not ready after {limit:?}");
}

impl Node {
    fn start(dir: &std::path::Path, name: &str, port: u16, args: Vec<String>) -> Node {
        let log = dir.join(format!("{name}-{port}.log"));
        let mut node = Node {
            port,
            proc: None,
            args,
            log,
        };
        node.restart();
        node
    }

    /// (Re)starts the process with its first arguments (a restarted node
    /// rejoins as its configuration files now say).
    pub fn restart(&mut self) {
        let mut command = Command::new(redis_server());
        command.args(&self.args);
        self.proc = Some(Proc::spawn_tied("redis", command, self.log.clone()));
        // A node replaying its AOF answers -LOADING, and on two busy cores
        // under load that has taken more than 10 s; an exited process will
        // never answer, so that is reported at once with its log.
        let port = self.port;
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if cli(port, &["PING"]) == "PONG" {
                return;
            }
            let exited = self.proc.as_mut().is_none_or(|p| p.exited());
            if exited || Instant::now() > deadline {
                panic!(
                    "redis-server on {port}: {} \n{}",
                    if exited {
                        "exited"
                    } else {
                        "not ready after 40s"
                    },
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal(libc::SIGKILL);
            p.stop();
        }
    }

    pub fn log_tail(&self) -> String {
        self.proc
            .as_ref()
            .map(|p| p.log_tail(40))
            .unwrap_or_default()
    }
}

fn data_args(dir: &std::path::Path, port: u16, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.display().to_string(),
        "--dbfilename",
        &format!("dump-{port}.rdb"),
        "--appendfilename",
        &format!("appendonly-{port}.aof"),
        "--appenddirname",
        &format!("aof-{port}"),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        // A new replica syncs at once (the default waits 5 s for others).
        "--repl-diskless-sync-delay",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A fresh directory for a topology's files. Directories of topologies whose
/// test binary has exited (shared ones are never dropped) are removed here.
fn work_dir(kind: &str) -> PathBuf {
    if let Ok(entries) = fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(rest) = name.strip_prefix("portero-redis-") else {
                continue;
            };
            let pid = rest.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
    }
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("portero-redis-{kind}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("topology dir");
    dir
}

impl Topology {
    /// One server.
    pub fn standalone() -> Topology {
        let dir = work_dir("standalone");
        let port = free_port();
        let node = Node::start(&dir, "redis", port, data_args(&dir, port, &[]));
        Topology {
            kind: Kind::Standalone,
            nodes: vec![node],
            sentinels: vec![],
            dir,
        }
    }

    /// A primary, `replicas` replicas and `sentinels` sentinels (quorum: a
    /// majority), failing over after 1 s without an answer.
    pub fn sentinel(replicas: usize, sentinels: usize) -> Topology {
        let dir = work_dir("sentinel");
        let primary_port = free_port();
        let mut nodes = vec![Node::start(
            &dir,
            "primary",
            primary_port,
            data_args(&dir, primary_port, &[]),
        )];
        for _ in 0..replicas {
            let port = free_port();
            let primary = primary_port.to_string();
            nodes.push(Node::start(
                &dir,
                "replica",
                port,
                data_args(&dir, port, &["--replicaof", "127.0.0.1", &primary]),
            ));
        }
        let quorum = sentinels / 2 + 1;
        let mut watchers = Vec::new();
        for _ in 0..sentinels {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{port}.conf"));
            fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} {quorum}\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 4000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir.display()
                ),
            )
            .expect("sentinel.conf");
            watchers.push(Node::start(
                &dir,
                "sentinel",
                port,
                vec![conf.display().to_string(), "--sentinel".into()],
            ));
        }
        let topology = Topology {
            kind: Kind::Sentinel,
            nodes,
            sentinels: watchers,
            dir,
        };
        // Every replica has synced (a write can be acknowledged), and every
        // sentinel sees every replica and the other sentinels.
        wait_for("replicas online", Duration::from_secs(20), || {
            let info = cli(primary_port, &["INFO", "replication"]);
            info.matches("state=online").count() == replicas
        });
        for s in &topology.sentinels {
            wait_for("sentinel discovery", Duration::from_secs(20), || {
                let info = cli(s.port, &["SENTINEL", "MASTER", MASTER_NAME]);
                let field = |name: &str| {
                    let lines: Vec<&str> = info.lines().collect();
                    lines
                        .iter()
                        .position(|l| *l == name)
                        .and_then(|i| lines.get(i + 1))
                        .and_then(|v| v.parse::<usize>().ok())
                };
                field("num-slaves") == Some(replicas)
                    && field("num-other-sentinels") == Some(sentinels - 1)
            });
        }
        topology
    }

    /// `primaries` primaries with `replicas` replicas each, as
    /// `redis-cli --cluster create` lays them out; a node is failed after
    /// 1 s without an answer.
    pub fn cluster(primaries: usize, replicas: usize) -> Topology {
        let dir = work_dir("cluster");
        let mut nodes = Vec::new();
        for _ in 0..primaries * (1 + replicas) {
            let port = free_cluster_port();
            let conf = format!("nodes-{port}.conf");
            nodes.push(Node::start(
                &dir,
                "cluster",
                port,
                data_args(
                    &dir,
                    port,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &conf,
                        "--cluster-node-timeout",
                        "1000",
                    ],
                ),
            ));
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let topology = Topology {
            kind: Kind::Cluster,
            nodes,
            sentinels: vec![],
            dir,
        };
        topology.wait_cluster_ok();
        // Every replica has synced with its primary.
        for n in &topology.nodes {
            wait_for("cluster replicas online", Duration::from_secs(20), || {
                let info = cli(n.port, &["INFO", "replication"]);
                !info.contains("role:master") || info.matches("state=online").count() == replicas
            });
        }
        topology
    }

    /// Every live node says the cluster is ok, and every slot has a primary.
    pub fn wait_cluster_ok(&self) {
        for n in self.nodes.iter().filter(|n| n.proc.is_some()) {
            wait_for("cluster state", Duration::from_secs(30), || {
                let info = cli(n.port, &["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            });
        }
    }

    /// The flags that point a `redis-sidecar serve` at this topology.
    pub fn sidecar_args(&self) -> Vec<String> {
        match self.kind {
            Kind::Standalone => vec![
                "--redis-mode".into(),
                "standalone".into(),
                "--redis-url".into(),
                self.standalone_url(),
            ],
            Kind::Sentinel => vec![
                "--redis-mode".into(),
                "sentinel".into(),
                "--redis-sentinels".into(),
                self.sentinel_addrs().join(","),
                "--redis-master-name".into(),
                MASTER_NAME.into(),
            ],
            Kind::Cluster => vec![
                "--redis-mode".into(),
                "cluster".into(),
                "--redis-cluster-nodes".into(),
                self.cluster_urls().join(","),
            ],
        }
    }

    pub fn standalone_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.nodes[0].port)
    }

    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect()
    }

    pub fn cluster_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// Sentinel: the port of the primary, as the first live sentinel says.
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels
            .iter()
            .filter(|s| s.proc.is_some())
            .find_map(|s| {
                let out = cli(
                    s.port,
                    &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
                );
                out.lines().nth(1).and_then(|p| p.trim().parse().ok())
            })
    }

    /// The data node listening on `port`.
    pub fn node_mut(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this topology")
    }

    /// Cluster: the port of the primary serving `key`'s slot now, as the
    /// first live node's `CLUSTER NODES` says.
    pub fn cluster_primary_of(&self, key: &str) -> Option<u16> {
        let live = self.nodes.iter().find(|n| n.proc.is_some())?;
        let slot: u16 = cli(live.port, &["CLUSTER", "KEYSLOT", key]).parse().ok()?;
        let nodes = cli(live.port, &["CLUSTER", "NODES"]);
        nodes.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            if !flags.contains("master") || flags.contains("fail") {
                return None;
            }
            let serves = fields.iter().skip(8).any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
            });
            if !serves {
                return None;
            }
            let addr = fields.get(1)?.split('@').next()?;
            addr.rsplit_once(':')?.1.parse().ok()
        })
    }

    pub fn dump_logs(&self) {
        for n in self.nodes.iter().chain(&self.sentinels) {
            eprintln!("──── redis {} ────\n{}", n.port, n.log_tail());
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for n in self.nodes.iter_mut().chain(self.sentinels.iter_mut()) {
            if let Some(mut p) = n.proc.take() {
                p.stop();
            }
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A topology started once per test binary and shared by its tests (behind
/// a lock, for tests that fail nodes over). It is started on a thread that
/// lives as long as the process, and its processes die with the process
/// (see [`Proc::spawn_tied`]), so nothing outlives the test binary.
pub fn shared(
    cell: &'static OnceLock<Mutex<Topology>>,
    start: fn() -> Topology,
) -> &'static Mutex<Topology> {
    cell.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let topology = start();
            let _ = tx.send(topology);
            loop {
                std::thread::park();
            }
        });
        Mutex::new(rx.recv().expect("topology started"))
    })
}
