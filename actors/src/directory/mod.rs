//! The directory: apps, API keys, users, channels and memberships, replicated in group 0.
//!
//! Every node holds a full copy (group 0 is on every node), so authentication, permission checks
//! and routing read locally. Writes are [`DirCommand`]s proposed through the cluster's meta group
//! and applied by [`DirectoryApplier`]; the transition is deterministic (times come from the
//! proposer). Checks that depend on who asks (roles, visibility) are made before proposing; the
//! applier keeps the invariants that must hold whatever the race (one channel per idempotency
//! key or cid, member counts, indexes).

use chatsdk_cluster::{Applier, ApplyContext, GroupId, KvBatch, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codec::{self, Json};

use crate::keys;
use crate::kv::Kv;
use crate::model::{ApiKey, App, Channel, Member, Role, User, Workspace};

/// A change to the directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum DirCommand {
    /// Sets the token-signing secret unless one exists; replies with the one in force.
    InitSecret {
        secret: String,
    },
    /// Creates an app unless it exists (replies with the stored app either way).
    CreateApp {
        app: App,
    },
    UpdateApp {
        id: String,
        name: Option<String>,
        settings: Option<Json>,
        now: u64,
    },
    DeleteApp {
        id: String,
    },
    PutApiKey {
        key: ApiKey,
    },
    /// Creates, updates or fetches a user.
    UpsertUser {
        app_id: String,
        patch: UserPatch,
        mode: UpsertMode,
        now: u64,
    },
    /// Creates, updates or fetches several users in one command (bulk imports).
    UpsertUsers {
        app_id: String,
        patches: Vec<UserPatch>,
        mode: UpsertMode,
        now: u64,
    },
    /// Anonymises a user and revokes their tokens.
    DeleteUser {
        app_id: String,
        user_id: String,
        now: u64,
    },
    RevokeTokens {
        app_id: String,
        user_id: String,
        now: u64,
    },
    /// Marks login session `sid` revoked (a refresh token of it was replayed). Rare: the
    /// spends themselves are recorded in the user's data shard (`StreamOp::SpendRefreshUntil`);
    /// only the revocation is here, so every node's token checks read it locally.
    RevokeSession {
        app_id: String,
        user_id: String,
        sid: String,
    },
    /// Creates a channel with its first members unless its cid or idempotency key exists.
    CreateChannel {
        channel: Channel,
        members: Vec<(String, Role)>,
        now: u64,
    },
    UpdateChannel {
        app_id: String,
        channel_id: String,
        name: Option<String>,
        image: Option<String>,
        config: Option<Json>,
        now: u64,
    },
    DeleteChannel {
        app_id: String,
        channel_id: String,
    },
    /// Adds users with `role`; users already members keep their role.
    AddMembers {
        app_id: String,
        channel_id: String,
        users: Vec<String>,
        role: Role,
        now: u64,
    },
    SetRole {
        app_id: String,
        channel_id: String,
        user_id: String,
        role: Role,
    },
    RemoveMember {
        app_id: String,
        channel_id: String,
        user_id: String,
    },
    /// A workspace change (see [`workspaces::WsCommand`]).
    Workspace(workspaces::WsCommand),
    /// `blocker` blocks (`at` set) or unblocks `blocked`.
    Block {
        app_id: String,
        blocker: String,
        blocked: String,
        at: Option<u64>,
    },
    /// Records which channel holds poll `poll_id` (the poll itself lives in the channel's
    /// stream): `/api/polls/:id` names only the poll. A few bytes per poll, written once.
    LocatePoll {
        app_id: String,
        poll_id: String,
        channel_id: String,
    },
    /// A moderation change (see [`moderation::ModCommand`]).
    Moderate(moderation::ModCommand),
    /// A webhook change (see [`webhooks::HookCommand`]).
    Webhook(webhooks::HookCommand),
    /// An auto-enrollment change (see [`enrollment::EnrollCommand`]).
    Enroll(enrollment::EnrollCommand),
    /// A supervision change (see [`supervision::SupCommand`]).
    Supervise(supervision::SupCommand),
    /// A notification settings change (see [`notify::NotifyCommand`]).
    Notify(notify::NotifyCommand),
    /// A data lifecycle change (see [`lifecycle::LifeCommand`]).
    Lifecycle(lifecycle::LifeCommand),
    /// [`DirCommand::RevokeSession`], remembered until `until_ms` (when every token of the
    /// session has expired); [`DirCommand::ForgetRevocations`] forgets it after.
    RevokeSessionUntil {
        app_id: String,
        user_id: String,
        sid: String,
        until_ms: u64,
    },
    /// Forgets the session revocations whose time has come by `now_ms` (the proposer's clock),
    /// at most [`FORGET_REVOCATIONS_MAX`].
    ForgetRevocations {
        now_ms: u64,
    },
    /// Puts a new token-signing secret first; the one it replaces is accepted for `grace_ms`
    /// more (see [`token_keys`]). `now_ms`: the proposer's clock.
    RotateTokenSecret {
        secret: token_keys::SecretText,
        now_ms: u64,
        grace_ms: u64,
    },
}

