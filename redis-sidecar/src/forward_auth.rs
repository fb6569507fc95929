//! Forward auth: portero's per-request check as an HTTP endpoint, for
//! proxies that ask a service instead of running the filter — Envoy's
//! `ext_authz` (HTTP), nginx `auth_request`, Traefik `forwardAuth`, Caddy
//! `forward_auth`. This is how oauth2-proxy, Authelia or Pomerium sit in
//! front of Envoy, and the design `make bench` races the filter against.
//!
//! The decision is the filter's own: portero's [`Flow`] runs over a
//! [`Host`] made of the asking request, and its session look-up is served
//! by this sidecar's API in-process (no socket). What the flow would have
//! done to the request becomes the answer: 200 with the identity headers to
//! set upstream (and `x-envoy-auth-headers-to-remove` naming forged ones to
//! drop), or the flow's own 401/403/302/503.
//!
//! Differences from the filter, all in docs/deploying.md, "Forward auth": there
//! is no route name (rules by `route_name` never match; `path_prefix` rules
//! do), no response side (session start and end headers are the filter's
//! job), and no edge session cache (no revocation feed here: every check
//! asks Redis).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use portero_core::cache::EdgeCache;
use portero_core::config::Config;
use portero_core::flow::{
    DispatchError, Flow, Host, LocalResponse, SidecarCall, SidecarReply, Verdict,
};
use portero_core::metrics::Counter;
use serde_json::Value;
use tower::ServiceExt;

use crate::api::AppState;

/// Largest sidecar answer read back (a session view is well under 4 KiB).
const MAX_REPLY_BYTES: usize = 64 * 1024;
/// A flow makes at most a look-up and an end-session call.
const MAX_CALLS: usize = 4;
/// How often a worker thread checks whether the published keys changed.
const KEY_CHECK_INTERVAL_US: u64 = 1_000_000;

/// The forward-auth service: the plugin config (as the operator wrote it)
/// and the sidecar's own API, called in-process.
pub struct ForwardAuth {
    config: Value,
    /// The filter credential the in-process look-ups present.
    filter_token: String,
    state: Arc<AppState>,
    api: Router,
    runtime: tokio::runtime::Handle,
}

/// One blocking thread's flow state: its config (rebuilt when the published
/// signing keys change) and its caches.
struct Worker {
    config: Rc<Config>,
    cache: Rc<RefCell<EdgeCache>>,
    jwks: String,
    keys_checked_us: u64,
}

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

impl ForwardAuth {
    /// Validates `config` (the filter's plugin config JSON) as the filter
    /// would, with the parts that name the filter's surroundings filled in
    /// from this sidecar: its filter credential, its signing keys.
    pub fn new(
        config: &[u8],
        filter_token: &str,
        state: Arc<AppState>,
        api: Router,
        runtime: tokio::runtime::Handle,
    ) -> Result<ForwardAuth, String> {
        let config: Value = serde_json::from_slice(config)
            .map_err(|e| format!("forward-auth config: not JSON: {e}"))?;
        let service = ForwardAuth {
            config,
            filter_token: filter_token.to_string(),
            state,
            api,
            runtime,
        };
        service.build_config(&service.published_jwks())?;
        Ok(service)
    }

    fn published_jwks(&self) -> String {
        self.state.keys.current().jwks().to_string()
    }

    /// The config the flow runs with: the operator's, with the sidecar
    /// section pointing here, the pinned keys the ones this sidecar
    /// publishes, and the session cache off (no feed keeps it honest here).
    fn build_config(&self, jwks: &str) -> Result<Config, String> {
        let mut config = self.config.clone();
        let timeout_ms = config
            .pointer("/sidecar/timeout_ms")
            .and_then(Value::as_u64)
            .unwrap_or(500);
        let sidecar = serde_json::json!({
            "cluster": "in-process",
            "token": self.filter_token,
            "timeout_ms": timeout_ms,
        });
        set_field(&mut config, &[], "sidecar", sidecar)?;
        set_field(
            &mut config,
            &["jwt"],
            "jwks",
            Value::String(jwks.to_string()),
        )?;
        set_field(
            &mut config,
            &["jwt"],
            "jwks_refresh_seconds",
            Value::from(0),
        )?;
        let sessions = serde_json::json!({"ttl_seconds": 0});
        set_field(&mut config, &["cache"], "sessions", sessions)?;
        let bytes = serde_json::to_vec(&config).map_err(|e| e.to_string())?;
        Config::from_json(&bytes).map_err(|e| format!("forward-auth config: {e}"))
    }

