//! Batching of proposals on a group's leader.
//!
//! openraft appends each client write as its own log entry, and every entry costs a log append,
//! a flush and an apply. Under load the leader therefore packs the commands that are waiting for
//! a group into one entry ([`Batcher`]): up to [`MAX_BATCH_COMMANDS`] commands or
//! [`MAX_BATCH_BYTES`] bytes, with up to [`MAX_BATCHES_IN_FLIGHT`] entries being committed at
//! once, so batches form naturally while earlier ones commit and a lone command goes out at once.
//! [`BatchApplier`] unpacks an entry on every replica and applies its commands in order through
//! the group's real applier, in the same atomic state machine batch.
//!
//! Replies go out from the state machine. The batcher leaves each entry's replies in the group's
//! [`Waiting`] under the entry's [`BatchId`] (written into the entry); the replica that applies
//! the entry on this node takes them and answers the proposers as soon as the entry's writes are
//! readable ([`Applier::applied`]), on the state machine's task. Through openraft the answers
//! would wait for two more hand-overs on a busy node (the state machine's result to the group's
//! Raft core, the core's response to the batcher), ~1.1 ms on average and 7.5 ms at p99 at
//! 8,000 sends/s on one core (`docs/benchmarks.md`). The batcher still awaits openraft's
//! response to free the entry's slot, and answers the proposers itself when the entry failed or
//! timed out and its replies are still waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chatsdk_storage::{
    Applier, ApplyContext, Command, GroupId, KvBatch, Reply, ReplyValue, StoreError, TypeConfig,
};
use futures::stream::{FuturesUnordered, StreamExt};
use openraft::error::RaftError;
use openraft::raft::ClientWriteResult;
use openraft::Raft;
use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
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

/// Where the reply to one proposed command goes: called exactly once, from the batcher's task
/// (with [`Refusal::Unavailable`] if the batcher stops first). A proposer that waits wraps a
/// oneshot channel; the channel actors pass a function that posts the reply to their mailbox,
/// so a command costs no task of its own while it commits.
pub(crate) struct ReplyTo(Option<ReplyFn>);

/// What [`ReplyTo`] calls: the command's reply (typed when the applier answered a value on
/// this node), or why it has none.
type ReplyFn = Box<dyn FnOnce(Result<Reply, Refusal>) + Send>;

impl ReplyTo {
    pub(crate) fn new(f: impl FnOnce(Result<Reply, Refusal>) + Send + 'static) -> ReplyTo {
        ReplyTo(Some(Box::new(f)))
    }

    fn send(mut self, result: Result<Reply, Refusal>) {
        if let Some(f) = self.0.take() {
            f(result);
        }
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Err(stopped()));
        }
    }
}

fn stopped() -> Refusal {
    Refusal::Unavailable {
        reason: "group stopped".into(),
    }
}

/// Names one batch of one batcher: a random number drawn when the batcher starts and a count.
/// The draw keeps batches of different nodes (or of an earlier leadership of this node) from
/// sharing a name, so a replica never answers proposers with another batch's replies.
pub(crate) type BatchId = (u64, u64);

/// The first byte of an entry with a [`BatchId`]. Entries written before it (a bare
/// `Vec<ByteBuf>`) start with the varint of their command count, which bincode never encodes
/// as 255.
const ENTRY_WITH_ID: u8 = 0xff;

/// The replies of this node's batches whose entries are being committed, by batch: taken by the
/// replica that applies the entry here (see the module's note), or by the batcher when the
/// entry failed.
#[derive(Default)]
pub(crate) struct Waiting(Mutex<HashMap<BatchId, Vec<ReplyTo>>>);

impl Waiting {
    fn lock(&self) -> MutexGuard<'_, HashMap<BatchId, Vec<ReplyTo>>> {
        // The map holds no invariant a panic elsewhere could have broken halfway.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn put(&self, id: BatchId, replies: Vec<ReplyTo>) {
        self.lock().insert(id, replies);
    }

    fn take(&self, id: BatchId) -> Option<Vec<ReplyTo>> {
        self.lock().remove(&id)
    }
}

