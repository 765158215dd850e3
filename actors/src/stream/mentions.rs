//! The mentions inbox: each user's mentions, kept in their own stream (the data shard of
//! `(app, user)`, so it scales with users, not with one replicated group).
//!
//! A mention is recorded once per message (a retried record is found by its message id) with
//! its `mention` event; the newest [`MENTIONS_KEPT`] are kept (older ones are trimmed in batches
//! of [`TRIM_BATCH`], so a record costs a few keys, not a scan). Whether a mention is read is
//! its explicit flag or, derived by the command layer, the user's read position in its channel.

use chatsdk_cluster::StoreError;

use super::{StreamReader, StreamReply, Tx};
use crate::keys::{decode_at, get_record as get, put_record as put, StreamKeys};
use crate::kv::{Kv, KvRead};
use crate::model::{Event, Mention};

/// Mentions a user's inbox keeps.
pub const MENTIONS_KEPT: u64 = 1000;
/// Mentions trimmed at once past [`MENTIONS_KEPT`].
const TRIM_BATCH: u64 = 100;

impl<K: Kv> Tx<'_, K> {
    /// Records a mention of the stream's user (once per message).
    pub(super) fn mention(&mut self, mention: Box<Mention>) -> Result<StreamReply, StoreError> {
        let of = self.sk.mention_of(&mention.message_id);
        if self.kv.get(&of)?.is_none() {
            put(self.kv, &of, &mention.at)?;
            put(
                self.kv,
                &self.sk.mention(mention.at, &mention.message_id),
                &*mention,
            )?;
            let count_key = self.sk.mention_count();
            let mut count = get::<u64>(self.kv, &count_key)?.unwrap_or(0) + 1;
            if count > MENTIONS_KEPT + TRIM_BATCH {
                let all = self.kv.scan_prefix(&self.sk.all_mentions())?;
                let excess = all.len().saturating_sub(MENTIONS_KEPT as usize);
                for (k, v) in all.into_iter().take(excess) {
                    let old: Mention = decode_at(&k, &v)?;
                    self.kv.delete(&self.sk.mention_of(&old.message_id));
                    self.kv.delete(&k);
                }
                count = MENTIONS_KEPT;
            }
            put(self.kv, &count_key, &count)?;
            self.append(Event::Mention(mention))?;
        }
        Ok(StreamReply::Appended {
            events: std::mem::take(&mut self.events),
            epoch: self.head.epoch.clone(),
        })
    }

    /// Marks mentions read: those of `messages`, or every one.
    pub(super) fn mark_mentions(
        &mut self,
        messages: Option<Vec<String>>,
    ) -> Result<StreamReply, StoreError> {
        let keys: Vec<Vec<u8>> = match messages {
            Some(ids) => {
                let mut keys = Vec::new();
                for id in ids {
                    if let Some(at) = get::<u64>(self.kv, &self.sk.mention_of(&id))? {
                        keys.push(self.sk.mention(at, &id));
                    }
                }
                keys
            }
            None => self
                .kv
                .scan_prefix(&self.sk.all_mentions())?
                .into_iter()
                .map(|(k, _)| k)
                .collect(),
        };
        let mut marked = 0;
        for k in keys {
            if let Some(mut m) = get::<Mention>(self.kv, &k)? {
                if !m.read {
                    m.read = true;
                    put(self.kv, &k, &m)?;
                    marked += 1;
                }
            }
        }
        Ok(StreamReply::Marked(marked))
    }
}

impl<R: KvRead> StreamReader<R> {
    /// The user's mentions sent before `before` (ms), newest first, at most `limit`; with
    /// `unmarked`, only those not marked read.
    pub fn mentions(
        &self,
        stream: &str,
        before: Option<u64>,
        limit: usize,
        unmarked: bool,
    ) -> Result<Vec<Mention>, StoreError> {
        let sk = StreamKeys(stream);
        let prefix = sk.all_mentions();
        let mut out = Vec::new();
        for (k, v) in self.reader.scan_prefix(&prefix)?.into_iter().rev() {
            let m: Mention = decode_at(&k, &v)?;
            if before.is_some_and(|b| m.at >= b) || (unmarked && m.read) {
                continue;
            }
            out.push(m);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}
