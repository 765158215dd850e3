//! The meta group's state (group 0): the cluster's nodes, the shard map and settings.
//!
//! Every node replicates group 0, so routing and placement read it locally. Commands are
//! [`MetaCommand`]s; [`MetaApplier`] applies them deterministically and publishes each new state on a
//! `watch` channel that the node's group manager, address book and reconciler follow. Commands of
//! the layers above (apps, API keys, users, ...) ride in [`MetaCommand::Upper`] and go to the
//! applier they supplied.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use chatsdk_storage::{Applier, ApplyContext, GroupId, GroupReader, KvBatch, NodeId, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::codec;
use crate::placement::{ShardId, ShardMap, ShardPlacement};
use crate::trust::{self, TrustState};

/// The meta group's id.
pub const META_GROUP: GroupId = 0;

const STATE_KEY: &[u8] = b"cluster/state";
/// The live join tokens ([`JoinTokens`]), kept beside the state so that its encoding stays.
const JOIN_TOKENS_KEY: &[u8] = b"cluster/join-tokens";
/// The CA rotation ([`TrustState`]), beside the state for the same reason.
const TRUST_KEY: &[u8] = b"cluster/trust";

/// A join token as the cluster remembers it: never the secret, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenRecord {
    /// Milliseconds since the epoch, by the clock of the node that minted it.
    pub expires_at_ms: u64,
    /// Spent by its first join.
    pub single_use: bool,
}

/// The join tokens that have not expired (or been spent), by the SHA-256 of their secret.
pub type JoinTokens = BTreeMap<String, JoinTokenRecord>;
/// Nodes admitted but not yet active, at most: a leaked join token cannot grow the meta state
/// (and the meta group's learners) without bound.
pub const MAX_JOINING: usize = 8;
/// Live join tokens at most (each minted by an admin; expired ones are forgotten).
pub const MAX_JOIN_TOKENS: usize = 1000;

/// Where a node is in its life in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Admitted; catching up on the meta group before it takes shards.
    Joining,
    /// A full member: holds shard replicas and leads its share.
    Active,
    /// Asked to leave (or being removed): its replicas are being moved away.
    Leaving,
    /// Gone from every group.
    Removed,
    /// An active member that an operator is taking down for a while (an upgrade, a restart):
    /// it keeps its replicas, but leads no shard, so its restart interrupts no writes. It
    /// turns active again when it restarts. (Last, so that stored states keep their encoding.)
    Draining,
}

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    /// Advertised cluster (QUIC) address.
    pub addr: String,
    pub state: NodeState,
}

/// One data shard: where it should live, and whether its Raft membership has caught up with that.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    pub placement: ShardPlacement,
    /// False while the shard's membership is being changed to `placement.replicas`; nodes drop
    /// a replica that is no longer placed only once the change is settled.
    pub settled: bool,
}

/// Secrets that let any node admit new nodes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinAuthority {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    /// SHA-256 (hex) of the permanent join secret of clusters made by older builds; no longer
    /// accepted (empty in new clusters): joins take expiring tokens ([`JoinTokens`]).
    pub join_secret_sha256: String,
}

/// The CA key stays out of every log line (and so does the state that holds it).
impl std::fmt::Debug for JoinAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinAuthority")
            .field("ca_key_pem", &crate::join::REDACTED)
            .finish_non_exhaustive()
    }
}

/// The state of group 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    pub cluster_id: String,
    /// The node that created the cluster (0 before bootstrap).
    pub bootstrapped_by: NodeId,
    /// Number of data shards, fixed at bootstrap.
    pub shards: u32,
    /// Replicas per shard (capped by the number of active nodes).
    pub replication: usize,
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    pub shard_map: BTreeMap<ShardId, ShardRecord>,
    pub settings: BTreeMap<String, String>,
    pub authority: Option<JoinAuthority>,
    pub next_node_id: NodeId,
    /// Where the CA rotation stands; stored under its own key (not in the state's encoding).
    #[serde(skip)]
    pub trust: TrustState,
}

