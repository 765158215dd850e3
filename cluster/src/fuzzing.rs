//! Entry points for fuzzing the cluster's wire format, shared by the `fuzz_` property tests and
//! the coverage-guided fuzzer (`fuzz/`, run by `scripts/fuzz`). The input is what a peer or a
//! joining node could send; the verdict is ignored, a panic, a hang or an outsized allocation is
//! the finding.

use crate::transport::frame;

/// Largest frame the entry point accepts: small, so that short inputs reach the refusal.
const MAX_FRAME: usize = 1 << 20;

/// The input as a frame header (its first four bytes), a response status (the fifth) and a
/// payload (the rest), and the whole of it as every message a peer or a joining node sends.
pub fn wire(data: &[u8]) {
    if let Some((header, rest)) = data.split_first_chunk::<{ frame::FRAME_HEADER_LEN }>() {
        let _ = frame::decode_header(*header, MAX_FRAME);
        if let Some((&status, payload)) = rest.split_first() {
            let _ = frame::decode_response(status, bytes::Bytes::copy_from_slice(payload));
        }
    }
    let _ = frame::decode_hello(data);
    let _ = crate::codec::decode::<crate::wire::PeerRequest>(data);
    let _ = crate::codec::decode::<crate::wire::PeerResponse>(data);
    let _ = crate::codec::decode::<crate::join::JoinRequest>(data);
    let _ = crate::codec::decode::<crate::meta::MetaCommand>(data);
}
