//! Moderation: members report messages, app admins review the queue and act (delete the
//! message, warn or ban its author, dismiss), and bans and mutes are enforced.
//!
//! An app ban refuses the user everywhere: their requests and new realtime connections (the
//! gateway checks [`Chat::check_not_banned`] on every bearer token), token minting, and what a
//! server key does in their name (sends, reactions, polls, channel creation); their open
//! connections are closed when the ban lands. A channel ban removes the user from the channel
//! and keeps them out (no reading, joining, subscribing or being added); a channel mute keeps
//! them from writing to it. Bans and mutes may end by themselves (`until`) or be lifted.

use super::*;
use crate::directory::moderation::{
    ChannelRestriction, ChannelStanding, ModCommand, Report, ReportAction, ReportReason,
    ReportStatus, Restriction, Standing,
};

/// Most characters in a report's details, a reason or moderator notes.
pub const MAX_NOTE_CHARS: usize = 1000;

/// Counts of an app's reports by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModerationStats {
    pub total: u64,
    pub pending: u64,
    pub actioned: u64,
    pub dismissed: u64,
}

/// How a report is reviewed.
#[derive(Clone, Debug)]
pub struct Review {
    pub status: ReportStatus,
    pub action: Option<ReportAction>,
    pub notes: Option<String>,
}

fn restriction_until(duration_secs: Option<u64>, now: u64) -> Result<Option<u64>, ChatError> {
    match duration_secs {
        None => Ok(None),
        Some(0) => Err(ChatError::bad("a duration must be at least one second")),
        Some(s) if s > 10 * 365 * 86_400 => Err(ChatError::bad(
            "a duration must be at most ten years (omit it for an indefinite one)",
        )),
        Some(s) => Ok(Some(now + s * 1000)),
    }
}

fn check_note(field: &str, text: &Option<String>) -> Result<(), ChatError> {
    match text {
        Some(t) if t.chars().count() > MAX_NOTE_CHARS => Err(ChatError::bad(format!(
            "{field} must be at most {MAX_NOTE_CHARS} characters"
        ))),
        _ => Ok(()),
    }
}

impl Chat {
    /// Refuses anyone but app admins and server keys.
    pub(super) fn require_app_admin(&self, caller: &Caller) -> Result<(), ChatError> {
        if caller.server {
            return Ok(());
        }
        match &caller.user {
            Some(u) if self.user(&caller.app, u)?.is_some_and(|u| u.is_admin()) => Ok(()),
            _ => Err(ChatError::forbidden("app admins only")),
        }
    }

    /// A user's standing in an app (no warnings and no ban when never moderated).
    pub fn standing(&self, app: &str, user: &str) -> Result<Standing, ChatError> {
        Ok(self
            .inner
            .directory
            .standing(app, user)?
            .map(Arc::unwrap_or_clone)
            .unwrap_or_default())
    }

    /// Refuses a user banned from the app (one cached directory read).
    pub fn check_not_banned(&self, app: &str, user: &str) -> Result<(), ChatError> {
        if let Some(s) = self.inner.directory.standing(app, user)? {
            if let Some(ban) = &s.ban {
                if ban.active(time::now_ms()) {
                    return Err(ChatError::Banned(match ban.until {
                        Some(until) => format!("this user is banned until {}", time::iso(until)),
                        None => "this user is banned".into(),
                    }));
                }
            }
        }
        Ok(())
    }

    /// Whether `user` is banned from `channel` now.
    pub(super) fn channel_banned(
        &self,
        app: &str,
        channel: &str,
        user: &str,
    ) -> Result<bool, ChatError> {
        Ok(self
            .inner
            .directory
            .channel_standing(app, channel, user)?
            .and_then(|s| s.ban.clone())
            .is_some_and(|b| b.active(time::now_ms())))
    }

    /// Refuses a write by `user` to `channel` when they are banned from the app, or banned or
    /// muted in the channel.
    pub(super) fn check_may_write(
        &self,
        app: &str,
        channel: &str,
        user: &str,
    ) -> Result<(), ChatError> {
        self.check_not_banned(app, user)?;
        if let Some(s) = self.inner.directory.channel_standing(app, channel, user)? {
            let now = time::now_ms();
            if s.ban.as_ref().is_some_and(|b| b.active(now)) {
                return Err(ChatError::Restricted(
                    "you are banned from this channel".into(),
                ));
            }
            if let Some(mute) = s.mute.as_ref().filter(|m| m.active(now)) {
                return Err(ChatError::Restricted(match mute.until {
                    Some(until) => {
                        format!("you are muted in this channel until {}", time::iso(until))
                    }
                    None => "you are muted in this channel".into(),
                }));
            }
        }
        Ok(())
    }

