//! The key layout of ChatSDK's state in the replicated key-value state machines.
//!
//! Keys are byte strings of components separated by `0x00`; ids never contain control
//! characters (the API refuses them), so a component can never forge a separator. Numbers are
//! big-endian so that prefix scans return them in order.
//!
//! Group 0 (the directory, on every node): apps, API keys, users, channels and memberships, under
//! `d\0…` (the cluster's own meta state lives under other keys of the same group).
//! Data shards: one stream per realtime channel and, for chat channels, its messages, under
//! `s\0<stream>\0…`.

use chatsdk_cluster::StoreError;

use crate::kv::{Kv, KvRead};

/// Joins components with `0x00` after a leading tag.
pub(crate) fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(p);
    }
    out
}

/// `key(parts)` followed by a separator, to scan everything under it.
pub(crate) fn prefix(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = key(parts);
    k.push(0);
    k
}

pub(crate) fn secret() -> Vec<u8> {
    key(&[b"d", b"secret"])
}
/// The token-signing keys once the secret has been rotated (see `directory::token_keys`).
pub(crate) fn token_keys() -> Vec<u8> {
    key(&[b"d", b"token-keys"])
}
pub(crate) fn app(app: &str) -> Vec<u8> {
    key(&[b"d", b"app", app.as_bytes()])
}
pub(crate) fn apps() -> Vec<u8> {
    prefix(&[b"d", b"app"])
}
pub(crate) fn api_key(hash: &str) -> Vec<u8> {
    key(&[b"d", b"key", hash.as_bytes()])
}
pub(crate) fn api_keys() -> Vec<u8> {
    prefix(&[b"d", b"key"])
}
pub(crate) fn user(app: &str, user: &str) -> Vec<u8> {
    key(&[b"d", b"user", app.as_bytes(), user.as_bytes()])
}
pub(crate) fn users(app: &str) -> Vec<u8> {
    prefix(&[b"d", b"user", app.as_bytes()])
}
pub(crate) fn channel(app: &str, channel: &str) -> Vec<u8> {
    key(&[b"d", b"chan", app.as_bytes(), channel.as_bytes()])
}
pub(crate) fn channels(app: &str) -> Vec<u8> {
    prefix(&[b"d", b"chan", app.as_bytes()])
}
pub(crate) fn cid(app: &str, cid: &str) -> Vec<u8> {
    key(&[b"d", b"cid", app.as_bytes(), cid.as_bytes()])
}
pub(crate) fn workspace(app: &str, ws: &str) -> Vec<u8> {
    key(&[b"d", b"ws", app.as_bytes(), ws.as_bytes()])
}
pub(crate) fn workspaces(app: &str) -> Vec<u8> {
    prefix(&[b"d", b"ws", app.as_bytes()])
}
/// A workspace by its name, lower-cased (names are unique per app; value: the id).
pub(crate) fn workspace_name(app: &str, name: &str) -> Vec<u8> {
    key(&[
        b"d",
        b"wsname",
        app.as_bytes(),
        name.to_lowercase().as_bytes(),
    ])
}
pub(crate) fn workspace_member(app: &str, ws: &str, user: &str) -> Vec<u8> {
    key(&[b"d", b"wsm", app.as_bytes(), ws.as_bytes(), user.as_bytes()])
}
pub(crate) fn workspace_members(app: &str, ws: &str) -> Vec<u8> {
    prefix(&[b"d", b"wsm", app.as_bytes(), ws.as_bytes()])
}
/// The user's workspaces index (empty value).
pub(crate) fn user_workspace(app: &str, user: &str, ws: &str) -> Vec<u8> {
    key(&[b"d", b"uws", app.as_bytes(), user.as_bytes(), ws.as_bytes()])
}
pub(crate) fn user_workspaces(app: &str, user: &str) -> Vec<u8> {
    prefix(&[b"d", b"uws", app.as_bytes(), user.as_bytes()])
}
/// The workspace's channels index (empty value).
pub(crate) fn workspace_channel(app: &str, ws: &str, channel: &str) -> Vec<u8> {
    key(&[
        b"d",
        b"wsch",
        app.as_bytes(),
        ws.as_bytes(),
        channel.as_bytes(),
    ])
}
pub(crate) fn workspace_channels(app: &str, ws: &str) -> Vec<u8> {
    prefix(&[b"d", b"wsch", app.as_bytes(), ws.as_bytes()])
}
/// An invitation by the SHA-256 of its token.
pub(crate) fn invite(app: &str, token_hash: &str) -> Vec<u8> {
    key(&[b"d", b"inv", app.as_bytes(), token_hash.as_bytes()])
}
/// The pending invitation of an email to a workspace (value: its token hash).
pub(crate) fn invite_of(app: &str, ws: &str, email: &str) -> Vec<u8> {
    key(&[
        b"d",
        b"invto",
        app.as_bytes(),
        ws.as_bytes(),
        email.as_bytes(),
    ])
}
pub(crate) fn invites_of(app: &str, ws: &str) -> Vec<u8> {
    prefix(&[b"d", b"invto", app.as_bytes(), ws.as_bytes()])
}

