//! Link previews, fetched off the write path by the leader of each shard.
//!
//! A send whose text has links marks the message pending in the same command
//! (`p\0<stream>\0<seq>` in the shard). Every `poll_every`, each node looks at the pending marks
//! of the shards it leads, fetches the first three links of each message (SSRF-guarded: see
//! `hooks::client`), and writes the previews with `StreamOp::SetPreviews`, which clears the mark
//! and announces them with a `message.updated`. A node that dies with marks pending leaves them
//! to the shard's next leader; a link that cannot be fetched is skipped, and a message whose
//! links give nothing is cleared without previews, so nothing is fetched forever.

use std::time::Duration;

use super::*;
use crate::hooks::HookClient;
use crate::keys;
use crate::previews::{self, LinkPreview};
use crate::stream::StreamReader;

/// Pending messages taken per shard per round.
const PER_ROUND: usize = 32;
/// Messages fetched at once.
const AT_ONCE: usize = 4;

/// Settings of link previews.
#[derive(Clone, Debug)]
pub struct PreviewConfig {
    pub enabled: bool,
    /// Hosts (names, addresses, CIDR ranges) that may be fetched although internal.
    pub allowed_hosts: Vec<String>,
    /// Time for one page (connect, redirects, body).
    pub timeout: Duration,
    /// Most bytes of a page read.
    pub max_bytes: usize,
    /// Redirects followed (each target checked again).
    pub max_redirects: usize,
    /// How often shard leaders look for pending previews.
    pub poll_every: Duration,
}

impl Default for PreviewConfig {
    fn default() -> Self {
        PreviewConfig {
            enabled: true,
            allowed_hosts: Vec::new(),
            timeout: Duration::from_secs(5),
            max_bytes: 1 << 20,
            max_redirects: 3,
            poll_every: Duration::from_millis(500),
        }
    }
}

/// The user agent pages see (the original's).
const USER_AGENT: &str = "Mozilla/5.0 (compatible; ChatSDK LinkPreview/1.0)";

impl Chat {
    /// Starts the preview worker of this node (see the module docs).
    pub(super) fn spawn_preview_worker(&self, config: PreviewConfig) -> Result<(), ChatError> {
        let client = HookClient::build(&config.allowed_hosts, config.timeout, USER_AGENT)
            .map_err(ChatError::Internal)?;
        let every = config.poll_every;
        let shared = Arc::new((client, config));
        self.spawn_every(every, move |chat| {
            let shared = shared.clone();
            async move { chat.preview_round(&shared.0, &shared.1).await }
        });
        Ok(())
    }

    /// One round over the pending previews of the shards this node leads.
    async fn preview_round(&self, client: &HookClient, config: &PreviewConfig) {
        let led = self.inner.cluster.watch_leadership().borrow().clone();
        for group in led.into_iter().filter(|&g| g != META_GROUP) {
            let Some(reader) = self.inner.cluster.local_reader(group) else {
                continue;
            };
            let from = keys::previews_pending();
            let mut to = from.clone();
            if let Some(last) = to.last_mut() {
                *last = 1;
            }
            let pending = match reader.range(&from, &to, false, PER_ROUND) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(group, error = %e, "pending previews unreadable");
                    continue;
                }
            };
            let streams = StreamReader::new(reader);
            let jobs: Vec<(String, u64, String, Option<String>)> = pending
                .into_iter()
                .filter_map(|(k, v)| {
                    let (stream, seq) = keys::preview_pending_parts(&k)?;
                    let id = String::from_utf8(v).ok()?;
                    let text = streams
                        .message(&stream, &id)
                        .ok()
                        .flatten()
                        .and_then(|m| m.text);
                    Some((stream, seq, id, text))
                })
                .collect();
            for batch in jobs.chunks(AT_ONCE) {
                let work = batch.iter().map(|(stream, seq, id, text)| async move {
                    let previews = match (config.enabled, text) {
                        (true, Some(t)) => fetch_all(client, config, &self.inner.stats, t).await,
                        _ => Vec::new(),
                    };
                    let op = StreamOp::SetPreviews {
                        message_id: id.clone(),
                        seq: *seq,
                        previews,
                    };
                    if let Err(e) = self.write_stream_as_is(stream, op).await {
                        tracing::debug!(stream, error = %e, "previews not stored; next round");
                    }
                });
                futures::future::join_all(work).await;
            }
        }
    }
}

/// The previews of a message's links (those that gave something).
async fn fetch_all(
    client: &HookClient,
    config: &PreviewConfig,
    stats: &crate::stats::ChatStats,
    text: &str,
) -> Vec<LinkPreview> {
    let fetches = previews::find_urls(text).into_iter().map(|url| async move {
        let known = previews::known(&url);
        let fetched = tokio::time::timeout(
            config.timeout,
            client.get_html(&url, config.max_bytes, config.max_redirects),
        )
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        match fetched {
            Ok((final_url, html)) => {
                let p = previews::from_html(&final_url, &html, known);
                let found = Some(LinkPreview { url, ..p }).filter(|p| !p.is_empty());
                stats.preview(if found.is_some() { "fetched" } else { "empty" });
                found
            }
            Err(why) => {
                let refused = why.contains("internal address");
                stats.preview(if refused { "refused" } else { "failed" });
                if refused {
                    tracing::warn!(url, why, "link preview refused");
                } else {
                    tracing::debug!(url, why, "link preview not fetched");
                }
                known
            }
        }
    });
    futures::future::join_all(fetches)
        .await
        .into_iter()
        .flatten()
        .collect()
}
