//! Retention of login sessions for users who never refresh again.
//!
//! A user's login session records (the refresh tokens each session spent, kept until they
//! expire so that a replay is caught) are forgotten at the user's next refresh once they no
//! longer matter (`stream::forget_ended_sessions`). A user who never refreshes again would keep
//! theirs for good; this sweep forgets them in the background. Every pass looks at the user
//! streams of the shards this node leads, reading its own replica (off the async workers), and
//! writes a [`StreamOp::ForgetEndedSessions`] only to those with an ended record, through the
//! write path like any other change.
//!
//! Revoked sessions are remembered longer: until no token of theirs can still be valid
//! (`ChatConfig::revocations_kept`, at least the refresh token lifetime), in the user's shard
//! and in group 0, whose record every token check reads. The node that leads group 0 forgets
//! the revocations that are due there ([`DirCommand::ForgetRevocations`], by the index of their
//! times). Revocations recorded by builds before that index are kept.

use super::*;
use crate::stream::StreamReader;

/// User streams one pass writes to at most; the rest wait for the next pass.
const SWEEP_WRITES_PER_PASS: usize = 10_000;
/// Commands forgetting group 0's revocations one pass proposes at most.
const REVOCATION_FORGETS_PER_PASS: usize = 40;

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionSweep {
    /// User streams written to (each forgot its ended sessions).
    pub streams: usize,
    /// Commands that forgot group 0's due revocations.
    pub revocation_forgets: usize,
}

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
    pub async fn sweep_sessions(&self) -> Result<SessionSweep, ChatError> {
        self.sweep_sessions_at(time::now_ms() / 1000).await
    }

    /// [`Chat::sweep_sessions`] as it would run at `now` (s since the epoch): what has ended
    /// by then is forgotten.
    pub async fn sweep_sessions_at(&self, now: u64) -> Result<SessionSweep, ChatError> {
        let keep_revoked = self.inner.revocations_kept.as_secs();
        let chat = self.clone();
        let doomed = tokio::task::spawn_blocking(move || {
            chat.streams_with_ended_sessions(now, keep_revoked)
        })
        .await
        .map_err(|e| ChatError::Internal(format!("session sweep task: {e}")))??;
        let mut report = SessionSweep::default();
        for stream in doomed {
            // A record ends at most MAX_FORGOTTEN_PER_SPEND per write: the rest of a user with
            // very many is forgotten by the next passes.
            let op = StreamOp::ForgetEndedSessions { now, keep_revoked };
            match self.write_stream(&stream, op).await? {
                StreamReply::Done => report.streams += 1,
                other => return Err(unexpected_stream(other)),
            }
        }
        let now_ms = now.saturating_mul(1000);
        while report.revocation_forgets < REVOCATION_FORGETS_PER_PASS
            && self.revocations_due(now_ms)?
        {
            match self.dir(DirCommand::ForgetRevocations { now_ms }).await? {
                DirReply::Done => report.revocation_forgets += 1,
                other => return Err(unexpected(other)),
            }
        }
        Ok(report)
    }

    /// Whether this node leads group 0 and its replica holds a revocation due by `now_ms`.
    fn revocations_due(&self, now_ms: u64) -> Result<bool, ChatError> {
        let me = self.inner.cluster.id();
        let leads = self
            .inner
            .cluster
            .group_metrics(META_GROUP)
            .is_some_and(|m| m.borrow().current_leader == Some(me));
        if !leads {
            return Ok(false);
        }
        let Some(reader) = self.inner.cluster.local_reader(META_GROUP) else {
            return Ok(false);
        };
        let first =
            crate::kv::KvRead::scan_prefix_limit(&reader, &crate::keys::session_expiries(), 1)?;
        Ok(first
            .first()
            .and_then(|(k, _)| crate::keys::session_expiry_time(k))
            .is_some_and(|at| at <= now_ms))
    }

    /// The user streams of the shards this node leads that hold an ended login session.
    fn streams_with_ended_sessions(
        &self,
        now: u64,
        keep_revoked: u64,
    ) -> Result<Vec<String>, ChatError> {
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
                if StreamReader::new(reader).ended_sessions(&stream, now, keep_revoked)? > 0 {
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