impl MetaState {
    /// Ids of the full members: nodes in state [`NodeState::Active`] or
    /// [`NodeState::Draining`] (a draining node keeps its replicas).
    pub fn active_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| matches!(n.state, NodeState::Active | NodeState::Draining))
            .map(|n| n.id)
            .collect()
    }

    /// Ids of the nodes in `state`.
    pub fn nodes_in(&self, state: NodeState) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.state == state)
            .map(|n| n.id)
            .collect()
    }

    /// The shard map in the form placement works on.
    pub fn placement_map(&self) -> ShardMap {
        ShardMap {
            shards: self
                .shard_map
                .iter()
                .map(|(id, rec)| (*id, rec.placement.clone()))
                .collect(),
        }
    }

    /// Shards that `node` replicates.
    pub fn shards_of(&self, node: NodeId) -> Vec<ShardId> {
        self.shard_map
            .iter()
            .filter(|(_, r)| r.placement.replicas.contains(&node))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// A change to the meta state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Creates the cluster; refused once bootstrapped.
    Bootstrap {
        cluster_id: String,
        node: NodeId,
        addr: String,
        shards: u32,
        replication: usize,
        authority: JoinAuthority,
    },
    /// Admits a node in state Joining and allocates its id (reply: [`MetaReply::NodeId`]).
    AddNode {
        addr: String,
    },
    SetNodeState {
        id: NodeId,
        state: NodeState,
    },
    SetNodeAddr {
        id: NodeId,
        addr: String,
    },
    SetShard {
        shard: ShardId,
        record: ShardRecord,
    },
    SetSetting {
        key: String,
        value: String,
    },
    /// A command of the layer above, applied by its own applier.
    Upper(Vec<u8>),
    /// Remembers a join token (its secret's SHA-256) until it expires; forgets the expired
    /// ones. `now_ms`: the minting node's clock.
    MintJoinToken {
        secret_sha256: String,
        expires_at_ms: u64,
        single_use: bool,
        now_ms: u64,
    },
    /// [`MetaCommand::AddNode`] for the holder of a live join token (spent if single-use);
    /// `now_ms`: the admitting node's clock.
    JoinWithToken {
        addr: String,
        secret_sha256: String,
        now_ms: u64,
    },
    /// Stages a new cluster CA (see [`crate::trust`]); it issues certificates once every member
    /// trusts it.
    RotateCa {
        authority: JoinAuthority,
    },
    /// `node` trusts the staged CA whose fingerprint is `ca`.
    TrustsCa {
        node: NodeId,
        ca: String,
    },
    /// `node`'s certificate is issued by the current CA, whose fingerprint is `ca`.
    RenewedUnderCa {
        node: NodeId,
        ca: String,
    },
}

/// The result of a [`MetaCommand`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaReply {
    Ok,
    NodeId(NodeId),
    Refused(String),
    Upper(Vec<u8>),
}

/// Applies [`MetaCommand`]s and publishes the resulting state.
pub struct MetaApplier {
    state: watch::Sender<Arc<MetaState>>,
    upper: Option<Arc<dyn Applier>>,
    reader: OnceLock<GroupReader>,
}

impl MetaApplier {
    /// A new applier; `upper` receives [`MetaCommand::Upper`] commands.
    pub fn new(upper: Option<Arc<dyn Applier>>) -> Arc<MetaApplier> {
        let (state, _) = watch::channel(Arc::new(MetaState::default()));
        Arc::new(MetaApplier {
            state,
            upper,
            reader: OnceLock::new(),
        })
    }

    /// Connects the applier to its group's stored state and publishes it.
    pub fn attach(&self, reader: GroupReader) -> Result<(), StoreError> {
        let current = load(&reader)?;
        self.state.send_replace(Arc::new(current));
        // A second attach (never done) would keep the first reader.
        let _first_wins = self.reader.set(reader);
        Ok(())
    }

    /// Follows the meta state.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetaState>> {
        self.state.subscribe()
    }

    /// The latest applied meta state.
    pub fn current(&self) -> Arc<MetaState> {
        self.state.borrow().clone()
    }
}

