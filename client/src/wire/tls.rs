//! TLS of the client: rustls configs on the ring provider (never the process default),
//! trusting the server by the system's roots, given roots or a pinned certificate ([`Trust`]).
//! QUIC gets TLS 1.3 only with ALPN `chatsdk`; `wss://` and `https://` get TLS 1.2 and 1.3
//! with ALPN `http/1.1`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{Trust, WireError, ALPN};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client config of the QUIC transport for `trust`.
pub(super) fn client_config(trust: &Trust) -> Result<rustls::ClientConfig, WireError> {
    let mut config = config_for(trust, &[&rustls::version::TLS13])?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// The rustls client config of `wss://` and `https://` for `trust`.
pub fn http_client_config(trust: &Trust) -> Result<rustls::ClientConfig, WireError> {
    let mut config = config_for(trust, &[&rustls::version::TLS13, &rustls::version::TLS12])?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn config_for(
    trust: &Trust,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<rustls::ClientConfig, WireError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?;
    let config = match trust {
        Trust::System => {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(WireError::Tls(rustls::Error::General(format!(
                    "no usable root certificate in the system's store ({} errors)",
                    found.errors.len()
                ))));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Roots(certs) => {
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots.add(cert.clone())?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Pinned(cert) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCertVerifier {
                cert: cert.clone(),
                provider,
            }))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// Accepts exactly one end-entity certificate, byte for byte; ignores chain, name and dates
/// (a dev server's self-signed certificate has no chain and may carry any name). Handshake
/// signatures are verified as usual, which proves the server holds the certificate's key.
#[derive(Debug)]
struct PinnedCertVerifier {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // QUIC offers TLS 1.3 only; `wss://` and `https://` may end up on 1.2.
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
