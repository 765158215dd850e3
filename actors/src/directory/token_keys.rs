//! The keys user tokens are signed with: a ring, so that the cluster's token secret can be
//! replaced without cutting every session at once.
//!
//! Every meta replica holds the secret (any node mints and checks tokens), so a node that was
//! removed, or a copy of a node's disk or of a backup, can mint tokens for every app. Rotating
//! puts a new secret first (it signs from then on) and gives the one it replaces a grace
//! period, after which tokens signed with it are refused on every node. A key is named by its
//! `kid`, which tokens carry in their header; the secret of clusters made before the ring is
//! the key [`LEGACY_KID`] (the `kid` every token of those builds carries).

use serde::{Deserialize, Serialize};

use super::{DirReply, StoreError};
use crate::keys::{self, get_record as get, put_record as put};
use crate::kv::Kv;

/// The `kid` of the cluster's first secret (and of every token minted before the ring).
pub const LEGACY_KID: &str = "chatsdk";
/// Keys kept at most, the current one included: the oldest retiring ones go first.
pub const MAX_KEYS: usize = 4;

/// A secret in a command: `Debug` leaves it out (commands may be logged).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One token-signing secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenKey {
    pub kid: String,
    pub secret: String,
    /// When tokens signed with it stop being accepted (ms since the epoch); `None` for the
    /// current key.
    pub retire_at_ms: Option<u64>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .field("retire_at_ms", &self.retire_at_ms)
            .finish()
    }
}

/// The token-signing keys, the current one first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenKeys {
    pub keys: Vec<TokenKey>,
    /// Rotations so far (names the next key).
    pub rotations: u64,
}

impl TokenKeys {
    /// The key tokens are signed with now.
    pub fn current(&self) -> Option<&TokenKey> {
        self.keys.first()
    }

    /// The key named `kid`, if it is still accepted at `now_ms`.
    pub fn live(&self, kid: &str, now_ms: u64) -> Option<&TokenKey> {
        self.keys
            .iter()
            .find(|k| k.kid == kid)
            .filter(|k| k.retire_at_ms.is_none_or(|at| at > now_ms))
    }

    /// Puts `secret` first; the key it replaces is accepted for `grace_ms` more, and keys
    /// retired by `now_ms` are forgotten.
    fn rotate(&mut self, secret: String, now_ms: u64, grace_ms: u64) {
        self.keys
            .retain(|k| k.retire_at_ms.is_none_or(|at| at > now_ms));
        if let Some(previous) = self.keys.first_mut() {
            let until = now_ms.saturating_add(grace_ms);
            previous.retire_at_ms = Some(previous.retire_at_ms.map_or(until, |at| at.min(until)));
        }
        self.rotations += 1;
        self.keys.insert(
            0,
            TokenKey {
                kid: format!("k{}", self.rotations),
                secret,
                retire_at_ms: None,
            },
        );
        self.keys.truncate(MAX_KEYS);
    }
}

/// The keys as stored, or the cluster's first secret alone (clusters made before the ring, and
/// before any rotation).
pub(crate) fn load(kv: &impl crate::kv::KvRead) -> Result<TokenKeys, StoreError> {
    let stored = keys::read_record::<TokenKeys>(kv, &keys::token_keys())?;
    Ok(assemble(stored, kv.get(&keys::secret())?))
}

fn load_for_apply(kv: &impl Kv) -> Result<TokenKeys, StoreError> {
    let stored = get::<TokenKeys>(kv, &keys::token_keys())?;
    Ok(assemble(stored, kv.get(&keys::secret())?))
}

fn assemble(stored: Option<TokenKeys>, legacy: Option<Vec<u8>>) -> TokenKeys {
    if let Some(ring) = stored {
        return ring;
    }
    match legacy {
        Some(raw) => TokenKeys {
            keys: vec![TokenKey {
                kid: LEGACY_KID.into(),
                secret: String::from_utf8_lossy(&raw).into_owned(),
                retire_at_ms: None,
            }],
            rotations: 0,
        },
        None => TokenKeys::default(),
    }
}

/// [`super::DirCommand::RotateTokenSecret`].
pub(crate) fn rotate(
    kv: &mut impl Kv,
    secret: String,
    now_ms: u64,
    grace_ms: u64,
) -> Result<DirReply, StoreError> {
    let mut ring = load_for_apply(kv)?;
    if ring.keys.is_empty() {
        return Ok(DirReply::Refused("no token secret yet".into()));
    }
    ring.rotate(secret, now_ms, grace_ms);
    put(kv, &keys::token_keys(), &ring)?;
    Ok(DirReply::TokenKeys(ring))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> TokenKeys {
        TokenKeys {
            keys: vec![TokenKey {
                kid: LEGACY_KID.into(),
                secret: "first".into(),
                retire_at_ms: None,
            }],
            rotations: 0,
        }
    }

    #[test]
    fn a_replaced_key_is_accepted_for_its_grace_then_forgotten() {
        let mut r = ring();
        r.rotate("second".into(), 1_000, 500);
        assert_eq!(r.current().unwrap().kid, "k1");
        assert!(r.live(LEGACY_KID, 1_499).is_some());
        assert!(r.live(LEGACY_KID, 1_500).is_none());
        assert!(r.live("k1", u64::MAX).is_some());
        // A second rotation within the grace shortens nothing it has not ended already, and
        // the next one after it forgets the retired key.
        r.rotate("third".into(), 1_200, 10_000);
        assert_eq!(
            r.live(LEGACY_KID, 1_499).map(|k| k.secret.as_str()),
            Some("first")
        );
        assert!(r.live("k1", 11_199).is_some());
        r.rotate("fourth".into(), 20_000, 0);
        assert_eq!(
            r.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            vec!["k3", "k2"]
        );
        assert!(r.live("k2", 20_000).is_none(), "no grace: refused at once");
        assert!(!format!("{r:?}").contains("fourth"));
    }
}
