//! Message search: who may search what, and the fan-out to the shards that hold it.
//!
//! The caller's channels are decided here at query time (the channels they are a member of,
//! or the one channel they name and may read); the authors they block are left out. The
//! channels are grouped by shard, each shard's replica answers from its own index (this node's
//! when it replicates the shard, otherwise another replica over the cluster transport), and the
//! answers are merged: by score, then newest first, for words; newest first for filters only.
//! Every search runs on the blocking pool.

use std::collections::BTreeMap;

use super::*;
use crate::search::index::Found;
use crate::search::{Hit, SearchIndex, SearchRequest};

/// Topic of "search your index of this shard" requests.
pub(super) const TOPIC_SEARCH: u16 = 0x430c;
/// Longest query, in bytes.
pub const MAX_QUERY_BYTES: usize = 256;
/// Deepest page (offset plus limit).
pub const MAX_SEARCH_DEPTH: usize = 1_000;

/// A search as the routes ask it.
#[derive(Clone, Debug, Default)]
pub struct SearchQuery {
    pub text: String,
    /// Query syntax (`AND`, `OR`, phrases, `-word`) instead of plain words.
    pub syntax: bool,
    /// The last word is a prefix.
    pub prefix_last: bool,
    pub channel: Option<String>,
    pub user: Option<String>,
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub limit: usize,
    pub offset: usize,
}

/// A page of results.
#[derive(Clone, Debug, Default)]
pub struct SearchPage {
    /// Hits with the channel id they belong to.
    pub hits: Vec<(String, Hit)>,
    /// Messages that matched in all.
    pub total: usize,
}

/// Answers other nodes' searches of this node's index.
pub(super) struct SearchHandler(pub(super) Arc<SearchIndex>);

impl UpperHandler for SearchHandler {
    fn handle(&self, _from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let index = self.0.clone();
        Box::pin(async move {
            let (group, req): (GroupId, SearchRequest) =
                codec::decode(&body).map_err(|e| e.to_string())?;
            if index.checkpoint(group).is_none() {
                return Err(format!("shard {group} is not indexed here"));
            }
            let found = tokio::task::spawn_blocking(move || index.search(&req))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            codec::encode(&found).map_err(|e| e.to_string())
        })
    }
}

impl Chat {
    /// The node's search index.
    pub fn search_index(&self) -> &Arc<SearchIndex> {
        &self.inner.search
    }

    /// Searches the messages of the caller's channels (or of the one channel named).
    pub async fn search(&self, caller: &Caller, q: SearchQuery) -> Result<SearchPage, ChatError> {
        if q.text.len() > MAX_QUERY_BYTES {
            return Err(ChatError::bad(format!(
                "q must be at most {MAX_QUERY_BYTES} bytes"
            )));
        }
        if !caller.server {
            let key = colon_joined(&[&caller.app, caller.user()?]);
            self.inner
                .search_limiter
                .take(&key)
                .map_err(|retry_after| ChatError::RateLimited { retry_after })?;
        }
        if q.offset + q.limit > MAX_SEARCH_DEPTH {
            return Err(ChatError::bad(format!(
                "offset + limit must be at most {MAX_SEARCH_DEPTH}"
            )));
        }
        if q.syntax {
            self.inner
                .search
                .check_syntax(&q.text)
                .map_err(search_error)?;
        }
        let channels: Vec<String> = match &q.channel {
            Some(c) => {
                self.readable_channel(caller, c).await?;
                vec![c.clone()]
            }
            None => self
                .inner
                .directory
                .user_channel_ids(&caller.app, caller.user()?)?,
        };
        let shards = self.inner.shards();
        let mut by_group: BTreeMap<GroupId, Vec<String>> = BTreeMap::new();
        for c in &channels {
            let stream = chat_stream(&caller.app, c);
            by_group
                .entry(group_of(&stream, shards))
                .or_default()
                .push(stream);
        }
        let exclude_users: Vec<String> = self.block_filter(caller).into_iter().collect();
        let asks = by_group.into_iter().map(|(group, streams)| {
            let req = SearchRequest {
                streams,
                text: q.text.clone(),
                syntax: q.syntax,
                prefix_last: q.prefix_last && !q.syntax,
                user: q.user.clone(),
                from: q.from,
                to: q.to,
                exclude_users: exclude_users.clone(),
                limit: q.offset + q.limit,
            };
            self.search_shard(group, req)
        });
        let mut hits = Vec::new();
        let mut total = 0;
        for found in futures::future::join_all(asks).await {
            let found = found?;
            total += found.total;
            hits.extend(found.hits);
        }
        // A total order, so pages asked one after another do not overlap.
        let tie = |a: &Hit, b: &Hit| {
            b.at.cmp(&a.at)
                .then_with(|| a.stream.cmp(&b.stream))
                .then_with(|| a.id.cmp(&b.id))
        };
        if q.text.trim().is_empty() {
            hits.sort_by(tie);
        } else {
            hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| tie(a, b)));
        }
        let hits = hits
            .into_iter()
            .skip(q.offset)
            .take(q.limit)
            .filter_map(|h| {
                let channel = split_stream(&h.stream)?.2.to_string();
                Some((channel, h))
            })
            .collect();
        Ok(SearchPage { hits, total })
    }

    /// One shard's answer: from this node's index when it has the shard's part, else from
    /// another replica (the leader first).
    async fn search_shard(&self, group: GroupId, req: SearchRequest) -> Result<Found, ChatError> {
        let index = self.inner.search.clone();
        let me = self.inner.cluster.id();
        let replica = self.inner.cluster.local_groups().contains(&group);
        let local = |req: SearchRequest| async move {
            tokio::task::spawn_blocking(move || index.search(&req))
                .await
                .map_err(|e| ChatError::Internal(e.to_string()))?
                .map_err(search_error)
        };
        if replica && self.inner.search.checkpoint(group).is_some() {
            return local(req).await;
        }
        let state = self.inner.cluster.meta_state();
        let mut replicas: Vec<NodeId> = state
            .shard_map
            .get(&group)
            .map(|r| r.placement.replicas.clone())
            .unwrap_or_default();
        if let Some(leader) = state.shard_map.get(&group).and_then(|r| r.placement.leader) {
            replicas.sort_by_key(|&n| n != leader);
        }
        let body = codec::encode(&(group, &req)).map_err(|e| ChatError::Internal(e.to_string()))?;
        let mut last = ChatError::Unavailable(format!("no replica of shard {group} answered"));
        for node in replicas.into_iter().filter(|&n| n != me) {
            match self
                .inner
                .cluster
                .request_upper(node, TOPIC_SEARCH, body.clone())
                .await
            {
                Ok(raw) => {
                    return codec::decode(&raw).map_err(|e| ChatError::Internal(e.to_string()))
                }
                Err(e) => last = ChatError::from(e),
            }
        }
        if replica {
            // No replica has built its part yet (a node just started): what this one has.
            return local(req).await;
        }
        Err(last)
    }
}

fn search_error(e: crate::search::SearchError) -> ChatError {
    match e {
        crate::search::SearchError::BadQuery(why) => ChatError::BadRequest(why),
        e => ChatError::Internal(e.to_string()),
    }
}
