//! Carries a channel's events to every node that has subscribers.
//!
//! The channel actor encodes each event once; the emitter hands those bytes to this node's
//! [`Fanout`] and queues them once per other node that wants them: on the shard's leader, those
//! its [`Interest`] names; elsewhere (typing, unread notices sent where a request arrived), every
//! other node. Each peer has a bounded queue drained by one
//! task that sends deliveries in batches (one cluster message for many events). When a peer's
//! queue is full the event is dropped for that peer: its subscribers see the gap and recover, so
//! a slow or dead node never slows a channel down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use chatsdk_cluster::{ClusterNode, NodeId};
use tokio::sync::mpsc;

use crate::fanout::Fanout;
use crate::interest::Interest;
use chatsdk_cluster::GroupId;

/// Topic of delivery messages between nodes.
pub const TOPIC_DELIVER: u16 = 0x4301;
/// Deliveries queued per peer before new ones are dropped for it.
const PEER_QUEUE: usize = 8192;
/// Deliveries per cluster message.
const BATCH: usize = 256;

/// One event for the subscribers of one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub channel: String,
    pub offset: Option<u64>,
    /// Whose act the event is (see `Event::author`): not delivered to those who block them.
    pub author: Option<Arc<str>>,
    pub frame: Bytes,
}

/// A batch's place in its sender's order (see [`crate::resequence`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSeq {
    /// Changes when the sender's task for this peer is replaced (its numbering starts over).
    pub incarnation: u64,
    pub seq: u64,
}

/// Encodes a batch as `[u64 incarnation][u64 seq]` then
/// `[u32 len][channel][u8 has][u64 offset][u16 len][author][u32 len][frame]`* (an absent
/// author has length 0: user ids are never empty).
pub fn encode_batch(at: BatchSeq, batch: &[Delivery]) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(
        16 + batch
            .iter()
            .map(|d| {
                d.channel.len() + d.frame.len() + 19 + d.author.as_ref().map_or(0, |a| a.len())
            })
            .sum::<usize>(),
    );
    out.put_u64(at.incarnation);
    out.put_u64(at.seq);
    for d in batch {
        out.put_u32(d.channel.len() as u32);
        out.put_slice(d.channel.as_bytes());
        out.put_u8(u8::from(d.offset.is_some()));
        out.put_u64(d.offset.unwrap_or(0));
        let author = d.author.as_deref().unwrap_or_default().as_bytes();
        // User ids are at most 255 characters (`validate::user_id`): they always fit.
        let author = &author[..author.len().min(usize::from(u16::MAX))];
        out.put_u16(author.len() as u16);
        out.put_slice(author);
        out.put_u32(d.frame.len() as u32);
        out.put_slice(&d.frame);
    }
    out.to_vec()
}

/// Decodes [`encode_batch`]'s output; None if it is malformed.
pub fn decode_batch(raw: &[u8]) -> Option<(BatchSeq, Vec<Delivery>)> {
    let mut buf = Bytes::copy_from_slice(raw);
    if buf.remaining() < 16 {
        return None;
    }
    let at = BatchSeq {
        incarnation: buf.get_u64(),
        seq: buf.get_u64(),
    };
    let mut out = Vec::new();
    while buf.has_remaining() {
        if buf.remaining() < 4 {
            return None;
        }
        let n = buf.get_u32() as usize;
        if buf.remaining() < n + 11 {
            return None;
        }
        let channel = String::from_utf8(buf.split_to(n).to_vec()).ok()?;
        let has = buf.get_u8() == 1;
        let offset = buf.get_u64();
        let a = usize::from(buf.get_u16());
        if buf.remaining() < a + 4 {
            return None;
        }
        let author = match a {
            0 => None,
            _ => Some(Arc::from(std::str::from_utf8(&buf.split_to(a)).ok()?)),
        };
        let m = buf.get_u32() as usize;
        if buf.remaining() < m {
            return None;
        }
        let frame = buf.split_to(m);
        out.push(Delivery {
            channel,
            offset: has.then_some(offset),
            author,
            frame,
        });
    }
    Some((at, out))
}

