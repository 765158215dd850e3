//! Supervision in the directory: who supervises whom, with an index from the supervised user
//! to their supervisors (their age restriction is checked when they join a channel, on any
//! node).

use chatsdk_cluster::StoreError;
use serde::{Deserialize, Serialize};

use super::DirReply;
use crate::keys::{self, put_record as put};
use crate::kv::Kv;
use crate::model::Supervision;

/// A change to supervisions.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SupCommand {
    /// Creates or replaces a supervision.
    Put {
        app_id: String,
        record: Box<Supervision>,
    },
    Delete {
        app_id: String,
        supervisor: String,
        supervised: String,
    },
}

pub(super) fn transition(kv: &mut impl Kv, command: SupCommand) -> Result<DirReply, StoreError> {
    Ok(match command {
        SupCommand::Put { app_id, record } => {
            put(
                kv,
                &keys::supervision(&app_id, &record.supervisor, &record.supervised),
                &*record,
            )?;
            kv.put(
                &keys::supervisor_of(&app_id, &record.supervised, &record.supervisor),
                &[],
            );
            DirReply::Done
        }
        SupCommand::Delete {
            app_id,
            supervisor,
            supervised,
        } => {
            let key = keys::supervision(&app_id, &supervisor, &supervised);
            if kv.get(&key)?.is_none() {
                return Ok(DirReply::NotFound("supervision".into()));
            }
            kv.delete(&key);
            kv.delete(&keys::supervisor_of(&app_id, &supervised, &supervisor));
            DirReply::Done
        }
    })
}
