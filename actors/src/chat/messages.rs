//! Messages, threads, read positions and typing: the writes of a chat stream.

use super::*;

impl Chat {
    /// The caller's membership for writing: open channels are joined on first send.
    pub(super) async fn writer_membership(
        &self,
        caller: &Caller,
        ch: &Channel,
    ) -> Result<(), ChatError> {
        let user = caller.user()?;
        self.check_may_write(&caller.app, &ch.id, user)?;
        if self.membership(&caller.app, &ch.id, user).await?.is_some() {
            return Ok(());
        }
        // Boxed: joining on first write is rare, and its future (a directory write) would
        // otherwise size every send's.
        Box::pin(self.join_on_write(caller, ch, user)).await
    }

    /// A sender who is not a member joins an open channel (or is added by a server key).
    async fn join_on_write(
        &self,
        caller: &Caller,
        ch: &Channel,
        user: &str,
    ) -> Result<(), ChatError> {
        if caller.server || self.open_to(&caller.app, ch, Some(user)).await? {
            if self.user(&caller.app, user)?.is_none() {
                return Err(ChatError::NotFound(format!("user {user}")));
            }
            let added = match self
                .dir(DirCommand::AddMembers {
                    app_id: caller.app.clone(),
                    channel_id: ch.id.clone(),
                    users: vec![user.to_string()],
                    role: Role::Member,
                    now: time::now_ms(),
                })
                .await?
            {
                DirReply::Added(added) => added,
                other => return Err(unexpected(other)),
            };
            if !added.is_empty() {
                self.member_event(&caller.app, ch, user, true).await?;
            }
            return Ok(());
        }
        Err(ChatError::forbidden("not a member of this channel"))
    }

