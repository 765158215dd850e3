//! A typed client of the ChatSDK REST API (`docs/api.md`).
//!
//! It exists for the calls a realtime user or a load generator needs around a connection:
//! minting tokens with a server key, creating channels and members, sending and listing
//! messages. Typed methods speak the Client API (a user's bearer token, camelCase bodies);
//! [`RestClient::call`] reaches any other route and returns raw JSON. Every error answer
//! becomes [`RestError::Api`] with the server's stable code; a failure to reach the server is
//! [`RestError::Transport`], so callers can tell "refused" from "not delivered".
//!
//! It holds no state beyond its credentials and a shared `reqwest` connection pool; clones
//! are cheap and share the pool.

mod types;

use reqwest::{header, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use types::{AddMembers, CreateToken, ErrorEnvelope, SendMessage};
pub use types::{AddedMembers, Channel, Message, MessagePage, NewChannel, Tokens};

/// Most characters of a non-JSON error body kept in [`RestError::Api::message`].
const MAX_ERROR_TEXT: usize = 512;

/// Why a REST call failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The server answered with an error: `code` is its stable code (`NOT_FOUND`,
    /// `FORBIDDEN`, `RATE_LIMITED`, ...; `HTTP_<status>` when the body is not the API's
    /// error shape).
    #[error("{status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// The request did not complete (connect, timeout, body read).
    #[error("http transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// The TLS settings for an `https://` server could not be made.
    #[error("tls configuration: {0}")]
    Tls(String),
    /// A success answer whose body is not what the route returns.
    #[error("unexpected response body from {path} ({status}): {reason}")]
    Decode {
        path: String,
        status: u16,
        reason: String,
    },
}

/// A REST client for one server, optionally with a server key and/or a user's token.
#[derive(Clone, Debug)]
pub struct RestClient {
    http: reqwest::Client,
    base: String,
    api_key: Option<String>,
    token: Option<String>,
}

impl RestClient {
    /// A client of the server at `base_url` (`http://host:port`), with its own connection pool.
    /// Redirects are not followed: `POST /api/channels` answers an existing DM with 303 and
    /// the channel in the body.
    pub fn new(base_url: impl Into<String>) -> Result<RestClient, RestError> {
        RestClient::with_trust(base_url, &crate::Trust::System)
    }

    /// A client of the server at `base_url`; an `https://` server's certificate is trusted per
    /// `trust` (the system's roots, given roots, or one pinned certificate).
    pub fn with_trust(
        base_url: impl Into<String>,
        trust: &crate::Trust,
    ) -> Result<RestClient, RestError> {
        let base_url = base_url.into();
        let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if base_url.starts_with("https://") {
            let tls = crate::wire::http_client_config(trust)
                .map_err(|e| RestError::Tls(e.to_string()))?;
            builder = builder.use_preconfigured_tls(tls);
        }
        Ok(RestClient::with_http(base_url, builder.build()?))
    }

    /// A client sharing `http`'s connection pool (for many users against one server).
    pub fn with_http(base_url: impl Into<String>, http: reqwest::Client) -> RestClient {
        let base = base_url.into().trim_end_matches('/').to_string();
        RestClient {
            http,
            base,
            api_key: None,
            token: None,
        }
    }

    /// Sends `X-API-Key: key` (the Server API; required by [`RestClient::create_token`]).
    pub fn with_api_key(mut self, key: impl Into<String>) -> RestClient {
        self.api_key = Some(key.into());
        self
    }

