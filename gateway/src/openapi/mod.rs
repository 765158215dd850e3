//! The REST API described as OpenAPI 3.1, served at `/api/openapi.json` (and browsable at
//! `/api/docs`), so clients can be generated and requests checked against it.
//!
//! Two sources, each the authority for its part: `docs/api.md`, whose tables list every route
//! with who may call it and what it answers (sections become tags; rows become operations, their
//! text the descriptions and the statuses it names), and the types the handlers read and write,
//! whose schemas `utoipa` derives from the structs themselves, serde names and aliases included:
//! the request bodies (`Typed<T>`, tied to routes by [`BODIES`]) and the response views
//! (declared with `chatsdk_actors::dialect_views!` in both dialects, tied to routes by
//! [`RESPONSES`]). `tests/openapi.rs` checks that the document and the router agree both ways,
//! route by route and method by method, and every REST answer the test suite receives is held to
//! the document (`tests/support/schema.rs`).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder};
use utoipa::openapi::security::{SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HttpMethod, InfoBuilder, ObjectBuilder, OpenApi,
    OpenApiBuilder, PathItem, PathsBuilder, RefOr, Required, ResponseBuilder, Type,
};
use utoipa::{PartialSchema, ToSchema};

mod content;

use content::{distinct, one_of_as_any_of, ContentFn, Schemas};
pub use content::{BODIES, RESPONSES};

/// The document's source text: every route, who may call it, what it answers.
const API_MD: &str = include_str!("../../../docs/api.md");

/// Failure statuses whose answer is still the route's own view, not the error body.
const FAILING_VIEWS: &[(&str, &str, &str)] = &[("GET", "/ready", "503")];

/// The error body every failure carries.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: errors are rendered by `chatsdk_proto::ApiError`
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct ErrorDetail {
    /// A stable code, such as `NOT_FOUND` or `VALIDATION_ERROR`.
    code: String,
    message: String,
    /// The request's id (also the `x-request-id` header), for the logs.
    request_id: Option<String>,
}

/// One row of a route table in `docs/api.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub section: String,
    pub method: String,
    /// With `{name}` parameters, without a query string.
    pub path: String,
    /// The query parameters the route cell names (`?limit(50, ≤100)&offset`), each with what
    /// the cell says of it (`50, ≤100`).
    pub query: Vec<(String, String)>,
    /// The row's cells after the route, as `(column, text)`.
    pub cells: Vec<(String, String)>,
}

/// `/a/:id/b?x=` → `/a/{id}/b`.
pub fn openapi_path(doc_path: &str) -> String {
    let path = doc_path.split('?').next().unwrap_or_default();
    path.split('/')
        .map(|seg| match seg.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `?limit(50, ≤100)&sortBy=usage_count&…` → `[("limit", "50, ≤100"), ("sortBy", "usage_count")]`.
fn query_params(doc_path: &str) -> Vec<(String, String)> {
    let Some((_, query)) = doc_path.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|part| {
            let end = part.find(['(', '=']).unwrap_or(part.len());
            let name = part[..end].trim();
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            let note = part[end..]
                .trim_start_matches(['(', '='])
                .trim_end_matches(')')
                .trim();
            valid.then(|| (name.to_string(), note.to_string()))
        })
        .collect()
}

/// A query parameter's schema, as the handlers read it (`body::Query`): `limit` and `offset`
/// are non-negative integers (a `limit` over its maximum is lowered to it), the flags `true` or
/// `false`, the rest text.
fn query_schema(name: &str, note: &str) -> ObjectBuilder {
    match name {
        "limit" | "offset" => {
            let default = note
                .split(',')
                .next()
                .and_then(|n| n.trim().parse::<u64>().ok());
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .default(default.map(Into::into))
        }
        "enabled" | "unread" | "isPublic" => ObjectBuilder::new().schema_type(Type::Boolean),
        _ => ObjectBuilder::new().schema_type(Type::String),
    }
}

/// `/a/{id}/b` and `/a/{x}/b` are the same route.
pub fn route_shape(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "{}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every route row of `docs/api.md`.
pub fn rows(doc: &str) -> Vec<Row> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut columns: Vec<String> = Vec::new();
    for line in doc.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            section = title.split(" (").next().unwrap_or(title).trim().to_string();
            continue;
        }
        if !line.starts_with("| ") {
            continue;
        }
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split(" | ")
            .map(str::trim)
            .collect();
        let first = cells.first().copied().unwrap_or_default();
        if first == "route" {
            columns = cells.iter().skip(1).map(|c| c.to_string()).collect();
            continue;
        }
        let Some((method, rest)) = first.split_once(' ') else {
            continue;
        };
        let Some(path) = rest
            .trim()
            .strip_prefix('`')
            .and_then(|p| p.strip_suffix('`'))
        else {
            continue;
        };
        if !method.chars().all(|c| c.is_ascii_uppercase()) {
            continue;
        }
        out.push(Row {
            section: section.clone(),
            method: method.to_string(),
            path: openapi_path(path),
            query: query_params(path),
            cells: columns
                .iter()
                .cloned()
                .zip(cells.iter().skip(1).map(|c| c.to_string()))
                .collect(),
        });
    }
    out
}