    /// Sends a message; a repeated client message id returns the first message
    /// (`duplicate` = true). The sender's rate limit is taken here, so every surface shares it.
    pub async fn send_message(
        &self,
        caller: &Caller,
        channel: &str,
        new: NewMessage,
    ) -> Result<Sent, ChatError> {
        // A server key writing on its users' behalf (imports, dual writes) is trusted with the
        // app's full authority and not limited.
        if !caller.server {
            let key = colon_joined(&[&caller.app, caller.user()?]);
            self.inner
                .send_limiter
                .take(&key)
                .map_err(|retry_after| ChatError::RateLimited { retry_after })?;
        }
        validate::text_len("text", &new.text, 1, 10_000)?;
        if let Some(c) = &new.client_msg_id {
            validate::text_len("clientMsgId", c, 1, 64)?;
        }
        let attachments = match new.attachments {
            None | Some(Value::Null) => Json::array(),
            Some(Value::Array(a)) if a.len() <= 32 => Json(Value::Array(a)),
            Some(_) => {
                return Err(ChatError::bad(
                    "attachments must be an array of at most 32 items",
                ))
            }
        };
        let ch = self
            .channel(&caller.app, channel)?
            .ok_or_else(|| ChatError::not_found("channel"))?;
        self.writer_membership(caller, &ch).await?;
        let attachments = if attachments.0.as_array().is_some_and(|a| !a.is_empty()) {
            Json(
                self.resolve_attachments(&caller.app, channel, attachments.0)
                    .await?,
            )
        } else {
            attachments
        };
        if ch.kind == ChannelType::Messaging {
            self.check_dm_block(&caller.app, &ch, caller.user()?)?;
        }
        if ch.config.0.get("readOnly") == Some(&Value::Bool(true)) && !caller.server {
            let role = self
                .membership(&caller.app, channel, caller.user()?)
                .await?
                .map(|m| m.role);
            if role.is_none_or(|r| r < Role::Admin) {
                return Err(ChatError::forbidden(
                    "this channel is read-only: only owners and admins post",
                ));
            }
        }
        if let Some(parent) = &new.parent_id {
            let stream = chat_stream(&caller.app, channel);
            match self
                .query(&stream, StreamQuery::Message { id: parent.clone() })
                .await?
            {
                QueryAnswer::Message(Some(p)) if p.parent_id.is_none() => {}
                QueryAnswer::Message(Some(_)) => {
                    return Err(ChatError::bad("replies cannot have replies"))
                }
                _ => return Err(ChatError::not_found("parent message")),
            }
        }
        if let Some(quoted) = &new.reply_to_id {
            let stream = chat_stream(&caller.app, channel);
            let q = StreamQuery::Message { id: quoted.clone() };
            if !matches!(self.query(&stream, q).await?, QueryAnswer::Message(Some(_))) {
                return Err(ChatError::bad(
                    "replyToId must name a message of this channel",
                ));
            }
        }
        let user_id = caller.user()?;
        let user = self
            .user(&caller.app, user_id)?
            .ok_or_else(|| ChatError::NotFound(format!("user {user_id}")))?;
        // Members are read only when the text can mention someone: most messages cannot, and
        // reading a large channel's members for each one dominated the cost of a send.
        let mentions = if new.text.contains('@') {
            let members = self.members(&caller.app, channel)?;
            mentions_in(
                &new.text,
                &members,
                &self.inner.directory,
                &caller.app,
                user_id,
            )
        } else {
            Vec::new()
        };
        let stream = chat_stream(&caller.app, channel);
        let message = Message {
            // A message with a client message id gets its id from the stream, derived from the
            // client id (`stream::client_message_id`), so that a retry finds the first send:
            // making one here would be thrown away.
            id: if new.client_msg_id.is_some() {
                String::new()
            } else {
                crate::locate::message_id(&caller.app, channel)
            },
            channel_id: channel.to_string(),
            user_id: user_id.to_string(),
            seq: 0,
            text: Some(new.text),
            attachments,
            parent_id: new.parent_id,
            reply_to_id: new.reply_to_id,
            client_msg_id: new.client_msg_id,
            created_at: time::now_ms(),
            edited_at: None,
            deleted_at: None,
            reply_count: 0,
            mentions,
            user: UserSummary::from(&*user),
        };
        let proposed = std::time::Instant::now();
        let written = self
            .write_stream(
                &stream,
                StreamOp::Send {
                    message: Box::new(message),
                },
            )
            .await
            .inspect_err(|_| self.inner.stats.send_failed())?;
        match written {
            mut reply @ StreamReply::Message { .. } => {
                let (duplicate, rendered) = match &mut reply {
                    StreamReply::Message {
                        duplicate,
                        rendered,
                        ..
                    } => (*duplicate, rendered.take()),
                    _ => (false, None),
                };
                self.inner
                    .stats
                    .sent(duplicate, proposed.elapsed().as_secs_f64());
                let message = reply.into_message().ok_or_else(message_missing)?;
                if !duplicate && message.parent_id.is_none() {
                    self.spawn_unread_notices(&stream, &caller.app, channel, user_id);
                }
                if !duplicate && !message.mentions.is_empty() {
                    // Boxed: most sends mention nobody, and this future would size them all.
                    Box::pin(self.record_mentions(&caller.app, &message)).await;
                }
                if !duplicate {
                    self.spawn_message_pushes(&caller.app, &message);
                }
                Ok(Sent {
                    message: *message,
                    duplicate,
                    rendered,
                })
            }
            StreamReply::Refused(why) => Err(ChatError::Conflict(why)),
            other => Err(unexpected_stream(other)),
        }
    }

    /// Edits the caller's own message.
    pub async fn edit_message(
        &self,
        caller: &Caller,
        channel: &str,
        id: &str,
        text: String,
    ) -> Result<Message, ChatError> {
        validate::text_len("text", &text, 1, 10_000)?;
        self.check_may_write(&caller.app, channel, caller.user()?)?;
        let (_, me) = self.readable_channel(caller, channel).await?;
        let m = self.message(caller, channel, id).await?;
        if !caller.server && (me.is_none() || caller.user.as_deref() != Some(m.user_id.as_str())) {
            return Err(ChatError::forbidden("you can only edit your own messages"));
        }
        match self
            .write_stream(
                &chat_stream(&caller.app, channel),
                StreamOp::Edit {
                    message_id: id.to_string(),
                    text,
                    now: time::now_ms(),
                },
            )
            .await?
        {
            reply @ StreamReply::Message { .. } => {
                reply.into_message().map(|m| *m).ok_or_else(message_missing)
            }
            StreamReply::NotFound(w) => Err(ChatError::NotFound(w)),
            StreamReply::Refused(w) => Err(ChatError::Conflict(w)),
            other => Err(unexpected_stream(other)),
        }
    }

