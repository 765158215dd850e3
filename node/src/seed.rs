//! The dev seed: the original ChatSDK's demo data, so its examples work unchanged.
//!
//! App `00000000-0000-0000-0000-000000000001` "Demo App"; users `user-1` Alice, `user-2` Bob,
//! `user-3` Carol; channel `00000000-0000-0000-0000-000000000002` (cid `messaging:demo`, type
//! messaging) with the three as members. Seeding is idempotent; each dev start mints a fresh
//! server key and a token for `user-1` to print.

use chatsdk_actors::directory::{UpsertMode, UserPatch};
use chatsdk_actors::{Caller, Chat, ChatError, NewChannel};
use chatsdk_gateway::GatewayState;
use serde_json::json;

pub const DEMO_APP: &str = "00000000-0000-0000-0000-000000000001";
pub const DEMO_CHANNEL: &str = "00000000-0000-0000-0000-000000000002";
const USERS: [(&str, &str); 3] = [("user-1", "Alice"), ("user-2", "Bob"), ("user-3", "Carol")];

/// What the dev seed prints.
#[derive(Clone, Debug)]
pub struct DevSeed {
    pub app_id: String,
    pub channel_id: String,
    pub api_key: String,
    /// Access token of `user-1`.
    pub token: String,
    /// Realtime connection token of `user-1`.
    pub ws_token: String,
}

/// Seeds the demo data (idempotent) and mints dev credentials.
pub async fn dev(chat: &Chat, state: &GatewayState) -> Result<DevSeed, ChatError> {
    chat.create_app(Some(DEMO_APP.into()), "Demo App", json!({}))
        .await?;
    for (id, name) in USERS {
        let patch = UserPatch {
            id: id.into(),
            name: Some(name.into()),
            ..Default::default()
        };
        chat.upsert_user(DEMO_APP, patch, UpsertMode::CreateOnly)
            .await?;
    }
    if chat.channel(DEMO_APP, DEMO_CHANNEL)?.is_none() {
        let server = Caller {
            app: DEMO_APP.into(),
            user: None,
            server: true,
        };
        let spec = NewChannel {
            kind: Some("messaging".into()),
            name: Some("Demo".into()),
            member_ids: USERS.iter().map(|(id, _)| id.to_string()).collect(),
            cid: Some("messaging:demo".into()),
            id: Some(DEMO_CHANNEL.into()),
            ..Default::default()
        };
        chat.create_channel(&server, spec).await?;
    }
    let (_, api_key) = chat
        .create_api_key(DEMO_APP, "dev", chatsdk_actors::model::full_key_scopes())
        .await?;
    let gen = chat
        .user_record(DEMO_APP, "user-1")?
        .map_or(0, |u| u.tokens_valid_after);
    let bundle = state.tokens.bundle(
        chatsdk_gateway::auth::tokens::UserRef {
            app: DEMO_APP,
            id: "user-1",
            gen,
        },
        None,
    );
    Ok(DevSeed {
        app_id: DEMO_APP.into(),
        channel_id: DEMO_CHANNEL.into(),
        api_key,
        token: bundle.token,
        ws_token: bundle.ws_token,
    })
}
