//! Uploads: presign → PUT → confirm, direct uploads, reads, deletion, channel lists, and the
//! attachments that refer to uploads.
//!
//! The gateway streams an upload's bytes into a [`MediaWriter`] (a temporary file, hashed and
//! bounded as it is written) and hands it here with the content type sniffed from its first
//! bytes. This module processes images (on the blocking pool, a few at a time), copies the
//! stored files to a majority of the channel's shard replicas, and only then records the
//! upload through the channel's Raft group: an acknowledged upload has both its metadata and
//! its bytes on a majority.

use chatsdk_storage::media::{MediaWriter, Stored};

use super::*;
use crate::error::MediaRefusal;
use crate::media::process::{self, ImageError, Processed};
use crate::media::replicate::blocking;
use crate::media::sniff::{self, Kind, Sniffed};
use crate::media::{
    self, attachment_key, AttachmentRef, KeyRef, Media, Received, StoredFile, Upload, UploadStatus,
};

/// How long a presigned upload may take to arrive and be confirmed, by default.
pub const PRESIGN_TTL_MS: u64 = 3_600_000;
/// Images processed at once on a node (each may take ~200 MiB while decoded).
pub const IMAGE_SLOTS: usize = 2;

fn refuse(r: MediaRefusal, why: impl Into<String>) -> ChatError {
    ChatError::Media(r, why.into())
}

/// A file that arrived (its bytes in a finished-or-not writer) and what it is.
pub struct Arrived {
    pub writer: MediaWriter,
    pub sniffed: Sniffed,
}

/// The headers of a presigned PUT that confirm checks.
#[derive(Clone, Debug, Default)]
pub struct PutHeaders {
    pub content_type: String,
    pub meta_app: Option<String>,
    pub meta_by: Option<String>,
    pub meta_channel: Option<String>,
}

/// A file to serve: where it is and what it is.
#[derive(Clone, Debug)]
pub struct Served {
    pub hash: String,
    pub size: u64,
    pub content_type: String,
    pub filename: String,
}

/// The stored files of an upload.
struct Files {
    file: StoredFile,
    thumb: Option<StoredFile>,
    width: Option<u32>,
    height: Option<u32>,
    blurhash: Option<String>,
}

impl Chat {
    /// Runs the media sweep (see `media::replicate`) every `every`, until the node stops.
    pub(super) fn spawn_media_sweep(&self, every: Duration) {
        self.spawn_every(every, |chat| async move {
            if let Err(e) = chat.expire_pending_uploads().await {
                tracing::warn!(error = %e, "expiring pending uploads failed");
            }
            let media = chat.inner.media.clone();
            drop(chat);
            match media.sweep().await {
                Ok(r) if r != Default::default() => tracing::info!(?r, "media sweep"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "media sweep failed"),
            }
        });
    }

    /// Drops the presigned uploads of the shards this node leads whose bytes arrived but that
    /// were not confirmed in time, so the sweeps delete their files. Returns how many.
    pub async fn expire_pending_uploads(&self) -> Result<usize, ChatError> {
        let led = self.inner.cluster.watch_leadership().borrow().clone();
        let now = time::now_ms();
        let mut dropped = 0;
        for group in led.into_iter().filter(|&g| g != META_GROUP) {
            let Some(reader) = self.inner.cluster.local_reader(group) else {
                continue;
            };
            let mut seen = BTreeSet::new();
            for (k, _) in reader.scan_prefix(&crate::keys::media_refs())? {
                let Some(at) = crate::keys::media_ref_upload(&k).filter(|a| seen.insert(a.clone()))
                else {
                    continue;
                };
                let streams = crate::stream::StreamReader::new(reader.clone());
                let expired = streams
                    .upload(&at.0, &at.1)?
                    .is_some_and(|u| u.status == UploadStatus::Pending && u.expires_at <= now);
                if expired {
                    self.write_stream(&at.0, StreamOp::DropUpload { id: at.1 })
                        .await?;
                    dropped += 1;
                }
            }
        }
        Ok(dropped)
    }

    /// This node's media files.
    pub fn media(&self) -> &Media {
        &self.inner.media
    }

    /// The size limits of uploads.
    pub fn media_limits(&self) -> crate::media::sniff::MediaLimits {
        self.inner.media_limits
    }

