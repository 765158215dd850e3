//! Workspace blobs (custom emoji images) and emoji usage counts, kept in the workspace's
//! stream until the shared media store replaces the blobs.
//!
//! A blob is content-addressed (SHA-256 hex) and written in chunks of at most
//! [`BLOB_CHUNK_BYTES`], each its own Raft command, so no command comes near the cluster's
//! command size limit. Usage is counted, not logged: a total, one count per day and one per
//! user, so analytics read a few keys whatever the number of uses.

use chatsdk_cluster::StoreError;

use super::{StreamReader, StreamReply, Tx};
use crate::keys::{self, get_record as get, put_record as put, StreamKeys};
use crate::kv::{Kv, KvRead};

/// Bytes of a blob per chunk (and per Raft command).
pub const BLOB_CHUNK_BYTES: usize = 256 * 1024;

/// An emoji's usage: total, busiest users and uses per day (`(day, uses)`, days since the
/// epoch, oldest first).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EmojiUsage {
    pub total: u64,
    pub top_users: Vec<(String, u64)>,
    pub days: Vec<(u64, u64)>,
}

impl<K: Kv> Tx<'_, K> {
    pub(super) fn put_blob_chunk(
        &mut self,
        hash: &str,
        index: u32,
        bytes: &[u8],
    ) -> Result<StreamReply, StoreError> {
        self.kv.put(&self.sk.blob_chunk(hash, index), bytes);
        Ok(StreamReply::Done)
    }

    pub(super) fn drop_blob(&mut self, hash: &str) -> Result<StreamReply, StoreError> {
        for (k, _) in self.kv.scan_prefix(&self.sk.blob(hash))? {
            self.kv.delete(&k);
        }
        Ok(StreamReply::Done)
    }

    /// Counts one use of `emoji` by `user` on `day`.
    pub(super) fn emoji_used(
        &mut self,
        emoji: &str,
        user: &str,
        day: u64,
    ) -> Result<StreamReply, StoreError> {
        let day = day.to_be_bytes();
        for key in [
            self.sk.emoji_uses(emoji, &[b"t"]),
            self.sk.emoji_uses(emoji, &[b"d", &day]),
            self.sk.emoji_uses(emoji, &[b"u", user.as_bytes()]),
        ] {
            let n = get::<u64>(self.kv, &key)?.unwrap_or(0) + 1;
            put(self.kv, &key, &n)?;
        }
        Ok(StreamReply::Done)
    }

    pub(super) fn drop_emoji_uses(&mut self, emoji: &str) -> Result<StreamReply, StoreError> {
        for (k, _) in self.kv.scan_prefix(&self.sk.all_emoji_uses(emoji))? {
            self.kv.delete(&k);
        }
        Ok(StreamReply::Done)
    }
}

impl<R: KvRead> StreamReader<R> {
    /// Chunk `index` of a blob.
    pub fn blob_chunk(
        &self,
        stream: &str,
        hash: &str,
        index: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.reader.get(&StreamKeys(stream).blob_chunk(hash, index))
    }

    /// The total uses of each of `emoji`.
    pub fn emoji_totals(&self, stream: &str, emoji: &[String]) -> Result<Vec<u64>, StoreError> {
        let sk = StreamKeys(stream);
        emoji
            .iter()
            .map(|e| Ok(self.get::<u64>(&sk.emoji_uses(e, &[b"t"]))?.unwrap_or(0)))
            .collect()
    }

    /// An emoji's usage: its total, its `top` users and its uses per day from `since_day`.
    pub fn emoji_usage(
        &self,
        stream: &str,
        emoji: &str,
        since_day: u64,
        top: usize,
    ) -> Result<EmojiUsage, StoreError> {
        let sk = StreamKeys(stream);
        let total = self
            .get::<u64>(&sk.emoji_uses(emoji, &[b"t"]))?
            .unwrap_or(0);
        let mut days = Vec::new();
        let day_prefix = keys::prefix(&[b"s", stream.as_bytes(), b"eu", emoji.as_bytes(), b"d"]);
        for (k, v) in self.reader.scan_prefix(&day_prefix)? {
            let Some(day) = keys::trailing_u64(&k) else {
                continue;
            };
            if day >= since_day {
                days.push((day, keys::decode_at::<u64>(&k, &v)?));
            }
        }
        let user_prefix = keys::prefix(&[b"s", stream.as_bytes(), b"eu", emoji.as_bytes(), b"u"]);
        let mut users = Vec::new();
        for (k, v) in self.reader.scan_prefix(&user_prefix)? {
            let user = String::from_utf8_lossy(&k[user_prefix.len()..]).into_owned();
            users.push((user, keys::decode_at::<u64>(&k, &v)?));
        }
        users.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        users.truncate(top);
        Ok(EmojiUsage {
            total,
            top_users: users,
            days,
        })
    }
}