/// Fields of a user write; `None` leaves a field unchanged (or defaulted on insert).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UserPatch {
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub email: Option<String>,
    pub custom: Option<Json>,
    pub role: Option<String>,
}

/// How [`DirCommand::UpsertUser`] treats an existing user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpsertMode {
    /// Create if missing, else update the given fields; `custom` is merged.
    Merge,
    /// Create if missing, else update the given fields; `custom` is replaced.
    Replace,
    /// Create if missing, else leave as is.
    CreateOnly,
}

/// What a user write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpsertAction {
    Created,
    Updated,
    Existing,
}

/// The result of a [`DirCommand`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum DirReply {
    Done,
    Secret(String),
    App(App),
    User {
        action: UpsertAction,
        user: User,
    },
    Channel {
        created: bool,
        channel: Channel,
    },
    Added(Vec<String>),
    /// What [`DirCommand::UpsertUsers`] did to each user, in order.
    Users(Vec<(UpsertAction, User)>),
    /// Counts removed with an app.
    Deleted {
        users: u64,
        channels: u64,
    },
    NotFound(String),
    Conflict(String),
    /// A workspace as a workspace command left it.
    Workspace(Box<Workspace>),
    /// A member left a workspace: the workspace's channels they were a member of.
    LeftWorkspace {
        channels: Vec<String>,
    },
    /// An accepted invitation: the workspace, and whether the user was a member already.
    Accepted {
        workspace: Box<Workspace>,
        already_member: bool,
    },
    /// A refusal the caller can fix (a bad request: the last owner, an expired invitation).
    Refused(String),
    /// An emoji as stored (or as it was, when deleted).
    Emoji(Box<crate::model::Emoji>),
    /// A report as a moderation command left it.
    Report(Box<moderation::Report>),
    /// A webhook as a webhook command left it.
    Webhook(Box<crate::model::Webhook>),
    /// The token-signing keys after a rotation.
    TokenKeys(token_keys::TokenKeys),
}

/// Session revocations one [`DirCommand::ForgetRevocations`] forgets at most.
pub const FORGET_REVOCATIONS_MAX: usize = 256;

/// A login session's standing in the directory: only whether a replay revoked it (what is
/// read on every request). Its spent refresh tokens live in the user's data shard.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoginSession {
    pub revoked: bool,
}

/// Applies [`DirCommand`]s to group 0's keys.
pub struct DirectoryApplier;

use crate::keys::{get_record as get, put_record as put};

pub mod enrollment;
pub mod lifecycle;
pub mod moderation;
pub mod notify;
mod reads;
pub mod supervision;
pub mod token_keys;
pub mod webhooks;
pub mod workspaces;
pub use reads::{Directory, ReadResult};

impl Applier for DirectoryApplier {
    fn apply(
        &self,
        ctx: &ApplyContext,
        kv: &mut KvBatch<'_>,
        command: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let reply = match codec::decode::<DirCommand>(command) {
            Ok(command) => transition(kv, command)?,
            Err(e) => {
                tracing::error!(index = ctx.index, error = %e, "undecodable directory command refused");
                DirReply::Conflict(format!("undecodable directory command: {e}"))
            }
        };
        codec::encode(&reply).map_err(|e| StoreError::Corrupt {
            key: "directory reply".into(),
            reason: e.to_string(),
        })
    }
}

