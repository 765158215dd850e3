//! The QUIC realtime framing, free of IO: each frame is an unsigned LEB128 varint length (as
//! protobuf and Go's `binary.Uvarint` write it) followed by that many bytes of one JSON object.
//!
//! It lives apart from the endpoint so the codec can be tested on every edge (split varints,
//! over-long prefixes, frames above the limit) without a socket.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Longest encoding of a u64 as LEB128.
const MAX_VARINT_BYTES: usize = 10;

/// Why the bytes a client sent are not a valid frame stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length prefix is longer than {MAX_VARINT_BYTES} bytes or overflows")]
    BadPrefix,
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u64, max: usize },
}

/// Appends `value` as LEB128.
pub fn put_varint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// Reads a varint from the front of `bytes`: `Ok(None)` when more bytes are needed, otherwise
/// the value and how many bytes it took.
pub fn get_varint(bytes: &[u8]) -> Result<Option<(u64, usize)>, FrameError> {
    let mut value: u64 = 0;
    for (i, b) in bytes.iter().take(MAX_VARINT_BYTES).enumerate() {
        let part = u64::from(b & 0x7f);
        if i == MAX_VARINT_BYTES - 1 && *b > 1 {
            return Err(FrameError::BadPrefix);
        }
        value |= part << (7 * i);
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

/// Takes the next complete frame off the front of `buf`, if there is one.
pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    let Some((len, used)) = get_varint(buf)? else {
        return Ok(None);
    };
    if len > max as u64 {
        return Err(FrameError::TooLarge { len, max });
    }
    let len = len as usize;
    if buf.len() < used + len {
        buf.reserve(used + len - buf.len());
        return Ok(None);
    }
    buf.advance(used);
    Ok(Some(buf.split_to(len).freeze()))
}

/// Encodes frames back to back, each with its length prefix, for one write.
pub fn encode(frames: &[Bytes]) -> Bytes {
    let mut buf = BytesMut::with_capacity(frames.iter().map(|f| f.len() + 3).sum());
    for f in frames {
        put_varint(&mut buf, f.len() as u64);
        buf.put_slice(f);
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, v);
            assert_eq!(get_varint(&buf), Ok(Some((v, buf.len()))), "{v}");
            // Every strict prefix asks for more bytes.
            for cut in 0..buf.len() {
                assert_eq!(get_varint(&buf[..cut]), Ok(None));
            }
        }
    }

    #[test]
    fn over_long_prefixes_are_refused() {
        assert_eq!(get_varint(&[0xff; 11]), Err(FrameError::BadPrefix));
        // Ten bytes whose last one carries more than u64's top bit.
        let mut v = vec![0xff; 9];
        v.push(0x02);
        assert_eq!(get_varint(&v), Err(FrameError::BadPrefix));
    }

    #[test]
    fn frames_split_across_reads_decode_in_order() {
        let wire = encode(&[
            Bytes::from_static(b"{\"id\":1}"),
            Bytes::from_static(b"{}"),
            Bytes::from(vec![b'x'; 300]),
        ]);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in wire.iter() {
            buf.put_u8(*b);
            while let Some(f) = decode(&mut buf, 1024).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out.len(), 3);
        assert_eq!(&out[0][..], b"{\"id\":1}");
        assert_eq!(&out[1][..], b"{}");
        assert_eq!(out[2].len(), 300);
        assert!(buf.is_empty());
    }

    #[test]
    fn frames_over_the_limit_are_refused_before_they_arrive() {
        let mut buf = BytesMut::new();
        put_varint(&mut buf, 1 << 20);
        assert_eq!(
            decode(&mut buf, 64 * 1024),
            Err(FrameError::TooLarge {
                len: 1 << 20,
                max: 64 * 1024
            })
        );
    }
}
