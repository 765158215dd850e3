//! Auto-enrollment in the directory: the app's rules and their runs.
//!
//! Rules are read on every trigger (a user created, joining a workspace, changing attributes),
//! on the node where it happens, so they sit in group 0. A run is claimed here before its
//! actions are taken: the claim is one key per (rule, user), so a trigger applied twice (a
//! retried request, two nodes) runs a rule once. Every run (manual ones included) is kept in
//! the history, by run id.

use chatsdk_cluster::StoreError;
use serde::{Deserialize, Serialize};

use super::DirReply;
use crate::keys::{self, get_record as get, put_record as put};
use crate::kv::Kv;
use crate::model::{EnrollmentRule, EnrollmentRun};

/// A change to enrollment rules or runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum EnrollCommand {
    /// Creates or replaces a rule.
    Put { rule: Box<EnrollmentRule> },
    /// Removes a rule (its runs stay in the history).
    Delete { app_id: String, id: String },
    /// Claims the run of a rule for a user: refused when one exists, unless `again` (a
    /// manual run).
    Claim {
        app_id: String,
        run: Box<EnrollmentRun>,
        again: bool,
    },
    /// Records how a claimed run ended.
    Finish {
        app_id: String,
        run_id: String,
        success: bool,
        error: Option<String>,
    },
}

pub(super) fn transition(kv: &mut impl Kv, command: EnrollCommand) -> Result<DirReply, StoreError> {
    Ok(match command {
        EnrollCommand::Put { rule } => {
            put(kv, &keys::enrollment_rule(&rule.app_id, &rule.id), &*rule)?;
            DirReply::Done
        }
        EnrollCommand::Delete { app_id, id } => {
            let key = keys::enrollment_rule(&app_id, &id);
            if kv.get(&key)?.is_none() {
                return Ok(DirReply::NotFound("rule".into()));
            }
            kv.delete(&key);
            DirReply::Done
        }
        EnrollCommand::Claim { app_id, run, again } => {
            let marker = keys::enrollment_ran(&app_id, &run.rule_id, &run.user_id);
            if !again && kv.get(&marker)?.is_some() {
                return Ok(DirReply::Conflict("already ran for this user".into()));
            }
            kv.put(&marker, run.id.as_bytes());
            put(kv, &keys::enrollment_run(&app_id, &run.id), &*run)?;
            DirReply::Done
        }
        EnrollCommand::Finish {
            app_id,
            run_id,
            success,
            error,
        } => {
            let key = keys::enrollment_run(&app_id, &run_id);
            if let Some(mut run) = get::<EnrollmentRun>(kv, &key)? {
                run.success = Some(success);
                run.error = error;
                put(kv, &key, &run)?;
            }
            DirReply::Done
        }
    })
}
