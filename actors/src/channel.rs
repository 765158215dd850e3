//! The channel actor: one per realtime stream, on the node that leads the stream's shard.
//!
//! It is the single writer of its stream: it proposes writes to the shard (several in flight at
//! once, so a busy channel is not limited by commit latency), learns each write's offset from
//! the committed reply, and emits events strictly in offset order: encoded once, handed to the
//! [`Emitter`]. It answers subscribe/recovery and history from its recent window or the local
//! replica (which, on the leader, has applied every acknowledged write), and keeps a window of
//! recent client message ids so retried sends are answered without another proposal.
//!
//! Actors start on a stream's first write or read ([`Registry::call`]; a subscribe's recovery
//! of a stream without one is answered from the local replica, see [`detached_query`]), stop
//! when their shard's leadership moves away, and passivate after a quiet period; their state is
//! rebuilt from storage when they start.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatsdk_cluster::{ClusterNode, GroupId};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};

use crate::emitter::Emitter;
use crate::error::ChatError;
use crate::model::{
    ChannelFlags, Mention, Message, Notes, PollResults, PresenceRecord, Publication, StoredEvent,
};
pub use crate::registry::Registry;
use crate::stream::blobs::EmojiUsage;
use crate::stream::reads::{ReactionEntry, SavedEntry};
use crate::stream::receipts::ReaderState;
use crate::stream::{MessagePage, StreamCommand, StreamOp, StreamReader, StreamReply};

/// Events kept in memory for fast recovery and history.
const RECENT_WINDOW: usize = 256;
/// Recent `(user, clientMsgId)` pairs remembered for retried sends.
const IDEMPOTENCY_WINDOW: usize = 1024;
/// Events a starting actor emits again: a previous leader may have committed them without
/// delivering them (subscribers drop what they already have).
const RE_EMIT_ON_START: u64 = 32;
/// Newest messages examined for unread counts (a count at the cap means "this many or more").
const UNREAD_CAP: usize = 1000;
/// How often an actor checks whether it has been idle.
const TICK: Duration = Duration::from_secs(15);

/// A read of a stream, answered by its actor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StreamQuery {
    /// Where the stream stands, and (when `since` is given) the events after that position.
    Recover {
        since: Option<(String, u64)>,
        limit: usize,
        /// The asking node's interest generation for the stream: the leader registers the
        /// node's interest (see [`crate::interest`]) before it answers.
        interest: Option<u64>,
    },
    /// Retained events after `since` (or the newest), oldest first unless `reverse`.
    History {
        since: Option<(String, u64)>,
        limit: usize,
        reverse: bool,
    },
    /// A page of messages with their annotations as `viewer` sees them.
    Messages {
        page: MessagePage,
        limit: usize,
        viewer: Option<String>,
    },
    Message {
        id: String,
    },
    /// A message with its annotations as `viewer` sees them.
    Annotated {
        id: String,
        viewer: Option<String>,
    },
    Replies {
        parent: String,
        limit: usize,
        viewer: Option<String>,
    },
    /// Every reaction to a message.
    Reactions {
        id: String,
    },
    /// The pinned messages, with their annotations as `viewer` sees them.
    Pinned {
        viewer: Option<String>,
    },
    /// A poll of the stream and its votes.
    Poll {
        id: String,
    },
    /// A user's saved messages (asked of the user's stream).
    Saved {
        limit: usize,
        offset: usize,
    },
    /// A user's presence record (asked of the user's stream).
    Presence,
    /// How busy a channel is.
    Activity,
    /// Chunk `index` of a blob (workspace streams).
    BlobChunk {
        hash: String,
        index: u32,
    },
    /// Total uses of emoji (workspace streams).
    EmojiTotals {
        ids: Vec<String>,
    },
    /// One emoji's usage since `since_day` (workspace streams).
    EmojiUsage {
        id: String,
        since_day: u64,
    },
    /// A user's mentions (asked of the user's stream): sent before `before`, newest first.
    Mentions {
        before: Option<u64>,
        limit: usize,
        unmarked: bool,
    },
    /// The seqs and authors of messages, and the read positions of `users`.
    Receipts {
        message_ids: Vec<String>,
        users: Vec<String>,
    },
    /// A member's read position and unread count.
    ReadState {
        user: String,
    },
    /// Unread counts of several members.
    Unreads {
        users: Vec<String>,
    },
    /// A user's channel flags (asked of the user's stream).
    Flags,
    /// A page of a webhook's delivery log, newest first (its `webhook:` stream).
    Deliveries {
        limit: usize,
        offset: usize,
    },
    /// An upload (chat streams).
    Upload {
        id: String,
    },
    /// Completed uploads, newest first, of a kind (`image`, `video`, `file`) when given.
    Uploads {
        kind: Option<String>,
        offset: usize,
        limit: usize,
    },
}

