//! The QUIC transport against a small local quinn server (not a ChatSDK node), to pin down
//! what the node tests cannot reach: both trust modes, a refused certificate, the application
//! close surfacing as `Frame::Close`, and the incoming frame limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use chatsdk_client::wire::varint::{put_frame, take_frame};
use chatsdk_client::wire::{
    CertificateDer, Frame, FrameError, QuicConnector, QuicTrust, WireError, WireOptions,
};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const WAIT: Duration = Duration::from_secs(10);

struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn self_signed() -> Identity {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    Identity {
        chain: vec![ck.cert.der().clone()],
        key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()).into(),
    }
}

/// A CA and a leaf for `localhost` issued by it: `(ca certificate, leaf identity)`.
fn ca_and_leaf() -> (CertificateDer<'static>, Identity) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let identity = Identity {
        chain: vec![leaf.der().clone()],
        key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
    };
    (ca.der().clone(), identity)
}

/// Serves one connection on 127.0.0.1:0: echoes each frame, answers `big` with a 100-byte
/// frame and `close` with an application close 3008 "slow".
fn serve(identity: Identity) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)
        .unwrap();
    tls.alpn_protocols = vec![b"chatsdk".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(async move {
        let Some(incoming) = endpoint.accept().await else {
            return;
        };
        let Ok(conn) = incoming.await else { return };
        let Ok((mut send, mut recv)) = conn.accept_bi().await else {
            return;
        };
        let mut buf = BytesMut::new();
        loop {
            while let Ok(Some(frame)) = take_frame(&mut buf, 1 << 20) {
                let mut out = BytesMut::new();
                match &frame[..] {
                    b"close" => {
                        conn.close(quinn::VarInt::from_u32(3008), b"slow");
                        // Keep the endpoint alive until the close is delivered.
                        let _ = tokio::time::timeout(WAIT, endpoint.wait_idle()).await;
                        return;
                    }
                    b"big" => put_frame(&mut out, &[b'x'; 100]),
                    other => put_frame(&mut out, other),
                }
                if send.write_all(&out).await.is_err() {
                    return;
                }
            }
            match recv.read_chunk(4096, true).await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
                _ => return,
            }
        }
    });
    addr
}

fn connector(trust: QuicTrust, max_frame_bytes: usize) -> QuicConnector {
    let options = WireOptions {
        max_frame_bytes,
        connect_timeout: WAIT,
        ..WireOptions::default()
    };
    QuicConnector::new("127.0.0.1:0".parse().unwrap(), &trust, &options).unwrap()
}

async fn recv(conn: &mut chatsdk_client::wire::Conn) -> Result<Frame, WireError> {
    tokio::time::timeout(WAIT, conn.recv())
        .await
        .expect("a frame in time")
}

#[tokio::test]
async fn pinned_certificate_echo_and_application_close() {
    let identity = self_signed();
    let cert = identity.chain[0].clone();
    let addr = serve(identity);
    let mut conn = connector(QuicTrust::Pinned(cert), 64 * 1024)
        .connect(addr, "any-name-is-fine-when-pinned")
        .await
        .unwrap();
    conn.send(br#"{"id":1}"#).await.unwrap();
    conn.send(b"{}").await.unwrap();
    let long = format!("{{\"x\":\"{}\"}}", "y".repeat(20_000));
    conn.send(long.as_bytes()).await.unwrap();
    assert_eq!(
        recv(&mut conn).await.unwrap(),
        Frame::Data(r#"{"id":1}"#.into())
    );
    assert_eq!(recv(&mut conn).await.unwrap(), Frame::Data("{}".into()));
    assert_eq!(recv(&mut conn).await.unwrap(), Frame::Data(long.into()));
    conn.send(b"close").await.unwrap();
    assert_eq!(
        recv(&mut conn).await.unwrap(),
        Frame::Close {
            code: 3008,
            reason: "slow".into()
        }
    );
    assert!(matches!(recv(&mut conn).await, Err(WireError::Closed)));
}

#[tokio::test]
async fn roots_verify_the_chain_and_the_name() {
    let (ca, identity) = ca_and_leaf();
    let addr = serve(identity);
    let trust = QuicTrust::Roots(vec![ca.clone()]);
    let wrong_name = connector(trust.clone(), 1024)
        .connect(addr, "elsewhere.example")
        .await;
    assert!(
        wrong_name.is_err(),
        "a certificate for another name is refused"
    );

    let (ca2, identity2) = ca_and_leaf();
    let addr2 = serve(identity2);
    let mut conn = connector(QuicTrust::Roots(vec![ca2]), 1024)
        .connect(addr2, "localhost")
        .await
        .unwrap();
    conn.send(b"{}").await.unwrap();
    assert_eq!(recv(&mut conn).await.unwrap(), Frame::Data("{}".into()));

    let (unrelated_ca, _) = ca_and_leaf();
    let (_, identity3) = ca_and_leaf();
    let addr3 = serve(identity3);
    let untrusted = connector(QuicTrust::Roots(vec![unrelated_ca]), 1024)
        .connect(addr3, "localhost")
        .await;
    assert!(untrusted.is_err(), "a chain to another CA is refused");
    drop(ca);
}

#[tokio::test]
async fn a_pin_on_another_certificate_is_refused() {
    let addr = serve(self_signed());
    let other = self_signed().chain[0].clone();
    let result = connector(QuicTrust::Pinned(other), 1024)
        .connect(addr, "localhost")
        .await;
    assert!(result.is_err());
}

#[tokio::test]
async fn frames_above_the_limit_are_refused() {
    let identity = self_signed();
    let cert = identity.chain[0].clone();
    let addr = serve(identity);
    let mut conn = connector(QuicTrust::Pinned(cert), 64)
        .connect(addr, "localhost")
        .await
        .unwrap();
    conn.send(b"big").await.unwrap();
    assert!(matches!(
        recv(&mut conn).await,
        Err(WireError::Frame(FrameError::TooLarge { len: 100, max: 64 }))
    ));
}
