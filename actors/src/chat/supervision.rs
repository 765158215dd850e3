//! Guardian, school and organisation supervision: app admins supervise users; a supervisor
//! with monitoring on sees the user's activity (their recent messages in every channel,
//! direct messages included, their channels, and the moderation flags on them); a supervised
//! user's age restriction keeps them out of channels rated above it (`config.minAge`).

use super::*;
use crate::directory::supervision::SupCommand;
use crate::model::Supervision;
use crate::stream::MessagePage;

/// The kinds of supervision.
pub const SUPERVISION_KINDS: [&str; 3] = ["guardian", "school", "organization"];
/// Channels of the supervised user read for their activity (their busiest first), and the
/// newest messages read in each.
const ACTIVITY_CHANNELS: usize = 50;
const ACTIVITY_MESSAGES_PER_CHANNEL: usize = 100;

/// A supervision's settings.
#[derive(Clone, Debug, Default)]
pub struct SupervisionSpec {
    pub kind: Option<String>,
    /// `Some(None)` clears it.
    pub age_restriction: Option<Option<u8>>,
    pub monitoring: Option<bool>,
}

/// What a supervisor sees of a supervised user.
#[derive(Clone, Debug)]
pub struct Activity {
    /// Their newest messages in every channel, newest first: `(channel, message)`.
    pub messages: Vec<(Channel, Message)>,
    pub channels: Vec<Channel>,
    /// Reports of their messages.
    pub reports: Vec<crate::directory::moderation::Report>,
    pub warnings: u32,
    pub banned: bool,
}

fn check_age(age: Option<u8>) -> Result<(), ChatError> {
    match age {
        Some(a) if !(1..=100).contains(&a) => {
            Err(ChatError::bad("ageRestriction must be between 1 and 100"))
        }
        _ => Ok(()),
    }
}

impl Chat {
    async fn put_supervision(
        &self,
        app: &str,
        record: Supervision,
    ) -> Result<Supervision, ChatError> {
        match self
            .dir(DirCommand::Supervise(SupCommand::Put {
                app_id: app.to_string(),
                record: Box::new(record.clone()),
            }))
            .await?
        {
            DirReply::Done => Ok(record),
            other => Err(unexpected(other)),
        }
    }

    /// The caller (an app admin, or a server key naming the supervisor) starts supervising
    /// `supervised`.
    pub async fn supervise(
        &self,
        caller: &Caller,
        supervised: &str,
        spec: SupervisionSpec,
    ) -> Result<Supervision, ChatError> {
        self.require_app_admin(caller)?;
        let supervisor = caller.user()?.to_string();
        if supervisor == supervised {
            return Err(ChatError::bad("a user cannot supervise themselves"));
        }
        for u in [supervisor.as_str(), supervised] {
            if self.user(&caller.app, u)?.is_none() {
                return Err(ChatError::NotFound(format!("user {u}")));
            }
        }
        let kind = spec.kind.unwrap_or_else(|| "guardian".into());
        if !SUPERVISION_KINDS.contains(&kind.as_str()) {
            return Err(ChatError::bad(
                "supervisionType must be guardian, school or organization",
            ));
        }
        let age = spec.age_restriction.flatten();
        check_age(age)?;
        let now = time::now_ms();
        let created_at = self
            .inner
            .directory
            .supervision(&caller.app, &supervisor, supervised)?
            .map_or(now, |s| s.created_at);
        self.put_supervision(
            &caller.app,
            Supervision {
                supervisor,
                supervised: supervised.to_string(),
                kind,
                age_restriction: age,
                monitoring: spec.monitoring.unwrap_or(true),
                created_at,
                updated_at: now,
            },
        )
        .await
    }

    fn my_supervision(&self, caller: &Caller, supervised: &str) -> Result<Supervision, ChatError> {
        self.require_app_admin(caller)?;
        let supervisor = caller.user()?;
        self.inner
            .directory
            .supervision(&caller.app, supervisor, supervised)?
            .map(Arc::unwrap_or_clone)
            .ok_or_else(|| ChatError::not_found("supervision"))
    }

