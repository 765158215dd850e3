//! Sending a snapshot to a follower, and installing it there, with timeouts that measure
//! progress rather than size.
//!
//! openraft's own sender gives each chunk one RPC timeout, the last chunk included, and the
//! follower answers the last chunk only once the whole snapshot is installed: a group whose
//! install takes longer than one RPC timeout could never be installed (the leader would give up
//! and start over, for ever). Here each chunk keeps that timeout
//! ([`crate::ClusterConfig::snapshot_chunk_timeout`]), but the follower answers the last chunk
//! as soon as the install has started ([`PeerResponse::Installing`], with how many entries it has
//! installed so far), and the leader then asks how far it got ([`PeerRequest::InstallProgress`])
//! until it is done. It gives up only when the follower stops answering, or when the count has
//! not moved for [`crate::ClusterConfig::snapshot_stall_timeout`].
//!
//! The snapshot's bytes are a file on both sides (`chatsdk_storage::snapshot_file`): the leader
//! reads one chunk at a time, the follower's openraft writes each into its own file.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chatsdk_storage::{GroupId, NodeId, TypeConfig};
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Timeout, Unreachable,
};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse, SnapshotResponse};
use openraft::storage::Snapshot;
use openraft::{ErrorSubject, ErrorVerb, Raft, StorageError, Vote};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

use crate::node::NodeInner;
use crate::wire::{PeerRequest, PeerResponse, Refusal};

/// Bytes of a snapshot per request.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;
/// How long the follower holds the last chunk's answer back for the install to finish, and how
/// often the leader asks for progress after.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// Failed sends of one chunk before the leader gives up (openraft starts over later).
const CHUNK_ATTEMPTS: u32 = 3;

type InstallResult =
    Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>;
type SendResult = Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>>;

/// What the leader needs to reach a follower.
pub(crate) struct Link<'a> {
    pub(crate) group: GroupId,
    pub(crate) target: NodeId,
    pub(crate) transport: &'a crate::transport::Transport,
    pub(crate) chunk_timeout: Duration,
    pub(crate) stall_timeout: Duration,
}

