//! Auto-enrollment routes: `/api/enrollment/...` (the Client API's) and
//! `/api/auto-enrollment/...` (the Server API's), for app admins and server keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::model::{EnrollmentRule, EnrollmentRun};
use chatsdk_actors::render::Iso;
use chatsdk_actors::{RuleOutcome, RuleSpec};
use serde::Deserialize;
use serde_json::Value;

use super::success;
use crate::auth::extract::Auth;
use crate::body::{Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

/// A rule's fields, in either API's spelling.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, alias = "workspace_id")]
    workspace_id: Option<String>,
    #[serde(default, alias = "channel_id")]
    channel_id: Option<String>,
    #[serde(default, alias = "rule_type")]
    rule_type: Option<String>,
    #[serde(default)]
    conditions: Option<Value>,
    #[serde(default)]
    actions: Option<Value>,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default, alias = "is_active", alias = "isActive")]
    enabled: Option<bool>,
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
}

impl RuleBody {
    fn spec(self) -> (Option<String>, RuleSpec) {
        (
            self.user_id,
            RuleSpec {
                name: self.name,
                workspace_id: self.workspace_id,
                channel_id: self.channel_id,
                rule_type: self.rule_type,
                conditions: self.conditions,
                actions: self.actions,
                priority: self.priority,
                enabled: self.enabled,
            },
        )
    }
}

/// `POST /api/enrollment/execute`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteBody {
    #[serde(alias = "user_id")]
    user_id: String,
    #[serde(default, alias = "acting_user_id")]
    acting_user_id: Option<String>,
}

chatsdk_actors::dialect_views! {
    scope: enrollment;
    records: chatsdk_actors::render;
    types {
        /// A rule.
        pub struct RuleView<'a> {
            pub id: &'a str,
            pub name: Option<&'a str>,
            pub workspace_id: Option<&'a str>,
            pub channel_id: Option<&'a str>,
            pub rule_type: &'a str,
            pub conditions: &'a Value,
            pub actions: &'a Value,
            pub priority: i64,
            pub enabled: bool,
            pub is_active: bool,
            pub created_by: Option<&'a str>,
            pub created_by_name: Option<&'a str>,
            pub created_at: Iso,
            pub updated_at: Iso,
        }

        /// A list of rules.
        pub struct Rules<'a> {
            pub rules: Vec<RuleView<'a>>,
        }

        /// One rule's outcome in a manual run.
        pub struct Outcome<'a> {
            pub rule_id: &'a str,
            pub rule_type: &'a str,
            pub executed: bool,
            pub success: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub error: Option<&'a str>,
        }

        /// `POST /api/enrollment/execute`.
        pub struct Executed<'a> {
            pub user_id: &'a str,
            pub rules_executed: usize,
            pub results: Vec<Outcome<'a>>,
        }

        /// A run of a rule.
        pub struct Run<'a> {
            pub id: &'a str,
            pub rule_id: &'a str,
            pub rule_type: &'a str,
            pub user_id: &'a str,
            pub user_name: Option<&'a str>,
            pub trigger: &'a str,
            pub success: Option<bool>,
            pub error_message: Option<&'a str>,
            pub executed_at: Iso,
        }

        /// `GET /api/enrollment/history`.
        pub struct History<'a> {
            pub executions: Vec<Run<'a>>,
            pub limit: usize,
            pub offset: usize,
        }
    }
    impls {
        impl<'a> RuleView<'a> {
            pub fn new(r: &'a EnrollmentRule, creator: Option<&'a str>) -> Self {
                RuleView {
                    id: &r.id,
                    name: r.name.as_deref(),
                    workspace_id: r.workspace_id.as_deref(),
                    channel_id: r.channel_id.as_deref(),
                    rule_type: &r.rule_type,
                    conditions: &r.conditions.0,
                    actions: &r.actions.0,
                    priority: r.priority,
                    enabled: r.enabled,
                    is_active: r.enabled,
                    created_by: r.created_by.as_deref(),
                    created_by_name: creator,
                    created_at: Iso(r.created_at),
                    updated_at: Iso(r.updated_at),
                }
            }
        }

        impl<'a> Outcome<'a> {
            pub fn new(o: &'a RuleOutcome) -> Self {
                Outcome {
                    rule_id: &o.rule_id,
                    rule_type: &o.rule_type,
                    executed: o.executed,
                    success: o.success,
                    error: o.error.as_deref(),
                }
            }
        }

        impl<'a> Run<'a> {
            pub fn new(r: &'a EnrollmentRun, name: Option<&'a str>) -> Self {
                Run {
                    id: &r.id,
                    rule_id: &r.rule_id,
                    rule_type: &r.rule_type,
                    user_id: &r.user_id,
                    user_name: name,
                    trigger: &r.trigger,
                    success: r.success,
                    error_message: r.error.as_deref(),
                    executed_at: Iso(r.executed_at),
                }
            }
        }
    }
}

