//! Framing of every value this crate stores.
//!
//! Layout: `[version: u8][crc32 of payload: u32 LE][payload]`. Typed records carry a bincode 2
//! payload ([`encode`], [`decode`]); opaque values from the layer above are framed as they are
//! ([`frame`], [`unframe`]). A record whose checksum or version does not match is refused with a
//! [`StoreError`]: corrupted data is never served and never panics a node.

use serde::{de::DeserializeOwned, Serialize};

use crate::StoreError;

/// The only record format version written by this build.
pub const VERSION: u8 = 1;
/// Bytes in front of the payload: version byte and CRC32.
pub const HEADER_LEN: usize = 5;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Frames an opaque payload.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.push(VERSION);
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks a framed record and returns its payload.
pub fn unframe(record: &[u8]) -> Result<&[u8], StoreError> {
    if record.len() < HEADER_LEN {
        return Err(StoreError::Truncated { len: record.len() });
    }
    let version = record[0];
    if version != VERSION {
        return Err(StoreError::Version { version });
    }
    let stored = u32::from_le_bytes([record[1], record[2], record[3], record[4]]);
    let payload = &record[HEADER_LEN..];
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(StoreError::Checksum { stored, computed });
    }
    Ok(payload)
}

/// Encodes a typed value with bincode 2 and frames it.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    encode_into(&mut out, value)?;
    Ok(out)
}

/// Appends `value`, encoded and framed as [`encode`] does, to `out`; returns the record's
/// length. The payload is written in place (its CRC filled in after), so a log append encodes
/// each entry straight into the buffer it writes, without a copy per layer.
pub fn encode_into<T: Serialize>(out: &mut Vec<u8>, value: &T) -> Result<usize, StoreError> {
    let start = out.len();
    out.push(VERSION);
    out.extend_from_slice(&[0; 4]);
    if let Err(e) = bincode::serde::encode_into_std_write(value, out, config()) {
        out.truncate(start);
        return Err(e.into());
    }
    let crc = crc32fast::hash(&out[start + HEADER_LEN..]).to_le_bytes();
    out[start + 1..start + HEADER_LEN].copy_from_slice(&crc);
    Ok(out.len() - start)
}

/// How many times its own size a payload may claim through its length prefixes (a container
/// of `n` elements claims `n` times their in-memory size, which exceeds their encoded size).
const CLAIM_FACTOR: usize = 256;

/// Decodes a bincode payload (standard configuration) with a bound on what its length prefixes
/// may claim: [`CLAIM_FACTOR`] times its size, and at least 16 MiB. A corrupt or hostile payload
/// of a few bytes that claims a petabyte is an error, not an allocation of that size (bincode
/// allocates a claimed length before reading it).
pub fn decode_bounded<T: DeserializeOwned>(
    payload: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    use bincode::config::standard;
    use bincode::serde::decode_from_slice;
    let need = payload.len().saturating_mul(CLAIM_FACTOR);
    if need <= 1 << 24 {
        decode_from_slice(payload, standard().with_limit::<{ 1 << 24 }>())
    } else if need <= 1 << 32 {
        decode_from_slice(payload, standard().with_limit::<{ 1 << 32 }>())
    } else if need <= 1 << 40 {
        decode_from_slice(payload, standard().with_limit::<{ 1 << 40 }>())
    } else {
        decode_from_slice(payload, standard().with_limit::<{ 1 << 48 }>())
    }
}

/// Checks a framed record and decodes its bincode payload. Trailing bytes are refused.
pub fn decode<T: DeserializeOwned>(record: &[u8]) -> Result<T, StoreError> {
    let payload = unframe(record)?;
    let (value, used) = decode_bounded(payload)?;
    if used != payload.len() {
        return Err(StoreError::Decode(
            bincode::error::DecodeError::OtherString(format!(
                "{} trailing bytes after record",
                payload.len() - used
            )),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_typed() {
        let value = (7u64, String::from("hello"), vec![1u8, 2, 3]);
        let rec = encode(&value).unwrap();
        let back: (u64, String, Vec<u8>) = decode(&rec).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let rec = encode(&(42u64, "payload")).unwrap();
        for byte in 0..rec.len() {
            for bit in 0..8 {
                let mut bad = rec.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode::<(u64, String)>(&bad).is_err(),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn truncated_and_foreign_versions_are_refused() {
        assert!(matches!(
            unframe(&[]),
            Err(StoreError::Truncated { len: 0 })
        ));
        assert!(matches!(
            unframe(&[1, 2]),
            Err(StoreError::Truncated { len: 2 })
        ));
        let mut rec = frame(b"abc");
        rec[0] = 9;
        assert!(matches!(
            unframe(&rec),
            Err(StoreError::Version { version: 9 })
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let payload = bincode::serde::encode_to_vec(5u8, config()).unwrap();
        let mut padded = payload.clone();
        padded.push(0);
        assert!(decode::<u8>(&frame(&payload)).is_ok());
        assert!(decode::<u8>(&frame(&padded)).is_err());
    }
}

/// Decoders of bytes from outside the process, fed arbitrary input (`fuzz_` tests: 256 cases
/// in CI, `PROPTEST_CASES=...` for longer runs): an error, never a panic or an allocation of
/// what a length prefix claims.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fuzz_framed_records_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            crate::fuzzing::record(&bytes);
        }

        #[test]
        fn fuzz_length_prefixes_never_allocate_their_claim(
            claim in (1u64 << 40)..u64::MAX,
            tail in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            // A varint length of `claim` in front of a few bytes.
            let mut payload = vec![0xfd_u8];
            payload.extend_from_slice(&claim.to_le_bytes());
            payload.extend_from_slice(&tail);
            let framed = super::frame(&payload);
            prop_assert!(super::decode::<String>(&framed).is_err());
            prop_assert!(super::decode::<Vec<u8>>(&framed).is_err());
            prop_assert!(super::decode::<Vec<String>>(&framed).is_err());
            prop_assert!(super::decode::<std::collections::BTreeMap<String, u64>>(&framed).is_err());
        }
    }
}
