//! The filter's contexts: the root context per worker (configuration,
//! caches, background duties) and one HTTP context per request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;

use crate::abi;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};

use portero_core::background::{Background, CallCarrier, Duty, InFlight};
use portero_core::cache::EdgeCache;
use portero_core::config::Config;
use portero_core::edited_headers::{lines_named, EditedHeaders};
use portero_core::flow::{
    DispatchError, Flow, Host, LocalResponse, SidecarCall, SidecarReply, Verdict,
};
use portero_core::metrics::{Counter, PendingCounts, SIDECAR_LATENCY_US};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // Replaces the SDK's hook, which logs the panic message — and messages
    // can carry request bytes (a session cookie once reached Envoy's log).
    std::panic::set_hook(Box::new(|_| {
        let _ = hostcalls::log(
            LogLevel::Critical,
            "portero: internal error (panic); details withheld, the VM fails closed",
        );
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root {
            config: None,
            cache: None,
            metrics: Rc::new(Metrics::default()),
            background: None,
            calls: InFlight::default(),
            serves_requests: std::cell::Cell::new(false),
        })
    });
}}

struct Root {
    config: Option<Rc<Config>>,
    /// This worker's caches, shared with its requests.
    cache: Option<Rc<RefCell<EdgeCache>>>,
    metrics: Rc<Metrics>,
    /// The feed poll and the JWKS fetch, made on this context's tick.
    background: Option<Background>,
    /// This root context has made an HTTP context: it runs on a worker.
    /// The main thread's root context never serves a request and has no
    /// cache worth keeping fresh, so it never polls the feed.
    serves_requests: std::cell::Cell<bool>,
    /// The background calls in flight.
    calls: InFlight<u32>,
}

/// Metric ids of this VM, defined on first use (a counter per label
/// combination that actually occurs). Counts are kept pending and handed to
/// Envoy on the root context's tick (at most a second apart).
#[derive(Default)]
struct Metrics {
    counters: RefCell<HashMap<Counter, Option<u32>>>,
    pending: RefCell<PendingCounts>,
    sidecar_latency: RefCell<Option<Option<u32>>>,
}

impl Metrics {
    fn increment(&self, counter: Counter) {
        self.pending.borrow_mut().add(counter);
    }

