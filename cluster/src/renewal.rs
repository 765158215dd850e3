//! Keeps this node's certificate and trust bundle in step with the cluster: renews the
//! certificate before it expires or when the cluster CA has been rotated, and trusts exactly
//! the CAs the meta state names.
//!
//! Node certificates are valid for `ClusterConfig::node_cert_lifetime` (30 days by default), so
//! a copied node key stops being good on its own, and peers refuse an expired certificate at
//! every handshake. A node renews its own once a third of its certificate's life is left (or
//! when its certificate runs far longer than the lifetime: those of builds before expiry, valid
//! to 4096), or as soon as its certificate is not issued by the current CA: it issues itself a
//! new one under the cluster CA, which its replica of the metadata holds, stores it, and
//! presents it from then on (connections already open keep the old one, TLS checks
//! certificates at the handshake only). A node that cannot renew (it holds no CA key) says so
//! in its log, once per check, until its certificate expires.
//!
//! During a CA rotation (see [`crate::trust`]) it also adds the staged CA to its trust bundle,
//! drops the retired ones (closing connections made under them), and reports each step to the
//! meta group. It looks again at every change of the meta state, and at least every hour.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use crate::error::ClusterError;
use crate::join;
use crate::meta::{MetaCommand, MetaState};
use crate::node::{ClusterNode, NodeInner};
use crate::tls::{self, ClusterCa};
use crate::trust;

/// How often the certificate is looked at, at most (less for short lifetimes).
const CHECK_EVERY: Duration = Duration::from_secs(3_600);
/// After a failed check (no meta leader to report to, ...), the next one comes after this,
/// doubling up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

pub(crate) async fn run(weak: Weak<NodeInner>) {
    let Some(inner) = weak.upgrade() else { return };
    let token = inner.shutdown.clone();
    let every = (inner.config.node_cert_lifetime / 12).min(CHECK_EVERY);
    let mut meta = inner.meta.subscribe();
    drop(inner);
    let mut retry = RETRY_MIN;
    loop {
        let mut wait = every;
        if let Some(inner) = weak.upgrade() {
            match follow(&inner).await {
                Ok(Some(until)) => {
                    let secs = until
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    tracing::info!(
                        node = inner.id,
                        valid_until_unix = secs,
                        "node certificate renewed"
                    );
                    retry = RETRY_MIN;
                }
                Ok(None) => retry = RETRY_MIN,
                Err(e) => {
                    tracing::warn!(node = inner.id, error = %e, "node certificate or trusted CAs not brought up to date");
                    // A rotation waits for this node's report: try again soon, not in an hour.
                    wait = retry.min(every);
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        } else {
            return;
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            changed = meta.changed() => if changed.is_err() { return },
        }
    }
}

/// Renews the certificate when it is due, updates the trust bundle when the cluster's trusted
/// CAs changed, and reports rotation steps; returns the renewed certificate's end of validity.
async fn follow(inner: &Arc<NodeInner>) -> Result<Option<SystemTime>, ClusterError> {
    let Some(mut identity) = join::load_identity(&inner.store)? else {
        return Ok(None);
    };
    let state = inner.meta.current();
    let Some(authority) = state.authority.clone() else {
        // Not bootstrapped (or not caught up) yet: renew only if the certificate needs it.
        if due_by_time(inner, &identity)? {
            return Err(ClusterError::Config {
                reason: "no cluster CA key in this node's metadata yet".into(),
            });
        }
        return Ok(None);
    };
    let current = tls::ca_fingerprint_of_pem(&authority.ca_cert_pem)?;
    let issuer = tls::ca_fingerprint_of_pem(&identity.ca_cert_pem)?;
    let retiring = state
        .trust
        .retiring
        .iter()
        .any(|pem| tls::ca_fingerprint_of_pem(pem).is_ok_and(|fp| fp == issuer));
    if issuer != current && !retiring {
        // The certificate is under a CA this state has not promoted yet: the node is replaying
        // older metadata (a joiner catching up, a restart). Acting on it would renew under (and
        // trust) a CA the cluster has moved on from; wait until it has caught up.
        return Ok(None);
    }
    // A retiring CA stays trusted only by a node that trusted it already: one replaying the
    // metadata does not take up again a CA the cluster has retired since.
    let held = tls::bundle_fingerprints(&identity.ca_cert_pem)?;
    let trusted: Vec<String> = state
        .trust
        .trusted(&state)
        .into_iter()
        .filter(|pem| {
            !state.trust.retiring.contains(pem)
                || tls::ca_fingerprint_of_pem(pem).is_ok_and(|fp| held.contains(&fp))
        })
        .collect();
    let mut renewed = None;
    if issuer != current || due_by_time(inner, &identity)? {
        let ca = ClusterCa {
            cert_pem: authority.ca_cert_pem.clone(),
            key_pem: authority.ca_key_pem,
        };
        let fresh = ca.issue_node_cert_for(inner.id, inner.config.node_cert_lifetime)?;
        identity.cert_pem = fresh.cert_pem;
        identity.key_pem = fresh.key_pem;
        identity.ca_cert_pem = trust::bundle(&authority.ca_cert_pem, &trusted);
        renewed = Some(tls::cert_not_after(&identity.cert_pem)?);
    } else {
        let bundle = trust::bundle(&authority.ca_cert_pem, &trusted);
        if tls::bundle_fingerprints(&bundle)? == tls::bundle_fingerprints(&identity.ca_cert_pem)? {
            report(inner, &state, &identity).await?;
            return Ok(None);
        }
        identity.ca_cert_pem = bundle;
        tracing::info!(
            node = inner.id,
            trusted_cas = trusted.len(),
            "trusted cluster CAs changed"
        );
    }
    // Stored first: a node that restarts presents what it stored.
    join::save_identity(&inner.store, &identity).await?;
    inner.transport.set_identity(&identity.tls())?;
    report(inner, &state, &identity).await?;
    Ok(renewed)
}

/// Whether the certificate's remaining life calls for a renewal.
fn due_by_time(inner: &NodeInner, identity: &join::StoredIdentity) -> Result<bool, ClusterError> {
    let lifetime = inner.config.node_cert_lifetime;
    let ends = tls::cert_not_after(&identity.cert_pem)?;
    let left = ends
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Ok(left <= lifetime / 3 || left > lifetime + Duration::from_secs(86_400))
}

/// Tells the meta group what the rotation waits for from this node, once it is true here:
/// that it trusts the staged CA, that its certificate is under the current one.
async fn report(
    inner: &Arc<NodeInner>,
    state: &MetaState,
    identity: &join::StoredIdentity,
) -> Result<(), ClusterError> {
    let trust = &state.trust;
    let held = tls::bundle_fingerprints(&identity.ca_cert_pem)?;
    let mut commands = Vec::new();
    if let Some(staged) = &trust.staged {
        let ca = tls::ca_fingerprint_of_pem(&staged.ca_cert_pem)?;
        if held.contains(&ca) && !trust.trusting.contains(&inner.id) {
            commands.push(MetaCommand::TrustsCa { node: inner.id, ca });
        }
    }
    if let Some(authority) = &state.authority {
        let ca = tls::ca_fingerprint_of_pem(&authority.ca_cert_pem)?;
        if !trust.retiring.is_empty()
            && held.first() == Some(&ca)
            && !trust.renewed.contains(&inner.id)
        {
            commands.push(MetaCommand::RenewedUnderCa { node: inner.id, ca });
        }
    }
    let node = ClusterNode {
        inner: inner.clone(),
    };
    for command in commands {
        node.propose_meta(command).await?;
    }
    Ok(())
}
