//! What the chat layer counts for `/metrics`: sends and their durable commit time, and the
//! outcomes of the work it does for others (webhook deliveries, link previews, web pushes).
//!
//! The metrics are `prometheus-client` values owned here and registered into the node's
//! registry by the gateway ([`ChatStats::register`]), so a counter is bumped where the event
//! happens without the chat layer knowing how it is served. Labels are small fixed sets.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// An outcome label (`ok`, `failed`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

/// The chat layer's metrics.
pub struct ChatStats {
    sends: Family<Outcome, Counter>,
    send_commit_seconds: Histogram,
    webhook_deliveries: Family<Outcome, Counter>,
    previews: Family<Outcome, Counter>,
    pushes: Family<Outcome, Counter>,
    position_checks: Family<Outcome, Counter>,
}

impl Default for ChatStats {
    fn default() -> Self {
        // Every outcome shows from the start, at zero, so dashboards and rates see them.
        let family = |outcomes: &[&'static str]| {
            let f = Family::<Outcome, Counter>::default();
            for &outcome in outcomes {
                let _ = f.get_or_create(&Outcome { outcome });
            }
            f
        };
        ChatStats {
            sends: family(&["ok", "duplicate", "failed"]),
            // 0.25 ms .. ~4 s.
            send_commit_seconds: Histogram::new(exponential_buckets(0.00025, 2.0, 15)),
            webhook_deliveries: family(&["ok", "failed"]),
            previews: family(&["fetched", "empty", "refused", "failed"]),
            pushes: family(&["ok", "gone", "refused", "failed"]),
            position_checks: family(&["current", "closed", "failed"]),
        }
    }
}

impl ChatStats {
    /// Adds these metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "chatsdk_sends",
            "Message sends by outcome (ok, duplicate for a repeated client id, failed)",
            self.sends.clone(),
        );
        registry.register(
            "chatsdk_send_commit_duration_seconds",
            "Time from a send's proposal to its durable commit on a majority (sends that were written)",
            self.send_commit_seconds.clone(),
        );
        registry.register(
            "chatsdk_webhook_deliveries",
            "Webhook deliveries by outcome (ok, failed), retries included in one delivery",
            self.webhook_deliveries.clone(),
        );
        registry.register(
            "chatsdk_link_previews",
            "Links looked at for previews by outcome (fetched, empty, refused, failed)",
            self.previews.clone(),
        );
        registry.register(
            "chatsdk_web_pushes",
            "Web push messages by outcome (ok, gone, refused, failed)",
            self.pushes.clone(),
        );
        registry.register(
            "chatsdk_position_checks",
            "Checks of a followed channel against its stream's position, by outcome (current; \
             closed: subscriptions found behind and closed to recover; failed: no position read)",
            self.position_checks.clone(),
        );
    }

    /// A send that reached the log (`duplicate`: a repeated client id) after `seconds`.
    pub(crate) fn sent(&self, duplicate: bool, seconds: f64) {
        let outcome = if duplicate { "duplicate" } else { "ok" };
        self.sends.get_or_create(&Outcome { outcome }).inc();
        if !duplicate {
            self.send_commit_seconds.observe(seconds);
        }
    }

    /// A send that failed once it was proposed.
    pub(crate) fn send_failed(&self) {
        self.sends
            .get_or_create(&Outcome { outcome: "failed" })
            .inc();
    }

    pub(crate) fn webhook(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.webhook_deliveries
            .get_or_create(&Outcome { outcome })
            .inc();
    }

    pub(crate) fn preview(&self, outcome: &'static str) {
        self.previews.get_or_create(&Outcome { outcome }).inc();
    }

    pub(crate) fn push(&self, outcome: &'static str) {
        self.pushes.get_or_create(&Outcome { outcome }).inc();
    }

    /// One channel's position check: `closed` subscriptions were found behind (None: the
    /// stream's position could not be read).
    pub(crate) fn position_check(&self, closed: Option<usize>) {
        let outcome = match closed {
            Some(0) => "current",
            Some(_) => "closed",
            None => "failed",
        };
        self.position_checks
            .get_or_create(&Outcome { outcome })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_show_in_the_exposition() {
        let stats = ChatStats::default();
        stats.sent(false, 0.002);
        stats.sent(true, 0.0);
        stats.webhook(false);
        let mut registry = Registry::default();
        stats.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("chatsdk_sends_total{outcome=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("chatsdk_sends_total{outcome=\"duplicate\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("chatsdk_send_commit_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("chatsdk_webhook_deliveries_total{outcome=\"failed\"} 1"),
            "{text}"
        );
    }
}
