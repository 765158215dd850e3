//! One framed connection over either realtime transport, with no protocol parsing.
//!
//! The realtime protocol moves JSON objects; how they are delimited depends on the transport:
//! a WebSocket text message holds one or more objects separated by `\n` (the server batches),
//! a QUIC stream carries each object behind a varint length ([`varint`]). [`Conn`] hides that:
//! [`Conn::recv`] yields one [`Frame`] per JSON object, as raw bytes, and [`Conn::send`] writes
//! one. A server close (WebSocket close frame, or QUIC application close whose code is the
//! disconnect code) comes out as [`Frame::Close`], the same way on both.
//!
//! This layer exists so the typed client ([`crate::realtime`]) and a load generator share the
//! transports: a generator can [`Conn::split`] a connection, count and timestamp frames as
//! they arrive and never pay for JSON decoding it does not need. It owns sockets, TLS and
//! framing limits; it knows nothing of commands, replies or reconnects.

mod quic;
mod tls;

pub use chatsdk_proto::framing as varint;
pub use tls::http_client_config;
mod ws;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

pub use quic::QuicConnector;
pub use rustls::pki_types::CertificateDer;
pub use varint::FrameError;

/// Default largest incoming frame (one JSON object).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;
/// Default time allowed for a transport to open (TCP + WebSocket upgrade, or QUIC handshake).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// QUIC application-protocol name of the realtime endpoint.
pub const ALPN: &[u8] = b"chatsdk";

/// Where a realtime server listens.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// `ws://host:port/connection/websocket`.
    WebSocket(String),
    /// The server's QUIC endpoint (UDP), its TLS server name and how to trust its certificate.
    Quic {
        addr: SocketAddr,
        server_name: String,
        trust: QuicTrust,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::WebSocket(url) => f.write_str(url),
            Endpoint::Quic {
                addr, server_name, ..
            } => write!(f, "quic://{addr} ({server_name})"),
        }
    }
}

/// The name [`Trust`] had when only QUIC used it.
pub type QuicTrust = Trust;

