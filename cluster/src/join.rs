//! Node identity and the join handshake.
//!
//! The first node of a cluster creates a cluster CA and a join secret. A join token carries the
//! cluster id, the CA's SHA-256 fingerprint and the secret: the joining node authenticates the
//! node it contacts by the fingerprint (so the secret never reaches an impostor), and that node
//! admits it by the secret, allocates its node id through the meta group and issues it a
//! certificate. From then on every node-to-node connection is mutually authenticated under the CA.

use chatsdk_storage::{record, NodeId, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use std::fmt;
use std::net::SocketAddr;

use crate::config::ClusterConfig;
use crate::meta::JoinAuthority;
use crate::tls::{ClusterCa, NodeIdentity};
use crate::ClusterError;
use crate::{codec, transport};

const IDENTITY_TREE: &str = "identity";
const IDENTITY_KEY: &[u8] = b"node";
const TOKEN_PREFIX: &str = "chatsdk-join-v2";
/// The form of the permanent cluster secret older builds printed, refused now.
const LEGACY_TOKEN_PREFIX: &str = "chatsdk-join-v1";

/// What a node remembers about itself across restarts.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredIdentity {
    pub(crate) node_id: NodeId,
    pub(crate) cluster_id: String,
    pub(crate) ca_cert_pem: String,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    /// Whether this node created the cluster and has yet to finish bootstrapping it.
    pub(crate) bootstrap_pending: bool,
}

// Keys and secrets never reach a log line: the `Debug` forms below leave them out.

impl fmt::Debug for StoredIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredIdentity")
            .field("node_id", &self.node_id)
            .field("cluster_id", &self.cluster_id)
            .field("key_pem", &REDACTED)
            .field("bootstrap_pending", &self.bootstrap_pending)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("cluster_id", &self.cluster_id)
            .field("ca_fingerprint", &self.ca_fingerprint)
            .field("secret", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinRequest")
            .field("cluster_id", &self.cluster_id)
            .field("secret", &REDACTED)
            .field("addr", &self.addr)
            .finish()
    }
}

impl fmt::Debug for JoinResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinResponse")
            .field("node_id", &self.node_id)
            .field("cluster_id", &self.cluster_id)
            .field("key_pem", &REDACTED)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

/// What a `Debug` form shows in place of a key or secret.
pub(crate) const REDACTED: &str = "<redacted>";

