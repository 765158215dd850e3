//! Reaching a group's leader from any node.
//!
//! A request for a group is tried on the node most likely to lead it (the last leader seen, this
//! node's own view if it holds a replica, then the shard map's preferred leader and replicas).
//! A refusal naming another leader redirects at once; unreachable nodes and leaderless moments
//! back off briefly and move on to the next candidate, until the request succeeds or its
//! deadline passes.
//!
//! Delivery is at least once. A command can be applied and still be retried (and so applied
//! again) when the caller cannot learn its outcome: a leader fails between commit and reply, the
//! connection to the leader is lost after the command was queued there, the propose deadline
//! passes while it is queued locally, or the group stops mid-write. Upper layers make commands
//! idempotent (client message ids) rather than relying on exactly-once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatsdk_storage::{GroupId, GroupReader, NodeId, Reply};

use crate::meta::META_GROUP;
use crate::node::{ClusterNode, NodeInner};
use crate::wire::{PeerRequest, PeerResponse, Refusal};
use crate::{codec, handler, ClusterError};

const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
const MAX_FREE_REDIRECTS: usize = 3;

impl NodeInner {
    /// The leader of `group` as this node's replica of it knows it.
    fn local_leader(&self, group: GroupId) -> Option<NodeId> {
        self.group(group)
            .and_then(|g| g.raft.server_metrics().borrow().current_leader)
    }

