//! The node's configuration: one serde struct, read from an optional TOML file and then
//! overridden by `CHATSDK_<SECTION>__<KEY>` environment variables.
//!
//! It exists so that every setting has one name, one type and one default, and so that a
//! mistake (an unknown key in the file, a misspelt variable, a value of the wrong type or out of
//! range) stops the node before any socket is opened instead of being silently ignored.
//! [`load`] does all of that; [`Config::to_toml`] renders the effective result for
//! `chatsdk config print`.
//!
//! Layout: this file holds the types, their defaults and the entry points; `sources` reads
//! the file and the environment; `validate` holds the range checks.
//!
//! This module only describes and checks settings. Turning them into the cluster's, gateway's
//! and actors' own settings types is the wiring's job, not this module's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod peer;
mod sources;
#[cfg(test)]
mod tests;
mod validate;

pub use peer::PeerAddr;
use sources::{apply_env, has_env_prefix, parse_file};

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "CHATSDK_";

/// `CHATSDK_` variables that are not config keys (the binary reads them itself: config file
/// path, log filter, the fault suite's link fault file). [`load`] skips them instead of
/// rejecting them as unknown.
pub const RESERVED_ENV_VARS: &[&str] = &[
    "CHATSDK_CONFIG",
    "CHATSDK_LOG",
    crate::fault_file::FAULT_FILE_VAR,
];

/// Factor applied to the per-user rate limits when `limits.bench_profile` is on, so a load
/// test is not throttled by limits meant for humans.
pub const BENCH_RATE_MULTIPLIER: u32 = 1000;

/// Shortest accepted `server.admin_api_key`: it grants every right on every app.
pub const MIN_ADMIN_API_KEY_CHARS: usize = 16;

/// Why the configuration could not be loaded, rendered or accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or a value has the wrong type.
    #[error("invalid config file {}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        reason: String,
    },
    /// The config file sets a key (or section) that does not exist.
    #[error("unknown key {key} in config file {}", path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// Dotted key, such as `server.htttp`.
        key: String,
    },
    /// A `CHATSDK_` environment variable names no config key.
    #[error("unknown environment variable {var} (expected CHATSDK_<SECTION>__<KEY>)")]
    UnknownEnvVar {
        /// The variable's name.
        var: String,
    },
    /// A `CHATSDK_` environment variable's name or value is not valid unicode.
    #[error("environment variable {var} is not valid unicode")]
    EnvNotUnicode {
        /// The variable's name, lossily converted.
        var: String,
    },
    /// A `CHATSDK_` environment variable's value does not fit its key's type.
    #[error("invalid value in environment variable {var}: {reason}")]
    EnvValue {
        /// The variable's name.
        var: String,
        /// Why the value was refused. Keys holding secrets are strings, so their values are
        /// never refused on type and never echoed here.
        reason: String,
    },
    /// A setting is out of range or contradicts another one.
    #[error("{key} {reason}")]
    Invalid {
        /// Dotted key, such as `limits.ws_frame_bytes`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The config cannot be written as TOML (a non-UTF-8 path, or an integer beyond TOML's
    /// range); a config produced by [`load`] always can.
    #[error("cannot render config as toml: {reason}")]
    Render {
        /// The serializer's message.
        reason: String,
    },
}

/// The whole node configuration. Every section and key is optional in the file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// REST and WebSocket listener, data directory, admin access.
    pub server: ServerConfig,
    /// Node-to-node transport and cluster shape.
    pub cluster: ClusterSection,
    /// Sizes, rates and counts that bound what a client can make the node do.
    pub limits: LimitsConfig,
    /// Realtime protocol timing and stream history.
    pub realtime: RealtimeConfig,
    /// Lifetimes of user tokens.
    pub auth: AuthConfig,
    /// The realtime endpoint over QUIC.
    pub quic: QuicSection,
    /// Outbound webhook delivery.
    pub webhooks: WebhooksSection,
    /// Data lifecycle.
    pub lifecycle: LifecycleSection,
    /// Uploads.
    pub media: MediaSection,
    /// Link previews.
    pub previews: PreviewsSection,
    /// Logging.
    pub log: LogSection,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines when stderr is a terminal, JSON otherwise.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// `auto` (text on a terminal, JSON otherwise), `json` or `text`.
    pub format: LogFormat,
    /// Which lines are written, as `tracing` filter directives (`info`,
    /// `info,chatsdk_cluster=debug`); the `CHATSDK_LOG` variable, when set, wins.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info,openraft=warn".into(),
        }
    }
}

