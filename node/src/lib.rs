//! The `chatsdk` node: configuration, wiring and lifecycle, as a library the tests drive.
//!
//! [`start`] turns a validated [`config::Config`] into a running node: the cluster member and
//! chat layer (bootstrap, join or restart from the data directory), the first-start default app,
//! the dev seed, the HTTP server and the QUIC realtime endpoint. [`Node::shutdown`] drains it. The binary (`main.rs`) only
//! parses the command line, sets up logging and waits for a signal.

pub mod cli;
pub mod config;
mod fault_file;
pub mod logging;
pub mod seed;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chatsdk_actors::{Chat, ChatConfig, ChatError};
use chatsdk_cluster::{ClusterConfig, StartMode};
use chatsdk_gateway::quic::{CertSource, QuicError, QuicServer};
use chatsdk_gateway::tls::CertStore;
use chatsdk_gateway::{GatewayConfig, GatewayState};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("chat layer: {0}")]
    Chat(#[from] ChatError),
    #[error("cannot listen on tcp {addr} (change server.http or --http): {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("quic endpoint: {0}")]
    Quic(#[from] QuicError),
    #[error("cannot resolve cluster.join {addr}: {source}")]
    Resolve {
        addr: String,
        source: std::io::Error,
    },
    #[error("no join token from {url} (cluster.join_token_url): {reason}")]
    JoinToken { url: String, reason: String },
    #[error("the data directory {dir} is empty and cluster.join ({join}) names this node: start it with --bootstrap (cluster.bootstrap = true) to create a new cluster, or point cluster.join at a running member to join it")]
    WouldBootstrap { dir: String, join: String },
    #[error("--dev (server.dev) is for one node, and this data directory belongs to a cluster of {nodes} nodes: start it without --dev")]
    DevInCluster { nodes: usize },
}

/// What a first start printed: credentials shown once.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// The default app created on the first start, with its server key.
    pub default_app: Option<(String, String)>,
    /// In dev mode: the demo app's id, a fresh server key, and a token for `user-1`.
    pub dev: Option<seed::DevSeed>,
}