/// The answer to a [`StreamQuery`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum QueryAnswer {
    Position {
        epoch: String,
        offset: u64,
        publications: Vec<Publication>,
        recovered: bool,
    },
    Messages {
        messages: Vec<Message>,
        /// The annotations of the messages that have any.
        notes: Vec<Notes>,
        more: bool,
        max_seq: u64,
    },
    Message(Option<Box<Message>>),
    Annotated(Option<Box<(Message, Notes)>>),
    /// `(emoji, reactor, when)`, oldest first; `None` when the message does not exist.
    Reactions(Option<Vec<ReactionEntry>>),
    Poll(Option<Box<PollResults>>),
    Saved(Vec<SavedEntry>),
    Mentions(Vec<Mention>),
    Presence(PresenceRecord),
    Activity(crate::model::Activity),
    Blob(Option<Vec<u8>>),
    Counts(Vec<u64>),
    EmojiUsage(EmojiUsage),
    Receipts {
        /// `(seq, author)` of each message asked (`None`: no such message).
        messages: Vec<Option<(u64, String)>>,
        readers: Vec<ReaderState>,
    },
    Read {
        last_read_seq: u64,
        unread: u64,
    },
    Unreads(Vec<(String, u64)>),
    Flags(Vec<(String, ChannelFlags)>),
    Deliveries(Vec<crate::model::HookDelivery>),
    Upload(Option<Box<crate::media::Upload>>),
    Uploads(Vec<crate::media::Upload>),
}

/// A request for a channel actor.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // one per request, moved once; boxing buys nothing
pub enum ChannelRequest {
    Write(StreamOp),
    Query(StreamQuery),
}

/// The answer of a channel actor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ChannelAnswer {
    Written(StreamReply),
    Answer(QueryAnswer),
}

type Reply = RpcReplyPort<Result<ChannelAnswer, ChatError>>;

/// Messages of a channel actor.
pub enum ChannelMsg {
    Request(ChannelRequest, Reply),
    /// A proposal this actor made has committed (or failed).
    Committed(Result<StreamReply, ChatError>, Reply),
    Tick,
}

/// What every channel actor of a node shares.
pub struct ActorEnv {
    pub cluster: ClusterNode,
    pub emitter: Arc<Emitter>,
    /// Events retained per stream for recovery.
    pub retain: u64,
    /// An actor with nothing to do for this long stops.
    pub idle: Duration,
    pub registry: Arc<Registry>,
}

/// Arguments of a channel actor.
pub struct ChannelArgs {
    pub stream: String,
    pub group: GroupId,
    pub env: Arc<ActorEnv>,
}

/// The state of a channel actor.
pub struct ChannelState {
    stream: String,
    group: GroupId,
    env: Arc<ActorEnv>,
    reader: StreamReader,
    epoch: String,
    /// The last offset handed to the emitter.
    emitted: u64,
    /// Committed events waiting for a lower offset to be emitted first.
    pending: BTreeMap<u64, Publication>,
    /// The newest emitted events, rendered.
    recent: VecDeque<Publication>,
    /// Recent sends with a client message id, as hashes of `(user, clientMsgId)` (see
    /// [`ChannelState::send_key`]), oldest first in `send_order`. Only the hash is kept: a retry
    /// reads its message back from the local replica (its id derives from the client id), so
    /// the window costs 16 bytes a send instead of a copy of the message, and growing it does
    /// not move hundreds of kilobytes (64 busy channels growing their windows of whole messages
    /// together stalled a node for ~100 ms at 6,000 sends/s).
    sends: HashSet<u64>,
    send_order: VecDeque<u64>,
    send_hasher: RandomState,
    in_flight: usize,
    last_active: Instant,
}

