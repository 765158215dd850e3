//! Upload routes (Part B §2.13, both dialects): presign → PUT → confirm, direct multipart
//! uploads, content reads (media tokens, `Range`, `ETag`), download links, deletion and
//! channel lists.
//!
//! Bodies are streamed to a temporary file in the node's media store as they arrive, never held
//! whole: the declared `Content-Length` is refused at once when it is past the limit, the bytes
//! are counted as they come, and the type is sniffed from the first bytes so a file past its
//! type's limit or of a type we do not take is refused while it is still arriving.

use std::io::SeekFrom;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chatsdk_actors::chat::{Arrived, PutHeaders, Served};
use chatsdk_actors::error::MediaRefusal;
use chatsdk_actors::media::sniff::{self, SNIFF_BYTES};
use chatsdk_actors::media::token::{TokenError, UPLOAD};
use chatsdk_actors::media::{self, Upload};
use chatsdk_actors::render::Iso;
use chatsdk_actors::ChatError;
use chatsdk_proto::ErrorCode;
use futures::{Stream, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::success;
use crate::auth::extract::Auth;
use crate::body::{Form, Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

/// What a multipart upload's body may hold beyond its file.
pub const FORM_OVERHEAD_BYTES: u64 = 64 * 1024;
/// Bytes gathered before each write to disk.
const WRITE_BATCH: usize = 256 * 1024;
/// Lifetime of presigned upload URLs and download links.
const LINK_TTL_S: u64 = 3600;
/// Text fields of a form are short.
const MAX_FIELD_BYTES: usize = 1024;

fn now_s() -> u64 {
    chatsdk_actors::time::now_ms() / 1000
}

fn too_large(limit: u64) -> AppError {
    AppError::new(
        ErrorCode::PayloadTooLarge,
        format!("the file exceeds {limit} bytes"),
    )
}

/// The declared body length, when the client sent one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Streams a body into a new media file of at most `limit` bytes: sniffed from its first
/// bytes (refused when of no type we take, or past its type's limit), returned with its size.
async fn take_file<S, E>(
    state: &GatewayState,
    mut body: S,
    limit: u64,
    declared: &str,
) -> ApiResult<(Arrived, u64)>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let store = state.chat.media().store().clone();
    let mut writer = tokio::task::spawn_blocking(move || store.writer(limit))
        .await
        .map_err(|e| AppError::from(ChatError::Internal(e.to_string())))?
        .map_err(|e| AppError::from(ChatError::Internal(e.to_string())))?;
    let idle = state.config.header_read_timeout * 3;
    let (mut head, mut sniffed, mut total) = (Vec::new(), None, 0u64);
    let mut limit = limit;
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        let next = tokio::time::timeout(idle, body.next())
            .await
            .map_err(|_| AppError::bad("upload body stalled"))?;
        let chunk = match next {
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                let text = e.to_string();
                if text.contains("length limit") || text.contains("too large") {
                    return Err(too_large(limit));
                }
                return Err(AppError::bad(format!("upload body: {text}")));
            }
            None => None,
        };
        if let Some(c) = &chunk {
            total += c.len() as u64;
            if total > limit {
                return Err(too_large(limit));
            }
            if sniffed.is_none() && head.len() < SNIFF_BYTES {
                let take = (SNIFF_BYTES - head.len()).min(c.len());
                head.extend_from_slice(&c[..take]);
            }
            batch.extend_from_slice(c);
        }
        let end = chunk.is_none();
        if sniffed.is_none() && (head.len() >= SNIFF_BYTES || (end && !head.is_empty())) {
            let s = sniff::sniff(&head, declared).ok_or_else(|| {
                AppError::from(ChatError::Media(
                    MediaRefusal::UnsupportedType,
                    "the file is not of a type uploads accept".into(),
                ))
            })?;
            limit = limit.min(state.chat.media_limits().of(s.kind));
            if total > limit {
                return Err(too_large(limit));
            }
            sniffed = Some(s);
        }
        if batch.len() >= WRITE_BATCH || (end && !batch.is_empty()) {
            let bytes = std::mem::replace(&mut batch, Vec::with_capacity(WRITE_BATCH));
            writer = tokio::task::spawn_blocking(move || writer.write(&bytes).map(|()| writer))
                .await
                .map_err(|e| AppError::from(ChatError::Internal(e.to_string())))?
                .map_err(|e| AppError::from(ChatError::Internal(e.to_string())))?;
        }
        if end {
            break;
        }
    }
    let sniffed = sniffed.ok_or_else(|| AppError::bad("the file is empty"))?;
    Ok((Arrived { writer, sniffed }, total))
}

