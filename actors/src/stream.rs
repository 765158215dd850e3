//! Realtime streams and chat messages, replicated in the data shards.
//!
//! Every realtime channel (`chat:<app>:<channel>`, `user:<app>:<user>`) has one durable stream in
//! the shard `shard_for(app, channel)`: each durable event gets the next offset (no gaps), and the
//! newest `retain` events are kept for recovery. A chat stream also holds the channel's messages
//! (by seq), the client-message-id index and members' read positions, so a message and its
//! `message.new` event commit atomically. [`StreamApplier`] is deterministic: offsets, seqs and
//! the epoch derive from the log, times from the proposer.

use chatsdk_cluster::{Applier, ApplyContext, GroupReader, KvBatch, StoreError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::keys::{self, StreamKeys};
use crate::model::{Message, StreamEvent, StreamHead};
use crate::render;

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
    /// Hard delete: the message disappears from history; no event.
    Purge { message_id: String },
    /// Marks everything up to the channel's newest seq read for `user_id`.
    Read { user_id: String },
    /// Appends a durable event.
    Append { data: String },
    /// Removes the stream and everything in it.
    Drop,
}

/// The result of a [`StreamCommand`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StreamReply {
    /// A message was stored (or found: `duplicate`), with the event it produced.
    Message {
        message: Box<Message>,
        event: Option<StreamEvent>,
        epoch: String,
        duplicate: bool,
    },
    /// `event` is None when the position did not move (nothing is emitted then).
    Read {
        last_read_seq: u64,
        event: Option<StreamEvent>,
        epoch: String,
    },
    Appended {
        event: StreamEvent,
        epoch: String,
    },
    Done,
    NotFound(String),
    Refused(String),
}

/// A member's read position in a chat stream.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReadState {
    pub last_read_seq: u64,
}

/// Applies [`StreamCommand`]s in the data shards.
pub struct StreamApplier;

use crate::keys::{get_record as get, put_record as put};

impl Applier for StreamApplier {
    fn apply(
        &self,
        ctx: &ApplyContext,
        kv: &mut KvBatch<'_>,
        command: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let reply = match serde_json::from_slice::<StreamCommand>(command) {
            Ok(command) => apply(ctx, kv, command)?,
            Err(e) => StreamReply::Refused(format!("undecodable stream command: {e}")),
        };
        Ok(serde_json::to_vec(&reply).unwrap_or_default())
    }
}

