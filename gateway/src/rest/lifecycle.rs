//! Data lifecycle routes: legal holds (app admins and server keys) and data exports.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chatsdk_actors::model::{Export, LegalHold};
use chatsdk_actors::render::Iso;
use serde::Deserialize;
use serde_json::Value;

use super::success;
use crate::auth::extract::Auth;
use crate::body::{iso_time, Query, Typed};
use crate::error::ApiResult;
use crate::state::GatewayState;

/// `POST /api/channels/:id/legal-hold` and `/api/users/:id/legal-hold`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldBody {
    reason: String,
    /// ISO-8601; absent: until lifted.
    #[serde(default)]
    until: Option<String>,
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
}

chatsdk_actors::dialect_views! {
    scope: lifecycle;
    records: chatsdk_actors::render;
    types {
        /// A legal hold.
        pub struct HoldView<'a> {
            pub kind: &'a str,
            pub target: &'a str,
            pub reason: &'a str,
            pub until: Option<Iso>,
            pub created_by: Option<&'a str>,
            pub created_at: Iso,
        }

        /// `GET /api/legal-holds`.
        pub struct Holds<'a> {
            pub holds: Vec<HoldView<'a>>,
        }

        /// The manifest of an export.
        pub struct Manifest<'a> {
            pub version: u32,
            pub scope: &'a str,
            pub subject: &'a str,
            pub generated_at: Iso,
            pub counts: &'a Value,
        }

        /// A new export.
        pub struct ExportView<'a> {
            pub id: &'a str,
            pub manifest: Manifest<'a>,
            pub checksum: String,
            pub size: u64,
            pub expires_at: Iso,
            pub download_url: String,
        }
    }
    impls {
        impl<'a> HoldView<'a> {
            pub fn new(h: &'a LegalHold) -> Self {
                HoldView {
                    kind: &h.kind,
                    target: &h.target,
                    reason: &h.reason,
                    until: h.until.map(Iso),
                    created_by: h.by.as_deref(),
                    created_at: Iso(h.created_at),
                }
            }
        }

        impl<'a> ExportView<'a> {
            pub fn new(e: &'a Export) -> Self {
                ExportView {
                    id: &e.id,
                    manifest: Manifest {
                        version: 1,
                        scope: &e.scope,
                        subject: &e.subject,
                        generated_at: Iso(e.created_at),
                        counts: &e.counts.0,
                    },
                    checksum: format!("sha256:{}", e.sha256),
                    size: e.size,
                    expires_at: Iso(e.expires_at),
                    download_url: format!("/api/exports/{}", e.id),
                }
            }
        }
    }
}

async fn hold(
    state: &GatewayState,
    auth: &Auth,
    kind: &str,
    target: &str,
    body: HoldBody,
) -> ApiResult<Response> {
    let caller = auth.caller(body.user_id);
    let until = iso_time("until", body.until.as_deref())?;
    let h = state
        .chat
        .place_hold(&caller, kind, target, body.reason, until)
        .await?;
    Ok(reply!(auth.dialect, StatusCode::CREATED, v => v::HoldView::new(&h)))
}

/// `POST /api/channels/:id/legal-hold`.
pub async fn hold_channel(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<HoldBody>,
) -> ApiResult<Response> {
    hold(&state, &auth, "channel", &id, body).await
}

/// `POST /api/users/:id/legal-hold`.
pub async fn hold_user(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<HoldBody>,
) -> ApiResult<Response> {
    hold(&state, &auth, "user", &id, body).await
}

/// `DELETE /api/channels/:id/legal-hold`.
pub async fn release_channel(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    state.chat.release_hold(&caller, "channel", &id).await?;
    Ok(success())
}

/// `DELETE /api/users/:id/legal-hold`.
pub async fn release_user(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    state.chat.release_hold(&caller, "user", &id).await?;
    Ok(success())
}

/// `GET /api/legal-holds`.
pub async fn holds(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let list = state.chat.legal_holds(&caller)?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Holds {
        holds: list.iter().map(v::HoldView::new).collect(),
    }))
}

/// `POST /api/users/me/export`: the caller's own data.
pub async fn export_me(
    State(state): State<GatewayState>,
    auth: Auth,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.user_caller(q.str("userId"))?;
    let user = caller.user.clone().unwrap_or_default();
    let e = state.chat.export_user(&caller, &user).await?;
    Ok(reply!(auth.dialect, StatusCode::CREATED, v => v::ExportView::new(&e)))
}

/// `POST /api/users/:id/export` (server keys and app admins; a user may export themselves).
pub async fn export_user(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("actingUserId"));
    let e = state.chat.export_user(&caller, &id).await?;
    Ok(reply!(auth.dialect, StatusCode::CREATED, v => v::ExportView::new(&e)))
}

/// `POST /api/channels/:id/export` (its owners and admins, app admins, server keys).
pub async fn export_channel(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let e = state.chat.export_channel(&caller, &id).await?;
    Ok(reply!(auth.dialect, StatusCode::CREATED, v => v::ExportView::new(&e)))
}

/// `GET /api/exports/:id`: the archive, for whoever made the export (or a server key).
pub async fn download(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let (export, bytes) = state.chat.download_export(&caller, &id).await?;
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"chatsdk-export-{}.json\"",
        export.id
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&export.sha256) {
        headers.insert("x-checksum-sha256", v);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(response)
}