/// The channel actor's behaviour.
pub struct ChannelActor;

impl Actor for ChannelActor {
    type Msg = ChannelMsg;
    type State = ChannelState;
    type Arguments = ChannelArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ChannelMsg>,
        args: ChannelArgs,
    ) -> Result<ChannelState, ActorProcessingErr> {
        // Applied up to everything committed before we start: our view of the head is current.
        let reader = StreamReader::new(args.env.cluster.linearizable_reader(args.group).await?);
        let head = reader
            .head(&args.stream)?
            .unwrap_or_else(|| crate::stream::empty_head(&args.stream));
        let emitted = head
            .offset
            .saturating_sub(RE_EMIT_ON_START)
            .max(head.first_retained.saturating_sub(1));
        let recent: VecDeque<Publication> = reader
            .latest_events(&args.stream, RECENT_WINDOW)?
            .iter()
            .filter(|e| e.offset <= emitted)
            .map(publication)
            .collect();
        myself.send_interval(TICK, || ChannelMsg::Tick);
        Ok(ChannelState {
            stream: args.stream,
            group: args.group,
            env: args.env,
            reader,
            epoch: head.epoch,
            emitted,
            pending: BTreeMap::new(),
            recent,
            sends: HashSet::new(),
            send_order: VecDeque::new(),
            send_hasher: RandomState::new(),
            in_flight: 0,
            last_active: Instant::now(),
        })
    }

    async fn post_start(
        &self,
        _myself: ActorRef<ChannelMsg>,
        state: &mut ChannelState,
    ) -> Result<(), ActorProcessingErr> {
        state.catch_up();
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<ChannelMsg>,
        state: &mut ChannelState,
    ) -> Result<(), ActorProcessingErr> {
        state.env.registry.forget(&state.stream, &myself);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ChannelMsg>,
        msg: ChannelMsg,
        state: &mut ChannelState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ChannelMsg::Request(ChannelRequest::Write(op), reply) => {
                state.last_active = Instant::now();
                if let Some(dup) = state.recent_send(&op) {
                    let _ = reply.send(Ok(ChannelAnswer::Written(dup)));
                    return Ok(());
                }
                state.in_flight += 1;
                let command = StreamCommand {
                    stream: state.stream.clone(),
                    retain: state.env.retain,
                    op,
                };
                let body = match crate::codec::encode(&command) {
                    Ok(body) => body,
                    Err(e) => {
                        state.in_flight -= 1;
                        let _ = reply.send(Err(ChatError::Internal(e.to_string())));
                        return Ok(());
                    }
                };
                // No task per send: the reply comes back to this mailbox from whoever learns
                // the outcome (the group's batcher, in the common case).
                state
                    .env
                    .cluster
                    .propose_then(state.group, body, move |raw| {
                        let result = raw.map_err(ChatError::from).and_then(|reply| {
                            // Applied here: the reply as the state machine answered it. From
                            // another node (or a forwarded retry): its bytes.
                            match reply.downcast::<StreamReply>() {
                                Ok(typed) => Ok(*typed),
                                Err(other) => other
                                    .into_bytes()
                                    .map_err(|e| e.to_string())
                                    .and_then(|raw| {
                                        crate::codec::decode(&raw).map_err(|e| e.to_string())
                                    })
                                    .map_err(|e| ChatError::Internal(format!("stream reply: {e}"))),
                            }
                        });
                        // The actor may have stopped meanwhile; the caller then sees its port close.
                        let _ = myself.send_message(ChannelMsg::Committed(result, reply));
                    });
            }
            ChannelMsg::Committed(mut result, reply) => {
                state.in_flight = state.in_flight.saturating_sub(1);
                if let Ok(r) = &mut result {
                    let message_json = state.committed(r);
                    if let StreamReply::Message {
                        message: None,
                        rendered,
                        ..
                    } = r
                    {
                        // The message is the one of the first event, rendered just now.
                        *rendered = message_json;
                    }
                }
                let _ = reply.send(result.map(ChannelAnswer::Written));
            }
            ChannelMsg::Request(ChannelRequest::Query(q), reply) => {
                state.last_active = Instant::now();
                if matches!(q, StreamQuery::Recover { .. }) {
                    // A position is asked (a subscribe, or a node's position check): it counts
                    // everything committed, also what this actor did not hear of (see
                    // `ChannelState::catch_up`), which goes out to the subscribers first.
                    state.catch_up();
                }
                let _ = reply.send(state.view().query(q).map(ChannelAnswer::Answer));
            }
            ChannelMsg::Tick => {
                let leading = state
                    .env
                    .cluster
                    .watch_leadership()
                    .borrow()
                    .contains(&state.group);
                let idle = state.in_flight == 0 && state.last_active.elapsed() >= state.env.idle;
                if !leading || idle {
                    myself.stop(Some(
                        if leading { "idle" } else { "leadership moved" }.into(),
                    ));
                } else {
                    state.catch_up();
                }
            }
        }
        Ok(())
    }
}

