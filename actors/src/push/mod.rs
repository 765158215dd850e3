//! Web Push (RFC 8030) from the cluster: VAPID keys (RFC 8292) and payload encryption
//! (RFC 8291, `aes128gcm` of RFC 8188), on `ring`, the crypto library the node already has.
//!
//! A message is encrypted for one subscription: an ephemeral P-256 key agrees a secret with the
//! subscription's `p256dh` key, HKDF mixes it with the subscription's `auth` secret and a random
//! salt into a content key and nonce, and the padded payload is sealed with AES-128-GCM in one
//! record. The request is authorised with a VAPID JWT (ES256) signed by the cluster's key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::{aead, agreement, hkdf, signature};

/// Why a push could not be prepared.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("p256dh must be an uncompressed P-256 public key (65 bytes, base64url)")]
    BadKey,
    #[error("auth must be 16 bytes, base64url")]
    BadAuth,
    #[error("payload too large for one push message")]
    TooLarge,
    #[error("crypto failure")]
    Crypto,
}

/// Largest payload sent (a push service accepts 4096 bytes of body: header and tag included).
pub const MAX_PAYLOAD: usize = 3_800;
/// The record size written in the header.
const RECORD_SIZE: u32 = 4096;

/// The cluster's VAPID key pair.
pub struct Vapid {
    pair: signature::EcdsaKeyPair,
    rng: SystemRandom,
}

impl Vapid {
    /// A new key pair, as PKCS#8 (what the directory keeps).
    pub fn generate() -> Result<Vec<u8>, PushError> {
        let rng = SystemRandom::new();
        signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| PushError::Crypto)
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Vapid, PushError> {
        let rng = SystemRandom::new();
        let pair = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &rng,
        )
        .map_err(|_| PushError::Crypto)?;
        Ok(Vapid { pair, rng })
    }

    /// The public key as browsers take it (`applicationServerKey`): base64url of the
    /// uncompressed point.
    pub fn public_key(&self) -> String {
        use signature::KeyPair;
        B64.encode(self.pair.public_key().as_ref())
    }

    /// `Authorization: vapid t=<jwt>, k=<public key>` for a push to `endpoint`, valid 12 h.
    pub fn authorization(
        &self,
        endpoint: &str,
        subject: &str,
        now_secs: u64,
    ) -> Result<String, PushError> {
        let url = reqwest::Url::parse(endpoint).map_err(|_| PushError::Crypto)?;
        let aud = url.origin().ascii_serialization();
        let header = B64.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = B64.encode(
            serde_json::json!({"aud": aud, "exp": now_secs + 12 * 3600, "sub": subject})
                .to_string(),
        );
        let signing_input = format!("{header}.{claims}");
        let sig = self
            .pair
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| PushError::Crypto)?;
        Ok(format!(
            "vapid t={signing_input}.{}, k={}",
            B64.encode(sig.as_ref()),
            self.public_key()
        ))
    }
}

/// Checks a subscription's keys (base64url, with or without padding).
pub fn check_keys(p256dh: &str, auth: &str) -> Result<(Vec<u8>, Vec<u8>), PushError> {
    let ua = decode(p256dh).ok_or(PushError::BadKey)?;
    if ua.len() != 65 || ua[0] != 4 {
        return Err(PushError::BadKey);
    }
    let auth = decode(auth).ok_or(PushError::BadAuth)?;
    if auth.len() != 16 {
        return Err(PushError::BadAuth);
    }
    Ok((ua, auth))
}