fn load(reader: &GroupReader) -> Result<MetaState, StoreError> {
    let mut state = match reader.get(STATE_KEY)? {
        Some(raw) => decode_state(&raw)?,
        None => MetaState::default(),
    };
    if let Some(raw) = reader.get(TRUST_KEY)? {
        state.trust = codec::decode(&raw).map_err(storage_error)?;
    }
    Ok(state)
}

fn decode_state(raw: &[u8]) -> Result<MetaState, StoreError> {
    codec::decode(raw).map_err(storage_error)
}

/// A codec failure inside the state machine, as the storage layer reports it.
fn storage_error(e: crate::ClusterError) -> StoreError {
    StoreError::Decode(bincode::error::DecodeError::OtherString(e.to_string()))
}

fn encode_reply(reply: &MetaReply) -> Result<Vec<u8>, StoreError> {
    codec::encode(reply).map_err(storage_error)
}

impl Applier for MetaApplier {
    fn apply(
        &self,
        ctx: &ApplyContext,
        kv: &mut KvBatch<'_>,
        command: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let command: MetaCommand = match codec::decode(command) {
            Ok(c) => c,
            // A command this build cannot read is refused, identically on every replica.
            Err(e) => return encode_reply(&MetaReply::Refused(e.to_string())),
        };
        if let MetaCommand::Upper(body) = &command {
            let reply = match &self.upper {
                Some(upper) => MetaReply::Upper(upper.apply(ctx, kv, body)?),
                None => MetaReply::Refused("no upper-layer meta applier".into()),
            };
            return encode_reply(&reply);
        }
        let mut state = match kv.get(STATE_KEY)? {
            Some(raw) => decode_state(&raw)?,
            None => MetaState::default(),
        };
        if let Some(raw) = kv.get(TRUST_KEY)? {
            state.trust = codec::decode(&raw).map_err(storage_error)?;
        }
        let trust_before = state.trust.clone();
        let reply = if matches!(
            command,
            MetaCommand::MintJoinToken { .. } | MetaCommand::JoinWithToken { .. }
        ) {
            // The join tokens live beside the state: read and written by these commands only.
            let mut tokens: JoinTokens = match kv.get(JOIN_TOKENS_KEY)? {
                Some(raw) => codec::decode(&raw).map_err(storage_error)?,
                None => JoinTokens::new(),
            };
            let reply = token_transition(&mut state, &mut tokens, command);
            kv.put(
                JOIN_TOKENS_KEY,
                &codec::encode(&tokens).map_err(storage_error)?,
            );
            reply
        } else {
            transition(&mut state, command)
        };
        if trust::advance(&mut state) {
            // Live join tokens pin the CA that has just stopped issuing.
            kv.put(
                JOIN_TOKENS_KEY,
                &codec::encode(&JoinTokens::new()).map_err(storage_error)?,
            );
        }
        if state.trust != trust_before {
            kv.put(
                TRUST_KEY,
                &codec::encode(&state.trust).map_err(storage_error)?,
            );
        }
        kv.put(STATE_KEY, &codec::encode(&state).map_err(storage_error)?);
        self.state.send_replace(Arc::new(state));
        encode_reply(&reply)
    }

    fn applied(&self, group: GroupId, last_index: u64) {
        if let Some(upper) = &self.upper {
            upper.applied(group, last_index);
        }
    }

    fn snapshot_installed(&self, group: GroupId) {
        if let Some(reader) = self.reader.get() {
            match load(reader) {
                Ok(state) => {
                    self.state.send_replace(Arc::new(state));
                }
                Err(e) => tracing::error!(error = %e, "meta state unreadable after snapshot"),
            }
        }
        if let Some(upper) = &self.upper {
            upper.snapshot_installed(group);
        }
    }
}

