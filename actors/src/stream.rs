//! Realtime streams and chat messages, replicated in the data shards.
//!
//! Every realtime channel (`chat:<app>:<channel>`, `user:<app>:<user>`) has one durable stream in
//! the shard `shard_for(app, channel)`: each durable event gets the next offset (no gaps), and the
//! newest `retain` events are kept for recovery. A chat stream also holds the channel's messages
//! (by seq), the message-id index ([`crate::id_index`]; a client message id also goes through
//! it, see [`client_message_id`]) and members' read positions, so a message and its
//! `message.new` event commit atomically. Events and messages are stored sixteen to a value
//! (`actors/src/chunk.rs`): the store's cost is per key. [`StreamApplier`] is deterministic: offsets, seqs and
//! the epoch derive from the log, times from the proposer.

use chatsdk_cluster::{Applier, ApplyContext, GroupReader, KvBatch, StoreError};
use serde::{Deserialize, Serialize};

use crate::chunk::{self, chunk_of, CHUNK};
use crate::codec::{self, Json};
use crate::id_index;
use crate::keys::{self, decode_at, encode_at, get_record as get, put_record as put, StreamKeys};
use crate::kv::{Kv, KvRead};
use crate::model::{
    ChannelFlags, Event, HookDelivery, Message, Poll, Reactor, StoredEvent, StreamHead,
};

mod annotations;
pub mod blobs;
pub mod hooks;
pub mod mentions;
pub mod previews;
pub mod reads;
pub mod receipts;
pub mod uploads;

pub use annotations::MAX_EMOJI_PER_MESSAGE;

/// A change to one stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StreamCommand {
    /// The realtime channel name.
    pub stream: String,
    /// Events to keep for recovery (the proposer's configuration).
    pub retain: u64,
    pub op: StreamOp,
}

/// What a [`StreamCommand`] does.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StreamOp {
    /// Stores a message (its seq is assigned here) unless its client message id was seen.
    Send { message: Box<Message> },
    Edit {
        message_id: String,
        text: String,
        now: u64,
    },
    /// Soft delete: the message stays as a tombstone.
    Delete { message_id: String, now: u64 },
    /// Hard delete: the message disappears from history.
    Purge { message_id: String },
    /// Marks everything up to the channel's newest seq read for `user_id`.
    Read { user_id: String },
    /// Appends a durable event. `id` is made by the proposer: the same append applied again
    /// (the cluster delivers at least once) appends nothing, as long as it is one of the
    /// stream's last [`APPEND_IDS`] appends.
    Append { id: String, event: Event },
    /// Spends refresh token `jti` of login session `sid` (on the user's stream, so in the data
    /// shard of `(app, user)`). `nonce` names this spend: the same command applied again is
    /// answered as the first time, while another spend of a spent token is a replay.
    SpendRefresh {
        sid: String,
        jti: String,
        nonce: u64,
    },
    /// Sets a user's flags on a channel (on the user's stream); `None` leaves a flag as it is.
    SetFlags {
        channel: String,
        muted: Option<bool>,
        starred: Option<bool>,
    },
    /// Removes the stream and everything in it.
    Drop,
    // New variants go last: a command's variant index is stored in the Raft logs.
    /// Adds (`add`) or removes `user`'s reaction `emoji` to a message; a user has at most
    /// `max_per_user` reactions on one message.
    React {
        message_id: String,
        emoji: String,
        user: Reactor,
        add: bool,
        now: u64,
        max_per_user: u32,
    },
    /// Pins (`by` set) or unpins a message; a channel has at most `max` pinned messages.
    Pin {
        message_id: String,
        by: Option<String>,
        now: u64,
        max: u32,
    },
    /// Attaches a poll to its message (replacing the message's earlier poll and its votes).
    CreatePoll { poll: Box<Poll> },
    /// Sets (`options`) or removes (`None`) `user`'s vote in a poll.
    Vote {
        poll_id: String,
        user: String,
        options: Option<Vec<String>>,
        now: u64,
    },
    /// A read receipt: `user_id` read up to `message_id` (forward only).
    Receipt {
        user_id: String,
        user_name: String,
        message_id: String,
        now: u64,
    },
    /// Marks everything up to the channel's newest message read for `user_id` (as [`Read`],
    /// with the time, for receipts).
    ///
    /// [`Read`]: StreamOp::Read
    ReadAll { user_id: String, now: u64 },
    /// Records a mention of the stream's user (user streams).
    Mention { mention: Box<crate::model::Mention> },
    /// Marks the user's mentions of `messages` read, or all of them (user streams).
    MarkMentions { messages: Option<Vec<String>> },
    /// Updates the user's presence record (user streams): `seen` and `heartbeat` move those
    /// times forward, `hidden` sets or clears appearing offline.
    Presence {
        seen: Option<u64>,
        heartbeat: Option<u64>,
        hidden: Option<bool>,
    },
    /// Writes chunk `index` of the blob with SHA-256 `hash` (workspace streams).
    PutBlobChunk {
        hash: String,
        index: u32,
        bytes: Vec<u8>,
    },
    /// Removes a blob (workspace streams).
    DropBlob { hash: String },
    /// Counts a use of an emoji (workspace streams); `day` is days since the epoch.
    EmojiUsed {
        emoji_id: String,
        user: String,
        day: u64,
    },
    /// Forgets an emoji's usage counts (workspace streams).
    DropEmojiUses { emoji_id: String },
    /// Saves (`at` set) or forgets a message for the user (on the user's stream).
    Save {
        channel: String,
        message_id: String,
        at: Option<u64>,
    },
    /// Applies `op`, and records its events whose webhook names are in `events` as pending
    /// webhook deliveries (see [`hooks`]); proposed only when the app has webhooks for them.
    Hooked {
        op: Box<StreamOp>,
        events: Vec<String>,
    },
    /// Removes delivered events (by offset) from the stream's pending webhook deliveries.
    HooksDone { offsets: Vec<u64> },
    /// Appends a record to a webhook's delivery log (its `webhook:` stream), keeping `keep`.
    LogDelivery {
        record: Box<HookDelivery>,
        keep: u32,
    },
    /// Stores an upload's metadata (chat streams; see [`uploads`]).
    PutUpload { upload: Box<crate::media::Upload> },
    /// Removes an upload's metadata.
    DropUpload { id: String },
    /// Stores a message's link previews (none: the fetch gave nothing) and clears its pending
    /// mark (chat streams; see `chat::previews`).
    SetPreviews {
        message_id: String,
        seq: u64,
        previews: Vec<crate::previews::LinkPreview>,
    },
    /// [`StreamOp::SpendRefresh`] of a token that expires at `expires_at` (s): the spend is
    /// remembered until then, so a replay is caught for the token's whole life. `now` (s, the
    /// proposer's clock) decides which remembered spends have expired.
    SpendRefreshUntil {
        sid: String,
        jti: String,
        nonce: u64,
        expires_at: u64,
        now: u64,
    },
    /// Forgets the user's login session records that no longer matter at `now` (s, the
    /// proposer's clock), at most [`MAX_FORGOTTEN_PER_SPEND`]: the background sweep's
    /// (`chat::session_sweep`) for users who never refresh again. A revoked session's record
    /// goes too once `keep_revoked` (s) has passed since its last spent token expired: no
    /// token of the session lives that long.
    ForgetEndedSessions { now: u64, keep_revoked: u64 },
}

