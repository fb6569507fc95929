//! What the module does in each hook Envoy calls, in plain Rust: the
//! exported functions of [`crate::abi`] turn Envoy's pointers into the
//! values these take. Every hook catches panics and fails closed.

use std::panic::{catch_unwind, AssertUnwindSafe};

use portero_core::background::InFlight;
use portero_core::config::Config;
use portero_core::edited_headers::EditedHeaders;
use portero_core::flow::{Flow, SidecarReply, Verdict};

use crate::abi::{self, ConfigDefinition, Filter};
use crate::host::{micros, DmHost, MetricIds};
use crate::logger;
use crate::worker::{worker_state, ModuleConfig, WorkerState};

/// How often counts are handed to Envoy while requests keep coming (Envoy
/// resolves a labelled counter on every increment: about 1 µs each, three
/// or more per request, measured with `BENCH_DM_B`).
const HAND_OVER_INTERVAL_US: u64 = 1_000_000;

/// Runs a hook; a panic (none is reachable from request data) becomes
/// `fallback` instead of unwinding into Envoy.
fn guarded<T>(fallback: T, hook: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(hook)).unwrap_or(fallback)
}

/// One request: its flow (none when this worker could not build the
/// config: every request is then a 503), what it sees of Envoy, and the
/// background calls it waits for, if any.
pub struct FilterState {
    flow: Option<Flow>,
    host: DmHost,
    worker: Option<WorkerState>,
    background_calls: InFlight<u64>,
}

impl FilterState {
    /// Starts this worker's background calls when some are due; the
    /// request then waits for them (a call started by a request that ended
    /// first would be cancelled with it). Whether it waits.
    fn start_background_calls(&mut self) -> bool {
        let Some(worker) = &self.worker else {
            return false;
        };
        let mut background = worker.background.borrow_mut();
        let due = background.due_calls(self.host.now_us);
        self.background_calls
            .start(&mut background, due, self.host.now_us, &mut self.host);
        !self.background_calls.is_empty()
    }

    /// Takes the answer to one of this request's background calls; whether
    /// it was one.
    fn answer_background_call(&mut self, id: u64, reply: &SidecarReply) -> bool {
        let Some(worker) = &self.worker else {
            return false;
        };
        let mut background = worker.background.borrow_mut();
        let now = self.host.now_us;
        self.background_calls.answer(
            &mut background,
            &id,
            reply.status,
            &reply.body,
            now,
            &mut self.host,
        )
    }

    /// The request's own flow, from its headers.
    fn run_request(&mut self) -> Option<Verdict> {
        let verdict = self
            .flow
            .as_mut()
            .map(|flow| flow.on_request_headers(&mut self.host));
        self.host.flush();
        verdict
    }

    /// The request's own flow, on its look-up's answer.
    fn run_reply(&mut self, reply: SidecarReply) -> Option<Verdict> {
        let verdict = self
            .flow
            .as_mut()
            .map(|flow| flow.on_sidecar_reply(&mut self.host, reply));
        self.host.flush();
        verdict
    }
}

fn headers_status(verdict: Verdict) -> u32 {
    match verdict {
        Verdict::Forward => abi::HEADERS_CONTINUE,
        // Hold headers and body until the sidecar answers.
        Verdict::Wait => abi::HEADERS_STOP_ALL_AND_BUFFER,
        Verdict::Responded => abi::HEADERS_STOP_ITERATION,
    }
}

pub fn program_init() {
    logger::install();
}

/// A config Envoy builds: validated once here (Envoy refuses a config the
/// module returns none for), its metrics defined.
pub fn config_new(definition: &ConfigDefinition, json: &[u8]) -> Option<ModuleConfig> {
    guarded(None, || match Config::from_json(json) {
        Ok(_) => Some(ModuleConfig::created(
            json.to_vec(),
            MetricIds::define(definition),
        )),
        Err(e) => {
            log::error!("invalid plugin config: {e}");
            None
        }
    })
}

pub fn config_destroy(config: ModuleConfig) {
    config.destroyed();
}

pub fn filter_new(config: &ModuleConfig, envoy: Filter) -> FilterState {
    let worker = guarded(None, || worker_state(config));
    let host = DmHost::new(
        envoy,
        config.metrics,
        worker.as_ref().map(|w| w.pending.clone()),
    );
    if let Some(w) = &worker {
        w.active_streams
            .set(w.active_streams.get().saturating_add(1));
    }
    let flow = worker
        .as_ref()
        .map(|w| Flow::new(w.config.clone(), w.cache.clone()));
    FilterState {
        flow,
        host,
        worker,
        background_calls: InFlight::default(),
    }
}

pub fn request_headers(filter: &mut FilterState, envoy: Filter) -> u32 {
    filter.host.envoy = envoy;
    let verdict = guarded(None, || {
        filter.host.request_headers = EditedHeaders::new(envoy.headers(abi::REQUEST_HEADER));
        filter.host.now_us = micros();
        if filter.start_background_calls() {
            return Some(Verdict::Wait);
        }
        filter.run_request()
    });
    match verdict {
        Some(verdict) => headers_status(verdict),
        None => {
            filter.host.unavailable();
            abi::HEADERS_STOP_ITERATION
        }
    }
}

pub fn callout_done(filter: &mut FilterState, envoy: Filter, callout_id: u64, reply: SidecarReply) {
    filter.host.envoy = envoy;
    let verdict = guarded(None, || {
        filter.host.now_us = micros();
        if filter.answer_background_call(callout_id, &reply) {
            // A background call this request waits for; once none is left,
            // the request itself.
            if !filter.background_calls.is_empty() {
                return Some(Verdict::Wait);
            }
            return filter.run_request();
        }
        filter.run_reply(reply)
    });
    match verdict {
        Some(Verdict::Forward) => envoy.continue_decoding(),
        Some(_) => {}
        None => filter.host.unavailable(),
    }
}

pub fn response_headers(filter: &mut FilterState, envoy: Filter) -> u32 {
    filter.host.envoy = envoy;
    guarded((), || {
        filter.host.response_headers = envoy.headers(abi::RESPONSE_HEADER);
        if let Some(flow) = filter.flow.as_mut() {
            flow.on_response_headers(&mut filter.host);
        }
    });
    abi::HEADERS_CONTINUE
}

pub fn destroy(filter: FilterState) {
    if let Some(w) = &filter.worker {
        w.active_streams
            .set(w.active_streams.get().saturating_sub(1));
    }
}

/// The stream is done: counts are handed to Envoy when this was the
/// worker's last stream of this config, or when the last hand-over is a second old.
pub fn stream_complete(filter: &mut FilterState, envoy: Filter) {
    filter.host.envoy = envoy;
    guarded((), || {
        let Some(worker) = &filter.worker else {
            return;
        };
        let now = micros();
        let last_stream = worker.active_streams.get() <= 1;
        let due = now.saturating_sub(worker.last_hand_over_us.get()) >= HAND_OVER_INTERVAL_US;
        if (last_stream || due) && !worker.pending.borrow().is_empty() {
            worker.last_hand_over_us.set(now);
            filter.host.hand_over_counts();
        }
    });
}