/// The transition of the join-token commands: they read and write the tokens beside the state.
pub fn token_transition(
    state: &mut MetaState,
    tokens: &mut JoinTokens,
    command: MetaCommand,
) -> MetaReply {
    match command {
        MetaCommand::MintJoinToken {
            secret_sha256,
            expires_at_ms,
            single_use,
            now_ms,
        } => {
            if state.bootstrapped_by == 0 {
                return MetaReply::Refused("cluster not bootstrapped".into());
            }
            tokens.retain(|_, t| t.expires_at_ms > now_ms);
            if tokens.len() >= MAX_JOIN_TOKENS {
                return MetaReply::Refused(format!(
                    "{MAX_JOIN_TOKENS} join tokens are live; let some expire first"
                ));
            }
            tokens.insert(
                secret_sha256,
                JoinTokenRecord {
                    expires_at_ms,
                    single_use,
                },
            );
            MetaReply::Ok
        }
        MetaCommand::JoinWithToken {
            addr,
            secret_sha256,
            now_ms,
        } => {
            let Some(token) = tokens.get(&secret_sha256).cloned() else {
                return MetaReply::Refused(
                    "join refused: unknown, spent or expired join token (a CA rotation forgets the tokens minted before it)".into(),
                );
            };
            if token.expires_at_ms <= now_ms {
                tokens.remove(&secret_sha256);
                return MetaReply::Refused("join refused: the join token has expired".into());
            }
            let reply = transition(state, MetaCommand::AddNode { addr });
            if token.single_use && matches!(reply, MetaReply::NodeId(_)) {
                tokens.remove(&secret_sha256);
            }
            reply
        }
        other => transition(state, other),
    }
}

