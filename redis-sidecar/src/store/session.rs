//! A session's record: login (`create`), look-up, access-token rotation,
//! end, and a user's list of live sessions, each one Lua script.

use std::collections::BTreeMap;

use portero_wire::{SessionSummary, SessionVerdict, SessionView};
use serde::{Deserialize, Serialize};

use super::{corrupt, random_token, string_list, Store, StoreError};

/// The parts of a session that never change after login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user_id: String,
    pub email: String,
    pub created_at: u64,
    pub expires_at: u64,
    pub client_ip: String,
    pub user_agent: String,
}

/// An access token ready to be stored.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub jti: String,
    pub expires_at: u64,
}

/// The answer of a look-up.
#[derive(Debug)]
pub enum Lookup {
    /// A usable session. `needs_rotation`: its access token has expired.
    Found {
        view: Box<SessionView>,
        needs_rotation: bool,
        /// The session's token version (for the claims of a rotated token).
        token_version: u64,
        /// Redis's clock at the look-up, Unix seconds.
        now: u64,
    },
    /// A definite "no".
    Refused(SessionVerdict),
}

/// What a login's store step did.
#[derive(Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The user is banned: no session.
    Refused(SessionVerdict),
    /// The session id is taken (the caller retries with a new one).
    IdTaken,
}

/// How a rotated-away access token is treated (seconds).
#[derive(Debug, Clone, Copy)]
pub struct RotationRules {
    /// After its successor's first use, the previous token still maps to
    /// it for this long (requests already in flight).
    pub grace: u64,
    /// Until its successor is first used, the previous token maps to it for
    /// at most this long (the client may never have received the answer).
    pub exchange_max: u64,
    /// End the session when a rotated-away token comes back after that.
    pub revoke_on_replay: bool,
}

/// Timing of a session: idle timeout and absolute lifetime, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub idle: u64,
    pub absolute: u64,
}

/// `lookup.lua`'s reply.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum LookupReply {
    Refused { verdict: SessionVerdict },
    UserMissing,
    Found(FoundSession),
}

#[derive(Debug, Deserialize)]
struct FoundSession {
    /// [`SessionRecord`] as JSON.
    record: String,
    idle_expires_at: u64,
    /// JSON lists, as the user hash holds them.
    roles: String,
    permissions: String,
    token: String,
    jti: String,
    exp: u64,
    rotations: u64,
    ver: u64,
    now: u64,
    token_presented: bool,
}

/// `rotate.lua`'s reply.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum RotateReply {
    Refused {
        verdict: SessionVerdict,
    },
    UserMissing,
    Current {
        rotated: bool,
        token: String,
        jti: String,
        exp: u64,
        rotations: u64,
    },
}

/// `create.lua`'s reply.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum CreateReply {
    Created {
        #[allow(dead_code)]
        ver: u64,
    },
    Refused {
        verdict: SessionVerdict,
    },
    Exists,
    UserTagCollision,
}

/// `end_session.lua`'s reply.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum EndSessionReply {
    Ended { existed: bool },
}

/// `list_sessions.lua`'s reply.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum ListSessionsReply {
    Listed {
        sessions: BTreeMap<String, ListedSession>,
    },
}

#[derive(Debug, Deserialize)]
struct ListedSession {
    record: String,
    seen: u64,
}

