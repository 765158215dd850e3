//! The chat service: the domain operations the gateway calls, with their rules.
//!
//! [`Chat`] owns a node's cluster membership, its directory view, its channel actors and its
//! fanout. Directory changes (apps, users, channels, members) go through group 0; stream writes
//! (messages, reads, events) go to the channel actor of the stream, on this node when it leads
//! the stream's shard, else forwarded once to the node that does. Permission rules live here, so
//! every surface (REST, realtime RPC) enforces the same ones.
//!
//! This module holds the service's wiring and routing; the operations are split by subject:
//! `users` (apps, keys, users, tokens), `channels` (channels and memberships), `messages`
//! (messages, threads, reads, typing), `realtime` (positions, history, presence, access) and
//! `handlers` (messages from other nodes).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chatsdk_cluster::{
    shard_for, ClusterConfig, ClusterNode, GroupId, MetaCommand, MetaReply, NodeId, StartMode,
    UpperHandler, META_GROUP,
};
use futures::future::BoxFuture;
use serde_json::{json, Value};

use crate::channel::{ActorEnv, ChannelAnswer, ChannelRequest, QueryAnswer, Registry, StreamQuery};
use crate::codec::Json;
use crate::directory::{
    DirCommand, DirReply, Directory, DirectoryApplier, UpsertAction, UpsertMode, UserPatch,
};
use crate::emitter::{decode_batch, Delivery, Emitter, TOPIC_DELIVER};
use crate::error::ChatError;
use crate::fanout::{ClientInfo, Fanout};
use crate::interest::{Interest, TOPIC_INTERESTS, TOPIC_UNINTERESTED};
use crate::limits::RateLimiter;
use crate::model::{
    ApiKey, App, Channel, ChannelFlags, ChannelType, Event, Member, Message, Notes, Role, User,
    UserSummary,
};
use crate::outbound::CloseReason;
use crate::resequence::Resequencer;
use crate::stream::{MessagePage, RefreshOutcome, StreamApplier, StreamOp, StreamReply};
use crate::{codec, hash_hex, new_id, render, time, validate};

mod annotations;
mod blocks;
mod channels;
mod emoji;
mod enrollment;
mod lifecycle;
mod mentions;
mod moderation;
mod notify;
mod presence;
mod previews;
mod receipts;
mod retention;
mod search;
mod session_sweep;
mod supervision;
mod templates;
mod uploads;
mod webhooks;
mod workspaces;

pub use annotations::{NewPoll, NewPollOption, SavedMessage};
pub use emoji::{sniff_image, NewEmoji, MAX_EMOJI_BYTES};
pub use enrollment::{RuleOutcome, RuleSpec, MAX_RULES_PER_APP, RULE_TYPES, TRIGGERS};
pub use lifecycle::{EXPORT_TTL, MAX_EXPORT_BYTES};
pub use mentions::MentionItem;
pub use moderation::{ModerationStats, Review, MAX_NOTE_CHARS};
pub use notify::{b64url, default_prefs, MAX_NOTIFIED_MEMBERS, PLATFORMS};
pub use presence::UserPresence;
pub use previews::PreviewConfig;
pub use receipts::{MessageReceipts, MAX_RECEIPT_QUERY};
pub use retention::PURGE_PER_PASS;
pub use search::{SearchPage, SearchQuery, MAX_QUERY_BYTES, MAX_SEARCH_DEPTH};
pub use session_sweep::SessionSweep;
pub use supervision::{Activity, SupervisionSpec, SUPERVISION_KINDS};
pub use templates::{built_in_templates, TemplateSpec};
pub use uploads::{Arrived, PutHeaders, Served, IMAGE_SLOTS, PRESIGN_TTL_MS};
pub use webhooks::{NewWebhook, WebhookPatch, MAX_WEBHOOKS_PER_APP};
pub use workspaces::{workspace_stream, IssuedInvite, WorkspaceSpec, WorkspaceStats};
mod handlers;
mod messages;
mod realtime;
mod users;

