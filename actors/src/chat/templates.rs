//! Workspace templates: the app's own (created by its users) and the built-in ones every app
//! sees, and making a workspace with its channels from one.

use super::*;
use crate::directory::workspaces::WsCommand;
use crate::model::{Template, TemplateChannel, Workspace};

/// Channels one template may create.
const MAX_TEMPLATE_CHANNELS: usize = 50;
const CATEGORIES: [&str; 5] = ["conference", "project", "team", "education", "community"];

/// A template's fields as a request gives them (`None`: unchanged, on updates).
#[derive(Clone, Debug, Default)]
pub struct TemplateSpec {
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub icon: Option<String>,
    pub config: Option<Value>,
    pub channels: Option<Vec<TemplateChannel>>,
    pub roles: Option<Value>,
    pub settings: Option<Value>,
    pub is_public: Option<bool>,
}

/// The built-in templates: the same for every app, never changed.
pub fn built_in_templates() -> Vec<Template> {
    let make = |id: &str,
                name: &str,
                category: &str,
                icon: &str,
                description: &str,
                channels: &[(&str, &str, bool)]| Template {
        id: format!("builtin-{id}"),
        app_id: None,
        name: name.to_string(),
        description: Some(description.to_string()),
        category: Some(category.to_string()),
        icon: Some(icon.to_string()),
        config: Json::object(),
        channels: channels
            .iter()
            .map(|(n, k, ro)| TemplateChannel {
                name: n.to_string(),
                kind: k.to_string(),
                read_only: *ro,
            })
            .collect(),
        roles: Json::array(),
        settings: Json::object(),
        is_public: true,
        usage_count: 0,
        created_by: None,
        created_at: 0,
        updated_at: 0,
    };
    vec![
        make(
            "team",
            "Team",
            "team",
            "👥",
            "A team's everyday space",
            &[
                ("general", "team", false),
                ("random", "team", false),
                ("announcements", "team", true),
            ],
        ),
        make(
            "project",
            "Project",
            "project",
            "📋",
            "Plan and ship a project",
            &[
                ("general", "team", false),
                ("tasks", "team", false),
                ("standup", "team", false),
            ],
        ),
        make(
            "conference",
            "Conference",
            "conference",
            "🎤",
            "Run an event and its sessions",
            &[
                ("announcements", "team", true),
                ("lobby", "team", false),
                ("sessions", "team", false),
                ("networking", "team", false),
            ],
        ),
        make(
            "classroom",
            "Classroom",
            "education",
            "🎓",
            "A class with its teacher",
            &[
                ("announcements", "team", true),
                ("homework", "team", false),
                ("discussion", "team", false),
            ],
        ),
        make(
            "community",
            "Community",
            "community",
            "🌱",
            "A community and its chapters",
            &[
                ("welcome", "team", true),
                ("general", "team", false),
                ("events", "team", false),
            ],
        ),
    ]
}

fn template_refusal(reply: DirReply) -> ChatError {
    match reply {
        DirReply::NotFound(w) => ChatError::NotFound(w),
        DirReply::Refused(w) => ChatError::Forbidden(w),
        other => unexpected(other),
    }
}

fn validate_spec(spec: &TemplateSpec) -> Result<(), ChatError> {
    if let Some(n) = &spec.name {
        validate::text_len("name", n.trim(), 1, 255)?;
    }
    if let Some(d) = &spec.description {
        validate::text_len("description", d, 0, 2000)?;
    }
    if let Some(c) = &spec.category {
        if !CATEGORIES.contains(&c.as_str()) {
            return Err(ChatError::bad(
                "category must be one of conference, project, team, education, community",
            ));
        }
    }
    for (field, v) in [("config", &spec.config), ("settings", &spec.settings)] {
        if v.as_ref().is_some_and(|v| !v.is_object()) {
            return Err(ChatError::bad(format!("{field} must be an object")));
        }
    }
    if spec.roles.as_ref().is_some_and(|v| !v.is_array()) {
        return Err(ChatError::bad("roles must be an array"));
    }
    if let Some(channels) = &spec.channels {
        if channels.len() > MAX_TEMPLATE_CHANNELS {
            return Err(ChatError::bad(format!(
                "channels must have at most {MAX_TEMPLATE_CHANNELS} items"
            )));
        }
        for c in channels {
            validate::text_len("channels[].name", &c.name, 1, 255)?;
            if !matches!(c.kind.as_str(), "team" | "group" | "messaging") {
                return Err(ChatError::bad(
                    "channels[].type must be one of team, group, messaging",
                ));
            }
        }
    }
    Ok(())
}

