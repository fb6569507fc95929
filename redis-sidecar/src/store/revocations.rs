//! The revocation feed: a Redis stream of the changes (a session ended, a
//! user changed or revoked) that filters poll to evict their cached views.

use portero_wire::{RevocationEvent, RevocationFeed};

use crate::backend::Conn;

use super::{Store, StoreError};

/// How many entries the revocation stream keeps (approximately): at one
/// poll a second per worker, hours of history.
pub const REVOCATION_FEED_LENGTH: u64 = 100_000;

/// A stream entry as XRANGE returns it: id and field/value pairs.
type StreamEntry = (String, Vec<(String, String)>);

/// A stream entry id `ms-seq` as a comparable pair.
pub fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

impl Store {
    /// Appends to the revocation feed. Called *after* the change it reports,
    /// so a filter that evicts on it and looks up again sees the change.
    pub async fn append_revocation(&self, event: &RevocationEvent) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.revocations_key())
            .arg("MAXLEN")
            .arg("~")
            .arg(REVOCATION_FEED_LENGTH)
            .arg("*");
        if let Some(user_id) = &event.user_id {
            cmd.arg("user").arg(user_id);
        }
        if let Some(handle) = &event.session_handle {
            cmd.arg("session").arg(handle);
        }
        let key = self.revocations_key();
        let mut write = self.begin_durable(&key).await?;
        let result = cmd.query_async::<String>(write.conn()).await;
        self.step(&mut write, result).await?;
        self.finish_durable(&mut write, &key).await
    }

    /// Reads the feed after `after` (see [`RevocationFeed`]).
    pub async fn read_revocations(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> Result<RevocationFeed, StoreError> {
        let key = self.revocations_key();
        let mut conn = self.connection().await?;
        let Some(after) = after else {
            return self.feed_from_now(&key, &mut conn).await;
        };
        // The API checked the cursor's form; anything else reads from the start.
        let after_id = stream_id(after).unwrap_or((0, 0));
        let (first, entries) = self.oldest_and_after(&key, &mut conn, after, max).await?;
        // The entry after `after` may have been trimmed (or the stream lost):
        // the feed cannot vouch for what happened, so the filter starts over.
        if trimmed_past(&first, after_id) {
            return Ok(start_over(&first, &entries));
        }
        Ok(page_after(after, entries, max))
    }

    /// Without a cursor: the stream's current end and no events, so a new
    /// reader starts from now.
    async fn feed_from_now(
        &self,
        key: &str,
        conn: &mut Conn,
    ) -> Result<RevocationFeed, StoreError> {
        let last: Vec<StreamEntry> = {
            let result = redis::cmd("XREVRANGE")
                .arg(key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(conn)
                .await;
            self.check(result).await?
        };
        let cursor = last
            .first()
            .map_or_else(|| "0-0".to_string(), |e| e.0.clone());
        Ok(RevocationFeed {
            cursor,
            events: Vec::new(),
            reset: false,
            more: false,
        })
    }

    /// The stream's oldest entry and up to `max` entries after `after`, in
    /// one round trip (the oldest tells whether `after` was trimmed).
    async fn oldest_and_after(
        &self,
        key: &str,
        conn: &mut Conn,
        after: &str,
        max: usize,
    ) -> Result<(Vec<StreamEntry>, Vec<StreamEntry>), StoreError> {
        let result = redis::pipe()
            .cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .cmd("XRANGE")
            .arg(key)
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(max)
            .query_async(conn)
            .await;
        self.check(result).await
    }
}

/// Whether entries after `after_id` may be gone: the stream is empty, or
/// its oldest entry is past `after_id`, and `after_id` is a real position
/// (not the start, `0-0`).
fn trimmed_past(first: &[StreamEntry], after_id: (u64, u64)) -> bool {
    let first_id = first.first().and_then(|e| stream_id(&e.0));
    match first_id {
        None => after_id > (0, 0),
        Some(first) => first > after_id && after_id > (0, 0),
    }
}

/// A reset: no events, the cursor at the newest entry known.
fn start_over(first: &[StreamEntry], entries: &[StreamEntry]) -> RevocationFeed {
    let cursor = entries
        .last()
        .map(|e| e.0.clone())
        .or_else(|| first.first().map(|e| e.0.clone()))
        .unwrap_or_else(|| "0-0".to_string());
    RevocationFeed {
        cursor,
        events: Vec::new(),
        reset: true,
        more: false,
    }
}

/// The entries read after `after`, as events; a full page says more wait.
fn page_after(after: &str, entries: Vec<StreamEntry>, max: usize) -> RevocationFeed {
    let more = entries.len() >= max;
    let cursor = entries
        .last()
        .map_or_else(|| after.to_string(), |e| e.0.clone());
    let events = entries
        .into_iter()
        .map(|(_, fields)| revocation_event(fields))
        .collect();
    RevocationFeed {
        cursor,
        events,
        reset: false,
        more,
    }
}

/// An entry's fields as an event; fields it does not know are skipped.
fn revocation_event(fields: Vec<(String, String)>) -> RevocationEvent {
    let mut event = RevocationEvent {
        user_id: None,
        session_handle: None,
    };
    for (name, value) in fields {
        match name.as_str() {
            "user" => event.user_id = Some(value),
            "session" => event.session_handle = Some(value),
            _ => {}
        }
    }
    event
}
