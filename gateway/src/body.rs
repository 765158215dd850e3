//! Typed JSON request bodies and camelCase-normalised queries, with our error shape on failure.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde_json::{Map, Value};

use crate::error::AppError;
use crate::state::GatewayState;

/// Reads a request body within the configured size and time limits.
async fn read_body(req: Request, state: &GatewayState) -> Result<axum::body::Bytes, AppError> {
    // A body that trickles in holds a connection slot: it gets as long as the headers did.
    let read = axum::body::to_bytes(req.into_body(), state.config.body_limit);
    tokio::time::timeout(state.config.header_read_timeout * 3, read)
        .await
        .map_err(|_| AppError::bad("request body not received in time"))?
        .map_err(|_| {
            AppError::new(
                chatsdk_proto::ErrorCode::PayloadTooLarge,
                format!("request body exceeds {} bytes", state.config.body_limit),
            )
        })
}

/// A JSON body decoded straight into an endpoint's request type (an empty body is `{}`).
/// Request types name their fields in camelCase and accept the Server API's snake_case names
/// as aliases, so no keys are rewritten at runtime.
pub struct Typed<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<GatewayState> for Typed<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &GatewayState) -> Result<Self, AppError> {
        let bytes = read_body(req, state).await?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(Typed).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                AppError::bad(format!(
                    "malformed JSON at line {} column {}",
                    e.line(),
                    e.column()
                ))
            } else {
                AppError::bad(format!("invalid request body: {e}"))
            }
        })
    }
}

/// A `multipart/form-data` body, read as the handler goes; a request that is not one (no
/// boundary, another content type) is refused with our error shape, not axum's plain text.
pub struct Form(pub axum::extract::Multipart);

impl FromRequest<GatewayState> for Form {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &GatewayState) -> Result<Self, AppError> {
        axum::extract::Multipart::from_request(req, state)
            .await
            .map(Form)
            .map_err(|e| {
                AppError::bad(format!(
                    "expected a multipart/form-data body: {}",
                    e.body_text()
                ))
            })
    }
}

/// Query parameters, keys in camelCase.
pub struct Query(pub Map<String, Value>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        let mut map = Map::new();
        for pair in parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k).ok_or_else(|| AppError::bad("malformed query string"))?;
            let v = percent_decode(v).ok_or_else(|| AppError::bad("malformed query string"))?;
            map.insert(chatsdk_actors::dialect::camel_key(&k), Value::String(v));
        }
        Ok(Query(map))
    }
}

impl Query {
    pub fn str(&self, key: &str) -> Option<String> {
        self.0
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .filter(|s| !s.is_empty())
    }
    /// A non-negative integer parameter, clamped to `max`.
    pub fn num(&self, key: &str, default: u64, max: u64) -> Result<u64, AppError> {
        match self.str(key) {
            None => Ok(default),
            Some(s) => s
                .parse::<u64>()
                .map(|n| n.min(max))
                .map_err(|_| AppError::bad(format!("{key} must be a non-negative integer"))),
        }
    }
}

/// An optional ISO-8601 time field (`None` or empty: absent); anything else is a 400 naming
/// `field`.
pub fn iso_time(field: &str, value: Option<&str>) -> Result<Option<u64>, AppError> {
    match value {
        None | Some("") => Ok(None),
        Some(s) => chatsdk_actors::time::parse_iso(s)
            .map(Some)
            .ok_or_else(|| AppError::bad(format!("{field} must be an ISO-8601 date and time"))),
    }
}

/// Decodes `%XX` and `+`; None on invalid escapes or UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    chatsdk_actors::media::decode_component(s)
}
