//! Auto-enrollment: rules that put users into channels and workspaces when something happens
//! to them.
//!
//! Triggers: a user is created (any surface), joins a workspace, or has their attributes
//! changed (custom data or role). A rule's conditions all have to hold: the trigger (when it
//! names some), the user's role, tags (`custom.tags`) and attributes (`custom.<key>`). Its
//! actions join channels (with a role) and a workspace (with a role). Rules run by priority
//! (highest first), once per (rule, user): the run is claimed in the directory before the
//! actions are taken, so a trigger that fires twice runs a rule once; a manual run
//! (`POST /api/enrollment/execute`) runs the matching rules again. Conditions and actions are
//! validated when a rule is saved, so a rule never fails for its shape when it runs.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Map;

use super::*;
use crate::directory::enrollment::EnrollCommand;
use crate::model::{EnrollmentRule, EnrollmentRun, WorkspaceRole};

/// Rules an app may have.
pub const MAX_RULES_PER_APP: usize = 100;
/// The rule types.
pub const RULE_TYPES: [&str; 5] = [
    "all_users",
    "role_based",
    "tag_based",
    "event_trigger",
    "attribute_match",
];
/// The triggers a rule may name.
pub const TRIGGERS: [&str; 3] = ["user_created", "workspace_joined", "attributes_changed"];

/// What fired a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Trigger {
    UserCreated,
    WorkspaceJoined(String),
    AttributesChanged,
    Manual,
}

impl Trigger {
    fn name(&self) -> &'static str {
        match self {
            Trigger::UserCreated => "user_created",
            Trigger::WorkspaceJoined(_) => "workspace_joined",
            Trigger::AttributesChanged => "attributes_changed",
            Trigger::Manual => "manual",
        }
    }
}

/// A rule's conditions (all that are given must hold).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Conditions {
    /// Triggers the rule answers (all when absent).
    #[serde(default, alias = "triggers", alias = "events", alias = "event")]
    trigger: Option<OneOrMany>,
    /// Only for `workspace_joined`: the workspace joined.
    #[serde(default, alias = "workspace_id")]
    workspace_id: Option<String>,
    /// The user's role (`admin`, or `member` for everyone else) or `custom.role`.
    #[serde(default, alias = "role")]
    roles: Option<OneOrMany>,
    /// `custom.tags`: any of these (or all, with `tagMatch: "all"`).
    #[serde(default, alias = "tag")]
    tags: Option<OneOrMany>,
    #[serde(default, alias = "tag_match")]
    tag_match: Option<String>,
    /// `custom.<key>` equals the value (or one of the values, for an array).
    #[serde(default, alias = "attribute")]
    attributes: Option<Map<String, Value>>,
}

/// A rule's actions.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Actions {
    #[serde(
        default,
        alias = "join_channels",
        alias = "channels",
        alias = "channelIds"
    )]
    join_channels: Option<OneOrMany>,
    #[serde(
        default,
        alias = "join_workspace",
        alias = "workspace",
        alias = "workspaceId"
    )]
    join_workspace: Option<String>,
    /// The role in the channels joined: `member` (default), `moderator` or `admin`.
    #[serde(
        default,
        alias = "channel_role",
        alias = "role",
        alias = "set_role",
        alias = "setRole"
    )]
    channel_role: Option<String>,
    /// The role in the workspace joined: `member` (default) or `admin`.
    #[serde(default, alias = "workspace_role")]
    workspace_role: Option<String>,
}

/// A string or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A rule as its author writes it.
#[derive(Clone, Debug, Default)]
pub struct RuleSpec {
    pub name: Option<String>,
    pub workspace_id: Option<String>,
    pub channel_id: Option<String>,
    pub rule_type: Option<String>,
    pub conditions: Option<Value>,
    pub actions: Option<Value>,
    pub priority: Option<i64>,
    pub enabled: Option<bool>,
}

/// How one rule went for one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleOutcome {
    pub rule_id: String,
    pub rule_type: String,
    /// Whether the rule applied (conditions met, not run before).
    pub executed: bool,
    pub success: bool,
    pub error: Option<String>,
}