chatsdk_actors::dialect_views! {
    scope: uploads;
    records: chatsdk_actors::render;
    types {
        /// `POST /api/uploads/direct`.
        pub struct DirectView<'a> {
            pub id: &'a str,
            pub key: &'a str,
            pub url: String,
            pub filename: &'a str,
            pub content_type: &'a str,
            pub size: u64,
            pub width: Option<u32>,
            pub height: Option<u32>,
            pub blurhash: Option<&'a str>,
            pub thumbnail_url: Option<String>,
        }

        /// `POST /api/uploads/presigned`.
        pub struct PresignedView<'a> {
            pub id: &'a str,
            pub key: &'a str,
            pub upload_url: String,
            pub headers: serde_json::Value,
            pub public_url: String,
            pub url: String,
            pub expires_in: u64,
        }

        /// `POST /api/uploads/:key/confirm`.
        pub struct ConfirmedView<'a> {
            pub id: &'a str,
            pub key: &'a str,
            pub url: String,
            pub content_type: &'a str,
            pub size: u64,
            pub status: &'static str,
            pub width: Option<u32>,
            pub height: Option<u32>,
            pub blurhash: Option<&'a str>,
            pub thumbnail_url: Option<String>,
        }

        /// One upload of a channel.
        pub struct ListedView<'a> {
            pub id: &'a str,
            pub key: &'a str,
            pub filename: &'a str,
            pub content_type: &'a str,
            pub size: u64,
            pub url: String,
            pub thumbnail_url: Option<String>,
            pub width: Option<u32>,
            pub height: Option<u32>,
            pub blurhash: Option<&'a str>,
            pub user_id: &'a str,
            pub created_at: Iso,
        }

        /// `GET /api/channels/:id/uploads`.
        pub struct ListView<'a> {
            pub uploads: Vec<ListedView<'a>>,
        }

        /// `GET /api/uploads/:key/download`.
        pub struct LinkView {
            pub url: String,
            pub expires_in: u64,
        }
    }
}

/// The signed content URL of an upload's file and of its thumbnail.
fn urls(state: &GatewayState, u: &Upload) -> (String, Option<String>) {
    let now = now_s();
    let signer = &state.media_signer;
    (
        signer.url(&u.app_id, &u.key, now),
        u.thumb_key().map(|t| signer.url(&u.app_id, &t, now)),
    )
}

/// `POST /api/uploads/presigned`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresignBody {
    #[serde(alias = "channel_id")]
    channel_id: String,
    filename: String,
    #[serde(alias = "content_type")]
    content_type: String,
    size: u64,
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
}

/// The absolute base URL the client reached us at (for presigned URLs).
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

pub async fn presign(
    State(state): State<GatewayState>,
    auth: Auth,
    headers: HeaderMap,
    Typed(b): Typed<PresignBody>,
) -> ApiResult<Response> {
    auth.require_scope("upload:write")?;
    let caller = auth.user_caller(b.user_id)?;
    let u = state
        .chat
        .presign_upload(&caller, &b.channel_id, &b.filename, &b.content_type, b.size)
        .await?;
    let exp = now_s() + LINK_TTL_S;
    let token = state.media_signer.sign_as(UPLOAD, &u.app_id, &u.key, exp);
    let base = base_url(&headers);
    let upload_url = format!(
        "{base}/api/uploads/put?key={}&token={token}",
        media::encode_component(&u.key)
    );
    let (url, _) = urls(&state, &u);
    let meta = json!({
        "Content-Type": u.content_type,
        "x-amz-meta-app-id": u.app_id,
        "x-amz-meta-uploaded-by": u.user_id,
        "x-amz-meta-channel-id": u.channel_id,
    });
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::PresignedView {
        id: &u.id,
        key: &u.key,
        upload_url,
        headers: meta,
        public_url: format!("{base}{}", media::content_path(&u.key)),
        url,
        expires_in: LINK_TTL_S,
    }))
}