/// The pure state transition of a meta command.
pub fn transition(state: &mut MetaState, command: MetaCommand) -> MetaReply {
    match command {
        MetaCommand::Bootstrap {
            cluster_id,
            node,
            addr,
            shards,
            replication,
            authority,
        } => {
            if state.bootstrapped_by != 0 {
                return MetaReply::Refused("cluster already bootstrapped".into());
            }
            state.cluster_id = cluster_id;
            state.bootstrapped_by = node;
            state.shards = shards;
            state.replication = replication;
            state.nodes.insert(
                node,
                NodeRecord {
                    id: node,
                    addr,
                    state: NodeState::Active,
                },
            );
            state.next_node_id = node + 1;
            state.shard_map = ShardMap::new_single(shards, node)
                .shards
                .into_iter()
                .map(|(id, placement)| {
                    (
                        id,
                        ShardRecord {
                            placement,
                            settled: true,
                        },
                    )
                })
                .collect();
            state.authority = Some(authority);
            MetaReply::Ok
        }
        MetaCommand::AddNode { addr } => {
            if state.bootstrapped_by == 0 {
                return MetaReply::Refused("cluster not bootstrapped".into());
            }
            if state.nodes_in(NodeState::Joining).len() >= MAX_JOINING {
                return MetaReply::Refused(format!(
                    "{MAX_JOINING} nodes are already joining; remove stale ones first"
                ));
            }
            let id = state.next_node_id.max(1);
            state.next_node_id = id + 1;
            state.nodes.insert(
                id,
                NodeRecord {
                    id,
                    addr,
                    state: NodeState::Joining,
                },
            );
            MetaReply::NodeId(id)
        }
        MetaCommand::SetNodeState { id, state: new } => match state.nodes.get_mut(&id) {
            Some(node) if node.state == NodeState::Removed && new != NodeState::Removed => {
                MetaReply::Refused(format!("node {id} was removed"))
            }
            // Only a full member drains, and only a draining one comes back by restarting.
            Some(node)
                if new == NodeState::Draining
                    && !matches!(node.state, NodeState::Active | NodeState::Draining) =>
            {
                MetaReply::Refused(format!("node {id} is not active"))
            }
            Some(node) => {
                if new == NodeState::Removed && node.state != NodeState::Removed {
                    // It held the CA key: the CA is replaced (see `crate::trust`).
                    state.trust.rotation_due = true;
                }
                node.state = new;
                MetaReply::Ok
            }
            None => MetaReply::Refused(format!("no node {id}")),
        },
        MetaCommand::SetNodeAddr { id, addr } => match state.nodes.get_mut(&id) {
            Some(node) => {
                node.addr = addr;
                MetaReply::Ok
            }
            None => MetaReply::Refused(format!("no node {id}")),
        },
        MetaCommand::SetShard { shard, record } => {
            if !state.shard_map.contains_key(&shard) {
                return MetaReply::Refused(format!("no shard {shard}"));
            }
            state.shard_map.insert(shard, record);
            MetaReply::Ok
        }
        MetaCommand::SetSetting { key, value } => {
            state.settings.insert(key, value);
            MetaReply::Ok
        }
        MetaCommand::Upper(_) => MetaReply::Refused("upper commands are applied elsewhere".into()),
        MetaCommand::MintJoinToken { .. } | MetaCommand::JoinWithToken { .. } => {
            MetaReply::Refused("join-token commands are applied with the tokens".into())
        }
        MetaCommand::RotateCa { authority } => trust::rotate(state, authority),
        MetaCommand::TrustsCa { node, ca } => trust::trusts(state, node, &ca),
        MetaCommand::RenewedUnderCa { node, ca } => trust::renewed(state, node, &ca),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority() -> JoinAuthority {
        JoinAuthority {
            ca_cert_pem: "ca".into(),
            ca_key_pem: "key".into(),
            join_secret_sha256: "00".into(),
        }
    }

    fn bootstrapped() -> MetaState {
        let mut s = MetaState::default();
        let reply = transition(
            &mut s,
            MetaCommand::Bootstrap {
                cluster_id: "c1".into(),
                node: 1,
                addr: "127.0.0.1:1".into(),
                shards: 4,
                replication: 3,
                authority: authority(),
            },
        );
        assert_eq!(reply, MetaReply::Ok);
        s
    }

    #[test]
    fn bootstrap_places_every_shard_on_the_first_node_once() {
        let mut s = bootstrapped();
        assert_eq!(s.shard_map.len(), 4);
        assert!(s
            .shard_map
            .values()
            .all(|r| r.placement.replicas == vec![1] && r.settled));
        assert_eq!(s.active_nodes(), vec![1]);
        let again = transition(
            &mut s,
            MetaCommand::Bootstrap {
                cluster_id: "c2".into(),
                node: 9,
                addr: String::new(),
                shards: 1,
                replication: 1,
                authority: authority(),
            },
        );
        assert!(matches!(again, MetaReply::Refused(_)));
        assert_eq!(s.cluster_id, "c1");
    }

    #[test]
    fn added_nodes_get_fresh_ids_and_join_first() {
        let mut s = bootstrapped();
        assert_eq!(
            transition(&mut s, MetaCommand::AddNode { addr: "a".into() }),
            MetaReply::NodeId(2)
        );
        assert_eq!(
            transition(&mut s, MetaCommand::AddNode { addr: "b".into() }),
            MetaReply::NodeId(3)
        );
        assert_eq!(s.nodes_in(NodeState::Joining), vec![2, 3]);
        transition(
            &mut s,
            MetaCommand::SetNodeState {
                id: 2,
                state: NodeState::Removed,
            },
        );
        let back = transition(
            &mut s,
            MetaCommand::SetNodeState {
                id: 2,
                state: NodeState::Active,
            },
        );
        assert!(matches!(back, MetaReply::Refused(_)));
    }

    #[test]
    fn unknown_shards_and_nodes_are_refused() {
        let mut s = bootstrapped();
        let record = ShardRecord {
            placement: ShardPlacement {
                replicas: vec![1],
                leader: Some(1),
            },
            settled: true,
        };
        assert!(matches!(
            transition(&mut s, MetaCommand::SetShard { shard: 99, record }),
            MetaReply::Refused(_)
        ));
        assert!(matches!(
            transition(
                &mut s,
                MetaCommand::SetNodeAddr {
                    id: 42,
                    addr: "x".into()
                }
            ),
            MetaReply::Refused(_)
        ));
    }
}
