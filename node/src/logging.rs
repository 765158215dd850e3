//! Log output: human-readable lines on a terminal, JSON lines otherwise, filtered by
//! `[log] level` or `CHATSDK_LOG`.
//!
//! openraft logs every failed RPC to an unreachable peer at WARN/ERROR, several lines a second
//! per group for as long as a peer is down. Those events (the replication module's, and the
//! core's that name a `target` peer) are dropped here: the transport logs one line when a peer
//! becomes unreachable and one when it is back, and counts the failures in
//! `chatsdk_cluster_peer_failures_total`.

use std::io::IsTerminal;

use tracing::Metadata;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::{LogFormat, LogSection};

/// Installs the process's log subscriber. `CHATSDK_LOG` overrides `log.level`.
pub fn init(log: &LogSection) {
    let filter = std::env::var("CHATSDK_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(&log.level));
    let stderr_tty = std::io::stderr().is_terminal();
    let json = match log.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !stderr_tty,
    };
    let quiet = filter_fn(|m| !is_peer_rpc_noise(m));
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_filter(quiet),
            )
            .init();
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(stderr_tty)
                    .with_target(false)
                    .with_writer(std::io::stderr)
                    .with_filter(quiet),
            )
            .init();
    }
}

/// openraft's per-RPC failure events towards one peer (see the module docs).
fn is_peer_rpc_noise(m: &Metadata<'_>) -> bool {
    if !m.is_event() {
        return false;
    }
    let target = m.target();
    target.starts_with("openraft::replication")
        || (target.starts_with("openraft::core") && m.fields().field("target").is_some())
}
