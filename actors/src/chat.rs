//! The chat service: the domain operations the gateway calls, with their rules.
//!
//! [`Chat`] owns a node's cluster membership, its directory view, its channel actors and its
//! fanout. Directory changes (apps, users, channels, members) go through group 0; stream writes
//! (messages, reads, events) go to the channel actor of the stream, on this node when it leads
//! the stream's shard, else forwarded once to the node that does. Permission rules live here, so
//! every surface (REST, realtime RPC) enforces the same ones.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chatsdk_cluster::{
    shard_for, ClusterConfig, ClusterNode, GroupId, MetaCommand, MetaReply, NodeId, StartMode,
    UpperHandler, META_GROUP,
};
use futures::future::BoxFuture;
use serde_json::{json, Value};

use crate::channel::{ActorEnv, ChannelAnswer, ChannelRequest, QueryAnswer, Registry, StreamQuery};
use crate::directory::{
    DirCommand, DirReply, Directory, DirectoryApplier, UpsertAction, UpsertMode, UserPatch,
};
use crate::emitter::{decode_batch, Emitter, TOPIC_DELIVER};
use crate::error::ChatError;
use crate::fanout::{ClientInfo, Fanout};
use crate::model::{ApiKey, App, Channel, ChannelType, Member, Message, Role, User, UserSummary};
use crate::outbound::CloseReason;
use crate::stream::{MessagePage, StreamApplier, StreamOp, StreamReply};
use crate::{hash_hex, new_id, render, time, validate};

/// Topic of channel-actor requests forwarded to a shard's leader.
const TOPIC_CHANNEL: u16 = 0x4302;
/// Topic of presence queries between nodes.
const TOPIC_PRESENCE: u16 = 0x4303;
/// Topic of "disconnect this user" broadcasts.
const TOPIC_DISCONNECT: u16 = 0x4304;

/// Members a channel may be created with (more are added afterwards, in batches).
const MAX_INITIAL_MEMBERS: usize = 500;
/// Members told their unread count after each message, at most.
const MAX_UNREAD_NOTICES: usize = 1000;
/// Topic of "end these subscriptions" broadcasts.
const TOPIC_UNSUBSCRIBE: u16 = 0x4305;

/// Settings of the chat layer.
#[derive(Clone, Debug)]
pub struct ChatConfig {
    /// Events retained per stream for recovery.
    pub history_size: u64,
    /// Channel actors stop after this long without requests.
    pub actor_idle: Duration,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            history_size: 1000,
            actor_idle: Duration::from_secs(300),
        }
    }
}

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub app: String,
    /// The acting user, if any.
    pub user: Option<String>,
    /// Server-key authority: skips membership and role checks within the app.
    pub server: bool,
}

impl Caller {
    fn user(&self) -> Result<&str, ChatError> {
        self.user
            .as_deref()
            .ok_or_else(|| ChatError::bad("user_id is required"))
    }
}

/// A new channel.
#[derive(Clone, Debug, Default)]
pub struct NewChannel {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub image: Option<String>,
    pub member_ids: Vec<String>,
    pub workspace_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub config: Option<Value>,
    /// An explicit cid (ensure endpoints, seeds); generated otherwise.
    pub cid: Option<String>,
    /// An explicit id (seeds); generated otherwise.
    pub id: Option<String>,
}

/// A new message.
#[derive(Clone, Debug, Default)]
pub struct NewMessage {
    pub text: String,
    pub client_msg_id: Option<String>,
    pub attachments: Option<Value>,
    pub parent_id: Option<String>,
    pub reply_to_id: Option<String>,
}

/// A subscribe/recovery answer.
#[derive(Clone, Debug)]
pub struct Position {
    pub epoch: String,
    pub offset: u64,
    pub publications: Vec<crate::model::StreamEvent>,
    pub recovered: bool,
}

struct Inner {
    cluster: ClusterNode,
    directory: Directory,
    fanout: Arc<Fanout>,
    env: Arc<ActorEnv>,
    /// Shards from this node's configuration, until the meta state (authoritative) is known.
    config_shards: u32,
}

impl Inner {
    fn shards(&self) -> u32 {
        match self.cluster.meta_state().shards {
            0 => self.config_shards,
            n => n,
        }
    }
}

/// A node's chat service. Cheap to clone.
#[derive(Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

impl Chat {
    /// Starts the node (bootstrap, join or restart per `mode`) and the chat layer on it.
    pub async fn start(
        cluster: ClusterConfig,
        mode: StartMode,
        config: ChatConfig,
    ) -> Result<Chat, ChatError> {
        let shards = cluster.shards;
        let node = ClusterNode::start(
            cluster,
            mode,
            Arc::new(StreamApplier),
            Some(Arc::new(DirectoryApplier)),
        )
        .await?;
        let reader = node
            .local_reader(META_GROUP)
            .ok_or_else(|| ChatError::Internal("no directory replica".into()))?;
        let fanout = Arc::new(Fanout::default());
        let emitter = Arc::new(Emitter::new(node.clone(), fanout.clone()));
        let registry = Arc::new(Registry::default());
        let env = Arc::new(ActorEnv {
            cluster: node.clone(),
            emitter,
            retain: config.history_size,
            idle: config.actor_idle,
            registry,
        });
        let chat = Chat {
            inner: Arc::new(Inner {
                cluster: node.clone(),
                directory: Directory::new(reader),
                fanout,
                env,
                config_shards: shards,
            }),
        };
        node.register_handler(
            TOPIC_DELIVER,
            Arc::new(DeliverHandler(chat.inner.fanout.clone())),
        );
        node.register_handler(
            TOPIC_CHANNEL,
            Arc::new(ChannelHandler(Arc::downgrade(&chat.inner))),
        );
        node.register_handler(
            TOPIC_PRESENCE,
            Arc::new(PresenceHandler(chat.inner.fanout.clone())),
        );
        node.register_handler(
            TOPIC_DISCONNECT,
            Arc::new(DisconnectHandler(chat.inner.fanout.clone())),
        );
        node.register_handler(
            TOPIC_UNSUBSCRIBE,
            Arc::new(UnsubscribeHandler(chat.inner.fanout.clone())),
        );
        chat.spawn_leadership_watch();
        Ok(chat)
    }

    fn spawn_leadership_watch(&self) {
        let weak = Arc::downgrade(&self.inner);
        let mut watch = self.inner.cluster.watch_leadership();
        tokio::spawn(async move {
            while watch.changed().await.is_ok() {
                let leading: BTreeSet<GroupId> = watch.borrow().clone();
                let Some(inner) = weak.upgrade() else { return };
                let shards = inner.shards();
                inner
                    .env
                    .registry
                    .retain_leading(&leading, |s| group_of(s, shards));
            }
        });
    }