    /// The check of one asking request, on a blocking thread (the flow's
    /// state is not `Send`; its look-ups block on this runtime).
    fn check(&self, mut asking: AskingRequest) -> Answer {
        let now_us = asking.now_micros();
        let prepared = WORKER.with(|slot| {
            let mut slot = slot.borrow_mut();
            let stale = slot
                .as_ref()
                .is_none_or(|w| now_us.saturating_sub(w.keys_checked_us) > KEY_CHECK_INTERVAL_US);
            if stale {
                let jwks = self.published_jwks();
                if slot.as_ref().is_none_or(|w| w.jwks != jwks) {
                    let config = Rc::new(self.build_config(&jwks)?);
                    let cache = Rc::new(RefCell::new(EdgeCache::new(&config.cache)));
                    *slot = Some(Worker {
                        config,
                        cache,
                        jwks,
                        keys_checked_us: now_us,
                    });
                } else if let Some(worker) = slot.as_mut() {
                    worker.keys_checked_us = now_us;
                }
            }
            slot.as_ref()
                .map(|w| (w.config.clone(), w.cache.clone()))
                .ok_or_else(|| "no worker state".to_string())
        });
        let (config, cache) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                tracing::error!(error = %e, "forward auth: config not usable");
                return Answer::unavailable();
            }
        };
        let mut flow = Flow::new(config, cache);
        let mut verdict = flow.on_request_headers(&mut asking);
        for _ in 0..MAX_CALLS {
            if verdict != Verdict::Wait {
                break;
            }
            let Some(call) = asking.call.take() else {
                break;
            };
            let reply = self.runtime.block_on(self.call_api(call));
            verdict = flow.on_sidecar_reply(&mut asking, reply);
        }
        match verdict {
            Verdict::Forward => Answer::Allow {
                set: asking.upstream_set,
                removed: asking.upstream_removed,
            },
            Verdict::Responded => asking
                .response
                .map_or_else(Answer::unavailable, Answer::Deny),
            // Still waiting after every call it may make: fail closed.
            Verdict::Wait => Answer::unavailable(),
        }
    }

    /// The flow's sidecar call, served by this sidecar's router in-process.
    async fn call_api(&self, call: SidecarCall) -> SidecarReply {
        let no_answer = SidecarReply {
            status: None,
            body: Vec::new(),
        };
        let mut builder = Request::builder();
        for (name, value) in &call.headers {
            builder = match name.as_str() {
                ":method" => builder.method(value.as_str()),
                ":path" => builder.uri(value.as_str()),
                _ if name.starts_with(':') => builder,
                _ => builder.header(name.as_str(), value.as_str()),
            };
        }
        let Ok(request) = builder.body(Body::from(call.body)) else {
            return no_answer;
        };
        let timeout = Duration::from_millis(call.timeout_ms);
        let answered = tokio::time::timeout(timeout, async {
            let response = self.api.clone().oneshot(request).await.ok()?;
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), MAX_REPLY_BYTES)
                .await
                .ok()?;
            Some(SidecarReply {
                status: Some(status),
                body: body.to_vec(),
            })
        })
        .await;
        answered.ok().flatten().unwrap_or(no_answer)
    }
}

/// Sets `field` in the object at `path` (made when missing); a non-object
/// on the way is the operator's mistake, named.
fn set_field(config: &mut Value, path: &[&str], field: &str, value: Value) -> Result<(), String> {
    let mut at = config;
    for part in path {
        let object = at
            .as_object_mut()
            .ok_or_else(|| format!("forward-auth config: `{part}` must be in an object"))?;
        at = object
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    let object = at.as_object_mut().ok_or_else(|| {
        format!(
            "forward-auth config: `{}` must be an object",
            path.last().copied().unwrap_or("(root)")
        )
    })?;
    object.insert(field.to_string(), value);
    Ok(())
}

/// What the proxy is told.
enum Answer {
    /// 200: these headers go upstream; forged copies of the removed ones
    /// are dropped.
    Allow {
        set: Vec<(String, Vec<u8>)>,
        removed: Vec<String>,
    },
    /// The flow's own answer (401, 403, the login redirect, 503).
    Deny(LocalResponse),
}

impl Answer {
    fn unavailable() -> Answer {
        Answer::Deny(LocalResponse {
            status: 503,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("cache-control".into(), "no-store".into()),
                ("retry-after".into(), "1".into()),
            ],
            body: br#"{"error":"unavailable","reason":"forward_auth_unavailable"}"#.to_vec(),
        })
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::empty());
        match self {
            Answer::Allow { set, removed } => {
                let headers = response.headers_mut();
                for (name, value) in &set {
                    if let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_bytes(value),
                    ) {
                        headers.insert(name, value);
                    }
                }
                let dropped: Vec<&str> = removed
                    .iter()
                    .map(String::as_str)
                    .filter(|name| !set.iter().any(|(set_name, _)| set_name == name))
                    .collect();
                if let Ok(value) = HeaderValue::from_str(&dropped.join(",")) {
                    if !dropped.is_empty() {
                        headers.insert("x-envoy-auth-headers-to-remove", value);
                    }
                }
            }
            Answer::Deny(local) => {
                *response.status_mut() =
                    StatusCode::from_u16(local.status as u16).unwrap_or(StatusCode::FORBIDDEN);
                let headers = response.headers_mut();
                for (name, value) in &local.headers {
                    if let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_str(value),
                    ) {
                        headers.append(name, value);
                    }
                }
                *response.body_mut() = Body::from(local.body);
            }
        }
        response
    }
}