impl Store {
    /// Stores a new session (`create.lua`).
    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        &self,
        handle: &str,
        record: &SessionRecord,
        roles: &[String],
        permissions: Option<&[String]>,
        token: &IssuedToken,
        lifetimes: Lifetimes,
        now: u64,
    ) -> Result<CreateOutcome, StoreError> {
        let tag = Self::tag_of(handle);
        let json = serde_json::to_string(record).map_err(|e| corrupt(&e.to_string()))?;
        let roles = serde_json::to_string(roles).map_err(|e| corrupt(&e.to_string()))?;
        let permissions = match permissions {
            Some(p) => serde_json::to_string(p).map_err(|e| corrupt(&e.to_string()))?,
            None => String::new(),
        };
        let ttl = lifetimes.idle.min(lifetimes.absolute).max(1);
        let session_key = self.session_key(handle);
        let mut invocation = self.scripts.create.prepare_invoke();
        invocation
            .key(&session_key)
            .key(self.user_key(tag))
            .key(self.index_key(tag))
            .arg(json)
            .arg(record.expires_at)
            .arg(lifetimes.idle)
            .arg(now)
            .arg(ttl)
            .arg(self.seal_token(handle, &token.token)?)
            .arg(&token.jti)
            .arg(token.expires_at)
            .arg(&record.user_id)
            .arg(roles)
            .arg(permissions)
            .arg(handle)
            .arg(random_token());
        match self.run_durable(invocation, &session_key).await? {
            CreateReply::Created { .. } => Ok(CreateOutcome::Created),
            CreateReply::Refused { verdict } => Ok(CreateOutcome::Refused(verdict)),
            CreateReply::Exists => Ok(CreateOutcome::IdTaken),
            CreateReply::UserTagCollision => Err(corrupt("user tag collision")),
        }
    }

    /// Looks a session up with its user, renewing its idle expiry
    /// (`lookup.lua`; its times are Redis's).
    pub async fn lookup(
        &self,
        handle: &str,
        presented_jti: Option<&str>,
        rotation: &RotationRules,
    ) -> Result<Lookup, StoreError> {
        let tag = Self::tag_of(handle);
        let mut invocation = self.scripts.lookup.prepare_invoke();
        invocation
            .key(self.session_key(handle))
            .key(self.user_key(tag))
            .key(self.index_key(tag))
            .arg(handle)
            .arg(presented_jti.unwrap_or(""))
            .arg(if rotation.revoke_on_replay { "1" } else { "0" })
            .arg(rotation.grace);
        let found = match self.run(invocation).await? {
            LookupReply::Refused { verdict } => return Ok(Lookup::Refused(verdict)),
            LookupReply::UserMissing => return Err(StoreError::UserRecordMissing),
            LookupReply::Found(found) => found,
        };
        let record: SessionRecord =
            serde_json::from_str(&found.record).map_err(|e| corrupt(&e.to_string()))?;
        let view = SessionView {
            handle: handle.to_string(),
            user_id: record.user_id,
            email: record.email,
            roles: string_list(&found.roles)?,
            permissions: string_list(&found.permissions)?,
            created_at: record.created_at,
            last_seen_at: found.now,
            expires_at: record.expires_at,
            idle_expires_at: found.idle_expires_at,
            client_ip: record.client_ip,
            user_agent: record.user_agent,
            access_token: self.open_token(handle, &found.token)?,
            access_jti: found.jti,
            access_expires_at: found.exp,
            rotations: found.rotations,
            access_token_presented: found.token_presented,
        };
        Ok(Lookup::Found {
            view: Box::new(view),
            needs_rotation: found.exp <= found.now,
            token_version: found.ver,
            now: found.now,
        })
    }

    /// Replaces the access token if it is still `view.access_jti`
    /// (`rotate.lua`); `view` gets the current token afterwards. `Ok(true)`
    /// when this call rotated it.
    pub async fn rotate(
        &self,
        view: &mut SessionView,
        new: &IssuedToken,
        presented_jti: Option<&str>,
        rotation: &RotationRules,
    ) -> Result<Result<bool, SessionVerdict>, StoreError> {
        let session_key = self.session_key(&view.handle);
        let mut invocation = self.scripts.rotate.prepare_invoke();
        invocation
            .key(&session_key)
            .key(self.user_key(Self::tag_of(&view.handle)))
            .arg(&view.access_jti)
            .arg(self.seal_token(&view.handle, &new.token)?)
            .arg(&new.jti)
            .arg(new.expires_at)
            .arg(rotation.grace)
            .arg(rotation.exchange_max)
            .arg(presented_jti.unwrap_or(""));
        match self.run_durable(invocation, &session_key).await? {
            RotateReply::Refused { verdict } => Ok(Err(verdict)),
            RotateReply::UserMissing => Err(StoreError::UserRecordMissing),
            RotateReply::Current {
                rotated,
                token,
                jti,
                exp,
                rotations,
            } => {
                view.access_token = self.open_token(&view.handle, &token)?;
                view.access_jti = jti;
                view.access_expires_at = exp;
                view.rotations = rotations;
                if rotated {
                    view.access_token_presented = false;
                }
                Ok(Ok(rotated))
            }
        }
    }

    /// Ends a session (`end_session.lua`). False if there was none.
    pub async fn end(&self, handle: &str) -> Result<bool, StoreError> {
        let tag = Self::tag_of(handle);
        let session_key = self.session_key(handle);
        let mut invocation = self.scripts.end_session.prepare_invoke();
        invocation
            .key(&session_key)
            .key(self.index_key(tag))
            .arg(handle);
        let EndSessionReply::Ended { existed } = self.run_durable(invocation, &session_key).await?;
        Ok(existed)
    }

    /// The live sessions of a user (`list_sessions.lua`; dead index
    /// entries are dropped).
    pub async fn sessions_of(
        &self,
        user_id: &str,
        now: u64,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        let tag = self.user_tag(user_id);
        let sessions = self.indexed_sessions(&tag).await?;
        let mut invocation = self.scripts.list_sessions.prepare_invoke();
        invocation.key(self.index_key(&tag)).arg(now);
        for (key, handle) in &sessions {
            invocation.key(key).arg(handle);
        }
        let ListSessionsReply::Listed { sessions } = self.run(invocation).await?;
        let mut out = Vec::new();
        for (handle, listed) in sessions {
            let record: SessionRecord =
                serde_json::from_str(&listed.record).map_err(|e| corrupt(&e.to_string()))?;
            out.push(SessionSummary {
                handle,
                created_at: record.created_at,
                last_seen_at: listed.seen.max(record.created_at),
                expires_at: record.expires_at,
                client_ip: record.client_ip,
                user_agent: record.user_agent,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::scripts::read_reply;
    use super::*;

    #[test]
    fn script_replies_are_read_defensively() {
        let refused: LookupReply =
            read_reply(r#"{"status":"refused","verdict":"user_banned"}"#).unwrap();
        assert!(matches!(
            refused,
            LookupReply::Refused {
                verdict: SessionVerdict::UserBanned
            }
        ));
        // An unknown verdict, a missing field, a wrong type: corrupt, never a verdict.
        for bad in [
            r#"{"status":"refused","verdict":"maybe"}"#,
            r#"{"status":"found","record":"{}"}"#,
            r#"{"status":"found","record":"{}","idle_expires_at":"soon"}"#,
            r#"{"status":"exploded"}"#,
            "",
        ] {
            assert!(matches!(
                read_reply::<LookupReply>(bad),
                Err(StoreError::Corrupt(_))
            ));
        }
        // cjson writes an empty table as {}: an empty session list.
        let listed: ListSessionsReply = read_reply(r#"{"status":"listed","sessions":{}}"#).unwrap();
        let ListSessionsReply::Listed { sessions } = listed;
        assert!(sessions.is_empty());
        assert!(string_list("not json").is_err());
    }
}