/// The result of a [`StreamCommand`]; `events` are the events it appended, in offset order
/// (none when it changed nothing, for example a command applied a second time).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StreamReply {
    /// A message was stored (or found: `duplicate`).
    Message {
        /// The message, or `None` when it is the one `events[0]` carries (a send or an edit:
        /// the reply then holds it once, not twice). [`StreamReply::message`] resolves both.
        message: Option<Box<Message>>,
        events: Vec<StoredEvent>,
        epoch: String,
        duplicate: bool,
        /// The message's client JSON, set by the channel actor that rendered it for the event
        /// (so the answer to the send reuses those bytes). Never stored or sent between nodes.
        #[serde(skip)]
        rendered: Option<std::sync::Arc<str>>,
    },
    Read {
        last_read_seq: u64,
        events: Vec<StoredEvent>,
        epoch: String,
    },
    Appended {
        events: Vec<StoredEvent>,
        epoch: String,
    },
    Done,
    /// The outcome of a [`StreamOp::SpendRefresh`].
    Refresh(RefreshOutcome),
    /// The flags after a [`StreamOp::SetFlags`].
    Flags(ChannelFlags),
    NotFound(String),
    Refused(String),
    /// Mentions marked read.
    Marked(u64),
    /// The user's presence record after a [`StreamOp::Presence`].
    Presence(crate::model::PresenceRecord),
    /// A poll vote was set, changed or removed (or already was): the poll's voters after it.
    Voted {
        total_votes: u64,
        events: Vec<StoredEvent>,
        epoch: String,
    },
}

/// What spending a refresh token found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefreshOutcome {
    /// Spent now (or this very spend applied again).
    Spent,
    /// Spent before by another request: the token leaked, the session is now revoked.
    Replayed,
    /// The session was revoked earlier.
    Revoked,
}

/// Appends remembered per stream for their idempotency (a retried append arrives within
/// seconds; a stream appends to at membership and channel-settings rate).
pub const APPEND_IDS: u64 = 64;

/// Refresh tokens remembered per login session, newest last. A session that refreshed this
/// many times since cannot be replayed against older ones, but those have long expired with
/// the default lifetimes.
/// Spends a login session remembers at most, expired or not: a client refreshing more than
/// this often within a refresh token's life loses replay detection for its oldest tokens.
const MAX_LIVE_SPENT_REFRESH: usize = 4096;
/// Seconds a spend is remembered past its token's expiry: token checks allow a few seconds of
/// leeway, and the node that checks a token may run behind the clock of the node that decided
/// the spend had expired. Forgotten sooner, an expired token replayed within that margin would
/// pass as a first spend.
const SPENT_KEPT_PAST_EXPIRY_S: u64 = 300;
/// Ended login sessions one spend forgets at most (see [`forget_ended_sessions`]).
const MAX_FORGOTTEN_PER_SPEND: usize = 64;

/// A login session's spent refresh tokens, kept with the user's stream (the first layout:
/// without expiries, read when no [`SpentTokensUntil`] exists).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct SpentTokens {
    /// `(jti, nonce of the spend)`.
    spent: Vec<(String, u64)>,
    revoked: bool,
}

/// A login session's spent refresh tokens with their expiries (s), each kept until it expires.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct SpentTokensUntil {
    /// `(jti, nonce of the spend, expiry)`.
    spent: Vec<(String, u64, u64)>,
    revoked: bool,
}

impl StreamReply {
    /// The message of a [`StreamReply::Message`].
    pub fn message(&self) -> Option<&Message> {
        match self {
            StreamReply::Message {
                message: Some(m), ..
            } => Some(m),
            StreamReply::Message { events, .. } => events.first().and_then(|e| e.event.message()),
            _ => None,
        }
    }

    /// The message of a [`StreamReply::Message`], taken out of it.
    pub fn into_message(self) -> Option<Box<Message>> {
        match self {
            StreamReply::Message {
                message: Some(m), ..
            } => Some(m),
            StreamReply::Message { events, .. } => events
                .into_iter()
                .next()
                .and_then(|e| e.event.into_message()),
            _ => None,
        }
    }

    /// The events the command appended and the stream's epoch, when it is a write that may
    /// have appended some.
    pub fn events(&self) -> Option<(&[StoredEvent], &str)> {
        match self {
            StreamReply::Message { events, epoch, .. }
            | StreamReply::Read { events, epoch, .. }
            | StreamReply::Appended { events, epoch }
            | StreamReply::Voted { events, epoch, .. } => Some((events, epoch)),
            _ => None,
        }
    }
}

/// A member's read position in a chat stream.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReadState {
    pub last_read_seq: u64,
}

/// Applies [`StreamCommand`]s in the data shards.
pub struct StreamApplier;

impl Applier for StreamApplier {
    fn apply(
        &self,
        ctx: &ApplyContext,
        kv: &mut KvBatch<'_>,
        command: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let reply = apply_encoded(ctx, kv, command)?;
        encode_reply(&reply)
    }

