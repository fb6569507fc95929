//! User records: token version, status, roles and permissions, and
//! revoke-all (which ends every session of a user at once).

use portero_wire::{UserStatus, UserView};
use serde::Deserialize;

use super::{corrupt, random_token, string_list, Store, StoreError};

/// `revoke_user.lua`'s reply.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum RevokeUserReply {
    Revoked { ended: u64, ver: u64 },
    UserTagCollision,
}

/// `update_user.lua`'s reply.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum UpdateUserReply {
    Updated,
    UserTagCollision,
}

impl Store {
    /// The user's current token version (0 for a user never seen).
    pub async fn token_version(&self, user_id: &str) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        let ver: Option<u64> = {
            let result = redis::cmd("HGET")
                .arg(self.user_key(&self.user_tag(user_id)))
                .arg("ver")
                .query_async(&mut conn)
                .await;
            self.check(result).await?
        };
        Ok(ver.unwrap_or(0))
    }

    /// Ends every session of a user and bumps the token version, so any
    /// session or token minted before is refused from now on
    /// (`revoke_user.lua`). Returns (sessions ended, new version).
    pub async fn revoke_user(&self, user_id: &str) -> Result<(u64, u64), StoreError> {
        let tag = self.user_tag(user_id);
        let sessions = self.indexed_sessions(&tag).await?;
        let user_key = self.user_key(&tag);
        let mut invocation = self.scripts.revoke_user.prepare_invoke();
        invocation.key(&user_key).key(self.index_key(&tag));
        for (key, _) in &sessions {
            invocation.key(key);
        }
        invocation.arg(user_id).arg(random_token());
        match self.run_durable(invocation, &user_key).await? {
            RevokeUserReply::Revoked { ended, ver } => Ok((ended, ver)),
            RevokeUserReply::UserTagCollision => Err(corrupt("user tag collision")),
        }
    }

    /// The user record, if the user was ever seen.
    pub async fn user(&self, user_id: &str) -> Result<Option<UserView>, StoreError> {
        let tag = self.user_tag(user_id);
        let mut conn = self.connection().await?;
        let fields: Vec<Option<String>> = {
            let result = redis::cmd("HMGET")
                .arg(self.user_key(&tag))
                .arg(&["user_id", "status", "roles", "permissions", "ver"])
                .query_async(&mut conn)
                .await;
            self.check(result).await?
        };
        let [owner, status, roles, permissions, ver] = fields.as_slice() else {
            return Err(corrupt("user record"));
        };
        let Some(owner) = owner else {
            return Ok(None);
        };
        if owner != user_id {
            return Err(corrupt("user tag collision"));
        }
        Ok(Some(UserView {
            user_id: owner.clone(),
            status: if status.as_deref() == Some("banned") {
                UserStatus::Banned
            } else {
                UserStatus::Active
            },
            roles: string_list(roles.as_deref().unwrap_or("[]"))?,
            permissions: string_list(permissions.as_deref().unwrap_or("[]"))?,
            token_version: ver.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0),
        }))
    }

    /// Sets a user's status, roles and permissions (absent: unchanged).
    pub async fn update_user(
        &self,
        user_id: &str,
        status: Option<UserStatus>,
        roles: Option<&[String]>,
        permissions: Option<&[String]>,
    ) -> Result<Option<UserView>, StoreError> {
        let tag = self.user_tag(user_id);
        let key = self.user_key(&tag);
        let status = match status {
            Some(UserStatus::Active) => "active",
            Some(UserStatus::Banned) => "banned",
            None => "",
        };
        let list = |names: Option<&[String]>| match names {
            Some(names) => serde_json::to_string(names).map_err(|e| corrupt(&e.to_string())),
            None => Ok(String::new()),
        };
        let mut invocation = self.scripts.update_user.prepare_invoke();
        invocation
            .key(&key)
            .arg(user_id)
            .arg(random_token())
            .arg(status)
            .arg(list(roles)?)
            .arg(list(permissions)?);
        match self.run_durable(invocation, &key).await? {
            UpdateUserReply::Updated => {}
            UpdateUserReply::UserTagCollision => return Err(corrupt("user tag collision")),
        }
        self.user(user_id).await
    }
}
