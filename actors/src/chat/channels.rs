//! Channels and memberships: creation, roles, removal, and the events they cause.

use super::*;

impl Chat {
    pub fn channel(&self, app: &str, id: &str) -> Result<Option<Arc<Channel>>, ChatError> {
        Ok(self.inner.directory.channel(app, id)?)
    }

    /// The caller's membership, re-read through the directory's leader when not found locally
    /// (a membership just granted elsewhere may not be applied here yet).
    pub async fn membership(
        &self,
        app: &str,
        channel: &str,
        user: &str,
    ) -> Result<Option<Arc<Member>>, ChatError> {
        if let Some(m) = self.inner.directory.member(app, channel, user)? {
            return Ok(Some(m));
        }
        // Boxed: the read barrier is the rare path (a membership granted on another node an
        // instant ago); inline, its future would size every caller's.
        Box::pin(self.inner.cluster.linearizable_reader(META_GROUP)).await?;
        Ok(self.inner.directory.member(app, channel, user)?)
    }

    /// How busy a channel is (a channel that cannot be read now shows as quiet, logged).
    pub async fn activity(&self, app: &str, channel: &str) -> crate::model::Activity {
        match self
            .query(&chat_stream(app, channel), StreamQuery::Activity)
            .await
        {
            Ok(QueryAnswer::Activity(a)) => a,
            Ok(_) => crate::model::Activity::default(),
            Err(e) => {
                tracing::debug!(app, channel, error = %e, "channel activity unavailable");
                crate::model::Activity::default()
            }
        }
    }

    pub fn members(&self, app: &str, channel: &str) -> Result<Vec<Member>, ChatError> {
        Ok(self.inner.directory.members(app, channel)?)
    }

    /// A channel the caller may read, with the caller's membership.
    pub async fn readable_channel(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(Channel, Option<Member>), ChatError> {
        let ch = self
            .channel(&caller.app, id)?
            .ok_or_else(|| ChatError::not_found("channel"))?;
        let me = match &caller.user {
            Some(u) => self.membership(&caller.app, id, u).await?,
            None => None,
        };
        if me.is_none()
            && !caller.server
            && !self
                .open_to(&caller.app, &ch, caller.user.as_deref())
                .await?
        {
            return Err(ChatError::forbidden("not a member of this channel"));
        }
        Ok((Arc::unwrap_or_clone(ch), me.map(Arc::unwrap_or_clone)))
    }

    /// How many users (not deleted) and channels an app has (a scan, run off the async
    /// workers).
    pub async fn app_counts(&self, app: &str) -> Result<(usize, usize), ChatError> {
        let app = app.to_string();
        self.off_runtime(move |chat| {
            let users = chat.inner.directory.users(&app)?;
            let channels = chat.inner.directory.channels(&app)?.len();
            Ok((users.iter().filter(|u| !u.deleted).count(), channels))
        })
        .await
    }

    /// Every channel of an app, newest first (the operator's view; a scan, run off the async
    /// workers).
    pub async fn app_channels(
        &self,
        app: &str,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<Channel>, usize), ChatError> {
        let app = app.to_string();
        self.off_runtime(move |chat| {
            let mut all = chat.inner.directory.channels(&app)?;
            all.sort_by_key(|c| (std::cmp::Reverse(c.created_at), c.id.clone()));
            let total = all.len();
            Ok((all.into_iter().skip(offset).take(limit).collect(), total))
        })
        .await
    }

    /// Channels visible to `user`: their memberships and the app's open channels (a scan of
    /// the app's channels, run off the async workers).
    pub async fn channels_for(
        &self,
        app: &str,
        user: &str,
        kind: Option<&str>,
    ) -> Result<Vec<(Channel, Option<Member>)>, ChatError> {
        let (app, user, kind) = (app.to_string(), user.to_string(), kind.map(str::to_string));
        self.off_runtime(move |chat| chat.scan_channels_for(&app, &user, kind.as_deref()))
            .await
    }

    fn scan_channels_for(
        &self,
        app: &str,
        user: &str,
        kind: Option<&str>,
    ) -> Result<Vec<(Channel, Option<Member>)>, ChatError> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for id in self.inner.directory.user_channel_ids(app, user)? {
            if let Some(ch) = self.inner.directory.channel(app, &id)? {
                let me = self.inner.directory.member(app, &id, user)?;
                seen.insert(id);
                out.push((Arc::unwrap_or_clone(ch), me.map(Arc::unwrap_or_clone)));
            }
        }
        let workspaces: BTreeSet<String> = self
            .inner
            .directory
            .user_workspace_ids(app, user)?
            .into_iter()
            .collect();
        for ch in self.inner.directory.channels(app)? {
            let in_reach = ch
                .workspace_id
                .as_ref()
                .is_none_or(|ws| workspaces.contains(ws));
            if ch.kind.is_open() && in_reach && !seen.contains(&ch.id) {
                out.push((ch, None));
            }
        }
        if let Some(kind) = kind {
            out.retain(|(c, _)| c.kind.as_str() == kind);
        }
        out.sort_by_key(|(c, _)| std::cmp::Reverse(c.created_at));
        Ok(out)
    }

