//! Wire format of the transport, on top of QUIC streams.
//!
//! * A **frame** is a `u32` big-endian length followed by that many payload bytes. A reader
//!   checks the length against its limit *before* allocating, so a peer can never make us
//!   allocate more than the limit.
//! * A **request** is one bidirectional stream: the client writes one frame and finishes; the
//!   server answers with one **response** = a 1-byte [`Status`] followed by one frame, and
//!   finishes.
//! * A **one-way message** is one unidirectional stream carrying one frame.
//! * The **hello** is the first request on a cluster connection: an 8-byte big-endian node id
//!   each way.
//!
//! Stream reset / stop codes and connection close codes are named here too, so the meaning of
//! every number on the wire lives in one file.

use bytes::Bytes;
use quinn::{ReadError, ReadExactError, RecvStream, SendStream, VarInt, WriteError};

/// Size of a frame header (the payload length).
pub(crate) const FRAME_HEADER_LEN: usize = 4;
/// Size of the hello payload (a node id).
pub(crate) const HELLO_LEN: usize = 8;
/// Largest hello response payload accepted: a node id or the text of a refusal.
pub(crate) const MAX_HELLO_RESPONSE_BYTES: usize = 1024;
/// Size of the payload of a [`Status::TooLarge`] response: two `u64` (len, max).
const TOO_LARGE_PAYLOAD_LEN: usize = 16;

/// Server reset a response stream because `Faults::drop_to` discards its traffic to the client.
pub(crate) const RESET_DROPPED: VarInt = VarInt::from_u32(1);
/// Server abandoned the stream because it is shutting down.
pub(crate) const RESET_SHUTDOWN: VarInt = VarInt::from_u32(2);
/// Receiver stopped reading a frame that exceeds its limit.
pub(crate) const STOP_TOO_LARGE: VarInt = VarInt::from_u32(3);
/// Server gave up on a request it could not read whole.
pub(crate) const RESET_BAD_REQUEST: VarInt = VarInt::from_u32(4);

/// Orderly close (shutdown, finished join, replaced connection).
pub(crate) const CLOSE_NORMAL: VarInt = VarInt::from_u32(0);
/// A cluster connection without a verified client certificate.
pub(crate) const CLOSE_UNAUTHENTICATED: VarInt = VarInt::from_u32(1);
/// The hello was missing, malformed, or claimed a node the certificate was not issued to.
pub(crate) const CLOSE_BAD_HELLO: VarInt = VarInt::from_u32(2);
/// Anything else the protocol does not allow (unknown ALPN, streams a join connection may
/// not open).
pub(crate) const CLOSE_PROTOCOL: VarInt = VarInt::from_u32(3);
/// Too many connections of that kind at once; retry later.
pub(crate) const CLOSE_BUSY: VarInt = VarInt::from_u32(4);

/// First byte of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Status {
    /// The payload is the handler's response.
    Ok = 0,
    /// The payload is the handler's error text (join requests).
    Error = 1,
    /// The payload is the text of a refusal that happened before the handler ran.
    Refused = 2,
    /// The request frame exceeded the server's limit; payload = `len` and `max` as `u64` BE.
    TooLarge = 3,
}

impl Status {
    fn from_byte(byte: u8) -> Option<Status> {
        match byte {
            0 => Some(Status::Ok),
            1 => Some(Status::Error),
            2 => Some(Status::Refused),
            3 => Some(Status::TooLarge),
            _ => None,
        }
    }
}

/// A decoded response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Response {
    Ok(Bytes),
    Error(String),
    Refused(String),
    TooLarge { len: usize, max: usize },
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("stream finished inside a frame")]
    FinishedEarly,
    #[error("stream reset by peer with code {code}")]
    Reset { code: VarInt },
    #[error("connection lost: {0}")]
    ConnectionLost(#[source] quinn::ConnectionError),
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

impl From<ReadExactError> for FrameError {
    fn from(e: ReadExactError) -> Self {
        match e {
            ReadExactError::FinishedEarly(_) => FrameError::FinishedEarly,
            ReadExactError::ReadError(e) => e.into(),
        }
    }
}

impl From<ReadError> for FrameError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Reset(code) => FrameError::Reset { code },
            ReadError::ConnectionLost(e) => FrameError::ConnectionLost(e),
            ReadError::ClosedStream => FrameError::Malformed("read from a closed stream"),
            ReadError::IllegalOrderedRead => FrameError::Malformed("illegal ordered read"),
            ReadError::ZeroRttRejected => FrameError::Malformed("0-rtt rejected"),
        }
    }
}

/// Encodes a frame header, refusing payloads the `u32` length cannot describe.
pub(crate) fn encode_header(len: usize) -> Option<[u8; FRAME_HEADER_LEN]> {
    u32::try_from(len).ok().map(u32::to_be_bytes)
}

/// Decodes a frame header and checks the length against `max`.
pub(crate) fn decode_header(
    header: [u8; FRAME_HEADER_LEN],
    max: usize,
) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header);
    let len = usize::try_from(len).map_err(|_| FrameError::TooLarge {
        len: usize::MAX,
        max,
    })?;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// Reads one frame of at most `max` payload bytes.
pub(crate) async fn read_frame(recv: &mut RecvStream, max: usize) -> Result<Bytes, FrameError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    recv.read_exact(&mut header).await?;
    let len = decode_header(header, max)?;
    let mut payload = vec![0u8; len];
    recv.read_exact(&mut payload).await?;
    Ok(Bytes::from(payload))
}

