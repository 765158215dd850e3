//! Shard placement: deciding which nodes replicate each data shard and which
//! replica should lead it.
//!
//! This module owns the *target* layout of the data shards across the active
//! nodes: every shard gets `min(replication, active nodes)` voting replicas,
//! replica counts and leader counts are spread evenly over the active nodes,
//! and replicas that are already in a good place stay where they are so that
//! a change of membership moves as little data as possible.
//!
//! [`place`] is a pure, deterministic function (no IO, no async, no
//! randomness, no hash-order iteration). The meta leader's reconciler compares
//! the map it returns with the current one and carries out the difference one
//! shard at a time; because the decision itself has no side effects, tests can
//! drive it directly and recomputing it mid-way is always safe: placing an
//! already placed map returns it unchanged.
//!
//! The algorithm:
//! 1. keep the current replicas that sit on active nodes;
//! 2. trim shards with too many replicas, dropping from the most-loaded nodes;
//! 3. fill shards with too few replicas from the least-loaded nodes;
//! 4. rebalance by moving single replicas from a most-loaded node to a
//!    least-loaded one until the counts differ by at most one;
//! 5. keep every current leader that is still a replica, elect the
//!    least-loaded replica for the rest, then balance leader counts by moving
//!    leadership along shortest augmenting paths over shards.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

/// Identifier of a cluster node.
pub type NodeId = u64;

/// Identifier of a data shard; data shards are numbered `1..=S`.
pub type ShardId = u32;

/// Where one data shard lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlacement {
    /// Voting replicas, sorted ascending, no duplicates.
    pub replicas: Vec<NodeId>,
    /// The replica that should lead the shard (None only when replicas is empty).
    pub leader: Option<NodeId>,
}

/// The whole map: shard id -> placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    /// Placement of every data shard, keyed by shard id.
    pub shards: BTreeMap<ShardId, ShardPlacement>,
}

impl ShardMap {
    /// A map with shards `1..=shards`, each replicated on `node` alone and led by it.
    pub fn new_single(shards: u32, node: NodeId) -> ShardMap {
        let placement = ShardPlacement {
            replicas: vec![node],
            leader: Some(node),
        };
        ShardMap {
            shards: (1..=shards).map(|id| (id, placement.clone())).collect(),
        }
    }

    /// How many replicas each node holds (nodes holding none are absent).
    pub fn replica_counts(&self) -> BTreeMap<NodeId, usize> {
        let mut counts = BTreeMap::new();
        for placement in self.shards.values() {
            for node in &placement.replicas {
                *counts.entry(*node).or_insert(0) += 1;
            }
        }
        counts
    }

    /// How many shards each node leads (nodes leading none are absent).
    pub fn leader_counts(&self) -> BTreeMap<NodeId, usize> {
        let mut counts = BTreeMap::new();
        for leader in self.shards.values().filter_map(|p| p.leader) {
            *counts.entry(leader).or_insert(0) += 1;
        }
        counts
    }
}

/// Replica sets of every shard, under construction.
type Replicas = BTreeMap<ShardId, BTreeSet<NodeId>>;

/// Per-node count (replicas or leaders) over every active node, zeros included.
type Load = BTreeMap<NodeId, usize>;

/// Target map: given the active nodes (the only nodes allowed to hold replicas), the current map
/// and the replication factor, return the target map.
///
/// The result has exactly the shard ids of `current`; every shard has
/// `min(replication, distinct active nodes)` replicas, replica and leader counts
/// per active node differ by at most one, and an input that already satisfies
/// all of this is returned unchanged.
pub fn place(active: &[NodeId], current: &ShardMap, replication: usize) -> ShardMap {
    let active: BTreeSet<NodeId> = active.iter().copied().collect();
    let target = replication.min(active.len());
    let hints = current_leaders(current);

    let mut replicas = keep_active(&active, current);
    let mut load = replica_load(&active, &replicas);
    trim(&mut replicas, &mut load, &hints, target);
    fill(&mut replicas, &mut load, target);
    rebalance(&mut replicas, &mut load, &hints);

    let mut leaders = initial_leaders(&active, &replicas, &hints);
    balance_leaders(&replicas, &mut leaders);
    assemble(replicas, &leaders.leader)
}

