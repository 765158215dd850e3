//! Workspaces in the directory: the workspace records, their members (with the last-owner
//! rule), their channels index, their invitations, and the app's workspace templates.
//!
//! Workspaces sit with channels and memberships in group 0: every node checks workspace
//! membership locally (channel visibility depends on it), and they change at the rate people
//! are organised, not at message rate.

use chatsdk_cluster::StoreError;
use serde::{Deserialize, Serialize};

use super::DirReply;
use crate::codec::Json;
use crate::keys::{self, get_record as get, put_record as put};
use crate::kv::Kv;
use crate::model::{Emoji, Invite, Template, Workspace, WorkspaceMember, WorkspaceRole};

/// A change to workspaces.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum WsCommand {
    /// Creates a workspace with its creator as owner; its name must be free in the app.
    Create {
        workspace: Workspace,
        owner: Option<String>,
    },
    Update {
        app_id: String,
        id: String,
        name: Option<String>,
        image: Option<String>,
        /// `Some(None)` clears the expiry.
        expires_at: Option<Option<u64>>,
        config: Option<Json>,
        now: u64,
    },
    /// Removes the workspace, its members and invitations (its channels are deleted by the
    /// command layer first, each with its events).
    Delete {
        app_id: String,
        id: String,
    },
    /// Adds users with `role`; members keep their role. Replies with the ids added.
    AddMembers {
        app_id: String,
        id: String,
        users: Vec<String>,
        role: WorkspaceRole,
        now: u64,
    },
    /// Changes a member's role; the last owner cannot step down.
    SetRole {
        app_id: String,
        id: String,
        user_id: String,
        role: WorkspaceRole,
    },
    /// Removes a member; replies with the workspace's channels the user is a member of (the
    /// command layer removes those memberships, with their events). The last owner cannot
    /// leave.
    RemoveMember {
        app_id: String,
        id: String,
        user_id: String,
    },
    /// Stores an invitation, replacing the pending one of the same email.
    Invite {
        app_id: String,
        invite: Invite,
    },
    /// Stores a workspace's emoji; one of the same name is replaced (its id is kept).
    PutEmoji {
        emoji: Emoji,
    },
    DeleteEmoji {
        app_id: String,
        id: String,
    },
    /// Creates or replaces an app's template.
    PutTemplate {
        template: Template,
    },
    DeleteTemplate {
        app_id: String,
        id: String,
    },
    /// A workspace was made from a template of the app.
    TemplateUsed {
        app_id: String,
        id: String,
    },
    /// Accepts an invitation for `user` (whose email, if known, must be the invited one).
    Accept {
        app_id: String,
        token_hash: String,
        user_id: String,
        email: Option<String>,
        now: u64,
    },
}

/// Records that `channel` belongs to workspace `ws`; false when the workspace does not exist.
pub(super) fn add_channel(
    kv: &mut impl Kv,
    app: &str,
    ws: &str,
    channel: &str,
) -> Result<bool, StoreError> {
    let Some(mut w) = get::<Workspace>(kv, &keys::workspace(app, ws))? else {
        return Ok(false);
    };
    let key = keys::workspace_channel(app, ws, channel);
    if kv.get(&key)?.is_none() {
        kv.put(&key, b"");
        w.channel_count += 1;
        put(kv, &keys::workspace(app, ws), &w)?;
    }
    Ok(true)
}

/// Forgets that `channel` belonged to workspace `ws`.
pub(super) fn remove_channel(
    kv: &mut impl Kv,
    app: &str,
    ws: &str,
    channel: &str,
) -> Result<(), StoreError> {
    let key = keys::workspace_channel(app, ws, channel);
    if kv.get(&key)?.is_some() {
        kv.delete(&key);
        if let Some(mut w) = get::<Workspace>(kv, &keys::workspace(app, ws))? {
            w.channel_count = w.channel_count.saturating_sub(1);
            put(kv, &keys::workspace(app, ws), &w)?;
        }
    }
    Ok(())
}