/// Encodes an entry: its batch id and its commands.
fn encode_entry(id: BatchId, commands: &[ByteBuf]) -> Result<Vec<u8>, crate::ClusterError> {
    // Room for the marker, the id and the count (varints: up to 9 bytes each) and each
    // command's length (5 bytes covers it below 4 GiB), so the buffer is allocated once.
    let size = 1 + 3 * 9 + commands.iter().map(|c| c.len() + 5).sum::<usize>();
    let mut entry = Vec::with_capacity(size);
    entry.push(ENTRY_WITH_ID);
    codec::encode_onto(&(id, commands), &mut entry)?;
    Ok(entry)
}

/// Decodes an entry of either form: `(batch id if any, commands)`.
fn decode_entry(entry: &[u8]) -> Result<(Option<BatchId>, Vec<ByteBuf>), crate::ClusterError> {
    match entry.split_first() {
        Some((&ENTRY_WITH_ID, rest)) => {
            let (id, commands) = codec::decode::<(BatchId, Vec<ByteBuf>)>(rest)?;
            Ok((Some(id), commands))
        }
        _ => Ok((None, codec::decode(entry)?)),
    }
}

/// A command waiting to be proposed.
struct Pending {
    command: Vec<u8>,
    reply: ReplyTo,
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
    /// dropped. An entry not committed within `commit_timeout` fails its commands.
    pub(crate) fn start(
        raft: Raft<TypeConfig>,
        waiting: Arc<Waiting>,
        token: CancellationToken,
        commit_timeout: Duration,
    ) -> Batcher {
        let (tx, rx) = mpsc::channel(PROPOSAL_QUEUE);
        let (paused, paused_rx) = watch::channel(false);
        let batches = Batches {
            raft,
            waiting,
            salt: rand::random(),
            count: 0,
        };
        tokio::spawn(run(batches, rx, paused_rx, token, commit_timeout));
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
        let (tx, rx) = oneshot::channel();
        let reply = ReplyTo::new(move |result| {
            let _caller_may_be_gone = tx.send(result);
        });
        self.tx
            .send(Pending { command, reply })
            .await
            .map_err(|_| stopped())?;
        rx.await
            .map_err(|_| stopped())??
            .into_bytes()
            .map_err(|e| Refusal::Failed {
                reason: e.to_string(),
            })
    }

    /// Queues one command without waiting; `reply` gets its outcome. A full queue answers
    /// [`Refusal::Unavailable`] at once.
    pub(crate) fn propose_then(&self, command: Vec<u8>, reply: ReplyTo) {
        if let Err(e) = self.tx.try_send(Pending { command, reply }) {
            let pending = match e {
                mpsc::error::TrySendError::Full(p) | mpsc::error::TrySendError::Closed(p) => p,
            };
            pending.reply.send(Err(Refusal::Unavailable {
                reason: "proposal queue full".into(),
            }));
        }
    }
}

/// The next batch once proposing is not paused (see [`next_batch`]).
async fn next_unpaused(
    rx: &mut mpsc::Receiver<Pending>,
    paused: &mut watch::Receiver<bool>,
    slots: &Arc<Semaphore>,
) -> Option<(OwnedSemaphorePermit, Vec<Pending>)> {
    paused.wait_for(|p| !*p).await.ok()?;
    let limits = Limits {
        max_items: MAX_BATCH_COMMANDS,
        max_bytes: MAX_BATCH_BYTES,
    };
    next_batch(rx, slots, &limits, |p: &Pending| p.command.len()).await
}

/// What the batcher proposes into.
struct Batches {
    raft: Raft<TypeConfig>,
    waiting: Arc<Waiting>,
    /// The random half of this batcher's [`BatchId`]s.
    salt: u64,
    /// Batches proposed so far.
    count: u64,
}