fn transition(kv: &mut impl Kv, command: DirCommand) -> Result<DirReply, StoreError> {
    Ok(match command {
        DirCommand::InitSecret { secret } => match kv.get(&keys::secret())? {
            Some(existing) => DirReply::Secret(String::from_utf8_lossy(&existing).into_owned()),
            None => {
                kv.put(&keys::secret(), secret.as_bytes());
                DirReply::Secret(secret)
            }
        },
        DirCommand::CreateApp { app } => match get::<App>(kv, &keys::app(&app.id))? {
            Some(existing) => DirReply::App(existing),
            None => {
                put(kv, &keys::app(&app.id), &app)?;
                DirReply::App(app)
            }
        },
        DirCommand::UpdateApp {
            id,
            name,
            settings,
            now,
        } => match get::<App>(kv, &keys::app(&id))? {
            Some(mut app) => {
                if let Some(name) = name {
                    app.name = name;
                }
                if let Some(Json(Value::Object(new))) = settings {
                    app.settings.merge(new);
                }
                app.updated_at = now;
                put(kv, &keys::app(&id), &app)?;
                DirReply::App(app)
            }
            None => DirReply::NotFound("app".into()),
        },
        DirCommand::DeleteApp { id } => {
            if kv.get(&keys::app(&id))?.is_none() {
                return Ok(DirReply::NotFound("app".into()));
            }
            kv.delete(&keys::app(&id));
            let mut users = 0;
            let mut channels = 0;
            for (k, _) in kv.scan_prefix(&keys::prefix(&[b"d", b"key"]))? {
                if let Some(key) = get::<ApiKey>(kv, &k)? {
                    if key.app_id == id {
                        kv.delete(&k);
                    }
                }
            }
            for tag in [
                &b"user"[..],
                b"chan",
                b"cid",
                b"cidem",
                b"mem",
                b"umem",
                b"poll",
                b"ws",
                b"wsname",
                b"wsm",
                b"uws",
                b"wsch",
                b"inv",
                b"invto",
                b"tpl",
                b"emoji",
                b"emojin",
                b"chtag",
                b"block",
                b"report",
                b"reported",
                b"standing",
                b"cstanding",
                b"hook",
                b"enrule",
                b"enrun",
                b"enran",
                b"sup",
                b"supby",
                b"devices",
                b"wpush",
                b"nprefs",
                b"hold",
                b"export",
            ] {
                for (k, _) in kv.scan_prefix(&keys::prefix(&[b"d", tag, id.as_bytes()]))? {
                    if tag == b"user" {
                        users += 1;
                    } else if tag == b"chan" {
                        channels += 1;
                    }
                    kv.delete(&k);
                }
            }
            DirReply::Deleted { users, channels }
        }
        DirCommand::PutApiKey { key } => {
            put(kv, &keys::api_key(&key.hash), &key)?;
            DirReply::Done
        }
        DirCommand::UpsertUser {
            app_id,
            patch,
            mode,
            now,
        } => upsert_user(kv, &app_id, patch, mode, now)?,
        DirCommand::UpsertUsers {
            app_id,
            patches,
            mode,
            now,
        } => {
            let mut out = Vec::with_capacity(patches.len());
            for patch in patches {
                match upsert_user(kv, &app_id, patch, mode, now)? {
                    DirReply::User { action, user } => out.push((action, user)),
                    other => return Ok(other),
                }
            }
            DirReply::Users(out)
        }
        DirCommand::DeleteUser {
            app_id,
            user_id,
            now,
        } => match get::<User>(kv, &keys::user(&app_id, &user_id))? {
            Some(mut user) => {
                user.name = format!(
                    "Deleted user {}",
                    &crate::hash_hex(format!("{app_id}:{user_id}").as_bytes())[..8]
                );
                user.image = None;
                user.email = None;
                user.custom =
                    Json(serde_json::json!({"deleted": true, "deletedAt": crate::time::iso(now)}));
                user.role = None;
                user.deleted = true;
                user.tokens_valid_after = user.tokens_valid_after.saturating_add(1);
                user.updated_at = now;
                put(kv, &keys::user(&app_id, &user_id), &user)?;
                DirReply::User {
                    action: UpsertAction::Updated,
                    user,
                }
            }
            None => DirReply::NotFound("user".into()),
        },
        DirCommand::RevokeSession {
            app_id,
            user_id,
            sid,
        } => {
            let key = keys::session(&app_id, &user_id, &sid);
            put(kv, &key, &LoginSession { revoked: true })?;
            DirReply::Done
        }
        DirCommand::RevokeSessionUntil {
            app_id,
            user_id,
            sid,
            until_ms,
        } => {
            let key = keys::session(&app_id, &user_id, &sid);
            put(kv, &key, &LoginSession { revoked: true })?;
            kv.put(
                &keys::session_expiry(until_ms, &app_id, &user_id, &sid),
                &key,
            );
            DirReply::Done
        }
        DirCommand::ForgetRevocations { now_ms } => {
            let entries = kv.scan_prefix(&keys::session_expiries())?;
            // A session revoked twice (a retried revocation) stays revoked until its last
            // entry is due.
            let mut last: std::collections::HashMap<&[u8], u64> = Default::default();
            for (index, session) in &entries {
                let at = keys::session_expiry_time(index).unwrap_or(u64::MAX);
                let e = last.entry(session.as_slice()).or_insert(at);
                *e = (*e).max(at);
            }
            for (index, session) in entries.iter().take(FORGET_REVOCATIONS_MAX) {
                if keys::session_expiry_time(index).is_none_or(|at| at > now_ms) {
                    break;
                }
                if last.get(session.as_slice()).is_some_and(|at| *at <= now_ms) {
                    kv.delete(session);
                }
                kv.delete(index);
            }
            DirReply::Done
        }
        DirCommand::RevokeTokens {
            app_id,
            user_id,
            // Kept in the command's encoding; the generation, not a time, orders revocations.
            now: _,
        } => match get::<User>(kv, &keys::user(&app_id, &user_id))? {
            Some(mut user) => {
                user.tokens_valid_after = user.tokens_valid_after.saturating_add(1);
                put(kv, &keys::user(&app_id, &user_id), &user)?;
                DirReply::User {
                    action: UpsertAction::Updated,
                    user,
                }
            }
            None => DirReply::NotFound("user".into()),
        },
        DirCommand::CreateChannel {
            mut channel,
            members,
            now,
        } => {
            let app = channel.app_id.clone();
            if let Some(idem) = &channel.idempotency_key {
                let creator = channel.created_by.as_deref();
                for k in [
                    keys::channel_idem(&app, creator, idem),
                    keys::legacy_channel_idem(&app, idem),
                ] {
                    let Some(id) = kv.get(&k)? else {
                        continue;
                    };
                    let id = String::from_utf8_lossy(&id).into_owned();
                    if let Some(existing) = get::<Channel>(kv, &keys::channel(&app, &id))? {
                        // A legacy (app-wide) key answers its own creator only.
                        if existing.created_by == channel.created_by {
                            return Ok(DirReply::Channel {
                                created: false,
                                channel: existing,
                            });
                        }
                    }
                }
            }
            if let Some(id) = kv.get(&keys::cid(&app, &channel.cid))? {
                let id = String::from_utf8_lossy(&id).into_owned();
                if let Some(existing) = get::<Channel>(kv, &keys::channel(&app, &id))? {
                    return Ok(DirReply::Channel {
                        created: false,
                        channel: existing,
                    });
                }
            }
            if let Some(ws) = &channel.workspace_id {
                if get::<Workspace>(kv, &keys::workspace(&app, ws))?.is_none() {
                    return Ok(DirReply::NotFound("workspace".into()));
                }
            }
            let mut count = 0;
            for (user, role) in &members {
                if kv.get(&keys::member(&app, &channel.id, user))?.is_none() {
                    count += 1;
                }
                put_member(
                    kv,
                    &app,
                    &channel.id,
                    &Member {
                        user_id: user.clone(),
                        role: *role,
                        joined_at: now,
                    },
                )?;
            }
            channel.member_count = count;
            if let Some(ws) = &channel.workspace_id {
                if !workspaces::add_channel(kv, &app, ws, &channel.id)? {
                    return Ok(DirReply::NotFound("workspace".into()));
                }
            }
            kv.put(&keys::cid(&app, &channel.cid), channel.id.as_bytes());
            kv.put(
                &keys::channel_tag(
                    &app,
                    &crate::locate::channel_tag(&app, &channel.id),
                    &channel.id,
                ),
                b"",
            );
            if let Some(idem) = &channel.idempotency_key {
                let creator = channel.created_by.as_deref();
                kv.put(
                    &keys::channel_idem(&app, creator, idem),
                    channel.id.as_bytes(),
                );
            }
            put(kv, &keys::channel(&app, &channel.id), &channel)?;
            DirReply::Channel {
                created: true,
                channel,
            }
        }
        DirCommand::UpdateChannel {
            app_id,
            channel_id,
            name,
            image,
            config,
            now,
        } => match get::<Channel>(kv, &keys::channel(&app_id, &channel_id))? {
            Some(mut ch) => {
                if name.is_some() {
                    ch.name = name;
                }
                if image.is_some() {
                    ch.image = image;
                }
                if let Some(Json(Value::Object(new))) = config {
                    ch.config.merge(new);
                }
                ch.updated_at = now;
                put(kv, &keys::channel(&app_id, &channel_id), &ch)?;
                DirReply::Channel {
                    created: false,
                    channel: ch,
                }
            }
            None => DirReply::NotFound("channel".into()),
        },
        DirCommand::Workspace(command) => workspaces::transition(kv, command)?,
        DirCommand::Moderate(command) => moderation::transition(kv, command)?,
        DirCommand::RotateTokenSecret {
            secret,
            now_ms,
            grace_ms,
        } => token_keys::rotate(kv, secret.0, now_ms, grace_ms)?,
        DirCommand::Webhook(command) => webhooks::transition(kv, command)?,
        DirCommand::Enroll(command) => enrollment::transition(kv, command)?,
        DirCommand::Supervise(command) => supervision::transition(kv, command)?,
        DirCommand::Notify(command) => notify::transition(kv, command)?,
        DirCommand::Lifecycle(command) => lifecycle::transition(kv, command)?,
        DirCommand::Block {
            app_id,
            blocker,
            blocked,
            at,
        } => {
            let key = keys::block(&app_id, &blocker, &blocked);
            match at {
                // A block applied again keeps its first time.
                Some(at) if kv.get(&key)?.is_none() => put(kv, &key, &at)?,
                Some(_) => {}
                None => kv.delete(&key),
            }
            DirReply::Done
        }
        DirCommand::LocatePoll {
            app_id,
            poll_id,
            channel_id,
        } => {
            if get::<Channel>(kv, &keys::channel(&app_id, &channel_id))?.is_none() {
                return Ok(DirReply::NotFound("channel".into()));
            }
            kv.put(&keys::poll(&app_id, &poll_id), channel_id.as_bytes());
            DirReply::Done
        }
        DirCommand::DeleteChannel { app_id, channel_id } => {
            match get::<Channel>(kv, &keys::channel(&app_id, &channel_id))? {
                Some(ch) => {
                    for (k, _) in kv.scan_prefix(&keys::members(&app_id, &channel_id))? {
                        let user = String::from_utf8_lossy(keys::last_component(&k)).into_owned();
                        kv.delete(&keys::user_channel(&app_id, &user, &channel_id));
                        kv.delete(&k);
                    }
                    kv.delete(&keys::cid(&app_id, &ch.cid));
                    kv.delete(&keys::channel_tag(
                        &app_id,
                        &crate::locate::channel_tag(&app_id, &channel_id),
                        &channel_id,
                    ));
                    if let Some(ws) = &ch.workspace_id {
                        workspaces::remove_channel(kv, &app_id, ws, &channel_id)?;
                    }
                    if let Some(idem) = &ch.idempotency_key {
                        let creator = ch.created_by.as_deref();
                        kv.delete(&keys::channel_idem(&app_id, creator, idem));
                        if kv
                            .get(&keys::legacy_channel_idem(&app_id, idem))?
                            .as_deref()
                            == Some(channel_id.as_bytes())
                        {
                            kv.delete(&keys::legacy_channel_idem(&app_id, idem));
                        }
                    }
                    moderation::forget_channel(kv, &app_id, &channel_id)?;
                    kv.delete(&keys::channel(&app_id, &channel_id));
                    DirReply::Channel {
                        created: false,
                        channel: ch,
                    }
                }
                None => DirReply::NotFound("channel".into()),
            }
        }
        DirCommand::AddMembers {
            app_id,
            channel_id,
            users,
            role,
            now,
        } => {
            let Some(mut ch) = get::<Channel>(kv, &keys::channel(&app_id, &channel_id))? else {
                return Ok(DirReply::NotFound("channel".into()));
            };
            let mut added = Vec::new();
            for user in users {
                if kv
                    .get(&keys::member(&app_id, &channel_id, &user))?
                    .is_some()
                    || added.contains(&user)
                {
                    continue;
                }
                put_member(
                    kv,
                    &app_id,
                    &channel_id,
                    &Member {
                        user_id: user.clone(),
                        role,
                        joined_at: now,
                    },
                )?;
                added.push(user);
            }
            ch.member_count += added.len() as u64;
            put(kv, &keys::channel(&app_id, &channel_id), &ch)?;
            DirReply::Added(added)
        }
        DirCommand::SetRole {
            app_id,
            channel_id,
            user_id,
            role,
        } => match get::<Member>(kv, &keys::member(&app_id, &channel_id, &user_id))? {
            Some(mut m) => {
                m.role = role;
                put_member(kv, &app_id, &channel_id, &m)?;
                DirReply::Done
            }
            None => DirReply::NotFound("member".into()),
        },
        DirCommand::RemoveMember {
            app_id,
            channel_id,
            user_id,
        } => {
            if kv
                .get(&keys::member(&app_id, &channel_id, &user_id))?
                .is_none()
            {
                return Ok(DirReply::NotFound("member".into()));
            }
            kv.delete(&keys::member(&app_id, &channel_id, &user_id));
            kv.delete(&keys::user_channel(&app_id, &user_id, &channel_id));
            if let Some(mut ch) = get::<Channel>(kv, &keys::channel(&app_id, &channel_id))? {
                ch.member_count = ch.member_count.saturating_sub(1);
                put(kv, &keys::channel(&app_id, &channel_id), &ch)?;
            }
            DirReply::Done
        }
    })
}

