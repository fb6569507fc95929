//! The proxy-wasm shell: moves bytes between Envoy and [`crate::flow`].
//! No decisions here.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};

use crate::cache::{EdgeCache, FeedOutcome};
use crate::config::Config;
use crate::flow::{sidecar_call, Flow, Host, LocalResponse, SidecarCall, SidecarReply, Verdict};
use crate::metrics::{Counter, SIDECAR_LATENCY_US};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root {
            config: None,
            cache: None,
            metrics: Rc::new(Metrics::default()),
            last_feed_poll_us: 0,
        })
    });
}}

struct Root {
    config: Option<Rc<Config>>,
    /// This worker's caches, shared with its requests.
    cache: Option<Rc<RefCell<EdgeCache>>>,
    metrics: Rc<Metrics>,
    /// When the feed was last polled on a tick (microseconds).
    last_feed_poll_us: u64,
}

/// Metric ids of this VM, defined on first use (a counter per label
/// combination that actually occurs). Counts are kept here and handed to
/// Envoy on the root context's tick (at most a second apart): a host call per count
/// was a measurable share of a request's cost.
#[derive(Default)]
struct Metrics {
    counters: RefCell<HashMap<Counter, Option<u32>>>,
    pending: RefCell<HashMap<Counter, i64>>,
    sidecar_latency: RefCell<Option<Option<u32>>>,
}

impl Metrics {
    fn increment(&self, counter: Counter) {
        *self.pending.borrow_mut().entry(counter).or_insert(0) += 1;
    }

