//! Custom emoji of a workspace: upload (a PNG, GIF, JPEG or WebP image of at most 1 MiB, its
//! type read from its bytes), list, search, use, analytics, and the image itself.
//!
//! The record is in the directory (an emoji is addressed by id alone); the image is a blob in
//! the workspace's stream (`stream::blobs`), written chunk by chunk before the record that
//! points to it, so a record never points to a missing image.

use super::*;
use crate::directory::workspaces::WsCommand;
use crate::model::{Emoji, WorkspaceRole};
use crate::stream::blobs::{EmojiUsage, BLOB_CHUNK_BYTES};

/// The largest emoji image.
pub const MAX_EMOJI_BYTES: usize = 1024 * 1024;
/// Emoji a search answers at most.
const SEARCH_LIMIT: usize = 20;

/// A new emoji.
#[derive(Clone, Debug, Default)]
pub struct NewEmoji {
    pub workspace_id: String,
    pub name: String,
    pub category: Option<String>,
    pub bytes: Vec<u8>,
}

/// The image type of `bytes`, from their first bytes (never from what the client says).
pub fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

fn emoji_refusal(reply: DirReply) -> ChatError {
    match reply {
        DirReply::NotFound(w) => ChatError::NotFound(w),
        other => unexpected(other),
    }
}

impl Chat {
    fn emoji_record(&self, app: &str, id: &str) -> Result<Emoji, ChatError> {
        self.inner
            .directory
            .emoji(app, id)?
            .map(Arc::unwrap_or_clone)
            .ok_or_else(|| ChatError::not_found("emoji"))
    }

    /// Uploads an emoji (workspace owners and admins); one of the same name is replaced.
    pub async fn create_emoji(&self, caller: &Caller, new: NewEmoji) -> Result<Emoji, ChatError> {
        let valid_name = !new.name.is_empty()
            && new.name.len() <= 64
            && new
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid_name {
            return Err(ChatError::bad(
                "name must be 1 to 64 characters of a-z, 0-9, _ and -",
            ));
        }
        if let Some(c) = &new.category {
            validate::text_len("category", c, 1, 64)?;
        }
        if new.bytes.is_empty() || new.bytes.len() > MAX_EMOJI_BYTES {
            return Err(ChatError::bad(format!(
                "file must be an image of 1 to {MAX_EMOJI_BYTES} bytes"
            )));
        }
        let content_type = sniff_image(&new.bytes)
            .ok_or_else(|| ChatError::bad("file must be a PNG, GIF, JPEG or WebP image"))?;
        self.require_ws_role(caller, &new.workspace_id, WorkspaceRole::Admin)
            .await?;
        let hash = hash_hex(&new.bytes);
        let stream = workspace_stream(&caller.app, &new.workspace_id);
        for (i, chunk) in new.bytes.chunks(BLOB_CHUNK_BYTES).enumerate() {
            let op = StreamOp::PutBlobChunk {
                hash: hash.clone(),
                index: i as u32,
                bytes: chunk.to_vec(),
            };
            self.write_stream(&stream, op).await?;
        }
        let before = self
            .inner
            .directory
            .workspace_emoji(&caller.app, &new.workspace_id)?
            .into_iter()
            .find(|e| e.name == new.name);
        let emoji = Emoji {
            id: new_id(),
            app_id: caller.app.clone(),
            workspace_id: new.workspace_id.clone(),
            name: new.name,
            category: new.category,
            content_type: content_type.to_string(),
            size: new.bytes.len() as u64,
            image_hash: hash,
            created_by: caller.user.clone(),
            created_at: time::now_ms(),
        };
        let stored = match self
            .dir(DirCommand::Workspace(WsCommand::PutEmoji { emoji }))
            .await?
        {
            DirReply::Emoji(e) => *e,
            other => return Err(emoji_refusal(other)),
        };
        if let Some(old) = before.filter(|o| o.image_hash != stored.image_hash) {
            self.drop_unused_blob(&caller.app, &old).await;
        }
        Ok(stored)
    }

    /// Removes `gone`'s image unless another emoji of its workspace shows the same one.
    async fn drop_unused_blob(&self, app: &str, gone: &Emoji) {
        let shared = self
            .inner
            .directory
            .workspace_emoji(app, &gone.workspace_id)
            .map(|all| all.iter().any(|e| e.image_hash == gone.image_hash))
            .unwrap_or(true);
        if !shared {
            let op = StreamOp::DropBlob {
                hash: gone.image_hash.clone(),
            };
            if let Err(e) = self
                .write_stream(&workspace_stream(app, &gone.workspace_id), op)
                .await
            {
                tracing::warn!(app, emoji = %gone.id, error = %e, "emoji image not removed");
            }
        }
    }

    async fn emoji_totals(&self, app: &str, ws: &str, emoji: &[Emoji]) -> Vec<u64> {
        let q = StreamQuery::EmojiTotals {
            ids: emoji.iter().map(|e| e.id.clone()).collect(),
        };
        match self.query(&workspace_stream(app, ws), q).await {
            Ok(QueryAnswer::Counts(c)) if c.len() == emoji.len() => c,
            _ => vec![0; emoji.len()],
        }
    }

