//! Presence: who is online across the cluster, when users were last seen, and the
//! `presence.online` / `presence.offline` events.
//!
//! A user is online when they have a realtime session on any node, or sent a heartbeat in the
//! last five minutes, unless they asked to appear offline. Sessions are known by the node that
//! holds them (`Fanout`), so a question about other users asks the other nodes once, in
//! parallel; the last-seen time and the appear-offline flag are kept in the user's stream.
//! Presence events are ephemeral publications on the chat channels the user is a member of,
//! so they reach exactly those who share a channel with the user (and subscribe to it), once
//! per channel rather than once per member; channels with more than
//! [`MAX_PRESENCE_CHANNEL_MEMBERS`] members get none.

use super::*;
use crate::model::PresenceRecord;

/// A heartbeat keeps a user without a session online this long.
const ACTIVE_WINDOW_MS: u64 = 5 * 60 * 1000;
/// Channels larger than this tell their members nothing of presence (noise, and costly).
const MAX_PRESENCE_CHANNEL_MEMBERS: u64 = 1000;
/// Users one presence change is told to at most.
const MAX_PRESENCE_RECIPIENTS: usize = 1000;

/// A user's presence as others see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserPresence {
    pub online: bool,
    pub last_seen: Option<u64>,
}

/// `presence.online` / `presence.offline`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PresencePayload<'a> {
    user_id: &'a str,
    online: bool,
    last_seen: Option<render::Iso>,
}

impl Chat {
    /// Which of `principals` (`app:user`) have a session on some node of the cluster.
    pub(super) async fn connected_anywhere(&self, principals: &[String]) -> Vec<bool> {
        let mut found: Vec<bool> = principals
            .iter()
            .map(|p| self.inner.fanout.is_connected(p))
            .collect();
        let missing: Vec<String> = principals
            .iter()
            .zip(&found)
            .filter(|(_, f)| !**f)
            .map(|(p, _)| p.clone())
            .collect();
        if missing.is_empty() {
            return found;
        }
        let Ok(body) = codec::encode(&missing) else {
            return found;
        };
        let asks = self.other_nodes().into_iter().map(|node| {
            let body = body.clone();
            async move {
                let raw = self
                    .inner
                    .cluster
                    .request_upper(node, TOPIC_ONLINE, body)
                    .await
                    .ok()?;
                codec::decode::<Vec<bool>>(&raw).ok()
            }
        });
        let answers = futures::future::join_all(asks).await;
        for answer in answers.into_iter().flatten() {
            for (p, yes) in missing.iter().zip(answer) {
                if yes {
                    for (slot, asked) in found.iter_mut().zip(principals) {
                        if asked == p {
                            *slot = true;
                        }
                    }
                }
            }
        }
        found
    }

    async fn presence_record(&self, app: &str, user: &str) -> PresenceRecord {
        match self
            .query(&user_stream(app, user), StreamQuery::Presence)
            .await
        {
            Ok(QueryAnswer::Presence(p)) => p,
            _ => PresenceRecord::default(),
        }
    }

    /// The presence of `users` of `app`.
    pub async fn presence_of(&self, app: &str, users: &[String]) -> Vec<UserPresence> {
        let principals: Vec<String> = users.iter().map(|u| colon_joined(&[app, u])).collect();
        let connected = self.connected_anywhere(&principals).await;
        let now = time::now_ms();
        let mut out = Vec::with_capacity(users.len());
        for (user, connected) in users.iter().zip(connected) {
            let record = self.presence_record(app, user).await;
            let recent = record
                .heartbeat
                .is_some_and(|t| now.saturating_sub(t) < ACTIVE_WINDOW_MS);
            let online = !record.hidden && (connected || recent);
            out.push(UserPresence {
                online,
                last_seen: if connected && !record.hidden {
                    Some(now)
                } else {
                    record.last_seen
                },
            });
        }
        out
    }

    /// A session of `principal` came online on this node (`online`), or its last one here
    /// ended: records the last-seen time and tells the user's channels, in the background.
    pub(crate) fn presence_changed(&self, principal: &str, online: bool) {
        let Some((app, user)) = principal.split_once(':') else {
            return;
        };
        // A user in no channel has nobody to tell and nobody who may ask: a connect storm of
        // such users (fresh sign-ups, load tests) costs nothing here.
        let has_channels = self
            .inner
            .directory
            .in_any_channel(app, user)
            .unwrap_or(false);
        if !has_channels {
            return;
        }
        let (chat, app, user) = (self.clone(), app.to_string(), user.to_string());
        let principal = principal.to_string();
        tokio::spawn(async move {
            let now = time::now_ms();
            // Only those listening now are told; coming online with nobody listening reads
            // nothing more.
            let recipients = chat.presence_recipients(&app, &user);
            if online && recipients.is_empty() {
                return;
            }
            if !online {
                // Still connected through another node: nothing changed for the others.
                if chat.connected_anywhere(&[principal]).await[0] {
                    return;
                }
                let op = StreamOp::Presence {
                    seen: Some(now),
                    heartbeat: None,
                    hidden: None,
                };
                if let Err(e) = chat.write_stream(&user_stream(&app, &user), op).await {
                    tracing::debug!(app, user, error = %e, "last seen not recorded");
                }
            }
            let record = chat.presence_record(&app, &user).await;
            let beating = record
                .heartbeat
                .is_some_and(|t| now.saturating_sub(t) < ACTIVE_WINDOW_MS);
            // Hidden users announce nothing; a heartbeat keeps a user online past a session.
            if record.hidden || (!online && beating) {
                return;
            }
            chat.publish_presence(&app, &user, recipients, online, Some(now));
        });
    }