/// `PUT /api/uploads/put?key=&token=`: the bytes of a presigned upload (the URL is the
/// credential, as with the S3 URL of the original).
pub async fn put(State(state): State<GatewayState>, q: Query, req: Request) -> ApiResult<Response> {
    let key = q
        .str("key")
        .ok_or_else(|| AppError::bad("key is required"))?;
    let token = q
        .str("token")
        .ok_or_else(|| AppError::unauthorized("token is required"))?;
    let app = state
        .media_signer
        .verify_as(UPLOAD, &token, &key, now_s())
        .map_err(token_error)?;
    let upload = state.chat.pending_upload(&app, &key).await?;
    let headers = req.headers();
    if content_length(headers).is_some_and(|n| n > upload.size) {
        return Err(too_large(upload.size));
    }
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let put_headers = PutHeaders {
        content_type: text("content-type").unwrap_or_default(),
        meta_app: text("x-amz-meta-app-id"),
        meta_by: text("x-amz-meta-uploaded-by"),
        meta_channel: text("x-amz-meta-channel-id"),
    };
    let declared = put_headers.content_type.clone();
    let body = req.into_body().into_data_stream();
    let (arrived, raw) = take_file(&state, body, upload.size, &declared).await?;
    state
        .chat
        .receive_put(upload, raw, put_headers, arrived)
        .await?;
    Ok(StatusCode::OK.into_response())
}

fn token_error(e: TokenError) -> AppError {
    match e {
        TokenError::Expired => AppError::new(ErrorCode::TokenExpired, e.to_string()),
        e => AppError::unauthorized(e.to_string()),
    }
}

/// `POST /api/uploads/:key/confirm`.
pub async fn confirm(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(key): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("upload:write")?;
    let caller = auth.user_caller(q.str("userId"))?;
    let u = state.chat.confirm_upload(&caller, &key).await?;
    let (url, thumbnail_url) = urls(&state, &u);
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::ConfirmedView {
        id: &u.id,
        key: &u.key,
        url,
        content_type: &u.content_type,
        size: u.size,
        status: "completed",
        width: u.width,
        height: u.height,
        blurhash: u.blurhash.as_deref(),
        thumbnail_url,
    }))
}

/// A short text field of a form.
async fn field_text(field: axum::extract::multipart::Field<'_>, name: &str) -> ApiResult<String> {
    let bytes = field
        .bytes()
        .await
        .map_err(|e| AppError::bad(format!("malformed multipart body: {e}")))?;
    if bytes.len() > MAX_FIELD_BYTES {
        return Err(AppError::bad(format!("{name} is too long")));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| AppError::bad(format!("{name} must be UTF-8")))
}