/// `blocked` is blocked by `blocker` (value: when).
pub(crate) fn block(app: &str, blocker: &str, blocked: &str) -> Vec<u8> {
    key(&[
        b"d",
        b"block",
        app.as_bytes(),
        blocker.as_bytes(),
        blocked.as_bytes(),
    ])
}
pub(crate) fn blocks(app: &str, blocker: &str) -> Vec<u8> {
    prefix(&[b"d", b"block", app.as_bytes(), blocker.as_bytes()])
}
/// A report of a message (see `directory::moderation`); ids are UUIDv7, so a scan is in
/// filing order.
pub(crate) fn report(app: &str, id: &str) -> Vec<u8> {
    key(&[b"d", b"report", app.as_bytes(), id.as_bytes()])
}
pub(crate) fn reports(app: &str) -> Vec<u8> {
    prefix(&[b"d", b"report", app.as_bytes()])
}
/// `reporter` reported `message` (value: the report's id): a message is reported once per user.
pub(crate) fn reported(app: &str, message: &str, reporter: &str) -> Vec<u8> {
    key(&[
        b"d",
        b"reported",
        app.as_bytes(),
        message.as_bytes(),
        reporter.as_bytes(),
    ])
}
/// An app's auto-enrollment rule.
pub(crate) fn enrollment_rule(app: &str, id: &str) -> Vec<u8> {
    key(&[b"d", b"enrule", app.as_bytes(), id.as_bytes()])
}
pub(crate) fn enrollment_rules(app: &str) -> Vec<u8> {
    prefix(&[b"d", b"enrule", app.as_bytes()])
}
/// A rule ran for a user (value: the run's id).
pub(crate) fn enrollment_ran(app: &str, rule: &str, user: &str) -> Vec<u8> {
    key(&[
        b"d",
        b"enran",
        app.as_bytes(),
        rule.as_bytes(),
        user.as_bytes(),
    ])
}
/// A run of a rule, by its id.
pub(crate) fn enrollment_run(app: &str, run: &str) -> Vec<u8> {
    key(&[b"d", b"enrun", app.as_bytes(), run.as_bytes()])
}
pub(crate) fn enrollment_runs(app: &str) -> Vec<u8> {
    prefix(&[b"d", b"enrun", app.as_bytes()])
}
/// `supervisor` supervises `supervised`.
pub(crate) fn supervision(app: &str, supervisor: &str, supervised: &str) -> Vec<u8> {
    key(&[
        b"d",
        b"sup",
        app.as_bytes(),
        supervisor.as_bytes(),
        supervised.as_bytes(),
    ])
}
pub(crate) fn supervisions(app: &str, supervisor: &str) -> Vec<u8> {
    prefix(&[b"d", b"sup", app.as_bytes(), supervisor.as_bytes()])
}
/// The index from a supervised user to a supervisor (empty value).
pub(crate) fn supervisor_of(app: &str, supervised: &str, supervisor: &str) -> Vec<u8> {
    key(&[
        b"d",
        b"supby",
        app.as_bytes(),
        supervised.as_bytes(),
        supervisor.as_bytes(),
    ])
}
pub(crate) fn supervisors_of(app: &str, supervised: &str) -> Vec<u8> {
    prefix(&[b"d", b"supby", app.as_bytes(), supervised.as_bytes()])
}
/// A legal hold on a channel or a user (`kind`).
pub(crate) fn legal_hold(app: &str, kind: &str, target: &str) -> Vec<u8> {
    key(&[
        b"d",
        b"hold",
        app.as_bytes(),
        kind.as_bytes(),
        target.as_bytes(),
    ])
}
pub(crate) fn legal_holds(app: &str) -> Vec<u8> {
    prefix(&[b"d", b"hold", app.as_bytes()])
}
/// A data export's record.
pub(crate) fn export(app: &str, id: &str) -> Vec<u8> {
    key(&[b"d", b"export", app.as_bytes(), id.as_bytes()])
}
/// The cluster's VAPID key (PKCS#8, hex).
pub(crate) fn vapid() -> Vec<u8> {
    key(&[b"d", b"vapid"])
}
/// A user's devices.
pub(crate) fn devices(app: &str, user: &str) -> Vec<u8> {
    key(&[b"d", b"devices", app.as_bytes(), user.as_bytes()])
}
/// A user's Web Push subscriptions (only users with some have the key).
pub(crate) fn web_push(app: &str, user: &str) -> Vec<u8> {
    key(&[b"d", b"wpush", app.as_bytes(), user.as_bytes()])
}
pub(crate) fn web_push_users(app: &str) -> Vec<u8> {
    prefix(&[b"d", b"wpush", app.as_bytes()])
}
/// A user's notification preferences.
pub(crate) fn notify_prefs(app: &str, user: &str) -> Vec<u8> {
    key(&[b"d", b"nprefs", app.as_bytes(), user.as_bytes()])
}
/// An app's webhook.
pub(crate) fn webhook(app: &str, id: &str) -> Vec<u8> {
    key(&[b"d", b"hook", app.as_bytes(), id.as_bytes()])
}
pub(crate) fn webhooks(app: &str) -> Vec<u8> {
    prefix(&[b"d", b"hook", app.as_bytes()])
}
/// A data shard's pending webhook delivery: event `offset` of `stream` (value: the event).
pub(crate) fn outbox(stream: &str, offset: u64) -> Vec<u8> {
    let mut k = key(&[b"o", stream.as_bytes()]);
    k.push(0);
    k.extend_from_slice(&offset.to_be_bytes());
    k
}
/// Every pending webhook delivery of a data shard.
pub(crate) fn outboxes() -> Vec<u8> {
    prefix(&[b"o"])
}
/// A stream's pending webhook deliveries.
pub(crate) fn stream_outbox(stream: &str) -> Vec<u8> {
    prefix(&[b"o", stream.as_bytes()])
}
/// The `(stream, offset)` of an outbox key.
pub(crate) fn outbox_parts(k: &[u8]) -> Option<(String, u64)> {
    let rest = k.strip_prefix(b"o\0")?;
    if rest.len() < 9 {
        return None;
    }
    let (stream, offset) = rest.split_at(rest.len() - 9);
    if offset[0] != 0 {
        return None;
    }
    let offset = u64::from_be_bytes(offset[1..].try_into().ok()?);
    Some((String::from_utf8(stream.to_vec()).ok()?, offset))
}
/// A user's standing in an app: warnings and ban.
pub(crate) fn standing(app: &str, user: &str) -> Vec<u8> {
    key(&[b"d", b"standing", app.as_bytes(), user.as_bytes()])
}
pub(crate) fn standings(app: &str) -> Vec<u8> {
    prefix(&[b"d", b"standing", app.as_bytes()])
}
/// A user's standing in a channel: ban and mute.
pub(crate) fn channel_standing(app: &str, channel: &str, user: &str) -> Vec<u8> {
    key(&[
        b"d",
        b"cstanding",
        app.as_bytes(),
        channel.as_bytes(),
        user.as_bytes(),
    ])
}
pub(crate) fn channel_standings(app: &str, channel: &str) -> Vec<u8> {
    prefix(&[b"d", b"cstanding", app.as_bytes(), channel.as_bytes()])
}
/// A channel by its tag (see `chat::locate`; empty value).
pub(crate) fn channel_tag(app: &str, tag: &str, channel: &str) -> Vec<u8> {
    key(&[
        b"d",
        b"chtag",
        app.as_bytes(),
        tag.as_bytes(),
        channel.as_bytes(),
    ])
}
pub(crate) fn channels_tagged(app: &str, tag: &str) -> Vec<u8> {
    prefix(&[b"d", b"chtag", app.as_bytes(), tag.as_bytes()])
}
pub(crate) fn emoji(app: &str, id: &str) -> Vec<u8> {
    key(&[b"d", b"emoji", app.as_bytes(), id.as_bytes()])
}
/// A workspace's emoji by name (value: the emoji's id).
pub(crate) fn emoji_name(app: &str, ws: &str, name: &str) -> Vec<u8> {
    key(&[
        b"d",
        b"emojin",
        app.as_bytes(),
        ws.as_bytes(),
        name.as_bytes(),
    ])
}
pub(crate) fn emoji_names(app: &str, ws: &str) -> Vec<u8> {
    prefix(&[b"d", b"emojin", app.as_bytes(), ws.as_bytes()])
}
pub(crate) fn template(app: &str, id: &str) -> Vec<u8> {
    key(&[b"d", b"tpl", app.as_bytes(), id.as_bytes()])
}
pub(crate) fn templates(app: &str) -> Vec<u8> {
    prefix(&[b"d", b"tpl", app.as_bytes()])
}

