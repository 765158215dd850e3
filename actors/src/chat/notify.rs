//! Notifications: the device registry, Web Push subscriptions and preferences, and the pushes
//! sent for new messages, mentions and thread replies.
//!
//! A push goes to a recipient who has a Web Push subscription, wants that kind of notification,
//! is outside their quiet hours (UTC), has not muted the channel, does not block the sender,
//! and is not connected to any node (a connected user sees the message in the app). Top-level
//! messages notify the members of channels of at most [`MAX_NOTIFIED_MEMBERS`] members;
//! mentions notify the mentioned users and replies the thread's participants, whatever the
//! channel's size. Pushes are sent from the node that took the message, once, after it is
//! committed: they are not durable. Subscriptions a push service answers 404 or 410 for are
//! removed. Native device tokens are kept (the registry), not delivered to: that needs the
//! vendors' credentials (APNs, FCM), which this build does not hold.

use base64::Engine;

use super::*;
use crate::directory::notify::{NotifyChange, NotifyCommand};
use crate::model::{Device, PushSubscription};
use crate::push::{self, Vapid};

/// Members of a channel whose top-level messages notify everyone in it.
pub const MAX_NOTIFIED_MEMBERS: usize = 100;
/// The platforms a device may name.
pub const PLATFORMS: [&str; 4] = ["ios", "android", "web", "expo"];
/// The `sub` claim of the VAPID JWT.
const VAPID_SUBJECT: &str = "mailto:push@chatsdk.invalid";

/// Preference keys, with their defaults.
const BOOL_PREFS: [&str; 6] = [
    "newMessages",
    "mentions",
    "reactions",
    "threadReplies",
    "channelInvites",
    "quietHoursEnabled",
];

/// The preferences of a user, defaults filled in.
pub fn default_prefs() -> Value {
    json!({
        "newMessages": true,
        "mentions": true,
        "reactions": true,
        "threadReplies": true,
        "channelInvites": true,
        "quietHoursEnabled": false,
        "quietHoursStart": "22:00",
        "quietHoursEnd": "07:00",
    })
}

fn minutes(hhmm: &str) -> Option<u64> {
    let (h, m) = hhmm.split_once(':')?;
    let (h, m) = (h.parse::<u64>().ok()?, m.parse::<u64>().ok()?);
    (h < 24 && m < 60 && hhmm.len() == 5).then_some(h * 60 + m)
}

/// Whether `now_ms` falls in the quiet hours of `prefs` (UTC; a window may cross midnight).
fn quiet(prefs: &Value, now_ms: u64) -> bool {
    if prefs["quietHoursEnabled"] != Value::Bool(true) {
        return false;
    }
    let (Some(start), Some(end)) = (
        prefs["quietHoursStart"].as_str().and_then(minutes),
        prefs["quietHoursEnd"].as_str().and_then(minutes),
    ) else {
        return false;
    };
    let now = (now_ms / 60_000) % (24 * 60);
    if start <= end {
        (start..end).contains(&now)
    } else {
        now >= start || now < end
    }
}

/// Why a user would be notified of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    Message,
    Mention,
    ThreadReply,
}

impl Reason {
    fn pref(self) -> &'static str {
        match self {
            Reason::Message => "newMessages",
            Reason::Mention => "mentions",
            Reason::ThreadReply => "threadReplies",
        }
    }
}

impl Chat {
    async fn notify_dir(
        &self,
        app: &str,
        user: &str,
        change: NotifyChange,
    ) -> Result<(), ChatError> {
        if self.user(app, user)?.is_none() {
            return Err(ChatError::NotFound(format!("user {user}")));
        }
        match self
            .dir(DirCommand::Notify(NotifyCommand::Change {
                app_id: app.to_string(),
                user_id: user.to_string(),
                change,
            }))
            .await?
        {
            DirReply::Done => Ok(()),
            DirReply::NotFound(w) => Err(ChatError::NotFound(w)),
            other => Err(unexpected(other)),
        }
    }

