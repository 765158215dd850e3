//! Devices, notification preferences and Web Push routes (a user's own; a server key names the
//! user with `user_id`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::codec::Json as JsonField;
use chatsdk_actors::model::Device;
use chatsdk_actors::render::Iso;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::success;
use crate::auth::extract::Auth;
use crate::body::{Query, Typed};
use crate::error::ApiResult;
use crate::state::GatewayState;

/// `POST /api/devices`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceBody {
    token: String,
    platform: String,
    #[serde(default, alias = "device_id")]
    device_id: Option<String>,
    #[serde(default, alias = "device_name")]
    device_name: Option<String>,
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
}

/// `POST /api/webpush/subscribe`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeBody {
    endpoint: String,
    #[serde(default, alias = "expiration_time")]
    expiration_time: Option<u64>,
    keys: PushKeys,
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PushKeys {
    p256dh: String,
    auth: String,
}

/// `POST /api/webpush/unsubscribe`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnsubscribeBody {
    endpoint: String,
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
}

chatsdk_actors::dialect_views! {
    scope: devices;
    records: chatsdk_actors::render;
    types {
        /// A device as its owner lists it (never the token).
        pub struct DeviceView<'a> {
            pub id: &'a str,
            pub platform: &'a str,
            pub device_id: Option<&'a str>,
            pub device_name: Option<&'a str>,
            pub last_active_at: Iso,
            pub created_at: Iso,
        }

        /// `GET /api/devices`.
        pub struct Devices<'a> {
            pub devices: Vec<DeviceView<'a>>,
        }

        /// `GET /api/devices/preferences`: each notification kind's settings (defaults for
        /// those never set).
        pub struct Preferences<'a> {
            pub preferences: &'a JsonField,
            /// Always null: there is no Novu here (kept for the original API's clients).
            pub novu_preferences: Option<&'a JsonField>,
        }

        /// `PATCH /api/devices/preferences`: all the preferences after the change.
        pub struct PreferencesSet<'a> {
            pub success: bool,
            pub preferences: &'a JsonField,
        }

        /// `GET /api/webpush/vapid-key`: the key browsers subscribe with.
        pub struct VapidKey<'a> {
            pub public_key: &'a str,
        }

        /// `POST /api/webpush/test`.
        pub struct Tested {
            pub success: bool,
            pub sent: usize,
            pub failed: usize,
        }
    }
    impls {
        impl<'a> DeviceView<'a> {
            pub fn new(d: &'a Device) -> Self {
                DeviceView {
                    id: &d.id,
                    platform: &d.platform,
                    device_id: d.device_id.as_deref(),
                    device_name: d.device_name.as_deref(),
                    last_active_at: Iso(d.last_active_at),
                    created_at: Iso(d.created_at),
                }
            }
        }
    }
}

/// `POST /api/devices`: registers (or refreshes) a device.
pub async fn register(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<DeviceBody>,
) -> ApiResult<Response> {
    let caller = auth.user_caller(body.user_id)?;
    state
        .chat
        .register_device(
            &caller,
            &body.token,
            &body.platform,
            body.device_id,
            body.device_name,
        )
        .await?;
    Ok(success())
}

/// `DELETE /api/devices/:token`.
pub async fn remove(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(token): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.user_caller(q.str("userId"))?;
    state.chat.remove_device(&caller, &token).await?;
    Ok(success())
}

/// `GET /api/devices`.
pub async fn list(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    let caller = auth.user_caller(q.str("userId"))?;
    let devices = state.chat.devices(&caller)?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Devices {
        devices: devices.iter().map(v::DeviceView::new).collect(),
    }))
}

/// `GET /api/devices/preferences`.
pub async fn preferences(
    State(state): State<GatewayState>,
    auth: Auth,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.user_caller(q.str("userId"))?;
    let user = caller.user.clone().unwrap_or_default();
    let prefs = state.chat.notify_prefs(&caller.app, &user)?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Preferences {
        preferences: &JsonField(prefs),
        novu_preferences: None,
    }))
}

/// `PATCH /api/devices/preferences`: the preferences given change, the others stay.
pub async fn set_preferences(
    State(state): State<GatewayState>,
    auth: Auth,
    q: Query,
    Typed(mut body): Typed<Map<String, Value>>,
) -> ApiResult<Response> {
    let acting = body
        .remove("user_id")
        .or_else(|| body.remove("userId"))
        .and_then(|v| v.as_str().map(str::to_string));
    let caller = auth.user_caller(acting.or(q.str("userId")))?;
    let prefs = state.chat.set_notify_prefs(&caller, body).await?;
    Ok(
        reply!(auth.dialect, StatusCode::OK, v => v::PreferencesSet {
            success: true,
            preferences: &JsonField(prefs),
        }),
    )
}

/// `GET /api/webpush/vapid-key`: the public key browsers subscribe with.
pub async fn vapid_key(State(state): State<GatewayState>, auth: Auth) -> ApiResult<Response> {
    let vapid = state.chat.vapid().await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::VapidKey {
        public_key: &vapid.public_key(),
    }))
}

/// `POST /api/webpush/subscribe`.
pub async fn subscribe(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<SubscribeBody>,
) -> ApiResult<Response> {
    let caller = auth.user_caller(body.user_id)?;
    state
        .chat
        .web_push_subscribe(
            &caller,
            &body.endpoint,
            &body.keys.p256dh,
            &body.keys.auth,
            body.expiration_time,
        )
        .await?;
    Ok(success())
}

/// `POST /api/webpush/unsubscribe`.
pub async fn unsubscribe(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<UnsubscribeBody>,
) -> ApiResult<Response> {
    let caller = auth.user_caller(body.user_id)?;
    state
        .chat
        .web_push_unsubscribe(&caller, &body.endpoint)
        .await?;
    Ok(success())
}

/// `POST /api/webpush/test`: a test push to each of the caller's subscriptions.
pub async fn test(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    let caller = auth.user_caller(q.str("userId"))?;
    let (sent, failed) = state.chat.web_push_test(&caller).await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Tested {
        success: sent > 0,
        sent,
        failed,
    }))
}