/// Proposes batches and hands the commands of failed ones their refusal (committed ones are
/// answered by the replica, see the module's note). The entries being committed are awaited
/// here too (not on a task each), so a batch costs no task spawn.
async fn run(
    mut batches: Batches,
    mut rx: mpsc::Receiver<Pending>,
    mut paused: watch::Receiver<bool>,
    token: CancellationToken,
    commit_timeout: Duration,
) {
    let slots = Arc::new(Semaphore::new(MAX_BATCHES_IN_FLIGHT));
    let mut in_flight = FuturesUnordered::new();
    let cancelled = token.cancelled();
    tokio::pin!(cancelled);
    loop {
        tokio::select! {
            () = &mut cancelled => return,
            Some((outcome, id)) = in_flight.next(), if !in_flight.is_empty() => {
                // Still here: the replica did not answer (the entry failed, timed out, or was
                // applied without its replies reaching the replica).
                if let Some(replies) = batches.waiting.take(id) {
                    deliver(outcome, replies);
                }
            }
            next = next_unpaused(&mut rx, &mut paused, &slots) => {
                let Some((permit, batch)) = next else { return };
                let (commands, replies): (Vec<ByteBuf>, Vec<ReplyTo>) = batch
                    .into_iter()
                    .map(|p| (ByteBuf::from(p.command), p.reply))
                    .unzip();
                batches.count += 1;
                let id = (batches.salt, batches.count);
                let entry = match encode_entry(id, &commands) {
                    Ok(e) => e,
                    Err(e) => {
                        fail_all(replies, Refusal::Failed { reason: e.to_string() });
                        continue;
                    }
                };
                batches.waiting.put(id, replies);
                match batches.raft.client_write_ff(Command(entry.into())).await {
                    Ok(committed) => in_flight.push(async move {
                        let outcome = tokio::time::timeout(commit_timeout, committed).await;
                        drop(permit);
                        (outcome, id)
                    }),
                    Err(fatal) => {
                        if let Some(replies) = batches.waiting.take(id) {
                            fail_all(replies, Refusal::Unavailable { reason: fatal.to_string() });
                        }
                    }
                }
            }
        }
    }
}

type CommitOutcome = Result<
    Result<ClientWriteResult<TypeConfig>, oneshot::error::RecvError>,
    tokio::time::error::Elapsed,
>;

/// Hands each command of a committed (or failed) batch its reply.
fn deliver(outcome: CommitOutcome, replies: Vec<ReplyTo>) {
    let response = match outcome {
        Ok(Ok(Ok(response))) => response,
        Ok(Ok(Err(e))) => return fail_all(replies, write_refusal(RaftError::APIError(e))),
        Ok(Err(_)) => return fail_all(replies, stopped()),
        Err(_) => {
            return fail_all(
                replies,
                Refusal::Unavailable {
                    reason: "the entry was not committed in time".into(),
                },
            )
        }
    };
    let results = match response.data.downcast::<BatchReplies>() {
        // Applied on this node: the commands' replies as the applier answered them.
        Ok(batch) => Ok(batch.0),
        Err(reply) => reply
            .into_bytes()
            .map_err(|e| e.to_string())
            .and_then(|raw| codec::decode::<Vec<ByteBuf>>(&raw).map_err(|e| e.to_string()))
            .map(|raw| {
                raw.into_iter()
                    .map(|b| Reply::Bytes(b.into_vec()))
                    .collect()
            }),
    };
    match results {
        Ok(results) if results.len() == replies.len() => {
            for (reply, result) in replies.into_iter().zip(results) {
                reply.send(Ok(result));
            }
        }
        Ok(results) => fail_all(
            replies,
            Refusal::Failed {
                reason: format!("batch reply has {} results", results.len()),
            },
        ),
        Err(reason) => fail_all(replies, Refusal::Failed { reason }),
    }
}

fn fail_all(replies: Vec<ReplyTo>, refusal: Refusal) {
    for reply in replies {
        reply.send(Err(refusal.clone()));
    }
}

/// Applies batched entries through a group's applier, one command at a time, in order, and
/// answers this node's proposers of an entry once its writes are readable.
pub(crate) struct BatchApplier {
    inner: Arc<dyn Applier>,
    /// The group's batches proposed on this node.
    waiting: Arc<Waiting>,
    /// Proposers of entries applied by the `apply` in progress, with their replies, answered by
    /// [`Applier::applied`] (after the writes joined the readable state, not before).
    answers: Mutex<Vec<(Vec<ReplyTo>, Vec<Reply>)>>,
}

impl BatchApplier {
    pub(crate) fn wrap(inner: Arc<dyn Applier>, waiting: Arc<Waiting>) -> Arc<dyn Applier> {
        Arc::new(BatchApplier {
            inner,
            waiting,
            answers: Mutex::default(),
        })
    }

    fn answers(&self) -> MutexGuard<'_, Vec<(Vec<ReplyTo>, Vec<Reply>)>> {
        self.answers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn codec_to_store(e: crate::ClusterError) -> StoreError {
    StoreError::Decode(bincode::error::DecodeError::OtherString(e.to_string()))
}

/// The replies of one entry's commands, in order: encoded (as the byte strings of a
/// `Vec<ByteBuf>`) only when the entry's reply leaves the node.
struct BatchReplies(Vec<Reply>);

impl ReplyValue for BatchReplies {
    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let raw = self
            .0
            .iter()
            .map(|r| r.encoded().map(ByteBuf::from))
            .collect::<Result<Vec<_>, _>>()?;
        codec::encode(&raw).map_err(codec_to_store)
    }
}

