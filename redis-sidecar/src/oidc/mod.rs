//! Sign-in with the organisation's OpenID Connect provider (authorization
//! code flow with PKCE), served on the sidecar's public listener, which
//! Envoy routes `/.portero/oidc/` to.
//!
//! ```text
//! browser ─► /.portero/oidc/start?return_to=/x   start_sign_in
//!              state, nonce, PKCE kept in Redis; the browser bound by a
//!              __Host- pre-login cookie ─► 303 to the provider
//! provider ─► /.portero/oidc/callback?code&state  finish_sign_in
//!              take_pending_sign_in ─► check_same_browser ─► exchange_code
//!              ─► id_token::validate ─► start_session ─► 303 to /x, the
//!              filter sealing the session cookie from the start header
//! ```
//!
//! Why here and not in the filter: the sidecar already has an HTTP stack,
//! Redis (for single-use `state`) and the session logic; the filter would
//! need a TLS cluster to the provider in every Envoy, for each shell. The
//! session it makes is the one an app's own login makes: same cookie (the
//! filter seals it from the same response header), tokens, refresh,
//! binding and revocation. The provider's tokens stay here: none reaches
//! the browser or the upstream, and none is stored.

mod config;
mod id_token;
mod logout;
mod provider;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portero_core::reject::{safe_return_path, session_hash};
use portero_wire::CreateSessionRequest;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::api::{start_session, AppState};
use crate::store::{random_token, PendingSignIn};

pub use config::{load, OidcConfig};
use provider::{read_body, Provider, ProviderError};

const LOG_TARGET: &str = module_path!();

/// Everything a sign-in step needs.
pub struct SignIn {
    config: OidcConfig,
    provider: Provider,
    api: Arc<AppState>,
}

impl SignIn {
    pub fn new(config: OidcConfig, api: Arc<AppState>) -> Result<Self, String> {
        let provider = Provider::new(&config)?;
        Ok(Self {
            config,
            provider,
            api,
        })
    }

    pub fn describe(&self) -> String {
        let hosts: Vec<&str> = self
            .config
            .clients
            .iter()
            .map(|c| c.host.as_str())
            .collect();
        format!("{} for {}", self.config.issuer, hosts.join(", "))
    }
}

/// Why a sign-in step stopped; each becomes a page for the browser.
#[derive(Debug)]
pub enum SignInError {
    /// The provider could not be reached or answered badly: try again.
    Provider(ProviderError),
    /// Redis trouble: try again (nothing was lost).
    Store(String),
    /// The request cannot finish a sign-in (expired, replayed, another
    /// browser's, a token that does not validate): start again.
    Refused(String),
    /// The provider said no (the user cancelled, or is not allowed).
    Denied(String),
    /// portero refuses this user (banned).
    Banned,
}

/// The public routes (Envoy routes `/.portero/oidc/` here, the prefix
/// rewritten to `/oidc/`).
pub fn router(sign_in: Arc<SignIn>) -> Router {
    // Counted with the API's requests (`portero_sidecar_http_requests`, by
    // route and status): sign-ins started, finished and refused.
    let metrics = sign_in.api.metrics.clone();
    Router::new()
        .route("/oidc/start", get(start_sign_in))
        .route("/oidc/callback", get(finish_sign_in))
        .route("/oidc/logout", post(logout::sign_out))
        .route(
            "/oidc/backchannel-logout",
            post(logout::end_provider_session),
        )
        .fallback(|| async {
            page(
                StatusCode::NOT_FOUND,
                "This address can't be opened",
                "There is nothing here.",
            )
        })
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::track,
        ))
        .with_state(sign_in)
}

#[derive(Deserialize)]
struct StartQuery {
    #[serde(default)]
    return_to: Option<String>,
}

/// "Start the sign-in": a new `state`, `nonce` and PKCE verifier, kept in
/// Redis for the callback and bound to this browser by the pre-login
/// cookie; the browser goes to the provider.
async fn start_sign_in(
    State(sign_in): State<Arc<SignIn>>,
    headers: HeaderMap,
    query: Result<Query<StartQuery>, QueryRejection>,
) -> Response {
    let return_to = query
        .ok()
        .and_then(|Query(q)| q.return_to)
        .as_deref()
        .and_then(safe_return_path)
        .unwrap_or("/")
        .to_string();
    match start(&sign_in, &headers, return_to).await {
        Ok(response) => response,
        Err(e) => e.into_page(),
    }
}