/// Sends events to local subscribers and to the other nodes.
pub struct Emitter {
    cluster: ClusterNode,
    fanout: Arc<Fanout>,
    interest: Arc<Interest>,
    peers: Mutex<HashMap<NodeId, mpsc::Sender<Delivery>>>,
}

impl Emitter {
    pub fn new(cluster: ClusterNode, fanout: Arc<Fanout>, interest: Arc<Interest>) -> Self {
        Emitter {
            cluster,
            fanout,
            interest,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an event of `channel` (in shard `group`) would reach anyone: a subscriber here,
    /// or another node that wants it (unknown unless this node leads the shard: then yes).
    /// Ephemeral notices are rendered only when someone would get them.
    pub fn has_audience(&self, channel: &str, group: impl FnOnce() -> GroupId) -> bool {
        if self.fanout.has_subscribers(channel) {
            return true;
        }
        let others = self.cluster.other_active_nodes();
        if others.is_empty() {
            return false;
        }
        let group = group();
        let leading = self.cluster.watch_leadership().borrow().contains(&group);
        !leading || !self.interest.targets(channel, group, &others).is_empty()
    }

    /// Delivers one event of `channel` (in shard `group`) here and on every other active node
    /// that wants it.
    pub fn emit(
        &self,
        channel: &str,
        group: GroupId,
        offset: Option<u64>,
        author: Option<&str>,
        frame: Bytes,
    ) {
        self.fanout.deliver(channel, offset, author, &frame);
        let others = self.cluster.other_active_nodes();
        if others.is_empty() {
            return;
        }
        let leading = self.cluster.watch_leadership().borrow().contains(&group);
        let targets = if leading {
            self.interest.targets(channel, group, &others)
        } else {
            others
        };
        let author: Option<Arc<str>> = author.map(Arc::from);
        for node in targets {
            let tx = self.peer(node);
            let d = Delivery {
                channel: channel.to_string(),
                offset,
                author: author.clone(),
                frame: frame.clone(),
            };
            if tx.try_send(d).is_err() {
                tracing::debug!(
                    node,
                    channel,
                    "peer delivery queue full: event dropped for that node"
                );
            }
        }
    }

    fn peer(&self, node: NodeId) -> mpsc::Sender<Delivery> {
        let mut peers = match self.peers.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(tx) = peers.get(&node) {
            if !tx.is_closed() {
                return tx.clone();
            }
        }
        let (tx, mut rx) = mpsc::channel::<Delivery>(PEER_QUEUE);
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            let mut at = BatchSeq {
                incarnation: rand::random::<u64>() | 1,
                seq: 0,
            };
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                at.seq += 1;
                let body = encode_batch(at, &batch);
                batch.clear();
                if let Err(e) = cluster.send_upper(node, TOPIC_DELIVER, body).await {
                    tracing::debug!(node, error = %e, "delivery to peer failed");
                }
            }
        });
        peers.insert(node, tx.clone());
        tx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_garbage_is_refused() {
        let batch = vec![
            Delivery {
                channel: "chat:a:b".into(),
                offset: Some(7),
                author: Some(Arc::from("bob")),
                frame: Bytes::from_static(b"{\"x\":1}"),
            },
            Delivery {
                channel: "chat:a:c".into(),
                offset: None,
                author: None,
                frame: Bytes::from_static(b"{}"),
            },
        ];
        let at = BatchSeq {
            incarnation: 5,
            seq: 2,
        };
        let raw = encode_batch(at, &batch);
        assert_eq!(decode_batch(&raw), Some((at, batch)));
        assert_eq!(decode_batch(&raw[..raw.len() - 1]), None);
        assert_eq!(decode_batch(&[0, 0, 0, 9, 1]), None);
        assert_eq!(
            decode_batch(&[0; 16]),
            Some((
                BatchSeq {
                    incarnation: 0,
                    seq: 0
                },
                vec![]
            ))
        );
    }
}
