//! Handlers of the cluster messages the chat layer exchanges between nodes.

use super::*;

/// How long a node waits before telling a sender again that it has no subscribers for a
/// channel (a shard being taken over sends every event until this node reports).
const UNINTERESTED_AGAIN: std::time::Duration = std::time::Duration::from_secs(1);
/// Most (sender, channel) pairs remembered for that.
const UNINTERESTED_MEMORY: usize = 4096;

/// One sender's batches, put back in its order.
type Senders = std::sync::Mutex<HashMap<NodeId, Arc<std::sync::Mutex<Resequencer<Vec<Delivery>>>>>>;

#[derive(Clone)]
pub(super) struct DeliverHandler(Arc<Deliveries>);

pub(super) struct Deliveries {
    fanout: Arc<Fanout>,
    cluster: ClusterNode,
    senders: Senders,
    /// When this node last told a sender it has no subscribers for a channel.
    told: std::sync::Mutex<HashMap<(NodeId, String), std::time::Instant>>,
}

impl DeliverHandler {
    pub(super) fn new(fanout: Arc<Fanout>, cluster: ClusterNode) -> Self {
        DeliverHandler(Arc::new(Deliveries {
            fanout,
            cluster,
            senders: std::sync::Mutex::new(HashMap::new()),
            told: std::sync::Mutex::new(HashMap::new()),
        }))
    }
}

impl UpperHandler for DeliverHandler {
    fn handle(&self, from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let Some((at, batch)) = decode_batch(&body) else {
            return Box::pin(async { Err("malformed delivery batch".to_string()) });
        };
        self.0.fanout.count_from_peers(batch.len());
        let sender = {
            let mut senders = self.0.senders.lock().unwrap_or_else(|p| p.into_inner());
            senders.entry(from).or_default().clone()
        };
        // Delivered under the sender's lock, so that batches handled at once by several tasks
        // still reach subscribers in the order sent.
        let mut order = sender.lock().unwrap_or_else(|p| p.into_inner());
        let was_holding = order.holding();
        let due = order.accept(at.incarnation, at.seq, batch, std::time::Instant::now());
        self.0.deliver(from, due);
        if order.holding() && !was_holding {
            // Give up on the missing batch if it has not come within the hold.
            let (this, sender) = (self.0.clone(), sender.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(crate::resequence::HOLD).await;
                    let mut order = sender.lock().unwrap_or_else(|p| p.into_inner());
                    let due = order.expire(std::time::Instant::now());
                    this.deliver(from, due);
                    if !order.holding() {
                        return;
                    }
                }
            });
        }
        Box::pin(async { Ok(Vec::new()) })
    }
}

impl Deliveries {
    /// Hands batches from `from` to local subscribers; channels with none are reported back.
    fn deliver(&self, from: NodeId, batches: Vec<Vec<Delivery>>) {
        // Stamped before the deliveries look for subscribers: one that subscribes meanwhile
        // has a newer generation, which the report cannot cancel. (Stamped after, it could be
        // newer than such a subscriber's, and the leader forgot a node that had just gained
        // a subscriber: the fault suite saw a node restarted under load get nothing more.)
        // A clock read and an atomic per batch (not per event). The clock matters: a node
        // restarted without subscribers must outrank its previous life's interests.
        let gen = self.fanout.next_gen();
        let mut unwanted: Vec<(String, u64)> = Vec::new();
        for d in batches.into_iter().flatten() {
            if self
                .fanout
                .deliver(&d.channel, d.offset, d.author.as_deref(), &d.frame)
                == 0
                && !unwanted.iter().any(|(c, _)| *c == d.channel)
            {
                unwanted.push((d.channel, gen));
            }
        }
        if !unwanted.is_empty() {
            self.tell_uninterested(from, unwanted);
        }
    }

    /// Tells `from` (the leader that sent them) that no one here follows these channels (each
    /// with the generation stamped before it was found without subscribers), so it stops
    /// sending their events; once a second per channel at most.
    fn tell_uninterested(&self, from: NodeId, mut channels: Vec<(String, u64)>) {
        let now = std::time::Instant::now();
        {
            let mut told = self.told.lock().unwrap_or_else(|p| p.into_inner());
            if told.len() >= UNINTERESTED_MEMORY {
                told.retain(|_, at| now.duration_since(*at) < UNINTERESTED_AGAIN);
            }
            channels.retain(|(c, _)| {
                let recent = told
                    .get(&(from, c.clone()))
                    .is_some_and(|at| now.duration_since(*at) < UNINTERESTED_AGAIN);
                if !recent && told.len() < UNINTERESTED_MEMORY {
                    told.insert((from, c.clone()), now);
                }
                !recent
            });
        }
        if channels.is_empty() {
            return;
        }
        let Ok(body) = codec::encode(&channels) else {
            return;
        };
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            if let Err(e) = cluster.send_upper(from, TOPIC_UNINTERESTED, body).await {
                tracing::debug!(node = from, error = %e, "could not tell a node to stop sending");
            }
        });
    }
}

/// A node that leads a channel's shard learns that another has no subscribers for it.
pub(super) struct UninterestedHandler(pub(super) Arc<Interest>);