    /// Sends `Authorization: Bearer token` (a user's access token: the Client API).
    pub fn with_token(mut self, token: impl Into<String>) -> RestClient {
        self.token = Some(token.into());
        self
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /tokens` (server key): creates or updates user `user_id` and mints its tokens.
    pub async fn create_token(
        &self,
        user_id: &str,
        name: Option<&str>,
    ) -> Result<Tokens, RestError> {
        let body = CreateToken { user_id, name };
        self.typed(Method::POST, "/tokens", Some(&body)).await
    }

    /// `POST /tokens/refresh` with `refresh_token` as the bearer: a new bundle. Each refresh
    /// token works once; presenting a spent one revokes the whole login session.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, RestError> {
        let req = self
            .http
            .post(self.url("/tokens/refresh"))
            .bearer_auth(refresh_token);
        let (status, body) = self.execute(req).await?;
        decode("/tokens/refresh", status, body)
    }

    /// `POST /api/channels` (user token): creates a channel; its [`Channel::id`] names the
    /// realtime channel `chat:<app id>:<id>`.
    pub async fn create_channel(&self, channel: &NewChannel) -> Result<Channel, RestError> {
        self.typed(Method::POST, "/api/channels", Some(channel))
            .await
    }

    /// `POST /api/channels/:id/members` (owner, admin or moderator).
    pub async fn add_members(
        &self,
        channel_id: &str,
        user_ids: &[&str],
    ) -> Result<AddedMembers, RestError> {
        let path = format!("/api/channels/{}/members", segment(channel_id));
        self.typed(Method::POST, &path, Some(&AddMembers { user_ids }))
            .await
    }

    /// `POST /api/channels/:id/messages`: sends a message. A repeated `client_msg_id` of the
    /// same user returns the first message with [`Message::duplicate`] set.
    pub async fn send_message(
        &self,
        channel_id: &str,
        text: &str,
        client_msg_id: Option<&str>,
    ) -> Result<Message, RestError> {
        let path = format!("/api/channels/{}/messages", segment(channel_id));
        let body = SendMessage {
            text,
            client_msg_id,
        };
        self.typed(Method::POST, &path, Some(&body)).await
    }

    /// `GET /api/channels/:id/messages`: with `since_seq`, the messages after that sequence
    /// number in ascending order; without, the newest. `limit` is capped at 200 by the server.
    pub async fn list_messages(
        &self,
        channel_id: &str,
        since_seq: Option<u64>,
        limit: Option<u32>,
    ) -> Result<MessagePage, RestError> {
        let mut query = Vec::new();
        if let Some(seq) = since_seq {
            query.push(format!("since_seq={seq}"));
        }
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        let mut path = format!("/api/channels/{}/messages", segment(channel_id));
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        self.typed::<(), _>(Method::GET, &path, None).await
    }

    /// Any route: `path` (with its query) relative to the base URL, an optional JSON body,
    /// the answer as raw JSON (`Null` for an empty body).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, RestError> {
        self.typed(method, path, body).await
    }

    async fn typed<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, RestError> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(key) = &self.api_key {
            req = req.header("X-API-Key", key);
        }
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let (status, bytes) = self.execute(req).await?;
        decode(path, status, bytes)
    }

    async fn execute(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, bytes::Bytes), RestError> {
        let res = req
            .header(header::ACCEPT, "application/json")
            .send()
            .await?;
        let status = res.status();
        let request_id = res
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = res.bytes().await?;
        // 303 is how an existing DM is answered; its body is the channel.
        if status.is_success() || status == StatusCode::SEE_OTHER {
            return Ok((status, bytes));
        }
        Err(api_error(status, &bytes, request_id))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// Percent-encodes the characters that would break out of one path segment.
fn segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode<T: DeserializeOwned>(
    path: &str,
    status: StatusCode,
    bytes: bytes::Bytes,
) -> Result<T, RestError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        bytes::Bytes::from_static(b"null")
    } else {
        bytes
    };
    serde_json::from_slice(&bytes).map_err(|e| RestError::Decode {
        path: path.split('?').next().unwrap_or(path).to_string(),
        status: status.as_u16(),
        reason: e.to_string(),
    })
}

fn api_error(status: StatusCode, body: &[u8], header_request_id: Option<String>) -> RestError {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(ErrorEnvelope { error }) => RestError::Api {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
            request_id: error.request_id.or(header_request_id),
        },
        Err(_) => RestError::Api {
            status: status.as_u16(),
            code: format!("HTTP_{}", status.as_u16()),
            message: String::from_utf8_lossy(body)
                .chars()
                .take(MAX_ERROR_TEXT)
                .collect(),
            request_id: header_request_id,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_api_errors() {
        let body =
            br#"{"error":{"code":"NOT_FOUND","message":"channel not found","requestId":"r1"}}"#;
        match api_error(StatusCode::NOT_FOUND, body, None) {
            RestError::Api {
                status,
                code,
                message,
                request_id,
            } => {
                assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
                assert_eq!(message, "channel not found");
                assert_eq!(request_id.as_deref(), Some("r1"));
            }
            other => panic!("{other:?}"),
        }
        match api_error(StatusCode::BAD_GATEWAY, b"upstream down", Some("r2".into())) {
            RestError::Api {
                code,
                message,
                request_id,
                ..
            } => {
                assert_eq!(code, "HTTP_502");
                assert_eq!(message, "upstream down");
                assert_eq!(request_id.as_deref(), Some("r2"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ids_stay_one_path_segment() {
        assert_eq!(segment("0000-aa_b.c"), "0000-aa_b.c");
        assert_eq!(segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
    }

    #[test]
    fn empty_success_bodies_decode_as_null() {
        let v: Value = decode("/x", StatusCode::OK, bytes::Bytes::new()).unwrap();
        assert_eq!(v, Value::Null);
        let err = decode::<Tokens>("/tokens?x=1", StatusCode::OK, bytes::Bytes::from("42"));
        assert!(matches!(err, Err(RestError::Decode { path, .. }) if path == "/tokens"));
    }
}
