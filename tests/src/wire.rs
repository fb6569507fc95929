//! An upstream that records the bytes Envoy sends it: what the upstream
//! *receives* (every header line as it crossed the wire), not what a
//! forgiving app makes of it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Answers every request `200 ok` (closing the connection) and keeps its
/// request head.
pub struct WireUpstream {
    pub port: u16,
    heads: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WireUpstream {
    pub fn start() -> WireUpstream {
        Self::answering("")
    }

    /// Answers with `extra` (header lines, each ending in `\r\n`) in its
    /// response head: an upstream that starts a session, say.
    pub fn answering(extra: &'static str) -> WireUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopping) = (heads.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let seen = seen.clone();
                std::thread::spawn(move || serve(stream, &seen, extra));
            }
        });
        WireUpstream {
            port,
            heads,
            stop,
            thread: Some(thread),
        }
    }

    /// The request heads received since the last call, oldest first.
    pub fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.heads.lock().expect("lock"))
    }
}

fn serve(mut stream: TcpStream, seen: &Mutex<Vec<Vec<u8>>>, extra: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(head.len());
    // Read the body too: closing on unread bytes would reset the connection
    // under Envoy's feet.
    let body_len = header_lines(&head[..end])
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut have = head.len().saturating_sub(end + 4);
    while have < body_len {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => have += n,
        }
    }
    head.truncate(end);
    seen.lock().expect("lock").push(head);
    let response =
        format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n{extra}\r\nok");
    let _ = stream.write_all(response.as_bytes());
}

/// The header lines of a recorded head: (name as sent, value).
pub fn header_lines(head: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_string(), value.trim().to_string()))
        .collect()
}

impl Drop for WireUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
