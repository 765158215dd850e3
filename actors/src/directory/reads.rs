//! Local reads of the directory: what this node's replica of group 0 has applied. Reads that
//! must see a write made elsewhere first wait for the group's read barrier (`Chat` does).

use chatsdk_cluster::{GroupReader, StoreError};
use serde::de::DeserializeOwned;

use super::LoginSession;
use crate::keys;
use crate::model::{ApiKey, App, Channel, Member, User};

/// Local reads of the directory (what this node has applied).
#[derive(Clone)]
pub struct Directory {
    reader: GroupReader,
}

/// A directory read failed: the local store is unreadable.
pub type ReadResult<T> = Result<T, StoreError>;

impl Directory {
    /// Reads through `reader` (group 0's).
    pub fn new(reader: GroupReader) -> Self {
        Directory { reader }
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> ReadResult<Option<T>> {
        keys::read_record(&self.reader, key)
    }

    fn list<T: DeserializeOwned>(&self, prefix: &[u8]) -> ReadResult<Vec<T>> {
        self.reader
            .scan_prefix(prefix)?
            .into_iter()
            .map(|(k, v)| keys::decode_at(&k, &v))
            .collect()
    }

    pub fn secret(&self) -> ReadResult<Option<String>> {
        Ok(self
            .reader
            .get(&keys::secret())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
    pub fn app(&self, id: &str) -> ReadResult<Option<App>> {
        self.get(&keys::app(id))
    }
    pub fn apps(&self) -> ReadResult<Vec<App>> {
        self.list(&keys::apps())
    }
    pub fn api_key(&self, hash: &str) -> ReadResult<Option<ApiKey>> {
        self.get(&keys::api_key(hash))
    }
    pub fn user(&self, app: &str, id: &str) -> ReadResult<Option<User>> {
        self.get(&keys::user(app, id))
    }
    pub fn users(&self, app: &str) -> ReadResult<Vec<User>> {
        self.list(&keys::users(app))
    }
    pub fn channel(&self, app: &str, id: &str) -> ReadResult<Option<Channel>> {
        self.get(&keys::channel(app, id))
    }
    pub fn channels(&self, app: &str) -> ReadResult<Vec<Channel>> {
        self.list(&keys::channels(app))
    }
    pub fn channel_by_cid(&self, app: &str, cid: &str) -> ReadResult<Option<Channel>> {
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
    pub fn member(&self, app: &str, channel: &str, user: &str) -> ReadResult<Option<Member>> {
        self.get(&keys::member(app, channel, user))
    }
    pub fn members(&self, app: &str, channel: &str) -> ReadResult<Vec<Member>> {
        self.list(&keys::members(app, channel))
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
