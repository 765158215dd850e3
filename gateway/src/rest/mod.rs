//! REST handlers, one module per resource. Each handler authenticates with [`crate::auth`]
//! extractors, calls the chat service, and answers a typed view in the caller's dialect
//! ([`reply!`]): camelCase for the Client API, snake_case for the Server API.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::AppError;

/// Answers `$status` with a view rendered in `$dialect`: the expression after `=>` is written
/// once and evaluated with `$v` naming the calling module's `camel` or `snake` views (declared
/// with `chatsdk_actors::dialect_views!`), so each dialect's spelling comes from its derive.
macro_rules! reply {
    ($dialect:expr, $status:expr, $v:ident => $view:expr) => {
        match $dialect {
            chatsdk_actors::dialect::Dialect::Camel => {
                use self::camel as $v;
                $crate::rest::json($status, &$view)
            }
            chatsdk_actors::dialect::Dialect::Snake => {
                use self::snake as $v;
                $crate::rest::json($status, &$view)
            }
        }
    };
}

pub mod admin;
pub mod annotations;
pub mod backup;
pub mod blocks;
pub mod by_message;
pub mod channels;
pub mod cluster;
pub mod devices;
pub mod emoji;
pub mod enrollment;
pub mod health;
pub mod keys;
pub mod lifecycle;
pub mod mentions;
pub mod messages;
pub mod moderation;
pub mod presence;
pub mod receipts;
pub mod requests;
pub mod search;
pub mod supervision;
pub mod templates;
pub mod tokens;
pub mod uploads;
pub mod users;
pub mod webhooks;
pub mod workspaces;

/// A JSON response with `status`.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut res = (status, bytes).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            res
        }
        Err(e) => AppError::new(
            chatsdk_proto::ErrorCode::Internal,
            format!("response did not serialize: {e}"),
        )
        .into_response(),
    }
}

/// A JSON response with `status` whose body the server already holds as JSON text (sent as
/// is: pass only JSON the server produced).
pub fn json_text(status: StatusCode, body: std::sync::Arc<str>) -> Response {
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// `{"success": true}`, the answer of actions that return nothing else (one word: the same in
/// both dialects).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Success {
    pub success: bool,
}

/// The signer and the time (seconds) that media URLs in a response are signed with.
pub fn media_signing(state: &crate::GatewayState) -> (&chatsdk_actors::media::MediaSigner, u64) {
    (&state.media_signer, chatsdk_actors::time::now_ms() / 1000)
}

/// `200 {"success": true}`.
pub fn success() -> Response {
    json(StatusCode::OK, &Success { success: true })
}
