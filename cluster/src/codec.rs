//! bincode 2 encoding of the messages nodes exchange, with a decode limit so a peer can never make
//! us allocate more than a frame's worth.

use serde::{de::DeserializeOwned, Serialize};

use crate::ClusterError;

/// Upper bound on what one decoded message may claim (the transport bounds frames too).
const DECODE_LIMIT: usize = 64 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Encodes a message.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ClusterError> {
    let mut buf = Vec::new();
    encode_onto(value, &mut buf)?;
    Ok(buf)
}

/// Encodes a message at the end of `buf` (after a header the caller wrote, say).
pub(crate) fn encode_onto<T: Serialize>(value: &T, buf: &mut Vec<u8>) -> Result<(), ClusterError> {
    bincode::serde::encode_into_std_write(value, buf, config())
        .map(|_| ())
        .map_err(|e| ClusterError::Codec {
            reason: e.to_string(),
        })
}

/// Decodes a message, refusing trailing bytes.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ClusterError> {
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| ClusterError::Codec {
            reason: e.to_string(),
        })?;
    if used != bytes.len() {
        return Err(ClusterError::Codec {
            reason: format!("{} trailing bytes", bytes.len() - used),
        });
    }
    Ok(value)
}
