//! What outlives a request: a filter config as Envoy holds it (shared by
//! every worker) and each worker's own state per config — its parse of the
//! config, its caches, its background duties and its pending counts —
//! dropped once Envoy destroys the config.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use portero_core::background::Background;
use portero_core::cache::EdgeCache;
use portero_core::config::Config;
use portero_core::metrics::PendingCounts;

use crate::host::MetricIds;
use crate::live_configs::LiveConfigs;

/// One filter config, shared by every worker: the validated JSON (each
/// worker builds its own `Config` and caches from it, as each wasm VM does)
/// and the ids of the metrics Envoy defined for it.
pub struct ModuleConfig {
    pub id: u64,
    pub json: Vec<u8>,
    pub metrics: MetricIds,
}

static NEXT_CONFIG_ID: AtomicU64 = AtomicU64::new(1);

/// The configs Envoy still holds; workers drop the state of the others.
static LIVE_CONFIGS: LiveConfigs = LiveConfigs::new();

impl ModuleConfig {
    /// A config Envoy now holds.
    pub fn created(json: Vec<u8>, metrics: MetricIds) -> ModuleConfig {
        let id = NEXT_CONFIG_ID.fetch_add(1, Ordering::Relaxed);
        LIVE_CONFIGS.created(id);
        ModuleConfig { id, json, metrics }
    }

    /// Envoy let go of it; workers drop their state of it at their next
    /// request.
    pub fn destroyed(self) {
        LIVE_CONFIGS.destroyed(self.id);
    }
}

/// A worker's own parse of a filter config, its caches and its background
/// duties.
#[derive(Clone)]
pub struct WorkerState {
    pub config: Rc<Config>,
    pub cache: Rc<RefCell<EdgeCache>>,
    pub background: Rc<RefCell<Background>>,
    /// Counts not yet handed to Envoy, and when they last were.
    pub pending: Rc<RefCell<PendingCounts>>,
    pub last_hand_over_us: Rc<Cell<u64>>,
    /// This config's streams on this worker. The last one to complete
    /// hands the counts over, so a worker that goes idle leaves none
    /// pending (the module has no timer to do it later).
    pub active_streams: Rc<Cell<usize>>,
}

thread_local! {
    /// This worker's state, per filter config.
    static WORKER: RefCell<HashMap<u64, WorkerState>> = RefCell::new(HashMap::new());
    /// The [`LIVE_CONFIGS`] generation this worker last pruned at.
    static SEEN_GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// This worker's state for `config`, made on its first request (none when
/// the config does not parse here: every request is then a 503). The state
/// of configs Envoy destroyed since the last call is dropped first.
pub fn worker_state(config: &ModuleConfig) -> Option<WorkerState> {
    WORKER.with(|worker| {
        let mut worker = worker.borrow_mut();
        let mut seen = SEEN_GENERATION.with(Cell::get);
        LIVE_CONFIGS.prune(&mut seen, &mut worker);
        SEEN_GENERATION.with(|s| s.set(seen));
        if let Some(found) = worker.get(&config.id) {
            return Some(found.clone());
        }
        let state = WorkerState::new(&config.json)?;
        worker.insert(config.id, state.clone());
        Some(state)
    })
}

impl WorkerState {
    fn new(json: &[u8]) -> Option<WorkerState> {
        let config = Rc::new(Config::from_json(json).ok()?);
        let cache = Rc::new(RefCell::new(EdgeCache::new(&config.cache)));
        let background = Background::new(config.clone(), cache.clone());
        Some(WorkerState {
            background: Rc::new(RefCell::new(background)),
            cache,
            config,
            pending: Rc::new(RefCell::new(PendingCounts::default())),
            last_hand_over_us: Rc::new(Cell::new(0)),
            active_streams: Rc::new(Cell::new(0)),
        })
    }
}