    /// The cluster node under this service.
    pub fn cluster(&self) -> &ClusterNode {
        &self.inner.cluster
    }

    /// This node's subscriber index.
    pub fn fanout(&self) -> &Arc<Fanout> {
        &self.inner.fanout
    }

    /// Local directory reads.
    pub fn directory(&self) -> &Directory {
        &self.inner.directory
    }

    /// Number of channel actors running here.
    pub fn running_actors(&self) -> usize {
        self.inner.env.registry.len()
    }

    /// Stops the channel actors and the node.
    pub async fn shutdown(&self) {
        self.inner.env.registry.stop_all();
        self.inner.cluster.shutdown().await;
    }

    // ---- directory plumbing

    async fn dir(&self, command: DirCommand) -> Result<DirReply, ChatError> {
        let body = serde_json::to_vec(&command).map_err(|e| ChatError::Internal(e.to_string()))?;
        let reply = self
            .inner
            .cluster
            .propose_meta(MetaCommand::Upper(body))
            .await?;
        // Read-your-writes on this node: wait until the local replica has applied it.
        self.inner.cluster.linearizable_reader(META_GROUP).await?;
        match reply {
            MetaReply::Upper(raw) => serde_json::from_slice(&raw)
                .map_err(|e| ChatError::Internal(format!("directory reply: {e}"))),
            MetaReply::Refused(why) => Err(ChatError::Internal(why)),
            other => Err(ChatError::Internal(format!(
                "unexpected directory reply {other:?}"
            ))),
        }
    }

