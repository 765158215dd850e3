//! The server verifier of joining clients: they have no identity yet and trust the cluster CA
//! only through the SHA-256 fingerprint the operator handed them out of band.
//!
//! It owns the pinning check alone; chain and signature validation are delegated to rustls's
//! [`WebPkiServerVerifier`] with the pinned CA as the only root.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use super::{provider, TlsError};

/// Why a join is refused when the node's CA is not the pinned one.
const PIN_MISMATCH: &str = "the node's cluster CA is not the one the join token names: the CA was rotated since the token was minted (a node removal rotates it), or the address is not a node of that cluster; mint a new token";

/// Accepts a server whose chain ends in the CA with the pinned SHA-256 fingerprint and whose
/// leaf verifies against that CA as the only root (via rustls's [`WebPkiServerVerifier`]).
#[derive(Debug)]
pub struct PinnedCaVerifier {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl PinnedCaVerifier {
    /// `ca_fingerprint` is 64 hex characters (either case).
    pub fn new(ca_fingerprint: &str) -> Result<Self, TlsError> {
        let bad = || TlsError::Fingerprint {
            fingerprint: ca_fingerprint.to_owned(),
        };
        let bytes = hex::decode(ca_fingerprint.trim()).map_err(|_| bad())?;
        let fingerprint = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| bad())?;
        Ok(Self {
            fingerprint,
            provider: provider(),
        })
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let unknown_issuer =
            || rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let (ca, rest) = intermediates.split_last().ok_or_else(unknown_issuer)?;
        let presented: [u8; 32] = Sha256::digest(ca.as_ref()).into();
        if presented != self.fingerprint {
            // Said in words: the usual cause is a token minted before a CA rotation.
            return Err(rustls::Error::General(PIN_MISMATCH.into()));
        }
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, rest, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The same check WebPkiServerVerifier performs; it does not depend on the roots.
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
