//! What the module does in each hook Envoy calls, in plain Rust: the
//! exported functions (`exports.rs`) turn Envoy's pointers into the values
//! these take. Every hook catches panics and fails closed.
//!
//! Envoy re-enters the module: `send_response` runs `stream_complete` of
//! the same stream before it returns (Envoy 1.40), and an HTTP client may
//! answer a callout before `http_callout` returns. So no hook calls into
//! Envoy in a way that can run a hook while it holds the stream's state:
//! the state is a `RefCell`, borrowed for the hook's work only; a local
//! reply or `continue_decoding` is issued after the borrow ends, as the
//! hook's last step; and a hook that finds the state borrowed (re-entered)
//! leaves a callout's answer for the hook that holds it, and does nothing
//! else. With `PORTERO_MODULE_ABORT_ON_REENTRY=1` in Envoy's environment
//! (the integration suite sets it) such a re-entry aborts Envoy instead: a
//! detector, proving the suite's every hook order is one where no hook is
//! entered while another holds the state.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use portero_core::background::InFlight;
use portero_core::config::Config;
use portero_core::edited_headers::EditedHeaders;
use portero_core::flow::{Flow, LocalResponse, SidecarReply, Verdict};

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

/// Set from `PORTERO_MODULE_ABORT_ON_REENTRY=1` at load: a re-entered hook
/// aborts (the detector; see the module's documentation).
static ABORT_ON_REENTRY: AtomicBool = AtomicBool::new(false);

/// One stream as Envoy holds it (a pointer to this): the module's state,
/// what hooks re-entered while it was held left for its holder, and how
/// many hooks of the stream are running (Envoy may destroy the stream from
/// inside one of them; it is freed when the last one returns).
pub struct Stream {
    state: RefCell<FilterState>,
    /// Callout answers that arrived while another hook held the state.
    left_answers: RefCell<Vec<(u64, SidecarReply)>>,
    running_hooks: Cell<u32>,
    destroyed: Cell<bool>,
}

impl Stream {
    /// A hook of this stream starts.
    pub fn enter(&self) {
        self.running_hooks
            .set(self.running_hooks.get().saturating_add(1));
    }

    /// A hook of this stream ends; whether the stream is now to be freed
    /// (Envoy destroyed it and no hook of it runs).
    pub fn leave(&self) -> bool {
        let running = self.running_hooks.get().saturating_sub(1);
        self.running_hooks.set(running);
        running == 0 && self.destroyed.get()
    }

    /// Envoy destroys the stream; whether it can be freed now (no hook of it
    /// runs: otherwise the last one to return frees it).
    pub fn destroy(&self) -> bool {
        self.destroyed.set(true);
        self.running_hooks.get() == 0
    }

    /// Runs `work` on the state; `None` when a hook of this stream already
    /// holds it (re-entered: the detector aborts here).
    fn with_state<T>(&self, hook: &str, work: impl FnOnce(&mut FilterState) -> T) -> Option<T> {
        let Ok(mut state) = self.state.try_borrow_mut() else {
            if ABORT_ON_REENTRY.load(Ordering::Relaxed) {
                log::error!("re-entered: {hook} while another hook of the stream holds its state");
                std::process::abort();
            }
            return None;
        };
        Some(work(&mut state))
    }

    /// The hook's last step, after the state is let go: the queued local
    /// reply, else `continue_decoding` when the flow let the request go on.
    /// Nothing touches the stream after it (Envoy may have destroyed it).
    fn finish(&self, envoy: Filter, outcome: Outcome) {
        match outcome {
            Outcome::Reply(reply) => envoy.send_response(reply.status, &reply.headers, &reply.body),
            Outcome::Continue => envoy.continue_decoding(),
            Outcome::Nothing => {}
        }
    }
}

/// What a hook leaves to do once the state is let go.
enum Outcome {
    Reply(LocalResponse),
    Continue,
    Nothing,
}

/// One request: its flow (none when this worker could not build the
/// config: every request is then a 503), what it sees of Envoy, and the
/// background calls it waits for, if any.
struct FilterState {
    flow: Option<Flow>,
    host: DmHost,
    worker: Option<WorkerState>,
    background_calls: InFlight<u64>,
    /// Counted in the worker's active streams (until it completes).
    counted_active: bool,
}

impl Drop for FilterState {
    fn drop(&mut self) {
        // A stream destroyed without completing still stops counting.
        self.leave_active();
    }
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

    fn leave_active(&mut self) {
        if !std::mem::take(&mut self.counted_active) {
            return;
        }
        if let Some(w) = &self.worker {
            w.active_streams
                .set(w.active_streams.get().saturating_sub(1));
        }
    }

    /// A callout's answer: one of this request's background calls (once
    /// none is left, the request itself runs), or the flow's own look-up.
    /// An answer to neither (a call this stream no longer waits for) is
    /// dropped.
    fn on_answer(&mut self, id: u64, reply: SidecarReply) -> Option<Verdict> {
        self.host.now_us = micros();
        if self.answer_background_call(id, &reply) {
            if !self.background_calls.is_empty() {
                return Some(Verdict::Wait);
            }
            return self.run_request();
        }
        if self.host.flow_call != Some(id) {
            log::debug!("an answer to callout {id}, which this stream does not wait for");
            return Some(Verdict::Wait);
        }
        self.host.flow_call = None;
        self.run_reply(reply)
    }

    /// The queued local reply, if any.
    fn reply_to_send(&mut self) -> Outcome {
        match self.host.reply.take() {
            Some(reply) => Outcome::Reply(reply),
            None => Outcome::Nothing,
        }
    }