/// The request a proxy asks about, as the flow sees it, and what the flow
/// did with it.
struct AskingRequest {
    method: String,
    /// As the proxy named it: raw bytes (nginx's `$request_uri` is not
    /// decoded), normalised by the flow before any policy is decided.
    path: Vec<u8>,
    scheme: String,
    authority: String,
    headers: Vec<(String, Vec<u8>)>,
    client_ip: Option<String>,
    upstream_set: Vec<(String, Vec<u8>)>,
    upstream_removed: Vec<String>,
    call: Option<SidecarCall>,
    response: Option<LocalResponse>,
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl AskingRequest {
    /// The original request: Envoy's `ext_authz` sends it as it is (method,
    /// path, the allowed headers); nginx, Traefik and Caddy name it in
    /// `X-Original-URI` / `X-Forwarded-Uri` and `X-Forwarded-Method`. The
    /// client is the last `X-Forwarded-For` hop the proxy appended, else
    /// the proxy itself: this listener must be reachable by the proxy only.
    fn from_parts(method: &Method, uri: &Uri, headers: &HeaderMap, peer: SocketAddr) -> Self {
        let path = ["x-forwarded-uri", "x-original-uri"]
            .iter()
            .find_map(|name| headers.get(*name))
            .map(|value| value.as_bytes().to_vec())
            .unwrap_or_else(|| {
                uri.path_and_query()
                    .map_or_else(|| b"/".to_vec(), |p| p.as_str().as_bytes().to_vec())
            });
        let method = header_text(headers, "x-forwarded-method")
            .or_else(|| header_text(headers, "x-original-method"))
            .unwrap_or_else(|| method.as_str().to_string());
        let scheme = header_text(headers, "x-forwarded-proto").unwrap_or_else(|| "http".into());
        let authority = header_text(headers, "x-forwarded-host")
            .or_else(|| header_text(headers, "host"))
            .unwrap_or_default();
        let client_ip = header_text(headers, "x-forwarded-for")
            .and_then(|hops| hops.rsplit(',').next().map(|ip| ip.trim().to_string()))
            .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
            .or_else(|| Some(peer.ip().to_string()));
        AskingRequest {
            method,
            path,
            scheme,
            authority,
            headers: headers
                .iter()
                .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
                .collect(),
            client_ip,
            upstream_set: Vec::new(),
            upstream_removed: Vec::new(),
            call: None,
            response: None,
        }
    }
}

impl Host for AskingRequest {
    fn crypto(&self) -> &dyn portero_core::crypto::Crypto {
        &portero_native_crypto::NativeCrypto
    }

    fn now(&self) -> u64 {
        self.now_micros() / 1_000_000
    }

    fn now_micros(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    }

    fn route_name(&self) -> Option<String> {
        None
    }

    fn client_address(&mut self) -> Option<String> {
        self.client_ip.clone()
    }

    fn request_header_lines(&self, name: &str) -> Vec<&[u8]> {
        match name {
            ":method" => vec![self.method.as_bytes()],
            ":path" => vec![self.path.as_slice()],
            ":scheme" => vec![self.scheme.as_bytes()],
            ":authority" => vec![self.authority.as_bytes()],
            _ => self
                .headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_slice())
                .collect(),
        }
    }

    fn set_request_header(&mut self, name: &str, value: &[u8]) {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.to_string(), value.to_vec()));
        self.upstream_set.retain(|(n, _)| n != name);
        self.upstream_set.push((name.to_string(), value.to_vec()));
    }

    fn request_header_names(&self) -> Vec<&[u8]> {
        self.headers.iter().map(|(n, _)| n.as_bytes()).collect()
    }

    fn remove_request_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| n != name);
        self.upstream_set.retain(|(n, _)| n != name);
        if !self.upstream_removed.iter().any(|n| n == name) {
            self.upstream_removed.push(name.to_string());
        }
    }

    // No response side: the proxy never shows this service the upstream's answer.
    fn response_header_lines(&self, _name: &str) -> Vec<&[u8]> {
        Vec::new()
    }

    fn add_response_header(&mut self, _name: &str, _value: &str) {}

    fn remove_response_header(&mut self, _name: &str) {}

    fn dispatch_sidecar_call(&mut self, call: SidecarCall) -> Result<(), DispatchError> {
        self.call = Some(call);
        Ok(())
    }

    fn send_local_response(&mut self, response: LocalResponse) {
        self.response = Some(response);
    }

    fn increment(&mut self, _counter: Counter) {}

    fn record_sidecar_latency_us(&mut self, _micros: u64) {}
}