    /// Those who share a channel with the user (each once, at most
    /// [`MAX_PRESENCE_RECIPIENTS`]) and would receive an event on their `user:` channel now.
    fn presence_recipients(&self, app: &str, user: &str) -> Vec<String> {
        let channels = match self.inner.directory.user_channel_ids(app, user) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(app, user, error = %e, "presence not published");
                return Vec::new();
            }
        };
        let mut recipients = BTreeSet::new();
        for id in channels {
            let small = self
                .channel(app, &id)
                .ok()
                .flatten()
                .is_some_and(|c| c.member_count <= MAX_PRESENCE_CHANNEL_MEMBERS);
            if !small {
                continue;
            }
            for m in self
                .inner
                .directory
                .member_ids(app, &id)
                .unwrap_or_default()
            {
                if m != user && recipients.len() < MAX_PRESENCE_RECIPIENTS {
                    recipients.insert(m);
                }
            }
        }
        let emitter = &self.inner.env.emitter;
        recipients
            .into_iter()
            .filter(|to| {
                let stream = user_stream(app, to);
                emitter.has_audience(&stream, || group_of(&stream, self.inner.shards()))
            })
            .collect()
    }

    /// Publishes `presence.online` / `presence.offline` to `recipients`' `user:` channels (see
    /// [`Chat::presence_recipients`]).
    fn publish_presence(
        &self,
        app: &str,
        user: &str,
        recipients: Vec<String>,
        online: bool,
        last_seen: Option<u64>,
    ) {
        self.hook_now(app, "presence.changed", || {
            json!({
                "userId": user,
                "online": online,
                "lastSeen": last_seen.map(time::iso),
            })
        });
        if recipients.is_empty() {
            return;
        }
        let data = render::envelope(
            if online {
                "presence.online"
            } else {
                "presence.offline"
            },
            PresencePayload {
                user_id: user,
                online,
                last_seen: last_seen.map(render::Iso),
            },
        );
        for to in recipients {
            let stream = user_stream(app, &to);
            let frame = chatsdk_proto::realtime::push_publication_raw(&stream, 0, &data, None);
            self.inner.env.emitter.emit(
                &stream,
                group_of(&stream, self.inner.shards()),
                None,
                None,
                bytes::Bytes::from(frame),
            );
        }
    }

    /// A heartbeat: the caller was active now.
    pub async fn heartbeat(&self, caller: &Caller) -> Result<(), ChatError> {
        let user = caller.user()?.to_string();
        let now = time::now_ms();
        let op = StreamOp::Presence {
            seen: Some(now),
            heartbeat: Some(now),
            hidden: None,
        };
        match self
            .write_stream(&user_stream(&caller.app, &user), op)
            .await?
        {
            StreamReply::Presence(_) => Ok(()),
            other => Err(unexpected_stream(other)),
        }
    }

    /// The caller appears online (and active now) or offline, and their channels are told.
    pub async fn set_presence(&self, caller: &Caller, online: bool) -> Result<(), ChatError> {
        let user = caller.user()?.to_string();
        let now = time::now_ms();
        let op = StreamOp::Presence {
            seen: Some(now),
            heartbeat: online.then_some(now),
            hidden: Some(!online),
        };
        match self
            .write_stream(&user_stream(&caller.app, &user), op)
            .await?
        {
            StreamReply::Presence(_) => {
                self.publish_presence(
                    &caller.app,
                    &user,
                    self.presence_recipients(&caller.app, &user),
                    online,
                    Some(now),
                );
                Ok(())
            }
            other => Err(unexpected_stream(other)),
        }
    }

    /// The presence of `users` as the caller may see it: the real one for users who share a
    /// channel with the caller (and for server keys), none for others.
    pub async fn visible_presence(
        &self,
        caller: &Caller,
        users: &[String],
    ) -> Result<Vec<UserPresence>, ChatError> {
        let mut visible = Vec::with_capacity(users.len());
        for u in users {
            visible.push(self.shares_channel(caller, u)?);
        }
        let shown: Vec<String> = users
            .iter()
            .zip(&visible)
            .filter(|(_, v)| **v)
            .map(|(u, _)| u.clone())
            .collect();
        let mut found = self.presence_of(&caller.app, &shown).await.into_iter();
        Ok(visible
            .into_iter()
            .map(|v| {
                if v {
                    found.next().unwrap_or_default()
                } else {
                    UserPresence::default()
                }
            })
            .collect())
    }

    /// Whether the caller may see `other`'s presence: they share a channel and `other` does not
    /// block the caller (the caller themselves and server keys: always).
    pub fn shares_channel(&self, caller: &Caller, other: &str) -> Result<bool, ChatError> {
        let Some(me) = caller.user.as_deref() else {
            return Ok(caller.server);
        };
        if me == other || caller.server {
            return Ok(true);
        }
        // Someone who blocked the caller is not shown to them.
        if self.blocks(&caller.app, other, me)? {
            return Ok(false);
        }
        let mine: BTreeSet<String> = self
            .inner
            .directory
            .user_channel_ids(&caller.app, me)?
            .into_iter()
            .collect();
        Ok(self
            .inner
            .directory
            .user_channel_ids(&caller.app, other)?
            .iter()
            .any(|c| mine.contains(c)))
    }
}