    async fn moderate(&self, command: ModCommand) -> Result<DirReply, ChatError> {
        self.dir(DirCommand::Moderate(command)).await
    }

    // ---- reports

    /// The caller reports message `message_id` (located as `locate_message` does). Members
    /// report others' messages, once each.
    pub async fn report_message(
        &self,
        caller: &Caller,
        message_id: &str,
        channel_hint: Option<&str>,
        reason: ReportReason,
        details: Option<String>,
    ) -> Result<Report, ChatError> {
        check_note("details", &details)?;
        let reporter = caller.user()?.to_string();
        let channel = self
            .locate_message(caller, message_id, channel_hint)
            .await?;
        let (_, me) = self.readable_channel(caller, &channel).await?;
        if me.is_none() && !caller.server {
            return Err(ChatError::forbidden(
                "only members of the channel may report its messages",
            ));
        }
        let m = self.message(caller, &channel, message_id).await?;
        if m.user_id == reporter {
            return Err(ChatError::bad("you cannot report your own message"));
        }
        let report = Report {
            id: new_id(),
            app_id: caller.app.clone(),
            channel_id: channel,
            message_id: message_id.to_string(),
            reporter,
            author: m.user_id.clone(),
            text: m.text.clone().unwrap_or_default(),
            reason,
            details,
            status: ReportStatus::Pending,
            reviewed_by: None,
            reviewed_at: None,
            action: None,
            notes: None,
            created_at: time::now_ms(),
        };
        match self
            .moderate(ModCommand::File {
                report: Box::new(report),
            })
            .await?
        {
            DirReply::Report(r) => {
                self.hook_now(&caller.app, "message.reported", || {
                    json!({
                        "reportId": r.id,
                        "messageId": r.message_id,
                        "channelId": r.channel_id,
                        "reporterId": r.reporter,
                        "authorId": r.author,
                        "reason": r.reason.as_str(),
                        "details": r.details,
                    })
                });
                Ok(*r)
            }
            DirReply::Conflict(why) => Err(ChatError::bad(why)),
            DirReply::NotFound(w) => Err(ChatError::NotFound(w)),
            other => Err(unexpected(other)),
        }
    }

