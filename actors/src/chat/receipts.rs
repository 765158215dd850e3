//! Read receipts and unread totals: who read a message and when, members' read positions,
//! and the `channel.total_unread_changed` notices.

use super::*;
use crate::stream::receipts::ReaderState;

/// Messages one receipts query may ask about.
pub const MAX_RECEIPT_QUERY: usize = 100;
/// Least time between two total-unread notices of one user.
const TOTAL_NOTICE_INTERVAL: Duration = Duration::from_secs(1);
/// Channels whose members get total-unread notices after a message: at most this many other
/// members (a total costs one read per channel of the member).
const MAX_TOTAL_NOTICES: usize = 100;

/// `channel.total_unread_changed`.
#[derive(serde::Serialize)]
struct TotalPayload {
    count: u64,
}

/// Who read one message: `(reader, when)` (no time when the read is older than the moves
/// remembered), its author left out.
#[derive(Clone, Debug, Default)]
pub struct MessageReceipts {
    pub readers: Vec<(String, Option<u64>)>,
}

impl Chat {
    /// Marks the channel read up to `message_id` for the caller (forward only): returns the
    /// caller's read position after it.
    pub async fn receipt(
        &self,
        caller: &Caller,
        channel: &str,
        message_id: &str,
    ) -> Result<u64, ChatError> {
        let user = caller.user()?.to_string();
        self.membership(&caller.app, channel, &user)
            .await?
            .ok_or_else(|| ChatError::forbidden("not a member of this channel"))?;
        let name = self
            .user(&caller.app, &user)?
            .map(|u| u.name.clone())
            .unwrap_or_else(|| user.clone());
        let op = StreamOp::Receipt {
            user_id: user.clone(),
            user_name: name,
            message_id: message_id.to_string(),
            now: time::now_ms(),
        };
        match self
            .write_stream(&chat_stream(&caller.app, channel), op)
            .await?
        {
            StreamReply::Read { last_read_seq, .. } => {
                if let Ok((_, unread)) = self.read_state(&caller.app, channel, &user).await {
                    self.unread_notice(&caller.app, channel, &user, unread);
                }
                self.spawn_total_notice(&caller.app, &user);
                Ok(last_read_seq)
            }
            StreamReply::NotFound(w) => Err(ChatError::NotFound(w)),
            other => Err(unexpected_stream(other)),
        }
    }

    /// Who read each of `message_ids` (`None`: no such message), and the channel's members.
    pub async fn message_receipts(
        &self,
        caller: &Caller,
        channel: &str,
        message_ids: Vec<String>,
    ) -> Result<(Vec<Option<MessageReceipts>>, u64), ChatError> {
        if message_ids.len() > MAX_RECEIPT_QUERY {
            return Err(ChatError::bad(format!(
                "messageIds must have at most {MAX_RECEIPT_QUERY} items"
            )));
        }
        self.readable_channel(caller, channel).await?;
        let members: Vec<String> = self
            .members(&caller.app, channel)?
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        let total = members.len() as u64;
        let q = StreamQuery::Receipts {
            message_ids,
            users: members,
        };
        let (messages, readers) = match self.query(&chat_stream(&caller.app, channel), q).await? {
            QueryAnswer::Receipts { messages, readers } => (messages, readers),
            _ => return Err(ChatError::Internal("unexpected answer".into())),
        };
        let out = messages
            .into_iter()
            .map(|m| {
                m.map(|(seq, author)| MessageReceipts {
                    readers: readers
                        .iter()
                        .filter(|r| r.user != author && r.last_read_seq >= seq)
                        .map(|r| (r.user.clone(), r.receipts.read_at(seq)))
                        .collect(),
                })
            })
            .collect();
        Ok((out, total))
    }

    /// Every member's read position and last read message.
    pub async fn read_status(
        &self,
        caller: &Caller,
        channel: &str,
    ) -> Result<Vec<ReaderState>, ChatError> {
        self.readable_channel(caller, channel).await?;
        let users = self
            .members(&caller.app, channel)?
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        let q = StreamQuery::Receipts {
            message_ids: Vec::new(),
            users,
        };
        match self.query(&chat_stream(&caller.app, channel), q).await? {
            QueryAnswer::Receipts { readers, .. } => Ok(readers),
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    /// A user's unread messages over all their channels.
    pub async fn total_unread(&self, app: &str, user: &str) -> Result<u64, ChatError> {
        let mut total = 0;
        for id in self.inner.directory.user_channel_ids(app, user)? {
            total += self
                .read_state(app, &id, user)
                .await
                .map(|(_, n)| n)
                .unwrap_or(0);
        }
        Ok(total)
    }

    /// Tells `user` their unread total (`channel.total_unread_changed`, ephemeral, on their
    /// `user:` channel), in the background, at most once per [`TOTAL_NOTICE_INTERVAL`]: a
    /// request while a notice is pending is covered by the next one.
    pub(super) fn spawn_total_notice(&self, app: &str, user: &str) {
        let key = colon_joined(&[app, user]);
        {
            let mut rounds = self
                .inner
                .total_rounds
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(pending) = rounds.get_mut(&key) {
                *pending = true;
                return;
            }
            rounds.insert(key.clone(), false);
        }
        let chat = self.clone();
        let (app, user) = (app.to_string(), user.to_string());
        tokio::spawn(async move {
            loop {
                match chat.total_unread(&app, &user).await {
                    Ok(count) => chat.total_notice(&app, &user, count),
                    Err(e) => tracing::debug!(app, user, error = %e, "unread total skipped"),
                }
                tokio::time::sleep(TOTAL_NOTICE_INTERVAL).await;
                let mut rounds = chat
                    .inner
                    .total_rounds
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                match rounds.get_mut(&key) {
                    Some(pending) if *pending => *pending = false,
                    _ => {
                        rounds.remove(&key);
                        return;
                    }
                }
            }
        });
    }

    /// After a message, the members of small channels are told their new totals too: one in
    /// no other channel has the channel's count as total (told at once, nothing read); others
    /// get a computed total, at most once a second.
    pub(super) fn total_notices_after(&self, app: &str, counts: &[(String, u64)]) {
        if counts.len() > MAX_TOTAL_NOTICES {
            return;
        }
        for (user, count) in counts {
            let stream = user_stream(app, user);
            if !self
                .inner
                .env
                .emitter
                .has_audience(&stream, || group_of(&stream, self.inner.shards()))
            {
                continue;
            }
            let only = self
                .inner
                .directory
                .user_channel_ids(app, user)
                .is_ok_and(|c| c.len() == 1);
            if only {
                self.total_notice(app, user, *count);
            } else {
                self.spawn_total_notice(app, user);
            }
        }
    }

    /// `channel.total_unread_changed` with `count`, on the user's `user:` channel.
    fn total_notice(&self, app: &str, user: &str, count: u64) {
        self.emit_ephemeral(&user_stream(app, user), None, || {
            render::envelope("channel.total_unread_changed", TotalPayload { count })
        });
    }
}