    fn apply_reply(
        &self,
        ctx: &ApplyContext,
        kv: &mut KvBatch<'_>,
        command: &[u8],
    ) -> Result<chatsdk_storage::Reply, StoreError> {
        let reply = apply_encoded(ctx, kv, command)?;
        Ok(chatsdk_storage::Reply::Value(Box::new(reply)))
    }

    /// A send looks its message's id up before storing it (a retry of a client message id finds
    /// the first send); nearly every such lookup misses. The index's entries are logical keys
    /// ([`crate::id_index`]); the per-message keys of format 7 and before are stored ones.
    fn absent_keys(&self) -> Option<chatsdk_storage::absent::Tracked> {
        Some(chatsdk_storage::absent::Tracked {
            keys: keys::is_message_id,
            logical: Some(id_index::logical_keys),
        })
    }
}

/// A reply applied on the channel's own node reaches its actor as it is; it is encoded only for
/// another node (or a follower's discarded reply, never).
impl chatsdk_storage::ReplyValue for StreamReply {
    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        encode_reply(self)
    }
}

fn encode_reply<T: Serialize>(reply: &T) -> Result<Vec<u8>, StoreError> {
    codec::encode(reply).map_err(|e| StoreError::Corrupt {
        key: "reply".into(),
        reason: e.to_string(),
    })
}

/// Decodes and applies one command. An undecodable command changes nothing and is refused
/// (every replica refuses it alike); an undecodable record is an error that stops the group.
pub(crate) fn apply_encoded(
    ctx: &ApplyContext,
    kv: &mut impl Kv,
    command: &[u8],
) -> Result<StreamReply, StoreError> {
    match codec::decode::<StreamCommand>(command) {
        Ok(command) => apply(ctx, kv, command),
        Err(e) => {
            tracing::error!(group = ctx.group, index = ctx.index, error = %e, "undecodable stream command refused");
            Ok(StreamReply::Refused(format!(
                "undecodable stream command: {e}"
            )))
        }
    }
}

/// The id of a message sent to `stream` by `user` with client message id `cmid`: a UUID
/// (version 8, RFC 9562) made of the first 122 bits of the SHA-256 of the three. The same
/// three always give the same id, and no random (version 7) id is ever one of these.
pub fn client_message_id(stream: &str, user: &str, cmid: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [stream, user, cmid] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The epoch of a stream that has never been written: derived from its name, so it is known
/// (and the same on every node) before the first event exists.
pub fn initial_epoch(stream: &str) -> String {
    crate::hash_hex(stream.as_bytes())[..12].to_string()
}

/// An empty stream's head.
pub fn empty_head(stream: &str) -> StreamHead {
    StreamHead {
        epoch: initial_epoch(stream),
        offset: 0,
        seq: 0,
        first_retained: 1,
    }
}

/// How a stream stores an event. A new message or thread reply is stored as a reference to the
/// message record (which holds the message already), so a send writes the message once;
/// reading the event renders the message as it is then: edited, soft-deleted, or, once purged,
/// as `message.deleted` (a purged message is not served from the recovery window either).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum EventRecord {
    Whole(Event),
    MessageNew { seq: u64, id: String },
    ThreadReply { seq: u64, id: String },
}

/// A stored event: its offset and its [`EventRecord`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredEventRecord {
    pub(crate) offset: u64,
    pub(crate) event: EventRecord,
}

impl StoredEventRecord {
    fn of(stored: &StoredEvent) -> StoredEventRecord {
        let event = match &stored.event {
            Event::MessageNew(m) => EventRecord::MessageNew {
                seq: m.seq,
                id: m.id.clone(),
            },
            Event::ThreadReply(m) => EventRecord::ThreadReply {
                seq: m.seq,
                id: m.id.clone(),
            },
            other => EventRecord::Whole(other.clone()),
        };
        StoredEventRecord {
            offset: stored.offset,
            event,
        }
    }
}

/// Stored event records as events, reading the messages they refer to through `message` (by
/// seq).
pub(crate) fn resolve_events(
    sk: &StreamKeys<'_>,
    records: Vec<StoredEventRecord>,
    message: impl Fn(u64) -> Result<Option<Message>, StoreError>,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let thread = matches!(record.event, EventRecord::ThreadReply { .. });
        let event = match record.event {
            EventRecord::Whole(event) => event,
            EventRecord::MessageNew { seq, id } | EventRecord::ThreadReply { seq, id } => {
                match message(seq)? {
                    Some(m) if thread => Event::ThreadReply(Box::new(m)),
                    Some(m) => Event::MessageNew(Box::new(m)),
                    // Purged since: its event says so.
                    None => Event::MessageDeleted {
                        channel_id: sk.0.rsplit(':').next().unwrap_or_default().to_string(),
                        message_id: id,
                        hard: true,
                    },
                }
            }
        };
        out.push(StoredEvent {
            offset: record.offset,
            event,
        });
    }
    Ok(out)
}

/// One command's view of a stream: its keys, its head, and the events it appended.
struct Tx<'a, K: Kv> {
    kv: &'a mut K,
    sk: StreamKeys<'a>,
    head: StreamHead,
    retain: u64,
    events: Vec<StoredEvent>,
}

