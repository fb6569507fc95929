//! The filter's metrics: what is counted, under which stable name.
//!
//! proxy-wasm metrics have no labels, so labels are spelled into the name as
//! `.<label>.<value>` pairs; `envoy/envoy.yaml`'s `stats_tags` turn them back
//! into Prometheus labels (`portero_requests{flow="cookie",outcome="allowed"}`).

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

impl Counter {
    /// The metric's name as defined in the proxy (labels spelled in).
    pub fn name(&self) -> String {
        match self {
            Counter::Request { flow, outcome } => format!(
                "portero.requests.flow.{}.outcome.{}",
                flow.name(),
                outcome.name()
            ),
            Counter::Refresh => "portero.refreshes".into(),
            Counter::ReuseDetected => "portero.reuse_detected".into(),
            Counter::BindingMismatch { field, action } => format!(
                "portero.binding_mismatches.field.{}.action.{}",
                field.name(),
                match action {
                    MismatchPolicy::Reject => "reject",
                    MismatchPolicy::Log | MismatchPolicy::Off => "log",
                }
            ),
            Counter::CsrfRejected => "portero.csrf_rejections".into(),
            Counter::Sidecar(kind) => format!("portero.sidecar_errors.kind.{}", kind.name()),
            Counter::Cache { cache, hit } => format!(
                "portero.cache_lookups.cache.{}.result.{}",
                match cache {
                    CacheKind::Tokens => "tokens",
                    CacheKind::Sessions => "sessions",
                },
                if *hit { "hit" } else { "miss" }
            ),
            Counter::FeedPoll(result) => format!("portero.revocation_feed_polls.result.{result}"),
            Counter::JwksFetch(result) => format!("portero.jwks_fetches.result.{result}"),
        }
    }
}

/// Histogram of sidecar call latency, in microseconds (look-ups take about one millisecond; whole milliseconds would say little).
pub const SIDECAR_LATENCY_US: &str = "portero.sidecar_latency_us";

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