/// The routes the tables do not list, documented here.
fn extra_rows() -> Vec<Row> {
    vec![Row {
        section: "Realtime".into(),
        method: "GET".into(),
        path: "/connection/websocket".into(),
        query: Vec::new(),
        cells: vec![(
            "answer".into(),
            "101: a WebSocket speaking the Centrifugo client protocol v2 (JSON), see `docs/protocol.md`".into(),
        )],
    }]
}

fn method(m: &str) -> Option<HttpMethod> {
    Some(match m {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        _ => return None,
    })
}

/// The success statuses an answer names (`201 {...}`, `→ 204`, `... → 200 with ...`), 200 when
/// it names none.
fn success_statuses(answer: &str) -> Vec<&'static str> {
    let named: Vec<&'static str> = [
        "101", "200", "201", "202", "204", "206", "207", "302", "303", "304",
    ]
    .into_iter()
    .filter(|code| {
        answer.match_indices(code).any(|(at, _)| {
            let before = answer[..at].chars().next_back();
            let after = answer[at + 3..].chars().next();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '.')
                && !after.is_some_and(|c| c.is_alphanumeric() || c == '.')
        })
    })
    .collect();
    if named.is_empty() {
        vec!["200"]
    } else {
        named
    }
}

/// Failure statuses the row's text names.
fn error_statuses(text: &str) -> Vec<&'static str> {
    [
        "400", "401", "403", "404", "409", "410", "413", "415", "422", "429", "503",
    ]
    .into_iter()
    .filter(|code| {
        text.match_indices(code).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + 3..].chars().next();
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
        })
    })
    .collect()
}

/// Who may call a route: by its section, path, and the row's `who` cell (credentials in the
/// URL, a public file, anyone: no scheme; otherwise a user's token or a server key).
fn security(section: &str, path: &str, who: &str) -> Vec<SecurityRequirement> {
    let public = matches!(section, "Health" | "Pages" | "Realtime")
        || path.starts_with("/tokens/validate")
        || who.starts_with("public")
        || who.starts_with("any")
        || who.starts_with("whoever holds");
    let optional = who.starts_with("a media token");
    if public {
        vec![SecurityRequirement::default()]
    } else if path.starts_with("/admin/") {
        vec![SecurityRequirement::new("admin", Vec::<String>::new())]
    } else {
        let mut schemes = vec![
            SecurityRequirement::new("user", Vec::<String>::new()),
            SecurityRequirement::new("apiKey", Vec::<String>::new()),
        ];
        if optional {
            schemes.push(SecurityRequirement::default());
        }
        schemes
    }
}

