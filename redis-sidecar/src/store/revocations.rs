//! The revocation feed: a Redis stream of the changes (a session ended, a
//! user changed or revoked) that filters poll to evict their cached views.

use portero_wire::{RevocationEvent, RevocationFeed};

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
            let last: Vec<StreamEntry> = {
                let result = redis::cmd("XREVRANGE")
                    .arg(&key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut conn)
                    .await;
                self.check(result).await?
            };
            let cursor = last
                .first()
                .map_or_else(|| "0-0".to_string(), |e| e.0.clone());
            return Ok(RevocationFeed {
                cursor,
                events: Vec::new(),
                reset: false,
                more: false,
            });
        };
        // The API checked the cursor's form; anything else reads from the start.
        let after_id = stream_id(after).unwrap_or((0, 0));
        let (first, entries): (Vec<StreamEntry>, Vec<StreamEntry>) = {
            let result = redis::pipe()
                .cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .cmd("XRANGE")
                .arg(&key)
                .arg(format!("({after}"))
                .arg("+")
                .arg("COUNT")
                .arg(max)
                .query_async(&mut conn)
                .await;
            self.check(result).await?
        };
        let first_id = first.first().and_then(|e| stream_id(&e.0));
        // The entry after `after` may have been trimmed (or the stream lost):
        // the feed cannot vouch for what happened, so the filter starts over.
        let lost = match first_id {
            None => after_id > (0, 0),
            Some(first) => first > after_id && after_id > (0, 0),
        };
        if lost {
            let cursor = entries
                .last()
                .map(|e| e.0.clone())
                .or_else(|| first.first().map(|e| e.0.clone()))
                .unwrap_or_else(|| "0-0".to_string());
            return Ok(RevocationFeed {
                cursor,
                events: Vec::new(),
                reset: true,
                more: false,
            });
        }
        let more = entries.len() >= max;
        let cursor = entries
            .last()
            .map_or_else(|| after.to_string(), |e| e.0.clone());
        let events = entries
            .into_iter()
            .map(|(_, fields)| {
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
            })
            .collect();
        Ok(RevocationFeed {
            cursor,
            events,
            reset: false,
            more,
        })
    }
}
