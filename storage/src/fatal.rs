//! Fail-stop on storage failures. After a write or an `fdatasync` of the Raft log fails, the
//! kernel may have dropped the dirty pages it could not write: the page cache and the disk
//! disagree, and nothing read back can be trusted. The log stops taking writes either way; a
//! process that installs a hook here (the `chatsdk` binary does) stops altogether, so that it
//! restarts from what is on disk and catches up from its peers, instead of serving on.

use std::sync::OnceLock;

type Hook = Box<dyn Fn(&str) + Send + Sync>;

static HOOK: OnceLock<Hook> = OnceLock::new();

/// Installs what a storage failure does (once per process; `false` if one was installed).
pub fn on_failure(hook: impl Fn(&str) + Send + Sync + 'static) -> bool {
    HOOK.set(Box::new(hook)).is_ok()
}

/// Reports a failure that stopped the log: runs the hook, if any.
pub(crate) fn failed(why: &str) {
    if let Some(hook) = HOOK.get() {
        hook(why);
    }
}
