//! The channel actors running on one node: started on demand (one start per stream at a
//! time), found by stream name, stopped when their shard's leadership moves away.
//!
//! Requests reach an actor through [`Registry::call`], which bounds each actor's queue before
//! ractor's unbounded mailbox and replaces an actor that stopped before taking a request. A
//! subscribe's recovery of a stream whose actor is not running is answered from the local
//! replica instead: subscribing starts no actor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatsdk_cluster::GroupId;
use ractor::{Actor, ActorRef, MessagingErr, RpcReplyPort};
use tokio::sync::Semaphore;

use crate::channel::{
    ActorEnv, ChannelActor, ChannelAnswer, ChannelArgs, ChannelMsg, ChannelRequest, StreamQuery,
};
use crate::error::ChatError;

/// Requests queued or in flight per channel actor; more are refused as unavailable (ractor
/// mailboxes are unbounded, so the bound is taken before a message is sent).
const MAX_QUEUED: usize = 8192;
/// How long starting an actor (a read barrier on its shard) may take.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running channel actor and the bound on its queue.
#[derive(Clone)]
struct Entry {
    actor: ActorRef<ChannelMsg>,
    slots: Arc<Semaphore>,
}

/// The channel actors running on this node.
#[derive(Default)]
pub struct Registry {
    /// One cell per stream: concurrent first requests wait for one actor to start, and
    /// different streams start independently.
    actors: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Entry>>>>,
}

/// What became of a request sent to an actor.
enum Sent {
    Answered(Result<ChannelAnswer, ChatError>),
    /// The actor had stopped before taking the request: nothing was done. The request comes
    /// back when the mailbox returned it (always, for a stopped actor).
    NotTaken(Option<ChannelRequest>),
}

impl Registry {
    pub(crate) fn forget(&self, stream: &str, actor: &ActorRef<ChannelMsg>) {
        if let Ok(mut map) = self.actors.lock() {
            let same = map
                .get(stream)
                .and_then(|c| c.get())
                .is_some_and(|e| e.actor.get_id() == actor.get_id());
            if same {
                map.remove(stream);
            }
        }
    }

    async fn get(
        &self,
        env: &Arc<ActorEnv>,
        stream: &str,
        group: GroupId,
    ) -> Result<Entry, ChatError> {
        let cell = match self.actors.lock() {
            Ok(mut map) => match map.get(stream) {
                Some(cell) => cell.clone(),
                None => map.entry(stream.to_string()).or_default().clone(),
            },
            Err(_) => return Err(ChatError::Internal("channel registry poisoned".into())),
        };
        if let Some(entry) = cell.get() {
            return Ok(entry.clone());
        }
        // Boxed: starting an actor is rare, and its future would otherwise size every call's.
        Box::pin(Self::start(env, stream, group, cell)).await
    }

    /// Starts the stream's actor once (concurrent callers wait for the same start).
    async fn start(
        env: &Arc<ActorEnv>,
        stream: &str,
        group: GroupId,
        cell: Arc<tokio::sync::OnceCell<Entry>>,
    ) -> Result<Entry, ChatError> {
        let start = async {
            let args = ChannelArgs {
                stream: stream.to_string(),
                group,
                env: env.clone(),
            };
            let (actor, _handle) = Actor::spawn(None, ChannelActor, args)
                .await
                .map_err(|e| ChatError::Unavailable(format!("channel actor did not start: {e}")))?;
            Ok::<Entry, ChatError>(Entry {
                actor,
                slots: Arc::new(Semaphore::new(MAX_QUEUED)),
            })
        };
        match tokio::time::timeout(START_TIMEOUT, cell.get_or_try_init(|| start)).await {
            Ok(Ok(entry)) => Ok(entry.clone()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ChatError::Unavailable(
                "channel actor did not start in time".into(),
            )),
        }
    }

