//! `chatsdk-bench`: the load harness. `cargo run --release -p chatsdk-bench -- <scenario>`.
//!
//! The coordinator (this process, pinned to the generator cores) starts the system under test
//! as its own process(es) pinned to core 0, spreads connections over generator processes,
//! interleaves systems round by round (ours, peer, ours, peer, ...), and prints one JSON line
//! per run on stdout and a table of medians and ratios on stderr. See docs/benchmarks.md.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use chatsdk_bench::peers::{self, Peer};
use chatsdk_bench::scenarios::{self, fanout, Ctx};
use chatsdk_bench::sut::System;
use chatsdk_bench::{floor, gen, ournode, procstat};

/// mimalloc instead of glibc's allocator: the write path allocates many small, short-lived
/// buffers across threads, where glibc's arenas spent ~18 % of a durable send's CPU in
/// malloc/free and chunk consolidation (perf, `chatsdk-bench durable`). The `system-alloc`
/// feature keeps glibc's, for heap profilers (heaptrack) that cannot see mimalloc's heap.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "chatsdk-bench", about = "ChatSDK load harness", version)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Our transport: ws, quic, or both.
    #[arg(long, global = true, value_enum, default_value = "ws")]
    transport: Transport,
    /// Peers to compare with (idle, storm, fanout): any of ws, socketio, nats; durable
    /// compares with nats-server's JetStream when nats is among them.
    #[arg(long, global = true, value_enum, value_delimiter = ',', default_values = ["ws", "socketio", "nats"])]
    peers: Vec<Peer>,
    /// Compare with no peer.
    #[arg(long, global = true)]
    no_peers: bool,
    /// Rounds of interleaved runs; medians are taken over them.
    #[arg(long, global = true, default_value_t = 3)]
    rounds: usize,
    /// Tiny sizes and short windows: checks that a scenario works (CI).
    #[arg(long, global = true)]
    smoke: bool,
    /// Do not pin the server and the generators to different cores.
    #[arg(long, global = true)]
    no_pin: bool,
    /// Source addresses 127.0.0.1..=127.0.0.N for generator sockets.
    #[arg(long, global = true, default_value_t = 8)]
    sources: u8,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    Ws,
    Quic,
    Both,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ShapeArg {
    F1,
    F2,
    F3,
    /// S1: F1's rooms, each room's subscribers on one node of a cluster (sparse interest).
    S1,
    All,
}

