//! Processes and ports: where the workspace is, free loopback ports, a
//! child process in its own group that is stopped (by pid) on drop.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

pub fn fixture(name: &str) -> PathBuf {
    workspace_root()
        .join("crates/portero-testkit/fixtures")
        .join(name)
}

/// Ports handed out by [`free_port`]: below Linux's ephemeral range
/// (32768–60999), so no outgoing connection of another test (or Envoy's
/// own upstream connections) can take one between its pick and its bind.
const PORT_RANGE: std::ops::Range<u32> = 15_000..32_000;
static NEXT_PORT: AtomicUsize = AtomicUsize::new(0);

/// A loopback port nobody listens on right now, distinct from every other
/// one this process has picked; test binaries start at a pid-derived spot.
pub fn free_port() -> u16 {
    let span = PORT_RANGE.end - PORT_RANGE.start;
    let start = (std::process::id() * 7919) % span;
    for _ in 0..span {
        let offset = u32::try_from(NEXT_PORT.fetch_add(1, Ordering::SeqCst)).unwrap_or(0);
        let port = PORT_RANGE.start + (start + offset) % span;
        let port = u16::try_from(port).expect("port in range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {PORT_RANGE:?}")
}

/// A free port whose Redis Cluster bus port (the port + 10000) is free too,
/// both below the ephemeral range: a cluster node listens on both and aborts
/// when the second is taken (an outgoing connection once held it).
pub fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        let bus = u32::from(port) + 10_000;
        let bus_free = bus < 32_768
            && u16::try_from(bus).is_ok_and(|bus| TcpListener::bind(("127.0.0.1", bus)).is_ok());
        if bus_free {
            return port;
        }
    }
}

pub fn envoy_binary() -> PathBuf {
    std::env::var_os("PORTERO_ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/envoy"))
}

pub fn require(path: &Path, how: &str) {
    assert!(
        path.exists(),
        "{} is missing: {how} (make test builds everything)",
        path.display()
    );
}

/// A child process in its own process group, stopped on drop.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, command: &mut Command, log: PathBuf) -> Proc {
        let out = fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        // A child starts with no blocked signals, whatever its parent blocks
        // (portero-stack blocks SIGINT/SIGTERM to wait for them).
        unsafe {
            command.pre_exec(|| {
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                Ok(())
            });
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    /// Like [`Proc::spawn`], for a process that must not outlive the test
    /// binary even when nothing drops it (a topology shared in a static):
    /// the kernel SIGKILLs it when its parent thread ends
    /// (`PR_SET_PDEATHSIG`), so it is forked from a thread that lives as
    /// long as the process.
    pub fn spawn_tied(name: &str, command: Command, log: PathBuf) -> Proc {
        type Job = (String, Command, PathBuf, mpsc::Sender<Proc>);
        static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
        let spawner = SPAWNER.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::spawn(move || {
                for (name, mut command, log, reply) in rx {
                    unsafe {
                        command.pre_exec(|| {
                            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                            Ok(())
                        });
                    }
                    let _ = reply.send(Proc::spawn(&name, &mut command, log));
                }
            });
            Mutex::new(tx)
        });
        let (reply, proc) = mpsc::channel();
        spawner
            .lock()
            .expect("spawner")
            .send((name.to_string(), command, log, reply))
            .expect("spawner thread");
        proc.recv().expect("spawned")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Sends `signal` to the process (not its group). After SIGSTOP, waits
    /// until every thread of it is seen stopped (delivery is asynchronous).
    pub fn signal(&self, signal: i32) {
        let Some(child) = &self.child else {
            return;
        };
        let pid = child.id();
        unsafe {
            libc::kill(pid as i32, signal);
        }
        if signal != libc::SIGSTOP {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let tasks = fs::read_dir(format!("/proc/{pid}/task"))
                .map(|dir| dir.flatten().map(|t| t.path()).collect::<Vec<_>>())
                .unwrap_or_default();
            let stopped = tasks.iter().all(|task| {
                fs::read_to_string(task.join("stat"))
                    .ok()
                    .and_then(|stat| {
                        let after = stat.rsplit_once(')')?.1;
                        after.trim_start().chars().next()
                    })
                    .is_some_and(|state| state == 'T' || state == 't')
            });
            if stopped && !tasks.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("{} did not stop", self.name);
    }

    /// SIGTERM the process group, SIGKILL after 5 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id() as i32;
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = child.wait();
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Unix time now, in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Status of a plain HTTP/1.0 GET, without any client library (readiness).
pub(crate) fn raw_get_status(port: u16, path: &str) -> Option<u16> {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).ok()?;
    let head = std::str::from_utf8(buf.get(..n)?).ok()?;
    head.split(' ').nth(1)?.parse().ok()
}
