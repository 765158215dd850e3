//! Batching of proposals forwarded to another node.
//!
//! A node that does not lead a group forwards proposals to the node that does. Sending each one
//! on its own QUIC stream costs a stream, a frame and a task on both sides per command; instead,
//! proposals bound for the same node are packed into one [`PeerRequest::ProposeMany`] (any mix of
//! groups), with a few such requests in flight per peer so batches form while earlier ones are
//! answered. Each command still gets its own result, so routing retries and redirects per command
//! exactly as before.

use std::sync::Arc;
use std::time::Duration;

use chatsdk_storage::{GroupId, NodeId};
use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::batching::{next_batch, Limits};
use crate::codec;
use crate::transport::Transport;
use crate::wire::{PeerRequest, PeerResponse, Refusal};

/// Commands waiting to be forwarded to one peer; proposers wait when it is full.
const FORWARD_QUEUE: usize = 4096;
/// Most commands in one forwarded request.
const MAX_FORWARD_COMMANDS: usize = 512;
/// Most command bytes in one forwarded request (well under the transport's frame limit).
const MAX_FORWARD_BYTES: usize = 1024 * 1024;
/// Forwarded requests in flight to one peer.
const MAX_FORWARDS_IN_FLIGHT: usize = 8;

/// What a forwarded command came back with: the leader's answer, or why it could not be asked.
pub(crate) type Forwarded = Result<Result<Vec<u8>, Refusal>, String>;

struct Item {
    group: GroupId,
    command: Vec<u8>,
    reply: oneshot::Sender<Forwarded>,
}

/// The forwarding queue towards one peer.
#[derive(Clone)]
pub(crate) struct Forwarder {
    tx: mpsc::Sender<Item>,
}

impl Forwarder {
    pub(crate) fn start(
        transport: Transport,
        peer: NodeId,
        timeout: Duration,
        token: CancellationToken,
    ) -> Forwarder {
        let (tx, rx) = mpsc::channel(FORWARD_QUEUE);
        tokio::spawn(run(transport, peer, timeout, rx, token));
        Forwarder { tx }
    }

    /// Proposals waiting in the queue (not yet sent to the peer).
    pub(crate) fn queued(&self) -> usize {
        FORWARD_QUEUE - self.tx.capacity()
    }

    /// Forwards one proposal and waits for its result.
    pub(crate) async fn propose(&self, group: GroupId, command: Vec<u8>) -> Forwarded {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Item {
                group,
                command,
                reply,
            })
            .await
            .map_err(|_| "forwarder stopped".to_string())?;
        rx.await.map_err(|_| "forwarder stopped".to_string())?
    }
}

async fn run(
    transport: Transport,
    peer: NodeId,
    timeout: Duration,
    mut rx: mpsc::Receiver<Item>,
    token: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_FORWARDS_IN_FLIGHT));
    let limits = Limits {
        max_items: MAX_FORWARD_COMMANDS,
        max_bytes: MAX_FORWARD_BYTES,
    };
    let cancelled = token.cancelled();
    tokio::pin!(cancelled);
    loop {
        let next = tokio::select! {
            () = &mut cancelled => return,
            next = next_batch(&mut rx, &slots, &limits, |i: &Item| i.command.len()) => next,
        };
        let Some((permit, batch)) = next else {
            return;
        };
        let mut items = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for item in batch {
            items.push((item.group, ByteBuf::from(item.command)));
            replies.push(item.reply);
        }
        let transport = transport.clone();
        tokio::spawn(async move {
            let outcome = send(&transport, peer, items, timeout).await;
            drop(permit);
            match outcome {
                Ok(results) if results.len() == replies.len() => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _caller_may_be_gone = reply.send(Ok(result.map(ByteBuf::into_vec)));
                    }
                }
                Ok(results) => fail_all(
                    replies,
                    format!("node {peer} answered {} results", results.len()),
                ),
                Err(reason) => fail_all(replies, reason),
            }
        });
    }
}

async fn send(
    transport: &Transport,
    peer: NodeId,
    items: Vec<(GroupId, ByteBuf)>,
    timeout: Duration,
) -> Result<Vec<Result<ByteBuf, Refusal>>, String> {
    let body = codec::encode(&PeerRequest::ProposeMany { items }).map_err(|e| e.to_string())?;
    let raw = transport
        .request_with_timeout(peer, body, timeout)
        .await
        .map_err(|e| e.to_string())?;
    match codec::decode::<PeerResponse>(&raw).map_err(|e| e.to_string())? {
        PeerResponse::ProposedMany(results) => Ok(results),
        other => Err(format!(
            "unexpected answer to forwarded proposals: {other:?}"
        )),
    }
}

fn fail_all(replies: Vec<oneshot::Sender<Forwarded>>, reason: String) {
    for reply in replies {
        let _caller_may_be_gone = reply.send(Err(reason.clone()));
    }
}
