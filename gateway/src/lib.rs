//! ChatSDK's client surfaces: REST in both dialects, the Centrifugo-compatible WebSocket,
//! authentication and limits.
//!
//! [`app`] builds the whole router from a [`GatewayState`], so tests drive it without a server;
//! [`serve`] runs it on a listener with the protections a public port needs (header-read
//! timeout, connection cap, graceful drain). The gateway holds no domain state: every request
//! becomes a call on [`chatsdk_actors::Chat`].
//!
//! Module map: [`auth`] (keys, tokens, extractors), [`body`] (JSON bodies and queries),
//! [`error`] (the JSON error body), [`layers`] (the tower-http stack, request ids), [`rest`] (handlers, whose
//! responses are typed views in the caller's dialect), [`connection`] (one realtime
//! connection, any transport), [`ws`] and [`quic`] (the realtime transports), [`serve`], [`state`], [`web`] (the console and demo pages).

pub mod auth;
pub mod body;
pub mod cluster_view;
pub mod connection;
pub mod error;
pub mod fuzzing;
pub mod layers;
pub mod metrics;
pub mod openapi;
mod pipeline;
pub mod quic;
pub mod rest;
pub mod serve;
pub mod state;
pub mod tls;
pub mod web;
pub mod ws;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post, put};
use axum::Router;

pub use serve::{serve, serve_tls};
pub use state::{GatewayConfig, GatewayState};

