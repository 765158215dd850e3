//! Entry points for fuzzing the decoders of this crate, shared by the `fuzz_` property tests
//! and the coverage-guided fuzzer (`fuzz/`, run by `scripts/fuzz`). Each takes bytes as they
//! arrive from a client; the verdict is ignored, a panic, a hang or an outsized allocation is
//! the finding.

use bytes::BytesMut;

use crate::framing;
use crate::realtime as command;

/// Largest QUIC frame the stream entry point accepts (the gateway's default is larger; a small
/// bound lets short inputs reach the refusal).
const QUIC_MAX: usize = 1024;

/// A WebSocket text message or one QUIC frame: newline-separated JSON commands.
pub fn client_frame(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = command::parse_frame(text);
        let _ = command::parse_command(text);
    }
}

/// A QUIC stream's bytes, arriving in chunks whose size the first byte sets, framed as the
/// gateway frames them: every frame taken must be whole and within the bound.
pub fn quic_stream(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first).max(1);
    let mut buf = BytesMut::new();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match framing::take_frame(&mut buf, QUIC_MAX) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= QUIC_MAX, "a frame past the bound was taken");
                    client_frame(&frame);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}