use handlers::{
    BlocksHandler, ChannelHandler, DeliverHandler, DisconnectHandler, InterestsHandler,
    MetaSyncHandler, OnlineHandler, PresenceHandler, UninterestedHandler, UnsubscribeHandler,
};

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
/// Least time between two rounds of unread notices of one channel.
const UNREAD_NOTICE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
/// Topic of "end these subscriptions" broadcasts.
const TOPIC_UNSUBSCRIBE: u16 = 0x4305;
/// Topic of "which of these users are connected to you" questions (0x4306 and 0x4307 are
/// the interest topics).
const TOPIC_ONLINE: u16 = 0x4308;
/// Topic of "this user now blocks these users" broadcasts (subscriptions filter them).
const TOPIC_BLOCKS: u16 = 0x4309;
/// Topic of "apply the directory up to the leader's commit, then answer" requests, for changes
/// that must hold on every node when they are acknowledged (revoked keys, bans).
const TOPIC_META_SYNC: u16 = 0x430a;
/// How long a change that must hold everywhere waits for each other node.
const META_SYNC_TIMEOUT: Duration = Duration::from_secs(3);

/// Settings of the chat layer.
#[derive(Clone, Debug)]
pub struct ChatConfig {
    /// Events retained per stream for recovery.
    pub history_size: u64,
    /// Channel actors stop after this long without requests.
    pub actor_idle: Duration,
    /// Message sends per user per minute (token bucket refill), for every surface together.
    pub send_rate_per_minute: u32,
    /// Token bucket capacity of message sends.
    pub send_burst: u32,
    /// Reaction changes per user per minute (token bucket refill).
    pub reaction_rate_per_minute: u32,
    /// Token bucket capacity of reaction changes.
    pub reaction_burst: u32,
    /// Reactions one user may have on one message.
    pub max_reactions_per_user: u32,
    /// Uploads per user per minute (presigned and direct; burst the same).
    pub upload_rate_per_minute: u32,
    /// Searches per user per minute (burst the same).
    pub search_rate_per_minute: u32,
    /// Pinned messages per channel.
    pub max_pins_per_channel: u32,
    /// Workspace invitations one user may send per hour.
    pub invites_per_hour: u32,
    /// Server API keys an app may have that are not revoked.
    pub max_api_keys_per_app: u32,
    /// Webhook delivery.
    pub webhooks: crate::hooks::HookConfig,
    /// How often the retention pass runs (see `chat::retention`).
    pub retention_every: Duration,
    /// How often the media sweep runs (see `media::replicate`).
    pub media_sweep_every: Duration,
    /// How often ended login sessions are forgotten (see `chat::session_sweep`).
    pub session_sweep_every: Duration,
    /// How long a revoked login session is remembered: longer than any token of it can live
    /// (at least the refresh token lifetime), so that none passes once it is forgotten.
    pub revocations_kept: Duration,
    /// Largest uploads by kind.
    pub media_limits: crate::media::sniff::MediaLimits,
    /// How long a presigned upload may take to arrive and be confirmed.
    pub presign_ttl: Duration,
    /// How often the search indexer looks for changes (see `search::indexer`).
    pub search_every: Duration,
    /// Link previews.
    pub previews: PreviewConfig,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            history_size: 1000,
            actor_idle: Duration::from_secs(300),
            send_rate_per_minute: 600,
            send_burst: 100,
            reaction_rate_per_minute: 300,
            reaction_burst: 60,
            max_reactions_per_user: 20,
            upload_rate_per_minute: 30,
            search_rate_per_minute: 90,
            max_pins_per_channel: 25,
            invites_per_hour: 100,
            max_api_keys_per_app: 50,
            webhooks: crate::hooks::HookConfig::default(),
            retention_every: Duration::from_secs(60),
            media_sweep_every: Duration::from_secs(600),
            session_sweep_every: Duration::from_secs(3600),
            revocations_kept: Duration::from_secs(31 * 86_400),
            media_limits: Default::default(),
            presign_ttl: Duration::from_millis(PRESIGN_TTL_MS),
            search_every: Duration::from_millis(250),
            previews: PreviewConfig::default(),
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

/// What a send stored (or found: `duplicate`).
#[derive(Clone, Debug)]
pub struct Sent {
    pub message: Message,
    pub duplicate: bool,
    /// The message's client JSON (camelCase) as its `message.new` event carried it, when the
    /// channel actor of this node rendered it: the realtime answer reuses these bytes.
    pub rendered: Option<std::sync::Arc<str>>,
}

/// A new message, as the Client API and the `message.send` RPC spell it (the Server API's
/// snake_case names are accepted too).
#[derive(Clone, Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewMessage {
    pub text: String,
    #[serde(default, alias = "client_msg_id")]
    pub client_msg_id: Option<String>,
    #[serde(default)]
    pub attachments: Option<Value>,
    #[serde(default, alias = "parent_id")]
    pub parent_id: Option<String>,
    #[serde(default, alias = "reply_to_id")]
    pub reply_to_id: Option<String>,
}

