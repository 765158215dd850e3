//! What each route reads and answers, as schemas: the request bodies ([`BODIES`]) and the
//! answers ([`RESPONSES`]) tied to routes by method and path, and the helpers that turn the
//! handlers' own types into schemas: `utoipa` derives them from the structs, and each view of
//! `chatsdk_actors::dialect_views!` comes in both dialects.

use std::collections::BTreeMap;

use utoipa::openapi::schema::{AdditionalProperties, AnyOfBuilder, ArrayItems};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::ToSchema;

use crate::rest;

/// Named schemas, as `utoipa` collects them.
pub(super) type Schemas = Vec<(String, RefOr<Schema>)>;
/// A body's schema (registering the schemas it refers to) and media type.
pub(super) type ContentFn = fn(&mut Schemas) -> (RefOr<Schema>, &'static str);

/// The JSON body of `T`, registering the schemas it refers to.
fn body<T: ToSchema>(schemas: &mut Schemas) -> (RefOr<Schema>, &'static str) {
    T::schemas(schemas);
    (T::schema(), "application/json")
}

/// A JSON object of any keys.
pub(super) fn free_object(_: &mut Schemas) -> (RefOr<Schema>, &'static str) {
    (ObjectBuilder::new().build().into(), "application/json")
}

/// A multipart form of text fields and one `file` part.
fn form(fields: &[&str]) -> RefOr<Schema> {
    let mut object = ObjectBuilder::new().property(
        "file",
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/octet-stream"),
    );
    for f in fields {
        object = object.property(*f, ObjectBuilder::new().schema_type(Type::String));
    }
    object.required("file").into()
}

fn upload_form(_: &mut Schemas) -> (RefOr<Schema>, &'static str) {
    (form(&["channelId", "user_id"]), "multipart/form-data")
}

fn emoji_form(_: &mut Schemas) -> (RefOr<Schema>, &'static str) {
    (
        form(&["name", "category", "workspaceId", "user_id"]),
        "multipart/form-data",
    )
}

fn raw_bytes(_: &mut Schemas) -> (RefOr<Schema>, &'static str) {
    (
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/octet-stream")
            .into(),
        "application/octet-stream",
    )
}

/// The request body of each route that reads one, by method and router path.
pub const BODIES: &[(&str, &str, ContentFn)] = &[
    ("POST", "/tokens", body::<rest::requests::MintUser>),
    (
        "POST",
        "/api/auth/connect",
        body::<rest::requests::MintUser>,
    ),
    (
        "POST",
        "/api/auth/api-keys",
        body::<rest::requests::CreateApiKey>,
    ),
    (
        "POST",
        "/api/realtime/subscription-token",
        body::<rest::requests::SubscriptionToken>,
    ),
    ("POST", "/admin/apps", body::<rest::requests::AppFields>),
    (
        "POST",
        "/admin/cluster/join-tokens",
        body::<rest::cluster::MintJoinToken>,
    ),
    (
        "POST",
        "/admin/cluster/token-secret/rotate",
        body::<rest::cluster::RotateTokenSecret>,
    ),
    (
        "PATCH",
        "/admin/apps/{id}",
        body::<rest::requests::AppFields>,
    ),
    ("POST", "/api/users", body::<rest::requests::UserFields>),
    ("PATCH", "/api/users/me", body::<rest::requests::UserFields>),
    (
        "POST",
        "/api/users/ensure",
        body::<rest::requests::UserFields>,
    ),
    (
        "POST",
        "/api/users/bulk-ensure",
        body::<rest::requests::UserList>,
    ),
    ("POST", "/api/users/sync", body::<rest::requests::UserList>),
    ("PUT", "/api/users/{id}", body::<rest::requests::UserFields>),
    (
        "POST",
        "/api/users/{id}/supervise",
        body::<rest::supervision::SuperviseBody>,
    ),
    (
        "PATCH",
        "/api/users/{id}/supervise",
        body::<rest::supervision::SuperviseBody>,
    ),
    (
        "POST",
        "/api/users/{id}/block",
        body::<rest::requests::ActingUser>,
    ),
    (
        "DELETE",
        "/api/users/{id}/block",
        body::<rest::requests::ActingUser>,
    ),
    (
        "POST",
        "/api/users/{id}/blocks",
        body::<rest::blocks::BlockBody>,
    ),
    (
        "POST",
        "/api/channels",
        body::<rest::requests::CreateChannel>,
    ),
    (
        "POST",
        "/api/channels/dm/ensure",
        body::<rest::requests::DmEnsure>,
    ),
    (
        "POST",
        "/api/channels/group/ensure",
        body::<rest::requests::GroupEnsure>,
    ),
    (
        "PATCH",
        "/api/channels/{id}",
        body::<rest::requests::UpdateChannel>,
    ),
    (
        "POST",
        "/api/channels/{id}/members",
        body::<rest::requests::AddMembers>,
    ),
    (
        "PATCH",
        "/api/channels/{id}/members/{user}",
        body::<rest::requests::SetRole>,
    ),
    (
        "POST",
        "/api/channels/{id}/typing",
        body::<rest::requests::Typing>,
    ),
    (
        "POST",
        "/api/channels/{id}/read",
        body::<rest::channels::ReadBody>,
    ),
    (
        "POST",
        "/api/channels/{id}/receipts",
        body::<rest::channels::ReadBody>,
    ),
    (
        "POST",
        "/api/channels/{id}/receipts/query",
        body::<rest::receipts::QueryBody>,
    ),
    (
        "POST",
        "/api/channels/{id}/read/query",
        body::<rest::receipts::QueryBody>,
    ),
    (
        "PATCH",
        "/api/channels/{id}/star",
        body::<rest::requests::Star>,
    ),
    (
        "PATCH",
        "/api/channels/{id}/mute",
        body::<rest::requests::Mute>,
    ),
    (
        "POST",
        "/api/channels/{id}/messages",
        body::<rest::messages::SendBody>,
    ),
    (
        "PATCH",
        "/api/channels/{id}/messages/{mid}",
        body::<rest::messages::EditBody>,
    ),
    (
        "POST",
        "/api/channels/{id}/messages/{mid}/thread",
        body::<rest::messages::SendBody>,
    ),
    (
        "POST",
        "/api/channels/{id}/messages/{mid}/reactions",
        body::<rest::annotations::ReactBody>,
    ),
    (
        "DELETE",
        "/api/channels/{id}/messages/{mid}/reactions/{emoji}",
        body::<rest::requests::ActingUser>,
    ),
    (
        "POST",
        "/api/channels/{id}/messages/{mid}/pin",
        body::<rest::requests::ActingUser>,
    ),
    (
        "DELETE",
        "/api/channels/{id}/messages/{mid}/pin",
        body::<rest::requests::ActingUser>,
    ),
    (
        "POST",
        "/api/channels/{id}/messages/{mid}/save",
        body::<rest::requests::ActingUser>,
    ),
    (
        "DELETE",
        "/api/channels/{id}/messages/{mid}/save",
        body::<rest::requests::ActingUser>,
    ),
    (
        "POST",
        "/api/channels/{id}/messages/{mid}/polls",
        body::<rest::annotations::PollBody>,
    ),
    (
        "POST",
        "/api/polls/{id}/vote",
        body::<rest::annotations::VoteBody>,
    ),
    (
        "DELETE",
        "/api/polls/{id}/vote",
        body::<rest::requests::ActingUser>,
    ),
    (
        "POST",
        "/api/messages",
        body::<rest::messages::ServerSendBody>,
    ),
    (
        "PATCH",
        "/api/messages/{mid}",
        body::<rest::messages::EditBody>,
    ),
    (
        "POST",
        "/api/messages/{mid}/reactions",
        body::<rest::annotations::ReactBody>,
    ),
    (
        "DELETE",
        "/api/messages/{mid}/reactions/{emoji}",
        body::<rest::requests::ActingUser>,
    ),
    (
        "POST",
        "/api/messages/{mid}/polls",
        body::<rest::annotations::PollBody>,
    ),
    (
        "POST",
        "/api/messages/{mid}/report",
        body::<rest::moderation::ReportBody>,
    ),
    (
        "POST",
        "/api/moderation/{mid}/report",
        body::<rest::moderation::ReportBody>,
    ),
    (
        "PATCH",
        "/api/moderation/reports/{id}",
        body::<rest::moderation::ResolveBody>,
    ),
    (
        "PUT",
        "/api/moderation/reports/{id}/review",
        body::<rest::moderation::ReviewBody>,
    ),
    (
        "POST",
        "/api/channels/{id}/legal-hold",
        body::<rest::lifecycle::HoldBody>,
    ),
    (
        "POST",
        "/api/users/{id}/legal-hold",
        body::<rest::lifecycle::HoldBody>,
    ),
    ("POST", "/api/devices", body::<rest::devices::DeviceBody>),
    ("PATCH", "/api/devices/preferences", free_object),
    (
        "POST",
        "/api/webpush/subscribe",
        body::<rest::devices::SubscribeBody>,
    ),
    (
        "POST",
        "/api/webpush/unsubscribe",
        body::<rest::devices::UnsubscribeBody>,
    ),
    (
        "POST",
        "/api/enrollment/rules",
        body::<rest::enrollment::RuleBody>,
    ),
    (
        "PATCH",
        "/api/enrollment/rules/{id}",
        body::<rest::enrollment::RuleBody>,
    ),
    (
        "POST",
        "/api/enrollment/execute",
        body::<rest::enrollment::ExecuteBody>,
    ),
    (
        "POST",
        "/api/auto-enrollment/rules",
        body::<rest::enrollment::RuleBody>,
    ),
    (
        "PATCH",
        "/api/auto-enrollment/rules/{id}",
        body::<rest::enrollment::RuleBody>,
    ),
    ("POST", "/api/webhooks", body::<rest::webhooks::CreateBody>),
    (
        "PATCH",
        "/api/webhooks/{id}",
        body::<rest::webhooks::UpdateBody>,
    ),
    (
        "POST",
        "/api/moderation/bans",
        body::<rest::moderation::RestrictBody>,
    ),
    (
        "POST",
        "/api/channels/{id}/bans",
        body::<rest::moderation::RestrictBody>,
    ),
    (
        "POST",
        "/api/channels/{id}/mutes",
        body::<rest::moderation::RestrictBody>,
    ),
    (
        "POST",
        "/api/presence/heartbeat",
        body::<rest::requests::ActingUser>,
    ),
    (
        "POST",
        "/api/presence/online",
        body::<rest::requests::ActingUser>,
    ),
    (
        "POST",
        "/api/presence/offline",
        body::<rest::requests::ActingUser>,
    ),
    (
        "POST",
        "/api/presence/query",
        body::<rest::presence::QueryBody>,
    ),
    (
        "POST",
        "/api/templates",
        body::<rest::templates::TemplateBody>,
    ),
    (
        "POST",
        "/api/templates/from-template",
        body::<rest::templates::FromTemplateBody>,
    ),
    (
        "PATCH",
        "/api/templates/{id}",
        body::<rest::templates::TemplateBody>,
    ),
    (
        "DELETE",
        "/api/templates/{id}",
        body::<rest::requests::ActingUser>,
    ),
    (
        "POST",
        "/api/uploads/presigned",
        body::<rest::uploads::PresignBody>,
    ),
    (
        "DELETE",
        "/api/emoji/{id}",
        body::<rest::requests::ActingUser>,
    ),
    ("POST", "/api/emoji/{id}/use", body::<rest::emoji::UseBody>),
    (
        "POST",
        "/api/mentions/read",
        body::<rest::mentions::MarkBody>,
    ),
    (
        "POST",
        "/api/workspaces",
        body::<rest::workspaces::WorkspaceBody>,
    ),
    (
        "PUT",
        "/api/workspaces/{id}",
        body::<rest::workspaces::WorkspaceBody>,
    ),
    (
        "PATCH",
        "/api/workspaces/{id}",
        body::<rest::workspaces::WorkspaceBody>,
    ),
    (
        "DELETE",
        "/api/workspaces/{id}",
        body::<rest::requests::ActingUser>,
    ),
    (
        "POST",
        "/api/workspaces/{id}/members",
        body::<rest::workspaces::MembersBody>,
    ),
    (
        "PATCH",
        "/api/workspaces/{id}/members/{user}",
        body::<rest::workspaces::RoleBody>,
    ),
    (
        "DELETE",
        "/api/workspaces/{id}/members/{user}",
        body::<rest::requests::ActingUser>,
    ),
    (
        "POST",
        "/api/workspaces/{id}/invite",
        body::<rest::workspaces::InviteBody>,
    ),
    ("POST", "/demo/session", body::<crate::web::DemoLogin>),
    ("POST", "/api/uploads/direct", upload_form),
    ("POST", "/api/emoji", emoji_form),
    ("PUT", "/api/uploads/put", raw_bytes),
];

/// The JSON answer of views declared with `chatsdk_actors::dialect_views!`: each view in both
/// dialects (camelCase for a user's token, snake_case for a server key; one schema where the two
/// spell it alike), any of them when several are listed (a user's and a server key's answers).
macro_rules! views {
    ($($m:ident::$t:ident),+ $(,)?) => {{
        fn content(schemas: &mut Schemas) -> (RefOr<Schema>, &'static str) {
            let mut choices = Vec::new();
            $(dialects::<views!(@camel $m::$t), views!(@snake $m::$t)>(schemas, &mut choices);)+
            (any_of(choices), "application/json")
        }
        content as ContentFn
    }};
    (@camel render::$t:ident) => { chatsdk_actors::render::camel::$t };
    (@snake render::$t:ident) => { chatsdk_actors::render::snake::$t };
    (@camel $m:ident::$t:ident) => { rest::$m::camel::$t };
    (@snake $m:ident::$t:ident) => { rest::$m::snake::$t };
}

/// `T`'s schema under its name, with the schemas it refers to, and a reference to it.
fn named<T: ToSchema>(schemas: &mut Schemas) -> RefOr<Schema> {
    T::schemas(schemas);
    schemas.push((T::name().into_owned(), T::schema()));
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name(T::name()))
}