/// Builds the document.
pub fn document() -> OpenApi {
    let mut schemas: Schemas = Vec::new();
    let error_ref = {
        ErrorBody::schemas(&mut schemas);
        schemas.push(("ErrorBody".into(), ErrorBody::schema()));
        RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorBody"))
    };
    let bodies: BTreeMap<(String, String), ContentFn> = BODIES
        .iter()
        .map(|(m, p, f)| ((m.to_string(), route_shape(p)), *f))
        .collect();
    let answers: BTreeMap<(String, String), ContentFn> = RESPONSES
        .iter()
        .map(|(m, p, f)| ((m.to_string(), route_shape(p)), *f))
        .collect();
    let mut paths = PathsBuilder::new();
    let mut tags: Vec<String> = Vec::new();
    for row in rows(API_MD).into_iter().chain(extra_rows()) {
        let Some(http_method) = method(&row.method) else {
            continue;
        };
        if !tags.contains(&row.section) {
            tags.push(row.section.clone());
        }
        let answer = row
            .cells
            .iter()
            .find(|(c, _)| c == "answer")
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        let who = row
            .cells
            .iter()
            .find(|(c, _)| c == "who" || c == "auth")
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        let description = row
            .cells
            .iter()
            .filter(|(_, t)| !t.is_empty())
            .map(|(c, t)| format!("**{c}**: {t}"))
            .collect::<Vec<_>>()
            .join("\n\n");
        let mut op = OperationBuilder::new()
            .tag(row.section.clone())
            .summary(Some(format!("{} {}", row.method, row.path)))
            .description(Some(description))
            .operation_id(Some(operation_id(&row.method, &row.path)))
            .securities(Some(security(&row.section, &row.path, &who)));
        for name in row
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        for (name, note) in &row.query {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description((!note.is_empty()).then(|| note.clone()))
                    .schema(Some(query_schema(name, note))),
            );
        }
        if let Some(f) = bodies.get(&(row.method.clone(), route_shape(&row.path))) {
            let (mut schema, media) = f(&mut schemas);
            one_of_as_any_of(&mut schema);
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content(media, ContentBuilder::new().schema(Some(schema)).build())
                    .required(Some(if row.method == "DELETE" {
                        // A delete reads an optional body (the acting user of a server key).
                        Required::False
                    } else {
                        Required::True
                    }))
                    .build(),
            ));
        }
        let content = answers
            .get(&(row.method.clone(), route_shape(&row.path)))
            .map(|f| f(&mut schemas));
        for status in success_statuses(&answer) {
            let mut response = ResponseBuilder::new().description(if answer.is_empty() {
                "done".to_string()
            } else {
                answer.clone()
            });
            if let Some((schema, media)) = content.as_ref().filter(|_| status != "204") {
                response = response.content(
                    *media,
                    ContentBuilder::new().schema(Some(schema.clone())).build(),
                );
            }
            op = op.response(status, response);
        }
        for code in error_statuses(&answer) {
            let own = FAILING_VIEWS
                .iter()
                .any(|(m, p, c)| *m == row.method && *p == row.path && *c == code);
            if let Some((schema, media)) = content.as_ref().filter(|_| own) {
                op = op.response(
                    code,
                    ResponseBuilder::new().description(answer.clone()).content(
                        *media,
                        ContentBuilder::new().schema(Some(schema.clone())).build(),
                    ),
                );
                continue;
            }
            op = op.response(
                code,
                ResponseBuilder::new()
                    .description("see the description")
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(error_ref.clone()))
                            .build(),
                    ),
            );
        }
        op = op.response(
            "default",
            ResponseBuilder::new()
                .description("an error: `{error: {code, message, requestId}}`")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(error_ref.clone()))
                        .build(),
                ),
        );
        paths = paths.path(row.path.clone(), PathItem::new(http_method, op.build()));
    }
    let mut components = ComponentsBuilder::new()
        .security_scheme(
            "user",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A user's access token (`POST /api/auth/connect`)"))
                    .build(),
            ),
        )
        .security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "A server API key of an app (acts for the app; `user_id` names a user where one is needed)",
            ))),
        )
        .security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`server.admin_api_key`"))
                    .build(),
            ),
        );
    for (name, mut schema) in distinct(schemas) {
        one_of_as_any_of(&mut schema);
        components = components.schema(name, schema);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("ChatSDK")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The REST API of a ChatSDK node. Client API routes take a user's token and answer in camelCase; the same routes with a server API key answer in snake_case where the original API did. Realtime: the Centrifugo client protocol at `/connection/websocket`.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components.build()))
        .tags(Some(
            tags.into_iter()
                .map(|t| TagBuilder::new().name(t).build())
                .collect::<Vec<_>>(),
        ))
        .build()
}