    fn flush(&self) {
        let mut ids = self.counters.borrow_mut();
        for (counter, count) in self.pending.borrow_mut().drain() {
            let id = *ids.entry(counter).or_insert_with(|| {
                hostcalls::define_metric(MetricType::Counter, &counter.name()).ok()
            });
            if let Some(id) = id {
                let _ = hostcalls::increment_metric(id, i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
    }

    fn record_sidecar_latency(&self, micros: u64) {
        let mut slot = self.sidecar_latency.borrow_mut();
        let id = *slot.get_or_insert_with(|| {
            hostcalls::define_metric(MetricType::Histogram, SIDECAR_LATENCY_US).ok()
        });
        if let Some(id) = id {
            let _ = hostcalls::record_metric(id, micros);
        }
    }
}

impl Root {
    /// Starts background calls (the core's driver, over dispatch_http_call).
    fn make_calls(&mut self, calls: Vec<(Duty, SidecarCall)>) {
        let Some(background) = self.background.as_mut() else {
            return;
        };
        let mut carrier = Carrier(&self.metrics);
        self.calls
            .start(background, calls, Envoy::micros(), &mut carrier);
    }
}

/// Background calls over proxy-wasm: `dispatch_http_call`'s token names
/// the answer.
struct Carrier<'m>(&'m Metrics);

impl CallCarrier for Carrier<'_> {
    type Id = u32;

    fn start_call(&mut self, call: &SidecarCall) -> Option<u32> {
        dispatch(call).ok()
    }

    fn count(&mut self, counter: Counter) {
        self.0.increment(counter);
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _t: usize) {
        let reply = read_call_reply(body_size);
        let Some(background) = self.background.as_mut() else {
            return;
        };
        let mut carrier = Carrier(&self.metrics);
        self.calls.answer(
            background,
            &token,
            reply.status,
            &reply.body,
            Envoy::micros(),
            &mut carrier,
        );
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Config::from_json(&bytes) {
            Ok(config) => {
                let config = Rc::new(config);
                let cache = Rc::new(RefCell::new(EdgeCache::new(&config.cache)));
                let background = Background::new(config.clone(), cache.clone());
                self.set_tick_period(Duration::from_millis(background.tick_period_ms()));
                self.background = Some(background);
                self.cache = Some(cache);
                self.config = Some(config);
                true
            }
            Err(e) => {
                log::error!("portero: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.metrics.flush();
        let now = Envoy::micros();
        portero_core::reject::flush_trouble_log(now / 1_000_000);
        if !self.serves_requests.get() {
            return;
        }
        let due = self
            .background
            .as_mut()
            .map(|b| b.due_calls(now))
            .unwrap_or_default();
        self.make_calls(due);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.serves_requests.set(true);
        // Returning `None` here is a panic inside the SDK: a VM without a
        // usable configuration answers every request 503 instead.
        let (Some(config), Some(cache)) = (self.config.clone(), self.cache.clone()) else {
            return Some(Box::new(Unconfigured));
        };
        Some(Box::new(Request {
            flow: Flow::new(config, cache),
            envoy: Envoy {
                metrics: self.metrics.clone(),
                request_headers: EditedHeaders::default(),
                response_headers: Vec::new(),
                responded: false,
                now_us: 0,
                client_address: None,
            },
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    flow: Flow,
    envoy: Envoy,
}

fn action(verdict: Verdict) -> Action {
    match verdict {
        Verdict::Forward => Action::Continue,
        // A local response was sent: Envoy expects the filter to stop.
        Verdict::Wait | Verdict::Responded => Action::Pause,
    }
}

/// The HTTP context of a VM whose configuration could not be used.
struct Unconfigured;

impl Context for Unconfigured {}

impl HttpContext for Unconfigured {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let _ = hostcalls::send_http_response(
            503,
            vec![
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
            ],
            Some(br#"{"error":"unavailable","reason":"filter_not_configured"}"#),
        );
        Action::Pause
    }
}

impl Context for Request {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, body_size: usize, _t: usize) {
        let reply = read_call_reply(body_size);
        self.envoy.now_us = Envoy::micros();
        let verdict = self.flow.on_sidecar_reply(&mut self.envoy, reply);
        self.envoy.flush_request_headers();
        if verdict == Verdict::Forward {
            let _ = hostcalls::resume_http_request();
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        self.envoy.request_headers = EditedHeaders::new(abi::read(MapType::HttpRequestHeaders));
        self.envoy.now_us = Envoy::micros();
        let verdict = self.flow.on_request_headers(&mut self.envoy);
        self.envoy.flush_request_headers();
        action(verdict)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        self.envoy.response_headers = abi::read(MapType::HttpResponseHeaders);
        self.flow.on_response_headers(&mut self.envoy);
        Action::Continue
    }
}

/// The answer to a `dispatch_http_call`, as the flow reads it.
fn read_call_reply(body_size: usize) -> SidecarReply {
    let status = abi::read(MapType::HttpCallResponseHeaders)
        .into_iter()
        .find(|(name, _)| name == b":status")
        .and_then(|(_, value)| std::str::from_utf8(&value).ok()?.parse::<u16>().ok());
    let body = hostcalls::get_buffer(
        proxy_wasm::types::BufferType::HttpCallResponseBody,
        0,
        body_size,
    )
    .ok()
    .flatten()
    .unwrap_or_default();
    SidecarReply { status, body }
}

/// Starts a call; its token names the answer.
fn dispatch(call: &SidecarCall) -> Result<u32, DispatchError> {
    let headers: Vec<(&str, &str)> = call
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    hostcalls::dispatch_http_call(
        &call.cluster,
        headers,
        Some(&call.body),
        vec![],
        Duration::from_millis(call.timeout_ms),
    )
    .map_err(|status| DispatchError(format!("{status:?}")))
}

/// Every line of header `name` in a snapshot (names from Envoy are
/// lowercase).
/// [`Host`] over proxy-wasm host calls. Host-call failures are treated as
/// "absent": the flow then takes its failing branch.
struct Envoy {
    metrics: Rc<Metrics>,
    /// The headers as they arrived, as bytes, read in one host call per
    /// direction (a host call per header read was most of the filter's
    /// cost). The flow's request changes are written back at the end of
    /// each callback.
    request_headers: EditedHeaders,
    response_headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// A local response went out: the request is done.
    responded: bool,
    /// The clock, read once per callback rather than once per question.
    now_us: u64,
    /// The downstream address, read on first use.
    client_address: Option<Option<String>>,
}

impl Envoy {
    fn flush_request_headers(&mut self) {
        let changes = self.request_headers.take_changes();
        if self.responded {
            return;
        }
        for (name, value) in changes {
            abi::remove(MapType::HttpRequestHeaders, &name);
            if let Some(value) = value {
                abi::add(MapType::HttpRequestHeaders, &name, &value);
            }
        }
    }

    fn micros() -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}

impl Host for Envoy {
    fn now(&self) -> u64 {
        self.now_us / 1_000_000
    }

    fn now_micros(&self) -> u64 {
        self.now_us
    }

    fn route_name(&self) -> Option<String> {
        let bytes = hostcalls::get_property(vec!["xds", "route_name"]).ok()??;
        String::from_utf8(bytes).ok()
    }

    fn increment(&mut self, counter: Counter) {
        self.metrics.increment(counter);
    }

    fn record_sidecar_latency_us(&mut self, micros: u64) {
        self.metrics.record_sidecar_latency(micros);
    }

    fn client_address(&mut self) -> Option<String> {
        self.client_address
            .get_or_insert_with(|| {
                let bytes = hostcalls::get_property(vec!["source", "address"]).ok()??;
                String::from_utf8(bytes).ok()
            })
            .clone()
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
        // `:status` is replaced, not added (the flow removes it first): Envoy
        // keeps the upstream's status when a second one is added.
        if name == ":status" {
            abi::replace(MapType::HttpResponseHeaders, name, value.as_bytes());
            self.response_headers.retain(|(k, _)| k != name.as_bytes());
        } else {
            abi::add(MapType::HttpResponseHeaders, name, value.as_bytes());
        }
        self.response_headers
            .push((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
    }

    fn remove_response_header(&mut self, name: &str) {
        if self
            .response_headers
            .iter()
            .any(|(k, _)| k == name.as_bytes())
        {
            abi::remove(MapType::HttpResponseHeaders, name);
            self.response_headers.retain(|(k, _)| k != name.as_bytes());
        }
    }

    fn dispatch_sidecar_call(&mut self, call: SidecarCall) -> Result<(), DispatchError> {
        dispatch(&call).map(|_| ())
    }

    fn send_local_response(&mut self, response: LocalResponse) {
        self.responded = true;
        let headers: Vec<(&str, &str)> = response
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let _ = hostcalls::send_http_response(response.status, headers, Some(&response.body));
    }
}
