//! Opening one connection: the transport, then `connect` and its reply.
//!
//! Kept apart from the session loop because it owns everything it needs (it runs while the
//! driver keeps serving handle requests) and because its failures map to reconnect decisions
//! differently: a refused `connect` carries a reply error, not a close code.

use std::net::SocketAddr;
use std::time::Duration;

use crate::protocol::{
    self, Command, ConnectParams, ConnectResult, Push, PushBody, Reply, ReplyError, ServerMessage,
    PONG,
};
use crate::wire::{self, Conn, Endpoint, Frame, QuicConnector, WireError, WireOptions};

/// The id of the `connect` command; session commands count from the next one.
pub(super) const CONNECT_ID: u32 = 1;

/// Everything needed to open a transport, owned.
pub(super) enum Dial {
    WebSocket {
        url: String,
        options: WireOptions,
    },
    Quic {
        connector: QuicConnector,
        addr: SocketAddr,
        server_name: String,
    },
}

/// An authenticated connection.
pub(super) struct Opened {
    pub(super) conn: Conn,
    pub(super) result: ConnectResult,
}

/// Why a connection could not be opened.
pub(super) enum HandshakeError {
    Wire(WireError),
    /// The server closed the connection (e.g. 3500 invalid token).
    Closed {
        code: u16,
        reason: String,
    },
    /// The server answered `connect` with an error (e.g. 109 token expired).
    Refused(ReplyError),
    /// No `connect` reply in time.
    Timeout,
    /// The server's answer could not be decoded.
    Protocol(String),
}

/// Opens the transport and authenticates with `params`; `timeout` bounds the wait for the
/// `connect` reply (the transport has its own connect timeout).
pub(super) async fn open(
    dial: Dial,
    params: ConnectParams,
    timeout: Duration,
) -> Result<Opened, HandshakeError> {
    let mut conn = match dial {
        Dial::WebSocket { url, options } => {
            wire::connect(&Endpoint::WebSocket(url), &options).await
        }
        Dial::Quic {
            connector,
            addr,
            server_name,
        } => connector.connect(addr, &server_name).await,
    }
    .map_err(HandshakeError::Wire)?;
    let frame = Command::Connect(params)
        .encode(CONNECT_ID)
        .map_err(|e| HandshakeError::Protocol(e.to_string()))?;
    conn.send(&frame).await.map_err(HandshakeError::Wire)?;
    let result = tokio::time::timeout(timeout, connect_reply(&mut conn))
        .await
        .map_err(|_| HandshakeError::Timeout)??;
    Ok(Opened { conn, result })
}

async fn connect_reply(conn: &mut Conn) -> Result<ConnectResult, HandshakeError> {
    loop {
        let bytes = match conn.recv().await.map_err(HandshakeError::Wire)? {
            Frame::Close { code, reason } => return Err(HandshakeError::Closed { code, reason }),
            Frame::Data(bytes) => bytes,
        };
        let message = protocol::decode(&bytes).map_err(|e| HandshakeError::Protocol(e.reason))?;
        match message {
            ServerMessage::Reply(Reply {
                id: CONNECT_ID,
                result,
            }) => {
                let value = result.map_err(HandshakeError::Refused)?;
                return serde_json::from_value(value)
                    .map_err(|e| HandshakeError::Protocol(format!("connect reply: {e}")));
            }
            ServerMessage::Push(Push {
                body: PushBody::Disconnect { code, reason, .. },
                ..
            }) => {
                let code = u16::try_from(code).unwrap_or(u16::MAX);
                return Err(HandshakeError::Closed { code, reason });
            }
            ServerMessage::Ping => conn.send(PONG).await.map_err(HandshakeError::Wire)?,
            // Bodies are not logged: they may hold message text.
            _ => tracing::debug!("ignored a server message before the connect reply"),
        }
    }
}
