//! Link previews in a channel's stream: stored beside their message (`lp/<seq>`, so the
//! message record and its chunk never change for them) and announced with a `message.updated`
//! that does not mark the message edited.

use chatsdk_cluster::StoreError;

use super::{StreamReply, Tx};
use crate::keys::{self, put_record as put};
use crate::kv::Kv;
use crate::model::Event;
use crate::previews::LinkPreview;

impl<K: Kv> Tx<'_, K> {
    /// Stores the previews of message `id` (seq `seq`) and clears its pending mark; a message
    /// deleted or purged meanwhile gets none.
    pub(super) fn set_previews(
        &mut self,
        id: &str,
        seq: u64,
        previews: Vec<LinkPreview>,
    ) -> Result<StreamReply, StoreError> {
        self.kv.delete(&keys::preview_pending(self.sk.0, seq));
        let live = self
            .find_message(id)?
            .filter(|m| m.seq == seq && m.deleted_at.is_none());
        let Some(m) = live else {
            return Ok(StreamReply::Done);
        };
        if previews.is_empty() {
            return Ok(StreamReply::Done);
        }
        put(self.kv, &self.sk.link_previews(seq), &previews)?;
        self.append(Event::LinkPreviews {
            channel_id: m.channel_id.clone(),
            message_id: m.id.clone(),
            previews,
        })?;
        Ok(StreamReply::Done)
    }
}
