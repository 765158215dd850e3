//! Webhooks in the directory: their configuration and health (consecutive failures, whether
//! the server turned them off).
//!
//! A webhook is read wherever an event is written (to decide whether the write records it for
//! delivery) and by whichever node delivers, so it sits in group 0 beside its app. It changes
//! when someone edits it and when deliveries start or stop failing, not per delivery: the log
//! of deliveries lives in a data shard (`webhook:<app>:<id>` stream).

use chatsdk_cluster::StoreError;
use serde::{Deserialize, Serialize};

use super::DirReply;
use crate::keys::{self, get_record as get, put_record as put};
use crate::kv::Kv;
use crate::model::Webhook;

/// A change to webhooks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum HookCommand {
    /// Creates or replaces a webhook (edits carry the whole record, read just before).
    Put {
        hook: Box<Webhook>,
    },
    Delete {
        app_id: String,
        id: String,
    },
    /// A delivery's outcome: a success resets the failure count; a failure adds one and, at
    /// `disable_after` in a row, turns the webhook off.
    Outcome {
        app_id: String,
        id: String,
        success: bool,
        at: u64,
        disable_after: u32,
    },
}

pub(super) fn transition(kv: &mut impl Kv, command: HookCommand) -> Result<DirReply, StoreError> {
    Ok(match command {
        HookCommand::Put { hook } => {
            if kv.get(&keys::app(&hook.app_id))?.is_none() {
                return Ok(DirReply::NotFound("app".into()));
            }
            put(kv, &keys::webhook(&hook.app_id, &hook.id), &*hook)?;
            DirReply::Webhook(hook)
        }
        HookCommand::Delete { app_id, id } => {
            let key = keys::webhook(&app_id, &id);
            if kv.get(&key)?.is_none() {
                return Ok(DirReply::NotFound("webhook".into()));
            }
            kv.delete(&key);
            DirReply::Done
        }
        HookCommand::Outcome {
            app_id,
            id,
            success,
            at,
            disable_after,
        } => {
            let key = keys::webhook(&app_id, &id);
            let Some(mut hook) = get::<Webhook>(kv, &key)? else {
                return Ok(DirReply::NotFound("webhook".into()));
            };
            if success {
                hook.failure_count = 0;
            } else {
                hook.failure_count = hook.failure_count.saturating_add(1);
                hook.last_failure_at = Some(at);
                if hook.enabled && hook.failure_count >= disable_after {
                    hook.enabled = false;
                    hook.disabled_reason = Some(format!(
                        "turned off after {} consecutive failed deliveries",
                        hook.failure_count
                    ));
                }
            }
            put(kv, &key, &hook)?;
            DirReply::Webhook(Box::new(hook))
        }
    })
}