impl Applier for BatchApplier {
    fn apply(
        &self,
        ctx: &ApplyContext,
        kv: &mut KvBatch<'_>,
        entry: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        self.apply_reply(ctx, kv, entry)?.into_bytes()
    }

    fn apply_reply(
        &self,
        ctx: &ApplyContext,
        kv: &mut KvBatch<'_>,
        entry: &[u8],
    ) -> Result<Reply, StoreError> {
        // An entry this build cannot unpack is refused identically on every replica: no command
        // of it applies, and the proposers get a decode failure.
        let (id, commands) = match decode_entry(entry) {
            Ok(c) => c,
            Err(_) => return Ok(Reply::Value(Box::new(BatchReplies(Vec::new())))),
        };
        let mut replies = Vec::with_capacity(commands.len());
        for (position, command) in commands.iter().enumerate() {
            let sub = ApplyContext {
                position: position as u32,
                ..*ctx
            };
            replies.push(self.inner.apply_reply(&sub, kv, command)?);
        }
        // Proposed here: its proposers are answered from this replica (the entry's reply to
        // openraft is then empty; the batcher finds nothing left to answer).
        match id.and_then(|id| self.waiting.take(id)) {
            Some(proposers) if proposers.len() == replies.len() => {
                self.answers().push((proposers, replies));
                Ok(Reply::Value(Box::new(BatchReplies(Vec::new()))))
            }
            Some(proposers) => {
                let reason = format!(
                    "batch of {} commands has {} proposers",
                    replies.len(),
                    proposers.len()
                );
                fail_all(proposers, Refusal::Failed { reason });
                Ok(Reply::Value(Box::new(BatchReplies(Vec::new()))))
            }
            None => Ok(Reply::Value(Box::new(BatchReplies(replies)))),
        }
    }

    fn applied(&self, group: GroupId, last_index: u64) {
        self.inner.applied(group, last_index);
        let answers = std::mem::take(&mut *self.answers());
        for (proposers, replies) in answers {
            for (proposer, reply) in proposers.into_iter().zip(replies) {
                proposer.send(Ok(reply));
            }
        }
    }

    fn snapshot_installed(&self, group: GroupId) {
        self.inner.snapshot_installed(group);
    }

    fn absent_keys(&self) -> Option<chatsdk_storage::absent::Tracked> {
        self.inner.absent_keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands(n: usize) -> Vec<ByteBuf> {
        (0..n)
            .map(|i| ByteBuf::from(vec![i as u8; i % 7]))
            .collect()
    }

    #[test]
    fn entries_with_and_without_a_batch_id_decode() {
        let cmds = commands(3);
        let with_id = encode_entry((7, 9), &cmds).expect("encodes");
        assert_eq!(
            decode_entry(&with_id).expect("decodes"),
            (Some((7, 9)), cmds.clone())
        );
        // As builds before batch ids wrote them.
        let bare = codec::encode(&cmds).expect("encodes");
        assert_eq!(decode_entry(&bare).expect("decodes"), (None, cmds));
        assert!(decode_entry(&[ENTRY_WITH_ID, 1, 2]).is_err());
    }

    #[test]
    fn an_entry_without_a_batch_id_never_starts_with_the_marker() {
        for n in [0, 1, 2, 250, 251, 252, 1024, 65_536, 70_000] {
            let bare = codec::encode(&vec![ByteBuf::new(); n]).expect("encodes");
            assert_ne!(bare[0], ENTRY_WITH_ID, "{n} commands");
        }
    }

    #[test]
    fn waiting_replies_are_taken_once() {
        let waiting = Waiting::default();
        let (tx, mut rx) = oneshot::channel();
        waiting.put(
            (1, 1),
            vec![ReplyTo::new(move |r| {
                let _ = tx.send(r.is_ok());
            })],
        );
        let taken = waiting.take((1, 1)).expect("waiting");
        assert!(waiting.take((1, 1)).is_none());
        for reply in taken {
            reply.send(Ok(Reply::Bytes(Vec::new())));
        }
        assert_eq!(rx.try_recv().ok(), Some(true));
    }
}