    /// A workspace's emoji with their use counts (members), by name; `category` filters.
    pub async fn workspace_emoji(
        &self,
        caller: &Caller,
        ws: &str,
        category: Option<&str>,
        search: Option<&str>,
    ) -> Result<Vec<(Emoji, u64)>, ChatError> {
        self.require_ws_role(caller, ws, WorkspaceRole::Member)
            .await?;
        let needle = search.map(str::to_lowercase);
        let mut all: Vec<Emoji> = self
            .inner
            .directory
            .workspace_emoji(&caller.app, ws)?
            .into_iter()
            .filter(|e| category.is_none_or(|c| e.category.as_deref() == Some(c)))
            .filter(|e| needle.as_ref().is_none_or(|n| e.name.contains(n.as_str())))
            .collect();
        if let Some(n) = &needle {
            all.sort_by_key(|e| (!e.name.starts_with(n.as_str()), e.name.clone()));
            all.truncate(SEARCH_LIMIT);
        }
        let totals = self.emoji_totals(&caller.app, ws, &all).await;
        Ok(all.into_iter().zip(totals).collect())
    }

    /// One emoji with its use count (members of its workspace).
    pub async fn emoji(&self, caller: &Caller, id: &str) -> Result<(Emoji, u64), ChatError> {
        let e = self.emoji_record(&caller.app, id)?;
        self.require_ws_role(caller, &e.workspace_id, WorkspaceRole::Member)
            .await?;
        let total = self
            .emoji_totals(&caller.app, &e.workspace_id, std::slice::from_ref(&e))
            .await[0];
        Ok((e, total))
    }

    /// Whether the caller may manage `e`: its creator, or an owner or admin of its workspace.
    async fn manages_emoji(&self, caller: &Caller, e: &Emoji) -> Result<(), ChatError> {
        let (_, me) = self
            .require_ws_role(caller, &e.workspace_id, WorkspaceRole::Member)
            .await?;
        let creator = e.created_by.is_some() && e.created_by == caller.user;
        if caller.server || creator || me.is_some_and(|m| m.role >= WorkspaceRole::Admin) {
            Ok(())
        } else {
            Err(ChatError::forbidden(
                "only the emoji's creator or a workspace admin may",
            ))
        }
    }

    /// Deletes an emoji (its creator, or a workspace owner or admin), its image and counts.
    pub async fn delete_emoji(&self, caller: &Caller, id: &str) -> Result<(), ChatError> {
        let e = self.emoji_record(&caller.app, id)?;
        self.manages_emoji(caller, &e).await?;
        match self
            .dir(DirCommand::Workspace(WsCommand::DeleteEmoji {
                app_id: caller.app.clone(),
                id: id.to_string(),
            }))
            .await?
        {
            DirReply::Emoji(_) => {}
            other => return Err(emoji_refusal(other)),
        }
        self.drop_unused_blob(&caller.app, &e).await;
        let op = StreamOp::DropEmojiUses {
            emoji_id: id.to_string(),
        };
        self.write_stream(&workspace_stream(&caller.app, &e.workspace_id), op)
            .await?;
        Ok(())
    }

    /// Counts a use of an emoji by the caller (a member of its workspace).
    pub async fn use_emoji(
        &self,
        caller: &Caller,
        id: &str,
        message_id: &str,
    ) -> Result<(), ChatError> {
        validate::text_len("messageId", message_id, 1, 128)?;
        let user = caller.user()?.to_string();
        let e = self.emoji_record(&caller.app, id)?;
        self.require_ws_role(caller, &e.workspace_id, WorkspaceRole::Member)
            .await?;
        let op = StreamOp::EmojiUsed {
            emoji_id: id.to_string(),
            user,
            day: time::now_ms() / 86_400_000,
        };
        match self
            .write_stream(&workspace_stream(&caller.app, &e.workspace_id), op)
            .await?
        {
            StreamReply::Done => Ok(()),
            other => Err(unexpected_stream(other)),
        }
    }

    /// An emoji's usage over the last 30 days (its creator, or a workspace owner or admin).
    pub async fn emoji_analytics(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<EmojiUsage, ChatError> {
        let e = self.emoji_record(&caller.app, id)?;
        self.manages_emoji(caller, &e).await?;
        let today = time::now_ms() / 86_400_000;
        let q = StreamQuery::EmojiUsage {
            id: id.to_string(),
            since_day: today.saturating_sub(29),
        };
        match self
            .query(&workspace_stream(&caller.app, &e.workspace_id), q)
            .await?
        {
            QueryAnswer::EmojiUsage(u) => Ok(u),
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    /// An emoji's image: `(content type, bytes, hash)`. Emoji images are public by id (an
    /// `<img>` sends no token), as custom emoji are in other chat products.
    pub async fn emoji_image(
        &self,
        app: &str,
        id: &str,
    ) -> Result<(String, Vec<u8>, String), ChatError> {
        let e = self.emoji_record(app, id)?;
        let stream = workspace_stream(app, &e.workspace_id);
        let chunks = (e.size as usize).div_ceil(BLOB_CHUNK_BYTES);
        let mut bytes = Vec::with_capacity(e.size as usize);
        for index in 0..chunks {
            let q = StreamQuery::BlobChunk {
                hash: e.image_hash.clone(),
                index: index as u32,
            };
            match self.query(&stream, q).await? {
                QueryAnswer::Blob(Some(b)) => bytes.extend_from_slice(&b),
                _ => return Err(ChatError::Internal("emoji image missing".into())),
            }
        }
        Ok((e.content_type, bytes, e.image_hash))
    }
}