fn decode(s: &str) -> Option<Vec<u8>> {
    B64.decode(s.trim_end_matches('=')).ok()
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand(prk: &hkdf::Prk, info: &[&[u8]], len: usize) -> Result<Vec<u8>, PushError> {
    let mut out = vec![0u8; len];
    prk.expand(info, Len(len))
        .and_then(|okm| okm.fill(&mut out))
        .map_err(|_| PushError::Crypto)?;
    Ok(out)
}

/// The `aes128gcm` body of `payload` for the subscription with keys `p256dh` and `auth`.
pub fn encrypt(payload: &[u8], p256dh: &str, auth: &str) -> Result<Vec<u8>, PushError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(PushError::TooLarge);
    }
    let (ua_public, auth_secret) = check_keys(p256dh, auth)?;
    let rng = SystemRandom::new();
    let ephemeral = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
        .map_err(|_| PushError::Crypto)?;
    let as_public = ephemeral
        .compute_public_key()
        .map_err(|_| PushError::Crypto)?
        .as_ref()
        .to_vec();
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, &ua_public);
    let ecdh_secret = agreement::agree_ephemeral(ephemeral, &peer, |s| s.to_vec())
        .map_err(|_| PushError::BadKey)?;
    // IKM = HKDF(auth_secret, ecdh_secret, "WebPush: info" || 0 || ua_public || as_public, 32)
    let prk_key = hkdf::Salt::new(hkdf::HKDF_SHA256, &auth_secret).extract(&ecdh_secret);
    let ikm = expand(&prk_key, &[b"WebPush: info\0", &ua_public, &as_public], 32)?;
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&rng, &mut salt).map_err(|_| PushError::Crypto)?;
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(&ikm);
    let cek = expand(&prk, &[b"Content-Encoding: aes128gcm\0"], 16)?;
    let nonce = expand(&prk, &[b"Content-Encoding: nonce\0"], 12)?;
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_128_GCM, &cek).map_err(|_| PushError::Crypto)?,
    );
    let nonce = aead::Nonce::try_assume_unique_for_key(&nonce).map_err(|_| PushError::Crypto)?;
    // One record: the payload and the last-record delimiter.
    let mut record = Vec::with_capacity(payload.len() + 17);
    record.extend_from_slice(payload);
    record.push(2);
    key.seal_in_place_append_tag(nonce, aead::Aad::empty(), &mut record)
        .map_err(|_| PushError::Crypto)?;
    let mut body = Vec::with_capacity(16 + 4 + 1 + 65 + record.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.len() as u8);
    body.extend_from_slice(&as_public);
    body.extend_from_slice(&record);
    Ok(body)
}

/// Decrypts an `aes128gcm` push body with the subscription's private key (consumed: ring's
/// keys agree once) and `auth` secret: what a browser does. For tests and tools.
pub fn decrypt(
    body: &[u8],
    ua_private: agreement::EphemeralPrivateKey,
    ua_public: &[u8],
    auth_secret: &[u8],
) -> Result<Vec<u8>, PushError> {
    if body.len() < 21 {
        return Err(PushError::Crypto);
    }
    let salt = &body[..16];
    let idlen = usize::from(body[20]);
    let key_end = 21 + idlen;
    if body.len() < key_end + 17 {
        return Err(PushError::Crypto);
    }
    let as_public = &body[21..key_end];
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, as_public);
    let ecdh_secret = agreement::agree_ephemeral(ua_private, &peer, |s| s.to_vec())
        .map_err(|_| PushError::Crypto)?;
    let prk_key = hkdf::Salt::new(hkdf::HKDF_SHA256, auth_secret).extract(&ecdh_secret);
    let ikm = expand(&prk_key, &[b"WebPush: info\0", ua_public, as_public], 32)?;
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&ikm);
    let cek = expand(&prk, &[b"Content-Encoding: aes128gcm\0"], 16)?;
    let nonce = expand(&prk, &[b"Content-Encoding: nonce\0"], 12)?;
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_128_GCM, &cek).map_err(|_| PushError::Crypto)?,
    );
    let nonce = aead::Nonce::try_assume_unique_for_key(&nonce).map_err(|_| PushError::Crypto)?;
    let mut record = body[key_end..].to_vec();
    let plain = key
        .open_in_place(nonce, aead::Aad::empty(), &mut record)
        .map_err(|_| PushError::Crypto)?;
    // Strip the padding: the last non-zero byte is the delimiter (2 for the last record).
    let end = plain
        .iter()
        .rposition(|b| *b != 0)
        .ok_or(PushError::Crypto)?;
    if plain[end] != 2 {
        return Err(PushError::Crypto);
    }
    Ok(plain[..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_round_trips_and_vapid_signs() {
        let rng = SystemRandom::new();
        let ua = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).unwrap();
        let ua_public = ua.compute_public_key().unwrap().as_ref().to_vec();
        let auth = [7u8; 16];
        let body = encrypt(b"hello", &B64.encode(&ua_public), &B64.encode(auth)).unwrap();
        assert_eq!(decrypt(&body, ua, &ua_public, &auth).unwrap(), b"hello");
        assert_eq!(
            encrypt(b"x", "AAAA", &B64.encode(auth)).unwrap_err(),
            PushError::BadKey
        );
        let vapid = Vapid::from_pkcs8(&Vapid::generate().unwrap()).unwrap();
        let h = vapid
            .authorization(
                "https://push.example.com/send/abc",
                "mailto:ops@example.com",
                1000,
            )
            .unwrap();
        assert!(h.starts_with("vapid t=ey"), "{h}");
        assert!(h.ends_with(&vapid.public_key()));
        // The JWT verifies with the public key.
        let t = h
            .trim_start_matches("vapid t=")
            .split(", k=")
            .next()
            .unwrap();
        let (input, sig) = t.rsplit_once('.').unwrap();
        let public = B64.decode(vapid.public_key()).unwrap();
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, public)
            .verify(input.as_bytes(), &B64.decode(sig).unwrap())
            .unwrap();
    }
}
