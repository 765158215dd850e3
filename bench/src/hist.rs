//! Latency histograms (HdrHistogram, microseconds) and their transport between processes.
//!
//! Generators record into their own histograms and ship them to the coordinator serialized
//! (V2, base64) so percentiles are computed over every sample, never averaged.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;

/// Highest latency recorded: one minute, in microseconds; larger values are clamped.
const MAX_US: u64 = 60_000_000;

/// A new latency histogram (1 µs .. 60 s, 3 significant digits).
pub fn new() -> Histogram<u64> {
    // Constant, valid bounds: construction cannot fail.
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Records `us`, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, us: u64) {
    let _ = h.record(us.clamp(1, MAX_US));
}

/// Serializes for another process.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    if V2Serializer::new().serialize(h, &mut buf).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// The inverse of [`encode`]; an empty or corrupt string is an empty histogram.
pub fn decode(s: &str) -> Histogram<u64> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .ok()
        .and_then(|b| Deserializer::new().deserialize(&mut &b[..]).ok())
        .unwrap_or_else(new)
}

/// Percentiles of a histogram, in milliseconds, for reports.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_ms: ms(0.5),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_survive_the_trip_between_processes() {
        let mut h = new();
        for us in 1..=1000 {
            record(&mut h, us);
        }
        let back = decode(&encode(&h));
        assert_eq!(back.len(), 1000);
        let l = Latency::of(&back);
        assert!((l.p50_ms - 0.5).abs() < 0.01, "{l:?}");
        assert!(decode("not base64").is_empty());
    }
}
