//! When the root context ticks and when it polls the revocation feed: the
//! cadence decisions, out of the shell, so they are tested natively.

use crate::cache::CacheConfig;
use crate::periodic::Periodic;

/// The root context's tick and feed-poll schedule.
#[derive(Debug, Clone)]
pub struct FeedSchedule {
    /// Never due without a session cache (nothing to keep fresh).
    poll: Periodic,
    polls: bool,
}

impl FeedSchedule {
    pub fn new(config: &CacheConfig) -> Self {
        let polls = config.sessions_enabled();
        let interval_us = config.feed_poll_interval_ms.saturating_mul(1000);
        Self {
            poll: Periodic::every_us(if polls { interval_us } else { 0 }),
            polls,
        }
    }

    /// The tick period: the poll interval while the session cache is on,
    /// at most a second (counters are handed to Envoy on the tick).
    pub fn tick_period_ms(&self) -> u64 {
        if self.polls {
            (self.poll.interval_us() / 1000).clamp(1, 1000)
        } else {
            1000
        }
    }

    /// Whether the feed should be polled at `now_us` (a tick); records the
    /// poll when it is.
    pub fn poll_due(&mut self, now_us: u64) -> bool {
        self.poll.due(now_us)
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
