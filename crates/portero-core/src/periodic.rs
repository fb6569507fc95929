//! Something the root context does every so often, on its ticks (the feed
//! poll, the JWKS fetch): one rule for "is it due", tested natively.

/// Ticks jitter: a tick up to this much early still counts as on time
/// (else a poll every 500 ms on 500 ms ticks would slip to every second).
const EARLY_TICK_US: u64 = 50_000;

/// Due every `interval_us` (0: never), first on the first tick.
#[derive(Debug, Clone)]
pub struct Periodic {
    interval_us: u64,
    last_us: Option<u64>,
}

impl Periodic {
    pub fn every_us(interval_us: u64) -> Self {
        Self {
            interval_us,
            last_us: None,
        }
    }

    pub fn interval_us(&self) -> u64 {
        self.interval_us
    }

    /// Whether it is due at `now_us` (a tick); records it when it is.
    pub fn due(&mut self, now_us: u64) -> bool {
        if self.interval_us == 0 {
            return false;
        }
        let due = match self.last_us {
            None => true,
            Some(last) => {
                now_us.saturating_sub(last).saturating_add(EARLY_TICK_US) >= self.interval_us
            }
        };
        if due {
            self.last_us = Some(now_us);
        }
        due
    }
}
