//! One delivery: the signed request, and its retries.

use super::{sign, HookClient, HookConfig};

/// One event for one webhook.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub url: String,
    pub secret: String,
    pub delivery_id: String,
    pub event: String,
    /// `{event, created_at, app_id, data}`.
    pub body: Vec<u8>,
}

/// How a delivery went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub success: bool,
    /// The last answer's status, if there was one.
    pub status: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub error: Option<String>,
    /// Attempts after the first.
    pub retries: u32,
}

fn unix_secs() -> u64 {
    crate::time::now_ms() / 1000
}

/// Sends `out`, retrying network errors and 5xx answers `config.retries` times with doubling
/// waits from `config.backoff`; 2xx is success, anything else fails at once. Each attempt is
/// signed afresh (its timestamp is the attempt's).
pub async fn deliver(client: &HookClient, config: &HookConfig, out: &Outgoing) -> Attempt {
    let mut wait = config.backoff;
    let mut retries = 0;
    loop {
        let t = unix_secs();
        let headers = [
            ("X-ChatSDK-Event", out.event.clone()),
            ("X-ChatSDK-Delivery-Id", out.delivery_id.clone()),
            ("X-ChatSDK-Timestamp", t.to_string()),
            (
                "X-ChatSDK-Signature-256",
                sign::signature_v1(&out.secret, t, &out.body),
            ),
            (
                "X-ChatSDK-Signature",
                sign::signature_legacy(&out.secret, &out.body),
            ),
        ];
        let result = client.post(&out.url, &headers, out.body.clone()).await;
        let (status, error, retry) = match result {
            Ok(code) if (200..300).contains(&code) => {
                return Attempt {
                    success: true,
                    status: Some(code),
                    error: None,
                    retries,
                }
            }
            Ok(code) => (Some(code), Some(format!("answered {code}")), code >= 500),
            Err(e) => (None, Some(e), true),
        };
        if !retry || retries >= config.retries {
            return Attempt {
                success: false,
                status,
                error,
                retries,
            };
        }
        tokio::time::sleep(wait).await;
        wait = wait.saturating_mul(2);
        retries += 1;
    }
}
