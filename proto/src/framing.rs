//! The QUIC stream framing, free of IO: each frame is an unsigned LEB128 varint length (as
//! protobuf and Go's `binary.Uvarint` write it) followed by exactly that many bytes of one JSON
//! object.
//!
//! It lives in the shared protocol crate because both ends speak it (the server's QUIC endpoint
//! and the client SDK), and apart from any transport so every edge (a prefix split across
//! reads, a truncated frame, an over-long or overflowing prefix, a frame above the limit) is
//! tested without a socket. Decoding never panics: the peer controls every byte.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Longest LEB128 encoding of a u64.
pub const MAX_VARINT_BYTES: usize = 10;

/// Most bytes reserved ahead of a frame's arrival, however large its prefix says it is.
const MAX_RESERVE: usize = 64 * 1024;

/// Why bytes read from a stream are not a valid frame sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix runs past ten bytes or does not fit in a u64.
    #[error("frame length prefix is longer than {MAX_VARINT_BYTES} bytes or overflows u64")]
    BadPrefix,
    /// The announced frame is larger than the reader accepts.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u64, max: usize },
}

/// Appends `value` as LEB128 (7 bits per byte, low bits first, high bit = more follows).
pub fn put_varint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// Reads a varint from the front of `bytes`: `Ok(None)` while the prefix is incomplete,
/// otherwise the value and how many bytes it took. Like Go's `binary.Uvarint`, a non-minimal
/// encoding is accepted but an eleventh byte or a tenth byte above 1 is an overflow.
pub fn get_varint(bytes: &[u8]) -> Result<Option<(u64, usize)>, FrameError> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().take(MAX_VARINT_BYTES).enumerate() {
        if i == MAX_VARINT_BYTES - 1 && b > 1 {
            return Err(FrameError::BadPrefix);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= MAX_VARINT_BYTES {
        Err(FrameError::BadPrefix)
    } else {
        Ok(None)
    }
}

/// Appends one frame (`prefix + payload`) to `out`.
pub fn put_frame(out: &mut BytesMut, payload: &[u8]) {
    out.reserve(MAX_VARINT_BYTES + payload.len());
    put_varint(out, payload.len() as u64);
    out.put_slice(payload);
}

/// Takes the next complete frame off the front of `buf`: `Ok(None)` until all its bytes are
/// there. A frame announced larger than `max` is refused as soon as its prefix is read, before
/// its bytes are buffered.
pub fn take_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    let Some((len, used)) = get_varint(buf)? else {
        return Ok(None);
    };
    if len > max as u64 {
        return Err(FrameError::TooLarge { len, max });
    }
    let too_large = FrameError::TooLarge { len, max };
    let len = usize::try_from(len).map_err(|_| too_large)?;
    let needed = used.checked_add(len).ok_or(too_large)?;
    if buf.len() < needed {
        // Grow towards the frame, but never by more than a chunk on the prefix's word alone.
        buf.reserve((needed - buf.len()).min(MAX_RESERVE));
        return Ok(None);
    }
    buf.advance(used);
    Ok(Some(buf.split_to(len).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(v: u64) -> BytesMut {
        let mut buf = BytesMut::new();
        put_varint(&mut buf, v);
        buf
    }

    #[test]
    fn varints_round_trip_and_match_protobuf() {
        assert_eq!(&encoded(0)[..], [0x00]);
        assert_eq!(&encoded(1)[..], [0x01]);
        assert_eq!(&encoded(127)[..], [0x7f]);
        assert_eq!(&encoded(128)[..], [0x80, 0x01]);
        assert_eq!(&encoded(300)[..], [0xac, 0x02]);
        assert_eq!(encoded(u64::MAX).len(), MAX_VARINT_BYTES);
        for v in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let buf = encoded(v);
            assert_eq!(get_varint(&buf), Ok(Some((v, buf.len()))), "{v}");
        }
    }

    #[test]
    fn truncated_prefixes_ask_for_more() {
        for v in [128, 300, 1 << 40, u64::MAX] {
            let buf = encoded(v);
            for cut in 0..buf.len() {
                assert_eq!(get_varint(&buf[..cut]), Ok(None), "{v} cut at {cut}");
            }
        }
    }

    #[test]
    fn over_long_and_overflowing_prefixes_are_refused() {
        assert_eq!(get_varint(&[0xff; 11]), Err(FrameError::BadPrefix));
        assert_eq!(get_varint(&[0x80; 10]), Err(FrameError::BadPrefix));
        let mut overflow = vec![0xff; 9];
        overflow.push(0x02);
        assert_eq!(get_varint(&overflow), Err(FrameError::BadPrefix));
        // Non-minimal but in range: accepted, as Go does.
        assert_eq!(get_varint(&[0x81, 0x00]), Ok(Some((1, 2))));
    }

    #[test]
    fn frames_split_across_reads_come_out_whole_and_in_order() {
        let mut wire = BytesMut::new();
        put_frame(&mut wire, b"{\"id\":1}");
        put_frame(&mut wire, b"{}");
        put_frame(&mut wire, &[b'x'; 300]);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in wire.iter() {
            buf.put_u8(*b);
            while let Some(frame) = take_frame(&mut buf, 1024).unwrap() {
                out.push(frame);
            }
        }
        assert_eq!(out.len(), 3);
        assert_eq!(&out[0][..], b"{\"id\":1}");
        assert_eq!(&out[1][..], b"{}");
        assert_eq!(out[2].len(), 300);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_truncated_frame_waits_and_an_empty_frame_is_a_frame() {
        let mut buf = BytesMut::new();
        put_frame(&mut buf, b"hello");
        buf.truncate(4);
        assert_eq!(take_frame(&mut buf, 64), Ok(None));
        assert_eq!(buf.len(), 4, "nothing consumed while incomplete");
        let mut empty = BytesMut::from(&[0u8][..]);
        assert_eq!(take_frame(&mut empty, 64), Ok(Some(Bytes::new())));
    }

    #[test]
    fn frames_above_the_limit_are_refused_before_buffering() {
        let mut buf = encoded(65);
        assert_eq!(
            take_frame(&mut buf, 64),
            Err(FrameError::TooLarge { len: 65, max: 64 })
        );
        let mut huge = encoded(u64::MAX);
        assert!(matches!(
            take_frame(&mut huge, usize::MAX),
            Ok(None) | Err(FrameError::TooLarge { .. })
        ));
        let mut bad = BytesMut::from(&[0xffu8; 12][..]);
        assert_eq!(take_frame(&mut bad, 64), Err(FrameError::BadPrefix));
    }
}
