//! The filter's metrics: what is counted, under which stable name.
//!
//! proxy-wasm metrics have no labels, so labels are spelled into the name as
//! `.<label>.<value>` pairs; `envoy/envoy.yaml`'s `stats_tags` turn them back
//! into Prometheus labels (`portero_requests{flow="cookie",outcome="allowed"}`).

use std::collections::HashMap;

use crate::http::ClientKind;
use crate::policy::{BindingField, MismatchPolicy};

/// How a request left the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Authenticated and sent upstream.
    Allowed,
    /// No credential on an `optional` route: sent upstream anonymously.
    Anonymous,
    /// The route's policy is `off`.
    RouteOff,
    /// Refused; the reason's stable code.
    Rejected(&'static str),
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Anonymous => "anonymous",
            Outcome::RouteOff => "route_off",
            Outcome::Rejected(code) => code,
        }
    }
}

/// Which per-worker cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheKind {
    Tokens,
    Sessions,
}

/// Why a sidecar call did not give a usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SidecarError {
    /// The proxy could not start the call (unknown cluster, bad headers).
    DispatchFailed,
    /// Connection failure, reset or timeout.
    NoAnswer,
    /// An HTTP status the filter does not expect (5xx, 401, …).
    ErrorStatus,
    /// A body the filter cannot read.
    BadReply,
}

