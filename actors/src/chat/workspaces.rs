//! Workspaces: creation, members and roles (the last owner is kept), the workspace's
//! channels, invitations, statistics, and the `workspace.*` events.
//!
//! Workspace events go once to the workspace's own realtime channel
//! (`workspace:<app>:<id>`, which its members may subscribe to and recover), and to the user
//! channel of the user they concern (the creator, a member who joined or left), not to every
//! member's user channel: one durable append per event instead of one per member.

use super::*;
use crate::directory::workspaces::WsCommand;
use crate::model::{Invite, Workspace, WorkspaceMember, WorkspaceRole, WorkspaceType};

/// Emails one invitation request may name.
const MAX_INVITES_PER_REQUEST: usize = 50;
/// How long an invitation stays valid.
const INVITE_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// The realtime channel of a workspace.
pub fn workspace_stream(app: &str, ws: &str) -> String {
    colon_joined(&["workspace", app, ws])
}

/// A new workspace, or the fields of an update (`None` leaves a field as it is).
#[derive(Clone, Debug, Default)]
pub struct WorkspaceSpec {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub image: Option<String>,
    /// `Some(None)` clears the expiry (updates only).
    pub expires_at: Option<Option<u64>>,
    pub config: Option<Value>,
}

/// An invitation as it is handed out once: the plain token is never stored.
#[derive(Clone, Debug)]
pub struct IssuedInvite {
    pub email: String,
    pub token: String,
    pub expires_at: u64,
}

/// A workspace's counts.
#[derive(Clone, Copy, Debug)]
pub struct WorkspaceStats {
    pub members: u64,
    pub channels: u64,
    /// Messages of the workspace's channels (thread replies included), as their seqs count.
    pub messages: u64,
}

fn ws_refusal(reply: DirReply) -> ChatError {
    match reply {
        DirReply::NotFound(w) => ChatError::NotFound(w),
        DirReply::Conflict(w) => ChatError::Conflict(w),
        DirReply::Refused(w) => ChatError::BadRequest(w),
        other => unexpected(other),
    }
}

impl Chat {
    /// A workspace of the caller's app.
    pub fn workspace_record(&self, app: &str, id: &str) -> Result<Arc<Workspace>, ChatError> {
        self.inner
            .directory
            .workspace(app, id)?
            .ok_or_else(|| ChatError::not_found("workspace"))
    }

    /// A user's membership of a workspace, re-read after the directory's read barrier when not
    /// found locally (as for channels).
    pub async fn workspace_membership(
        &self,
        app: &str,
        ws: &str,
        user: &str,
    ) -> Result<Option<Arc<WorkspaceMember>>, ChatError> {
        if let Some(m) = self.inner.directory.workspace_member(app, ws, user)? {
            return Ok(Some(m));
        }
        Box::pin(self.inner.cluster.linearizable_reader(META_GROUP)).await?;
        Ok(self.inner.directory.workspace_member(app, ws, user)?)
    }

    /// Whether `user` may see an open channel (public or team): in its workspace, if it has
    /// one.
    pub(super) async fn open_to(
        &self,
        app: &str,
        ch: &Channel,
        user: Option<&str>,
    ) -> Result<bool, ChatError> {
        if !ch.kind.is_open() {
            return Ok(false);
        }
        // Banned from the channel, or rated above their age restriction: not open to them
        // (no reading, joining or subscribing).
        if let Some(user) = user {
            if self.channel_banned(app, &ch.id, user)? || !self.age_allows(app, ch, user)? {
                return Ok(false);
            }
        }
        match (&ch.workspace_id, user) {
            (None, _) => Ok(true),
            (Some(ws), Some(user)) => Ok(self.workspace_membership(app, ws, user).await?.is_some()),
            (Some(_), None) => Ok(false),
        }
    }

    /// Refuses a workspace channel whose members are not all members of the workspace (the
    /// workspace must exist, and a user creating or adding must be in it).
    pub(super) async fn require_workspace_members(
        &self,
        caller: &Caller,
        ws: &str,
        users: &[String],
    ) -> Result<(), ChatError> {
        self.workspace_record(&caller.app, ws)?;
        if let (Some(me), false) = (&caller.user, caller.server) {
            if self
                .workspace_membership(&caller.app, ws, me)
                .await?
                .is_none()
            {
                return Err(ChatError::not_found("workspace"));
            }
        }
        for u in users {
            if self
                .workspace_membership(&caller.app, ws, u)
                .await?
                .is_none()
            {
                return Err(ChatError::forbidden(
                    "All channel members must belong to the workspace",
                ));
            }
        }
        Ok(())
    }

