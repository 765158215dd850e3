//! Local reads of the directory: what this node's replica of group 0 has applied. Reads that
//! must see a write made elsewhere first wait for the group's read barrier (`Chat` does).
//!
//! Every request reads the same few records (its user, login session, channel and membership)
//! while group 0 changes rarely, so single records are kept decoded ([`RecordCache`]) until the
//! replica applies anything at all ([`GroupReader::version`] moves), then read again. A record is
//! handed out shared (`Arc`): a hit costs a reference count, not a copy of its strings.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chatsdk_cluster::{GroupReader, StoreError};
use serde::de::DeserializeOwned;

use super::moderation::{ChannelStanding, Report, Standing};
use super::LoginSession;
use crate::keys;
use crate::model::{
    ApiKey, App, Channel, Device, EnrollmentRule, EnrollmentRun, Export, Invite, LegalHold, Member,
    PushSubscription, Supervision, User, Webhook, Workspace, WorkspaceMember,
};

/// Decoded records kept at most; when full, the cache starts over.
const CACHE_CAPACITY: usize = 16_384;

/// A decoded record (or its absence).
type Cached = Option<Arc<dyn Any + Send + Sync>>;

/// Single records read at one version of group 0 (see the module docs).
#[derive(Default)]
struct RecordCache {
    version: u64,
    records: HashMap<Vec<u8>, Cached>,
}

/// Local reads of the directory (what this node has applied).
#[derive(Clone)]
pub struct Directory {
    reader: GroupReader,
    cache: Arc<Mutex<RecordCache>>,
}

/// A directory read failed: the local store is unreadable.
pub type ReadResult<T> = Result<T, StoreError>;

impl Directory {
    /// Reads through `reader` (group 0's).
    pub fn new(reader: GroupReader) -> Self {
        Directory {
            reader,
            cache: Arc::default(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, RecordCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record at `key`, shared with the cache.
    fn get<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        key: &[u8],
    ) -> ReadResult<Option<Arc<T>>> {
        let version = self.reader.version();
        {
            let mut cache = self.cache();
            if cache.version != version {
                cache.records.clear();
                cache.version = version;
            } else if let Some(hit) = cache.records.get(key) {
                match hit {
                    None => return Ok(None),
                    Some(any) => {
                        if let Ok(t) = Arc::clone(any).downcast::<T>() {
                            return Ok(Some(t));
                        }
                    }
                }
            }
        }
        let value: Option<Arc<T>> = keys::read_record::<T>(&self.reader, key)?.map(Arc::new);
        let mut cache = self.cache();
        // Kept only when nothing was applied since the read started.
        if cache.version == version && self.reader.version() == version {
            if cache.records.len() >= CACHE_CAPACITY {
                cache.records.clear();
            }
            let kept: Cached = value.clone().map(|t| t as Arc<dyn Any + Send + Sync>);
            cache.records.insert(key.to_vec(), kept);
        }
        Ok(value)
    }

    /// A value cached at `key` at the current version of group 0, if any.
    fn get_cached<T: Send + Sync + 'static>(&self, key: &[u8]) -> Option<Arc<T>> {
        let version = self.reader.version();
        let cache = self.cache();
        if cache.version != version {
            return None;
        }
        match cache.records.get(key) {
            Some(Some(any)) => Arc::clone(any).downcast::<T>().ok(),
            _ => None,
        }
    }

    /// Caches `value` at `key` if group 0 is still at `version` (read before the value).
    fn keep<T: Send + Sync + 'static>(&self, version: u64, key: &[u8], value: Arc<T>) {
        let mut cache = self.cache();
        if cache.version != version {
            cache.records.clear();
            cache.version = version;
        }
        if self.reader.version() == version {
            if cache.records.len() >= CACHE_CAPACITY {
                cache.records.clear();
            }
            cache.records.insert(key.to_vec(), Some(value));
        }
    }

    fn list<T: DeserializeOwned>(&self, prefix: &[u8]) -> ReadResult<Vec<T>> {
        self.reader
            .scan_prefix(prefix)?
            .into_iter()
            .map(|(k, v)| keys::decode_at(&k, &v))
            .collect()
    }

    /// The token-signing keys, the current one first (empty before the secret exists).
    pub fn token_keys(&self) -> ReadResult<super::token_keys::TokenKeys> {
        super::token_keys::load(&self.reader)
    }

