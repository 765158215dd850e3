//! Moderation routes: reports and their review queue (both dialects), app bans, channel bans
//! and mutes.
//!
//! A report's status is `pending`, then `actioned` or `reviewed` (dismissed) in the Client
//! API, and `pending`, `resolved` or `dismissed` in the Server API's words.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::dialect::Dialect;
use chatsdk_actors::directory::moderation::{
    ChannelRestriction, Report, ReportAction, ReportReason, ReportStatus, Restriction,
};
use chatsdk_actors::model::User;
use chatsdk_actors::render::Iso;
use chatsdk_actors::{Caller, Review};
use serde::Deserialize;

use super::success;
use crate::auth::extract::{Admin, Auth};
use crate::body::{Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

/// `POST /api/moderation/:messageId/report` and `POST /api/messages/:id/report`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportBody {
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
    reason: String,
    #[serde(default)]
    details: Option<String>,
    /// Needed only for messages sent with a client message id (see `chatsdk_actors::locate`).
    #[serde(default, alias = "channel_id")]
    channel_id: Option<String>,
}

/// `PUT /api/moderation/reports/:id/review`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReviewBody {
    action: String,
    #[serde(default, alias = "admin_notes")]
    admin_notes: Option<String>,
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
}

/// `PATCH /api/moderation/reports/:id` (the Server API's review).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolveBody {
    status: String,
    #[serde(default, alias = "action_taken")]
    action_taken: Option<String>,
    #[serde(default, alias = "moderator_notes", alias = "adminNotes")]
    moderator_notes: Option<String>,
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
}

/// A ban or a mute: `POST /api/moderation/bans`, `/api/channels/:id/bans`, `/mutes`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestrictBody {
    #[serde(alias = "user_id", alias = "targetUserId", alias = "target_user_id")]
    user_id: String,
    #[serde(default)]
    reason: Option<String>,
    /// Seconds until it ends by itself; absent: until lifted.
    #[serde(default, alias = "duration_seconds", alias = "duration")]
    duration_seconds: Option<u64>,
    /// The acting user (Server API).
    #[serde(default, alias = "acting_user_id", alias = "moderator_id")]
    acting_user_id: Option<String>,
}

/// The parts of a report's view that come from elsewhere than the report.
pub struct ReportContext {
    reporter: Option<Arc<User>>,
    author: Option<Arc<User>>,
    channel_name: Option<String>,
    status: &'static str,
}

fn status_name(dialect: Dialect, status: ReportStatus) -> &'static str {
    match (status, dialect) {
        (ReportStatus::Pending, _) => "pending",
        (ReportStatus::Actioned, Dialect::Camel) => "actioned",
        (ReportStatus::Dismissed, Dialect::Camel) => "reviewed",
        (ReportStatus::Actioned, Dialect::Snake) => "resolved",
        (ReportStatus::Dismissed, Dialect::Snake) => "dismissed",
    }
}

fn parse_status(s: &str) -> Option<ReportStatus> {
    match s {
        "pending" => Some(ReportStatus::Pending),
        "actioned" | "resolved" => Some(ReportStatus::Actioned),
        "reviewed" | "dismissed" => Some(ReportStatus::Dismissed),
        _ => None,
    }
}

fn context(state: &GatewayState, dialect: Dialect, r: &Report) -> ReportContext {
    ReportContext {
        reporter: state.chat.user(&r.app_id, &r.reporter).ok().flatten(),
        author: state.chat.user(&r.app_id, &r.author).ok().flatten(),
        channel_name: state
            .chat
            .channel(&r.app_id, &r.channel_id)
            .ok()
            .flatten()
            .and_then(|c| c.name.clone()),
        status: status_name(dialect, r.status),
    }
}