fn parse<T: for<'de> Deserialize<'de>>(what: &str, v: &Value) -> Result<T, ChatError> {
    serde_json::from_value(v.clone()).map_err(|e| ChatError::bad(format!("{what}: {e}")))
}

fn channel_role(name: Option<&str>) -> Result<Role, ChatError> {
    match name.unwrap_or("member") {
        "member" => Ok(Role::Member),
        "moderator" => Ok(Role::Moderator),
        "admin" => Ok(Role::Admin),
        other => Err(ChatError::bad(format!(
            "actions.channelRole {other}: must be member, moderator or admin"
        ))),
    }
}

fn workspace_role(name: Option<&str>) -> Result<WorkspaceRole, ChatError> {
    match name.unwrap_or("member") {
        "member" => Ok(WorkspaceRole::Member),
        "admin" => Ok(WorkspaceRole::Admin),
        other => Err(ChatError::bad(format!(
            "actions.workspaceRole {other}: must be member or admin"
        ))),
    }
}

/// Whether `user` meets `c` for `trigger`.
fn matches(c: &Conditions, user: &User, trigger: &Trigger) -> bool {
    if let Some(t) = &c.trigger {
        if *trigger != Trigger::Manual && !t.list().iter().any(|n| n == trigger.name()) {
            return false;
        }
    }
    if let (Some(ws), Trigger::WorkspaceJoined(joined)) = (&c.workspace_id, trigger) {
        if ws != joined {
            return false;
        }
    }
    let custom = user.custom.0.as_object();
    if let Some(roles) = &c.roles {
        let role = user.role.as_deref().unwrap_or("member");
        let custom_role = custom.and_then(|m| m.get("role")).and_then(Value::as_str);
        if !roles
            .list()
            .iter()
            .any(|r| r == role || Some(r.as_str()) == custom_role)
        {
            return false;
        }
    }
    if let Some(tags) = &c.tags {
        let have: Vec<&str> = custom
            .and_then(|m| m.get("tags"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let want = tags.list();
        let ok = if c.tag_match.as_deref() == Some("all") {
            want.iter().all(|t| have.contains(&t.as_str()))
        } else {
            want.iter().any(|t| have.contains(&t.as_str()))
        };
        if !ok {
            return false;
        }
    }
    if let Some(attrs) = &c.attributes {
        for (k, want) in attrs {
            let got = custom.and_then(|m| m.get(k));
            let ok = match (want, got) {
                (Value::Array(options), Some(g)) => options.contains(g),
                (w, Some(g)) => w == g,
                (_, None) => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

impl Chat {
    /// Checks a rule's shape: its type, conditions and actions (channels and workspaces must
    /// exist in the app).
    async fn check_rule(&self, app: &str, rule: &EnrollmentRule) -> Result<(), ChatError> {
        if !RULE_TYPES.contains(&rule.rule_type.as_str()) {
            return Err(ChatError::bad(format!(
                "ruleType must be one of {}",
                RULE_TYPES.join(", ")
            )));
        }
        let c: Conditions = parse("conditions", &rule.conditions.0)?;
        let a: Actions = parse("actions", &rule.actions.0)?;
        if let Some(t) = &c.trigger {
            for n in t.list() {
                if !TRIGGERS.contains(&n.as_str()) {
                    return Err(ChatError::bad(format!(
                        "conditions.trigger {n}: must be one of {}",
                        TRIGGERS.join(", ")
                    )));
                }
            }
        }
        if let Some(m) = &c.tag_match {
            if m != "any" && m != "all" {
                return Err(ChatError::bad("conditions.tagMatch must be any or all"));
            }
        }
        let needs = match rule.rule_type.as_str() {
            "role_based" => c.roles.as_ref().map(|r| r.list().len()),
            "tag_based" => c.tags.as_ref().map(|t| t.list().len()),
            "attribute_match" => c.attributes.as_ref().map(Map::len),
            "event_trigger" => c.trigger.as_ref().map(|t| t.list().len()),
            _ => Some(1),
        };
        if needs.unwrap_or(0) == 0 {
            return Err(ChatError::bad(format!(
                "a {} rule needs its condition (roles, tags, attributes or trigger)",
                rule.rule_type
            )));
        }
        channel_role(a.channel_role.as_deref())?;
        workspace_role(a.workspace_role.as_deref())?;
        let channels: Vec<String> = a
            .join_channels
            .as_ref()
            .map(OneOrMany::list)
            .unwrap_or_default()
            .into_iter()
            .chain(rule.channel_id.clone())
            .collect();
        let workspace = a.join_workspace.clone().or(rule.workspace_id.clone());
        if channels.is_empty() && workspace.is_none() {
            return Err(ChatError::bad(
                "a rule needs an action: actions.joinChannels, actions.joinWorkspace, channelId or workspaceId",
            ));
        }
        for ch in &channels {
            if self.channel(app, ch)?.is_none() {
                return Err(ChatError::NotFound(format!("channel {ch}")));
            }
        }
        if let Some(ws) = &workspace {
            self.workspace_record(app, ws)?;
        }
        if let Some(ws) = &c.workspace_id {
            self.workspace_record(app, ws)?;
        }
        Ok(())
    }

    /// Saves a rule; every node knows it when this returns (triggers fire on any node).
    async fn put_rule(&self, rule: EnrollmentRule) -> Result<EnrollmentRule, ChatError> {
        match self
            .dir_everywhere(DirCommand::Enroll(EnrollCommand::Put {
                rule: Box::new(rule.clone()),
            }))
            .await?
        {
            DirReply::Done => Ok(rule),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a rule (app admins and server keys).
    pub async fn create_rule(
        &self,
        caller: &Caller,
        spec: RuleSpec,
    ) -> Result<EnrollmentRule, ChatError> {
        self.require_app_admin(caller)?;
        if let Some(n) = &spec.name {
            validate::text_len("name", n, 1, 200)?;
        }
        if self.inner.directory.enrollment_rules(&caller.app)?.len() >= MAX_RULES_PER_APP {
            return Err(ChatError::LimitExceeded(format!(
                "an app has at most {MAX_RULES_PER_APP} enrollment rules"
            )));
        }
        let now = time::now_ms();
        let rule = EnrollmentRule {
            id: new_id(),
            app_id: caller.app.clone(),
            name: spec.name,
            workspace_id: spec.workspace_id,
            channel_id: spec.channel_id,
            rule_type: spec.rule_type.unwrap_or_else(|| "all_users".into()),
            conditions: Json(spec.conditions.unwrap_or_else(|| json!({}))),
            actions: Json(spec.actions.unwrap_or_else(|| json!({}))),
            priority: spec.priority.unwrap_or(0),
            enabled: spec.enabled.unwrap_or(true),
            created_by: caller.user.clone(),
            created_at: now,
            updated_at: now,
        };
        self.check_rule(&caller.app, &rule).await?;
        self.put_rule(rule).await
    }

    /// The app's rules by priority (app admins and server keys), optionally of a workspace or
    /// channel, enabled or not.
    pub fn rules(
        &self,
        caller: &Caller,
        workspace: Option<&str>,
        channel: Option<&str>,
        enabled: Option<bool>,
    ) -> Result<Vec<EnrollmentRule>, ChatError> {
        self.require_app_admin(caller)?;
        let mut list: Vec<EnrollmentRule> = self
            .inner
            .directory
            .enrollment_rules(&caller.app)?
            .iter()
            .filter(|r| workspace.is_none_or(|w| r.workspace_id.as_deref() == Some(w)))
            .filter(|r| channel.is_none_or(|c| r.channel_id.as_deref() == Some(c)))
            .filter(|r| enabled.is_none_or(|e| r.enabled == e))
            .cloned()
            .collect();
        list.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.created_at.cmp(&b.created_at))
        });
        Ok(list)
    }

    pub fn rule(&self, caller: &Caller, id: &str) -> Result<EnrollmentRule, ChatError> {
        self.require_app_admin(caller)?;
        self.inner
            .directory
            .enrollment_rules(&caller.app)?
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .ok_or_else(|| ChatError::not_found("rule"))
    }

    /// Changes a rule's name, conditions, actions, priority or state (checked again whole).
    pub async fn update_rule(
        &self,
        caller: &Caller,
        id: &str,
        spec: RuleSpec,
    ) -> Result<EnrollmentRule, ChatError> {
        let mut rule = self.rule(caller, id)?;
        if let Some(n) = spec.name {
            validate::text_len("name", &n, 1, 200)?;
            rule.name = Some(n);
        }
        if let Some(t) = spec.rule_type {
            rule.rule_type = t;
        }
        if let Some(c) = spec.conditions {
            rule.conditions = Json(c);
        }
        if let Some(a) = spec.actions {
            rule.actions = Json(a);
        }
        if let Some(p) = spec.priority {
            rule.priority = p;
        }
        if let Some(e) = spec.enabled {
            rule.enabled = e;
        }
        rule.updated_at = time::now_ms();
        self.check_rule(&caller.app, &rule).await?;
        self.put_rule(rule).await
    }

    pub async fn delete_rule(&self, caller: &Caller, id: &str) -> Result<(), ChatError> {
        self.rule(caller, id)?;
        match self
            .dir(DirCommand::Enroll(EnrollCommand::Delete {
                app_id: caller.app.clone(),
                id: id.to_string(),
            }))
            .await?
        {
            DirReply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Runs the matching rules for `user` now (app admins and server keys), including rules
    /// that ran for them before.
    pub async fn run_rules(
        &self,
        caller: &Caller,
        user: &str,
    ) -> Result<Vec<RuleOutcome>, ChatError> {
        self.require_app_admin(caller)?;
        if self.user(&caller.app, user)?.is_none() {
            return Err(ChatError::NotFound(format!("user {user}")));
        }
        Ok(self.enroll(&caller.app, user, Trigger::Manual).await)
    }

    /// The runs of the app's rules, newest first, optionally of one user or rule.
    pub fn enrollment_history(
        &self,
        caller: &Caller,
        user: Option<&str>,
        rule: Option<&str>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<EnrollmentRun>, ChatError> {
        self.require_app_admin(caller)?;
        let mut runs: Vec<EnrollmentRun> = self
            .inner
            .directory
            .enrollment_runs(&caller.app)?
            .into_iter()
            .filter(|r| user.is_none_or(|u| r.user_id == u))
            .filter(|r| rule.is_none_or(|x| r.rule_id == x))
            .collect();
        runs.sort_by(|a, b| b.executed_at.cmp(&a.executed_at).then(b.id.cmp(&a.id)));
        Ok(runs.into_iter().skip(offset).take(limit).collect())
    }

    /// Runs the app's enabled rules that `trigger` fires for `user`, by priority. Never fails
    /// the triggering request: each rule's outcome is recorded in its run.
    pub(super) fn enroll<'a>(
        &'a self,
        app: &'a str,
        user: &'a str,
        trigger: Trigger,
    ) -> BoxFuture<'a, Vec<RuleOutcome>> {
        Box::pin(async move {
            let rules = match self.inner.directory.enrollment_rules(app) {
                Ok(r) if r.iter().any(|r| r.enabled) => r,
                Ok(_) => return Vec::new(),
                Err(e) => {
                    tracing::error!(app, error = %e, "enrollment rules unreadable");
                    return Vec::new();
                }
            };
            let Ok(Some(record)) = self.user(app, user) else {
                return Vec::new();
            };
            let mut ordered: Vec<&EnrollmentRule> = rules.iter().filter(|r| r.enabled).collect();
            ordered.sort_by(|a, b| {
                b.priority
                    .cmp(&a.priority)
                    .then(a.created_at.cmp(&b.created_at))
            });
            let mut out = Vec::new();
            for rule in ordered {
                out.push(self.run_rule(app, &record, rule, &trigger).await);
            }
            out
        })
    }

    async fn run_rule(
        &self,
        app: &str,
        user: &User,
        rule: &EnrollmentRule,
        trigger: &Trigger,
    ) -> RuleOutcome {
        let skipped = |why: Option<&str>| RuleOutcome {
            rule_id: rule.id.clone(),
            rule_type: rule.rule_type.clone(),
            executed: false,
            success: false,
            error: why.map(str::to_string),
        };
        // Checked when saved; a rule that no longer parses is skipped, not run.
        let (Ok(c), Ok(a)) = (
            serde_json::from_value::<Conditions>(rule.conditions.0.clone()),
            serde_json::from_value::<Actions>(rule.actions.0.clone()),
        ) else {
            return skipped(Some("the rule's conditions or actions no longer parse"));
        };
        if !matches(&c, user, trigger) {
            return skipped(None);
        }
        let again = *trigger == Trigger::Manual;
        // Most repeated triggers stop here, on a local read, without a directory write.
        if !again
            && self
                .inner
                .directory
                .enrollment_ran(app, &rule.id, &user.id)
                .unwrap_or(false)
        {
            return skipped(Some("already ran for this user"));
        }
        let run_id = new_id();
        let run = EnrollmentRun {
            id: run_id.clone(),
            rule_id: rule.id.clone(),
            rule_type: rule.rule_type.clone(),
            user_id: user.id.clone(),
            success: None,
            error: None,
            trigger: trigger.name().to_string(),
            executed_at: time::now_ms(),
        };
        match self
            .dir(DirCommand::Enroll(EnrollCommand::Claim {
                app_id: app.to_string(),
                run: Box::new(run),
                again,
            }))
            .await
        {
            Ok(DirReply::Done) => {}
            Ok(_) => return skipped(Some("already ran for this user")),
            Err(e) => return skipped(Some(&e.to_string())),
        }
        let result = self.apply_actions(app, &user.id, rule, &a).await;
        let (success, error) = match &result {
            Ok(()) => (true, None),
            Err(e) => (false, Some(e.to_string())),
        };
        let finish = DirCommand::Enroll(EnrollCommand::Finish {
            app_id: app.to_string(),
            run_id,
            success,
            error: error.clone(),
        });
        if let Err(e) = self.dir(finish).await {
            tracing::warn!(app, rule = %rule.id, error = %e, "enrollment run outcome not recorded");
        }
        RuleOutcome {
            rule_id: rule.id.clone(),
            rule_type: rule.rule_type.clone(),
            executed: true,
            success,
            error,
        }
    }

    async fn apply_actions(
        &self,
        app: &str,
        user: &str,
        rule: &EnrollmentRule,
        a: &Actions,
    ) -> Result<(), ChatError> {
        let system = Caller {
            app: app.to_string(),
            user: None,
            server: true,
        };
        // The workspace first: its channels may need the membership.
        if let Some(ws) = a.join_workspace.clone().or(rule.workspace_id.clone()) {
            let role = workspace_role(a.workspace_role.as_deref())?;
            let in_ws = self.workspace_membership(app, &ws, user).await?.is_some();
            if !in_ws {
                self.add_workspace_members(&system, &ws, vec![user.to_string()], role)
                    .await?;
            }
        }
        let role = channel_role(a.channel_role.as_deref())?;
        let channels: Vec<String> = a
            .join_channels
            .as_ref()
            .map(OneOrMany::list)
            .unwrap_or_default()
            .into_iter()
            .chain(rule.channel_id.clone())
            .collect();
        for ch in channels {
            match self.membership(app, &ch, user).await? {
                Some(m) if m.role >= role => {}
                Some(_) => self.set_role(&system, &ch, user, role).await?,
                None => {
                    self.add_members(&system, &ch, vec![user.to_string()], role)
                        .await?;
                }
            }
        }
        Ok(())
    }
}