fn put_member(
    kv: &mut impl Kv,
    app: &str,
    ws: &str,
    m: &WorkspaceMember,
) -> Result<(), StoreError> {
    put(kv, &keys::workspace_member(app, ws, &m.user_id), m)?;
    kv.put(&keys::user_workspace(app, &m.user_id, ws), b"");
    Ok(())
}

/// Owners of the workspace.
fn owners(kv: &impl Kv, app: &str, ws: &str) -> Result<usize, StoreError> {
    let mut n = 0;
    for (k, v) in kv.scan_prefix(&keys::workspace_members(app, ws))? {
        let m: WorkspaceMember = keys::decode_at(&k, &v)?;
        if m.role == WorkspaceRole::Owner {
            n += 1;
        }
    }
    Ok(n)
}

fn stored(w: Workspace) -> DirReply {
    DirReply::Workspace(Box::new(w))
}

pub(super) fn transition(kv: &mut impl Kv, command: WsCommand) -> Result<DirReply, StoreError> {
    Ok(match command {
        WsCommand::Create {
            mut workspace,
            owner,
        } => {
            let app = workspace.app_id.clone();
            let name_key = keys::workspace_name(&app, &workspace.name);
            if let Some(id) = kv.get(&name_key)? {
                // This very command applied again finds its own workspace.
                if id == workspace.id.as_bytes() {
                    if let Some(w) = get::<Workspace>(kv, &keys::workspace(&app, &workspace.id))? {
                        return Ok(stored(w));
                    }
                }
                return Ok(DirReply::Conflict(format!(
                    "a workspace named {} exists",
                    workspace.name
                )));
            }
            if let Some(user) = owner {
                put_member(
                    kv,
                    &app,
                    &workspace.id,
                    &WorkspaceMember {
                        user_id: user,
                        role: WorkspaceRole::Owner,
                        is_default: true,
                        joined_at: workspace.created_at,
                    },
                )?;
                workspace.member_count = 1;
            }
            kv.put(&name_key, workspace.id.as_bytes());
            put(kv, &keys::workspace(&app, &workspace.id), &workspace)?;
            stored(workspace)
        }
        WsCommand::Update {
            app_id,
            id,
            name,
            image,
            expires_at,
            config,
            now,
        } => {
            let key = keys::workspace(&app_id, &id);
            let Some(mut w) = get::<Workspace>(kv, &key)? else {
                return Ok(DirReply::NotFound("workspace".into()));
            };
            if let Some(name) = name {
                if name.to_lowercase() != w.name.to_lowercase() {
                    let new_key = keys::workspace_name(&app_id, &name);
                    if kv.get(&new_key)?.is_some() {
                        return Ok(DirReply::Conflict(format!(
                            "a workspace named {name} exists"
                        )));
                    }
                    kv.delete(&keys::workspace_name(&app_id, &w.name));
                    kv.put(&new_key, id.as_bytes());
                }
                w.name = name;
            }
            if image.is_some() {
                w.image = image;
            }
            if let Some(e) = expires_at {
                w.expires_at = e;
            }
            if let Some(c) = config {
                w.config = c;
            }
            w.updated_at = now;
            put(kv, &key, &w)?;
            stored(w)
        }
        WsCommand::Delete { app_id, id } => {
            let key = keys::workspace(&app_id, &id);
            let Some(w) = get::<Workspace>(kv, &key)? else {
                return Ok(DirReply::NotFound("workspace".into()));
            };
            for (k, _) in kv.scan_prefix(&keys::workspace_members(&app_id, &id))? {
                let user = String::from_utf8_lossy(keys::last_component(&k)).into_owned();
                kv.delete(&keys::user_workspace(&app_id, &user, &id));
                kv.delete(&k);
            }
            for (k, v) in kv.scan_prefix(&keys::invites_of(&app_id, &id))? {
                kv.delete(&keys::invite(&app_id, &String::from_utf8_lossy(&v)));
                kv.delete(&k);
            }
            for (k, _) in kv.scan_prefix(&keys::workspace_channels(&app_id, &id))? {
                kv.delete(&k);
            }
            for (k, v) in kv.scan_prefix(&keys::emoji_names(&app_id, &id))? {
                kv.delete(&keys::emoji(&app_id, &String::from_utf8_lossy(&v)));
                kv.delete(&k);
            }
            kv.delete(&keys::workspace_name(&app_id, &w.name));
            kv.delete(&key);
            stored(w)
        }
        WsCommand::AddMembers {
            app_id,
            id,
            users,
            role,
            now,
        } => {
            let key = keys::workspace(&app_id, &id);
            let Some(mut w) = get::<Workspace>(kv, &key)? else {
                return Ok(DirReply::NotFound("workspace".into()));
            };
            let mut added = Vec::new();
            for user in users {
                if kv
                    .get(&keys::workspace_member(&app_id, &id, &user))?
                    .is_some()
                    || added.contains(&user)
                {
                    continue;
                }
                put_member(
                    kv,
                    &app_id,
                    &id,
                    &WorkspaceMember {
                        user_id: user.clone(),
                        role,
                        is_default: false,
                        joined_at: now,
                    },
                )?;
                added.push(user);
            }
            if !added.is_empty() {
                w.member_count += added.len() as u64;
                put(kv, &key, &w)?;
            }
            DirReply::Added(added)
        }
        WsCommand::SetRole {
            app_id,
            id,
            user_id,
            role,
        } => {
            let mkey = keys::workspace_member(&app_id, &id, &user_id);
            let Some(mut m) = get::<WorkspaceMember>(kv, &mkey)? else {
                return Ok(DirReply::NotFound("member".into()));
            };
            if m.role == WorkspaceRole::Owner
                && role != WorkspaceRole::Owner
                && owners(kv, &app_id, &id)? <= 1
            {
                return Ok(DirReply::Refused(
                    "the last owner of a workspace cannot step down".into(),
                ));
            }
            m.role = role;
            put(kv, &mkey, &m)?;
            DirReply::Done
        }
        WsCommand::RemoveMember {
            app_id,
            id,
            user_id,
        } => {
            let key = keys::workspace(&app_id, &id);
            let Some(mut w) = get::<Workspace>(kv, &key)? else {
                return Ok(DirReply::NotFound("workspace".into()));
            };
            let mkey = keys::workspace_member(&app_id, &id, &user_id);
            let Some(m) = get::<WorkspaceMember>(kv, &mkey)? else {
                return Ok(DirReply::NotFound("member".into()));
            };
            if m.role == WorkspaceRole::Owner && owners(kv, &app_id, &id)? <= 1 {
                return Ok(DirReply::Refused(
                    "the last owner of a workspace cannot leave it".into(),
                ));
            }
            kv.delete(&mkey);
            kv.delete(&keys::user_workspace(&app_id, &user_id, &id));
            w.member_count = w.member_count.saturating_sub(1);
            put(kv, &key, &w)?;
            let mut channels = Vec::new();
            for (k, _) in kv.scan_prefix(&keys::workspace_channels(&app_id, &id))? {
                let channel = String::from_utf8_lossy(keys::last_component(&k)).into_owned();
                if kv
                    .get(&keys::member(&app_id, &channel, &user_id))?
                    .is_some()
                {
                    channels.push(channel);
                }
            }
            DirReply::LeftWorkspace { channels }
        }
        WsCommand::Invite { app_id, invite } => {
            if get::<Workspace>(kv, &keys::workspace(&app_id, &invite.workspace_id))?.is_none() {
                return Ok(DirReply::NotFound("workspace".into()));
            }
            let by_email = keys::invite_of(&app_id, &invite.workspace_id, &invite.email);
            if let Some(old) = kv.get(&by_email)? {
                kv.delete(&keys::invite(&app_id, &String::from_utf8_lossy(&old)));
            }
            kv.put(&by_email, invite.token_hash.as_bytes());
            put(kv, &keys::invite(&app_id, &invite.token_hash), &invite)?;
            DirReply::Done
        }
        WsCommand::PutEmoji { mut emoji } => {
            let app = emoji.app_id.clone();
            if get::<Workspace>(kv, &keys::workspace(&app, &emoji.workspace_id))?.is_none() {
                return Ok(DirReply::NotFound("workspace".into()));
            }
            let name_key = keys::emoji_name(&app, &emoji.workspace_id, &emoji.name);
            if let Some(existing) = kv.get(&name_key)? {
                let id = String::from_utf8_lossy(&existing).into_owned();
                if let Some(old) = get::<Emoji>(kv, &keys::emoji(&app, &id))? {
                    emoji.id = old.id;
                    emoji.created_at = old.created_at;
                }
            }
            kv.put(&name_key, emoji.id.as_bytes());
            put(kv, &keys::emoji(&app, &emoji.id), &emoji)?;
            DirReply::Emoji(Box::new(emoji))
        }
        WsCommand::DeleteEmoji { app_id, id } => {
            let key = keys::emoji(&app_id, &id);
            let Some(e) = get::<Emoji>(kv, &key)? else {
                return Ok(DirReply::NotFound("emoji".into()));
            };
            kv.delete(&keys::emoji_name(&app_id, &e.workspace_id, &e.name));
            kv.delete(&key);
            DirReply::Emoji(Box::new(e))
        }
        WsCommand::PutTemplate { template } => {
            let Some(app) = template.app_id.clone() else {
                return Ok(DirReply::Refused("built-in templates cannot change".into()));
            };
            put(kv, &keys::template(&app, &template.id), &template)?;
            DirReply::Done
        }
        WsCommand::DeleteTemplate { app_id, id } => {
            let key = keys::template(&app_id, &id);
            if kv.get(&key)?.is_none() {
                return Ok(DirReply::NotFound("template".into()));
            }
            kv.delete(&key);
            DirReply::Done
        }
        WsCommand::TemplateUsed { app_id, id } => {
            let key = keys::template(&app_id, &id);
            if let Some(mut t) = get::<Template>(kv, &key)? {
                t.usage_count += 1;
                put(kv, &key, &t)?;
            }
            DirReply::Done
        }
        WsCommand::Accept {
            app_id,
            token_hash,
            user_id,
            email,
            now,
        } => {
            let ikey = keys::invite(&app_id, &token_hash);
            let Some(mut invite) = get::<Invite>(kv, &ikey)? else {
                return Ok(DirReply::NotFound("invitation".into()));
            };
            let wkey = keys::workspace(&app_id, &invite.workspace_id);
            let Some(mut w) = get::<Workspace>(kv, &wkey)? else {
                return Ok(DirReply::NotFound("invitation".into()));
            };
            let member_key = keys::workspace_member(&app_id, &w.id, &user_id);
            let already_member = kv.get(&member_key)?.is_some();
            // The same acceptance applied again answers as the first did.
            if invite.accepted_by.as_deref() == Some(user_id.as_str())
                && invite.accepted_at == Some(now)
            {
                return Ok(DirReply::Accepted {
                    workspace: Box::new(w),
                    already_member: false,
                });
            }
            if invite.accepted_by.is_some() {
                return Ok(DirReply::NotFound("invitation".into()));
            }
            if now >= invite.expires_at {
                return Ok(DirReply::NotFound("invitation".into()));
            }
            if let Some(mine) = &email {
                if !mine.eq_ignore_ascii_case(&invite.email) {
                    return Ok(DirReply::Refused(
                        "this invitation was sent to another email address".into(),
                    ));
                }
            }
            if !already_member {
                put_member(
                    kv,
                    &app_id,
                    &w.id,
                    &WorkspaceMember {
                        user_id: user_id.clone(),
                        role: invite.role,
                        is_default: false,
                        joined_at: now,
                    },
                )?;
                w.member_count += 1;
                put(kv, &wkey, &w)?;
            }
            invite.accepted_by = Some(user_id);
            invite.accepted_at = Some(now);
            put(kv, &ikey, &invite)?;
            kv.delete(&keys::invite_of(&app_id, &w.id, &invite.email));
            DirReply::Accepted {
                workspace: Box::new(w),
                already_member,
            }
        }
    })
}
