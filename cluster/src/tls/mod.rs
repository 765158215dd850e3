//! Cluster PKI and the TLS configurations of the node-to-node QUIC transport.
//!
//! This module owns the cluster certificate authority (a self-signed CA generated once per
//! cluster), the issuing of node certificates under it, and every rustls / quinn configuration
//! the transport uses:
//!
//! * the **server** side of a node presents `[leaf, ca]`, offers [`ALPN_CLUSTER`] and
//!   [`ALPN_JOIN`], and asks for a client certificate that is *optional* but verified against
//!   the cluster CA when presented. The transport, not TLS, enforces that a connection which
//!   negotiated [`ALPN_CLUSTER`] did present one;
//! * the **cluster client** presents the node certificate and verifies the server against the
//!   cluster CA as the only root;
//! * the **join client** has no identity yet: it pins the SHA-256 fingerprint of the cluster CA
//!   (handed to the operator out of band) and accepts a server only if the last certificate of
//!   the presented chain has that fingerprint *and* the leaf verifies against it.
//!
//! It does not own sockets, framing or retries (see [`crate::transport`]), nor the storage of
//! the CA key (the caller persists [`ClusterCa`]). Every rustls config is built with the explicit
//! ring [`CryptoProvider`] so nothing depends on a process-wide default provider.
//!
//! The pinned-CA verifier of join clients lives in `verifier` and the small DER reader used to
//! rebuild the CA issuer in `der`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use sha2::{Digest, Sha256};

mod der;
mod verifier;

pub use verifier::PinnedCaVerifier;

/// ALPN of authenticated node-to-node traffic (mutual TLS under the cluster CA).
pub const ALPN_CLUSTER: &[u8] = b"chatsdk-cluster/1";
/// ALPN of the join handshake: the client has no certificate yet and may only send joins.
pub const ALPN_JOIN: &[u8] = b"chatsdk-join/1";
/// DNS SAN carried by every node certificate; clients always dial this server name.
pub const NODE_SERVER_NAME: &str = "chatsdk-node";
/// How long a node certificate is valid unless the cluster is configured otherwise; a node
/// renews its own when a third of it is left (see `ClusterNode`'s renewal).
pub const DEFAULT_NODE_CERT_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
/// How far before its issue a certificate is valid from: peers whose clocks are behind the
/// issuer's still take it.
const NOT_BEFORE_SLACK: Duration = Duration::from_secs(86_400);

/// QUIC keep-alive: well under [`QUIC_IDLE_TIMEOUT`] so idle peer connections stay open.
const QUIC_KEEP_ALIVE: Duration = Duration::from_millis(500);
/// A connection that has heard nothing for this long is considered dead; it bounds how long
/// requests to a crashed peer wait before the routing layer moves on to another node.
const QUIC_IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// Concurrent bidirectional streams a peer may open on one connection: each one is an
/// in-flight request, so this is the per-connection bound on server-side request tasks.
const QUIC_MAX_BIDI_STREAMS: u32 = 1024;
/// Concurrent unidirectional streams (one-way messages) a peer may open on one connection.
const QUIC_MAX_UNI_STREAMS: u32 = 1024;
/// Bytes a peer may have in flight on one connection across all streams (flow control). This
/// bounds what an unread backlog of streams can make us buffer per connection.
const QUIC_CONNECTION_RECEIVE_WINDOW: u32 = 64 * 1024 * 1024;
/// Bytes a peer may have in flight on one stream.
const QUIC_STREAM_RECEIVE_WINDOW: u32 = 8 * 1024 * 1024;