/// `[previews]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreviewsSection {
    /// Fetch link previews of new messages.
    pub enabled: bool,
    /// Comma-separated hosts, addresses or CIDR ranges that may be fetched although they are
    /// internal (loopback, private, link-local...). Empty: public addresses only.
    pub allowed_hosts: String,
    /// Time for one page (connect, redirects, body), in milliseconds.
    pub timeout_ms: u64,
    /// Most bytes of a page read.
    pub max_bytes: u64,
    /// Redirects followed (each target checked again).
    pub max_redirects: u32,
    /// How often shard leaders look for pending previews, in milliseconds.
    pub poll_ms: u64,
}

impl Default for PreviewsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_hosts: String::new(),
            timeout_ms: 5_000,
            max_bytes: 1 << 20,
            max_redirects: 3,
            poll_ms: 500,
        }
    }
}

impl PreviewsSection {
    /// The chat layer's preview settings.
    pub fn preview_config(&self) -> chatsdk_actors::chat::PreviewConfig {
        chatsdk_actors::chat::PreviewConfig {
            enabled: self.enabled,
            allowed_hosts: host_list(&self.allowed_hosts),
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            max_bytes: self.max_bytes as usize,
            max_redirects: self.max_redirects as usize,
            poll_every: std::time::Duration::from_millis(self.poll_ms),
        }
    }
}

/// `[media]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaSection {
    /// Largest image upload, in bytes.
    pub max_image_bytes: u64,
    /// Largest video upload, in bytes.
    pub max_video_bytes: u64,
    /// Largest upload of any other type (audio, documents), in bytes.
    pub max_file_bytes: u64,
    /// Seconds between two media sweeps (removing files no upload refers to, fetching the
    /// ones this node should hold and lacks).
    pub sweep_interval_s: u64,
}

impl Default for MediaSection {
    fn default() -> Self {
        let limits = chatsdk_actors::media::sniff::MediaLimits::default();
        Self {
            max_image_bytes: limits.image,
            max_video_bytes: limits.video,
            max_file_bytes: limits.other,
            sweep_interval_s: 600,
        }
    }
}

/// `[lifecycle]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleSection {
    /// Seconds between two retention passes (purging messages older than a channel's or an
    /// app's retention).
    pub retention_interval_s: u64,
    /// Seconds between two sweeps of ended login sessions (those of users who never refresh
    /// again; a refresh forgets the user's own).
    pub session_sweep_interval_s: u64,
}

impl Default for LifecycleSection {
    fn default() -> Self {
        Self {
            retention_interval_s: 60,
            session_sweep_interval_s: 3600,
        }
    }
}

/// `[webhooks]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksSection {
    /// Comma-separated hosts, addresses or CIDR ranges that webhooks may reach although they
    /// are internal (loopback, private, link-local...). Empty: public addresses only.
    pub allowed_hosts: String,
    /// Time for one delivery attempt, in milliseconds.
    pub timeout_ms: u64,
    /// Attempts after the first, on network errors and 5xx answers.
    pub retries: u32,
    /// Wait before the first retry, in milliseconds (doubled for each next one).
    pub backoff_ms: u64,
    /// Consecutive failed deliveries that turn a webhook off.
    pub disable_after: u32,
    /// Records kept in each webhook's delivery log.
    pub log_keep: u32,
    /// How often a shard leader looks for pending deliveries, in milliseconds.
    pub poll_ms: u64,
}

impl Default for WebhooksSection {
    fn default() -> Self {
        Self {
            allowed_hosts: String::new(),
            timeout_ms: 10_000,
            retries: 3,
            backoff_ms: 1000,
            disable_after: 10,
            log_keep: 100,
            poll_ms: 1000,
        }
    }
}

impl WebhooksSection {
    /// The chat layer's webhook settings.
    pub fn hook_config(&self) -> chatsdk_actors::hooks::HookConfig {
        chatsdk_actors::hooks::HookConfig {
            allowed_hosts: host_list(&self.allowed_hosts),
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            retries: self.retries,
            backoff: std::time::Duration::from_millis(self.backoff_ms),
            disable_after: self.disable_after,
            log_keep: self.log_keep,
            poll_every: std::time::Duration::from_millis(self.poll_ms),
        }
    }
}