/// Appends `data` as the stream's next event and trims what falls out of the window.
fn append(
    kv: &mut KvBatch<'_>,
    sk: &StreamKeys<'_>,
    head: &mut StreamHead,
    retain: u64,
    data: String,
) -> StreamEvent {
    head.offset += 1;
    let event = StreamEvent {
        offset: head.offset,
        data,
    };
    put(kv, &sk.event(head.offset), &event);
    let retain = retain.max(1);
    while head.offset - head.first_retained + 1 > retain {
        kv.delete(&sk.event(head.first_retained));
        head.first_retained += 1;
    }
    event
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

fn load_head(kv: &KvBatch<'_>, sk: &StreamKeys<'_>) -> Result<StreamHead, StoreError> {
    Ok(get::<StreamHead>(kv, &sk.head())?.unwrap_or_else(|| empty_head(sk.0)))
}

fn find_message(
    kv: &KvBatch<'_>,
    sk: &StreamKeys<'_>,
    id: &str,
) -> Result<Option<Message>, StoreError> {
    let Some(raw) = kv.get(&sk.message_id(id))? else {
        return Ok(None);
    };
    let Ok(seq) = <[u8; 8]>::try_from(raw.as_slice()) else {
        return Ok(None);
    };
    get(kv, &sk.message(u64::from_be_bytes(seq)))
}

fn apply(
    ctx: &ApplyContext,
    kv: &mut KvBatch<'_>,
    command: StreamCommand,
) -> Result<StreamReply, StoreError> {
    let sk = StreamKeys(&command.stream);
    let mut head = load_head(kv, &sk)?;
    let retain = command.retain;
    let reply = match command.op {
        StreamOp::Send { mut message } => {
            if let Some(cmid) = &message.client_msg_id {
                if let Some(id) = kv.get(&sk.client_msg_id(&message.user_id, cmid))? {
                    let id = String::from_utf8_lossy(&id).into_owned();
                    if let Some(existing) = find_message(kv, &sk, &id)? {
                        return Ok(StreamReply::Message {
                            message: Box::new(existing),
                            event: None,
                            epoch: head.epoch,
                            duplicate: true,
                        });
                    }
                }
            }
            // Message ids are made per request, so an existing id is this very command applied
            // again (the cluster delivers at least once): answer with what the first apply
            // stored, without a second message or event.
            if let Some(existing) = find_message(kv, &sk, &message.id)? {
                return Ok(StreamReply::Message {
                    message: Box::new(existing),
                    event: None,
                    epoch: head.epoch,
                    duplicate: false,
                });
            }
            head.seq += 1;
            message.seq = head.seq;
            if let Some(parent) = &message.parent_id {
                if let Some(mut p) = find_message(kv, &sk, parent)? {
                    p.reply_count += 1;
                    put(kv, &sk.message(p.seq), &p);
                }
            }
            put(kv, &sk.message(message.seq), &message);
            kv.put(&sk.message_id(&message.id), &message.seq.to_be_bytes());
            if let Some(cmid) = &message.client_msg_id {
                kv.put(
                    &sk.client_msg_id(&message.user_id, cmid),
                    message.id.as_bytes(),
                );
            }
            let data = render::envelope(
                "message.new",
                json!({"channelId": message.channel_id, "message": render::message(&message)}),
            );
            let event = append(kv, &sk, &mut head, retain, data);
            if let Some(parent) = &message.parent_id {
                // A thread reply is also announced as such (`threadId` is what clients read,
                // `parentId` what the original server sent).
                let data = render::envelope(
                    "thread.reply",
                    json!({"channelId": message.channel_id, "parentId": parent, "threadId": parent, "message": render::message(&message)}),
                );
                append(kv, &sk, &mut head, retain, data);
            }
            StreamReply::Message {
                message,
                event: Some(event),
                epoch: head.epoch.clone(),
                duplicate: false,
            }
        }
        StreamOp::Edit {
            message_id,
            text,
            now,
        } => match find_message(kv, &sk, &message_id)? {
            Some(m) if m.deleted_at.is_some() => StreamReply::Refused("message is deleted".into()),
            Some(mut m) => {
                m.text = Some(text);
                m.edited_at = Some(now);
                put(kv, &sk.message(m.seq), &m);
                let data = render::envelope(
                    "message.updated",
                    json!({"channelId": m.channel_id, "message": render::message(&m)}),
                );
                let event = append(kv, &sk, &mut head, retain, data);
                StreamReply::Message {
                    message: Box::new(m),
                    event: Some(event),
                    epoch: head.epoch.clone(),
                    duplicate: false,
                }
            }
            None => StreamReply::NotFound("message".into()),
        },
        StreamOp::Delete { message_id, now } => match find_message(kv, &sk, &message_id)? {
            Some(m) if m.deleted_at.is_some() => StreamReply::Message {
                message: Box::new(m),
                event: None,
                epoch: head.epoch.clone(),
                duplicate: true,
            },
            Some(mut m) => {
                m.deleted_at = Some(now);
                m.text = None;
                m.attachments = json!([]);
                put(kv, &sk.message(m.seq), &m);
                let data = render::envelope(
                    "message.deleted",
                    json!({"channelId": m.channel_id, "messageId": m.id}),
                );
                let event = append(kv, &sk, &mut head, retain, data);
                StreamReply::Message {
                    message: Box::new(m),
                    event: Some(event),
                    epoch: head.epoch.clone(),
                    duplicate: false,
                }
            }
            None => StreamReply::NotFound("message".into()),
        },
        StreamOp::Purge { message_id } => match find_message(kv, &sk, &message_id)? {
            Some(m) => {
                kv.delete(&sk.message(m.seq));
                kv.delete(&sk.message_id(&m.id));
                let data = render::envelope(
                    "message.deleted",
                    json!({"channelId": m.channel_id, "messageId": m.id, "hard": true}),
                );
                let event = append(kv, &sk, &mut head, retain, data);
                StreamReply::Message {
                    message: Box::new(m),
                    event: Some(event),
                    epoch: head.epoch.clone(),
                    duplicate: false,
                }
            }
            None => StreamReply::NotFound("message".into()),
        },
        StreamOp::Read { user_id } => {
            let before = get::<ReadState>(kv, &sk.read_state(&user_id))?.unwrap_or_default();
            if before.last_read_seq == head.seq {
                return Ok(StreamReply::Read {
                    last_read_seq: head.seq,
                    event: None,
                    epoch: head.epoch,
                });
            }
            let state = ReadState {
                last_read_seq: head.seq,
            };
            put(kv, &sk.read_state(&user_id), &state);
            let channel_id = command
                .stream
                .rsplit(':')
                .next()
                .unwrap_or_default()
                .to_string();
            let data = render::envelope(
                "read.updated",
                json!({"channelId": channel_id, "userId": user_id, "lastReadSeq": head.seq}),
            );
            let event = append(kv, &sk, &mut head, retain, data);
            StreamReply::Read {
                last_read_seq: head.seq,
                event: Some(event),
                epoch: head.epoch.clone(),
            }
        }
        StreamOp::Append { data } => {
            let event = append(kv, &sk, &mut head, retain, data);
            StreamReply::Appended {
                event,
                epoch: head.epoch.clone(),
            }
        }
        StreamOp::Drop => {
            for (k, _) in kv.scan_prefix(&sk.all())? {
                kv.delete(&k);
            }
            // The head stays, with a new epoch: offsets never go back, and a client holding a
            // position of the dropped history is told it cannot recover.
            head.epoch = format!("{:x}-{:x}-{:x}", ctx.term, ctx.index, ctx.position);
            head.first_retained = head.offset + 1;
            put(kv, &sk.head(), &head);
            return Ok(StreamReply::Done);
        }
    };
    put(kv, &sk.head(), &head);
    Ok(reply)
}

/// Reads of streams on a local replica.
#[derive(Clone)]
pub struct StreamReader {
    reader: GroupReader,
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

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        Ok(self
            .reader
            .get(key)?
            .and_then(|raw| serde_json::from_slice(&raw).ok()))
    }

    /// The stream's head, if it has ever had an event.
    pub fn head(&self, stream: &str) -> Result<Option<StreamHead>, StoreError> {
        self.get(&StreamKeys(stream).head())
    }

    /// Retained events with offsets in `from..=to`, oldest first, at most `limit`.
    pub fn events(
        &self,
        stream: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        let sk = StreamKeys(stream);
        if to < from {
            return Ok(Vec::new());
        }
        Ok(self
            .reader
            .range(
                &sk.event(from),
                &sk.event(to.saturating_add(1).max(from + 1)),
                false,
                limit,
            )?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }

    /// The newest `limit` retained events, oldest first.
    pub fn latest_events(
        &self,
        stream: &str,
        limit: usize,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        let sk = StreamKeys(stream);
        let mut out: Vec<StreamEvent> = self
            .reader
            .range(&sk.event(0), &sk.event(u64::MAX), true, limit)?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect();
        out.reverse();
        Ok(out)
    }

    /// A message by id.
    pub fn message(&self, stream: &str, id: &str) -> Result<Option<Message>, StoreError> {
        let sk = StreamKeys(stream);
        let Some(raw) = self.reader.get(&sk.message_id(id))? else {
            return Ok(None);
        };
        let Ok(seq) = <[u8; 8]>::try_from(raw.as_slice()) else {
            return Ok(None);
        };
        self.get(&sk.message(u64::from_be_bytes(seq)))
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
            MessagePage::Latest => (sk.message(0), sk.message(u64::MAX), true),
            MessagePage::After(seq) => (
                sk.message(seq.saturating_add(1)),
                sk.message(u64::MAX),
                false,
            ),
            MessagePage::Before(seq) => (sk.message(0), sk.message(seq), true),
        };
        let mut out = Vec::new();
        let mut more = false;
        // Scan in chunks so thread replies (skipped) cannot starve a page.
        let mut cursor_from = from;
        let mut cursor_to = to;
        loop {
            let chunk = self
                .reader
                .range(&cursor_from, &cursor_to, reverse, limit + 1)?;
            let exhausted = chunk.len() <= limit;
            let mut last_key = None;
            for (k, v) in chunk {
                last_key = Some(k);
                let Ok(m) = serde_json::from_slice::<Message>(&v) else {
                    continue;
                };
                if m.parent_id.is_some() {
                    continue;
                }
                if out.len() == limit {
                    more = true;
                    break;
                }
                out.push(m);
            }
            if more || exhausted {
                break;
            }
            match (last_key, reverse) {
                (Some(k), true) => cursor_to = k,
                (Some(k), false) => {
                    cursor_from = k;
                    cursor_from.push(0);
                }
                (None, _) => break,
            }
        }
        if reverse {
            out.reverse();
        }
        Ok((out, more))
    }

    /// Thread replies of `parent`, oldest first.
    pub fn replies(
        &self,
        stream: &str,
        parent: &str,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let sk = StreamKeys(stream);
        Ok(self
            .reader
            .scan_prefix(&sk.messages())?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice::<Message>(&v).ok())
            .filter(|m| m.parent_id.as_deref() == Some(parent))
            .take(limit)
            .collect())
    }

    /// A member's read position.
    pub fn read_state(&self, stream: &str, user: &str) -> Result<ReadState, StoreError> {
        Ok(self
            .get(&StreamKeys(stream).read_state(user))?
            .unwrap_or_default())
    }

    /// Unread counts of several users at once: top-level, undeleted messages by others after
    /// each user's read position, counted among the stream's newest `window` messages (so a
    /// count is exact up to `window` and capped by it). One scan and one partial decode per
    /// message, whatever the number of users: a channel's members are counted together.
    pub fn unreads(
        &self,
        stream: &str,
        users: &[(String, u64)],
        window: usize,
    ) -> Result<Vec<u64>, StoreError> {
        /// The fields an unread count needs; serde skips the rest without allocating.
        #[derive(serde::Deserialize)]
        struct Counted {
            seq: u64,
            user_id: String,
            #[serde(default)]
            parent_id: Option<serde::de::IgnoredAny>,
            #[serde(default)]
            deleted_at: Option<u64>,
        }
        let sk = StreamKeys(stream);
        let newest = self
            .reader
            .range(&sk.message(0), &sk.message(u64::MAX), true, window)?;
        // Countable messages, oldest first: (seq, author).
        let mut counted: Vec<(u64, String)> = newest
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice::<Counted>(&v).ok())
            .filter(|m| m.parent_id.is_none() && m.deleted_at.is_none())
            .map(|m| (m.seq, m.user_id))
            .collect();
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

/// Seq from a message key (for tests of the layout).
#[allow(dead_code)]
pub(crate) fn seq_of(key: &[u8]) -> Option<u64> {
    keys::trailing_u64(key)
}
