//! Node fanout: the index of this node's subscriptions per realtime channel.
//!
//! A channel's events reach each node once (from the channel actor, wherever it runs); the
//! fanout hands the same pre-encoded bytes to every local subscription. Each subscription keeps
//! its own position so a client sees every durable event once and in offset order: events that
//! arrive while its subscribe reply is being prepared are held back and released after it;
//! duplicates are dropped; a gap (an event lost between nodes, or a leader change) closes the
//! connection with 3010 so the client reconnects and recovers exactly what it missed.
//!
//! A subscription may name users its client blocks: events those users authored (messages,
//! reactions, typing) are not sent to it. A durable one still moves the subscription's position
//! (the client sees the next offset after a hole, as after a recovery that left it out), so
//! blocking never looks like a gap.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use crate::outbound::{CloseReason, Outbound};

/// Durable events held per subscription while its subscribe reply is prepared; more means the
/// channel is busier than a subscribe takes, and the client is told to reconnect.
const MAX_PENDING_EVENTS: usize = 1024;

/// Who is subscribed (for presence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    pub client: String,
    pub user: String,
}

/// Users whose events a subscriber does not receive (user ids, without the app).
pub type BlockSet = Arc<BTreeSet<String>>;

enum SubState {
    /// Subscribe reply not sent yet: durable events wait here (None: one the subscriber does
    /// not receive, kept for its offset).
    Pending(Vec<(u64, Option<Bytes>)>),
    /// Reply sent; `last` is the last offset the client has. `behind_at` is `last + 1` when
    /// the last position check found it behind the stream at `last` (0 otherwise).
    Live {
        last: u64,
        behind_at: u64,
    },
    Closed,
}

/// One session's subscription to one channel: no strings of its own (the channel's name is
/// shared with the index, the client's with the session's other subscriptions).
pub struct Subscription {
    pub channel: Arc<str>,
    pub info: Arc<ClientInfo>,
    out: Arc<Outbound>,
    state: Mutex<SubState>,
    /// Whether `blocked` names anyone: most subscribers block no one, and their deliveries
    /// never take its lock.
    has_blocks: AtomicBool,
    blocked: RwLock<Option<BlockSet>>,
}

impl Subscription {
    fn new(channel: Arc<str>, info: Arc<ClientInfo>, out: Arc<Outbound>, state: SubState) -> Self {
        Subscription {
            channel,
            info,
            out,
            state: Mutex::new(state),
            has_blocks: AtomicBool::new(false),
            blocked: RwLock::new(None),
        }
    }