impl Chat {
    /// Creates a template of the caller's app.
    pub async fn create_template(
        &self,
        caller: &Caller,
        spec: TemplateSpec,
    ) -> Result<Template, ChatError> {
        if spec.name.is_none() {
            return Err(ChatError::bad("name is required"));
        }
        validate_spec(&spec)?;
        if caller.user.is_none() && !caller.server {
            return Err(ChatError::bad("user_id is required"));
        }
        let now = time::now_ms();
        let template = Template {
            id: new_id(),
            app_id: Some(caller.app.clone()),
            name: spec.name.unwrap_or_default().trim().to_string(),
            description: spec.description,
            category: spec.category,
            icon: spec.icon,
            config: spec.config.map(Json).unwrap_or_else(Json::object),
            channels: spec.channels.unwrap_or_default(),
            roles: spec.roles.map(Json).unwrap_or_else(Json::array),
            settings: spec.settings.map(Json).unwrap_or_else(Json::object),
            is_public: spec.is_public.unwrap_or(true),
            usage_count: 0,
            created_by: caller.user.clone(),
            created_at: now,
            updated_at: now,
        };
        match self
            .dir(DirCommand::Workspace(WsCommand::PutTemplate {
                template: template.clone(),
            }))
            .await?
        {
            DirReply::Done => Ok(template),
            other => Err(template_refusal(other)),
        }
    }

    /// Whether the caller may see `t`: built-in or public ones, and their own.
    fn sees_template(&self, caller: &Caller, t: &Template) -> bool {
        t.app_id.is_none() || t.is_public || caller.server || t.created_by == caller.user
    }

    /// Whether the caller may change `t`: its creator, an app admin, or a server key.
    fn owns_template(&self, caller: &Caller, t: &Template) -> Result<bool, ChatError> {
        if t.app_id.is_none() {
            return Ok(false);
        }
        if caller.server || (t.created_by.is_some() && t.created_by == caller.user) {
            return Ok(true);
        }
        Ok(match &caller.user {
            Some(u) => self.user(&caller.app, u)?.is_some_and(|u| u.is_admin()),
            None => false,
        })
    }

    /// The templates the caller sees: the app's (public ones and their own) and the built-in
    /// ones; filtered by category and publicity, newest or most used first.
    pub fn templates_for(
        &self,
        caller: &Caller,
        category: Option<&str>,
        public: Option<bool>,
        by_usage: bool,
    ) -> Result<Vec<Template>, ChatError> {
        let mut out: Vec<Template> = self
            .inner
            .directory
            .templates(&caller.app)?
            .into_iter()
            .chain(built_in_templates())
            .filter(|t| self.sees_template(caller, t))
            .filter(|t| category.is_none_or(|c| t.category.as_deref() == Some(c)))
            .filter(|t| public.is_none_or(|p| t.is_public == p))
            .collect();
        if by_usage {
            out.sort_by_key(|t| std::cmp::Reverse(t.usage_count));
        } else {
            out.sort_by_key(|t| std::cmp::Reverse(t.created_at));
        }
        Ok(out)
    }

    /// One template the caller sees.
    pub fn template(&self, caller: &Caller, id: &str) -> Result<Template, ChatError> {
        let t = match built_in_templates().into_iter().find(|t| t.id == id) {
            Some(t) => t,
            None => self
                .inner
                .directory
                .template(&caller.app, id)?
                .map(Arc::unwrap_or_clone)
                .ok_or_else(|| ChatError::not_found("template"))?,
        };
        if !self.sees_template(caller, &t) {
            return Err(ChatError::not_found("template"));
        }
        Ok(t)
    }

