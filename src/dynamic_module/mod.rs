//! portero as an Envoy dynamic module (experimental): a second thin shell
//! over the same core and the same [`Host`] trait as the wasm filter,
//! compiled natively (`cargo build --release -p portero --features
//! dynamic-module` → `target/release/libportero.so`) and loaded by Envoy's
//! `DynamicModuleFilter`. It moves bytes between Envoy's C ABI
//! ([`abi`], hand-written, pinned to Envoy 1.40) and the flow.
//!
//! The background duties (revocation feed, JWKS fetch; see
//! [`crate::background`]) have no timer here (the ABI gives an HTTP filter
//! none): each worker makes them from a request, which waits for them (one
//! request per worker per poll interval pays a sidecar round trip), so its
//! cached views and keys stay as fresh as the wasm filter's.
//!
//! Metrics are Envoy's own labelled counters, defined once per filter
//! config. There is no sandbox: a memory-safety bug here takes Envoy down,
//! which is why every hook catches panics and fails closed.

mod abi;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use abi::{
    bytes, ConfigEnvoyPtr, ConfigModulePtr, EnvoyBuffer, EnvoyHeader, FilterEnvoyPtr,
    FilterModulePtr, ModuleBuffer, ModuleHeader,
};

use crate::background::{Background, Duty};
use crate::cache::EdgeCache;
use crate::config::Config;
use crate::edited_headers::{lines_named, EditedHeaders};
use crate::flow::{DispatchError, Flow, Host, LocalResponse, SidecarCall, SidecarReply, Verdict};
use crate::live_configs::LiveConfigs;
use crate::metrics::{Counter, PendingCounts, FAMILIES, SIDECAR_LATENCY_US};

/// One filter config, shared by every worker: the validated JSON (each
/// worker builds its own `Config` and caches from it, as each wasm VM does)
/// and the ids of the metrics Envoy defined for it.
struct ModuleConfig {
    id: u64,
    json: Vec<u8>,
    metrics: MetricIds,
}

/// Envoy's ids for this config's metrics: a labelled counter per family
/// (in [`FAMILIES`] order) and the sidecar latency histogram. `None`: Envoy
/// refused to define it, and it is not counted.
#[derive(Clone, Copy, Default)]
struct MetricIds {
    counters: [Option<usize>; FAMILIES.len()],
    sidecar_latency: Option<usize>,
}

impl MetricIds {
    /// Defines every metric; only possible while Envoy builds the config.
    ///
    /// # Safety
    /// `config` is the config pointer of the running `config_new` hook.
    unsafe fn define(config: ConfigEnvoyPtr) -> MetricIds {
        let mut ids = MetricIds::default();
        for (slot, family) in ids.counters.iter_mut().zip(FAMILIES.iter()) {
            let name = format!("portero.{}", family.name);
            let labels: Vec<ModuleBuffer> = family
                .labels
                .iter()
                .map(|l| ModuleBuffer::of(l.as_bytes()))
                .collect();
            let mut id = 0usize;
            let result = abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                config,
                ModuleBuffer::of(name.as_bytes()),
                labels.as_ptr(),
                labels.len(),
                &mut id,
            );
            *slot = (result == abi::METRICS_SUCCESS).then_some(id);
            if slot.is_none() {
                log::warn!("counter {name} not defined by Envoy (result {result}); not counted");
            }
        }
        let mut id = 0usize;
        let result = abi::envoy_dynamic_module_callback_http_filter_config_define_histogram(
            config,
            ModuleBuffer::of(SIDECAR_LATENCY_US.as_bytes()),
            std::ptr::null(),
            0,
            &mut id,
        );
        ids.sidecar_latency = (result == abi::METRICS_SUCCESS).then_some(id);
        ids
    }
}

static NEXT_CONFIG_ID: AtomicU64 = AtomicU64::new(1);

/// The configs Envoy still holds; workers drop the state of the others.
static LIVE_CONFIGS: LiveConfigs = LiveConfigs::new();

/// A worker's own parse of a filter config, its caches and its background
/// duties.
#[derive(Clone)]
struct WorkerState {
    config: Rc<Config>,
    cache: Rc<RefCell<EdgeCache>>,
    background: Rc<RefCell<Background>>,
    /// Counts not yet handed to Envoy, and when they last were.
    pending: Rc<RefCell<PendingCounts>>,
    last_hand_over_us: Rc<Cell<u64>>,
    /// This config's streams on this worker. The last one to complete
    /// hands the counts over, so a worker that goes idle leaves none
    /// pending (the module has no timer to do it later).
    active_streams: Rc<Cell<usize>>,
}