chatsdk_actors::dialect_views! {
    scope: moderation;
    records: chatsdk_actors::render;
    types {
        /// A user as a report names them.
        pub struct Person<'a> {
            pub id: &'a str,
            pub name: Option<&'a str>,
            pub image: Option<&'a str>,
        }

        /// The reported message, as it was when reported.
        pub struct Reported<'a> {
            pub id: &'a str,
            pub text: &'a str,
            pub author: Person<'a>,
            pub channel_id: &'a str,
            pub channel_name: Option<&'a str>,
        }

        /// A report in the review queue.
        pub struct ReportView<'a> {
            pub id: &'a str,
            pub message_id: &'a str,
            pub channel_id: &'a str,
            pub reporter_id: &'a str,
            pub reason: &'static str,
            pub details: Option<&'a str>,
            pub status: &'static str,
            pub reporter: Person<'a>,
            pub message: Reported<'a>,
            pub reviewed_by: Option<&'a str>,
            pub reviewed_at: Option<Iso>,
            pub action_taken: Option<&'static str>,
            pub admin_notes: Option<&'a str>,
            pub moderator_notes: Option<&'a str>,
            pub created_at: Iso,
        }

        /// `GET /api/moderation/reports`.
        pub struct ReportList<'a> {
            pub reports: Vec<ReportView<'a>>,
            pub total: usize,
            pub limit: usize,
            pub offset: usize,
        }

        /// A new report.
        pub struct Filed<'a> {
            pub id: &'a str,
            pub message_id: &'a str,
            pub reporter_id: &'a str,
            pub reason: &'static str,
            pub status: &'static str,
            pub created_at: Iso,
        }

        /// A reviewed report.
        pub struct Reviewed<'a> {
            pub id: &'a str,
            pub status: &'static str,
            pub reviewed_by: Option<&'a str>,
            pub reviewed_at: Option<Iso>,
            pub action_taken: Option<&'static str>,
            pub admin_notes: Option<&'a str>,
        }

        /// `GET /api/moderation/stats`.
        pub struct Stats {
            pub total_reports: u64,
            pub pending_reports: u64,
            pub resolved_reports: u64,
            pub dismissed_reports: u64,
        }

        /// A ban or a mute in force.
        pub struct RestrictionView<'a> {
            pub user_id: &'a str,
            pub reason: Option<&'a str>,
            pub created_by: Option<&'a str>,
            pub created_at: Iso,
            pub expires_at: Option<Iso>,
        }

        /// A list of bans or mutes.
        pub struct Bans<'a> {
            pub bans: Vec<RestrictionView<'a>>,
        }

        /// A list of mutes.
        pub struct Mutes<'a> {
            pub mutes: Vec<RestrictionView<'a>>,
        }
    }
    impls {
        impl<'a> Person<'a> {
            pub fn new(id: &'a str, u: &'a Option<std::sync::Arc<User>>) -> Self {
                Person {
                    id,
                    name: u.as_deref().map(|u| u.name.as_str()),
                    image: u.as_deref().and_then(|u| u.image.as_deref()),
                }
            }
        }

        impl<'a> ReportView<'a> {
            pub fn new(r: &'a Report, c: &'a ReportContext) -> Self {
                ReportView {
                    id: &r.id,
                    message_id: &r.message_id,
                    channel_id: &r.channel_id,
                    reporter_id: &r.reporter,
                    reason: r.reason.as_str(),
                    details: r.details.as_deref(),
                    status: c.status,
                    reporter: Person::new(&r.reporter, &c.reporter),
                    message: Reported {
                        id: &r.message_id,
                        text: &r.text,
                        author: Person::new(&r.author, &c.author),
                        channel_id: &r.channel_id,
                        channel_name: c.channel_name.as_deref(),
                    },
                    reviewed_by: r.reviewed_by.as_deref(),
                    reviewed_at: r.reviewed_at.map(Iso),
                    action_taken: r.action.map(ReportAction::as_str),
                    admin_notes: r.notes.as_deref(),
                    moderator_notes: r.notes.as_deref(),
                    created_at: Iso(r.created_at),
                }
            }
        }

        impl<'a> RestrictionView<'a> {
            pub fn new(user_id: &'a str, r: &'a Restriction) -> Self {
                RestrictionView {
                    user_id,
                    reason: r.reason.as_deref(),
                    created_by: r.by.as_deref(),
                    created_at: Iso(r.at),
                    expires_at: r.until.map(Iso),
                }
            }
        }
    }
}

fn reason(s: &str) -> ApiResult<ReportReason> {
    ReportReason::parse(s).ok_or_else(|| {
        let names: Vec<&str> = ReportReason::ALL.iter().map(|r| r.as_str()).collect();
        AppError::bad(format!("reason must be one of {}", names.join(", ")))
    })
}

fn action(s: &str) -> ApiResult<ReportAction> {
    ReportAction::parse(s).ok_or_else(|| {
        let names: Vec<&str> = ReportAction::ALL.iter().map(|r| r.as_str()).collect();
        AppError::bad(format!("action must be one of {}", names.join(", ")))
    })
}

async fn file(
    state: &GatewayState,
    auth: &Auth,
    message_id: &str,
    body: ReportBody,
    status: StatusCode,
) -> ApiResult<Response> {
    let caller = auth.user_caller(body.user_id)?;
    let reason = reason(&body.reason)?;
    let r = state
        .chat
        .report_message(
            &caller,
            message_id,
            body.channel_id.as_deref(),
            reason,
            body.details,
        )
        .await?;
    Ok(reply!(auth.dialect, status, v => v::Filed {
        id: &r.id,
        message_id: &r.message_id,
        reporter_id: &r.reporter,
        reason: r.reason.as_str(),
        status: status_name(auth.dialect, r.status),
        created_at: Iso(r.created_at),
    }))
}

