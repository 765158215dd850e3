//! Moderation in the directory: reports of messages and their review, users' standing in an
//! app (warnings, ban) and in a channel (ban, mute).
//!
//! All of it sits in group 0 because every node must refuse a banned or muted user locally, on
//! every request, without asking another node; and it changes at the rate moderators work.
//! A report keeps a copy of the message as it was reported (text, author, channel), so the
//! review queue shows what was reported even after an edit or a deletion.

use chatsdk_cluster::StoreError;
use serde::{Deserialize, Serialize};

use super::DirReply;
use crate::keys::{self, get_record as get, put_record as put};
use crate::kv::Kv;
use crate::model::Channel;

/// Why a message is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportReason {
    Harassment,
    Spam,
    Inappropriate,
    Violence,
    HateSpeech,
    Other,
}

impl ReportReason {
    pub const ALL: [ReportReason; 6] = [
        ReportReason::Harassment,
        ReportReason::Spam,
        ReportReason::Inappropriate,
        ReportReason::Violence,
        ReportReason::HateSpeech,
        ReportReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportReason::Harassment => "harassment",
            ReportReason::Spam => "spam",
            ReportReason::Inappropriate => "inappropriate",
            ReportReason::Violence => "violence",
            ReportReason::HateSpeech => "hate_speech",
            ReportReason::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<ReportReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Where a report is in review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportStatus {
    Pending,
    /// Reviewed and dismissed (`reviewed` in the Client API, `dismissed` in the Server API).
    Dismissed,
    /// Reviewed and acted on (`actioned` in the Client API, `resolved` in the Server API).
    Actioned,
}

/// What a moderator did about a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportAction {
    DeleteMessage,
    WarnUser,
    BanUser,
    Dismiss,
}

impl ReportAction {
    pub const ALL: [ReportAction; 4] = [
        ReportAction::DeleteMessage,
        ReportAction::WarnUser,
        ReportAction::BanUser,
        ReportAction::Dismiss,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportAction::DeleteMessage => "delete_message",
            ReportAction::WarnUser => "warn_user",
            ReportAction::BanUser => "ban_user",
            ReportAction::Dismiss => "dismiss",
        }
    }

    pub fn parse(s: &str) -> Option<ReportAction> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A report of a message, with the message as it was when reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub id: String,
    pub app_id: String,
    pub channel_id: String,
    pub message_id: String,
    pub reporter: String,
    pub author: String,
    pub text: String,
    pub reason: ReportReason,
    pub details: Option<String>,
    pub status: ReportStatus,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<u64>,
    pub action: Option<ReportAction>,
    pub notes: Option<String>,
    pub created_at: u64,
}

/// A ban or a mute: who imposed it, why, since and until when (`None`: until lifted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Restriction {
    pub by: Option<String>,
    pub reason: Option<String>,
    pub at: u64,
    pub until: Option<u64>,
}

impl Restriction {
    /// Whether it is in force at `now` (ms).
    pub fn active(&self, now: u64) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// A user's standing in an app.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Standing {
    pub warnings: u32,
    pub last_warned_at: Option<u64>,
    pub ban: Option<Restriction>,
}

/// A user's standing in one channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelStanding {
    pub ban: Option<Restriction>,
    pub mute: Option<Restriction>,
}

impl ChannelStanding {
    fn is_empty(&self) -> bool {
        self.ban.is_none() && self.mute.is_none()
    }
}

/// Which channel restriction a command sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelRestriction {
    Ban,
    Mute,
}

/// A moderation change.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ModCommand {
    /// Files a report; a second report of the same message by the same user is a conflict.
    File { report: Box<Report> },
    /// Records a review's outcome (the action itself is carried out by the command layer).
    Review {
        app_id: String,
        id: String,
        status: ReportStatus,
        action: Option<ReportAction>,
        by: Option<String>,
        notes: Option<String>,
        at: u64,
    },
    /// Bans (`Some`) or unbans a user from the app.
    SetBan {
        app_id: String,
        user_id: String,
        ban: Option<Restriction>,
    },
    /// Adds a warning to a user's standing.
    Warn {
        app_id: String,
        user_id: String,
        at: u64,
    },
    /// Sets or lifts a user's ban from, or mute in, a channel.
    Restrict {
        app_id: String,
        channel_id: String,
        user_id: String,
        kind: ChannelRestriction,
        restriction: Option<Restriction>,
    },
}

/// Applies a [`ModCommand`].
pub(super) fn transition(kv: &mut impl Kv, command: ModCommand) -> Result<DirReply, StoreError> {
    Ok(match command {
        ModCommand::File { report } => {
            let dedup = keys::reported(&report.app_id, &report.message_id, &report.reporter);
            if kv.get(&dedup)?.is_some() {
                return Ok(DirReply::Conflict(
                    "you have already reported this message".into(),
                ));
            }
            if get::<Channel>(kv, &keys::channel(&report.app_id, &report.channel_id))?.is_none() {
                return Ok(DirReply::NotFound("channel".into()));
            }
            kv.put(&dedup, report.id.as_bytes());
            put(kv, &keys::report(&report.app_id, &report.id), &*report)?;
            DirReply::Report(report)
        }
        ModCommand::Review {
            app_id,
            id,
            status,
            action,
            by,
            notes,
            at,
        } => {
            let key = keys::report(&app_id, &id);
            let Some(mut report) = get::<Report>(kv, &key)? else {
                return Ok(DirReply::NotFound("report".into()));
            };
            report.status = status;
            report.action = action;
            report.reviewed_by = by;
            report.reviewed_at = Some(at);
            if notes.is_some() {
                report.notes = notes;
            }
            put(kv, &key, &report)?;
            DirReply::Report(Box::new(report))
        }
        ModCommand::SetBan {
            app_id,
            user_id,
            ban,
        } => {
            let key = keys::standing(&app_id, &user_id);
            let mut standing = get::<Standing>(kv, &key)?.unwrap_or_default();
            standing.ban = ban;
            put(kv, &key, &standing)?;
            DirReply::Done
        }
        ModCommand::Warn {
            app_id,
            user_id,
            at,
        } => {
            let key = keys::standing(&app_id, &user_id);
            let mut standing = get::<Standing>(kv, &key)?.unwrap_or_default();
            standing.warnings = standing.warnings.saturating_add(1);
            standing.last_warned_at = Some(at);
            put(kv, &key, &standing)?;
            DirReply::Done
        }
        ModCommand::Restrict {
            app_id,
            channel_id,
            user_id,
            kind,
            restriction,
        } => {
            if restriction.is_some()
                && get::<Channel>(kv, &keys::channel(&app_id, &channel_id))?.is_none()
            {
                return Ok(DirReply::NotFound("channel".into()));
            }
            let key = keys::channel_standing(&app_id, &channel_id, &user_id);
            let mut standing = get::<ChannelStanding>(kv, &key)?.unwrap_or_default();
            match kind {
                ChannelRestriction::Ban => standing.ban = restriction,
                ChannelRestriction::Mute => standing.mute = restriction,
            }
            if standing.is_empty() {
                kv.delete(&key);
            } else {
                put(kv, &key, &standing)?;
            }
            DirReply::Done
        }
    })
}

/// Removes a channel's restrictions (the channel is being deleted).
pub(super) fn forget_channel(
    kv: &mut impl Kv,
    app_id: &str,
    channel_id: &str,
) -> Result<(), StoreError> {
    for (k, _) in kv.scan_prefix(&keys::channel_standings(app_id, channel_id))? {
        kv.delete(&k);
    }
    Ok(())
}
