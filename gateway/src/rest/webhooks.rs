//! Webhook routes (app admins and server keys; both dialects). The signature scheme is in
//! `chatsdk_actors::hooks::sign` and `docs/api.md`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::model::{HookDelivery, Webhook};
use chatsdk_actors::render::Iso;
use chatsdk_actors::{NewWebhook, WebhookPatch};
use serde::Deserialize;

use super::success;
use crate::auth::extract::Auth;
use crate::body::{Query, Typed};
use crate::error::ApiResult;
use crate::state::GatewayState;

/// `POST /api/webhooks`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    url: String,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default, alias = "is_active", alias = "isActive")]
    enabled: Option<bool>,
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
}

/// `PATCH /api/webhooks/:id`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateBody {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, alias = "is_active", alias = "isActive")]
    enabled: Option<bool>,
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
}

chatsdk_actors::dialect_views! {
    scope: webhooks;
    records: chatsdk_actors::render;
    types {
        /// A webhook; `secret` only when it is created.
        pub struct HookView<'a> {
            pub id: &'a str,
            pub url: &'a str,
            pub events: &'a [String],
            pub description: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub secret: Option<&'a str>,
            pub enabled: bool,
            pub is_active: bool,
            pub failure_count: u32,
            pub last_failure_at: Option<Iso>,
            pub disabled_reason: Option<&'a str>,
            pub created_by: Option<&'a str>,
            pub created_at: Iso,
            pub updated_at: Iso,
        }

        /// `GET /api/webhooks`.
        pub struct HookList<'a> {
            pub webhooks: Vec<HookView<'a>>,
        }

        /// `POST /api/webhooks/:id/regenerate-secret`.
        pub struct Secret<'a> {
            pub secret: &'a str,
            pub message: &'static str,
        }

        /// `POST /api/webhooks/:id/test`.
        pub struct Tested<'a> {
            pub success: bool,
            pub message: &'a str,
            pub status_code: Option<u16>,
        }

        /// A delivery of the log.
        pub struct DeliveryView<'a> {
            pub id: &'a str,
            pub webhook_id: &'a str,
            pub event: &'a str,
            pub success: bool,
            pub status_code: Option<u16>,
            pub error_message: Option<&'a str>,
            pub retry_count: u32,
            pub attempted_at: Iso,
        }

        /// `GET /api/webhooks/:id/deliveries`.
        pub struct Deliveries<'a> {
            pub deliveries: Vec<DeliveryView<'a>>,
            pub limit: usize,
            pub offset: usize,
        }
    }
    impls {
        impl<'a> HookView<'a> {
            pub fn new(h: &'a Webhook, with_secret: bool) -> Self {
                HookView {
                    id: &h.id,
                    url: &h.url,
                    events: &h.events,
                    description: h.description.as_deref(),
                    secret: with_secret.then_some(h.secret.as_str()),
                    enabled: h.enabled,
                    is_active: h.enabled,
                    failure_count: h.failure_count,
                    last_failure_at: h.last_failure_at.map(Iso),
                    disabled_reason: h.disabled_reason.as_deref(),
                    created_by: h.created_by.as_deref(),
                    created_at: Iso(h.created_at),
                    updated_at: Iso(h.updated_at),
                }
            }
        }

        impl<'a> DeliveryView<'a> {
            pub fn new(d: &'a HookDelivery) -> Self {
                DeliveryView {
                    id: &d.id,
                    webhook_id: &d.webhook_id,
                    event: &d.event,
                    success: d.success,
                    status_code: d.status_code,
                    error_message: d.error.as_deref(),
                    retry_count: d.retry_count,
                    attempted_at: Iso(d.attempted_at),
                }
            }
        }
    }
}

/// `POST /api/webhooks`: 201 with the secret (shown here and on regeneration only).
pub async fn create(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<CreateBody>,
) -> ApiResult<Response> {
    let caller = auth.caller(body.user_id);
    let hook = state
        .chat
        .create_webhook(
            &caller,
            NewWebhook {
                url: body.url,
                events: body.events,
                description: body.description,
                secret: body.secret,
                enabled: body.enabled,
            },
        )
        .await?;
    Ok(reply!(auth.dialect, StatusCode::CREATED, v => v::HookView::new(&hook, true)))
}

/// `GET /api/webhooks`.
pub async fn list(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let hooks = state.chat.webhooks(&caller)?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::HookList {
        webhooks: hooks.iter().map(|h| v::HookView::new(h, false)).collect(),
    }))
}

/// `GET /api/webhooks/:id`.
pub async fn get(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let hook = state.chat.webhook(&caller, &id)?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::HookView::new(&hook, false)))
}

/// `PATCH /api/webhooks/:id`.
pub async fn update(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<UpdateBody>,
) -> ApiResult<Response> {
    let caller = auth.caller(body.user_id);
    let hook = state
        .chat
        .update_webhook(
            &caller,
            &id,
            WebhookPatch {
                url: body.url,
                events: body.events,
                description: body.description,
                enabled: body.enabled,
            },
        )
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::HookView::new(&hook, false)))
}

/// `DELETE /api/webhooks/:id`.
pub async fn delete(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    state.chat.delete_webhook(&caller, &id).await?;
    Ok(success())
}

/// `POST /api/webhooks/:id/regenerate-secret`.
pub async fn regenerate(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let hook = state.chat.regenerate_webhook_secret(&caller, &id).await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Secret {
        secret: &hook.secret,
        message: "Secret regenerated: deliveries are signed with it from now on",
    }))
}

/// `POST /api/webhooks/:id/test`: one `webhook.test` delivery, now; 200 either way, with
/// `success` and the receiver's status (or why there was none).
pub async fn test(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let a = state.chat.test_webhook(&caller, &id).await?;
    let message = match (&a.error, a.status) {
        (None, _) => "Test delivery succeeded".to_string(),
        (Some(e), _) => format!("Test delivery failed: {e}"),
    };
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Tested {
        success: a.success,
        message: &message,
        status_code: a.status,
    }))
}

/// `GET /api/webhooks/:id/deliveries?limit(50, ≤100)&offset`: newest first.
pub async fn deliveries(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let limit = q.num("limit", 50, 100)?.max(1) as usize;
    let offset = q.num("offset", 0, 10_000)? as usize;
    let list = state
        .chat
        .webhook_deliveries(&caller, &id, limit, offset)
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Deliveries {
        deliveries: list.iter().map(v::DeliveryView::new).collect(),
        limit,
        offset,
    }))
}
