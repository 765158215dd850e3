//! The `chatsdk` binary: parses the command line, sets up logging, runs a node until SIGTERM or
//! SIGINT, then drains it. Everything else lives in the `chatsdk_node` library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use chatsdk_node::config::{self, Config};
use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's allocator: the write path allocates many small, short-lived
/// buffers across threads, where glibc's arenas spent ~18 % of a durable send's CPU in
/// malloc/free and chunk consolidation (perf, `chatsdk-bench durable`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "chatsdk",
    version,
    about = "A self-hosted chat backend in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a node (a one-node cluster unless --join is given).
    Serve(ServeArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Prints the version.
    Version,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (also CHATSDK_CONFIG).
    #[arg(long, env = "CHATSDK_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides server.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HTTP address for REST and WebSocket (overrides server.http).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// UDP port of the realtime QUIC endpoint, on the IP of --http (overrides quic.port).
    #[arg(long)]
    quic_port: Option<u16>,
    /// Node-to-node QUIC address (overrides cluster.addr).
    #[arg(long)]
    cluster_addr: Option<SocketAddr>,
    /// Address of a cluster node to join.
    #[arg(long, requires = "join_token")]
    join: Option<SocketAddr>,
    /// Join token printed by a node of the cluster.
    #[arg(long, requires = "join")]
    join_token: Option<String>,
    /// Dev mode: seed the demo app and print ready-to-use credentials.
    #[arg(long)]
    dev: bool,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Prints the effective configuration (file, environment and defaults).
    Print {
        #[arg(long, env = "CHATSDK_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn effective(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut c = config::load_from_process(args.config.as_deref())?;
    if let Some(d) = &args.data_dir {
        c.server.data_dir = d.clone();
    }
    if let Some(a) = args.http {
        c.server.http = a;
    }
    if let Some(p) = args.quic_port {
        c.quic.port = p;
    }
    if let Some(a) = args.cluster_addr {
        c.cluster.addr = a;
    }
    if args.join.is_some() {
        c.cluster.join = args.join;
        c.cluster.join_token = args.join_token.clone();
    }
    if args.dev {
        c.server.dev = true;
    }
    c.validate()?;
    Ok(c)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("chatsdk {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Print { config: file },
        } => {
            let c = config::load_from_process(file.as_deref())?;
            print!("{}", c.to_toml()?);
            Ok(())
        }
        Command::Serve(args) => {
            // Validated before any port is bound.
            let c = effective(&args)?;
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("CHATSDK_LOG")
                        .unwrap_or_else(|_| "info,openraft=warn".into()),
                )
                .json()
                .with_writer(std::io::stderr)
                .init();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(serve(c))
        }
    }
}

async fn serve(c: Config) -> anyhow::Result<()> {
    let node = chatsdk_node::start(&c).await.context("starting the node")?;
    let base = format!("http://{}", node.http);
    println!(
        "chatsdk {} listening on {base} (data in {})",
        env!("CARGO_PKG_VERSION"),
        c.server.data_dir.display()
    );
    if let Some((app, key)) = &node.credentials.default_app {
        println!("default app {app}\nserver API key (shown once): {key}");
    }
    if let Some(dev) = &node.credentials.dev {
        println!(
            "dev mode: demo app {} with users user-1 (Alice), user-2 (Bob), user-3 (Carol)",
            dev.app_id
        );
        println!("  server API key: {}", dev.api_key);
        println!("  token for user-1: {}", dev.token);
        println!("  realtime token for user-1: {}", dev.ws_token);
        println!(
            "  try: curl -H 'Authorization: Bearer {}' {base}/api/channels/{}/messages",
            dev.token, dev.channel_id
        );
        println!("  realtime: ws://{}/connection/websocket", node.http);
        if node.quic.is_some() {
            println!(
                "  the QUIC endpoint's self-signed certificate: {}",
                c.server
                    .data_dir
                    .join("tls")
                    .join("quic-cert.pem")
                    .display()
            );
        }
    }
    if let Some(q) = node.quic {
        println!("realtime over QUIC on udp {q} (ALPN chatsdk)");
    }
    if let Some(token) = node.join_token() {
        println!("join token for more nodes: {token}");
    }
    wait_for_signal().await?;
    println!("draining");
    node.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}
