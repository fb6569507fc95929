//! The revocation feed: every change is reported to it once made, and
//! filters poll it to drop their cached views.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use portero_wire::{RevocationEvent, RevocationFeed};

use super::{ApiError, AppState, Caller, Filter};

/// Reports a change to the revocation feed, after it is made. If the feed
/// cannot be written the caller gets a 503 and retries (every change is
/// idempotent); until then filters' cached views may lag by their TTL.
pub(super) async fn revoked(
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

#[derive(serde::Deserialize)]
pub(super) struct FeedQuery {
    after: Option<String>,
}

/// Most events in one feed reply.
const FEED_PAGE: usize = 1000;

/// `GET /v1/revocations[?after=<cursor>]` (filter): what changed since.
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