/// A page of messages with their annotations (see [`Chat::messages`]).
#[derive(Clone, Debug)]
pub struct MessagePageOut {
    pub messages: Vec<Message>,
    /// The annotations of the messages that have any, as the caller sees them.
    pub notes: Vec<Notes>,
    pub max_seq: u64,
    pub more: bool,
}

/// A subscribe/recovery answer.
#[derive(Clone, Debug)]
pub struct Position {
    pub epoch: String,
    pub offset: u64,
    pub publications: Vec<crate::model::Publication>,
    pub recovered: bool,
}

struct Inner {
    cluster: ClusterNode,
    directory: Directory,
    fanout: Arc<Fanout>,
    /// Other nodes' interest in the channels of the shards this node leads.
    interest: Arc<Interest>,
    env: Arc<ActorEnv>,
    /// Shards from this node's configuration, until the meta state (authoritative) is known.
    config_shards: u32,
    /// Channels (by stream name) with a round of unread notices in progress, and the sender
    /// of the latest message when a further round is due (see `spawn_unread_notices`).
    unread_rounds: std::sync::Mutex<HashMap<String, Option<String>>>,
    /// Users with a total-unread notice in progress (`app:user`), and whether another is due.
    total_rounds: std::sync::Mutex<HashMap<String, bool>>,
    /// Per-user message sends, whatever the surface (REST or realtime RPC).
    send_limiter: RateLimiter,
    /// Per-user reaction changes.
    reaction_limiter: RateLimiter,
    /// Per-user uploads and searches.
    upload_limiter: RateLimiter,
    search_limiter: RateLimiter,
    max_reactions_per_user: u32,
    max_pins_per_channel: u32,
    /// Per-user workspace invitations (an hourly budget).
    invite_limiter: RateLimiter,
    max_api_keys_per_app: u32,
    hooks: webhooks::HookRuntime,
    media: crate::media::Media,
    /// Images being processed at once (see `chat::uploads`).
    image_slots: tokio::sync::Semaphore,
    media_limits: crate::media::sniff::MediaLimits,
    presign_ttl: Duration,
    revocations_kept: Duration,
    search: Arc<crate::search::SearchIndex>,
    stats: crate::stats::ChatStats,
}

impl Inner {
    fn shards(&self) -> u32 {
        match self.cluster.meta_state().shards {
            0 => self.config_shards,
            n => n,
        }
    }
}

