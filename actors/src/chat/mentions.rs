//! The mentions inbox: recording mentions in the mentioned users' streams (with the
//! `mention` event), listing them with their read state, the unread count, marking read, and
//! the user search that mention pickers call.

use super::*;
use crate::model::{Mention, Reactor};
use crate::stream::mentions::MENTIONS_KEPT;

/// Characters of a message's text a mention keeps.
const MENTION_TEXT_CHARS: usize = 500;

/// A mention as its user lists it.
#[derive(Clone, Debug)]
pub struct MentionItem {
    pub mention: Mention,
    /// Marked read, or the user's read position is at or past the message.
    pub read: bool,
    pub channel: Option<Channel>,
}

impl Chat {
    /// Records `message`'s mentions in the mentioned users' inboxes (best effort, logged: the
    /// message is sent whatever happens here).
    pub(super) async fn record_mentions(&self, app: &str, message: &Message) {
        if message.mentions.is_empty() {
            return;
        }
        let mention = Mention {
            message_id: message.id.clone(),
            channel_id: message.channel_id.clone(),
            seq: message.seq,
            text: message
                .text
                .as_ref()
                .map(|t| t.chars().take(MENTION_TEXT_CHARS).collect()),
            mentioner: Reactor {
                id: message.user.id.clone(),
                name: message.user.name.clone(),
                image: message.user.image.clone(),
            },
            at: message.created_at,
            read: false,
        };
        let writes = message.mentions.iter().map(|user| {
            let op = StreamOp::Mention {
                mention: Box::new(mention.clone()),
            };
            async move {
                if let Err(e) = self.write_stream(&user_stream(app, user), op).await {
                    tracing::warn!(app, user, error = %e, "mention not recorded");
                }
            }
        });
        futures::future::join_all(writes).await;
    }

    /// The caller's mentions sent before `before`, newest first; with `unread_only`, only
    /// unread ones. Returns the page and whether more exist.
    pub async fn mentions(
        &self,
        caller: &Caller,
        before: Option<u64>,
        limit: usize,
        unread_only: bool,
    ) -> Result<(Vec<MentionItem>, bool), ChatError> {
        let user = caller.user()?.to_string();
        let fetch = if unread_only {
            MENTIONS_KEPT as usize
        } else {
            limit + 1
        };
        let q = StreamQuery::Mentions {
            before,
            limit: fetch,
            unmarked: unread_only,
        };
        let found = match self.query(&user_stream(&caller.app, &user), q).await? {
            QueryAnswer::Mentions(m) => m,
            _ => return Err(ChatError::Internal("unexpected answer".into())),
        };
        let mut positions: HashMap<String, u64> = HashMap::new();
        let blocked = self.block_filter(caller);
        let mut out = Vec::new();
        for m in found {
            if blocked.contains(&m.mentioner.id) {
                continue;
            }
            let channel = self.channel(&caller.app, &m.channel_id)?;
            // A mention in a channel the user has left or that is gone is not listed.
            if channel.is_none()
                || self
                    .inner
                    .directory
                    .member(&caller.app, &m.channel_id, &user)?
                    .is_none()
            {
                continue;
            }
            let position = match positions.get(&m.channel_id) {
                Some(p) => *p,
                None => {
                    let (p, _) = self.read_state(&caller.app, &m.channel_id, &user).await?;
                    positions.insert(m.channel_id.clone(), p);
                    p
                }
            };
            let read = m.read || position >= m.seq;
            if unread_only && read {
                continue;
            }
            out.push(MentionItem {
                mention: m,
                read,
                channel: channel.map(Arc::unwrap_or_clone),
            });
            if out.len() > limit {
                break;
            }
        }
        let more = out.len() > limit;
        out.truncate(limit);
        Ok((out, more))
    }

    /// How many of the caller's mentions are unread.
    pub async fn mention_unread_count(&self, caller: &Caller) -> Result<u64, ChatError> {
        let (unread, _) = self
            .mentions(caller, None, MENTIONS_KEPT as usize, true)
            .await?;
        Ok(unread.len() as u64)
    }

    /// Marks the caller's mentions in `messages` read (all of them when `None`); returns how
    /// many were marked.
    pub async fn mark_mentions_read(
        &self,
        caller: &Caller,
        messages: Option<Vec<String>>,
    ) -> Result<u64, ChatError> {
        if messages.as_ref().is_some_and(|m| m.len() > 1000) {
            return Err(ChatError::bad("messageIds must have at most 1000 items"));
        }
        let user = caller.user()?.to_string();
        let op = StreamOp::MarkMentions { messages };
        match self
            .write_stream(&user_stream(&caller.app, &user), op)
            .await?
        {
            StreamReply::Marked(n) => Ok(n),
            other => Err(unexpected_stream(other)),
        }
    }

    /// Users whose name or id contains `q` (case-insensitive), the caller left out, names that
    /// start with it first: among a channel's members when `channel` is given (a channel the
    /// caller may read), else among the app's users.
    pub async fn mention_search(
        &self,
        caller: &Caller,
        q: &str,
        channel: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Arc<User>>, ChatError> {
        let needle = q.to_lowercase();
        let me = caller.user.as_deref();
        let candidates: Vec<Arc<User>> = match channel {
            Some(c) => {
                self.readable_channel(caller, c).await?;
                self.members(&caller.app, c)?
                    .iter()
                    .filter_map(|m| self.user(&caller.app, &m.user_id).ok().flatten())
                    .collect()
            }
            None => self
                .inner
                .directory
                .users(&caller.app)?
                .into_iter()
                .map(Arc::new)
                .collect(),
        };
        let mut hits: Vec<(bool, Arc<User>)> = candidates
            .into_iter()
            .filter(|u| !u.deleted && Some(u.id.as_str()) != me)
            .filter_map(|u| {
                let (name, id) = (u.name.to_lowercase(), u.id.to_lowercase());
                let prefix = name.starts_with(&needle) || id.starts_with(&needle);
                (prefix || name.contains(&needle) || id.contains(&needle)).then_some((!prefix, u))
            })
            .collect();
        hits.sort_by_cached_key(|(later, u)| (*later, u.name.to_lowercase(), u.id.clone()));
        Ok(hits.into_iter().take(limit).map(|(_, u)| u).collect())
    }
}
