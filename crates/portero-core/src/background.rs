//! A worker's background duties, shared by both shells: polling the
//! revocation feed into its caches and fetching the sidecar's signing keys.
//! The shells only decide *when* to ask (the wasm filter on its root
//! context's tick; the dynamic module, which has no timer, from a request)
//! and carry the calls ([`CallCarrier`]); what a reply means, and which
//! calls are in flight ([`InFlight`]), lives here.

use std::cell::RefCell;
use std::rc::Rc;

use portero_wire::JWKS_PATH;

use crate::cache::{EdgeCache, FeedOutcome};
use crate::config::Config;
use crate::feed::FeedSchedule;
use crate::flow::{sidecar_call, SidecarCall};
use crate::jwks::{read_jwks_reply, JwksSchedule};
use crate::metrics::Counter;
use crate::token::KeySet;

/// What a background call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    FeedPoll,
    JwksFetch,
}

/// One worker's duties, their cadence and whether each is failing (an
/// outage is logged when it starts and when it ends, not at every call).
pub struct Background {
    config: Rc<Config>,
    cache: Rc<RefCell<EdgeCache>>,
    feed: FeedSchedule,
    jwks: JwksSchedule,
    feed_failing: bool,
    jwks_failing: bool,
}

impl Background {
    pub fn new(config: Rc<Config>, cache: Rc<RefCell<EdgeCache>>) -> Self {
        Self {
            feed: FeedSchedule::new(&config.cache),
            jwks: JwksSchedule::new(config.jwks_refresh_seconds),
            config,
            cache,
            feed_failing: false,
            jwks_failing: false,
        }
    }

    /// How often the wasm shell's root context ticks.
    pub fn tick_period_ms(&self) -> u64 {
        self.feed.tick_period_ms()
    }

    /// The calls due at `now_us`; each is recorded as made. A shell that
    /// cannot start one hands it back through [`Background::on_reply`]
    /// with no status.
    pub fn due_calls(&mut self, now_us: u64) -> Vec<(Duty, SidecarCall)> {
        let mut calls = Vec::new();
        if self.feed.poll_due(now_us) {
            calls.extend(self.feed_poll(now_us));
        }
        if self.jwks.due(now_us) {
            let call = sidecar_call(&self.config, "GET", JWKS_PATH.to_string(), Vec::new());
            calls.push((Duty::JwksFetch, call));
        }
        calls
    }

    /// The next feed poll (none while one is in flight).
    fn feed_poll(&mut self, now_us: u64) -> Option<(Duty, SidecarCall)> {
        let path = self
            .cache
            .borrow_mut()
            .feed_poll(now_us, self.config.sidecar.timeout_ms)?;
        let call = sidecar_call(&self.config, "GET", path, Vec::new());
        Some((Duty::FeedPoll, call))
    }

    /// Takes a reply (`status` none: no answer, or the call never
    /// started); counts it; returns a call to make at once, if any (the
    /// feed had more entries than one page).
    pub fn on_reply(
        &mut self,
        duty: Duty,
        status: Option<u16>,
        body: &[u8],
        now_us: u64,
        count: &mut dyn FnMut(Counter),
    ) -> Option<(Duty, SidecarCall)> {
        match duty {
            Duty::FeedPoll => {
                let outcome = self.cache.borrow_mut().on_feed_reply(status, body, now_us);
                count(Counter::FeedPoll(self.note_feed(outcome)));
                match outcome {
                    FeedOutcome::Applied { more: true, .. } => self.feed_poll(now_us),
                    _ => None,
                }
            }
            Duty::JwksFetch => {
                count(Counter::JwksFetch(
                    self.take_keys(read_jwks_reply(status, body)),
                ));
                None
            }
        }
    }

    fn note_feed(&mut self, outcome: FeedOutcome) -> &'static str {
        let failing = outcome == FeedOutcome::Failed;
        if failing && !self.feed_failing {
            log::warn!(
                "revocation feed not read; cached sessions expire after the staleness bound"
            );
        } else if !failing && self.feed_failing {
            log::info!("revocation feed read again");
        }
        self.feed_failing = failing;
        match outcome {
            FeedOutcome::Applied { .. } => "applied",
            FeedOutcome::Reset => "reset",
            FeedOutcome::Failed => "failed",
        }
    }

    /// Takes a fetched key set, or keeps the last one on failure.
    fn take_keys(&mut self, fetched: Result<KeySet, String>) -> &'static str {
        match fetched {
            Ok(keys) => {
                let kids = keys.kids().join(", ");
                let changed = self.cache.borrow_mut().set_fetched_keys(keys);
                if changed {
                    log::info!("signing keys from the sidecar: {kids}");
                } else if self.jwks_failing {
                    log::info!("signing keys fetched again");
                }
                self.jwks_failing = false;
                if changed {
                    "changed"
                } else {
                    "same"
                }
            }
            Err(e) => {
                if !self.jwks_failing {
                    log::warn!("signing keys not fetched ({e}); keeping the last ones");
                }
                self.jwks_failing = true;
                "failed"
            }
        }
    }
}

/// What a shell does for the background duties: start one call to the
/// sidecar (its id names the answer; `None`: it did not start) and count.
pub trait CallCarrier {
    type Id: PartialEq;
    fn start_call(&mut self, call: &SidecarCall) -> Option<Self::Id>;
    fn count(&mut self, counter: Counter);
}

/// The background calls a shell has in flight, by the shell's call id.
/// The one driver of [`Background`] for every shell.
pub struct InFlight<Id> {
    calls: Vec<(Id, Duty)>,
}

impl<Id> Default for InFlight<Id> {
    fn default() -> Self {
        Self { calls: Vec::new() }
    }
}