async fn start(
    sign_in: &SignIn,
    headers: &HeaderMap,
    return_to: String,
) -> Result<Response, SignInError> {
    let config = &sign_in.config;
    let client = client_for(config, headers)?;
    let metadata = sign_in
        .provider
        .metadata()
        .await
        .map_err(SignInError::Provider)?;
    // Tabs signing in at once share the browser's binding.
    let binding = cookie_value(headers, &config.pre_login_cookie)
        .filter(|v| v.len() == 43 && v.bytes().all(is_base64url))
        .unwrap_or_else(random_token);
    let state = random_token();
    let pending = PendingSignIn {
        host: client.host.clone(),
        nonce: random_token(),
        code_verifier: random_token(),
        return_to,
        browser_binding: digest(&binding),
    };
    sign_in
        .api
        .store
        .put_sign_in(&state, &pending, config.sign_in_ttl)
        .await
        .map_err(|e| SignInError::Store(e.to_string()))?;
    let mut location = reqwest::Url::parse(&metadata.authorization_endpoint).map_err(|e| {
        SignInError::Provider(ProviderError(format!("authorization_endpoint: {e}")))
    })?;
    location
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client.client_id)
        .append_pair("redirect_uri", &client.redirect_uri)
        .append_pair("scope", &config.scopes.join(" "))
        .append_pair("state", &state)
        .append_pair("nonce", &pending.nonce)
        .append_pair("code_challenge", &pkce_challenge(&pending.code_verifier))
        .append_pair("code_challenge_method", "S256");
    tracing::info!(target: LOG_TARGET, host = %client.host, "sign-in started");
    let cookie = format!(
        "{}={binding}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
        config.pre_login_cookie,
        config.sign_in_ttl.as_secs()
    );
    Ok(redirect(location.as_str(), &[("set-cookie", cookie)]))
}

#[derive(Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    /// RFC 9207: the provider that answered (mix-up defence), when it says.
    #[serde(default)]
    iss: Option<String>,
}

/// "Finish the sign-in": the provider sent the browser back.
async fn finish_sign_in(
    State(sign_in): State<Arc<SignIn>>,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return SignInError::Refused("callback without a readable query".into()).into_page();
    };
    match finish(&sign_in, &headers, query).await {
        Ok(response) => response,
        Err(e) => e.into_page(),
    }
}

async fn finish(
    sign_in: &SignIn,
    headers: &HeaderMap,
    query: CallbackQuery,
) -> Result<Response, SignInError> {
    let config = &sign_in.config;
    let state = query
        .state
        .ok_or_else(|| SignInError::Refused("callback without state".into()))?;
    let pending = take_pending_sign_in(sign_in, &state).await?;
    if query
        .iss
        .as_deref()
        .is_some_and(|iss| iss.trim_end_matches('/') != config.issuer)
    {
        return Err(SignInError::Refused(
            "the callback names another issuer (RFC 9207)".into(),
        ));
    }
    if let Some(error) = query.error {
        return Err(SignInError::Denied(error));
    }
    let code = query
        .code
        .ok_or_else(|| SignInError::Refused("callback without code".into()))?;
    let client = client_for(config, headers)?;
    check_same_browser(config, headers, &pending, &client.host)?;
    let id_token = exchange_code(sign_in, client, &code, &pending.code_verifier).await?;
    let now = crate::api::now();
    let token = id_token::validate(
        &sign_in.provider,
        config,
        client,
        &id_token,
        &pending.nonce,
        now,
    )
    .await?;
    let mut user = token.user(config)?;
    if config.claims.roles.is_none() {
        // The provider says nothing of roles: the ones an operator gave the
        // user (`PUT /v1/users/{id}`) stay, as a login would replace them.
        user.roles = sign_in
            .api
            .store
            .user(&user.user_id)
            .await
            .map_err(|e| SignInError::Store(e.to_string()))?
            .map(|known| known.roles)
            .unwrap_or_default();
    }
    let request = CreateSessionRequest {
        user_id: user.user_id,
        email: user.email,
        roles: user.roles,
        permissions: None,
        // Set by the filter from Envoy's view of the client.
        client_ip: header_text(headers, "x-portero-client-ip").unwrap_or_default(),
        user_agent: header_text(headers, "user-agent")
            .filter(|ua| ua.len() <= 1024)
            .unwrap_or_default(),
    };
    let created = start_session(&sign_in.api, &request)
        .await
        .map_err(|e| match e.status() {
            StatusCode::FORBIDDEN => SignInError::Banned,
            StatusCode::SERVICE_UNAVAILABLE => SignInError::Store(e.to_string()),
            _ => SignInError::Refused(format!("the session was refused: {e}")),
        })?;
    // Back-channel logout names the provider's session: remember which
    // portero session it made. Without that note the session could not be
    // ended from the provider, so it does not survive a failed note.
    if let Some(sid) = token.provider_session() {
        let lifetime = Duration::from_secs(sign_in.api.lifetimes.absolute);
        let noted = sign_in
            .api
            .store
            .index_provider_session(&config.issuer, sid, &created.session_handle, lifetime)
            .await;
        if let Err(e) = noted {
            let _ = sign_in.api.store.end(&created.session_handle).await;
            return Err(SignInError::Store(e.to_string()));
        }
    }
    tracing::info!(
        target: LOG_TARGET,
        user = %request.user_id,
        session_hash = %session_hash(&created.session_handle),
        provider_session = token.provider_session().is_some(),
        subject_present = token.subject().is_some(),
        "signed in through the provider"
    );
    // A page, not a redirect: see `signed_in_page`. The pre-login cookie
    // has done its work: cleared, so the apps never see it.
    let mut response = local_response(portero_core::pages::signed_in_page(&pending.return_to));
    let cleared = format!(
        "{}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0",
        config.pre_login_cookie
    );
    if let Ok(value) = HeaderValue::from_str(&cleared) {
        response.headers_mut().append("set-cookie", value);
    }
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(config.session_start_header.as_bytes()),
        HeaderValue::from_str(&created.session_id),
    ) {
        response.headers_mut().insert(name, value);
    }
    Ok(response)
}