impl Link<'_> {
    async fn call(
        &self,
        request: &PeerRequest,
    ) -> Result<PeerResponse, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let body = crate::codec::encode(request).map_err(|e| network(e.to_string()))?;
        let raw = self
            .transport
            .request_with_timeout(self.target, body, self.chunk_timeout)
            .await
            .map_err(|e| Unreachable::new(&e))?;
        let response: PeerResponse =
            crate::codec::decode(&raw).map_err(|e| network(e.to_string()))?;
        if let PeerResponse::NoSuchGroup = response {
            return Err(network(format!(
                "node {} has no replica of group {} yet",
                self.target, self.group
            )));
        }
        Ok(response)
    }

    /// [`Link::call`], tried up to [`CHUNK_ATTEMPTS`] times, waiting `pause(attempt)` between.
    async fn call_again(
        &self,
        request: &PeerRequest,
        pause: impl Fn(u32) -> Duration,
    ) -> Result<PeerResponse, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let mut attempt = 1;
        loop {
            match self.call(request).await {
                Ok(answer) => return Ok(answer),
                Err(e) if attempt >= CHUNK_ATTEMPTS => return Err(e),
                Err(_) => {
                    tokio::time::sleep(pause(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Sends `snapshot` and waits until the follower installed it or refused it (see the
    /// module docs).
    pub(crate) async fn send(
        &self,
        vote: Vote<NodeId>,
        mut snapshot: Snapshot<TypeConfig>,
        cancel: impl std::future::Future<Output = ReplicationClosed>,
    ) -> SendResult {
        let mut cancel = std::pin::pin!(cancel);
        tokio::select! {
            closed = &mut cancel => Err(closed.into()),
            sent = self.send_chunks(vote, &mut snapshot) => sent,
        }
    }

    async fn send_chunks(
        &self,
        vote: Vote<NodeId>,
        snapshot: &mut Snapshot<TypeConfig>,
    ) -> SendResult {
        let meta = snapshot.meta.clone();
        let read_err = |e: std::io::Error| -> StreamingError<TypeConfig, Fatal<NodeId>> {
            StorageError::from_io_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                e,
            )
            .into()
        };
        let data = &mut snapshot.snapshot;
        let end = data.seek(SeekFrom::End(0)).await.map_err(read_err)?;
        let mut offset = 0u64;
        loop {
            data.seek(SeekFrom::Start(offset)).await.map_err(read_err)?;
            let len = usize::try_from(end - offset).map_or(CHUNK_BYTES, |l| l.min(CHUNK_BYTES));
            let mut chunk = vec![0u8; len];
            data.read_exact(&mut chunk).await.map_err(read_err)?;
            let done = offset + len as u64 == end;
            let request = PeerRequest::InstallSnapshot {
                group: self.group,
                rpc: InstallSnapshotRequest {
                    vote,
                    meta: meta.clone(),
                    offset,
                    data: chunk,
                    done,
                },
            };
            let answer = self
                .call_again(&request, |n| Duration::from_millis(100 << n))
                .await?;
            match answer {
                PeerResponse::InstallSnapshot(Ok(r)) if done || r.vote > vote => {
                    return Ok(SnapshotResponse::new(r.vote))
                }
                PeerResponse::InstallSnapshot(Ok(_)) => offset += len as u64,
                // The follower lost the stream (it restarted, or took another snapshot since).
                PeerResponse::InstallSnapshot(Err(RaftError::APIError(
                    InstallSnapshotError::SnapshotMismatch(_),
                ))) => offset = 0,
                PeerResponse::InstallSnapshot(Err(RaftError::Fatal(fatal))) => {
                    return Err(RemoteError::new(self.target, fatal).into())
                }
                PeerResponse::Installing { installed } if done => {
                    return self.wait_installed(&meta.snapshot_id, installed).await
                }
                other => {
                    return Err(network(format!(
                        "unexpected answer to a snapshot chunk: {other:?}"
                    )))
                }
            }
        }
    }

    /// Asks for the follower's progress until the install is done; gives up when the count of
    /// installed entries stands still for the stall timeout.
    async fn wait_installed(&self, snapshot_id: &str, mut installed: u64) -> SendResult {
        let mut moved_at = Instant::now();
        loop {
            if moved_at.elapsed() >= self.stall_timeout {
                return Err(Timeout {
                    action: openraft::RPCTypes::InstallSnapshot,
                    id: self.target,
                    target: self.target,
                    timeout: self.stall_timeout,
                }
                .into());
            }
            let request = PeerRequest::InstallProgress {
                group: self.group,
                snapshot_id: snapshot_id.to_string(),
            };
            // A lost answer is not a stalled install: ask again, a few times.
            let answer = self.call_again(&request, |_| ANSWER_WITHIN).await?;
            match answer {
                PeerResponse::Installing { installed: now } => {
                    if now != installed {
                        installed = now;
                        moved_at = Instant::now();
                    }
                }
                PeerResponse::InstallSnapshot(Ok(r)) => return Ok(SnapshotResponse::new(r.vote)),
                PeerResponse::InstallSnapshot(Err(RaftError::Fatal(fatal))) => {
                    return Err(RemoteError::new(self.target, fatal).into())
                }
                other => {
                    return Err(network(format!(
                        "install of snapshot {snapshot_id}: {other:?}"
                    )))
                }
            }
        }
    }
}

fn network(reason: String) -> StreamingError<TypeConfig, Fatal<NodeId>> {
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Text(String);
    NetworkError::new(&Text(reason)).into()
}

/// A snapshot being installed on this node (one per group: a newer one replaces it).
pub(crate) struct Installing {
    snapshot_id: String,
    done: watch::Receiver<Option<InstallResult>>,
}

/// The installs of a node, by group, and how many were started since the node started.
#[derive(Default)]
pub(crate) struct Installs {
    running: Mutex<HashMap<GroupId, Installing>>,
    started: AtomicU64,
}

impl Installs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GroupId, Installing>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Installs started on this node since it started.
    pub(crate) fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Installs under way now (started and not finished; a finished one stays listed until its
    /// leader hears the outcome).
    pub(crate) fn running(&self) -> u64 {
        self.lock()
            .values()
            .filter(|i| i.done.borrow().is_none())
            .count() as u64
    }
}

/// Serves the last chunk of a snapshot: starts the install and answers with its outcome if it
/// is done within [`ANSWER_WITHIN`], with its progress otherwise.
pub(crate) async fn install_last(
    node: &Arc<NodeInner>,
    group: GroupId,
    raft: Raft<TypeConfig>,
    rpc: InstallSnapshotRequest<TypeConfig>,
) -> PeerResponse {
    let snapshot_id = rpc.meta.snapshot_id.clone();
    // The last chunk again (its answer was lost): the install it started goes on.
    let running = node
        .installs
        .lock()
        .get(&group)
        .filter(|i| i.snapshot_id == snapshot_id)
        .map(|i| i.done.clone());
    if let Some(done) = running {
        return answer(node, group, &snapshot_id, done).await;
    }
    // openraft asks for the log's purge up to the snapshot as soon as it takes the install;
    // the log holds it until the install is durable. Held from now, however long the transfer
    // took.
    if let Err(e) = node.store.hold_purges_for_install(group) {
        return PeerResponse::Done(Err(Refusal::Unavailable {
            reason: format!("cannot install a snapshot of group {group} now: {e}"),
        }));
    }
    let (tx, done) = watch::channel(None);
    node.installs.lock().insert(
        group,
        Installing {
            snapshot_id: snapshot_id.clone(),
            done: done.clone(),
        },
    );
    node.installs.started.fetch_add(1, Ordering::Relaxed);
    node.tasks.spawn(async move {
        let result = raft.install_snapshot(rpc).await;
        let _no_one_may_ask_any_more = tx.send(Some(result));
    });
    answer(node, group, &snapshot_id, done).await
}

/// Serves a leader's question about an install it started here.
pub(crate) async fn progress(
    node: &Arc<NodeInner>,
    group: GroupId,
    snapshot_id: &str,
) -> PeerResponse {
    let done = node
        .installs
        .lock()
        .get(&group)
        .filter(|i| i.snapshot_id == snapshot_id)
        .map(|i| i.done.clone());
    match done {
        Some(done) => answer(node, group, snapshot_id, done).await,
        None => PeerResponse::Done(Err(Refusal::Failed {
            reason: format!("no install of snapshot {snapshot_id} of group {group} here"),
        })),
    }
}

async fn answer(
    node: &Arc<NodeInner>,
    group: GroupId,
    snapshot_id: &str,
    mut done: watch::Receiver<Option<InstallResult>>,
) -> PeerResponse {
    let finished = tokio::time::timeout(ANSWER_WITHIN, done.wait_for(Option::is_some)).await;
    match finished {
        Ok(Ok(result)) => {
            let result = result.as_ref().map(copied);
            let Some(result) = result else {
                // `wait_for` hands out only a value that passed `is_some`.
                return PeerResponse::Installing {
                    installed: node.store.installed_entries(group),
                };
            };
            let mut installs = node.installs.lock();
            if installs
                .get(&group)
                .is_some_and(|i| i.snapshot_id == snapshot_id)
            {
                installs.remove(&group);
            }
            PeerResponse::InstallSnapshot(result)
        }
        // The install task ended without a word: the node is stopping.
        Ok(Err(_)) => PeerResponse::Done(Err(Refusal::Unavailable {
            reason: "the install stopped".into(),
        })),
        Err(_) => PeerResponse::Installing {
            installed: node.store.installed_entries(group),
        },
    }
}

/// An install's outcome, copied for its asker (openraft's response is not `Clone`).
#[allow(clippy::result_large_err)] // openraft's own error type, as the wire carries it
fn copied(result: &InstallResult) -> InstallResult {
    match result {
        Ok(r) => Ok(InstallSnapshotResponse { vote: r.vote }),
        Err(e) => Err(e.clone()),
    }
}