    /// Takes one of the caller's uploads for this minute (server keys are not limited).
    fn take_upload(&self, caller: &Caller) -> Result<(), ChatError> {
        if caller.server {
            return Ok(());
        }
        let key = colon_joined(&[&caller.app, caller.user()?]);
        self.inner
            .upload_limiter
            .take(&key)
            .map_err(|retry_after| ChatError::RateLimited { retry_after })
    }

    /// Refuses a caller who may not upload to `channel` (uploading is writing).
    pub async fn check_upload(
        &self,
        caller: &Caller,
        channel: &str,
    ) -> Result<Arc<Channel>, ChatError> {
        let ch = self
            .channel(&caller.app, channel)?
            .ok_or_else(|| ChatError::not_found("channel"))?;
        self.writer_membership(caller, &ch).await?;
        Ok(ch)
    }

    /// Presigns an upload: records it as pending for an hour.
    pub async fn presign_upload(
        &self,
        caller: &Caller,
        channel: &str,
        filename: &str,
        content_type: &str,
        size: u64,
    ) -> Result<Upload, ChatError> {
        validate::text_len("filename", filename, 1, 255)?;
        validate::text_len("contentType", content_type, 1, 255)?;
        if size == 0 {
            return Err(ChatError::bad("size must be positive"));
        }
        let limit = self.inner.media_limits.of(Kind::of(content_type));
        if size > limit {
            return Err(refuse(
                MediaRefusal::FileTooLarge,
                format!("a file of this type is at most {limit} bytes"),
            ));
        }
        self.check_upload(caller, channel).await?;
        self.take_upload(caller)?;
        let now = time::now_ms();
        let ext = extension(filename, content_type);
        let (id, key) = media::new_key(&caller.app, channel, now, &ext);
        let upload = Upload {
            id,
            key,
            app_id: caller.app.clone(),
            channel_id: channel.to_string(),
            user_id: caller.user()?.to_string(),
            filename: filename.to_string(),
            content_type: content_type.to_string(),
            size,
            status: UploadStatus::Pending,
            file: None,
            thumb: None,
            width: None,
            height: None,
            blurhash: None,
            received: None,
            attached_to: Vec::new(),
            created_at: now,
            expires_at: now + self.inner.presign_ttl.as_millis() as u64,
        };
        self.put_upload(&upload).await?;
        Ok(upload)
    }

    /// Stores a direct upload (multipart): processed, replicated, then recorded as completed.
    pub async fn direct_upload(
        &self,
        caller: &Caller,
        channel: &str,
        filename: &str,
        arrived: Arrived,
    ) -> Result<Upload, ChatError> {
        validate::text_len("filename", filename, 1, 255)?;
        self.check_upload(caller, channel).await?;
        self.take_upload(caller)?;
        let group = self.channel_group(&caller.app, channel);
        let files = self.store_files(arrived).await?;
        self.replicate_files(group, &files).await?;
        let now = time::now_ms();
        let ext = sniff::extension_of(&files.file.content_type);
        let (id, key) = media::new_key(&caller.app, channel, now, ext);
        let upload = Upload {
            id,
            key,
            app_id: caller.app.clone(),
            channel_id: channel.to_string(),
            user_id: caller.user()?.to_string(),
            filename: filename.to_string(),
            content_type: files.file.content_type.clone(),
            size: files.file.size,
            status: UploadStatus::Completed,
            width: files.width,
            height: files.height,
            blurhash: files.blurhash.clone(),
            file: Some(files.file),
            thumb: files.thumb,
            received: None,
            attached_to: Vec::new(),
            created_at: now,
            expires_at: 0,
        };
        self.put_upload(&upload).await?;
        Ok(upload)
    }

    /// The pending upload a presigned PUT is for, and the most bytes it may send.
    pub async fn pending_upload(&self, app: &str, key: &str) -> Result<Upload, ChatError> {
        let (upload, _) = self.upload_by_key(app, key).await?;
        if upload.status != UploadStatus::Pending || upload.expires_at <= time::now_ms() {
            return Err(ChatError::not_found("pending upload"));
        }
        Ok(upload)
    }