/// Renders a stored event for clients (once per event: the result is shared by every
/// recipient, the recent window and recovery).
fn publication(e: &StoredEvent) -> Publication {
    Publication {
        offset: e.offset,
        data: crate::render::event(&e.event),
        author: e.event.author().map(str::to_string),
    }
}

impl ChannelState {
    /// The window's key of a client message id.
    fn send_key(&self, user: &str, cmid: &str) -> u64 {
        self.send_hasher.hash_one((user, cmid))
    }

    /// The answer to a retried send of the window: the message as the local replica holds it,
    /// with `duplicate` set. `None` sends the command on to the stream, which finds retries
    /// beyond the window (or behind a hash collision) itself.
    fn recent_send(&self, op: &StreamOp) -> Option<StreamReply> {
        let StreamOp::Send { message } = op else {
            return None;
        };
        let cmid = message.client_msg_id.as_deref()?;
        if !self.sends.contains(&self.send_key(&message.user_id, cmid)) {
            return None;
        }
        let id = crate::stream::client_message_id(&self.stream, &message.user_id, cmid);
        let stored = match self.reader.message(&self.stream, &id) {
            Ok(Some(m))
                if m.user_id == message.user_id && m.client_msg_id.as_deref() == Some(cmid) =>
            {
                m
            }
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(stream = %self.stream, error = %e, "retried send not read back; proposing it");
                return None;
            }
        };
        Some(StreamReply::Message {
            message: Some(Box::new(stored)),
            events: Vec::new(),
            epoch: self.epoch.clone(),
            duplicate: true,
            rendered: None,
        })
    }

    /// Takes in what a proposal committed: remembers its client message id, emits its events,
    /// and returns the JSON of the message its first event carries (rendered for that event).
    fn committed(&mut self, reply: &StreamReply) -> Option<Arc<str>> {
        if let Some(message) = reply.message() {
            if let Some(cmid) = &message.client_msg_id {
                let key = self.send_key(&message.user_id, cmid);
                if self.sends.insert(key) {
                    self.send_order.push_back(key);
                }
                while self.send_order.len() > IDEMPOTENCY_WINDOW {
                    if let Some(oldest) = self.send_order.pop_front() {
                        self.sends.remove(&oldest);
                    }
                }
            }
        }
        let (events, epoch) = reply.events()?;
        if self.epoch != epoch {
            self.epoch = epoch.to_string();
        }
        if events.is_empty() {
            // A command answered without events of its own (a retried command applied
            // before): whatever it did is in the local replica.
            self.catch_up();
        }
        let mut first_message = None;
        for (n, e) in events.iter().enumerate() {
            let (data, message) = crate::render::event_and_message(&e.event);
            if n == 0 {
                first_message = message.map(Arc::from);
            }
            self.emit_in_order(Publication {
                offset: e.offset,
                data,
                author: e.event.author().map(str::to_string),
            });
        }
        first_message
    }

    /// Emits what the local replica holds beyond what this actor emitted: events committed
    /// through another path (a retried command, a previous leader's actor), and those of a
    /// proposal that failed here but committed after all (it timed out while the followers'
    /// acknowledgements were held up, then committed when they came). Without this, such events
    /// reach no subscriber until the channel's next write, which may never come, and the
    /// subscribers' position checks find them up to date with this actor: the fault suite's
    /// partitions left every subscriber of a channel 11 messages short.
    fn catch_up(&mut self) {
        let head = match self.reader.head(&self.stream) {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(stream = %self.stream, error = %e, "stream head unreadable; not caught up");
                return;
            }
        };
        if head.offset <= self.emitted {
            return;
        }
        let missing = (head.offset - self.emitted) as usize;
        match self
            .reader
            .events(&self.stream, self.emitted + 1, head.offset, missing)
        {
            Ok(events) => {
                for e in &events {
                    self.emit_in_order(publication(e));
                }
            }
            Err(e) => {
                tracing::error!(stream = %self.stream, error = %e, "events unreadable; not caught up")
            }
        }
    }

    /// Emits `event` after every lower offset; offsets committed by someone else (a previous
    /// leader's actor) are read from the local replica.
    fn emit_in_order(&mut self, event: Publication) {
        if event.offset <= self.emitted {
            return;
        }
        self.pending.insert(event.offset, event);
        loop {
            let next = self.emitted + 1;
            if let Some(e) = self.pending.remove(&next) {
                self.emit(e);
                continue;
            }
            let Some((&lowest, _)) = self.pending.iter().next() else {
                break;
            };
            match self
                .reader
                .events(&self.stream, next, lowest - 1, (lowest - next) as usize)
            {
                Ok(found) if !found.is_empty() => {
                    let before = self.emitted;
                    for e in &found {
                        if e.offset == self.emitted + 1 {
                            self.emit(publication(e));
                        }
                    }
                    if self.emitted == before {
                        self.skip_to(lowest);
                    }
                }
                _ => self.skip_to(lowest),
            }
        }
    }

    /// Gives up on offsets before `offset` (not readable here): subscribers see a gap and
    /// recover.
    fn skip_to(&mut self, offset: u64) {
        tracing::warn!(stream = %self.stream, from = self.emitted + 1, to = offset - 1, "events not readable here; subscribers will resync");
        self.emitted = offset - 1;
    }

    fn emit(&mut self, event: Publication) {
        let frame = chatsdk_proto::realtime::push_publication_raw(
            &self.stream,
            event.offset,
            &event.data,
            None,
        );
        self.env.emitter.emit(
            &self.stream,
            self.group,
            Some(event.offset),
            event.author.as_deref(),
            Bytes::from(frame),
        );
        self.emitted = event.offset;
        if self.recent.len() == RECENT_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(event);
    }

    /// What this actor knows of its stream, for answering reads.
    fn view(&self) -> View<'_> {
        View {
            stream: &self.stream,
            reader: &self.reader,
            epoch: &self.epoch,
            emitted: self.emitted,
            recent: &self.recent,
        }
    }
}