/// Number of replica additions + removals needed to go from `a` to `b` (symmetric difference summed over shards),
/// useful for tests and logs.
pub fn replica_moves(a: &ShardMap, b: &ShardMap) -> usize {
    let ids: BTreeSet<ShardId> = a.shards.keys().chain(b.shards.keys()).copied().collect();
    ids.into_iter()
        .map(|id| {
            let before = replica_set(a, id);
            let after = replica_set(b, id);
            before.symmetric_difference(&after).count()
        })
        .sum()
}

/// The replicas of shard `id` in `map` as a set (empty when the shard is absent).
fn replica_set(map: &ShardMap, id: ShardId) -> BTreeSet<NodeId> {
    map.shards
        .get(&id)
        .map(|p| p.replicas.iter().copied().collect())
        .unwrap_or_default()
}

/// The current leader of every shard that has one.
fn current_leaders(current: &ShardMap) -> BTreeMap<ShardId, NodeId> {
    current
        .shards
        .iter()
        .filter_map(|(id, p)| p.leader.map(|leader| (*id, leader)))
        .collect()
}

/// Step 1: every shard of `current`, keeping only replicas on active nodes.
fn keep_active(active: &BTreeSet<NodeId>, current: &ShardMap) -> Replicas {
    current
        .shards
        .iter()
        .map(|(id, p)| {
            let kept = p.replicas.iter().copied().filter(|n| active.contains(n));
            (*id, kept.collect())
        })
        .collect()
}

/// Replica count of every active node (zero for nodes holding none).
fn replica_load(active: &BTreeSet<NodeId>, replicas: &Replicas) -> Load {
    let mut load: Load = active.iter().map(|n| (*n, 0)).collect();
    for node in replicas.values().flatten() {
        if let Some(count) = load.get_mut(node) {
            *count += 1;
        }
    }
    load
}

/// Count of `node` in `load` (zero when absent).
fn count(load: &Load, node: NodeId) -> usize {
    load.get(&node).copied().unwrap_or(0)
}

/// Adds one to the count of `node`.
fn incr(load: &mut Load, node: NodeId) {
    *load.entry(node).or_insert(0) += 1;
}

/// Takes one from the count of `node`.
fn decr(load: &mut Load, node: NodeId) {
    if let Some(entry) = load.get_mut(&node) {
        *entry = entry.saturating_sub(1);
    }
}

/// Step 2: drop replicas from over-replicated shards, most-loaded node first,
/// sparing the current leader on ties.
fn trim(
    replicas: &mut Replicas,
    load: &mut Load,
    hints: &BTreeMap<ShardId, NodeId>,
    target: usize,
) {
    for (id, set) in replicas.iter_mut() {
        let leader = hints.get(id).copied();
        while set.len() > target {
            let victim = set
                .iter()
                .copied()
                .max_by_key(|n| (count(load, *n), Some(*n) != leader, *n));
            let Some(victim) = victim else { break };
            set.remove(&victim);
            decr(load, victim);
        }
    }
}

/// Step 3: add replicas to under-replicated shards, least-loaded node first
/// (ties broken by the lower node id).
fn fill(replicas: &mut Replicas, load: &mut Load, target: usize) {
    for set in replicas.values_mut() {
        while set.len() < target {
            let pick = load
                .iter()
                .filter(|(n, _)| !set.contains(n))
                .min_by_key(|(n, c)| (**c, **n))
                .map(|(n, _)| *n);
            // `target` never exceeds the number of active nodes, so a pick exists.
            let Some(pick) = pick else { break };
            set.insert(pick);
            incr(load, pick);
        }
    }
}

/// Step 4: while replica counts differ by more than one, move one replica from
/// a most-loaded node to a least-loaded node.
///
/// A shard holding the former but not the latter always exists, because the
/// former holds more replicas than the latter. Every move lowers the sum of
/// squared counts, so the loop terminates.
fn rebalance(replicas: &mut Replicas, load: &mut Load, hints: &BTreeMap<ShardId, NodeId>) {
    while let Some((from, to)) = extremes(load) {
        let Some(shard) = shard_to_move(replicas, hints, from, to) else {
            break;
        };
        if let Some(set) = replicas.get_mut(&shard) {
            set.remove(&from);
            set.insert(to);
            decr(load, from);
            incr(load, to);
        }
    }
}

