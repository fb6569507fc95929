//! Which filter configs Envoy still holds, for the dynamic module: each
//! worker keeps its own state (caches, background duties) per config id,
//! and a listener or ECDS update makes a new config and destroys the old
//! one on the main thread. Workers see the change through a generation
//! number (one atomic load per request) and drop the state of the configs
//! that are gone, so an update leaves no caches behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct LiveConfigs {
    ids: Mutex<Vec<u64>>,
    generation: AtomicU64,
}

impl LiveConfigs {
    pub const fn new() -> Self {
        Self {
            ids: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
        }
    }

    pub fn created(&self, id: u64) {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).push(id);
    }

    pub fn destroyed(&self, id: u64) {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|live| *live != id);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Drops a worker's state of destroyed configs, if any was destroyed
    /// since this worker last looked (`seen` is its generation).
    pub fn prune<T>(&self, seen: &mut u64, workers: &mut HashMap<u64, T>) {
        let generation = self.generation.load(Ordering::Acquire);
        if generation == *seen {
            return;
        }
        *seen = generation;
        let live = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        workers.retain(|id, _| live.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_drops_the_state_of_destroyed_configs_only() {
        let live = LiveConfigs::new();
        live.created(1);
        live.created(2);
        let mut seen = 0;
        let mut worker: HashMap<u64, &str> = HashMap::from([(1, "old"), (2, "other")]);
        live.prune(&mut seen, &mut worker);
        assert_eq!(worker.len(), 2, "nothing destroyed yet");
        // An update: config 3 replaces config 1.
        live.created(3);
        live.destroyed(1);
        worker.insert(3, "new");
        live.prune(&mut seen, &mut worker);
        let mut kept: Vec<u64> = worker.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![2, 3]);
        // Nothing new: the map is left alone (no lock taken).
        worker.insert(1, "stale, but not looked at");
        live.prune(&mut seen, &mut worker);
        assert_eq!(worker.len(), 3);
    }
}
