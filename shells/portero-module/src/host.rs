//! The core's [`Host`] over Envoy's dynamic-module callbacks, and the ids of
//! the metrics Envoy defined for a config.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use portero_core::background::CallCarrier;
use portero_core::crypto::Crypto;
use portero_core::edited_headers::{lines_named, EditedHeaders, HeaderLine};
use portero_core::flow::{DispatchError, Host, LocalResponse, SidecarCall};
use portero_core::metrics::{Counter, PendingCounts, FAMILIES, SIDECAR_LATENCY_US};

use crate::abi::{self, ConfigDefinition, Filter};

/// Envoy's ids for a config's metrics: a labelled counter per family (in
/// [`FAMILIES`] order) and the sidecar latency histogram. `None`: Envoy
/// refused to define it, and it is not counted.
#[derive(Clone, Copy, Default)]
pub struct MetricIds {
    counters: [Option<usize>; FAMILIES.len()],
    sidecar_latency: Option<usize>,
}

impl MetricIds {
    /// Defines every metric; only possible while Envoy builds the config.
    pub fn define(config: &ConfigDefinition) -> MetricIds {
        let mut ids = MetricIds::default();
        for (slot, family) in ids.counters.iter_mut().zip(FAMILIES.iter()) {
            let name = format!("portero.{}", family.name);
            match config.define_counter(&name, family.labels) {
                Ok(id) => *slot = Some(id),
                Err(result) => {
                    log::warn!("counter {name} not defined by Envoy (result {result}); not counted")
                }
            }
        }
        ids.sidecar_latency = config.define_histogram(SIDECAR_LATENCY_US).ok();
        ids
    }
}

pub fn micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// [`Host`] over the dynamic-module ABI. The request headers are read once
/// per hook; changes are written back at its end, one call per header.
///
/// A local reply is not sent from here: Envoy may run other hooks of the
/// stream inside `send_response` (it does on 1.40: `stream_complete`), so
/// the reply waits in [`DmHost::reply`] until the hook has let go of the
/// stream's state (see `hooks.rs`).
pub struct DmHost {
    pub envoy: Filter,
    pub request_headers: EditedHeaders,
    pub response_headers: Vec<HeaderLine>,
    /// The local reply the flow sent, not yet handed to Envoy.
    pub reply: Option<LocalResponse>,
    /// A local reply was sent on this stream (no second one, ever).
    pub responded: bool,
    /// The id of the flow's own call to the sidecar, while it is in flight.
    pub flow_call: Option<u64>,
    pub now_us: u64,
    client_address: Option<Option<String>>,
    metrics: MetricIds,
    pending: Option<Rc<RefCell<PendingCounts>>>,
}

impl DmHost {
    pub fn new(
        envoy: Filter,
        metrics: MetricIds,
        pending: Option<Rc<RefCell<PendingCounts>>>,
    ) -> DmHost {
        DmHost {
            envoy,
            request_headers: EditedHeaders::default(),
            response_headers: Vec::new(),
            reply: None,
            responded: false,
            flow_call: None,
            now_us: 0,
            client_address: None,
            metrics,
            pending,
        }
    }

    /// The flow's request-header changes, written back: `set_header`
    /// replaces every line of a name; a removal is a `set_header` with a
    /// null value.
    pub fn flush(&mut self) {
        let changes = self.request_headers.take_changes();
        if self.responded {
            return;
        }
        for (name, value) in changes {
            match value {
                Some(value) => self.envoy.set_header(abi::REQUEST_HEADER, &name, &value),
                None => self.envoy.remove_header(abi::REQUEST_HEADER, &name),
            };
        }
    }

    /// Hands every pending count to Envoy: one call per series.
    pub fn hand_over_counts(&self) {
        let Some(pending) = &self.pending else {
            return;
        };
        for (counter, count) in pending.borrow_mut().drain() {
            self.add_to_counter(counter, count);
        }
    }

