//! Blocking: a user blocks another; the blocked user cannot open or write to a direct message
//! with the blocker, their messages are left out of the blocker's history and mention inbox,
//! and they do not see the blocker's presence.
//!
//! Blocks sit in the directory, beside memberships: they are checked on sends into direct
//! messages and on reads, locally on every node, and change at the rate people fall out.

use super::*;
use crate::fanout::BlockSet;

/// A block set of `ids` (None when empty).
pub(super) fn block_set_of(ids: Vec<String>) -> Option<BlockSet> {
    (!ids.is_empty()).then(|| Arc::new(ids.into_iter().collect()))
}

impl Chat {
    /// `caller` blocks (`block`) or unblocks `target`.
    pub async fn set_block(
        &self,
        caller: &Caller,
        target: &str,
        block: bool,
    ) -> Result<(), ChatError> {
        let me = caller.user()?.to_string();
        if me == target {
            return Err(ChatError::bad("a user cannot block themselves"));
        }
        // Unblocking a user who is gone still works while the block exists.
        let known = self.user(&caller.app, target)?.is_some()
            || (!block && self.blocks(&caller.app, &me, target)?);
        if !known {
            return Err(ChatError::NotFound(format!("user {target}")));
        }
        match self
            .dir(DirCommand::Block {
                app_id: caller.app.clone(),
                blocker: me.clone(),
                blocked: target.to_string(),
                at: block.then(time::now_ms),
            })
            .await?
        {
            DirReply::Done => {}
            other => return Err(unexpected(other)),
        }
        // The blocker's live subscriptions, on every node, stop (or start again) receiving
        // the blocked user's events.
        let principal = format!("{}:{me}", caller.app);
        let now_blocked = self.blocked_users(caller)?;
        let ids: Vec<String> = now_blocked.into_iter().map(|(u, _)| u).collect();
        self.inner
            .fanout
            .set_blocked(&principal, block_set_of(ids.clone()));
        match codec::encode(&(&principal, &ids)) {
            Ok(body) => self.tell_other_nodes(TOPIC_BLOCKS, body).await,
            Err(e) => tracing::error!(error = %e, "block change not sent to other nodes"),
        }
        Ok(())
    }

    /// The users `user` blocks, as subscriptions filter them (None: nobody).
    pub fn block_set(&self, app: &str, user: &str) -> Option<BlockSet> {
        let ids = self
            .inner
            .directory
            .blocked_by(app, user)
            .map(|b| b.into_iter().map(|(u, _)| u).collect())
            .unwrap_or_default();
        block_set_of(ids)
    }

    /// The users the caller blocks, with when.
    pub fn blocked_users(&self, caller: &Caller) -> Result<Vec<(String, u64)>, ChatError> {
        let me = caller.user()?;
        Ok(self.inner.directory.blocked_by(&caller.app, me)?)
    }

    /// Whether `blocker` blocks `blocked`.
    pub fn blocks(&self, app: &str, blocker: &str, blocked: &str) -> Result<bool, ChatError> {
        Ok(self.inner.directory.blocks(app, blocker, blocked)?)
    }

    /// Refuses `sender` writing to direct conversation (`messaging`) `ch` when another of its
    /// members blocks them.
    pub(super) fn check_dm_block(
        &self,
        app: &str,
        ch: &Channel,
        sender: &str,
    ) -> Result<(), ChatError> {
        for other in self.inner.directory.member_ids(app, &ch.id)? {
            if other != sender && self.blocks(app, &other, sender)? {
                return Err(ChatError::forbidden(
                    "this user blocked you: the conversation is closed",
                ));
            }
        }
        Ok(())
    }

    /// The users `viewer` blocks, for filtering what they read (empty for server keys).
    pub(super) fn block_filter(&self, caller: &Caller) -> BTreeSet<String> {
        match &caller.user {
            Some(me) => self
                .inner
                .directory
                .blocked_by(&caller.app, me)
                .map(|b| b.into_iter().map(|(u, _)| u).collect())
                .unwrap_or_default(),
            None => BTreeSet::new(),
        }
    }
}
