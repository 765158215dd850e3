//! The certificate of the HTTPS listener (and of the QUIC endpoint when they share files),
//! reloaded when its files change on disk.
//!
//! A [`CertStore`] is a rustls certificate resolver over the current certificate: each new
//! handshake takes the one in place then, so a renewed certificate (a cert-manager or ACME
//! rotation writing new files) is served without a restart and without touching the
//! connections already open. [`CertStore::watch`] looks at the files' size and modification
//! time every few seconds; a pair that does not load (half-written, key not matching) is
//! logged and the previous certificate stays.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::quic::{CertSource, Identity, QuicError};

/// The current certificate, and where it is reloaded from.
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
    /// The files, when the certificate comes from files (a generated dev one does not change).
    files: Option<(PathBuf, PathBuf)>,
}

/// What identifies a version of the files.
type Stamp = Option<(SystemTime, u64, SystemTime, u64)>;

impl CertStore {
    /// Loads the certificate of `source`.
    pub fn load(source: &CertSource) -> Result<Arc<CertStore>, QuicError> {
        let identity = Identity::load(source)?;
        let files = match source {
            CertSource::Files { cert, key } => Some((cert.clone(), key.clone())),
            CertSource::SelfSigned { .. } => None,
        };
        Ok(Arc::new(CertStore {
            current: RwLock::new(Arc::new(certified(&identity)?)),
            files,
        }))
    }

    /// DER of the leaf certificate served now.
    pub fn leaf(&self) -> Option<Vec<u8>> {
        self.now().cert.first().map(|c| c.as_ref().to_vec())
    }

    fn now(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn stamp(&self) -> Stamp {
        let (cert, key) = self.files.as_ref()?;
        let meta = |p: &PathBuf| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        };
        let (c, k) = (meta(cert)?, meta(key)?);
        Some((c.0, c.1, k.0, k.1))
    }

    /// Loads the files again; keeps the current certificate when they do not load.
    pub fn reload(&self) -> Result<(), QuicError> {
        let Some((cert, key)) = &self.files else {
            return Ok(());
        };
        let identity = Identity::load(&CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        })?;
        let fresh = Arc::new(certified(&identity)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// Reloads the certificate whenever its files change, checking every `every`, until
    /// `stop`.
    pub fn watch(self: &Arc<Self>, every: Duration, stop: CancellationToken) {
        if self.files.is_none() {
            return;
        }
        let store = Arc::downgrade(self);
        let mut seen = self.stamp();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let Some(store) = store.upgrade() else { return };
                let now = store.stamp();
                if now == seen || now.is_none() {
                    continue;
                }
                match store.reload() {
                    Ok(()) => {
                        seen = now;
                        tracing::info!("TLS certificate reloaded from its files");
                    }
                    // Maybe half-written: try again at the next look.
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS certificate files changed but do not load; the previous certificate stays")
                    }
                }
            }
        });
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.now())
    }
}

fn certified(identity: &Identity) -> Result<CertifiedKey, QuicError> {
    let key = rustls::crypto::ring::sign::any_supported_type(&identity.key)
        .map_err(|e| QuicError::Tls(e.to_string()))?;
    let certified = CertifiedKey::new(identity.chain.clone(), key);
    certified
        .keys_match()
        .map_err(|e| QuicError::Tls(format!("certificate and key do not match: {e}")))?;
    Ok(certified)
}

/// The rustls config of the HTTPS listener: TLS 1.2 and 1.3 on the ring provider, HTTP/1.1.
pub fn https_config(store: Arc<CertStore>) -> Result<Arc<rustls::ServerConfig>, QuicError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| QuicError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