/// Where uploaded files live under the data directory (a backup carries them).
pub const MEDIA_DIR: &str = "media";

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
        let hooks =
            webhooks::HookRuntime::new(config.webhooks.clone()).map_err(ChatError::Internal)?;
        let retention_every = config.retention_every;
        let media_dir = cluster.data_dir.join(MEDIA_DIR);
        let media_store = chatsdk_storage::media::MediaStore::open(&media_dir)
            .map_err(|e| ChatError::Internal(format!("{}: {e}", media_dir.display())))?;
        let search_dir = cluster.data_dir.join("search");
        let search = Arc::new(
            crate::search::SearchIndex::open(&search_dir).map_err(|e| {
                let e = e.to_string();
                if e.contains("LockBusy") {
                    ChatError::Internal(format!(
                        "the data directory {} is in use by another chatsdk process (change server.data_dir or --data-dir)",
                        cluster.data_dir.display()
                    ))
                } else {
                    ChatError::Internal(format!("{}: {e}", search_dir.display()))
                }
            })?,
        );
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
        let interest = Arc::new(Interest::default());
        let emitter = Arc::new(Emitter::new(node.clone(), fanout.clone(), interest.clone()));
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
                interest,
                env,
                config_shards: shards,
                unread_rounds: std::sync::Mutex::new(HashMap::new()),
                total_rounds: std::sync::Mutex::new(HashMap::new()),
                send_limiter: RateLimiter::new(config.send_rate_per_minute, config.send_burst),
                reaction_limiter: RateLimiter::new(
                    config.reaction_rate_per_minute,
                    config.reaction_burst,
                ),
                max_reactions_per_user: config.max_reactions_per_user,
                upload_limiter: RateLimiter::new(
                    config.upload_rate_per_minute,
                    config.upload_rate_per_minute,
                ),
                search_limiter: RateLimiter::new(
                    config.search_rate_per_minute,
                    config.search_rate_per_minute,
                ),
                max_pins_per_channel: config.max_pins_per_channel,
                invite_limiter: RateLimiter::per_hour(config.invites_per_hour),
                max_api_keys_per_app: config.max_api_keys_per_app,
                hooks,
                media: crate::media::Media::new(media_store, node.clone()),
                image_slots: tokio::sync::Semaphore::new(IMAGE_SLOTS),
                media_limits: config.media_limits,
                presign_ttl: config.presign_ttl,
                revocations_kept: config.revocations_kept,
                search: search.clone(),
                stats: crate::stats::ChatStats::default(),
            }),
        };
        node.register_handler(
            TOPIC_DELIVER,
            Arc::new(DeliverHandler::new(chat.inner.fanout.clone(), node.clone())),
        );
        node.register_handler(
            TOPIC_UNINTERESTED,
            Arc::new(UninterestedHandler(chat.inner.interest.clone())),
        );
        node.register_handler(
            TOPIC_INTERESTS,
            Arc::new(InterestsHandler(Arc::downgrade(&chat.inner))),
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
            TOPIC_ONLINE,
            Arc::new(OnlineHandler(chat.inner.fanout.clone())),
        );
        node.register_handler(
            TOPIC_META_SYNC,
            Arc::new(MetaSyncHandler(Arc::downgrade(&chat.inner))),
        );
        node.register_handler(
            TOPIC_BLOCKS,
            Arc::new(BlocksHandler(chat.inner.fanout.clone())),
        );
        node.register_handler(
            TOPIC_UNSUBSCRIBE,
            Arc::new(UnsubscribeHandler(chat.inner.fanout.clone())),
        );
        chat.spawn_leadership_watch();
        chat.spawn_position_checks();
        chat.spawn_hook_dispatcher();
        chat.spawn_retention(retention_every);
        chat.spawn_media_sweep(config.media_sweep_every);
        chat.spawn_session_sweep(config.session_sweep_every);
        chat.spawn_preview_worker(config.previews.clone())?;
        node.register_handler(
            search::TOPIC_SEARCH,
            Arc::new(search::SearchHandler(search.clone())),
        );
        crate::search::indexer::spawn(
            search,
            node.clone(),
            config.search_every,
            chat.inner.hooks.stop.clone(),
        );
        Ok(chat)
    }

    /// Checks, every [`POSITION_CHECK`], each channel followed here against its leader's
    /// position. An event lost between the leader and this node (a peer connection that broke,
    /// a node that restarted while the leader sent) is otherwise noticed only at the channel's
    /// next event, which may never come: a subscription that stood still behind the stream
    /// between two checks is closed with "insufficient state", and its client recovers what it
    /// missed (Centrifugo's position check does the same). Found by the fault suite.
    pub(super) fn spawn_position_checks(&self) {
        let weak = Arc::downgrade(&self.inner);
        let stop = self.inner.hooks.stop.clone();
        tokio::spawn(async move {
            // Where the previous round stopped: a round checks at most POSITION_CHECK_BATCH
            // channels, so a node following many costs its leaders a bounded rate of reads.
            let mut cursor = 0usize;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(POSITION_CHECK) => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                let chat = Chat { inner };
                let mut channels = chat.inner.fanout.subscribed_channels();
                channels.sort_unstable();
                if cursor >= channels.len() {
                    cursor = 0;
                }
                let round: Vec<_> = channels
                    .iter()
                    .skip(cursor)
                    .take(POSITION_CHECK_BATCH)
                    .cloned()
                    .collect();
                cursor += round.len();
                // At once, each bounded by the round's length: one channel whose leader is slow
                // to answer does not hold up the checks of the others.
                let checks = round.into_iter().map(|channel| {
                    let chat = chat.clone();
                    async move {
                        let asked = tokio::time::timeout(
                            POSITION_CHECK,
                            chat.recover(&channel, None, 0),
                        );
                        let closed = match asked.await {
                            Ok(Ok(pos)) => {
                                let closed =
                                    chat.inner.fanout.check_positions(&channel, pos.offset);
                                if closed > 0 {
                                    tracing::info!(%channel, closed, top = pos.offset, "subscribers behind the stream; closed to recover");
                                }
                                Some(closed)
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%channel, error = %e, "position not read");
                                None
                            }
                            Err(_) => {
                                tracing::debug!(%channel, "position not read in time");
                                None
                            }
                        };
                        chat.inner.stats.position_check(closed);
                    }
                });
                futures::future::join_all(checks).await;
            }
        });
    }

    /// Follows this node's shard leaderships: actors of shards it no longer leads stop, and
    /// the interests of the shards it now leads are gathered from the other nodes.
    pub(super) fn spawn_leadership_watch(&self) {
        let weak = Arc::downgrade(&self.inner);
        let mut watch = self.inner.cluster.watch_leadership();
        tokio::spawn(async move {
            let mut led = BTreeSet::new();
            loop {
                let leading: BTreeSet<GroupId> = watch.borrow_and_update().clone();
                let Some(inner) = weak.upgrade() else { return };
                let shards = inner.shards();
                inner
                    .env
                    .registry
                    .retain_leading(&leading, |s| group_of(s, shards));
                for &group in led.difference(&leading) {
                    inner
                        .interest
                        .drop_group(group, |c| group_of(c, shards) == group);
                }
                for &group in leading.difference(&led) {
                    let others = inner.cluster.other_active_nodes().into_iter().collect();
                    inner.interest.begin_gathering(group, others);
                    tokio::spawn(gather_interests(Arc::downgrade(&inner), group));
                }
                led = leading;
                drop(inner);
                if watch.changed().await.is_err() {
                    return;
                }
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

    /// The chat layer's metrics.
    pub fn stats(&self) -> &crate::stats::ChatStats {
        &self.inner.stats
    }

    /// Number of channel actors running here.
    pub fn running_actors(&self) -> usize {
        self.inner.env.registry.len()
    }

    /// Whether this node knows which nodes want the events of every shard it leads (after a
    /// leadership change, until every node has reported, events go to every node).
    pub fn interests_settled(&self) -> bool {
        let led = self.inner.cluster.watch_leadership().borrow().clone();
        self.inner.interest.settled(&led)
    }

    /// Whether `stream`'s channel actor runs (or is starting) here.
    pub fn actor_running(&self, stream: &str) -> bool {
        self.inner.env.registry.running(stream)
    }

    /// Stops the channel actors and the node.
    pub async fn shutdown(&self) {
        self.inner.hooks.stop.cancel();
        let search = self.inner.search.clone();
        let _ = tokio::task::spawn_blocking(move || search.close()).await;
        self.inner.env.registry.stop_all();
        self.inner.cluster.shutdown().await;
    }

    // ---- directory plumbing

    /// Runs `f` (a read that scans many records) on the blocking pool, so that the async
    /// workers go on serving sockets meanwhile.
    pub(super) async fn off_runtime<T, F>(&self, f: F) -> Result<T, ChatError>
    where
        T: Send + 'static,
        F: FnOnce(&Chat) -> Result<T, ChatError> + Send + 'static,
    {
        let chat = self.clone();
        tokio::task::spawn_blocking(move || f(&chat))
            .await
            .map_err(|e| ChatError::Internal(format!("scan task: {e}")))?
    }

    /// The other active nodes of the cluster.
    pub(super) fn other_nodes(&self) -> Vec<NodeId> {
        self.inner.cluster.other_active_nodes()
    }

    /// Sends a one-way message to every other active node (best effort: a node that misses it
    /// is down, and its connections are gone with it).
    pub(super) async fn tell_other_nodes(&self, topic: u16, body: Vec<u8>) {
        // All at once: one slow or unreachable node does not hold up the others.
        let sends = self.other_nodes().into_iter().map(|node| {
            let body = body.clone();
            async move {
                let _ = self.inner.cluster.send_upper(node, topic, body).await;
            }
        });
        futures::future::join_all(sends).await;
    }

    pub(super) async fn dir(&self, command: DirCommand) -> Result<DirReply, ChatError> {
        let body = codec::encode(&command).map_err(|e| ChatError::Internal(e.to_string()))?;
        let reply = self
            .inner
            .cluster
            .propose_meta(MetaCommand::Upper(body))
            .await?;
        // Read-your-writes on this node: wait until the local replica has applied it.
        self.inner.cluster.linearizable_reader(META_GROUP).await?;
        match reply {
            MetaReply::Upper(raw) => codec::decode(&raw)
                .map_err(|e| ChatError::Internal(format!("directory reply: {e}"))),
            MetaReply::Refused(why) => Err(ChatError::Internal(why)),
            other => Err(ChatError::Internal(format!(
                "unexpected directory reply {other:?}"
            ))),
        }
    }

    /// [`Chat::dir`], then waits (at most [`META_SYNC_TIMEOUT`]) until every other active
    /// node has applied it, so the change holds wherever the next request lands. A node that
    /// does not answer in time is logged: it applies the change when it catches up.
    pub(super) async fn dir_everywhere(&self, command: DirCommand) -> Result<DirReply, ChatError> {
        let reply = self.dir(command).await?;
        let asks = self.other_nodes().into_iter().map(|node| {
            let cluster = self.inner.cluster.clone();
            async move {
                let ask = cluster.request_upper(node, TOPIC_META_SYNC, Vec::new());
                match tokio::time::timeout(META_SYNC_TIMEOUT, ask).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(node, error = %e, "directory sync not confirmed"),
                    Err(_) => tracing::warn!(node, "directory sync not confirmed in time"),
                }
            }
        });
        futures::future::join_all(asks).await;
        Ok(reply)
    }

    pub(super) async fn route(
        &self,
        stream: &str,
        request: ChannelRequest,
    ) -> Result<ChannelAnswer, ChatError> {
        let group = group_of(stream, self.inner.shards());
        let leading = |chat: &Chat| {
            chat.inner
                .cluster
                .watch_leadership()
                .borrow()
                .contains(&group)
        };
        if leading(self) {
            let env = &self.inner.env;
            match request {
                // A write may have been proposed already, so its failure goes back to the
                // caller (who retries with the same idempotency key); it is handed over, not
                // copied.
                ChannelRequest::Write(_) => {
                    return env.registry.call(env, stream, group, request).await;
                }
                // A query may be asked again wherever the leader now is.
                ChannelRequest::Query(_) => {
                    match env.registry.call(env, stream, group, request.clone()).await {
                        Err(ChatError::Unavailable(why)) if !leading(self) => {
                            tracing::debug!(
                                stream,
                                why,
                                "leadership moved during a channel query; forwarding"
                            );
                        }
                        other => return other,
                    }
                }
            }
        }
        let body =
            codec::encode(&(stream, &request)).map_err(|e| ChatError::Internal(e.to_string()))?;
        let raw = self
            .inner
            .cluster
            .request_leader(group, TOPIC_CHANNEL, body)
            .await?;
        codec::decode::<Result<ChannelAnswer, ChatError>>(&raw)
            .map_err(|e| ChatError::Internal(format!("channel answer: {e}")))?
    }

    /// Writes to a stream; on chat streams, the events a webhook of the app wants are
    /// recorded for delivery in the same command.
    pub(super) async fn write_stream(
        &self,
        stream: &str,
        op: StreamOp,
    ) -> Result<StreamReply, ChatError> {
        let op = if stream.starts_with("chat:") {
            self.with_hooks(stream, op)
        } else {
            op
        };
        self.write_stream_as_is(stream, op).await
    }

    /// Writes to a stream, recording the events webhooks want whatever the stream (for the
    /// one copy of an event that several streams carry, such as `channel.created`).
    pub(super) async fn write_stream_hooked(
        &self,
        stream: &str,
        op: StreamOp,
    ) -> Result<StreamReply, ChatError> {
        let op = self.with_hooks(stream, op);
        self.write_stream_as_is(stream, op).await
    }

    async fn write_stream_as_is(
        &self,
        stream: &str,
        op: StreamOp,
    ) -> Result<StreamReply, ChatError> {
        let hooked = matches!(op, StreamOp::Hooked { .. });
        let result = match self.route(stream, ChannelRequest::Write(op)).await? {
            ChannelAnswer::Written(r) => Ok(r),
            ChannelAnswer::Answer(_) => Err(ChatError::Internal("unexpected answer".into())),
        };
        if hooked {
            // This node's dispatcher looks now (it delivers if it leads the shard; another
            // leader finds the events at its next look).
            self.inner.hooks.wake.notify_one();
        }
        result
    }

    pub(super) async fn query(
        &self,
        stream: &str,
        q: StreamQuery,
    ) -> Result<QueryAnswer, ChatError> {
        match self.route(stream, ChannelRequest::Query(q)).await? {
            ChannelAnswer::Answer(a) => Ok(a),
            ChannelAnswer::Written(_) => Err(ChatError::Internal("unexpected answer".into())),
        }
    }
}

impl Chat {
    /// Publishes an ephemeral event (no offset, not stored) on `stream`, rendered by `data`
    /// only when someone would receive it; subscribers who block `author` do not receive it.
    pub(super) fn emit_ephemeral(
        &self,
        stream: &str,
        author: Option<&str>,
        data: impl FnOnce() -> String,
    ) {
        let emitter = &self.inner.env.emitter;
        if !emitter.has_audience(stream, || group_of(stream, self.inner.shards())) {
            return;
        }
        let group = group_of(stream, self.inner.shards());
        let frame = chatsdk_proto::realtime::push_publication_raw(stream, 0, &data(), None);
        emitter.emit(stream, group, None, author, bytes::Bytes::from(frame));
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
    colon_joined(&["chat", app, channel])
}

/// `user:<app>:<user>`.
pub fn user_stream(app: &str, user: &str) -> String {
    colon_joined(&["user", app, user])
}

/// The parts joined by `:`, in one allocation (names built on every send: `format!`'s
/// machinery cost ~1 % of a node at 7,000 sends/s for three of them).
pub(crate) fn colon_joined(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(p);
    }
    out
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

/// How often the channels followed on a node are checked against their streams' positions
/// (see [`Chat::spawn_position_checks`]); a lost event reaches its subscribers within two.
const POSITION_CHECK: Duration = Duration::from_secs(5);
/// Channels checked per round at most (the next round goes on where this one stopped).
const POSITION_CHECK_BATCH: usize = 128;

/// The shard of a stream: a chat stream lives with its channel's messages.
/// Asks the nodes that have not reported their interests in `group` (which this node now
/// leads) until each has, or left the cluster, or this node no longer leads the group. Until a
/// node reports, it gets every event of the group.
///
/// Every channel of the group that has subscribers (here or on a node that reported) gets its
/// actor started: events the previous leader committed but did not deliver (it crashed or was
/// cut off between the two) are emitted again by a starting actor, and nothing else would emit
/// them until the channel's next event, which may never come.
async fn gather_interests(inner: std::sync::Weak<Inner>, group: GroupId) {
    const AGAIN: std::time::Duration = std::time::Duration::from_secs(1);
    if let Some(inner) = inner.upgrade() {
        let shards = inner.shards();
        let local = inner.fanout.interests(|c| group_of(c, shards) == group);
        start_actors(&inner, group, local.into_iter().map(|(c, _)| c).collect());
    }
    loop {
        let Some(inner) = inner.upgrade() else { return };
        if !inner.cluster.watch_leadership().borrow().contains(&group) {
            return;
        }
        let waiting = inner.interest.waiting(group);
        if waiting.is_empty() {
            return;
        }
        let others = inner.cluster.other_active_nodes();
        let Ok(body) = codec::encode(&group) else {
            return;
        };
        let asks = waiting.into_iter().map(|node| {
            let (inner, body, gone) = (inner.clone(), body.clone(), !others.contains(&node));
            async move {
                if gone {
                    return (node, Some(Vec::new()));
                }
                let answer = inner
                    .cluster
                    .request_upper(node, TOPIC_INTERESTS, body)
                    .await
                    .ok()
                    .and_then(|raw| codec::decode::<Vec<(String, u64)>>(&raw).ok());
                (node, answer)
            }
        });
        let shards = inner.shards();
        for (node, answer) in futures::future::join_all(asks).await {
            match answer {
                Some(channels) => {
                    let names = channels
                        .iter()
                        .filter(|(c, _)| group_of(c, shards) == group)
                        .map(|(c, _)| c.clone())
                        .collect();
                    inner
                        .interest
                        .reported(group, node, channels, |c| group_of(c, shards) == group);
                    start_actors(&inner, group, names);
                }
                None => tracing::debug!(group, node, "interests not gathered yet; asking again"),
            }
        }
        drop(inner);
        tokio::time::sleep(AGAIN).await;
    }
}

/// Starts (in the background) the actors of `streams`, which have subscribers, in `group`,
/// which this node has just come to lead (see [`gather_interests`]).
fn start_actors(inner: &Arc<Inner>, group: GroupId, streams: Vec<String>) {
    if streams.is_empty() {
        return;
    }
    let env = inner.env.clone();
    tokio::spawn(async move {
        for stream in streams {
            if let Err(e) = env.registry.ensure_running(&env, &stream, group).await {
                tracing::debug!(%stream, error = %e, "actor not started after a leadership change");
            }
        }
    });
}

pub(crate) fn group_of(stream: &str, shards: u32) -> GroupId {
    match split_stream(stream) {
        Some(("chat", app, id)) => shard_for(app, id, shards),
        Some((ns, app, id)) => shard_for(app, &format!("{ns}:{id}"), shards),
        None => shard_for("", stream, shards),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_join_and_split_back() {
        assert_eq!(chat_stream("app1", "general"), "chat:app1:general");
        assert_eq!(user_stream("app1", "u:1"), "user:app1:u:1");
        assert_eq!(
            split_stream(&chat_stream("app1", "a:b")),
            Some(("chat", "app1", "a:b"))
        );
        assert_eq!(colon_joined(&[]), "");
        assert_eq!(colon_joined(&["x"]), "x");
    }
}
