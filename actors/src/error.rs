//! The domain's errors, each mapped to the one error vocabulary ([`ErrorCode`]).

use chatsdk_cluster::{ClusterError, StoreError};
use chatsdk_proto::ErrorCode;
use serde::{Deserialize, Serialize};

/// Why a chat operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ChatError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("too many messages; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The acting user is banned from the app (see `chat::moderation`).
    #[error("{0}")]
    Banned(String),
    /// The acting user is banned from the channel or muted in it.
    #[error("{0}")]
    Restricted(String),
    /// A legal hold keeps the data from being deleted.
    #[error("{0}")]
    LegalHold(String),
    /// An upload or attachment refused for a reason with its own code.
    #[error("{1}")]
    Media(MediaRefusal, String),
}

/// Why an upload or an attachment was refused (each has its own stable code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MediaRefusal {
    FileTooLarge,
    UnsupportedType,
    InvalidImage,
    NotReceived,
    Mismatch,
    ForeignAttachment,
    /// The bytes arrived past the limit (413).
    BodyTooLarge,
}

impl MediaRefusal {
    /// The code every surface reports it with.
    pub fn code(self) -> ErrorCode {
        match self {
            MediaRefusal::FileTooLarge => ErrorCode::FileTooLarge,
            MediaRefusal::UnsupportedType => ErrorCode::UnsupportedMediaType,
            MediaRefusal::InvalidImage => ErrorCode::InvalidImage,
            MediaRefusal::NotReceived => ErrorCode::UploadNotFound,
            MediaRefusal::Mismatch => ErrorCode::UploadMetadataMismatch,
            MediaRefusal::ForeignAttachment => ErrorCode::AttachmentForbidden,
            MediaRefusal::BodyTooLarge => ErrorCode::PayloadTooLarge,
        }
    }
}

impl ChatError {
    /// The code every surface reports this error with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ChatError::NotFound(_) => ErrorCode::NotFound,
            ChatError::Forbidden(_) => ErrorCode::Forbidden,
            ChatError::BadRequest(_) => ErrorCode::BadRequest,
            ChatError::Conflict(_) => ErrorCode::Conflict,
            ChatError::LimitExceeded(_) => ErrorCode::LimitExceeded,
            ChatError::RateLimited { .. } => ErrorCode::RateLimited,
            ChatError::Unavailable(_) => ErrorCode::Unavailable,
            ChatError::Internal(_) => ErrorCode::Internal,
            ChatError::Banned(_) => ErrorCode::Banned,
            ChatError::Restricted(_) => ErrorCode::Restricted,
            ChatError::LegalHold(_) => ErrorCode::LegalHold,
            ChatError::Media(r, _) => r.code(),
        }
    }

    pub(crate) fn not_found(what: &str) -> ChatError {
        ChatError::NotFound(what.to_string())
    }

    pub(crate) fn forbidden(why: &str) -> ChatError {
        ChatError::Forbidden(why.to_string())
    }

    pub(crate) fn bad(why: impl Into<String>) -> ChatError {
        ChatError::BadRequest(why.into())
    }
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        ChatError::Internal(format!("storage: {e}"))
    }
}

impl From<ClusterError> for ChatError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::ShuttingDown => ChatError::Unavailable("node is shutting down".into()),
            ClusterError::CommandTooLarge { len, max } => {
                ChatError::BadRequest(format!("request of {len} bytes exceeds {max}"))
            }
            e if e.is_retryable() => ChatError::Unavailable(e.to_string()),
            ClusterError::Timeout { .. } => ChatError::Unavailable(e.to_string()),
            e => ChatError::Internal(e.to_string()),
        }
    }
}
