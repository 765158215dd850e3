//! Retention: messages older than a channel's (or, failing that, its app's) retention are
//! purged in the background, through the write path (a `Purge` command per message, replicated
//! like any other), by the node that leads the channel's shard.
//!
//! A channel says `config.retentionDays` (or `retentionSeconds`); an app says
//! `settings.retentionDays` (or `retentionSeconds`); the channel's wins. Messages under a legal
//! hold (the channel's, or their author's) are kept. Each pass looks at every channel with a
//! retention once and purges at most [`PURGE_PER_PASS`] messages of it (its oldest), so a
//! pass is bounded and a backlog is worked off over several passes.

use super::*;
use crate::stream::MessagePage;

/// Messages purged per channel per pass.
pub const PURGE_PER_PASS: usize = 200;
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

    /// Purges the oldest messages of a channel older than `secs` (at most
    /// [`PURGE_PER_PASS`]), thread replies first, keeping what a legal hold covers.
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
        let page = self
            .messages(&server, channel, MessagePage::After(0), PURGE_PER_PASS)
            .await?;
        let stream = chat_stream(app, channel);
        let mut purged = 0;
        for m in page.messages.iter().filter(|m| m.created_at < cutoff) {
            if purged >= PURGE_PER_PASS {
                break;
            }
            let mut doomed = Vec::new();
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
            for (id, author) in doomed {
                if self.check_no_hold(app, None, Some(&author)).is_err() {
                    continue;
                }
                match self
                    .write_stream(&stream, StreamOp::Purge { message_id: id })
                    .await?
                {
                    StreamReply::Message { .. } | StreamReply::NotFound(_) => purged += 1,
                    other => return Err(unexpected_stream(other)),
                }
            }
        }
        Ok(purged)
    }
}