    async fn send(&self, env: &Arc<ActorEnv>, entry: &Entry, request: ChannelRequest) -> Sent {
        let Ok(_permit) = entry.slots.clone().try_acquire_owned() else {
            return Sent::Answered(Err(ChatError::Unavailable("channel is overloaded".into())));
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Err(e) = entry
            .actor
            .send_message(ChannelMsg::Request(request, RpcReplyPort::from(tx)))
        {
            // A refused message comes back whole, so the request is retried without a copy.
            return Sent::NotTaken(match e {
                MessagingErr::SendErr(ChannelMsg::Request(request, _)) => Some(request),
                _ => None,
            });
        }
        match tokio::time::timeout(env.cluster_timeout(), rx).await {
            Ok(Ok(answer)) => Sent::Answered(answer),
            Ok(Err(_)) => {
                Sent::Answered(Err(ChatError::Unavailable("channel actor stopped".into())))
            }
            Err(_) => Sent::Answered(Err(ChatError::Unavailable(
                "channel did not answer in time".into(),
            ))),
        }
    }

    /// Sends `request` to the stream's actor on this node (starting it if needed) and waits
    /// for the answer. An actor that stopped before taking the request (idle, leadership
    /// moved) is replaced once.
    pub async fn call(
        &self,
        env: &Arc<ActorEnv>,
        stream: &str,
        group: GroupId,
        request: ChannelRequest,
    ) -> Result<ChannelAnswer, ChatError> {
        let request = match request {
            // A subscribe's recovery of a stream with no actor running is answered without
            // starting one: a subscriber (thousands of idle ones, each on its own `user:`
            // stream) costs no actor until someone writes. So are the presence read made when
            // a session starts or ends and the activity read of channel lists (a list would
            // otherwise start an actor per channel). Other reads start the actor, whose state
            // then answers repeated reads without a read barrier each.
            ChannelRequest::Query(
                q @ (StreamQuery::Recover { .. } | StreamQuery::Presence | StreamQuery::Activity),
            ) if !self.running(stream) => {
                return crate::channel::detached_query(env, stream, group, q)
                    .await
                    .map(ChannelAnswer::Answer);
            }
            other => other,
        };
        let mut request = Some(request);
        for _ in 0..2 {
            let Some(r) = request.take() else { break };
            let entry = self.get(env, stream, group).await?;
            match self.send(env, &entry, r).await {
                Sent::Answered(answer) => return answer,
                Sent::NotTaken(back) => {
                    self.forget(stream, &entry.actor);
                    request = back;
                }
            }
        }
        Err(ChatError::Unavailable(
            "channel actor keeps stopping".into(),
        ))
    }

    /// Starts `stream`'s actor here unless it runs: a starting actor emits the newest events
    /// again, so those a previous leader committed without delivering reach the subscribers.
    pub async fn ensure_running(
        &self,
        env: &Arc<ActorEnv>,
        stream: &str,
        group: GroupId,
    ) -> Result<(), ChatError> {
        self.get(env, stream, group).await.map(|_| ())
    }

    /// Whether `stream`'s actor runs (or is starting) here.
    pub fn running(&self, stream: &str) -> bool {
        self.actors
            .lock()
            .map(|m| m.contains_key(stream))
            .unwrap_or(false)
    }

    fn entries(&self) -> Vec<(String, Entry)> {
        self.actors
            .lock()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, c)| c.get().map(|e| (k.clone(), e.clone())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops every actor whose group is not in `leading`.
    pub fn retain_leading(
        &self,
        leading: &std::collections::BTreeSet<GroupId>,
        group_of: impl Fn(&str) -> GroupId,
    ) {
        for (stream, entry) in self.entries() {
            if !leading.contains(&group_of(&stream)) {
                entry.actor.stop(Some("leadership moved".into()));
            }
        }
    }

    /// Stops every actor (shutdown).
    pub fn stop_all(&self) {
        for (_, entry) in self.entries() {
            entry.actor.stop(Some("shutdown".into()));
        }
    }

    /// Number of running actors.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether no actor runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ActorEnv {
    /// How long a caller waits for a channel actor: a proposal's own deadline plus slack.
    pub(crate) fn cluster_timeout(&self) -> Duration {
        Duration::from_secs(15)
    }
}