/// A stream as a read sees it: its durable events up to `emitted` (the last one delivered to
/// subscribers, or when no actor runs, the last one committed), the newest of them in memory.
pub(crate) struct View<'a> {
    stream: &'a str,
    reader: &'a StreamReader,
    epoch: &'a str,
    emitted: u64,
    recent: &'a VecDeque<Publication>,
}

impl View<'_> {
    /// Events with offsets in `from..=self.emitted`, at most `limit`, from memory when possible.
    fn events_from(&self, from: u64, limit: usize) -> Result<Vec<Publication>, ChatError> {
        if let Some(first) = self.recent.front() {
            if first.offset <= from {
                return Ok(self
                    .recent
                    .iter()
                    .filter(|e| e.offset >= from)
                    .take(limit)
                    .cloned()
                    .collect());
            }
        }
        Ok(self
            .reader
            .events(self.stream, from, self.emitted, limit)?
            .iter()
            .map(publication)
            .collect())
    }

    fn first_retained(&self) -> Result<u64, ChatError> {
        Ok(self
            .reader
            .head(self.stream)?
            .map(|h| h.first_retained)
            .unwrap_or(1))
    }

    fn query(&self, q: StreamQuery) -> Result<QueryAnswer, ChatError> {
        Ok(match q {
            StreamQuery::Recover { since, limit, .. } => {
                let mut publications = Vec::new();
                let mut recovered = false;
                if let Some((epoch, offset)) = since.as_ref().filter(|(epoch, offset)| {
                    *offset > self.emitted && epoch.as_str() == &*self.epoch
                }) {
                    // The client has seen further than this replica has applied: a leader
                    // that has just taken over (after a crash of the old one, say) and is
                    // still applying what was committed before. Only committed events are
                    // ever published, so the client misses nothing: its position stands, and
                    // the subscription leaves out the events up to it when they are emitted
                    // here. (Answering "not recovered" at this replica's position sent them
                    // to the client a second time.)
                    return Ok(QueryAnswer::Position {
                        epoch: epoch.clone(),
                        offset: *offset,
                        publications,
                        recovered: true,
                    });
                }
                if let Some((epoch, offset)) = since {
                    let same_stream = offset == 0 || epoch == *self.epoch;
                    if same_stream
                        && offset <= self.emitted
                        && offset.saturating_add(1) >= self.first_retained()?
                    {
                        let missed = (self.emitted - offset) as usize;
                        if missed <= limit {
                            publications = self.events_from(offset.saturating_add(1), missed)?;
                            recovered = publications.len() == missed;
                        }
                    }
                    if !recovered {
                        publications.clear();
                    }
                }
                QueryAnswer::Position {
                    epoch: self.epoch.to_string(),
                    offset: self.emitted,
                    publications,
                    recovered,
                }
            }
            StreamQuery::History {
                since,
                limit,
                reverse,
            } => {
                let first = self.first_retained()?;
                let mut events = match since {
                    // Backwards from a position: the events before it, newest first.
                    Some((epoch, offset)) if reverse && (epoch == *self.epoch || offset == 0) => {
                        let to = offset.saturating_sub(1).min(self.emitted);
                        let from = (to + 1).saturating_sub(limit as u64).max(first).max(1);
                        let mut e = self.events_from(from, limit)?;
                        e.retain(|e| e.offset <= to);
                        e
                    }
                    Some((epoch, offset)) if epoch == *self.epoch || offset == 0 => {
                        if offset.saturating_add(1) < first {
                            return Err(ChatError::Conflict("unrecoverable position".into()));
                        }
                        self.events_from(offset.saturating_add(1), limit)?
                    }
                    Some(_) => return Err(ChatError::Conflict("unrecoverable position".into())),
                    None if reverse => {
                        let from = (self.emitted + 1)
                            .saturating_sub(limit as u64)
                            .max(first)
                            .max(1);
                        self.events_from(from, limit)?
                    }
                    None => self.events_from(first.max(1), limit)?,
                };
                if reverse {
                    events.reverse();
                }
                QueryAnswer::Position {
                    epoch: self.epoch.to_string(),
                    offset: self.emitted,
                    publications: events,
                    recovered: true,
                }
            }
            StreamQuery::Messages {
                page,
                limit,
                viewer,
            } => {
                let (messages, more) = self.reader.messages(self.stream, page, limit)?;
                let max_seq = self.reader.head(self.stream)?.map(|h| h.seq).unwrap_or(0);
                let notes = self
                    .reader
                    .notes(self.stream, &messages, viewer.as_deref())?;
                QueryAnswer::Messages {
                    messages,
                    notes,
                    more,
                    max_seq,
                }
            }
            StreamQuery::Message { id } => {
                QueryAnswer::Message(self.reader.message(self.stream, &id)?.map(Box::new))
            }
            StreamQuery::Annotated { id, viewer } => {
                QueryAnswer::Annotated(match self.reader.message(self.stream, &id)? {
                    Some(m) => {
                        let notes =
                            self.reader
                                .message_notes(self.stream, &m, viewer.as_deref())?;
                        Some(Box::new((m, notes)))
                    }
                    None => None,
                })
            }
            StreamQuery::Replies {
                parent,
                limit,
                viewer,
            } => {
                let messages = self.reader.replies(self.stream, &parent, limit)?;
                let notes = self
                    .reader
                    .notes(self.stream, &messages, viewer.as_deref())?;
                QueryAnswer::Messages {
                    messages,
                    notes,
                    more: false,
                    max_seq: 0,
                }
            }
            StreamQuery::Reactions { id } => {
                QueryAnswer::Reactions(self.reader.reactions(self.stream, &id)?)
            }
            StreamQuery::Pinned { viewer } => {
                let messages = self.reader.pinned(self.stream)?;
                let notes = self
                    .reader
                    .notes(self.stream, &messages, viewer.as_deref())?;
                QueryAnswer::Messages {
                    messages,
                    notes,
                    more: false,
                    max_seq: 0,
                }
            }
            StreamQuery::Poll { id } => {
                QueryAnswer::Poll(self.reader.poll(self.stream, &id)?.map(Box::new))
            }
            StreamQuery::Saved { limit, offset } => {
                QueryAnswer::Saved(self.reader.saved(self.stream, limit, offset)?)
            }
            StreamQuery::Deliveries { limit, offset } => {
                QueryAnswer::Deliveries(self.reader.deliveries(self.stream, limit, offset)?)
            }
            StreamQuery::Presence => QueryAnswer::Presence(self.reader.presence(self.stream)?),
            StreamQuery::Activity => QueryAnswer::Activity(self.reader.activity(self.stream)?),
            StreamQuery::BlobChunk { hash, index } => {
                QueryAnswer::Blob(self.reader.blob_chunk(self.stream, &hash, index)?)
            }
            StreamQuery::EmojiTotals { ids } => {
                QueryAnswer::Counts(self.reader.emoji_totals(self.stream, &ids)?)
            }
            StreamQuery::EmojiUsage { id, since_day } => {
                QueryAnswer::EmojiUsage(self.reader.emoji_usage(self.stream, &id, since_day, 10)?)
            }
            StreamQuery::Mentions {
                before,
                limit,
                unmarked,
            } => {
                QueryAnswer::Mentions(self.reader.mentions(self.stream, before, limit, unmarked)?)
            }
            StreamQuery::Receipts { message_ids, users } => {
                let mut messages = Vec::with_capacity(message_ids.len());
                for id in &message_ids {
                    messages.push(
                        self.reader
                            .message(self.stream, id)?
                            .map(|m| (m.seq, m.user_id)),
                    );
                }
                QueryAnswer::Receipts {
                    messages,
                    readers: self.reader.readers(self.stream, &users)?,
                }
            }
            StreamQuery::ReadState { user } => {
                let state = self.reader.read_state(self.stream, &user)?;
                let positions = [(user, state.last_read_seq)];
                let unread = self
                    .reader
                    .unreads(self.stream, &positions, UNREAD_CAP)?
                    .first()
                    .copied()
                    .unwrap_or(0);
                QueryAnswer::Read {
                    last_read_seq: state.last_read_seq,
                    unread,
                }
            }
            StreamQuery::Unreads { users } => {
                let mut positions = Vec::with_capacity(users.len());
                for user in users {
                    let state = self.reader.read_state(self.stream, &user)?;
                    positions.push((user, state.last_read_seq));
                }
                let counts = self.reader.unreads(self.stream, &positions, UNREAD_CAP)?;
                QueryAnswer::Unreads(positions.into_iter().map(|(u, _)| u).zip(counts).collect())
            }
            StreamQuery::Flags => QueryAnswer::Flags(self.reader.flags(self.stream)?),
            StreamQuery::Upload { id } => {
                QueryAnswer::Upload(self.reader.upload(self.stream, &id)?.map(Box::new))
            }
            StreamQuery::Uploads {
                kind,
                offset,
                limit,
            } => QueryAnswer::Uploads(self.reader.uploads(
                self.stream,
                kind.as_deref(),
                offset,
                limit,
            )?),
        })
    }
}

/// Answers a read of `stream` without an actor: from the local replica once it has applied
/// everything committed before the read began (a linearizable read), as of the stream's head.
/// Subscribing does not start an actor (a subscriber registered before the read misses
/// nothing: a later event is emitted by whichever actor commits it, and one committed without
/// being emitted is emitted again when the next actor starts).
pub(crate) async fn detached_query(
    env: &ActorEnv,
    stream: &str,
    group: GroupId,
    q: StreamQuery,
) -> Result<QueryAnswer, ChatError> {
    let reader = StreamReader::new(env.cluster.linearizable_reader(group).await?);
    let head = reader
        .head(stream)?
        .unwrap_or_else(|| crate::stream::empty_head(stream));
    View {
        stream,
        reader: &reader,
        epoch: &head.epoch,
        emitted: head.offset,
        recent: &VecDeque::new(),
    }
    .query(q)
}
