//! One error vocabulary for every surface.
//!
//! Each failure the product reports has one [`ErrorCode`]. The code decides, in one place, the
//! HTTP status, the stable upper-case code in the JSON error body
//! (`{"error": {"code", "message", "requestId"}}`), the Centrifugo reply error code, and — where
//! the failure ends a realtime connection — the WebSocket/QUIC close code and whether the client
//! should reconnect. Handlers never choose statuses or numbers themselves.

use serde::Serialize;

/// What went wrong, independent of the transport that reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Malformed input: bad JSON, invalid UTF-8, a missing or invalid field.
    BadRequest,
    /// No credentials, or credentials that are not valid (forged or unknown).
    Unauthorized,
    /// Valid credentials that have expired.
    TokenExpired,
    /// Authenticated, but not allowed to do this (not a member, wrong role, other app).
    Forbidden,
    /// The resource does not exist (or is not visible to the caller).
    NotFound,
    /// The realtime channel name is not one the server serves.
    UnknownChannel,
    /// The request conflicts with the current state (duplicate, already exists).
    Conflict,
    /// A realtime client subscribed to a channel it is already subscribed to.
    AlreadySubscribed,
    /// The body, frame or message is larger than the configured limit.
    PayloadTooLarge,
    /// A configured count limit was reached (connections, subscriptions, members).
    LimitExceeded,
    /// The caller sent too many requests; retry later.
    RateLimited,
    /// The route or realtime method does not exist.
    MethodNotFound,
    /// A realtime recovery position is older than the retained history or of another epoch.
    UnrecoverablePosition,
    /// The service cannot serve this right now (draining, no leader yet); retry later.
    Unavailable,
    /// A bug or an unexpected failure on our side.
    Internal,
    /// The user is banned from the app by its moderators (until the ban ends or is lifted).
    Banned,
    /// The user is banned from this channel or muted in it by its moderators.
    Restricted,
    /// A legal hold keeps the data from being deleted.
    LegalHold,
    /// An upload's declared size is past the limit of its content type.
    FileTooLarge,
    /// A file's bytes are not of a type uploads accept (or not of the type it claims).
    UnsupportedMediaType,
    /// An image that cannot be decoded safely: corrupt, truncated, or too many pixels.
    InvalidImage,
    /// A presigned upload was confirmed before its bytes arrived.
    UploadNotFound,
    /// A presigned upload's bytes or metadata differ from what was declared.
    UploadMetadataMismatch,
    /// A message attachment names an upload of another channel (or one not completed).
    AttachmentForbidden,
}