    /// What a callout's answer leaves to do: the reply, or let the request
    /// go on, or wait; a 503 when the flow could not run.
    fn outcome_of(&mut self, verdict: Option<Verdict>) -> Outcome {
        match verdict {
            Some(Verdict::Forward) => match self.reply_to_send() {
                Outcome::Nothing => Outcome::Continue,
                reply => reply,
            },
            Some(_) => self.reply_to_send(),
            None => {
                self.host.unavailable();
                self.reply_to_send()
            }
        }
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
    // A panic's message can carry request bytes: none reaches Envoy's log.
    std::panic::set_hook(Box::new(|_| {
        log::error!("internal error (panic); details withheld, the request fails closed");
    }));
    let detector = std::env::var("PORTERO_MODULE_ABORT_ON_REENTRY").is_ok_and(|v| v == "1");
    ABORT_ON_REENTRY.store(detector, Ordering::Relaxed);
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

pub fn filter_new(config: &ModuleConfig, envoy: Filter) -> Stream {
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
    Stream {
        state: RefCell::new(FilterState {
            flow,
            host,
            worker,
            background_calls: InFlight::default(),
            counted_active: true,
        }),
        left_answers: RefCell::new(Vec::new()),
        running_hooks: Cell::new(0),
        destroyed: Cell::new(false),
    }
}

pub fn request_headers(stream: &Stream, envoy: Filter) -> u32 {
    let Some((status, outcome)) = stream.with_state("request_headers", |filter| {
        filter.host.envoy = envoy;
        let verdict = guarded(None, || {
            filter.host.request_headers = EditedHeaders::new(envoy.headers(abi::REQUEST_HEADER));
            filter.host.now_us = micros();
            if filter.start_background_calls() {
                return Some(Verdict::Wait);
            }
            filter.run_request()
        });
        let verdict = answer_left_calls(stream, filter, verdict);
        let status = match verdict {
            Some(verdict) => headers_status(verdict),
            None => {
                filter.host.unavailable();
                abi::HEADERS_STOP_ITERATION
            }
        };
        // Going on is the status itself here, not a `continue_decoding`.
        (status, filter.reply_to_send())
    }) else {
        return abi::HEADERS_STOP_ITERATION;
    };
    stream.finish(envoy, outcome);
    status
}

pub fn callout_done(stream: &Stream, envoy: Filter, callout_id: u64, reply: SidecarReply) {
    let mut reply = Some(reply);
    let outcome = stream.with_state("callout_done", |filter| {
        filter.host.envoy = envoy;
        let reply = reply.take().unwrap_or(SidecarReply {
            status: None,
            body: Vec::new(),
        });
        let verdict = guarded(None, || filter.on_answer(callout_id, reply));
        let verdict = answer_left_calls(stream, filter, verdict);
        filter.outcome_of(verdict)
    });
    match (outcome, reply) {
        (Some(outcome), _) => stream.finish(envoy, outcome),
        // Answered while a hook of this stream holds the state (from inside
        // its `http_callout`): that hook takes the answer before it returns.
        (None, Some(reply)) => stream.left_answers.borrow_mut().push((callout_id, reply)),
        (None, None) => {}
    }
}

/// Callout answers left by hooks re-entered while `filter` was held, taken
/// in order; while the request waits, each answer's verdict replaces it.
fn answer_left_calls(
    stream: &Stream,
    filter: &mut FilterState,
    mut verdict: Option<Verdict>,
) -> Option<Verdict> {
    loop {
        let left = std::mem::take(&mut *stream.left_answers.borrow_mut());
        if left.is_empty() {
            return verdict;
        }
        for (id, reply) in left {
            let answered = guarded(None, || filter.on_answer(id, reply));
            if verdict == Some(Verdict::Wait) {
                verdict = answered;
            }
        }
    }
}

pub fn response_headers(stream: &Stream, envoy: Filter) -> u32 {
    let outcome = stream.with_state("response_headers", |filter| {
        filter.host.envoy = envoy;
        let done = guarded(false, || {
            filter.host.response_headers = envoy.headers(abi::RESPONSE_HEADER);
            if let Some(flow) = filter.flow.as_mut() {
                flow.on_response_headers(&mut filter.host);
            }
            true
        });
        // Fail closed: the upstream's response (its `Set-Cookie` among it)
        // is replaced by the 503, never passed on half-edited. (A response
        // that is this filter's own local reply goes on: `unavailable`
        // never sends a second one.)
        if !done {
            filter.host.unavailable();
        }
        filter.reply_to_send()
    });
    match outcome {
        Some(Outcome::Nothing) => abi::HEADERS_CONTINUE,
        Some(outcome) => {
            stream.finish(envoy, outcome);
            abi::HEADERS_STOP_ITERATION
        }
        None => abi::HEADERS_STOP_ITERATION,
    }
}

/// The stream is done: it no longer counts as active, and counts are
/// handed to Envoy when this was the worker's last stream of this config,
/// or when the last hand-over is a second old.
pub fn stream_complete(stream: &Stream, envoy: Filter) {
    stream.with_state("stream_complete", |filter| {
        filter.host.envoy = envoy;
        guarded((), || {
            let Some(worker) = filter.worker.clone() else {
                return;
            };
            let now = micros();
            let last_stream = worker.active_streams.get() <= 1;
            filter.leave_active();
            let due = now.saturating_sub(worker.last_hand_over_us.get()) >= HAND_OVER_INTERVAL_US;
            if (last_stream || due) && !worker.pending.borrow().is_empty() {
                worker.last_hand_over_us.set(now);
                filter.host.hand_over_counts();
            }
        });
    });
}
