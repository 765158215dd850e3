//! Test harness: a real ChatSDK node started in-process (HTTP, cluster and QUIC on
//! 127.0.0.1 port 0, storage in a temp dir), users with tokens, and waiting on client events
//! with a deadline instead of sleeping.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use chatsdk_client::realtime::RealtimeConfig;
use chatsdk_client::rest::Tokens;
use chatsdk_client::wire::CertificateDer;
use chatsdk_client::{Endpoint, Event, NewChannel, QuicTrust, Realtime, RestClient};
use chatsdk_node::config::Config;
use tokio::sync::mpsc;

/// Longest wait for anything a test expects.
pub const WAIT: Duration = Duration::from_secs(20);

/// Which transport a scenario runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    Quic,
}

/// A running node with its default app.
pub struct Server {
    pub node: chatsdk_node::Node,
    pub app_id: String,
    /// A REST client with the app's server key.
    pub admin: RestClient,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(|_| {}).await
    }

    /// A server whose settings `adjust` changes first.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::default();
        adjust(&mut config);
        config.server.http = "127.0.0.1:0".parse().unwrap();
        config.server.data_dir = dir.path().to_path_buf();
        // Dev mode: the QUIC endpoint uses a self-signed certificate kept in the data dir.
        config.server.dev = true;
        config.cluster.addr = "127.0.0.1:0".parse().unwrap();
        config.cluster.shards = 4;
        config.cluster.replication = 1;
        config.quic.port = 0;
        config.validate().expect("valid test config");
        let mut cluster = chatsdk_node::cluster_config(&config);
        cluster.heartbeat = Duration::from_millis(200);
        cluster.election_timeout = (Duration::from_millis(800), Duration::from_millis(1600));
        let node = chatsdk_node::start_with(&config, cluster)
            .await
            .expect("node starts");
        // In dev mode the demo app is the node's first app, with the key printed at start.
        let (app_id, key) = node
            .credentials
            .dev
            .as_ref()
            .map(|d| (d.app_id.clone(), d.api_key.clone()))
            .expect("a dev start seeds the demo app");
        let admin = RestClient::new(format!("http://{}", node.http))
            .unwrap()
            .with_api_key(key);
        Server {
            node,
            app_id,
            admin,
            _dir: dir,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.node.http)
    }

    pub fn endpoint(&self, transport: Transport) -> Endpoint {
        match transport {
            Transport::WebSocket => {
                Endpoint::WebSocket(format!("ws://{}/connection/websocket", self.node.http))
            }
            Transport::Quic => Endpoint::Quic {
                addr: self.node.quic.expect("the node runs its QUIC endpoint"),
                server_name: "localhost".into(),
                trust: QuicTrust::Pinned(CertificateDer::from(
                    self.node.quic_cert.clone().expect("dev certificate"),
                )),
            },
        }
    }

    /// Mints tokens for `user` (creating it) and returns them with a REST client acting as it.
    pub async fn user(&self, user: &str) -> (RestClient, Tokens) {
        let tokens = self
            .admin
            .create_token(user, Some(user))
            .await
            .expect("tokens minted");
        let rest = RestClient::new(self.base_url())
            .unwrap()
            .with_token(&tokens.token);
        (rest, tokens)
    }

    /// A group channel of `owner` with `others`; returns its id and realtime channel name.
    pub async fn channel(&self, owner: &RestClient, others: &[&str]) -> (String, String) {
        let channel = owner
            .create_channel(&NewChannel::new("group", "test", others))
            .await
            .expect("channel created");
        let name = format!("chat:{}:{}", self.app_id, channel.id);
        (channel.id, name)
    }

    /// A realtime client config with quick reconnects.
    pub fn config(&self, transport: Transport, token: &str) -> RealtimeConfig {
        let mut config = RealtimeConfig::new(self.endpoint(transport), token);
        config.backoff.min = Duration::from_millis(20);
        config.backoff.max = Duration::from_millis(200);
        config
    }

    /// A realtime token for `user` that expired an hour ago (signed with the node's key, so
    /// the server refuses it as expired, 109, not as forged).
    pub fn expired_token(&self, user: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = chatsdk_gateway::auth::tokens::Claims {
            sub: format!("{}:{user}", self.app_id),
            user_id: user.to_string(),
            app_id: self.app_id.clone(),
            iat: now - 7200,
            iat_ms: (now - 7200) * 1000,
            nbf: Some(now - 7200),
            exp: now - 3600,
            ..Default::default()
        };
        self.node.state.tokens.sign_access(&claims)
    }

    pub async fn stop(self) {
        self.node.shutdown().await;
    }

    /// Stops the node and hands back its data directory, for a test that must drop its runtime
    /// before the directory: tasks that outlive the stop (the shards' state machine workers)
    /// close sled when the runtime drops them, and sled's flush then waits forever for blob
    /// files it cannot write in a directory already deleted.
    pub async fn stop_keeping_dir(self) -> tempfile::TempDir {
        self.node.shutdown().await;
        self._dir
    }
}

/// A realtime client and its events.
pub struct Client {
    pub rt: Realtime,
    pub events: mpsc::Receiver<Event>,
}

impl Client {
    /// Connects and waits for [`Event::Connected`].
    pub async fn connect(config: RealtimeConfig) -> Client {
        let (rt, events) = Realtime::connect(config);
        let mut client = Client { rt, events };
        client
            .expect("connected", |e| matches!(e, Event::Connected { .. }))
            .await;
        client
    }

    /// The next event matching `pred`, skipping others; fails after [`WAIT`].
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut skipped = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) if pred(&event) => return event,
                Ok(Some(event)) => skipped.push(event),
                Ok(None) => panic!("events ended while waiting for {what}; skipped {skipped:?}"),
                Err(_) => panic!("timed out waiting for {what}; skipped {skipped:?}"),
            }
        }
    }

    /// The next event, whatever it is; fails after [`WAIT`].
    pub async fn next(&mut self) -> Event {
        match tokio::time::timeout(WAIT, self.events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("events ended"),
            Err(_) => panic!("timed out waiting for an event"),
        }
    }

    /// Subscribes and waits for the matching [`Event::Subscribed`]; returns its offset.
    pub async fn subscribe(&mut self, channel: &str) -> u64 {
        self.rt.subscribe(channel).await.expect("subscribed");
        match self
            .expect(
                "subscribed event",
                |e| matches!(e, Event::Subscribed { channel: c, .. } if c == channel),
            )
            .await
        {
            Event::Subscribed { offset, .. } => offset,
            _ => unreachable!(),
        }
    }

    /// The next publication on `channel`: `(offset, message text)`.
    pub async fn publication(&mut self, channel: &str) -> (u64, String) {
        match self
            .expect(
                "publication",
                |e| matches!(e, Event::Publication { channel: c, .. } if c == channel),
            )
            .await
        {
            Event::Publication { offset, data, .. } => (offset, message_text(&data)),
            _ => unreachable!(),
        }
    }
}

/// The message text of a `message.new` envelope (empty for other events).
pub fn message_text(data: &serde_json::Value) -> String {
    data["payload"]["message"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