impl<Id: PartialEq> InFlight<Id> {
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Starts `calls`; one that cannot start is a failed one, and what
    /// `background` makes of that failure is started in turn.
    pub fn start(
        &mut self,
        background: &mut Background,
        mut calls: Vec<(Duty, SidecarCall)>,
        now_us: u64,
        carrier: &mut dyn CallCarrier<Id = Id>,
    ) {
        while let Some((duty, call)) = calls.pop() {
            match carrier.start_call(&call) {
                Some(id) => self.calls.push((id, duty)),
                None => calls.extend(
                    background.on_reply(duty, None, &[], now_us, &mut |c| carrier.count(c)),
                ),
            }
        }
    }

    /// Takes the answer to call `id` when it is one of these (a follow-up
    /// call is started at once); whether it was.
    pub fn answer(
        &mut self,
        background: &mut Background,
        id: &Id,
        status: Option<u16>,
        body: &[u8],
        now_us: u64,
        carrier: &mut dyn CallCarrier<Id = Id>,
    ) -> bool {
        let Some(index) = self.calls.iter().position(|(known, _)| known == id) else {
            return false;
        };
        let (_, duty) = self.calls.swap_remove(index);
        let follow_up = background.on_reply(duty, status, body, now_us, &mut |c| carrier.count(c));
        self.start(background, follow_up.into_iter().collect(), now_us, carrier);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portero_testkit::config::valid_json;
    use portero_testkit::tokens::TEST_JWKS;

    fn background() -> Background {
        let config = Rc::new(Config::from_json(valid_json().to_string().as_bytes()).unwrap());
        let cache = Rc::new(RefCell::new(EdgeCache::new(&config.cache)));
        Background::new(config, cache)
    }

    fn reply(bg: &mut Background, duty: Duty, status: Option<u16>, body: &[u8]) -> Vec<Counter> {
        let mut counted = Vec::new();
        let follow_up = bg.on_reply(duty, status, body, 1_000_000, &mut |c| counted.push(c));
        assert!(follow_up.is_none());
        counted
    }

    #[test]
    fn both_duties_are_due_first_then_wait_for_their_interval() {
        let mut bg = background();
        let first: Vec<Duty> = bg
            .due_calls(1_000_000)
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        assert_eq!(first, vec![Duty::FeedPoll, Duty::JwksFetch]);
        assert!(bg.due_calls(1_100_000).is_empty());
        let jwks = bg.due_calls(62_000_000);
        assert!(jwks.iter().any(|(d, c)| *d == Duty::JwksFetch
            && c.headers
                .iter()
                .any(|(k, v)| k == ":path" && v == JWKS_PATH)));
    }

    #[test]
    fn a_failed_fetch_keeps_the_keys_and_a_good_one_replaces_them() {
        let mut bg = background();
        assert_eq!(
            reply(&mut bg, Duty::JwksFetch, Some(503), b""),
            vec![Counter::JwksFetch("failed")]
        );
        let jwks = TEST_JWKS.as_bytes();
        assert_eq!(
            reply(&mut bg, Duty::JwksFetch, Some(200), jwks),
            vec![Counter::JwksFetch("changed")]
        );
        assert_eq!(
            reply(&mut bg, Duty::JwksFetch, None, b""),
            vec![Counter::JwksFetch("failed")]
        );
        assert!(!bg.cache.borrow().fetched_keys().kids().is_empty());
        assert_eq!(
            reply(&mut bg, Duty::JwksFetch, Some(200), jwks),
            vec![Counter::JwksFetch("same")]
        );
    }

    #[test]
    fn a_feed_poll_without_an_answer_is_counted_failed() {
        let mut bg = background();
        let calls = bg.due_calls(1_000_000);
        assert!(calls.iter().any(|(d, _)| *d == Duty::FeedPoll));
        assert_eq!(
            reply(&mut bg, Duty::FeedPoll, None, b""),
            vec![Counter::FeedPoll("failed")]
        );
    }

    /// A carrier that starts calls while it has ids left.
    struct Carrier {
        ids: Vec<u32>,
        started: Vec<String>,
        counted: Vec<Counter>,
    }

    impl CallCarrier for Carrier {
        type Id = u32;

        fn start_call(&mut self, call: &SidecarCall) -> Option<u32> {
            let id = self.ids.pop()?;
            self.started.push(call.cluster.clone());
            Some(id)
        }

        fn count(&mut self, counter: Counter) {
            self.counted.push(counter);
        }
    }

    #[test]
    fn the_driver_keeps_calls_by_id_and_fails_one_that_cannot_start() {
        let mut bg = background();
        let mut in_flight = InFlight::default();
        // Two duties due, one id: one call starts, the other fails at once.
        let mut carrier = Carrier {
            ids: vec![7],
            started: Vec::new(),
            counted: Vec::new(),
        };
        let due = bg.due_calls(1_000_000);
        assert_eq!(due.len(), 2);
        in_flight.start(&mut bg, due, 1_000_000, &mut carrier);
        assert_eq!(carrier.started.len(), 1);
        assert_eq!(
            carrier.counted.len(),
            1,
            "the call that did not start counts as failed"
        );
        assert!(!in_flight.is_empty());
        // An answer to a call that is not one of these is left to the caller.
        assert!(!in_flight.answer(&mut bg, &8, Some(200), b"", 1_000_000, &mut carrier));
        assert!(!in_flight.is_empty());
        // The answer to the call in flight is taken, and counted.
        assert!(in_flight.answer(&mut bg, &7, Some(503), b"", 1_000_000, &mut carrier));
        assert!(in_flight.is_empty());
        assert_eq!(carrier.counted.len(), 2);
    }
}