/// Registers a view's camelCase twin `C` and, unless it spells everything alike, its
/// snake_case twin `S`; adds a reference to each registered one to `choices`.
fn dialects<C: ToSchema, S: ToSchema>(schemas: &mut Schemas, choices: &mut Vec<RefOr<Schema>>) {
    let (mut camel, mut snake) = (Vec::new(), Vec::new());
    let camel_ref = named::<C>(&mut camel);
    let snake_ref = named::<S>(&mut snake);
    let alike = spelled(&camel) == spelled(&snake).replace(".snake.", ".camel.");
    schemas.extend(camel);
    choices.push(camel_ref);
    if !alike {
        schemas.extend(snake);
        choices.push(snake_ref);
    }
}

/// Schemas as text, in name order, to compare two dialects' spellings.
fn spelled(schemas: &Schemas) -> String {
    let sorted: BTreeMap<&str, &RefOr<Schema>> =
        schemas.iter().map(|(n, s)| (n.as_str(), s)).collect();
    serde_json::to_string(&sorted).unwrap_or_default()
}

/// One schema, or any of several.
fn any_of(mut choices: Vec<RefOr<Schema>>) -> RefOr<Schema> {
    if choices.len() == 1 {
        return choices.remove(0);
    }
    let mut any = AnyOfBuilder::new();
    for c in choices {
        any = any.item(c);
    }
    any.into()
}

