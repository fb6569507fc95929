//! Prometheus metrics at `GET /metrics`: requests and latency by route,
//! and Redis errors.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Marks a reply that failed because of the store (set by `ApiError`).
#[derive(Clone, Copy, Debug)]
pub struct StoreFailure;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route pattern (`/v1/sessions/{handle}`), never the raw path: a
    /// handle in a label would be an unbounded series and a session name.
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    redis_errors: Counter,
}

/// Latency buckets in seconds: 100 µs to 1 s.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new(Counter::default())
    }
}

impl Metrics {
    /// The registry, with the store's count of writes accepted with fewer
    /// replicas than required.
    pub fn new(under_replicated_writes: Counter) -> Self {
        let mut registry = Registry::with_prefix("portero_sidecar");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(BUCKETS.iter().copied())
        });
        let redis_errors = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and method",
            latency.clone(),
        );
        registry.register(
            "redis_errors",
            "Requests that failed because Redis could not be used",
            redis_errors.clone(),
        );
        registry.register(
            "redis_under_replicated_writes",
            "Writes accepted with fewer replicas than --redis-wait-replicas, as fewer were connected",
            under_replicated_writes,
        );
        Self {
            registry,
            requests,
            latency,
            redis_errors,
        }
    }
}

impl Metrics {
    fn observe(
        &self,
        route: String,
        method: String,
        status: u16,
        seconds: f64,
        store_failed: bool,
    ) {
        self.latency
            .get_or_create(&RouteLabels {
                route: route.clone(),
                method: method.clone(),
            })
            .observe(seconds);
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
        if store_failed {
            self.redis_errors.inc();
        }
    }

    fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Middleware: counts and times every request by its route pattern.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let store_failed = response.extensions().get::<StoreFailure>().is_some();
    metrics.observe(
        route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
        store_failed,
    );
    response
}

/// The `GET /metrics` reply: the Prometheus text format.
pub fn response(metrics: &Metrics) -> Response {
    match metrics.render() {
        Ok(text) => (
            [(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_latency_and_redis_errors() {
        let metrics = Metrics::default();
        metrics.observe(
            "/v1/sessions/lookup".into(),
            "POST".into(),
            200,
            0.0003,
            false,
        );
        metrics.observe("/readyz".into(), "GET".into(), 503, 0.002, true);
        let text = metrics.render().unwrap();
        assert!(text.contains(
            "portero_sidecar_http_requests_total{route=\"/v1/sessions/lookup\",method=\"POST\",status=\"200\"} 1"
        ), "{text}");
        assert!(text.contains("portero_sidecar_http_request_duration_seconds_bucket{le=\"0.0005\",route=\"/v1/sessions/lookup\",method=\"POST\"} 1"), "{text}");
        assert!(
            text.contains("portero_sidecar_redis_errors_total 1"),
            "{text}"
        );
    }
}
