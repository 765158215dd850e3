//! Webhook state in the data shards: the outbox of events waiting for delivery, and each
//! webhook's delivery log.
//!
//! The outbox is written in the same command as the events it holds (a [`StreamOp::Hooked`]
//! write), so an event a webhook wants is never committed without its pending delivery: the
//! shard's leader delivers it and removes it ([`StreamOp::HooksDone`]); a leader that dies
//! first leaves it to the next one. Entries live under `o\0<stream>\0<offset>`, apart from the
//! stream's keys, so a leader finds its shard's pending deliveries with one range read.
//!
//! A delivery log is a webhook's own stream (`webhook:<app>:<id>`): numbered records, the
//! newest `keep` of them kept.

use chatsdk_cluster::StoreError;

use super::{StreamReader, StreamReply, Tx};
use crate::keys::{self, get_record as get, put_record as put};
use crate::kv::{Kv, KvRead};
use crate::model::{HookDelivery, StoredEvent};

/// Pending deliveries handed to a dispatcher per read.
pub const OUTBOX_BATCH: usize = 256;

/// An event waiting for delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub stream: String,
    pub event: StoredEvent,
}

/// Records `reply`'s events (of `stream`) whose webhook names (`crate::hooks::event_name`)
/// are in `wanted` as pending deliveries.
pub(super) fn hold(
    kv: &mut impl Kv,
    stream: &str,
    reply: &StreamReply,
    wanted: &[String],
) -> Result<(), StoreError> {
    let Some((events, _)) = reply.events() else {
        return Ok(());
    };
    for e in events {
        let named = crate::hooks::event_name(&e.event);
        if named.is_some_and(|n| wanted.iter().any(|w| w == n)) {
            put(kv, &keys::outbox(stream, e.offset), e)?;
        }
    }
    Ok(())
}

impl<K: Kv> Tx<'_, K> {
    /// Removes delivered events from the outbox.
    pub(super) fn hooks_done(&mut self, offsets: &[u64]) -> Result<StreamReply, StoreError> {
        for o in offsets {
            self.kv.delete(&keys::outbox(self.sk.0, *o));
        }
        Ok(StreamReply::Done)
    }

    /// Appends a record to the stream's delivery log, keeping the newest `keep`.
    pub(super) fn log_delivery(
        &mut self,
        record: &HookDelivery,
        keep: u32,
    ) -> Result<StreamReply, StoreError> {
        let counter = self.sk.delivery_count();
        let n = get::<u64>(self.kv, &counter)?.unwrap_or(0) + 1;
        put(self.kv, &self.sk.delivery(n), record)?;
        put(self.kv, &counter, &n)?;
        if let Some(old) = n.checked_sub(u64::from(keep.max(1))) {
            self.kv.delete(&self.sk.delivery(old));
        }
        Ok(StreamReply::Done)
    }

    /// Forgets the stream's pending deliveries (the stream is dropped).
    pub(super) fn drop_outbox(&mut self) -> Result<(), StoreError> {
        for (k, _) in self.kv.scan_prefix(&keys::stream_outbox(self.sk.0))? {
            self.kv.delete(&k);
        }
        Ok(())
    }
}

impl<R: KvRead> StreamReader<R> {
    /// A page of a delivery log, newest first.
    pub fn deliveries(
        &self,
        stream: &str,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<HookDelivery>, StoreError> {
        let prefix = keys::StreamKeys(stream).deliveries();
        self.reader
            .scan_prefix(&prefix)?
            .into_iter()
            .rev()
            .skip(offset)
            .take(limit)
            .map(|(k, v)| keys::decode_at(&k, &v))
            .collect()
    }
}

/// The first pending deliveries of a shard's replica (at most [`OUTBOX_BATCH`]), in key order.
pub fn pending(reader: &impl KvRead) -> Result<Vec<Pending>, StoreError> {
    let from = keys::outboxes();
    let mut to = from.clone();
    if let Some(last) = to.last_mut() {
        *last += 1;
    }
    reader
        .range(&from, &to, false, OUTBOX_BATCH)?
        .into_iter()
        .filter_map(|(k, v)| {
            let (stream, _) = keys::outbox_parts(&k)?;
            Some(keys::decode_at::<StoredEvent>(&k, &v).map(|event| Pending { stream, event }))
        })
        .collect()
}