impl<K: Kv> Tx<'_, K> {
    /// Appends `event` as the stream's next and trims what falls out of the window.
    fn append(&mut self, event: Event) -> Result<(), StoreError> {
        self.head.offset += 1;
        let stored = StoredEvent {
            offset: self.head.offset,
            event,
        };
        put_item(
            self.kv,
            &self.sk.event_chunk(chunk_of(stored.offset)),
            stored.offset,
            &StoredEventRecord::of(&stored),
        )?;
        let retain = self.retain.max(1);
        while self.head.offset - self.head.first_retained + 1 > retain {
            // A chunk goes once its last event does; until then readers skip the events
            // before `first_retained` that it still holds.
            let trimmed = self.head.first_retained;
            if (trimmed + 1) % CHUNK == 0 {
                self.kv.delete(&self.sk.event_chunk(chunk_of(trimmed)));
            }
            self.head.first_retained += 1;
        }
        self.events.push(stored);
        Ok(())
    }

    /// Appends `event` unless the append `id` was applied already. The ids of the last
    /// [`APPEND_IDS`] appends are remembered, in a ring of slots by offset.
    fn append_once(&mut self, id: &str, event: Event) -> Result<(), StoreError> {
        let seen = self.sk.append_id(id);
        if self.kv.get(&seen)?.is_some() {
            return Ok(());
        }
        self.append(event)?;
        let slot = self.sk.append_slot(self.head.offset % APPEND_IDS);
        if let Some(old) = self.kv.get(&slot)? {
            let old = String::from_utf8_lossy(&old).into_owned();
            self.kv.delete(&self.sk.append_id(&old));
        }
        self.kv.put(&slot, id.as_bytes());
        self.kv.put(&seen, b"");
        Ok(())
    }

    fn find_message(&self, id: &str) -> Result<Option<Message>, StoreError> {
        self.find_hashed(id, id_index::hash(id))
    }

    /// [`Tx::find_message`], the id's index hash computed already.
    fn find_hashed(&self, id: &str, h: u64) -> Result<Option<Message>, StoreError> {
        // Nearly every send's lookup skips the index: its id was never indexed.
        let indexed = !self.kv.surely_absent(&self.sk.id_probe(h));
        let kv = &*self.kv;
        find_by_id(|k| kv.get(k), &self.sk, id, h, indexed)
    }

    fn put_message(&mut self, m: &Message) -> Result<(), StoreError> {
        put_item(self.kv, &self.sk.message_chunk(chunk_of(m.seq)), m.seq, m)
    }

    fn message_reply(&mut self, message: Message, duplicate: bool) -> StreamReply {
        StreamReply::Message {
            message: Some(Box::new(message)),
            events: std::mem::take(&mut self.events),
            epoch: self.head.epoch.clone(),
            duplicate,
            rendered: None,
        }
    }

    /// The reply to a command whose first event carries the message it wrote.
    fn written_message_reply(&mut self) -> StreamReply {
        StreamReply::Message {
            message: None,
            events: std::mem::take(&mut self.events),
            epoch: self.head.epoch.clone(),
            duplicate: false,
            rendered: None,
        }
    }

    fn send(&mut self, mut message: Box<Message>) -> Result<StreamReply, StoreError> {
        // A message sent with a client message id gets the id derived from it, so the id index
        // is also the client-message-id index (one key per message, not two).
        if let Some(cmid) = &message.client_msg_id {
            message.id = client_message_id(self.sk.0, &message.user_id, cmid);
        }
        // An existing id is this very command applied again (the cluster delivers at least
        // once; the proposal time is the same) or a client's retry of a client message id
        // (sent again later): either way, answer with what the first send stored, without a
        // second message or event.
        let h = id_index::hash(&message.id);
        if let Some(existing) = self.find_hashed(&message.id, h)? {
            let retry =
                message.client_msg_id.is_some() && existing.created_at != message.created_at;
            return Ok(self.message_reply(existing, retry));
        }
        self.head.seq += 1;
        message.seq = self.head.seq;
        if let Some(parent) = &message.parent_id {
            if let Some(mut p) = self.find_message(parent)? {
                p.reply_count += 1;
                self.put_message(&p)?;
                // Threads are read through this index, not by scanning the channel.
                self.kv.put(&self.sk.thread_reply(p.seq, message.seq), b"");
            }
        }
        self.put_message(&message)?;
        self.attach_uploads(&message)?;
        id_index::insert(self.kv, &self.sk, h, message.seq)?;
        // A thread reply is also announced as such.
        let thread_reply = message.parent_id.is_some().then(|| message.clone());
        self.append(Event::MessageNew(message))?;
        if let Some(reply) = thread_reply {
            self.append(Event::ThreadReply(reply))?;
        }
        Ok(self.written_message_reply())
    }

    fn edit(&mut self, id: &str, text: String, now: u64) -> Result<StreamReply, StoreError> {
        Ok(match self.find_message(id)? {
            Some(m) if m.deleted_at.is_some() => StreamReply::Refused("message is deleted".into()),
            // This very edit applied again (times come from the proposer): nothing changes.
            Some(m) if m.edited_at == Some(now) && m.text.as_deref() == Some(text.as_str()) => {
                self.message_reply(m, false)
            }
            Some(mut m) => {
                m.text = Some(text);
                m.edited_at = Some(now);
                self.put_message(&m)?;
                self.append(Event::MessageUpdated(Box::new(m)))?;
                self.written_message_reply()
            }
            None => StreamReply::NotFound("message".into()),
        })
    }

    fn delete(&mut self, id: &str, now: u64) -> Result<StreamReply, StoreError> {
        Ok(match self.find_message(id)? {
            Some(m) if m.deleted_at.is_some() => self.message_reply(m, true),
            Some(mut m) => {
                self.detach_uploads(&m)?;
                m.deleted_at = Some(now);
                m.text = None;
                m.attachments = Json::array();
                self.put_message(&m)?;
                self.append(Event::deleted(&m, false))?;
                self.message_reply(m, false)
            }
            None => StreamReply::NotFound("message".into()),
        })
    }

    fn purge(&mut self, id: &str) -> Result<StreamReply, StoreError> {
        Ok(match self.find_message(id)? {
            Some(m) => {
                self.detach_uploads(&m)?;
                delete_item(self.kv, &self.sk.message_chunk(chunk_of(m.seq)), m.seq)?;
                // The index forgets it (see `id_index`'s retention); a message of format 7 or
                // before loses its own key.
                id_index::forget(self.kv, &self.sk, id_index::hash(&m.id), m.seq)?;
                self.kv.delete(&self.sk.message_id(&m.id));
                if let Some(parent) = &m.parent_id {
                    if let Some(p) = self.find_message(parent)? {
                        self.kv.delete(&self.sk.thread_reply(p.seq, m.seq));
                    }
                }
                self.drop_annotations(m.seq)?;
                self.kv.delete(&self.sk.link_previews(m.seq));
                self.kv.delete(&keys::preview_pending(self.sk.0, m.seq));
                self.append(Event::deleted(&m, true))?;
                self.message_reply(m, false)
            }
            None => StreamReply::NotFound("message".into()),
        })
    }

    fn read(&mut self, user_id: String) -> Result<StreamReply, StoreError> {
        let key = self.sk.read_state(&user_id);
        let before = get::<ReadState>(self.kv, &key)?.unwrap_or_default();
        if before.last_read_seq != self.head.seq {
            let state = ReadState {
                last_read_seq: self.head.seq,
            };
            put(self.kv, &key, &state)?;
            let channel_id = self.sk.0.rsplit(':').next().unwrap_or_default().to_string();
            let last_read_seq = self.head.seq;
            self.append(Event::ReadUpdated {
                channel_id,
                user_id,
                last_read_seq,
            })?;
        }
        Ok(StreamReply::Read {
            last_read_seq: self.head.seq,
            events: std::mem::take(&mut self.events),
            epoch: self.head.epoch.clone(),
        })
    }
}

