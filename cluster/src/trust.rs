//! Rotation of the cluster CA, as the meta group decides it.
//!
//! Every meta replica holds the CA key (it issues joins and renewals), so a node that is removed,
//! or a copy of its disk, could still mint certificates for any node id. Removing a node
//! therefore rotates the CA, and an operator can rotate it at any time; once every remaining
//! node has renewed under the new CA, the old one is trusted no more and whatever it signs is
//! refused. A rotation goes in three steps, each decided by the state machine from what the
//! nodes report, so that no node ever meets a certificate it does not trust yet:
//!
//! 1. **staged**: [`MetaCommand::RotateCa`] carries a new CA; every node adds it to the CAs it
//!    trusts and reports so ([`MetaCommand::TrustsCa`]);
//! 2. **promoted**: once every member trusts it, the new CA issues joins and renewals; the old
//!    one is *retiring*, and live join tokens (which pin the old CA) are forgotten. Every node
//!    renews its certificate under the new CA and reports so ([`MetaCommand::RenewedUnderCa`]);
//! 3. **retired**: once every member has renewed, the retiring CAs leave the trust bundles and
//!    nodes close connections made under them.
//!
//! A member that is down holds the rotation at its step until it comes back or is removed. The
//! node side (renewing, updating the trust bundle, reporting) is in `renewal`.

use std::collections::BTreeSet;

use chatsdk_storage::NodeId;
use serde::{Deserialize, Serialize};

use crate::meta::{JoinAuthority, MetaReply, MetaState, NodeState};
use crate::tls;

/// CAs still trusted after being replaced, at most (rotations started before the last one
/// finished): the oldest goes first.
pub const MAX_RETIRING: usize = 4;

/// Where the CA rotation stands (stored beside the meta state).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustState {
    /// A new CA the members are adding to their trust bundles before it issues anything.
    pub staged: Option<JoinAuthority>,
    /// Members that reported trusting `staged`.
    pub trusting: BTreeSet<NodeId>,
    /// Certificates (PEM) of replaced CAs, trusted until every member has renewed.
    pub retiring: Vec<String>,
    /// Members that reported a certificate issued by the current CA (while any CA is retiring).
    pub renewed: BTreeSet<NodeId>,
    /// A node was removed since the last rotation was staged: the meta leader starts one.
    pub rotation_due: bool,
    /// Rotations promoted so far.
    pub rotations: u64,
}

impl TrustState {
    /// The CAs a node should trust (PEM), the current one first, without repeats.
    pub fn trusted(&self, state: &MetaState) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let current = state.authority.as_ref().map(|a| a.ca_cert_pem.clone());
        let staged = self.staged.as_ref().map(|a| a.ca_cert_pem.clone());
        for pem in current
            .into_iter()
            .chain(staged)
            .chain(self.retiring.iter().cloned())
        {
            if !out.contains(&pem) {
                out.push(pem);
            }
        }
        out
    }

    /// The members the rotation waits for at its current step (empty when none is under way).
    pub fn waiting_for(&self, state: &MetaState) -> Vec<NodeId> {
        let reported = if self.staged.is_some() {
            &self.trusting
        } else if !self.retiring.is_empty() {
            &self.renewed
        } else {
            return Vec::new();
        };
        members(state).filter(|n| !reported.contains(n)).collect()
    }

    /// Whether a rotation is under way (staged or retiring).
    pub fn rotating(&self) -> bool {
        self.staged.is_some() || !self.retiring.is_empty()
    }
}

/// A node's trust bundle: `issuer` (the CA of its certificate, presented after it) first, then
/// the other CAs of `trusted`.
pub fn bundle(issuer: &str, trusted: &[String]) -> String {
    let mut out = String::new();
    let issuer_fp = fingerprint(issuer);
    for pem in std::iter::once(issuer).chain(
        trusted
            .iter()
            .map(String::as_str)
            .filter(|p| fingerprint(p) != issuer_fp),
    ) {
        out.push_str(pem.trim_end());
        out.push('\n');
    }
    out
}

/// A CA certificate's fingerprint, or `None` for one this build cannot read.
fn fingerprint(pem: &str) -> Option<String> {
    tls::ca_fingerprint_of_pem(pem).ok()
}