    pub fn secret(&self) -> ReadResult<Option<String>> {
        Ok(self
            .reader
            .get(&keys::secret())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
    pub fn app(&self, id: &str) -> ReadResult<Option<Arc<App>>> {
        self.get(&keys::app(id))
    }
    pub fn apps(&self) -> ReadResult<Vec<App>> {
        self.list(&keys::apps())
    }
    pub fn api_key(&self, hash: &str) -> ReadResult<Option<Arc<ApiKey>>> {
        self.get(&keys::api_key(hash))
    }
    /// Every server key of every app (keys are few: capped per app).
    pub fn api_keys(&self) -> ReadResult<Vec<ApiKey>> {
        self.list(&keys::api_keys())
    }
    pub fn user(&self, app: &str, id: &str) -> ReadResult<Option<Arc<User>>> {
        self.get(&keys::user(app, id))
    }
    pub fn users(&self, app: &str) -> ReadResult<Vec<User>> {
        self.list(&keys::users(app))
    }
    pub fn channel(&self, app: &str, id: &str) -> ReadResult<Option<Arc<Channel>>> {
        self.get(&keys::channel(app, id))
    }
    pub fn channels(&self, app: &str) -> ReadResult<Vec<Channel>> {
        self.list(&keys::channels(app))
    }
    pub fn workspace(&self, app: &str, id: &str) -> ReadResult<Option<Arc<Workspace>>> {
        self.get(&keys::workspace(app, id))
    }
    pub fn workspaces(&self, app: &str) -> ReadResult<Vec<Workspace>> {
        self.list(&keys::workspaces(app))
    }
    pub fn workspace_member(
        &self,
        app: &str,
        ws: &str,
        user: &str,
    ) -> ReadResult<Option<Arc<WorkspaceMember>>> {
        self.get(&keys::workspace_member(app, ws, user))
    }
    pub fn workspace_members(&self, app: &str, ws: &str) -> ReadResult<Vec<WorkspaceMember>> {
        self.list(&keys::workspace_members(app, ws))
    }
    /// Ids of the workspaces `user` is a member of.
    pub fn user_workspace_ids(&self, app: &str, user: &str) -> ReadResult<Vec<String>> {
        self.last_components(&keys::user_workspaces(app, user))
    }
    /// Ids of the workspace's channels.
    pub fn workspace_channel_ids(&self, app: &str, ws: &str) -> ReadResult<Vec<String>> {
        self.last_components(&keys::workspace_channels(app, ws))
    }
    pub fn emoji(&self, app: &str, id: &str) -> ReadResult<Option<Arc<crate::model::Emoji>>> {
        self.get(&keys::emoji(app, id))
    }
    /// A workspace's emoji, by name.
    pub fn workspace_emoji(&self, app: &str, ws: &str) -> ReadResult<Vec<crate::model::Emoji>> {
        let mut out = Vec::new();
        for (_, id) in self.reader.scan_prefix(&keys::emoji_names(app, ws))? {
            if let Some(e) = self.emoji(app, &String::from_utf8_lossy(&id))? {
                out.push(Arc::unwrap_or_clone(e));
            }
        }
        Ok(out)
    }
    pub fn template(&self, app: &str, id: &str) -> ReadResult<Option<Arc<crate::model::Template>>> {
        self.get(&keys::template(app, id))
    }
    pub fn templates(&self, app: &str) -> ReadResult<Vec<crate::model::Template>> {
        self.list(&keys::templates(app))
    }
    /// An invitation by the SHA-256 of its token.
    pub fn invite(&self, app: &str, token_hash: &str) -> ReadResult<Option<Arc<Invite>>> {
        self.get(&keys::invite(app, token_hash))
    }
    fn last_components(&self, prefix: &[u8]) -> ReadResult<Vec<String>> {
        Ok(self
            .reader
            .scan_prefix(prefix)?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(keys::last_component(&k)).into_owned())
            .collect())
    }
    /// Channels whose tag is `tag` (see `crate::locate`).
    pub fn channels_tagged(&self, app: &str, tag: &str) -> ReadResult<Vec<String>> {
        self.last_components(&keys::channels_tagged(app, tag))
    }
    /// The channel that holds poll `poll`.
    pub fn poll_channel(&self, app: &str, poll: &str) -> ReadResult<Option<String>> {
        Ok(self
            .reader
            .get(&keys::poll(app, poll))?
            .map(|id| String::from_utf8_lossy(&id).into_owned()))
    }
    pub fn channel_by_cid(&self, app: &str, cid: &str) -> ReadResult<Option<Arc<Channel>>> {
        match self.reader.get(&keys::cid(app, cid))? {
            Some(id) => self.channel(app, &String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }
    /// Whether login session `sid` of `user` was revoked (refresh token replay).
    pub fn session_revoked(&self, app: &str, user: &str, sid: &str) -> ReadResult<bool> {
        Ok(self
            .get::<LoginSession>(&keys::session(app, user, sid))?
            .is_some_and(|s| s.revoked))
    }
    pub fn member(&self, app: &str, channel: &str, user: &str) -> ReadResult<Option<Arc<Member>>> {
        self.get(&keys::member(app, channel, user))
    }
    pub fn members(&self, app: &str, channel: &str) -> ReadResult<Vec<Member>> {
        self.list(&keys::members(app, channel))
    }
    /// Whether `blocker` blocks `blocked`.
    pub fn blocks(&self, app: &str, blocker: &str, blocked: &str) -> ReadResult<bool> {
        Ok(self
            .reader
            .get(&keys::block(app, blocker, blocked))?
            .is_some())
    }
    /// The users `blocker` blocks, with when: `(user, at)`.
    pub fn blocked_by(&self, app: &str, blocker: &str) -> ReadResult<Vec<(String, u64)>> {
        self.reader
            .scan_prefix(&keys::blocks(app, blocker))?
            .into_iter()
            .map(|(k, v)| {
                let user = String::from_utf8_lossy(keys::last_component(&k)).into_owned();
                Ok((user, keys::decode_at::<u64>(&k, &v)?))
            })
            .collect()
    }
    /// A user's standing in an app (warnings, ban), if they ever had one.
    pub fn standing(&self, app: &str, user: &str) -> ReadResult<Option<Arc<Standing>>> {
        self.get(&keys::standing(app, user))
    }
    /// Every user of an app with a standing: `(user, standing)`.
    pub fn standings(&self, app: &str) -> ReadResult<Vec<(String, Standing)>> {
        self.keyed(&keys::standings(app))
    }
    /// A user's standing in a channel (ban, mute), if any.
    pub fn channel_standing(
        &self,
        app: &str,
        channel: &str,
        user: &str,
    ) -> ReadResult<Option<Arc<ChannelStanding>>> {
        self.get(&keys::channel_standing(app, channel, user))
    }
    /// The users restricted in a channel: `(user, standing)`.
    pub fn channel_standings(
        &self,
        app: &str,
        channel: &str,
    ) -> ReadResult<Vec<(String, ChannelStanding)>> {
        self.keyed(&keys::channel_standings(app, channel))
    }
    pub fn webhook(&self, app: &str, id: &str) -> ReadResult<Option<Arc<Webhook>>> {
        self.get(&keys::webhook(app, id))
    }
    /// An app's webhooks (kept decoded while group 0 does not change: every write reads them).
    pub fn webhooks(&self, app: &str) -> ReadResult<Arc<Vec<Webhook>>> {
        let key = keys::webhooks(app);
        if let Some(hit) = self.get_cached::<Vec<Webhook>>(&key) {
            return Ok(hit);
        }
        let version = self.reader.version();
        let list = Arc::new(self.list::<Webhook>(&key)?);
        self.keep(version, &key, list.clone());
        Ok(list)
    }
    /// An app's enrollment rules (kept decoded while group 0 does not change: every trigger
    /// reads them).
    pub fn enrollment_rules(&self, app: &str) -> ReadResult<Arc<Vec<EnrollmentRule>>> {
        let key = keys::enrollment_rules(app);
        if let Some(hit) = self.get_cached::<Vec<EnrollmentRule>>(&key) {
            return Ok(hit);
        }
        let version = self.reader.version();
        let list = Arc::new(self.list::<EnrollmentRule>(&key)?);
        self.keep(version, &key, list.clone());
        Ok(list)
    }
    pub fn supervision(
        &self,
        app: &str,
        supervisor: &str,
        supervised: &str,
    ) -> ReadResult<Option<Arc<Supervision>>> {
        self.get(&keys::supervision(app, supervisor, supervised))
    }
    /// The users `supervisor` supervises.
    pub fn supervised_by(&self, app: &str, supervisor: &str) -> ReadResult<Vec<Supervision>> {
        self.list(&keys::supervisions(app, supervisor))
    }
    /// The supervisions of `supervised` (an index read, then one record per supervisor).
    pub fn supervisors_of(&self, app: &str, supervised: &str) -> ReadResult<Vec<Supervision>> {
        let mut out = Vec::new();
        for supervisor in self.last_components(&keys::supervisors_of(app, supervised))? {
            if let Some(s) = self.supervision(app, &supervisor, supervised)? {
                out.push(Arc::unwrap_or_clone(s));
            }
        }
        Ok(out)
    }
    pub fn legal_hold(
        &self,
        app: &str,
        kind: &str,
        target: &str,
    ) -> ReadResult<Option<Arc<LegalHold>>> {
        self.get(&keys::legal_hold(app, kind, target))
    }
    pub fn legal_holds(&self, app: &str) -> ReadResult<Vec<LegalHold>> {
        self.list(&keys::legal_holds(app))
    }
    pub fn export(&self, app: &str, id: &str) -> ReadResult<Option<Arc<Export>>> {
        self.get(&keys::export(app, id))
    }
    pub fn vapid(&self) -> ReadResult<Option<String>> {
        Ok(self
            .reader
            .get(&keys::vapid())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
    pub fn devices(&self, app: &str, user: &str) -> ReadResult<Vec<Device>> {
        Ok(self
            .get::<Vec<Device>>(&keys::devices(app, user))?
            .map(Arc::unwrap_or_clone)
            .unwrap_or_default())
    }
    pub fn web_push(&self, app: &str, user: &str) -> ReadResult<Vec<PushSubscription>> {
        Ok(self
            .get::<Vec<PushSubscription>>(&keys::web_push(app, user))?
            .map(Arc::unwrap_or_clone)
            .unwrap_or_default())
    }
    /// Whether any user of `app` has a Web Push subscription (one key read).
    pub fn app_uses_web_push(&self, app: &str) -> ReadResult<bool> {
        let from = keys::web_push_users(app);
        let mut to = from.clone();
        if let Some(last) = to.last_mut() {
            *last += 1;
        }
        Ok(!self.reader.range(&from, &to, false, 1)?.is_empty())
    }
    pub fn notify_prefs(
        &self,
        app: &str,
        user: &str,
    ) -> ReadResult<Option<Arc<crate::codec::Json>>> {
        self.get(&keys::notify_prefs(app, user))
    }
    /// Whether `rule` ran for `user`.
    pub fn enrollment_ran(&self, app: &str, rule: &str, user: &str) -> ReadResult<bool> {
        Ok(self
            .reader
            .get(&keys::enrollment_ran(app, rule, user))?
            .is_some())
    }
    /// Every run of an app's rules, in id (time) order.
    pub fn enrollment_runs(&self, app: &str) -> ReadResult<Vec<EnrollmentRun>> {
        self.list(&keys::enrollment_runs(app))
    }
    pub fn report(&self, app: &str, id: &str) -> ReadResult<Option<Arc<Report>>> {
        self.get(&keys::report(app, id))
    }
    /// An app's reports, oldest first.
    pub fn reports(&self, app: &str) -> ReadResult<Vec<Report>> {
        self.list(&keys::reports(app))
    }
    /// Records under `prefix` with the last component of their keys.
    fn keyed<T: DeserializeOwned>(&self, prefix: &[u8]) -> ReadResult<Vec<(String, T)>> {
        self.reader
            .scan_prefix(prefix)?
            .into_iter()
            .map(|(k, v)| {
                let id = String::from_utf8_lossy(keys::last_component(&k)).into_owned();
                Ok((id, keys::decode_at::<T>(&k, &v)?))
            })
            .collect()
    }
    /// Ids of a channel's members (keys only: nothing decoded).
    pub fn member_ids(&self, app: &str, channel: &str) -> ReadResult<Vec<String>> {
        self.last_components(&keys::members(app, channel))
    }
    /// Whether `user` is a member of any channel (one key read, nothing decoded).
    pub fn in_any_channel(&self, app: &str, user: &str) -> ReadResult<bool> {
        let from = keys::user_channels(app, user);
        // The prefix ends with its separator (0): every key under it sorts below separator + 1.
        let mut to = from.clone();
        if let Some(last) = to.last_mut() {
            *last += 1;
        }
        Ok(!self.reader.range(&from, &to, false, 1)?.is_empty())
    }
    /// Ids of the channels `user` is a member of.
    pub fn user_channel_ids(&self, app: &str, user: &str) -> ReadResult<Vec<String>> {
        Ok(self
            .reader
            .scan_prefix(&keys::user_channels(app, user))?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(keys::last_component(&k)).into_owned())
            .collect())
    }
}