/// The display names of the users `ids` (None for unknown users).
fn names(
    state: &GatewayState,
    app: &str,
    ids: impl Iterator<Item = Option<String>>,
) -> Vec<Option<String>> {
    ids.map(|id| {
        id.and_then(|id| state.chat.user(app, &id).ok().flatten())
            .map(|u| u.name.clone())
    })
    .collect()
}

fn rules_reply(state: &GatewayState, auth: &Auth, app: &str, rules: &[EnrollmentRule]) -> Response {
    let creators = names(state, app, rules.iter().map(|r| r.created_by.clone()));
    reply!(auth.dialect, StatusCode::OK, v => v::Rules {
        rules: rules
            .iter()
            .zip(&creators)
            .map(|(r, c)| v::RuleView::new(r, c.as_deref()))
            .collect(),
    })
}

fn rule_reply(
    state: &GatewayState,
    auth: &Auth,
    status: StatusCode,
    r: &EnrollmentRule,
) -> Response {
    let creator = names(state, &r.app_id, std::iter::once(r.created_by.clone()))
        .pop()
        .flatten();
    reply!(auth.dialect, status, v => v::RuleView::new(r, creator.as_deref()))
}

/// `POST /api/enrollment/rules` and `POST /api/auto-enrollment/rules`.
pub async fn create(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<RuleBody>,
) -> ApiResult<Response> {
    let (acting, spec) = body.spec();
    let caller = auth.caller(acting);
    let rule = state.chat.create_rule(&caller, spec).await?;
    Ok(rule_reply(&state, &auth, StatusCode::CREATED, &rule))
}

/// `GET /api/enrollment/rules?workspaceId&channelId&enabled`.
pub async fn list(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let enabled = match q.str("enabled").as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(AppError::bad("enabled must be true or false")),
    };
    let rules = state.chat.rules(
        &caller,
        q.str("workspaceId").as_deref(),
        q.str("channelId").as_deref(),
        enabled,
    )?;
    Ok(rules_reply(&state, &auth, &caller.app, &rules))
}

/// `GET /api/workspaces/:id/auto-enrollment/rules`.
pub async fn list_of_workspace(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(ws): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    state.chat.workspace_record(&caller.app, &ws)?;
    let rules = state.chat.rules(&caller, Some(&ws), None, None)?;
    Ok(rules_reply(&state, &auth, &caller.app, &rules))
}

/// `GET /api/enrollment/rules/:id`.
pub async fn get(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let rule = state.chat.rule(&caller, &id)?;
    Ok(rule_reply(&state, &auth, StatusCode::OK, &rule))
}

/// `PATCH /api/enrollment/rules/:id` and `/api/auto-enrollment/rules/:id`.
pub async fn update(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<RuleBody>,
) -> ApiResult<Response> {
    let (acting, spec) = body.spec();
    let caller = auth.caller(acting);
    let rule = state.chat.update_rule(&caller, &id, spec).await?;
    Ok(rule_reply(&state, &auth, StatusCode::OK, &rule))
}

/// `DELETE /api/enrollment/rules/:id` and `/api/auto-enrollment/rules/:id`.
pub async fn delete(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    state.chat.delete_rule(&caller, &id).await?;
    Ok(success())
}

/// `POST /api/enrollment/execute` `{userId}`: runs the matching rules for the user now.
pub async fn execute(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<ExecuteBody>,
) -> ApiResult<Response> {
    let caller = auth.caller(body.acting_user_id);
    let results = state.chat.run_rules(&caller, &body.user_id).await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Executed {
        user_id: &body.user_id,
        rules_executed: results.iter().filter(|r| r.executed).count(),
        results: results.iter().map(v::Outcome::new).collect(),
    }))
}

/// `GET /api/enrollment/history?userId&ruleId&limit(50, ≤100)&offset`.
pub async fn history(
    State(state): State<GatewayState>,
    auth: Auth,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("actingUserId"));
    let limit = q.num("limit", 50, 100)?.max(1) as usize;
    let offset = q.num("offset", 0, 100_000)? as usize;
    let runs = state.chat.enrollment_history(
        &caller,
        q.str("userId").as_deref(),
        q.str("ruleId").as_deref(),
        limit,
        offset,
    )?;
    let users = names(
        &state,
        &caller.app,
        runs.iter().map(|r| Some(r.user_id.clone())),
    );
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::History {
        executions: runs
            .iter()
            .zip(&users)
            .map(|(r, n)| v::Run::new(r, n.as_deref()))
            .collect(),
        limit,
        offset,
    }))
}