/// A comma-separated list, trimmed, without empty entries.
pub(crate) fn host_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `[quic]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuicSection {
    /// Serve the realtime protocol over QUIC (ALPN `chatsdk`).
    pub enabled: bool,
    /// UDP port, on the IP of `server.http` (0: any free port).
    pub port: u16,
    /// PEM certificate chain (leaf first). Without `cert_file`/`key_file` the endpoint runs
    /// only in dev mode, with a self-signed certificate kept in the data directory.
    #[serde(with = "empty_is_none")]
    pub cert_file: Option<String>,
    /// PEM private key of `cert_file`.
    #[serde(with = "empty_is_none")]
    pub key_file: Option<String>,
}

impl Default for QuicSection {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 8443,
            cert_file: None,
            key_file: None,
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the REST and WebSocket listener.
    pub http: SocketAddr,
    /// Directory holding the node's storage.
    pub data_dir: PathBuf,
    /// Development mode: seed a demo app and allow creating API keys without credentials.
    pub dev: bool,
    /// Super-admin key; `None` (or `""` in the file) disables `/admin`.
    #[serde(with = "empty_is_none")]
    pub admin_api_key: Option<String>,
    /// Grace period for draining connections on shutdown, in milliseconds.
    pub drain_timeout_ms: u64,
    /// The front end's address: workspace invitation links are `<this>/invite/<token>`.
    pub frontend_url: String,
    /// PEM certificate chain (leaf first) of the HTTP listener: set with `tls_key_file`, REST
    /// and WebSocket are served over TLS (https://, wss://). The QUIC endpoint uses the same
    /// files unless `quic.cert_file` names others. Reloaded when the files change.
    #[serde(with = "empty_is_none")]
    pub tls_cert_file: Option<String>,
    /// PEM private key of `tls_cert_file`.
    #[serde(with = "empty_is_none")]
    pub tls_key_file: Option<String>,
    /// Seconds between two looks at the certificate files for a renewal.
    pub tls_reload_interval_s: u64,
    /// Comma-separated origins that browsers may call the API from (`https://app.example.com`),
    /// or `*` for any; empty sends no CORS headers.
    pub cors_origins: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./chatsdk-data"),
            dev: false,
            admin_api_key: None,
            drain_timeout_ms: 10_000,
            frontend_url: "http://localhost:3000".into(),
            tls_cert_file: None,
            tls_key_file: None,
            tls_reload_interval_s: 10,
            cors_origins: String::new(),
        }
    }
}

