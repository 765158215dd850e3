//! Prometheus metrics of a node, served at `/metrics` (OpenMetrics text).
//!
//! Names start with `chatsdk_`; labels never carry a user, channel or app (their number would
//! grow with the data); durations are histograms in seconds. Request counters are kept as
//! requests are answered; gauges (connections, actors, groups) are read from the node when
//! the endpoint is scraped; `process_*` come from `/proc/self`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chatsdk_actors::Chat;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::state::GatewayState;

/// Labels of an HTTP request: its method, route template (`/api/channels/{id}`, never the
/// path itself) and status class (`2xx`...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

/// Labels of a duration: method and route template.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

/// The transport of a realtime connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabel {
    pub transport: &'static str,
}

/// The close code a realtime connection ended with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: u16,
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Family<RouteLabels, Histogram>,
    connections: Family<TransportLabel, Gauge>,
    closes: Family<CodeLabel, Counter>,
    channel_actors: Gauge,
    raft_groups: Gauge,
    raft_groups_led: Gauge,
    cluster_nodes: Gauge,
    search_shards_indexed: Gauge,
    resident_bytes: Gauge,
    cpu_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    open_fds: Gauge,
}

impl Metrics {
    /// The registry, with the metrics of the layers below (chat, cluster, storage) in it.
    pub fn new(chat: &Chat) -> Metrics {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "chatsdk_http_requests",
            "HTTP requests answered, by method, route template and status class",
            http_requests.clone(),
        );
        let http_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "chatsdk_http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route template",
            http_seconds.clone(),
        );
        let connections = Family::<TransportLabel, Gauge>::default();
        // Both transports show from the start, at zero.
        for transport in ["websocket", "quic"] {
            let _ = connections.get_or_create(&TransportLabel { transport });
        }
        registry.register(
            "chatsdk_realtime_connections",
            "Open realtime connections, by transport (websocket, quic)",
            connections.clone(),
        );
        let closes = Family::<CodeLabel, Counter>::default();
        registry.register(
            "chatsdk_realtime_closes",
            "Realtime connections closed by the server, by close code (3008: slow consumer)",
            closes.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let channel_actors = gauge(
            &mut registry,
            "chatsdk_channel_actors",
            "Channel actors running on this node",
        );
        let raft_groups = gauge(
            &mut registry,
            "chatsdk_raft_groups",
            "Raft groups this node replicates (the directory and data shards)",
        );
        let raft_groups_led = gauge(
            &mut registry,
            "chatsdk_raft_groups_led",
            "Data shards this node leads",
        );
        let cluster_nodes = gauge(
            &mut registry,
            "chatsdk_cluster_nodes",
            "Active nodes of the cluster, as this node knows them",
        );
        let search_shards_indexed = gauge(
            &mut registry,
            "chatsdk_search_shards_indexed",
            "Data shards this node's search index has a part of",
        );
        let resident_bytes = gauge(
            &mut registry,
            "process_resident_memory_bytes",
            "Resident memory of the process",
        );
        let cpu_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "process_cpu_seconds",
            "CPU time of the process (user and system)",
            cpu_seconds.clone(),
        );
        let open_fds = gauge(
            &mut registry,
            "process_open_fds",
            "Open file descriptors of the process",
        );
        let cluster = chat.cluster();
        chat.stats().register(&mut registry);
        cluster.stats().register(&mut registry);
        registry.register(
            "chatsdk_cluster_peer_failures",
            "Requests to other nodes that failed because the node could not be reached",
            cluster.peer_failures(),
        );
        registry.register(
            "chatsdk_storage_fsync_duration_seconds",
            "Time of each fdatasync of the Raft log (one covers every write queued meanwhile)",
            cluster.flush_stats().sync_seconds.clone(),
        );
        registry.register_collector(Box::new(Scraped { chat: chat.clone() }));
        Metrics {
            registry,
            http_requests,
            http_seconds,
            connections,
            closes,
            channel_actors,
            raft_groups,
            raft_groups_led,
            cluster_nodes,
            search_shards_indexed,
            resident_bytes,
            cpu_seconds,
            open_fds,
        }
    }

    /// Counts an answered request.
    pub fn http(&self, method: &str, route: &str, status: StatusCode, seconds: f64) {
        let class = format!("{}xx", status.as_u16() / 100);
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_string(),
                route: route.to_string(),
                status: class,
            })
            .inc();
        self.http_seconds
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(seconds);
    }

    /// The gauge of open connections over `transport` (`websocket`, `quic`).
    pub fn connections(&self, transport: &'static str) -> Gauge {
        self.connections
            .get_or_create(&TransportLabel { transport })
            .clone()
    }

    /// Counts a connection the server closed with `code`.
    pub fn closed(&self, code: u16) {
        self.closes.get_or_create(&CodeLabel { code }).inc();
    }

    /// The exposition, with the gauges read now.
    pub fn render(&self, state: &GatewayState) -> Result<String, std::fmt::Error> {
        let chat = &state.chat;
        let cluster = chat.cluster();
        self.channel_actors.set(chat.running_actors() as i64);
        self.raft_groups.set(cluster.local_groups().len() as i64);
        let led = cluster.watch_leadership().borrow().len();
        self.raft_groups_led.set(led as i64);
        self.cluster_nodes
            .set(cluster.meta_state().active_nodes().len() as i64);
        self.search_shards_indexed
            .set(chat.search_index().groups().len() as i64);
        if let Some(p) = process() {
            self.resident_bytes.set(p.resident_bytes as i64);
            self.cpu_seconds.set(p.cpu_seconds);
            self.open_fds.set(p.open_fds as i64);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Values read from the chat and cluster layers when the endpoint is scraped: sessions,
/// subscriptions and deliveries (counted by the fanout), and the Raft replicas by kind.
struct Scraped {
    chat: Chat,
}

impl std::fmt::Debug for Scraped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraped").finish_non_exhaustive()
    }
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let fanout = self.chat.fanout();
        let (installs_started, installs_running) = self.chat.cluster().snapshot_installs();
        let gauges = [
            (
                "chatsdk_realtime_sessions",
                "Realtime sessions connected (authenticated) on this node",
                fanout.session_count(),
            ),
            (
                "chatsdk_realtime_subscriptions",
                "Channel subscriptions of this node's sessions",
                fanout.subscription_count(),
            ),
            (
                "chatsdk_realtime_channels",
                "Channels with a subscriber on this node",
                fanout.channel_count(),
            ),
            (
                "chatsdk_cluster_unreachable_peers",
                "Other nodes this node currently cannot reach",
                self.chat.cluster().unreachable_peers(),
            ),
            (
                "chatsdk_raft_snapshot_installs_running",
                "Snapshots being installed on this node now (sent by a leader to catch it up)",
                installs_running as usize,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let counters = [
            (
                "chatsdk_deliveries",
                "Events handed to subscribers on this node (one per subscriber)",
                fanout.deliveries(),
            ),
            (
                "chatsdk_deliveries_from_peers",
                "Events other nodes sent to this one for its subscribers (once per event and node)",
                fanout.deliveries_from_peers(),
            ),
            (
                "chatsdk_raft_snapshot_installs",
                "Snapshot installs started on this node since it started",
                installs_started,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let q = self.chat.cluster().queue_depths();
        {
            let mut family = encoder.encode_descriptor(
            "chatsdk_queue_depth",
            "Items in the node's bounded queues now, by queue (proposals: own writes awaiting commit; peer_messages: messages from peers being handled; forwards: writes waiting to be forwarded to a leader elsewhere)",
            None,
            MetricType::Gauge,
        )?;
            for (queue, depth) in [
                ("proposals", q.proposals_in_flight),
                ("peer_messages", q.peer_messages_in_progress),
                ("forwards", q.forwards_queued),
            ] {
                ConstGauge::new(depth as i64).encode(family.encode_family(&[("queue", queue)])?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "chatsdk_queue_limit",
                "Capacity of each bounded queue (writes wait for a slot beyond it)",
                None,
                MetricType::Gauge,
            )?;
            for (queue, limit) in [
                ("proposals", q.proposals_limit),
                ("peer_messages", q.peer_messages_limit),
            ] {
                ConstGauge::new(limit as i64).encode(family.encode_family(&[("queue", queue)])?)?;
            }
        }
        let kinds = self.chat.cluster().raft_summary();
        type Pick = fn(&chatsdk_cluster::stats::KindSummary) -> u64;
        let per_kind: [(&str, &str, Pick); 4] = [
            (
                "chatsdk_raft_replicas",
                "Raft replicas on this node, by group kind (directory, shard)",
                |k| k.replicas,
            ),
            (
                "chatsdk_raft_replicas_led",
                "Raft replicas this node leads, by group kind",
                |k| k.led,
            ),
            (
                "chatsdk_raft_apply_lag_entries",
                "Largest number of log entries written but not yet applied, by group kind",
                |k| k.max_apply_lag,
            ),
            (
                "chatsdk_raft_log_entries",
                "Log entries held (not yet compacted behind a snapshot), by group kind",
                |k| k.log_entries,
            ),
        ];
        for (name, help, pick) in per_kind {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for k in &kinds {
                let labels = [("kind", k.kind)];
                ConstGauge::new(pick(k) as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// What `/proc/self` says about the process.
struct Process {
    resident_bytes: u64,
    cpu_seconds: f64,
    open_fds: usize,
}

fn process() -> Option<Process> {
    // Fields 14 and 15 of /proc/self/stat (after the command, which may hold spaces) are user
    // and system time in clock ticks; the kernel's USER_HZ is 100 on every Linux we run on.
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some(Process {
        resident_bytes: pages * 4096,
        cpu_seconds: ticks as f64 / 100.0,
        open_fds,
    })
}

/// `GET /metrics`.
pub async fn scrape(State(state): State<GatewayState>) -> Response {
    match state.metrics.render(&state) {
        Ok(text) => {
            let mut res = (StatusCode::OK, text).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            res
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;