/// `POST /api/moderation/:messageId/report` (Client API; 200 as the original answers).
pub async fn report(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(mid): Path<String>,
    Typed(body): Typed<ReportBody>,
) -> ApiResult<Response> {
    file(&state, &auth, &mid, body, StatusCode::OK).await
}

/// `POST /api/messages/:id/report` (Server API form; 201).
pub async fn report_message(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(mid): Path<String>,
    Typed(body): Typed<ReportBody>,
) -> ApiResult<Response> {
    file(&state, &auth, &mid, body, StatusCode::CREATED).await
}

/// `GET /api/moderation/reports?status&limit&offset` (app admins, server keys).
pub async fn list(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    report_page(&state, auth.dialect, &caller, &q)
}

/// `GET /admin/apps/{id}/reports?status&limit&offset`: the app's reports for the operator
/// (the admin key acts with a server key's authority in the app; camelCase).
pub async fn admin_list(
    State(state): State<GatewayState>,
    _a: Admin,
    Path(app): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    state
        .chat
        .app(&app)?
        .ok_or_else(|| AppError::not_found("app not found"))?;
    let caller = Caller {
        app,
        user: None,
        server: true,
    };
    report_page(&state, Dialect::Camel, &caller, &q)
}

fn report_page(
    state: &GatewayState,
    dialect: Dialect,
    caller: &Caller,
    q: &Query,
) -> ApiResult<Response> {
    let status = match q.str("status") {
        None => None,
        Some(s) => Some(parse_status(&s).ok_or_else(|| {
            AppError::bad("status must be pending, actioned, reviewed, resolved or dismissed")
        })?),
    };
    let limit = q.num("limit", 50, 100)?.max(1) as usize;
    let offset = q.num("offset", 0, u64::from(u32::MAX))? as usize;
    let reports = state.chat.reports(caller, status, limit, offset)?;
    let contexts: Vec<ReportContext> = reports.iter().map(|r| context(state, dialect, r)).collect();
    Ok(reply!(dialect, StatusCode::OK, v => v::ReportList {
        total: reports.len(),
        reports: reports
            .iter()
            .zip(&contexts)
            .map(|(r, c)| v::ReportView::new(r, c))
            .collect(),
        limit,
        offset,
    }))
}

/// `GET /api/moderation/reports/:id`.
pub async fn get(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let r = state.chat.report(&caller, &id)?;
    let c = context(&state, auth.dialect, &r);
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::ReportView::new(&r, &c)))
}

fn reviewed(auth: &Auth, r: &Report) -> Response {
    reply!(auth.dialect, StatusCode::OK, v => v::Reviewed {
        id: &r.id,
        status: status_name(auth.dialect, r.status),
        reviewed_by: r.reviewed_by.as_deref(),
        reviewed_at: r.reviewed_at.map(Iso),
        action_taken: r.action.map(ReportAction::as_str),
        admin_notes: r.notes.as_deref(),
    })
}

/// `PUT /api/moderation/reports/:id/review` `{action, adminNotes?}`.
pub async fn review(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<ReviewBody>,
) -> ApiResult<Response> {
    let caller = auth.caller(body.user_id);
    let action = action(&body.action)?;
    let status = match action {
        ReportAction::Dismiss => ReportStatus::Dismissed,
        _ => ReportStatus::Actioned,
    };
    let review = Review {
        status,
        action: Some(action),
        notes: body.admin_notes,
    };
    let r = state.chat.review_report(&caller, &id, review).await?;
    Ok(reviewed(&auth, &r))
}

/// `PATCH /api/moderation/reports/:id` `{status: resolved|dismissed, action_taken?,
/// moderator_notes?}`: `action_taken` names an action to carry out (as `review` does).
pub async fn resolve(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<ResolveBody>,
) -> ApiResult<Response> {
    let caller = auth.caller(body.user_id);
    let status = match parse_status(&body.status) {
        Some(s @ (ReportStatus::Actioned | ReportStatus::Dismissed)) => s,
        _ => return Err(AppError::bad("status must be resolved or dismissed")),
    };
    let action = match (status, body.action_taken.as_deref()) {
        (_, Some(a)) => Some(action(a)?),
        (ReportStatus::Dismissed, None) => Some(ReportAction::Dismiss),
        _ => None,
    };
    if status == ReportStatus::Dismissed && action != Some(ReportAction::Dismiss) {
        return Err(AppError::bad(
            "a dismissed report takes no action (action_taken: dismiss or none)",
        ));
    }
    let review = Review {
        status,
        action,
        notes: body.moderator_notes,
    };
    let r = state.chat.review_report(&caller, &id, review).await?;
    let c = context(&state, auth.dialect, &r);
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::ReportView::new(&r, &c)))
}