fn put_member(kv: &mut impl Kv, app: &str, channel: &str, m: &Member) -> Result<(), StoreError> {
    put(kv, &keys::member(app, channel, &m.user_id), m)?;
    kv.put(&keys::user_channel(app, &m.user_id, channel), b"");
    Ok(())
}

fn upsert_user(
    kv: &mut impl Kv,
    app_id: &str,
    patch: UserPatch,
    mode: UpsertMode,
    now: u64,
) -> Result<DirReply, StoreError> {
    let key = keys::user(app_id, &patch.id);
    match get::<User>(kv, &key)? {
        None => {
            let user = User {
                id: patch.id.clone(),
                name: patch.name.unwrap_or_else(|| patch.id.clone()),
                image: patch.image,
                email: patch.email,
                custom: patch.custom.unwrap_or_else(Json::object),
                role: patch.role,
                created_at: now,
                updated_at: now,
                last_active_at: None,
                tokens_valid_after: 0,
                deleted: false,
            };
            put(kv, &key, &user)?;
            Ok(DirReply::User {
                action: UpsertAction::Created,
                user,
            })
        }
        Some(user) if mode == UpsertMode::CreateOnly => Ok(DirReply::User {
            action: UpsertAction::Existing,
            user,
        }),
        Some(mut user) => {
            let before = user.clone();
            if let Some(name) = patch.name {
                user.name = name;
            }
            if patch.image.is_some() {
                user.image = patch.image;
            }
            if patch.email.is_some() {
                user.email = patch.email;
            }
            if patch.role.is_some() {
                user.role = patch.role;
            }
            match (patch.custom, mode) {
                (Some(Json(Value::Object(new))), UpsertMode::Merge) => user.custom.merge(new),
                (Some(v), _) => user.custom = v,
                (None, _) => {}
            }
            if user == before {
                return Ok(DirReply::User {
                    action: UpsertAction::Existing,
                    user,
                });
            }
            user.updated_at = now;
            put(kv, &key, &user)?;
            Ok(DirReply::User {
                action: UpsertAction::Updated,
                user,
            })
        }
    }
}