/// `[cluster]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// UDP address of the node-to-node QUIC endpoint.
    pub addr: SocketAddr,
    /// The address other nodes reach this one at, when `addr` is a wildcard (`0.0.0.0:7400`
    /// in a container: the pod's IP here). Empty: `addr` itself.
    #[serde(with = "empty_is_none")]
    pub advertise: Option<SocketAddr>,
    /// A node of the cluster to join, `host:port` (an IP or a name); `None` bootstraps (or
    /// restarts) a cluster. Ignored once this node's data directory belongs to a cluster.
    #[serde(with = "empty_is_none")]
    pub join: Option<PeerAddr>,
    /// Token from the cluster being joined; with `join`, this or `join_token_url` is required.
    #[serde(with = "empty_is_none")]
    pub join_token: Option<String>,
    /// Base URL of the HTTP API of the node that created the cluster
    /// (`http://chatsdk-0.chatsdk:8080`): a joining node asks it for a join token with the admin
    /// key (`server.admin_api_key`), waiting for it to come up. For deployments that start
    /// every node with the same settings.
    #[serde(with = "empty_is_none")]
    pub join_token_url: Option<String>,
    /// Whether a node whose data directory is empty and whose `join` names itself may create a
    /// new cluster. Off, such a node refuses to start: a first node that lost its data would
    /// otherwise quietly found a second cluster beside the one its peers still run. Set it for
    /// the first start of a cluster (`--bootstrap`), then clear it.
    pub bootstrap: bool,
    /// Number of data shards, fixed when the cluster is created.
    pub shards: u32,
    /// Replicas per shard.
    pub replication: usize,
    /// Microseconds the storage flusher waits, when writes keep coming, so that one flush
    /// (write + sync of sled's log) covers more of them; 0 flushes at once.
    pub flush_linger_us: u64,
    /// Nice value (0..=19) of the threads that move applied writes into the store in the
    /// background; 19 (the default) runs them in the request path's idle time, 0 at the
    /// process's priority.
    pub background_nice: i32,
    /// MiB of memory for sled's page cache (the state machines' pages read or written
    /// lately). The cache fills to this budget as the data grows, then stays there; sled's own
    /// accounting undercounts, so the process may hold up to about twice as much for it.
    pub cache_mib: u64,
    /// Seconds a node certificate is valid (30 days); a node renews its own when a third is
    /// left, and peers refuse an expired one.
    pub node_cert_lifetime_s: u64,
    /// Milliseconds one chunk (1 MiB) of a snapshot sent to a follower may take.
    pub snapshot_chunk_timeout_ms: u64,
    /// Milliseconds a follower's install of a snapshot may go without progress before its
    /// leader gives up and sends it again later (an install as such has no time limit).
    pub snapshot_stall_timeout_ms: u64,
    /// Log entries a group appends between snapshots of its state (a snapshot lets the log be
    /// purged, and catches up a follower that fell behind the purge).
    pub snapshot_after_logs: u64,
    /// Log entries kept behind a snapshot (a follower that far behind catches up by log).
    pub logs_kept_after_snapshot: u64,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 7400)),
            advertise: None,
            join: None,
            join_token: None,
            join_token_url: None,
            bootstrap: false,
            shards: 16,
            replication: 3,
            flush_linger_us: chatsdk_cluster::ClusterConfig::DEFAULT_FLUSH_LINGER.as_micros()
                as u64,
            background_nice: chatsdk_cluster::ClusterConfig::DEFAULT_BACKGROUND_NICE,
            cache_mib: 64,
            node_cert_lifetime_s: chatsdk_cluster::tls::DEFAULT_NODE_CERT_LIFETIME.as_secs(),
            snapshot_chunk_timeout_ms: 5_000,
            snapshot_stall_timeout_ms: 60_000,
            snapshot_after_logs: 20_000,
            logs_kept_after_snapshot: 1_000,
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest REST request body, in bytes.
    pub body_bytes: usize,
    /// Largest WebSocket message, in bytes.
    pub ws_message_bytes: usize,
    /// Largest WebSocket frame, in bytes.
    pub ws_frame_bytes: usize,
    /// WebSocket read buffer per connection, in bytes: held by every idle connection, and the
    /// most one read takes (a larger frame is read in several).
    pub ws_read_buffer_bytes: usize,
    /// Time a client may take to send request headers, in milliseconds (slowloris guard).
    pub header_read_timeout_ms: u64,
    /// Client connections per node.
    pub max_connections: usize,
    /// Connections the HTTP port's accept queue holds before new ones are dropped (capped by
    /// the kernel's `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// Channel subscriptions per connection.
    pub max_subscriptions: usize,
    /// Commands of one realtime connection in flight at once; past it the connection stops
    /// reading until one ends.
    pub commands_in_flight: usize,
    /// Commands one realtime connection may send per second on average ...
    pub commands_per_sec: u32,
    /// ... and in a burst; beyond that it is closed with 3013.
    pub command_burst: u32,
    /// Bytes queued for one session before it is disconnected as a slow consumer (3008).
    pub outbound_queue_bytes: usize,
    /// Sends per user per minute (token bucket refill rate).
    pub message_rate_per_minute: u32,
    /// Token bucket capacity for sends.
    pub message_burst: u32,
    /// Reaction changes per user per minute (token bucket refill rate).
    pub reaction_rate_per_minute: u32,
    /// Token bucket capacity for reaction changes.
    pub reaction_burst: u32,
    /// Uploads (presigned and direct) per user per minute; burst the same.
    pub upload_rate_per_minute: u32,
    /// Searches (and suggestions) per user per minute; burst the same.
    pub search_rate_per_minute: u32,
    /// Reactions one user may have on one message.
    pub reactions_per_user_per_message: u32,
    /// Pinned messages per channel.
    pub pins_per_channel: u32,
    /// Workspace invitations one user may send per hour.
    pub invites_per_hour: u32,
    /// Server API keys an app may have that are not revoked.
    pub api_keys_per_app: u32,
    /// Multiply the rate limits by [`BENCH_RATE_MULTIPLIER`]; for load tests only.
    pub bench_profile: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            body_bytes: 1024 * 1024,
            ws_message_bytes: 64 * 1024,
            ws_frame_bytes: 64 * 1024,
            ws_read_buffer_bytes: 1024,
            header_read_timeout_ms: 10_000,
            max_connections: 50_000,
            listen_backlog: 4096,
            max_subscriptions: 512,
            commands_in_flight: 16,
            commands_per_sec: 100,
            command_burst: 500,
            outbound_queue_bytes: 1024 * 1024,
            message_rate_per_minute: 600,
            message_burst: 100,
            reaction_rate_per_minute: 300,
            reaction_burst: 60,
            upload_rate_per_minute: 30,
            search_rate_per_minute: 90,
            reactions_per_user_per_message: 20,
            pins_per_channel: 25,
            invites_per_hour: 100,
            api_keys_per_app: 50,
            bench_profile: false,
        }
    }
}