/// "Take the pending sign-in": read and deleted at once, so a `state`
/// finishes at most one sign-in.
async fn take_pending_sign_in(sign_in: &SignIn, state: &str) -> Result<PendingSignIn, SignInError> {
    if state.len() != 43 || !state.bytes().all(is_base64url) {
        return Err(SignInError::Refused("not a state this sidecar made".into()));
    }
    sign_in
        .api
        .store
        .take_sign_in(state)
        .await
        .map_err(|e| SignInError::Store(e.to_string()))?
        .ok_or_else(|| SignInError::Refused("unknown, used or expired state".into()))
}

/// "Check it is the same browser": the pre-login cookie set when the
/// sign-in started (login CSRF: an attacker's `code` and `state` sent to a
/// victim's browser find no such cookie there), on the same app.
fn check_same_browser(
    config: &OidcConfig,
    headers: &HeaderMap,
    pending: &PendingSignIn,
    host: &str,
) -> Result<(), SignInError> {
    let presented = cookie_value(headers, &config.pre_login_cookie).map(|v| digest(&v));
    let same = presented.is_some_and(|p| {
        subtle::ConstantTimeEq::ct_eq(p.as_bytes(), pending.browser_binding.as_bytes()).into()
    });
    if !same {
        return Err(SignInError::Refused(
            "the sign-in was started in another browser (no matching pre-login cookie)".into(),
        ));
    }
    if pending.host != host {
        return Err(SignInError::Refused(
            "the sign-in was started for another app".into(),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

/// "Exchange the code" at the token endpoint, as a confidential client
/// (`client_secret_basic`) with the PKCE verifier: the ID token. The
/// provider's access and refresh tokens are dropped here.
async fn exchange_code(
    sign_in: &SignIn,
    client: &config::Client,
    code: &str,
    code_verifier: &str,
) -> Result<String, SignInError> {
    let metadata = sign_in
        .provider
        .metadata()
        .await
        .map_err(SignInError::Provider)?;
    let url = &metadata.token_endpoint;
    let response = sign_in
        .provider
        .http()
        .post(url)
        .basic_auth(
            form_encode(&client.client_id),
            Some(form_encode(&client.client_secret)),
        )
        .header("accept", "application/json")
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", client.redirect_uri.as_str()),
            ("code_verifier", code_verifier),
        ])
        .send()
        .await
        .map_err(|e| SignInError::Provider(ProviderError(format!("POST {url}: {e}"))))?;
    let status = response.status();
    let body = read_body(response, url).await.map_err(|e| {
        if status.is_client_error() {
            // invalid_grant and the like: this code will never work.
            SignInError::Refused(format!("code exchange refused: {e}"))
        } else {
            SignInError::Provider(e)
        }
    })?;
    let tokens: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| SignInError::Provider(ProviderError(format!("token response: {e}"))))?;
    tokens
        .id_token
        .ok_or_else(|| SignInError::Refused("the token response has no id_token".into()))
}

/// The app the browser is signing in to, by its `Host`.
fn client_for<'a>(
    config: &'a OidcConfig,
    headers: &HeaderMap,
) -> Result<&'a config::Client, SignInError> {
    let host = header_text(headers, "host")
        .unwrap_or_default()
        .to_ascii_lowercase();
    config
        .clients
        .iter()
        .find(|c| c.host == host)
        .ok_or_else(|| SignInError::Refused(format!("no app is configured for host {host:?}")))
}