    fn add_to_counter(&self, counter: Counter, count: u64) {
        let index = counter.family_index();
        let (Some(Some(id)), Some(family)) =
            (self.metrics.counters.get(index), FAMILIES.get(index))
        else {
            return;
        };
        let values = counter.label_values();
        // As many values as the family has label names (at most two).
        let values = values.get(..family.labels.len()).unwrap_or(&values);
        self.envoy.increment_counter(*id, values, count);
    }

    /// A 503 for a request this worker cannot judge (unless a reply was
    /// already sent: never two on one stream).
    pub fn unavailable(&mut self) {
        if self.responded {
            return;
        }
        self.send_local_response(LocalResponse {
            status: 503,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("cache-control".into(), "no-store".into()),
            ],
            body: br#"{"error":"unavailable","reason":"filter_not_configured"}"#.to_vec(),
        });
    }
}

impl Host for DmHost {
    fn crypto(&self) -> &dyn Crypto {
        &portero_native_crypto::NativeCrypto
    }

    fn now(&self) -> u64 {
        self.now_us / 1_000_000
    }

    fn now_micros(&self) -> u64 {
        self.now_us
    }

    fn route_name(&self) -> Option<String> {
        self.envoy
            .attribute(abi::ATTRIBUTE_XDS_ROUTE_NAME)
            .filter(|name| !name.is_empty())
    }

    fn client_address(&mut self) -> Option<String> {
        if self.client_address.is_none() {
            self.client_address = Some(self.envoy.attribute(abi::ATTRIBUTE_SOURCE_ADDRESS));
        }
        self.client_address.clone().flatten()
    }

    fn request_header_lines(&self, name: &str) -> Vec<&[u8]> {
        self.request_headers.lines(name)
    }

    fn request_header_names(&self) -> Vec<&[u8]> {
        self.request_headers.names()
    }

    fn set_request_header(&mut self, name: &str, value: &[u8]) {
        self.request_headers.set(name, value);
    }

    fn remove_request_header(&mut self, name: &str) {
        self.request_headers.remove(name);
    }

    fn response_header_lines(&self, name: &str) -> Vec<&[u8]> {
        lines_named(&self.response_headers, name)
    }

    fn add_response_header(&mut self, name: &str, value: &str) {
        // `:status` is replaced, not added (the flow removes it first).
        let written = if name == ":status" {
            self.envoy
                .set_header(abi::RESPONSE_HEADER, name, value.as_bytes())
        } else {
            self.envoy
                .add_header(abi::RESPONSE_HEADER, name, value.as_bytes())
        };
        // What the flow reads back is what Envoy holds.
        if written {
            self.response_headers
                .push((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
    }

    fn remove_response_header(&mut self, name: &str) {
        if name == ":status" {
            return;
        }
        let present = self
            .response_headers
            .iter()
            .any(|(k, _)| k == name.as_bytes());
        if present && self.envoy.remove_header(abi::RESPONSE_HEADER, name) {
            self.response_headers.retain(|(k, _)| k != name.as_bytes());
        }
    }

    fn dispatch_sidecar_call(&mut self, call: SidecarCall) -> Result<(), DispatchError> {
        let id = self.envoy.callout(&call)?;
        self.flow_call = Some(id);
        Ok(())
    }

    /// Queued: sent by the hook once it has let go of the stream's state.
    fn send_local_response(&mut self, response: LocalResponse) {
        if self.responded {
            return;
        }
        self.responded = true;
        self.reply = Some(response);
    }

    fn increment(&mut self, counter: Counter) {
        if let Some(pending) = &self.pending {
            pending.borrow_mut().add(counter);
        }
    }

    fn record_sidecar_latency_us(&mut self, micros: u64) {
        if let Some(id) = self.metrics.sidecar_latency {
            self.envoy.record_histogram(id, micros);
        }
    }
}

/// Background calls through the request's own stream (a callout's id names
/// the answer).
impl CallCarrier for DmHost {
    type Id = u64;

    fn start_call(&mut self, call: &SidecarCall) -> Option<u64> {
        self.envoy.callout(call).ok()
    }

    fn count(&mut self, counter: Counter) {
        self.increment(counter);
    }
}
