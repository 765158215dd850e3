//! Compact JWTs signed with HS256, the only algorithm we issue or accept.
//!
//! Small on purpose: the header must say `HS256` (no `none`, no algorithm confusion), the
//! signature is checked in constant time before the claims are parsed, and `exp`/`nbf` are
//! enforced with a small leeway. Parsing never panics on any input.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Clock skew tolerated on `exp` and `nbf`, seconds.
const LEEWAY_SECS: u64 = 5;
/// Longest token accepted, bytes.
const MAX_TOKEN_LEN: usize = 8192;

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported algorithm")]
    Algorithm,
    #[error("bad signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Times {
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

/// Signs `claims` with `secret`, naming the key `chatsdk` (the cluster's first secret).
pub fn sign<C: Serialize>(claims: &C, secret: &[u8]) -> String {
    sign_with(claims, "chatsdk", secret)
}

/// Signs `claims` with `secret`, the key named `kid` (a header field, so that a verifier knows
/// which of its keys to check the signature with).
pub fn sign_with<C: Serialize>(claims: &C, kid: &str, secret: &[u8]) -> String {
    let header = Header {
        alg: "HS256".into(),
        typ: Some("JWT".into()),
        kid: Some(kid.into()),
    };
    let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{body}");
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// The `kid` of a token's header (not verified: it only picks the key to verify with).
pub fn kid_of(token: &str) -> Result<Option<String>, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed);
    }
    let h = token.split('.').next().ok_or(JwtError::Malformed)?;
    let header: Header = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or(JwtError::Malformed)?;
    Ok(header.kid)
}

/// Verifies `token` against `secret` at `now` (seconds) and returns its claims.
pub fn verify<C: DeserializeOwned>(token: &str, secret: &[u8], now: u64) -> Result<C, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(b), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or(JwtError::Malformed)?;
    if header.alg != "HS256" {
        return Err(JwtError::Algorithm);
    }
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
    let mut m = mac(secret);
    m.update(h.as_bytes());
    m.update(b".");
    m.update(b.as_bytes());
    m.verify_slice(&sig).map_err(|_| JwtError::Signature)?;
    let raw = URL_SAFE_NO_PAD.decode(b).map_err(|_| JwtError::Malformed)?;
    let times: Times = serde_json::from_slice(&raw).map_err(|_| JwtError::Malformed)?;
    in_time(times.exp, times.nbf, now)?;
    serde_json::from_slice(&raw).map_err(|_| JwtError::Malformed)
}

/// Whether a token with these `exp` and `nbf` claims (seconds) is valid at `now`, with the
/// leeway `verify` allows.
pub fn in_time(exp: Option<u64>, nbf: Option<u64>, now: u64) -> Result<(), JwtError> {
    if exp.is_some_and(|exp| now > exp + LEEWAY_SECS) {
        return Err(JwtError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
        return Err(JwtError::NotYetValid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn round_trip_and_refusals() {
        let token = sign(&json!({"sub": "a:b", "exp": 1000}), b"k");
        let claims: Value = verify(&token, b"k", 900).unwrap();
        assert_eq!(claims["sub"], "a:b");
        assert_eq!(
            verify::<Value>(&token, b"other", 900),
            Err(JwtError::Signature)
        );
        assert_eq!(verify::<Value>(&token, b"k", 2000), Err(JwtError::Expired));
        assert_eq!(verify::<Value>("a.b", b"k", 0), Err(JwtError::Malformed));
        assert_eq!(verify::<Value>("", b"k", 0), Err(JwtError::Malformed));
        assert_eq!(verify::<Value>("é.é.é", b"k", 0), Err(JwtError::Malformed));
        let mut tampered = token.clone();
        tampered.insert(tampered.find('.').unwrap() + 2, 'x');
        assert!(verify::<Value>(&tampered, b"k", 900).is_err());
    }

    #[test]
    fn none_algorithm_is_refused() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let b = URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#);
        assert_eq!(
            verify::<Value>(&format!("{h}.{b}."), b"k", 0),
            Err(JwtError::Algorithm)
        );
    }

    #[test]
    fn not_before_is_enforced() {
        let token = sign(&json!({"nbf": 1000}), b"k");
        assert_eq!(
            verify::<Value>(&token, b"k", 100),
            Err(JwtError::NotYetValid)
        );
    }
}