/// Spends refresh token `jti` (see [`StreamOp::SpendRefreshUntil`]) and remembers the spend
/// until the token expires. The session's record moves to the layout with expiries (spends of
/// the first layout kept, as never expiring, until the cap pushes them out).
fn spend_refresh_until(
    kv: &mut impl Kv,
    sk: &StreamKeys<'_>,
    sid: &str,
    (jti, nonce, expires_at): (String, u64, u64),
    now: u64,
) -> Result<RefreshOutcome, StoreError> {
    let key = sk.login_session_until(sid);
    let mut session = match get::<SpentTokensUntil>(kv, &key)? {
        Some(s) => s,
        None => {
            let legacy = get::<SpentTokens>(kv, &sk.login_session(sid))?.unwrap_or_default();
            SpentTokensUntil {
                spent: legacy
                    .spent
                    .into_iter()
                    .map(|(j, n)| (j, n, u64::MAX))
                    .collect(),
                revoked: legacy.revoked,
            }
        }
    };
    if let Some((_, first, _)) = session.spent.iter().find(|(j, _, _)| *j == jti) {
        if *first == nonce && !session.revoked {
            return Ok(RefreshOutcome::Spent);
        }
        if !session.revoked {
            session.revoked = true;
            put(kv, &key, &session)?;
        }
        return Ok(RefreshOutcome::Replayed);
    }
    if session.revoked {
        return Ok(RefreshOutcome::Revoked);
    }
    // An expired token is refused by its signature check: its spend need not be remembered.
    session
        .spent
        .retain(|(_, _, until)| until.saturating_add(SPENT_KEPT_PAST_EXPIRY_S) > now);
    if session.spent.len() >= MAX_LIVE_SPENT_REFRESH {
        session.spent.remove(0);
    }
    session.spent.push((jti, nonce, expires_at));
    put(kv, &key, &session)?;
    // Revoked sessions stay here: the sweep, which knows how long tokens live, forgets them.
    forget_ended_sessions(kv, sk, &key, now, u64::MAX)?;
    Ok(RefreshOutcome::Spent)
}

/// Retention of login sessions: removes the user's other session records that no longer
/// matter, at most [`MAX_FORGOTTEN_PER_SPEND`] per spend. A record matters while a spend it
/// remembers has not expired (a replay of that token must be caught) or when it says the
/// session was revoked (kept, like the revocation in group 0, which token checks read). An
/// ended session's newest token, if it is still valid, simply starts a new record when it is
/// spent. Without this, every login the user ever refreshed left a record behind for good.
/// `now` is the command's (the proposer's clock), so every replica removes the same records.
fn forget_ended_sessions(
    kv: &mut impl Kv,
    sk: &StreamKeys<'_>,
    current: &[u8],
    now: u64,
    keep_revoked: u64,
) -> Result<usize, StoreError> {
    let mut forgotten = 0;
    for (key, raw) in kv.scan_prefix(&sk.login_sessions_until())? {
        if forgotten == MAX_FORGOTTEN_PER_SPEND {
            break;
        }
        if key == current {
            continue;
        }
        let session: SpentTokensUntil = keys::decode_at(&key, &raw)?;
        if session.ended(now, keep_revoked) {
            kv.delete(&key);
            forgotten += 1;
        }
    }
    Ok(forgotten)
}

impl SpentTokensUntil {
    /// Whether the record no longer matters at `now` (see [`forget_ended_sessions`]); a
    /// revoked one only `keep_revoked` (s) after its last spent token expired.
    fn ended(&self, now: u64, keep_revoked: u64) -> bool {
        let margin = if self.revoked {
            keep_revoked
        } else {
            SPENT_KEPT_PAST_EXPIRY_S
        };
        self.spent
            .iter()
            .all(|(_, _, until)| until.saturating_add(margin) <= now)
    }
}

/// Writes `value` as item `n` of the chunk at `key`.
fn put_item<T: Serialize>(
    kv: &mut impl Kv,
    key: &[u8],
    n: u64,
    value: &T,
) -> Result<(), StoreError> {
    let record = encode_at(key, value)?;
    let chunk = chunk::with_item(key, kv.get(key)?.as_deref(), n, &record)?;
    kv.put(key, &chunk);
    Ok(())
}

/// Item `n` of a chunk's stored value.
fn item_of<T: serde::de::DeserializeOwned>(
    key: &[u8],
    value: &[u8],
    n: u64,
) -> Result<Option<T>, StoreError> {
    match chunk::find(key, value, n)? {
        Some(record) => decode_at(key, record).map(Some),
        None => Ok(None),
    }
}

/// Removes item `n` from the chunk at `key` (and the chunk, once empty).
fn delete_item(kv: &mut impl Kv, key: &[u8], n: u64) -> Result<(), StoreError> {
    let Some(value) = kv.get(key)? else {
        return Ok(());
    };
    match chunk::without_item(key, &value, n)? {
        Some(rest) => kv.put(key, &rest),
        None => kv.delete(key),
    }
    Ok(())
}