/// A running node.
pub struct Node {
    pub chat: Chat,
    pub state: GatewayState,
    /// The bound HTTP address.
    pub http: SocketAddr,
    /// Whether it serves HTTPS (and WSS).
    pub https: bool,
    pub credentials: Credentials,
    /// The bound UDP address of the QUIC realtime endpoint, when it runs.
    pub quic: Option<SocketAddr>,
    /// DER of the QUIC endpoint's certificate (a dev client pins it).
    pub quic_cert: Option<Vec<u8>>,
    quic_server: Option<QuicServer>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Maps the file configuration onto the gateway's.
pub fn gateway_config(c: &Config) -> GatewayConfig {
    GatewayConfig {
        dev: c.server.dev,
        admin_api_key: c.server.admin_api_key.clone(),
        body_limit: c.limits.body_bytes,
        ws_message_bytes: c.limits.ws_message_bytes,
        ws_frame_bytes: c.limits.ws_frame_bytes,
        ws_read_buffer: c.limits.ws_read_buffer_bytes,
        header_read_timeout: Duration::from_millis(c.limits.header_read_timeout_ms),
        max_connections: c.limits.max_connections,
        max_subscriptions: c.limits.max_subscriptions,
        commands_in_flight: c.limits.commands_in_flight,
        commands_per_sec: c.limits.commands_per_sec,
        command_burst: c.limits.command_burst,
        outbound_queue_bytes: c.limits.outbound_queue_bytes,
        ping_interval: Duration::from_secs(c.realtime.ping_interval_s),
        pong_timeout: Duration::from_secs(c.realtime.pong_timeout_s),
        recover_limit: c.realtime.history_size,
        access_ttl: c.auth.access_ttl_s,
        refresh_ttl: c.auth.refresh_ttl_s,
        drain_timeout: Duration::from_millis(c.server.drain_timeout_ms),
        cors_origins: config::host_list(&c.server.cors_origins),
        invite_url_base: c.server.frontend_url.clone(),
        demo_app: c.server.dev.then(|| seed::DEMO_APP.to_string()),
    }
}

/// Maps the file configuration onto the cluster's.
pub fn cluster_config(c: &Config) -> ClusterConfig {
    let mut cc = ClusterConfig::new(&c.server.data_dir, c.cluster.addr);
    cc.shards = c.cluster.shards;
    cc.replication = c.cluster.replication;
    cc.flush_linger = Duration::from_micros(c.cluster.flush_linger_us);
    cc.background_nice = c.cluster.background_nice;
    cc.cache_capacity = c.cluster.cache_mib * 1024 * 1024;
    cc.snapshot_chunk_timeout = Duration::from_millis(c.cluster.snapshot_chunk_timeout_ms);
    cc.node_cert_lifetime = Duration::from_secs(c.cluster.node_cert_lifetime_s);
    cc.snapshot_stall_timeout = Duration::from_millis(c.cluster.snapshot_stall_timeout_ms);
    cc.snapshot_after_logs = c.cluster.snapshot_after_logs;
    cc.logs_kept_after_snapshot = c.cluster.logs_kept_after_snapshot;
    cc.advertise = c.cluster.advertise;
    // Dev mode opens app and key creation to anyone: it never admits other nodes.
    cc.admits_joins = !c.server.dev;
    cc
}

/// How long a joining node waits for `cluster.join_token_url` to answer.
const JOIN_TOKEN_WAIT: Duration = Duration::from_secs(120);

/// Bootstrap, or join the cluster of `cluster.join` with the configured token or one asked of
/// `cluster.join_token_url`. A data directory that already belongs to a cluster ignores the
/// join settings (the node restarts as the member it is), so nothing is asked then. A node
/// whose own address is the join target creates the cluster when `cluster.bootstrap` allows it
/// (every node of a StatefulSet or a compose file can then carry the same settings), and
/// refuses to start on an empty directory otherwise.
async fn start_mode(c: &Config) -> Result<StartMode, StartError> {
    let Some(join) = &c.cluster.join else {
        return Ok(StartMode::Bootstrap);
    };
    let addr = join.resolve().await.map_err(|source| StartError::Resolve {
        addr: join.to_string(),
        source,
    })?;
    if addr == c.cluster.advertise.unwrap_or(c.cluster.addr) {
        // A member restarting finds its identity on disk (the mode is then ignored); an empty
        // directory creates a cluster only when told to.
        if c.cluster.bootstrap || c.server.data_dir.join("db").exists() {
            return Ok(StartMode::Bootstrap);
        }
        return Err(StartError::WouldBootstrap {
            dir: c.server.data_dir.display().to_string(),
            join: join.to_string(),
        });
    }
    let token = match (&c.cluster.join_token, &c.cluster.join_token_url) {
        (Some(token), _) => token.clone(),
        (None, Some(_)) if c.server.data_dir.join("db").exists() => {
            return Ok(StartMode::Existing);
        }
        (None, Some(url)) => {
            fetch_join_token(url, c.server.admin_api_key.as_deref().unwrap_or("")).await?
        }
        (None, None) => return Ok(StartMode::Bootstrap),
    };
    Ok(StartMode::Join { addr, token })
}

/// Mints a join token for this node at `url` (`POST /admin/cluster/join-tokens`: single-use,
/// ten minutes), retrying while the node there starts.
async fn fetch_join_token(url: &str, admin_key: &str) -> Result<String, StartError> {
    let endpoint = format!("{}/admin/cluster/join-tokens", url.trim_end_matches('/'));
    let fail = |reason: String| StartError::JoinToken {
        url: url.to_string(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + JOIN_TOKEN_WAIT;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let ask = client
            .post(&endpoint)
            .bearer_auth(admin_key)
            .json(&serde_json::json!({"ttlSeconds": 600, "singleUse": true}));
        match ask.send().await {
            Ok(res) if res.status().is_success() => {
                let body: serde_json::Value = res.json().await.map_err(|e| fail(e.to_string()))?;
                return body
                    .get("token")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| fail(format!("no token in {body}")));
            }
            Ok(res) if matches!(res.status().as_u16(), 401 | 403) => {
                return Err(fail(format!(
                    "refused with {}: server.admin_api_key differs from that node's",
                    res.status()
                )));
            }
            Ok(res) => last = format!("answered {}", res.status()),
            Err(e) => last = e.to_string(),
        }
        tracing::info!(
            url,
            last,
            "waiting for the cluster's first node to hand out a join token"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(fail(format!(
        "gave up after {} s: {last}",
        JOIN_TOKEN_WAIT.as_secs()
    )))
}

/// Starts a node from a validated configuration, with `cluster` tuning applied on top.
pub async fn start_with(c: &Config, cluster: ClusterConfig) -> Result<Node, StartError> {
    let mode = start_mode(c).await?;
    // The node that creates the cluster (or restarts as one that did not join) makes its
    // first app and VAPID keys; a joining node finds them in the cluster.
    let creates = matches!(mode, StartMode::Bootstrap);
    let chat_config = ChatConfig {
        history_size: c.realtime.history_size as u64,
        send_rate_per_minute: c.limits.effective_message_rate_per_minute(),
        send_burst: c.limits.effective_message_burst(),
        reaction_rate_per_minute: c.limits.bench_scaled(c.limits.reaction_rate_per_minute),
        reaction_burst: c.limits.bench_scaled(c.limits.reaction_burst),
        upload_rate_per_minute: c.limits.bench_scaled(c.limits.upload_rate_per_minute),
        search_rate_per_minute: c.limits.bench_scaled(c.limits.search_rate_per_minute),
        max_reactions_per_user: c.limits.reactions_per_user_per_message,
        max_pins_per_channel: c.limits.pins_per_channel,
        invites_per_hour: c.limits.invites_per_hour,
        max_api_keys_per_app: c.limits.api_keys_per_app,
        webhooks: c.webhooks.hook_config(),
        previews: c.previews.preview_config(),
        retention_every: Duration::from_secs(c.lifecycle.retention_interval_s),
        session_sweep_every: Duration::from_secs(c.lifecycle.session_sweep_interval_s),
        // Longer than any token of a revoked session can live, clocks a little apart included.
        revocations_kept: Duration::from_secs(
            c.auth.refresh_ttl_s.saturating_add(86_400).max(31 * 86_400),
        ),
        media_sweep_every: Duration::from_secs(c.media.sweep_interval_s),
        media_limits: chatsdk_actors::media::sniff::MediaLimits {
            image: c.media.max_image_bytes,
            video: c.media.max_video_bytes,
            other: c.media.max_file_bytes,
        },
        ..ChatConfig::default()
    };
    let chat = Chat::start(cluster, mode, chat_config).await?;
    if c.server.dev {
        let nodes = chat
            .cluster()
            .meta_state()
            .nodes
            .values()
            .filter(|n| n.state != chatsdk_cluster::NodeState::Removed)
            .count();
        if nodes > 1 {
            chat.shutdown().await;
            return Err(StartError::DevInCluster { nodes });
        }
    }
    let state = GatewayState::new(chat.clone(), gateway_config(c)).await?;
    let mut credentials = Credentials::default();
    // In dev mode the demo app is the first app: one server key is printed, not two.
    if creates && !c.server.dev && chat.apps()?.is_empty() {
        let app = chat
            .create_app(None, "Default App", serde_json::json!({}))
            .await?;
        let (_, key) = chat
            .create_api_key(&app.id, "default", chatsdk_actors::model::full_key_scopes())
            .await?;
        credentials.default_app = Some((app.id, key));
    }
    if creates {
        // The cluster's VAPID keys exist from the first start (made once, kept in group 0).
        chat.vapid().await?;
    }
    if c.server.dev {
        credentials.dev = Some(seed::dev(&chat, &state).await?);
    }
    let bound = match chatsdk_gateway::serve::bind(c.server.http, c.limits.listen_backlog) {
        Ok(l) => l.local_addr().map(|a| (l, a)),
        Err(e) => Err(e),
    };
    let (listener, http) = match bound {
        Ok(x) => x,
        Err(source) => {
            // Do not leave the cluster node running behind a failed start.
            chat.shutdown().await;
            return Err(StartError::Listen {
                addr: c.server.http,
                source,
            });
        }
    };
    let _ = state.http_addr.set(http);
    let shutdown = CancellationToken::new();
    fault_file::watch_if_asked(&chat, shutdown.clone());
    let https = match https_certs(c) {
        Ok(certs) => certs,
        Err(e) => {
            chat.shutdown().await;
            return Err(e.into());
        }
    };
    let tls = match &https {
        Some(certs) => {
            certs.watch(reload_every(c), shutdown.clone());
            match chatsdk_gateway::tls::https_config(certs.clone()) {
                Ok(config) => Some(config),
                Err(e) => {
                    chat.shutdown().await;
                    return Err(e.into());
                }
            }
        }
        None => None,
    };
    let quic_server = match start_quic(c, &state, https.as_ref(), &shutdown) {
        Ok(q) => q,
        Err(e) => {
            chat.shutdown().await;
            return Err(e);
        }
    };
    let (quic, quic_cert) = match &quic_server {
        Some(q) => (q.local_addr().ok(), q.certificate.clone()),
        None => (None, None),
    };
    let server = tokio::spawn(chatsdk_gateway::serve_tls(
        listener,
        state.clone(),
        shutdown.clone(),
        tls,
    ));
    Ok(Node {
        chat,
        state,
        http,
        https: https.is_some(),
        credentials,
        quic,
        quic_cert,
        quic_server,
        shutdown,
        server,
    })
}

/// How often certificate files are looked at for a renewal.
fn reload_every(c: &Config) -> Duration {
    Duration::from_secs(c.server.tls_reload_interval_s)
}

/// The HTTPS listener's certificate, when `server.tls_cert_file` and `tls_key_file` are set.
fn https_certs(c: &Config) -> Result<Option<Arc<CertStore>>, QuicError> {
    match (&c.server.tls_cert_file, &c.server.tls_key_file) {
        (Some(cert), Some(key)) => CertStore::load(&CertSource::Files {
            cert: cert.into(),
            key: key.into(),
        })
        .map(Some),
        _ => Ok(None),
    }
}

/// Binds the QUIC realtime endpoint when the configuration asks for it: with the configured
/// certificate files (its own, or the HTTPS listener's), or in dev mode with a self-signed
/// certificate kept in the data dir.
fn start_quic(
    c: &Config,
    state: &GatewayState,
    https: Option<&Arc<CertStore>>,
    shutdown: &CancellationToken,
) -> Result<Option<QuicServer>, StartError> {
    let q = &c.quic;
    if !q.enabled {
        return Ok(None);
    }
    let addr = SocketAddr::new(c.server.http.ip(), q.port);
    let source = match (&q.cert_file, &q.key_file, https) {
        (Some(cert), Some(key), _) => CertSource::Files {
            cert: cert.into(),
            key: key.into(),
        },
        (_, _, Some(certs)) => {
            return Ok(Some(QuicServer::bind(addr, certs, state.clone())?));
        }
        _ if c.server.dev => CertSource::SelfSigned {
            dir: c.server.data_dir.join("tls"),
            names: vec!["localhost".into(), c.server.http.ip().to_string()],
        },
        _ => {
            tracing::warn!(
                "quic endpoint off: set server.tls_cert_file and tls_key_file, or quic.cert_file and quic.key_file (or run with --dev)"
            );
            return Ok(None);
        }
    };
    let certs = CertStore::load(&source)?;
    certs.watch(reload_every(c), shutdown.clone());
    Ok(Some(QuicServer::bind(addr, &certs, state.clone())?))
}

/// Starts a node with the cluster settings of its configuration.
pub async fn start(c: &Config) -> Result<Node, StartError> {
    start_with(c, cluster_config(c)).await
}

impl Node {
    /// Drains: stops accepting, readiness 503, realtime sessions closed with 3001, in-flight
    /// requests finish within the drain timeout; then the cluster node stops.
    pub async fn shutdown(self) {
        self.state.draining.cancel();
        self.shutdown.cancel();
        let grace = self.state.config.drain_timeout;
        let quic = async {
            if let Some(q) = self.quic_server {
                q.shutdown(grace).await;
            }
        };
        let (http, ()) = tokio::join!(self.server, quic);
        match http {
            Ok(Err(e)) => tracing::warn!(error = %e, "http server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "http server task failed"),
            Ok(Ok(())) => {}
        }
        self.chat.shutdown().await;
    }
}
