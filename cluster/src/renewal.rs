//! Renews this node's certificate before it expires.
//!
//! Node certificates are valid for `ClusterConfig::node_cert_lifetime` (30 days by default), so
//! a copied node key stops being good on its own, and peers refuse an expired certificate at
//! every handshake. A node renews its own once a third of its certificate's life is left (or
//! when its certificate runs far longer than the lifetime: those of builds before expiry, valid
//! to 4096): it issues itself a new one under the cluster CA, which its replica of the metadata
//! holds, stores it, and presents it from then on (connections already open keep the old one,
//! TLS checks certificates at the handshake only). A node that cannot renew (it holds no CA key)
//! says so in its log, once per check, until its certificate expires.

use std::sync::Weak;
use std::time::{Duration, SystemTime};

use crate::error::ClusterError;
use crate::join;
use crate::node::NodeInner;
use crate::tls::{self, ClusterCa};

/// How often the certificate is looked at, at most (less for short lifetimes).
const CHECK_EVERY: Duration = Duration::from_secs(3_600);

pub(crate) async fn run(weak: Weak<NodeInner>) {
    let Some(inner) = weak.upgrade() else { return };
    let token = inner.shutdown.clone();
    let every = (inner.config.node_cert_lifetime / 12).min(CHECK_EVERY);
    drop(inner);
    loop {
        if let Some(inner) = weak.upgrade() {
            match renew_if_due(&inner).await {
                Ok(Some(until)) => {
                    let secs = until
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    tracing::info!(
                        node = inner.id,
                        valid_until_unix = secs,
                        "node certificate renewed"
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(node = inner.id, error = %e, "node certificate not renewed")
                }
            }
        } else {
            return;
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Renews the certificate when it is due; returns the new one's end of validity.
async fn renew_if_due(inner: &NodeInner) -> Result<Option<SystemTime>, ClusterError> {
    let Some(mut identity) = join::load_identity(&inner.store)? else {
        return Ok(None);
    };
    let lifetime = inner.config.node_cert_lifetime;
    let ends = tls::cert_not_after(&identity.cert_pem)?;
    let left = ends
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    if left > lifetime / 3 && left <= lifetime + Duration::from_secs(86_400) {
        return Ok(None);
    }
    let Some(authority) = inner.meta.current().authority.clone() else {
        return Err(ClusterError::Config {
            reason: "no cluster CA key in this node's metadata yet".into(),
        });
    };
    let ca = ClusterCa {
        cert_pem: authority.ca_cert_pem,
        key_pem: authority.ca_key_pem,
    };
    let fresh = ca.issue_node_cert_for(inner.id, lifetime)?;
    identity.cert_pem = fresh.cert_pem;
    identity.key_pem = fresh.key_pem;
    // Stored first: a node that restarts presents what it stored.
    join::save_identity(&inner.store, &identity).await?;
    inner.transport.set_identity(&identity.tls())?;
    Ok(Some(tls::cert_not_after(&identity.cert_pem)?))
}