/// How often counts are handed to Envoy while requests keep coming (Envoy
/// resolves a labelled counter on every increment: about 1 µs each, three
/// or more per request, measured with `BENCH_DM_B`).
const HAND_OVER_INTERVAL_US: u64 = 1_000_000;

thread_local! {
    /// This worker's state, per filter config.
    static WORKER: RefCell<HashMap<u64, WorkerState>> = RefCell::new(HashMap::new());
    /// The [`LIVE_CONFIGS`] generation this worker last pruned at.
    static SEEN_GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// [`Host`] over the dynamic-module ABI. The request headers are read once
/// per hook; changes are written back at its end, one call per header.
struct DmHost {
    envoy: FilterEnvoyPtr,
    request_headers: EditedHeaders,
    response_headers: Vec<(Vec<u8>, Vec<u8>)>,
    responded: bool,
    now_us: u64,
    client_address: Option<Option<String>>,
    metrics: MetricIds,
    pending: Option<Rc<RefCell<PendingCounts>>>,
}

struct EnvoyLogger;

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        // SAFETY: a plain query, callable from any thread.
        unsafe { abi::envoy_dynamic_module_callback_log_enabled(level_of(metadata.level())) }
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = format!("portero: {}", record.args());
        // SAFETY: the message outlives the call; Envoy copies it.
        unsafe {
            abi::envoy_dynamic_module_callback_log(
                level_of(record.level()),
                ModuleBuffer::of(message.as_bytes()),
            );
        }
    }

    fn flush(&self) {}
}

fn level_of(level: log::Level) -> u32 {
    match level {
        log::Level::Error => abi::LOG_ERROR,
        log::Level::Warn => abi::LOG_WARN,
        log::Level::Info => abi::LOG_INFO,
        log::Level::Debug | log::Level::Trace => abi::LOG_DEBUG,
    }
}

static LOGGER: EnvoyLogger = EnvoyLogger;

fn micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Runs a hook; a panic (none is reachable from request data) becomes
/// `fallback` instead of unwinding into Envoy.
fn guarded<T>(fallback: T, hook: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(hook)).unwrap_or(fallback)
}

fn read_headers(envoy: FilterEnvoyPtr, header_type: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
    // SAFETY: the count and the array Envoy fills, during this hook.
    unsafe {
        let count = abi::envoy_dynamic_module_callback_http_get_headers_size(envoy, header_type);
        if count == 0 {
            return Vec::new();
        }
        let empty = EnvoyHeader {
            key_ptr: std::ptr::null(),
            key_length: 0,
            value_ptr: std::ptr::null(),
            value_length: 0,
        };
        let mut raw = vec![empty; count];
        if !abi::envoy_dynamic_module_callback_http_get_headers(
            envoy,
            header_type,
            raw.as_mut_ptr(),
        ) {
            return Vec::new();
        }
        raw.iter()
            .map(|h| {
                (
                    bytes(h.key_ptr, h.key_length).to_vec(),
                    bytes(h.value_ptr, h.value_length).to_vec(),
                )
            })
            .collect()
    }
}

impl DmHost {
    fn attribute(&self, id: u32) -> Option<String> {
        let mut out = EnvoyBuffer {
            ptr: std::ptr::null(),
            length: 0,
        };
        // SAFETY: Envoy fills `out` with bytes it owns, valid during this hook.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.envoy, id, &mut out,
            )
        };
        if !found {
            return None;
        }
        // SAFETY: as above.
        let value = unsafe { bytes(out.ptr, out.length) };
        String::from_utf8(value.to_vec()).ok()
    }

    fn set(&self, header_type: u32, name: &str, value: &[u8]) {
        // SAFETY: module-owned slices, copied by Envoy during the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.envoy,
                header_type,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value),
            );
        }
    }

    /// Starts an HTTP call to a cluster; its id names the answer.
    fn callout(&self, call: &SidecarCall) -> Result<u64, DispatchError> {
        let headers: Vec<ModuleHeader> = call
            .headers
            .iter()
            .map(|(k, v)| ModuleHeader::of(k.as_bytes(), v.as_bytes()))
            .collect();
        let mut id: u64 = 0;
        // SAFETY: module-owned slices, copied by Envoy during the call.
        let started = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_http_callout(
                self.envoy,
                &mut id,
                ModuleBuffer::of(call.cluster.as_bytes()),
                headers.as_ptr(),
                headers.len(),
                ModuleBuffer::of(&call.body),
                call.timeout_ms,
            )
        };
        if started == abi::CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(DispatchError(format!("callout not started ({started})")))
        }
    }

    /// The flow's request-header changes, written back: `set_header`
    /// replaces every line of a name, and an empty value removes it.
    fn flush(&mut self) {
        let changes = self.request_headers.take_changes();
        if self.responded {
            return;
        }
        for (name, value) in changes {
            self.set(
                abi::REQUEST_HEADER,
                &name,
                value.as_deref().unwrap_or_default(),
            );
        }
    }
}

