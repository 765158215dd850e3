//! Reactions, pins, polls and saved messages: the command layer of what members add to
//! messages. The changes are applied in the channel's stream (see `stream::annotations`), so
//! their events are part of it; a saved message is kept in the saver's own stream.

use super::*;
use crate::model::{Poll, PollOption, PollResults, Reactor};
use crate::stream::reads::{ReactionEntry, SavedEntry};

/// Options a poll has at least and at most.
const POLL_OPTIONS: std::ops::RangeInclusive<usize> = 2..=10;
/// Saved messages listed per page at most.
const MAX_SAVED_PAGE: usize = 100;

/// A new poll, as the Client API spells it (the Server API's snake_case names are accepted).
#[derive(Clone, Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewPoll {
    pub question: String,
    pub options: Vec<NewPollOption>,
    #[serde(default, alias = "is_anonymous")]
    pub is_anonymous: bool,
    #[serde(default, alias = "is_multi_choice")]
    pub is_multi_choice: bool,
    /// When voting ends (ms since the epoch; the REST layer parses the ISO form).
    #[serde(skip)]
    pub ends_at: Option<u64>,
}

/// One option of a new poll: its id is the client's (unique within the poll).
#[derive(Clone, Debug, Default, serde::Deserialize, utoipa::ToSchema)]
pub struct NewPollOption {
    pub id: String,
    pub text: String,
}

/// A saved message as its saver lists it.
#[derive(Clone, Debug)]
pub struct SavedMessage {
    pub message: Message,
    pub channel: Channel,
    pub saved_at: u64,
}

/// A refusal of an annotation change: the stream's reply as the caller's error.
fn refused(reply: StreamReply) -> ChatError {
    match reply {
        StreamReply::NotFound(what) => ChatError::NotFound(what),
        StreamReply::Refused(why) => ChatError::BadRequest(why),
        other => unexpected_stream(other),
    }
}

impl Chat {
    /// The caller's membership of a channel they change: members only (a server key acts for
    /// any user of its app who exists).
    async fn member_of(
        &self,
        caller: &Caller,
        channel: &str,
    ) -> Result<(Channel, Option<Member>), ChatError> {
        let user = caller.user()?;
        self.check_may_write(&caller.app, channel, user)?;
        let (ch, me) = self.readable_channel(caller, channel).await?;
        if me.is_none() && !caller.server {
            return Err(ChatError::forbidden("not a member of this channel"));
        }
        if me.is_none() && self.user(&caller.app, user)?.is_none() {
            return Err(ChatError::NotFound(format!("user {user}")));
        }
        Ok((ch, me))
    }

    fn reactor(&self, app: &str, user: &str) -> Result<Reactor, ChatError> {
        let u = self
            .user(app, user)?
            .ok_or_else(|| ChatError::NotFound(format!("user {user}")))?;
        Ok(Reactor {
            id: u.id.clone(),
            name: u.name.clone(),
            image: u.image.clone(),
        })
    }

    /// Adds (`add`) or removes the caller's reaction `emoji` to a message. Adding one that is
    /// there, or removing one that is not, changes nothing and succeeds.
    pub async fn react(
        &self,
        caller: &Caller,
        channel: &str,
        message_id: &str,
        emoji: &str,
        add: bool,
    ) -> Result<(), ChatError> {
        if emoji.is_empty() || emoji.len() > 64 || emoji.chars().any(char::is_control) {
            return Err(ChatError::bad(
                "emoji must be 1 to 64 bytes without control characters",
            ));
        }
        let user = caller.user()?;
        if !caller.server {
            let key = colon_joined(&[&caller.app, user]);
            self.inner
                .reaction_limiter
                .take(&key)
                .map_err(|retry_after| ChatError::RateLimited { retry_after })?;
        }
        self.member_of(caller, channel).await?;
        let op = StreamOp::React {
            message_id: message_id.to_string(),
            emoji: emoji.to_string(),
            user: self.reactor(&caller.app, user)?,
            add,
            now: time::now_ms(),
            max_per_user: self.inner.max_reactions_per_user,
        };
        match self
            .write_stream(&chat_stream(&caller.app, channel), op)
            .await?
        {
            StreamReply::Appended { .. } => Ok(()),
            other => Err(refused(other)),
        }
    }

