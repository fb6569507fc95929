//! Logout everywhere.
//!
//! ```text
//! app's "Sign out" form ─► POST /.portero/oidc/logout        sign_out
//!     ends this portero session (the filter clears its cookie) ─► 303 to
//!     the provider's end_session_endpoint, which ends the provider's
//!     session and tells every app:
//! provider ─► POST /oidc/backchannel-logout (logout_token)    end_provider_session
//!     validate_logout ─► end the portero sessions made under that provider
//!     session (sid), or every session of that user (sub) ─► the revocation
//!     feed makes every worker refuse them within its bound
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::api::revoked;
use crate::store::is_session_token;

use super::id_token::validate_logout;
use super::{client_for, header_text, redirect, SignIn, SignInError, LOG_TARGET};

/// The oldest logout token accepted (by its `iat`), and so how long a seen
/// one is remembered: a replay later than this is refused as too old.
const LOGOUT_TOKEN_MAX_AGE: u64 = 600;

#[derive(Deserialize)]
pub(super) struct BackchannelLogout {
    logout_token: String,
}

/// "End the provider session": the provider's back-channel logout call.
/// Answers as §2.8 says: 200 when done, 400 with an OAuth error body when
/// the token is not acceptable, and 503 on store trouble (the provider may
/// retry; ending is idempotent).
pub(super) async fn end_provider_session(
    State(sign_in): State<Arc<SignIn>>,
    form: Result<Form<BackchannelLogout>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return logout_refused("expected a form with logout_token");
    };
    match end(&sign_in, &form.logout_token).await {
        Ok(()) => (StatusCode::OK, [("cache-control", "no-store")]).into_response(),
        Err(SignInError::Refused(why)) => {
            tracing::warn!(target: LOG_TARGET, reason = %why, "back-channel logout refused");
            logout_refused(&why)
        }
        Err(e) => {
            tracing::error!(target: LOG_TARGET, error = ?e, "back-channel logout failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("cache-control", "no-store"), ("retry-after", "1")],
            )
                .into_response()
        }
    }
}

async fn end(sign_in: &SignIn, logout_token: &str) -> Result<(), SignInError> {
    let config = &sign_in.config;
    let store = &sign_in.api.store;
    let now = crate::api::now();
    let token = validate_logout(&sign_in.provider, config, logout_token, now).await?;
    let unavailable = |e: crate::store::StoreError| SignInError::Store(e.to_string());
    if store
        .logout_token_seen(&config.issuer, &token.jti)
        .await
        .map_err(unavailable)?
    {
        // Acted on already (the provider retried, or someone replays it):
        // nothing more to end, whatever was signed in since.
        tracing::info!(target: LOG_TARGET, "logout token already acted on (a retry or a replay): nothing ended");
        return Ok(());
    }
    let issued_at = token.issued_at;
    if issued_at.saturating_add(LOGOUT_TOKEN_MAX_AGE) < now {
        return Err(SignInError::Refused("logout token: too old".into()));
    }
    let ended = match (&token.provider_session, &token.subject) {
        (Some(sid), _) => {
            let handles = store
                .provider_session_handles(&config.issuer, sid)
                .await
                .map_err(unavailable)?;
            let mut ended = 0;
            for handle in handles.iter().filter(|h| is_session_token(h)) {
                if store.end(handle).await.map_err(unavailable)? {
                    ended += 1;
                }
                revoked(&sign_in.api, None, Some(handle))
                    .await
                    .map_err(|e| SignInError::Store(e.to_string()))?;
            }
            ended
        }
        (None, Some(sub)) => {
            let user_id = format!("{}{sub}", config.claims.user_id_prefix);
            let (ended, _) = store.revoke_user(&user_id).await.map_err(unavailable)?;
            revoked(&sign_in.api, Some(&user_id), None)
                .await
                .map_err(|e| SignInError::Store(e.to_string()))?;
            ended
        }
        (None, None) => 0,
    };
    store
        .remember_logout_token(
            &config.issuer,
            &token.jti,
            Duration::from_secs(LOGOUT_TOKEN_MAX_AGE + config.leeway_seconds),
        )
        .await
        .map_err(unavailable)?;
    tracing::info!(
        target: LOG_TARGET,
        ended,
        by = if token.provider_session.is_some() { "sid" } else { "sub" },
        "provider session ended: back-channel logout"
    );
    Ok(())
}

fn logout_refused(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [("cache-control", "no-store")],
        Json(serde_json::json!({"error": "invalid_request", "error_description": why})),
    )
        .into_response()
}

/// "Sign out": the app's sign-out form posts here (a POST: a cross-site
/// page cannot sign a user out, the filter refuses its form). Ends this
/// portero session, has the filter clear the cookie, and sends the browser
/// to the provider to end its session there too, and so in every app.
pub(super) async fn sign_out(State(sign_in): State<Arc<SignIn>>, headers: HeaderMap) -> Response {
    match sign_out_here(&sign_in, &headers).await {
        Ok(response) => response,
        Err(e) => e.into_page(),
    }
}

async fn sign_out_here(sign_in: &SignIn, headers: &HeaderMap) -> Result<Response, SignInError> {
    let config = &sign_in.config;
    let client = client_for(config, headers)?;
    // The filter names the session it vouched for (and strips any a
    // client sent): none when the browser was signed out already.
    let handle = header_text(headers, "x-portero-session").filter(|h| is_session_token(h));
    if let Some(handle) = &handle {
        sign_in
            .api
            .store
            .end(handle)
            .await
            .map_err(|e| SignInError::Store(e.to_string()))?;
        revoked(&sign_in.api, None, Some(handle))
            .await
            .map_err(|e| SignInError::Store(e.to_string()))?;
        tracing::info!(target: LOG_TARGET, "signed out: session ended, on to the provider");
    }
    let home = format!("https://{}/", client.host);
    let location = match sign_in.provider.metadata().await {
        Ok(metadata) => match metadata
            .end_session_endpoint
            .as_deref()
            .and_then(|url| reqwest::Url::parse(url).ok())
        {
            Some(mut url) => {
                url.query_pairs_mut()
                    .append_pair("client_id", &client.client_id)
                    .append_pair("post_logout_redirect_uri", &home);
                url.to_string()
            }
            None => "/".to_string(),
        },
        Err(e) => {
            // Signed out here; the provider's session outlives it.
            tracing::error!(target: LOG_TARGET, error = %e, "sign-out: provider unavailable, signed out here only");
            "/".to_string()
        }
    };
    let mut response = redirect(&location, &[]);
    if let Ok(name) = HeaderName::from_bytes(config.session_end_header.as_bytes()) {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static("1"));
    }
    Ok(response)
}