impl Host for DmHost {
    fn now(&self) -> u64 {
        self.now_us / 1_000_000
    }

    fn now_micros(&self) -> u64 {
        self.now_us
    }

    fn route_name(&self) -> Option<String> {
        self.attribute(abi::ATTRIBUTE_XDS_ROUTE_NAME)
            .filter(|name| !name.is_empty())
    }

    fn client_address(&mut self) -> Option<String> {
        if self.client_address.is_none() {
            self.client_address = Some(self.attribute(abi::ATTRIBUTE_SOURCE_ADDRESS));
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
        if name == ":status" {
            self.set(abi::RESPONSE_HEADER, name, value.as_bytes());
        } else {
            // SAFETY: module-owned slices, copied by Envoy during the call.
            unsafe {
                abi::envoy_dynamic_module_callback_http_add_header(
                    self.envoy,
                    abi::RESPONSE_HEADER,
                    ModuleBuffer::of(name.as_bytes()),
                    ModuleBuffer::of(value.as_bytes()),
                );
            }
        }
        self.response_headers
            .push((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
    }

    fn remove_response_header(&mut self, name: &str) {
        if name == ":status" {
            return;
        }
        if self
            .response_headers
            .iter()
            .any(|(k, _)| k == name.as_bytes())
        {
            self.set(abi::RESPONSE_HEADER, name, b"");
            self.response_headers.retain(|(k, _)| k != name.as_bytes());
        }
    }

    fn dispatch_sidecar_call(&mut self, call: SidecarCall) -> Result<(), DispatchError> {
        self.callout(&call).map(|_| ())
    }

    fn send_local_response(&mut self, response: LocalResponse) {
        self.responded = true;
        let headers: Vec<ModuleHeader> = response
            .headers
            .iter()
            .map(|(k, v)| ModuleHeader::of(k.as_bytes(), v.as_bytes()))
            .collect();
        // SAFETY: module-owned slices, copied by Envoy during the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.envoy,
                response.status,
                headers.as_ptr(),
                headers.len(),
                ModuleBuffer::of(&response.body),
                ModuleBuffer::of(b"portero"),
            );
        }
    }

    fn increment(&mut self, counter: Counter) {
        if let Some(pending) = &self.pending {
            pending.borrow_mut().add(counter);
        }
    }

    fn record_sidecar_latency_us(&mut self, micros: u64) {
        if let Some(id) = self.metrics.sidecar_latency {
            // SAFETY: no labels; a plain value.
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_record_histogram_value(
                    self.envoy,
                    id,
                    std::ptr::null(),
                    0,
                    micros,
                );
            }
        }
    }
}

impl DmHost {
    /// Hands every pending count to Envoy: one call per series.
    fn hand_over_counts(&self) {
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
        let values = counter
            .label_values()
            .map(|v| ModuleBuffer::of(v.as_bytes()));
        // SAFETY: module-owned slices, read by Envoy during the call; as many
        // values as the family has label names (at most two).
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                self.envoy,
                *id,
                values.as_ptr(),
                family.labels.len().min(values.len()),
                count,
            );
        }
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

// ── the hooks Envoy calls ───────────────────────────────────────────────

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    let _ = log::set_logger(&LOGGER).map(|()| log::set_max_level(log::LevelFilter::Info));
    abi::ABI_VERSION.as_ptr()
}