impl SidecarError {
    pub fn name(self) -> &'static str {
        match self {
            SidecarError::DispatchFailed => "dispatch_failed",
            SidecarError::NoAnswer => "no_answer",
            SidecarError::ErrorStatus => "error_status",
            SidecarError::BadReply => "bad_reply",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Every request the filter ran on, by client kind and outcome.
    Request { flow: ClientKind, outcome: Outcome },
    /// Access tokens rotated by a look-up.
    Refresh,
    /// Rotated-away tokens presented after their grace window.
    ReuseDetected,
    /// A bound field differed from the login's, and what was done.
    BindingMismatch {
        field: BindingField,
        action: MismatchPolicy,
    },
    /// Cookie-authenticated unsafe requests refused as cross-site.
    CsrfRejected,
    /// Sidecar calls without a usable answer.
    Sidecar(SidecarError),
    /// Cache look-ups, hit or miss.
    Cache { cache: CacheKind, hit: bool },
    /// Revocation feed polls by result: `applied`, `reset`, `failed`.
    FeedPoll(&'static str),
    /// Fetches of the sidecar's JWKS by result: `changed`, `same`, `failed`.
    JwksFetch(&'static str),
}

/// A counter family: its name under `portero.` and its label names. The
/// wasm shell spells labels into the metric name (proxy-wasm metrics have
/// none); the dynamic module defines each family once, with native labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub labels: &'static [&'static str],
}

/// Every counter family, in [`Counter::family_index`] order.
pub const FAMILIES: [Family; 9] = [
    Family {
        name: "requests",
        labels: &["flow", "outcome"],
    },
    Family {
        name: "refreshes",
        labels: &[],
    },
    Family {
        name: "reuse_detected",
        labels: &[],
    },
    Family {
        name: "binding_mismatches",
        labels: &["field", "action"],
    },
    Family {
        name: "csrf_rejections",
        labels: &[],
    },
    Family {
        name: "sidecar_errors",
        labels: &["kind"],
    },
    Family {
        name: "cache_lookups",
        labels: &["cache", "result"],
    },
    Family {
        name: "revocation_feed_polls",
        labels: &["result"],
    },
    Family {
        name: "jwks_fetches",
        labels: &["result"],
    },
];

impl Counter {
    /// Its family's index in [`FAMILIES`].
    pub fn family_index(&self) -> usize {
        match self {
            Counter::Request { .. } => 0,
            Counter::Refresh => 1,
            Counter::ReuseDetected => 2,
            Counter::BindingMismatch { .. } => 3,
            Counter::CsrfRejected => 4,
            Counter::Sidecar(_) => 5,
            Counter::Cache { .. } => 6,
            Counter::FeedPoll(_) => 7,
            Counter::JwksFetch(_) => 8,
        }
    }

    /// Its label values, in the order of its family's label names.
    pub fn label_values(&self) -> [&'static str; 2] {
        match self {
            Counter::Request { flow, outcome } => [flow.name(), outcome.name()],
            Counter::BindingMismatch { field, action } => [
                field.name(),
                match action {
                    MismatchPolicy::Reject => "reject",
                    MismatchPolicy::Log | MismatchPolicy::Off => "log",
                },
            ],
            Counter::Sidecar(kind) => [kind.name(), ""],
            Counter::Cache { cache, hit } => [
                match cache {
                    CacheKind::Tokens => "tokens",
                    CacheKind::Sessions => "sessions",
                },
                if *hit { "hit" } else { "miss" },
            ],
            Counter::FeedPoll(result) | Counter::JwksFetch(result) => [result, ""],
            Counter::Refresh | Counter::ReuseDetected | Counter::CsrfRejected => ["", ""],
        }
    }

    /// The metric's name as defined in proxy-wasm (labels spelled in as
    /// `.<label>.<value>` pairs).
    pub fn name(&self) -> String {
        let Some(family) = FAMILIES.get(self.family_index()) else {
            return "portero.unknown".into();
        };
        let mut name = format!("portero.{}", family.name);
        for (label, value) in family.labels.iter().zip(self.label_values()) {
            name.push('.');
            name.push_str(label);
            name.push('.');
            name.push_str(value);
        }
        name
    }
}

/// Counts not yet handed to the proxy. Both shells batch them: one host
/// call per count was a measurable share of a request (Envoy resolves a
/// labelled counter on every increment), so each worker hands over the sum
/// per series at most about once a second.
#[derive(Debug, Default)]
pub struct PendingCounts {
    counts: HashMap<Counter, u64>,
}

impl PendingCounts {
    pub fn add(&mut self, counter: Counter) {
        *self.counts.entry(counter).or_insert(0) += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Every series counted since the last drain, with its count.
    pub fn drain(&mut self) -> impl Iterator<Item = (Counter, u64)> + '_ {
        self.counts.drain()
    }
}

/// Histogram of sidecar call latency, in microseconds (look-ups take about one millisecond; whole milliseconds would say little).
pub const SIDECAR_LATENCY_US: &str = "portero.sidecar_latency_us";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_counts_sum_per_series_until_drained() {
        let mut pending = PendingCounts::default();
        pending.add(Counter::Refresh);
        pending.add(Counter::Refresh);
        pending.add(Counter::CsrfRejected);
        let mut drained: Vec<(String, u64)> = pending.drain().map(|(c, n)| (c.name(), n)).collect();
        drained.sort();
        assert_eq!(
            drained,
            vec![
                ("portero.csrf_rejections".to_string(), 1),
                ("portero.refreshes".to_string(), 2)
            ]
        );
        assert!(pending.is_empty());
    }

    #[test]
    fn names_spell_their_labels() {
        assert_eq!(
            Counter::Request {
                flow: ClientKind::Cookie,
                outcome: Outcome::Allowed
            }
            .name(),
            "portero.requests.flow.cookie.outcome.allowed"
        );
        assert_eq!(
            Counter::Request {
                flow: ClientKind::Bearer,
                outcome: Outcome::Rejected("token_expired")
            }
            .name(),
            "portero.requests.flow.bearer.outcome.token_expired"
        );
        assert_eq!(
            Counter::BindingMismatch {
                field: BindingField::UserAgent,
                action: MismatchPolicy::Reject
            }
            .name(),
            "portero.binding_mismatches.field.user_agent.action.reject"
        );
        assert_eq!(
            Counter::Sidecar(SidecarError::NoAnswer).name(),
            "portero.sidecar_errors.kind.no_answer"
        );
        assert_eq!(Counter::Refresh.name(), "portero.refreshes");
        assert_eq!(
            Counter::Cache {
                cache: CacheKind::Sessions,
                hit: false
            }
            .name(),
            "portero.cache_lookups.cache.sessions.result.miss"
        );
        assert_eq!(
            Counter::JwksFetch("same").name(),
            "portero.jwks_fetches.result.same"
        );
    }
}