/// The channel of a poll (value: the channel id).
pub(crate) fn poll(app: &str, poll: &str) -> Vec<u8> {
    key(&[b"d", b"poll", app.as_bytes(), poll.as_bytes()])
}
/// A channel's idempotency key, scoped to its creator (`None`: made by a server key), so that
/// another user replaying the key makes their own channel instead of reading this one.
pub(crate) fn channel_idem(app: &str, creator: Option<&str>, idem: &str) -> Vec<u8> {
    key(&[
        b"d",
        b"cidem2",
        app.as_bytes(),
        creator.unwrap_or_default().as_bytes(),
        idem.as_bytes(),
    ])
}
/// The app-wide form of [`channel_idem`] that channels made before it still carry.
pub(crate) fn legacy_channel_idem(app: &str, idem: &str) -> Vec<u8> {
    key(&[b"d", b"cidem", app.as_bytes(), idem.as_bytes()])
}
pub(crate) fn member(app: &str, channel: &str, user: &str) -> Vec<u8> {
    key(&[
        b"d",
        b"mem",
        app.as_bytes(),
        channel.as_bytes(),
        user.as_bytes(),
    ])
}
pub(crate) fn members(app: &str, channel: &str) -> Vec<u8> {
    prefix(&[b"d", b"mem", app.as_bytes(), channel.as_bytes()])
}
pub(crate) fn user_channel(app: &str, user: &str, channel: &str) -> Vec<u8> {
    key(&[
        b"d",
        b"umem",
        app.as_bytes(),
        user.as_bytes(),
        channel.as_bytes(),
    ])
}
pub(crate) fn session(app: &str, user: &str, sid: &str) -> Vec<u8> {
    key(&[
        b"d",
        b"sess",
        app.as_bytes(),
        user.as_bytes(),
        sid.as_bytes(),
    ])
}
/// When a session revocation may be forgotten (ms, big-endian, so a scan meets the oldest
/// first), naming the revocation; its value is the revocation's key ([`session`]).
pub(crate) fn session_expiry(until_ms: u64, app: &str, user: &str, sid: &str) -> Vec<u8> {
    key(&[
        b"d",
        b"sessexp",
        &until_ms.to_be_bytes(),
        app.as_bytes(),
        user.as_bytes(),
        sid.as_bytes(),
    ])
}
/// Every [`session_expiry`], oldest first.
pub(crate) fn session_expiries() -> Vec<u8> {
    prefix(&[b"d", b"sessexp"])
}
/// The time of a [`session_expiry`] key.
pub(crate) fn session_expiry_time(key: &[u8]) -> Option<u64> {
    let at = session_expiries().len();
    let bytes: [u8; 8] = key.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}