    /// A page of the app's reports, newest first, optionally of one status (app admins).
    pub fn reports(
        &self,
        caller: &Caller,
        status: Option<ReportStatus>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Report>, ChatError> {
        self.require_app_admin(caller)?;
        Ok(self
            .inner
            .directory
            .reports(&caller.app)?
            .into_iter()
            .rev()
            .filter(|r| status.is_none_or(|s| r.status == s))
            .skip(offset)
            .take(limit)
            .collect())
    }

    /// One report (app admins).
    pub fn report(&self, caller: &Caller, id: &str) -> Result<Report, ChatError> {
        self.require_app_admin(caller)?;
        self.inner
            .directory
            .report(&caller.app, id)?
            .map(Arc::unwrap_or_clone)
            .ok_or_else(|| ChatError::not_found("report"))
    }

    /// Counts of the app's reports by status (app admins).
    pub fn moderation_stats(&self, caller: &Caller) -> Result<ModerationStats, ChatError> {
        self.require_app_admin(caller)?;
        let mut stats = ModerationStats::default();
        for r in self.inner.directory.reports(&caller.app)? {
            stats.total += 1;
            match r.status {
                ReportStatus::Pending => stats.pending += 1,
                ReportStatus::Actioned => stats.actioned += 1,
                ReportStatus::Dismissed => stats.dismissed += 1,
            }
        }
        Ok(stats)
    }

    /// Reviews a report (app admins): carries out its action, then records the outcome.
    /// `delete_message` deletes the message with its `message.deleted` event, `warn_user`
    /// adds a warning to the author's standing, `ban_user` bans the author from the app.
    pub async fn review_report(
        &self,
        caller: &Caller,
        id: &str,
        review: Review,
    ) -> Result<Report, ChatError> {
        check_note("adminNotes", &review.notes)?;
        let report = self.report(caller, id)?;
        let moderator = Caller {
            app: caller.app.clone(),
            user: caller.user.clone(),
            server: true,
        };
        match review.action {
            Some(ReportAction::DeleteMessage) => {
                match self
                    .delete_message(&moderator, &report.channel_id, &report.message_id, false)
                    .await
                {
                    // Already gone (deleted by its author, or the channel with it): done.
                    Ok(()) | Err(ChatError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Some(ReportAction::WarnUser) => {
                self.warn_user(caller, &report.author, review.notes.clone())
                    .await?
            }
            Some(ReportAction::BanUser) => {
                self.ban_user(caller, &report.author, review.notes.clone(), None)
                    .await?;
            }
            Some(ReportAction::Dismiss) | None => {}
        }
        match self
            .moderate(ModCommand::Review {
                app_id: caller.app.clone(),
                id: id.to_string(),
                status: review.status,
                action: review.action,
                by: caller.user.clone(),
                notes: review.notes,
                at: time::now_ms(),
            })
            .await?
        {
            DirReply::Report(r) => Ok(*r),
            DirReply::NotFound(w) => Err(ChatError::NotFound(w)),
            other => Err(unexpected(other)),
        }
    }

    // ---- app bans and warnings

    /// Bans `user` from the app (app admins), for `duration_secs` or until lifted, and closes
    /// their connections on every node.
    pub async fn ban_user(
        &self,
        caller: &Caller,
        user: &str,
        reason: Option<String>,
        duration_secs: Option<u64>,
    ) -> Result<Restriction, ChatError> {
        self.require_app_admin(caller)?;
        check_note("reason", &reason)?;
        if caller.user.as_deref() == Some(user) {
            return Err(ChatError::bad("you cannot ban yourself"));
        }
        let target = self
            .user(&caller.app, user)?
            .ok_or_else(|| ChatError::NotFound(format!("user {user}")))?;
        if target.is_admin() && !caller.server {
            return Err(ChatError::forbidden(
                "an app admin is banned only with the server key",
            ));
        }
        let now = time::now_ms();
        let ban = Restriction {
            by: caller.user.clone(),
            reason,
            at: now,
            until: restriction_until(duration_secs, now)?,
        };
        // Held on every node before the answer: the user's next request fails wherever it lands.
        match self
            .dir_everywhere(DirCommand::Moderate(ModCommand::SetBan {
                app_id: caller.app.clone(),
                user_id: user.to_string(),
                ban: Some(ban.clone()),
            }))
            .await?
        {
            DirReply::Done => {}
            other => return Err(unexpected(other)),
        }
        self.disconnect_user(&caller.app, user).await;
        Ok(ban)
    }

    /// Lifts a user's app ban (app admins). Lifting a ban that is not there succeeds (for a
    /// user of the app).
    pub async fn unban_user(&self, caller: &Caller, user: &str) -> Result<(), ChatError> {
        self.require_app_admin(caller)?;
        if self.standing(&caller.app, user)?.ban.is_none() {
            return match self.user(&caller.app, user)? {
                Some(_) => Ok(()),
                None => Err(ChatError::NotFound(format!("user {user}"))),
            };
        }
        match self
            .moderate(ModCommand::SetBan {
                app_id: caller.app.clone(),
                user_id: user.to_string(),
                ban: None,
            })
            .await?
        {
            DirReply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The app's banned users with their bans in force (app admins).
    pub fn bans(&self, caller: &Caller) -> Result<Vec<(String, Restriction)>, ChatError> {
        self.require_app_admin(caller)?;
        let now = time::now_ms();
        Ok(self
            .inner
            .directory
            .standings(&caller.app)?
            .into_iter()
            .filter_map(|(u, s)| s.ban.filter(|b| b.active(now)).map(|b| (u, b)))
            .collect())
    }

    /// Adds a warning to `user`'s standing (app admins) and tells them, if connected, with a
    /// `user.warned` notice on their user channel.
    pub async fn warn_user(
        &self,
        caller: &Caller,
        user: &str,
        reason: Option<String>,
    ) -> Result<(), ChatError> {
        self.require_app_admin(caller)?;
        if self.user(&caller.app, user)?.is_none() {
            return Err(ChatError::NotFound(format!("user {user}")));
        }
        let now = time::now_ms();
        match self
            .moderate(ModCommand::Warn {
                app_id: caller.app.clone(),
                user_id: user.to_string(),
                at: now,
            })
            .await?
        {
            DirReply::Done => {}
            other => return Err(unexpected(other)),
        }
        let warnings = self.standing(&caller.app, user)?.warnings;
        self.emit_ephemeral(&user_stream(&caller.app, user), None, || {
            json!({
                "type": "user.warned",
                "userId": user,
                "warnings": warnings,
                "reason": reason,
                "createdAt": time::iso(now),
            })
            .to_string()
        });
        Ok(())
    }

    // ---- channel bans and mutes

    /// Bans `user` from `channel` or mutes them in it (owners, admins and moderators of the
    /// channel, of a strictly higher role than the target; app admins; server keys). A ban
    /// also removes the user from the channel, with its events.
    pub async fn restrict_in_channel(
        &self,
        caller: &Caller,
        channel: &str,
        user: &str,
        kind: ChannelRestriction,
        reason: Option<String>,
        duration_secs: Option<u64>,
    ) -> Result<Restriction, ChatError> {
        check_note("reason", &reason)?;
        let ch = self
            .require_channel_moderator(caller, channel, user)
            .await?;
        if self.user(&caller.app, user)?.is_none() {
            return Err(ChatError::NotFound(format!("user {user}")));
        }
        let now = time::now_ms();
        let restriction = Restriction {
            by: caller.user.clone(),
            reason,
            at: now,
            until: restriction_until(duration_secs, now)?,
        };
        self.set_channel_restriction(&caller.app, channel, user, kind, Some(restriction.clone()))
            .await?;
        if kind == ChannelRestriction::Ban
            && self.membership(&caller.app, channel, user).await?.is_some()
        {
            let remover = Caller {
                app: caller.app.clone(),
                user: caller.user.clone(),
                server: true,
            };
            match self.remove_member(&remover, &ch.id, user).await {
                Ok(()) | Err(ChatError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(restriction)
    }

    /// Lifts a channel ban or mute (as [`Chat::restrict_in_channel`] is allowed). A lifted ban
    /// does not add the user back: they may rejoin or be added.
    pub async fn lift_channel_restriction(
        &self,
        caller: &Caller,
        channel: &str,
        user: &str,
        kind: ChannelRestriction,
    ) -> Result<(), ChatError> {
        self.require_channel_moderator(caller, channel, user)
            .await?;
        self.set_channel_restriction(&caller.app, channel, user, kind, None)
            .await
    }

    /// The users banned from or muted in a channel, with restrictions in force (the channel's
    /// moderators).
    pub async fn channel_restrictions(
        &self,
        caller: &Caller,
        channel: &str,
    ) -> Result<Vec<(String, ChannelStanding)>, ChatError> {
        self.require_channel_moderator(caller, channel, "").await?;
        let now = time::now_ms();
        Ok(self
            .inner
            .directory
            .channel_standings(&caller.app, channel)?
            .into_iter()
            .filter_map(|(u, s)| {
                let s = ChannelStanding {
                    ban: s.ban.filter(|b| b.active(now)),
                    mute: s.mute.filter(|m| m.active(now)),
                };
                (s.ban.is_some() || s.mute.is_some()).then_some((u, s))
            })
            .collect())
    }

    async fn set_channel_restriction(
        &self,
        app: &str,
        channel: &str,
        user: &str,
        kind: ChannelRestriction,
        restriction: Option<Restriction>,
    ) -> Result<(), ChatError> {
        match self
            .moderate(ModCommand::Restrict {
                app_id: app.to_string(),
                channel_id: channel.to_string(),
                user_id: user.to_string(),
                kind,
                restriction,
            })
            .await?
        {
            DirReply::Done => Ok(()),
            DirReply::NotFound(w) => Err(ChatError::NotFound(w)),
            other => Err(unexpected(other)),
        }
    }

    /// The channel, when the caller may restrict `target` in it: a server key, an app admin,
    /// or a moderator of the channel whose role is strictly higher than the target's (an
    /// empty `target`: only the moderator role is checked).
    async fn require_channel_moderator(
        &self,
        caller: &Caller,
        channel: &str,
        target: &str,
    ) -> Result<Channel, ChatError> {
        let ch = self
            .channel(&caller.app, channel)?
            .ok_or_else(|| ChatError::not_found("channel"))?;
        if caller.server || self.require_app_admin(caller).is_ok() {
            return Ok(Arc::unwrap_or_clone(ch));
        }
        let me = self
            .require_role(caller, channel, Role::Moderator)
            .await?
            .ok_or_else(|| ChatError::forbidden("not a member of this channel"))?;
        if caller.user.as_deref() == Some(target) {
            return Err(ChatError::bad("you cannot restrict yourself"));
        }
        if !target.is_empty() {
            if let Some(theirs) = self.membership(&caller.app, channel, target).await? {
                if theirs.role >= me.role {
                    return Err(ChatError::forbidden(
                        "cannot restrict a member of equal or higher role",
                    ));
                }
            }
        }
        Ok(Arc::unwrap_or_clone(ch))
    }
}
