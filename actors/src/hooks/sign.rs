//! How a delivery is signed.
//!
//! - `X-ChatSDK-Timestamp: <unix seconds>` and
//!   `X-ChatSDK-Signature-256: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`:
//!   the timestamp is part of the signed material, so a receiver that refuses timestamps more
//!   than a few minutes old (we suggest 5) cannot be replayed an old delivery.
//! - `X-ChatSDK-Signature: sha256=<hex HMAC-SHA256(secret, body)>`: the original ChatSDK's
//!   header, kept for receivers written for it (it does not protect against replays).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// `X-ChatSDK-Signature-256` of `body` sent at `timestamp` (unix seconds).
pub fn signature_v1(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    format!("t={t},v1={}", hmac_hex(secret, &[t.as_bytes(), b".", body]))
}

/// `X-ChatSDK-Signature` of `body` (the original's form).
pub fn signature_legacy(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(secret, &[body]))
}

/// Checks a `X-ChatSDK-Signature-256` value as a receiver would: the signature matches and
/// the timestamp is within `tolerance_secs` of `now_secs`.
pub fn verify_v1(
    secret: &str,
    header: &str,
    body: &[u8],
    now_secs: u64,
    tolerance_secs: u64,
) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if t.abs_diff(now_secs) > tolerance_secs {
        return false;
    }
    let expected = signature_v1(secret, t, body);
    let expected = expected.rsplit_once("v1=").map_or("", |(_, e)| e);
    expected.len() == v1.len()
        && expected
            .bytes()
            .zip(v1.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A new webhook secret: 32 random bytes, hex.
pub fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The delivery id of event `offset` of `stream` to webhook `hook`: the same on every node and
/// every retry, so a receiver deduplicates redeliveries by it.
pub fn delivery_id(hook: &str, stream: &str, offset: u64) -> String {
    crate::stream::client_message_id(stream, hook, &offset.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_expire() {
        let body = br#"{"event":"message.new"}"#;
        let h = signature_v1("s3cret", 1_700_000_000, body);
        assert!(verify_v1("s3cret", &h, body, 1_700_000_100, 300));
        assert!(
            !verify_v1("s3cret", &h, body, 1_700_001_000, 300),
            "too old"
        );
        assert!(!verify_v1("other", &h, body, 1_700_000_000, 300));
        assert!(!verify_v1("s3cret", &h, b"{}", 1_700_000_000, 300));
        assert!(signature_legacy("k", body).starts_with("sha256="));
        assert_eq!(
            delivery_id("h", "chat:a:c", 7),
            delivery_id("h", "chat:a:c", 7)
        );
        assert_ne!(
            delivery_id("h", "chat:a:c", 7),
            delivery_id("h2", "chat:a:c", 7)
        );
    }
}
