//! Running the store's Lua scripts (one file each in `lua/`, loaded once)
//! and reading their JSON replies, plainly or as a durable write.

use redis::{Script, ScriptInvocation};
use serde::de::DeserializeOwned;

use super::{Store, StoreError};

/// The store's Lua scripts, one file each in `redis-sidecar/lua/`, whose
/// header states its KEYS, ARGV and reply. Every key a script touches is in
/// its KEYS (Redis Cluster routes on them), and every reply is one JSON
/// object with a `status`, read by [`read_reply`] into the reply type kept
/// beside the code that runs the script.
pub(super) struct Scripts {
    pub(super) lookup: Script,
    pub(super) rotate: Script,
    pub(super) create: Script,
    pub(super) revoke_user: Script,
    pub(super) update_user: Script,
    pub(super) end_session: Script,
    pub(super) list_sessions: Script,
}

impl Scripts {
    pub(super) fn load() -> Scripts {
        Scripts {
            lookup: Script::new(include_str!("../../lua/lookup.lua")),
            rotate: Script::new(include_str!("../../lua/rotate.lua")),
            create: Script::new(include_str!("../../lua/create.lua")),
            revoke_user: Script::new(include_str!("../../lua/revoke_user.lua")),
            update_user: Script::new(include_str!("../../lua/update_user.lua")),
            end_session: Script::new(include_str!("../../lua/end_session.lua")),
            list_sessions: Script::new(include_str!("../../lua/list_sessions.lua")),
        }
    }
}

/// Reads a script's JSON reply into its type: the one place script output
/// is interpreted. Anything else is a corrupt store, never a verdict.
pub(super) fn read_reply<T: DeserializeOwned>(json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("script reply: {e}")))
}

impl Store {
    /// Runs a script that writes what must survive a failover (see
    /// [`Store::begin_durable`], [`Store::finish_durable`]).
    pub(super) async fn run_durable<T: DeserializeOwned>(
        &self,
        invocation: ScriptInvocation<'_>,
        key: &str,
    ) -> Result<T, StoreError> {
        let mut write = self.begin_durable(key).await?;
        let result = invocation.invoke_async::<String>(write.conn()).await;
        let json = self.step(&mut write, result).await?;
        let reply = read_reply(&json)?;
        self.finish_durable(&mut write, key).await?;
        Ok(reply)
    }

    /// Runs a script and reads its reply (see [`read_reply`]).
    pub(super) async fn run<T: DeserializeOwned>(
        &self,
        invocation: ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.connection().await?;
        let result = invocation.invoke_async::<String>(&mut conn).await;
        let json = self.check(result).await?;
        read_reply(&json)
    }
}