/// Every path, every method: the whole request is the question.
pub fn router(service: Arc<ForwardAuth>) -> Router {
    Router::new().fallback(ask).with_state(service)
}

async fn ask(
    State(service): State<Arc<ForwardAuth>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let asking = AskingRequest::from_parts(&method, &uri, &headers, peer);
    let checked = tokio::task::spawn_blocking(move || service.check(asking)).await;
    let answer = checked.unwrap_or_else(|_| Answer::unavailable());
    let response = answer.into_response();
    tracing::debug!(status = response.status().as_u16(), "forward auth");
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_config_shaped_wrong_is_an_error_not_a_panic() {
        for bad in [json!("text"), json!({"jwt": 5}), json!([1, 2])] {
            let mut config = bad.clone();
            assert!(
                set_field(&mut config, &["jwt"], "jwks", json!("{}")).is_err(),
                "{bad}"
            );
        }
        let mut config = json!({});
        set_field(
            &mut config,
            &["cache"],
            "sessions",
            json!({"ttl_seconds": 0}),
        )
        .unwrap();
        assert_eq!(config, json!({"cache": {"sessions": {"ttl_seconds": 0}}}));
    }

    fn asking(headers: &[(&str, &str)]) -> AskingRequest {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let peer: SocketAddr = "10.0.0.9:4242".parse().unwrap();
        AskingRequest::from_parts(&Method::GET, &Uri::from_static("/me?x=1"), &map, peer)
    }

    #[test]
    fn the_client_is_the_last_forwarded_hop_or_else_the_proxy() {
        let mut a = asking(&[("x-forwarded-for", "1.2.3.4, 5.6.7.8")]);
        assert_eq!(a.client_address().as_deref(), Some("5.6.7.8"));
        let mut forged = asking(&[("x-forwarded-for", "1.2.3.4, not-an-ip")]);
        assert_eq!(forged.client_address().as_deref(), Some("10.0.0.9"));
        let mut none = asking(&[]);
        assert_eq!(none.client_address().as_deref(), Some("10.0.0.9"));
    }

    #[test]
    fn the_original_request_is_the_forwarded_one_when_named() {
        let plain = asking(&[("host", "app.example")]);
        assert_eq!(plain.request_header_lines(":path"), vec![&b"/me?x=1"[..]]);
        assert_eq!(plain.request_header_lines(":method"), vec![&b"GET"[..]]);
        assert_eq!(
            plain.request_header_lines(":authority"),
            vec![&b"app.example"[..]]
        );
        let named = asking(&[
            ("x-forwarded-uri", "/reports"),
            ("x-forwarded-method", "POST"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "site.example"),
        ]);
        assert_eq!(named.request_header_lines(":path"), vec![&b"/reports"[..]]);
        assert_eq!(named.request_header_lines(":method"), vec![&b"POST"[..]]);
        assert_eq!(named.request_header_lines(":scheme"), vec![&b"https"[..]]);
        assert_eq!(
            named.request_header_lines(":authority"),
            vec![&b"site.example"[..]]
        );
    }

    #[test]
    fn an_allow_names_for_removal_only_the_forged_headers_it_does_not_set() {
        let mut a = asking(&[("x-portero-user-id", "forged"), ("x-portero-roles", "root")]);
        a.remove_request_header("x-portero-user-id");
        a.remove_request_header("x-portero-roles");
        a.set_request_header("x-portero-user-id", b"user-ada");
        let response = Answer::Allow {
            set: a.upstream_set,
            removed: a.upstream_removed,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-portero-user-id"], "user-ada");
        assert_eq!(
            response.headers()["x-envoy-auth-headers-to-remove"],
            "x-portero-roles"
        );
    }

    #[test]
    fn a_deny_carries_the_flows_status_headers_and_body() {
        let response = Answer::Deny(LocalResponse {
            status: 302,
            headers: vec![("location".into(), "/login?return_to=/me".into())],
            body: Vec::new(),
        })
        .into_response();
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(response.headers()["location"], "/login?return_to=/me");
        assert_eq!(Answer::unavailable().into_response().status(), 503);
    }
}