    /// One position check against the stream's `top`: a live subscription found behind it at
    /// the same position twice in a row (nothing arrived between two checks) has lost events
    /// on the way, and is closed with "insufficient state" so that its client recovers them.
    /// Whether it was closed.
    fn check_position(&self, top: u64) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let SubState::Live { last, behind_at } = &mut *state else {
            return false;
        };
        if *last >= top {
            *behind_at = 0;
            return false;
        }
        if std::mem::replace(behind_at, *last + 1) != *last + 1 {
            return false;
        }
        *state = SubState::Closed;
        self.out.close(CloseReason::INSUFFICIENT_STATE);
        true
    }

    /// Sets the users whose events this subscriber does not receive.
    pub fn set_blocked(&self, blocked: Option<BlockSet>) {
        let any = blocked.as_ref().is_some_and(|b| !b.is_empty());
        if let Ok(mut b) = self.blocked.write() {
            *b = blocked.filter(|b| !b.is_empty());
        }
        self.has_blocks.store(any, Ordering::Release);
    }

    /// Whether the subscriber blocks `author`.
    fn hides(&self, author: Option<&str>) -> bool {
        match author {
            Some(a) if self.has_blocks.load(Ordering::Acquire) => self
                .blocked
                .read()
                .is_ok_and(|b| b.as_ref().is_some_and(|b| b.contains(a))),
            _ => false,
        }
    }

    /// Whether the subscription was ended (unsubscribed, or closed by a gap or overflow).
    pub fn is_closed(&self) -> bool {
        self.state
            .lock()
            .map(|s| matches!(*s, SubState::Closed))
            .unwrap_or(true)
    }

    fn deliver(&self, offset: Option<u64>, author: Option<&str>, frame: &Bytes) {
        let hidden = self.hides(author);
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match (&mut *state, offset) {
            (SubState::Pending(held), Some(o)) => {
                if held.len() >= MAX_PENDING_EVENTS {
                    *state = SubState::Closed;
                    self.out.close(CloseReason::SLOW);
                } else {
                    held.push((o, (!hidden).then(|| frame.clone())));
                }
            }
            (SubState::Live { last, .. }, Some(o)) => {
                if o <= *last {
                    // Already delivered (recovery and live overlap, or a re-sent event).
                } else if o == *last + 1 {
                    *last = o;
                    if !hidden {
                        self.out.push(frame.clone());
                    }
                } else {
                    *state = SubState::Closed;
                    self.out.close(CloseReason::INSUFFICIENT_STATE);
                }
            }
            (SubState::Live { .. }, None) => {
                if !hidden {
                    self.out.push(frame.clone());
                }
            }
            (SubState::Pending(_), None) | (SubState::Closed, _) => {}
        }
    }

    /// Sends the subscribe reply (which brought the client to `position`), then the events held
    /// meanwhile that come after it.
    pub fn activate(&self, reply: Bytes, position: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let live = SubState::Live {
            last: position,
            behind_at: 0,
        };
        let held = match std::mem::replace(&mut *state, live) {
            SubState::Pending(held) => held,
            other => {
                *state = other;
                return;
            }
        };
        self.out.push(reply);
        let mut last = position;
        let mut held = held;
        held.sort_by_key(|(o, _)| *o);
        for (o, frame) in held {
            if o <= last {
                continue;
            }
            if o != last + 1 {
                *state = SubState::Closed;
                self.out.close(CloseReason::INSUFFICIENT_STATE);
                return;
            }
            last = o;
            if let Some(frame) = frame {
                self.out.push(frame);
            }
        }
        *state = SubState::Live { last, behind_at: 0 };
    }
}

/// A channel's local subscriptions, and when this node began to have any.
struct Local {
    subs: Vec<Arc<Subscription>>,
    /// This node's interest generation for the channel (see [`Fanout::interest_gen`]).
    gen: u64,
}

/// This node's subscriptions, by channel, and its connected sessions, by principal.
#[derive(Default)]
pub struct Fanout {
    channels: RwLock<HashMap<Arc<str>, Local>>,
    /// The last interest generation handed out.
    last_gen: std::sync::atomic::AtomicU64,
    /// Events other nodes sent here.
    from_peers: std::sync::atomic::AtomicU64,
    /// Events handed to local subscribers (one per subscriber).
    delivered: std::sync::atomic::AtomicU64,
    /// Outbound queues of connected sessions by `app:user`, so a revoked user is closed even
    /// without subscriptions.
    sessions: Mutex<HashMap<String, Vec<std::sync::Weak<Outbound>>>>,
}

impl Fanout {
    /// Registers a subscription in the pending state; call [`Subscription::activate`] once the
    /// subscribe reply is ready.
    /// `blocked` names users whose events the subscriber does not receive.
    pub fn subscribe(
        &self,
        channel: &str,
        info: Arc<ClientInfo>,
        out: Arc<Outbound>,
        blocked: Option<BlockSet>,
    ) -> Arc<Subscription> {
        let Ok(mut map) = self.channels.write() else {
            // A poisoned index delivers nothing: the subscription is born closed.
            return Arc::new(Subscription::new(
                Arc::from(channel),
                info,
                out,
                SubState::Closed,
            ));
        };
        let name = match map.get_key_value(channel) {
            Some((name, _)) => name.clone(),
            None => Arc::from(channel),
        };
        let sub = Arc::new(Subscription::new(
            name.clone(),
            info,
            out,
            SubState::Pending(Vec::new()),
        ));
        sub.set_blocked(blocked);
        map.entry(name)
            .or_insert_with(|| Local {
                subs: Vec::new(),
                gen: self.next_gen(),
            })
            .subs
            .push(sub.clone());
        sub
    }

