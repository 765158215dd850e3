//! Media tokens: `mediaToken=` on a content URL lets whoever holds the URL read that one file
//! of that app until the token expires, with no other credentials (an `<img src>` cannot send
//! an `Authorization` header).
//!
//! Format (the original's): `base64url(JSON{typ:"media",appId,key,exp}) "." base64url(HMAC)`,
//! HMAC-SHA256 under a key derived from the cluster's token secret, `exp` in seconds since the
//! epoch. Tokens rendered into message reads expire at the end of the next
//! [`READ_WINDOW_S`]-second window, so every read within a window yields the same URL and
//! browsers cache the file across reads.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The type of read tokens.
pub const MEDIA: &str = "media";
/// The type of presigned-upload tokens.
pub const UPLOAD: &str = "upload";

/// Window of the tokens rendered into reads: valid between one and two windows.
pub const READ_WINDOW_S: u64 = 300;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Claims {
    typ: String,
    app_id: String,
    key: String,
    exp: u64,
}

/// Why a media token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed media token")]
    Malformed,
    #[error("media token signature mismatch")]
    Signature,
    #[error("media token expired")]
    Expired,
    #[error("media token is for another file")]
    OtherFile,
}

/// One key of the ring: derived from one token secret, accepted until `retire_at_ms`.
#[derive(Clone, PartialEq, Eq)]
struct Key {
    key: [u8; 32],
    retire_at_ms: Option<u64>,
}

/// Signs and checks media tokens. Clones share the keys, which follow the token secret's ring
/// ([`MediaSigner::set_keys`]): tokens are signed with the current secret's key and checked
/// against every key still accepted (a few at most; media tokens carry no key name).
#[derive(Clone)]
pub struct MediaSigner {
    keys: std::sync::Arc<std::sync::RwLock<Vec<Key>>>,
}

impl std::fmt::Debug for MediaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaSigner(..)")
    }
}

impl MediaSigner {
    /// A signer whose key is derived from the cluster's token secret (so media tokens and
    /// access tokens never share a key).
    pub fn new(secret: &str) -> MediaSigner {
        MediaSigner {
            keys: std::sync::Arc::new(std::sync::RwLock::new(vec![Key {
                key: derive(secret),
                retire_at_ms: None,
            }])),
        }
    }