impl SignInError {
    fn into_page(self) -> Response {
        match self {
            SignInError::Provider(e) => {
                tracing::error!(target: LOG_TARGET, error = %e, "sign-in: provider unavailable");
                try_again_page("5")
            }
            SignInError::Store(e) => {
                tracing::error!(target: LOG_TARGET, error = %e, "sign-in: store unavailable");
                try_again_page("1")
            }
            SignInError::Refused(why) => {
                tracing::warn!(target: LOG_TARGET, reason = %why, "sign-in refused");
                page(
                    StatusCode::BAD_REQUEST,
                    "Sign-in didn't complete",
                    "This sign-in has expired, was already used, or was started elsewhere. \
                     Start again from the page you wanted.",
                )
            }
            SignInError::Denied(error) => {
                tracing::info!(target: LOG_TARGET, error = %error.chars().take(64).collect::<String>(), "sign-in denied by the provider");
                page(
                    StatusCode::UNAUTHORIZED,
                    "Sign-in didn't complete",
                    "The sign-in was cancelled or not allowed. Start again from the page \
                     you wanted.",
                )
            }
            SignInError::Banned => {
                tracing::warn!(target: LOG_TARGET, "sign-in of a banned user refused");
                page(
                    StatusCode::FORBIDDEN,
                    "This account can't sign in",
                    "Your account is not allowed to sign in here. If you think this is \
                     wrong, ask your administrator.",
                )
            }
        }
    }
}

/// A 503 page: signing in is briefly unavailable; nothing was lost.
fn try_again_page(retry_after_seconds: &'static str) -> Response {
    let mut response = page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again in a moment",
        "Signing in is briefly unavailable. Try again in a moment.",
    );
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from_static(retry_after_seconds));
    response
}

fn page(status: StatusCode, title: &str, message: &str) -> Response {
    local_response(portero_core::pages::built_in_page(
        u32::from(status.as_u16()),
        title,
        message,
        "Go to the home page",
        "/",
    ))
}

/// One of the core's pages as an HTTP response.
fn local_response(local: portero_core::http::LocalResponse) -> Response {
    let status = u16::try_from(local.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, local.body).into_response();
    for (name, value) in local.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// A 303 to `location` with `headers`, never cached.
fn redirect(location: &str, headers: &[(&str, String)]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let all = [
        ("location", location.to_string()),
        ("cache-control", "no-store".to_string()),
    ];
    for (name, value) in all
        .iter()
        .map(|(n, v)| (*n, v))
        .chain(headers.iter().map(|(n, v)| (*n, v)))
    {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// RFC 7636 `S256`: base64url(SHA-256(verifier)).
fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn digest(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes()))
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

/// RFC 6749 §2.3.1: client id and secret are form-encoded before they go
/// into HTTP Basic.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_is_rfc_7636s_example() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn the_pre_login_cookie_is_found_among_others_and_only_by_its_name() {
        let mut headers = HeaderMap::new();
        headers.append(
            "cookie",
            HeaderValue::from_static("a=1; __Host-portero-oidc=xyz"),
        );
        headers.append(
            "cookie",
            HeaderValue::from_static("__Host-portero-oidc-x=no"),
        );
        assert_eq!(
            cookie_value(&headers, "__Host-portero-oidc").as_deref(),
            Some("xyz")
        );
        assert_eq!(cookie_value(&headers, "__Host-portero"), None);
    }

    #[test]
    fn basic_credentials_are_form_encoded() {
        assert_eq!(form_encode("a b:c%"), "a+b%3Ac%25");
    }
}
