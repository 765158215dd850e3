//! Supervision routes (app admins supervise; anyone lists their supervisors).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::model::Supervision;
use chatsdk_actors::render::Iso;
use chatsdk_actors::SupervisionSpec;
use serde::Deserialize;
use serde_json::Value;

use crate::auth::extract::Auth;
use crate::body::{Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

/// `POST /api/users/:id/supervise` and `PATCH` (where only the last two fields count).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuperviseBody {
    #[serde(default, alias = "supervised_user_id")]
    supervised_user_id: Option<String>,
    #[serde(default, alias = "supervision_type")]
    supervision_type: Option<String>,
    /// A number, or `null` to clear it (PATCH).
    #[serde(default, alias = "age_restriction", deserialize_with = "present")]
    age_restriction: Option<Value>,
    #[serde(default, alias = "monitoring_enabled")]
    monitoring_enabled: Option<bool>,
    /// The supervisor, for a server key (`user_id` too).
    #[serde(
        default,
        alias = "supervisor_user_id",
        alias = "user_id",
        alias = "userId"
    )]
    supervisor_user_id: Option<String>,
}

/// A field that is there, `null` included (serde reads a `null` option as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// `None`: absent; `Some(None)`: null; `Some(Some(n))`: a number of 1 to 100.
fn age(v: Option<Value>) -> ApiResult<Option<Option<u8>>> {
    match v {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Number(n)) => match n.as_u64().and_then(|n| u8::try_from(n).ok()) {
            Some(a) if (1..=100).contains(&a) => Ok(Some(Some(a))),
            _ => Err(AppError::bad("ageRestriction must be between 1 and 100")),
        },
        Some(_) => Err(AppError::bad("ageRestriction must be a number or null")),
    }
}

chatsdk_actors::dialect_views! {
    scope: supervision;
    records: chatsdk_actors::render;
    types {
        /// A supervision.
        pub struct SupervisionView<'a> {
            pub supervisor_user_id: &'a str,
            pub supervised_user_id: &'a str,
            pub monitoring_enabled: bool,
            pub supervision_type: &'a str,
            pub age_restriction: Option<u8>,
            pub created_at: Iso,
            pub updated_at: Iso,
        }

        /// `PATCH /api/users/:id/supervise`.
        pub struct Updated<'a> {
            pub supervised_user_id: &'a str,
            pub monitoring_enabled: bool,
            pub age_restriction: Option<u8>,
            pub updated_at: Iso,
        }

        /// A supervision as one side lists it, with the other side's profile.
        pub struct Listed<'a> {
            pub user_id: &'a str,
            pub name: Option<&'a str>,
            pub image: Option<&'a str>,
            pub supervision_type: &'a str,
            pub monitoring_enabled: bool,
            pub age_restriction: Option<u8>,
            pub created_at: Iso,
            pub updated_at: Iso,
        }

        /// `GET /api/users/me/supervised`.
        pub struct SupervisedList<'a> {
            pub supervised: Vec<Listed<'a>>,
        }

        /// `GET /api/users/me/supervisors`.
        pub struct SupervisorList<'a> {
            pub supervisors: Vec<Listed<'a>>,
        }

        /// `DELETE /api/users/:id/supervise`.
        pub struct Unsupervised {
            pub success: bool,
            pub message: &'static str,
        }

        /// `GET /api/users/:id/activity`: what a supervisor with monitoring on sees.
        pub struct ActivityReport<'a> {
            pub supervised_user_id: &'a str,
            pub activity: ActivityView<'a>,
            pub limit: usize,
            pub offset: usize,
        }

        /// The supervised user's recent messages, channels and reports against them.
        pub struct ActivityView<'a> {
            /// Newest first, across their channels.
            pub recent_messages: Vec<ActivityMessage<'a>>,
            pub channels: Vec<ActivityChannel<'a>>,
            pub moderation_flags: Vec<ModerationFlag<'a>>,
            pub warnings: u32,
            pub banned: bool,
        }

        /// One of the supervised user's messages, with its channel.
        pub struct ActivityMessage<'a> {
            pub id: &'a str,
            pub channel_id: &'a str,
            pub channel_name: Option<&'a str>,
            pub channel_type: &'a str,
            pub text: Option<&'a str>,
            pub parent_id: Option<&'a str>,
            pub created_at: Iso,
            pub edited_at: Option<Iso>,
        }

        /// A channel the supervised user is in.
        pub struct ActivityChannel<'a> {
            pub id: &'a str,
            pub name: Option<&'a str>,
            #[serde(rename = "type")]
            pub kind: &'a str,
        }

        /// A report of one of the supervised user's messages.
        pub struct ModerationFlag<'a> {
            pub report_id: &'a str,
            pub message_id: &'a str,
            pub channel_id: &'a str,
            pub reason: &'static str,
            pub text: &'a str,
            pub action_taken: Option<&'static str>,
            pub created_at: Iso,
        }
    }
    impls {
        impl<'a> Listed<'a> {
            /// `s` as listed beside `other` (the supervised user or the supervisor).
            pub fn new(
                s: &'a Supervision,
                other: &'a str,
                u: &'a Option<std::sync::Arc<chatsdk_actors::model::User>>,
            ) -> Self {
                Listed {
                    user_id: other,
                    name: u.as_deref().map(|u| u.name.as_str()),
                    image: u.as_deref().and_then(|u| u.image.as_deref()),
                    supervision_type: &s.kind,
                    monitoring_enabled: s.monitoring,
                    age_restriction: s.age_restriction,
                    created_at: Iso(s.created_at),
                    updated_at: Iso(s.updated_at),
                }
            }
        }

        impl<'a> SupervisionView<'a> {
            pub fn new(s: &'a Supervision) -> Self {
                SupervisionView {
                    supervisor_user_id: &s.supervisor,
                    supervised_user_id: &s.supervised,
                    monitoring_enabled: s.monitoring,
                    supervision_type: &s.kind,
                    age_restriction: s.age_restriction,
                    created_at: Iso(s.created_at),
                    updated_at: Iso(s.updated_at),
                }
            }
        }
    }
}