/// `GET /api/moderation/stats`.
pub async fn stats(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let s = state.chat.moderation_stats(&caller)?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Stats {
        total_reports: s.total,
        pending_reports: s.pending,
        resolved_reports: s.actioned,
        dismissed_reports: s.dismissed,
    }))
}

// ---- app bans

/// `POST /api/moderation/bans` `{userId, reason?, durationSeconds?}` (app admins, server keys).
pub async fn ban(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<RestrictBody>,
) -> ApiResult<Response> {
    let caller = auth.caller(body.acting_user_id);
    let b = state
        .chat
        .ban_user(&caller, &body.user_id, body.reason, body.duration_seconds)
        .await?;
    Ok(reply!(auth.dialect, StatusCode::CREATED, v => v::RestrictionView::new(&body.user_id, &b)))
}

/// `GET /api/moderation/bans`.
pub async fn bans(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let list = state.chat.bans(&caller)?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Bans {
        bans: list.iter().map(|(u, b)| v::RestrictionView::new(u, b)).collect(),
    }))
}

/// `DELETE /api/moderation/bans/:userId`.
pub async fn unban(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(user): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("actingUserId"));
    state.chat.unban_user(&caller, &user).await?;
    Ok(success())
}

// ---- channel bans and mutes

async fn restrict(
    state: &GatewayState,
    auth: &Auth,
    channel: &str,
    body: RestrictBody,
    kind: ChannelRestriction,
) -> ApiResult<Response> {
    let caller: Caller = auth.caller(body.acting_user_id);
    let r = state
        .chat
        .restrict_in_channel(
            &caller,
            channel,
            &body.user_id,
            kind,
            body.reason,
            body.duration_seconds,
        )
        .await?;
    Ok(reply!(auth.dialect, StatusCode::CREATED, v => v::RestrictionView::new(&body.user_id, &r)))
}

async fn restricted(
    state: &GatewayState,
    auth: &Auth,
    channel: &str,
    q: &Query,
    kind: ChannelRestriction,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let list = state.chat.channel_restrictions(&caller, channel).await?;
    let picked: Vec<(&str, &Restriction)> = list
        .iter()
        .filter_map(|(u, s)| {
            let r = match kind {
                ChannelRestriction::Ban => s.ban.as_ref(),
                ChannelRestriction::Mute => s.mute.as_ref(),
            };
            r.map(|r| (u.as_str(), r))
        })
        .collect();
    Ok(match kind {
        ChannelRestriction::Ban => reply!(auth.dialect, StatusCode::OK, v => v::Bans {
            bans: picked.iter().map(|(u, r)| v::RestrictionView::new(u, r)).collect(),
        }),
        ChannelRestriction::Mute => reply!(auth.dialect, StatusCode::OK, v => v::Mutes {
            mutes: picked.iter().map(|(u, r)| v::RestrictionView::new(u, r)).collect(),
        }),
    })
}

async fn lift(
    state: &GatewayState,
    auth: &Auth,
    channel: &str,
    user: &str,
    q: &Query,
    kind: ChannelRestriction,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("actingUserId"));
    state
        .chat
        .lift_channel_restriction(&caller, channel, user, kind)
        .await?;
    Ok(success())
}

/// `POST /api/channels/:id/bans`.
pub async fn channel_ban(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<RestrictBody>,
) -> ApiResult<Response> {
    restrict(&state, &auth, &id, body, ChannelRestriction::Ban).await
}

/// `GET /api/channels/:id/bans`.
pub async fn channel_bans(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    restricted(&state, &auth, &id, &q, ChannelRestriction::Ban).await
}

/// `DELETE /api/channels/:id/bans/:userId`.
pub async fn channel_unban(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, user)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    lift(&state, &auth, &id, &user, &q, ChannelRestriction::Ban).await
}

/// `POST /api/channels/:id/mutes`.
pub async fn channel_mute(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<RestrictBody>,
) -> ApiResult<Response> {
    restrict(&state, &auth, &id, body, ChannelRestriction::Mute).await
}

/// `GET /api/channels/:id/mutes`.
pub async fn channel_mutes(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    restricted(&state, &auth, &id, &q, ChannelRestriction::Mute).await
}

/// `DELETE /api/channels/:id/mutes/:userId`.
pub async fn channel_unmute(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, user)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    lift(&state, &auth, &id, &user, &q, ChannelRestriction::Mute).await
}
