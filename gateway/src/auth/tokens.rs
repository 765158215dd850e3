//! User tokens: minting the bundle (access, refresh, realtime), and verifying each kind.
//!
//! All tokens are HS256 JWTs. Access and refresh tokens are signed with a key derived from the
//! cluster's secret for the REST API; realtime connection and subscription tokens with a second
//! derived key (the Centrifugo token secret of the original). The secret is one of a ring
//! (`chatsdk_actors::directory::token_keys`): tokens are signed with the current one and name it
//! in their header's `kid`; a token is checked with the key its `kid` names, while that key is
//! still accepted (a replaced secret is, for its grace period). A token is refused when the user
//! no longer exists or was revoked after the token was minted: its `gen` claim (the user's
//! token generation when it was minted) is below the user's current one.
//!
//! A client sends the same access token with every request until it expires, so API tokens
//! that verified are remembered ([`VERIFIED_CAPACITY`] of them, keyed by the whole token): a
//! repeated token costs a lookup instead of a MAC and two JSON parses. Its lifetime is still
//! checked on every use, and revocation is not cached (the callers check the user and the
//! session each time). Realtime tokens are not remembered: each is used once per connection, so
//! the memory would hold ~1.3 KB per connected user (a tenth of an idle session) to save ~3 µs
//! of a ~60 µs connect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use chatsdk_actors::directory::token_keys::{TokenKey, TokenKeys, LEGACY_KID};

use super::jwt::{self, JwtError};

const ISSUER: &str = "chatsdk-api";
const AUDIENCE: &str = "chatsdk-client";

/// Whom a token is minted for: the app, the user's id, and the user's token generation.
#[derive(Clone, Copy, Debug)]
pub struct UserRef<'a> {
    pub app: &'a str,
    pub id: &'a str,
    pub gen: u64,
}

impl<'a> UserRef<'a> {
    /// The user of `record`, at its current token generation.
    pub fn of(app: &'a str, record: &'a chatsdk_actors::model::User) -> UserRef<'a> {
        UserRef {
            app,
            id: &record.id,
            gen: record.tokens_valid_after,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The claims of every token we issue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub user_id: String,
    pub app_id: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default)]
    pub iat: u64,
    /// Issue time in milliseconds.
    #[serde(default)]
    pub iat_ms: u64,
    /// The user's token generation when it was minted (`User::tokens_valid_after`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gen: u64,
    /// Not minted any more: a "not before" equal to the issue time only made a node whose
    /// clock is behind the minting node's refuse fresh tokens (found by the fault suite's
    /// clock skew). Still honoured when present (tokens of older builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    pub exp: u64,
    #[serde(default)]
    pub jti: String,
    #[serde(default)]
    pub iss: String,
    #[serde(default)]
    pub aud: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// A freshly minted set of tokens.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub token: String,
    pub refresh_token: String,
    pub ws_token: String,
    pub expires_in: u64,
}

/// Verified tokens remembered at most; when full, the memory starts over.
pub const VERIFIED_CAPACITY: usize = 8192;

/// Which key signed a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signer {
    Api,
    Realtime,
}

/// API tokens that verified, with their claims and when their key retires (ms).
#[derive(Default)]
struct Verified {
    api: Mutex<HashMap<String, (Claims, Option<u64>)>>,
}

type Remembered = HashMap<String, (Claims, Option<u64>)>;

impl Verified {
    /// The remembered tokens of `signer`'s key (none for realtime tokens).
    fn of(&self, signer: Signer) -> Option<std::sync::MutexGuard<'_, Remembered>> {
        match signer {
            Signer::Api => Some(self.api.lock().unwrap_or_else(|p| p.into_inner())),
            Signer::Realtime => None,
        }
    }
}

/// The keys derived from one secret of the ring.
struct Derived {
    api: Vec<u8>,
    realtime: Vec<u8>,
    retire_at_ms: Option<u64>,
}

/// The derived keys of every secret of the ring, and which one signs.
struct Ring {
    source: TokenKeys,
    current: String,
    by_kid: HashMap<String, Derived>,
}