impl StoredIdentity {
    pub(crate) fn tls(&self) -> NodeIdentity {
        NodeIdentity {
            node_id: self.node_id,
            ca_cert_pem: self.ca_cert_pem.clone(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }
}

pub(crate) fn load_identity(store: &Store) -> Result<Option<StoredIdentity>, ClusterError> {
    get_record(store, IDENTITY_KEY)
}

pub(crate) async fn save_identity(store: &Store, id: &StoredIdentity) -> Result<(), ClusterError> {
    put_record(store, IDENTITY_KEY, id)?;
    store.flush().await?;
    Ok(())
}

const AUTHORITY_KEY: &[u8] = b"pending-authority";

fn get_record<T: serde::de::DeserializeOwned>(
    store: &Store,
    key: &[u8],
) -> Result<Option<T>, ClusterError> {
    let tree = store.tree(IDENTITY_TREE)?;
    match tree.get(key).map_err(chatsdk_storage::StoreError::from)? {
        Some(raw) => Ok(Some(record::decode(&raw)?)),
        None => Ok(None),
    }
}

fn put_record<T: Serialize>(store: &Store, key: &[u8], value: &T) -> Result<(), ClusterError> {
    store
        .tree(IDENTITY_TREE)?
        .insert(key, record::encode(value)?)
        .map_err(chatsdk_storage::StoreError::from)?;
    Ok(())
}

/// The first node keeps the CA it generated here until the meta group holds it.
pub(crate) fn save_pending_authority(
    store: &Store,
    authority: &JoinAuthority,
) -> Result<(), ClusterError> {
    put_record(store, AUTHORITY_KEY, authority)
}

pub(crate) fn load_pending_authority(store: &Store) -> Result<JoinAuthority, ClusterError> {
    get_record(store, AUTHORITY_KEY)?.ok_or(ClusterError::Join {
        reason: "bootstrap state lost: no pending cluster authority".into(),
    })
}

pub(crate) fn clear_pending_authority(store: &Store) -> Result<(), ClusterError> {
    store
        .tree(IDENTITY_TREE)?
        .remove(AUTHORITY_KEY)
        .map_err(chatsdk_storage::StoreError::from)?;
    Ok(())
}

const DRAINED_KEY: &[u8] = b"drained";

/// Remembers, on this node, that it was drained: the restart that follows makes it active.
pub(crate) fn save_drained(store: &Store, drained: bool) -> Result<(), ClusterError> {
    if drained {
        put_record(store, DRAINED_KEY, &true)
    } else {
        store
            .tree(IDENTITY_TREE)?
            .remove(DRAINED_KEY)
            .map_err(chatsdk_storage::StoreError::from)?;
        Ok(())
    }
}

pub(crate) fn load_drained(store: &Store) -> Result<bool, ClusterError> {
    Ok(get_record::<bool>(store, DRAINED_KEY)?.unwrap_or(false))
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub cluster_id: String,
    pub ca_fingerprint: String,
    pub secret: String,
}

impl JoinToken {
    /// Parses `chatsdk-join-v2.<cluster id>.<ca sha256 hex>.<secret hex>`.
    pub fn parse(token: &str) -> Result<JoinToken, ClusterError> {
        let bad = |why: &str| ClusterError::Join {
            reason: format!("malformed join token: {why}"),
        };
        let mut parts = token.trim().split('.');
        match parts.next() {
            Some(TOKEN_PREFIX) => {}
            Some(LEGACY_TOKEN_PREFIX) => {
                return Err(ClusterError::Join {
                    reason: "a chatsdk-join-v1 token was the cluster's permanent secret and is no longer accepted: mint one with `chatsdk cluster join-token` (it expires)".into(),
                })
            }
            _ => return Err(bad("unknown prefix")),
        }
        let (Some(cluster_id), Some(fp), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected four dot-separated parts"));
        };
        let is_hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hex(cluster_id)
            || fp.len() != 64
            || !is_hex(fp)
            || secret.len() < 32
            || !is_hex(secret)
        {
            return Err(bad(
                "fields must be hex (fingerprint 64 digits, secret at least 32)",
            ));
        }
        Ok(JoinToken {
            cluster_id: cluster_id.to_string(),
            ca_fingerprint: fp.to_ascii_lowercase(),
            secret: secret.to_string(),
        })
    }

    /// The token's text form.
    pub fn render(&self) -> String {
        format!(
            "{TOKEN_PREFIX}.{}.{}.{}",
            self.cluster_id, self.ca_fingerprint, self.secret
        )
    }
}

/// SHA-256 of a join secret, as stored in the meta state.
pub(crate) fn secret_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// This node's clock, in milliseconds since the epoch (join tokens' expiry, backups' times).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Random lowercase hex of `bytes` random bytes.
pub(crate) fn random_hex(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buf)
}

/// Sent by a joining node on the join ALPN.
#[derive(Serialize, Deserialize)]
pub(crate) struct JoinRequest {
    pub(crate) cluster_id: String,
    pub(crate) secret: String,
    /// The joining node's advertised cluster address.
    pub(crate) addr: String,
}

/// The answer to a successful join.
#[derive(Serialize, Deserialize)]
pub(crate) struct JoinResponse {
    pub(crate) node_id: NodeId,
    pub(crate) cluster_id: String,
    pub(crate) ca_cert_pem: String,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    /// Current members and their addresses.
    pub(crate) peers: Vec<(NodeId, String)>,
}

/// Creates the identity of a new cluster's first node.
pub(crate) async fn new_cluster_identity(
    store: &Store,
    cert_lifetime: std::time::Duration,
) -> Result<StoredIdentity, ClusterError> {
    let cluster_id = random_hex(8);
    let ca = ClusterCa::generate(&cluster_id)?;
    let node = ca.issue_node_cert_for(1, cert_lifetime)?;
    let authority = JoinAuthority {
        ca_cert_pem: ca.cert_pem.clone(),
        ca_key_pem: ca.key_pem.clone(),
        // No permanent secret: nodes join with tokens an admin mints, which expire.
        join_secret_sha256: String::new(),
    };
    save_pending_authority(store, &authority)?;
    let identity = StoredIdentity {
        node_id: 1,
        cluster_id,
        ca_cert_pem: node.ca_cert_pem,
        cert_pem: node.cert_pem,
        key_pem: node.key_pem,
        bootstrap_pending: true,
    };
    save_identity(store, &identity).await?;
    Ok(identity)
}

/// Picks a free UDP port on `listen`'s IP.
pub(crate) fn probe_udp_port(listen: SocketAddr) -> Result<SocketAddr, ClusterError> {
    let socket = std::net::UdpSocket::bind(listen).map_err(|e| ClusterError::Config {
        reason: format!("cannot bind {listen}: {e}"),
    })?;
    socket.local_addr().map_err(|e| ClusterError::Config {
        reason: format!("cannot read bound address: {e}"),
    })
}

/// Runs the join handshake against `addr`.
pub(crate) async fn join_cluster(
    config: &ClusterConfig,
    addr: SocketAddr,
    token: &str,
) -> Result<(StoredIdentity, Vec<(NodeId, String)>), ClusterError> {
    let token = JoinToken::parse(token)?;
    let advertise = config.advertise.unwrap_or(config.listen);
    let request = JoinRequest {
        cluster_id: token.cluster_id.clone(),
        secret: token.secret.clone(),
        addr: advertise.to_string(),
    };
    let raw = transport::join_request(
        addr,
        &token.ca_fingerprint,
        codec::encode(&request)?,
        config.propose_timeout,
    )
    .await
    .map_err(|e| ClusterError::Join {
        reason: e.to_string(),
    })?;
    let response: JoinResponse = codec::decode(&raw)?;
    if response.cluster_id != token.cluster_id {
        return Err(ClusterError::Join {
            reason: "joined node answered for another cluster".into(),
        });
    }
    Ok((
        StoredIdentity {
            node_id: response.node_id,
            cluster_id: response.cluster_id,
            ca_cert_pem: response.ca_cert_pem,
            cert_pem: response.cert_pem,
            key_pem: response.key_pem,
            bootstrap_pending: false,
        },
        response.peers,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_forms_never_show_keys_or_secrets() {
        let secret = "5ec2e7".repeat(8);
        let key = "-----BEGIN PRIVATE KEY-----\nk3y\n-----END PRIVATE KEY-----";
        let forms = [
            format!(
                "{:?}",
                JoinToken {
                    cluster_id: "ab12".into(),
                    ca_fingerprint: "f".repeat(64),
                    secret: secret.clone(),
                }
            ),
            format!(
                "{:?}",
                JoinRequest {
                    cluster_id: "ab12".into(),
                    secret: secret.clone(),
                    addr: "127.0.0.1:1".into(),
                }
            ),
            format!(
                "{:?}",
                JoinResponse {
                    node_id: 2,
                    cluster_id: "ab12".into(),
                    ca_cert_pem: "cert".into(),
                    cert_pem: "cert".into(),
                    key_pem: key.into(),
                    peers: Vec::new(),
                }
            ),
            format!(
                "{:?}",
                StoredIdentity {
                    node_id: 2,
                    cluster_id: "ab12".into(),
                    ca_cert_pem: "cert".into(),
                    cert_pem: "cert".into(),
                    key_pem: key.into(),
                    bootstrap_pending: false,
                }
            ),
            format!(
                "{:?}",
                crate::meta::MetaState {
                    authority: Some(crate::meta::JoinAuthority {
                        ca_cert_pem: "cert".into(),
                        ca_key_pem: key.into(),
                        join_secret_sha256: secret_digest(&secret),
                    }),
                    ..Default::default()
                }
            ),
        ];
        for form in forms {
            assert!(!form.contains("k3y") && !form.contains(&secret), "{form}");
            assert!(form.contains(REDACTED), "{form}");
        }
    }

    #[test]
    fn tokens_roundtrip_and_garbage_is_refused() {
        let t = JoinToken {
            cluster_id: "ab12".into(),
            ca_fingerprint: "f".repeat(64),
            secret: "0".repeat(32),
        };
        assert_eq!(JoinToken::parse(&t.render()).unwrap(), t);
        for bad in [
            "",
            "chatsdk-join-v2",
            "chatsdk-join-v0.ab.ff.00",
            &format!("chatsdk-join-v2.ab.{}.{}", "f".repeat(63), "0".repeat(32)),
            &format!("chatsdk-join-v2.ab.{}.{}", "f".repeat(64), "0".repeat(8)),
            &format!("chatsdk-join-v2.zz.{}.{}", "f".repeat(64), "0".repeat(32)),
            &format!("{}.extra", t.render()),
        ] {
            assert!(JoinToken::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn the_permanent_secret_of_older_builds_is_refused_by_name() {
        let old = format!("chatsdk-join-v1.ab12.{}.{}", "f".repeat(64), "0".repeat(32));
        let err = JoinToken::parse(&old).unwrap_err().to_string();
        assert!(err.contains("chatsdk cluster join-token"), "{err}");
    }
}