/// The (most-loaded, least-loaded) pair of nodes when their counts differ by
/// more than one; ties go to the lower node id.
fn extremes(load: &Load) -> Option<(NodeId, NodeId)> {
    let (max_node, max) = load.iter().max_by_key(|(n, c)| (**c, Reverse(**n)))?;
    let (min_node, min) = load.iter().min_by_key(|(n, c)| (**c, **n))?;
    (*max > *min + 1).then_some((*max_node, *min_node))
}

/// A shard holding `from` but not `to`, preferring shards `from` does not lead,
/// then the lowest shard id.
fn shard_to_move(
    replicas: &Replicas,
    hints: &BTreeMap<ShardId, NodeId>,
    from: NodeId,
    to: NodeId,
) -> Option<ShardId> {
    replicas
        .iter()
        .filter(|(_, set)| set.contains(&from) && !set.contains(&to))
        .min_by_key(|(id, _)| (hints.get(id) == Some(&from), **id))
        .map(|(id, _)| *id)
}

/// Leader choice under construction.
struct Leaders {
    /// Leader of every shard with at least one replica.
    leader: BTreeMap<ShardId, NodeId>,
    /// Leader count of every active node (zero for nodes leading none).
    load: Load,
}

/// Step 5a: keep every current leader that is still a replica; give each other
/// non-empty shard its least-leader-loaded replica (ties to the lower node id).
fn initial_leaders(
    active: &BTreeSet<NodeId>,
    replicas: &Replicas,
    hints: &BTreeMap<ShardId, NodeId>,
) -> Leaders {
    let mut leaders = Leaders {
        leader: BTreeMap::new(),
        load: active.iter().map(|n| (*n, 0)).collect(),
    };
    for (id, set) in replicas {
        if let Some(leader) = hints.get(id).filter(|l| set.contains(l)) {
            leaders.leader.insert(*id, *leader);
            incr(&mut leaders.load, *leader);
        }
    }
    for (id, set) in replicas {
        if leaders.leader.contains_key(id) {
            continue;
        }
        let pick = set
            .iter()
            .copied()
            .min_by_key(|n| (count(&leaders.load, *n), *n));
        if let Some(pick) = pick {
            leaders.leader.insert(*id, pick);
            incr(&mut leaders.load, pick);
        }
    }
    leaders
}

/// Step 5b: even out leader counts so that they differ by at most one.
///
/// Each round runs a breadth-first search over shards from the nodes leading
/// the most shards (`max`): a node may hand a shard it leads to any other
/// replica of that shard. The search stops at the first node leading at most
/// `max - 2` shards, and leadership shifts along that shortest path. Only the
/// two end counts change (`max` down by one, the other up by one), which
/// lowers the sum of squared counts, so the loop terminates. A direct move is
/// just a path of length one.
///
/// With balanced replica counts (step 4) and `r >= 1` the search always
/// succeeds while the counts differ by two or more, so the result is always
/// leader-balanced. Let `R` be the nodes it reaches and `Q` the rest; `Q`
/// holds a node leading at most `max - 2`, and a shard led from `R` has all
/// its replicas in `R`. With `S` shards on `n` nodes:
/// * if `max <= ceil(S/n)`: every replica on a `Q` node belongs to a shard led
///   from `Q`; each `Q` node holds at least `floor(S*r/n) >= r * floor(S/n)`
///   replicas, so `Q` leads at least `|Q| * floor(S/n)` shards. Yet every `Q`
///   node leads at most `max - 1 <= floor(S/n)` and one leads fewer.
/// * if `max > ceil(S/n)`: `R` leads more than `|R| * ceil(S/n)` shards, whose
///   replicas (more than `|R| * r * ceil(S/n)`) all sit in `R`, which holds at
///   most `|R| * ceil(S*r/n) <= |R| * r * ceil(S/n)`.
///
/// Both cases are contradictions.
fn balance_leaders(replicas: &Replicas, leaders: &mut Leaders) {
    loop {
        let (Some(max), Some(min)) = (
            leaders.load.values().max().copied(),
            leaders.load.values().min().copied(),
        ) else {
            return;
        };
        if max <= min + 1 || !shift_leadership(replicas, leaders, max) {
            // The search cannot fail while unbalanced (see above); stopping is
            // only a guard against spinning.
            return;
        }
    }
}