/// `GET /channels/{id}/messages` → `get_channels_id_messages`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(seg.trim_matches(['{', '}']).chars().map(|c| {
            if c.is_ascii_alphanumeric() {
                c
            } else {
                '_'
            }
        }));
    }
    id
}

/// The document as JSON, built once.
static JSON: LazyLock<String> = LazyLock::new(|| {
    document()
        .to_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
});

/// `GET /api/openapi.json`.
pub async fn serve() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=60"),
        ],
        JSON.as_str(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_and_answer_belongs_to_a_documented_route() {
        let routes: std::collections::BTreeSet<(String, String)> = rows(API_MD)
            .into_iter()
            .map(|r| (r.method, route_shape(&r.path)))
            .collect();
        for (method, path, _) in BODIES.iter().chain(RESPONSES) {
            assert!(
                routes.contains(&(method.to_string(), route_shape(path))),
                "{method} {path} is not in docs/api.md"
            );
        }
        // Built in a debug build, the document stops on two schemas of one name.
        let doc = document();
        let schemas = doc.components.map(|c| c.schemas).unwrap_or_default();
        assert!(schemas.contains_key("render.camel.MessageView"));
        assert!(schemas.contains_key("render.snake.MessageView"));
        // A view whose keys are single words has one schema for both dialects.
        assert!(schemas.contains_key("channels.camel.Count"));
        assert!(!schemas.contains_key("channels.snake.Count"));
    }

    #[test]
    fn statuses_are_read_off_the_answer_text() {
        assert_eq!(
            success_statuses("`{id}` → 201; a repeat → 200 with it"),
            ["200", "201"]
        );
        assert_eq!(success_statuses("204"), ["204"]);
        assert_eq!(success_statuses("`{ready}`; 503 while draining"), ["200"]);
        assert_eq!(success_statuses("up to 2000 items"), ["200"]);
        assert_eq!(
            error_statuses("404 unknown, 409 the last; 4040 no"),
            ["404", "409"]
        );
    }

    #[test]
    fn rows_carry_section_method_path_and_cells() {
        let doc = "## Things (`X`)\n| route | who | answer |\n|---|---|---|\n| GET `/a/:id/b?x=1` | member | `{ok}` |\n";
        let rows = rows(doc);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].section, "Things");
        assert_eq!(rows[0].method, "GET");
        assert_eq!(rows[0].path, "/a/{id}/b");
        assert_eq!(rows[0].query, [("x".to_string(), "1".to_string())]);
        assert_eq!(
            query_params("/s?q&limit(50, ≤100)&sortBy=usage_count&…"),
            [
                ("q".to_string(), String::new()),
                ("limit".to_string(), "50, ≤100".to_string()),
                ("sortBy".to_string(), "usage_count".to_string()),
            ]
        );
        assert_eq!(rows[0].cells[0], ("who".to_string(), "member".to_string()));
        assert_eq!(operation_id("GET", "/a/{id}/b-c"), "get_a_id_b_c");
    }
}