/// How a TLS client (QUIC, `wss://`, `https://`) decides to trust the server's certificate.
#[derive(Clone, Debug, Default)]
pub enum Trust {
    /// WebPKI verification against the system's roots (the platform's certificate store),
    /// including the server name.
    #[default]
    System,
    /// Normal WebPKI verification against these roots, including the server name.
    Roots(Vec<CertificateDer<'static>>),
    /// Development: accept exactly this end-entity certificate (the server's self-signed one),
    /// whatever its name or dates. The TLS 1.3 handshake signature is still verified, so only
    /// the holder of the matching key gets through.
    Pinned(CertificateDer<'static>),
}

/// Limits of one connection.
#[derive(Clone, Debug)]
pub struct WireOptions {
    /// Largest incoming frame; a larger one fails the read with [`FrameError::TooLarge`]
    /// (WebSocket: the message is refused by the WebSocket layer).
    pub max_frame_bytes: usize,
    /// Time allowed for the transport to open.
    pub connect_timeout: Duration,
    /// How a `wss://` endpoint's certificate is trusted.
    pub tls: Trust,
}

impl Default for WireOptions {
    fn default() -> Self {
        WireOptions {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: Trust::System,
        }
    }
}

/// One unit read from a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The bytes of exactly one JSON object (not parsed or validated here).
    Data(Bytes),
    /// The server closed the connection with this disconnect code and reason. Nothing follows.
    Close { code: u16, reason: String },
}

/// Why a connection could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connecting to {target} timed out after {after:?}")]
    ConnectTimeout { target: String, after: Duration },
    #[error("websocket: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    #[error("cannot bind a udp socket for quic: {0}")]
    Bind(#[source] std::io::Error),
    #[error("tls configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("quic client configuration: {reason}")]
    QuicConfig { reason: String },
    #[error("quic connect: {0}")]
    QuicConnect(#[from] quinn::ConnectError),
    #[error("quic connection: {0}")]
    QuicConnection(#[from] quinn::ConnectionError),
    #[error("quic read: {0}")]
    QuicRead(#[from] quinn::ReadError),
    #[error("quic write: {0}")]
    QuicWrite(#[from] quinn::WriteError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the stream ended inside a frame")]
    Truncated,
    #[error("the server sent a binary websocket message")]
    BinaryMessage,
    #[error("a websocket frame must be utf-8 text")]
    NotUtf8,
    #[error("the connection ended without a close code")]
    Ended,
    #[error("the connection is closed")]
    Closed,
}

impl WireError {
    /// Whether retrying cannot help: the endpoint, its URL or the TLS settings are wrong.
    pub fn is_config_error(&self) -> bool {
        use tokio_tungstenite::tungstenite::Error as WsError;
        match self {
            WireError::Tls(_) | WireError::QuicConfig { .. } => true,
            WireError::WebSocket(e) => matches!(**e, WsError::Url(_) | WsError::HttpFormat(_)),
            WireError::QuicConnect(e) => matches!(
                e,
                quinn::ConnectError::InvalidServerName(_)
                    | quinn::ConnectError::InvalidRemoteAddress(_)
                    | quinn::ConnectError::UnsupportedVersion
            ),
            _ => false,
        }
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for WireError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        WireError::WebSocket(Box::new(e))
    }
}

/// Opens a connection to `endpoint`. For QUIC this binds a fresh UDP socket; to open many
/// connections from one socket, use a [`QuicConnector`].
pub async fn connect(endpoint: &Endpoint, options: &WireOptions) -> Result<Conn, WireError> {
    match endpoint {
        Endpoint::WebSocket(url) => ws::connect(url, options).await,
        Endpoint::Quic {
            addr,
            server_name,
            trust,
        } => {
            let connector = QuicConnector::for_peer(*addr, trust, options)?;
            connector.connect(*addr, server_name).await
        }
    }
}

/// An open connection: a [`ConnReader`] and a [`ConnWriter`] that can be used together or
/// [split](Conn::split) between tasks.
pub struct Conn {
    reader: ConnReader,
    writer: ConnWriter,
}

impl Conn {
    fn new(reader: ConnReader, writer: ConnWriter) -> Conn {
        Conn { reader, writer }
    }

    /// Writes one frame (one JSON object, UTF-8).
    pub async fn send(&mut self, frame: &[u8]) -> Result<(), WireError> {
        self.writer.send(frame).await
    }

    /// Reads the next frame; see [`ConnReader::recv`].
    pub async fn recv(&mut self) -> Result<Frame, WireError> {
        self.reader.recv().await
    }

    /// Closes the connection with a code and reason the server sees.
    pub async fn close(&mut self, code: u16, reason: &str) {
        self.writer.close(code, reason).await;
    }

    /// Separates the two directions, e.g. to read in one task and write in another.
    pub fn split(self) -> (ConnReader, ConnWriter) {
        (self.reader, self.writer)
    }
}

/// The receiving half of a [`Conn`].
pub struct ConnReader {
    inner: ReaderInner,
    done: bool,
}

enum ReaderInner {
    Ws(ws::WsReader),
    Quic(quic::QuicReader),
}

impl ConnReader {
    /// Reads the next frame. After a [`Frame::Close`] or an error, every call returns
    /// [`WireError::Closed`]. Cancel-safe: a `recv` dropped before it completes (in a
    /// `select!`) loses no frame.
    pub async fn recv(&mut self) -> Result<Frame, WireError> {
        if self.done {
            return Err(WireError::Closed);
        }
        let result = match &mut self.inner {
            ReaderInner::Ws(r) => r.recv().await,
            ReaderInner::Quic(r) => r.recv().await,
        };
        if !matches!(result, Ok(Frame::Data(_))) {
            self.done = true;
        }
        result
    }
}

/// The sending half of a [`Conn`].
pub struct ConnWriter {
    inner: WriterInner,
}

enum WriterInner {
    Ws(ws::WsWriter),
    Quic(quic::QuicWriter),
}

impl ConnWriter {
    /// Writes one frame (one JSON object, UTF-8).
    pub async fn send(&mut self, frame: &[u8]) -> Result<(), WireError> {
        match &mut self.inner {
            WriterInner::Ws(w) => w.send(frame).await,
            WriterInner::Quic(w) => w.send(frame).await,
        }
    }

    /// Closes the connection with `code` and `reason` (a WebSocket close frame, or a QUIC
    /// application close). Errors are ignored: the connection is gone either way.
    pub async fn close(&mut self, code: u16, reason: &str) {
        match &mut self.inner {
            WriterInner::Ws(w) => w.close(code, reason).await,
            WriterInner::Quic(w) => w.close(code, reason),
        }
    }
}
