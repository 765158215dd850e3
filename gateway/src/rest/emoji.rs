//! Custom emoji: upload (multipart: `file`, `workspaceId`, `name`, `category`), list, search,
//! get, delete, use, analytics, and the image (public by id, cached for good: it is
//! content-addressed).

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chatsdk_actors::chat::MAX_EMOJI_BYTES;
use chatsdk_actors::model::Emoji;
use chatsdk_actors::render::Iso;
use chatsdk_actors::NewEmoji;
use chatsdk_proto::ErrorCode;

use super::requests::ActingUser;
use super::success;
use crate::auth::extract::Auth;
use crate::body::{Form, Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

/// Text fields of an upload are short.
const MAX_FIELD_BYTES: usize = 1024;
/// What an upload's body may hold beyond its image: the form's other fields and framing.
pub const FORM_OVERHEAD_BYTES: usize = 64 * 1024;

/// A multipart error as the API reports it: a body past its limit is 413.
fn form_error(e: axum::extract::multipart::MultipartError) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::new(
            ErrorCode::PayloadTooLarge,
            format!("an emoji image is at most {MAX_EMOJI_BYTES} bytes"),
        )
    } else {
        AppError::bad(format!("malformed multipart body: {e}"))
    }
}

/// `POST /api/emoji/:id/use`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UseBody {
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
    #[serde(alias = "message_id")]
    message_id: String,
}

chatsdk_actors::dialect_views! {
    scope: emoji;
    records: chatsdk_actors::render;
    types {
        /// An emoji.
        pub struct EmojiView<'a> {
            pub id: &'a str,
            pub workspace_id: &'a str,
            pub name: &'a str,
            pub image_url: String,
            pub content_type: &'a str,
            pub size: u64,
            pub category: Option<&'a str>,
            pub created_by: Option<&'a str>,
            pub usage_count: u64,
            pub created_at: Iso,
        }

        /// A list of emoji.
        pub struct EmojiList<'a> {
            pub emoji: Vec<EmojiView<'a>>,
        }

        /// A user's uses of an emoji.
        pub struct TopUser<'a> {
            pub user_id: &'a str,
            pub count: u64,
        }

        /// Uses on one day.
        pub struct DayUses {
            pub date: String,
            pub count: u64,
        }

        /// `GET /api/emoji/:id/analytics`.
        pub struct Analytics<'a> {
            pub emoji_id: &'a str,
            pub total_uses: u64,
            pub top_users: Vec<TopUser<'a>>,
            pub usage_over_time: Vec<DayUses>,
        }
    }
    impls {
        impl<'a> EmojiView<'a> {
            pub fn new(e: &'a Emoji, uses: u64) -> Self {
                EmojiView {
                    id: &e.id,
                    workspace_id: &e.workspace_id,
                    name: &e.name,
                    image_url: format!("/api/emoji/{}/image?app={}", e.id, e.app_id),
                    content_type: &e.content_type,
                    size: e.size,
                    category: e.category.as_deref(),
                    created_by: e.created_by.as_deref(),
                    usage_count: uses,
                    created_at: Iso(e.created_at),
                }
            }
        }
    }
}

/// A text field of the upload, at most [`MAX_FIELD_BYTES`].
async fn text(field: axum::extract::multipart::Field<'_>, name: &str) -> ApiResult<String> {
    let bytes = field.bytes().await.map_err(form_error)?;
    if bytes.len() > MAX_FIELD_BYTES {
        return Err(AppError::bad(format!("{name} is too long")));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| AppError::bad(format!("{name} must be UTF-8")))
}