impl Ring {
    fn new(source: &TokenKeys) -> Ring {
        Ring {
            source: source.clone(),
            current: source.current().map(|k| k.kid.clone()).unwrap_or_default(),
            by_kid: source
                .keys
                .iter()
                .map(|k| {
                    let derived = Derived {
                        api: derive(&k.secret, "chatsdk-api"),
                        realtime: derive(&k.secret, "chatsdk-realtime"),
                        retire_at_ms: k.retire_at_ms,
                    };
                    (k.kid.clone(), derived)
                })
                .collect(),
        }
    }

    /// The signing key of `signer` and its kid.
    fn signing(&self, signer: Signer) -> (&str, &[u8]) {
        let key = self
            .by_kid
            .get(&self.current)
            .map_or(&[][..], |d| match signer {
                Signer::Api => &d.api[..],
                Signer::Realtime => &d.realtime[..],
            });
        (&self.current, key)
    }
}

/// Reads the ring as the directory holds it now.
type Reload = Box<dyn Fn() -> Option<TokenKeys> + Send + Sync>;

/// Mints and verifies tokens.
#[derive(Clone)]
pub struct Tokens {
    ring: Arc<std::sync::RwLock<Arc<Ring>>>,
    /// Consulted when a token names a key this node does not know yet (minted by a node that
    /// took up a rotation first).
    reload: Arc<std::sync::OnceLock<Reload>>,
    pub access_ttl: u64,
    pub refresh_ttl: u64,
    verified: Arc<Verified>,
}

fn derive(secret: &str, label: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update([0]);
    h.update(secret.as_bytes());
    h.finalize().to_vec()
}

fn now_ms() -> u64 {
    chatsdk_actors::time::now_ms()
}

impl Tokens {
    /// Keys derived from the cluster secret alone (named [`LEGACY_KID`]); lifetimes in seconds.
    pub fn new(secret: &str, access_ttl: u64, refresh_ttl: u64) -> Self {
        let keys = TokenKeys {
            keys: vec![TokenKey {
                kid: LEGACY_KID.into(),
                secret: secret.into(),
                retire_at_ms: None,
            }],
            rotations: 0,
        };
        Self::with_keys(&keys, access_ttl, refresh_ttl)
    }

    /// Keys derived from every secret of the ring; lifetimes in seconds.
    pub fn with_keys(keys: &TokenKeys, access_ttl: u64, refresh_ttl: u64) -> Self {
        Tokens {
            ring: Arc::new(std::sync::RwLock::new(Arc::new(Ring::new(keys)))),
            reload: Arc::default(),
            access_ttl,
            refresh_ttl,
            verified: Arc::default(),
        }
    }

    /// Follows the ring after a rotation (a no-op when it has not changed); tokens remembered
    /// as verified are checked afresh. Whether it changed.
    pub fn set_keys(&self, keys: &TokenKeys) -> bool {
        if self.ring().source == *keys {
            return false;
        }
        *self
            .ring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(Ring::new(keys));
        if let Some(mut verified) = self.verified.of(Signer::Api) {
            verified.clear();
        }
        true
    }

    /// Sets how the ring is read again when a token names an unknown key (once).
    pub fn reload_with(&self, reload: impl Fn() -> Option<TokenKeys> + Send + Sync + 'static) {
        let _first_wins = self.reload.set(Box::new(reload));
    }

    /// The ring, read again first if it does not know `kid` (a rotation not taken up yet).
    fn ring_knowing(&self, kid: &str) -> Arc<Ring> {
        let ring = self.ring();
        if ring.by_kid.contains_key(kid) {
            return ring;
        }
        match self.reload.get().and_then(|reload| reload()) {
            Some(keys) => {
                let _changed = self.set_keys(&keys);
                self.ring()
            }
            None => ring,
        }
    }