    /// Takes the bytes of a presigned PUT: stored and replicated like a direct upload, kept
    /// pending until the client confirms.
    pub async fn receive_put(
        &self,
        mut upload: Upload,
        raw_size: u64,
        headers: PutHeaders,
        arrived: Arrived,
    ) -> Result<(), ChatError> {
        let sniffed = arrived.sniffed.content_type.clone();
        let group = self.channel_group(&upload.app_id, &upload.channel_id);
        let files = self.store_files(arrived).await?;
        self.replicate_files(group, &files).await?;
        upload.width = files.width;
        upload.height = files.height;
        upload.blurhash = files.blurhash;
        upload.file = Some(files.file);
        upload.thumb = files.thumb;
        upload.received = Some(Received {
            raw_size,
            declared_type: headers.content_type,
            sniffed_type: sniffed,
            meta_app: headers.meta_app,
            meta_by: headers.meta_by,
            meta_channel: headers.meta_channel,
        });
        self.put_upload(&upload).await
    }

    /// Confirms a presigned upload once its bytes match what was declared.
    pub async fn confirm_upload(&self, caller: &Caller, key: &str) -> Result<Upload, ChatError> {
        let (mut upload, _) = self.upload_by_key(&caller.app, key).await?;
        let own = caller.server || caller.user.as_deref() == Some(upload.user_id.as_str());
        if upload.status != UploadStatus::Pending || !own {
            return Err(ChatError::not_found("pending upload"));
        }
        let Some(r) = upload.received.clone() else {
            return Err(refuse(
                MediaRefusal::NotReceived,
                "the file has not been uploaded",
            ));
        };
        let declared = Sniffed {
            content_type: r.sniffed_type.clone(),
            kind: Kind::of(&r.sniffed_type),
        };
        let mismatch = if r.raw_size != upload.size {
            Some(format!(
                "size {} differs from the declared {}",
                r.raw_size, upload.size
            ))
        } else if !same_type(&r.declared_type, &upload.content_type) {
            Some("Content-Type differs from the declared type".to_string())
        } else if !sniff::agrees(&upload.content_type, &declared) {
            Some(format!(
                "the bytes are {}, not {}",
                r.sniffed_type, upload.content_type
            ))
        } else if r.meta_app.as_deref() != Some(upload.app_id.as_str())
            || r.meta_by.as_deref() != Some(upload.user_id.as_str())
            || r.meta_channel.as_deref() != Some(upload.channel_id.as_str())
        {
            Some("x-amz-meta-app-id, -uploaded-by and -channel-id must match".to_string())
        } else {
            None
        };
        if let Some(why) = mismatch {
            return Err(refuse(MediaRefusal::Mismatch, why));
        }
        if let Some(f) = &upload.file {
            upload.content_type = f.content_type.clone();
            upload.size = f.size;
        }
        upload.status = UploadStatus::Completed;
        self.put_upload(&upload).await?;
        Ok(upload)
    }

    /// The file a media token grants (the token was checked for the key and its app).
    pub async fn media_for_token(&self, app: &str, key: &str) -> Result<Served, ChatError> {
        let (upload, r) = self.upload_by_key(app, key).await?;
        self.served(&upload, &r).await
    }

    /// The file `key` names, for a caller who may read its channel.
    pub async fn media_for_caller(&self, caller: &Caller, key: &str) -> Result<Served, ChatError> {
        let r = media::parse_key(key).ok_or_else(|| ChatError::not_found("upload"))?;
        if r.app != caller.app {
            return Err(ChatError::not_found("upload"));
        }
        self.readable_channel(caller, &r.channel).await?;
        let (upload, r) = self.upload_by_key(&caller.app, key).await?;
        self.served(&upload, &r).await
    }

    /// Makes sure the file is on this node and says what to serve.
    async fn served(&self, upload: &Upload, r: &KeyRef) -> Result<Served, ChatError> {
        if upload.status != UploadStatus::Completed {
            return Err(ChatError::not_found("upload"));
        }
        let file = if r.thumbnail {
            upload.thumb.as_ref()
        } else {
            upload.file.as_ref()
        }
        .ok_or_else(|| ChatError::not_found("upload"))?;
        let group = self.channel_group(&upload.app_id, &upload.channel_id);
        self.inner.media.ensure_local(group, &file.hash).await?;
        Ok(Served {
            hash: file.hash.clone(),
            size: file.size,
            content_type: file.content_type.clone(),
            filename: if r.thumbnail {
                format!("thumb_{}", upload.filename)
            } else {
                upload.filename.clone()
            },
        })
    }

    /// An upload for a caller who may read its channel (download links).
    pub async fn readable_upload(&self, caller: &Caller, key: &str) -> Result<Upload, ChatError> {
        let r = media::parse_key(key).ok_or_else(|| ChatError::not_found("upload"))?;
        if r.app != caller.app {
            return Err(ChatError::not_found("upload"));
        }
        self.readable_channel(caller, &r.channel).await?;
        let (upload, _) = self.upload_by_key(&caller.app, key).await?;
        if upload.status != UploadStatus::Completed {
            return Err(ChatError::not_found("upload"));
        }
        Ok(upload)
    }

