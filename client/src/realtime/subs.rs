//! The subscriptions a client wants and how far it has read each one: a small state machine
//! with no IO, so recovery decisions are tested without a server.
//!
//! A subscription is *pending* until the server's subscribe reply, then *active*. Losing the
//! connection makes every subscription pending again; the next connection resubscribes each
//! one with `recover: true` from its last `(epoch, offset)`. Positions come from the subscribe
//! reply (the stream's top offset) and advance with every publication that has an offset;
//! ephemeral publications (offset 0) do not move them.

use std::collections::HashMap;

use crate::protocol::{SubscribeParams, SubscribeResult};

/// A position in a channel's stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) epoch: String,
    pub(crate) offset: u64,
}

#[derive(Debug, Default)]
struct Sub {
    active: bool,
    position: Option<Position>,
}

/// Every wanted subscription, by channel.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    channels: HashMap<String, Sub>,
}

impl Subscriptions {
    /// Adds `channel` as pending; false when it is already wanted.
    pub(crate) fn add(&mut self, channel: &str) -> bool {
        if self.channels.contains_key(channel) {
            return false;
        }
        self.channels.insert(channel.to_string(), Sub::default());
        true
    }

    /// Forgets `channel`; false when it was not wanted.
    pub(crate) fn remove(&mut self, channel: &str) -> bool {
        self.channels.remove(channel).is_some()
    }

    pub(crate) fn contains(&self, channel: &str) -> bool {
        self.channels.contains_key(channel)
    }

    /// Whether publications on `channel` are expected (it is wanted and subscribed).
    #[cfg(test)]
    pub(crate) fn is_active(&self, channel: &str) -> bool {
        self.channels.get(channel).is_some_and(|s| s.active)
    }

    /// The subscribe params for `channel`: recovering from its position when it has one.
    pub(crate) fn params(&self, channel: &str) -> SubscribeParams {
        let position = self.channels.get(channel).and_then(|s| s.position.as_ref());
        match position {
            Some(p) => SubscribeParams {
                channel: channel.to_string(),
                recover: true,
                epoch: p.epoch.clone(),
                offset: p.offset,
            },
            None => SubscribeParams {
                channel: channel.to_string(),
                ..SubscribeParams::default()
            },
        }
    }

    /// Marks every subscription pending (the connection is gone) and returns the params to
    /// resubscribe them all on the next one.
    pub(crate) fn reset(&mut self) -> Vec<SubscribeParams> {
        for sub in self.channels.values_mut() {
            sub.active = false;
        }
        self.pending()
    }

    /// The params of every pending subscription.
    pub(crate) fn pending(&self) -> Vec<SubscribeParams> {
        let mut channels: Vec<&String> = self
            .channels
            .iter()
            .filter(|(_, s)| !s.active)
            .map(|(c, _)| c)
            .collect();
        channels.sort();
        channels.into_iter().map(|c| self.params(c)).collect()
    }

    /// Marks `channel` pending again (the server ended it and it will be resubscribed).
    pub(crate) fn deactivate(&mut self, channel: &str) {
        if let Some(sub) = self.channels.get_mut(channel) {
            sub.active = false;
        }
    }

    /// Records the subscribe reply: active, positioned at the stream's top (publications
    /// after the reply continue from there). False when `channel` is no longer wanted.
    pub(crate) fn subscribed(&mut self, channel: &str, result: &SubscribeResult) -> bool {
        let Some(sub) = self.channels.get_mut(channel) else {
            return false;
        };
        sub.active = true;
        sub.position = result.recoverable.then(|| Position {
            epoch: result.epoch.clone(),
            offset: result.offset,
        });
        true
    }

    /// Records a publication; false when it is not for an active subscription (it is
    /// dropped: a late publication after an unsubscribe).
    pub(crate) fn published(&mut self, channel: &str, offset: u64) -> bool {
        let Some(sub) = self.channels.get_mut(channel).filter(|s| s.active) else {
            return false;
        };
        if let Some(p) = sub.position.as_mut().filter(|_| offset > 0) {
            p.offset = offset;
        }
        true
    }

    /// The last known position of `channel`.
    #[cfg(test)]
    pub(crate) fn position(&self, channel: &str) -> Option<&Position> {
        self.channels.get(channel).and_then(|s| s.position.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(epoch: &str, offset: u64) -> SubscribeResult {
        SubscribeResult {
            recoverable: true,
            epoch: epoch.into(),
            offset,
            ..SubscribeResult::default()
        }
    }

    #[test]
    fn a_first_subscribe_does_not_recover() {
        let mut subs = Subscriptions::default();
        assert!(subs.add("chat:a:1"));
        assert!(!subs.add("chat:a:1"), "added twice");
        let p = subs.params("chat:a:1");
        assert_eq!((p.recover, p.epoch.as_str(), p.offset), (false, "", 0));
        assert!(!subs.is_active("chat:a:1"));
        assert!(!subs.published("chat:a:1", 1), "nothing before the reply");
    }

    #[test]
    fn positions_follow_the_reply_then_publications() {
        let mut subs = Subscriptions::default();
        subs.add("c");
        assert!(subs.subscribed("c", &reply("e1", 4)));
        assert!(subs.is_active("c"));
        assert!(subs.published("c", 5));
        assert!(subs.published("c", 0), "ephemeral events are delivered");
        assert_eq!(
            subs.position("c"),
            Some(&Position {
                epoch: "e1".into(),
                offset: 5
            })
        );
        let again = subs.reset();
        assert_eq!(again.len(), 1);
        assert_eq!(
            (again[0].recover, again[0].epoch.as_str(), again[0].offset),
            (true, "e1", 5)
        );
        assert!(!subs.is_active("c"));
        assert!(!subs.published("c", 6), "not delivered while pending");
    }

    #[test]
    fn a_failed_recovery_repositions_at_the_new_top() {
        let mut subs = Subscriptions::default();
        subs.add("c");
        subs.subscribed("c", &reply("e1", 9));
        subs.reset();
        let mut lost = reply("e2", 2);
        lost.was_recovering = true;
        subs.subscribed("c", &lost);
        assert_eq!(subs.params("c").epoch, "e2");
        assert_eq!(subs.params("c").offset, 2);
    }

    #[test]
    fn unrecoverable_channels_resubscribe_fresh() {
        let mut subs = Subscriptions::default();
        subs.add("c");
        subs.subscribed("c", &SubscribeResult::default());
        subs.reset();
        assert!(!subs.params("c").recover);
    }

    #[test]
    fn removed_channels_ignore_late_replies() {
        let mut subs = Subscriptions::default();
        subs.add("c");
        subs.add("d");
        assert!(subs.remove("c"));
        assert!(!subs.remove("c"));
        assert!(!subs.subscribed("c", &reply("e", 1)));
        assert!(!subs.contains("c"));
        assert_eq!(subs.pending().len(), 1);
        subs.subscribed("d", &reply("e", 1));
        subs.deactivate("d");
        assert_eq!(subs.pending()[0].channel, "d");
    }
}