pub(crate) fn user_channels(app: &str, user: &str) -> Vec<u8> {
    prefix(&[b"d", b"umem", app.as_bytes(), user.as_bytes()])
}

/// Keys of one stream (a realtime channel name such as `chat:<app>:<id>`).
pub(crate) struct StreamKeys<'a>(pub(crate) &'a str);

impl StreamKeys<'_> {
    pub(crate) fn head(&self) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"head"])
    }
    /// Chunk `n` of the retained events (offsets `16n..16n+15`, see [`crate::chunk`]).
    pub(crate) fn event_chunk(&self, n: u64) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"evc", &n.to_be_bytes()])
    }
    /// Chunk `n` of the messages (seqs `16n..16n+15`, see [`crate::chunk`]).
    pub(crate) fn message_chunk(&self, n: u64) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"msc", &n.to_be_bytes()])
    }
    /// One message's entry in the message-id index of format 7 and before (value: its seq);
    /// still read, no longer written (see [`crate::id_index`]).
    pub(crate) fn message_id(&self, id: &str) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"mid", id.as_bytes()])
    }
    /// The message-id index's newest entries, unsorted ([`crate::id_index`]).
    pub(crate) fn id_tail(&self) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), ID_TAIL])
    }
    /// The message-id index's runs and their pages' first hashes.
    pub(crate) fn id_runs(&self) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"xr"])
    }
    /// How many entries of each run of the message-id index point to messages that still
    /// exist (see [`crate::id_index::forget`]).
    pub(crate) fn id_live(&self) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"xl"])
    }
    /// Page `page` of run `run` of the message-id index.
    pub(crate) fn id_page(&self, run: u64, page: u32) -> Vec<u8> {
        key(&[
            b"s",
            self.0.as_bytes(),
            ID_PAGE,
            &run.to_be_bytes(),
            &page.to_be_bytes(),
        ])
    }
    /// The name the group's absent-key filter knows an index entry by (never stored).
    pub(crate) fn id_probe(&self, hash: u64) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"xh", &hash.to_be_bytes()])
    }
    /// The thread index: reply `reply` of the message with seq `parent` (empty value).
    pub(crate) fn thread_reply(&self, parent: u64, reply: u64) -> Vec<u8> {
        key(&[
            b"s",
            self.0.as_bytes(),
            b"thr",
            &parent.to_be_bytes(),
            &reply.to_be_bytes(),
        ])
    }
    /// Every reply of the message with seq `parent`, in seq order (the seqs are fixed-width,
    /// so the prefix is unambiguous).
    pub(crate) fn thread(&self, parent: u64) -> Vec<u8> {
        prefix(&[b"s", self.0.as_bytes(), b"thr", &parent.to_be_bytes()])
    }
    /// A user's flags on a channel (user streams).
    pub(crate) fn flags(&self, channel: &str) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"flags", channel.as_bytes()])
    }
    /// Every channel flag of the user (user streams).
    pub(crate) fn all_flags(&self) -> Vec<u8> {
        prefix(&[b"s", self.0.as_bytes(), b"flags"])
    }
    /// A login session's spent refresh tokens (user streams).
    pub(crate) fn login_session(&self, sid: &str) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"login", sid.as_bytes()])
    }
    /// A login session's spent refresh tokens with their expiries (see `stream`).
    pub(crate) fn login_session_until(&self, sid: &str) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"login2", sid.as_bytes()])
    }
    /// Every login session record of the user in the layout with expiries.
    pub(crate) fn login_sessions_until(&self) -> Vec<u8> {
        prefix(&[b"s", self.0.as_bytes(), b"login2"])
    }
    /// A member's read receipts: the message they last marked read and when their position
    /// moved (see `stream::receipts`).
    pub(crate) fn receipts(&self, user: &str) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"rcpt", user.as_bytes()])
    }
    pub(crate) fn read_state(&self, user: &str) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"read", user.as_bytes()])
    }
    /// An append applied to this stream, by its id (empty value).
    pub(crate) fn append_id(&self, id: &str) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"apid", id.as_bytes()])
    }
    /// Slot `slot` of the ring of remembered append ids (value: the id in it).
    pub(crate) fn append_slot(&self, slot: u64) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"apslot", &slot.to_be_bytes()])
    }
    pub(crate) fn all(&self) -> Vec<u8> {
        prefix(&[b"s", self.0.as_bytes()])
    }
    /// An upload's metadata (chat streams).
    pub(crate) fn upload(&self, id: &str) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"up", id.as_bytes()])
    }
    /// Every upload of the stream.
    pub(crate) fn uploads(&self) -> Vec<u8> {
        prefix(&[b"s", self.0.as_bytes(), b"up"])
    }
    /// Record `n` of a webhook's delivery log (its stream is `webhook:<app>:<id>`).
    pub(crate) fn delivery(&self, n: u64) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"dlog", &n.to_be_bytes()])
    }
    pub(crate) fn deliveries(&self) -> Vec<u8> {
        prefix(&[b"s", self.0.as_bytes(), b"dlog"])
    }
    /// The number of the log's last record.
    pub(crate) fn delivery_count(&self) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"dlogn"])
    }
    /// The annotations (reactions, pin, poll) of the message with seq `seq`.
    pub(crate) fn annotations(&self, seq: u64) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"ann", &seq.to_be_bytes()])
    }
    /// The link previews of the message with seq `seq`.
    pub(crate) fn link_previews(&self, seq: u64) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"lp", &seq.to_be_bytes()])
    }
    /// A reaction of `user` with `emoji` to the message with seq `seq` (value: when, and who).
    pub(crate) fn reaction(&self, seq: u64, user: &str, emoji: &str) -> Vec<u8> {
        key(&[
            b"s",
            self.0.as_bytes(),
            b"rx",
            &seq.to_be_bytes(),
            user.as_bytes(),
            emoji.as_bytes(),
        ])
    }
    /// Every reaction of `user` to the message with seq `seq`.
    pub(crate) fn user_reactions(&self, seq: u64, user: &str) -> Vec<u8> {
        prefix(&[
            b"s",
            self.0.as_bytes(),
            b"rx",
            &seq.to_be_bytes(),
            user.as_bytes(),
        ])
    }
    /// Every reaction to the message with seq `seq`.
    pub(crate) fn reactions(&self, seq: u64) -> Vec<u8> {
        prefix(&[b"s", self.0.as_bytes(), b"rx", &seq.to_be_bytes()])
    }
    /// The pinned messages' index: the message with seq `seq` is pinned (empty value).
    pub(crate) fn pinned(&self, seq: u64) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"pin", &seq.to_be_bytes()])
    }
    pub(crate) fn all_pinned(&self) -> Vec<u8> {
        prefix(&[b"s", self.0.as_bytes(), b"pin"])
    }
    /// The seq of the message that carries poll `poll`.
    pub(crate) fn poll(&self, poll: &str) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"poll", poll.as_bytes()])
    }
    /// `user`'s vote in the poll of the message with seq `seq` (value: options and when).
    pub(crate) fn vote(&self, seq: u64, user: &str) -> Vec<u8> {
        key(&[
            b"s",
            self.0.as_bytes(),
            b"vote",
            &seq.to_be_bytes(),
            user.as_bytes(),
        ])
    }
    pub(crate) fn votes(&self, seq: u64) -> Vec<u8> {
        prefix(&[b"s", self.0.as_bytes(), b"vote", &seq.to_be_bytes()])
    }
    /// A saved message of the user (user streams; value: when it was saved).
    pub(crate) fn saved(&self, channel: &str, message: &str) -> Vec<u8> {
        key(&[
            b"s",
            self.0.as_bytes(),
            b"saved",
            channel.as_bytes(),
            message.as_bytes(),
        ])
    }
    /// The user's saved messages by the time they were saved (user streams; empty value).
    pub(crate) fn saved_at(&self, at: u64, channel: &str, message: &str) -> Vec<u8> {
        key(&[
            b"s",
            self.0.as_bytes(),
            b"savedt",
            &at.to_be_bytes(),
            channel.as_bytes(),
            message.as_bytes(),
        ])
    }
    pub(crate) fn all_saved_at(&self) -> Vec<u8> {
        prefix(&[b"s", self.0.as_bytes(), b"savedt"])
    }
    /// A mention of the user (user streams), by when the message was sent.
    pub(crate) fn mention(&self, at: u64, message: &str) -> Vec<u8> {
        key(&[
            b"s",
            self.0.as_bytes(),
            b"mn",
            &at.to_be_bytes(),
            message.as_bytes(),
        ])
    }
    pub(crate) fn all_mentions(&self) -> Vec<u8> {
        prefix(&[b"s", self.0.as_bytes(), b"mn"])
    }
    /// Where the mention of the user in `message` is kept (value: its time).
    pub(crate) fn mention_of(&self, message: &str) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"mnof", message.as_bytes()])
    }
    /// Chunk `index` of the blob with SHA-256 `hash` (workspace streams).
    pub(crate) fn blob_chunk(&self, hash: &str, index: u32) -> Vec<u8> {
        key(&[
            b"s",
            self.0.as_bytes(),
            b"blob",
            hash.as_bytes(),
            &index.to_be_bytes(),
        ])
    }
    pub(crate) fn blob(&self, hash: &str) -> Vec<u8> {
        prefix(&[b"s", self.0.as_bytes(), b"blob", hash.as_bytes()])
    }
    /// An emoji's uses: `t` (total), `d\0<day>` (per day), `u\0<user>` (per user).
    pub(crate) fn emoji_uses(&self, emoji: &str, part: &[&[u8]]) -> Vec<u8> {
        let mut parts: Vec<&[u8]> = vec![b"s", self.0.as_bytes(), b"eu", emoji.as_bytes()];
        parts.extend_from_slice(part);
        key(&parts)
    }
    pub(crate) fn all_emoji_uses(&self, emoji: &str) -> Vec<u8> {
        prefix(&[b"s", self.0.as_bytes(), b"eu", emoji.as_bytes()])
    }
    /// The user's presence record (user streams).
    pub(crate) fn presence(&self) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"presence"])
    }
    /// How many mentions the user's stream keeps.
    pub(crate) fn mention_count(&self) -> Vec<u8> {
        key(&[b"s", self.0.as_bytes(), b"mncount"])
    }
}

