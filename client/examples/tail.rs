//! Follows one channel and prints its events.
//!
//! ```sh
//! # the realtime token of `chatsdk serve --dev` ("realtime token for user-1: ...")
//! export CHATSDK_TOKEN=eyJ...
//! cargo run -p chatsdk-client --example tail -- \
//!     ws://127.0.0.1:8080/connection/websocket \
//!     chat:00000000-0000-0000-0000-000000000001:00000000-0000-0000-0000-000000000002
//! ```
//!
//! Arguments: `<endpoint> <channel> [token]`; the token defaults to `$CHATSDK_TOKEN`. The
//! endpoint is a `ws://` URL, or `quic://host:port` with `$CHATSDK_QUIC_CERT` naming the
//! server's certificate to pin, PEM (a `--dev` node writes `<data_dir>/tls/quic-cert.pem`) or
//! DER (server name `localhost`).

use std::error::Error;

use chatsdk_client::wire::CertificateDer;
use chatsdk_client::{Endpoint, Event, QuicTrust, Realtime, RealtimeConfig};
use rustls::pki_types::pem::PemObject;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: tail <ws://...|quic://host:port> <channel> [token]";
    let endpoint = args.next().ok_or(usage)?;
    let channel = args.next().ok_or(usage)?;
    let token = match args.next() {
        Some(token) => token,
        None => {
            std::env::var("CHATSDK_TOKEN").map_err(|_| "no token: pass one or set CHATSDK_TOKEN")?
        }
    };
    let endpoint = match endpoint.strip_prefix("quic://") {
        Some(addr) => {
            let cert_file = std::env::var("CHATSDK_QUIC_CERT").map_err(|_| {
                "quic:// needs CHATSDK_QUIC_CERT (the server certificate, PEM or DER)"
            })?;
            let bytes = std::fs::read(cert_file)?;
            let der = match CertificateDer::from_pem_slice(&bytes) {
                Ok(c) => c,
                Err(_) => CertificateDer::from(bytes),
            };
            Endpoint::Quic {
                addr: addr.parse()?,
                server_name: "localhost".into(),
                trust: QuicTrust::Pinned(der),
            }
        }
        None => Endpoint::WebSocket(endpoint),
    };

    let (client, mut events) = Realtime::connect(RealtimeConfig::new(endpoint, token));
    let subscriber = client.clone();
    let wanted = channel.clone();
    tokio::spawn(async move {
        if let Err(e) = subscriber.subscribe(&wanted).await {
            eprintln!("subscribe {wanted}: {e}");
        }
    });
    while let Some(event) = events.recv().await {
        match event {
            Event::Connected { client, node } => println!("connected as {client} on {node}"),
            Event::Subscribed {
                channel,
                recovered,
                offset,
                ..
            } => println!("subscribed to {channel} at offset {offset} (recovered: {recovered})"),
            Event::Publication { offset, data, .. } => {
                println!("{offset:>6} {} {}", data["type"], data["payload"])
            }
            Event::Disconnected {
                code,
                reason,
                will_reconnect,
            } => {
                println!("disconnected: {code} {reason} (reconnecting: {will_reconnect})");
                if !will_reconnect {
                    break;
                }
            }
            other => println!("{other:?}"),
        }
    }
    Ok(())
}
