//! Notification settings in the directory: users' devices, Web Push subscriptions and
//! preferences, and the cluster's VAPID key.
//!
//! They are read when a message may notify someone, on the node that took the message, and
//! written at the rate people install apps; an app with no subscription at all is told apart
//! with one range read, so messages of apps that do not use push pay nothing else.

use chatsdk_cluster::StoreError;
use serde::{Deserialize, Serialize};

use super::DirReply;
use crate::codec::Json;
use crate::keys::{self, get_record as get, put_record as put};
use crate::kv::Kv;
use crate::model::{Device, PushSubscription};

/// Devices kept per user (the least recently active go first).
pub const MAX_DEVICES: usize = 20;
/// Web Push subscriptions kept per user (the oldest go first).
pub const MAX_SUBSCRIPTIONS: usize = 10;

/// A change to a user's notification settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum NotifyChange {
    AddDevice(Box<Device>),
    RemoveDevice { token: String },
    Subscribe(Box<PushSubscription>),
    Unsubscribe { endpoint: String },
    Prefs(Json),
}

/// A notification command.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum NotifyCommand {
    Change {
        app_id: String,
        user_id: String,
        change: NotifyChange,
    },
    /// Sets the VAPID key (PKCS#8, hex) unless one exists; replies with the one in force.
    InitVapid { pkcs8_hex: String },
}

pub(super) fn transition(kv: &mut impl Kv, command: NotifyCommand) -> Result<DirReply, StoreError> {
    let (app, user, change) = match command {
        NotifyCommand::InitVapid { pkcs8_hex } => {
            return Ok(match kv.get(&keys::vapid())? {
                Some(existing) => DirReply::Secret(String::from_utf8_lossy(&existing).into_owned()),
                None => {
                    kv.put(&keys::vapid(), pkcs8_hex.as_bytes());
                    DirReply::Secret(pkcs8_hex)
                }
            })
        }
        NotifyCommand::Change {
            app_id,
            user_id,
            change,
        } => (app_id, user_id, change),
    };
    match change {
        NotifyChange::AddDevice(d) => {
            let key = keys::devices(&app, &user);
            let mut list = get::<Vec<Device>>(kv, &key)?.unwrap_or_default();
            match list.iter_mut().find(|x| x.token == d.token) {
                Some(existing) => {
                    existing.platform = d.platform.clone();
                    existing.device_id = d.device_id.clone();
                    existing.device_name = d.device_name.clone();
                    existing.last_active_at = d.last_active_at;
                }
                None => list.push(*d),
            }
            if list.len() > MAX_DEVICES {
                list.sort_by_key(|x| std::cmp::Reverse(x.last_active_at));
                list.truncate(MAX_DEVICES);
            }
            put(kv, &key, &list)?;
        }
        NotifyChange::RemoveDevice { token } => {
            let key = keys::devices(&app, &user);
            let mut list = get::<Vec<Device>>(kv, &key)?.unwrap_or_default();
            let before = list.len();
            list.retain(|x| x.token != token);
            if list.len() == before {
                return Ok(DirReply::NotFound("device".into()));
            }
            put(kv, &key, &list)?;
        }
        NotifyChange::Subscribe(s) => {
            let key = keys::web_push(&app, &user);
            let mut list = get::<Vec<PushSubscription>>(kv, &key)?.unwrap_or_default();
            list.retain(|x| x.endpoint != s.endpoint);
            list.push(*s);
            if list.len() > MAX_SUBSCRIPTIONS {
                let extra = list.len() - MAX_SUBSCRIPTIONS;
                list.drain(..extra);
            }
            put(kv, &key, &list)?;
        }
        NotifyChange::Unsubscribe { endpoint } => {
            let key = keys::web_push(&app, &user);
            let mut list = get::<Vec<PushSubscription>>(kv, &key)?.unwrap_or_default();
            let before = list.len();
            list.retain(|x| x.endpoint != endpoint);
            if list.len() == before {
                return Ok(DirReply::NotFound("subscription".into()));
            }
            if list.is_empty() {
                kv.delete(&key);
            } else {
                put(kv, &key, &list)?;
            }
        }
        NotifyChange::Prefs(p) => put(kv, &keys::notify_prefs(&app, &user), &p)?,
    }
    Ok(DirReply::Done)
}