/// The last component of [`StreamKeys::id_tail`].
const ID_TAIL: &[u8] = b"xt";
/// The component of [`StreamKeys::id_page`] after the stream.
const ID_PAGE: &[u8] = b"xp";

/// The stream of a key that holds message-id index entries ([`StreamKeys::id_tail`] or
/// [`StreamKeys::id_page`]).
pub(crate) fn id_entries_stream(key: &[u8]) -> Option<&str> {
    let rest = key.strip_prefix(b"s\0")?;
    let end = memchr::memchr(0, rest)?;
    let tag = &rest[end + 1..];
    let holds = tag == ID_TAIL || (tag.starts_with(ID_PAGE) && tag.get(ID_PAGE.len()) == Some(&0));
    if holds {
        std::str::from_utf8(&rest[..end]).ok()
    } else {
        None
    }
}

/// Whether `key` is an entry of a stream's message-id index ([`StreamKeys::message_id`]).
pub(crate) fn is_message_id(key: &[u8]) -> bool {
    let Some(rest) = key.strip_prefix(b"s\0") else {
        return false;
    };
    memchr::memchr(0, rest).is_some_and(|end| rest[end + 1..].starts_with(b"mid\0"))
}

/// The error for a stored value at `key` that does not parse (`what` it should have been),
/// logged where it is found: never read as absent.
pub(crate) fn unreadable(key: &[u8], what: &str, reason: impl Into<String>) -> StoreError {
    let key = key.escape_ascii().to_string();
    let reason = reason.into();
    tracing::error!(key = %key, reason = %reason, "unreadable {what}");
    StoreError::Corrupt { key, reason }
}

