//! The pages a person opens in a browser: the operator console (`/console`, driven by the admin
//! API with the admin key the operator types in), the API reference (`/api/docs`, rendered from
//! `/api/openapi.json`) and, in `--dev`, the demo chat page (`/demo`).
//!
//! The pages and their scripts are compiled into the binary from `gateway/web/` and load nothing
//! from elsewhere (the machines that run us are often offline), so what a browser shows is what
//! this build serves. The demo page logs in through `POST /demo/session`, which mints tokens for a
//! user of the seeded demo app; it exists only in dev mode, as the page does.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::body::Typed;
use crate::error::{ApiResult, AppError};
use crate::rest::json;
use crate::state::GatewayState;

/// The scripts and stylesheets of `gateway/web/`, by name.
const ASSETS: &[(&str, &str)] = &[
    ("style.css", include_str!("../web/style.css")),
    ("realtime.js", include_str!("../web/realtime.js")),
    ("demo.js", include_str!("../web/demo.js")),
    ("apidocs.css", include_str!("../web/apidocs.css")),
    ("apidocs.js", include_str!("../web/apidocs.js")),
    ("console.js", include_str!("../web/console.js")),
];

const DEMO_HTML: &str = include_str!("../web/demo.html");
const API_DOCS_HTML: &str = include_str!("../web/apidocs.html");
const CONSOLE_HTML: &str = include_str!("../web/console.html");

/// Pages and scripts change with the binary; a browser revalidates them after a minute.
const CACHE: &str = "public, max-age=60";

/// Nothing on these pages comes from another origin, and nothing may frame them.
const POLICY: &str =
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; \
     style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'";

fn page(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// The demo app's id when the demo page is served (dev mode), else a 404.
fn demo_app(state: &GatewayState) -> Result<&str, AppError> {
    state
        .config
        .demo_app
        .as_deref()
        .ok_or_else(|| AppError::not_found("The demo page is served in dev mode only (--dev)"))
}

/// `GET /console`.
pub async fn console() -> Response {
    page(CONSOLE_HTML)
}

/// `GET /api/docs`: the OpenAPI document (`/api/openapi.json`) as a page.
pub async fn api_docs() -> Response {
    page(API_DOCS_HTML)
}

/// `GET /demo`.
pub async fn demo(State(state): State<GatewayState>) -> ApiResult<Response> {
    demo_app(&state)?;
    Ok(page(DEMO_HTML))
}

/// `GET /web/{file}`.
pub async fn asset(Path(file): Path<String>) -> ApiResult<Response> {
    let (name, body) = ASSETS
        .iter()
        .find(|(name, _)| *name == file)
        .ok_or_else(|| AppError::not_found(format!("No such file: {file}")))?;
    let content_type = if name.ends_with(".css") {
        "text/css; charset=utf-8"
    } else {
        "text/javascript; charset=utf-8"
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DemoLogin {
    #[serde(alias = "user_id")]
    user_id: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DemoSession<'a> {
    app_id: &'a str,
    user: DemoUser<'a>,
    token: &'a str,
    ws_token: &'a str,
    expires_in: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DemoUser<'a> {
    id: &'a str,
    name: &'a str,
}

/// `POST /demo/session`: tokens for an existing user of the demo app (dev mode only).
pub async fn demo_session(
    State(state): State<GatewayState>,
    Typed(body): Typed<DemoLogin>,
) -> ApiResult<Response> {
    let app = demo_app(&state)?;
    let user = state
        .chat
        .user(app, &body.user_id)?
        .ok_or_else(|| AppError::not_found(format!("No demo user {}", body.user_id)))?;
    state.chat.check_not_banned(app, &user.id)?;
    let bundle = state
        .tokens
        .bundle(crate::auth::tokens::UserRef::of(app, &user), None);
    Ok(json(
        StatusCode::OK,
        &DemoSession {
            app_id: app,
            user: DemoUser {
                id: &user.id,
                name: &user.name,
            },
            token: &bundle.token,
            ws_token: &bundle.ws_token,
            expires_in: bundle.expires_in,
        },
    ))
}