    /// Follows the token secret's ring after a rotation (the current secret first); a no-op
    /// when it has not changed.
    pub fn set_keys(&self, ring: &crate::directory::token_keys::TokenKeys) {
        let keys: Vec<Key> = ring
            .keys
            .iter()
            .map(|k| Key {
                key: derive(&k.secret),
                retire_at_ms: k.retire_at_ms,
            })
            .collect();
        if keys.is_empty() || *self.keys() == keys {
            return;
        }
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, Vec<Key>> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn mac(&self, payload: &str) -> Vec<u8> {
        let key = self.keys().first().map_or([0; 32], |k| k.key);
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&key).expect("HMAC accepts 32-byte keys");
        mac.update(payload.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// A token to read `key` of `app` until `exp` (seconds).
    pub fn sign(&self, app: &str, key: &str, exp: u64) -> String {
        self.sign_as(MEDIA, app, key, exp)
    }

    /// A token of type `typ` ([`MEDIA`] to read, [`UPLOAD`] to send a presigned upload's
    /// bytes) for `key` of `app` until `exp`.
    pub fn sign_as(&self, typ: &str, app: &str, key: &str, exp: u64) -> String {
        let claims = Claims {
            typ: typ.into(),
            app_id: app.into(),
            key: key.into(),
            exp,
        };
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let sig = URL_SAFE_NO_PAD.encode(self.mac(&payload));
        format!("{payload}.{sig}")
    }

    /// A token for reads at `now_s`: the same for every read of the window.
    pub fn sign_for_read(&self, app: &str, key: &str, now_s: u64) -> String {
        let exp = (now_s / READ_WINDOW_S + 2) * READ_WINDOW_S;
        self.sign(app, key, exp)
    }

    /// The content URL of `key` with a read token.
    pub fn url(&self, app: &str, key: &str, now_s: u64) -> String {
        format!(
            "{}&mediaToken={}",
            super::content_path(key),
            self.sign_for_read(app, key, now_s)
        )
    }

    /// Checks a read token for `key`, returning its app.
    pub fn verify(&self, token: &str, key: &str, now_s: u64) -> Result<String, TokenError> {
        self.verify_as(MEDIA, token, key, now_s)
    }

    /// Checks a token of type `typ` for `key`, returning its app.
    pub fn verify_as(
        &self,
        typ: &str,
        token: &str,
        key: &str,
        now_s: u64,
    ) -> Result<String, TokenError> {
        let (payload, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
        if payload.len() > 4096 {
            return Err(TokenError::Malformed);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenError::Malformed)?;
        let now_ms = now_s.saturating_mul(1000);
        let signed = self.keys().iter().any(|k| {
            let mut mac =
                <HmacSha256 as Mac>::new_from_slice(&k.key).expect("HMAC accepts 32-byte keys");
            mac.update(payload.as_bytes());
            k.retire_at_ms.is_none_or(|at| at > now_ms) && mac.verify_slice(&sig).is_ok()
        });
        if !signed {
            return Err(TokenError::Signature);
        }
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.typ != typ {
            return Err(TokenError::Malformed);
        }
        if claims.exp <= now_s {
            return Err(TokenError::Expired);
        }
        if claims.key != key {
            return Err(TokenError::OtherFile);
        }
        Ok(claims.app_id)
    }
}

/// The media key of a token secret (media tokens and access tokens never share a key).
fn derive(secret: &str) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(b"chatsdk media token v1");
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a rotation, tokens are signed with the new secret's key; those of the replaced
    /// one pass until it retires, and no longer.
    #[test]
    fn tokens_follow_the_secrets_ring() {
        use crate::directory::token_keys::{TokenKey, TokenKeys};
        let s = MediaSigner::new("first");
        let old = s.sign("a", "k", 10_000);
        let ring = TokenKeys {
            keys: vec![
                TokenKey {
                    kid: "k1".into(),
                    secret: "second".into(),
                    retire_at_ms: None,
                },
                TokenKey {
                    kid: "chatsdk".into(),
                    secret: "first".into(),
                    retire_at_ms: Some(500_000),
                },
            ],
            rotations: 1,
        };
        let clone = s.clone();
        s.set_keys(&ring);
        let new = clone.sign("a", "k", 10_000);
        assert_ne!(old, new);
        assert_eq!(clone.verify(&new, "k", 9_000).as_deref(), Ok("a"));
        assert_eq!(clone.verify(&old, "k", 499).as_deref(), Ok("a"));
        assert_eq!(clone.verify(&old, "k", 500), Err(TokenError::Signature));
        assert_eq!(
            MediaSigner::new("first").verify(&new, "k", 10),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn tokens_bind_key_app_and_time() {
        let s = MediaSigner::new("secret");
        let t = s.sign("app1", "apps/app1/k", 1_000);
        assert_eq!(s.verify(&t, "apps/app1/k", 999).as_deref(), Ok("app1"));
        assert_eq!(s.verify(&t, "apps/app1/k", 1_000), Err(TokenError::Expired));
        assert_eq!(
            s.verify(&t, "apps/app1/other", 10),
            Err(TokenError::OtherFile)
        );
        assert_eq!(
            MediaSigner::new("other").verify(&t, "apps/app1/k", 10),
            Err(TokenError::Signature)
        );
        let (p, _) = t.split_once('.').unwrap();
        assert_eq!(
            s.verify(&format!("{p}.AAAA"), "apps/app1/k", 10),
            Err(TokenError::Signature)
        );
        assert_eq!(s.verify("nonsense", "k", 10), Err(TokenError::Malformed));
        // An upload token does not read, and a read token does not upload.
        let up = s.sign_as(UPLOAD, "app1", "apps/app1/k", 1_000);
        assert_eq!(s.verify(&up, "apps/app1/k", 10), Err(TokenError::Malformed));
        assert_eq!(
            s.verify_as(UPLOAD, &t, "apps/app1/k", 10),
            Err(TokenError::Malformed)
        );
        assert!(s.verify_as(UPLOAD, &up, "apps/app1/k", 10).is_ok());
        // One URL per window.
        assert_eq!(
            s.sign_for_read("a", "k", 600),
            s.sign_for_read("a", "k", 899)
        );
        assert_ne!(
            s.sign_for_read("a", "k", 600),
            s.sign_for_read("a", "k", 900)
        );
    }
}