impl UpperHandler for UninterestedHandler {
    fn handle(&self, from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let result = codec::decode::<Vec<(String, u64)>>(&body)
            .map(|channels| {
                for (channel, gen) in channels {
                    self.0.forget(&channel, from, gen);
                }
                Vec::new()
            })
            .map_err(|e| format!("malformed uninterest: {e}"));
        Box::pin(async move { result })
    }
}

/// A node that now leads a shard asks which of its channels this node has subscribers for.
pub(super) struct InterestsHandler(pub(super) std::sync::Weak<Inner>);

impl UpperHandler for InterestsHandler {
    fn handle(&self, _from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let result = match (self.0.upgrade(), codec::decode::<GroupId>(&body)) {
            (Some(inner), Ok(group)) => {
                let shards = inner.shards();
                let list = inner
                    .fanout
                    .interests(|channel| group_of(channel, shards) == group);
                codec::encode(&list).map_err(|e| e.to_string())
            }
            (None, _) => Err("chat layer stopped".to_string()),
            (_, Err(e)) => Err(format!("malformed interests request: {e}")),
        };
        Box::pin(async move { result })
    }
}

pub(super) struct ChannelHandler(pub(super) std::sync::Weak<Inner>);

impl UpperHandler for ChannelHandler {
    fn handle(&self, from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let inner = self.0.upgrade();
        Box::pin(async move {
            let inner = inner.ok_or("chat layer stopped")?;
            let (stream, request): (String, ChannelRequest) =
                codec::decode(&body).map_err(|e| format!("malformed channel request: {e}"))?;
            let group = group_of(&stream, inner.shards());
            if let ChannelRequest::Query(StreamQuery::Recover {
                interest: Some(gen),
                ..
            }) = &request
            {
                // Before the answer: every event after the position answered reaches `from`.
                inner.interest.register(&stream, from, *gen);
                // It counts only if this node still leads the shard after registering it (a
                // leader elected later asks `from` for its interests itself, and `from` has
                // this subscriber by then): a read barrier confirms the leadership.
                let confirmed = inner.cluster.linearizable_reader(group).await.is_ok()
                    && inner.cluster.watch_leadership().borrow().contains(&group);
                if !confirmed {
                    let moved: Result<ChannelAnswer, ChatError> = Err(ChatError::Unavailable(
                        "the shard's leadership moved".into(),
                    ));
                    return codec::encode(&moved).map_err(|e| e.to_string());
                }
            }
            let answer = inner
                .env
                .registry
                .call(&inner.env, &stream, group, request)
                .await;
            codec::encode(&answer).map_err(|e| e.to_string())
        })
    }
}

pub(super) struct PresenceHandler(pub(super) Arc<Fanout>);

impl UpperHandler for PresenceHandler {
    fn handle(&self, _from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let channel = String::from_utf8_lossy(&body).into_owned();
        let list: Vec<(String, String)> = self
            .0
            .presence(&channel)
            .into_iter()
            .map(|c| (c.client, c.user))
            .collect();
        let out = codec::encode(&list).map_err(|e| e.to_string());
        Box::pin(async move { out })
    }
}

/// Answers which of the asked principals (`app:user`) have a session on this node.
pub(super) struct OnlineHandler(pub(super) Arc<Fanout>);

impl UpperHandler for OnlineHandler {
    fn handle(&self, _from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let out = codec::decode::<Vec<String>>(&body)
            .map_err(|e| e.to_string())
            .and_then(|asked| {
                let found: Vec<bool> = asked.iter().map(|p| self.0.is_connected(p)).collect();
                codec::encode(&found).map_err(|e| e.to_string())
            });
        Box::pin(async move { out })
    }
}

pub(super) struct DisconnectHandler(pub(super) Arc<Fanout>);

impl UpperHandler for DisconnectHandler {
    fn handle(&self, _from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        self.0.disconnect_user(
            &String::from_utf8_lossy(&body),
            CloseReason::FORCE_DISCONNECT,
        );
        Box::pin(async { Ok(Vec::new()) })
    }
}

pub(super) struct MetaSyncHandler(pub(super) std::sync::Weak<Inner>);

impl UpperHandler for MetaSyncHandler {
    fn handle(&self, _from: NodeId, _body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let inner = self.0.upgrade();
        Box::pin(async move {
            let inner = inner.ok_or("chat layer stopped")?;
            inner
                .cluster
                .linearizable_reader(META_GROUP)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Vec::new())
        })
    }
}

pub(super) struct BlocksHandler(pub(super) Arc<Fanout>);

impl UpperHandler for BlocksHandler {
    fn handle(&self, _from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let result = match codec::decode::<(String, Vec<String>)>(&body) {
            Ok((principal, ids)) => {
                self.0
                    .set_blocked(&principal, super::blocks::block_set_of(ids));
                Ok(Vec::new())
            }
            Err(e) => Err(format!("malformed block change: {e}")),
        };
        Box::pin(async move { result })
    }
}

pub(super) struct UnsubscribeHandler(pub(super) Arc<Fanout>);

impl UpperHandler for UnsubscribeHandler {
    fn handle(&self, _from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let result = match codec::decode::<(String, String)>(&body) {
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