    /// Deletes one's own upload (server keys any); its files go with the next sweeps.
    pub async fn delete_upload(&self, caller: &Caller, key: &str) -> Result<(), ChatError> {
        let (upload, r) = self.upload_by_key(&caller.app, key).await?;
        let own = caller.server || caller.user.as_deref() == Some(upload.user_id.as_str());
        if !own || r.thumbnail {
            return Err(ChatError::not_found("upload"));
        }
        if !upload.attached_to.is_empty() {
            self.check_no_hold(&caller.app, Some(&upload.channel_id), Some(&upload.user_id))?;
        }
        let stream = chat_stream(&caller.app, &upload.channel_id);
        match self
            .write_stream(&stream, StreamOp::DropUpload { id: upload.id })
            .await?
        {
            StreamReply::Done => Ok(()),
            other => Err(unexpected_stream(other)),
        }
    }

    /// Completed uploads of a channel the caller may read, newest first.
    pub async fn channel_uploads(
        &self,
        caller: &Caller,
        channel: &str,
        kind: Option<String>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Upload>, ChatError> {
        if kind
            .as_deref()
            .is_some_and(|k| !matches!(k, "image" | "video" | "file"))
        {
            return Err(ChatError::bad("type must be image, video or file"));
        }
        self.readable_channel(caller, channel).await?;
        let q = StreamQuery::Uploads {
            kind,
            offset,
            limit,
        };
        match self.query(&chat_stream(&caller.app, channel), q).await? {
            QueryAnswer::Uploads(list) => Ok(list),
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    /// Checks and completes a message's attachments: each that names an upload (by
    /// `uploadId`, `key` or one of our URLs) must be a completed upload of this channel, and
    /// gets its canonical URL, type, size, dimensions and blurhash. Others pass as they are.
    pub(super) async fn resolve_attachments(
        &self,
        app: &str,
        channel: &str,
        attachments: Value,
    ) -> Result<Value, ChatError> {
        let Value::Array(items) = attachments else {
            return Ok(attachments);
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let Some(named) = attachment_key(&item) else {
                out.push(item);
                continue;
            };
            let foreign = || {
                refuse(
                    MediaRefusal::ForeignAttachment,
                    "an attachment names an upload that is not a completed upload of this channel",
                )
            };
            let id = match named {
                AttachmentRef::Id(id) => id,
                AttachmentRef::Key(key) => {
                    let r = media::parse_key(&key).ok_or_else(foreign)?;
                    if r.app != app || r.channel != channel {
                        return Err(foreign());
                    }
                    r.upload_id
                }
            };
            let q = StreamQuery::Upload { id };
            let upload = match self.query(&chat_stream(app, channel), q).await? {
                QueryAnswer::Upload(Some(u)) if u.status == UploadStatus::Completed => u,
                _ => return Err(foreign()),
            };
            out.push(attachment_of(&upload, item));
        }
        Ok(Value::Array(out))
    }

    async fn upload_by_key(&self, app: &str, key: &str) -> Result<(Upload, KeyRef), ChatError> {
        let r = media::parse_key(key).ok_or_else(|| ChatError::not_found("upload"))?;
        if r.app != app {
            return Err(ChatError::not_found("upload"));
        }
        let q = StreamQuery::Upload {
            id: r.upload_id.clone(),
        };
        match self.query(&chat_stream(app, &r.channel), q).await? {
            QueryAnswer::Upload(Some(u)) if u.channel_id == r.channel => Ok((*u, r)),
            QueryAnswer::Upload(_) => Err(ChatError::not_found("upload")),
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    /// The shard of a channel.
    fn channel_group(&self, app: &str, channel: &str) -> GroupId {
        group_of(&chat_stream(app, channel), self.inner.shards())
    }

    async fn put_upload(&self, upload: &Upload) -> Result<(), ChatError> {
        let stream = chat_stream(&upload.app_id, &upload.channel_id);
        let op = StreamOp::PutUpload {
            upload: Box::new(upload.clone()),
        };
        match self.write_stream(&stream, op).await? {
            StreamReply::Done => Ok(()),
            other => Err(unexpected_stream(other)),
        }
    }

    async fn replicate_files(&self, group: GroupId, files: &Files) -> Result<(), ChatError> {
        let mut list = vec![(files.file.hash.clone(), files.file.size)];
        if let Some(t) = &files.thumb {
            list.push((t.hash.clone(), t.size));
        }
        self.inner.media.replicate(group, &list).await
    }

    /// Stores an arrived file: images processed (a few at a time, on the blocking pool),
    /// everything else as it is.
    async fn store_files(&self, arrived: Arrived) -> Result<Files, ChatError> {
        let Arrived { writer, sniffed } = arrived;
        if sniffed.kind != Kind::Image {
            let stored = blocking(move || writer.finish()).await?;
            return Ok(Files {
                file: stored_file(stored, &sniffed.content_type),
                thumb: None,
                width: None,
                height: None,
                blurhash: None,
            });
        }
        let _slot = self
            .inner
            .image_slots
            .acquire()
            .await
            .map_err(|_| ChatError::Unavailable("node is shutting down".into()))?;
        let store = self.inner.media.store().clone();
        let ct = sniffed.content_type.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(writer.path())
                .map_err(|e| ChatError::Internal(format!("media: {e}")))?;
            let p: Processed = process::process(&bytes, &ct).map_err(|e| match e {
                ImageError::Encode(why) => ChatError::Internal(why),
                e => refuse(MediaRefusal::InvalidImage, e.to_string()),
            })?;
            let io = |e: chatsdk_storage::media::MediaError| ChatError::Internal(e.to_string());
            let file = match &p.main {
                Some(m) => stored_file(store.put(&m.bytes).map_err(io)?, m.content_type),
                None => stored_file(writer.finish().map_err(io)?, &ct),
            };
            let thumb = stored_file(store.put(&p.thumb.bytes).map_err(io)?, p.thumb.content_type);
            Ok::<_, ChatError>(Files {
                file,
                thumb: Some(thumb),
                width: Some(p.width),
                height: Some(p.height),
                blurhash: Some(p.blurhash),
            })
        })
        .await
        .map_err(|e| ChatError::Internal(format!("image task: {e}")))?;
        outcome
    }
}

fn stored_file(s: Stored, content_type: &str) -> StoredFile {
    StoredFile {
        hash: s.hash,
        size: s.size,
        content_type: content_type.to_string(),
    }
}

/// Whether two content types are the same (case and parameters aside).
fn same_type(a: &str, b: &str) -> bool {
    sniff::base_type(a) == sniff::base_type(b)
}

/// The extension of a new upload's key: the file name's when it has a short one, else the
/// content type's.
fn extension(filename: &str, content_type: &str) -> String {
    match filename.rsplit_once('.') {
        Some((_, ext))
            if (1..=8).contains(&ext.len()) && ext.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            ext.to_ascii_lowercase()
        }
        _ => sniff::extension_of(content_type).to_string(),
    }
}

/// An attachment completed from its upload (fields the client set that the upload does not
/// decide, such as `title` or `duration`, stay).
fn attachment_of(u: &Upload, item: Value) -> Value {
    let mut obj = match item {
        Value::Object(o) => o,
        _ => serde_json::Map::new(),
    };
    obj.remove("key");
    obj.remove("upload_id");
    let kind = match Kind::of(&u.content_type) {
        Kind::Image => "image",
        Kind::Video => "video",
        Kind::Audio => "audio",
        Kind::Document => "file",
    };
    if !obj.get("type").is_some_and(Value::is_string) {
        obj.insert("type".into(), json!(kind));
    }
    obj.insert("uploadId".into(), json!(u.id));
    obj.insert("url".into(), json!(media::content_path(&u.key)));
    if let Some(t) = u.thumb_key() {
        obj.insert("thumbnailUrl".into(), json!(media::content_path(&t)));
    }
    if !obj.get("name").is_some_and(Value::is_string) {
        obj.insert("name".into(), json!(u.filename));
    }
    obj.insert("mimeType".into(), json!(u.content_type));
    obj.insert("fileSize".into(), json!(u.size));
    obj.insert("size".into(), json!(u.size));
    for (k, v) in [("width", u.width), ("height", u.height)] {
        match v {
            Some(v) => obj.insert(k.into(), json!(v)),
            None => obj.remove(k),
        };
    }
    match &u.blurhash {
        Some(b) => obj.insert("blurhash".into(), json!(b)),
        None => obj.remove("blurhash"),
    };
    Value::Object(obj)
}
