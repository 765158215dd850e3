//! Media files across the cluster: a new file is copied to the replicas of the shard that owns
//! its channel before its metadata is proposed, a node that lacks a file it must serve fetches
//! it from one that has it, and a periodic sweep removes files no upload refers to and fetches
//! the ones this node should hold but does not (a replica added by a shard move, a node that
//! was down during an upload).
//!
//! Files travel in [`CHUNK_BYTES`] requests on the cluster transport (topic [`TOPIC_MEDIA`]),
//! one chunk in flight per file and peer, read from and written to disk as they go: a file is
//! never held whole in memory, and the Raft log never sees it.
//!
//! Which files a node should hold: every data shard keeps an index, `m\0<hash>\0<stream>\0<id>`
//! for each upload's files, written by the same commands as the uploads (so it is replicated,
//! snapshotted and rebuilt with them). A file is on a majority of the shard's replicas when
//! its upload is acknowledged; the sweep brings the others up to date.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chatsdk_cluster::{ClusterNode, GroupId, NodeId, UpperHandler, META_GROUP};
use chatsdk_storage::media::{MediaError, MediaStore};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::codec;
use crate::error::ChatError;

/// Topic of media requests between nodes.
pub const TOPIC_MEDIA: u16 = 0x430b;
/// Bytes per request.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Files younger than this are not swept even when nothing refers to them yet (their upload's
/// metadata may still be on its way).
pub const SWEEP_GRACE: Duration = Duration::from_secs(3600);

/// A request about media files.
#[derive(Debug, Serialize, Deserialize)]
pub enum MediaRequest {
    /// The chunk at `offset` of file `hash` (of `total` bytes).
    Put {
        hash: String,
        offset: u64,
        total: u64,
        bytes: ByteBuf,
    },
    /// The size of file `hash`, if the node has it.
    Size { hash: String },
    /// Up to `len` bytes of file `hash` from `offset`.
    Get { hash: String, offset: u64, len: u32 },
}

/// The answer to a [`MediaRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum MediaAnswer {
    /// After a `Put`: whether the file is now complete.
    Stored(bool),
    Size(Option<u64>),
    Bytes(ByteBuf),
}

/// Serves other nodes' media requests from this node's store.
pub(crate) struct MediaHandler(pub(crate) MediaStore);

impl UpperHandler for MediaHandler {
    fn handle(&self, from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let store = self.0.clone();
        Box::pin(async move {
            let request: MediaRequest = codec::decode(&body).map_err(|e| e.to_string())?;
            let answer = tokio::task::spawn_blocking(move || serve(&store, from, request))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            codec::encode(&answer).map_err(|e| e.to_string())
        })
    }
}

fn serve(
    store: &MediaStore,
    from: NodeId,
    request: MediaRequest,
) -> Result<MediaAnswer, MediaError> {
    Ok(match request {
        MediaRequest::Put {
            hash,
            offset,
            total,
            bytes,
        } => MediaAnswer::Stored(store.receive(from, &hash, offset, total, &bytes)?),
        MediaRequest::Size { hash } => MediaAnswer::Size(store.size(&hash)?),
        MediaRequest::Get { hash, offset, len } => {
            let len = (len as usize).min(CHUNK_BYTES);
            MediaAnswer::Bytes(ByteBuf::from(store.read_at(&hash, offset, len)?))
        }
    })
}

/// A node's media files and their copies elsewhere. Cheap to clone.
#[derive(Clone)]
pub struct Media {
    store: MediaStore,
    cluster: ClusterNode,
}

fn io_err(e: impl std::fmt::Display) -> ChatError {
    ChatError::Internal(format!("media: {e}"))
}

/// Runs a blocking media store operation on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MediaError> + Send + 'static,
) -> Result<T, ChatError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io_err)?
        .map_err(|e| match e {
            MediaError::Missing => ChatError::not_found("file"),
            e => io_err(e),
        })
}

impl Media {
    pub(crate) fn new(store: MediaStore, cluster: ClusterNode) -> Media {
        cluster.register_handler(TOPIC_MEDIA, Arc::new(MediaHandler(store.clone())));
        Media { store, cluster }
    }

    /// This node's store.
    pub fn store(&self) -> &MediaStore {
        &self.store
    }

    /// The voting replicas of `group`.
    fn replicas(&self, group: GroupId) -> Vec<NodeId> {
        self.cluster
            .meta_state()
            .shard_map
            .get(&group)
            .map(|r| r.placement.replicas.clone())
            .unwrap_or_else(|| vec![self.cluster.id()])
    }

    async fn ask(&self, node: NodeId, request: &MediaRequest) -> Result<MediaAnswer, ChatError> {
        let body = codec::encode(request).map_err(io_err)?;
        let raw = self
            .cluster
            .request_upper(node, TOPIC_MEDIA, body)
            .await
            .map_err(ChatError::from)?;
        codec::decode(&raw).map_err(io_err)
    }

    /// Copies local file `hash` (`size` bytes) to `node`, unless it has it already.
    async fn push(&self, node: NodeId, hash: String, size: u64) -> Result<(), ChatError> {
        if let MediaAnswer::Size(Some(s)) = self
            .ask(node, &MediaRequest::Size { hash: hash.clone() })
            .await?
        {
            if s == size {
                return Ok(());
            }
        }
        let mut offset = 0u64;
        loop {
            let (store, h) = (self.store.clone(), hash.clone());
            let bytes = blocking(move || store.read_at(&h, offset, CHUNK_BYTES)).await?;
            let len = bytes.len() as u64;
            if len == 0 && offset < size {
                return Err(io_err("local file shorter than its size"));
            }
            let put = MediaRequest::Put {
                hash: hash.clone(),
                offset,
                total: size,
                bytes: ByteBuf::from(bytes),
            };
            match self.ask(node, &put).await? {
                MediaAnswer::Stored(true) => return Ok(()),
                MediaAnswer::Stored(false) if offset + len < size => offset += len,
                other => return Err(io_err(format!("unexpected answer {other:?}"))),
            }
        }
    }