/// The JSON answer `T`, under its name.
fn typed<T: ToSchema>(schemas: &mut Schemas) -> (RefOr<Schema>, &'static str) {
    (named::<T>(schemas), "application/json")
}

/// `{"success": true}`.
fn success(schemas: &mut Schemas) -> (RefOr<Schema>, &'static str) {
    (named::<rest::Success>(schemas), "application/json")
}

/// The OpenMetrics text format (Prometheus scrapes it).
fn openmetrics_text(_: &mut Schemas) -> (RefOr<Schema>, &'static str) {
    (
        ObjectBuilder::new().schema_type(Type::String).into(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
}

/// An HTML page.
fn html(_: &mut Schemas) -> (RefOr<Schema>, &'static str) {
    (
        ObjectBuilder::new().schema_type(Type::String).into(),
        "text/html",
    )
}

/// A stored file, in its own content type.
fn any_file(_: &mut Schemas) -> (RefOr<Schema>, &'static str) {
    (
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/octet-stream")
            .into(),
        "*/*",
    )
}

/// An image (an emoji's).
fn image(_: &mut Schemas) -> (RefOr<Schema>, &'static str) {
    (
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/octet-stream")
            .into(),
        "image/*",
    )
}

/// The answer of each route that has a body, by method and router path (the same for each of
/// its success statuses but 204). Views are the structs the handlers serialize.
pub const RESPONSES: &[(&str, &str, ContentFn)] = &[
    ("GET", "/health", typed::<rest::health::Health>),
    ("GET", "/metrics", openmetrics_text),
    ("GET", "/ready", typed::<rest::health::Ready>),
    ("GET", "/live", typed::<rest::health::Live>),
    ("POST", "/tokens", typed::<rest::tokens::Minted>),
    ("POST", "/tokens/refresh", typed::<rest::tokens::Refreshed>),
    ("GET", "/tokens/validate", typed::<rest::tokens::Validated>),
    (
        "GET",
        "/tokens/validate-ws",
        typed::<rest::tokens::Validated>,
    ),
    (
        "POST",
        "/api/auth/connect",
        typed::<rest::tokens::Connected>,
    ),
    (
        "POST",
        "/api/auth/refresh",
        typed::<rest::tokens::AuthRefreshed>,
    ),
    ("GET", "/api/auth/api-keys", typed::<rest::keys::KeyList>),
    (
        "POST",
        "/api/auth/api-keys",
        typed::<rest::keys::CreatedKey>,
    ),
    ("DELETE", "/api/auth/api-keys/{id}", success),
    (
        "POST",
        "/api/realtime/subscription-token",
        views!(tokens::SubscriptionToken),
    ),
    ("GET", "/admin/backup", raw_bytes),
    (
        "GET",
        "/admin/cluster",
        typed::<crate::cluster_view::ClusterView>,
    ),
    (
        "POST",
        "/admin/cluster/join-tokens",
        typed::<rest::cluster::JoinToken>,
    ),
    (
        "POST",
        "/admin/cluster/ca/rotate",
        typed::<rest::cluster::CaRotation>,
    ),
    (
        "POST",
        "/admin/cluster/token-secret/rotate",
        typed::<rest::cluster::TokenSecretRotation>,
    ),
    (
        "DELETE",
        "/admin/cluster/nodes/{id}",
        typed::<rest::cluster::NodeChange>,
    ),
    (
        "POST",
        "/admin/cluster/nodes/{id}/drain",
        typed::<rest::cluster::NodeChange>,
    ),
    ("GET", "/admin/apps", typed::<rest::admin::AppList>),
    ("POST", "/admin/apps", typed::<rest::admin::CreatedApp>),
    ("GET", "/admin/apps/{id}", typed::<rest::admin::AppView>),
    ("PATCH", "/admin/apps/{id}", typed::<rest::admin::AppView>),
    (
        "DELETE",
        "/admin/apps/{id}",
        typed::<rest::admin::DeletedApp>,
    ),
    (
        "GET",
        "/admin/apps/{id}/users",
        typed::<rest::admin::AdminUsers>,
    ),
    (
        "GET",
        "/admin/apps/{id}/channels",
        typed::<rest::admin::AdminChannels>,
    ),
    (
        "GET",
        "/admin/apps/{id}/reports",
        views!(moderation::ReportList),
    ),
    (
        "POST",
        "/admin/apps/{id}/regenerate-key",
        typed::<rest::admin::Deprecated>,
    ),
    ("GET", "/api/users", views!(users::UserList)),
    ("POST", "/api/users", views!(users::ProfileView)),
    ("GET", "/api/users/me", views!(users::ProfileView)),
    ("PATCH", "/api/users/me", views!(users::OwnFields)),
    ("POST", "/api/users/ensure", views!(users::Ensured)),
    ("POST", "/api/users/bulk-ensure", views!(users::BulkEnsured)),
    ("POST", "/api/users/sync", views!(users::Synced)),
    ("GET", "/api/users/{id}", views!(users::UserView)),
    ("PUT", "/api/users/{id}", views!(users::PutUser)),
    ("DELETE", "/api/users/{id}", views!(users::Deleted)),
    (
        "POST",
        "/api/users/{id}/revoke-tokens",
        views!(users::Revoked),
    ),
    ("GET", "/api/users/me/blocked", views!(blocks::BlockedList)),
    (
        "GET",
        "/api/users/me/supervised",
        views!(supervision::SupervisedList),
    ),
    (
        "GET",
        "/api/users/me/supervisors",
        views!(supervision::SupervisorList),
    ),
    (
        "POST",
        "/api/users/{id}/supervise",
        views!(supervision::SupervisionView),
    ),
    (
        "PATCH",
        "/api/users/{id}/supervise",
        views!(supervision::Updated),
    ),
    (
        "DELETE",
        "/api/users/{id}/supervise",
        views!(supervision::Unsupervised),
    ),
    (
        "GET",
        "/api/users/{id}/activity",
        views!(supervision::ActivityReport),
    ),
    ("POST", "/api/users/{id}/block", success),
    ("DELETE", "/api/users/{id}/block", success),
    ("GET", "/api/users/{id}/blocks", views!(blocks::Blocks)),
    ("POST", "/api/users/{id}/blocks", views!(blocks::Block)),
    ("DELETE", "/api/users/{id}/blocks/{blocked}", success),
    ("GET", "/api/channels", views!(channels::ChannelList)),
    ("POST", "/api/channels", views!(channels::ChannelView)),
    ("POST", "/api/channels/dm/ensure", views!(channels::Ensured)),
    (
        "POST",
        "/api/channels/group/ensure",
        views!(channels::Ensured),
    ),
    ("GET", "/api/channels/unread-count", views!(channels::Count)),
    ("GET", "/api/channels/{id}", views!(channels::ChannelDetail)),
    ("PATCH", "/api/channels/{id}", views!(channels::ChannelView)),
    ("DELETE", "/api/channels/{id}", success),
    (
        "GET",
        "/api/channels/{id}/members",
        views!(channels::MemberList),
    ),
    (
        "POST",
        "/api/channels/{id}/members",
        views!(channels::AddedCount, channels::MembersAdded),
    ),
    (
        "PATCH",
        "/api/channels/{id}/members/{user}",
        views!(channels::RoleSet),
    ),
    ("DELETE", "/api/channels/{id}/members/{user}", success),
    ("POST", "/api/channels/{id}/typing", success),
    (
        "POST",
        "/api/channels/{id}/read",
        views!(channels::ReadMarked, receipts::Receipted),
    ),
    (
        "POST",
        "/api/channels/{id}/receipts",
        views!(receipts::Receipted),
    ),
    (
        "GET",
        "/api/channels/{id}/receipts/messages/{mid}/receipts",
        views!(receipts::ReadBy),
    ),
    (
        "GET",
        "/api/channels/{id}/read/messages/{mid}/receipts",
        views!(receipts::ReadBy),
    ),
    (
        "POST",
        "/api/channels/{id}/receipts/query",
        views!(receipts::ReceiptMap),
    ),
    (
        "POST",
        "/api/channels/{id}/read/query",
        views!(receipts::ReceiptMap),
    ),
    (
        "GET",
        "/api/channels/{id}/receipts/read-status",
        views!(receipts::ReadStatus),
    ),
    (
        "GET",
        "/api/channels/{id}/read/read-status",
        views!(receipts::ReadStatus),
    ),
    (
        "PATCH",
        "/api/channels/{id}/star",
        views!(channels::Starred),
    ),
    ("PATCH", "/api/channels/{id}/mute", views!(channels::Muted)),
    (
        "GET",
        "/api/channels/{id}/messages",
        views!(messages::MessageList),
    ),
    (
        "POST",
        "/api/channels/{id}/messages",
        views!(messages::SentView),
    ),
    (
        "GET",
        "/api/channels/{id}/messages/{mid}",
        views!(messages::MessageView),
    ),
    (
        "PATCH",
        "/api/channels/{id}/messages/{mid}",
        views!(messages::MessageView),
    ),
    ("DELETE", "/api/channels/{id}/messages/{mid}", success),
    (
        "DELETE",
        "/api/channels/{id}/messages/{mid}/purge",
        views!(messages::Purged),
    ),
    (
        "GET",
        "/api/channels/{id}/messages/{mid}/thread",
        views!(messages::Thread),
    ),
    (
        "POST",
        "/api/channels/{id}/messages/{mid}/thread",
        views!(messages::SentView),
    ),
    (
        "GET",
        "/api/channels/{id}/messages/pins",
        views!(annotations::Messages),
    ),
    (
        "GET",
        "/api/channels/{id}/messages/{mid}/thread/participants",
        views!(messages::Participants),
    ),
    (
        "GET",
        "/api/channels/{id}/messages/me/saved",
        views!(annotations::SavedList),
    ),
    (
        "GET",
        "/api/channels/{id}/messages/{mid}/reactions",
        views!(annotations::ReactionList),
    ),
    (
        "POST",
        "/api/channels/{id}/messages/{mid}/reactions",
        views!(annotations::Reacted),
    ),
    (
        "DELETE",
        "/api/channels/{id}/messages/{mid}/reactions/{emoji}",
        success,
    ),
    ("POST", "/api/channels/{id}/messages/{mid}/pin", success),
    ("DELETE", "/api/channels/{id}/messages/{mid}/pin", success),
    ("POST", "/api/channels/{id}/messages/{mid}/save", success),
    ("DELETE", "/api/channels/{id}/messages/{mid}/save", success),
    (
        "POST",
        "/api/channels/{id}/messages/{mid}/polls",
        views!(annotations::PollView),
    ),
    ("GET", "/api/polls/{id}", views!(annotations::Results)),
    (
        "GET",
        "/api/polls/{id}/results",
        views!(annotations::Results),
    ),
    ("POST", "/api/polls/{id}/vote", views!(annotations::Voted)),
    ("DELETE", "/api/polls/{id}/vote", views!(annotations::Voted)),
    ("POST", "/api/messages", views!(messages::SentView)),
    ("GET", "/api/messages/{mid}", views!(render::MessageView)),
    ("PATCH", "/api/messages/{mid}", views!(render::MessageView)),
    ("DELETE", "/api/messages/{mid}", success),
    (
        "GET",
        "/api/messages/{mid}/reactions",
        views!(annotations::ReactionList),
    ),
    (
        "POST",
        "/api/messages/{mid}/reactions",
        views!(annotations::Reacted),
    ),
    ("DELETE", "/api/messages/{mid}/reactions/{emoji}", success),
    (
        "POST",
        "/api/messages/{mid}/polls",
        views!(render::PollView),
    ),
    (
        "POST",
        "/api/messages/{mid}/report",
        views!(moderation::Filed),
    ),
    (
        "POST",
        "/api/moderation/{mid}/report",
        views!(moderation::Filed),
    ),
    (
        "GET",
        "/api/moderation/reports",
        views!(moderation::ReportList),
    ),
    (
        "GET",
        "/api/moderation/reports/{id}",
        views!(moderation::ReportView),
    ),
    (
        "PATCH",
        "/api/moderation/reports/{id}",
        views!(moderation::ReportView),
    ),
    (
        "PUT",
        "/api/moderation/reports/{id}/review",
        views!(moderation::Reviewed),
    ),
    ("GET", "/api/moderation/stats", views!(moderation::Stats)),
    ("GET", "/api/legal-holds", views!(lifecycle::Holds)),
    (
        "POST",
        "/api/channels/{id}/legal-hold",
        views!(lifecycle::HoldView),
    ),
    ("DELETE", "/api/channels/{id}/legal-hold", success),
    (
        "POST",
        "/api/users/{id}/legal-hold",
        views!(lifecycle::HoldView),
    ),
    ("DELETE", "/api/users/{id}/legal-hold", success),
    (
        "POST",
        "/api/users/me/export",
        views!(lifecycle::ExportView),
    ),
    (
        "POST",
        "/api/users/{id}/export",
        views!(lifecycle::ExportView),
    ),
    (
        "POST",
        "/api/channels/{id}/export",
        views!(lifecycle::ExportView),
    ),
    ("GET", "/api/exports/{id}", free_object),
    ("GET", "/api/devices", views!(devices::Devices)),
    ("POST", "/api/devices", success),
    (
        "GET",
        "/api/devices/preferences",
        views!(devices::Preferences),
    ),
    (
        "PATCH",
        "/api/devices/preferences",
        views!(devices::PreferencesSet),
    ),
    ("DELETE", "/api/devices/{token}", success),
    ("GET", "/api/webpush/vapid-key", views!(devices::VapidKey)),
    ("POST", "/api/webpush/subscribe", success),
    ("POST", "/api/webpush/unsubscribe", success),
    ("POST", "/api/webpush/test", views!(devices::Tested)),
    ("GET", "/api/enrollment/rules", views!(enrollment::Rules)),
    (
        "POST",
        "/api/enrollment/rules",
        views!(enrollment::RuleView),
    ),
    (
        "GET",
        "/api/enrollment/rules/{id}",
        views!(enrollment::RuleView),
    ),
    (
        "PATCH",
        "/api/enrollment/rules/{id}",
        views!(enrollment::RuleView),
    ),
    ("DELETE", "/api/enrollment/rules/{id}", success),
    (
        "POST",
        "/api/enrollment/execute",
        views!(enrollment::Executed),
    ),
    (
        "GET",
        "/api/enrollment/history",
        views!(enrollment::History),
    ),
    (
        "POST",
        "/api/auto-enrollment/rules",
        views!(enrollment::RuleView),
    ),
    (
        "GET",
        "/api/auto-enrollment/rules/{id}",
        views!(enrollment::RuleView),
    ),
    (
        "PATCH",
        "/api/auto-enrollment/rules/{id}",
        views!(enrollment::RuleView),
    ),
    ("DELETE", "/api/auto-enrollment/rules/{id}", success),
    (
        "GET",
        "/api/workspaces/{id}/auto-enrollment/rules",
        views!(enrollment::Rules),
    ),
    ("GET", "/api/webhooks", views!(webhooks::HookList)),
    ("POST", "/api/webhooks", views!(webhooks::HookView)),
    ("GET", "/api/webhooks/{id}", views!(webhooks::HookView)),
    ("PATCH", "/api/webhooks/{id}", views!(webhooks::HookView)),
    ("DELETE", "/api/webhooks/{id}", success),
    (
        "POST",
        "/api/webhooks/{id}/regenerate-secret",
        views!(webhooks::Secret),
    ),
    ("POST", "/api/webhooks/{id}/test", views!(webhooks::Tested)),
    (
        "GET",
        "/api/webhooks/{id}/deliveries",
        views!(webhooks::Deliveries),
    ),
    ("GET", "/api/moderation/bans", views!(moderation::Bans)),
    (
        "POST",
        "/api/moderation/bans",
        views!(moderation::RestrictionView),
    ),
    ("DELETE", "/api/moderation/bans/{user}", success),
    ("GET", "/api/channels/{id}/bans", views!(moderation::Bans)),
    (
        "POST",
        "/api/channels/{id}/bans",
        views!(moderation::RestrictionView),
    ),
    ("DELETE", "/api/channels/{id}/bans/{user}", success),
    ("GET", "/api/channels/{id}/mutes", views!(moderation::Mutes)),
    (
        "POST",
        "/api/channels/{id}/mutes",
        views!(moderation::RestrictionView),
    ),
    ("DELETE", "/api/channels/{id}/mutes/{user}", success),
    ("POST", "/api/presence/heartbeat", success),
    ("POST", "/api/presence/online", success),
    ("POST", "/api/presence/offline", success),
    ("POST", "/api/presence/query", views!(presence::PresenceMap)),
    (
        "GET",
        "/api/channels/{id}/presence",
        views!(presence::ChannelPresence),
    ),
    (
        "GET",
        "/api/channels/{id}/presence/live",
        views!(presence::LiveClients),
    ),
    ("GET", "/api/templates", views!(templates::TemplateList)),
    ("POST", "/api/templates", views!(templates::TemplateView)),
    (
        "GET",
        "/api/templates/built-in/list",
        views!(templates::TemplateList),
    ),
    (
        "POST",
        "/api/templates/from-template",
        views!(templates::FromTemplate),
    ),
    (
        "GET",
        "/api/templates/{id}",
        views!(templates::TemplateView),
    ),
    (
        "PATCH",
        "/api/templates/{id}",
        views!(templates::TemplateView),
    ),
    ("DELETE", "/api/templates/{id}", success),
    ("GET", "/api/emoji", views!(emoji::EmojiList)),
    ("POST", "/api/emoji", views!(emoji::EmojiView)),
    ("GET", "/api/search", views!(search::Results)),
    (
        "GET",
        "/api/search/suggestions",
        views!(search::Suggestions),
    ),
    ("GET", "/api/channels/{id}/search", views!(search::Results)),
    (
        "POST",
        "/api/uploads/presigned",
        views!(uploads::PresignedView),
    ),
    ("POST", "/api/uploads/direct", views!(uploads::DirectView)),
    ("GET", "/api/uploads/content", any_file),
    ("DELETE", "/api/uploads/{key}", success),
    ("GET", "/api/uploads/{key}/content", any_file),
    (
        "GET",
        "/api/uploads/{key}/download",
        views!(uploads::LinkView),
    ),
    (
        "POST",
        "/api/uploads/{key}/confirm",
        views!(uploads::ConfirmedView),
    ),
    (
        "GET",
        "/api/channels/{id}/uploads",
        views!(uploads::ListView),
    ),
    ("GET", "/api/emoji/search/query", views!(emoji::EmojiList)),
    ("GET", "/api/emoji/{id}", views!(emoji::EmojiView)),
    ("DELETE", "/api/emoji/{id}", success),
    ("POST", "/api/emoji/{id}/use", success),
    ("GET", "/api/emoji/{id}/analytics", views!(emoji::Analytics)),
    ("GET", "/api/emoji/{id}/image", image),
    ("GET", "/api/mentions", views!(mentions::MentionList)),
    ("GET", "/api/mentions/unread-count", views!(mentions::Count)),
    ("POST", "/api/mentions/read", views!(mentions::Marked)),
    ("GET", "/api/mentions/search", views!(mentions::Candidates)),
    ("GET", "/api/workspaces", views!(workspaces::WorkspaceList)),
    ("POST", "/api/workspaces", views!(workspaces::WorkspaceView)),
    (
        "GET",
        "/api/workspaces/invites/{token}",
        views!(workspaces::Joined),
    ),
    (
        "POST",
        "/api/workspaces/invites/{token}",
        views!(workspaces::Joined),
    ),
    (
        "GET",
        "/api/workspaces/{id}",
        views!(workspaces::WorkspaceView),
    ),
    (
        "PUT",
        "/api/workspaces/{id}",
        views!(workspaces::WorkspaceView),
    ),
    (
        "PATCH",
        "/api/workspaces/{id}",
        views!(workspaces::WorkspaceView),
    ),
    ("DELETE", "/api/workspaces/{id}", success),
    (
        "POST",
        "/api/workspaces/{id}/members",
        views!(workspaces::Added),
    ),
    (
        "PATCH",
        "/api/workspaces/{id}/members/{user}",
        views!(workspaces::RoleSet),
    ),
    ("DELETE", "/api/workspaces/{id}/members/{user}", success),
    (
        "GET",
        "/api/workspaces/{id}/channels",
        views!(channels::ChannelList),
    ),
    (
        "GET",
        "/api/workspaces/{id}/stats",
        views!(workspaces::Stats),
    ),
    (
        "POST",
        "/api/workspaces/{id}/invite",
        views!(workspaces::Invitations),
    ),
    ("GET", "/api/openapi.json", free_object),
    ("GET", "/api/docs", html),
    ("GET", "/console", html),
    ("GET", "/demo", html),
    ("POST", "/demo/session", typed::<crate::web::DemoSession>),
    ("GET", "/web/{file}", any_file),
];

/// `utoipa` derives `Option<T>` as `oneOf: [null, T]` and an untagged enum as `oneOf` of its
/// variants' structs, but "exactly one fits" is false whenever the choices overlap: free JSON
/// takes null too, and objects that allow more keys than they name fit each other's instances
/// (a profile is a public user with an email). Every `oneOf` becomes `anyOf`, which is what an
/// option and an untagged enum mean.
pub(super) fn one_of_as_any_of(schema: &mut RefOr<Schema>) {
    let RefOr::T(schema) = schema else {
        return;
    };
    match schema {
        Schema::Object(o) => {
            o.properties.values_mut().for_each(one_of_as_any_of);
            if let Some(AdditionalProperties::RefOr(extra)) = o.additional_properties.as_deref_mut()
            {
                one_of_as_any_of(extra);
            }
        }
        Schema::Array(a) => {
            if let ArrayItems::RefOrSchema(items) = &mut a.items {
                one_of_as_any_of(items);
            }
        }
        Schema::AllOf(all) => all.items.iter_mut().for_each(one_of_as_any_of),
        Schema::AnyOf(any) => any.items.iter_mut().for_each(one_of_as_any_of),
        Schema::OneOf(one) => {
            one.items.iter_mut().for_each(one_of_as_any_of);
            let mut any = AnyOfBuilder::new().build();
            any.items = std::mem::take(&mut one.items);
            any.description = one.description.take();
            any.default = one.default.take();
            any.examples = std::mem::take(&mut one.examples);
            *schema = Schema::AnyOf(any);
        }
        _ => {}
    }
}

/// The schemas by name, each once. Two different schemas under one name would make references
/// ambiguous: debug builds (the tests) stop on them.
pub(super) fn distinct(schemas: Schemas) -> BTreeMap<String, RefOr<Schema>> {
    let mut out: BTreeMap<String, RefOr<Schema>> = BTreeMap::new();
    for (name, schema) in schemas {
        if let Some(seen) = out.get(&name) {
            debug_assert!(
                seen == &schema,
                "two schemas are named {name}: give one a `#[schema(as = ...)]`"
            );
            continue;
        }
        out.insert(name, schema);
    }
    out
}