    /// Nodes worth trying for `group`, best first, without duplicates.
    fn candidates(&self, group: GroupId) -> Vec<NodeId> {
        let mut out = Vec::new();
        let mut push = |id: Option<NodeId>| {
            if let Some(id) = id {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        };
        // A local replica's own view is the freshest; the hint (last node that answered as
        // leader) comes next, and may point at a node that has since died.
        // (Read through the watch borrow: this runs on every proposal. The server metrics hold
        // the leader and the membership, and change only with them; the full metrics are
        // rewritten with every entry.)
        let (local_leader, local_voters) = match self.group(group) {
            Some(g) => {
                let m = g.raft.server_metrics();
                let m = m.borrow();
                let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
                (m.current_leader, voters)
            }
            None => (None, Vec::new()),
        };
        push(local_leader);
        let hint = self
            .leader_hints
            .lock()
            .ok()
            .and_then(|h| h.get(&group).copied());
        push(hint);
        for id in local_voters {
            push(Some(id));
        }
        let state = self.meta.current();
        if group == META_GROUP {
            for id in state.active_nodes() {
                push(Some(id));
            }
        } else if let Some(rec) = state.shard_map.get(&group) {
            push(rec.placement.leader);
            for id in &rec.placement.replicas {
                push(Some(*id));
            }
        }
        out
    }

    fn remember_leader(&self, group: GroupId, leader: NodeId) {
        if let Ok(mut hints) = self.leader_hints.lock() {
            hints.insert(group, leader);
        }
    }

    fn forget_leader(&self, group: GroupId, leader: NodeId) {
        if let Ok(mut hints) = self.leader_hints.lock() {
            if hints.get(&group) == Some(&leader) {
                hints.remove(&group);
            }
        }
    }
}

fn refusal_of(response: &PeerResponse) -> Option<&Refusal> {
    match response {
        PeerResponse::Proposed(Err(r))
        | PeerResponse::ReadIndex(Err(r))
        | PeerResponse::Done(Err(r))
        | PeerResponse::Upper(Err(r)) => Some(r),
        _ => None,
    }
}

/// Sends `make()` to the leader of `group`, following redirects, until `timeout` passes.
pub(crate) async fn call_leader(
    node: &Arc<NodeInner>,
    group: GroupId,
    timeout: Duration,
    make: impl Fn() -> PeerRequest,
) -> Result<PeerResponse, ClusterError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut backoff = BACKOFF_MIN;
    let mut redirect: Option<NodeId> = None;
    let mut tried = 0usize;
    // Redirects are followed at once a few times; after that (two nodes naming each other during
    // an election) they back off like any other failure.
    let mut redirects = 0usize;
    let mut last;
    loop {
        if node.shutdown.is_cancelled() {
            return Err(ClusterError::ShuttingDown);
        }
        // First try, the leader this node's replica knows (what `candidates` would put first)
        // without building the whole list: this runs on every proposal.
        let known = if tried == 0 && redirect.is_none() {
            node.local_leader(group)
        } else {
            None
        };
        let target = match (redirect.take(), known) {
            (Some(target), _) | (None, Some(target)) => target,
            (None, None) => {
                let mut candidates = node.candidates(group);
                if candidates.is_empty() {
                    if node.group(group).is_none() {
                        return Err(ClusterError::UnknownGroup { group });
                    }
                    // A local replica that knows no leader yet (just initialised): try ourselves.
                    candidates.push(node.id);
                }
                candidates[tried % candidates.len()]
            }
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let outcome = if target == node.id {
            // Boxed: `handle` serves every kind of request and its future is large; inline, it
            // would size every caller's future (and every proposal's) for the rarest of them.
            let handled = Box::pin(handler::handle(node, node.id, make()));
            match tokio::time::timeout(remaining, handled).await {
                Ok(response) => Ok(response),
                Err(_) => Err(ClusterError::Timeout {
                    group,
                    after_ms: started.elapsed().as_millis() as u64,
                    last: "local request did not finish".into(),
                }),
            }
        } else if let PeerRequest::Propose { group, command } = make() {
            // Proposals to another node travel batched with others bound for it.
            let forwarder = node.forwarder(target);
            let forwarded = Box::pin(async move { forwarder.propose(group, command).await });
            match tokio::time::timeout(remaining, forwarded).await {
                Ok(Ok(result)) => Ok(PeerResponse::Proposed(result)),
                Ok(Err(reason)) => Err(ClusterError::Forward { reason }),
                Err(_) => Err(ClusterError::Timeout {
                    group,
                    after_ms: started.elapsed().as_millis() as u64,
                    last: "forwarded proposal did not finish".into(),
                }),
            }
        } else {
            let body = codec::encode(&make())?;
            match Box::pin(node.transport.request_with_timeout(target, body, remaining)).await {
                Ok(raw) => codec::decode::<PeerResponse>(&raw),
                Err(e) => Err(ClusterError::Transport(e)),
            }
        };
        match outcome {
            Ok(response) => match refusal_of(&response) {
                None if matches!(response, PeerResponse::NoSuchGroup) => {
                    last = format!("node {target} has no replica");
                }
                None => {
                    node.remember_leader(group, target);
                    return Ok(response);
                }
                Some(Refusal::NotLeader { leader: Some(l) })
                    if *l != target && redirects < MAX_FREE_REDIRECTS =>
                {
                    node.remember_leader(group, *l);
                    redirect = Some(*l);
                    redirects += 1;
                    continue;
                }
                Some(Refusal::Failed { reason }) => {
                    return Err(ClusterError::Refused(Refusal::Failed {
                        reason: reason.clone(),
                    }))
                }
                Some(other) => {
                    if let Refusal::NotLeader { leader: Some(l) } = other {
                        redirect = Some(*l);
                    }
                    redirects = 0;
                    last = other.to_string();
                }
            },
            Err(e) if e.is_retryable() || matches!(e, ClusterError::Codec { .. }) => {
                last = e.to_string();
            }
            Err(e) => return Err(e),
        }
        node.forget_leader(group, target);
        tried += 1;
        if Instant::now() + backoff >= deadline {
            return Err(ClusterError::Timeout {
                group,
                after_ms: started.elapsed().as_millis() as u64,
                last,
            });
        }
        tokio::select! {
            _ = node.shutdown.cancelled() => return Err(ClusterError::ShuttingDown),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

impl ClusterNode {
    /// Proposes `command` to `group` and returns the state machine's reply once the command is
    /// committed on a majority and applied. Reaches the leader wherever it is and retries across
    /// leader changes until the configured propose timeout.
    pub async fn propose(&self, group: GroupId, command: Vec<u8>) -> Result<Vec<u8>, ClusterError> {
        self.propose_within(group, command, self.inner.config.propose_timeout)
            .await
    }

    async fn propose_within(
        &self,
        group: GroupId,
        command: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ClusterError> {
        let max = self.inner.config.max_command_bytes;
        if command.len() > max {
            return Err(ClusterError::CommandTooLarge {
                len: command.len(),
                max,
            });
        }
        let _slot = self
            .inner
            .proposal_slots
            .acquire()
            .await
            .map_err(|_| ClusterError::ShuttingDown)?;
        let response = call_leader(&self.inner, group, timeout, || PeerRequest::Propose {
            group,
            command: command.clone(),
        })
        .await?;
        match response {
            PeerResponse::Proposed(Ok(reply)) => Ok(reply),
            other => Err(unexpected(other)),
        }
    }

    /// [`ClusterNode::propose`] without a task of the caller's: `then` is called with the
    /// outcome, from the task that learns it. When this node leads the group the command goes
    /// straight into the group's batcher and `then` runs when its entry commits; otherwise, or
    /// when that attempt meets a leader change, the command takes `propose`'s route on a task,
    /// within what is left of the propose timeout. The reply is the applier's typed value when
    /// the command was applied on this node, else its bytes (see [`Reply`]).
    pub fn propose_then(
        &self,
        group: GroupId,
        command: Vec<u8>,
        then: impl FnOnce(Result<Reply, ClusterError>) + Send + 'static,
    ) {
        let inner = &self.inner;
        let local = match inner.local_leader(group) {
            Some(leader) if leader == inner.id => inner.group(group),
            _ => None,
        };
        let slot = inner.proposal_slots.clone().try_acquire_owned().ok();
        let (Some(local), Some(slot), true) =
            (local, slot, command.len() <= inner.config.max_command_bytes)
        else {
            let node = self.clone();
            tokio::spawn(async move { then(node.propose(group, command).await.map(Reply::Bytes)) });
            return;
        };
        let node = self.clone();
        let started = Instant::now();
        let retry = command.clone();
        let reply = crate::batch::ReplyTo::new(move |outcome| {
            drop(slot);
            let timeout = node.inner.config.propose_timeout;
            match outcome {
                Ok(reply) => then(Ok(reply)),
                Err(Refusal::Failed { reason }) => {
                    then(Err(ClusterError::Refused(Refusal::Failed { reason })))
                }
                Err(refusal) if started.elapsed() >= timeout => then(Err(ClusterError::Timeout {
                    group,
                    after_ms: started.elapsed().as_millis() as u64,
                    last: refusal.to_string(),
                })),
                // Leadership moved or the group stopped before the entry committed: the
                // command takes the routed way, which finds the leader (at least once, as
                // always: see the module's note).
                Err(_) => {
                    let left = timeout.saturating_sub(started.elapsed());
                    tokio::spawn(async move {
                        then(
                            node.propose_within(group, retry, left)
                                .await
                                .map(Reply::Bytes),
                        )
                    });
                }
            }
        });
        local.batcher.propose_then(command, reply);
    }

    /// A reader of `group` that reflects every write acknowledged before this call
    /// (linearizable). This node must hold a replica of the group.
    pub async fn linearizable_reader(&self, group: GroupId) -> Result<GroupReader, ClusterError> {
        let local = self
            .inner
            .group(group)
            .ok_or(ClusterError::NoSuchGroup { group })?;
        let timeout = self.inner.config.propose_timeout;
        let index = match call_leader(&self.inner, group, timeout, || PeerRequest::ReadIndex {
            group,
        })
        .await?
        {
            PeerResponse::ReadIndex(Ok(index)) => index,
            other => return Err(unexpected(other)),
        };
        local
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|e| ClusterError::Timeout {
                group,
                after_ms: timeout.as_millis() as u64,
                last: e.to_string(),
            })?;
        Ok(local.reader.clone())
    }

    /// Sends a request of an upper layer to `to` and waits for its answer.
    pub async fn request_upper(
        &self,
        to: NodeId,
        topic: u16,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, ClusterError> {
        let request = PeerRequest::Upper { topic, body };
        let response = if to == self.inner.id {
            handler::handle(&self.inner, to, request).await
        } else {
            let raw = self
                .inner
                .transport
                .request(to, codec::encode(&request)?)
                .await?;
            codec::decode(&raw)?
        };
        match response {
            PeerResponse::Upper(Ok(reply)) => Ok(reply),
            PeerResponse::Upper(Err(refusal)) => Err(ClusterError::Refused(refusal)),
            other => Err(unexpected(other)),
        }
    }

    /// Sends a request of an upper layer to whichever node leads `group` (following leader
    /// changes until the propose timeout) and waits for its answer. The handler runs only on a
    /// node that leads the group when the request arrives.
    pub async fn request_leader(
        &self,
        group: GroupId,
        topic: u16,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, ClusterError> {
        let timeout = self.inner.config.propose_timeout;
        let response = call_leader(&self.inner, group, timeout, || PeerRequest::UpperAtLeader {
            group,
            topic,
            body: body.clone(),
        })
        .await?;
        match response {
            PeerResponse::Upper(Ok(reply)) => Ok(reply),
            other => Err(unexpected(other)),
        }
    }

    /// Sends a one-way message of an upper layer to `to`.
    pub async fn send_upper(
        &self,
        to: NodeId,
        topic: u16,
        body: Vec<u8>,
    ) -> Result<(), ClusterError> {
        let request = PeerRequest::Upper { topic, body };
        if to == self.inner.id {
            // One-way to ourselves: run it apart so the caller does not wait for the handler.
            let inner = self.inner.clone();
            self.inner.tasks_spawn(async move {
                handler::handle(&inner, to, request).await;
            });
            return Ok(());
        }
        self.inner
            .transport
            .send(to, codec::encode(&request)?)
            .await?;
        Ok(())
    }
}

pub(crate) fn unexpected(response: PeerResponse) -> ClusterError {
    match refusal_of(&response) {
        Some(r) => ClusterError::Refused(r.clone()),
        None => ClusterError::Codec {
            reason: format!("unexpected response {response:?}"),
        },
    }
}