    /// The workspace and the caller's membership, which must be at least `needed` (server
    /// keys pass). A user of the app who is not a member is refused (403); another app's
    /// workspace is not found.
    pub(super) async fn require_ws_role(
        &self,
        caller: &Caller,
        id: &str,
        needed: WorkspaceRole,
    ) -> Result<(Arc<Workspace>, Option<Arc<WorkspaceMember>>), ChatError> {
        let ws = self.workspace_record(&caller.app, id)?;
        let me = match &caller.user {
            Some(u) => self.workspace_membership(&caller.app, id, u).await?,
            None => None,
        };
        if caller.server {
            return Ok((ws, me));
        }
        let Some(m) = &me else {
            return Err(ChatError::forbidden("not a member of this workspace"));
        };
        if m.role < needed {
            return Err(ChatError::Forbidden(format!(
                "requires the {} role in this workspace",
                needed.as_str()
            )));
        }
        Ok((ws, me))
    }

    async fn ws_dir(&self, command: WsCommand) -> Result<DirReply, ChatError> {
        self.dir(DirCommand::Workspace(command)).await
    }

    /// Appends a workspace event to the workspace's realtime channel (logged when it fails:
    /// the change itself is made).
    async fn workspace_event(&self, app: &str, ws: &str, event: Event) {
        let op = StreamOp::Append {
            id: new_id(),
            event,
        };
        if let Err(e) = self.write_stream(&workspace_stream(app, ws), op).await {
            tracing::warn!(app, ws, error = %e, "workspace event not recorded");
        }
    }

    /// Creates a workspace; the caller (when a user) is its owner.
    pub async fn create_workspace(
        &self,
        caller: &Caller,
        spec: WorkspaceSpec,
    ) -> Result<(Workspace, Option<WorkspaceMember>), ChatError> {
        let name = spec.name.unwrap_or_default();
        validate::text_len("name", name.trim(), 1, 255)?;
        let kind = match spec.kind.as_deref() {
            None => WorkspaceType::Team,
            Some(k) => WorkspaceType::parse(k).ok_or_else(|| {
                ChatError::bad("type must be one of team, project, conference, chapter")
            })?,
        };
        if let Some(image) = &spec.image {
            validate::text_len("image", image, 0, 2048)?;
        }
        if let Some(u) = &caller.user {
            if self.user(&caller.app, u)?.is_none() {
                return Err(ChatError::NotFound(format!("user {u}")));
            }
        }
        let now = time::now_ms();
        let workspace = Workspace {
            id: new_id(),
            app_id: caller.app.clone(),
            name: name.trim().to_string(),
            kind,
            image: spec.image,
            config: spec.config.map(Json).unwrap_or_else(Json::object),
            expires_at: spec.expires_at.flatten(),
            created_by: caller.user.clone(),
            created_at: now,
            updated_at: now,
            member_count: 0,
            channel_count: 0,
        };
        let created = match self
            .ws_dir(WsCommand::Create {
                workspace,
                owner: caller.user.clone(),
            })
            .await?
        {
            DirReply::Workspace(w) => *w,
            other => return Err(ws_refusal(other)),
        };
        let me = match &caller.user {
            Some(u) => {
                self.append_user_event(
                    &caller.app,
                    u,
                    Event::WorkspaceCreated(Box::new(created.clone())),
                )
                .await;
                self.inner
                    .directory
                    .workspace_member(&caller.app, &created.id, u)?
                    .map(Arc::unwrap_or_clone)
            }
            None => None,
        };
        Ok((created, me))
    }

    /// The caller's workspaces (a server key without a user: every workspace of the app).
    pub fn workspaces_for(
        &self,
        caller: &Caller,
    ) -> Result<Vec<(Workspace, Option<WorkspaceMember>)>, ChatError> {
        let dir = &self.inner.directory;
        let mut out = Vec::new();
        match &caller.user {
            Some(u) => {
                for id in dir.user_workspace_ids(&caller.app, u)? {
                    if let Some(w) = dir.workspace(&caller.app, &id)? {
                        let me = dir.workspace_member(&caller.app, &id, u)?;
                        out.push((Arc::unwrap_or_clone(w), me.map(Arc::unwrap_or_clone)));
                    }
                }
            }
            None if caller.server => {
                out = dir
                    .workspaces(&caller.app)?
                    .into_iter()
                    .map(|w| (w, None))
                    .collect();
            }
            None => return Err(ChatError::bad("user_id is required")),
        }
        out.sort_by_key(|(w, _)| std::cmp::Reverse(w.created_at));
        Ok(out)
    }