/// Shards each node currently leads.
fn led_by(leaders: &Leaders) -> BTreeMap<NodeId, Vec<ShardId>> {
    let mut led: BTreeMap<NodeId, Vec<ShardId>> = BTreeMap::new();
    for (id, node) in &leaders.leader {
        led.entry(*node).or_default().push(*id);
    }
    led
}

/// For each node reached by the search: the node it was reached from and the
/// shard whose leadership would move along that edge.
type Parents = BTreeMap<NodeId, (NodeId, ShardId)>;

/// Searches from the nodes leading `max` shards to a node leading at most
/// `max - 2`; on success hands leadership down the path and returns true.
fn shift_leadership(replicas: &Replicas, leaders: &mut Leaders, max: usize) -> bool {
    let led = led_by(leaders);
    let sources: Vec<NodeId> = nodes_with(&leaders.load, max);
    let mut parents = Parents::new();
    let mut seen: BTreeSet<NodeId> = sources.iter().copied().collect();
    let mut queue: VecDeque<NodeId> = sources.into_iter().collect();
    while let Some(giver) = queue.pop_front() {
        for shard in led.get(&giver).into_iter().flatten() {
            for taker in replicas.get(shard).into_iter().flatten() {
                if !seen.insert(*taker) {
                    continue;
                }
                parents.insert(*taker, (giver, *shard));
                if count(&leaders.load, *taker) + 2 <= max {
                    apply_path(leaders, &parents, *taker);
                    return true;
                }
                queue.push_back(*taker);
            }
        }
    }
    false
}

/// Walks back from `sink` to the search root, giving each edge's shard to the
/// node the edge leads to.
fn apply_path(leaders: &mut Leaders, parents: &Parents, sink: NodeId) {
    let mut node = sink;
    while let Some((giver, shard)) = parents.get(&node) {
        leaders.leader.insert(*shard, node);
        node = *giver;
    }
    incr(&mut leaders.load, sink);
    decr(&mut leaders.load, node);
}

/// Nodes whose count equals `value`, in ascending id order.
fn nodes_with(load: &Load, value: usize) -> Vec<NodeId> {
    load.iter()
        .filter(|(_, c)| **c == value)
        .map(|(n, _)| *n)
        .collect()
}

/// Builds the output map from the final replica sets and leaders.
fn assemble(replicas: Replicas, leaders: &BTreeMap<ShardId, NodeId>) -> ShardMap {
    let shards = replicas
        .into_iter()
        .map(|(id, set)| {
            let placement = ShardPlacement {
                replicas: set.into_iter().collect(),
                leader: leaders.get(&id).copied(),
            };
            (id, placement)
        })
        .collect();
    ShardMap { shards }
}

