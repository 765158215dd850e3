//! Uploads: what a file is (sniffed from its bytes), where its bytes live, and how a message
//! refers to it.
//!
//! An upload's bytes are files in the node's media store (`chatsdk_storage::media`), named by
//! their SHA-256; its metadata is an [`Upload`] record in the channel's stream, written through
//! the channel's Raft group like every other write. Before that record is proposed, the bytes are
//! on a majority of the shard's replicas ([`replicate`]), so an upload that was acknowledged
//! survives the loss of any minority of them, and no Raft entry ever carries the bytes.
//!
//! - [`sniff`]: the content type from the first bytes, and the size limits per kind.
//! - [`process`]: images resized, re-encoded (metadata gone), thumbnailed and blurhashed on the
//!   blocking pool, with decoder limits.
//! - [`token`]: short-lived signed media URLs (app, key and expiry under HMAC).
//! - [`replicate`]: copying files to and from the shard's replicas over the cluster transport,
//!   and the sweep that removes files no upload refers to any more and repairs missing copies.

pub mod process;
pub mod replicate;
pub mod sniff;
pub mod token;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use replicate::{Media, SweepReport};
pub use sniff::{sniff, Kind, Sniffed};
pub use token::MediaSigner;

/// Where an upload stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UploadStatus {
    /// Presigned: waiting for its bytes and a confirmation.
    Pending,
    Completed,
}

/// A stored file of an upload: the main file or its thumbnail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// SHA-256 (hex): the file's name in every replica's media store.
    pub hash: String,
    pub size: u64,
    pub content_type: String,
}

/// What arrived for a presigned upload, checked against the declaration when it is confirmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// Bytes the client sent (before any processing).
    pub raw_size: u64,
    /// The `Content-Type` header of the PUT.
    pub declared_type: String,
    /// The type the bytes are.
    pub sniffed_type: String,
    /// The `x-amz-meta-*` headers of the PUT: app id, uploader, channel id.
    pub meta_app: Option<String>,
    pub meta_by: Option<String>,
    pub meta_channel: Option<String>,
}

/// An upload's metadata (stored in the channel's stream under its id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// 32 hex digits.
    pub id: String,
    /// `apps/<app>/channels/<channel>/<yyyy>/<mm>/<dd>/<id>.<ext>`.
    pub key: String,
    pub app_id: String,
    pub channel_id: String,
    pub user_id: String,
    pub filename: String,
    /// The declared type while pending; the stored file's type once completed.
    pub content_type: String,
    /// The declared size while pending; the stored file's size once completed.
    pub size: u64,
    pub status: UploadStatus,
    pub file: Option<StoredFile>,
    pub thumb: Option<StoredFile>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub blurhash: Option<String>,
    /// Presigned uploads: what the PUT delivered.
    pub received: Option<Received>,
    /// Messages whose attachments name this upload; when the last of them is deleted, the
    /// upload goes too.
    pub attached_to: Vec<String>,
    pub created_at: u64,
    /// A pending upload not confirmed by then is forgotten.
    pub expires_at: u64,
}

impl Upload {
    /// The kind by content type (`image`, `video`, `file`), as upload lists filter.
    pub fn kind(&self) -> &'static str {
        if self.content_type.starts_with("image/") {
            "image"
        } else if self.content_type.starts_with("video/") {
            "video"
        } else {
            "file"
        }
    }

    /// The thumbnail's key, when there is one.
    pub fn thumb_key(&self) -> Option<String> {
        self.thumb
            .as_ref()
            .map(|t| thumb_key(&self.key, &self.id, t))
    }

    /// Every media file hash the upload refers to.
    pub fn hashes(&self) -> impl Iterator<Item = &str> {
        self.file
            .iter()
            .chain(self.thumb.iter())
            .map(|f| f.hash.as_str())
    }
}

fn thumb_key(key: &str, id: &str, thumb: &StoredFile) -> String {
    let dir = key.rsplit_once('/').map(|(d, _)| d).unwrap_or_default();
    format!(
        "{dir}/thumb_{id}.{}",
        sniff::extension_of(&thumb.content_type)
    )
}

/// A parsed media key: whose it is and which variant it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRef {
    pub app: String,
    pub channel: String,
    pub upload_id: String,
    pub thumbnail: bool,
}

