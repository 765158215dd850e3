//! Read receipts: a member's read position moves forward to a message (`read_receipt`) or
//! to the channel's newest message (`read.updated`), and remembers when it moved.
//!
//! Who read a message is derived, not stored per message: member U read message M when U's
//! position is at or past M's seq (and U is not M's author). When U read it is the time of
//! the first move of U's position that covered M, from the last [`ADVANCES_KEPT`] moves (an
//! older read shows without a time). A read therefore writes two small records, whatever the
//! number of messages it covers.

use chatsdk_cluster::StoreError;
use serde::{Deserialize, Serialize};

use super::{ReadState, StreamReader, StreamReply, Tx};
use crate::keys::{decode_at, get_record as get, put_record as put, StreamKeys};
use crate::kv::{Kv, KvRead};
use crate::model::Event;

/// Moves of a member's read position remembered, with their times.
pub const ADVANCES_KEPT: usize = 64;

/// A member's receipts in one channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReceiptState {
    /// The message the member last read to.
    pub message_id: Option<String>,
    /// `(seq, when)` of the position's last moves, oldest first.
    pub advances: Vec<(u64, u64)>,
}

impl ReceiptState {
    /// When a position that is now at or past `seq` first covered it (within the moves kept).
    pub fn read_at(&self, seq: u64) -> Option<u64> {
        self.advances
            .iter()
            .find(|(covered, _)| *covered >= seq)
            .map(|(_, at)| *at)
    }
}

/// A member's read position with its receipts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReaderState {
    pub user: String,
    pub last_read_seq: u64,
    pub receipts: ReceiptState,
}

impl<K: Kv> Tx<'_, K> {
    /// Moves `user`'s position to `seq` (the message `message_id`) at `now`, if that is forward;
    /// returns whether it moved.
    fn advance(
        &mut self,
        user: &str,
        seq: u64,
        message_id: Option<String>,
        now: u64,
    ) -> Result<bool, StoreError> {
        let key = self.sk.read_state(user);
        let before = get::<ReadState>(self.kv, &key)?.unwrap_or_default();
        if seq <= before.last_read_seq {
            return Ok(false);
        }
        put(self.kv, &key, &ReadState { last_read_seq: seq })?;
        let rkey = self.sk.receipts(user);
        let mut r = get::<ReceiptState>(self.kv, &rkey)?.unwrap_or_default();
        r.message_id = message_id;
        r.advances.push((seq, now));
        if r.advances.len() > ADVANCES_KEPT {
            r.advances.remove(0);
        }
        put(self.kv, &rkey, &r)?;
        Ok(true)
    }

    /// A read receipt: `user` read up to message `message_id`.
    pub(super) fn receipt(
        &mut self,
        user: String,
        user_name: String,
        message_id: &str,
        now: u64,
    ) -> Result<StreamReply, StoreError> {
        let Some(m) = self.find_message(message_id)? else {
            return Ok(StreamReply::NotFound("message".into()));
        };
        if self.advance(&user, m.seq, Some(m.id.clone()), now)? {
            self.append(Event::ReadReceipt {
                channel_id: m.channel_id.clone(),
                user_id: user.clone(),
                user_name,
                message_id: m.id.clone(),
                read_at: now,
                last_read_seq: m.seq,
            })?;
        }
        let last_read_seq = get::<ReadState>(self.kv, &self.sk.read_state(&user))?
            .unwrap_or_default()
            .last_read_seq;
        Ok(StreamReply::Read {
            last_read_seq,
            events: std::mem::take(&mut self.events),
            epoch: self.head.epoch.clone(),
        })
    }

    /// Marks everything up to the channel's newest message read for `user` at `now`.
    pub(super) fn read_all(&mut self, user: String, now: u64) -> Result<StreamReply, StoreError> {
        let seq = self.head.seq;
        let newest = if seq > 0 {
            let key = self.sk.message_chunk(crate::chunk::chunk_of(seq));
            match self.kv.get(&key)? {
                Some(v) => super::item_of::<crate::model::Message>(&key, &v, seq)?.map(|m| m.id),
                None => None,
            }
        } else {
            None
        };
        if self.advance(&user, seq, newest, now)? {
            let channel_id = self.sk.0.rsplit(':').next().unwrap_or_default().to_string();
            self.append(Event::ReadUpdated {
                channel_id,
                user_id: user,
                last_read_seq: seq,
            })?;
        }
        Ok(StreamReply::Read {
            last_read_seq: seq,
            events: std::mem::take(&mut self.events),
            epoch: self.head.epoch.clone(),
        })
    }
}

impl<R: KvRead> StreamReader<R> {
    /// The read positions and receipts of `users`.
    pub fn readers(&self, stream: &str, users: &[String]) -> Result<Vec<ReaderState>, StoreError> {
        let sk = StreamKeys(stream);
        let mut out = Vec::with_capacity(users.len());
        for user in users {
            let rs = self.read_state(stream, user)?;
            let key = sk.receipts(user);
            let receipts = match self.reader.get(&key)? {
                Some(v) => decode_at(&key, &v)?,
                None => ReceiptState::default(),
            };
            out.push(ReaderState {
                user: user.clone(),
                last_read_seq: rs.last_read_seq,
                receipts,
            });
        }
        Ok(out)
    }
}
