//! What every handler shares: the chat service, token keys, configuration and drain state.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatsdk_actors::Chat;
use tokio_util::sync::CancellationToken;

use crate::auth::tokens::Tokens;

/// Settings of the gateway (the node's config maps onto this).
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Dev mode: `POST /api/auth/api-keys` works without credentials.
    pub dev: bool,
    /// Super-admin key for `/admin/*`; admin routes answer 503 without one.
    pub admin_api_key: Option<String>,
    /// Largest REST request body.
    pub body_limit: usize,
    pub ws_message_bytes: usize,
    pub ws_frame_bytes: usize,
    pub ws_read_buffer: usize,
    /// How long a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// Realtime connections per node.
    pub max_connections: usize,
    /// Subscriptions per connection.
    pub max_subscriptions: usize,
    /// Commands of one realtime connection in flight at once (see `pipeline`).
    pub commands_in_flight: usize,
    /// Commands one realtime connection may send per second on average, and in a burst;
    /// beyond that it is closed with 3013.
    pub commands_per_sec: u32,
    pub command_burst: u32,
    /// Unwritten bytes per connection before it is closed as slow (3008).
    pub outbound_queue_bytes: usize,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    /// Most publications one recovery returns.
    pub recover_limit: usize,
    pub access_ttl: u64,
    pub refresh_ttl: u64,
    /// Grace period for in-flight work on shutdown.
    pub drain_timeout: Duration,
    /// Origins allowed to call the API from a browser (`*`: any); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Where invitation links point: `<this>/invite/<token>`.
    pub invite_url_base: String,
    /// The seeded demo app in dev mode: `/demo` and `/demo/session` are served for it.
    pub demo_app: Option<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            dev: false,
            admin_api_key: None,
            body_limit: 1 << 20,
            ws_message_bytes: 64 * 1024,
            ws_frame_bytes: 64 * 1024,
            ws_read_buffer: 1024,
            header_read_timeout: Duration::from_secs(10),
            // A process here may hold at most ~20,000 open files.
            max_connections: 16_000,
            max_subscriptions: 512,
            commands_in_flight: 16,
            commands_per_sec: 100,
            command_burst: 500,
            outbound_queue_bytes: 1 << 20,
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(10),
            recover_limit: 1000,
            access_ttl: 900,
            refresh_ttl: 86_400,
            drain_timeout: Duration::from_secs(10),
            cors_origins: Vec::new(),
            invite_url_base: "http://localhost:3000".into(),
            demo_app: None,
        }
    }
}

pub struct Inner {
    pub chat: Chat,
    pub tokens: Tokens,
    pub config: GatewayConfig,
    /// Cancelled when the node starts draining.
    pub draining: CancellationToken,
    /// Live realtime connections, WebSocket and QUIC together (capped by `max_connections`).
    pub realtime_connections: AtomicUsize,
    pub started: Instant,
    /// The bound REST/WebSocket address, once the listener is bound (for the cluster view).
    pub http_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// What every realtime session of this node is made with (one copy per node, not per
    /// connection).
    pub session: Arc<chatsdk_actors::session::SessionConfig>,
    /// Signs and checks media tokens (content URLs, presigned uploads).
    pub media_signer: chatsdk_actors::media::MediaSigner,
    /// What `/metrics` serves.
    pub metrics: crate::metrics::Metrics,
}

/// The gateway's shared state. Cheap to clone.
#[derive(Clone)]
pub struct GatewayState(pub Arc<Inner>);

impl std::ops::Deref for GatewayState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl GatewayState {
    /// Builds the state over a started chat service (reads or creates the token secret).
    pub async fn new(
        chat: Chat,
        config: GatewayConfig,
    ) -> Result<GatewayState, chatsdk_actors::ChatError> {
        let secret = chat.token_secret().await?;
        let keys = chat.token_keys()?;
        let tokens = Tokens::with_keys(&keys, config.access_ttl, config.refresh_ttl);
        let reader = chat.clone();
        tokens.reload_with(move || reader.token_keys().ok().filter(|k| !k.keys.is_empty()));
        let media_signer = chatsdk_actors::media::MediaSigner::new(&secret);
        media_signer.set_keys(&keys);
        let session = Arc::new(chatsdk_actors::session::SessionConfig {
            ping_interval: config.ping_interval,
            max_subscriptions: config.max_subscriptions,
            recover_limit: config.recover_limit,
            node: chat.cluster().id().to_string(),
            version: concat!("chatsdk ", env!("CARGO_PKG_VERSION")).to_string(),
            commands_per_sec: f64::from(config.commands_per_sec),
            command_burst: f64::from(config.command_burst),
        });
        let metrics = crate::metrics::Metrics::new(&chat);
        let state = GatewayState(Arc::new(Inner {
            chat,
            tokens,
            config,
            draining: CancellationToken::new(),
            realtime_connections: AtomicUsize::new(0),
            started: Instant::now(),
            http_addr: std::sync::OnceLock::new(),
            session,
            media_signer,
            metrics,
        }));
        crate::cluster_view::register(&state);
        state.follow_token_keys();
        Ok(state)
    }

    /// Takes up the token secret's ring as it is now (after a rotation on any node).
    pub fn refresh_token_keys(&self) {
        match self.chat.token_keys() {
            Ok(keys) if !keys.keys.is_empty() => {
                // Each a no-op unless the ring changed. The media signer is asked on its own:
                // the token checks may have read a rotation first (a token naming a new key).
                let _changed = self.tokens.set_keys(&keys);
                self.media_signer.set_keys(&keys);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "token keys unreadable"),
        }
    }

    /// Follows rotations of the token secret made on other nodes: the ring is read from this
    /// node's replica of the directory every [`TOKEN_KEYS_EVERY`] (one key; a no-op unless it
    /// changed). The task holds the state weakly and ends with it.
    fn follow_token_keys(&self) {
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TOKEN_KEYS_EVERY).await;
                let Some(inner) = weak.upgrade() else { return };
                GatewayState(inner).refresh_token_keys();
            }
        });
    }
}

/// How often a node looks for a rotated token secret.
const TOKEN_KEYS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
