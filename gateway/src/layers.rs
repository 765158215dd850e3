//! Cross-cutting request handling: the tower-http stack every route runs in, and the
//! response touches of our own (request id for error bodies, `Retry-After`, metrics).
//!
//! From the outside in ([`stack`]): CORS (configured origins), compression of JSON and text
//! answers, catch-panic (a JSON 500 instead of a dropped connection), sensitive-header marking
//! (credentials never reach a log or a trace), request ids (`X-Request-ID` kept when the
//! client sent a usable one, made otherwise, and echoed), a trace span per request with a
//! line at info when it ends (method, route template, status, latency; never paths, queries,
//! tokens or bodies), then [`respond`].
//!
//! Responses are not rewritten here: handlers render typed views in the caller's dialect
//! (`chatsdk_actors::dialect_views!`), and error bodies take the request id from
//! [`request_id`] when they are built.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use chatsdk_proto::ErrorCode;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use crate::error::AppError;

tokio::task_local! {
    /// The id of the request this task is answering.
    static REQUEST_ID: String;
}

/// The id of the request being answered, when called while answering one.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids: the client's `X-Request-ID` when it is short printable ASCII, else a new id.
#[derive(Clone, Copy, Default)]
struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&chatsdk_actors::new_id())
            .ok()
            .map(RequestId::new)
    }
}

/// Drops an `X-Request-ID` we would not echo (empty, long, not printable ASCII), so that
/// [`MakeId`] makes one instead.
async fn sanitize_request_id(mut req: Request, next: Next) -> Response {
    let usable = req.headers().get(&X_REQUEST_ID).is_none_or(|v| {
        v.to_str().is_ok_and(|v| {
            !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic())
        })
    });
    if !usable {
        req.headers_mut().remove(&X_REQUEST_ID);
    }
    next.run(req).await
}

/// Wraps `router` in the tower-http stack (see the module docs).
pub fn stack<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    cors_origins: &[String],
) -> Router<S> {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            let id = req
                .headers()
                .get(&X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", request_id = %id, method = %req.method(), route = %route)
        })
        .on_request(())
        .on_response(|res: &Response, latency: Duration, _span: &tracing::Span| {
            tracing::info!(
                status = res.status().as_u16(),
                latency_ms = latency.as_secs_f64() * 1000.0,
                "answered"
            );
        })
        .on_body_chunk(())
        .on_eos(())
        .on_failure(());
    // JSON, text and metrics are worth compressing; media (already compressed, and served in
    // ranges) and upgrades are not.
    let compressible = DefaultPredicate::new().and(
        |_: StatusCode,
         _: axum::http::Version,
         h: &axum::http::HeaderMap,
         _: &axum::http::Extensions| {
            h.get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| {
                    t.starts_with("application/json")
                        || t.starts_with("text/")
                        || t.starts_with("application/openmetrics-text")
                })
        },
    );
    let router = router
        .layer(trace)
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeId))
        .layer(axum::middleware::from_fn(sanitize_request_id))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            HeaderName::from_static("x-api-key"),
        ]))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(CompressionLayer::new().compress_when(compressible));
    match cors(cors_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// CORS for the configured origins (`*`: any); none configured, no CORS headers.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-api-key"),
                X_REQUEST_ID,
            ])
            .expose_headers([X_REQUEST_ID, header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

/// A handler panicked: the client gets a JSON 500 (the panic is logged by the panic hook).
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("a request handler panicked");
    AppError::new(ErrorCode::Internal, "internal error").into_response()
}

/// Makes the request id available to error bodies, adds the default `Retry-After`, and
/// counts the request in the metrics.
pub async fn respond(
    State(state): State<crate::GatewayState>,
    req: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(chatsdk_actors::new_id);
    let method = req.method().clone();
    let mut res = REQUEST_ID.scope(request_id, next.run(req)).await;
    if res.status() == StatusCode::TOO_MANY_REQUESTS
        && !res.headers().contains_key(header::RETRY_AFTER)
    {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    state.metrics.http(
        method.as_str(),
        &route,
        res.status(),
        started.elapsed().as_secs_f64(),
    );
    res
}

/// Unknown routes.
pub async fn not_found() -> Response {
    AppError::new(ErrorCode::NotFound, "Not Found").into_response()
}

/// Wrong method on a known route.
pub async fn method_not_allowed() -> Response {
    AppError::new(
        ErrorCode::MethodNotFound,
        "method not allowed on this route",
    )
    .into_response()
}