/// The group the directory lives in.
pub const DIRECTORY_GROUP: GroupId = chatsdk_cluster::META_GROUP;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn patch(id: &str, name: Option<&str>) -> UserPatch {
        UserPatch {
            id: id.into(),
            name: name.map(str::to_string),
            ..UserPatch::default()
        }
    }

    /// A revocation is remembered until its time, and until the last of its entries when the
    /// session was revoked twice; the index entries go with it.
    #[test]
    fn revocations_are_forgotten_when_due() {
        let mut kv = BTreeMap::new();
        let revoke = |sid: &str, until_ms| DirCommand::RevokeSessionUntil {
            app_id: "a".into(),
            user_id: "u".into(),
            sid: sid.into(),
            until_ms,
        };
        let revoked = |kv: &BTreeMap<Vec<u8>, Vec<u8>>, sid: &str| {
            get::<LoginSession>(kv, &keys::session("a", "u", sid))
                .unwrap()
                .is_some_and(|s| s.revoked)
        };
        transition(&mut kv, revoke("s1", 1_000)).unwrap();
        transition(&mut kv, revoke("s2", 2_000)).unwrap();
        // s2's revocation retried: remembered until the later time.
        transition(&mut kv, revoke("s2", 5_000)).unwrap();
        let forget = |now_ms| DirCommand::ForgetRevocations { now_ms };
        transition(&mut kv, forget(999)).unwrap();
        assert!(revoked(&kv, "s1") && revoked(&kv, "s2"));
        transition(&mut kv, forget(2_000)).unwrap();
        assert!(!revoked(&kv, "s1"), "due");
        assert!(revoked(&kv, "s2"), "revoked again later");
        transition(&mut kv, forget(5_000)).unwrap();
        assert!(!revoked(&kv, "s2"));
        assert!(kv
            .scan_prefix(&keys::session_expiries())
            .unwrap()
            .is_empty());
    }

    /// A bulk upsert is one command: each user is created, updated or left as it was, in order,
    /// and applying the command again leaves the same state.
    #[test]
    fn bulk_upsert_is_one_command() {
        let mut kv = BTreeMap::new();
        let one = DirCommand::UpsertUser {
            app_id: "a".into(),
            patch: patch("u1", Some("One")),
            mode: UpsertMode::Merge,
            now: 1,
        };
        transition(&mut kv, one).unwrap();
        let bulk = DirCommand::UpsertUsers {
            app_id: "a".into(),
            patches: vec![
                patch("u1", Some("One")),
                patch("u1", Some("Uno")),
                patch("u2", None),
            ],
            mode: UpsertMode::Merge,
            now: 2,
        };
        let DirReply::Users(done) = transition(&mut kv, bulk.clone()).unwrap() else {
            panic!("not a users reply")
        };
        let actions: Vec<UpsertAction> = done.iter().map(|(a, _)| *a).collect();
        assert_eq!(
            actions,
            [
                UpsertAction::Existing,
                UpsertAction::Updated,
                UpsertAction::Created
            ]
        );
        assert_eq!(done[2].1.name, "u2");
        let before = kv.clone();
        let DirReply::Users(again) = transition(&mut kv, bulk).unwrap() else {
            panic!("not a users reply")
        };
        assert_eq!(again.len(), 3);
        assert_eq!(
            kv, before,
            "the same command applied again leaves the same state"
        );
    }

    /// A corrupted user record stops the transition with an error, never reads as absent
    /// (which would silently recreate the user).
    #[test]
    fn corrupted_user_is_an_error() {
        let mut kv = BTreeMap::new();
        kv.insert(keys::user("a", "u1"), br#"{"id":"u1"}"#.to_vec());
        let upsert = DirCommand::UpsertUser {
            app_id: "a".into(),
            patch: patch("u1", Some("One")),
            mode: UpsertMode::Merge,
            now: 1,
        };
        assert!(matches!(
            transition(&mut kv, upsert),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