/// Parses `apps/<app>/channels/<channel>/<yyyy>/<mm>/<dd>/[thumb_]<id>.<ext>`.
pub fn parse_key(key: &str) -> Option<KeyRef> {
    if key.len() > 512 || key.contains("..") || key.chars().any(char::is_control) {
        return None;
    }
    let parts: Vec<&str> = key.split('/').collect();
    if parts.len() < 8 || parts[0] != "apps" || parts[2] != "channels" {
        return None;
    }
    let file = parts[parts.len() - 1];
    let channel = parts[3..parts.len() - 4].join("/");
    let (thumbnail, file) = match file.strip_prefix("thumb_") {
        Some(rest) => (true, rest),
        None => (false, file),
    };
    let id = file.split('.').next()?;
    let hex = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    (hex && !parts[1].is_empty() && !channel.is_empty()).then(|| KeyRef {
        app: parts[1].to_string(),
        channel,
        upload_id: id.to_ascii_lowercase(),
        thumbnail,
    })
}

/// A new upload's id and key.
pub fn new_key(app: &str, channel: &str, now_ms: u64, ext: &str) -> (String, String) {
    let id = hex::encode(rand::random::<[u8; 16]>());
    let date = crate::time::iso(now_ms);
    let (y, m, d) = (&date[0..4], &date[5..7], &date[8..10]);
    let key = format!("apps/{app}/channels/{channel}/{y}/{m}/{d}/{id}.{ext}");
    (id, key)
}

/// The canonical content URL of a key (no token: readers add a fresh one).
pub fn content_path(key: &str) -> String {
    format!("/api/uploads/content?key={}", encode_component(key))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The upload an attachment refers to: its `uploadId` (or `upload_id`), its `key`, or an `url`
/// of our content route. `None` for attachments that are not ours (links, giphy).
pub fn attachment_key(a: &Value) -> Option<AttachmentRef> {
    let obj = a.as_object()?;
    let text = |k: &str| obj.get(k).and_then(Value::as_str);
    if let Some(id) = text("uploadId").or_else(|| text("upload_id")) {
        return Some(AttachmentRef::Id(id.to_string()));
    }
    if let Some(key) = text("key") {
        return Some(AttachmentRef::Key(key.to_string()));
    }
    let url = text("url")?;
    key_in_url(url).map(AttachmentRef::Key)
}

/// How an attachment names an upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttachmentRef {
    Id(String),
    Key(String),
}

/// The key of one of our content URLs (`/api/uploads/content?key=…` or
/// `/api/uploads/<key>/content`, relative or absolute).
pub fn key_in_url(url: &str) -> Option<String> {
    let path_at = url.find("/api/uploads/")?;
    let rest = &url[path_at + "/api/uploads/".len()..];
    if let Some(query) = rest.strip_prefix("content?") {
        return query
            .split('&')
            .find_map(|kv| kv.strip_prefix("key="))
            .and_then(decode_component);
    }
    let (key, tail) = rest.split_once("/content")?;
    (tail.is_empty() || tail.starts_with('?'))
        .then(|| decode_component(key))
        .flatten()
}

/// Decodes `%XX` escapes (and `+` as a space); None for malformed escapes or non-UTF-8.
pub fn decode_component(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The ids of the uploads a stored message's attachments name (attachments are stored resolved:
/// each of ours carries `uploadId`).
pub fn attached_upload_ids(attachments: &Value) -> Vec<String> {
    let mut ids: Vec<String> = attachments
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.get("uploadId").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back_and_refuse_tricks() {
        let (id, key) = new_key("app-1", "chan-9", 1_733_356_800_000, "png");
        assert_eq!(
            key,
            format!("apps/app-1/channels/chan-9/2024/12/05/{id}.png")
        );
        let r = parse_key(&key).unwrap();
        assert_eq!((r.app.as_str(), r.channel.as_str()), ("app-1", "chan-9"));
        assert_eq!((r.upload_id.as_str(), r.thumbnail), (id.as_str(), false));
        let thumb = key.replace(&format!("/{id}.png"), &format!("/thumb_{id}.jpg"));
        assert!(parse_key(&thumb).unwrap().thumbnail);
        assert_eq!(parse_key("apps/a/channels/../x/2024/12/05/ab.png"), None);
        assert_eq!(parse_key("apps/a/channels/c/2024/12/05/nothex.png"), None);
        assert_eq!(
            parse_key("x/a/channels/c/2024/12/05/0123456789abcdef0123456789abcdef"),
            None
        );
    }

    #[test]
    fn our_urls_name_their_keys() {
        let key = "apps/a/channels/c/2024/12/05/0123456789abcdef0123456789abcdef.png";
        let url = content_path(key);
        assert_eq!(key_in_url(&url).as_deref(), Some(key));
        assert_eq!(
            key_in_url(&format!("https://chat.example{url}&mediaToken=x")).as_deref(),
            Some(key)
        );
        let legacy = format!("/api/uploads/{}/content", encode_component(key));
        assert_eq!(key_in_url(&legacy).as_deref(), Some(key));
        assert_eq!(key_in_url("https://example.com/cat.png"), None);
        assert_eq!(decode_component("%zz"), None);
    }
}
