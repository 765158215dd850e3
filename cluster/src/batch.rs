//! Batching of proposals on a group's leader.
//!
//! openraft appends each client write as its own log entry, and every entry costs a log append,
//! a flush and an apply. Under load the leader therefore packs the commands that are waiting for
//! a group into one entry ([`Batcher`]): up to [`MAX_BATCH_COMMANDS`] commands or
//! [`MAX_BATCH_BYTES`] bytes, with up to [`MAX_BATCHES_IN_FLIGHT`] entries being committed at
//! once, so batches form naturally while earlier ones commit and a lone command goes out at once.
//! [`BatchApplier`] unpacks an entry on every replica and applies its commands in order through
//! the group's real applier, in the same atomic state machine batch.

use std::sync::Arc;

use chatsdk_storage::{Applier, ApplyContext, Command, GroupId, KvBatch, StoreError, TypeConfig};
use openraft::Raft;
use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::batching::{next_batch, Limits};
use crate::codec;
use crate::handler::write_refusal;
use crate::wire::Refusal;

/// Commands waiting for a group's batcher. Proposers wait when it is full (back-pressure).
const PROPOSAL_QUEUE: usize = 8192;
/// Most commands in one entry.
pub(crate) const MAX_BATCH_COMMANDS: usize = 1024;
/// Most command bytes in one entry (Raft sends up to `max_payload_entries` entries in one
/// frame, so this times that must stay well under the transport's frame limit).
pub(crate) const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Entries of one group being committed at the same time.
const MAX_BATCHES_IN_FLIGHT: usize = 4;

type ReplyTx = oneshot::Sender<Result<Vec<u8>, Refusal>>;

/// A command waiting to be proposed.
struct Pending {
    command: Vec<u8>,
    reply: ReplyTx,
}

/// The proposal queue of one group on this node.
#[derive(Clone)]
pub(crate) struct Batcher {
    tx: mpsc::Sender<Pending>,
    /// While true, nothing new is proposed (a leader hand-over lets followers' leases lapse);
    /// commands wait in the queue.
    paused: Arc<watch::Sender<bool>>,
}

impl Batcher {
    /// Starts the batcher of a group; it stops when the token is cancelled or the last handle is
    /// dropped.
    pub(crate) fn start(raft: Raft<TypeConfig>, token: CancellationToken) -> Batcher {
        let (tx, rx) = mpsc::channel(PROPOSAL_QUEUE);
        let (paused, paused_rx) = watch::channel(false);
        tokio::spawn(run(raft, rx, paused_rx, token));
        Batcher {
            tx,
            paused: Arc::new(paused),
        }
    }

    /// Stops (true) or resumes (false) proposing.
    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
    }

    /// Proposes one command and waits for its reply.
    pub(crate) async fn propose(&self, command: Vec<u8>) -> Result<Vec<u8>, Refusal> {
        let (reply, rx) = oneshot::channel();
        let stopped = || Refusal::Unavailable {
            reason: "group stopped".into(),
        };
        self.tx
            .send(Pending { command, reply })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn run(
    raft: Raft<TypeConfig>,
    mut rx: mpsc::Receiver<Pending>,
    mut paused: watch::Receiver<bool>,
    token: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_BATCHES_IN_FLIGHT));
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            resumed = paused.wait_for(|p| !*p) => if resumed.is_err() { return },
        }
        let limits = Limits {
            max_items: MAX_BATCH_COMMANDS,
            max_bytes: MAX_BATCH_BYTES,
        };
        let Some((permit, batch)) = next_batch(&mut rx, &slots, &token, &limits, |p: &Pending| {
            p.command.len()
        })
        .await
        else {
            return;
        };
        let (commands, replies): (Vec<ByteBuf>, Vec<ReplyTx>) = batch
            .into_iter()
            .map(|p| (ByteBuf::from(p.command), p.reply))
            .unzip();
        let entry = match codec::encode(&commands) {
            Ok(e) => e,
            Err(e) => {
                fail_all(
                    replies,
                    Refusal::Failed {
                        reason: e.to_string(),
                    },
                );
                continue;
            }
        };
        let raft = raft.clone();
        tokio::spawn(async move {
            let outcome = raft.client_write(Command(entry)).await;
            drop(permit);
            match outcome {
                Ok(response) => match codec::decode::<Vec<ByteBuf>>(&response.data.0) {
                    Ok(results) if results.len() == replies.len() => {
                        for (reply, result) in replies.into_iter().zip(results) {
                            let _caller_may_be_gone = reply.send(Ok(result.into_vec()));
                        }
                    }
                    Ok(results) => fail_all(
                        replies,
                        Refusal::Failed {
                            reason: format!("batch reply has {} results", results.len()),
                        },
                    ),
                    Err(e) => fail_all(
                        replies,
                        Refusal::Failed {
                            reason: e.to_string(),
                        },
                    ),
                },
                Err(e) => fail_all(replies, write_refusal(e)),
            }
        });
    }
}

fn fail_all(replies: Vec<ReplyTx>, refusal: Refusal) {
    for reply in replies {
        let _caller_may_be_gone = reply.send(Err(refusal.clone()));
    }
}

/// Applies batched entries through a group's applier, one command at a time, in order.
pub(crate) struct BatchApplier {
    inner: Arc<dyn Applier>,
}

impl BatchApplier {
    pub(crate) fn wrap(inner: Arc<dyn Applier>) -> Arc<dyn Applier> {
        Arc::new(BatchApplier { inner })
    }
}

fn codec_to_store(e: crate::ClusterError) -> StoreError {
    StoreError::Decode(bincode::error::DecodeError::OtherString(e.to_string()))
}

impl Applier for BatchApplier {
    fn apply(
        &self,
        ctx: &ApplyContext,
        kv: &mut KvBatch<'_>,
        entry: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        // An entry this build cannot unpack is refused identically on every replica: no command
        // of it applies, and the proposers get a decode failure.
        let commands: Vec<ByteBuf> = match codec::decode(entry) {
            Ok(c) => c,
            Err(_) => return codec::encode(&Vec::<ByteBuf>::new()).map_err(codec_to_store),
        };
        let mut replies = Vec::with_capacity(commands.len());
        for (position, command) in commands.iter().enumerate() {
            let sub = ApplyContext {
                position: position as u32,
                ..*ctx
            };
            replies.push(ByteBuf::from(self.inner.apply(&sub, kv, command)?));
        }
        codec::encode(&replies).map_err(codec_to_store)
    }

    fn applied(&self, group: GroupId, last_index: u64) {
        self.inner.applied(group, last_index);
    }

    fn snapshot_installed(&self, group: GroupId) {
        self.inner.snapshot_installed(group);
    }
}