    /// Changes monitoring or the age restriction of the caller's supervision of `supervised`.
    pub async fn update_supervision(
        &self,
        caller: &Caller,
        supervised: &str,
        spec: SupervisionSpec,
    ) -> Result<Supervision, ChatError> {
        let mut s = self.my_supervision(caller, supervised)?;
        if let Some(age) = spec.age_restriction {
            check_age(age)?;
            s.age_restriction = age;
        }
        if let Some(m) = spec.monitoring {
            s.monitoring = m;
        }
        s.updated_at = time::now_ms();
        self.put_supervision(&caller.app, s).await
    }

    /// Ends the caller's supervision of `supervised`.
    pub async fn unsupervise(&self, caller: &Caller, supervised: &str) -> Result<(), ChatError> {
        let s = self.my_supervision(caller, supervised)?;
        match self
            .dir(DirCommand::Supervise(SupCommand::Delete {
                app_id: caller.app.clone(),
                supervisor: s.supervisor,
                supervised: s.supervised,
            }))
            .await?
        {
            DirReply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The users the caller supervises.
    pub fn supervised_users(&self, caller: &Caller) -> Result<Vec<Supervision>, ChatError> {
        Ok(self
            .inner
            .directory
            .supervised_by(&caller.app, caller.user()?)?)
    }

    /// The caller's supervisors.
    pub fn supervisors(&self, caller: &Caller) -> Result<Vec<Supervision>, ChatError> {
        Ok(self
            .inner
            .directory
            .supervisors_of(&caller.app, caller.user()?)?)
    }

    /// The activity of `supervised`, for a supervisor with monitoring on (an app admin).
    pub async fn activity_of(
        &self,
        caller: &Caller,
        supervised: &str,
        limit: usize,
        offset: usize,
    ) -> Result<Activity, ChatError> {
        let s = self.my_supervision(caller, supervised)?;
        if !s.monitoring {
            return Err(ChatError::forbidden(
                "monitoring is off for this supervised user",
            ));
        }
        // Read with the supervised user's eyes (their channels, DMs included).
        let as_them = Caller {
            app: caller.app.clone(),
            user: Some(supervised.to_string()),
            server: true,
        };
        let mut channels: Vec<Channel> = self
            .channels_for(&caller.app, supervised, None)
            .await?
            .into_iter()
            .filter(|(_, m)| m.is_some())
            .map(|(c, _)| c)
            .collect();
        // The newest channels first (ids are time-ordered UUIDv7).
        channels.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        let mut messages = Vec::new();
        for ch in channels.iter().take(ACTIVITY_CHANNELS) {
            let page = self
                .messages(
                    &as_them,
                    &ch.id,
                    MessagePage::Latest,
                    ACTIVITY_MESSAGES_PER_CHANNEL,
                )
                .await?;
            for m in page.messages {
                if m.user_id == supervised && m.deleted_at.is_none() {
                    messages.push((ch.clone(), m));
                }
            }
        }
        messages.sort_by_key(|m| std::cmp::Reverse(m.1.created_at));
        let messages = messages.into_iter().skip(offset).take(limit).collect();
        let reports = self
            .inner
            .directory
            .reports(&caller.app)?
            .into_iter()
            .filter(|r| r.author == supervised)
            .rev()
            .collect();
        let standing = self.standing(&caller.app, supervised)?;
        Ok(Activity {
            messages,
            channels,
            reports,
            warnings: standing.warnings,
            banned: standing.ban.is_some_and(|b| b.active(time::now_ms())),
        })
    }

    /// Whether `user` may be in `ch` given its age rating (`config.minAge`) and the lowest
    /// age restriction of the user's supervisors (a channel without a rating, or a user
    /// without a restriction: yes).
    pub(super) fn age_allows(
        &self,
        app: &str,
        ch: &Channel,
        user: &str,
    ) -> Result<bool, ChatError> {
        let Some(min_age) = ch.config.0.get("minAge").and_then(Value::as_u64) else {
            return Ok(true);
        };
        let limit = self
            .inner
            .directory
            .supervisors_of(app, user)?
            .into_iter()
            .filter_map(|s| s.age_restriction)
            .min();
        Ok(limit.is_none_or(|l| u64::from(l) >= min_age))
    }
}