/// `POST /api/emoji` (multipart).
pub async fn create(
    State(state): State<GatewayState>,
    auth: Auth,
    Form(mut form): Form,
) -> ApiResult<Response> {
    let (mut ws, mut name, mut category, mut user, mut file) = (None, None, None, None, None);
    while let Some(mut field) = form.next_field().await.map_err(form_error)? {
        match field.name().unwrap_or_default() {
            "file" => {
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(form_error)? {
                    if bytes.len() + chunk.len() > MAX_EMOJI_BYTES {
                        return Err(AppError::new(
                            ErrorCode::PayloadTooLarge,
                            format!("an emoji image is at most {MAX_EMOJI_BYTES} bytes"),
                        ));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                file = Some(bytes);
            }
            "workspaceId" | "workspace_id" => ws = Some(text(field, "workspaceId").await?),
            "name" => name = Some(text(field, "name").await?),
            "category" => category = Some(text(field, "category").await?),
            "userId" | "user_id" => user = Some(text(field, "user_id").await?),
            _ => {}
        }
    }
    let caller = auth.user_caller(user)?;
    let new = NewEmoji {
        workspace_id: ws.ok_or_else(|| AppError::bad("workspaceId is required"))?,
        name: name.ok_or_else(|| AppError::bad("name is required"))?,
        category: category.filter(|c| !c.is_empty()),
        bytes: file.ok_or_else(|| AppError::bad("file is required"))?,
    };
    let e = state.chat.create_emoji(&caller, new).await?;
    Ok(reply!(auth.dialect, StatusCode::CREATED, v => v::EmojiView::new(&e, 0)))
}

async fn listed(
    state: &GatewayState,
    auth: &Auth,
    q: &Query,
    search: Option<String>,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let ws = q
        .str("workspaceId")
        .ok_or_else(|| AppError::bad("workspaceId is required"))?;
    let all = state
        .chat
        .workspace_emoji(
            &caller,
            &ws,
            q.str("category").as_deref(),
            search.as_deref(),
        )
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::EmojiList {
        emoji: all.iter().map(|(e, n)| v::EmojiView::new(e, *n)).collect(),
    }))
}

/// `GET /api/emoji?workspaceId&category`.
pub async fn list(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    listed(&state, &auth, &q, None).await
}

/// `GET /api/emoji/search/query?q&workspaceId`.
pub async fn search(
    State(state): State<GatewayState>,
    auth: Auth,
    q: Query,
) -> ApiResult<Response> {
    let text = q.str("q").unwrap_or_default();
    if text.chars().count() > 64 {
        return Err(AppError::bad("q must be at most 64 characters"));
    }
    listed(&state, &auth, &q, Some(text)).await
}

/// `GET /api/emoji/:id`.
pub async fn get(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let (e, n) = state.chat.emoji(&auth.caller(q.str("userId")), &id).await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::EmojiView::new(&e, n)))
}

/// `DELETE /api/emoji/:id`.
pub async fn delete(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
    Typed(body): Typed<ActingUser>,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId").or(body.user_id));
    state.chat.delete_emoji(&caller, &id).await?;
    Ok(success())
}

/// `POST /api/emoji/:id/use`.
pub async fn use_emoji(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<UseBody>,
) -> ApiResult<Response> {
    let caller = auth.user_caller(body.user_id)?;
    state.chat.use_emoji(&caller, &id, &body.message_id).await?;
    Ok(success())
}

/// `GET /api/emoji/:id/analytics`.
pub async fn analytics(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let u = state
        .chat
        .emoji_analytics(&auth.caller(q.str("userId")), &id)
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Analytics {
        emoji_id: &id,
        total_uses: u.total,
        top_users: u
            .top_users
            .iter()
            .map(|(user, count)| v::TopUser {
                user_id: user,
                count: *count,
            })
            .collect(),
        usage_over_time: u
            .days
            .iter()
            .map(|(day, count)| v::DayUses {
                date: chatsdk_actors::time::iso(day * 86_400_000)[..10].to_string(),
                count: *count,
            })
            .collect(),
    }))
}

/// `GET /api/emoji/:id/image?app=<app id>`: public, like a CDN URL (an `<img>` sends no
/// token); the app names the tenant, the id the emoji.
pub async fn image(
    State(state): State<GatewayState>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let app = q
        .str("app")
        .ok_or_else(|| AppError::bad("app is required"))?;
    let (content_type, bytes, hash) = state.chat.emoji_image(&app, &id).await?;
    let mut res = (StatusCode::OK, bytes).into_response();
    let headers = res.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::ETAG, format!("\"{hash}\"")),
        (
            header::CACHE_CONTROL,
            "public, max-age=31536000, immutable".to_string(),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    Ok(res)
}