/// `POST /api/uploads/direct` (multipart: `file`, `channelId`; `user_id` for server keys).
pub async fn direct(
    State(state): State<GatewayState>,
    auth: Auth,
    headers: HeaderMap,
    Form(mut form): Form,
) -> ApiResult<Response> {
    auth.require_scope("upload:write")?;
    let max = state.chat.media_limits().largest();
    if content_length(&headers).is_some_and(|n| n > max + FORM_OVERHEAD_BYTES) {
        return Err(too_large(max));
    }
    let (mut channel, mut user, mut file) = (None::<String>, None, None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| AppError::bad(format!("malformed multipart body: {e}")))?
    {
        match field.name().unwrap_or_default() {
            "file" => {
                // Known channel and user: refuse a caller who may not upload before the bytes.
                if let Some(c) = &channel {
                    state
                        .chat
                        .check_upload(&auth.user_caller(user.clone())?, c)
                        .await?;
                }
                let name = field.file_name().unwrap_or("file").to_string();
                let declared = field.content_type().unwrap_or_default().to_string();
                let (arrived, _) = take_file(&state, field, max, &declared).await?;
                if !sniff::agrees(&declared, &arrived.sniffed) {
                    return Err(ChatError::Media(
                        MediaRefusal::UnsupportedType,
                        format!(
                            "the file is {}, not {declared}",
                            arrived.sniffed.content_type
                        ),
                    )
                    .into());
                }
                file = Some((name, arrived));
            }
            "channelId" | "channel_id" => channel = Some(field_text(field, "channelId").await?),
            "userId" | "user_id" => user = Some(field_text(field, "user_id").await?),
            _ => {}
        }
    }
    let channel = channel.ok_or_else(|| AppError::bad("channelId is required"))?;
    let (name, arrived) = file.ok_or_else(|| AppError::bad("file is required"))?;
    let caller = auth.user_caller(user)?;
    let u = state
        .chat
        .direct_upload(&caller, &channel, &name, arrived)
        .await?;
    let (url, thumbnail_url) = urls(&state, &u);
    Ok(
        reply!(auth.dialect, StatusCode::CREATED, v => v::DirectView {
            id: &u.id,
            key: &u.key,
            url,
            filename: &u.filename,
            content_type: &u.content_type,
            size: u.size,
            width: u.width,
            height: u.height,
            blurhash: u.blurhash.as_deref(),
            thumbnail_url,
        }),
    )
}

/// The key a content request names: `?key=` (or the path's), `?variant=thumbnail` for the
/// thumbnail of an upload key.
fn content_key(key: &str, q: &Query) -> ApiResult<String> {
    let key = key.to_string();
    let thumb = matches!(q.str("variant").as_deref(), Some("thumb" | "thumbnail"));
    if !thumb {
        return Ok(key);
    }
    let r = media::parse_key(&key).ok_or_else(|| AppError::not_found("upload not found"))?;
    if r.thumbnail {
        return Ok(key);
    }
    let (dir, _) = key
        .rsplit_once('/')
        .ok_or_else(|| AppError::not_found("upload not found"))?;
    // The thumbnail's extension is not known here: the lookup is by id.
    Ok(format!("{dir}/thumb_{}.jpg", r.upload_id))
}

/// `GET /api/uploads/content?key=` (and the legacy `/api/uploads/:key/content`): the file,
/// to a media token's holder or a caller who may read the channel.
async fn content(
    state: GatewayState,
    auth: Result<Auth, AppError>,
    given: String,
    q: Query,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let key = content_key(&given, &q)?;
    let served = match q.str("mediaToken") {
        Some(token) => {
            // A token for a file also reads its thumbnail variant.
            let app = state
                .media_signer
                .verify(&token, &given, now_s())
                .map_err(token_error)?;
            state.chat.media_for_token(&app, &key).await?
        }
        None => {
            let auth = auth?;
            auth.require_scope("chat:read")?;
            let caller = auth.caller(q.str("userId"));
            state.chat.media_for_caller(&caller, &key).await?
        }
    };
    serve_file(&state, &served, &headers).await
}

pub async fn content_query(
    State(state): State<GatewayState>,
    auth: Result<Auth, AppError>,
    q: Query,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let key = q
        .str("key")
        .ok_or_else(|| AppError::bad("key is required"))?;
    content(state, auth, key, q, headers).await
}

pub async fn content_path(
    State(state): State<GatewayState>,
    auth: Result<Auth, AppError>,
    Path(key): Path<String>,
    q: Query,
    headers: HeaderMap,
) -> ApiResult<Response> {
    content(state, auth, key, q, headers).await
}