    fn flush(&self) {
        let mut ids = self.counters.borrow_mut();
        for (counter, count) in self.pending.borrow_mut().drain() {
            let id = *ids.entry(counter).or_insert_with(|| {
                hostcalls::define_metric(MetricType::Counter, &counter.name()).ok()
            });
            if let Some(id) = id {
                let _ = hostcalls::increment_metric(id, count);
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
    /// Polls the revocation feed if a poll is due.
    fn poll_feed(&mut self) {
        let (Some(config), Some(cache)) = (&self.config, &self.cache) else {
            return;
        };
        let now = Envoy::micros();
        let Some(path) = cache.borrow_mut().feed_poll(now, config.sidecar.timeout_ms) else {
            return;
        };
        let call = sidecar_call(config, "GET", path, Vec::new());
        if dispatch(&call).is_err() {
            let outcome = cache.borrow_mut().on_feed_reply(None, &[], now);
            self.count_feed(outcome);
        }
    }

    fn count_feed(&self, outcome: FeedOutcome) {
        let result = match outcome {
            FeedOutcome::Applied { .. } => "applied",
            FeedOutcome::Reset => "reset",
            FeedOutcome::Failed => "failed",
        };
        self.metrics.increment(Counter::FeedPoll(result));
        if outcome == FeedOutcome::Failed {
            log::warn!("portero: revocation feed not read; cached sessions expire after the staleness bound");
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, body_size: usize, _t: usize) {
        let reply = read_call_reply(body_size);
        let Some(cache) = &self.cache else {
            return;
        };
        let outcome = cache
            .borrow_mut()
            .on_feed_reply(reply.status, &reply.body, Envoy::micros());
        self.count_feed(outcome);
        if let FeedOutcome::Applied { more: true, .. } = outcome {
            self.poll_feed();
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Config::from_json(&bytes) {
            Ok(config) => {
                let cache = EdgeCache::new(&config.cache);
                // The tick (at most a second) flushes counts and polls the feed
                // when it is due.
                let tick = if cache.sessions_enabled() {
                    config.cache.feed_poll_interval_ms.min(1000)
                } else {
                    1000
                };
                self.set_tick_period(Duration::from_millis(tick));
                self.cache = Some(Rc::new(RefCell::new(cache)));
                self.config = Some(Rc::new(config));
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
        let interval_us = self
            .config
            .as_ref()
            .map_or(1000, |c| c.cache.feed_poll_interval_ms)
            .saturating_mul(1000);
        // Ticks are a second at most apart; the feed may be polled less often.
        if now.saturating_sub(self.last_feed_poll_us) + 50_000 >= interval_us {
            self.last_feed_poll_us = now;
            self.poll_feed();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        let cache = self.cache.clone()?;
        Some(Box::new(Request {
            flow: Flow::new(config, cache),
            envoy: Envoy {
                metrics: self.metrics.clone(),
                request_headers: Vec::new(),
                response_headers: Vec::new(),
                request_headers_changed: false,
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
        Verdict::Continue => Action::Continue,
        Verdict::Pause => Action::Pause,
    }
}

impl Context for Request {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, body_size: usize, _t: usize) {
        let reply = read_call_reply(body_size);
        self.envoy.now_us = Envoy::micros();
        let verdict = self.flow.on_sidecar_reply(&mut self.envoy, reply);
        self.envoy.flush_request_headers();
        if verdict == Verdict::Continue {
            let _ = hostcalls::resume_http_request();
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        self.envoy.request_headers =
            hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default();
        self.envoy.now_us = Envoy::micros();
        let verdict = self.flow.on_request_headers(&mut self.envoy);
        self.envoy.flush_request_headers();
        action(verdict)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        self.envoy.response_headers =
            hostcalls::get_map(MapType::HttpResponseHeaders).unwrap_or_default();
        self.flow.on_response_headers(&mut self.envoy);
        Action::Continue
    }
}

/// The answer to a `dispatch_http_call`, as the flow reads it.
fn read_call_reply(body_size: usize) -> SidecarReply {
    let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|s| s.parse::<u16>().ok());
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

fn dispatch(call: &SidecarCall) -> Result<(), String> {
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
    .map(|_| ())
    .map_err(|status| format!("dispatch failed: {status:?}"))
}

/// A header of a snapshot (names from Envoy are lowercase).
fn header_in(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// [`Host`] over proxy-wasm host calls. Host-call failures are treated as
/// "absent": the flow then takes its failing branch.
struct Envoy {
    metrics: Rc<Metrics>,
    /// The headers as they arrived, read in one host call per direction
    /// (a host call per header read was most of the filter's cost) and
    /// kept in step with every change the flow makes.
    request_headers: Vec<(String, String)>,
    response_headers: Vec<(String, String)>,
    /// The request headers were changed in the snapshot: write them back
    /// in one host call at the end of the callback (one call instead of one
    /// per header: host calls dominate the filter's cost in Envoy).
    request_headers_changed: bool,
    /// A local response went out: the request is done.
    responded: bool,
    /// The clock, read once per callback rather than once per question.
    now_us: u64,
    /// The downstream address, read on first use.
    client_address: Option<Option<String>>,
}

impl Envoy {
    fn flush_request_headers(&mut self) {
        if self.request_headers_changed && !self.responded {
            let pairs: Vec<(&str, &str)> = self
                .request_headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let _ = hostcalls::set_map(MapType::HttpRequestHeaders, pairs);
        }
        self.request_headers_changed = false;
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

    fn request_header(&self, name: &str) -> Option<String> {
        header_in(&self.request_headers, name)
    }

    fn set_request_header(&mut self, name: &str, value: &str) {
        self.request_headers.retain(|(k, _)| k != name);
        self.request_headers
            .push((name.to_string(), value.to_string()));
        self.request_headers_changed = true;
    }

    fn remove_request_header(&mut self, name: &str) {
        if self.request_headers.iter().any(|(k, _)| k == name) {
            self.request_headers.retain(|(k, _)| k != name);
            self.request_headers_changed = true;
        }
    }

    fn response_header(&self, name: &str) -> Option<String> {
        header_in(&self.response_headers, name)
    }

    fn add_response_header(&mut self, name: &str, value: &str) {
        let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value);
        self.response_headers
            .push((name.to_string(), value.to_string()));
    }

    fn remove_response_header(&mut self, name: &str) {
        if self.response_headers.iter().any(|(k, _)| k == name) {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, None);
            self.response_headers.retain(|(k, _)| k != name);
        }
    }

    fn dispatch_sidecar_call(&mut self, call: SidecarCall) -> Result<(), String> {
        dispatch(&call)
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
