//! One generator connection: a WebSocket over a TCP socket bound to a chosen source address
//! (so load spreads over 127.0.0.x and ephemeral ports never run out), or one of our QUIC
//! connections. It moves raw bytes; what they mean is the adapters' business.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use chatsdk_client::wire::{Conn, Frame};

/// An open generator connection.
pub enum Link {
    Ws(Box<WebSocketStream<TcpStream>>),
    Quic(Box<Conn>),
}

impl Link {
    /// Connects a WebSocket to `url` (served at `server`) from source address `src`.
    pub async fn websocket(src: Ipv4Addr, server: SocketAddr, url: &str) -> anyhow::Result<Link> {
        let socket = TcpSocket::new_v4()?;
        socket
            .bind(SocketAddr::from((src, 0)))
            .context("binding the source address")?;
        let stream = socket.connect(server).await.context("tcp connect")?;
        stream.set_nodelay(true)?;
        let mut config = WebSocketConfig::default();
        config.read_buffer_size = 4096;
        config.write_buffer_size = 0;
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
            .await
            .context("websocket upgrade")?;
        Ok(Link::Ws(Box::new(ws)))
    }

    /// Sends one frame (one text message; over QUIC one length-prefixed frame).
    pub async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        match self {
            Link::Ws(ws) => {
                let text = std::str::from_utf8(bytes).context("frames are utf-8")?;
                ws.send(Message::text(text)).await?;
            }
            Link::Quic(c) => c.send(bytes).await?,
        }
        Ok(())
    }

    /// The next data received (one WebSocket message or one QUIC frame); `None` once closed.
    pub async fn recv(&mut self) -> anyhow::Result<Option<Bytes>> {
        match self {
            Link::Ws(ws) => loop {
                match ws.next().await {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(Message::Text(t))) => return Ok(Some(Bytes::from(t))),
                    Some(Ok(Message::Binary(b))) => return Ok(Some(b)),
                    Some(Ok(Message::Close(_))) => return Ok(None),
                    Some(Ok(_)) => continue,
                }
            },
            Link::Quic(c) => match c.recv().await? {
                Frame::Data(b) => Ok(Some(b)),
                Frame::Close { .. } => Ok(None),
            },
        }
    }

    /// Closes politely.
    pub async fn close(&mut self) {
        match self {
            Link::Ws(ws) => {
                let _ = ws.send(Message::Close(None)).await;
            }
            Link::Quic(c) => c.close(1000, "").await,
        }
    }
}