    /// One workspace, for its members (and server keys).
    pub async fn workspace(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(Workspace, Option<WorkspaceMember>), ChatError> {
        let (ws, me) = self
            .require_ws_role(caller, id, WorkspaceRole::Member)
            .await?;
        Ok((Arc::unwrap_or_clone(ws), me.map(Arc::unwrap_or_clone)))
    }

    /// Updates name, image, expiry or config (owners and admins).
    pub async fn update_workspace(
        &self,
        caller: &Caller,
        id: &str,
        spec: WorkspaceSpec,
    ) -> Result<Workspace, ChatError> {
        if let Some(name) = &spec.name {
            validate::text_len("name", name.trim(), 1, 255)?;
        }
        if spec.kind.is_some() {
            return Err(ChatError::bad("a workspace's type cannot change"));
        }
        if spec.name.is_none()
            && spec.image.is_none()
            && spec.expires_at.is_none()
            && spec.config.is_none()
        {
            return Err(ChatError::bad(
                "nothing to update: give name, image, expiresAt or config",
            ));
        }
        self.require_ws_role(caller, id, WorkspaceRole::Admin)
            .await?;
        let w = match self
            .ws_dir(WsCommand::Update {
                app_id: caller.app.clone(),
                id: id.to_string(),
                name: spec.name.map(|n| n.trim().to_string()),
                image: spec.image,
                expires_at: spec.expires_at,
                config: spec.config.map(Json),
                now: time::now_ms(),
            })
            .await?
        {
            DirReply::Workspace(w) => *w,
            other => return Err(ws_refusal(other)),
        };
        self.workspace_event(
            &caller.app,
            id,
            Event::WorkspaceUpdated(Box::new(w.clone())),
        )
        .await;
        Ok(w)
    }

    /// Deletes a workspace (owners only) with its channels, members and invitations.
    pub async fn delete_workspace(&self, caller: &Caller, id: &str) -> Result<(), ChatError> {
        self.require_ws_role(caller, id, WorkspaceRole::Owner)
            .await?;
        let app = &caller.app;
        let members = self.inner.directory.workspace_members(app, id)?;
        let authority = Caller {
            app: app.clone(),
            user: None,
            server: true,
        };
        for channel in self.inner.directory.workspace_channel_ids(app, id)? {
            match self.delete_channel(&authority, &channel).await {
                Ok(()) | Err(ChatError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        match self
            .ws_dir(WsCommand::Delete {
                app_id: app.clone(),
                id: id.to_string(),
            })
            .await?
        {
            DirReply::Workspace(_) => {}
            other => return Err(ws_refusal(other)),
        }
        let stream = workspace_stream(app, id);
        let event = Event::WorkspaceDeleted {
            workspace_id: id.to_string(),
        };
        self.workspace_event(app, id, event.clone()).await;
        for m in members {
            self.append_user_event(app, &m.user_id, event.clone()).await;
            self.unsubscribe_everywhere(app, &m.user_id, &stream).await;
        }
        if let Err(e) = self.write_stream(&stream, StreamOp::Drop).await {
            tracing::warn!(app, ws = id, error = %e, "workspace stream not dropped");
        }
        Ok(())
    }

    /// Adds users with `role` (owners and admins; only owners grant owner); returns the ids
    /// actually added.
    pub async fn add_workspace_members(
        &self,
        caller: &Caller,
        id: &str,
        users: Vec<String>,
        role: WorkspaceRole,
    ) -> Result<Vec<String>, ChatError> {
        let (_, me) = self
            .require_ws_role(caller, id, WorkspaceRole::Admin)
            .await?;
        if role == WorkspaceRole::Owner
            && !caller.server
            && me.is_none_or(|m| m.role != WorkspaceRole::Owner)
        {
            return Err(ChatError::forbidden("only owners make owners"));
        }
        if users.is_empty() {
            return Err(ChatError::bad("userIds must name at least one user"));
        }
        if users.len() > MAX_INITIAL_MEMBERS {
            return Err(ChatError::bad(format!(
                "at most {MAX_INITIAL_MEMBERS} users per request"
            )));
        }
        let mut missing = Vec::new();
        for u in &users {
            validate::user_id(u)?;
            if self.user(&caller.app, u)?.is_none() {
                missing.push(u.clone());
            }
        }
        if !missing.is_empty() {
            return Err(ChatError::NotFound(format!("users {}", missing.join(", "))));
        }
        let added = match self
            .ws_dir(WsCommand::AddMembers {
                app_id: caller.app.clone(),
                id: id.to_string(),
                users,
                role,
                now: time::now_ms(),
            })
            .await?
        {
            DirReply::Added(a) => a,
            other => return Err(ws_refusal(other)),
        };
        for u in &added {
            self.workspace_member_event(&caller.app, id, u, true).await;
        }
        Ok(added)
    }

    async fn workspace_member_event(&self, app: &str, ws: &str, user: &str, joined: bool) {
        if joined {
            self.enroll(
                app,
                user,
                super::enrollment::Trigger::WorkspaceJoined(ws.to_string()),
            )
            .await;
        }
        let event = Event::WorkspaceMember {
            workspace_id: ws.to_string(),
            user_id: user.to_string(),
            joined,
        };
        self.workspace_event(app, ws, event.clone()).await;
        self.append_user_event(app, user, event).await;
    }

    /// Changes a member's role (owners and admins; only owners touch owners). The last owner
    /// cannot step down.
    pub async fn set_workspace_role(
        &self,
        caller: &Caller,
        id: &str,
        target: &str,
        role: WorkspaceRole,
    ) -> Result<(), ChatError> {
        let (_, me) = self
            .require_ws_role(caller, id, WorkspaceRole::Admin)
            .await?;
        let current = self
            .workspace_membership(&caller.app, id, target)
            .await?
            .ok_or_else(|| ChatError::not_found("member"))?;
        let owner_change = role == WorkspaceRole::Owner || current.role == WorkspaceRole::Owner;
        if owner_change && !caller.server && me.is_none_or(|m| m.role != WorkspaceRole::Owner) {
            return Err(ChatError::forbidden("only owners make or unmake owners"));
        }
        match self
            .ws_dir(WsCommand::SetRole {
                app_id: caller.app.clone(),
                id: id.to_string(),
                user_id: target.to_string(),
                role,
            })
            .await?
        {
            DirReply::Done => Ok(()),
            other => Err(ws_refusal(other)),
        }
    }

    /// Removes a member (themselves, or by an owner or admin; admins cannot remove owners):
    /// their memberships of the workspace's channels go too, and their subscriptions to those
    /// channels and to the workspace end.
    pub async fn remove_workspace_member(
        &self,
        caller: &Caller,
        id: &str,
        target: &str,
    ) -> Result<(), ChatError> {
        let is_self = caller.user.as_deref() == Some(target);
        if !is_self {
            let (_, me) = self
                .require_ws_role(caller, id, WorkspaceRole::Admin)
                .await?;
            let current = self
                .workspace_membership(&caller.app, id, target)
                .await?
                .ok_or_else(|| ChatError::not_found("member"))?;
            if !caller.server
                && current.role == WorkspaceRole::Owner
                && me.is_none_or(|m| m.role != WorkspaceRole::Owner)
            {
                return Err(ChatError::forbidden("only owners remove owners"));
            }
        } else {
            self.workspace_record(&caller.app, id)?;
        }
        let channels = match self
            .ws_dir(WsCommand::RemoveMember {
                app_id: caller.app.clone(),
                id: id.to_string(),
                user_id: target.to_string(),
            })
            .await?
        {
            DirReply::LeftWorkspace { channels } => channels,
            other => return Err(ws_refusal(other)),
        };
        let authority = Caller {
            app: caller.app.clone(),
            user: None,
            server: true,
        };
        for channel in channels {
            match self.remove_member(&authority, &channel, target).await {
                Ok(()) | Err(ChatError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(app = %caller.app, channel, error = %e, "workspace channel membership not removed")
                }
            }
        }
        self.workspace_member_event(&caller.app, id, target, false)
            .await;
        self.unsubscribe_everywhere(&caller.app, target, &workspace_stream(&caller.app, id))
            .await;
        Ok(())
    }

    /// The workspace's channels the caller may see: its open channels and those the caller is
    /// a member of (server keys: all of them).
    pub async fn workspace_channels(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Vec<(Channel, Option<Member>)>, ChatError> {
        self.require_ws_role(caller, id, WorkspaceRole::Member)
            .await?;
        let dir = &self.inner.directory;
        let mut out = Vec::new();
        for cid in dir.workspace_channel_ids(&caller.app, id)? {
            let Some(ch) = dir.channel(&caller.app, &cid)? else {
                continue;
            };
            let me = match &caller.user {
                Some(u) => dir.member(&caller.app, &cid, u)?,
                None => None,
            };
            if me.is_some() || ch.kind.is_open() || caller.server {
                out.push((Arc::unwrap_or_clone(ch), me.map(Arc::unwrap_or_clone)));
            }
        }
        out.sort_by_key(|(c, _)| std::cmp::Reverse(c.created_at));
        Ok(out)
    }

    /// Member, channel and message counts (members and server keys).
    pub async fn workspace_stats(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<WorkspaceStats, ChatError> {
        let (ws, _) = self
            .require_ws_role(caller, id, WorkspaceRole::Member)
            .await?;
        let mut messages = 0;
        for cid in self
            .inner
            .directory
            .workspace_channel_ids(&caller.app, id)?
        {
            let q = StreamQuery::Messages {
                page: MessagePage::Latest,
                limit: 0,
                viewer: None,
            };
            if let QueryAnswer::Messages { max_seq, .. } =
                self.query(&chat_stream(&caller.app, &cid), q).await?
            {
                messages += max_seq;
            }
        }
        Ok(WorkspaceStats {
            members: ws.member_count,
            channels: ws.channel_count,
            messages,
        })
    }

    /// Invites emails to a workspace (owners and admins; only owners invite owners). An email
    /// with a pending invitation gets a new token (the old one stops working). Each email
    /// takes one from the inviter's hourly budget.
    pub async fn invite(
        &self,
        caller: &Caller,
        id: &str,
        emails: Vec<String>,
        role: WorkspaceRole,
        message: Option<String>,
    ) -> Result<Vec<IssuedInvite>, ChatError> {
        if emails.is_empty() || emails.len() > MAX_INVITES_PER_REQUEST {
            return Err(ChatError::bad(format!(
                "emails must have 1 to {MAX_INVITES_PER_REQUEST} items"
            )));
        }
        for e in &emails {
            let valid = e.len() <= 254
                && e.split_once('@')
                    .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
                && !e.chars().any(|c| c.is_whitespace() || c.is_control());
            if !valid {
                return Err(ChatError::bad(format!(
                    "emails: {e} is not an email address"
                )));
            }
        }
        if let Some(m) = &message {
            validate::text_len("message", m, 0, 500)?;
        }
        let inviter = caller.user()?.to_string();
        let (_, me) = self
            .require_ws_role(caller, id, WorkspaceRole::Admin)
            .await?;
        if role == WorkspaceRole::Owner
            && !caller.server
            && me.is_none_or(|m| m.role != WorkspaceRole::Owner)
        {
            return Err(ChatError::forbidden("only owners invite owners"));
        }
        let now = time::now_ms();
        let mut out = Vec::new();
        for email in emails {
            let email = email.to_lowercase();
            if !caller.server {
                let key = colon_joined(&[&caller.app, &inviter]);
                self.inner
                    .invite_limiter
                    .take(&key)
                    .map_err(|retry_after| ChatError::RateLimited { retry_after })?;
            }
            let token = hex::encode(rand::random::<[u8; 32]>());
            let invite = Invite {
                token_hash: hash_hex(token.as_bytes()),
                workspace_id: id.to_string(),
                email: email.clone(),
                role,
                message: message.clone(),
                invited_by: inviter.clone(),
                created_at: now,
                expires_at: now + INVITE_TTL_MS,
                accepted_by: None,
                accepted_at: None,
            };
            match self
                .ws_dir(WsCommand::Invite {
                    app_id: caller.app.clone(),
                    invite,
                })
                .await?
            {
                DirReply::Done => {}
                other => return Err(ws_refusal(other)),
            }
            out.push(IssuedInvite {
                email,
                token,
                expires_at: now + INVITE_TTL_MS,
            });
        }
        Ok(out)
    }

    /// Accepts an invitation for the caller. An invitation is bound to its email when the
    /// caller has one; an unknown, used or expired token is not found.
    pub async fn accept_invite(
        &self,
        caller: &Caller,
        token: &str,
    ) -> Result<(Workspace, bool), ChatError> {
        let user = caller.user()?.to_string();
        let email = self
            .user(&caller.app, &user)?
            .ok_or_else(|| ChatError::NotFound(format!("user {user}")))?
            .email
            .clone();
        let (w, already) = match self
            .ws_dir(WsCommand::Accept {
                app_id: caller.app.clone(),
                token_hash: hash_hex(token.as_bytes()),
                user_id: user.clone(),
                email,
                now: time::now_ms(),
            })
            .await?
        {
            DirReply::Accepted {
                workspace,
                already_member,
            } => (*workspace, already_member),
            other => return Err(ws_refusal(other)),
        };
        if !already {
            self.workspace_member_event(&caller.app, &w.id, &user, true)
                .await;
        }
        Ok((w, already))
    }
}