    /// Soft-deletes a message (its author, or a moderator); `purge` removes it entirely
    /// (moderators only).
    pub async fn delete_message(
        &self,
        caller: &Caller,
        channel: &str,
        id: &str,
        purge: bool,
    ) -> Result<(), ChatError> {
        let (_, me) = self.readable_channel(caller, channel).await?;
        let m = self.message(caller, channel, id).await?;
        self.check_no_hold(&caller.app, Some(channel), Some(&m.user_id))?;
        if !caller.server {
            let me = me.ok_or_else(|| ChatError::forbidden("not a member of this channel"))?;
            let own = caller.user.as_deref() == Some(m.user_id.as_str());
            if !(me.role.can_moderate() || (own && !purge)) {
                return Err(ChatError::forbidden("not allowed to delete this message"));
            }
        }
        let op = if purge {
            StreamOp::Purge {
                message_id: id.to_string(),
            }
        } else {
            StreamOp::Delete {
                message_id: id.to_string(),
                now: time::now_ms(),
            }
        };
        match self
            .write_stream(&chat_stream(&caller.app, channel), op)
            .await?
        {
            StreamReply::Message { .. } => Ok(()),
            StreamReply::NotFound(w) => Err(ChatError::NotFound(w)),
            other => Err(unexpected_stream(other)),
        }
    }