    /// The token-signing secret of the cluster, created on first use.
    pub async fn token_secret(&self) -> Result<String, ChatError> {
        if let Some(s) = self.inner.directory.secret()? {
            return Ok(s);
        }
        let candidate = hex::encode(rand::random::<[u8; 32]>());
        match self
            .dir(DirCommand::InitSecret { secret: candidate })
            .await?
        {
            DirReply::Secret(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    // ---- apps and keys

    /// Creates an app (or returns the existing one with this id).
    pub async fn create_app(
        &self,
        id: Option<String>,
        name: &str,
        settings: Value,
    ) -> Result<App, ChatError> {
        let now = time::now_ms();
        let app = App {
            id: id.unwrap_or_else(new_id),
            name: name.to_string(),
            settings,
            created_at: now,
            updated_at: now,
        };
        match self.dir(DirCommand::CreateApp { app }).await? {
            DirReply::App(app) => Ok(app),
            other => Err(unexpected(other)),
        }
    }

    pub fn app(&self, id: &str) -> Result<Option<App>, ChatError> {
        Ok(self.inner.directory.app(id)?)
    }

    pub fn apps(&self) -> Result<Vec<App>, ChatError> {
        Ok(self.inner.directory.apps()?)
    }

    pub async fn update_app(
        &self,
        id: &str,
        name: Option<String>,
        settings: Option<Value>,
    ) -> Result<App, ChatError> {
        match self
            .dir(DirCommand::UpdateApp {
                id: id.to_string(),
                name,
                settings,
                now: time::now_ms(),
            })
            .await?
        {
            DirReply::App(app) => Ok(app),
            DirReply::NotFound(w) => Err(ChatError::NotFound(w)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_app(&self, id: &str) -> Result<(u64, u64), ChatError> {
        match self
            .dir(DirCommand::DeleteApp { id: id.to_string() })
            .await?
        {
            DirReply::Deleted { users, channels } => Ok((users, channels)),
            DirReply::NotFound(w) => Err(ChatError::NotFound(w)),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a server key for `app`; the plaintext is returned once and only its hash kept.
    pub async fn create_api_key(
        &self,
        app: &str,
        name: &str,
        scopes: Vec<String>,
    ) -> Result<(ApiKey, String), ChatError> {
        if self.inner.directory.app(app)?.is_none() {
            return Err(ChatError::not_found("app"));
        }
        let plain = format!("chatsdk_{}", hex::encode(rand::random::<[u8; 20]>()));
        let key = ApiKey {
            id: new_id(),
            app_id: app.to_string(),
            name: name.to_string(),
            scopes,
            hash: hash_hex(plain.as_bytes()),
            created_at: time::now_ms(),
            revoked_at: None,
        };
        self.dir(DirCommand::PutApiKey { key: key.clone() }).await?;
        Ok((key, plain))
    }

    /// The active key whose plaintext is `plain`.
    pub fn api_key(&self, plain: &str) -> Result<Option<ApiKey>, ChatError> {
        Ok(self
            .inner
            .directory
            .api_key(&hash_hex(plain.as_bytes()))?
            .filter(|k| k.revoked_at.is_none()))
    }

    // ---- users

    pub fn user(&self, app: &str, id: &str) -> Result<Option<User>, ChatError> {
        Ok(self.inner.directory.user(app, id)?.filter(|u| !u.deleted))
    }

    /// A user including anonymised ones (for token checks).
    pub fn user_record(&self, app: &str, id: &str) -> Result<Option<User>, ChatError> {
        Ok(self.inner.directory.user(app, id)?)
    }

    /// Users of an app, filtered by a case-insensitive substring of name or id.
    pub fn users(
        &self,
        app: &str,
        q: Option<&str>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<User>, ChatError> {
        let q = q.map(str::to_lowercase);
        Ok(self
            .inner
            .directory
            .users(app)?
            .into_iter()
            .filter(|u| !u.deleted)
            .filter(|u| {
                q.as_ref().is_none_or(|q| {
                    u.name.to_lowercase().contains(q) || u.id.to_lowercase().contains(q)
                })
            })
            .skip(offset)
            .take(limit)
            .collect())
    }

    pub async fn upsert_user(
        &self,
        app: &str,
        patch: UserPatch,
        mode: UpsertMode,
    ) -> Result<(UpsertAction, User), ChatError> {
        validate::user_id(&patch.id)?;
        if let Some(name) = &patch.name {
            validate::text_len("name", name, 1, 255)?;
        }
        match self
            .dir(DirCommand::UpsertUser {
                app_id: app.to_string(),
                patch,
                mode,
                now: time::now_ms(),
            })
            .await?
        {
            DirReply::User { action, user } => Ok((action, user)),
            other => Err(unexpected(other)),
        }
    }

    /// Anonymises a user, revokes their tokens and closes their connections.
    pub async fn delete_user(&self, app: &str, id: &str) -> Result<User, ChatError> {
        let user = match self
            .dir(DirCommand::DeleteUser {
                app_id: app.to_string(),
                user_id: id.to_string(),
                now: time::now_ms(),
            })
            .await?
        {
            DirReply::User { user, .. } => user,
            DirReply::NotFound(w) => return Err(ChatError::NotFound(w)),
            other => return Err(unexpected(other)),
        };
        self.disconnect_user(app, id).await;
        Ok(user)
    }

    /// Spends a refresh token; a replayed one revokes its whole login session.
    pub async fn spend_refresh(
        &self,
        app: &str,
        user: &str,
        sid: &str,
        jti: &str,
    ) -> Result<(), ChatError> {
        let command = DirCommand::SpendRefresh {
            app_id: app.to_string(),
            user_id: user.to_string(),
            sid: sid.to_string(),
            jti: jti.to_string(),
        };
        match self.dir(command).await? {
            DirReply::Done => Ok(()),
            DirReply::Conflict(why) => Err(ChatError::Forbidden(why)),
            other => Err(unexpected(other)),
        }
    }

    /// Whether a login session was revoked (by a refresh token replay).
    pub fn session_revoked(&self, app: &str, user: &str, sid: &str) -> Result<bool, ChatError> {
        Ok(self.inner.directory.session_revoked(app, user, sid)?)
    }

    /// Revokes every token issued to the user so far and closes their connections.
    pub async fn revoke_tokens(&self, app: &str, id: &str) -> Result<(), ChatError> {
        match self
            .dir(DirCommand::RevokeTokens {
                app_id: app.to_string(),
                user_id: id.to_string(),
                now: time::now_ms(),
            })
            .await?
        {
            DirReply::User { .. } => {}
            DirReply::NotFound(w) => return Err(ChatError::NotFound(w)),
            other => return Err(unexpected(other)),
        }
        self.disconnect_user(app, id).await;
        Ok(())
    }

    /// Ends `user`'s subscriptions to `stream` on every node (membership removed, channel
    /// deleted); clients get an unsubscribe push and do not resubscribe by themselves.
    async fn unsubscribe_everywhere(&self, app: &str, user: &str, stream: &str) {
        let principal = format!("{app}:{user}");
        let body = serde_json::to_vec(&(&principal, stream)).unwrap_or_default();
        let frame = bytes::Bytes::from(chatsdk_proto::realtime::push_unsubscribe(
            stream,
            2000,
            "unsubscribed",
        ));
        self.inner
            .fanout
            .unsubscribe_user(&principal, stream, &frame);
        let me = self.inner.cluster.id();
        for node in self
            .inner
            .cluster
            .meta_state()
            .active_nodes()
            .into_iter()
            .filter(|n| *n != me)
        {
            let _ = self
                .inner
                .cluster
                .send_upper(node, TOPIC_UNSUBSCRIBE, body.clone())
                .await;
        }
    }

    async fn disconnect_user(&self, app: &str, id: &str) {
        let principal = format!("{app}:{id}");
        self.inner
            .fanout
            .disconnect_user(&principal, CloseReason::FORCE_DISCONNECT);
        let me = self.inner.cluster.id();
        for node in self
            .inner
            .cluster
            .meta_state()
            .active_nodes()
            .into_iter()
            .filter(|n| *n != me)
        {
            let _ = self
                .inner
                .cluster
                .send_upper(node, TOPIC_DISCONNECT, principal.clone().into_bytes())
                .await;
        }
    }

    // ---- channels

    pub fn channel(&self, app: &str, id: &str) -> Result<Option<Channel>, ChatError> {
        Ok(self.inner.directory.channel(app, id)?)
    }

    /// The caller's membership, re-read through the directory's leader when not found locally
    /// (a membership just granted elsewhere may not be applied here yet).
    pub async fn membership(
        &self,
        app: &str,
        channel: &str,
        user: &str,
    ) -> Result<Option<Member>, ChatError> {
        if let Some(m) = self.inner.directory.member(app, channel, user)? {
            return Ok(Some(m));
        }
        self.inner.cluster.linearizable_reader(META_GROUP).await?;
        Ok(self.inner.directory.member(app, channel, user)?)
    }

    pub fn members(&self, app: &str, channel: &str) -> Result<Vec<Member>, ChatError> {
        Ok(self.inner.directory.members(app, channel)?)
    }

    /// A channel the caller may read, with the caller's membership.
    pub async fn readable_channel(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(Channel, Option<Member>), ChatError> {
        let ch = self
            .channel(&caller.app, id)?
            .ok_or_else(|| ChatError::not_found("channel"))?;
        let me = match &caller.user {
            Some(u) => self.membership(&caller.app, id, u).await?,
            None => None,
        };
        if me.is_none() && !caller.server && !ch.kind.is_open() {
            return Err(ChatError::forbidden("not a member of this channel"));
        }
        Ok((ch, me))
    }

    /// Channels visible to `user`: their memberships and the app's open channels.
    pub fn channels_for(
        &self,
        app: &str,
        user: &str,
        kind: Option<&str>,
    ) -> Result<Vec<(Channel, Option<Member>)>, ChatError> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for id in self.inner.directory.user_channel_ids(app, user)? {
            if let Some(ch) = self.inner.directory.channel(app, &id)? {
                let me = self.inner.directory.member(app, &id, user)?;
                seen.insert(id);
                out.push((ch, me));
            }
        }
        for ch in self.inner.directory.channels(app)? {
            if ch.kind.is_open() && !seen.contains(&ch.id) {
                out.push((ch, None));
            }
        }
        if let Some(kind) = kind {
            out.retain(|(c, _)| c.kind.as_str() == kind);
        }
        out.sort_by_key(|(c, _)| std::cmp::Reverse(c.created_at));
        Ok(out)
    }

    /// Creates a channel; `created` is false when an idempotency key, DM pair or cid matched
    /// an existing one.
    pub async fn create_channel(
        &self,
        caller: &Caller,
        spec: NewChannel,
    ) -> Result<(bool, Channel), ChatError> {
        let app = &caller.app;
        let kind_name = spec.kind.clone().unwrap_or_else(|| "messaging".into());
        let kind = ChannelType::parse(&kind_name)
            .ok_or_else(|| ChatError::bad(format!("unknown channel type {kind_name}")))?;
        if let Some(name) = &spec.name {
            validate::text_len("name", name, 0, 255)?;
        }
        if let Some(k) = &spec.idempotency_key {
            validate::text_len("idempotencyKey", k, 1, 255)?;
        }
        let creator = caller.user.clone();
        if spec.member_ids.len() > MAX_INITIAL_MEMBERS {
            return Err(ChatError::bad(format!(
                "at most {MAX_INITIAL_MEMBERS} members at creation; add more afterwards"
            )));
        }
        let mut member_ids: Vec<String> = Vec::new();
        let mut seen = BTreeSet::new();
        for m in creator.iter().chain(spec.member_ids.iter()) {
            validate::user_id(m)?;
            if seen.insert(m.clone()) {
                member_ids.push(m.clone());
            }
        }
        let missing: Vec<String> = member_ids
            .iter()
            .filter(|m| self.user(app, m).ok().flatten().is_none())
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(ChatError::NotFound(format!("users {}", missing.join(", "))));
        }
        let dm = kind == ChannelType::Messaging && spec.cid.is_none() && creator.is_some();
        let cid = match (&spec.cid, dm) {
            (Some(cid), _) => cid.clone(),
            (None, true) => {
                if member_ids.len() != 2 {
                    return Err(ChatError::bad(
                        "a messaging channel needs exactly one other member",
                    ));
                }
                let mut pair = member_ids.clone();
                pair.sort();
                format!(
                    "messaging:dm:{}",
                    hash_hex(json!(pair).to_string().as_bytes())
                )
            }
            (None, false) => format!("{}:{}", kind.as_str(), new_id()),
        };
        let now = time::now_ms();
        let channel = Channel {
            id: spec.id.unwrap_or_else(new_id),
            app_id: app.clone(),
            cid,
            kind,
            name: spec.name,
            image: spec.image,
            config: spec.config.unwrap_or_else(|| json!({})),
            workspace_id: spec.workspace_id,
            created_by: creator.clone(),
            created_at: now,
            updated_at: now,
            idempotency_key: spec.idempotency_key,
            member_count: 0,
            dm,
        };
        let members: Vec<(String, Role)> = member_ids
            .iter()
            .map(|m| {
                (
                    m.clone(),
                    if Some(m) == creator.as_ref() && !dm {
                        Role::Owner
                    } else {
                        Role::Member
                    },
                )
            })
            .collect();
        let (created, channel) = match self
            .dir(DirCommand::CreateChannel {
                channel,
                members,
                now,
            })
            .await?
        {
            DirReply::Channel { created, channel } => (created, channel),
            other => return Err(unexpected(other)),
        };
        if created {
            for m in &member_ids {
                let data = render::envelope(
                    "channel.created",
                    json!({"channel": render::channel(&channel, None, None)}),
                );
                self.append_user_event(app, m, data).await;
            }
        }
        Ok((created, channel))
    }

    /// Updates name, image or config (owner or admin).
    pub async fn update_channel(
        &self,
        caller: &Caller,
        id: &str,
        name: Option<String>,
        image: Option<String>,
        config: Option<Value>,
    ) -> Result<Channel, ChatError> {
        self.require_role(caller, id, Role::Admin).await?;
        let ch = match self
            .dir(DirCommand::UpdateChannel {
                app_id: caller.app.clone(),
                channel_id: id.to_string(),
                name,
                image,
                config,
                now: time::now_ms(),
            })
            .await?
        {
            DirReply::Channel { channel, .. } => channel,
            DirReply::NotFound(w) => return Err(ChatError::NotFound(w)),
            other => return Err(unexpected(other)),
        };
        let data = render::envelope(
            "channel.updated",
            json!({"channel": render::channel(&ch, None, None)}),
        );
        self.write_stream(&chat_stream(&caller.app, id), StreamOp::Append { data })
            .await?;
        Ok(ch)
    }

    /// Deletes a channel and its history (owner only).
    pub async fn delete_channel(&self, caller: &Caller, id: &str) -> Result<(), ChatError> {
        self.require_role(caller, id, Role::Owner).await?;
        let members = self.members(&caller.app, id)?;
        match self
            .dir(DirCommand::DeleteChannel {
                app_id: caller.app.clone(),
                channel_id: id.to_string(),
            })
            .await?
        {
            DirReply::Channel { .. } => {}
            DirReply::NotFound(w) => return Err(ChatError::NotFound(w)),
            other => return Err(unexpected(other)),
        }
        self.write_stream(&chat_stream(&caller.app, id), StreamOp::Drop)
            .await?;
        let stream = chat_stream(&caller.app, id);
        for m in members {
            let data = render::envelope("channel.deleted", json!({"channelId": id}));
            self.append_user_event(&caller.app, &m.user_id, data).await;
            self.unsubscribe_everywhere(&caller.app, &m.user_id, &stream)
                .await;
        }
        Ok(())
    }

    /// The caller's role in the channel, which must be at least `needed` (server keys pass).
    async fn require_role(
        &self,
        caller: &Caller,
        channel: &str,
        needed: Role,
    ) -> Result<Option<Member>, ChatError> {
        if self.channel(&caller.app, channel)?.is_none() {
            return Err(ChatError::not_found("channel"));
        }
        if caller.server {
            return Ok(match &caller.user {
                Some(u) => self.membership(&caller.app, channel, u).await?,
                None => None,
            });
        }
        let user = caller.user()?;
        let me = self
            .membership(&caller.app, channel, user)
            .await?
            .ok_or_else(|| ChatError::forbidden("not a member of this channel"))?;
        if me.role < needed {
            return Err(ChatError::Forbidden(format!(
                "requires the {} role",
                needed.as_str()
            )));
        }
        Ok(Some(me))
    }

    /// Adds members (owner, admin or moderator); returns the ids actually added.
    pub async fn add_members(
        &self,
        caller: &Caller,
        id: &str,
        users: Vec<String>,
        role: Role,
    ) -> Result<Vec<String>, ChatError> {
        let me = self.require_role(caller, id, Role::Moderator).await?;
        let ch = self
            .channel(&caller.app, id)?
            .ok_or_else(|| ChatError::not_found("channel"))?;
        if ch.dm {
            return Err(ChatError::forbidden("Direct message membership is fixed"));
        }
        if !caller.server && me.as_ref().is_none_or(|m| role > m.role) {
            return Err(ChatError::forbidden("cannot grant a role above your own"));
        }
        if users.is_empty() {
            return Err(ChatError::bad("userId or userIds is required"));
        }
        for u in &users {
            validate::user_id(u)?;
            if self.user(&caller.app, u)?.is_none() {
                return Err(ChatError::NotFound(format!("user {u}")));
            }
        }
        let added = match self
            .dir(DirCommand::AddMembers {
                app_id: caller.app.clone(),
                channel_id: id.to_string(),
                users,
                role,
                now: time::now_ms(),
            })
            .await?
        {
            DirReply::Added(added) => added,
            DirReply::NotFound(w) => return Err(ChatError::NotFound(w)),
            other => return Err(unexpected(other)),
        };
        for u in &added {
            self.member_event(&caller.app, &ch, u, "channel.member_joined")
                .await?;
        }
        Ok(added)
    }

    async fn member_event(
        &self,
        app: &str,
        ch: &Channel,
        user: &str,
        kind: &str,
    ) -> Result<(), ChatError> {
        let data = render::envelope(kind, json!({"channelId": ch.id, "userId": user}));
        self.write_stream(
            &chat_stream(app, &ch.id),
            StreamOp::Append { data: data.clone() },
        )
        .await?;
        self.append_user_event(app, user, data).await;
        Ok(())
    }

    /// Changes a member's role under the hierarchy rules.
    pub async fn set_role(
        &self,
        caller: &Caller,
        id: &str,
        target: &str,
        role: Role,
    ) -> Result<(), ChatError> {
        let me = self.require_role(caller, id, Role::Moderator).await?;
        let ch = self
            .channel(&caller.app, id)?
            .ok_or_else(|| ChatError::not_found("channel"))?;
        if ch.dm {
            return Err(ChatError::forbidden("Direct message membership is fixed"));
        }
        let current = self
            .membership(&caller.app, id, target)
            .await?
            .ok_or_else(|| ChatError::not_found("member"))?;
        if !caller.server {
            let me = me.ok_or_else(|| ChatError::forbidden("not a member of this channel"))?;
            let is_self = caller.user.as_deref() == Some(target);
            if role > me.role || (!is_self && current.role >= me.role) {
                return Err(ChatError::forbidden(
                    "role changes must stay below your own role",
                ));
            }
        }
        match self
            .dir(DirCommand::SetRole {
                app_id: caller.app.clone(),
                channel_id: id.to_string(),
                user_id: target.to_string(),
                role,
            })
            .await?
        {
            DirReply::Done => Ok(()),
            DirReply::NotFound(w) => Err(ChatError::NotFound(w)),
            other => Err(unexpected(other)),
        }
    }

    /// Removes a member: anyone may leave; removing others needs a higher role.
    pub async fn remove_member(
        &self,
        caller: &Caller,
        id: &str,
        target: &str,
    ) -> Result<(), ChatError> {
        let ch = self
            .channel(&caller.app, id)?
            .ok_or_else(|| ChatError::not_found("channel"))?;
        let is_self = caller.user.as_deref() == Some(target);
        if !caller.server && !is_self {
            let me = self
                .require_role(caller, id, Role::Moderator)
                .await?
                .ok_or_else(|| ChatError::forbidden("not a member"))?;
            let current = self
                .membership(&caller.app, id, target)
                .await?
                .ok_or_else(|| ChatError::not_found("member"))?;
            if current.role >= me.role {
                return Err(ChatError::forbidden(
                    "cannot remove a member of equal or higher role",
                ));
            }
        }
        if ch.dm && !caller.server {
            return Err(ChatError::forbidden("Direct message membership is fixed"));
        }
        match self
            .dir(DirCommand::RemoveMember {
                app_id: caller.app.clone(),
                channel_id: id.to_string(),
                user_id: target.to_string(),
            })
            .await?
        {
            DirReply::Done => {}
            DirReply::NotFound(w) => return Err(ChatError::NotFound(w)),
            other => return Err(unexpected(other)),
        }
        self.member_event(&caller.app, &ch, target, "channel.member_left")
            .await?;
        // The member_left event above is the last one the removed user receives.
        self.unsubscribe_everywhere(&caller.app, target, &chat_stream(&caller.app, id))
            .await;
        Ok(())
    }

    /// Sets the caller's star or mute flag.
    pub async fn set_flags(
        &self,
        caller: &Caller,
        id: &str,
        muted: Option<bool>,
        starred: Option<bool>,
    ) -> Result<(), ChatError> {
        let user = caller.user()?.to_string();
        self.membership(&caller.app, id, &user)
            .await?
            .ok_or_else(|| ChatError::forbidden("not a member of this channel"))?;
        match self
            .dir(DirCommand::SetMemberFlags {
                app_id: caller.app.clone(),
                channel_id: id.to_string(),
                user_id: user,
                muted,
                starred,
            })
            .await?
        {
            DirReply::Done => Ok(()),
            DirReply::NotFound(w) => Err(ChatError::NotFound(w)),
            other => Err(unexpected(other)),
        }
    }

    // ---- messages

    /// The caller's membership for writing: open channels are joined on first send.
    async fn writer_membership(&self, caller: &Caller, ch: &Channel) -> Result<(), ChatError> {
        let user = caller.user()?;
        if self.membership(&caller.app, &ch.id, user).await?.is_some() {
            return Ok(());
        }
        if ch.kind.is_open() || caller.server {
            if self.user(&caller.app, user)?.is_none() {
                return Err(ChatError::NotFound(format!("user {user}")));
            }
            let added = match self
                .dir(DirCommand::AddMembers {
                    app_id: caller.app.clone(),
                    channel_id: ch.id.clone(),
                    users: vec![user.to_string()],
                    role: Role::Member,
                    now: time::now_ms(),
                })
                .await?
            {
                DirReply::Added(added) => added,
                other => return Err(unexpected(other)),
            };
            if !added.is_empty() {
                self.member_event(&caller.app, ch, user, "channel.member_joined")
                    .await?;
            }
            return Ok(());
        }
        Err(ChatError::forbidden("not a member of this channel"))
    }

    /// Sends a message; a repeated client message id returns the first message
    /// (`duplicate` = true).
    pub async fn send_message(
        &self,
        caller: &Caller,
        channel: &str,
        new: NewMessage,
    ) -> Result<(Message, bool), ChatError> {
        validate::text_len("text", &new.text, 1, 10_000)?;
        if let Some(c) = &new.client_msg_id {
            validate::text_len("clientMsgId", c, 1, 64)?;
        }
        let attachments = match new.attachments {
            None | Some(Value::Null) => json!([]),
            Some(Value::Array(a)) if a.len() <= 32 => Value::Array(a),
            Some(_) => {
                return Err(ChatError::bad(
                    "attachments must be an array of at most 32 items",
                ))
            }
        };
        let ch = self
            .channel(&caller.app, channel)?
            .ok_or_else(|| ChatError::not_found("channel"))?;
        self.writer_membership(caller, &ch).await?;
        if let Some(parent) = &new.parent_id {
            let stream = chat_stream(&caller.app, channel);
            match self
                .query(&stream, StreamQuery::Message { id: parent.clone() })
                .await?
            {
                QueryAnswer::Message(Some(p)) if p.parent_id.is_none() => {}
                QueryAnswer::Message(Some(_)) => {
                    return Err(ChatError::bad("replies cannot have replies"))
                }
                _ => return Err(ChatError::not_found("parent message")),
            }
        }
        let user_id = caller.user()?;
        let user = self
            .user(&caller.app, user_id)?
            .ok_or_else(|| ChatError::NotFound(format!("user {user_id}")))?;
        let members = self.members(&caller.app, channel)?;
        let mentions = mentions_in(
            &new.text,
            &members,
            &self.inner.directory,
            &caller.app,
            user_id,
        );
        let message = Message {
            id: new_id(),
            channel_id: channel.to_string(),
            user_id: user_id.to_string(),
            seq: 0,
            text: Some(new.text),
            attachments,
            parent_id: new.parent_id,
            reply_to_id: new.reply_to_id,
            client_msg_id: new.client_msg_id,
            created_at: time::now_ms(),
            edited_at: None,
            deleted_at: None,
            reply_count: 0,
            mentions,
            user: UserSummary::from(&user),
        };
        match self
            .write_stream(
                &chat_stream(&caller.app, channel),
                StreamOp::Send {
                    message: Box::new(message),
                },
            )
            .await?
        {
            StreamReply::Message {
                message, duplicate, ..
            } => {
                if !duplicate && message.parent_id.is_none() {
                    let others: Vec<String> = members
                        .into_iter()
                        .map(|m| m.user_id)
                        .filter(|u| u != user_id)
                        .collect();
                    self.spawn_unread_notices(&caller.app, channel, others);
                }
                Ok((*message, duplicate))
            }
            StreamReply::Refused(why) => Err(ChatError::Conflict(why)),
            other => Err(unexpected_stream(other)),
        }
    }

    /// Edits the caller's own message.
    pub async fn edit_message(
        &self,
        caller: &Caller,
        channel: &str,
        id: &str,
        text: String,
    ) -> Result<Message, ChatError> {
        validate::text_len("text", &text, 1, 10_000)?;
        let (_, me) = self.readable_channel(caller, channel).await?;
        let m = self.message(caller, channel, id).await?;
        if !caller.server && (me.is_none() || caller.user.as_deref() != Some(m.user_id.as_str())) {
            return Err(ChatError::forbidden("you can only edit your own messages"));
        }
        match self
            .write_stream(
                &chat_stream(&caller.app, channel),
                StreamOp::Edit {
                    message_id: id.to_string(),
                    text,
                    now: time::now_ms(),
                },
            )
            .await?
        {
            StreamReply::Message { message, .. } => Ok(*message),
            StreamReply::NotFound(w) => Err(ChatError::NotFound(w)),
            StreamReply::Refused(w) => Err(ChatError::Conflict(w)),
            other => Err(unexpected_stream(other)),
        }
    }

    /// Soft-deletes a message (its author, or a moderator); `purge` removes it entirely
    /// (moderators only).
    pub async fn delete_message(
        &self,
        caller: &Caller,
        channel: &str,
        id: &str,
        purge: bool,
    ) -> Result<(), ChatError> {
        let (_, me) = self.readable_channel(caller, channel).await?;
        let m = self.message(caller, channel, id).await?;
        if !caller.server {
            let me = me.ok_or_else(|| ChatError::forbidden("not a member of this channel"))?;
            let own = caller.user.as_deref() == Some(m.user_id.as_str());
            if !(me.role.can_moderate() || (own && !purge)) {
                return Err(ChatError::forbidden("not allowed to delete this message"));
            }
        }
        let op = if purge {
            StreamOp::Purge {
                message_id: id.to_string(),
            }
        } else {
            StreamOp::Delete {
                message_id: id.to_string(),
                now: time::now_ms(),
            }
        };
        match self
            .write_stream(&chat_stream(&caller.app, channel), op)
            .await?
        {
            StreamReply::Message { .. } => Ok(()),
            StreamReply::NotFound(w) => Err(ChatError::NotFound(w)),
            other => Err(unexpected_stream(other)),
        }
    }

    /// One message of a channel the caller may read.
    pub async fn message(
        &self,
        caller: &Caller,
        channel: &str,
        id: &str,
    ) -> Result<Message, ChatError> {
        self.readable_channel(caller, channel).await?;
        match self
            .query(
                &chat_stream(&caller.app, channel),
                StreamQuery::Message { id: id.to_string() },
            )
            .await?
        {
            QueryAnswer::Message(Some(m)) => Ok(*m),
            QueryAnswer::Message(None) => Err(ChatError::not_found("message")),
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    /// A page of top-level messages: `(messages, max_seq, has_more)`.
    pub async fn messages(
        &self,
        caller: &Caller,
        channel: &str,
        page: MessagePage,
        limit: usize,
    ) -> Result<(Vec<Message>, u64, bool), ChatError> {
        self.readable_channel(caller, channel).await?;
        match self
            .query(
                &chat_stream(&caller.app, channel),
                StreamQuery::Messages { page, limit },
            )
            .await?
        {
            QueryAnswer::Messages {
                messages,
                more,
                max_seq,
            } => Ok((messages, max_seq, more)),
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    /// Thread replies of a message.
    pub async fn replies(
        &self,
        caller: &Caller,
        channel: &str,
        parent: &str,
        limit: usize,
    ) -> Result<Vec<Message>, ChatError> {
        self.message(caller, channel, parent).await?;
        match self
            .query(
                &chat_stream(&caller.app, channel),
                StreamQuery::Replies {
                    parent: parent.to_string(),
                    limit,
                },
            )
            .await?
        {
            QueryAnswer::Messages { messages, .. } => Ok(messages),
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    /// Marks the channel read for the caller; returns the new last read seq.
    pub async fn mark_read(&self, caller: &Caller, channel: &str) -> Result<u64, ChatError> {
        let user = caller.user()?.to_string();
        self.membership(&caller.app, channel, &user)
            .await?
            .ok_or_else(|| ChatError::forbidden("not a member of this channel"))?;
        match self
            .write_stream(
                &chat_stream(&caller.app, channel),
                StreamOp::Read { user_id: user },
            )
            .await?
        {
            StreamReply::Read { last_read_seq, .. } => {
                self.unread_notice(&caller.app, channel, caller.user()?, 0);
                Ok(last_read_seq)
            }
            other => Err(unexpected_stream(other)),
        }
    }

    /// Tells members (after a new message, in the background) their unread count of the
    /// channel: `channel.unread_changed` on their `user:` channel. Ephemeral (no offset): the
    /// counts are derived state, refetched through REST after a reconnect. Channels with more
    /// than [`MAX_UNREAD_NOTICES`] other members get none.
    fn spawn_unread_notices(&self, app: &str, channel: &str, users: Vec<String>) {
        if users.is_empty() || users.len() > MAX_UNREAD_NOTICES {
            return;
        }
        let chat = self.clone();
        let (app, channel) = (app.to_string(), channel.to_string());
        tokio::spawn(async move {
            let q = StreamQuery::Unreads { users };
            match chat.query(&chat_stream(&app, &channel), q).await {
                Ok(QueryAnswer::Unreads(counts)) => {
                    for (user, count) in counts {
                        chat.unread_notice(&app, &channel, &user, count);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(app, channel, error = %e, "unread notices skipped"),
            }
        });
    }

    fn unread_notice(&self, app: &str, channel: &str, user: &str, count: u64) {
        let stream = user_stream(app, user);
        let data = render::envelope(
            "channel.unread_changed",
            json!({"channelId": channel, "count": count}),
        );
        let frame = chatsdk_proto::realtime::push_publication_raw(&stream, 0, &data, None);
        self.inner
            .env
            .emitter
            .emit(&stream, None, bytes::Bytes::from(frame));
    }

    /// `(last_read_seq, unread)` of a member.
    pub async fn read_state(
        &self,
        app: &str,
        channel: &str,
        user: &str,
    ) -> Result<(u64, u64), ChatError> {
        match self
            .query(
                &chat_stream(app, channel),
                StreamQuery::ReadState {
                    user: user.to_string(),
                },
            )
            .await?
        {
            QueryAnswer::Read {
                last_read_seq,
                unread,
            } => Ok((last_read_seq, unread)),
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    /// Broadcasts typing (ephemeral: no offset, not stored).
    pub async fn typing(
        &self,
        caller: &Caller,
        channel: &str,
        typing: bool,
    ) -> Result<(), ChatError> {
        let user = caller.user()?;
        self.membership(&caller.app, channel, user)
            .await?
            .ok_or_else(|| ChatError::forbidden("not a member of this channel"))?;
        let u = self
            .user(&caller.app, user)?
            .ok_or_else(|| ChatError::not_found("user"))?;
        let kind = if typing {
            "typing.start"
        } else {
            "typing.stop"
        };
        let data = render::envelope(
            kind,
            json!({"channelId": channel, "user": {"id": u.id, "name": u.name, "image": u.image}}),
        );
        let stream = chat_stream(&caller.app, channel);
        let frame = chatsdk_proto::realtime::push_publication_raw(&stream, 0, &data, None);
        self.inner
            .env
            .emitter
            .emit(&stream, None, bytes::Bytes::from(frame));
        Ok(())
    }

    // ---- realtime

    /// Where a stream stands and, when `since` is given, the events after it.
    pub async fn recover(
        &self,
        stream: &str,
        since: Option<(String, u64)>,
        limit: usize,
    ) -> Result<Position, ChatError> {
        position(
            self.query(stream, StreamQuery::Recover { since, limit })
                .await?,
        )
    }

    /// Retained history of a stream.
    pub async fn history(
        &self,
        stream: &str,
        since: Option<(String, u64)>,
        limit: usize,
        reverse: bool,
    ) -> Result<Position, ChatError> {
        position(
            self.query(
                stream,
                StreamQuery::History {
                    since,
                    limit,
                    reverse,
                },
            )
            .await?,
        )
    }

    /// Who is subscribed to `stream`, on every node.
    pub async fn presence(&self, stream: &str) -> Vec<ClientInfo> {
        let mut out = self.inner.fanout.presence(stream);
        let me = self.inner.cluster.id();
        for node in self
            .inner
            .cluster
            .meta_state()
            .active_nodes()
            .into_iter()
            .filter(|n| *n != me)
        {
            if let Ok(raw) = self
                .inner
                .cluster
                .request_upper(node, TOPIC_PRESENCE, stream.as_bytes().to_vec())
                .await
            {
                if let Ok(list) = serde_json::from_slice::<Vec<(String, String)>>(&raw) {
                    out.extend(
                        list.into_iter()
                            .map(|(client, user)| ClientInfo { client, user }),
                    );
                }
            }
        }
        out
    }

    /// Whether `user` may subscribe to the realtime channel `stream` of `app`.
    pub async fn may_subscribe(
        &self,
        app: &str,
        user: &str,
        stream: &str,
    ) -> Result<(), ChatError> {
        let (ns, stream_app, id) =
            split_stream(stream).ok_or_else(|| ChatError::bad("malformed channel name"))?;
        if stream_app != app {
            return Err(ChatError::forbidden("channel of another app"));
        }
        match ns {
            "chat" => {
                let ch = self
                    .channel(app, id)?
                    .ok_or_else(|| ChatError::not_found("channel"))?;
                if ch.kind.is_open() || self.membership(app, id, user).await?.is_some() {
                    Ok(())
                } else {
                    Err(ChatError::forbidden("not a member of this channel"))
                }
            }
            "user" if id == user => Ok(()),
            "user" => Err(ChatError::forbidden("another user's channel")),
            "app" => match self.user(app, user)? {
                Some(u) if u.is_admin() => Ok(()),
                _ => Err(ChatError::forbidden("app admins only")),
            },
            _ => Err(ChatError::NotFound(format!("namespace {ns}"))),
        }
    }

    async fn append_user_event(&self, app: &str, user: &str, data: String) {
        if let Err(e) = self
            .write_stream(&user_stream(app, user), StreamOp::Append { data })
            .await
        {
            tracing::warn!(app, user, error = %e, "user event not recorded");
        }
    }

    // ---- routing to channel actors

    async fn route(
        &self,
        stream: &str,
        request: ChannelRequest,
    ) -> Result<ChannelAnswer, ChatError> {
        let group = group_of(stream, self.inner.shards());
        if self
            .inner
            .cluster
            .watch_leadership()
            .borrow()
            .contains(&group)
        {
            match self
                .inner
                .env
                .registry
                .call(&self.inner.env, stream, group, request.clone())
                .await
            {
                // A query may be asked again wherever the leader now is; a write may have
                // been proposed already, so its failure goes back to the caller (who retries
                // with the same idempotency key).
                Err(ChatError::Unavailable(why))
                    if matches!(request, ChannelRequest::Query(_))
                        && !self
                            .inner
                            .cluster
                            .watch_leadership()
                            .borrow()
                            .contains(&group) =>
                {
                    tracing::debug!(
                        stream,
                        why,
                        "leadership moved during a channel query; forwarding"
                    );
                }
                other => return other,
            }
        }
        let body = serde_json::to_vec(&(stream, &request))
            .map_err(|e| ChatError::Internal(e.to_string()))?;
        let raw = self
            .inner
            .cluster
            .request_leader(group, TOPIC_CHANNEL, body)
            .await?;
        serde_json::from_slice::<Result<ChannelAnswer, ChatError>>(&raw)
            .map_err(|e| ChatError::Internal(format!("channel answer: {e}")))?
    }

    async fn write_stream(&self, stream: &str, op: StreamOp) -> Result<StreamReply, ChatError> {
        match self.route(stream, ChannelRequest::Write(op)).await? {
            ChannelAnswer::Written(r) => Ok(r),
            ChannelAnswer::Answer(_) => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    async fn query(&self, stream: &str, q: StreamQuery) -> Result<QueryAnswer, ChatError> {
        match self.route(stream, ChannelRequest::Query(q)).await? {
            ChannelAnswer::Answer(a) => Ok(a),
            ChannelAnswer::Written(_) => Err(ChatError::Internal("unexpected answer".into())),
        }
    }
}

fn position(answer: QueryAnswer) -> Result<Position, ChatError> {
    match answer {
        QueryAnswer::Position {
            epoch,
            offset,
            publications,
            recovered,
        } => Ok(Position {
            epoch,
            offset,
            publications,
            recovered,
        }),
        _ => Err(ChatError::Internal("unexpected answer".into())),
    }
}

/// `chat:<app>:<channel>`.
pub fn chat_stream(app: &str, channel: &str) -> String {
    format!("chat:{app}:{channel}")
}

/// `user:<app>:<user>`.
pub fn user_stream(app: &str, user: &str) -> String {
    format!("user:{app}:{user}")
}

/// Splits `ns:app:id`; the id may contain colons.
/// `app:<app>` has no id part (it is returned empty).
pub fn split_stream(stream: &str) -> Option<(&str, &str, &str)> {
    let mut parts = stream.splitn(3, ':');
    let ns = parts.next()?;
    let app = parts.next()?;
    let id = parts.next().unwrap_or_default();
    let shape_ok = if ns == "app" {
        id.is_empty()
    } else {
        !id.is_empty()
    };
    (!ns.is_empty() && !app.is_empty() && shape_ok).then_some((ns, app, id))
}

/// The shard of a stream: a chat stream lives with its channel's messages.
fn group_of(stream: &str, shards: u32) -> GroupId {
    match split_stream(stream) {
        Some(("chat", app, id)) => shard_for(app, id, shards),
        Some((ns, app, id)) => shard_for(app, &format!("{ns}:{id}"), shards),
        None => shard_for("", stream, shards),
    }
}

/// Users mentioned as `@[Name or id]` or `@word` among the channel's members (sender excluded).
fn mentions_in(
    text: &str,
    members: &[Member],
    dir: &Directory,
    app: &str,
    sender: &str,
) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('@') {
        rest = &rest[i + 1..];
        if let Some(inner) = rest.strip_prefix('[') {
            if let Some(end) = inner.find(']') {
                tokens.push(inner[..end].to_string());
                rest = &inner[end + 1..];
                continue;
            }
        }
        let word: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !word.is_empty() {
            tokens.push(word);
        }
    }
    let mut out = Vec::new();
    for m in members {
        if m.user_id == sender {
            continue;
        }
        let name = dir
            .user(app, &m.user_id)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_default();
        if tokens
            .iter()
            .any(|t| t == &m.user_id || t.eq_ignore_ascii_case(&name))
            && !out.contains(&m.user_id)
        {
            out.push(m.user_id.clone());
        }
    }
    out
}

fn unexpected(reply: DirReply) -> ChatError {
    match reply {
        DirReply::NotFound(w) => ChatError::NotFound(w),
        DirReply::Conflict(w) => ChatError::Conflict(w),
        other => ChatError::Internal(format!("unexpected directory reply {other:?}")),
    }
}

fn unexpected_stream(reply: StreamReply) -> ChatError {
    match reply {
        StreamReply::NotFound(w) => ChatError::NotFound(w),
        StreamReply::Refused(w) => ChatError::Conflict(w),
        other => ChatError::Internal(format!("unexpected stream reply {other:?}")),
    }
}

struct DeliverHandler(Arc<Fanout>);

impl UpperHandler for DeliverHandler {
    fn handle(&self, _from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let result = match decode_batch(&body) {
            Some(batch) => {
                for d in batch {
                    self.0.deliver(&d.channel, d.offset, &d.frame);
                }
                Ok(Vec::new())
            }
            None => Err("malformed delivery batch".to_string()),
        };
        Box::pin(async move { result })
    }
}

struct ChannelHandler(std::sync::Weak<Inner>);

impl UpperHandler for ChannelHandler {
    fn handle(&self, _from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let inner = self.0.upgrade();
        Box::pin(async move {
            let inner = inner.ok_or("chat layer stopped")?;
            let (stream, request): (String, ChannelRequest) = serde_json::from_slice(&body)
                .map_err(|e| format!("malformed channel request: {e}"))?;
            let group = group_of(&stream, inner.shards());
            let answer = inner
                .env
                .registry
                .call(&inner.env, &stream, group, request)
                .await;
            serde_json::to_vec(&answer).map_err(|e| e.to_string())
        })
    }
}

struct PresenceHandler(Arc<Fanout>);

impl UpperHandler for PresenceHandler {
    fn handle(&self, _from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let channel = String::from_utf8_lossy(&body).into_owned();
        let list: Vec<(String, String)> = self
            .0
            .presence(&channel)
            .into_iter()
            .map(|c| (c.client, c.user))
            .collect();
        let out = serde_json::to_vec(&list).map_err(|e| e.to_string());
        Box::pin(async move { out })
    }
}

struct DisconnectHandler(Arc<Fanout>);

impl UpperHandler for DisconnectHandler {
    fn handle(&self, _from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        self.0.disconnect_user(
            &String::from_utf8_lossy(&body),
            CloseReason::FORCE_DISCONNECT,
        );
        Box::pin(async { Ok(Vec::new()) })
    }
}

struct UnsubscribeHandler(Arc<Fanout>);

impl UpperHandler for UnsubscribeHandler {
    fn handle(&self, _from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let result = match serde_json::from_slice::<(String, String)>(&body) {
            Ok((principal, stream)) => {
                let frame = bytes::Bytes::from(chatsdk_proto::realtime::push_unsubscribe(
                    &stream,
                    2000,
                    "unsubscribed",
                ));
                self.0.unsubscribe_user(&principal, &stream, &frame);
                Ok(Vec::new())
            }
            Err(e) => Err(format!("malformed unsubscribe: {e}")),
        };
        Box::pin(async move { result })
    }
}