/// Failures while generating keys and certificates or building TLS configurations.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate {what}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("invalid {what} pem: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("unsupported ca certificate: {reason}")]
    CaCertificate { reason: String },
    #[error("ca private key does not match the ca certificate")]
    CaKeyMismatch,
    #[error("invalid ca fingerprint {fingerprint:?}: expected 64 hex characters")]
    Fingerprint { fingerprint: String },
    #[error("cannot build {what} tls config")]
    Config {
        what: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot build {what} certificate verifier: {reason}")]
    Verifier { what: &'static str, reason: String },
    #[error("cannot build {what} quic config: {reason}")]
    Quic { what: &'static str, reason: String },
}

/// The cluster certificate authority. `key_pem` is the CA's private key: whoever holds it can
/// mint node identities, so it must be stored like a secret (`Debug` redacts it).
#[derive(Clone)]
pub struct ClusterCa {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A node's credentials: its certificate (issued by the cluster CA) and private key, plus the
/// CA certificates it trusts. `Debug` redacts the private key.
#[derive(Clone)]
pub struct NodeIdentity {
    pub node_id: u64,
    /// A PEM bundle: first the CA that issued `cert_pem` (presented after the leaf), then any
    /// other CA the cluster trusts while its CA is being rotated. Every one is a trust root.
    pub ca_cert_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("node_id", &self.node_id)
            .field("ca_cert_pem", &self.ca_cert_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl ClusterCa {
    /// Generates a new self-signed CA with common name `chatsdk cluster <cluster_id>`.
    pub fn generate(cluster_id: &str) -> Result<ClusterCa, TlsError> {
        let key = KeyPair::generate().map_err(|source| TlsError::Generate {
            what: "ca key",
            source,
        })?;
        let params = ca_params(ca_distinguished_name(cluster_id));
        let cert = params
            .self_signed(&key)
            .map_err(|source| TlsError::Generate {
                what: "ca certificate",
                source,
            })?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// [`ClusterCa::issue_node_cert_for`] with [`DEFAULT_NODE_CERT_LIFETIME`].
    pub fn issue_node_cert(&self, node_id: u64) -> Result<NodeIdentity, TlsError> {
        self.issue_node_cert_for(node_id, DEFAULT_NODE_CERT_LIFETIME)
    }

    /// Issues a certificate for `node_id`, valid for `lifetime` from now (and from a day before
    /// now, for peers whose clocks are behind): CN `node-<id>`, SANs [`NODE_SERVER_NAME`] and
    /// `node-<id>`, usable both as a TLS server and a TLS client certificate. Peers refuse it
    /// once it has expired (rustls checks the validity at every handshake).
    pub fn issue_node_cert_for(
        &self,
        node_id: u64,
        lifetime: Duration,
    ) -> Result<NodeIdentity, TlsError> {
        let ca_der = parse_cert_pem(&self.cert_pem, "ca certificate")?;
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(|e| TlsError::Pem {
            what: "ca key",
            reason: e.to_string(),
        })?;
        let ca_fields =
            der::ca_fields(ca_der.as_ref()).map_err(|reason| TlsError::CaCertificate { reason })?;
        if ca_fields.spki != ca_key.subject_public_key_info().as_slice() {
            return Err(TlsError::CaKeyMismatch);
        }
        // The leaf's issuer name must equal the CA's subject byte for byte, so the issuer is
        // rebuilt from the subject parsed out of the CA certificate itself.
        let issuer = Issuer::new(ca_params(ca_fields.subject), ca_key);

        let node_name = node_dns_name(node_id);
        let mut params =
            CertificateParams::new(vec![NODE_SERVER_NAME.to_owned(), node_name.clone()]).map_err(
                |source| TlsError::Generate {
                    what: "node certificate parameters",
                    source,
                },
            )?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = std::time::SystemTime::now();
        params.not_before = offset_time(now.checked_sub(NOT_BEFORE_SLACK).unwrap_or(now));
        params.not_after = offset_time(now + lifetime);

        let leaf_key = KeyPair::generate().map_err(|source| TlsError::Generate {
            what: "node key",
            source,
        })?;
        let leaf = params
            .signed_by(&leaf_key, &issuer)
            .map_err(|source| TlsError::Generate {
                what: "node certificate",
                source,
            })?;
        Ok(NodeIdentity {
            node_id,
            ca_cert_pem: self.cert_pem.clone(),
            cert_pem: leaf.pem(),
            key_pem: leaf_key.serialize_pem(),
        })
    }

    /// Lowercase hex SHA-256 of the CA certificate's DER: what joining nodes pin.
    pub fn fingerprint(&self) -> Result<String, TlsError> {
        ca_fingerprint_of_pem(&self.cert_pem)
    }
}

/// When the (first) certificate in `cert_pem` stops being valid.
pub fn cert_not_after(cert_pem: &str) -> Result<std::time::SystemTime, TlsError> {
    let der = parse_cert_pem(cert_pem, "certificate")?;
    let secs = der::not_after(der.as_ref()).map_err(|reason| TlsError::Pem {
        what: "certificate validity",
        reason,
    })?;
    let epoch = std::time::UNIX_EPOCH;
    Ok(match u64::try_from(secs) {
        Ok(s) => epoch + Duration::from_secs(s),
        Err(_) => epoch,
    })
}

/// A system time as the certificate generator takes it (whole seconds).
fn offset_time(t: std::time::SystemTime) -> time::OffsetDateTime {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Lowercase hex SHA-256 of the DER of the (first) certificate in `ca_cert_pem`.
pub fn ca_fingerprint_of_pem(ca_cert_pem: &str) -> Result<String, TlsError> {
    let der = parse_cert_pem(ca_cert_pem, "ca certificate")?;
    Ok(hex::encode(Sha256::digest(der.as_ref())))
}

/// The DNS SAN naming one node (`node-<id>`); the transport checks it against the node id a
/// peer claims, so a certificate only vouches for the node it was issued to.
pub fn node_dns_name(node_id: u64) -> String {
    format!("node-{node_id}")
}

/// Checks that `cert` (already verified against the cluster CA by TLS) was issued to `node_id`.
pub fn verify_node_cert_name(cert: &CertificateDer<'_>, node_id: u64) -> Result<(), rustls::Error> {
    let parsed = rustls::server::ParsedCertificate::try_from(cert)?;
    let name = ServerName::try_from(node_dns_name(node_id))
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    rustls::client::verify_server_name(&parsed, &name)
}

/// The crypto provider of every config built here; never the process default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Transport parameters shared by all node endpoints (server and client side).
pub fn quic_transport_config() -> Arc<quinn::TransportConfig> {
    let mut cfg = quinn::TransportConfig::default();
    cfg.keep_alive_interval(Some(QUIC_KEEP_ALIVE));
    // A few seconds always fit a QUIC varint of milliseconds; fall back to quinn's default
    // otherwise.
    if let Ok(idle) = quinn::IdleTimeout::try_from(QUIC_IDLE_TIMEOUT) {
        cfg.max_idle_timeout(Some(idle));
    }
    cfg.max_concurrent_bidi_streams(quinn::VarInt::from_u32(QUIC_MAX_BIDI_STREAMS));
    cfg.max_concurrent_uni_streams(quinn::VarInt::from_u32(QUIC_MAX_UNI_STREAMS));
    cfg.receive_window(quinn::VarInt::from_u32(QUIC_CONNECTION_RECEIVE_WINDOW));
    cfg.stream_receive_window(quinn::VarInt::from_u32(QUIC_STREAM_RECEIVE_WINDOW));
    Arc::new(cfg)
}

/// The node's server config: presents `[leaf, ca]`, offers both ALPNs, verifies client
/// certificates against the CA when presented but does not require one.
pub fn server_config(identity: &NodeIdentity) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let roots = Arc::new(ca_roots(&identity.ca_cert_pem)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier {
            what: "client",
            reason: e.to_string(),
        })?;
    let (chain, key) = identity_chain(identity)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Config {
            what: "server",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Config {
            what: "server",
            source,
        })?;
    tls.alpn_protocols = vec![ALPN_CLUSTER.to_vec(), ALPN_JOIN.to_vec()];
    let quic =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| TlsError::Quic {
            what: "server",
            reason: e.to_string(),
        })?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(quic_transport_config());
    Ok(cfg)
}

/// The rustls config of cluster clients: presents `[leaf, ca]`, trusts only the cluster CA,
/// negotiates [`ALPN_CLUSTER`]. Dial with server name [`NODE_SERVER_NAME`].
pub fn cluster_rustls_client_config(
    identity: &NodeIdentity,
) -> Result<rustls::ClientConfig, TlsError> {
    let roots = ca_roots(&identity.ca_cert_pem)?;
    let (chain, key) = identity_chain(identity)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Config {
            what: "cluster client",
            source,
        })?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|source| TlsError::Config {
            what: "cluster client",
            source,
        })?;
    tls.alpn_protocols = vec![ALPN_CLUSTER.to_vec()];
    Ok(tls)
}

/// [`cluster_rustls_client_config`] as a quinn client config.
pub fn cluster_client_config(identity: &NodeIdentity) -> Result<quinn::ClientConfig, TlsError> {
    quic_client_config(cluster_rustls_client_config(identity)?)
}

/// The rustls config of joining clients: no client certificate, [`ALPN_JOIN`], and a server
/// verifier pinned to the CA fingerprint (see [`PinnedCaVerifier`]).
pub fn join_rustls_client_config(ca_fingerprint: &str) -> Result<rustls::ClientConfig, TlsError> {
    let verifier = Arc::new(PinnedCaVerifier::new(ca_fingerprint)?);
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Config {
            what: "join client",
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN_JOIN.to_vec()];
    Ok(tls)
}

/// [`join_rustls_client_config`] as a quinn client config.
pub fn join_client_config(ca_fingerprint: &str) -> Result<quinn::ClientConfig, TlsError> {
    quic_client_config(join_rustls_client_config(ca_fingerprint)?)
}

/// Wraps a rustls client config for quinn with the cluster transport parameters.
pub fn quic_client_config(tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, TlsError> {
    let quic =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| TlsError::Quic {
            what: "client",
            reason: e.to_string(),
        })?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(quic_transport_config());
    Ok(cfg)
}

fn ca_distinguished_name(cluster_id: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("chatsdk cluster {cluster_id}"));
    dn
}

fn ca_params(subject: DistinguishedName) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn parse_cert_pem(pem: &str, what: &'static str) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what,
        reason: e.to_string(),
    })
}