    /// The cluster's VAPID keys: made by the first node that needs them (at first start), the
    /// same on every node.
    pub async fn vapid(&self) -> Result<Arc<Vapid>, ChatError> {
        let rt = &self.inner.hooks;
        rt.vapid
            .get_or_try_init(|| async {
                let hex_key = match self.inner.directory.vapid()? {
                    Some(k) => k,
                    None => {
                        let fresh =
                            Vapid::generate().map_err(|e| ChatError::Internal(e.to_string()))?;
                        match self
                            .dir(DirCommand::Notify(NotifyCommand::InitVapid {
                                pkcs8_hex: hex::encode(fresh),
                            }))
                            .await?
                        {
                            DirReply::Secret(k) => k,
                            other => return Err(unexpected(other)),
                        }
                    }
                };
                let pkcs8 = hex::decode(hex_key)
                    .map_err(|e| ChatError::Internal(format!("stored VAPID key: {e}")))?;
                Vapid::from_pkcs8(&pkcs8)
                    .map(Arc::new)
                    .map_err(|e| ChatError::Internal(format!("stored VAPID key: {e}")))
            })
            .await
            .cloned()
    }

    // ---- the registry

    /// Registers (or refreshes) a device of the caller.
    pub async fn register_device(
        &self,
        caller: &Caller,
        token: &str,
        platform: &str,
        device_id: Option<String>,
        device_name: Option<String>,
    ) -> Result<(), ChatError> {
        let user = caller.user()?.to_string();
        validate::text_len("token", token, 1, 4096)?;
        if !PLATFORMS.contains(&platform) {
            return Err(ChatError::bad("platform must be ios, android, web or expo"));
        }
        if let Some(d) = &device_name {
            validate::text_len("deviceName", d, 0, 200)?;
        }
        let now = time::now_ms();
        let device = Device {
            id: new_id(),
            token: token.to_string(),
            platform: platform.to_string(),
            device_id,
            device_name,
            created_at: now,
            last_active_at: now,
        };
        self.notify_dir(
            &caller.app,
            &user,
            NotifyChange::AddDevice(Box::new(device)),
        )
        .await
    }

    pub async fn remove_device(&self, caller: &Caller, token: &str) -> Result<(), ChatError> {
        let user = caller.user()?.to_string();
        self.notify_dir(
            &caller.app,
            &user,
            NotifyChange::RemoveDevice {
                token: token.to_string(),
            },
        )
        .await
    }

    pub fn devices(&self, caller: &Caller) -> Result<Vec<Device>, ChatError> {
        Ok(self.inner.directory.devices(&caller.app, caller.user()?)?)
    }

