//! The QUIC endpoint's certificate: files named in the configuration, or (in development) a
//! self-signed certificate generated on first start and kept in the data directory so clients
//! can pin it across restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN of the realtime protocol over QUIC.
pub const ALPN: &[u8] = b"chatsdk";

/// File names of the generated development certificate, inside its directory.
const DEV_CERT: &str = "quic-cert.pem";
const DEV_KEY: &str = "quic-key.pem";

/// Where the endpoint's certificate comes from.
#[derive(Clone, Debug)]
pub enum CertSource {
    /// PEM files: a certificate chain (leaf first) and its private key.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate for `names`, generated once and kept in `dir`.
    SelfSigned { dir: PathBuf, names: Vec<String> },
}

/// Why the endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no usable {what}: {reason}", path.display())]
    Pem {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("cannot generate the development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    #[error("cannot bind the realtime QUIC endpoint on udp {addr} (change quic.port or --quic-port, or set quic.enabled = false): {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A certificate chain and its key.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Loads (or, for [`CertSource::SelfSigned`], creates on first use) the identity.
    pub fn load(source: &CertSource) -> Result<Identity, QuicError> {
        match source {
            CertSource::Files { cert, key } => read_pair(cert, key),
            CertSource::SelfSigned { dir, names } => {
                let (cert, key) = (dir.join(DEV_CERT), dir.join(DEV_KEY));
                if !cert.exists() || !key.exists() {
                    generate(&cert, &key, names)?;
                }
                read_pair(&cert, &key)
            }
        }
    }

    /// The leaf certificate, DER (what a development client pins).
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.chain.first()
    }
}

/// The rustls server config of the endpoint: TLS 1.3 only, ring provider, ALPN [`ALPN`], the
/// certificate `resolver` serves at each handshake (a reloading [`crate::tls::CertStore`]).
pub fn server_crypto(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
) -> Result<quinn::crypto::rustls::QuicServerConfig, QuicError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| QuicError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    tls.alpn_protocols = vec![ALPN.to_vec()];
    quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| QuicError::Tls(e.to_string()))
}

fn read_pair(cert: &Path, key: &Path) -> Result<Identity, QuicError> {
    let cert_pem = read(cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| QuicError::Pem {
            path: cert.to_path_buf(),
            what: "certificate",
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(QuicError::Pem {
            path: cert.to_path_buf(),
            what: "certificate",
            reason: "no CERTIFICATE block".into(),
        });
    }
    let key_pem = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| QuicError::Pem {
        path: key.to_path_buf(),
        what: "private key",
        reason: e.to_string(),
    })?;
    Ok(Identity {
        chain,
        key: key_der,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, QuicError> {
    std::fs::read(path).map_err(|source| QuicError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn generate(cert: &Path, key: &Path, names: &[String]) -> Result<(), QuicError> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
    if let Some(dir) = cert.parent() {
        chatsdk_storage::private::private_dir(dir).map_err(|source| QuicError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    chatsdk_storage::private::write_private(key, certified.signing_key.serialize_pem().as_bytes())
        .map_err(|source| QuicError::Write {
            path: key.to_path_buf(),
            source,
        })?;
    std::fs::write(cert, certified.cert.pem()).map_err(|source| QuicError::Write {
        path: cert.to_path_buf(),
        source,
    })
}
