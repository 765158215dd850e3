//! Typed request bodies of the REST endpoints, one struct per endpoint.
//!
//! Fields are named as the Client API spells them (camelCase); the Server API's snake_case
//! names are accepted as serde aliases, so neither dialect's keys are rewritten at runtime.
//! Unknown fields are ignored, as the original API does. A body of the wrong shape is refused
//! by [`crate::body::Typed`] with a 400 that names the field. These types are also what an
//! API description can later be derived from.

use serde::Deserialize;
use serde_json::{Map, Value};

/// A body that only names the acting user (server keys act as a user this way).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActingUser {
    #[serde(default, alias = "user_id")]
    pub user_id: Option<String>,
}

/// `POST /api/channels`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateChannel {
    #[serde(default, alias = "user_id")]
    pub user_id: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default, alias = "is_private")]
    pub is_private: Option<bool>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default, alias = "member_ids")]
    pub member_ids: Option<Vec<String>>,
    #[serde(default, alias = "workspace_id")]
    pub workspace_id: Option<String>,
    #[serde(default, alias = "idempotency_key")]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub config: Option<Map<String, Value>>,
}

/// `POST /api/channels/dm/ensure`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DmEnsure {
    #[serde(alias = "requester_user_id")]
    pub requester_user_id: String,
    #[serde(alias = "peer_user_id")]
    pub peer_user_id: String,
    #[serde(default, alias = "idempotency_key")]
    pub idempotency_key: Option<String>,
}

/// `POST /api/channels/group/ensure`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupEnsure {
    #[serde(default, alias = "external_id")]
    pub external_id: Option<String>,
    #[serde(default, alias = "idempotency_key")]
    pub idempotency_key: Option<String>,
    #[serde(default, alias = "member_ids")]
    pub member_ids: Option<Vec<String>>,
    #[serde(default)]
    pub custom: Option<Map<String, Value>>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
}

/// `PATCH /api/channels/:id`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateChannel {
    #[serde(default, alias = "user_id")]
    pub user_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub config: Option<Map<String, Value>>,
}

/// `POST /api/channels/:id/members`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddMembers {
    #[serde(default, alias = "acting_user_id")]
    pub acting_user_id: Option<String>,
    #[serde(default, alias = "user_ids")]
    pub user_ids: Option<Vec<String>>,
    #[serde(default, alias = "user_id")]
    pub user_id: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
}

/// `PATCH /api/channels/:id/members/:user`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SetRole {
    pub role: String,
}

/// `POST /api/channels/:id/typing`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Typing {
    #[serde(default, alias = "user_id")]
    pub user_id: Option<String>,
    /// Absent or null means "started typing".
    #[serde(default)]
    pub typing: Option<bool>,
}

/// `PATCH /api/channels/:id/star`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Star {
    #[serde(default, alias = "user_id")]
    pub user_id: Option<String>,
    pub starred: bool,
}

/// `PATCH /api/channels/:id/mute`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mute {
    #[serde(default, alias = "user_id")]
    pub user_id: Option<String>,
    pub muted: bool,
}

/// The fields of a user that user writes take (`POST /api/users`, `/ensure`, `PUT`,
/// `PATCH /api/users/me`, and each item of `bulk-ensure` and `sync`).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserFields {
    #[serde(default, alias = "user_id")]
    pub user_id: Option<String>,
    /// The id as `sync` items name it.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub custom: Option<Map<String, Value>>,
    #[serde(default)]
    pub role: Option<String>,
}

/// `POST /api/users/bulk-ensure` and `/sync`: items are decoded one by one, so one bad item
/// is reported on its own instead of refusing the whole list.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UserList {
    pub users: Vec<Value>,
}

/// `POST /tokens` and `POST /api/auth/connect`: the user a token bundle is minted for. Both
/// routes take either spelling of the profile fields (`name`/`displayName`,
/// `image`/`avatar`, `custom`/`metadata`) and prefer their own (see `MintUser::pick`).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MintUser {
    #[serde(alias = "user_id")]
    pub user_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, alias = "display_name")]
    pub display_name: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub avatar: Option<String>,
    #[serde(default)]
    pub custom: Option<Map<String, Value>>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub email: Option<String>,
}

/// `POST /api/auth/api-keys`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateApiKey {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default, alias = "app_id")]
    pub app_id: Option<String>,
}

/// `POST /api/realtime/subscription-token`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionToken {
    pub channel: String,
    #[serde(default, alias = "user_id")]
    pub user_id: Option<String>,
}

/// `POST /admin/apps` and `PATCH /admin/apps/:id`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct AppFields {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub settings: Option<Map<String, Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_dialects_decode_to_one_shape() {
        let camel: CreateChannel = serde_json::from_value(
            json!({"userId": "u", "memberIds": ["a"], "isPrivate": true, "type": "group"}),
        )
        .unwrap();
        let snake: CreateChannel = serde_json::from_value(
            json!({"user_id": "u", "member_ids": ["a"], "is_private": true, "type": "group"}),
        )
        .unwrap();
        assert_eq!(camel.user_id, snake.user_id);
        assert_eq!(camel.member_ids, snake.member_ids);
        assert_eq!(camel.is_private, Some(true));
        assert_eq!(snake.kind.as_deref(), Some("group"));
    }

    #[test]
    fn wrong_shapes_are_refused() {
        assert!(serde_json::from_value::<CreateChannel>(json!({"memberIds": "a"})).is_err());
        assert!(serde_json::from_value::<CreateChannel>(json!({"config": [1]})).is_err());
        assert!(serde_json::from_value::<Star>(json!({"userId": "u"})).is_err());
        assert!(serde_json::from_value::<DmEnsure>(json!({"peerUserId": "b"})).is_err());
    }
}

/// Request bodies fed arbitrary bytes and mutated valid bodies (`fuzz_` tests;
/// `PROPTEST_CASES=...` for longer runs): each is decoded or refused, never a panic.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    fn all(bytes: &[u8]) {
        crate::fuzzing::rest_body(bytes);
        crate::fuzzing::access_token(bytes);
    }

    const VALID: &str = r#"{"userId":"u","memberIds":["a","b"],"type":"group","name":"n","text":"hi","clientMsgId":"c","attachments":[{"url":"https://x/y"}],"question":"q?","options":[{"id":"a","text":"A"},{"id":"b","text":"B"}],"emoji":"+1","users":[{"id":"u"}],"custom":{"k":[1,2,{"x":null}]}}"#;

    proptest! {
        #[test]
        fn fuzz_arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            all(&bytes);
        }

        #[test]
        fn fuzz_mutated_bodies_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = VALID.as_bytes().to_vec();
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            all(&bytes);
        }
    }
}