    /// The caller's notification preferences, defaults filled in.
    pub fn notify_prefs(&self, app: &str, user: &str) -> Result<Value, ChatError> {
        let mut prefs = default_prefs();
        if let Some(stored) = self.inner.directory.notify_prefs(app, user)? {
            if let (Some(base), Some(set)) = (prefs.as_object_mut(), stored.0.as_object()) {
                for (k, v) in set {
                    base.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(prefs)
    }

    /// Changes some of the caller's preferences (the others keep their values).
    pub async fn set_notify_prefs(
        &self,
        caller: &Caller,
        changes: serde_json::Map<String, Value>,
    ) -> Result<Value, ChatError> {
        let user = caller.user()?.to_string();
        for (k, v) in &changes {
            match k.as_str() {
                k if BOOL_PREFS.contains(&k) => {
                    if !v.is_boolean() {
                        return Err(ChatError::bad(format!("{k} must be true or false")));
                    }
                }
                "quietHoursStart" | "quietHoursEnd" => {
                    if v.as_str().and_then(minutes).is_none() {
                        return Err(ChatError::bad(format!("{k} must be HH:MM")));
                    }
                }
                other => return Err(ChatError::bad(format!("unknown preference {other}"))),
            }
        }
        let mut stored = self
            .inner
            .directory
            .notify_prefs(&caller.app, &user)?
            .and_then(|p| p.0.as_object().cloned())
            .unwrap_or_default();
        stored.extend(changes);
        self.notify_dir(
            &caller.app,
            &user,
            NotifyChange::Prefs(Json(Value::Object(stored))),
        )
        .await?;
        self.notify_prefs(&caller.app, &user)
    }

    /// Subscribes a browser of the caller to Web Push.
    pub async fn web_push_subscribe(
        &self,
        caller: &Caller,
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        expires_at: Option<u64>,
    ) -> Result<(), ChatError> {
        let user = caller.user()?.to_string();
        crate::hooks::check_url(endpoint).map_err(|e| ChatError::bad(format!("endpoint: {e}")))?;
        push::check_keys(p256dh, auth).map_err(|e| ChatError::bad(e.to_string()))?;
        let sub = PushSubscription {
            endpoint: endpoint.to_string(),
            p256dh: p256dh.to_string(),
            auth: auth.to_string(),
            expires_at,
            created_at: time::now_ms(),
        };
        self.notify_dir(&caller.app, &user, NotifyChange::Subscribe(Box::new(sub)))
            .await
    }

    pub async fn web_push_unsubscribe(
        &self,
        caller: &Caller,
        endpoint: &str,
    ) -> Result<(), ChatError> {
        let user = caller.user()?.to_string();
        self.notify_dir(
            &caller.app,
            &user,
            NotifyChange::Unsubscribe {
                endpoint: endpoint.to_string(),
            },
        )
        .await
    }

    /// Sends a test push to every subscription of the caller: `(sent, failed)`.
    pub async fn web_push_test(&self, caller: &Caller) -> Result<(usize, usize), ChatError> {
        let user = caller.user()?.to_string();
        let payload = json!({
            "type": "test",
            "title": "ChatSDK",
            "body": "Push notifications work.",
        });
        Ok(self.push_to(&caller.app, &user, &payload).await)
    }

    /// Pushes `payload` to every subscription of `user`: `(sent, failed)`.
    async fn push_to(&self, app: &str, user: &str, payload: &Value) -> (usize, usize) {
        let subs = self.inner.directory.web_push(app, user).unwrap_or_default();
        if subs.is_empty() {
            return (0, 0);
        }
        let vapid = match self.vapid().await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "no VAPID key: pushes not sent");
                return (0, subs.len());
            }
        };
        let body = payload.to_string();
        let (mut sent, mut failed) = (0, 0);
        let now_secs = time::now_ms() / 1000;
        for sub in subs {
            let result = match (
                push::encrypt(body.as_bytes(), &sub.p256dh, &sub.auth),
                vapid.authorization(&sub.endpoint, VAPID_SUBJECT, now_secs),
            ) {
                (Ok(bytes), Ok(authorization)) => {
                    let headers = [
                        ("Content-Encoding", "aes128gcm".to_string()),
                        ("TTL", "86400".to_string()),
                        ("Urgency", "normal".to_string()),
                        ("Authorization", authorization),
                    ];
                    self.inner
                        .hooks
                        .client
                        .post_as(&sub.endpoint, "application/octet-stream", &headers, bytes)
                        .await
                }
                (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
            };
            match result {
                Ok(code) if (200..300).contains(&code) => {
                    sent += 1;
                    self.inner.stats.push("ok");
                }
                Ok(404 | 410) => {
                    // The browser unsubscribed: forget it.
                    failed += 1;
                    self.inner.stats.push("gone");
                    let gone = NotifyChange::Unsubscribe {
                        endpoint: sub.endpoint.clone(),
                    };
                    if let Err(e) = self.notify_dir(app, user, gone).await {
                        tracing::debug!(error = %e, "expired push subscription not removed");
                    }
                }
                Ok(code) => {
                    failed += 1;
                    self.inner.stats.push("refused");
                    tracing::debug!(app, user, code, "push refused");
                }
                Err(e) => {
                    failed += 1;
                    self.inner.stats.push("failed");
                    tracing::debug!(app, user, error = %e, "push not sent");
                }
            }
        }
        (sent, failed)
    }

    // ---- pushes for messages

    /// Starts the pushes a new message calls for, in the background (nothing when no user of
    /// the app has a Web Push subscription: one key read).
    pub(super) fn spawn_message_pushes(&self, app: &str, message: &Message) {
        if !self.inner.directory.app_uses_web_push(app).unwrap_or(false) {
            return;
        }
        let Ok(permit) = self.inner.hooks.direct.clone().try_acquire_owned() else {
            tracing::warn!(app, "too many pushes in flight: message not pushed");
            return;
        };
        let (chat, app, message) = (self.clone(), app.to_string(), message.clone());
        tokio::spawn(async move {
            let stop = chat.inner.hooks.stop.clone();
            tokio::select! {
                biased;
                _ = stop.cancelled() => {}
                _ = chat.push_message(&app, &message) => {}
            }
            drop(permit);
        });
    }

    async fn push_message(&self, app: &str, m: &Message) {
        let server = Caller {
            app: app.to_string(),
            user: None,
            server: true,
        };
        let mut recipients: Vec<(String, Reason)> = m
            .mentions
            .iter()
            .map(|u| (u.clone(), Reason::Mention))
            .collect();
        if let Some(parent) = &m.parent_id {
            if let Ok(people) = self
                .thread_participants(&server, &m.channel_id, parent)
                .await
            {
                recipients.extend(people.into_iter().map(|(u, _)| (u.id, Reason::ThreadReply)));
            }
        } else if let Ok(ids) = self.inner.directory.member_ids(app, &m.channel_id) {
            if ids.len() <= MAX_NOTIFIED_MEMBERS {
                recipients.extend(ids.into_iter().map(|u| (u, Reason::Message)));
            }
        }
        // One push per user, for the most specific reason (mention, then reply, then message).
        let mut seen = BTreeSet::new();
        recipients.retain(|(u, _)| *u != m.user_id && seen.insert(u.clone()));
        recipients.retain(|(u, _)| {
            !self
                .inner
                .directory
                .web_push(app, u)
                .unwrap_or_default()
                .is_empty()
        });
        if recipients.is_empty() {
            return;
        }
        let principals: Vec<String> = recipients
            .iter()
            .map(|(u, _)| colon_joined(&[app, u]))
            .collect();
        let online = self.connected_anywhere(&principals).await;
        let now = time::now_ms();
        let channel = self.channel(app, &m.channel_id).ok().flatten();
        for ((user, reason), connected) in recipients.into_iter().zip(online) {
            if connected || self.blocks(app, &user, &m.user_id).unwrap_or(false) {
                continue;
            }
            let prefs = self
                .notify_prefs(app, &user)
                .unwrap_or_else(|_| default_prefs());
            if prefs[reason.pref()] == Value::Bool(false) || quiet(&prefs, now) {
                continue;
            }
            let muted = self
                .channel_flags(app, &user)
                .await
                .map(|f| f.get(&m.channel_id).is_some_and(|f| f.muted))
                .unwrap_or(false);
            if muted {
                continue;
            }
            let kind = match reason {
                Reason::Message => "message.new",
                Reason::Mention => "mention",
                Reason::ThreadReply => "thread.reply",
            };
            let payload = json!({
                "type": kind,
                "title": m.user.name,
                "body": m.text.as_deref().map(|t| t.chars().take(200).collect::<String>()),
                "channelId": m.channel_id,
                "channelName": channel.as_ref().and_then(|c| c.name.clone()),
                "messageId": m.id,
                "parentId": m.parent_id,
                "senderId": m.user_id,
            });
            self.push_to(app, &user, &payload).await;
        }
    }
}

/// The base64url form of a key, for the API.
pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_cross_midnight() {
        let mut p = default_prefs();
        assert!(!quiet(&p, 23 * 3_600_000));
        p["quietHoursEnabled"] = json!(true);
        assert!(quiet(&p, 23 * 3_600_000));
        assert!(quiet(&p, 3 * 3_600_000));
        assert!(!quiet(&p, 12 * 3_600_000));
        assert_eq!(minutes("7:00"), None);
        assert_eq!(minutes("07:30"), Some(450));
    }
}
