//! Which other nodes want a channel's events: kept by the node that leads the channel's shard,
//! so each event crosses the network once per node with subscribers, not once per node.
//!
//! A node registers its interest with the subscribe's recovery query, which the leader answers
//! (registration first, so every event after the position it answers reaches the node). The
//! node stamps its interest with a generation (when its first local subscriber came, see
//! [`crate::fanout::Fanout::interest_gen`]). A node that receives an event for a channel it has
//! no subscribers for says so, with its current generation, and the leader forgets it unless
//! the interest is newer (a subscriber that came meanwhile).
//!
//! A node that becomes a shard's leader knows nothing of the interests registered with the
//! previous one: it asks every other node for its channels in that shard and, until a node
//! has answered, sends it every event of the shard (as if it were interested in all). A node
//! that cannot be reached is asked again and kept on every event meanwhile, so no node is left
//! without the events it wants; one that was missed anyway sees a gap and its clients recover.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use chatsdk_cluster::{GroupId, NodeId};

/// Topic of "which channels of this shard do you have subscribers for" (body: the group id).
pub const TOPIC_INTERESTS: u16 = 0x4306;
/// Topic of "no subscribers here any more" (body: channels with generations).
pub const TOPIC_UNINTERESTED: u16 = 0x4307;

/// Interests in the channels of the shards this node leads.
#[derive(Default)]
pub struct Interest {
    /// Channel → interested node → the node's generation for it.
    channels: Mutex<HashMap<String, HashMap<NodeId, u64>>>,
    /// Shards whose interests this node gathered (or is gathering) since it began to lead them,
    /// with the nodes not heard from yet, who get every event of the shard. A shard not here
    /// (its leadership just came, and gathering has not begun) sends every event to every node.
    gathering: Mutex<HashMap<GroupId, BTreeSet<NodeId>>>,
}

impl Interest {
    /// `node` has subscribers for `channel` since `gen`.
    pub fn register(&self, channel: &str, node: NodeId, gen: u64) {
        let mut map = lock(&self.channels);
        let nodes = match map.get_mut(channel) {
            Some(nodes) => nodes,
            None => map.entry(channel.to_string()).or_default(),
        };
        let known = nodes.entry(node).or_insert(gen);
        *known = (*known).max(gen);
    }

    /// `node` had no subscribers for `channel` at its generation `gen`: its interest is
    /// forgotten unless it is newer.
    pub fn forget(&self, channel: &str, node: NodeId, gen: u64) {
        let mut map = lock(&self.channels);
        if let Some(nodes) = map.get_mut(channel) {
            if nodes.get(&node).is_some_and(|known| *known <= gen) {
                nodes.remove(&node);
            }
            if nodes.is_empty() {
                map.remove(channel);
            }
        }
    }

    /// The nodes among `others` that get an event of `channel` (in shard `group`).
    pub fn targets(&self, channel: &str, group: GroupId, others: &[NodeId]) -> Vec<NodeId> {
        let gathering = lock(&self.gathering);
        let Some(waiting) = gathering.get(&group) else {
            return others.to_vec();
        };
        let map = lock(&self.channels);
        let interested = map.get(channel);
        others
            .iter()
            .copied()
            .filter(|n| waiting.contains(n) || interested.is_some_and(|i| i.contains_key(n)))
            .collect()
    }

    /// This node now leads `group`: until each of `nodes` reports its interests in it, they
    /// get every event of the group.
    pub fn begin_gathering(&self, group: GroupId, nodes: BTreeSet<NodeId>) {
        lock(&self.gathering).insert(group, nodes);
    }

    /// `node` reported its channels in `group` (`in_group` tells which channels are in it).
    pub fn reported(
        &self,
        group: GroupId,
        node: NodeId,
        channels: Vec<(String, u64)>,
        in_group: impl Fn(&str) -> bool,
    ) {
        for (channel, gen) in channels.into_iter().filter(|(c, _)| in_group(c)) {
            self.register(&channel, node, gen);
        }
        if let Some(waiting) = lock(&self.gathering).get_mut(&group) {
            waiting.remove(&node);
        }
    }

    /// Nodes `group`'s gathering still waits for (empty when it is done or not begun).
    pub fn waiting(&self, group: GroupId) -> BTreeSet<NodeId> {
        lock(&self.gathering)
            .get(&group)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether the interests of every group in `led` are known (gathered from every node).
    pub fn settled(&self, led: &BTreeSet<GroupId>) -> bool {
        let gathering = lock(&self.gathering);
        led.iter()
            .all(|g| gathering.get(g).is_some_and(BTreeSet::is_empty))
    }

    /// This node no longer leads `group`: what it knew of the group's interests is dropped
    /// (its next leader gathers them afresh).
    pub fn drop_group(&self, group: GroupId, in_group: impl Fn(&str) -> bool) {
        lock(&self.gathering).remove(&group);
        lock(&self.channels).retain(|channel, _| !in_group(channel));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_not_gathered_yet_sends_to_every_node() {
        let i = Interest::default();
        assert_eq!(i.targets("chat:a:1", 0, &[2, 3]), vec![2, 3]);
        i.begin_gathering(0, BTreeSet::new());
        assert!(i.targets("chat:a:1", 0, &[2, 3]).is_empty());
        i.drop_group(0, |_| true);
        assert_eq!(i.targets("chat:a:1", 0, &[2, 3]), vec![2, 3]);
    }

    #[test]
    fn only_interested_nodes_are_targets() {
        let i = Interest::default();
        i.begin_gathering(0, BTreeSet::new());
        i.register("chat:a:1", 2, 10);
        assert_eq!(i.targets("chat:a:1", 0, &[2, 3]), vec![2]);
        assert!(i.targets("chat:a:2", 0, &[2, 3]).is_empty());
    }

    #[test]
    fn an_older_forget_does_not_cancel_a_newer_interest() {
        let i = Interest::default();
        i.begin_gathering(0, BTreeSet::new());
        i.register("chat:a:1", 2, 10);
        i.forget("chat:a:1", 2, 9);
        assert_eq!(i.targets("chat:a:1", 0, &[2]), vec![2]);
        i.forget("chat:a:1", 2, 10);
        assert!(i.targets("chat:a:1", 0, &[2]).is_empty());
    }

    #[test]
    fn nodes_not_heard_from_get_every_event_of_a_shard_taken_over() {
        let i = Interest::default();
        i.begin_gathering(4, BTreeSet::from([2, 3]));
        assert_eq!(i.targets("chat:a:1", 4, &[2, 3]), vec![2, 3]);
        i.reported(4, 2, vec![("chat:a:1".into(), 7)], |_| true);
        assert_eq!(i.targets("chat:a:1", 4, &[2, 3]), vec![2, 3]);
        assert_eq!(i.targets("chat:a:9", 4, &[2, 3]), vec![3]);
        i.reported(4, 3, vec![], |_| true);
        assert_eq!(i.targets("chat:a:9", 4, &[2, 3]), Vec::<NodeId>::new());
        assert_eq!(i.targets("chat:a:1", 4, &[2, 3]), vec![2]);
        assert!(i.waiting(4).is_empty());
    }
}
