//! Data lifecycle: legal holds and data exports.
//!
//! A legal hold on a channel, or on a user (their messages anywhere), makes every delete,
//! purge and deletion of what it covers answer 423 `LEGAL_HOLD_ACTIVE` until it is lifted or
//! ends (`until`); deleting a held user or a held channel is refused too. Holds are kept in
//! the directory, so every node checks them locally.
//!
//! An export is a JSON archive of a user's data or a channel's, built on the node that takes
//! the request, stored in its own stream (`export:<app>:<id>`, in 256 KiB chunks, each its own
//! Raft command: replicated like everything else), and downloadable by its owner through an
//! authenticated route until it expires ([`EXPORT_TTL`]).

use sha2::{Digest, Sha256};

use super::*;
use crate::directory::lifecycle::LifeCommand;
use crate::model::{Export, LegalHold};
use crate::stream::blobs::BLOB_CHUNK_BYTES;
use crate::stream::MessagePage;

/// How long an export can be downloaded.
pub const EXPORT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Largest archive made (a bigger one is refused: narrow the export).
pub const MAX_EXPORT_BYTES: usize = 64 * 1024 * 1024;
/// Messages read per page while exporting.
const EXPORT_PAGE: usize = 500;

fn export_stream(app: &str, id: &str) -> String {
    colon_joined(&["export", app, id])
}

fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id,
        "channelId": m.channel_id,
        "userId": m.user_id,
        "seq": m.seq,
        "text": m.text,
        "attachments": m.attachments.0,
        "parentId": m.parent_id,
        "replyToId": m.reply_to_id,
        "createdAt": time::iso(m.created_at),
        "editedAt": m.edited_at.map(time::iso),
        "deletedAt": m.deleted_at.map(time::iso),
    })
}

impl Chat {
    async fn life(&self, command: LifeCommand) -> Result<(), ChatError> {
        match self.dir(DirCommand::Lifecycle(command)).await? {
            DirReply::Done => Ok(()),
            DirReply::NotFound(w) => Err(ChatError::NotFound(w)),
            other => Err(unexpected(other)),
        }
    }

    // ---- legal holds

    /// Places a legal hold on a channel or a user (app admins and server keys).
    pub async fn place_hold(
        &self,
        caller: &Caller,
        kind: &str,
        target: &str,
        reason: String,
        until: Option<u64>,
    ) -> Result<LegalHold, ChatError> {
        self.require_app_admin(caller)?;
        validate::text_len("reason", &reason, 1, 1000)?;
        match kind {
            "channel" => {
                self.channel(&caller.app, target)?
                    .ok_or_else(|| ChatError::not_found("channel"))?;
            }
            "user" => {
                self.user(&caller.app, target)?
                    .ok_or_else(|| ChatError::NotFound(format!("user {target}")))?;
            }
            _ => return Err(ChatError::bad("a hold is on a channel or a user")),
        }
        let now = time::now_ms();
        if until.is_some_and(|u| u <= now) {
            return Err(ChatError::bad("until must be in the future"));
        }
        let hold = LegalHold {
            kind: kind.to_string(),
            target: target.to_string(),
            reason,
            until,
            by: caller.user.clone(),
            created_at: now,
        };
        self.life(LifeCommand::Hold {
            app_id: caller.app.clone(),
            hold: Box::new(hold.clone()),
        })
        .await?;
        Ok(hold)
    }

    /// Lifts a legal hold (app admins and server keys).
    pub async fn release_hold(
        &self,
        caller: &Caller,
        kind: &str,
        target: &str,
    ) -> Result<(), ChatError> {
        self.require_app_admin(caller)?;
        self.life(LifeCommand::Release {
            app_id: caller.app.clone(),
            kind: kind.to_string(),
            target: target.to_string(),
        })
        .await
    }

    /// The app's holds in force.
    pub fn legal_holds(&self, caller: &Caller) -> Result<Vec<LegalHold>, ChatError> {
        self.require_app_admin(caller)?;
        let now = time::now_ms();
        Ok(self
            .inner
            .directory
            .legal_holds(&caller.app)?
            .into_iter()
            .filter(|h| h.active(now))
            .collect())
    }

    fn held(&self, app: &str, kind: &str, target: &str) -> Result<Option<LegalHold>, ChatError> {
        Ok(self
            .inner
            .directory
            .legal_hold(app, kind, target)?
            .filter(|h| h.active(time::now_ms()))
            .map(Arc::unwrap_or_clone))
    }