/// The message with id `id` (index hash `h`), read through `get` (an apply's view or a
/// replica's reader): the packed index's candidates (unless `indexed` is false: the group's
/// filter knows the hash was never indexed), the one whose stored message has the id, else the
/// message's own index key of format 7 and before (whose reads the filter mostly answers too).
fn find_by_id(
    get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, StoreError>,
    sk: &StreamKeys<'_>,
    id: &str,
    h: u64,
    indexed: bool,
) -> Result<Option<Message>, StoreError> {
    let message_at = |seq: u64| -> Result<Option<Message>, StoreError> {
        let key = sk.message_chunk(chunk_of(seq));
        match get(&key)? {
            Some(value) => item_of(&key, &value, seq),
            None => Ok(None),
        }
    };
    if indexed {
        for seq in id_index::candidates(&get, sk, h)? {
            if let Some(m) = message_at(seq)?.filter(|m| m.id == id) {
                return Ok(Some(m));
            }
        }
    }
    let key = sk.message_id(id);
    match get(&key)? {
        Some(raw) => message_at(index_seq(&key, &raw)?),
        None => Ok(None),
    }
}

/// The sequence number a message-id index entry points to.
fn index_seq(key: &[u8], raw: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(raw)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            key: key.escape_ascii().to_string(),
            reason: format!("message index entry of {} bytes", raw.len()),
        })
}

fn apply(
    ctx: &ApplyContext,
    kv: &mut impl Kv,
    command: StreamCommand,
) -> Result<StreamReply, StoreError> {
    let command = match command.op {
        StreamOp::Hooked { op, events } => {
            let inner = StreamCommand {
                stream: command.stream,
                retain: command.retain,
                op: *op,
            };
            let stream = inner.stream.clone();
            let reply = apply(ctx, kv, inner)?;
            hooks::hold(kv, &stream, &reply, &events)?;
            return Ok(reply);
        }
        op => StreamCommand {
            stream: command.stream,
            retain: command.retain,
            op,
        },
    };
    // The search feed follows chat messages' sends, edits, deletes and purges, and dropped
    // channels (see `crate::search::feed`).
    let searched = if command.stream.starts_with("chat:") {
        match &command.op {
            StreamOp::Send { message } => Some(message.id.clone()),
            StreamOp::Edit { message_id, .. }
            | StreamOp::Delete { message_id, .. }
            | StreamOp::Purge { message_id } => Some(message_id.clone()),
            StreamOp::Drop => Some(String::new()),
            _ => None,
        }
    } else {
        None
    };
    let sending = matches!(command.op, StreamOp::Send { .. });
    if let (Some(id), StreamOp::Drop) = (&searched, &command.op) {
        crate::search::feed::record(kv, &command.stream, id)?;
    }
    let sk = StreamKeys(&command.stream);
    let head = get::<StreamHead>(kv, &sk.head())?.unwrap_or_else(|| empty_head(sk.0));
    let before = head.clone();
    let mut tx = Tx {
        kv,
        sk,
        head,
        retain: command.retain,
        events: Vec::new(),
    };
    let reply =
        match command.op {
            StreamOp::Send { message } => tx.send(message)?,
            StreamOp::Edit {
                message_id,
                text,
                now,
            } => tx.edit(&message_id, text, now)?,
            StreamOp::Delete { message_id, now } => tx.delete(&message_id, now)?,
            StreamOp::Purge { message_id } => tx.purge(&message_id)?,
            StreamOp::Read { user_id } => tx.read(user_id)?,
            // Spends of older builds carry no expiry: remembered until the cap pushes them out.
            StreamOp::SpendRefresh { sid, jti, nonce } => StreamReply::Refresh(
                spend_refresh_until(tx.kv, &tx.sk, &sid, (jti, nonce, u64::MAX), 0)?,
            ),
            StreamOp::SpendRefreshUntil {
                sid,
                jti,
                nonce,
                expires_at,
                now,
            } => StreamReply::Refresh(spend_refresh_until(
                tx.kv,
                &tx.sk,
                &sid,
                (jti, nonce, expires_at),
                now,
            )?),
            StreamOp::ForgetEndedSessions { now, keep_revoked } => {
                forget_ended_sessions(tx.kv, &tx.sk, &[], now, keep_revoked)?;
                StreamReply::Done
            }
            StreamOp::SetFlags {
                channel,
                muted,
                starred,
            } => {
                let key = tx.sk.flags(&channel);
                let mut flags = get::<ChannelFlags>(tx.kv, &key)?.unwrap_or_default();
                flags.muted = muted.unwrap_or(flags.muted);
                flags.starred = starred.unwrap_or(flags.starred);
                if flags == ChannelFlags::default() {
                    tx.kv.delete(&key);
                } else {
                    put(tx.kv, &key, &flags)?;
                }
                StreamReply::Flags(flags)
            }
            StreamOp::React {
                message_id,
                emoji,
                user,
                add,
                now,
                max_per_user,
            } => tx.react(&message_id, emoji, user, add, now, max_per_user)?,
            StreamOp::Pin {
                message_id,
                by,
                now,
                max,
            } => tx.pin(&message_id, by, now, max)?,
            StreamOp::CreatePoll { poll } => tx.create_poll(poll)?,
            StreamOp::Vote {
                poll_id,
                user,
                options,
                now,
            } => tx.vote(&poll_id, user, options, now)?,
            StreamOp::Save {
                channel,
                message_id,
                at,
            } => tx.save(&channel, &message_id, at)?,
            StreamOp::Receipt {
                user_id,
                user_name,
                message_id,
                now,
            } => tx.receipt(user_id, user_name, &message_id, now)?,
            StreamOp::ReadAll { user_id, now } => tx.read_all(user_id, now)?,
            StreamOp::Mention { mention } => tx.mention(mention)?,
            StreamOp::PutBlobChunk { hash, index, bytes } => {
                tx.put_blob_chunk(&hash, index, &bytes)?
            }
            StreamOp::DropBlob { hash } => tx.drop_blob(&hash)?,
            StreamOp::EmojiUsed {
                emoji_id,
                user,
                day,
            } => tx.emoji_used(&emoji_id, &user, day)?,
            StreamOp::DropEmojiUses { emoji_id } => tx.drop_emoji_uses(&emoji_id)?,
            StreamOp::Presence {
                seen,
                heartbeat,
                hidden,
            } => {
                let key = tx.sk.presence();
                let mut p = get::<crate::model::PresenceRecord>(tx.kv, &key)?.unwrap_or_default();
                let later = |was: Option<u64>, at: u64| Some(was.map_or(at, |w| w.max(at)));
                if let Some(at) = seen {
                    p.last_seen = later(p.last_seen, at);
                }
                if let Some(at) = heartbeat {
                    p.heartbeat = later(p.heartbeat, at);
                }
                if let Some(h) = hidden {
                    p.hidden = h;
                }
                put(tx.kv, &key, &p)?;
                StreamReply::Presence(p)
            }
            StreamOp::MarkMentions { messages } => tx.mark_mentions(messages)?,
            StreamOp::Append { id, event } => {
                tx.append_once(&id, event)?;
                StreamReply::Appended {
                    events: std::mem::take(&mut tx.events),
                    epoch: tx.head.epoch.clone(),
                }
            }
            // Unwrapped above (nesting included).
            StreamOp::Hooked { .. } => StreamReply::Refused("malformed hooked command".into()),
            StreamOp::HooksDone { offsets } => tx.hooks_done(&offsets)?,
            StreamOp::LogDelivery { record, keep } => tx.log_delivery(&record, keep)?,
            StreamOp::PutUpload { upload } => tx.put_upload(*upload)?,
            StreamOp::DropUpload { id } => tx.drop_upload(&id)?,
            StreamOp::SetPreviews {
                message_id,
                seq,
                previews,
            } => tx.set_previews(&message_id, seq, previews)?,
            StreamOp::Drop => {
                tx.unindex_uploads()?;
                for (k, _) in tx.kv.scan_prefix(&tx.sk.all())? {
                    tx.kv.delete(&k);
                }
                tx.drop_outbox()?;
                // The head stays, with a new epoch: offsets never go back, and a client holding a
                // position of the dropped history is told it cannot recover.
                tx.head.epoch = format!("{:x}-{:x}-{:x}", ctx.term, ctx.index, ctx.position);
                tx.head.first_retained = tx.head.offset + 1;
                put(tx.kv, &tx.sk.head(), &tx.head)?;
                return Ok(StreamReply::Done);
            }
        };
    if tx.head != before {
        put(tx.kv, &tx.sk.head(), &tx.head)?;
    }
    // Only a change the stream recorded (a command applied again changes nothing).
    if let Some(id) = &searched {
        if reply.events().is_some_and(|(events, _)| !events.is_empty()) {
            crate::search::feed::record(tx.kv, &command.stream, id)?;
            // A new message with links is marked for previews, in the same batch.
            if let (true, Some(m)) = (sending, reply.message()) {
                if m.text.as_deref().is_some_and(crate::previews::has_urls) {
                    tx.kv.put(
                        &keys::preview_pending(&command.stream, m.seq),
                        m.id.as_bytes(),
                    );
                }
            }
        }
    }
    Ok(reply)
}

