//! The revocation feed: every change is reported to it once made, and
//! filters poll it to drop their cached views.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use portero_wire::{RevocationEvent, RevocationFeed};

use super::openapi::{BadRequest, StoreUnavailable, Unauthorized, WrongRole};
use super::{ApiError, AppState, Caller, Filter};

/// Reports a change to the revocation feed, after it is made. If the feed
/// cannot be written the caller gets a 503 and retries (every change is
/// idempotent); until then filters' cached views may lag by their TTL.
pub(crate) async fn revoked(
    state: &AppState,
    user_id: Option<&str>,
    session_handle: Option<&str>,
) -> Result<(), ApiError> {
    let event = RevocationEvent {
        user_id: user_id.map(str::to_string),
        session_handle: session_handle.map(str::to_string),
    };
    state.store.append_revocation(&event).await?;
    Ok(())
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct FeedQuery {
    /// The `cursor` of the last answer, like `1700000000000-0`. Without it
    /// the feed answers with its current end and no events: start from now.
    after: Option<String>,
}

/// Most events in one feed reply.
const FEED_PAGE: usize = 1000;

/// Read the revocation feed: what changed since a cursor.
///
/// Filters poll it to drop cached session views. Every login, session end,
/// user change and revoke-all is appended after it is made. At most 1000
/// events an answer; `more` says more wait, `reset` that the feed cannot tell
/// what happened since `after` (drop every cached view). Filter credential.
#[utoipa::path(
    get,
    path = portero_wire::REVOCATIONS_PATH,
    tag = "revocations",
    security(("filter" = [])),
    params(FeedQuery),
    responses(
        (status = 200, description = "The events after the cursor, and the cursor to pass next", body = RevocationFeed),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = WrongRole),
        (status = 503, response = StoreUnavailable),
    )
)]
pub(super) async fn revocations(
    State(state): State<Arc<AppState>>,
    _caller: Caller<Filter>,
    axum::extract::Query(query): axum::extract::Query<FeedQuery>,
) -> Result<Json<RevocationFeed>, ApiError> {
    if let Some(after) = &query.after {
        if crate::store::stream_id(after).is_none() {
            return Err(ApiError::bad_request(
                "`after` must be a cursor like 1700000000000-0",
            ));
        }
    }
    let feed = state
        .store
        .read_revocations(query.after.as_deref(), FEED_PAGE)
        .await?;
    Ok(Json(feed))
}
