//! The QUIC transport: one bidirectional stream per connection, opened by the client, each
//! frame a varint length and one JSON object ([`super::varint`]). The server ends a connection
//! with an application close whose code is the disconnect code and whose reason is its text;
//! the reader reports that as [`Frame::Close`].

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use quinn::{Connection, ConnectionError, ReadError, RecvStream, SendStream, VarInt};

use super::varint::{put_frame, take_frame};
use super::{
    tls, Conn, ConnReader, ConnWriter, Frame, QuicTrust, ReaderInner, WireError, WireOptions,
    WriterInner,
};

/// Largest chunk taken from the stream per read.
const READ_CHUNK: usize = 64 * 1024;
/// How long a reader that saw the server finish its stream waits for the close that follows.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Idle timeout we offer; the server's (ping interval + pong timeout + 5 s) is shorter and
/// wins, so protocol pings keep a live connection open without QUIC keep-alives.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A QUIC client endpoint (one UDP socket) with its TLS and transport settings, able to open
/// many connections. Clones share the socket.
#[derive(Clone)]
pub struct QuicConnector {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    options: WireOptions,
}

impl QuicConnector {
    /// Binds a UDP socket on `bind` (`0.0.0.0:0` for any IPv4 port) for connections that
    /// trust servers by `trust`. Needs a running tokio runtime.
    pub fn new(
        bind: SocketAddr,
        trust: &QuicTrust,
        options: &WireOptions,
    ) -> Result<QuicConnector, WireError> {
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls::client_config(trust)?)
            .map_err(|e| WireError::QuicConfig {
                reason: e.to_string(),
            })?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok())
            // The server opens no streams towards us.
            .max_concurrent_bidi_streams(VarInt::from_u32(0))
            .max_concurrent_uni_streams(VarInt::from_u32(0));
        config.transport_config(Arc::new(transport));
        let endpoint = quinn::Endpoint::client(bind).map_err(WireError::Bind)?;
        Ok(QuicConnector {
            endpoint,
            config,
            options: options.clone(),
        })
    }

    /// A connector bound to an ephemeral port of `peer`'s address family.
    pub fn for_peer(
        peer: SocketAddr,
        trust: &QuicTrust,
        options: &WireOptions,
    ) -> Result<QuicConnector, WireError> {
        let bind = match peer {
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        };
        QuicConnector::new(bind, trust, options)
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Opens a connection to `addr`, verifying the server as `server_name`, and its stream.
    pub async fn connect(&self, addr: SocketAddr, server_name: &str) -> Result<Conn, WireError> {
        let connecting = self
            .endpoint
            .connect_with(self.config.clone(), addr, server_name)?;
        let after = self.options.connect_timeout;
        let open = async {
            let conn = connecting.await?;
            let (send, recv) = conn.open_bi().await?;
            Ok::<_, ConnectionError>((conn, send, recv))
        };
        let (conn, send, recv) =
            tokio::time::timeout(after, open)
                .await
                .map_err(|_| WireError::ConnectTimeout {
                    target: addr.to_string(),
                    after,
                })??;
        let reader = QuicReader {
            conn: conn.clone(),
            recv,
            buf: BytesMut::new(),
            max_frame: self.options.max_frame_bytes,
        };
        let writer = QuicWriter {
            conn,
            send,
            buf: BytesMut::new(),
        };
        Ok(Conn::new(
            ConnReader {
                inner: ReaderInner::Quic(reader),
                done: false,
            },
            ConnWriter {
                inner: WriterInner::Quic(writer),
            },
        ))
    }
}

pub(super) struct QuicReader {
    conn: Connection,
    recv: RecvStream,
    /// Bytes read but not yet returned as frames.
    buf: BytesMut,
    max_frame: usize,
}

impl QuicReader {
    pub(super) async fn recv(&mut self) -> Result<Frame, WireError> {
        loop {
            if let Some(frame) = take_frame(&mut self.buf, self.max_frame)? {
                return Ok(Frame::Data(frame));
            }
            // Cancel-safe (quinn documents `read_chunk` so); the chunk is buffered at once.
            match self.recv.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) => {
                    // The server finished its side; its close (with the code) follows.
                    if !self.buf.is_empty() {
                        return Err(WireError::Truncated);
                    }
                    return match tokio::time::timeout(CLOSE_WAIT, self.conn.closed()).await {
                        Ok(e) => closed(e),
                        Err(_) => Err(WireError::Ended),
                    };
                }
                Err(ReadError::ConnectionLost(e)) => return closed(e),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A lost connection as a read result: the server's application close is a [`Frame::Close`].
fn closed(e: ConnectionError) -> Result<Frame, WireError> {
    match e {
        ConnectionError::ApplicationClosed(close) => Ok(Frame::Close {
            code: u16::try_from(close.error_code.into_inner()).unwrap_or(u16::MAX),
            reason: String::from_utf8_lossy(&close.reason).into_owned(),
        }),
        ConnectionError::LocallyClosed => Err(WireError::Closed),
        e => Err(e.into()),
    }
}

pub(super) struct QuicWriter {
    conn: Connection,
    send: SendStream,
    /// Reused encoding buffer: prefix and payload go out in one write.
    buf: BytesMut,
}

impl QuicWriter {
    pub(super) async fn send(&mut self, frame: &[u8]) -> Result<(), WireError> {
        self.buf.clear();
        put_frame(&mut self.buf, frame);
        self.send.write_all(&self.buf).await?;
        Ok(())
    }

    pub(super) fn close(&mut self, code: u16, reason: &str) {
        self.conn
            .close(VarInt::from_u32(u32::from(code)), reason.as_bytes());
    }
}