    /// Creates a channel; `created` is false when an idempotency key, DM pair or cid matched
    /// an existing one.
    pub async fn create_channel(
        &self,
        caller: &Caller,
        spec: NewChannel,
    ) -> Result<(bool, Channel), ChatError> {
        let app = &caller.app;
        let kind_name = spec.kind.clone().unwrap_or_else(|| "messaging".into());
        let kind = ChannelType::parse(&kind_name)
            .ok_or_else(|| ChatError::bad(format!("unknown channel type {kind_name}")))?;
        if let Some(name) = &spec.name {
            validate::text_len("name", name, 0, 255)?;
        }
        if let Some(k) = &spec.idempotency_key {
            validate::text_len("idempotencyKey", k, 1, 255)?;
        }
        if let Some(c) = &spec.config {
            super::retention::retention_of(c)?;
        }
        let creator = caller.user.clone();
        if let Some(c) = &creator {
            self.check_not_banned(app, c)?;
        }
        if spec.member_ids.len() > MAX_INITIAL_MEMBERS {
            return Err(ChatError::bad(format!(
                "at most {MAX_INITIAL_MEMBERS} members at creation; add more afterwards"
            )));
        }
        let mut member_ids: Vec<String> = Vec::new();
        let mut seen = BTreeSet::new();
        for m in creator.iter().chain(spec.member_ids.iter()) {
            validate::user_id(m)?;
            if seen.insert(m.clone()) {
                member_ids.push(m.clone());
            }
        }
        let missing: Vec<String> = member_ids
            .iter()
            .filter(|m| self.user(app, m).ok().flatten().is_none())
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(ChatError::NotFound(format!("users {}", missing.join(", "))));
        }
        if let Some(ws) = &spec.workspace_id {
            self.require_workspace_members(caller, ws, &member_ids)
                .await?;
        }
        // A blocked user cannot open a direct conversation with the one who blocked them.
        if let (ChannelType::Messaging, Some(me)) = (kind, &creator) {
            for other in member_ids.iter().filter(|m| *m != me) {
                if self.blocks(app, other, me)? {
                    return Err(ChatError::forbidden(
                        "this user blocked you: no conversation can be opened",
                    ));
                }
            }
        }
        let dm = kind == ChannelType::Messaging && spec.cid.is_none() && creator.is_some();
        let cid = match (&spec.cid, dm) {
            (Some(cid), _) => cid.clone(),
            (None, true) => {
                if member_ids.len() != 2 {
                    return Err(ChatError::bad(
                        "a messaging channel needs exactly one other member",
                    ));
                }
                let mut pair = member_ids.clone();
                pair.sort();
                format!(
                    "messaging:dm:{}",
                    hash_hex(json!(pair).to_string().as_bytes())
                )
            }
            (None, false) => format!("{}:{}", kind.as_str(), new_id()),
        };
        let now = time::now_ms();
        let channel = Channel {
            id: spec.id.unwrap_or_else(new_id),
            app_id: app.clone(),
            cid,
            kind,
            name: spec.name,
            image: spec.image,
            config: spec.config.map(Json).unwrap_or_else(Json::object),
            workspace_id: spec.workspace_id,
            created_by: creator.clone(),
            created_at: now,
            updated_at: now,
            idempotency_key: spec.idempotency_key,
            member_count: 0,
            dm,
        };
        let members: Vec<(String, Role)> = member_ids
            .iter()
            .map(|m| {
                (
                    m.clone(),
                    if Some(m) == creator.as_ref() && !dm {
                        Role::Owner
                    } else {
                        Role::Member
                    },
                )
            })
            .collect();
        let (created, channel) = match self
            .dir(DirCommand::CreateChannel {
                channel,
                members,
                now,
            })
            .await?
        {
            DirReply::Channel { created, channel } => (created, channel),
            other => return Err(unexpected(other)),
        };
        if created {
            for (i, m) in member_ids.iter().enumerate() {
                let event = Event::ChannelCreated(Box::new(channel.clone()));
                // The first member's copy is the one webhooks receive.
                self.append_user_event_hooked(app, m, event, i == 0).await;
            }
        }
        Ok((created, channel))
    }

    /// Updates name, image or config (owner or admin).
    pub async fn update_channel(
        &self,
        caller: &Caller,
        id: &str,
        name: Option<String>,
        image: Option<String>,
        config: Option<Value>,
    ) -> Result<Channel, ChatError> {
        self.require_role(caller, id, Role::Admin).await?;
        if let Some(c) = &config {
            super::retention::retention_of(c)?;
        }
        let ch = match self
            .dir(DirCommand::UpdateChannel {
                app_id: caller.app.clone(),
                channel_id: id.to_string(),
                name,
                image,
                config: config.map(Json),
                now: time::now_ms(),
            })
            .await?
        {
            DirReply::Channel { channel, .. } => channel,
            DirReply::NotFound(w) => return Err(ChatError::NotFound(w)),
            other => return Err(unexpected(other)),
        };
        let event = Event::ChannelUpdated(Box::new(ch.clone()));
        self.write_stream(
            &chat_stream(&caller.app, id),
            StreamOp::Append {
                id: new_id(),
                event,
            },
        )
        .await?;
        Ok(ch)
    }

    /// Deletes a channel and its history (owner only).
    pub async fn delete_channel(&self, caller: &Caller, id: &str) -> Result<(), ChatError> {
        self.check_no_hold(&caller.app, Some(id), None)?;
        self.require_role(caller, id, Role::Owner).await?;
        let members = self.members(&caller.app, id)?;
        match self
            .dir(DirCommand::DeleteChannel {
                app_id: caller.app.clone(),
                channel_id: id.to_string(),
            })
            .await?
        {
            DirReply::Channel { .. } => {}
            DirReply::NotFound(w) => return Err(ChatError::NotFound(w)),
            other => return Err(unexpected(other)),
        }
        self.write_stream(&chat_stream(&caller.app, id), StreamOp::Drop)
            .await?;
        let stream = chat_stream(&caller.app, id);
        for (i, m) in members.iter().enumerate() {
            let event = Event::ChannelDeleted {
                channel_id: id.to_string(),
            };
            self.append_user_event_hooked(&caller.app, &m.user_id, event, i == 0)
                .await;
            self.clear_flags(&caller.app, &m.user_id, id).await;
            self.unsubscribe_everywhere(&caller.app, &m.user_id, &stream)
                .await;
        }
        Ok(())
    }

    /// The caller's role in the channel, which must be at least `needed` (server keys pass).
    pub(super) async fn require_role(
        &self,
        caller: &Caller,
        channel: &str,
        needed: Role,
    ) -> Result<Option<Arc<Member>>, ChatError> {
        if self.channel(&caller.app, channel)?.is_none() {
            return Err(ChatError::not_found("channel"));
        }
        if caller.server {
            return Ok(match &caller.user {
                Some(u) => self.membership(&caller.app, channel, u).await?,
                None => None,
            });
        }
        let user = caller.user()?;
        let me = self
            .membership(&caller.app, channel, user)
            .await?
            .ok_or_else(|| ChatError::forbidden("not a member of this channel"))?;
        if me.role < needed {
            return Err(ChatError::Forbidden(format!(
                "requires the {} role",
                needed.as_str()
            )));
        }
        Ok(Some(me))
    }

    /// Adds members (owner, admin or moderator); returns the ids actually added.
    pub async fn add_members(
        &self,
        caller: &Caller,
        id: &str,
        users: Vec<String>,
        role: Role,
    ) -> Result<Vec<String>, ChatError> {
        let me = self.require_role(caller, id, Role::Moderator).await?;
        let ch = self
            .channel(&caller.app, id)?
            .ok_or_else(|| ChatError::not_found("channel"))?;
        if ch.dm {
            return Err(ChatError::forbidden("Direct message membership is fixed"));
        }
        if !caller.server && me.as_ref().is_none_or(|m| role > m.role) {
            return Err(ChatError::forbidden("cannot grant a role above your own"));
        }
        if users.is_empty() {
            return Err(ChatError::bad("userId or userIds is required"));
        }
        for u in &users {
            validate::user_id(u)?;
            if self.channel_banned(&caller.app, id, u)? {
                return Err(ChatError::Restricted(format!(
                    "user {u} is banned from this channel"
                )));
            }
            if !self.age_allows(&caller.app, &ch, u)? {
                return Err(ChatError::Restricted(format!(
                    "user {u} is not allowed in this channel by their supervisor's age restriction"
                )));
            }
            if self.user(&caller.app, u)?.is_none() {
                return Err(ChatError::NotFound(format!("user {u}")));
            }
        }
        if let Some(ws) = &ch.workspace_id {
            self.require_workspace_members(caller, ws, &users).await?;
        }
        let added = match self
            .dir(DirCommand::AddMembers {
                app_id: caller.app.clone(),
                channel_id: id.to_string(),
                users,
                role,
                now: time::now_ms(),
            })
            .await?
        {
            DirReply::Added(added) => added,
            DirReply::NotFound(w) => return Err(ChatError::NotFound(w)),
            other => return Err(unexpected(other)),
        };
        for u in &added {
            self.member_event(&caller.app, &ch, u, true).await?;
        }
        Ok(added)
    }

    pub(super) async fn member_event(
        &self,
        app: &str,
        ch: &Channel,
        user: &str,
        joined: bool,
    ) -> Result<(), ChatError> {
        let (channel_id, user_id) = (ch.id.clone(), user.to_string());
        let event = if joined {
            Event::MemberJoined {
                channel_id,
                user_id,
            }
        } else {
            Event::MemberLeft {
                channel_id,
                user_id,
            }
        };
        self.write_stream(
            &chat_stream(app, &ch.id),
            StreamOp::Append {
                id: new_id(),
                event: event.clone(),
            },
        )
        .await?;
        self.append_user_event(app, user, event).await;
        Ok(())
    }

    /// Changes a member's role under the hierarchy rules.
    pub async fn set_role(
        &self,
        caller: &Caller,
        id: &str,
        target: &str,
        role: Role,
    ) -> Result<(), ChatError> {
        let me = self.require_role(caller, id, Role::Moderator).await?;
        let ch = self
            .channel(&caller.app, id)?
            .ok_or_else(|| ChatError::not_found("channel"))?;
        if ch.dm {
            return Err(ChatError::forbidden("Direct message membership is fixed"));
        }
        let current = self
            .membership(&caller.app, id, target)
            .await?
            .ok_or_else(|| ChatError::not_found("member"))?;
        if !caller.server {
            let me = me.ok_or_else(|| ChatError::forbidden("not a member of this channel"))?;
            let is_self = caller.user.as_deref() == Some(target);
            if role > me.role || (!is_self && current.role >= me.role) {
                return Err(ChatError::forbidden(
                    "role changes must stay below your own role",
                ));
            }
        }
        match self
            .dir(DirCommand::SetRole {
                app_id: caller.app.clone(),
                channel_id: id.to_string(),
                user_id: target.to_string(),
                role,
            })
            .await?
        {
            DirReply::Done => Ok(()),
            DirReply::NotFound(w) => Err(ChatError::NotFound(w)),
            other => Err(unexpected(other)),
        }
    }

    /// Removes a member: anyone may leave; removing others needs a higher role.
    pub async fn remove_member(
        &self,
        caller: &Caller,
        id: &str,
        target: &str,
    ) -> Result<(), ChatError> {
        let ch = self
            .channel(&caller.app, id)?
            .ok_or_else(|| ChatError::not_found("channel"))?;
        let is_self = caller.user.as_deref() == Some(target);
        if !caller.server && !is_self {
            let me = self
                .require_role(caller, id, Role::Moderator)
                .await?
                .ok_or_else(|| ChatError::forbidden("not a member"))?;
            let current = self
                .membership(&caller.app, id, target)
                .await?
                .ok_or_else(|| ChatError::not_found("member"))?;
            if current.role >= me.role {
                return Err(ChatError::forbidden(
                    "cannot remove a member of equal or higher role",
                ));
            }
        }
        if ch.dm && !caller.server {
            return Err(ChatError::forbidden("Direct message membership is fixed"));
        }
        match self
            .dir(DirCommand::RemoveMember {
                app_id: caller.app.clone(),
                channel_id: id.to_string(),
                user_id: target.to_string(),
            })
            .await?
        {
            DirReply::Done => {}
            DirReply::NotFound(w) => return Err(ChatError::NotFound(w)),
            other => return Err(unexpected(other)),
        }
        self.member_event(&caller.app, &ch, target, false).await?;
        self.clear_flags(&caller.app, target, id).await;
        // The member_left event above is the last one the removed user receives.
        self.unsubscribe_everywhere(&caller.app, target, &chat_stream(&caller.app, id))
            .await;
        Ok(())
    }

    /// Sets the caller's star or mute flag. Flags are written at user rate, so they live with
    /// the user's stream (the data shard of `(app, user)`), not in group 0.
    pub async fn set_flags(
        &self,
        caller: &Caller,
        id: &str,
        muted: Option<bool>,
        starred: Option<bool>,
    ) -> Result<ChannelFlags, ChatError> {
        let user = caller.user()?.to_string();
        self.membership(&caller.app, id, &user)
            .await?
            .ok_or_else(|| ChatError::forbidden("not a member of this channel"))?;
        let op = StreamOp::SetFlags {
            channel: id.to_string(),
            muted,
            starred,
        };
        match self
            .write_stream(&user_stream(&caller.app, &user), op)
            .await?
        {
            StreamReply::Flags(flags) => Ok(flags),
            other => Err(unexpected_stream(other)),
        }
    }

    /// Forgets a user's flags on a channel they left (or that was deleted), so a later
    /// membership starts clean. Best effort: a failure is logged, and stale flags only decorate
    /// the channel.
    pub(super) async fn clear_flags(&self, app: &str, user: &str, channel: &str) {
        let op = StreamOp::SetFlags {
            channel: channel.to_string(),
            muted: Some(false),
            starred: Some(false),
        };
        if let Err(e) = self.write_stream(&user_stream(app, user), op).await {
            tracing::warn!(app, user, channel, error = %e, "channel flags not cleared");
        }
    }

    /// A user's flags on every channel where one is set (one query of the user's stream).
    pub async fn channel_flags(
        &self,
        app: &str,
        user: &str,
    ) -> Result<HashMap<String, ChannelFlags>, ChatError> {
        match self
            .query(&user_stream(app, user), StreamQuery::Flags)
            .await?
        {
            QueryAnswer::Flags(flags) => Ok(flags.into_iter().collect()),
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    // ---- messages

    pub(super) async fn append_user_event(&self, app: &str, user: &str, event: Event) {
        self.append_user_event_hooked(app, user, event, false).await
    }

    /// [`Chat::append_user_event`]; `hooked`: this copy of the event is the one webhooks
    /// receive.
    pub(super) async fn append_user_event_hooked(
        &self,
        app: &str,
        user: &str,
        event: Event,
        hooked: bool,
    ) {
        let stream = user_stream(app, user);
        let op = StreamOp::Append {
            id: new_id(),
            event,
        };
        let written = if hooked {
            self.write_stream_hooked(&stream, op).await
        } else {
            self.write_stream(&stream, op).await
        };
        if let Err(e) = written {
            tracing::warn!(app, user, error = %e, "user event not recorded");
        }
    }

    // ---- routing to channel actors
}
