//! Finding a message's channel from its id alone, for the routes that name only the message
//! (`/api/messages/:id/...`, which ChatSDK's SDKs and Server API call).
//!
//! A message id minted here ([`message_id`]) is a UUIDv7 whose last four bytes (the random
//! part; the bytes before them hold the `uuid` crate's 42-bit monotonic counter, reseeded at
//! random every millisecond) are its channel's tag: the first four bytes of SHA-256 of app and
//! channel. Ids stay unique as UUIDv7 ids do, by timestamp and counter; channels that share a
//! tag are all tried. The directory indexes channels by tag when they are created, so a lookup is one
//! prefix read; channels created before the index existed are found by computing every
//! channel's tag. Ids derived from a client message id (`stream::client_message_id`) carry no
//! tag: changing that derivation would change the ids of logged commands replayed on another
//! replica, so those messages are located with a channel the caller names.

use sha2::{Digest, Sha256};

/// The tag of `channel` of `app`: eight hex digits.
pub fn channel_tag(app: &str, channel: &str) -> String {
    let mut h = Sha256::new();
    h.update(app.as_bytes());
    h.update([0]);
    h.update(channel.as_bytes());
    hex::encode(&h.finalize()[..4])
}

/// A new message id for `channel`: a UUIDv7 carrying the channel's tag.
pub fn message_id(app: &str, channel: &str) -> String {
    let mut bytes = *uuid::Uuid::now_v7().as_bytes();
    let tag = channel_tag(app, channel);
    if let Ok(raw) = hex::decode(&tag) {
        bytes[12..16].copy_from_slice(&raw);
    }
    uuid::Uuid::from_bytes(bytes).to_string()
}

/// The channel tag a message id carries, if it is a UUIDv7 (ids of other forms carry none).
pub fn tag_of(message_id: &str) -> Option<String> {
    let id = uuid::Uuid::parse_str(message_id).ok()?;
    (id.get_version_num() == 7).then(|| hex::encode(&id.as_bytes()[12..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_channel_and_stay_unique() {
        let ids: std::collections::BTreeSet<String> =
            (0..10_000).map(|_| message_id("app", "c1")).collect();
        assert_eq!(ids.len(), 10_000, "unique within a millisecond too");
        let a = message_id("app", "c1");
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 7);
        assert_eq!(tag_of(&a), Some(channel_tag("app", "c1")));
        assert_ne!(channel_tag("app", "c1"), channel_tag("app", "c2"));
        assert_ne!(channel_tag("app", "c1"), channel_tag("ap", "pc1"));
        assert_eq!(tag_of("not-a-uuid"), None);
        // A client-message-id id (version 8) carries no tag.
        let v8 = crate::stream::client_message_id("chat:app:c1", "u", "k");
        assert_eq!(tag_of(&v8), None);
    }
}