/// Every certificate of a PEM bundle, in order.
fn bundle_certs(bundle: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bundle.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: "ca certificate",
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: "ca certificate",
            reason: "no certificate".into(),
        });
    }
    Ok(certs)
}

/// Lowercase hex SHA-256 of every certificate of a trust bundle (see
/// [`NodeIdentity::ca_cert_pem`]), in order.
pub fn bundle_fingerprints(bundle: &str) -> Result<Vec<String>, TlsError> {
    Ok(bundle_certs(bundle)?
        .iter()
        .map(|c| hex::encode(Sha256::digest(c.as_ref())))
        .collect())
}

/// Every certificate of the bundle is a trust root: the issuing CA and the others the cluster
/// trusts while its CA is rotated.
fn ca_roots(bundle: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in bundle_certs(bundle)? {
        roots.add(cert).map_err(|source| TlsError::Config {
            what: "ca root",
            source,
        })?;
    }
    Ok(roots)
}

/// Checks, after the fact, that a peer's certificate still chains to the CAs a node trusts: a
/// connection made under a CA that has since been retired is closed.
#[derive(Debug)]
pub struct TrustCheck {
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    /// Fingerprints of the trusted CAs.
    roots: Vec<String>,
}

impl TrustCheck {
    /// The check against the CAs of `bundle` (a [`NodeIdentity::ca_cert_pem`]).
    pub fn new(bundle: &str) -> Result<TrustCheck, TlsError> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(ca_roots(bundle)?), provider())
                .build()
                .map_err(|e| TlsError::Verifier {
                    what: "trust check",
                    reason: e.to_string(),
                })?;
        Ok(TrustCheck {
            verifier,
            roots: bundle_fingerprints(bundle)?,
        })
    }

    /// Fingerprints of the trusted CAs, in the bundle's order.
    pub fn roots(&self) -> &[String] {
        &self.roots
    }

    /// Whether `leaf` is issued by one of the trusted CAs and valid now.
    pub fn admits(&self, leaf: &CertificateDer<'_>) -> bool {
        self.verifier
            .verify_client_cert(leaf, &[], rustls::pki_types::UnixTime::now())
            .is_ok()
    }
}