    /// Refuses deleting data of `channel` (when given) or authored by `user` (when given)
    /// while a legal hold covers it.
    pub(super) fn check_no_hold(
        &self,
        app: &str,
        channel: Option<&str>,
        user: Option<&str>,
    ) -> Result<(), ChatError> {
        let hold = match (channel, user) {
            (Some(c), u) => self.held(app, "channel", c)?.or(match u {
                Some(u) => self.held(app, "user", u)?,
                None => None,
            }),
            (None, Some(u)) => self.held(app, "user", u)?,
            (None, None) => None,
        };
        match hold {
            Some(h) => Err(ChatError::LegalHold(format!(
                "LEGAL_HOLD_ACTIVE: the {} {} is under a legal hold ({})",
                h.kind, h.target, h.reason
            ))),
            None => Ok(()),
        }
    }

    // ---- exports

    /// Exports a user's data: the caller's own, or any user's for app admins and server keys.
    pub async fn export_user(&self, caller: &Caller, user: &str) -> Result<Export, ChatError> {
        let own = caller.user.as_deref() == Some(user);
        if !own {
            self.require_app_admin(caller)?;
        }
        let profile = self
            .user(&caller.app, user)?
            .ok_or_else(|| ChatError::NotFound(format!("user {user}")))?;
        let as_them = Caller {
            app: caller.app.clone(),
            user: Some(user.to_string()),
            server: true,
        };
        let memberships: Vec<(Channel, Option<Member>)> = self
            .channels_for(&caller.app, user, None)
            .await?
            .into_iter()
            .filter(|(_, m)| m.is_some())
            .collect();
        let mut messages = Vec::new();
        for (ch, _) in &memberships {
            self.collect_messages(&as_them, &ch.id, Some(user), &mut messages)
                .await?;
        }
        let channels: Vec<Value> = memberships
            .iter()
            .map(|(c, m)| {
                json!({
                    "id": c.id,
                    "name": c.name,
                    "type": c.kind.as_str(),
                    "role": m.as_ref().map(|m| m.role.as_str()),
                })
            })
            .collect();
        let blocks: Vec<Value> = self
            .inner
            .directory
            .blocked_by(&caller.app, user)?
            .into_iter()
            .map(|(u, at)| json!({"userId": u, "blockedAt": time::iso(at)}))
            .collect();
        let devices: Vec<Value> = self
            .inner
            .directory
            .devices(&caller.app, user)?
            .into_iter()
            .map(|d| json!({"platform": d.platform, "deviceName": d.device_name, "createdAt": time::iso(d.created_at)}))
            .collect();
        let counts =
            json!({"channels": channels.len(), "messages": messages.len(), "blocks": blocks.len()});
        let body = json!({
            "user": {
                "id": profile.id,
                "name": profile.name,
                "email": profile.email,
                "image": profile.image,
                "custom": profile.custom.0,
                "createdAt": time::iso(profile.created_at),
            },
            "channels": channels,
            "messages": messages,
            "blocks": blocks,
            "devices": devices,
            "notificationPreferences": self.notify_prefs(&caller.app, user)?,
        });
        let owner = if own {
            Some(user.to_string())
        } else {
            caller.user.clone()
        };
        self.store_export(&caller.app, "user", user, owner, counts, body)
            .await
    }

    /// Exports a channel: its record, members and messages (thread replies included). For
    /// its owners and admins, app admins and server keys.
    pub async fn export_channel(
        &self,
        caller: &Caller,
        channel: &str,
    ) -> Result<Export, ChatError> {
        if self.require_app_admin(caller).is_err() {
            self.require_role(caller, channel, Role::Admin).await?;
        }
        let ch = self
            .channel(&caller.app, channel)?
            .ok_or_else(|| ChatError::not_found("channel"))?;
        let server = Caller {
            app: caller.app.clone(),
            user: None,
            server: true,
        };
        let mut messages = Vec::new();
        self.collect_messages(&server, channel, None, &mut messages)
            .await?;
        let members: Vec<Value> = self
            .members(&caller.app, channel)?
            .into_iter()
            .map(|m| json!({"userId": m.user_id, "role": m.role.as_str()}))
            .collect();
        let counts = json!({"members": members.len(), "messages": messages.len()});
        let body = json!({
            "channel": {
                "id": ch.id,
                "cid": ch.cid,
                "type": ch.kind.as_str(),
                "name": ch.name,
                "config": ch.config.0,
                "workspaceId": ch.workspace_id,
                "createdAt": time::iso(ch.created_at),
            },
            "members": members,
            "messages": messages,
        });
        self.store_export(
            &caller.app,
            "channel",
            channel,
            caller.user.clone(),
            counts,
            body,
        )
        .await
    }

