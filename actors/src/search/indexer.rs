//! The loop that keeps a node's index up to date with the shards it replicates.
//!
//! Every round (a quarter second by default), for each local data shard: read the feed's head
//! from the local replica; take the entries after the index's position (at most [`BATCH`] a
//! round), looking each message up in the replica as it is now (so an edit indexes the new text
//! and a delete or purge removes it, whatever came between); when the position is unknown or
//! the ring moved past it, drop the shard's part and rebuild it from the replica's messages.
//! Shards the node no longer replicates lose their part. A round that changed anything
//! commits, with the positions. All of it runs on the blocking pool.

use std::sync::Arc;
use std::time::Duration;

use chatsdk_cluster::{ClusterNode, GroupId, GroupReader, META_GROUP};
use tokio_util::sync::CancellationToken;

use super::feed::{self, RING};
use super::index::{SearchError, SearchIndex};
use crate::chunk;
use crate::keys;
use crate::model::Message;
use crate::stream::StreamReader;

/// Feed entries taken per shard per round.
pub const BATCH: u64 = 2_000;
/// Keys read per page while rebuilding.
const PAGE: usize = 256;

fn store(e: chatsdk_cluster::StoreError) -> SearchError {
    SearchError::Index(e.to_string())
}

/// Runs rounds every `every` until `stop`.
pub fn spawn(
    index: Arc<SearchIndex>,
    cluster: ClusterNode,
    every: Duration,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
            let (index, cluster) = (index.clone(), cluster.clone());
            match tokio::task::spawn_blocking(move || round(&index, &cluster)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "search indexing round failed"),
                Err(e) => tracing::warn!(error = %e, "search indexing task failed"),
            }
        }
    });
}

/// One round over every local shard (see the module docs).
pub fn round(index: &SearchIndex, cluster: &ClusterNode) -> Result<(), SearchError> {
    let local: Vec<GroupId> = cluster
        .local_groups()
        .into_iter()
        .filter(|&g| g != META_GROUP)
        .collect();
    let mut changed = false;
    for g in index.groups() {
        if !local.contains(&g) {
            index.remove_group(g)?;
            changed = true;
        }
    }
    for g in local {
        let Some(reader) = cluster.local_reader(g) else {
            continue;
        };
        changed |= follow(index, g, &reader)?;
    }
    if changed {
        index.commit()?;
    }
    Ok(())
}

/// Brings shard `g`'s part up to its feed; true when something changed.
fn follow(index: &SearchIndex, g: GroupId, reader: &GroupReader) -> Result<bool, SearchError> {
    let head = feed::head(reader).map_err(store)?;
    let at = match index.checkpoint(g) {
        Some(at) if at == head => return Ok(false),
        Some(at) if at < head && head - at <= RING => at,
        _ => {
            rebuild(index, g, reader, head)?;
            return Ok(true);
        }
    };
    let to = head.min(at + BATCH);
    let Some(entries) = feed::read(reader, at, to).map_err(store)? else {
        rebuild(index, g, reader, head)?;
        return Ok(true);
    };
    let streams = StreamReader::new(reader.clone());
    for e in entries {
        if e.id.is_empty() {
            index.remove_stream(&e.stream)?;
            continue;
        }
        match streams.message(&e.stream, &e.id).map_err(store)? {
            Some(m) => index.put(g, &e.stream, &m)?,
            None => index.remove(&e.stream, &e.id)?,
        }
    }
    index.advance(g, to);
    Ok(true)
}

/// Drops shard `g`'s part and indexes every chat message of the replica; the feed position
/// is the head read before the scan (changes during the scan are taken again next round).
fn rebuild(
    index: &SearchIndex,
    g: GroupId,
    reader: &GroupReader,
    head: u64,
) -> Result<(), SearchError> {
    tracing::debug!(group = g, "rebuilding the shard's part of the search index");
    index.remove_group(g)?;
    let mut from = keys::key(&[b"s", b"chat:"]);
    let to = keys::key(&[b"s", b"chat;"]);
    let mut indexed = 0u64;
    loop {
        let page = reader.range(&from, &to, false, PAGE).map_err(store)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        from = last.clone();
        from.push(0);
        for (k, v) in &page {
            let Some(stream) = message_chunk_stream(k) else {
                continue;
            };
            for item in chunk::items(k, v).map_err(store)? {
                let (_, record) = item.map_err(store)?;
                let m: Message = keys::decode_at(k, record).map_err(store)?;
                index.put(g, stream, &m)?;
                indexed += 1;
            }
        }
        if page.len() < PAGE {
            break;
        }
    }
    index.advance(g, head);
    // A new node rebuilds every (empty) shard once: only real work is worth a line.
    if indexed > 0 {
        tracing::info!(
            group = g,
            indexed,
            "shard's part of the search index rebuilt"
        );
    } else {
        tracing::debug!(
            group = g,
            "shard's part of the search index rebuilt (empty)"
        );
    }
    Ok(())
}

/// The stream of a message chunk key (`s\0<stream>\0msc\0<n>`), or None for other keys.
fn message_chunk_stream(k: &[u8]) -> Option<&str> {
    let rest = k.strip_prefix(b"s\0")?;
    let end = rest.iter().position(|&b| b == 0)?;
    let tail = &rest[end + 1..];
    if !tail.starts_with(b"msc\0") || tail.len() != 4 + 8 {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}