    /// A new interest generation: increasing for the life of the process and, being taken
    /// from the clock, across restarts too (as long as the clock does not go back).
    pub fn next_gen(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let prev = self
            .last_gen
            .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
        if now > prev {
            now
        } else {
            self.last_gen
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1
        }
    }

    /// When this node began to have subscribers for `channel` (None: it has none). The
    /// channel's leader keeps it with this node's interest: a later "no longer interested"
    /// from this node only cancels an interest at least as old.
    pub fn interest_gen(&self, channel: &str) -> Option<u64> {
        self.channels.read().ok()?.get(channel).map(|l| l.gen)
    }

    /// The channels that `pick` selects among those with local subscribers, with their
    /// interest generations.
    pub fn interests(&self, pick: impl Fn(&str) -> bool) -> Vec<(String, u64)> {
        self.channels
            .read()
            .map(|map| {
                map.iter()
                    .filter(|(name, _)| pick(name))
                    .map(|(name, l)| (name.to_string(), l.gen))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes a subscription.
    pub fn unsubscribe(&self, sub: &Arc<Subscription>) {
        if let Ok(mut map) = self.channels.write() {
            if let Some(local) = map.get_mut(&sub.channel) {
                local.subs.retain(|s| !Arc::ptr_eq(s, sub));
                if local.subs.is_empty() {
                    map.remove(&sub.channel);
                }
            }
        }
        if let Ok(mut state) = sub.state.lock() {
            *state = SubState::Closed;
        }
    }

    /// Hands one event to every local subscriber of `channel`. `offset` is None for ephemeral
    /// events (typing), which only live subscriptions receive.
    ///
    /// Delivered under the index's read lock, without copying the subscriber list: a delivery
    /// only queues shared bytes (or closes a queue), never waits, and never takes the index's
    /// write lock, so subscribes wait at most one delivery's length.
    pub fn deliver(
        &self,
        channel: &str,
        offset: Option<u64>,
        author: Option<&str>,
        frame: &Bytes,
    ) -> usize {
        let Ok(map) = self.channels.read() else {
            return 0;
        };
        let Some(Local { subs, .. }) = map.get(channel) else {
            return 0;
        };
        for sub in subs {
            sub.deliver(offset, author, frame);
        }
        self.delivered
            .fetch_add(subs.len() as u64, std::sync::atomic::Ordering::Relaxed);
        subs.len()
    }

    /// The channels with local subscribers.
    pub fn subscribed_channels(&self) -> Vec<Arc<str>> {
        self.channels
            .read()
            .map(|map| map.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Checks the local subscriptions of `channel` against the stream's `top` offset (see
    /// [`Subscription::check_position`]); how many were closed.
    pub fn check_positions(&self, channel: &str, top: u64) -> usize {
        let Ok(map) = self.channels.read() else {
            return 0;
        };
        map.get(channel).map_or(0, |l| {
            l.subs.iter().filter(|s| s.check_position(top)).count()
        })
    }

    /// Events handed to local subscribers since start (one per subscriber).
    pub fn deliveries(&self) -> u64 {
        self.delivered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Subscriptions on this node.
    pub fn subscription_count(&self) -> usize {
        self.channels
            .read()
            .map(|m| m.values().map(|l| l.subs.len()).sum())
            .unwrap_or(0)
    }

    /// Sets whom `principal`'s subscriptions on this node block (a block or unblock).
    pub fn set_blocked(&self, principal: &str, blocked: Option<BlockSet>) {
        if let Ok(map) = self.channels.read() {
            for sub in map
                .values()
                .flat_map(|l| l.subs.iter())
                .filter(|s| s.info.user == principal)
            {
                sub.set_blocked(blocked.clone());
            }
        }
    }

    /// Who is subscribed to `channel` on this node.
    pub fn presence(&self, channel: &str) -> Vec<ClientInfo> {
        self.channels
            .read()
            .ok()
            .and_then(|map| {
                map.get(channel)
                    .map(|l| l.subs.iter().map(|s| ClientInfo::clone(&s.info)).collect())
            })
            .unwrap_or_default()
    }

    /// Records a connected session of `principal` (`app:user`); true when it is the
    /// principal's only session on this node (it came online here).
    pub fn session_connected(&self, principal: &str, out: &Arc<Outbound>) -> bool {
        if let Ok(mut map) = self.sessions.lock() {
            let list = map.entry(principal.to_string()).or_default();
            list.retain(|w| w.strong_count() > 0);
            list.push(Arc::downgrade(out));
            return list.len() == 1;
        }
        false
    }

    /// Forgets a session that ended; true when it was the principal's last on this node.
    pub fn session_ended(&self, principal: &str, out: &Arc<Outbound>) -> bool {
        if let Ok(mut map) = self.sessions.lock() {
            if let Some(list) = map.get_mut(principal) {
                list.retain(|w| {
                    w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(out))
                });
                if list.is_empty() {
                    map.remove(principal);
                    return true;
                }
            }
        }
        false
    }

    /// Whether `principal` (`app:user`) has a connected session on this node.
    pub fn is_connected(&self, principal: &str) -> bool {
        self.sessions.lock().is_ok_and(|map| {
            map.get(principal)
                .is_some_and(|l| l.iter().any(|w| w.strong_count() > 0))
        })
    }

    /// Closes every local connection of `principal` (`app:user`): revocation, deletion.
    pub fn disconnect_user(&self, principal: &str, reason: CloseReason) {
        let outs: Vec<Arc<Outbound>> = self
            .sessions
            .lock()
            .ok()
            .and_then(|map| {
                map.get(principal)
                    .map(|l| l.iter().filter_map(std::sync::Weak::upgrade).collect())
            })
            .unwrap_or_default();
        // Every subscribed session registered itself on connect, so this is all of them.
        for out in outs {
            out.close(reason);
        }
    }

    /// Ends `principal`'s local subscriptions to `channel` (membership removed, channel
    /// deleted), telling each client with an unsubscribe push carrying `frame`.
    pub fn unsubscribe_user(&self, principal: &str, channel: &str, frame: &bytes::Bytes) {
        let subs: Vec<Arc<Subscription>> = match self.channels.read() {
            Ok(map) => map
                .get(channel)
                .map(|l| {
                    l.subs
                        .iter()
                        .filter(|s| s.info.user == principal)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
            Err(_) => return,
        };
        for sub in subs {
            self.unsubscribe(&sub);
            sub.out.push(frame.clone());
        }
    }

    /// Number of sessions connected here.
    pub fn session_count(&self) -> usize {
        self.sessions
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Counts events another node sent here.
    pub fn count_from_peers(&self, n: usize) {
        self.from_peers
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Events other nodes have sent here (each crossed the network once for this node).
    pub fn deliveries_from_peers(&self) -> u64 {
        self.from_peers.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether `channel` has a subscriber on this node.
    pub fn has_subscribers(&self, channel: &str) -> bool {
        self.channels
            .read()
            .is_ok_and(|map| map.contains_key(channel))
    }

    /// Number of channels with local subscribers.
    pub fn channel_count(&self) -> usize {
        self.channels.read().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::Next;

    fn info() -> Arc<ClientInfo> {
        Arc::new(ClientInfo {
            client: "c".into(),
            user: "u".into(),
        })
    }

    async fn frames(out: &Outbound) -> Vec<Bytes> {
        match out.next(1 << 20).await {
            Next::Frames(f) => f,
            Next::Close(r) => panic!("closed {r:?}"),
        }
    }

    #[tokio::test]
    async fn events_held_during_subscribe_are_released_after_the_reply_without_duplicates() {
        let fanout = Fanout::default();
        let out = Arc::new(Outbound::new(1 << 20));
        let sub = fanout.subscribe("chat:a:b", info(), out.clone(), None);
        fanout.deliver("chat:a:b", Some(5), None, &Bytes::from_static(b"e5"));
        fanout.deliver("chat:a:b", Some(6), None, &Bytes::from_static(b"e6"));
        fanout.deliver("chat:a:b", None, None, &Bytes::from_static(b"typing"));
        sub.activate(Bytes::from_static(b"reply"), 5);
        fanout.deliver("chat:a:b", Some(6), None, &Bytes::from_static(b"e6"));
        fanout.deliver("chat:a:b", Some(7), None, &Bytes::from_static(b"e7"));
        let got = frames(&out).await;
        assert_eq!(
            got,
            vec![
                Bytes::from_static(b"reply"),
                Bytes::from_static(b"e6"),
                Bytes::from_static(b"e7")
            ]
        );
    }

    #[tokio::test]
    async fn a_subscriber_behind_the_stream_at_two_checks_is_closed_to_recover() {
        let f = Fanout::default();
        let out = Arc::new(Outbound::new(1 << 20));
        let sub = f.subscribe("chat:a:1", info(), out.clone(), None);
        sub.activate(Bytes::from_static(b"reply"), 5);
        f.deliver("chat:a:1", Some(6), None, &Bytes::from_static(b"six"));
        // Up to date, then behind once (an event may be on its way): left alone.
        assert_eq!(f.check_positions("chat:a:1", 6), 0);
        assert_eq!(f.check_positions("chat:a:1", 8), 0);
        // Progress between two checks: still left alone.
        f.deliver("chat:a:1", Some(7), None, &Bytes::from_static(b"seven"));
        assert_eq!(f.check_positions("chat:a:1", 8), 0);
        // Behind at the same position twice: the events were lost on the way.
        assert_eq!(f.check_positions("chat:a:1", 8), 1);
        assert!(sub.is_closed());
        assert_eq!(f.check_positions("chat:a:1", 8), 0, "closed once");
    }

    #[tokio::test]
    async fn a_gap_closes_with_insufficient_state() {
        let fanout = Fanout::default();
        let out = Arc::new(Outbound::new(1 << 20));
        let sub = fanout.subscribe("chat:a:b", info(), out.clone(), None);
        sub.activate(Bytes::from_static(b"reply"), 1);
        fanout.deliver("chat:a:b", Some(3), None, &Bytes::from_static(b"e3"));
        assert_eq!(out.closed(), Some(CloseReason::INSUFFICIENT_STATE));
    }

    #[tokio::test]
    async fn unsubscribed_sessions_get_nothing() {
        let fanout = Fanout::default();
        let out = Arc::new(Outbound::new(1 << 20));
        let sub = fanout.subscribe("chat:a:b", info(), out.clone(), None);
        sub.activate(Bytes::from_static(b"r"), 0);
        fanout.unsubscribe(&sub);
        assert_eq!(
            fanout.deliver("chat:a:b", Some(1), None, &Bytes::from_static(b"e1")),
            0
        );
        assert_eq!(fanout.channel_count(), 0);
    }

    #[tokio::test]
    async fn blocked_authors_are_skipped_without_a_gap() {
        let fanout = Fanout::default();
        let out = Arc::new(Outbound::new(1 << 20));
        let blocked: BlockSet = Arc::new(["bob".to_string()].into_iter().collect());
        let sub = fanout.subscribe("chat:a:b", info(), out.clone(), Some(blocked));
        fanout.deliver("chat:a:b", Some(2), Some("bob"), &Bytes::from_static(b"b2"));
        sub.activate(Bytes::from_static(b"reply"), 1);
        fanout.deliver(
            "chat:a:b",
            Some(3),
            Some("carol"),
            &Bytes::from_static(b"c3"),
        );
        fanout.deliver("chat:a:b", Some(4), Some("bob"), &Bytes::from_static(b"b4"));
        fanout.deliver(
            "chat:a:b",
            None,
            Some("bob"),
            &Bytes::from_static(b"typing"),
        );
        fanout.deliver("chat:a:b", Some(5), None, &Bytes::from_static(b"e5"));
        // Unblocked: Bob's events arrive again.
        fanout.set_blocked("u", None);
        fanout.deliver("chat:a:b", Some(6), Some("bob"), &Bytes::from_static(b"b6"));
        assert_eq!(out.closed(), None);
        assert_eq!(
            frames(&out).await,
            vec![
                Bytes::from_static(b"reply"),
                Bytes::from_static(b"c3"),
                Bytes::from_static(b"e5"),
                Bytes::from_static(b"b6")
            ]
        );
    }
}
