//! A Rust client for ChatSDK: the REST API, and the realtime protocol over WebSocket or QUIC.
//!
//! | module | owns | why it exists |
//! |---|---|---|
//! | [`rest`] | [`RestClient`]: tokens, channels, members, messages | the calls around a realtime connection, with the server's error codes typed |
//! | [`wire`] | [`wire::Conn`]: one framed connection, raw JSON objects in and out | one transport abstraction for the typed client and for load generators that must not pay for parsing |
//! | [`protocol`] | commands, replies, pushes as serde types | the wire shapes in one place, tested without sockets |
//! | [`realtime`] | [`Realtime`]: connect, ping/pong, replies by id, reconnect and recover | what an application uses to follow channels |
//!
//! It does not own the server's rules (who may subscribe, rate limits): it reports their
//! answers. The server-side protocol is described in `docs/protocol.md`, the REST API in
//! `docs/api.md`.
//!
//! # Example
//!
//! Mint a token for a user with a server key, create a channel, and print its events:
//!
//! ```no_run
//! use chatsdk_client::{Endpoint, Event, NewChannel, Realtime, RealtimeConfig, RestClient};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let (app_id, server_key) = ("00000000-0000-0000-0000-000000000001", "chatsdk_...");
//! let server = RestClient::new("http://127.0.0.1:8080")?.with_api_key(server_key);
//! let tokens = server.create_token("alice", Some("Alice")).await?;
//!
//! let alice = RestClient::new("http://127.0.0.1:8080")?.with_token(&tokens.token);
//! let channel = alice
//!     .create_channel(&NewChannel::new("group", "general", &["bob"]))
//!     .await?;
//!
//! let endpoint = Endpoint::WebSocket("ws://127.0.0.1:8080/connection/websocket".into());
//! let (client, mut events) = Realtime::connect(RealtimeConfig::new(endpoint, tokens.ws_token));
//! let name = format!("chat:{app_id}:{}", channel.id);
//! client.subscribe(&name).await?;
//! alice.send_message(&channel.id, "hello", Some("first")).await?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::Publication { offset, data, .. } => println!("{offset}: {}", data["type"]),
//!         Event::Subscribed { recovered, .. } => println!("subscribed (recovered: {recovered})"),
//!         Event::Disconnected { will_reconnect: false, .. } => break,
//!         other => println!("{other:?}"),
//!     }
//! }
//! # Ok(())
//! # }
//! ```

pub mod protocol;
pub mod realtime;
pub mod rest;
pub mod wire;

pub use realtime::{ClientError, Event, Realtime, RealtimeConfig};
pub use rest::{NewChannel, RestClient, RestError};
pub use wire::{Endpoint, QuicTrust, Trust};
