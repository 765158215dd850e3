//! The WebSocket transport: text messages, each holding one or more JSON objects separated by
//! `\n`. Reading splits a message into frames without copying (each frame is a slice of the
//! message's buffer); writing sends one object per message.

use std::collections::VecDeque;

use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{
    Conn, ConnReader, ConnWriter, Frame, FrameError, ReaderInner, WireError, WireOptions,
    WriterInner,
};

type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Bytes of frames the server batches into one message (beyond the first frame, which may be
/// larger on its own); separators come on top. Sizes the message limit.
const SERVER_BATCH_BYTES: usize = 64 * 1024;

pub(super) async fn connect(url: &str, options: &WireOptions) -> Result<Conn, WireError> {
    // A message is one frame larger than a batch, or a batch of smaller frames with their
    // separators; twice the larger of the two bounds both.
    let max_message = options
        .max_frame_bytes
        .max(SERVER_BATCH_BYTES)
        .saturating_mul(2);
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    // `wss://` goes through our rustls config (the ring provider, the options' trust).
    let connector = if url.starts_with("wss://") {
        Some(tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(
            super::tls::http_client_config(&options.tls)?,
        )))
    } else {
        None
    };
    let open = tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, connector);
    let (stream, _response) = tokio::time::timeout(options.connect_timeout, open)
        .await
        .map_err(|_| WireError::ConnectTimeout {
            target: url.to_string(),
            after: options.connect_timeout,
        })??;
    let (sink, stream) = stream.split();
    let reader = WsReader {
        stream,
        pending: VecDeque::new(),
        max_frame: options.max_frame_bytes,
    };
    Ok(Conn::new(
        ConnReader {
            inner: ReaderInner::Ws(reader),
            done: false,
        },
        ConnWriter {
            inner: WriterInner::Ws(WsWriter { sink }),
        },
    ))
}

pub(super) struct WsReader {
    stream: SplitStream<Stream>,
    /// Frames of the last message not returned yet.
    pending: VecDeque<Bytes>,
    max_frame: usize,
}

impl WsReader {
    pub(super) async fn recv(&mut self) -> Result<Frame, WireError> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Ok(Frame::Data(frame));
            }
            // Cancel-safe: nothing is held across this await.
            match self.stream.next().await {
                Some(Ok(Message::Text(text))) => {
                    split_lines(Bytes::from(text), self.max_frame, &mut self.pending)?
                }
                Some(Ok(Message::Binary(_))) => return Err(WireError::BinaryMessage),
                Some(Ok(Message::Close(frame))) => {
                    return Ok(match frame {
                        Some(f) => Frame::Close {
                            code: u16::from(f.code),
                            reason: f.reason.to_string(),
                        },
                        // No status in the close frame (RFC 6455 §7.4.1: 1005).
                        None => Frame::Close {
                            code: 1005,
                            reason: String::new(),
                        },
                    });
                }
                // Pings are answered by tungstenite; pongs and raw frames carry nothing.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err(WireError::Ended),
            }
        }
    }
}

/// Splits a message on `\n` into its non-blank lines, refusing any above `max` bytes.
fn split_lines(message: Bytes, max: usize, out: &mut VecDeque<Bytes>) -> Result<(), WireError> {
    let mut start = 0;
    for end in memchr_all(&message).chain(std::iter::once(message.len())) {
        let line = &message[start..end];
        if !line.iter().all(u8::is_ascii_whitespace) {
            if line.len() > max {
                out.clear();
                return Err(FrameError::TooLarge {
                    len: line.len() as u64,
                    max,
                }
                .into());
            }
            out.push_back(message.slice(start..end));
        }
        start = end + 1;
    }
    Ok(())
}

fn memchr_all(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter_map(|(i, b)| (*b == b'\n').then_some(i))
}

pub(super) struct WsWriter {
    sink: SplitSink<Stream, Message>,
}

impl WsWriter {
    pub(super) async fn send(&mut self, frame: &[u8]) -> Result<(), WireError> {
        let text =
            Utf8Bytes::try_from(Bytes::copy_from_slice(frame)).map_err(|_| WireError::NotUtf8)?;
        self.sink.send(Message::Text(text)).await?;
        Ok(())
    }

    pub(super) async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from(reason),
        };
        let _ = self.sink.send(Message::Close(Some(frame))).await;
        let _ = self.sink.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str, max: usize) -> Result<Vec<String>, WireError> {
        let mut out = VecDeque::new();
        split_lines(Bytes::from(text.to_string()), max, &mut out)?;
        Ok(out
            .into_iter()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect())
    }

    #[test]
    fn batched_messages_split_into_objects() {
        assert_eq!(
            lines("{\"id\":1}\n{}\n{\"push\":{}}", 64).unwrap(),
            ["{\"id\":1}", "{}", "{\"push\":{}}"]
        );
        assert_eq!(lines("{}", 64).unwrap(), ["{}"]);
        assert_eq!(lines("\n{}\r\n \n", 64).unwrap(), ["{}\r"]);
        assert!(lines("", 64).unwrap().is_empty());
    }

    #[test]
    fn an_oversized_object_fails_the_whole_message() {
        let big = format!("{{}}\n{}", "x".repeat(65));
        assert!(matches!(
            lines(&big, 64),
            Err(WireError::Frame(FrameError::TooLarge { len: 65, max: 64 }))
        ));
    }
}