/// Moves the leadership of every shard led by a node of `avoid` (draining nodes) to another of
/// its replicas, the one leading fewest shards so far (lowest id on ties), so that taking those
/// nodes down interrupts no shard. A shard whose replicas are all in `avoid` keeps its leader.
/// Replicas are untouched: a draining node keeps its data and comes back.
pub fn keep_leaders_off(map: &mut ShardMap, avoid: &BTreeSet<NodeId>) {
    if avoid.is_empty() {
        return;
    }
    let mut led = map.leader_counts();
    for placement in map.shards.values_mut() {
        let Some(leader) = placement.leader.filter(|l| avoid.contains(l)) else {
            continue;
        };
        let Some(&next) = placement
            .replicas
            .iter()
            .filter(|r| !avoid.contains(r))
            .min_by_key(|r| (led.get(r).copied().unwrap_or(0), **r))
        else {
            continue;
        };
        placement.leader = Some(next);
        *led.entry(next).or_insert(0) += 1;
        if let Some(n) = led.get_mut(&leader) {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draining_nodes_lead_nothing_while_another_replica_can() {
        let mut map = place(&[1, 2, 3], &ShardMap::new_single(6, 1), 3);
        keep_leaders_off(&mut map, &BTreeSet::from([2]));
        assert!(map
            .shards
            .values()
            .all(|p| p.leader.is_some() && p.leader != Some(2)));
        let counts = map.leader_counts();
        assert_eq!(counts.get(&1), Some(&3), "{counts:?}");
        assert_eq!(counts.get(&3), Some(&3), "{counts:?}");
        // Replicas stay where they were.
        assert!(map.shards.values().all(|p| p.replicas == vec![1, 2, 3]));
        // Alone, a draining node keeps leading its shards.
        let mut single = ShardMap::new_single(2, 7);
        keep_leaders_off(&mut single, &BTreeSet::from([7]));
        assert!(single.shards.values().all(|p| p.leader == Some(7)));
    }
    use proptest::prelude::*;
    use proptest::sample::Index;
    use proptest::test_runner::RngSeed;

    /// A map with shards numbered from 1, one entry per `(replicas, leader)`.
    fn map_of(entries: &[(&[NodeId], Option<NodeId>)]) -> ShardMap {
        let shards = (1..)
            .zip(entries)
            .map(|(id, (replicas, leader))| {
                let placement = ShardPlacement {
                    replicas: replicas.to_vec(),
                    leader: *leader,
                };
                (id, placement)
            })
            .collect();
        ShardMap { shards }
    }

    /// Distinct active nodes, ascending.
    fn distinct(active: &[NodeId]) -> BTreeSet<NodeId> {
        active.iter().copied().collect()
    }

    /// `counts` extended with a zero for every active node missing from it.
    fn over_active(active: &[NodeId], counts: BTreeMap<NodeId, usize>) -> Vec<usize> {
        distinct(active)
            .iter()
            .map(|n| counts.get(n).copied().unwrap_or(0))
            .collect()
    }

    /// Max minus min of `counts` (zero when empty).
    fn spread(counts: &[usize]) -> usize {
        let max = counts.iter().max().copied().unwrap_or(0);
        let min = counts.iter().min().copied().unwrap_or(0);
        max - min
    }

    /// Asserts properties 1-3 and the edge cases for `out = place(active, current, replication)`.
    fn assert_valid(active: &[NodeId], current: &ShardMap, replication: usize, out: &ShardMap) {
        let nodes = distinct(active);
        let r = replication.min(nodes.len());
        let ids: Vec<_> = out.shards.keys().collect();
        assert_eq!(ids, current.shards.keys().collect::<Vec<_>>(), "shard ids");
        for (id, p) in &out.shards {
            assert_eq!(p.replicas.len(), r, "shard {id}: replica count");
            assert!(
                p.replicas.windows(2).all(|w| w[0] < w[1]),
                "shard {id}: sorted"
            );
            assert!(
                p.replicas.iter().all(|n| nodes.contains(n)),
                "shard {id}: active"
            );
            match p.leader {
                Some(l) => assert!(p.replicas.contains(&l), "shard {id}: leader is a replica"),
                None => assert!(p.replicas.is_empty(), "shard {id}: leader missing"),
            }
        }
        let replicas = over_active(active, out.replica_counts());
        assert!(spread(&replicas) <= 1, "replica counts {replicas:?}");
        let leaders = over_active(active, out.leader_counts());
        if r >= 1 {
            assert!(spread(&leaders) <= 1, "leader counts {leaders:?}");
        } else {
            assert!(leaders.iter().all(|c| *c == 0), "no leaders when r = 0");
        }
    }

    /// Places, checks properties 1-3 and idempotence, and returns the result.
    fn place_checked(active: &[NodeId], current: &ShardMap, replication: usize) -> ShardMap {
        let out = place(active, current, replication);
        assert_valid(active, current, replication, &out);
        assert_eq!(place(active, &out, replication), out, "idempotent");
        out
    }

    /// `ceil(a / b)` for `b > 0`.
    fn ceil_div(a: usize, b: usize) -> usize {
        a.div_ceil(b)
    }

    #[test]
    fn balanced_for_one_to_five_nodes() {
        let start = ShardMap::new_single(16, 1);
        for n in 1..=5u64 {
            let active: Vec<NodeId> = (1..=n).collect();
            let out = place_checked(&active, &start, 3);
            let r = 3.min(n as usize);
            assert!(out.shards.values().all(|p| p.replicas.len() == r));
        }
    }

    #[test]
    fn adding_a_node_moves_few_replicas() {
        let three = place_checked(&[1, 2, 3], &ShardMap::new_single(16, 1), 3);
        let four = place_checked(&[1, 2, 3, 4], &three, 3);
        let moves = replica_moves(&three, &four);
        assert!(moves <= ceil_div(16 * 3, 4) * 2, "moves {moves}");
        assert_eq!(four.replica_counts().get(&4), Some(&12));
    }

    #[test]
    fn removing_a_node_moves_only_its_replicas() {
        let four = place_checked(&[1, 2, 3, 4], &ShardMap::new_single(16, 1), 3);
        let held = four.replica_counts().get(&4).copied().unwrap_or(0);
        let three = place_checked(&[1, 2, 3], &four, 3);
        let moves = replica_moves(&four, &three);
        assert!(moves <= 2 * held + 2 * 4, "moves {moves}, held {held}");
        assert!(three.shards.values().all(|p| p.replicas == [1, 2, 3]));
    }

    #[test]
    fn placement_is_idempotent() {
        let start = ShardMap::new_single(16, 1);
        let once = place(&[1, 2, 3, 4, 5], &start, 3);
        assert_eq!(place(&[1, 2, 3, 4, 5], &once, 3), once);
        assert_eq!(place(&[5, 4, 3, 2, 1, 3], &once, 3), once);
    }

    #[test]
    fn balanced_map_is_unchanged() {
        let map = map_of(&[(&[1, 2], Some(2)), (&[2, 3], Some(3)), (&[1, 3], Some(1))]);
        assert_eq!(place(&[1, 2, 3], &map, 2), map);
    }

    #[test]
    fn leader_balance_uses_augmenting_path() {
        // Node 1 leads two shards, node 4 none, and no shard of node 1 holds
        // node 4: leadership must move 1 -> 2 (shard 1) and 2 -> 4 (shard 3).
        let map = map_of(&[
            (&[1, 2], Some(1)),
            (&[1, 3], Some(1)),
            (&[2, 4], Some(2)),
            (&[3, 4], Some(3)),
        ]);
        let out = place_checked(&[1, 2, 3, 4], &map, 2);
        let expected = map_of(&[
            (&[1, 2], Some(2)),
            (&[1, 3], Some(1)),
            (&[2, 4], Some(4)),
            (&[3, 4], Some(3)),
        ]);
        assert_eq!(out, expected);
    }

    #[test]
    fn empty_active_clears_everything() {
        let out = place_checked(&[], &ShardMap::new_single(4, 1), 3);
        assert!(out
            .shards
            .values()
            .all(|p| p.replicas.is_empty() && p.leader.is_none()));
        assert_eq!(out.shards.len(), 4);
    }

    #[test]
    fn zero_replication_clears_everything() {
        let out = place_checked(&[1, 2, 3], &ShardMap::new_single(4, 1), 0);
        assert!(out
            .shards
            .values()
            .all(|p| p.replicas.is_empty() && p.leader.is_none()));
    }

    #[test]
    fn fewer_nodes_than_replication_uses_all() {
        let out = place_checked(&[7, 3], &ShardMap::new_single(5, 1), 3);
        assert!(out.shards.values().all(|p| p.replicas == [3, 7]));
    }

    #[test]
    fn inactive_nodes_are_dropped() {
        let map = map_of(&[(&[9, 1], Some(9)), (&[2, 9, 1], Some(1))]);
        let out = place_checked(&[1, 2], &map, 2);
        assert!(out.replica_counts().keys().all(|n| *n == 1 || *n == 2));
        assert_eq!(out.shards[&2].leader, Some(1), "surviving leader kept");
    }

    #[test]
    fn new_single_and_counts() {
        let map = ShardMap::new_single(3, 7);
        assert_eq!(map.shards.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(map.replica_counts(), BTreeMap::from([(7, 3)]));
        assert_eq!(map.leader_counts(), BTreeMap::from([(7, 3)]));
    }

    #[test]
    fn replica_moves_counts_symmetric_difference() {
        let a = map_of(&[(&[1, 2], Some(1)), (&[1], Some(1))]);
        let b = map_of(&[(&[2, 3], Some(2)), (&[1], Some(1)), (&[4], Some(4))]);
        assert_eq!(replica_moves(&a, &b), 3);
        assert_eq!(replica_moves(&b, &a), 3);
        assert_eq!(replica_moves(&a, &a), 0);
    }

    /// Active node lists: ids 1..=12, up to 8 entries, duplicates and any order allowed.
    fn active_nodes() -> impl Strategy<Value = Vec<NodeId>> {
        prop::collection::vec(1u64..=12, 0..=8)
    }

    /// Random starting maps: 1..=64 shards, replicas drawn from ids 1..=12,
    /// leader one of them or None.
    fn start_maps() -> impl Strategy<Value = ShardMap> {
        let shard = (
            prop::collection::vec(1u64..=12, 0..=6),
            any::<Option<Index>>(),
        );
        prop::collection::vec(shard, 1..=64).prop_map(|shards| {
            let shards = (1..)
                .zip(shards)
                .map(|(id, (replicas, leader))| {
                    let leader = leader
                        .filter(|_| !replicas.is_empty())
                        .map(|i| *i.get(&replicas));
                    (id, ShardPlacement { replicas, leader })
                })
                .collect();
            ShardMap { shards }
        })
    }

    /// Fixed seed and no regression files: the same cases on every run.
    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 256,
            rng_seed: RngSeed::Fixed(0x5eed_9a1a),
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn prop_target_is_valid_and_idempotent(
            active in active_nodes(),
            current in start_maps(),
            replication in 0usize..=5,
        ) {
            place_checked(&active, &current, replication);
        }

        #[test]
        fn prop_deterministic_and_order_free(
            active in active_nodes(),
            current in start_maps(),
            replication in 0usize..=5,
        ) {
            let out = place(&active, &current, replication);
            prop_assert_eq!(&place(&active, &current, replication), &out);
            let mut reordered = active.clone();
            reordered.reverse();
            reordered.extend(active.iter().copied());
            prop_assert_eq!(&place(&reordered, &current, replication), &out);
        }

        #[test]
        fn prop_balanced_replicas_never_move(
            active in active_nodes(),
            current in start_maps(),
            replication in 0usize..=5,
        ) {
            let mut out = place(&active, &current, replication);
            for p in out.shards.values_mut() {
                p.leader = p.replicas.first().copied();
            }
            let again = place(&active, &out, replication);
            prop_assert_eq!(replica_moves(&out, &again), 0);
        }

        #[test]
        fn prop_adding_a_node_moves_few(
            active in prop::collection::btree_set(1u64..=12, 1..=8),
            current in start_maps(),
            replication in 1usize..=5,
            new_node in 13u64..=20,
        ) {
            let old: Vec<NodeId> = active.iter().copied().collect();
            let before = place(&old, &current, replication);
            let mut grown = old.clone();
            grown.push(new_node);
            let after = place_checked(&grown, &before, replication);
            let r = replication.min(grown.len());
            let bound = ceil_div(before.shards.len() * r, grown.len()) * 2;
            let moves = replica_moves(&before, &after);
            prop_assert!(moves <= bound, "moves {} > bound {}", moves, bound);
        }

        #[test]
        fn prop_removing_a_node_moves_few(
            active in prop::collection::btree_set(1u64..=12, 1..=8),
            current in start_maps(),
            replication in 1usize..=5,
            gone in any::<Index>(),
        ) {
            let old: Vec<NodeId> = active.iter().copied().collect();
            let before = place(&old, &current, replication);
            let gone = *gone.get(&old);
            let held = before.replica_counts().get(&gone).copied().unwrap_or(0);
            let shrunk: Vec<NodeId> = old.iter().copied().filter(|n| *n != gone).collect();
            let after = place_checked(&shrunk, &before, replication);
            let moves = replica_moves(&before, &after);
            let bound = 2 * held + 2 * old.len();
            prop_assert!(moves <= bound, "moves {} > bound {}", moves, bound);
        }
    }
}