/// A byte range of a file of `size` bytes: `Ok(None)` for the whole file (no or an ignored
/// `Range`), `Err(())` when unsatisfiable.
fn range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Several ranges: served whole (RFC 9110 lets a server ignore Range).
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size.saturating_sub(1))
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        (start, end)
    };
    if size == 0 || start >= size || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// Streams a stored file (or the asked range of it) with its caching headers.
async fn serve_file(state: &GatewayState, f: &Served, headers: &HeaderMap) -> ApiResult<Response> {
    let etag = format!("\"{}\"", f.hash);
    let mut res = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, "private, max-age=300")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CONTENT_TYPE, &f.content_type)
        .header(header::CONTENT_DISPOSITION, disposition(f));
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if not_modified {
        return Ok(res
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_default());
    }
    let (status, start, len) = match range(headers, f.size) {
        Ok(None) => (StatusCode::OK, 0, f.size),
        Ok(Some((s, e))) => {
            res = res.header(header::CONTENT_RANGE, format!("bytes {s}-{e}/{}", f.size));
            (StatusCode::PARTIAL_CONTENT, s, e - s + 1)
        }
        Err(()) => {
            return Ok(res
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{}", f.size))
                .body(Body::empty())
                .unwrap_or_default());
        }
    };
    let store = state.chat.media().store().clone();
    let hash = f.hash.clone();
    let file = tokio::task::spawn_blocking(move || store.open_file(&hash))
        .await
        .map_err(|e| AppError::from(ChatError::Internal(e.to_string())))?
        .map_err(|e| AppError::from(ChatError::Internal(e.to_string())))?;
    let mut file = tokio::fs::File::from_std(file);
    file.seek(SeekFrom::Start(start))
        .await
        .map_err(|e| AppError::from(ChatError::Internal(e.to_string())))?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 64 * 1024);
    Ok(res
        .status(status)
        .header(header::CONTENT_LENGTH, len)
        .body(Body::from_stream(stream))
        .unwrap_or_default())
}

/// `inline` for types browsers show safely, `attachment` otherwise, with the file name.
fn disposition(f: &Served) -> HeaderValue {
    let kind = if sniff::inline_safe(&f.content_type) {
        "inline"
    } else {
        "attachment"
    };
    let ascii: String = f
        .filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let value = format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{}",
        media::encode_component(&f.filename)
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// `GET /api/uploads/:key/download`: a signed content URL valid for an hour.
pub async fn download(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(key): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let caller = auth.caller(q.str("userId"));
    let u = state.chat.readable_upload(&caller, &key).await?;
    let token = state
        .media_signer
        .sign(&u.app_id, &key, now_s() + LINK_TTL_S);
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::LinkView {
        url: format!("{}&mediaToken={token}", media::content_path(&key)),
        expires_in: LINK_TTL_S,
    }))
}

/// `DELETE /api/uploads/:key`.
pub async fn delete(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(key): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("upload:write")?;
    let caller = auth.user_caller(q.str("userId"))?;
    state.chat.delete_upload(&caller, &key).await?;
    Ok(success())
}

/// `GET /api/channels/:id/uploads?limit&offset&type`.
pub async fn list(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(channel): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let caller = auth.caller(q.str("userId"));
    let limit = q.num("limit", 50, 100)? as usize;
    let offset = q.num("offset", 0, 100_000)? as usize;
    let all = state
        .chat
        .channel_uploads(&caller, &channel, q.str("type"), offset, limit)
        .await?;
    let signed: Vec<(String, Option<String>)> = all.iter().map(|u| urls(&state, u)).collect();
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::ListView {
        uploads: all
            .iter()
            .zip(signed)
            .map(|(u, (url, thumbnail_url))| v::ListedView {
                id: &u.id,
                key: &u.key,
                filename: &u.filename,
                content_type: &u.content_type,
                size: u.size,
                url,
                thumbnail_url,
                width: u.width,
                height: u.height,
                blurhash: u.blurhash.as_deref(),
                user_id: &u.user_id,
                created_at: Iso(u.created_at),
            })
            .collect(),
    }))
}
