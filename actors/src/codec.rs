//! The binary form of everything this crate stores in the replicated state machines or sends
//! to another node: Raft commands and their replies, stored records, durable events, and
//! channel requests and answers.
//!
//! Each value is one format byte ([`FORMAT`]) followed by its bincode 2 encoding. A value that
//! does not decode (another format, a truncated or corrupted payload) is a [`CodecError`] that
//! the caller reports: it is never read as "absent" or as a default. Client JSON is not made
//! here: it is rendered from these types when an event is emitted (see [`crate::render`]).
//!
//! Free-form JSON that users store (`custom`, `settings`, `config`, attachments) is carried by
//! [`Json`], which is plain JSON in a JSON (human-readable) serializer and a JSON string inside
//! bincode, which cannot encode self-describing values.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The format byte in front of every encoded value of this crate. Format 1 was the JSON of
/// the first builds (never written with this byte: such data directories are refused when
/// they are opened, see `chatsdk_storage::DATA_FORMAT`).
pub const FORMAT: u8 = 2;

/// Why a stored record, a command or a message from another node could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Nothing at all, not even a format byte.
    #[error("empty value")]
    Empty,
    /// Written in another format than the one this build reads.
    #[error("format {found}, this build reads format {FORMAT}")]
    Format { found: u8 },
    /// The payload is not a valid encoding of the expected type.
    #[error("undecodable payload: {0}")]
    Decode(String),
    /// The payload decoded, with bytes left over.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A value could not be encoded (only free-form JSON can fail, and it never does).
    #[error("unencodable value: {0}")]
    Encode(String),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` behind the format byte.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(128);
    out.push(FORMAT);
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes a value written by [`encode`]; anything else is an error.
pub fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T, CodecError> {
    let (&format, payload) = raw.split_first().ok_or(CodecError::Empty)?;
    if format != FORMAT {
        return Err(CodecError::Format { found: format });
    }
    let (value, used) = chatsdk_storage::record::decode_bounded(payload)
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(CodecError::Trailing(payload.len() - used));
    }
    Ok(value)
}

/// Free-form JSON kept in a typed record: transparent JSON for JSON serializers, a JSON text
/// for bincode.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Json(pub Value);

/// Any JSON value (the schema says nothing of what users store).
impl utoipa::PartialSchema for Json {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        Value::schema()
    }
}

impl utoipa::ToSchema for Json {
    fn name() -> std::borrow::Cow<'static, str> {
        "Json".into()
    }
}

impl Json {
    /// An empty JSON object.
    pub fn object() -> Json {
        Json(Value::Object(Default::default()))
    }

    /// An empty JSON array.
    pub fn array() -> Json {
        Json(Value::Array(Vec::new()))
    }

    /// Whether this is JSON `null`.
    pub fn is_null(&self) -> bool {
        self.0.is_null()
    }

    /// Merges the keys of `patch` into this object (a non-object becomes an empty object
    /// first).
    pub fn merge(&mut self, patch: serde_json::Map<String, Value>) {
        let mut merged = match self.0.take() {
            Value::Object(m) => m,
            _ => Default::default(),
        };
        merged.extend(patch);
        self.0 = Value::Object(merged);
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            self.0.serialize(serializer)
        } else {
            serializer.serialize_str(&self.0.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            Value::deserialize(deserializer).map(Json)
        } else {
            let text = String::deserialize(deserializer)?;
            serde_json::from_str(&text)
                .map(Json)
                .map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        id: String,
        n: u64,
        custom: Json,
        opt: Option<String>,
    }

    fn rec() -> Rec {
        Rec {
            id: "a".into(),
            n: 7,
            custom: Json(json!({"k": [1, "two", null, {"x": 1.5}]})),
            opt: None,
        }
    }

    #[test]
    fn round_trip_with_free_form_json() {
        let raw = encode(&rec()).unwrap();
        assert_eq!(raw[0], FORMAT);
        assert_eq!(decode::<Rec>(&raw).unwrap(), rec());
        // JSON serializers see the JSON itself, not a string.
        assert_eq!(
            serde_json::to_value(&rec().custom).unwrap(),
            json!({"k": [1, "two", null, {"x": 1.5}]})
        );
    }

    #[test]
    fn bad_values_are_errors() {
        let raw = encode(&rec()).unwrap();
        assert_eq!(decode::<Rec>(&[]), Err(CodecError::Empty));
        let mut other = raw.clone();
        other[0] = b'{';
        assert_eq!(
            decode::<Rec>(&other),
            Err(CodecError::Format { found: b'{' })
        );
        assert!(matches!(
            decode::<Rec>(&raw[..raw.len() - 3]),
            Err(CodecError::Decode(_))
        ));
        let mut longer = raw.clone();
        longer.push(0);
        assert_eq!(decode::<Rec>(&longer), Err(CodecError::Trailing(1)));
        // The JSON era's records are refused, not misread.
        assert!(decode::<Rec>(br#"{"id":"a","n":7}"#).is_err());
    }
}

/// Stored records and replicated commands fed arbitrary bytes (`fuzz_` tests;
/// `PROPTEST_CASES=...` for longer runs): decoded or refused, never a panic or an allocation of
/// a claimed length.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fuzz_records_and_commands_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            crate::fuzzing::chat_record(&bytes);
        }

        #[test]
        fn fuzz_fanout_batches_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            crate::fuzzing::fanout_batch(&bytes);
        }

        #[test]
        fn fuzz_fetched_pages_never_panic(text in any::<String>()) {
            crate::fuzzing::preview_page(text.as_bytes());
        }

        #[test]
        fn fuzz_uploads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            crate::fuzzing::upload(&bytes);
        }

        #[test]
        fn fuzz_length_prefixes_never_allocate_their_claim(claim in (1u64 << 40)..u64::MAX) {
            let mut raw = vec![super::FORMAT, 0xfd];
            raw.extend_from_slice(&claim.to_le_bytes());
            raw.extend_from_slice(b"abc");
            prop_assert!(super::decode::<String>(&raw).is_err());
            prop_assert!(super::decode::<crate::model::Message>(&raw).is_err());
        }
    }
}