    /// Every reaction to a message, oldest first: `(emoji, reactor, when)`.
    pub async fn reactions(
        &self,
        caller: &Caller,
        channel: &str,
        message_id: &str,
    ) -> Result<Vec<ReactionEntry>, ChatError> {
        self.readable_channel(caller, channel).await?;
        let q = StreamQuery::Reactions {
            id: message_id.to_string(),
        };
        match self.query(&chat_stream(&caller.app, channel), q).await? {
            QueryAnswer::Reactions(Some(mut r)) => {
                // The users the caller blocks are left out (the counts are not changed).
                let blocked = self.block_filter(caller);
                r.retain(|(_, who, _)| !blocked.contains(&who.id));
                Ok(r)
            }
            QueryAnswer::Reactions(None) => Err(ChatError::not_found("message")),
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    /// Pins or unpins a message: owners, admins and moderators may, and in a `messaging`
    /// channel (direct messages) any member.
    pub async fn pin(
        &self,
        caller: &Caller,
        channel: &str,
        message_id: &str,
        pin: bool,
    ) -> Result<(), ChatError> {
        let user = caller.user()?.to_string();
        let (ch, me) = self.member_of(caller, channel).await?;
        let allowed = caller.server
            || ch.kind == ChannelType::Messaging
            || me.is_some_and(|m| m.role.can_moderate());
        if !allowed {
            return Err(ChatError::forbidden(
                "only owners, admins and moderators pin messages in this channel",
            ));
        }
        let op = StreamOp::Pin {
            message_id: message_id.to_string(),
            by: pin.then_some(user),
            now: time::now_ms(),
            max: self.inner.max_pins_per_channel,
        };
        match self
            .write_stream(&chat_stream(&caller.app, channel), op)
            .await?
        {
            StreamReply::Appended { .. } => Ok(()),
            other => Err(refused(other)),
        }
    }

    /// The channel's pinned messages with their annotations as the caller sees them.
    pub async fn pinned(
        &self,
        caller: &Caller,
        channel: &str,
    ) -> Result<(Vec<Message>, Vec<Notes>), ChatError> {
        self.readable_channel(caller, channel).await?;
        let q = StreamQuery::Pinned {
            viewer: caller.user.clone(),
        };
        match self.query(&chat_stream(&caller.app, channel), q).await? {
            QueryAnswer::Messages {
                mut messages,
                notes,
                ..
            } => {
                let blocked = self.block_filter(caller);
                messages.retain(|m| !blocked.contains(&m.user_id));
                Ok((messages, notes))
            }
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    /// Saves a message for the caller (it must exist in a channel they read) or forgets it.
    pub async fn save(
        &self,
        caller: &Caller,
        channel: &str,
        message_id: &str,
        save: bool,
    ) -> Result<(), ChatError> {
        let user = caller.user()?.to_string();
        if save {
            self.message(caller, channel, message_id).await?;
        }
        let op = StreamOp::Save {
            channel: channel.to_string(),
            message_id: message_id.to_string(),
            at: save.then(time::now_ms),
        };
        match self
            .write_stream(&user_stream(&caller.app, &user), op)
            .await?
        {
            StreamReply::Done => Ok(()),
            other => Err(refused(other)),
        }
    }

    /// The caller's saved messages, newest first. Messages since purged, and those of
    /// channels the caller can no longer read, are left out.
    pub async fn saved(
        &self,
        caller: &Caller,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<SavedMessage>, ChatError> {
        let user = caller.user()?.to_string();
        let q = StreamQuery::Saved {
            limit: limit.min(MAX_SAVED_PAGE),
            offset,
        };
        let entries: Vec<SavedEntry> = match self.query(&user_stream(&caller.app, &user), q).await?
        {
            QueryAnswer::Saved(e) => e,
            _ => return Err(ChatError::Internal("unexpected answer".into())),
        };
        let blocked = self.block_filter(caller);
        let mut out = Vec::with_capacity(entries.len());
        for (channel, message_id, saved_at) in entries {
            match self.message(caller, &channel, &message_id).await {
                Ok(message) if blocked.contains(&message.user_id) => {}
                Ok(message) => {
                    if let Some(ch) = self.channel(&caller.app, &channel)? {
                        out.push(SavedMessage {
                            message,
                            channel: Arc::unwrap_or_clone(ch),
                            saved_at,
                        });
                    }
                }
                Err(ChatError::NotFound(_) | ChatError::Forbidden(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Attaches a poll to a message the caller wrote (a server key: any message), replacing
    /// the message's earlier poll.
    pub async fn create_poll(
        &self,
        caller: &Caller,
        channel: &str,
        message_id: &str,
        new: NewPoll,
    ) -> Result<Poll, ChatError> {
        validate::text_len("question", &new.question, 1, 1000)?;
        if !POLL_OPTIONS.contains(&new.options.len()) {
            return Err(ChatError::bad("options must have 2 to 10 items"));
        }
        let mut seen = BTreeSet::new();
        for o in &new.options {
            validate::text_len("options[].id", &o.id, 1, 64)?;
            validate::text_len("options[].text", &o.text, 1, 500)?;
            if !seen.insert(o.id.as_str()) {
                return Err(ChatError::bad(format!("options[].id {} is repeated", o.id)));
            }
        }
        let now = time::now_ms();
        if new.ends_at.is_some_and(|end| end <= now) {
            return Err(ChatError::bad("endsAt must be in the future"));
        }
        let user = caller.user()?.to_string();
        self.member_of(caller, channel).await?;
        let m = self.message(caller, channel, message_id).await?;
        if !caller.server && m.user_id != user {
            // The original answers 404 here: a poll goes on one's own message.
            return Err(ChatError::not_found("message"));
        }
        let poll = Poll {
            id: new_id(),
            message_id: m.id.clone(),
            question: new.question,
            options: new
                .options
                .into_iter()
                .map(|o| PollOption {
                    id: o.id,
                    text: o.text,
                    votes: 0,
                })
                .collect(),
            anonymous: new.is_anonymous,
            multi: new.is_multi_choice,
            total_votes: 0,
            ends_at: new.ends_at,
            created_by: user,
            created_at: now,
        };
        // Located first: a poll is never reachable by id before its locator exists.
        match self
            .dir(DirCommand::LocatePoll {
                app_id: caller.app.clone(),
                poll_id: poll.id.clone(),
                channel_id: channel.to_string(),
            })
            .await?
        {
            DirReply::Done => {}
            DirReply::NotFound(w) => return Err(ChatError::NotFound(w)),
            other => return Err(unexpected(other)),
        }
        let op = StreamOp::CreatePoll {
            poll: Box::new(poll.clone()),
        };
        match self
            .write_stream(&chat_stream(&caller.app, channel), op)
            .await?
        {
            StreamReply::Appended { .. } => Ok(poll),
            other => Err(refused(other)),
        }
    }

    /// The channel that holds a poll of the caller's app.
    fn poll_channel(&self, caller: &Caller, poll_id: &str) -> Result<String, ChatError> {
        self.inner
            .directory
            .poll_channel(&caller.app, poll_id)?
            .ok_or_else(|| ChatError::not_found("poll"))
    }

    /// Sets (`options`) or removes the caller's vote; returns the poll's voters after it. A
    /// member of an open channel who is not one joins it by voting, as by sending.
    pub async fn vote(
        &self,
        caller: &Caller,
        poll_id: &str,
        options: Option<Vec<String>>,
    ) -> Result<(String, u64), ChatError> {
        let user = caller.user()?.to_string();
        let channel = self.poll_channel(caller, poll_id)?;
        let ch = self
            .channel(&caller.app, &channel)?
            .ok_or_else(|| ChatError::not_found("poll"))?;
        match &options {
            Some(_) => self.writer_membership(caller, &ch).await?,
            None => {
                self.member_of(caller, &channel).await?;
            }
        }
        let op = StreamOp::Vote {
            poll_id: poll_id.to_string(),
            user,
            options,
            now: time::now_ms(),
        };
        match self
            .write_stream(&chat_stream(&caller.app, &channel), op)
            .await?
        {
            StreamReply::Voted { total_votes, .. } => Ok((channel, total_votes)),
            other => Err(refused(other)),
        }
    }

    /// A poll with its votes, for a caller who may read its channel.
    pub async fn poll_results(
        &self,
        caller: &Caller,
        poll_id: &str,
    ) -> Result<PollResults, ChatError> {
        let channel = self.poll_channel(caller, poll_id)?;
        self.readable_channel(caller, &channel).await?;
        let q = StreamQuery::Poll {
            id: poll_id.to_string(),
        };
        match self.query(&chat_stream(&caller.app, &channel), q).await? {
            QueryAnswer::Poll(Some(mut p)) => {
                // Voters the caller blocks are not named (the counts are not changed).
                let blocked = self.block_filter(caller);
                p.votes.retain(|(u, _)| !blocked.contains(u));
                Ok(*p)
            }
            QueryAnswer::Poll(None) => Err(ChatError::not_found("poll")),
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }
}