/// The router of every HTTP surface.
pub fn app(state: GatewayState) -> Router {
    use rest::{
        admin, annotations, backup, blocks, by_message, channels, cluster, devices, emoji,
        enrollment, health, keys, lifecycle, mentions, messages, moderation, presence, receipts,
        search, supervision, templates, tokens, uploads, users, webhooks, workspaces,
    };
    let body_limit = state.config.body_limit;
    let cors_origins = state.config.cors_origins.clone();
    let router = Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::scrape))
        .route("/ready", get(health::ready))
        .route("/live", get(health::live))
        .route("/tokens", post(tokens::tokens))
        .route("/tokens/refresh", post(tokens::tokens_refresh))
        .route("/tokens/validate", get(tokens::validate))
        .route("/tokens/validate-ws", get(tokens::validate_ws))
        .route("/api/auth/connect", post(tokens::connect))
        .route("/api/auth/refresh", post(tokens::auth_refresh))
        .route("/api/auth/api-keys", get(keys::list).post(keys::create))
        .route("/api/auth/api-keys/{id}", delete(keys::revoke))
        .route(
            "/api/realtime/subscription-token",
            post(tokens::subscription_token),
        )
        .route("/admin/backup", get(backup::backup))
        .route("/admin/cluster", get(cluster::view))
        .route("/admin/cluster/join-tokens", post(cluster::mint_join_token))
        .route("/admin/cluster/ca/rotate", post(cluster::rotate_ca))
        .route(
            "/admin/cluster/token-secret/rotate",
            post(cluster::rotate_token_secret),
        )
        .route("/admin/cluster/nodes/{id}", delete(cluster::remove))
        .route("/admin/cluster/nodes/{id}/drain", post(cluster::drain))
        .route("/admin/apps", get(admin::list).post(admin::create))
        .route(
            "/admin/apps/{id}",
            get(admin::get).patch(admin::update).delete(admin::delete),
        )
        .route("/admin/apps/{id}/users", get(admin::users))
        .route("/admin/apps/{id}/channels", get(admin::channels))
        .route("/admin/apps/{id}/reports", get(moderation::admin_list))
        .route(
            "/admin/apps/{id}/regenerate-key",
            post(admin::regenerate_key),
        )
        .route("/api/users", get(users::list).post(users::create))
        .route("/api/users/me", get(users::me).patch(users::update_me))
        .route("/api/users/ensure", post(users::ensure))
        .route("/api/users/bulk-ensure", post(users::bulk_ensure))
        .route("/api/users/sync", post(users::sync))
        .route(
            "/api/users/{id}",
            get(users::get).put(users::put).delete(users::delete),
        )
        .route("/api/users/{id}/revoke-tokens", post(users::revoke))
        .route("/api/users/me/blocked", get(blocks::mine))
        .route("/api/users/me/supervised", get(supervision::mine))
        .route("/api/users/me/supervisors", get(supervision::supervisors))
        .route(
            "/api/users/{id}/supervise",
            post(supervision::supervise)
                .patch(supervision::update)
                .delete(supervision::unsupervise),
        )
        .route("/api/users/{id}/activity", get(supervision::activity))
        .route(
            "/api/users/{id}/block",
            post(blocks::block).delete(blocks::unblock),
        )
        .route(
            "/api/users/{id}/blocks",
            get(blocks::list).post(blocks::create),
        )
        .route("/api/users/{id}/blocks/{blocked}", delete(blocks::delete))
        .route("/api/channels", get(channels::list).post(channels::create))
        .route("/api/channels/dm/ensure", post(channels::dm_ensure))
        .route("/api/channels/group/ensure", post(channels::group_ensure))
        .route("/api/channels/unread-count", get(channels::unread_count))
        .route(
            "/api/channels/{id}",
            get(channels::get)
                .patch(channels::update)
                .delete(channels::delete),
        )
        .route(
            "/api/channels/{id}/members",
            get(channels::members).post(channels::add_members),
        )
        .route(
            "/api/channels/{id}/members/{user}",
            patch(channels::set_role).delete(channels::remove_member),
        )
        .route("/api/channels/{id}/typing", post(channels::typing))
        .route("/api/channels/{id}/read", post(channels::read))
        .route("/api/channels/{id}/receipts", post(receipts::create))
        .route(
            "/api/channels/{id}/receipts/messages/{mid}/receipts",
            get(receipts::message),
        )
        .route(
            "/api/channels/{id}/read/messages/{mid}/receipts",
            get(receipts::message),
        )
        .route("/api/channels/{id}/receipts/query", post(receipts::query))
        .route("/api/channels/{id}/read/query", post(receipts::query))
        .route(
            "/api/channels/{id}/receipts/read-status",
            get(receipts::status),
        )
        .route("/api/channels/{id}/read/read-status", get(receipts::status))
        .route("/api/channels/{id}/star", patch(channels::star))
        .route("/api/channels/{id}/mute", patch(channels::mute))
        .route(
            "/api/channels/{id}/messages",
            get(messages::list).post(messages::create),
        )
        .route(
            "/api/channels/{id}/messages/{mid}",
            get(messages::get)
                .patch(messages::edit)
                .delete(messages::delete),
        )
        .route(
            "/api/channels/{id}/messages/{mid}/purge",
            delete(messages::purge),
        )
        .route(
            "/api/channels/{id}/messages/{mid}/thread",
            get(messages::thread).post(messages::reply),
        )
        .route("/api/channels/{id}/messages/pins", get(annotations::pins))
        .route(
            "/api/channels/{id}/messages/{mid}/thread/participants",
            get(messages::participants),
        )
        .route(
            "/api/channels/{id}/messages/me/saved",
            get(annotations::saved),
        )
        .route(
            "/api/channels/{id}/messages/{mid}/reactions",
            get(annotations::reactions).post(annotations::react),
        )
        .route(
            "/api/channels/{id}/messages/{mid}/reactions/{emoji}",
            delete(annotations::unreact),
        )
        .route(
            "/api/channels/{id}/messages/{mid}/pin",
            post(annotations::pin).delete(annotations::unpin),
        )
        .route(
            "/api/channels/{id}/messages/{mid}/save",
            post(annotations::save).delete(annotations::unsave),
        )
        .route(
            "/api/channels/{id}/messages/{mid}/polls",
            post(annotations::create_poll),
        )
        .route("/api/polls/{id}", get(annotations::results))
        .route("/api/polls/{id}/results", get(annotations::results))
        .route(
            "/api/polls/{id}/vote",
            post(annotations::vote).delete(annotations::unvote),
        )
        .route("/api/messages", post(messages::create_server))
        .route(
            "/api/messages/{mid}",
            get(by_message::get)
                .patch(by_message::edit)
                .delete(by_message::delete),
        )
        .route(
            "/api/messages/{mid}/reactions",
            get(by_message::reactions).post(by_message::react),
        )
        .route(
            "/api/messages/{mid}/reactions/{emoji}",
            delete(by_message::unreact),
        )
        .route("/api/messages/{mid}/polls", post(by_message::create_poll))
        .route(
            "/api/messages/{mid}/report",
            post(moderation::report_message),
        )
        .route("/api/moderation/{mid}/report", post(moderation::report))
        .route("/api/moderation/reports", get(moderation::list))
        .route(
            "/api/moderation/reports/{id}",
            get(moderation::get).patch(moderation::resolve),
        )
        .route(
            "/api/moderation/reports/{id}/review",
            put(moderation::review),
        )
        .route("/api/moderation/stats", get(moderation::stats))
        .route("/api/legal-holds", get(lifecycle::holds))
        .route(
            "/api/channels/{id}/legal-hold",
            post(lifecycle::hold_channel).delete(lifecycle::release_channel),
        )
        .route(
            "/api/users/{id}/legal-hold",
            post(lifecycle::hold_user).delete(lifecycle::release_user),
        )
        .route("/api/users/me/export", post(lifecycle::export_me))
        .route("/api/users/{id}/export", post(lifecycle::export_user))
        .route("/api/channels/{id}/export", post(lifecycle::export_channel))
        .route("/api/exports/{id}", get(lifecycle::download))
        .route("/api/devices", get(devices::list).post(devices::register))
        .route(
            "/api/devices/preferences",
            get(devices::preferences).patch(devices::set_preferences),
        )
        .route("/api/devices/{token}", delete(devices::remove))
        .route("/api/webpush/vapid-key", get(devices::vapid_key))
        .route("/api/webpush/subscribe", post(devices::subscribe))
        .route("/api/webpush/unsubscribe", post(devices::unsubscribe))
        .route("/api/webpush/test", post(devices::test))
        .route(
            "/api/enrollment/rules",
            get(enrollment::list).post(enrollment::create),
        )
        .route(
            "/api/enrollment/rules/{id}",
            get(enrollment::get)
                .patch(enrollment::update)
                .delete(enrollment::delete),
        )
        .route("/api/enrollment/execute", post(enrollment::execute))
        .route("/api/enrollment/history", get(enrollment::history))
        .route("/api/auto-enrollment/rules", post(enrollment::create))
        .route(
            "/api/auto-enrollment/rules/{id}",
            get(enrollment::get)
                .patch(enrollment::update)
                .delete(enrollment::delete),
        )
        .route(
            "/api/workspaces/{id}/auto-enrollment/rules",
            get(enrollment::list_of_workspace),
        )
        .route("/api/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/api/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route(
            "/api/webhooks/{id}/regenerate-secret",
            post(webhooks::regenerate),
        )
        .route("/api/webhooks/{id}/test", post(webhooks::test))
        .route("/api/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/api/moderation/bans",
            get(moderation::bans).post(moderation::ban),
        )
        .route("/api/moderation/bans/{user}", delete(moderation::unban))
        .route(
            "/api/channels/{id}/bans",
            get(moderation::channel_bans).post(moderation::channel_ban),
        )
        .route(
            "/api/channels/{id}/bans/{user}",
            delete(moderation::channel_unban),
        )
        .route(
            "/api/channels/{id}/mutes",
            get(moderation::channel_mutes).post(moderation::channel_mute),
        )
        .route(
            "/api/channels/{id}/mutes/{user}",
            delete(moderation::channel_unmute),
        )
        .route("/api/presence/heartbeat", post(presence::heartbeat))
        .route("/api/presence/online", post(presence::online))
        .route("/api/presence/offline", post(presence::offline))
        .route("/api/presence/query", post(presence::query))
        .route("/api/channels/{id}/presence", get(presence::channel))
        .route("/api/channels/{id}/presence/live", get(presence::live))
        .route(
            "/api/templates",
            get(templates::list).post(templates::create),
        )
        .route("/api/templates/built-in/list", get(templates::built_in))
        .route(
            "/api/templates/from-template",
            post(templates::from_template),
        )
        .route(
            "/api/templates/{id}",
            get(templates::get)
                .patch(templates::update)
                .delete(templates::delete),
        )
        .route(
            "/api/emoji",
            get(emoji::list)
                .post(emoji::create)
                .layer(DefaultBodyLimit::max(
                    chatsdk_actors::chat::MAX_EMOJI_BYTES + emoji::FORM_OVERHEAD_BYTES,
                )),
        )
        .route("/api/search", get(search::search))
        .route("/api/search/suggestions", get(search::suggestions))
        .route("/api/channels/{id}/search", get(search::channel))
        .route("/api/uploads/presigned", post(uploads::presign))
        .route(
            "/api/uploads/put",
            put(uploads::put).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/uploads/direct",
            post(uploads::direct).layer(DefaultBodyLimit::max(
                (state.chat.media_limits().largest() + uploads::FORM_OVERHEAD_BYTES) as usize,
            )),
        )
        .route("/api/uploads/content", get(uploads::content_query))
        .route("/api/uploads/{key}", delete(uploads::delete))
        .route("/api/uploads/{key}/content", get(uploads::content_path))
        .route("/api/uploads/{key}/download", get(uploads::download))
        .route("/api/uploads/{key}/confirm", post(uploads::confirm))
        .route("/api/channels/{id}/uploads", get(uploads::list))
        .route("/api/emoji/search/query", get(emoji::search))
        .route("/api/emoji/{id}", get(emoji::get).delete(emoji::delete))
        .route("/api/emoji/{id}/use", post(emoji::use_emoji))
        .route("/api/emoji/{id}/analytics", get(emoji::analytics))
        .route("/api/emoji/{id}/image", get(emoji::image))
        .route("/api/mentions", get(mentions::list))
        .route("/api/mentions/unread-count", get(mentions::unread_count))
        .route("/api/mentions/read", post(mentions::mark_read))
        .route("/api/mentions/search", get(mentions::search))
        .route(
            "/api/workspaces",
            get(workspaces::list).post(workspaces::create),
        )
        .route(
            "/api/workspaces/invites/{token}",
            get(workspaces::accept).post(workspaces::accept),
        )
        .route(
            "/api/workspaces/{id}",
            get(workspaces::get)
                .put(workspaces::update)
                .patch(workspaces::update)
                .delete(workspaces::delete),
        )
        .route(
            "/api/workspaces/{id}/members",
            post(workspaces::add_members),
        )
        .route(
            "/api/workspaces/{id}/members/{user}",
            patch(workspaces::set_role).delete(workspaces::remove_member),
        )
        .route("/api/workspaces/{id}/channels", get(workspaces::channels))
        .route("/api/workspaces/{id}/stats", get(workspaces::stats))
        .route("/api/workspaces/{id}/invite", post(workspaces::invite))
        .route("/api/openapi.json", get(openapi::serve))
        .route("/api/docs", get(web::api_docs))
        .route("/console", get(web::console))
        .route("/demo", get(web::demo))
        .route("/demo/session", post(web::demo_session))
        .route("/web/{file}", get(web::asset))
        .route("/connection/websocket", get(ws::upgrade))
        .fallback(layers::not_found)
        .method_not_allowed_fallback(layers::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            layers::respond,
        ))
        .layer(DefaultBodyLimit::max(body_limit));
    layers::stack(router, &cors_origins).with_state(state)
}

#[cfg(test)]
mod docs_tests;
