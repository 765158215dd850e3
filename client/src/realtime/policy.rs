//! When and how soon to reconnect: pure functions the driver asks and tests drive directly.
//!
//! Close codes follow `docs/protocol.md`: 3000–3499 and 4000–4499 ask the client to come
//! back, 3500–3999 and 4500–4999 tell it not to. Codes below 3000 are the transport's own
//! (a WebSocket closing without a protocol reason): the client reconnects, except after 1009
//! (message too big), which would repeat. Codes below 100 are this client's own, listed in
//! [`codes`].

use std::time::Duration;

/// Disconnect codes this client reports for closes the server did not name. Server close
/// codes are 1000 and up; a refused `connect` reports its reply error code (100–199).
pub mod codes {
    /// [`crate::Realtime::close`] was called, or every handle was dropped.
    pub const CLOSE_CALLED: u16 = 0;
    /// The transport failed or ended without a close code.
    pub const TRANSPORT_CLOSED: u16 = 1;
    /// No server ping within the ping interval plus the grace period.
    pub const NO_PING: u16 = 2;
    /// The server sent something this client cannot decode.
    pub const BAD_PROTOCOL: u16 = 3;
    /// [`crate::Realtime::reconnect_now`] dropped the transport.
    pub const RECONNECT_CALLED: u16 = 4;
    /// Resubscribing after a reconnect failed with a temporary error; reconnecting retries it.
    pub const RESUBSCRIBE_FAILED: u16 = 5;
    /// The endpoint's configuration cannot work (TLS roots, QUIC settings).
    pub const BAD_CONFIG: u16 = 6;
    /// The `connect` reply did not arrive within the request timeout.
    pub const CONNECT_TIMEOUT: u16 = 7;
    /// The token refresher failed; it is asked again on the next attempt.
    pub const TOKEN_REFRESH_FAILED: u16 = 8;
}

/// Close code of a server that closed because the connection's token expired.
pub(crate) const CONNECTION_EXPIRED: u16 = 3005;
/// Reply error code of a `connect` whose token has expired.
pub(crate) const TOKEN_EXPIRED: u32 = 109;

/// Whether a connection closed with `code` should be reopened.
pub fn should_reconnect(code: u16) -> bool {
    match code {
        codes::CLOSE_CALLED | codes::BAD_PROTOCOL | codes::BAD_CONFIG => false,
        1..=99 => true,
        1009 => false,
        3500..=3999 | 4500..=4999 => false,
        _ => true,
    }
}

/// Exponential backoff with full jitter between reconnect attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first attempt's ceiling, doubled per failed attempt.
    pub min: Duration,
    /// The ceiling never exceeds this.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(200),
            max: Duration::from_secs(20),
        }
    }
}

impl Backoff {
    /// The ceiling of attempt `attempt` (0-based): `min(max, min · 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(31));
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The delay before attempt `attempt`, for `unit` uniform in `[0, 1)`: uniform between
    /// zero and [`Backoff::ceiling`] ("full jitter"), so clients dropped together do not
    /// return together.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        self.ceiling(attempt).mul_f64(unit)
    }

    /// [`Backoff::delay`] with a random `unit`.
    pub fn jittered(&self, attempt: u32) -> Duration {
        self.delay(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_decide_reconnects() {
        for code in [
            3000, 3001, 3004, 3005, 3008, 3010, 3012, 3013, 3499, 4000, 4499,
        ] {
            assert!(should_reconnect(code), "{code}");
        }
        for code in [3500, 3501, 3503, 3504, 3999, 4500, 4999] {
            assert!(!should_reconnect(code), "{code}");
        }
        // Transport-level closes come back, except a message the peer found too big.
        for code in [1000, 1001, 1005, 1006, 1011, 5000] {
            assert!(should_reconnect(code), "{code}");
        }
        assert!(!should_reconnect(1009));
        assert!(should_reconnect(codes::TRANSPORT_CLOSED));
        assert!(should_reconnect(codes::NO_PING));
        assert!(should_reconnect(codes::RECONNECT_CALLED));
        assert!(should_reconnect(codes::RESUBSCRIBE_FAILED));
        assert!(!should_reconnect(codes::CLOSE_CALLED));
        assert!(!should_reconnect(codes::BAD_PROTOCOL));
        assert!(!should_reconnect(codes::BAD_CONFIG));
    }

    #[test]
    fn ceilings_double_up_to_the_maximum() {
        let b = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let ceilings: Vec<u128> = (0..7).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn delays_are_jittered_within_the_ceiling() {
        let b = Backoff::default();
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 0.5), b.ceiling(3) / 2);
        assert_eq!(b.delay(3, 7.0), b.ceiling(3));
        assert_eq!(b.delay(3, f64::NAN), Duration::ZERO);
        assert_eq!(b.delay(3, f64::INFINITY), b.ceiling(3));
        for attempt in 0..40 {
            assert!(b.jittered(attempt) <= b.ceiling(attempt));
        }
    }
}
