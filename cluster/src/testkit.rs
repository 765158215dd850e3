//! A minimal key-value state machine for the cluster's own tests, benchmark and node tool.
//!
//! The real state machines live in the layers above; this one only exists so the substrate can
//! be exercised end to end. A command `key=value` stores `value` under `key` and replies with the
//! previous value (empty if none).

use chatsdk_storage::{Applier, ApplyContext, KvBatch, StoreError};

/// The `key=value` state machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct KvApplier;

impl KvApplier {
    /// The command that stores `value` under `key`.
    pub fn put(key: &str, value: &str) -> Vec<u8> {
        format!("{key}={value}").into_bytes()
    }
}

impl Applier for KvApplier {
    fn apply(
        &self,
        _ctx: &ApplyContext,
        kv: &mut KvBatch<'_>,
        command: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let split = command.iter().position(|b| *b == b'=');
        let (key, value) = match split {
            Some(i) => (&command[..i], &command[i + 1..]),
            None => (command, &[][..]),
        };
        let previous = kv.get(key)?.unwrap_or_default();
        kv.put(key, value);
        Ok(previous)
    }
}
