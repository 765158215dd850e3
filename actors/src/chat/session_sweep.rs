//! Retention of login sessions for users who never refresh again.
//!
//! A user's login session records (the refresh tokens each session spent, kept until they
//! expire so that a replay is caught) are forgotten at the user's next refresh once they no
//! longer matter (`stream::forget_ended_sessions`). A user who never refreshes again would keep
//! theirs for good; this sweep forgets them in the background. Every pass looks at the user
//! streams of the shards this node leads, reading its own replica (off the async workers), and
//! writes a [`StreamOp::ForgetEndedSessions`] only to those with an ended record, through the
//! write path like any other change. Revoked sessions stay (token checks read them).

use super::*;
use crate::stream::StreamReader;

/// User streams one pass writes to at most; the rest wait for the next pass.
const SWEEP_WRITES_PER_PASS: usize = 10_000;

impl Chat {
    /// Starts the login-session sweep (every `every`).
    pub(super) fn spawn_session_sweep(&self, every: Duration) {
        self.spawn_every(every, |chat| async move {
            if let Err(e) = chat.sweep_sessions().await {
                tracing::warn!(error = %e, "login session sweep failed");
            }
        });
    }

    /// One pass: forgets the ended login sessions of users whose streams this node leads;
    /// returns how many user streams it wrote to.
    pub async fn sweep_sessions(&self) -> Result<usize, ChatError> {
        self.sweep_sessions_at(time::now_ms() / 1000).await
    }

    /// [`Chat::sweep_sessions`] as it would run at `now` (s since the epoch): what has ended
    /// by then is forgotten.
    pub async fn sweep_sessions_at(&self, now: u64) -> Result<usize, ChatError> {
        let chat = self.clone();
        let doomed = tokio::task::spawn_blocking(move || chat.streams_with_ended_sessions(now))
            .await
            .map_err(|e| ChatError::Internal(format!("session sweep task: {e}")))??;
        let mut written = 0;
        for stream in doomed {
            // A record ends at most MAX_FORGOTTEN_PER_SPEND per write: the rest of a user with
            // very many is forgotten by the next passes.
            match self
                .write_stream(&stream, StreamOp::ForgetEndedSessions { now })
                .await?
            {
                StreamReply::Done => written += 1,
                other => return Err(unexpected_stream(other)),
            }
        }
        Ok(written)
    }

    /// The user streams of the shards this node leads that hold an ended login session.
    fn streams_with_ended_sessions(&self, now: u64) -> Result<Vec<String>, ChatError> {
        let leading = self.inner.cluster.watch_leadership().borrow().clone();
        let shards = self.inner.shards();
        let mut out = Vec::new();
        for app in self.inner.directory.apps()? {
            for user in self.inner.directory.users(&app.id)? {
                let stream = user_stream(&app.id, &user.id);
                let group = group_of(&stream, shards);
                if !leading.contains(&group) {
                    continue;
                }
                let Some(reader) = self.inner.cluster.local_reader(group) else {
                    continue;
                };
                if StreamReader::new(reader).ended_sessions(&stream, now)? > 0 {
                    out.push(stream);
                    if out.len() == SWEEP_WRITES_PER_PASS {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }
}
