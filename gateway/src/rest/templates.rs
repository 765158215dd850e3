//! Workspace templates: create, list (with the built-in ones), get, update, delete, and a
//! workspace made from one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::codec::Json;
use chatsdk_actors::model::{Template, TemplateChannel};
use chatsdk_actors::render::Iso;
use chatsdk_actors::TemplateSpec;
use serde_json::Value;

use super::requests::ActingUser;
use super::success;
use crate::auth::extract::Auth;
use crate::body::{Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

/// A channel of a template, as requests spell it.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelBody {
    name: String,
    #[serde(rename = "type", default = "team")]
    kind: String,
    #[serde(default, alias = "read_only")]
    read_only: bool,
}

fn team() -> String {
    "team".into()
}

/// `POST /api/templates` and `PATCH /api/templates/:id`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateBody {
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    icon: Option<String>,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    channels: Option<Vec<ChannelBody>>,
    #[serde(default)]
    roles: Option<Value>,
    #[serde(default)]
    settings: Option<Value>,
    #[serde(default, alias = "is_public")]
    is_public: Option<bool>,
}

/// `POST /api/templates/from-template`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FromTemplateBody {
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
    #[serde(alias = "template_id")]
    template_id: String,
    name: String,
    #[serde(default, alias = "expires_at")]
    expires_at: Option<String>,
    #[serde(default, alias = "custom_config")]
    custom_config: Option<Value>,
}

chatsdk_actors::dialect_views! {
    scope: templates;
    records: chatsdk_actors::render;
    types {
        /// A channel a template makes.
        pub struct TemplateChannelView<'a> {
            pub name: &'a str,
            #[serde(rename = "type")]
            pub kind: &'a str,
            pub read_only: bool,
        }

        /// A template.
        pub struct TemplateView<'a> {
            pub id: &'a str,
            pub name: &'a str,
            pub description: Option<&'a str>,
            pub category: Option<&'a str>,
            pub icon: Option<&'a str>,
            pub config: &'a Json,
            pub channels: Vec<TemplateChannelView<'a>>,
            pub roles: &'a Json,
            pub settings: &'a Json,
            pub is_public: bool,
            pub is_built_in: bool,
            pub usage_count: u64,
            pub created_by: Option<&'a str>,
            pub created_at: Option<Iso>,
            pub updated_at: Option<Iso>,
        }

        /// A list of templates.
        pub struct TemplateList<'a> {
            pub templates: Vec<TemplateView<'a>>,
        }

        /// A channel a template made.
        pub struct MadeChannel<'a> {
            pub id: &'a str,
            pub name: Option<&'a str>,
            #[serde(rename = "type")]
            pub kind: &'a str,
        }

        /// `POST /api/templates/from-template`.
        pub struct FromTemplate<'a> {
            pub workspace: WorkspaceView<'a>,
            pub channels: Vec<MadeChannel<'a>>,
            pub template_id: &'a str,
            pub template_name: &'a str,
        }
    }
    impls {
        impl<'a> From<&'a Template> for TemplateView<'a> {
            fn from(t: &'a Template) -> Self {
                let built_in = t.app_id.is_none();
                TemplateView {
                    id: &t.id,
                    name: &t.name,
                    description: t.description.as_deref(),
                    category: t.category.as_deref(),
                    icon: t.icon.as_deref(),
                    config: &t.config,
                    channels: t
                        .channels
                        .iter()
                        .map(|c| TemplateChannelView {
                            name: &c.name,
                            kind: &c.kind,
                            read_only: c.read_only,
                        })
                        .collect(),
                    roles: &t.roles,
                    settings: &t.settings,
                    is_public: t.is_public,
                    is_built_in: built_in,
                    usage_count: t.usage_count,
                    created_by: t.created_by.as_deref(),
                    created_at: (!built_in).then_some(Iso(t.created_at)),
                    updated_at: (!built_in).then_some(Iso(t.updated_at)),
                }
            }
        }
    }
}

fn spec(body: TemplateBody) -> TemplateSpec {
    TemplateSpec {
        name: body.name,
        description: body.description,
        category: body.category,
        icon: body.icon,
        config: body.config,
        channels: body.channels.map(|cs| {
            cs.into_iter()
                .map(|c| TemplateChannel {
                    name: c.name,
                    kind: c.kind,
                    read_only: c.read_only,
                })
                .collect()
        }),
        roles: body.roles,
        settings: body.settings,
        is_public: body.is_public,
    }
}

/// `POST /api/templates`.
pub async fn create(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<TemplateBody>,
) -> ApiResult<Response> {
    let caller = auth.caller(body.user_id.clone());
    if body.channels.is_none() {
        return Err(AppError::bad("channels is required"));
    }
    let t = state.chat.create_template(&caller, spec(body)).await?;
    Ok(reply!(auth.dialect, StatusCode::CREATED, v => v::TemplateView::from(&t)))
}

/// `GET /api/templates`.
pub async fn list(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let public = match q.str("isPublic").as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(AppError::bad("isPublic must be true or false")),
    };
    let by_usage = match q.str("sortBy").as_deref() {
        None | Some("created_at") => false,
        Some("usage_count") => true,
        Some(_) => return Err(AppError::bad("sortBy must be usage_count or created_at")),
    };
    let list = state
        .chat
        .templates_for(&caller, q.str("category").as_deref(), public, by_usage)?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::TemplateList {
        templates: list.iter().map(v::TemplateView::from).collect(),
    }))
}

/// `GET /api/templates/built-in/list`.
pub async fn built_in(auth: Auth) -> ApiResult<Response> {
    let list = chatsdk_actors::chat::built_in_templates();
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::TemplateList {
        templates: list.iter().map(v::TemplateView::from).collect(),
    }))
}

/// `GET /api/templates/:id`.
pub async fn get(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let t = state.chat.template(&auth.caller(q.str("userId")), &id)?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::TemplateView::from(&t)))
}

/// `PATCH /api/templates/:id`.
pub async fn update(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<TemplateBody>,
) -> ApiResult<Response> {
    let caller = auth.caller(body.user_id.clone());
    let t = state.chat.update_template(&caller, &id, spec(body)).await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::TemplateView::from(&t)))
}

/// `DELETE /api/templates/:id`.
pub async fn delete(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
    Typed(body): Typed<ActingUser>,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId").or(body.user_id));
    state.chat.delete_template(&caller, &id).await?;
    Ok(success())
}

/// `POST /api/templates/from-template`.
pub async fn from_template(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<FromTemplateBody>,
) -> ApiResult<Response> {
    let caller = auth.user_caller(body.user_id)?;
    let expires_at = crate::body::iso_time("expiresAt", body.expires_at.as_deref())?;
    if body.custom_config.as_ref().is_some_and(|c| !c.is_object()) {
        return Err(AppError::bad("customConfig must be an object"));
    }
    let (ws, channels, t) = state
        .chat
        .workspace_from_template(
            &caller,
            &body.template_id,
            body.name,
            expires_at,
            body.custom_config,
        )
        .await?;
    let me = state
        .chat
        .workspace_membership(
            &caller.app,
            &ws.id,
            caller.user.as_deref().unwrap_or_default(),
        )
        .await?;
    Ok(
        reply!(auth.dialect, StatusCode::CREATED, v => v::FromTemplate {
            workspace: v::WorkspaceView::new(&ws, me.as_deref()),
            channels: channels
                .iter()
                .map(|c| v::MadeChannel {
                    id: &c.id,
                    name: c.name.as_deref(),
                    kind: c.kind.as_str(),
                })
                .collect(),
            template_id: &t.id,
            template_name: &t.name,
        }),
    )
}