/// # Safety
/// Envoy passes buffers valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: ConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConfigModulePtr {
    guarded(std::ptr::null(), || {
        let json = bytes(config.ptr, config.length).to_vec();
        match Config::from_json(&json) {
            Ok(_) => {
                let id = NEXT_CONFIG_ID.fetch_add(1, Ordering::Relaxed);
                let metrics = MetricIds::define(config_envoy);
                LIVE_CONFIGS.created(id);
                Box::into_raw(Box::new(ModuleConfig { id, json, metrics })) as ConfigModulePtr
            }
            Err(e) => {
                log::error!("invalid plugin config: {e}");
                std::ptr::null()
            }
        }
    })
}

/// # Safety
/// `config` is a pointer `config_new` returned, destroyed once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config: ConfigModulePtr,
) {
    if !config.is_null() {
        let config = Box::from_raw(config as *mut ModuleConfig);
        LIVE_CONFIGS.destroyed(config.id);
    }
}

/// # Safety
/// `config` is a live pointer `config_new` returned.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ConfigModulePtr,
    envoy: FilterEnvoyPtr,
) -> FilterModulePtr {
    let module_config = &*(config as *const ModuleConfig);
    let worker = guarded(None, || {
        WORKER.with(|worker| {
            let mut worker = worker.borrow_mut();
            let mut seen = SEEN_GENERATION.with(Cell::get);
            LIVE_CONFIGS.prune(&mut seen, &mut worker);
            SEEN_GENERATION.with(|s| s.set(seen));
            if let Some(found) = worker.get(&module_config.id) {
                return Some(found.clone());
            }
            let config = Rc::new(Config::from_json(&module_config.json).ok()?);
            let cache = Rc::new(RefCell::new(EdgeCache::new(&config.cache)));
            let background = Background::new(config.clone(), cache.clone());
            let state = WorkerState {
                background: Rc::new(RefCell::new(background)),
                cache,
                config,
                pending: Rc::new(RefCell::new(PendingCounts::default())),
                last_hand_over_us: Rc::new(Cell::new(0)),
                active_streams: Rc::new(Cell::new(0)),
            };
            worker.insert(module_config.id, state.clone());
            Some(state)
        })
    });
    let host = DmHost {
        envoy,
        request_headers: EditedHeaders::default(),
        response_headers: Vec::new(),
        responded: false,
        now_us: 0,
        client_address: None,
        metrics: module_config.metrics,
        pending: worker.as_ref().map(|w| w.pending.clone()),
    };
    if let Some(w) = &worker {
        w.active_streams
            .set(w.active_streams.get().saturating_add(1));
    }
    let flow = worker
        .as_ref()
        .map(|w| Flow::new(w.config.clone(), w.cache.clone()));
    Box::into_raw(Box::new(FilterState {
        flow,
        host,
        worker,
        background_calls: Vec::new(),
    })) as FilterModulePtr
}

/// One request: its flow (none when this worker could not build the
/// config: every request is then a 503), what it sees of Envoy, and the
/// background calls it waits for, if any.
struct FilterState {
    flow: Option<Flow>,
    host: DmHost,
    worker: Option<WorkerState>,
    background_calls: Vec<(u64, Duty)>,
}

impl FilterState {
    /// Starts this worker's background calls when some are due; the
    /// request then waits for them (a call started by a request that ended
    /// first would be cancelled with it). Whether it waits.
    fn start_background_calls(&mut self) -> bool {
        let Some(worker) = &self.worker else {
            return false;
        };
        let due = worker.background.borrow_mut().due_calls(self.host.now_us);
        self.make_calls(due);
        !self.background_calls.is_empty()
    }

    /// Starts background calls; one that cannot start is a failed one.
    fn make_calls(&mut self, mut calls: Vec<(Duty, SidecarCall)>) {
        while let Some((duty, call)) = calls.pop() {
            match self.host.callout(&call) {
                Ok(id) => self.background_calls.push((id, duty)),
                Err(_) => calls.extend(self.on_background_reply(duty, None, &[])),
            }
        }
    }

