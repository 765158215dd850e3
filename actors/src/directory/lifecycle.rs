//! Data lifecycle in the directory: legal holds (checked on every delete, purge and expiry,
//! on whichever node takes it) and the records of data exports (the archives themselves live
//! in their own streams).

use chatsdk_cluster::StoreError;
use serde::{Deserialize, Serialize};

use super::DirReply;
use crate::keys::{self, put_record as put};
use crate::kv::Kv;
use crate::model::{Export, LegalHold};

/// A lifecycle change.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LifeCommand {
    /// Places (or replaces) a legal hold.
    Hold {
        app_id: String,
        hold: Box<LegalHold>,
    },
    /// Lifts a legal hold.
    Release {
        app_id: String,
        kind: String,
        target: String,
    },
    /// Records a finished export.
    PutExport { app_id: String, export: Box<Export> },
    /// Forgets an export (expired).
    DropExport { app_id: String, id: String },
}

pub(super) fn transition(kv: &mut impl Kv, command: LifeCommand) -> Result<DirReply, StoreError> {
    Ok(match command {
        LifeCommand::Hold { app_id, hold } => {
            put(
                kv,
                &keys::legal_hold(&app_id, &hold.kind, &hold.target),
                &*hold,
            )?;
            DirReply::Done
        }
        LifeCommand::Release {
            app_id,
            kind,
            target,
        } => {
            let key = keys::legal_hold(&app_id, &kind, &target);
            if kv.get(&key)?.is_none() {
                return Ok(DirReply::NotFound("legal hold".into()));
            }
            kv.delete(&key);
            DirReply::Done
        }
        LifeCommand::PutExport { app_id, export } => {
            put(kv, &keys::export(&app_id, &export.id), &*export)?;
            DirReply::Done
        }
        LifeCommand::DropExport { app_id, id } => {
            kv.delete(&keys::export(&app_id, &id));
            DirReply::Done
        }
    })
}
