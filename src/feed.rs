//! When the root context ticks and when it polls the revocation feed: the
//! cadence decisions, out of the shell, so they are tested natively.

use crate::cache::CacheConfig;

/// Ticks jitter: a tick up to this much early still counts as on time
/// (else a poll every 500 ms on 500 ms ticks would slip to every second).
const EARLY_TICK_US: u64 = 50_000;

/// The root context's tick and feed-poll schedule.
#[derive(Debug, Clone)]
pub struct FeedSchedule {
    poll_interval_us: u64,
    polls: bool,
    last_poll_us: Option<u64>,
}

impl FeedSchedule {
    pub fn new(config: &CacheConfig) -> Self {
        Self {
            poll_interval_us: config.feed_poll_interval_ms.saturating_mul(1000),
            polls: config.sessions_enabled(),
            last_poll_us: None,
        }
    }

    /// The tick period: the poll interval while the session cache is on,
    /// at most a second (counters are handed to Envoy on the tick).
    pub fn tick_period_ms(&self) -> u64 {
        if self.polls {
            (self.poll_interval_us / 1000).clamp(1, 1000)
        } else {
            1000
        }
    }

    /// Whether the feed should be polled at `now_us` (a tick); records the
    /// poll when it is.
    pub fn poll_due(&mut self, now_us: u64) -> bool {
        if !self.polls {
            return false;
        }
        let due = match self.last_poll_us {
            None => true,
            Some(last) => {
                now_us.saturating_sub(last).saturating_add(EARLY_TICK_US) >= self.poll_interval_us
            }
        };
        if due {
            self.last_poll_us = Some(now_us);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(interval_ms: u64, sessions: bool) -> FeedSchedule {
        let config = CacheConfig {
            feed_poll_interval_ms: interval_ms,
            session_ttl_seconds: if sessions { 30 } else { 0 },
            ..CacheConfig::default()
        };
        FeedSchedule::new(&config)
    }

    #[test]
    fn ticks_at_the_poll_interval_at_most_a_second() {
        assert_eq!(schedule(500, true).tick_period_ms(), 500);
        assert_eq!(schedule(5000, true).tick_period_ms(), 1000);
        assert_eq!(schedule(500, false).tick_period_ms(), 1000);
    }

    #[test]
    fn polls_on_time_despite_early_ticks_and_never_without_a_session_cache() {
        let mut s = schedule(500, true);
        assert!(s.poll_due(1_000_000), "the first tick polls");
        assert!(!s.poll_due(1_200_000));
        // A tick 30 ms early is on time.
        assert!(s.poll_due(1_470_000));
        assert!(!s.poll_due(1_500_000));
        // A slower interval than the tick: every third one-second tick.
        let mut slow = schedule(3000, true);
        let polled: Vec<bool> = (0..7).map(|n| slow.poll_due(n * 1_000_000)).collect();
        assert_eq!(polled, [true, false, false, true, false, false, true]);
        let mut off = schedule(500, false);
        assert!(!off.poll_due(1_000_000));
    }
}