    fn on_background_reply(
        &mut self,
        duty: Duty,
        status: Option<u16>,
        body: &[u8],
    ) -> Option<(Duty, SidecarCall)> {
        let worker = self.worker.as_ref()?;
        let host = &mut self.host;
        let now = host.now_us;
        worker
            .background
            .borrow_mut()
            .on_reply(duty, status, body, now, &mut |counter| {
                host.increment(counter)
            })
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
}

/// # Safety
/// `filter` is a live pointer `filter_new` returned.
unsafe fn state<'a>(filter: FilterModulePtr) -> &'a mut FilterState {
    &mut *(filter as *mut FilterState)
}

fn unavailable(host: &mut DmHost) {
    host.send_local_response(LocalResponse {
        status: 503,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: br#"{"error":"unavailable","reason":"filter_not_configured"}"#.to_vec(),
    });
}

/// # Safety
/// Envoy's pointers for this stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    let filter = state(filter);
    filter.host.envoy = envoy;
    let verdict = guarded(None, || {
        filter.host.request_headers = EditedHeaders::new(read_headers(envoy, abi::REQUEST_HEADER));
        filter.host.now_us = micros();
        if filter.start_background_calls() {
            return Some(Verdict::Wait);
        }
        filter.run_request()
    });
    match verdict {
        Some(verdict) => headers_status(verdict),
        None => {
            unavailable(&mut filter.host);
            abi::HEADERS_STOP_ITERATION
        }
    }
}

/// # Safety
/// Envoy's pointers and the reply it owns, valid during the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    let filter = state(filter);
    filter.host.envoy = envoy;
    let mut reply = SidecarReply {
        status: None,
        body: Vec::new(),
    };
    if result == abi::CALLOUT_RESULT_SUCCESS {
        let headers: &[EnvoyHeader] = if headers.is_null() {
            &[]
        } else {
            std::slice::from_raw_parts(headers, headers_size)
        };
        reply.status = headers
            .iter()
            .find(|h| bytes(h.key_ptr, h.key_length) == b":status")
            .and_then(|h| std::str::from_utf8(bytes(h.value_ptr, h.value_length)).ok())
            .and_then(|s| s.parse().ok());
        let chunks: &[EnvoyBuffer] = if body_chunks.is_null() {
            &[]
        } else {
            std::slice::from_raw_parts(body_chunks, body_chunks_size)
        };
        for chunk in chunks {
            reply.body.extend_from_slice(bytes(chunk.ptr, chunk.length));
        }
    }
    let verdict = guarded(None, || {
        filter.host.now_us = micros();
        let background = filter
            .background_calls
            .iter()
            .position(|(id, _)| *id == callout_id);
        if let Some(index) = background {
            // A background call this request waits for; once none is left,
            // the request itself.
            let (_, duty) = filter.background_calls.swap_remove(index);
            let follow_up = filter.on_background_reply(duty, reply.status, &reply.body);
            filter.make_calls(follow_up.into_iter().collect());
            if !filter.background_calls.is_empty() {
                return Some(Verdict::Wait);
            }
            return filter.run_request();
        }
        let verdict = filter
            .flow
            .as_mut()
            .map(|flow| flow.on_sidecar_reply(&mut filter.host, reply));
        filter.host.flush();
        verdict
    });
    match verdict {
        Some(Verdict::Forward) => {
            abi::envoy_dynamic_module_callback_http_filter_continue_decoding(envoy)
        }
        Some(_) => {}
        None => unavailable(&mut filter.host),
    }
}

/// # Safety
/// Envoy's pointers for this stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    let filter = state(filter);
    filter.host.envoy = envoy;
    guarded((), || {
        filter.host.response_headers = read_headers(envoy, abi::RESPONSE_HEADER);
        if let Some(flow) = filter.flow.as_mut() {
            flow.on_response_headers(&mut filter.host);
        }
    });
    abi::HEADERS_CONTINUE
}

/// # Safety
/// `filter` is a pointer `filter_new` returned, destroyed once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: FilterModulePtr) {
    if !filter.is_null() {
        let filter = Box::from_raw(filter as *mut FilterState);
        if let Some(w) = &filter.worker {
            w.active_streams
                .set(w.active_streams.get().saturating_sub(1));
        }
    }
}

/// The stream is done: counts are handed to Envoy when this was the
/// worker's last stream of this config, or when the last hand-over is a second old.
///
/// # Safety
/// Envoy's pointers for this stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
) {
    let filter = state(filter);
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

// Hooks Envoy requires but this filter has nothing to do in.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    abi::BODY_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
) -> u32 {
    abi::TRAILERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    abi::BODY_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
) -> u32 {
    abi::TRAILERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream_id: u64,
    _headers: *const EnvoyHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream_id: u64,
    _trailers: *const EnvoyHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
) {
}