/// Members: every node not removed (joining and leaving ones too: they hold connections).
fn members(state: &MetaState) -> impl Iterator<Item = NodeId> + '_ {
    state
        .nodes
        .values()
        .filter(|n| n.state != NodeState::Removed)
        .map(|n| n.id)
}

/// [`MetaCommand::RotateCa`]: stages `authority` (replacing one staged before).
pub(crate) fn rotate(state: &mut MetaState, authority: JoinAuthority) -> MetaReply {
    if state.bootstrapped_by == 0 {
        return MetaReply::Refused("cluster not bootstrapped".into());
    }
    let Some(new) = fingerprint(&authority.ca_cert_pem) else {
        return MetaReply::Refused("unreadable ca certificate".into());
    };
    let current = state
        .authority
        .as_ref()
        .and_then(|a| fingerprint(&a.ca_cert_pem));
    if current.as_deref() == Some(new.as_str()) {
        return MetaReply::Refused("that ca is the current one".into());
    }
    let trust = &mut state.trust;
    trust.staged = Some(authority);
    trust.trusting.clear();
    trust.rotation_due = false;
    MetaReply::Ok
}

/// [`MetaCommand::TrustsCa`]: `node` trusts the CA with `ca`'s fingerprint. Reports of a CA no
/// longer staged are stale and change nothing.
pub(crate) fn trusts(state: &mut MetaState, node: NodeId, ca: &str) -> MetaReply {
    let staged = state
        .trust
        .staged
        .as_ref()
        .and_then(|a| fingerprint(&a.ca_cert_pem));
    if staged.as_deref() == Some(ca) {
        state.trust.trusting.insert(node);
    }
    MetaReply::Ok
}

/// [`MetaCommand::RenewedUnderCa`]: `node`'s certificate is issued by the CA with `ca`'s
/// fingerprint.
pub(crate) fn renewed(state: &mut MetaState, node: NodeId, ca: &str) -> MetaReply {
    let current = state
        .authority
        .as_ref()
        .and_then(|a| fingerprint(&a.ca_cert_pem));
    if current.as_deref() == Some(ca) && !state.trust.retiring.is_empty() {
        state.trust.renewed.insert(node);
    }
    MetaReply::Ok
}

