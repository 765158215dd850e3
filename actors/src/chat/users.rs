//! Apps, server keys, users and their tokens: the directory side of identity.

use super::*;

/// Attempts to record a session revocation in group 0 after the first one failed.
const REVOCATION_RETRIES: usize = 30;
/// Time between two of those attempts.
const REVOCATION_RETRY_EVERY: Duration = Duration::from_secs(2);

impl Chat {
    /// The token-signing secret of the cluster, created on first use.
    pub async fn token_secret(&self) -> Result<String, ChatError> {
        if let Some(s) = self.inner.directory.secret()? {
            return Ok(s);
        }
        let candidate = hex::encode(rand::random::<[u8; 32]>());
        match self
            .dir(DirCommand::InitSecret { secret: candidate })
            .await?
        {
            DirReply::Secret(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// The token-signing keys of the cluster, the current one first.
    pub fn token_keys(&self) -> Result<crate::directory::token_keys::TokenKeys, ChatError> {
        Ok(self.inner.directory.token_keys()?)
    }

    /// Replaces the token-signing secret: a new one signs from now on, and tokens signed with
    /// the one it replaces are accepted for `grace` more (see `directory::token_keys`).
    pub async fn rotate_token_secret(
        &self,
        grace: Duration,
    ) -> Result<crate::directory::token_keys::TokenKeys, ChatError> {
        self.token_secret().await?;
        let command = DirCommand::RotateTokenSecret {
            secret: crate::directory::token_keys::SecretText(hex::encode(
                rand::random::<[u8; 32]>(),
            )),
            now_ms: time::now_ms(),
            grace_ms: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
        };
        match self.dir(command).await? {
            DirReply::TokenKeys(keys) => Ok(keys),
            DirReply::Refused(why) => Err(ChatError::bad(why)),
            other => Err(unexpected(other)),
        }
    }

    // ---- apps and keys

    /// Creates an app (or returns the existing one with this id).
    pub async fn create_app(
        &self,
        id: Option<String>,
        name: &str,
        settings: Value,
    ) -> Result<App, ChatError> {
        let now = time::now_ms();
        let app = App {
            id: id.unwrap_or_else(new_id),
            name: name.to_string(),
            settings: Json(settings),
            created_at: now,
            updated_at: now,
        };
        match self.dir(DirCommand::CreateApp { app }).await? {
            DirReply::App(app) => Ok(app),
            other => Err(unexpected(other)),
        }
    }

    pub fn app(&self, id: &str) -> Result<Option<App>, ChatError> {
        Ok(self.inner.directory.app(id)?.map(Arc::unwrap_or_clone))
    }

    pub fn apps(&self) -> Result<Vec<App>, ChatError> {
        Ok(self.inner.directory.apps()?)
    }

    pub async fn update_app(
        &self,
        id: &str,
        name: Option<String>,
        settings: Option<Value>,
    ) -> Result<App, ChatError> {
        if let Some(s) = &settings {
            super::retention::retention_of(s)?;
        }
        match self
            .dir(DirCommand::UpdateApp {
                id: id.to_string(),
                name,
                settings: settings.map(Json),
                now: time::now_ms(),
            })
            .await?
        {
            DirReply::App(app) => Ok(app),
            DirReply::NotFound(w) => Err(ChatError::NotFound(w)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_app(&self, id: &str) -> Result<(u64, u64), ChatError> {
        match self
            .dir(DirCommand::DeleteApp { id: id.to_string() })
            .await?
        {
            DirReply::Deleted { users, channels } => Ok((users, channels)),
            DirReply::NotFound(w) => Err(ChatError::NotFound(w)),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a server key for `app` with `scopes` (of [`crate::model::KEY_SCOPES`]); the
    /// plaintext is returned once and only its hash kept. At most `max_api_keys_per_app`
    /// unrevoked keys per app.
    pub async fn create_api_key(
        &self,
        app: &str,
        name: &str,
        scopes: Vec<String>,
    ) -> Result<(ApiKey, String), ChatError> {
        if self.inner.directory.app(app)?.is_none() {
            return Err(ChatError::not_found("app"));
        }
        validate::text_len("name", name, 1, 100)?;
        if scopes.is_empty() {
            return Err(ChatError::bad("a key needs at least one scope"));
        }
        if let Some(bad) = scopes
            .iter()
            .find(|s| !crate::model::KEY_SCOPES.contains(&s.as_str()))
        {
            return Err(ChatError::bad(format!(
                "unknown scope {bad}; scopes are {}",
                crate::model::KEY_SCOPES.join(", ")
            )));
        }
        let max = self.inner.max_api_keys_per_app as usize;
        if self.api_keys(app)?.len() >= max {
            return Err(ChatError::LimitExceeded(format!(
                "an app has at most {max} active keys (limits.api_keys_per_app): revoke one first"
            )));
        }
        let plain = format!("chatsdk_{}", hex::encode(rand::random::<[u8; 20]>()));
        let key = ApiKey {
            id: new_id(),
            app_id: app.to_string(),
            name: name.to_string(),
            scopes,
            hash: hash_hex(plain.as_bytes()),
            created_at: time::now_ms(),
            revoked_at: None,
        };
        self.dir(DirCommand::PutApiKey { key: key.clone() }).await?;
        Ok((key, plain))
    }

    /// The app's keys that are not revoked, oldest first.
    pub fn api_keys(&self, app: &str) -> Result<Vec<ApiKey>, ChatError> {
        let mut keys: Vec<ApiKey> = self
            .inner
            .directory
            .api_keys()?
            .into_iter()
            .filter(|k| k.app_id == app && k.revoked_at.is_none())
            .collect();
        keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(keys)
    }

    /// Revokes key `id` of `app`: refused on every node once this returns.
    pub async fn revoke_api_key(&self, app: &str, id: &str) -> Result<ApiKey, ChatError> {
        let mut key = self
            .inner
            .directory
            .api_keys()?
            .into_iter()
            .find(|k| k.app_id == app && k.id == id && k.revoked_at.is_none())
            .ok_or_else(|| ChatError::not_found("key"))?;
        key.revoked_at = Some(time::now_ms());
        self.dir_everywhere(DirCommand::PutApiKey { key: key.clone() })
            .await?;
        Ok(key)
    }

    /// The active key whose plaintext is `plain`.
    pub fn api_key(&self, plain: &str) -> Result<Option<ApiKey>, ChatError> {
        Ok(self
            .inner
            .directory
            .api_key(&hash_hex(plain.as_bytes()))?
            .filter(|k| k.revoked_at.is_none())
            .map(Arc::unwrap_or_clone))
    }

    // ---- users

    pub fn user(&self, app: &str, id: &str) -> Result<Option<Arc<User>>, ChatError> {
        Ok(self.inner.directory.user(app, id)?.filter(|u| !u.deleted))
    }

    /// A user including anonymised ones (for token checks).
    pub fn user_record(&self, app: &str, id: &str) -> Result<Option<Arc<User>>, ChatError> {
        Ok(self.inner.directory.user(app, id)?)
    }

    /// Users of an app, filtered by a case-insensitive substring of name or id (a scan of
    /// the app's users, run off the async workers).
    pub async fn users(
        &self,
        app: &str,
        q: Option<&str>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<User>, ChatError> {
        let (app, q) = (app.to_string(), q.map(str::to_lowercase));
        self.off_runtime(move |chat| {
            Ok(chat
                .inner
                .directory
                .users(&app)?
                .into_iter()
                .filter(|u| !u.deleted)
                .filter(|u| {
                    q.as_ref().is_none_or(|q| {
                        u.name.to_lowercase().contains(q) || u.id.to_lowercase().contains(q)
                    })
                })
                .skip(offset)
                .take(limit)
                .collect())
        })
        .await
    }

    pub async fn upsert_user(
        &self,
        app: &str,
        patch: UserPatch,
        mode: UpsertMode,
    ) -> Result<(UpsertAction, User), ChatError> {
        validate::user_id(&patch.id)?;
        if let Some(name) = &patch.name {
            validate::text_len("name", name, 1, 255)?;
        }
        let attributes = patch.custom.is_some() || patch.role.is_some();
        let (action, user) = match self
            .dir(DirCommand::UpsertUser {
                app_id: app.to_string(),
                patch,
                mode,
                now: time::now_ms(),
            })
            .await?
        {
            DirReply::User { action, user } => (action, user),
            other => return Err(unexpected(other)),
        };
        self.enroll_after_upsert(app, action, &user.id, attributes)
            .await;
        Ok((action, user))
    }

    /// Fires the enrollment triggers of a user write.
    async fn enroll_after_upsert(
        &self,
        app: &str,
        action: UpsertAction,
        user: &str,
        attributes: bool,
    ) {
        let trigger = match action {
            UpsertAction::Created => super::enrollment::Trigger::UserCreated,
            UpsertAction::Updated if attributes => super::enrollment::Trigger::AttributesChanged,
            _ => return,
        };
        self.enroll(app, user, trigger).await;
    }

    /// Creates or updates several users with one directory write (one Raft round for the
    /// whole list). Each patch is validated first; the result lists, in order, what happened
    /// to each user or why it was refused.
    pub async fn upsert_users(
        &self,
        app: &str,
        patches: Vec<UserPatch>,
        mode: UpsertMode,
    ) -> Result<Vec<Result<(UpsertAction, User), ChatError>>, ChatError> {
        let mut out: Vec<Option<Result<(UpsertAction, User), ChatError>>> =
            Vec::with_capacity(patches.len());
        let mut valid = Vec::new();
        for patch in patches {
            let checked = validate::user_id(&patch.id).and_then(|()| match &patch.name {
                Some(name) => validate::text_len("name", name, 1, 255),
                None => Ok(()),
            });
            match checked {
                Ok(()) => {
                    valid.push(patch);
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(e))),
            }
        }
        let mut done = if valid.is_empty() {
            Vec::new()
        } else {
            match self
                .dir(DirCommand::UpsertUsers {
                    app_id: app.to_string(),
                    patches: valid,
                    mode,
                    now: time::now_ms(),
                })
                .await?
            {
                DirReply::Users(users) => users,
                other => return Err(unexpected(other)),
            }
        }
        .into_iter();
        let mut enrolled = Vec::new();
        let out: Vec<_> = out
            .into_iter()
            .map(|slot| match slot {
                Some(refused) => refused,
                None => done
                    .next()
                    .ok_or_else(|| ChatError::Internal("bulk upsert answered short".into())),
            })
            .inspect(|r| {
                if let Ok((action, u)) = r {
                    enrolled.push((*action, u.id.clone()));
                }
            })
            .collect();
        for (action, id) in enrolled {
            // A bulk write carries profile fields; only a creation is a trigger here unless
            // custom data came with it (every patch of a bulk write may carry it).
            self.enroll_after_upsert(app, action, &id, false).await;
        }
        Ok(out)
    }

    /// Anonymises a user, revokes their tokens and closes their connections.
    pub async fn delete_user(&self, app: &str, id: &str) -> Result<User, ChatError> {
        self.check_no_hold(app, None, Some(id))?;
        let user = match self
            .dir(DirCommand::DeleteUser {
                app_id: app.to_string(),
                user_id: id.to_string(),
                now: time::now_ms(),
            })
            .await?
        {
            DirReply::User { user, .. } => user,
            DirReply::NotFound(w) => return Err(ChatError::NotFound(w)),
            other => return Err(unexpected(other)),
        };
        self.disconnect_user(app, id).await;
        Ok(user)
    }

    /// Spends a refresh token; a replayed one revokes its whole login session.
    /// `expires_at`: the token's expiry (s); its spend is remembered until then.
    pub async fn spend_refresh(
        &self,
        app: &str,
        user: &str,
        sid: &str,
        jti: &str,
        expires_at: u64,
    ) -> Result<(), ChatError> {
        // Spends are written at user rate: they go to the user's data shard, not to group 0.
        let op = StreamOp::SpendRefreshUntil {
            sid: sid.to_string(),
            jti: jti.to_string(),
            nonce: rand::random(),
            expires_at,
            now: crate::time::now_ms() / 1000,
        };
        let outcome = match self.write_stream(&user_stream(app, user), op).await? {
            StreamReply::Refresh(outcome) => outcome,
            other => return Err(unexpected_stream(other)),
        };
        if outcome == RefreshOutcome::Spent {
            return Ok(());
        }
        // A replay revokes the session everywhere: recorded in group 0, which every node's
        // token checks read. Proposed again on every refused spend until it lands.
        let kept = u64::try_from(self.inner.revocations_kept.as_millis()).unwrap_or(u64::MAX);
        let revoke = DirCommand::RevokeSessionUntil {
            app_id: app.to_string(),
            user_id: user.to_string(),
            sid: sid.to_string(),
            until_ms: crate::time::now_ms().saturating_add(kept),
        };
        if let Err(e) = self.dir(revoke.clone()).await {
            // The shard already refuses this session's refreshes; its access tokens stay
            // valid until group 0 knows, so keep trying in the background.
            tracing::error!(app, user, error = %e, "session revocation not recorded yet; retrying");
            self.retry_revocation(revoke);
        }
        Err(ChatError::Forbidden(match outcome {
            RefreshOutcome::Replayed => "refresh token replayed: session revoked".into(),
            _ => "session revoked".into(),
        }))
    }

    /// Proposes a session revocation until it lands: [`REVOCATION_RETRIES`] attempts, one
    /// every [`REVOCATION_RETRY_EVERY`] (bounded in count and time; a later refresh of the
    /// session proposes it again).
    fn retry_revocation(&self, revoke: DirCommand) {
        let chat = self.clone();
        tokio::spawn(async move {
            for _ in 0..REVOCATION_RETRIES {
                tokio::time::sleep(REVOCATION_RETRY_EVERY).await;
                match chat.dir(revoke.clone()).await {
                    Ok(_) => return,
                    Err(e) => tracing::warn!(error = %e, "session revocation retry failed"),
                }
            }
            tracing::error!(
                "session revocation given up; the next refresh of the session retries it"
            );
        });
    }

    /// Whether a login session was revoked (by a refresh token replay).
    pub fn session_revoked(&self, app: &str, user: &str, sid: &str) -> Result<bool, ChatError> {
        Ok(self.inner.directory.session_revoked(app, user, sid)?)
    }

    /// Revokes every token issued to the user so far and closes their connections.
    pub async fn revoke_tokens(&self, app: &str, id: &str) -> Result<(), ChatError> {
        match self
            .dir(DirCommand::RevokeTokens {
                app_id: app.to_string(),
                user_id: id.to_string(),
                now: time::now_ms(),
            })
            .await?
        {
            DirReply::User { .. } => {}
            DirReply::NotFound(w) => return Err(ChatError::NotFound(w)),
            other => return Err(unexpected(other)),
        }
        self.disconnect_user(app, id).await;
        Ok(())
    }

    /// Ends `user`'s subscriptions to `stream` on every node (membership removed, channel
    /// deleted); clients get an unsubscribe push and do not resubscribe by themselves.
    pub(super) async fn unsubscribe_everywhere(&self, app: &str, user: &str, stream: &str) {
        let principal = format!("{app}:{user}");
        let frame = bytes::Bytes::from(chatsdk_proto::realtime::push_unsubscribe(
            stream,
            2000,
            "unsubscribed",
        ));
        self.inner
            .fanout
            .unsubscribe_user(&principal, stream, &frame);
        match codec::encode(&(&principal, stream)) {
            Ok(body) => self.tell_other_nodes(TOPIC_UNSUBSCRIBE, body).await,
            Err(e) => tracing::error!(error = %e, "unsubscribe not sent to other nodes"),
        }
    }

    pub(super) async fn disconnect_user(&self, app: &str, id: &str) {
        let principal = format!("{app}:{id}");
        self.inner
            .fanout
            .disconnect_user(&principal, CloseReason::FORCE_DISCONNECT);
        self.tell_other_nodes(TOPIC_DISCONNECT, principal.into_bytes())
            .await;
    }

    // ---- channels
}