#[derive(Subcommand)]
enum Scenario {
    /// N idle sessions (connected, authenticated, subscribed): server RSS per session.
    Idle {
        #[arg(long, value_delimiter = ',', default_values_t = [1000usize, 5000, 10000])]
        steps: Vec<usize>,
    },
    /// Open-loop connect storms at rising rates: accept → subscribed latency, the limit.
    Storm {
        #[arg(long, value_delimiter = ',', default_values_t = [1000.0f64, 2000.0, 5000.0, 10000.0, 15000.0])]
        rates: Vec<f64>,
        /// Seconds per step (capped at 15,000 connections).
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
    /// C channels × M members at P publishes/s: CPU and syscalls per delivery, latency.
    Fanout {
        #[arg(long, value_enum, default_value = "all")]
        shape: ShapeArg,
        /// Also run a three-node cluster (clients spread over the nodes): cluster CPU per
        /// delivery against one node's.
        #[arg(long)]
        cluster: bool,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// ChatSDK's own load-test shapes against their thresholds.
    ChatMix {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Acknowledged durable sends per second: ours over REST (one node and three) and over
    /// the realtime WebSocket (one node), against NATS JetStream (fsync on every publish).
    Durable {
        #[arg(long, value_delimiter = ',', default_values_t = [1000.0f64, 2000.0, 3000.0, 4000.0, 6000.0, 8000.0, 10000.0])]
        rates: Vec<f64>,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Skip the three-node cluster.
        #[arg(long)]
        no_cluster: bool,
        /// Run only these systems, by name (chatsdk-1node, chatsdk-1node-ws, jetstream,
        /// chatsdk-3node, jetstream-3node); all of them when absent.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// SIGKILL of a shard leader under load: recovery time, exactly-once in-order delivery.
    Failover {
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        #[arg(long, default_value_t = 15.0)]
        seconds: f64,
    },
    /// Sustained sends with retention on: the node's disk and memory over time (flat once
    /// retention keeps pace).
    Soak {
        #[arg(long, default_value_t = 1800)]
        seconds: u64,
        /// Sends per second, over all channels.
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        #[arg(long, default_value_t = 20)]
        channels: usize,
        /// The channels' `retentionSeconds`.
        #[arg(long, default_value_t = 120)]
        retention_s: u64,
    },
    /// Upload throughput (files and photos) and search latency on N messages, one node.
    Media {
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
    },
    /// Floors: a small loopback write (a delivery), a send's writes done directly on sled, and
    /// a REST request or WebSocket frame answered by a server that does nothing else.
    Floor,
    /// (internal) Runs a node for the harness.
    #[command(hide = true)]
    Node {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, requires = "join_token")]
        join: Option<SocketAddr>,
        #[arg(long)]
        join_token: Option<String>,
    },
    /// (internal) Runs a generator; its spec comes on stdin.
    #[command(hide = true)]
    Gen,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.scenario {
        Scenario::Node {
            data_dir,
            join,
            join_token,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("CHATSDK_LOG")
                        .unwrap_or_else(|_| "error".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            let join = join.zip(join_token.clone());
            return tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(ournode::run_node(data_dir, join));
        }
        Scenario::Gen => {
            return tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(gen::run());
        }
        _ => {}
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(coordinate(cli))
}

async fn coordinate(cli: Cli) -> anyhow::Result<()> {
    if let Some(n) = procstat::raise_nofile() {
        if n < 16_000 {
            eprintln!("open-file limit is {n}: large runs will fail to open connections");
        }
    }
    let (server_cpus, gen_cpus) = if cli.no_pin {
        (None, None)
    } else {
        Ctx::pinning()
    };
    if let Some(g) = &gen_cpus {
        // The coordinator does generator work too (REST senders).
        if let Err(e) = procstat::pin(std::process::id(), g) {
            eprintln!("cannot pin the coordinator: {e}");
        }
    }
    let mut systems = Vec::new();
    if cli.transport != Transport::Quic {
        systems.push(System::Ours { quic: false });
    }
    if cli.transport != Transport::Ws {
        systems.push(System::Ours { quic: true });
    }
    if matches!(cli.scenario, Scenario::Fanout { cluster: true, .. }) {
        systems.insert(1, System::Cluster3);
    }
    let with_peers = matches!(
        cli.scenario,
        Scenario::Idle { .. } | Scenario::Storm { .. } | Scenario::Fanout { .. }
    );
    // Durable's peer is JetStream, on the nats-server that the `nats` peer installs.
    let with_jetstream =
        matches!(cli.scenario, Scenario::Durable { .. }) && cli.peers.contains(&Peer::Nats);
    let installed = if ((with_peers && !cli.peers.is_empty()) || with_jetstream) && !cli.no_peers {
        let inst = peers::install()?;
        if with_peers {
            systems.extend(cli.peers.iter().map(|p| System::Peer(*p)));
        }
        Some(inst)
    } else {
        None
    };
    let ctx = Ctx {
        smoke: cli.smoke,
        rounds: if cli.smoke { 1 } else { cli.rounds.max(1) },
        server_cpus,
        gen_cpus,
        sources: scenarios::loopback_sources(cli.sources),
        installed,
        systems,
    };
    let runs = match cli.scenario {
        Scenario::Idle { steps } => scenarios::idle::run(&ctx, &steps).await?,
        Scenario::Storm { rates, seconds } => scenarios::storm::run(&ctx, &rates, seconds).await?,
        Scenario::Fanout { shape, seconds, .. } => {
            let shapes = match shape {
                ShapeArg::F1 => vec![fanout::F1],
                ShapeArg::F2 => vec![fanout::F2],
                ShapeArg::F3 => vec![fanout::F3],
                ShapeArg::S1 => vec![fanout::S1],
                ShapeArg::All => vec![fanout::F1, fanout::F2, fanout::F3],
            };
            let seconds = if ctx.smoke { 2 } else { seconds };
            fanout::run(&ctx, &shapes, seconds).await?
        }
        Scenario::ChatMix { seconds } => scenarios::chat_mix::run(&ctx, seconds).await?,
        Scenario::Durable {
            rates,
            seconds,
            no_cluster,
            only,
        } => scenarios::durable::run(&ctx, &rates, seconds, !no_cluster, &only).await?,
        Scenario::Failover { rate, seconds } => {
            scenarios::failover::run(&ctx, rate, seconds).await?
        }
        Scenario::Media { messages } => scenarios::media::run(&ctx, messages).await?,
        Scenario::Soak {
            seconds,
            rate,
            channels,
            retention_s,
        } => {
            let asked = scenarios::soak::Soak {
                seconds,
                rate,
                channels,
                retention_s,
            };
            scenarios::soak::run(&ctx, &asked).await?
        }
        Scenario::Floor => {
            let us = floor::loopback_write_us(160)?;
            let sled = floor::sled::send_floor()?;
            let rest = floor::http::rest_us().await?;
            let ws = floor::http::ws_us().await?;
            println!(
                "{{\"scenario\":\"floor\",\"loopback_write_us\":{us:.4},\"sled_send_us\":{:.2},\"sled_op_us\":{:.2},\"rest_answer_us\":{rest:.2},\"ws_answer_us\":{ws:.2}}}",
                sled.send_us, sled.op_us
            );
            return Ok(());
        }
        Scenario::Node { .. } | Scenario::Gen => return Ok(()),
    };
    let invalid = runs.iter().filter(|r| !r.valid).count();
    if runs.is_empty() {
        anyhow::bail!("no run completed");
    }
    if ctx.smoke && invalid > 0 {
        anyhow::bail!("{invalid} of {} smoke runs were invalid", runs.len());
    }
    Ok(())
}