    /// Copies the local files `files` (`(hash, size)`) to the replicas of `group` and returns
    /// once each is on a majority of them (this node counts when it is one); the other
    /// replicas keep receiving in the background.
    pub async fn replicate(
        &self,
        group: GroupId,
        files: &[(String, u64)],
    ) -> Result<(), ChatError> {
        let replicas = self.replicas(group);
        let me = self.cluster.id();
        let need = replicas.len() / 2 + 1;
        let mut have = usize::from(replicas.contains(&me));
        let mut pending = FuturesUnordered::new();
        for &node in replicas.iter().filter(|&&n| n != me) {
            let (media, files) = (self.clone(), files.to_vec());
            pending.push(tokio::spawn(async move {
                for (hash, size) in files {
                    media.push(node, hash, size).await?;
                }
                Ok::<_, ChatError>(node)
            }));
        }
        let mut failures = Vec::new();
        while have < need {
            match pending.next().await {
                Some(Ok(Ok(_))) => have += 1,
                Some(Ok(Err(e))) => failures.push(e.to_string()),
                Some(Err(e)) => failures.push(e.to_string()),
                None => {
                    tracing::warn!(group, ?failures, "media not on a majority of replicas");
                    return Err(ChatError::Unavailable(format!(
                        "the file reached {have} of {} replicas, {need} needed",
                        replicas.len()
                    )));
                }
            }
        }
        // The rest finish on their own; the sweep repairs a replica they miss.
        Ok(())
    }

    /// Makes sure file `hash` of `group` is on this node, fetching it from a replica if not.
    pub async fn ensure_local(&self, group: GroupId, hash: &str) -> Result<(), ChatError> {
        let (store, h) = (self.store.clone(), hash.to_string());
        if blocking(move || store.size(&h)).await?.is_some() {
            return Ok(());
        }
        let me = self.cluster.id();
        let mut last = ChatError::Unavailable("no replica holds the file".into());
        for node in self.replicas(group).into_iter().filter(|&n| n != me) {
            match self.fetch_from(node, hash).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn fetch_from(&self, node: NodeId, hash: &str) -> Result<(), ChatError> {
        let total = match self
            .ask(node, &MediaRequest::Size { hash: hash.into() })
            .await?
        {
            MediaAnswer::Size(Some(t)) => t,
            _ => return Err(ChatError::not_found("file")),
        };
        let mut offset = 0u64;
        loop {
            let get = MediaRequest::Get {
                hash: hash.into(),
                offset,
                len: CHUNK_BYTES as u32,
            };
            let MediaAnswer::Bytes(bytes) = self.ask(node, &get).await? else {
                return Err(io_err("unexpected answer to a read"));
            };
            let len = bytes.len() as u64;
            if len == 0 && offset < total {
                return Err(io_err("the peer's file ended early"));
            }
            let (store, h) = (self.store.clone(), hash.to_string());
            let done = blocking(move || store.receive(node, &h, offset, total, &bytes)).await?;
            if done {
                return Ok(());
            }
            offset += len;
        }
    }

    /// The files the data shards this node replicates refer to, with their group.
    fn referenced(&self) -> Result<Vec<(String, GroupId)>, ChatError> {
        let mut out = Vec::new();
        for group in self.cluster.local_groups() {
            if group == META_GROUP {
                continue;
            }
            let Some(reader) = self.cluster.local_reader(group) else {
                continue;
            };
            for (k, _) in reader.scan_prefix(&crate::keys::media_refs())? {
                if let Some(hash) = crate::keys::media_ref_hash(&k) {
                    out.push((hash, group));
                }
            }
        }
        Ok(out)
    }

    /// One sweep: removes files nothing refers to (older than [`SWEEP_GRACE`]), forgets
    /// abandoned incoming copies, and fetches referenced files this node lacks.
    pub async fn sweep(&self) -> Result<SweepReport, ChatError> {
        let referenced = self.referenced()?;
        let wanted: HashSet<&str> = referenced.iter().map(|(h, _)| h.as_str()).collect();
        let store = self.store.clone();
        let local = blocking(move || {
            store.drop_stale_incoming(SWEEP_GRACE);
            store.list()
        })
        .await?;
        let mut report = SweepReport::default();
        let present: HashSet<&str> = local.iter().map(|(h, _)| h.as_str()).collect();
        for (hash, age) in &local {
            if age >= &SWEEP_GRACE && !wanted.contains(hash.as_str()) {
                let (store, h) = (self.store.clone(), hash.clone());
                blocking(move || store.remove(&h)).await?;
                report.removed += 1;
            }
        }
        let mut seen = HashSet::new();
        for (hash, group) in &referenced {
            if present.contains(hash.as_str()) || !seen.insert(hash.as_str()) {
                continue;
            }
            match self.ensure_local(*group, hash).await {
                Ok(()) => report.fetched += 1,
                Err(e) => {
                    report.missing += 1;
                    tracing::warn!(group, hash, error = %e, "media file missing and not fetched");
                }
            }
        }
        Ok(report)
    }
}

/// What a sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub removed: usize,
    pub fetched: usize,
    pub missing: usize,
}