    fn ring(&self) -> Arc<Ring> {
        self.ring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn sign(&self, claims: &Claims, signer: Signer) -> String {
        let ring = self.ring();
        let (kid, key) = ring.signing(signer);
        jwt::sign_with(claims, kid, key)
    }

    fn claims(&self, user: UserRef<'_>, kind: Option<&str>, sid: &str, ttl: u64) -> Claims {
        let UserRef { app, id: user, gen } = user;
        let ms = now_ms();
        let now = ms / 1000;
        Claims {
            sub: format!("{app}:{user}"),
            user_id: user.to_string(),
            app_id: app.to_string(),
            kind: kind.map(str::to_string),
            sid: Some(sid.to_string()),
            iat: now,
            iat_ms: ms,
            gen,
            nbf: None,
            exp: now + ttl,
            jti: chatsdk_actors::new_id(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            scopes: None,
            channel: None,
        }
    }

    /// Mints access, refresh and realtime tokens for a user (in session `sid`).
    pub fn bundle(&self, user: UserRef<'_>, sid: Option<&str>) -> Bundle {
        let sid = sid
            .map(str::to_string)
            .unwrap_or_else(chatsdk_actors::new_id);
        Bundle {
            token: self.sign(
                &self.claims(user, Some("access"), &sid, self.access_ttl),
                Signer::Api,
            ),
            refresh_token: self.sign(
                &self.claims(user, Some("refresh"), &sid, self.refresh_ttl),
                Signer::Api,
            ),
            ws_token: self.sign(
                &self.claims(user, None, &sid, self.access_ttl),
                Signer::Realtime,
            ),
            expires_in: self.access_ttl,
        }
    }

    /// Signs arbitrary access-token claims (restricted scopes, custom lifetimes). `kind` is
    /// forced to `access`.
    pub fn sign_access(&self, claims: &Claims) -> String {
        let mut c = claims.clone();
        c.kind = Some("access".into());
        self.sign(&c, Signer::Api)
    }

    /// A subscription token for `channel` (for clients that fetch one).
    pub fn subscription(&self, user: UserRef<'_>, channel: &str) -> String {
        let mut c = self.claims(user, None, "", self.access_ttl);
        c.sid = None;
        c.channel = Some(channel.to_string());
        self.sign(&c, Signer::Realtime)
    }

    fn check(&self, token: &str, signer: Signer) -> Result<Claims, JwtError> {
        let now_ms = now_ms();
        let now = now_ms / 1000;
        let retired = |at: Option<u64>| at.is_some_and(|at| at <= now_ms);
        let remembered = self.verified.of(signer).and_then(|m| m.get(token).cloned());
        if let Some((claims, retire_at_ms)) = remembered {
            if retired(retire_at_ms) {
                return Err(JwtError::Signature);
            }
            jwt::in_time(Some(claims.exp), claims.nbf, now)?;
            return Ok(claims);
        }
        // The key the token names (tokens of builds before the ring name the first secret).
        let kid = jwt::kid_of(token)?.unwrap_or_else(|| LEGACY_KID.to_string());
        let ring = self.ring_knowing(&kid);
        let derived = ring
            .by_kid
            .get(&kid)
            .filter(|d| !retired(d.retire_at_ms))
            .ok_or(JwtError::Signature)?;
        let key = match signer {
            Signer::Api => &derived.api,
            Signer::Realtime => &derived.realtime,
        };
        let retire_at_ms = derived.retire_at_ms;
        let claims: Claims = jwt::verify(token, key, now)?;
        if claims.app_id.is_empty()
            || claims.user_id.is_empty()
            || claims.sub != format!("{}:{}", claims.app_id, claims.user_id)
        {
            return Err(JwtError::Malformed);
        }
        if let Some(mut verified) = self.verified.of(signer) {
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
            verified.insert(token.to_string(), (claims.clone(), retire_at_ms));
        }
        Ok(claims)
    }

    /// Verifies an access token.
    pub fn access(&self, token: &str) -> Result<Claims, JwtError> {
        let c = self.check(token, Signer::Api)?;
        (c.kind.as_deref() == Some("access"))
            .then_some(c)
            .ok_or(JwtError::Malformed)
    }

    /// Verifies a refresh token.
    pub fn refresh(&self, token: &str) -> Result<Claims, JwtError> {
        let c = self.check(token, Signer::Api)?;
        (c.kind.as_deref() == Some("refresh"))
            .then_some(c)
            .ok_or(JwtError::Malformed)
    }

    /// Verifies a realtime connection token (an access token is accepted as well).
    pub fn connection(&self, token: &str) -> Result<Claims, JwtError> {
        match self.check(token, Signer::Realtime) {
            Ok(c) if c.channel.is_none() => Ok(c),
            Ok(_) => Err(JwtError::Malformed),
            Err(JwtError::Signature) => self.access(token),
            Err(e) => Err(e),
        }
    }

    /// Verifies a subscription token for `channel`.
    pub fn subscription_claims(&self, token: &str, channel: &str) -> Result<Claims, JwtError> {
        let c = self.check(token, Signer::Realtime)?;
        (c.channel.as_deref() == Some(channel))
            .then_some(c)
            .ok_or(JwtError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U1: UserRef<'static> = UserRef {
        app: "app",
        id: "u1",
        gen: 0,
    };

    #[test]
    fn kinds_are_not_interchangeable() {
        let t = Tokens::new("s", 60, 120);
        let b = t.bundle(U1, None);
        assert_eq!(t.access(&b.token).unwrap().user_id, "u1");
        assert!(t.access(&b.refresh_token).is_err());
        assert!(t.refresh(&b.token).is_err());
        assert!(t.refresh(&b.refresh_token).is_ok());
        assert!(t.connection(&b.ws_token).is_ok());
        assert!(t.access(&b.ws_token).is_err());
        let sub = t.subscription(U1, "chat:app:c");
        assert!(t.subscription_claims(&sub, "chat:app:c").is_ok());
        assert!(t.subscription_claims(&sub, "chat:app:d").is_err());
        assert!(t.connection(&sub).is_err());
        let other = Tokens::new("other", 60, 120);
        assert_eq!(other.access(&b.token), Err(JwtError::Signature));
    }

    /// A remembered token is still refused once it expires.
    #[test]
    fn remembered_tokens_still_expire() {
        let t = Tokens::new("s", 60, 120);
        let b = t.bundle(U1, None);
        let claims = t.access(&b.token).unwrap();
        assert_eq!(t.access(&b.token), Ok(claims.clone()));
        let expired = Claims {
            exp: now_ms() / 1000 - 3600,
            ..claims
        };
        t.verified
            .of(Signer::Api)
            .expect("API tokens are remembered")
            .insert(b.token.clone(), (expired, None));
        assert_eq!(t.access(&b.token), Err(JwtError::Expired));
    }

    /// After a rotation, tokens name the new key; those of the replaced key pass (remembered or
    /// not) until it retires, then are refused; a key the node does not know yet is read again.
    #[test]
    fn tokens_follow_the_secrets_ring() {
        let t = Tokens::new("s", 60, 120);
        let old = t.bundle(U1, None);
        assert_eq!(t.access(&old.token).map(|c| c.user_id), Ok("u1".into()));
        let ring = |retire_at_ms| TokenKeys {
            keys: vec![
                TokenKey {
                    kid: "k1".into(),
                    secret: "s2".into(),
                    retire_at_ms: None,
                },
                TokenKey {
                    kid: LEGACY_KID.into(),
                    secret: "s".into(),
                    retire_at_ms: Some(retire_at_ms),
                },
            ],
            rotations: 1,
        };
        // Another node's tokens name k1 before this one has taken the rotation up.
        let other = Tokens::with_keys(&ring(u64::MAX), 60, 120);
        let new = other.bundle(U1, None);
        assert_eq!(jwt::kid_of(&new.token).unwrap().as_deref(), Some("k1"));
        assert_eq!(t.access(&new.token), Err(JwtError::Signature));
        t.reload_with(move || Some(ring(u64::MAX)));
        assert!(t.access(&new.token).is_ok(), "read again on an unknown key");
        assert!(
            t.access(&old.token).is_ok(),
            "the replaced key is in its grace"
        );
        assert!(t.connection(&old.ws_token).is_ok());
        // Its grace over: refused, though it was remembered as verified.
        t.set_keys(&ring(1));
        assert_eq!(t.access(&old.token), Err(JwtError::Signature));
        assert_eq!(t.connection(&old.ws_token), Err(JwtError::Signature));
        assert!(t.access(&new.token).is_ok());
    }
}