/// Writes one frame. The caller has checked `payload.len()` against the limits.
pub(crate) async fn write_frame(send: &mut SendStream, payload: Bytes) -> Result<(), WriteError> {
    let header = encode_header(payload.len()).ok_or(WriteError::ClosedStream)?;
    send.write_all_chunks(&mut [Bytes::copy_from_slice(&header), payload])
        .await
}

/// Encodes a response into the status byte plus frame payload.
pub(crate) fn encode_response(response: &Response) -> (Status, Bytes) {
    match response {
        Response::Ok(body) => (Status::Ok, body.clone()),
        Response::Error(text) => (Status::Error, Bytes::copy_from_slice(text.as_bytes())),
        Response::Refused(text) => (Status::Refused, Bytes::copy_from_slice(text.as_bytes())),
        Response::TooLarge { len, max } => {
            let mut payload = Vec::with_capacity(TOO_LARGE_PAYLOAD_LEN);
            payload.extend_from_slice(&(*len as u64).to_be_bytes());
            payload.extend_from_slice(&(*max as u64).to_be_bytes());
            (Status::TooLarge, Bytes::from(payload))
        }
    }
}

/// Decodes a status byte and frame payload into a response.
pub(crate) fn decode_response(status: u8, payload: Bytes) -> Result<Response, FrameError> {
    let text = |payload: Bytes| String::from_utf8_lossy(&payload).into_owned();
    match Status::from_byte(status) {
        Some(Status::Ok) => Ok(Response::Ok(payload)),
        Some(Status::Error) => Ok(Response::Error(text(payload))),
        Some(Status::Refused) => Ok(Response::Refused(text(payload))),
        Some(Status::TooLarge) => {
            let bytes: [u8; TOO_LARGE_PAYLOAD_LEN] = payload
                .as_ref()
                .try_into()
                .map_err(|_| FrameError::Malformed("too-large response of the wrong size"))?;
            let (len, max) = bytes.split_at(8);
            let as_usize = |b: &[u8]| {
                let mut be = [0u8; 8];
                be.copy_from_slice(b);
                usize::try_from(u64::from_be_bytes(be)).unwrap_or(usize::MAX)
            };
            Ok(Response::TooLarge {
                len: as_usize(len),
                max: as_usize(max),
            })
        }
        None => Err(FrameError::Malformed("unknown response status")),
    }
}

/// Writes a response (status byte, then one frame).
pub(crate) async fn write_response(
    send: &mut SendStream,
    response: &Response,
) -> Result<(), WriteError> {
    let (status, payload) = encode_response(response);
    send.write_all(&[status as u8]).await?;
    write_frame(send, payload).await
}

/// Reads a response whose payload is at most `max` bytes.
pub(crate) async fn read_response(
    recv: &mut RecvStream,
    max: usize,
) -> Result<Response, FrameError> {
    let mut status = [0u8; 1];
    recv.read_exact(&mut status).await?;
    // Refusals and too-large notices are small; never let them claim more than a data frame.
    let payload = read_frame(recv, max.max(TOO_LARGE_PAYLOAD_LEN)).await?;
    decode_response(status[0], payload)
}

/// Encodes a hello payload.
pub(crate) fn encode_hello(node: u64) -> Bytes {
    Bytes::copy_from_slice(&node.to_be_bytes())
}

/// Decodes a hello payload.
pub(crate) fn decode_hello(payload: &[u8]) -> Result<u64, FrameError> {
    let bytes: [u8; HELLO_LEN] = payload
        .try_into()
        .map_err(|_| FrameError::Malformed("hello of the wrong size"))?;
    Ok(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_limit() {
        let header = encode_header(1234).unwrap();
        assert_eq!(decode_header(header, 1234).unwrap(), 1234);
        assert!(matches!(
            decode_header(header, 1233),
            Err(FrameError::TooLarge {
                len: 1234,
                max: 1233
            })
        ));
        assert!(matches!(
            decode_header([0xff; 4], 64),
            Err(FrameError::TooLarge { max: 64, .. })
        ));
    }

    #[test]
    fn responses_roundtrip() {
        for response in [
            Response::Ok(Bytes::from_static(b"hi")),
            Response::Error("nope".into()),
            Response::Refused("busy".into()),
            Response::TooLarge { len: 99, max: 10 },
        ] {
            let (status, payload) = encode_response(&response);
            assert_eq!(decode_response(status as u8, payload).unwrap(), response);
        }
    }

    #[test]
    fn malformed_responses_are_errors() {
        assert!(decode_response(9, Bytes::new()).is_err());
        assert!(decode_response(Status::TooLarge as u8, Bytes::from_static(b"short")).is_err());
    }

    #[test]
    fn hello_roundtrip() {
        assert_eq!(decode_hello(&encode_hello(42)).unwrap(), 42);
        assert!(decode_hello(b"short").is_err());
    }
}

/// The cluster wire format fed arbitrary bytes (`fuzz_` tests; `PROPTEST_CASES=...` for longer
/// runs): headers, responses, hellos and every message a peer or a joining node sends are
/// decoded or refused, never a panic, and no length prefix is allocated beyond the decode limit.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fuzz_frames_and_messages_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            status in any::<u8>(),
            header in any::<[u8; super::FRAME_HEADER_LEN]>(),
        ) {
            crate::fuzzing::wire(&bytes);
            let mut framed = header.to_vec();
            framed.push(status);
            framed.extend_from_slice(&bytes);
            crate::fuzzing::wire(&framed);
        }
    }
}