/// Reads the big-endian u64 at the end of a key.
pub(crate) fn trailing_u64(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// The last component of a key (after the final separator).
pub(crate) fn last_component(key: &[u8]) -> &[u8] {
    match key.iter().rposition(|b| *b == 0) {
        Some(i) => &key[i + 1..],
        None => key,
    }
}

/// Decodes the record stored at `key`; a record that does not decode is logged with its key
/// and reported as [`StoreError::Corrupt`], never read as absent.
pub(crate) fn decode_at<T: serde::de::DeserializeOwned>(
    key: &[u8],
    raw: &[u8],
) -> Result<T, StoreError> {
    crate::codec::decode(raw).map_err(|e| {
        let key = key.escape_ascii().to_string();
        tracing::error!(key = %key, error = %e, "undecodable record");
        StoreError::Corrupt {
            key,
            reason: e.to_string(),
        }
    })
}

/// Reads a record in an apply batch.
pub(crate) fn get_record<T: serde::de::DeserializeOwned>(
    kv: &impl Kv,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    match kv.get(key)? {
        Some(raw) => decode_at(key, &raw).map(Some),
        None => Ok(None),
    }
}

/// Encodes a record to be stored at (or in the chunk at) `key`.
pub(crate) fn encode_at<T: serde::Serialize>(key: &[u8], value: &T) -> Result<Vec<u8>, StoreError> {
    crate::codec::encode(value).map_err(|e| StoreError::Corrupt {
        key: key.escape_ascii().to_string(),
        reason: e.to_string(),
    })
}

/// Writes a record in an apply batch.
pub(crate) fn put_record<T: serde::Serialize>(
    kv: &mut impl Kv,
    key: &[u8],
    value: &T,
) -> Result<(), StoreError> {
    let raw = encode_at(key, value)?;
    kv.put(key, &raw);
    Ok(())
}

/// Reads a record through a replica's reader.
pub(crate) fn read_record<T: serde::de::DeserializeOwned>(
    reader: &impl KvRead,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    match reader.get(key)? {
        Some(raw) => decode_at(key, &raw).map(Some),
        None => Ok(None),
    }
}

/// A data shard's media index entry: file `hash` is used by upload `id` of `stream` (empty
/// value; see `media::replicate`).
pub(crate) fn media_ref(hash: &str, stream: &str, id: &str) -> Vec<u8> {
    key(&[b"m", hash.as_bytes(), stream.as_bytes(), id.as_bytes()])
}

/// The whole media index of a data shard.
pub(crate) fn media_refs() -> Vec<u8> {
    prefix(&[b"m"])
}

/// The stream and upload id of a media index key.
pub(crate) fn media_ref_upload(k: &[u8]) -> Option<(String, String)> {
    let mut parts = k.strip_prefix(b"m\0")?.splitn(3, |&b| b == 0);
    let _hash = parts.next()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    let id = std::str::from_utf8(parts.next()?).ok()?;
    Some((stream.to_string(), id.to_string()))
}

/// The file hash of a media index key.
pub(crate) fn media_ref_hash(k: &[u8]) -> Option<String> {
    let rest = k.strip_prefix(b"m\0")?;
    let end = rest.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&rest[..end]).ok().map(str::to_string)
}