impl ErrorCode {
    /// Every code, for exhaustive tests and documentation.
    pub const ALL: [ErrorCode; 24] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::TokenExpired,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::UnknownChannel,
        ErrorCode::Conflict,
        ErrorCode::AlreadySubscribed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::LimitExceeded,
        ErrorCode::RateLimited,
        ErrorCode::MethodNotFound,
        ErrorCode::UnrecoverablePosition,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::Banned,
        ErrorCode::Restricted,
        ErrorCode::LegalHold,
        ErrorCode::FileTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::InvalidImage,
        ErrorCode::UploadNotFound,
        ErrorCode::UploadMetadataMismatch,
        ErrorCode::AttachmentForbidden,
    ];

    /// The stable code in JSON error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::TokenExpired => "TOKEN_EXPIRED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::UnknownChannel => "UNKNOWN_CHANNEL",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::AlreadySubscribed => "ALREADY_SUBSCRIBED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::MethodNotFound => "METHOD_NOT_FOUND",
            ErrorCode::UnrecoverablePosition => "UNRECOVERABLE_POSITION",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL_ERROR",
            ErrorCode::Banned => "USER_BANNED",
            ErrorCode::Restricted => "CHANNEL_RESTRICTED",
            ErrorCode::LegalHold => "LEGAL_HOLD_ACTIVE",
            ErrorCode::FileTooLarge => "FILE_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::InvalidImage => "INVALID_IMAGE",
            ErrorCode::UploadNotFound => "UPLOAD_NOT_FOUND",
            ErrorCode::UploadMetadataMismatch => "UPLOAD_METADATA_MISMATCH",
            ErrorCode::AttachmentForbidden => "ATTACHMENT_FORBIDDEN",
        }
    }

    /// The HTTP status a REST response carries.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::UnknownChannel
            | ErrorCode::FileTooLarge
            | ErrorCode::InvalidImage
            | ErrorCode::UploadNotFound
            | ErrorCode::UploadMetadataMismatch => 400,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Unauthorized | ErrorCode::TokenExpired => 401,
            ErrorCode::Forbidden
            | ErrorCode::Banned
            | ErrorCode::Restricted
            | ErrorCode::AttachmentForbidden => 403,
            ErrorCode::NotFound | ErrorCode::MethodNotFound => 404,
            ErrorCode::Conflict | ErrorCode::AlreadySubscribed => 409,
            ErrorCode::UnrecoverablePosition => 410,
            ErrorCode::LegalHold => 423,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::LimitExceeded | ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The Centrifugo client-protocol reply error code (`{"error": {"code", ...}}` of a reply).
    pub fn protocol_code(self) -> u32 {
        match self {
            ErrorCode::Internal => 100,
            ErrorCode::Unauthorized => 101,
            ErrorCode::UnknownChannel | ErrorCode::NotFound => 102,
            ErrorCode::Forbidden
            | ErrorCode::Banned
            | ErrorCode::Restricted
            | ErrorCode::LegalHold
            | ErrorCode::AttachmentForbidden => 103,
            ErrorCode::MethodNotFound => 104,
            ErrorCode::AlreadySubscribed => 105,
            ErrorCode::LimitExceeded | ErrorCode::PayloadTooLarge => 106,
            ErrorCode::BadRequest
            | ErrorCode::Conflict
            | ErrorCode::FileTooLarge
            | ErrorCode::UnsupportedMediaType
            | ErrorCode::InvalidImage
            | ErrorCode::UploadNotFound
            | ErrorCode::UploadMetadataMismatch => 107,
            ErrorCode::Unavailable => 108,
            ErrorCode::TokenExpired => 109,
            ErrorCode::RateLimited => 111,
            ErrorCode::UnrecoverablePosition => 112,
        }
    }

    /// Whether a realtime client may retry the same command later (`temporary` in replies).
    pub fn temporary(self) -> bool {
        matches!(
            self,
            ErrorCode::Unavailable | ErrorCode::RateLimited | ErrorCode::Internal
        )
    }

    /// The close code when this failure ends a realtime connection, if it does. Codes
    /// 3000–3499 ask the client to reconnect; 3500–3999 tell it not to.
    pub fn close_code(self) -> Option<u16> {
        match self {
            ErrorCode::Internal => Some(3004),
            ErrorCode::TokenExpired => Some(3005),
            ErrorCode::RateLimited => Some(3013),
            ErrorCode::Unauthorized => Some(3500),
            ErrorCode::BadRequest | ErrorCode::PayloadTooLarge | ErrorCode::MethodNotFound => {
                Some(3501)
            }
            ErrorCode::LimitExceeded => Some(3504),
            ErrorCode::Banned => Some(3503),
            _ => None,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as REST reports it: `{"error": {"code", "message", "requestId"}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub request_id: Option<String>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

impl ApiError {
    /// An error with a message for the caller (never secrets or internals).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            request_id: None,
        }
    }

    /// Attaches the request id the response echoes.
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// The JSON error body.
    pub fn to_json(&self) -> String {
        let envelope = Envelope {
            error: Body {
                code: self.code.as_str(),
                message: &self.message,
                request_id: self.request_id.as_deref(),
            },
        };
        // Serialising a struct of strings cannot fail; fall back to a fixed body regardless.
        serde_json::to_string(&envelope).unwrap_or_else(|_| {
            String::from(r#"{"error":{"code":"INTERNAL_ERROR","message":"error"}}"#)
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_upper_case_and_statuses_are_errors() {
        let names: HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            let name = code.as_str();
            assert!(
                name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{name}"
            );
            assert!((400..600).contains(&code.http_status()), "{name}");
            assert!((100..=112).contains(&code.protocol_code()), "{name}");
        }
    }

    #[test]
    fn centrifugo_codes_follow_the_protocol() {
        assert_eq!(ErrorCode::Internal.protocol_code(), 100);
        assert_eq!(ErrorCode::Unauthorized.protocol_code(), 101);
        assert_eq!(ErrorCode::UnknownChannel.protocol_code(), 102);
        assert_eq!(ErrorCode::Forbidden.protocol_code(), 103);
        assert_eq!(ErrorCode::MethodNotFound.protocol_code(), 104);
        assert_eq!(ErrorCode::AlreadySubscribed.protocol_code(), 105);
        assert_eq!(ErrorCode::LimitExceeded.protocol_code(), 106);
        assert_eq!(ErrorCode::BadRequest.protocol_code(), 107);
        assert_eq!(ErrorCode::Unavailable.protocol_code(), 108);
        assert_eq!(ErrorCode::TokenExpired.protocol_code(), 109);
        assert_eq!(ErrorCode::RateLimited.protocol_code(), 111);
        assert_eq!(ErrorCode::UnrecoverablePosition.protocol_code(), 112);
    }

    #[test]
    fn close_codes_say_whether_to_reconnect() {
        for code in ErrorCode::ALL {
            if let Some(close) = code.close_code() {
                let reconnect = (3000..3500).contains(&close);
                let terminal = (3500..4000).contains(&close);
                assert!(reconnect || terminal, "{code}: {close}");
                // A client must not reconnect with a bad token or a malformed stream.
                if matches!(code, ErrorCode::Unauthorized | ErrorCode::BadRequest) {
                    assert!(terminal, "{code}");
                }
            }
        }
        assert_eq!(ErrorCode::RateLimited.close_code(), Some(3013));
        assert_eq!(ErrorCode::Forbidden.close_code(), None);
    }

    #[test]
    fn json_body_has_the_one_shape() {
        let body = ApiError::new(ErrorCode::NotFound, "channel \"x\" not found")
            .with_request_id("req-1")
            .to_json();
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"error": {"code": "NOT_FOUND", "message": "channel \"x\" not found", "requestId": "req-1"}})
        );
        let bare: serde_json::Value =
            serde_json::from_str(&ApiError::new(ErrorCode::Internal, "boom").to_json()).unwrap();
        assert_eq!(bare["error"]["code"], "INTERNAL_ERROR");
        assert!(bare["error"].get("requestId").is_none());
    }
}