/// Moves the rotation on as far as the members' reports allow; true when a staged CA was
/// promoted (so join tokens, which pin the old CA, are to be forgotten).
pub(crate) fn advance(state: &mut MetaState) -> bool {
    let all: Vec<NodeId> = members(state).collect();
    let mut promoted = false;
    if state.trust.staged.is_some() && all.iter().all(|n| state.trust.trusting.contains(n)) {
        if let Some(mut staged) = state.trust.staged.take() {
            if let Some(old) = state.authority.take() {
                // The permanent secret of older builds stays refused by its digest.
                staged.join_secret_sha256 = old.join_secret_sha256;
                if !state.trust.retiring.contains(&old.ca_cert_pem) {
                    state.trust.retiring.push(old.ca_cert_pem);
                }
                let excess = state.trust.retiring.len().saturating_sub(MAX_RETIRING);
                state.trust.retiring.drain(..excess);
            }
            state.authority = Some(staged);
            state.trust.trusting.clear();
            state.trust.renewed.clear();
            state.trust.rotations += 1;
            promoted = true;
        }
    }
    if !state.trust.retiring.is_empty() && all.iter().all(|n| state.trust.renewed.contains(n)) {
        state.trust.retiring.clear();
        state.trust.renewed.clear();
    }
    promoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{transition, MetaCommand, NodeRecord};
    use crate::tls::ClusterCa;

    fn authority(ca: &ClusterCa) -> JoinAuthority {
        JoinAuthority {
            ca_cert_pem: ca.cert_pem.clone(),
            ca_key_pem: ca.key_pem.clone(),
            join_secret_sha256: String::new(),
        }
    }

    fn cluster(nodes: &[NodeId], ca: &ClusterCa) -> MetaState {
        let mut s = MetaState::default();
        let reply = transition(
            &mut s,
            MetaCommand::Bootstrap {
                cluster_id: "c".into(),
                node: nodes[0],
                addr: "a".into(),
                shards: 1,
                replication: 3,
                authority: authority(ca),
            },
        );
        assert_eq!(reply, MetaReply::Ok);
        for id in &nodes[1..] {
            s.nodes.insert(
                *id,
                NodeRecord {
                    id: *id,
                    addr: "a".into(),
                    state: NodeState::Active,
                },
            );
        }
        s
    }

    fn apply(s: &mut MetaState, c: MetaCommand) -> (MetaReply, bool) {
        let reply = transition(s, c);
        let promoted = advance(s);
        (reply, promoted)
    }

    fn fp(ca: &ClusterCa) -> String {
        ca.fingerprint().unwrap()
    }

    /// Staged until every member trusts it, promoted then, the old CA retired once every member
    /// has renewed; a removed member no longer holds it up and makes the next rotation due.
    #[test]
    fn a_rotation_waits_for_every_member_at_each_step() {
        let old = ClusterCa::generate("c").unwrap();
        let new = ClusterCa::generate("c").unwrap();
        let mut s = cluster(&[1, 2, 3], &old);
        let rotate = MetaCommand::RotateCa {
            authority: authority(&new),
        };
        assert_eq!(apply(&mut s, rotate).0, MetaReply::Ok);
        assert_eq!(s.trust.trusted(&s).len(), 2);
        for n in [1, 2] {
            let c = MetaCommand::TrustsCa {
                node: n,
                ca: fp(&new),
            };
            assert_eq!(apply(&mut s, c), (MetaReply::Ok, false));
        }
        // A stale report (of the current CA) counts for nothing.
        apply(
            &mut s,
            MetaCommand::TrustsCa {
                node: 3,
                ca: fp(&old),
            },
        );
        assert!(s.trust.staged.is_some());
        let last = MetaCommand::TrustsCa {
            node: 3,
            ca: fp(&new),
        };
        assert_eq!(apply(&mut s, last), (MetaReply::Ok, true));
        assert_eq!(s.authority.as_ref().unwrap().ca_cert_pem, new.cert_pem);
        assert_eq!(s.trust.retiring, vec![old.cert_pem.clone()]);
        assert_eq!(
            s.trust.trusted(&s),
            vec![new.cert_pem.clone(), old.cert_pem]
        );
        for n in [1, 2] {
            let c = MetaCommand::RenewedUnderCa {
                node: n,
                ca: fp(&new),
            };
            apply(&mut s, c);
        }
        assert_eq!(s.trust.retiring.len(), 1, "node 3 has not renewed");
        // Removing node 3 lets the old CA go, and asks for another rotation.
        apply(
            &mut s,
            MetaCommand::SetNodeState {
                id: 3,
                state: NodeState::Removed,
            },
        );
        assert!(s.trust.retiring.is_empty());
        assert!(s.trust.rotation_due);
        assert_eq!(s.trust.trusted(&s), vec![new.cert_pem]);
        assert_eq!(s.trust.rotations, 1);
    }

    #[test]
    fn the_current_ca_is_not_staged_again_and_a_new_one_replaces_a_staged_one() {
        let old = ClusterCa::generate("c").unwrap();
        let mut s = cluster(&[1, 2], &old);
        let again = MetaCommand::RotateCa {
            authority: authority(&old),
        };
        assert!(matches!(apply(&mut s, again).0, MetaReply::Refused(_)));
        let a = ClusterCa::generate("c").unwrap();
        let b = ClusterCa::generate("c").unwrap();
        apply(
            &mut s,
            MetaCommand::RotateCa {
                authority: authority(&a),
            },
        );
        apply(
            &mut s,
            MetaCommand::TrustsCa {
                node: 1,
                ca: fp(&a),
            },
        );
        apply(
            &mut s,
            MetaCommand::RotateCa {
                authority: authority(&b),
            },
        );
        assert!(s.trust.trusting.is_empty(), "reports of a replaced CA stay");
        apply(
            &mut s,
            MetaCommand::TrustsCa {
                node: 2,
                ca: fp(&a),
            },
        );
        assert_eq!(s.trust.staged.as_ref().unwrap().ca_cert_pem, b.cert_pem);
        assert!(!format!("{:?}", s.trust).contains("PRIVATE KEY"));
    }
}