    /// The channel of message `id` (see [`crate::locate`]): the one `hint` names, else the
    /// one the id's tag points to, among those the caller may read.
    pub async fn locate_message(
        &self,
        caller: &Caller,
        id: &str,
        hint: Option<&str>,
    ) -> Result<String, ChatError> {
        let candidates: Vec<String> = match (hint, crate::locate::tag_of(id)) {
            (Some(h), _) => vec![h.to_string()],
            (None, Some(tag)) => {
                let indexed = self.inner.directory.channels_tagged(&caller.app, &tag)?;
                if indexed.is_empty() {
                    // Channels made before the tag index: compute their tags.
                    self.inner
                        .directory
                        .channels(&caller.app)?
                        .into_iter()
                        .filter(|c| crate::locate::channel_tag(&caller.app, &c.id) == tag)
                        .map(|c| c.id)
                        .collect()
                } else {
                    indexed
                }
            }
            (None, None) => Vec::new(),
        };
        for channel in candidates {
            match self.message(caller, &channel, id).await {
                Ok(_) => return Ok(channel),
                Err(ChatError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ChatError::NotFound(
            "message (a message sent with a client message id is found with channel_id)".into(),
        ))
    }

    /// One message of a channel the caller may read.
    pub async fn message(
        &self,
        caller: &Caller,
        channel: &str,
        id: &str,
    ) -> Result<Message, ChatError> {
        self.readable_channel(caller, channel).await?;
        match self
            .query(
                &chat_stream(&caller.app, channel),
                StreamQuery::Message { id: id.to_string() },
            )
            .await?
        {
            QueryAnswer::Message(Some(m)) => Ok(*m),
            QueryAnswer::Message(None) => Err(ChatError::not_found("message")),
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    /// One message with its reactions, pin and poll as the caller sees them.
    pub async fn annotated_message(
        &self,
        caller: &Caller,
        channel: &str,
        id: &str,
    ) -> Result<(Message, Notes), ChatError> {
        self.readable_channel(caller, channel).await?;
        let q = StreamQuery::Annotated {
            id: id.to_string(),
            viewer: caller.user.clone(),
        };
        match self.query(&chat_stream(&caller.app, channel), q).await? {
            QueryAnswer::Annotated(Some(found)) => Ok(*found),
            QueryAnswer::Annotated(None) => Err(ChatError::not_found("message")),
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    /// A page of top-level messages with their annotations as the caller sees them.
    pub async fn messages(
        &self,
        caller: &Caller,
        channel: &str,
        page: MessagePage,
        limit: usize,
    ) -> Result<MessagePageOut, ChatError> {
        self.readable_channel(caller, channel).await?;
        let q = StreamQuery::Messages {
            page,
            limit,
            viewer: caller.user.clone(),
        };
        match self.query(&chat_stream(&caller.app, channel), q).await? {
            QueryAnswer::Messages {
                mut messages,
                notes,
                more,
                max_seq,
            } => {
                // The blocker's history leaves out the users they block.
                let blocked = self.block_filter(caller);
                if !blocked.is_empty() {
                    messages.retain(|m| !blocked.contains(&m.user_id));
                }
                Ok(MessagePageOut {
                    messages,
                    notes,
                    max_seq,
                    more,
                })
            }
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    /// Thread replies of a message.
    pub async fn replies(
        &self,
        caller: &Caller,
        channel: &str,
        parent: &str,
        limit: usize,
    ) -> Result<(Vec<Message>, Vec<Notes>), ChatError> {
        self.message(caller, channel, parent).await?;
        match self
            .query(
                &chat_stream(&caller.app, channel),
                StreamQuery::Replies {
                    parent: parent.to_string(),
                    limit,
                    viewer: caller.user.clone(),
                },
            )
            .await?
        {
            QueryAnswer::Messages {
                mut messages,
                notes,
                ..
            } => {
                // The blocker's threads leave out the users they block too.
                let blocked = self.block_filter(caller);
                if !blocked.is_empty() {
                    messages.retain(|m| !blocked.contains(&m.user_id));
                }
                Ok((messages, notes))
            }
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    /// Who took part in a thread: its parent's author and every replier, with their replies
    /// (the parent's author first, then by replies).
    pub async fn thread_participants(
        &self,
        caller: &Caller,
        channel: &str,
        parent: &str,
    ) -> Result<Vec<(UserSummary, u64)>, ChatError> {
        let root = self.message(caller, channel, parent).await?;
        let (replies, _) = self
            .replies(caller, channel, parent, MAX_THREAD_SCAN)
            .await?;
        let mut out: Vec<(UserSummary, u64)> = vec![(root.user.clone(), 0)];
        for r in replies {
            match out.iter_mut().find(|(u, _)| u.id == r.user_id) {
                Some((_, n)) => *n += 1,
                None => out.push((r.user.clone(), 1)),
            }
        }
        out[1..].sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.id.cmp(&b.0.id)));
        Ok(out)
    }

    /// Marks the channel read for the caller; returns the new last read seq.
    pub async fn mark_read(&self, caller: &Caller, channel: &str) -> Result<u64, ChatError> {
        let user = caller.user()?.to_string();
        self.membership(&caller.app, channel, &user)
            .await?
            .ok_or_else(|| ChatError::forbidden("not a member of this channel"))?;
        let op = StreamOp::ReadAll {
            user_id: user.clone(),
            now: time::now_ms(),
        };
        match self
            .write_stream(&chat_stream(&caller.app, channel), op)
            .await?
        {
            StreamReply::Read { last_read_seq, .. } => {
                self.unread_notice(&caller.app, channel, &user, 0);
                self.spawn_total_notice(&caller.app, &user);
                Ok(last_read_seq)
            }
            other => Err(unexpected_stream(other)),
        }
    }

    /// Tells members (after a new message, in the background) their unread count of the
    /// channel: `channel.unread_changed` on their `user:` channel. Ephemeral (no offset): the
    /// counts are derived state, refetched through REST after a reconnect. Channels with more
    /// than [`MAX_UNREAD_NOTICES`] other members get none.
    ///
    /// Throttled per channel: the first message's notices go out at once; while messages keep
    /// coming, one more round every [`UNREAD_NOTICE_INTERVAL`] covers them all with the counts
    /// of that moment, and a last round follows the burst, so counts always converge. Without
    /// this a busy channel of M members costs M notices per message (a 100-member channel at
    /// 2,000 messages/s would be 200,000 notices/s).
    ///
    /// A round reads the members itself, so a send does not; it skips the sender of the
    /// message that started it (the latest sender, for a round covering several).
    pub(super) fn spawn_unread_notices(
        &self,
        stream: &str,
        app: &str,
        channel: &str,
        sender: &str,
    ) {
        {
            let mut rounds = self
                .inner
                .unread_rounds
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // A round is pending for a busy channel on most sends: found without allocating.
            if let Some(pending) = rounds.get_mut(stream) {
                if pending.as_deref() != Some(sender) {
                    *pending = Some(sender.to_string());
                }
                return;
            }
            rounds.insert(stream.to_string(), None);
        }
        let key = stream.to_string();
        let chat = self.clone();
        let (app, channel) = (app.to_string(), channel.to_string());
        let mut sender = sender.to_string();
        tokio::spawn(async move {
            loop {
                chat.unread_round(&app, &channel, &sender).await;
                tokio::time::sleep(UNREAD_NOTICE_INTERVAL).await;
                let mut rounds = chat
                    .inner
                    .unread_rounds
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                match rounds.get_mut(&key).and_then(Option::take) {
                    Some(next) => sender = next,
                    None => {
                        rounds.remove(&key);
                        return;
                    }
                }
            }
        });
    }

    async fn unread_round(&self, app: &str, channel: &str, sender: &str) {
        let users: Vec<String> = match self.members(app, channel) {
            Ok(members) => members
                .into_iter()
                .map(|m| m.user_id)
                .filter(|u| u != sender)
                .collect(),
            Err(e) => {
                tracing::debug!(app, channel, error = %e, "unread notices skipped");
                return;
            }
        };
        if users.is_empty() || users.len() > MAX_UNREAD_NOTICES {
            return;
        }
        let q = StreamQuery::Unreads { users };
        match self.query(&chat_stream(app, channel), q).await {
            Ok(QueryAnswer::Unreads(counts)) => {
                for (user, count) in &counts {
                    self.unread_notice(app, channel, user, *count);
                }
                self.total_notices_after(app, &counts);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(app, channel, error = %e, "unread notices skipped"),
        }
    }

    pub(super) fn unread_notice(&self, app: &str, channel: &str, user: &str, count: u64) {
        self.emit_ephemeral(&user_stream(app, user), None, || {
            render::envelope(
                "channel.unread_changed",
                UnreadPayload {
                    channel_id: channel,
                    count,
                },
            )
        });
    }

    /// `(last_read_seq, unread)` of a member.
    pub async fn read_state(
        &self,
        app: &str,
        channel: &str,
        user: &str,
    ) -> Result<(u64, u64), ChatError> {
        match self
            .query(
                &chat_stream(app, channel),
                StreamQuery::ReadState {
                    user: user.to_string(),
                },
            )
            .await?
        {
            QueryAnswer::Read {
                last_read_seq,
                unread,
            } => Ok((last_read_seq, unread)),
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    /// Broadcasts typing (ephemeral: no offset, not stored).
    pub async fn typing(
        &self,
        caller: &Caller,
        channel: &str,
        typing: bool,
    ) -> Result<(), ChatError> {
        let user = caller.user()?;
        self.membership(&caller.app, channel, user)
            .await?
            .ok_or_else(|| ChatError::forbidden("not a member of this channel"))?;
        let u = self
            .user(&caller.app, user)?
            .ok_or_else(|| ChatError::not_found("user"))?;
        let kind = if typing {
            "typing.start"
        } else {
            "typing.stop"
        };
        self.hook_now(&caller.app, kind, || {
            json!({
                "channelId": channel,
                "user": {"id": u.id, "name": u.name, "image": u.image},
            })
        });
        self.emit_ephemeral(&chat_stream(&caller.app, channel), Some(user), || {
            render::envelope(
                kind,
                TypingPayload {
                    channel_id: channel,
                    user: TypingUser {
                        id: &u.id,
                        name: &u.name,
                        image: u.image.as_deref(),
                    },
                },
            )
        });
        Ok(())
    }

    // ---- realtime
}

/// Replies a thread's participants are counted over at most.
pub(super) const MAX_THREAD_SCAN: usize = 10_000;

/// Users mentioned as `@[Name or id]` or `@word` among the channel's members (sender excluded).
fn mentions_in(
    text: &str,
    members: &[Member],
    dir: &Directory,
    app: &str,
    sender: &str,
) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('@') {
        rest = &rest[i + 1..];
        if let Some(inner) = rest.strip_prefix('[') {
            if let Some(end) = inner.find(']') {
                tokens.push(inner[..end].to_string());
                rest = &inner[end + 1..];
                continue;
            }
        }
        let word: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !word.is_empty() {
            tokens.push(word);
        }
    }
    let mut out = Vec::new();
    if tokens.is_empty() {
        return out;
    }
    for m in members {
        if m.user_id == sender || out.contains(&m.user_id) {
            continue;
        }
        // The id matches without a directory read; the display name needs one.
        let by_id = tokens.iter().any(|t| t == &m.user_id);
        if by_id || {
            let name = dir
                .user(app, &m.user_id)
                .ok()
                .flatten()
                .map(|u| u.name.clone())
                .unwrap_or_default();
            tokens.iter().any(|t| t.eq_ignore_ascii_case(&name))
        } {
            out.push(m.user_id.clone());
        }
    }
    out
}

/// `channel.unread_changed` (on the member's `user:` channel).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct UnreadPayload<'a> {
    channel_id: &'a str,
    count: u64,
}

/// `typing.start` / `typing.stop`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct TypingPayload<'a> {
    channel_id: &'a str,
    user: TypingUser<'a>,
}

#[derive(serde::Serialize)]
struct TypingUser<'a> {
    id: &'a str,
    name: &'a str,
    image: Option<&'a str>,
}

/// A message reply that carries no message: a bug in the stream's replies, not the caller's.
fn message_missing() -> ChatError {
    ChatError::Internal("a message reply without its message".into())
}
