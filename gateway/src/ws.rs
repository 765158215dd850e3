//! The realtime WebSocket endpoint (`/connection/websocket`), speaking the Centrifugo client
//! protocol (JSON).
//!
//! This module only adapts a WebSocket to [`crate::connection`]: text messages in (one or more
//! newline-separated frames each), batches of frames out as one newline-separated text message,
//! close frames carrying the protocol's close codes. Buffers are small: a 1 KiB read buffer
//! (`limits.ws_read_buffer_bytes`: every idle connection holds it; commands are mostly smaller,
//! and a larger frame is read in several reads) and no preallocated write buffer.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use chatsdk_actors::outbound::CloseReason;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};

use crate::connection::{self, FrameSink, FrameSource, Inbound};
use crate::state::GatewayState;

/// `GET /connection/websocket`.
pub async fn upgrade(State(state): State<GatewayState>, ws: WebSocketUpgrade) -> Response {
    let c = &state.config;
    ws.read_buffer_size(c.ws_read_buffer)
        .write_buffer_size(0)
        .max_message_size(c.ws_message_bytes)
        .max_frame_size(c.ws_frame_bytes)
        .on_upgrade(move |socket| {
            let (sink, stream) = socket.split();
            async move {
                // A stalled socket cannot take a close frame: dropping it is all that is left.
                let _ = connection::run(state, WsSource(stream), WsSink(sink)).await;
            }
        })
}

struct WsSource(SplitStream<WebSocket>);

impl FrameSource for WsSource {
    const TRANSPORT: &'static str = "websocket";
    type Text = Utf8Bytes;

    async fn next(&mut self) -> Inbound<Utf8Bytes> {
        match self.0.next().await {
            None | Some(Ok(Message::Close(_))) => Inbound::End,
            Some(Ok(Message::Text(t))) => Inbound::Text(t),
            // The JSON encoding is the contract; binary (protobuf) frames are refused.
            Some(Ok(Message::Binary(_))) => Inbound::Violation(CloseReason::BAD_REQUEST),
            Some(Ok(_)) => Inbound::Skip,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "websocket read failed");
                Inbound::Violation(CloseReason::BAD_REQUEST)
            }
        }
    }
}

struct WsSink(SplitSink<WebSocket, Message>);

impl FrameSink for WsSink {
    async fn send(&mut self, frames: Vec<Bytes>) -> Result<(), ()> {
        self.0.send(text_message(frames)).await.map_err(|_| ())
    }

    async fn close(mut self, reason: CloseReason) {
        let _ = self
            .0
            .send(Message::Close(Some(CloseFrame {
                code: reason.code,
                reason: Utf8Bytes::from_static(reason.reason),
            })))
            .await;
        let _ = self.0.close().await;
    }
}

fn text_message(frames: Vec<Bytes>) -> Message {
    let bytes = if frames.len() == 1 {
        frames.into_iter().next().unwrap_or_default()
    } else {
        let mut buf = BytesMut::with_capacity(frames.iter().map(|f| f.len() + 1).sum());
        for (i, f) in frames.iter().enumerate() {
            if i > 0 {
                buf.put_u8(b'\n');
            }
            buf.put_slice(f);
        }
        buf.freeze()
    };
    // Every frame is JSON we produced, so valid UTF-8; anything else is dropped, not sent.
    match Utf8Bytes::try_from(bytes) {
        Ok(t) => Message::Text(t),
        Err(_) => Message::Text(Utf8Bytes::from_static("")),
    }
}