impl LimitsConfig {
    /// Sends per user per minute, with `bench_profile` applied.
    pub fn effective_message_rate_per_minute(&self) -> u32 {
        self.bench_scaled(self.message_rate_per_minute)
    }

    /// Token bucket capacity, with `bench_profile` applied.
    pub fn effective_message_burst(&self) -> u32 {
        self.bench_scaled(self.message_burst)
    }

    /// `value` with `bench_profile` applied.
    pub fn bench_scaled(&self, value: u32) -> u32 {
        if self.bench_profile {
            value.saturating_mul(BENCH_RATE_MULTIPLIER)
        } else {
            value
        }
    }
}

/// `[realtime]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeConfig {
    /// Interval between server pings, in seconds.
    pub ping_interval_s: u64,
    /// Time a client has to answer a ping, in seconds.
    pub pong_timeout_s: u64,
    /// Stream events retained per channel for recovery (the newest ones; the full message
    /// history stays available through REST).
    pub history_size: usize,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            ping_interval_s: 25,
            pong_timeout_s: 10,
            history_size: 1000,
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of an access token, in seconds.
    pub access_ttl_s: u64,
    /// Lifetime of a refresh token, in seconds.
    pub refresh_ttl_s: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            access_ttl_s: 900,
            refresh_ttl_s: 86_400,
        }
    }
}

/// Loads the configuration: defaults, then the TOML `file` if given, then the `CHATSDK_`
/// variables among `env`, then [`Config::validate`].
///
/// A variable `CHATSDK_<SECTION>__<KEY>` sets `<key>` in `[<section>]` (case-insensitive).
/// Its value is taken as an integer, boolean or float when it parses as one, else as a
/// string; keys whose value is a string (addresses, paths, secrets) always take it verbatim.
/// Any other variable with the prefix (in any case) that has the `__` separator or starts
/// with a section's name (`CHATSDK_SERVER_HTTP`) is an error; the rest (`CHATSDK_TOKEN`, tools'
/// own variables), [`RESERVED_ENV_VARS`] and variables without the prefix are ignored.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let config = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            parse_file(path, &text)?
        }
        None => Config::default(),
    };
    let config = apply_env(config, env)?;
    config.validate()?;
    Ok(config)
}

/// [`load`] with this process's environment.
pub fn load_from_process(file: Option<&Path>) -> Result<Config, ConfigError> {
    let mut env = Vec::new();
    for (name, value) in std::env::vars_os() {
        if !has_env_prefix(&name.to_string_lossy()) {
            continue;
        }
        match (name.into_string(), value.into_string()) {
            (Ok(name), Ok(value)) => env.push((name, value)),
            (Ok(name), Err(_)) => return Err(ConfigError::EnvNotUnicode { var: name }),
            (Err(name), _) => {
                return Err(ConfigError::EnvNotUnicode {
                    var: name.to_string_lossy().into_owned(),
                })
            }
        }
    }
    load(file, env)
}

impl Config {
    /// The configuration as a TOML document, every key included (unset optional keys as `""`),
    /// for `chatsdk config print`. Loading the output gives back an equal config.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError::Render {
            reason: e.to_string(),
        })
    }

    /// A copy with the secrets (`server.admin_api_key`, `cluster.join_token`) replaced by
    /// `"<redacted>"`, for output that may end up in logs or tickets.
    pub fn redacted(&self) -> Config {
        let hide = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>".to_string());
        let mut copy = self.clone();
        copy.server.admin_api_key = hide(&self.server.admin_api_key);
        copy.cluster.join_token = hide(&self.cluster.join_token);
        copy
    }
}

/// Serde helper for optional keys: `""` stands for `None`, in both directions, so a file can
/// say `join = ""` and the printed config lists the key.
mod empty_is_none {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<T: Display, S: Serializer>(
        value: &Option<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.collect_str(value),
            None => serializer.serialize_str(""),
        }
    }

    pub(super) fn deserialize<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let raw = String::deserialize(deserializer)?;
        if raw.is_empty() {
            Ok(None)
        } else {
            raw.parse().map(Some).map_err(D::Error::custom)
        }
    }
}
