//! What a realtime call can fail with.

use crate::protocol::ReplyError;
use crate::wire::WireError;

/// Why a [`crate::Realtime`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered the command with an error (codes in `docs/protocol.md`: 102
    /// unknown channel, 103 permission denied, 104 method not found, 107 bad request, 109
    /// token expired, 111 too many requests, ...).
    #[error("server error {code}: {message}")]
    Server {
        code: u32,
        message: String,
        /// Whether the same call may succeed later.
        temporary: bool,
    },
    /// No reply within the request timeout (the command may still take effect).
    #[error("request timed out")]
    Timeout,
    /// The connection was lost after the command was sent and before its reply; whether it
    /// took effect is unknown.
    #[error("connection lost before the reply")]
    Disconnected,
    /// Writing the command failed; the connection is being reopened.
    #[error("transport: {0}")]
    Transport(#[from] WireError),
    /// The client is closed: [`crate::Realtime::close`] was called or it stopped for good
    /// (see the last [`crate::Event::Disconnected`]).
    #[error("client closed")]
    Closed,
    /// [`crate::Realtime::subscribe`] to a channel this client already subscribes to.
    #[error("already subscribed to {channel}")]
    AlreadySubscribed { channel: String },
    /// Too many calls are waiting for a connection.
    #[error("too many calls waiting for a connection (limit {limit})")]
    Busy { limit: usize },
    /// The reply does not have the shape of the method's result.
    #[error("malformed {method} reply: {reason}")]
    Decode {
        method: &'static str,
        reason: String,
    },
    /// The command could not be encoded (a payload serde cannot write as JSON).
    #[error("cannot encode command: {0}")]
    Encode(#[source] serde_json::Error),
}

impl ClientError {
    /// Whether retrying the same call later may succeed.
    pub fn is_temporary(&self) -> bool {
        match self {
            ClientError::Server { temporary, .. } => *temporary,
            ClientError::Timeout
            | ClientError::Disconnected
            | ClientError::Transport(_)
            | ClientError::Busy { .. } => true,
            ClientError::Closed
            | ClientError::AlreadySubscribed { .. }
            | ClientError::Decode { .. }
            | ClientError::Encode(_) => false,
        }
    }
}

impl From<ReplyError> for ClientError {
    fn from(e: ReplyError) -> Self {
        ClientError::Server {
            code: e.code,
            message: e.message,
            temporary: e.temporary,
        }
    }
}