    /// Changes a template (its creator, an app admin, or a server key).
    pub async fn update_template(
        &self,
        caller: &Caller,
        id: &str,
        spec: TemplateSpec,
    ) -> Result<Template, ChatError> {
        validate_spec(&spec)?;
        let mut t = self.template(caller, id)?;
        if !self.owns_template(caller, &t)? {
            return Err(ChatError::forbidden(
                "only the template's creator or an app admin changes it",
            ));
        }
        if let Some(n) = spec.name {
            t.name = n.trim().to_string();
        }
        if spec.description.is_some() {
            t.description = spec.description;
        }
        if spec.category.is_some() {
            t.category = spec.category;
        }
        if spec.icon.is_some() {
            t.icon = spec.icon;
        }
        if let Some(c) = spec.config {
            t.config = Json(c);
        }
        if let Some(c) = spec.channels {
            t.channels = c;
        }
        if let Some(r) = spec.roles {
            t.roles = Json(r);
        }
        if let Some(s) = spec.settings {
            t.settings = Json(s);
        }
        if let Some(p) = spec.is_public {
            t.is_public = p;
        }
        t.updated_at = time::now_ms();
        match self
            .dir(DirCommand::Workspace(WsCommand::PutTemplate {
                template: t.clone(),
            }))
            .await?
        {
            DirReply::Done => Ok(t),
            other => Err(template_refusal(other)),
        }
    }

    /// Deletes a template (its creator, an app admin, or a server key).
    pub async fn delete_template(&self, caller: &Caller, id: &str) -> Result<(), ChatError> {
        let t = self.template(caller, id)?;
        if !self.owns_template(caller, &t)? {
            return Err(ChatError::forbidden(
                "only the template's creator or an app admin deletes it",
            ));
        }
        match self
            .dir(DirCommand::Workspace(WsCommand::DeleteTemplate {
                app_id: caller.app.clone(),
                id: id.to_string(),
            }))
            .await?
        {
            DirReply::Done => Ok(()),
            other => Err(template_refusal(other)),
        }
    }

    /// Makes a workspace named `name` with the template's channels; the caller owns it and
    /// its channels.
    pub async fn workspace_from_template(
        &self,
        caller: &Caller,
        template_id: &str,
        name: String,
        expires_at: Option<u64>,
        custom_config: Option<Value>,
    ) -> Result<(Workspace, Vec<Channel>, Template), ChatError> {
        caller.user()?;
        let t = self.template(caller, template_id)?;
        let kind = match t.category.as_deref() {
            Some("conference") => "conference",
            Some("project") => "project",
            Some("community") => "chapter",
            _ => "team",
        };
        let mut config = t.config.0.clone();
        if let (Value::Object(base), Some(Value::Object(custom))) = (&mut config, custom_config) {
            base.extend(custom);
        }
        let (ws, _) = self
            .create_workspace(
                caller,
                WorkspaceSpec {
                    name: Some(name),
                    kind: Some(kind.to_string()),
                    image: None,
                    expires_at: Some(expires_at),
                    config: Some(config),
                },
            )
            .await?;
        let mut channels = Vec::with_capacity(t.channels.len());
        for c in &t.channels {
            let kind = if c.kind == "messaging" {
                "group"
            } else {
                c.kind.as_str()
            };
            let (_, ch) = self
                .create_channel(
                    caller,
                    NewChannel {
                        kind: Some(kind.to_string()),
                        name: Some(c.name.clone()),
                        workspace_id: Some(ws.id.clone()),
                        config: Some(json!({ "readOnly": c.read_only })),
                        ..NewChannel::default()
                    },
                )
                .await?;
            channels.push(ch);
        }
        if t.app_id.is_some() {
            if let Err(e) = self
                .dir(DirCommand::Workspace(WsCommand::TemplateUsed {
                    app_id: caller.app.clone(),
                    id: t.id.clone(),
                }))
                .await
            {
                tracing::warn!(template = %t.id, error = %e, "template use not counted");
            }
        }
        let ws = Arc::unwrap_or_clone(self.workspace_record(&caller.app, &ws.id)?);
        Ok((ws, channels, t))
    }
}
