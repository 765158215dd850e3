//! HTTPS and WSS end to end: a node serving REST and WebSocket over TLS from certificate files
//! (its QUIC endpoint on the same files), the SDK trusting it by a CA root or a pinned
//! certificate, and a renewed certificate picked up from disk without dropping the realtime
//! connection already open.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use chatsdk_client::realtime::RealtimeConfig;
use chatsdk_client::wire::CertificateDer;
use chatsdk_client::{Endpoint, NewChannel, RestClient, Trust};
use chatsdk_node::config::Config;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use support::{Client, WAIT};

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "chatsdk test ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// A test CA: its certificate (DER) and what signs leaves.
struct Ca {
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let cert = ca_params().self_signed(&key).unwrap();
        Ca {
            der: cert.der().clone(),
            issuer: Issuer::new(ca_params(), key),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost, written to `dir` as the node's files;
    /// returns its DER.
    fn issue_into(&self, dir: &Path) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        // The key first: a reload that sees the new key with the old certificate refuses the
        // pair and tries again at its next look.
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        cert.der().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_with_roots_or_a_pin_and_a_renewal_without_a_drop() {
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("tls-files");
    std::fs::create_dir_all(&tls_dir).unwrap();
    let ca = Ca::new();
    let first = ca.issue_into(&tls_dir);

    let mut config = Config::default();
    config.server.http = "127.0.0.1:0".parse().unwrap();
    config.server.data_dir = dir.path().join("data");
    config.server.dev = true;
    config.server.tls_cert_file = Some(tls_dir.join("cert.pem").display().to_string());
    config.server.tls_key_file = Some(tls_dir.join("key.pem").display().to_string());
    config.server.tls_reload_interval_s = 1;
    config.cluster.addr = "127.0.0.1:0".parse().unwrap();
    config.cluster.shards = 2;
    config.cluster.replication = 1;
    config.quic.port = 0;
    config.validate().unwrap();
    let node = chatsdk_node::start(&config).await.expect("node starts");
    assert!(node.https);
    let dev = node.credentials.dev.clone().unwrap();
    let base = format!("https://{}", node.http);
    let roots = Trust::Roots(vec![ca.der.clone()]);

    // The QUIC endpoint presents the same certificate.
    assert_eq!(node.quic_cert.as_deref(), Some(first.as_ref()));

    // REST over https, trusting the CA.
    let admin = RestClient::with_trust(&base, &roots)
        .unwrap()
        .with_api_key(&dev.api_key);
    let amy = admin
        .create_token("amy", Some("Amy"))
        .await
        .expect("https works");
    let bob = admin.create_token("bob", Some("Bob")).await.unwrap();
    let amy_rest = RestClient::with_trust(&base, &roots)
        .unwrap()
        .with_token(&amy.token);
    let channel = amy_rest
        .create_channel(&NewChannel::new("group", "tls", &["bob"]))
        .await
        .unwrap();
    let name = format!("chat:{}:{}", dev.app_id, channel.id);

    // Plain HTTP to the TLS port is refused; an unknown CA is refused.
    let plain = RestClient::new(format!("http://{}", node.http))
        .unwrap()
        .with_api_key(&dev.api_key);
    assert!(plain.create_token("x", None).await.is_err());
    let stranger = Ca::new();
    let wrong = RestClient::with_trust(&base, &Trust::Roots(vec![stranger.der.clone()]))
        .unwrap()
        .with_api_key(&dev.api_key);
    assert!(wrong.create_token("x", None).await.is_err());

    // Realtime over wss, trusting a pinned certificate.
    let mut rt = RealtimeConfig::new(
        Endpoint::WebSocket(format!("wss://{}/connection/websocket", node.http)),
        bob.ws_token.clone(),
    );
    rt.wire.tls = Trust::Pinned(first.clone());
    let mut bob_rt = Client::connect(rt).await;
    bob_rt.subscribe(&name).await;
    amy_rest
        .send_message(&channel.id, "over tls", None)
        .await
        .unwrap();
    assert_eq!(bob_rt.publication(&name).await.1, "over tls");

    // A renewed certificate is served to new handshakes once its files change.
    let second = ca.issue_into(&tls_dir);
    let pinned_new = RestClient::with_trust(&base, &Trust::Pinned(second.clone()))
        .unwrap()
        .with_api_key(&dev.api_key);
    let deadline = Instant::now() + WAIT;
    while pinned_new.create_token("carol", None).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pinned_old = RestClient::with_trust(&base, &Trust::Pinned(first))
        .unwrap()
        .with_api_key(&dev.api_key);
    assert!(pinned_old.create_token("dave", None).await.is_err());
    // ...and the connection opened under the old one still delivers.
    amy_rest
        .send_message(&channel.id, "after the renewal", None)
        .await
        .unwrap();
    assert_eq!(bob_rt.publication(&name).await.1, "after the renewal");
    node.shutdown().await;
}