    /// Appends the messages of `channel` (by `author` when given), thread replies included,
    /// in seq order, to `out`.
    async fn collect_messages(
        &self,
        reader: &Caller,
        channel: &str,
        author: Option<&str>,
        out: &mut Vec<Value>,
    ) -> Result<(), ChatError> {
        let mut found: Vec<Message> = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .messages(reader, channel, MessagePage::After(after), EXPORT_PAGE)
                .await?;
            for m in &page.messages {
                after = after.max(m.seq);
                if m.reply_count > 0 {
                    let (replies, _) = self
                        .replies(reader, channel, &m.id, super::messages::MAX_THREAD_SCAN)
                        .await?;
                    found.extend(
                        replies
                            .into_iter()
                            .filter(|r| author.is_none_or(|a| r.user_id == a)),
                    );
                }
            }
            let done = !page.more || page.messages.is_empty();
            found.extend(
                page.messages
                    .into_iter()
                    .filter(|m| author.is_none_or(|a| m.user_id == a)),
            );
            if done {
                break;
            }
        }
        found.sort_by_key(|m| m.seq);
        out.extend(found.iter().map(message_json));
        Ok(())
    }

    async fn store_export(
        &self,
        app: &str,
        scope: &str,
        subject: &str,
        owner: Option<String>,
        counts: Value,
        body: Value,
    ) -> Result<Export, ChatError> {
        let now = time::now_ms();
        let id = new_id();
        let archive = json!({
            "manifest": {
                "version": 1,
                "id": id,
                "generatedAt": time::iso(now),
                "scope": scope,
                "subject": subject,
                "counts": counts,
            },
            "data": body,
        })
        .to_string()
        .into_bytes();
        if archive.len() > MAX_EXPORT_BYTES {
            return Err(ChatError::LimitExceeded(format!(
                "the export would be {} bytes, more than {MAX_EXPORT_BYTES}",
                archive.len()
            )));
        }
        let sha = hex::encode(Sha256::digest(&archive));
        let stream = export_stream(app, &id);
        for (i, chunk) in archive.chunks(BLOB_CHUNK_BYTES).enumerate() {
            let op = StreamOp::PutBlobChunk {
                hash: sha.clone(),
                index: i as u32,
                bytes: chunk.to_vec(),
            };
            self.write_stream(&stream, op).await?;
        }
        let export = Export {
            id,
            scope: scope.to_string(),
            subject: subject.to_string(),
            owner,
            size: archive.len() as u64,
            sha256: sha,
            counts: Json(counts),
            created_at: now,
            expires_at: now + EXPORT_TTL.as_millis() as u64,
        };
        self.life(LifeCommand::PutExport {
            app_id: app.to_string(),
            export: Box::new(export.clone()),
        })
        .await?;
        Ok(export)
    }

    /// An export's record and archive, for its owner (or a server key) before it expires; an
    /// expired export is removed and answers 404.
    pub async fn download_export(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(Export, Vec<u8>), ChatError> {
        let export = self
            .inner
            .directory
            .export(&caller.app, id)?
            .map(Arc::unwrap_or_clone)
            .ok_or_else(|| ChatError::not_found("export"))?;
        if !caller.server
            && export
                .owner
                .as_ref()
                .is_none_or(|o| Some(o) != caller.user.as_ref())
        {
            return Err(ChatError::not_found("export"));
        }
        let stream = export_stream(&caller.app, id);
        if time::now_ms() >= export.expires_at {
            if let Err(e) = self.write_stream(&stream, StreamOp::Drop).await {
                tracing::warn!(error = %e, "expired export not removed");
            }
            self.life(LifeCommand::DropExport {
                app_id: caller.app.clone(),
                id: id.to_string(),
            })
            .await?;
            return Err(ChatError::NotFound("export (expired)".into()));
        }
        let mut bytes = Vec::with_capacity(export.size as usize);
        let chunks = (export.size as usize).div_ceil(BLOB_CHUNK_BYTES);
        for index in 0..chunks {
            let q = StreamQuery::BlobChunk {
                hash: export.sha256.clone(),
                index: index as u32,
            };
            match self.query(&stream, q).await? {
                QueryAnswer::Blob(Some(chunk)) => bytes.extend_from_slice(&chunk),
                _ => return Err(ChatError::Internal("export archive incomplete".into())),
            }
        }
        if hex::encode(Sha256::digest(&bytes)) != export.sha256 {
            return Err(ChatError::Internal("export archive corrupted".into()));
        }
        Ok((export, bytes))
    }
}
