//! Puts another node's delivery batches back in the order it sent them.
//!
//! The cluster transport carries each one-way message on a stream of its own, and the receiver
//! handles streams concurrently, so two batches sent one after the other may be handled in the
//! other order; a subscriber would then see a channel's offsets out of order and be closed for
//! a gap that is not one. Each sender numbers its batches (`seq`, within an `incarnation` that
//! changes when its sending task is replaced); the receiver releases them in that order. A
//! batch that does not come (its send failed) is waited for at most [`HOLD`]: then the batches
//! after it are released, and subscribers that missed its events see a gap and recover.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Longest a batch waits for an earlier one.
pub const HOLD: Duration = Duration::from_secs(1);
/// Most batches held for an earlier one; beyond, the missing one is given up at once.
const MAX_HELD: usize = 1024;

/// The batches of one sender, in its order.
pub struct Resequencer<T> {
    incarnation: u64,
    next: u64,
    held: BTreeMap<u64, T>,
    /// Since when the oldest held batch waits.
    since: Option<Instant>,
}

impl<T> Default for Resequencer<T> {
    fn default() -> Self {
        Resequencer {
            incarnation: 0,
            next: 0,
            held: BTreeMap::new(),
            since: None,
        }
    }
}

impl<T> Resequencer<T> {
    /// Takes batch `seq` of `incarnation`; returns the batches now due, in order.
    pub fn accept(&mut self, incarnation: u64, seq: u64, batch: T, now: Instant) -> Vec<T> {
        if incarnation != self.incarnation || self.next == 0 {
            // A new sender (or its first batch): start from here.
            self.incarnation = incarnation;
            self.next = seq;
            self.held.clear();
            self.since = None;
        }
        if seq < self.next {
            return Vec::new();
        }
        self.held.insert(seq, batch);
        if self.held.len() > MAX_HELD {
            self.skip();
        }
        let waiting = self.since;
        let out = self.release(now);
        if out.is_empty() {
            // Still waiting for the same batch: its wait began earlier.
            self.since = waiting.or(self.since);
        }
        out
    }

    /// Gives up on missing batches held for longer than [`HOLD`]; returns those now due.
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        match self.since {
            Some(since) if now.duration_since(since) >= HOLD => {
                self.skip();
                self.release(now)
            }
            _ => Vec::new(),
        }
    }

    /// Whether batches wait for an earlier one.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    fn skip(&mut self) {
        if let Some((&first, _)) = self.held.iter().next() {
            self.next = first;
        }
    }

    fn release(&mut self, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        while let Some(batch) = self.held.remove(&self.next) {
            out.push(batch);
            self.next += 1;
        }
        self.since = None;
        if !self.held.is_empty() {
            // Still waiting: from now, for the batch now missing.
            self.since = Some(now);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_come_out_in_the_order_sent() {
        let mut r = Resequencer::default();
        let t = Instant::now();
        assert_eq!(r.accept(9, 1, "a", t), vec!["a"]);
        assert!(r.accept(9, 3, "c", t).is_empty());
        assert!(r.holding());
        assert_eq!(r.accept(9, 2, "b", t), vec!["b", "c"]);
        assert!(!r.holding());
        assert!(r.accept(9, 2, "b again", t).is_empty());
    }

    #[test]
    fn a_missing_batch_is_given_up_after_the_hold() {
        let mut r = Resequencer::default();
        let t = Instant::now();
        assert_eq!(r.accept(9, 1, "a", t), vec!["a"]);
        assert!(r.accept(9, 3, "c", t).is_empty());
        assert!(r.expire(t).is_empty());
        assert_eq!(r.expire(Instant::now() + HOLD), vec!["c"]);
        assert_eq!(r.accept(9, 4, "d", t), vec!["d"]);
    }

    #[test]
    fn a_new_incarnation_starts_over() {
        let mut r = Resequencer::default();
        let t = Instant::now();
        assert_eq!(r.accept(9, 40, "a", t), vec!["a"]);
        assert_eq!(r.accept(10, 1, "b", t), vec!["b"]);
    }
}
