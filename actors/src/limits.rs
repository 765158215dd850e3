//! Rate limits: a token bucket per key, refilled continuously (per-user sends, shared by REST
//! and realtime).
//!
//! Buckets live in memory on the node that serves the request (a client talks to one node).
//! The table is bounded: when it is full, buckets that have refilled completely (equivalent to
//! absent) are dropped first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept at most; beyond this, full buckets are evicted.
const MAX_BUCKETS: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by caller.
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `per_minute` refill, `burst` capacity.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        RateLimiter {
            per_sec: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `per_hour` refill, with the whole hour's budget as capacity.
    pub fn per_hour(per_hour: u32) -> Self {
        RateLimiter {
            per_sec: f64::from(per_hour) / 3600.0,
            burst: f64::from(per_hour.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; on refusal returns the seconds until one is available.
    pub fn take(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut map) = self.buckets.lock() else {
            return Ok(());
        };
        if map.len() >= MAX_BUCKETS && !map.contains_key(key) {
            let (per_sec, burst) = (self.per_sec, self.burst);
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec < burst);
        }
        let b = map.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens =
            (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_sec).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = if self.per_sec > 0.0 {
                ((1.0 - b.tokens) / self.per_sec).ceil() as u64
            } else {
                60
            };
            Err(wait.max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal() {
        let l = RateLimiter::new(60, 3);
        assert!(l.take("a").is_ok());
        assert!(l.take("a").is_ok());
        assert!(l.take("a").is_ok());
        assert_eq!(l.take("a"), Err(1));
        assert!(l.take("b").is_ok());
    }
}