/// `[leaf, ca]` and the leaf key, `ca` being the first certificate of the trust bundle (the
/// leaf's issuer): servers send the CA too so joining clients can pin it.
fn identity_chain(
    identity: &NodeIdentity,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let leaf = parse_cert_pem(&identity.cert_pem, "node certificate")?;
    let ca = parse_cert_pem(&identity.ca_cert_pem, "ca certificate")?;
    let key =
        PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).map_err(|e| TlsError::Pem {
            what: "node key",
            reason: e.to_string(),
        })?;
    Ok((vec![leaf, ca], key))
}

#[cfg(test)]
mod tests {
    use super::*;

    use rustls::client::danger::ServerCertVerifier;
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::UnixTime;

    /// A node certificate is valid for its lifetime (and from a day before its issue), its end
    /// reads back from the certificate, and a verifier refuses it after that.
    #[test]
    fn node_certificates_expire() {
        let ca = ClusterCa::generate("test").unwrap();
        let lifetime = Duration::from_secs(3_600);
        let id = ca.issue_node_cert_for(7, lifetime).unwrap();
        let now = std::time::SystemTime::now();
        let end = cert_not_after(&id.cert_pem).unwrap();
        let left = end.duration_since(now).unwrap();
        assert!(
            left <= lifetime && left > lifetime - Duration::from_secs(60),
            "{left:?}"
        );
        let leaf = parse_cert_pem(&id.cert_pem, "leaf").unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(ca_roots(&ca.cert_pem).unwrap()),
            provider(),
        )
        .build()
        .unwrap();
        let name = ServerName::try_from(NODE_SERVER_NAME).unwrap();
        let at = |t: std::time::SystemTime| {
            UnixTime::since_unix_epoch(t.duration_since(std::time::UNIX_EPOCH).unwrap())
        };
        let check = |t| verifier.verify_server_cert(&leaf, &[], &name, &[], at(t));
        assert!(check(now).is_ok());
        assert!(
            check(now - Duration::from_secs(20 * 3_600)).is_ok(),
            "a clock behind"
        );
        assert!(check(end + Duration::from_secs(1)).is_err(), "expired");
        // Certificates of earlier builds ran to 4096: read as such.
        let old = cert_not_after(&ca.cert_pem).unwrap();
        assert!(old > now + Duration::from_secs(1_000 * 365 * 86_400));
    }

    #[test]
    fn issued_cert_chains_to_ca_and_names_the_node() {
        let ca = ClusterCa::generate("test").unwrap();
        let id = ca.issue_node_cert(7).unwrap();
        let leaf = parse_cert_pem(&id.cert_pem, "leaf").unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(ca_roots(&ca.cert_pem).unwrap()),
            provider(),
        )
        .build()
        .unwrap();
        let name = ServerName::try_from(NODE_SERVER_NAME).unwrap();
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
            .unwrap();
        verify_node_cert_name(&leaf, 7).unwrap();
        assert!(verify_node_cert_name(&leaf, 8).is_err());
    }

    #[test]
    fn fingerprint_is_lowercase_sha256_hex() {
        let ca = ClusterCa::generate("fp").unwrap();
        let fp = ca.fingerprint().unwrap();
        assert_eq!(fp.len(), 64);
        assert!(fp
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_eq!(fp, ca_fingerprint_of_pem(&ca.cert_pem).unwrap());
        assert!(PinnedCaVerifier::new(&fp).is_ok());
        assert!(PinnedCaVerifier::new("abcd").is_err());
    }

    #[test]
    fn mismatched_ca_key_is_rejected() {
        let a = ClusterCa::generate("a").unwrap();
        let b = ClusterCa::generate("b").unwrap();
        let mixed = ClusterCa {
            cert_pem: a.cert_pem,
            key_pem: b.key_pem,
        };
        assert!(matches!(
            mixed.issue_node_cert(1),
            Err(TlsError::CaKeyMismatch)
        ));
    }
}