/// Reads of streams on a local replica (through its [`GroupReader`]; tests read a map).
#[derive(Clone)]
pub struct StreamReader<R = GroupReader> {
    reader: R,
}

/// Pages of messages.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub enum MessagePage {
    /// The newest `limit` top-level messages.
    Latest,
    /// Messages with seq greater than this, oldest first.
    After(u64),
    /// Messages with seq lower than this, newest `limit` of them.
    Before(u64),
}

impl StreamReader {
    /// Reads through a data shard's reader.
    pub fn new(reader: GroupReader) -> Self {
        StreamReader { reader }
    }
}

impl<R: KvRead> StreamReader<R> {
    fn get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        keys::read_record(&self.reader, key)
    }

    /// The stream's head, if it has ever had an event.
    pub fn head(&self, stream: &str) -> Result<Option<StreamHead>, StoreError> {
        self.get(&StreamKeys(stream).head())
    }

    /// How many of a user stream's login session records no longer matter at `now` (s): what
    /// [`StreamOp::ForgetEndedSessions`] would forget.
    pub fn ended_sessions(
        &self,
        stream: &str,
        now: u64,
        keep_revoked: u64,
    ) -> Result<usize, StoreError> {
        let mut ended = 0;
        for (key, raw) in self
            .reader
            .scan_prefix(&StreamKeys(stream).login_sessions_until())?
        {
            let session: SpentTokensUntil = keys::decode_at(&key, &raw)?;
            if session.ended(now, keep_revoked) {
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Visits the records numbered `from..=to` in the chunks named by `key`, in order (newest
    /// first when `reverse`), until `visit` (given the chunk's key, for errors, and the record)
    /// says stop (false). Chunks are read a few at a time, so a page needs no more of them
    /// than it visits.
    fn visit_items(
        &self,
        key: impl Fn(u64) -> Vec<u8>,
        from: u64,
        to: u64,
        reverse: bool,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        const CHUNKS_PER_READ: usize = 8;
        if to < from {
            return Ok(());
        }
        let (mut lo, mut hi) = (chunk_of(from), chunk_of(to));
        loop {
            let rows = self
                .reader
                .range(&key(lo), &key(hi + 1), reverse, CHUNKS_PER_READ)?;
            for (k, v) in &rows {
                let mut items = chunk::items(k, v)?.collect::<Result<Vec<_>, _>>()?;
                if reverse {
                    items.reverse();
                }
                for (n, record) in items {
                    if (from..=to).contains(&n) && !visit(k, record)? {
                        return Ok(());
                    }
                }
            }
            let Some((last, _)) = rows.last().filter(|_| rows.len() == CHUNKS_PER_READ) else {
                return Ok(());
            };
            let Some(last) = keys::trailing_u64(last) else {
                return Ok(());
            };
            if reverse {
                match last.checked_sub(1) {
                    Some(h) if h >= lo => hi = h,
                    _ => return Ok(()),
                }
            } else if last < hi {
                lo = last + 1;
            } else {
                return Ok(());
            }
        }
    }

    /// Retained events with offsets in `from..=to`, oldest first, at most `limit`.
    pub fn events(
        &self,
        stream: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sk = StreamKeys(stream);
        let Some(head) = self.head(stream)? else {
            return Ok(Vec::new());
        };
        // A chunk may still hold events older than the window (it goes with its last one).
        let from = from.max(head.first_retained);
        let to = to.min(head.offset);
        let mut records = Vec::new();
        if limit > 0 {
            self.visit_items(
                |n| sk.event_chunk(n),
                from,
                to,
                false,
                |k, record| {
                    records.push(decode_at::<StoredEventRecord>(k, record)?);
                    Ok(records.len() < limit)
                },
            )?;
        }
        resolve_events(&sk, records, |seq| self.message_at(&sk, seq))
    }

    /// The newest `limit` retained events, oldest first.
    pub fn latest_events(
        &self,
        stream: &str,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let Some(head) = self.head(stream)? else {
            return Ok(Vec::new());
        };
        let from = head
            .offset
            .saturating_sub(limit as u64)
            .saturating_add(1)
            .max(head.first_retained);
        self.events(stream, from, head.offset, limit)
    }

    /// The message with this seq.
    fn message_at(&self, sk: &StreamKeys<'_>, seq: u64) -> Result<Option<Message>, StoreError> {
        let key = sk.message_chunk(chunk_of(seq));
        match self.reader.get(&key)? {
            Some(value) => item_of(&key, &value, seq),
            None => Ok(None),
        }
    }

    /// The message with this id.
    fn find(&self, sk: &StreamKeys<'_>, id: &str) -> Result<Option<Message>, StoreError> {
        find_by_id(|k| self.reader.get(k), sk, id, id_index::hash(id), true)
    }

    /// A message by id.
    pub fn message(&self, stream: &str, id: &str) -> Result<Option<Message>, StoreError> {
        self.find(&StreamKeys(stream), id)
    }

    /// Top-level messages (thread replies excluded), oldest first, and whether more exist
    /// beyond the page in its direction.
    pub fn messages(
        &self,
        stream: &str,
        page: MessagePage,
        limit: usize,
    ) -> Result<(Vec<Message>, bool), StoreError> {
        let sk = StreamKeys(stream);
        let (from, to, reverse) = match page {
            MessagePage::Latest => (0, u64::MAX, true),
            MessagePage::After(seq) => (seq.saturating_add(1), u64::MAX, false),
            MessagePage::Before(seq) => match seq.checked_sub(1) {
                Some(to) => (0, to, true),
                None => return Ok((Vec::new(), false)),
            },
        };
        // Seqs are never above the head's: a reverse page starts there, not at the end of
        // the number space.
        let to = match self.head(stream)? {
            Some(head) => to.min(head.seq),
            None => return Ok((Vec::new(), false)),
        };
        let mut out = Vec::new();
        let mut more = false;
        self.visit_items(
            |n| sk.message_chunk(n),
            from,
            to,
            reverse,
            |k, record| {
                let m: Message = decode_at(k, record)?;
                if m.parent_id.is_some() {
                    return Ok(true);
                }
                if out.len() == limit {
                    more = true;
                    return Ok(false);
                }
                out.push(m);
                Ok(true)
            },
        )?;
        if reverse {
            out.reverse();
        }
        Ok((out, more))
    }

    /// Thread replies of `parent`, oldest first, through the thread index (the channel's
    /// other messages are not read).
    pub fn replies(
        &self,
        stream: &str,
        parent: &str,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let sk = StreamKeys(stream);
        let Some(parent_seq) = self.find(&sk, parent)?.map(|m| m.seq) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        // Reads the first `limit` replies' keys, not the whole thread's.
        for (k, _) in self
            .reader
            .scan_prefix_limit(&sk.thread(parent_seq), limit)?
        {
            let Some(seq) = keys::trailing_u64(&k) else {
                continue;
            };
            if let Some(m) = self.message_at(&sk, seq)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// How busy the stream's channel is.
    pub fn activity(&self, stream: &str) -> Result<crate::model::Activity, StoreError> {
        let Some(head) = self.head(stream)? else {
            return Ok(crate::model::Activity::default());
        };
        let last = self.message_at(&StreamKeys(stream), head.seq)?;
        Ok(crate::model::Activity {
            message_count: head.seq,
            last_message_at: last.map(|m| m.created_at),
        })
    }

    /// A user's presence record (read on the user's stream).
    pub fn presence(&self, stream: &str) -> Result<crate::model::PresenceRecord, StoreError> {
        Ok(self
            .get(&StreamKeys(stream).presence())?
            .unwrap_or_default())
    }

    /// A user's flags on every channel where any is set (read on the user's stream).
    pub fn flags(&self, stream: &str) -> Result<Vec<(String, ChannelFlags)>, StoreError> {
        let sk = StreamKeys(stream);
        self.reader
            .scan_prefix(&sk.all_flags())?
            .into_iter()
            .map(|(k, v)| {
                let channel = String::from_utf8_lossy(keys::last_component(&k)).into_owned();
                Ok((channel, decode_at(&k, &v)?))
            })
            .collect()
    }

    /// A member's read position.
    pub fn read_state(&self, stream: &str, user: &str) -> Result<ReadState, StoreError> {
        Ok(self
            .get(&StreamKeys(stream).read_state(user))?
            .unwrap_or_default())
    }

    /// Unread counts of several users at once: top-level, undeleted messages by others after
    /// each user's read position, counted among the stream's newest `window` messages (so a
    /// count is exact up to `window` and capped by it). One scan and one decode per
    /// message, whatever the number of users: a channel's members are counted together.
    pub fn unreads(
        &self,
        stream: &str,
        users: &[(String, u64)],
        window: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let sk = StreamKeys(stream);
        let Some(head) = self.head(stream)? else {
            return Ok(vec![0; users.len()]);
        };
        // Countable messages, newest first: (seq, author).
        let mut counted: Vec<(u64, String)> = Vec::new();
        let mut seen = 0;
        if window > 0 {
            self.visit_items(
                |n| sk.message_chunk(n),
                0,
                head.seq,
                true,
                |k, record| {
                    let m: Message = decode_at(k, record)?;
                    if m.parent_id.is_none() && m.deleted_at.is_none() {
                        counted.push((m.seq, m.user_id));
                    }
                    seen += 1;
                    Ok(seen < window)
                },
            )?;
        }
        counted.reverse();
        Ok(users
            .iter()
            .map(|(user, after)| {
                let from = counted.partition_point(|(seq, _)| seq <= after);
                counted[from..].iter().filter(|(_, u)| u != user).count() as u64
            })
            .collect())
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