/// `POST /api/users/:id/supervise` (the path's id is not used, as in the original): the
/// caller supervises `supervisedUserId`.
pub async fn supervise(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(_ignored): Path<String>,
    Typed(body): Typed<SuperviseBody>,
) -> ApiResult<Response> {
    let caller = auth.user_caller(body.supervisor_user_id)?;
    let supervised = body
        .supervised_user_id
        .ok_or_else(|| AppError::bad("supervisedUserId is required"))?;
    let spec = SupervisionSpec {
        kind: body.supervision_type,
        age_restriction: age(body.age_restriction)?,
        monitoring: body.monitoring_enabled,
    };
    let s = state.chat.supervise(&caller, &supervised, spec).await?;
    Ok(reply!(auth.dialect, StatusCode::CREATED, v => v::SupervisionView::new(&s)))
}

/// `PATCH /api/users/:id/supervise` `{monitoringEnabled?, ageRestriction?|null}`.
pub async fn update(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(supervised): Path<String>,
    Typed(body): Typed<SuperviseBody>,
) -> ApiResult<Response> {
    let caller = auth.user_caller(body.supervisor_user_id)?;
    let spec = SupervisionSpec {
        kind: None,
        age_restriction: age(body.age_restriction)?,
        monitoring: body.monitoring_enabled,
    };
    let s = state
        .chat
        .update_supervision(&caller, &supervised, spec)
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Updated {
        supervised_user_id: &s.supervised,
        monitoring_enabled: s.monitoring,
        age_restriction: s.age_restriction,
        updated_at: Iso(s.updated_at),
    }))
}

/// `DELETE /api/users/:id/supervise`.
pub async fn unsupervise(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(supervised): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.user_caller(q.str("userId"))?;
    state.chat.unsupervise(&caller, &supervised).await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Unsupervised {
        success: true,
        message: "Supervision removed",
    }))
}

fn listed(
    state: &GatewayState,
    app: &str,
    list: &[Supervision],
    other: impl Fn(&Supervision) -> &str,
) -> Vec<Option<std::sync::Arc<chatsdk_actors::model::User>>> {
    list.iter()
        .map(|s| state.chat.user(app, other(s)).ok().flatten())
        .collect()
}

/// `GET /api/users/me/supervised`.
pub async fn mine(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    let caller = auth.user_caller(q.str("userId"))?;
    let list = state.chat.supervised_users(&caller)?;
    let users = listed(&state, &caller.app, &list, |s| &s.supervised);
    Ok(
        reply!(auth.dialect, StatusCode::OK, v => v::SupervisedList {
            supervised: list
                .iter()
                .zip(&users)
                .map(|(s, u)| v::Listed::new(s, &s.supervised, u))
                .collect(),
        }),
    )
}

/// `GET /api/users/me/supervisors`.
pub async fn supervisors(
    State(state): State<GatewayState>,
    auth: Auth,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.user_caller(q.str("userId"))?;
    let list = state.chat.supervisors(&caller)?;
    let users = listed(&state, &caller.app, &list, |s| &s.supervisor);
    Ok(
        reply!(auth.dialect, StatusCode::OK, v => v::SupervisorList {
            supervisors: list
                .iter()
                .zip(&users)
                .map(|(s, u)| v::Listed::new(s, &s.supervisor, u))
                .collect(),
        }),
    )
}

/// `GET /api/users/:id/activity?limit(50, ≤100)&offset`: for a supervisor with monitoring on.
pub async fn activity(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(supervised): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.user_caller(q.str("userId"))?;
    let limit = q.num("limit", 50, 100)?.max(1) as usize;
    let offset = q.num("offset", 0, 10_000)? as usize;
    let a = state
        .chat
        .activity_of(&caller, &supervised, limit, offset)
        .await?;
    Ok(
        reply!(auth.dialect, StatusCode::OK, v => v::ActivityReport {
            supervised_user_id: &supervised,
            activity: v::ActivityView {
                recent_messages: a
                    .messages
                    .iter()
                    .map(|(ch, m)| v::ActivityMessage {
                        id: &m.id,
                        channel_id: &ch.id,
                        channel_name: ch.name.as_deref(),
                        channel_type: ch.kind.as_str(),
                        text: m.text.as_deref(),
                        parent_id: m.parent_id.as_deref(),
                        created_at: Iso(m.created_at),
                        edited_at: m.edited_at.map(Iso),
                    })
                    .collect(),
                channels: a
                    .channels
                    .iter()
                    .map(|c| v::ActivityChannel {
                        id: &c.id,
                        name: c.name.as_deref(),
                        kind: c.kind.as_str(),
                    })
                    .collect(),
                moderation_flags: a
                    .reports
                    .iter()
                    .map(|r| v::ModerationFlag {
                        report_id: &r.id,
                        message_id: &r.message_id,
                        channel_id: &r.channel_id,
                        reason: r.reason.as_str(),
                        text: &r.text,
                        action_taken: r.action.map(|a| a.as_str()),
                        created_at: Iso(r.created_at),
                    })
                    .collect(),
                warnings: a.warnings,
                banned: a.banned,
            },
            limit,
            offset,
        }),
    )
}
