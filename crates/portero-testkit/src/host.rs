//! The one fake [`Host`]: headers as lines of bytes (repeated names and
//! non-UTF-8 values kept), every sidecar call, local response, counter and
//! latency recorded, the clock set by the test.

use std::cell::Cell;
use std::ops::Index;

use portero_core::cookie::{CookieCodec, CookieError};
use portero_core::crypto::{Crypto, PortableCrypto};
use portero_core::flow::{ClientKind, DispatchError, Host, LocalResponse, SidecarCall};
use portero_core::metrics::{Counter, Outcome};
use portero_core::rs256::RsaPublicKey;
use portero_wire::LookupRequest;

use crate::tokens::NOW;

/// Header lines in order, as Envoy holds them: a name may repeat and a
/// value is bytes. `lines["name"]` is the first value, as text.
#[derive(Debug, Default, Clone)]
pub struct HeaderLines(pub Vec<(String, Vec<u8>)>);

impl HeaderLines {
    /// Sets `name` to one line, replacing any it had.
    pub fn insert(&mut self, name: &str, value: &str) {
        self.set(name, value.as_bytes());
    }

    /// Sets `name` to one line of bytes, replacing any it had.
    pub fn set(&mut self, name: &str, value: &[u8]) {
        self.remove(name);
        self.0.push((name.to_string(), value.to_vec()));
    }

    /// Adds a line (a repeated name, or bytes that are not text).
    pub fn push(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.0.push((name.to_string(), value.into()));
    }

    pub fn extend(&mut self, lines: impl IntoIterator<Item = (String, Vec<u8>)>) {
        self.0.extend(lines);
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(k, _)| k != name);
    }

    /// Every value of `name`, in order.
    pub fn lines(&self, name: &str) -> Vec<&[u8]> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// The first value of `name`, if it is text.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

impl Index<&str> for HeaderLines {
    type Output = str;
    fn index(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("no header {name:?} (as text)"))
    }
}

#[derive(Default)]
pub struct FakeHost {
    pub now: u64,
    pub request: HeaderLines,
    pub response: HeaderLines,
    pub calls: Vec<SidecarCall>,
    pub sent: Option<LocalResponse>,
    pub dispatch_fails: bool,
    pub client_address: Option<String>,
    pub route_name: Option<String>,
    pub counters: Vec<Counter>,
    pub latencies: Vec<u64>,
    /// The portable cryptography, counting what the flow asks of it.
    pub crypto: CountingCrypto,
}

/// [`PortableCrypto`] that counts its operations: how a test knows a warm
/// request ran no cryptography.
#[derive(Debug, Default)]
pub struct CountingCrypto {
    pub rs256_verifications: Cell<usize>,
    pub cookie_opens: Cell<usize>,
}

impl CountingCrypto {
    /// Operations of any kind so far.
    pub fn operations(&self) -> usize {
        self.rs256_verifications.get() + self.cookie_opens.get()
    }
}

impl Crypto for CountingCrypto {
    fn verify_rs256(&self, key: &RsaPublicKey, message: &[u8], signature: &[u8]) -> bool {
        self.rs256_verifications
            .set(self.rs256_verifications.get() + 1);
        PortableCrypto.verify_rs256(key, message, signature)
    }

    fn open_cookie(&self, codec: &CookieCodec, value: &str) -> Result<String, CookieError> {
        self.cookie_opens.set(self.cookie_opens.get() + 1);
        PortableCrypto.open_cookie(codec, value)
    }
}

impl FakeHost {
    pub fn new() -> Self {
        let mut host = FakeHost {
            now: NOW,
            client_address: Some("203.0.113.7:5555".into()),
            ..Default::default()
        };
        host.request.insert(":path", "/me");
        host.request.insert(":method", "GET");
        host.request.insert("user-agent", "test");
        host
    }

    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.request.insert(name, value);
        self
    }

    pub fn response_header(&self, name: &str) -> Option<String> {
        self.response.get(name).map(str::to_string)
    }

    pub fn request_header(&self, name: &str) -> Option<String> {
        self.request.get(name).map(str::to_string)
    }

    pub fn sent_status(&self) -> Option<u32> {
        self.sent.as_ref().map(|r| r.status)
    }

    pub fn sent_header(&self, name: &str) -> Option<&str> {
        self.sent.as_ref().and_then(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        })
    }

    pub fn sent_reason(&self) -> String {
        let body: serde_json::Value =
            serde_json::from_slice(&self.sent.as_ref().unwrap().body).unwrap();
        body["reason"].as_str().unwrap().to_string()
    }

    pub fn lookup(&self) -> LookupRequest {
        serde_json::from_slice(&self.calls[0].body).unwrap()
    }

    pub fn counted(&self, counter: Counter) -> usize {
        self.counters.iter().filter(|c| **c == counter).count()
    }

    pub fn outcome(&self, flow: ClientKind, outcome: Outcome) -> usize {
        self.counted(Counter::Request { flow, outcome })
    }
}

impl Host for FakeHost {
    fn crypto(&self) -> &dyn Crypto {
        &self.crypto
    }
    fn now(&self) -> u64 {
        self.now
    }
    fn now_micros(&self) -> u64 {
        self.now * 1_000_000 + self.calls.len() as u64 * 700
    }
    fn route_name(&self) -> Option<String> {
        self.route_name.clone()
    }
    fn client_address(&mut self) -> Option<String> {
        self.client_address.clone()
    }
    fn increment(&mut self, counter: Counter) {
        self.counters.push(counter);
    }
    fn record_sidecar_latency_us(&mut self, micros: u64) {
        self.latencies.push(micros);
    }
    fn request_header_lines(&self, name: &str) -> Vec<&[u8]> {
        self.request.lines(name)
    }
    fn request_header_names(&self) -> Vec<&[u8]> {
        self.request.0.iter().map(|(k, _)| k.as_bytes()).collect()
    }
    fn set_request_header(&mut self, name: &str, value: &[u8]) {
        self.request.set(name, value);
    }
    fn remove_request_header(&mut self, name: &str) {
        self.request.remove(name);
    }
    fn response_header_lines(&self, name: &str) -> Vec<&[u8]> {
        self.response.lines(name)
    }
    fn add_response_header(&mut self, name: &str, value: &str) {
        self.response.push(name, value);
    }
    fn remove_response_header(&mut self, name: &str) {
        self.response.remove(name);
    }
    fn dispatch_sidecar_call(&mut self, call: SidecarCall) -> Result<(), DispatchError> {
        if self.dispatch_fails {
            return Err(DispatchError("no such cluster".into()));
        }
        self.calls.push(call);
        Ok(())
    }
    fn send_local_response(&mut self, response: LocalResponse) {
        assert!(self.sent.is_none(), "two local responses");
        self.sent = Some(response);
    }
}