/// A data shard's pending link previews: the message with seq `seq` of `stream` (value: its
/// id; see `chat::previews`).
pub(crate) fn preview_pending(stream: &str, seq: u64) -> Vec<u8> {
    key(&[b"p", stream.as_bytes(), &seq.to_be_bytes()])
}

/// Every pending link preview of a data shard.
pub(crate) fn previews_pending() -> Vec<u8> {
    prefix(&[b"p"])
}

/// The stream and seq of a pending preview key.
pub(crate) fn preview_pending_parts(k: &[u8]) -> Option<(String, u64)> {
    let rest = k.strip_prefix(b"p\0")?;
    if rest.len() < 9 || rest[rest.len() - 9] != 0 {
        return None;
    }
    let (stream, seq) = rest.split_at(rest.len() - 9);
    let seq = u64::from_be_bytes(seq[1..].try_into().ok()?);
    Some((std::str::from_utf8(stream).ok()?.to_string(), seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_index_keys_name_their_stream() {
        let sk = StreamKeys("chat:a:c");
        assert_eq!(id_entries_stream(&sk.id_tail()), Some("chat:a:c"));
        assert_eq!(id_entries_stream(&sk.id_page(0, 0)), Some("chat:a:c"));
        assert_eq!(id_entries_stream(&sk.id_page(7, 3)), Some("chat:a:c"));
        for other in [
            sk.id_runs(),
            sk.id_probe(1),
            sk.head(),
            sk.message_id("xt"),
            sk.message_chunk(0),
            b"s\0chat:a:c\0xtra".to_vec(),
            b"d\0chat:a:c\0xt".to_vec(),
        ] {
            assert_eq!(id_entries_stream(&other), None, "{}", other.escape_ascii());
        }
    }

    #[test]
    fn message_id_index_keys_are_told_apart() {
        let sk = StreamKeys("chat:app:general");
        assert!(is_message_id(&sk.message_id("0193-ab")));
        assert!(!is_message_id(&sk.head()));
        assert!(!is_message_id(&sk.message_chunk(3)));
        assert!(!is_message_id(&sk.event_chunk(3)));
        assert!(!is_message_id(&StreamKeys("mid").head()));
        assert!(!is_message_id(b"u\0mid\0x"));
    }
}
