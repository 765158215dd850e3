//! Retention: messages older than a channel's (or, failing that, its app's) retention are
//! purged in the background, through the write path (a `Purge` command per message, replicated
//! like any other), by the node that leads the channel's shard.
//!
//! A channel says `config.retentionDays` (or `retentionSeconds`); an app says
//! `settings.retentionDays` (or `retentionSeconds`); the channel's wins. Messages under a legal
//! hold (the channel's, or their author's) are kept. Each pass looks at every channel with a
//! retention once and purges at most [`PURGE_PER_PASS`] messages of it (its oldest), several
//! at a time, so a pass is bounded and a backlog is worked off over several passes.

use super::*;
use crate::stream::MessagePage;
use futures::StreamExt;

/// Messages purged per channel per pass, at most: with the default pass every minute, a
/// channel may take 83 messages a second on average and retention keeps up (a pass of 200,
/// one purge at a time, kept up with 3 a second: the soak benchmark's channels outran it).
pub const PURGE_PER_PASS: usize = 5_000;
/// Messages read per page of a pass.
const PURGE_PAGE: usize = 200;
/// Purges of one channel in flight at once.
const PURGE_IN_FLIGHT: usize = 32;
/// The longest retention accepted (100 years, in seconds).
const MAX_RETENTION_SECS: u64 = 100 * 365 * 86_400;

/// The retention a channel config or app settings name, in seconds; `Err` for a malformed one.
pub(super) fn retention_of(v: &Value) -> Result<Option<u64>, ChatError> {
    let field = |name: &str, unit: u64| -> Result<Option<u64>, ChatError> {
        match v.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(n) => match n.as_u64() {
                Some(x) if x > 0 && x.saturating_mul(unit) <= MAX_RETENTION_SECS => {
                    Ok(Some(x * unit))
                }
                _ => Err(ChatError::bad(format!(
                    "{name} must be a positive whole number (at most 100 years)"
                ))),
            },
        }
    };
    let days = field("retentionDays", 86_400)?;
    let secs = field("retentionSeconds", 1)?;
    Ok(match (days, secs) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

impl Chat {
    /// Runs `pass` every `every` until the node stops (a pass under way when it stops is
    /// dropped). The loop holds the service weakly: a dropped service ends it.
    pub(super) fn spawn_every<F, Fut>(&self, every: Duration, pass: F)
    where
        F: Fn(Chat) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let weak = Arc::downgrade(&self.inner);
        let stop = self.inner.hooks.stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = pass(Chat { inner }) => {}
                }
            }
        });
    }

    /// Starts the retention loop (every `every`).
    pub(super) fn spawn_retention(&self, every: Duration) {
        self.spawn_every(every, |chat| async move { chat.retention_pass().await });
    }

    /// One pass over the channels with a retention whose shards this node leads.
    async fn retention_pass(&self) {
        let Ok(apps) = self.inner.directory.apps() else {
            return;
        };
        let leading = self.inner.cluster.watch_leadership().borrow().clone();
        for app in apps {
            let app_retention = retention_of(&app.settings.0).ok().flatten();
            let Ok(channels) = self.inner.directory.channels(&app.id) else {
                continue;
            };
            for ch in channels {
                let Some(secs) = retention_of(&ch.config.0).ok().flatten().or(app_retention) else {
                    continue;
                };
                let stream = chat_stream(&app.id, &ch.id);
                if !leading.contains(&group_of(&stream, self.inner.shards())) {
                    continue;
                }
                if let Err(e) = self.expire_channel(&app.id, &ch.id, secs).await {
                    tracing::warn!(app = %app.id, channel = %ch.id, error = %e, "retention pass failed");
                }
            }
        }
    }

    /// Purges the messages of a channel older than `secs`, oldest first and thread replies
    /// with their parents, keeping what a legal hold covers: pages of [`PURGE_PAGE`] messages,
    /// each page's purges [`PURGE_IN_FLIGHT`] at a time (the channel's actor packs concurrent
    /// commands into few Raft entries), until a page reaches messages that are not old enough
    /// or [`PURGE_PER_PASS`] were purged.
    async fn expire_channel(
        &self,
        app: &str,
        channel: &str,
        secs: u64,
    ) -> Result<usize, ChatError> {
        if self.check_no_hold(app, Some(channel), None).is_err() {
            return Ok(0);
        }
        let cutoff = time::now_ms().saturating_sub(secs * 1000);
        let server = Caller {
            app: app.to_string(),
            user: None,
            server: true,
        };
        let stream = chat_stream(app, channel);
        let mut purged = 0;
        // Held messages stay: each page starts after the last one looked at.
        let mut after = 0;
        while purged < PURGE_PER_PASS {
            let page = self
                .messages(&server, channel, MessagePage::After(after), PURGE_PAGE)
                .await?;
            let Some(last) = page.messages.last() else {
                break;
            };
            after = last.seq;
            let expired: Vec<&Message> = page
                .messages
                .iter()
                .filter(|m| m.created_at < cutoff)
                .collect();
            let mut doomed = Vec::new();
            for m in &expired {
                if m.reply_count > 0 {
                    let (replies, _) = self
                        .replies(&server, channel, &m.id, super::messages::MAX_THREAD_SCAN)
                        .await?;
                    doomed.extend(
                        replies
                            .into_iter()
                            .filter(|r| r.created_at < cutoff)
                            .map(|r| (r.id, r.user_id)),
                    );
                }
                doomed.push((m.id.clone(), m.user_id.clone()));
            }
            doomed.retain(|(_, author)| self.check_no_hold(app, None, Some(author)).is_ok());
            let results: Vec<Result<StreamReply, ChatError>> = futures::stream::iter(doomed)
                .map(|(id, _)| self.write_stream(&stream, StreamOp::Purge { message_id: id }))
                .buffer_unordered(PURGE_IN_FLIGHT)
                .collect()
                .await;
            for result in results {
                match result? {
                    StreamReply::Message { .. } | StreamReply::NotFound(_) => purged += 1,
                    other => return Err(unexpected_stream(other)),
                }
            }
            // The rest of the channel is younger (messages are in seq order, and so in time).
            if expired.len() < page.messages.len() || page.messages.len() < PURGE_PAGE {
                break;
            }
        }
        Ok(purged)
    }
}
